"""Simulation-based calibration (validation/sbc.py): the harness itself, a fast subset, and the full run.

- Fast tests check the harness without sampling (designs, priors, the chi-square test by hand).
- ``@pytest.mark.slow``: SBC of random intercepts for gaussian (the default, collapsed likelihood),
  bernoulli (rows) and poisson (rows pooled into cells) with 100 replications each, the Pólya-Gamma
  Gibbs sampler on bernoulli and binomial-ridge models (100 each), and a deliberately
  misspecified control that the same test must reject; ``min_ess`` (chains of the integrated samplers
  extended in place by a stopping rule) on bernoulli, poisson and gaussian with its own control; an exact
  check that pooling count rows into cells changes the log density only by a constant. About 2 minutes in
  all on 2 cores.
- ``@pytest.mark.sbc``: the full run, all 12 variant x family combinations with 200 replications each
  (about 15-20 minutes). It is skipped unless selected: run it with
  ``HIERPOOL_SBC=1 python -m pytest tests/test_validation_sbc.py -m sbc`` (``-m sbc`` alone also enables
  it), or run ``python -m validation.run_full`` to get histograms and tables in validation/results/.

Thresholds: a rank histogram (L = 99, 10 bins of 10 ranks, R replications) fails when the chi-square
p-value (9 df) is below alpha / n_tests with alpha = 0.01 (Bonferroni over the parameters tested
together). With fixed seeds the outcome is deterministic; for a correct model the chance that a seed
fails is at most 1%.
"""

from __future__ import annotations

import os

import numpy as np
import pandas as pd
import pytest
from scipy import stats

import hierpool as hp
from validation import sbc

ALPHA = 0.01


# ---------------------------------------------------------------- harness, no sampling ----------------
@pytest.mark.parametrize("family", sbc.FAMILIES)
def test_design_makes_data_scaled_defaults_neutral(family):
    df = sbc.make_design(family)
    extra = {"trials": "trials"} if family == "binomial" else {}
    gd = hp.prepare(df, y="y", group="group", predictors=["x1"], family=family, **extra)
    assert gd.n_groups == 10 and gd.n_obs == 30
    assert gd.group_n.tolist() == list(sbc.SBC_SIZES)
    # the data-scaled defaults (sd(y) and link(mean y)) are exactly 1 and 0, so every prior is a known number
    assert gd.y_scale == pytest.approx(1.0, abs=1e-12)
    assert gd.y_location == pytest.approx(0.0, abs=1e-12)
    assert gd.x_center[0] == pytest.approx(0.0, abs=1e-12)
    assert gd.x_scale[0] == pytest.approx(1.0, abs=1e-12)


def test_build_pair_fit_and_data_models():
    fit_m, data_m = sbc.build_pair("random_intercepts", "gaussian", collapse=False)
    assert sbc.collapse_of(data_m) is None
    assert "y_observed" in data_m.named_vars
    assert sbc.default_parameters(fit_m) == [
        "intercept", "beta[x1]", "tau", "sigma", "group_effect[g0]", "group_effect[g4]", "group_effect[g9]"]
    # fixing tau removes it from the ranked parameters; ridge has no tau; counts have no sigma
    fixed, _ = sbc.build_pair("random_intercepts", "bernoulli", priors={"tau": 1.0})
    assert "tau" not in sbc.default_parameters(fixed)
    ridge, _ = sbc.build_pair("ridge_fixed_effects", "poisson")
    assert sbc.default_parameters(ridge)[:2] == ["intercept", "beta[x1]"]
    assert "tau" not in sbc.default_parameters(ridge) and "sigma" not in sbc.default_parameters(ridge)


@pytest.mark.slow
def test_prior_draws_follow_the_stated_priors():
    # 4000 prior draws: tau ~ HalfNormal(1) has mean sqrt(2/pi) = 0.798 and the intercept ~ Normal(0, 1);
    # the Monte Carlo SE of each mean is about 0.6/sqrt(4000) = 0.01 and 1/sqrt(4000) = 0.016.
    _, data_m = sbc.build_pair("random_intercepts", "bernoulli")
    truth, y = sbc.simulate_from_model(data_m, 4000, seed=5)
    assert y.shape == (4000, 30)
    assert set(np.unique(y)) <= {0.0, 1.0}
    assert float(truth["tau"].mean()) == pytest.approx(np.sqrt(2 / np.pi), abs=0.05)
    assert float(truth["intercept"].mean()) == pytest.approx(0.0, abs=0.08)
    assert float(truth["intercept"].std()) == pytest.approx(1.0, abs=0.05)
    assert float(truth["beta"].std()) == pytest.approx(0.5, abs=0.03)
    z = truth["group_effect"] / truth["tau"]  # group effects ~ Normal(0, tau)
    assert float(z.std()) == pytest.approx(1.0, abs=0.03)


def test_rank_uniformity_matches_hand_computation():
    # 100 ranks: bins of 10 ranks; counts 20, 0, 10 x 8 -> chi2 = (10^2 + 10^2) / 10 = 20 on 9 df
    ranks = np.concatenate([np.arange(10), np.arange(10), np.arange(20, 100)])
    df = pd.DataFrame({"sim": range(100), "parameter": "a", "rank": ranks})
    tab = sbc.rank_uniformity(df, n_ranks=99, alpha=ALPHA, n_tests=5)
    row = tab.iloc[0]
    assert row["counts"] == "20 0 10 10 10 10 10 10 10 10"
    assert row["chi2"] == pytest.approx(20.0)
    assert row["p_value"] == pytest.approx(stats.chi2.sf(20.0, 9))
    assert row["p_threshold"] == pytest.approx(ALPHA / 5)
    assert bool(row["uniform"]) == bool(stats.chi2.sf(20.0, 9) >= ALPHA / 5)
    assert row["mean_rank"] == pytest.approx(ranks.mean())


def test_rank_uniformity_size_and_power_on_synthetic_ranks():
    rng = np.random.default_rng(3)
    uniform = pd.DataFrame({"sim": range(300), "parameter": "u", "rank": rng.integers(0, 100, 300)})
    assert bool(sbc.rank_uniformity(uniform, n_ranks=99)["uniform"].iloc[0])
    # a posterior too narrow by half (ranks of a N(0,1) truth among N(0, 0.5^2) draws) piles up at the ends
    truth = rng.normal(size=300)
    draws = rng.normal(0, 0.5, size=(300, 99))
    narrow = pd.DataFrame({"sim": range(300), "parameter": "n", "rank": (draws < truth[:, None]).sum(1)})
    tab = sbc.rank_uniformity(narrow, n_ranks=99)
    assert not bool(tab["uniform"].iloc[0])
    assert tab["p_value"].iloc[0] < 1e-10


def test_rank_uniformity_rejects_bad_arguments():
    df = pd.DataFrame({"sim": [0], "parameter": "a", "rank": [5]})
    with pytest.raises(ValueError, match="n_bins=7"):
        sbc.rank_uniformity(df, n_ranks=99, n_bins=7)
    with pytest.raises(ValueError, match="alpha"):
        sbc.rank_uniformity(df, n_ranks=99, alpha=1.5)
    with pytest.raises(ValueError, match="0..99"):
        sbc.rank_uniformity(pd.DataFrame({"sim": [0], "parameter": "a", "rank": [100]}), n_ranks=99)
    with pytest.raises(ValueError, match="kind='nope'"):
        sbc.misspecified_pair("nope")


@pytest.mark.parametrize("family", ["bernoulli", "binomial", "poisson"])
def test_count_cells_and_rows_give_the_same_posterior(family):
    """Pooling rows that share a group and a predictor pattern into cells must change the log density only
    by a constant: the difference of the log posterior between two parameter points is the same for the
    row-level and the cell model (to rounding). SBC of the cell models (validation.run_full) found a
    Poisson model without exposure that failed this; the test pins it without sampling."""
    design = sbc.make_design(family, predictor="binary")
    _, data_m = sbc.build_pair("random_intercepts", family, design=design)
    _, ys = sbc.simulate_from_model(data_m, 1, seed=3)
    diffs = {}
    for collapse in (False, True):
        model = sbc.build_model("random_intercepts", family, design=design, collapse=collapse)
        assert sbc.collapse_of(model) == (None if collapse is False else "counts")
        for name, value in sbc._data_for(model, ys[0]).items():
            model.set_data(name, value)
        logp = model.compile_logp()
        start = model.initial_point()
        points = [{k: v + np.random.default_rng(s).normal(0, 0.3, np.shape(v)) for k, v in start.items()}
                  for s in (0, 1)]
        diffs[collapse] = float(logp(points[1]) - logp(points[0]))
    assert diffs[True] == pytest.approx(diffs[False], abs=1e-8), diffs


# ---------------------------------------------------------------- fast subset (sampling) ----------------
N_SIMS = 100


@pytest.fixture(scope="module")
def gaussian_pair():
    """Random intercepts, gaussian, default (collapsed) likelihood, compiled once for two tests."""
    fit_m, data_m = sbc.build_pair("random_intercepts", "gaussian")
    return fit_m, data_m, sbc.compile_model(fit_m)


@pytest.mark.slow
def test_sbc_random_intercepts_gaussian(gaussian_pair):
    fit_m, data_m, compiled = gaussian_pair
    assert sbc.collapse_of(fit_m) == "gaussian"  # the default: group effects integrated out, drawn after
    ranks = sbc.sbc_ranks(fit_m, data_model=data_m, n_sims=N_SIMS, seed=11, compiled=compiled)
    tab = sbc.rank_uniformity(ranks, alpha=ALPHA)
    assert len(tab) == 7 and tab["n_sims"].eq(N_SIMS).all()
    assert tab["uniform"].all(), tab.to_string()
    # mean rank of a uniform 0..99 rank is 49.5 with SE 28.9/sqrt(100) = 2.9
    assert np.allclose(tab["mean_rank"], 49.5, atol=4 * 2.9), tab.to_string()


@pytest.mark.slow
def test_sbc_random_intercepts_bernoulli():
    ranks = sbc.run_sbc("random_intercepts", "bernoulli", n_sims=N_SIMS, seed=12)
    tab = sbc.rank_uniformity(ranks, alpha=ALPHA)
    assert list(tab["parameter"]) == [
        "intercept", "beta[x1]", "tau", "group_effect[g0]", "group_effect[g4]", "group_effect[g9]"]
    assert tab["uniform"].all(), tab.to_string()
    assert np.allclose(tab["mean_rank"], 49.5, atol=4 * 2.9), tab.to_string()


@pytest.mark.slow
def test_sbc_polya_gamma_gibbs_bernoulli_and_binomial():
    """The Gibbs sampler (hierpool.inference.gibbs) is calibrated: bernoulli random intercepts, and a binomial ridge
    (tau fixed by lam), both with a continuous predictor, refitted by Gibbs instead of NUTS."""
    for variant, family, seed in (("random_intercepts", "bernoulli", 14), ("ridge_fixed_effects", "binomial", 15)):
        fit_m, data_m = sbc.build_pair(variant, family)
        ranks = sbc.sbc_ranks(fit_m, data_model=data_m, n_sims=N_SIMS, seed=seed, sampler="gibbs", tune=200)
        tab = sbc.rank_uniformity(ranks, alpha=ALPHA)
        assert ("tau" in set(tab["parameter"])) == (variant == "random_intercepts")
        assert tab["uniform"].all(), (variant, tab.to_string())
        assert np.allclose(tab["mean_rank"], 49.5, atol=4 * 2.9), (variant, tab.to_string())


@pytest.mark.slow
def test_sbc_integrated_sampler():
    """The integrated sampler (hierpool.inference.integrated) is calibrated: bernoulli and poisson random
    intercepts and a binomial ridge (tau fixed by lam), with a continuous predictor, 10 groups (a marginal
    posterior far from normal: the independence proposal's hardest case)."""
    for variant, family, seed in (("random_intercepts", "bernoulli", 16), ("random_intercepts", "poisson", 17),
                                  ("ridge_fixed_effects", "binomial", 18)):
        fit_m, data_m = sbc.build_pair(variant, family)
        ranks = sbc.sbc_ranks(fit_m, data_model=data_m, n_sims=N_SIMS, seed=seed, sampler="integrated", tune=100)
        tab = sbc.rank_uniformity(ranks, alpha=ALPHA)
        assert ("tau" in set(tab["parameter"])) == (variant == "random_intercepts")
        assert tab["uniform"].all(), (variant, family, tab.to_string())
        assert np.allclose(tab["mean_rank"], 49.5, atol=4 * 2.9), (variant, family, tab.to_string())


@pytest.mark.slow
def test_sbc_gaussian_integrated_sampler():
    """The gaussian integrated sampler (hierpool.inference.integrated_gaussian: sigma and tau by independence
    MH, coefficients and group effects drawn exactly) is calibrated: random intercepts and a ridge (tau
    fixed by lam), with a continuous predictor, on the collapsed model users get by default."""
    for variant, seed in (("random_intercepts", 21), ("ridge_fixed_effects", 22)):
        fit_m, data_m = sbc.build_pair(variant, "gaussian")
        ranks = sbc.sbc_ranks(fit_m, data_model=data_m, n_sims=N_SIMS, seed=seed, sampler="integrated", tune=100)
        tab = sbc.rank_uniformity(ranks, alpha=ALPHA)
        assert {"sigma", "intercept"} <= set(tab["parameter"])
        assert ("tau" in set(tab["parameter"])) == (variant == "random_intercepts")
        assert tab["uniform"].all(), (variant, tab.to_string())
        assert np.allclose(tab["mean_rank"], 49.5, atol=4 * 2.9), (variant, tab.to_string())


@pytest.mark.slow
@pytest.mark.parametrize(("family", "seed"), [("poisson", 19), ("gaussian", 23)])
def test_sbc_integrated_sampler_rejects_a_misspecified_model(family, seed):
    """The control: data with tau ~ HalfNormal(1) fitted under HalfNormal(0.1) by the integrated sampler
    (the count one for poisson, the gaussian one for gaussian) must fail: tau's ranks pile up at the top."""
    fit_m, data_m = sbc.misspecified_pair("tau_too_small", "random_intercepts", family)
    ranks = sbc.sbc_ranks(fit_m, data_model=data_m, n_sims=N_SIMS, seed=seed, sampler="integrated", tune=100)
    tab = sbc.rank_uniformity(ranks, alpha=ALPHA).set_index("parameter")
    assert not bool(tab.loc["tau", "uniform"])
    assert tab.loc["tau", "p_value"] < 1e-6
    assert tab.loc["tau", "mean_rank"] > 49.5 + 5 * 2.9


@pytest.mark.slow
@pytest.mark.parametrize(("family", "seed"), [("bernoulli", 31), ("poisson", 32), ("gaussian", 33)])
def test_sbc_min_ess_extending_the_chains_in_place(family, seed):
    """``hp.fit(..., min_ess=)`` on the integrated samplers extends the chains in place until the bulk and tail
    ESS reach it (R-hat <= 1.01): a stopping rule that looks at the draws. It keeps the posterior calibrated:
    chains of 50 draws extended towards min_ess = 200 (at most 20 x 50), 99 equally spaced draws of each
    parameter ranked (the group effects' own ~200 kept draws for g0, g4, g9). The rule must have been at
    work: the draws per chain vary between replications and most replications reach the target (88-89%
    for the counts and 95% for gaussian at these 10 groups, the rest stop at 1,000 draws, with a warning in
    hp.fit; the bound 0.75 is 4 binomial SDs, 0.033, below 0.88)."""
    fit_m, data_m = sbc.build_pair("random_intercepts", family)
    ranks = sbc.sbc_ranks(fit_m, data_model=data_m, n_sims=N_SIMS, seed=seed, sampler="integrated", tune=100,
                          thin=1, min_ess=200)
    tab = sbc.rank_uniformity(ranks, alpha=ALPHA)
    assert tab["uniform"].all(), (family, tab.to_string())
    assert np.allclose(tab["mean_rank"], 49.5, atol=4 * 2.9), (family, tab.to_string())
    per_sim = ranks.drop_duplicates("sim")
    assert per_sim["draws"].min() < per_sim["draws"].max() <= 1000
    assert per_sim["draws"].min() > 50  # every replication was extended
    assert per_sim["min_ess_reached"].mean() >= 0.75


@pytest.mark.slow
def test_sbc_min_ess_rejects_a_misspecified_model():
    """The control for the test above: tau drawn from HalfNormal(1), fitted under HalfNormal(0.1) through the
    same min_ess path, must fail (tau's ranks pile up at the top)."""
    fit_m, data_m = sbc.misspecified_pair("tau_too_small", "random_intercepts", "poisson")
    ranks = sbc.sbc_ranks(fit_m, data_model=data_m, n_sims=N_SIMS, seed=19, sampler="integrated", tune=100,
                          thin=1, min_ess=200)
    tab = sbc.rank_uniformity(ranks, alpha=ALPHA).set_index("parameter")
    assert not bool(tab.loc["tau", "uniform"])
    assert tab.loc["tau", "p_value"] < 1e-6
    assert tab.loc["tau", "mean_rank"] > 49.5 + 5 * 2.9


def test_sbc_min_ess_harness_on_two_replications():
    """The min_ess path of the harness without the slow run: the group effects ranked among their own kept
    draws (a draw dimension apart), ranks in 0..L, the rule's draws and whether it reached the target."""
    fit_m, data_m = sbc.build_pair("random_intercepts", "poisson")
    ranks = sbc.sbc_ranks(fit_m, data_model=data_m, n_sims=2, seed=3, sampler="integrated", tune=50, thin=1,
                          min_ess=150)
    assert set(ranks["parameter"]) == {"intercept", "beta[x1]", "tau", "group_effect[g0]", "group_effect[g4]",
                                       "group_effect[g9]"}
    assert ranks["rank"].between(0, 99).all()
    assert (ranks["draws"] > 50).all() and (ranks["draws"] <= 20 * 50).all()
    assert ranks["min_ess_reached"].dtype == bool


def test_sbc_min_ess_is_for_the_integrated_sampler_only():
    fit_m, data_m = sbc.build_pair("random_intercepts", "gaussian")
    with pytest.raises(ValueError, match="min_ess=200 is for sampler='integrated'"):
        sbc.sbc_ranks(fit_m, data_model=data_m, n_sims=1, sampler="nutpie", min_ess=200)


@pytest.mark.slow
def test_sbc_random_intercepts_poisson_cells():
    """Poisson rows pooled into (group, predictor pattern) cells, the default when rows repeat a pattern."""
    design = sbc.make_design("poisson", predictor="binary")
    ranks = sbc.run_sbc("random_intercepts", "poisson", n_sims=N_SIMS, seed=13, design=design)
    assert ranks.attrs["collapse"] == "counts"
    tab = sbc.rank_uniformity(ranks, alpha=ALPHA)
    assert tab["uniform"].all(), tab.to_string()
    assert np.allclose(tab["mean_rank"], 49.5, atol=4 * 2.9), tab.to_string()


@pytest.mark.slow
def test_sbc_rejects_a_misspecified_model(gaussian_pair):
    """The same harness and threshold must fail when the data come from another prior than the fit's:
    intercepts drawn from Normal(3, 1), fitted under Normal(0, 1) (same compiled fit model as above)."""
    fit_m, _, compiled = gaussian_pair
    _, wrong_data = sbc.misspecified_pair("shifted_intercept", "random_intercepts", "gaussian")
    ranks = sbc.sbc_ranks(fit_m, data_model=wrong_data, n_sims=N_SIMS, seed=11, compiled=compiled)
    tab = sbc.rank_uniformity(ranks, alpha=ALPHA).set_index("parameter")
    assert not bool(tab.loc["intercept", "uniform"])
    assert tab.loc["intercept", "p_value"] < 1e-6
    # the truth is above the posterior: ranks pile up at the top (mean far above 49.5)
    assert tab.loc["intercept", "mean_rank"] > 49.5 + 5 * 2.9


@pytest.mark.slow
def test_sbc_is_reproducible_with_a_seed(gaussian_pair):
    fit_m, data_m, compiled = gaussian_pair
    a = sbc.sbc_ranks(fit_m, data_model=data_m, n_sims=3, seed=4, compiled=compiled)
    b = sbc.sbc_ranks(fit_m, data_model=data_m, n_sims=3, seed=4, compiled=compiled)
    pd.testing.assert_frame_equal(a, b)


# ---------------------------------------------------------------- full run (opt-in) ----------------
def _sbc_selected(config) -> bool:
    expr = config.getoption("markexpr", "") or ""
    return os.environ.get("HIERPOOL_SBC") == "1" or ("sbc" in expr and "not sbc" not in expr)


@pytest.mark.sbc
@pytest.mark.parametrize("variant", sbc.VARIANTS)
@pytest.mark.parametrize("family", sbc.FAMILIES)
def test_sbc_full(variant, family, request):
    if not _sbc_selected(request.config):
        pytest.skip("full SBC run: select with -m sbc or HIERPOOL_SBC=1")
    ta = 0.99 if variant == "regularized_hierarchical" else 0.9
    ranks = sbc.run_sbc(variant, family, n_sims=200, seed=101, thin=6, target_accept=ta)
    # Bonferroni over all 12 combinations: alpha = 0.01 shared by their ~70 parameters
    tab = sbc.rank_uniformity(ranks, alpha=ALPHA / 12)
    assert tab["uniform"].all(), tab.to_string()
