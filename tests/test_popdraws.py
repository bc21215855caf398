"""A fit thinned for memory keeps every draw of the population parameters (hierpool issue 17).

When chains x draws x groups exceeds ``max_group_effect_values`` only the group effects are thinned:
``posterior`` keeps every draw of intercept, beta, tau and sigma, and ``posterior_group_effects`` holds
``group_effect`` (float32) at every k-th draw, with the kept draws' labels as its ``draw`` coordinate.

The fast tests need no MCMC: a hand-made autocorrelated trace of the sampled parameters of a collapsed
gaussian model goes through :func:`hierpool.from_trace` (the same ``finalize`` as ``hp.fit``), with a
small ``max_group_effect_values`` to force thinning. Every analysis function is checked against an
independent reference: the same fit laid out the old way, its posterior thinned by hand
(``posterior.isel(draw=slice(None, None, k))`` plus ``group_effect``), which the results must equal
exactly (same draws, same arithmetic); ``implied_ridge``, which reads no group effects, uses every draw of
tau and sigma, as the same fit unthinned. The Gibbs path is run for real (a few seconds, no compilation).
"""

from __future__ import annotations

import warnings

import arviz as az
import numpy as np
import pandas as pd
import pytest
import xarray as xr
from conftest import quiet_fit

import hierpool as hp
from hierpool.analysis.fitview import as_fit
from hierpool.core import names as N
from hierpool.inference.diagnostics import check_sampling

C, D, THIN = 4, 200, 8
POP = [N.INTERCEPT, N.BETA, N.TAU, N.SIGMA]


def _ar1(rng, mu, sd, shape, rho=0.8):
    """Autocorrelated chains (AR(1), lag-1 correlation ``rho``) around ``mu``: R-hat and ESS differ
    visibly between all draws and every k-th one."""
    e = rng.normal(size=shape)
    out = np.empty(shape)
    out[:, 0] = e[:, 0]
    for d in range(1, shape[1]):
        out[:, d] = rho * out[:, d - 1] + np.sqrt(1 - rho**2) * e[:, d]
    return mu + sd * out


@pytest.fixture(scope="module")
def data():
    df = hp.datasets.simulate_gaussian(n_groups=20, seed=1)
    model = hp.random_intercepts(df, y="y", group="group", predictors=["x1"])
    gd = hp.describe(model).data
    rng = np.random.default_rng(7)
    ds = xr.Dataset(
        {N.INTERCEPT: (N.SAMPLE_DIMS, _ar1(rng, gd.y_location, 0.1, (C, D))),
         N.BETA: ((*N.SAMPLE_DIMS, N.PREDICTOR), _ar1(rng, 0.5, 0.05, (C, D))[..., None]),
         N.TAU: (N.SAMPLE_DIMS, np.abs(_ar1(rng, 0.8, 0.1, (C, D)))),
         N.SIGMA: (N.SAMPLE_DIMS, np.abs(_ar1(rng, 1.0, 0.05, (C, D))))},
        coords={"chain": np.arange(C), "draw": np.arange(D), N.PREDICTOR: ["x1"]})
    stats = xr.Dataset({"diverging": (N.SAMPLE_DIMS, np.zeros((C, D), dtype=bool))},
                       coords={"chain": np.arange(C), "draw": np.arange(D)})
    return df, model, gd, ds, stats


def _from_trace(model, ds, stats=None, **kw):
    tree = {"posterior": ds, **({"sample_stats": stats} if stats is not None else {})}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", hp.HierpoolSamplingWarning)
        return hp.from_trace(xr.DataTree.from_dict(tree), model, random_seed=3, **kw)


@pytest.fixture(scope="module")
def thinned(data):
    _, model, gd, ds, stats = data
    # budget: 1/8 of chains x draws x groups -> every 8th draw
    return _from_trace(model, ds, stats, max_group_effect_values=C * D * gd.n_groups / THIN, log_likelihood=True)


def aligned_reference(dt: xr.DataTree, positions=None) -> xr.DataTree:
    """The thinned fit in the unthinned layout, built by hand (not through FitView): the posterior at the
    kept draws (every k-th, or the given ``positions``, by position) with ``group_effect`` in it, the other
    groups as they are."""
    post = dt["posterior"].to_dataset()
    post = post.isel(draw=slice(None, None, int(dt.attrs[N.ATTR_THIN])) if positions is None else positions)
    ge = dt[N.GROUP_EFFECTS_GROUP][N.GROUP_EFFECT]
    np.testing.assert_array_equal(ge["draw"].values, post["draw"].values)
    post[N.GROUP_EFFECT] = ge
    children = {name: dt[name].to_dataset() for name in dt.children if name != N.GROUP_EFFECTS_GROUP}
    children["posterior"] = post
    out = xr.DataTree.from_dict(children)
    out.attrs = dict(dt.attrs)
    return out


@pytest.fixture(scope="module")
def reference(thinned):
    return aligned_reference(thinned)


# ------------------------------------------------------------------------------------------------------
# layout
def test_posterior_keeps_every_draw_of_the_population_parameters(thinned, data):
    _, _, gd, ds, _ = data
    post = thinned["posterior"]
    assert set(post.data_vars) == set(POP)  # no group_effect here
    assert N.GROUP not in post.dims
    for v in POP:  # exactly what was sampled, every chain and draw
        np.testing.assert_array_equal(post[v].values, ds[v].values)
    assert thinned.attrs[N.ATTR_THIN] == THIN
    assert thinned["sample_stats"].sizes["draw"] == D


def test_group_effects_are_thinned_in_their_own_group(thinned, data):
    _, _, gd, _, _ = data
    ge = thinned[N.GROUP_EFFECTS_GROUP][N.GROUP_EFFECT]
    assert ge.dims == (*N.SAMPLE_DIMS, N.GROUP)
    assert ge.dtype == np.float32  # documented: thinned group effects are stored in float32
    assert ge.shape == (C, D // THIN, gd.n_groups)
    np.testing.assert_array_equal(ge["draw"].values, np.arange(0, D, THIN))  # labels in the full chains
    assert list(ge[N.GROUP].values) == list(gd.groups)
    # the log-likelihood needs group effects: computed at the kept draws, with their labels
    np.testing.assert_array_equal(thinned["log_likelihood"]["draw"].values, np.arange(0, D, THIN))


def test_group_effects_are_the_exact_draws_at_the_kept_draws(thinned, data):
    """The conditional draws of the kept population draws, exactly (float32, as thinned fits store them;
    the same seed): the group effects belong to the population draws they are stored with. And they
    have the conditional normal of those draws: standardized by its exact mean and sd they are N(0, 1)
    (2,000 values: mean and variance within 4 standard errors)."""
    from hierpool.inference.conditional import collapsed_group_effects, conditional_group_effects

    _, model, gd, ds, _ = data
    kept = ds.isel(draw=slice(None, None, THIN))
    expected = collapsed_group_effects(kept, hp.describe(model), 3, dtype=np.float32)
    got = thinned[N.GROUP_EFFECTS_GROUP][N.GROUP_EFFECT]
    np.testing.assert_array_equal(got.values, expected.values)

    a_c = kept[N.INTERCEPT] + (kept[N.BETA] * xr.DataArray(gd.x_center, dims=N.PREDICTOR)).sum(N.PREDICTOR)
    b_std = (kept[N.BETA] * xr.DataArray(gd.x_scale, dims=N.PREDICTOR)).transpose(*N.SAMPLE_DIMS, N.PREDICTOR)
    m, sd = conditional_group_effects(gd.gaussian, a_c.values, b_std.values, kept[N.TAU].values,
                                      kept[N.SIGMA].values)
    z = ((got.values.astype(np.float64) - m) / sd).reshape(-1)
    n = z.size  # 4 chains x 25 kept draws x 20 groups = 2,000
    assert abs(z.mean()) < 4 / np.sqrt(n) and abs(z.var() - 1) < 4 * np.sqrt(2 / n), (z.mean(), z.var())


def test_unthinned_layout_is_unchanged(data):
    _, model, gd, ds, stats = data
    dt = _from_trace(model, ds, stats, max_group_effect_values=1e9)
    assert N.GROUP_EFFECTS_GROUP not in dt.children
    assert dt.attrs[N.ATTR_THIN] == 1
    post = dt["posterior"]
    assert set(post.data_vars) == {*POP, N.GROUP_EFFECT}
    assert post[N.GROUP_EFFECT].dtype == np.float64 and post.sizes["draw"] == D
    fv = as_fit(dt)
    assert not fv.thinned
    xr.testing.assert_identical(fv.post, post.to_dataset())


# ------------------------------------------------------------------------------------------------------
# diagnostics: hierpool's report and az.summary read the same draws
def test_report_and_az_summary_agree(thinned):
    report = hp.summarize(thinned).diagnostics
    assert report["draws"] == D and report["chains"] == C and report["thinned_for_group_effects"] == THIN
    s = az.summary(thinned, var_names=POP, round_to="none")
    # the same estimators on the same draws (tests/test_kernels.py: equal to 1e-8)
    np.testing.assert_allclose(report["max_rhat"], s["r_hat"].max(), rtol=1e-8)
    np.testing.assert_allclose(report["min_ess_bulk"], s["ess_bulk"].min(), rtol=1e-8)
    np.testing.assert_allclose(report["min_ess_tail"], s["ess_tail"].min(), rtol=1e-8)
    # and summarize's own table is az.summary of all draws, its header counts them
    summ = hp.summarize(thinned)
    assert summ.draws == D
    np.testing.assert_allclose(summ.parameters["r_hat"].to_numpy(), s["r_hat"].to_numpy(), rtol=1e-12)
    # the old layout lost this: every 8th draw of AR(1) chains gives other (noisier) numbers
    old = az.summary(aligned_reference(thinned), var_names=POP, round_to="none")
    assert not np.allclose(old["ess_bulk"].to_numpy(), s["ess_bulk"].to_numpy(), rtol=0.05)


def test_check_sampling_diagnoses_group_effects_on_their_own_draws(thinned):
    rep = check_sampling(thinned, warn=False)
    ge = thinned[N.GROUP_EFFECTS_GROUP].to_dataset()
    r_ge = float(az.rhat(ge)[N.GROUP_EFFECT].max())
    r_pop = float(az.summary(thinned, var_names=POP, round_to="none")["r_hat"].max())
    # rtol 1e-6: arviz ranks the float32 group effects in float32, hierpool in float64 (differences ~1e-8)
    np.testing.assert_allclose(rep["max_rhat"], max(r_ge, r_pop), rtol=1e-6)
    assert rep["draws"] == D


# ------------------------------------------------------------------------------------------------------
# the analysis reads the aligned posterior
def test_fitview_aligns_without_copying(thinned, reference):
    fv = as_fit(thinned)
    assert fv.thinned
    xr.testing.assert_identical(fv.post, as_fit(reference).post)
    stored = thinned[N.GROUP_EFFECTS_GROUP][N.GROUP_EFFECT].values
    assert np.shares_memory(fv.post[N.GROUP_EFFECT].values, stored)
    assert fv.population_post.sizes["draw"] == D


def _frames_equal(a, b):
    pd.testing.assert_frame_equal(a.reset_index(drop=True), b.reset_index(drop=True), check_exact=False,
                                  rtol=1e-12, atol=1e-12)


def test_every_analysis_function_equals_the_aligned_draws(thinned, reference, data):
    df = data[0]
    _frames_equal(hp.shrinkage(thinned), hp.shrinkage(reference))
    # implied_ridge needs no group effects: every draw of tau and sigma, as the fit with no thinning at all
    _, model, _, ds, stats = data
    _frames_equal(hp.implied_ridge(thinned), hp.implied_ridge(_from_trace(model, ds, stats, max_group_effect_values=1e9)))
    assert not hp.implied_ridge(thinned)["estimate"].equals(hp.implied_ridge(reference)["estimate"])
    _frames_equal(hp.rank_groups(thinned, top_k=3), hp.rank_groups(reference, top_k=3))
    _frames_equal(hp.profile(thinned), hp.profile(reference))
    _frames_equal(hp.ppc(thinned, n_draws=50, plot=False, random_seed=1).table,
                  hp.ppc(reference, n_draws=50, plot=False, random_seed=1).table)
    new = pd.concat([df.head(4), df.head(2).assign(group="a new group")], ignore_index=True)
    _frames_equal(hp.predict(thinned, new, random_seed=1), hp.predict(reference, new, random_seed=1))
    from hierpool.analysis.features import group_features

    a, pa = group_features(thinned)
    b, pb = group_features(reference)
    _frames_equal(a, b)
    pd.testing.assert_series_equal(pa, pb, rtol=1e-12)
    _frames_equal(hp.summarize(thinned).shrinkage, hp.summarize(reference).shrinkage)


def test_caterpillar_plots_the_thinned_fit(thinned, reference):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    f1, f2 = hp.plots.caterpillar(thinned), hp.plots.caterpillar(reference)
    for l1, l2 in zip(f1.axes[0].lines, f2.axes[0].lines, strict=True):
        np.testing.assert_array_equal(l1.get_xdata(), l2.get_xdata())
    plt.close("all")


@pytest.mark.filterwarnings("ignore:.*Pareto k:UserWarning")
def test_compare_uses_the_aligned_draws(thinned, reference, data):
    _, model, _, ds, stats = data
    other = _from_trace(model, ds, stats, max_group_effect_values=1e9)  # every draw, old layout
    a = hp.compare({"thinned": thinned, "all draws": other}).set_index("model")
    b = hp.compare({"thinned": reference, "all draws": other}).set_index("model")
    np.testing.assert_allclose(a.loc["thinned", "elpd"], b.loc["thinned", "elpd"], rtol=1e-12)
    np.testing.assert_allclose(a.loc["thinned", "se"], b.loc["thinned", "se"], rtol=1e-12)


# ------------------------------------------------------------------------------------------------------
# a budget that no whole stride fills: m evenly spaced draws of each chain's D
M_UNEVEN = 60  # of D = 200: 3.33 draws per kept draw (every 3rd would exceed the budget, every 4th keep 50)


@pytest.fixture(scope="module")
def uneven(data):
    _, model, gd, ds, stats = data
    return _from_trace(model, ds, stats, max_group_effect_values=C * M_UNEVEN * gd.n_groups + 1,
                       log_likelihood=True)


def test_uneven_thinning_keeps_as_many_evenly_spaced_draws_as_fit(uneven, data):
    """The kept draws are floor(i D / m), i < m, with m the most that fit the budget; their group effects
    are the exact conditional draws of those draws (the same seed), and the attrs and the report say so."""
    from hierpool.core import config
    from hierpool.inference.conditional import collapsed_group_effects

    _, model, gd, ds, _ = data
    at = np.arange(M_UNEVEN) * D // M_UNEVEN
    assert at[:6].tolist() == [0, 3, 6, 10, 13, 16] and at[-1] == 196
    np.testing.assert_array_equal(config.kept_draws(D, C, gd.n_groups, C * M_UNEVEN * gd.n_groups + 1), at)
    ge = uneven[N.GROUP_EFFECTS_GROUP][N.GROUP_EFFECT]
    assert ge.shape == (C, M_UNEVEN, gd.n_groups) and ge.dtype == np.float32
    np.testing.assert_array_equal(ge["draw"].values, at)
    np.testing.assert_array_equal(uneven["log_likelihood"]["draw"].values, at)
    expected = collapsed_group_effects(ds.isel(draw=at), hp.describe(model), 3, dtype=np.float32)
    np.testing.assert_array_equal(ge.values, expected.values)
    assert uneven.attrs[N.ATTR_THIN] == pytest.approx(D / M_UNEVEN)
    import json

    rep = json.loads(uneven.attrs[N.ATTR_DIAGNOSTICS])
    assert rep["group_effect_draws"] == C * M_UNEVEN and rep["thinned_for_group_effects"] == pytest.approx(D / M_UNEVEN)
    assert f"group effects kept at {C * M_UNEVEN} of {C * D} draws" in str(hp.summarize(uneven))
    for v in POP:  # every draw of the population parameters
        np.testing.assert_array_equal(uneven["posterior"][v].values, ds[v].values)


def test_kept_draws_fill_the_budget_and_min_ess_and_no_more():
    """config.kept_draws over a grid: increasing positions from 0 within the chain; at most the budget
    (unless one draw per chain exceeds it); with min_kept, ceil(min_kept / chains) per chain where memory
    and the draws allow, else all that memory and the draws allow; every k-th draw where m divides them."""
    from hierpool.core import config

    for draws in (1, 7, 100, 170, 301, 1000):
        for chains in (1, 4):
            for budget in (10.0, 2_000.0, 1e5, 1e9, np.inf):  # inf: no budget
                for min_kept in (None, 1, 399, 400, 1e6):
                    at = config.kept_draws(draws, chains, 50, budget, min_kept)
                    m = at.size
                    fit = draws if budget == np.inf else max(1, int(budget // (chains * 50)))
                    want = min(draws, fit, draws if min_kept is None else max(1, -(-int(min_kept) // chains)))
                    assert m == want, (draws, chains, budget, min_kept, m, want)
                    assert at[0] == 0 and (np.diff(at) >= 1).all() and at[-1] < draws
                    assert chains * m * 50 <= budget or m == 1
                    assert config.group_effect_dtype(m, draws) == (np.float64 if m == draws else np.float32)
                    if draws % m == 0:
                        np.testing.assert_array_equal(at, np.arange(0, draws, draws // m))
                        assert config.thin_ratio(draws, m) == draws // m
                    else:
                        assert config.thin_ratio(draws, m) == draws / m


def test_uneven_thinning_analysis_equals_the_aligned_draws(uneven, data, tmp_path):
    ref = aligned_reference(uneven, np.arange(M_UNEVEN) * D // M_UNEVEN)
    _frames_equal(hp.shrinkage(uneven), hp.shrinkage(ref))
    _frames_equal(hp.rank_groups(uneven, top_k=3), hp.rank_groups(ref, top_k=3))
    _frames_equal(hp.profile(uneven), hp.profile(ref))
    df = data[0]
    _frames_equal(hp.predict(uneven, df.head(5), random_seed=1), hp.predict(ref, df.head(5), random_seed=1))
    back = hp.load(hp.save(uneven, tmp_path / "fit.nc"))  # the float attr survives netCDF
    assert back.attrs[N.ATTR_THIN] == pytest.approx(D / M_UNEVEN)
    _frames_equal(hp.rank_groups(back), hp.rank_groups(uneven))


# ------------------------------------------------------------------------------------------------------
# save / load
@pytest.mark.parametrize("suffix", [".nc", ".zarr"])
def test_save_load_round_trip(thinned, tmp_path, suffix):
    path = hp.save(thinned, tmp_path / f"fit{suffix}")
    back = hp.load(path)
    assert set(back.children) == set(thinned.children)
    for name in thinned.children:
        xr.testing.assert_equal(back[name].to_dataset(), thinned[name].to_dataset())
    assert back[N.GROUP_EFFECTS_GROUP][N.GROUP_EFFECT].dtype == np.float32
    assert int(back.attrs[N.ATTR_THIN]) == THIN
    _frames_equal(hp.shrinkage(back), hp.shrinkage(thinned))
    _frames_equal(hp.rank_groups(back), hp.rank_groups(thinned))


# ------------------------------------------------------------------------------------------------------
# bad input
def test_as_fit_refuses_group_effects_that_match_no_posterior_draw(thinned):
    bad = thinned.copy()
    ge = bad[N.GROUP_EFFECTS_GROUP].to_dataset()
    bad[N.GROUP_EFFECTS_GROUP] = xr.DataTree(ge.assign_coords(draw=ge["draw"].values + 1000))
    with pytest.raises(ValueError, match="posterior_group_effects does not match the posterior"):
        hp.shrinkage(bad)
    both = thinned.copy()
    post = both["posterior"].to_dataset().isel(draw=slice(None, None, THIN))
    post[N.GROUP_EFFECT] = both[N.GROUP_EFFECTS_GROUP][N.GROUP_EFFECT]
    both["posterior"] = xr.DataTree(post)
    with pytest.raises(ValueError, match="both in posterior and in posterior_group_effects"):
        hp.shrinkage(both)


# ------------------------------------------------------------------------------------------------------
# the Gibbs sampler (logistic with predictors) thins only its group effects too
@pytest.fixture(scope="module")
def gibbs_fit():
    df = hp.datasets.simulate("bernoulli", n_groups=40, group_sizes=(2, 8), n_predictors=2, seed=21)
    model = hp.random_intercepts(df, y="y", group="group", predictors=["x1", "x2"], family="bernoulli",
                                 collapse=False)
    dt = quiet_fit(model, sampler="gibbs", draws=80, tune=40, cores=2, log_likelihood=True,
                   max_group_effect_values=4 * 20 * 40)  # every 4th draw
    return df, dt


def test_gibbs_keeps_every_draw_and_thins_group_effects(gibbs_fit):
    df, dt = gibbs_fit
    assert dt.attrs[N.ATTR_THIN] == 4 and dt.attrs[N.ATTR_SAMPLER] == "gibbs"
    post = dt["posterior"]
    assert set(post.data_vars) == {N.INTERCEPT, N.BETA, N.TAU} and post.sizes["draw"] == 80
    ge = dt[N.GROUP_EFFECTS_GROUP][N.GROUP_EFFECT]
    assert ge.dtype == np.float32 and ge.shape == (4, 20, 40)
    np.testing.assert_array_equal(ge["draw"].values, np.arange(0, 80, 4))
    assert dt["sample_stats"].sizes["draw"] == 80
    # the report: every draw of the population parameters, the group effects at theirs
    import json

    rep = json.loads(dt.attrs[N.ATTR_DIAGNOSTICS])
    assert rep["draws"] == 80
    s = az.summary(dt, var_names=[N.INTERCEPT, N.BETA, N.TAU], round_to="none")
    r_ge = float(az.rhat(dt[N.GROUP_EFFECTS_GROUP].to_dataset())[N.GROUP_EFFECT].max())
    # rtol 1e-6: arviz ranks the float32 group effects in float32, hierpool in float64 (differences ~1e-8)
    np.testing.assert_allclose(rep["max_rhat"], max(s["r_hat"].max(), r_ge), rtol=1e-6)


def test_gibbs_thinned_analysis_equals_the_aligned_draws(gibbs_fit):
    df, dt = gibbs_fit
    ref = aligned_reference(dt)
    _frames_equal(hp.shrinkage(dt), hp.shrinkage(ref))
    _frames_equal(hp.rank_groups(dt), hp.rank_groups(ref))
    _frames_equal(hp.profile(dt), hp.profile(ref))
    _frames_equal(hp.predict(dt, df.head(5), random_seed=2), hp.predict(ref, df.head(5), random_seed=2))
    _frames_equal(hp.ppc(dt, n_draws=40, plot=False, random_seed=2).table,
                  hp.ppc(ref, n_draws=40, plot=False, random_seed=2).table)
    # the log-likelihood of the kept draws is that of the aligned posterior
    from hierpool.inference.sampling import pointwise_log_likelihood

    ll = pointwise_log_likelihood(ref["posterior"].to_dataset(), ref["constant_data"].to_dataset(),
                                  ref["observed_data"][N.Y], "bernoulli")
    np.testing.assert_allclose(dt["log_likelihood"][N.Y].values, ll.values, rtol=1e-12)


def test_gibbs_uneven_thinning_stores_the_chains_own_draws(gibbs_fit):
    """A budget of 12 draws per chain of 80: the group effects stored at floor(i 80 / 12) are the chain's
    own states there (storing does not touch the random stream: the same seed unthinned gives the same
    chains), in float32."""
    df, dt = gibbs_fit
    model = hp.random_intercepts(df, y="y", group="group", predictors=["x1", "x2"], family="bernoulli",
                                 collapse=False)
    at = np.arange(12) * 80 // 12
    uneven = quiet_fit(model, sampler="gibbs", draws=80, tune=40, cores=2, log_likelihood=False,
                       max_group_effect_values=4 * 12 * 40)
    ge = uneven[N.GROUP_EFFECTS_GROUP][N.GROUP_EFFECT]
    assert ge.shape == (4, 12, 40) and ge.dtype == np.float32 and uneven.attrs[N.ATTR_THIN] == pytest.approx(80 / 12)
    np.testing.assert_array_equal(ge["draw"].values, at)
    every = quiet_fit(model, sampler="gibbs", draws=80, tune=40, cores=2, log_likelihood=False,
                      max_group_effect_values=1e9)
    for v in (N.INTERCEPT, N.BETA, N.TAU):
        np.testing.assert_array_equal(uneven["posterior"][v].values, every["posterior"][v].values)
    np.testing.assert_array_equal(ge.values, every["posterior"][N.GROUP_EFFECT].values[:, at].astype(np.float32))
    _frames_equal(hp.shrinkage(uneven), hp.shrinkage(aligned_reference(uneven, at)))


# ------------------------------------------------------------------------------------------------------
# a real fit: nutpie on the collapsed gaussian model, thinned by a small budget
@pytest.mark.slow
def test_nutpie_fit_keeps_every_draw(data):
    _, model, gd, _, _ = data
    dt = quiet_fit(model, sampler="nutpie", draws=500, tune=300, cores=2,
                   max_group_effect_values=4 * 500 * gd.n_groups / 10)
    assert dt.attrs[N.ATTR_THIN] == 10
    assert dt["posterior"].sizes["draw"] == 500 and dt["sample_stats"].sizes["draw"] == 500
    assert dt[N.GROUP_EFFECTS_GROUP].sizes["draw"] == 50
    import json

    rep = json.loads(dt.attrs[N.ATTR_DIAGNOSTICS])
    s = az.summary(dt, var_names=POP, round_to="none")
    np.testing.assert_allclose(rep["max_rhat"], s["r_hat"].max(), rtol=1e-8)
    np.testing.assert_allclose(rep["min_ess_bulk"], s["ess_bulk"].min(), rtol=1e-8)
    _frames_equal(hp.shrinkage(dt), hp.shrinkage(aligned_reference(dt)))
