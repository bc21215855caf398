"""Several grouping factors: crossed ``(1 | a) + (1 | b)`` and nested ``(1 | a/b)`` (issue 15).

Unmarked tests use no MCMC: fits are built from known posterior draws through ``finalize`` (what
``hp.fit`` does after sampling), so the identities they check are exact. The slow tests fit lme4's
Penicillin data against lmer's REML estimates and run a small simulation-based calibration with a failing
control.
"""

from __future__ import annotations

import json
import warnings

import numpy as np
import pandas as pd
import pytest
import xarray as xr

import hierpool as hp
from hierpool.core import names as N
from hierpool.inference.sampling import finalize


def _crossed_df(seed=0, n_a=12, n_b=4, reps=2):
    rng = np.random.default_rng(seed)
    a = np.repeat([f"m{i}" for i in range(n_a)], n_b * reps)
    b = np.tile(np.repeat([f"h{j}" for j in range(n_b)], reps), n_a)
    ua = dict(zip([f"m{i}" for i in range(n_a)], rng.normal(0, 1.0, n_a), strict=True))
    ub = dict(zip([f"h{j}" for j in range(n_b)], rng.normal(0, 0.7, n_b), strict=True))
    x = rng.normal(size=a.size)
    y = 2.0 + 0.5 * x + np.array([ua[v] for v in a]) + np.array([ub[v] for v in b]) + rng.normal(0, 0.5, a.size)
    return pd.DataFrame({"y": y, "x": x, "member": a, "hospital": b})


def _fake_fit(gd, *, family_sigma=True, S=(4, 500), seed=1):
    """A fit with known posterior draws (iid), through finalize as hp.fit does after sampling."""
    model = hp.random_intercepts(gd, collapse=False)  # the row-level model: the given draws are kept as they are
    desc = hp.describe(model)
    rng = np.random.default_rng(seed)
    C, D = S
    dims = ("chain", "draw")
    post = {N.INTERCEPT: (dims, rng.normal(2.0, 0.1, S)),
            N.TAU: (dims, np.abs(rng.normal(1.0, 0.1, S))),
            N.GROUP_EFFECT: ((*dims, N.GROUP), rng.normal(0, 1.0, (C, D, gd.n_groups)))}
    if gd.n_predictors:
        post[N.BETA] = ((*dims, N.PREDICTOR), rng.normal(0.5, 0.05, (C, D, gd.n_predictors)))
    if family_sigma:
        post[N.SIGMA] = (dims, np.abs(rng.normal(0.5, 0.05, S)))
    for f in gd.factors:
        dim = N.factor_var(N.GROUP, f.name)
        post[N.factor_var(N.GROUP_EFFECT, f.name)] = ((*dims, dim), rng.normal(0, 0.7, (C, D, f.n_levels)))
        post[N.factor_var(N.TAU, f.name)] = (dims, np.abs(rng.normal(0.7, 0.05, S)))
    ds = xr.Dataset(post, coords={"chain": np.arange(C), "draw": np.arange(D)})
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return finalize(xr.DataTree.from_dict({"posterior": ds}), desc, engine="external", log_likelihood=True)


# ------------------------------------------------------------------------------------------------------
# data: formula == keywords, nested level names
def test_crossed_formula_equals_keywords():
    df = _crossed_df()
    a = hp.prepare(df, "y ~ x + (1 | member) + (1 | hospital)")
    b = hp.prepare(df, y="y", group=["member", "hospital"], predictors=["x"])
    assert a.group_name == b.group_name == "member"
    assert a.factor_names == b.factor_names == ["member", "hospital"]
    np.testing.assert_array_equal(a.group_idx, b.group_idx)
    np.testing.assert_array_equal(a.factors[0].idx, b.factors[0].idx)
    assert a.factors[0].levels.tolist() == ["h0", "h1", "h2", "h3"]
    np.testing.assert_array_equal(a.X, b.X)
    assert a.spec()["factors"] == ["member", "hospital"]
    # order is the order written: the first factor is `group`
    c = hp.prepare(df, "y ~ x + (1 | hospital) + (1 | member)")
    assert c.factor_names == ["hospital", "member"] and c.n_groups == 4


def test_nested_formula_equals_keywords_and_level_names():
    # ward labels w0, w1 are reused in every hospital: nested, each (hospital, ward) is its own level
    df = pd.DataFrame({"y": np.arange(12.0) % 5, "hospital": np.repeat(["A", "B", "C"], 4),
                       "ward": np.tile(["w0", "w0", "w1", "w1"], 3)})
    a = hp.prepare(df, "y ~ 1 + (1 | hospital/ward)")
    for b in (hp.prepare(df, y="y", group="hospital/ward"), hp.prepare(df, y="y", group=["hospital", "hospital:ward"])):
        assert a.factor_names == b.factor_names == ["hospital", "hospital:ward"]
        np.testing.assert_array_equal(a.factors[0].idx, b.factors[0].idx)
    assert a.factors[0].levels.tolist() == ["A:w0", "A:w1", "B:w0", "B:w1", "C:w0", "C:w1"]
    np.testing.assert_array_equal(a.factors[0].idx, [0, 0, 1, 1, 2, 2, 3, 3, 4, 4, 5, 5])
    model = hp.random_intercepts(a)
    assert model.coords["group__hospital:ward"] == ("A:w0", "A:w1", "B:w0", "B:w1", "C:w0", "C:w1")
    assert {"group_effect__hospital:ward", "tau__hospital:ward"} <= set(model.named_vars)


def test_model_names_and_priors():
    gd = hp.prepare(_crossed_df(), y="y", group=["member", "hospital"], predictors=["x"])
    m = hp.random_intercepts(gd, priors={"tau__hospital": hp.Prior("HalfNormal", sigma=0.5)})
    assert {"tau", "group_effect__hospital", "tau__hospital", "sigma"} <= set(m.named_vars)
    assert "group_effect" in hp.random_intercepts(gd, collapse=False).named_vars
    # gaussian: "auto" integrates the first factor out given the others (tests/test_crossed_collapse.py)
    assert hp.describe(m).collapse == "gaussian_crossed"
    assert hp.describe(m).priors["tau__hospital"] == hp.Prior("HalfNormal", sigma=0.5)
    r = hp.ridge_fixed_effects(gd, lam=4.0)
    assert "group_effect__hospital" in r.named_vars and "tau__hospital" not in r.named_vars
    g = hp.regularized_hierarchical(gd, penalty="ridge")
    assert "tau__hospital" in g.named_vars


@pytest.mark.parametrize("call, message", [
    (lambda gd, df: hp.random_intercepts(hp.prepare(df.assign(y=(df["y"] > 2).astype(int)), y="y",
                                                    group=["member", "hospital"], family="bernoulli"), collapse=True),
     r"collapse=True: a model with several grouping factors"),
    (lambda gd, df: hp.random_intercepts(gd, collapse="integrated"), r"collapse='integrated'"),
    (lambda gd, df: hp.fit(hp.random_intercepts(gd), sampler="gibbs"), r"several grouping factors"),
    (lambda gd, df: hp.fit(hp.random_intercepts(gd), method="empirical_bayes"), r"fits one grouping factor"),
    (lambda gd, df: hp.random_intercepts(gd, priors={"tau__ward": 1.0}), r"unknown key 'tau__ward'.*tau__hospital"),
    (lambda gd, df: hp.prepare(df, y="y", group=["member", "member"]), r"names the grouping factor 'member' twice"),
    (lambda gd, df: hp.prepare(df, y="y", group=["member", "ward"]), r"grouping factor 'ward' is not a column"),
    (lambda gd, df: hp.prepare(df, y="y", group=["member:hospital", "member"]), r"first grouping factor .* interaction"),
    (lambda gd, df: hp.prepare(df, y="y", group=["member", "x"], predictors=["x"]), r"'x' is also a predictor"),
    (lambda gd, df: hp.prepare(df, "y ~ (1 | member) + (1 | y)"), r"grouping factor 'y' is also the response"),
    (lambda gd, df: hp.prepare(df, y="y", group=[]), r"group must be a column name"),
])
def test_refusals(call, message):
    df = _crossed_df()
    gd = hp.prepare(df, y="y", group=["member", "hospital"])
    with pytest.raises((ValueError, TypeError), match=message):
        call(gd, df)


def test_gibbs_plan_refuses_so_auto_routes_to_nuts():
    from hierpool.inference import gibbs

    df = _crossed_df()
    df["y"] = (df["y"] > df["y"].median()).astype(int)
    gd = hp.prepare(df, y="y", group=["member", "hospital"], predictors=["x"], family="bernoulli")
    assert isinstance(gibbs.plan(hp.random_intercepts(gd)), str)


# ------------------------------------------------------------------------------------------------------
# log-likelihood, analysis with factor=, predict (known posterior draws: exact identities)
def test_pointwise_log_likelihood_includes_every_factor():
    gd = hp.prepare(_crossed_df(), y="y", group=["member", "hospital"], predictors=["x"])
    dt = _fake_fit(gd)
    p = dt["posterior"]
    S = 4 * 500
    a = p["intercept"].values.reshape(S)
    b = p["beta"].values.reshape(S, 1)
    u = p["group_effect"].values.reshape(S, -1)
    v = p["group_effect__hospital"].values.reshape(S, -1)
    s = p["sigma"].values.reshape(S)
    eta = a[:, None] + b @ gd.X.T + u[:, gd.group_idx] + v[:, gd.factors[0].idx]
    hand = -0.5 * ((gd.y - eta) / s[:, None]) ** 2 - np.log(s)[:, None] - 0.5 * np.log(2 * np.pi)
    got = dt["log_likelihood"]["y"].transpose("chain", "draw", "obs_id").values.reshape(S, -1)
    np.testing.assert_allclose(got, hand, rtol=0, atol=1e-8)
    assert json.loads(dt.attrs[N.ATTR_FACTORS]) == ["member", "hospital"]


def test_pointwise_log_likelihood_poisson_nested():
    df = _crossed_df()
    df["y"] = np.random.default_rng(3).poisson(2.0, len(df))
    gd = hp.prepare(df, y="y", group="member/hospital", family="poisson")
    dt = _fake_fit(gd, family_sigma=False)
    p = dt["posterior"]
    S = 2000
    f = gd.factors[0]
    eta = (p["intercept"].values.reshape(S, 1) + p["group_effect"].values.reshape(S, -1)[:, gd.group_idx]
           + p[f"group_effect__{f.name}"].values.reshape(S, -1)[:, f.idx])
    from scipy.special import gammaln
    hand = gd.y * eta - np.exp(eta) - gammaln(gd.y + 1)
    got = dt["log_likelihood"]["y"].values.reshape(S, -1)
    np.testing.assert_allclose(got, hand, rtol=0, atol=1e-8)


def test_analysis_functions_take_the_factor():
    gd = hp.prepare(_crossed_df(), y="y", group=["member", "hospital"], predictors=["x"])
    dt = _fake_fit(gd)
    first = hp.shrinkage(dt)
    assert len(first) == 12 and first["group"].iloc[0] == "m0"
    tab = hp.shrinkage(dt, factor="hospital")
    assert tab["group"].tolist() == ["h0", "h1", "h2", "h3"]
    # the estimate of a hospital: intercept at the predictors' mean + its effect; other factor at 0
    p = dt["posterior"]
    iac = p["intercept"] + p["beta"].sel(predictor="x") * float(np.mean(gd.X[:, 0]))
    expect = (iac + p["group_effect__hospital"]).mean(("chain", "draw")).values
    np.testing.assert_allclose(tab["estimate"].to_numpy(), expect, atol=1e-8)
    assert tab["n"].tolist() == [24, 24, 24, 24]
    np.testing.assert_allclose(hp.shrinkage(dt, factor="member")["estimate"], first["estimate"], atol=1e-12)
    ranks = hp.rank_groups(dt, factor="hospital")
    assert sorted(ranks["group"]) == ["h0", "h1", "h2", "h3"]
    prof = hp.profile(dt, factor="hospital")
    assert len(prof) == 4
    with pytest.raises(ValueError, match=r"factor='ward' is not a grouping factor of this fit; valid choices: "
                                         r"'member', 'hospital'"):
        hp.shrinkage(dt, factor="ward")
    # save/load keeps the factors
    assert hp.select_factor(dt, None) is dt


@pytest.mark.parametrize("factor,other", [(None, "hospital"), ("hospital", "member")])
def test_ridge_path_holds_the_other_factor_in_the_fixed_part(factor, other):
    """Gaussian ridge path, exact: u_j(lam) = sum_i r_ij / (n_j + sigma^2 lam), r = y - a - x b - u_other at
    the posterior means (until 2026-12-08 the other factor's effects were left out of r)."""
    df = _crossed_df()
    gd = hp.prepare(df, y="y", group=["member", "hospital"], predictors=["x"])
    dt = _fake_fit(gd)
    p = dt["posterior"].mean(("chain", "draw"))
    mine = factor or "member"
    u_other = p[f"group_effect__{other}"] if other == "hospital" else p["group_effect"]
    u_other = pd.Series(u_other.values, index=u_other[u_other.dims[0]].values)
    a, b, sig2 = float(p["intercept"]), float(p["beta"].sel(predictor="x")), float(p["sigma"]) ** 2
    r = df["y"] - a - b * df["x"] - df[other].map(u_other)
    lam = 1.7
    u = r.groupby(df[mine], sort=False).sum() / (r.groupby(df[mine], sort=False).size() + sig2 * lam)
    path = hp.ridge_path(dt, lams=[lam], factor=factor).set_index("group")["estimate"]
    np.testing.assert_allclose(path.loc[u.index].to_numpy(), a + b * df["x"].mean() + u.to_numpy(), atol=1e-8)
    tg = hp.triple_goal(dt, factor=factor)
    assert tg["group"].tolist() == list(u.index)


def test_predict_known_and_new_levels():
    gd = hp.prepare(_crossed_df(), y="y", group=["member", "hospital"], predictors=["x"])
    dt = _fake_fit(gd)
    p = dt["posterior"]
    new = pd.DataFrame({"member": ["m1", "new1", "new2", "m2"], "hospital": ["h2", "h2", "new", "new"],
                        "x": [0.0, 0.0, 0.0, 0.0]})
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        tab = hp.predict(dt, new, random_seed=1)
    assert tab["new_group"].tolist() == [False, True, True, False]
    assert tab["new_group__hospital"].tolist() == [False, False, True, True]
    a = p["intercept"]
    # known member at a known hospital: posterior mean of intercept + both effects (exact)
    exact = float((a + p["group_effect"].sel(group="m1") + p["group_effect__hospital"].sel(group__hospital="h2")).mean())
    assert tab["estimate"].iloc[0] == pytest.approx(exact, abs=1e-8)
    # new member at a known hospital: its effect is drawn from Normal(0, tau) per draw: the mean differs
    # from intercept + hospital effect by the mean of 2,000 such draws, sd about tau / sqrt(2000) = 0.022;
    # allow 5 of those (0.11)
    S = 2000
    ref = float((a + p["group_effect__hospital"].sel(group__hospital="h2")).mean())
    assert tab["estimate"].iloc[1] == pytest.approx(ref, abs=5 * 1.0 / np.sqrt(S))
    # both new: sd of the mean of the drawn effects sqrt(tau^2 + tau_h^2) / sqrt(S) ~ 0.027; allow 5 of them
    assert tab["estimate"].iloc[2] == pytest.approx(float(a.mean()), abs=5 * np.sqrt(1.0 + 0.49) / np.sqrt(S))
    # a new level's effect adds its tau^2 to the variance of E[y]: row 1 has var(intercept) + var(hospital
    # effect) + E[tau^2]; the SD of 2,000 draws has relative standard error ~1/sqrt(2 x 2000) = 1.6%: allow 5%
    var1 = float(a.var() + p["group_effect__hospital"].sel(group__hospital="h2").var() + (p["tau"] ** 2).mean())
    assert tab["std_error"].iloc[1] == pytest.approx(np.sqrt(var1), rel=0.05)
    var2 = float(a.var() + (p["tau"] ** 2).mean() + (p["tau__hospital"] ** 2).mean())
    assert tab["std_error"].iloc[2] == pytest.approx(np.sqrt(var2), rel=0.05)
    draws = hp.predict(dt, new, kind="draws", random_seed=1)
    assert draws.sizes["obs_id"] == 4


def test_save_load_round_trip(tmp_path):
    df = pd.DataFrame({"y": np.arange(12.0) % 5, "hospital": np.repeat(["A", "B", "C"], 4),
                       "ward": np.tile(["w0", "w0", "w1", "w1"], 3)})
    dt = _fake_fit(hp.prepare(df, y="y", group="hospital/ward"))
    hp.save(dt, tmp_path / "fit.nc")
    back = hp.load(tmp_path / "fit.nc")
    pd.testing.assert_frame_equal(hp.shrinkage(back, factor="hospital:ward"), hp.shrinkage(dt, factor="hospital:ward"))


# ------------------------------------------------------------------------------------------------------
# slow: Penicillin against lmer, analysis on a real fit, SBC
# lme4 1.1-31, R 4.2:  m <- lmer(diameter ~ 1 + (1|plate) + (1|sample), data = Penicillin, REML = TRUE)
#   fixef(m) = 22.97222222, sqrt(diag(vcov(m))) = 0.8085953614
#   VarCorr: plate sd 0.8467025103, sample sd 1.9316137923, residual sd 0.5499226821
LMER = {"intercept": 22.97222222, "intercept_se": 0.8085953614, "plate": 0.8467025103,
        "sample": 1.9316137923, "sigma": 0.5499226821}


@pytest.fixture(scope="module")
def penicillin_fit():
    df = hp.datasets.load("penicillin")
    model = hp.random_intercepts(df, formula="diameter ~ 1 + (1 | plate) + (1 | sample)", centered=True)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return hp.fit(model, draws=1000, tune=1000, chains=4, cores=2, random_seed=11, progressbar=False,
                      target_accept=0.95)


@pytest.mark.slow
def test_penicillin_matches_lmer_reml(penicillin_fit):
    """Posterior medians against lmer's REML estimates. Allowances: sigma (144 rows, posterior sd ~0.037)
    and the intercept (posterior sd ~0.9, about lmer's SE 0.81) tightly: within 0.03 and 0.3; the plate SD
    (24 levels, posterior sd ~0.15) within 0.15 (the median sits above the REML mode of a skewed
    posterior); the sample SD loosely, within 0.6 and above REML: 6 levels leave its posterior wide
    (sd ~0.65) and right-skewed, with a median above the REML estimate, as for any SD from 6 groups."""
    p = penicillin_fit["posterior"]
    med = {k: float(p[v].median()) for k, v in (("intercept", "intercept"), ("sigma", "sigma"),
                                                   ("plate", "tau"), ("sample", "tau__sample"))}
    assert med["sigma"] == pytest.approx(LMER["sigma"], abs=0.03)
    assert med["intercept"] == pytest.approx(LMER["intercept"], abs=0.3)
    assert float(p["intercept"].std()) == pytest.approx(LMER["intercept_se"], rel=0.35)
    assert med["plate"] == pytest.approx(LMER["plate"], abs=0.15)
    assert LMER["sample"] - 0.1 < med["sample"] < LMER["sample"] + 0.6
    rep = json.loads(penicillin_fit.attrs[N.ATTR_DIAGNOSTICS])
    assert rep["divergences"] <= 10, rep


@pytest.mark.slow
def test_penicillin_analysis_by_factor(penicillin_fit):
    shr = hp.shrinkage(penicillin_fit, factor="sample")
    assert shr["group"].tolist() == list("ABCDEF")
    # sample effects spread more than plate effects (lmer: SDs 1.93 and 0.85 mm)
    assert np.std(shr["estimate"]) > 1.5 * np.std(hp.shrinkage(penicillin_fit)["estimate"])
    ranks = hp.rank_groups(penicillin_fit, factor="sample", top_k=1)
    assert ranks.iloc[0]["group"] == "A"  # sample A has the largest mean diameter
    assert len(hp.profile(penicillin_fit, factor="sample")) == 6
    import matplotlib

    matplotlib.use("Agg")
    hp.plots.funnel_plot(penicillin_fit, factor="sample")
    hp.plots.caterpillar(penicillin_fit, factor="sample")
    hp.plots.shrinkage_plot(penicillin_fit, factor="sample")
    new = pd.DataFrame({"plate": ["a", "zz", "zz"], "sample": ["A", "A", "Q"]})
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        tab = hp.predict(penicillin_fit, new, random_seed=2)
    assert tab["std_error"].iloc[0] < tab["std_error"].iloc[1] < tab["std_error"].iloc[2]
    import arviz as az

    loo = az.loo(penicillin_fit)  # the stored log-likelihood (every factor's effect in it) serves PSIS-LOO
    assert np.isfinite(loo.elpd)


@pytest.mark.slow
def test_sbc_crossed_with_failing_control():
    """SBC of a crossed gaussian model (8 members x 4 hospitals, each pair once): the correct pair gives
    uniform ranks; data generated with tau__hospital ~ HalfNormal(1) but fitted under HalfNormal(0.1)
    must be rejected (same chi-square test, alpha = 0.01 Bonferroni)."""
    from validation import sbc

    rng = np.random.default_rng(0)
    design = pd.DataFrame({"member": np.repeat([f"g{i}" for i in range(8)], 4),
                           "hospital": np.tile([f"h{j}" for j in range(4)], 8)})
    design["y"] = rng.normal(size=len(design))
    gd = hp.prepare(design, y="y", group=["member", "hospital"])
    priors = {k: v for k, v in sbc.SBC_PRIORS.items() if k != "beta"}
    priors["tau__hospital"] = hp.Prior("HalfNormal", sigma=1.0)
    params = ["intercept", "tau", "tau__hospital", "sigma", "group_effect[g0]", "group_effect__hospital[h0]"]

    def run(fit_priors, n_sims, seed):
        fit_m = hp.random_intercepts(gd, priors=fit_priors, collapse=False)  # the row-level model's SBC
        data_m = hp.random_intercepts(gd, priors=priors, collapse=False)
        import nutpie

        with sbc.quiet():
            compiled = nutpie.compile_pymc_model(fit_m, var_names=["intercept", "tau", "sigma", "group_effect",
                                                                   "tau__hospital", "group_effect__hospital"])
        ranks = sbc.sbc_ranks(fit_m, data_model=data_m, n_sims=n_sims, seed=seed, parameters=params,
                              compiled=compiled, target_accept=0.95)
        return sbc.rank_uniformity(ranks, alpha=0.01)

    good = run(priors, 100, 5)
    assert good["uniform"].all(), good.to_string()
    bad = run({**priors, "tau__hospital": hp.Prior("HalfNormal", sigma=0.1)}, 60, 6)
    assert not bad.set_index("parameter").loc["tau__hospital", "uniform"], bad.to_string()
