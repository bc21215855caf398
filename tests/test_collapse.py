"""Exact collapsed likelihoods (issue 4): identities at fixed parameters, and the same posterior."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pymc as pm
import pytest
from conftest import compare_posteriors, quiet_fit
from pymc.testing import mock_sample
from scipy.stats import multivariate_normal

import hierpool as hp
from hierpool.core import names as N
from hierpool.data.stats import count_patterns, gaussian_stats, size_classes
from hierpool.inference.conditional import conditional_group_effects
from hierpool.models.collapse import gaussian_marginal_logp, gaussian_marginal_logp_sizes


def _gaussian_gd(seed=0, n_groups=15, P=2):
    df = hp.datasets.simulate("gaussian", n_groups=n_groups, group_sizes=(1, 6), n_predictors=P, seed=seed)
    return hp.prepare(df, y="y", group="group", predictors=[f"x{k + 1}" for k in range(P)])


@pytest.mark.parametrize("P", [0, 2])
def test_gaussian_marginal_equals_dense_likelihood(P):
    """The collapsed log-likelihood equals the sum of per-group multivariate normal densities (1e-8)."""
    gd = _gaussian_gd(P=P)
    st = gaussian_stats(gd)
    stats = dict(n=st.n, ybar=st.ybar, xbar=st.xbar, syy_w=st.syy_w, sxy_w=st.sxy_w, sxx_w=st.sxx_w, n_obs=st.n_obs)
    Xs = (gd.X - gd.x_center) / gd.x_scale
    rng = np.random.default_rng(5)
    for _ in range(5):
        a, tau, sigma = rng.normal(), rng.uniform(0.2, 2), rng.uniform(0.3, 2)
        b = rng.normal(size=P) if P else None
        mean = a + (Xs @ b if P else np.zeros(gd.n_obs))
        dense = 0.0
        for j in range(gd.n_groups):
            rows = gd.group_idx == j
            n = rows.sum()
            cov = sigma**2 * np.eye(n) + tau**2 * np.ones((n, n))
            dense += multivariate_normal(mean[rows], cov).logpdf(gd.y[rows])
        collapsed = gaussian_marginal_logp(stats, a, b, tau, sigma, lib=np)
        np.testing.assert_allclose(collapsed, dense, rtol=0, atol=1e-8)
        by_size = gaussian_marginal_logp_sizes(size_classes(st), a, b, tau, sigma, lib=np)
        np.testing.assert_allclose(by_size, dense, rtol=0, atol=1e-8)


def test_collapsed_model_logp_is_the_marginal():
    """The model's compiled log density = prior terms + the marginal likelihood, at any point."""
    gd = _gaussian_gd()
    model = hp.random_intercepts(gd)
    assert hp.describe(model).collapse == "gaussian" and N.GROUP_EFFECT not in model.named_vars
    pot = model.compile_fn(model.logp(vars=model.potentials))
    st = gaussian_stats(gd)
    stats = dict(n=st.n, ybar=st.ybar, xbar=st.xbar, syy_w=st.syy_w, sxy_w=st.sxy_w, sxx_w=st.sxx_w, n_obs=st.n_obs)
    point = model.initial_point()
    point.update({"intercept_centered": 0.3, "beta_std": np.array([0.2, -0.4]), "tau_log__": np.log(0.7),
                  "sigma_log__": np.log(1.2)})
    np.testing.assert_allclose(pot(point), gaussian_marginal_logp(stats, 0.3, np.array([0.2, -0.4]), 0.7, 1.2, lib=np),
                               atol=1e-8)


def test_conditional_group_effects_closed_form():
    gd = _gaussian_gd(P=0)
    st = gaussian_stats(gd)
    mean, sd = conditional_group_effects(st, 0.1, None, 0.8, 1.1)
    rho = 0.8**2 / (0.8**2 + 1.1**2 / gd.group_n)
    np.testing.assert_allclose(mean, rho * (gd.group_raw_mean - 0.1), rtol=1e-12)
    np.testing.assert_allclose(sd, np.sqrt(1 / (gd.group_n / 1.1**2 + 1 / 0.8**2)), rtol=1e-12)


@pytest.mark.parametrize("family", ["bernoulli", "binomial", "poisson", "poisson-exposure"])
def test_count_collapse_differs_by_a_constant(family):
    """Collapsed and row-level count models: log densities differ by a parameter-free constant (1e-8).

    Poisson without exposure= is the case simulation-based calibration caught: a cell of r rows has
    exposure r, not 1.
    """
    exposure = family == "poisson-exposure"
    family = family.split("-")[0]
    df = hp.datasets.simulate(family, n_groups=12, group_sizes=(2, 8), n_predictors=0, seed=3)
    df["sex"] = np.where(np.arange(len(df)) % 3 == 0, "f", "m")
    kw = dict(y="y", group="group", predictors=["sex"], family=family)
    if family == "binomial":
        kw["trials"] = "trials"
    if exposure:
        df["exposure"] = 1.0 + (np.arange(len(df)) % 2)
        kw["exposure"] = "exposure"
    gd = hp.prepare(df, **kw)
    full, coll = hp.random_intercepts(gd, collapse=False), hp.random_intercepts(gd, collapse=True)
    assert hp.describe(coll).collapse == "counts"
    assert count_patterns(gd).y.shape[0] < gd.n_obs
    lf, lc = full.compile_logp(), coll.compile_logp()
    rng = np.random.default_rng(1)
    diffs = []
    for _ in range(6):
        pt = full.initial_point()
        pt = {k: rng.normal(size=np.shape(v)) * 0.7 for k, v in pt.items()}
        diffs.append(lf(pt) - lc(pt))
    np.testing.assert_allclose(diffs, diffs[0], rtol=0, atol=1e-8)


@pytest.mark.slow
def test_collapsed_gaussian_posterior_equals_full():
    gd = _gaussian_gd(seed=4, n_groups=30, P=2)
    full = quiet_fit(hp.random_intercepts(gd, collapse=False), draws=1000, tune=700, random_seed=11)
    coll = quiet_fit(hp.random_intercepts(gd), draws=1000, tune=700, random_seed=12)
    assert coll["posterior"][N.GROUP_EFFECT].dims == ("chain", "draw", N.GROUP)
    compare_posteriors(full, coll, [N.INTERCEPT, N.BETA, N.TAU, N.SIGMA, N.GROUP_EFFECT])
    # the stored per-row log-likelihood means the same thing in both
    ll_f = float(full["log_likelihood"][N.Y].mean())
    ll_c = float(coll["log_likelihood"][N.Y].mean())
    assert abs(ll_f - ll_c) < 0.02


@pytest.mark.slow
def test_collapsed_ridge_posterior_equals_full():
    gd = _gaussian_gd(seed=6, n_groups=25, P=1)
    full = quiet_fit(hp.ridge_fixed_effects(gd, lam=2.0, collapse=False), draws=1000, tune=500, random_seed=1)
    coll = quiet_fit(hp.ridge_fixed_effects(gd, lam=2.0), draws=1000, tune=500, random_seed=2)
    assert N.TAU not in coll["posterior"]
    compare_posteriors(full, coll, [N.INTERCEPT, N.BETA, N.SIGMA, N.GROUP_EFFECT])


@pytest.mark.slow
def test_collapsed_bernoulli_posterior_equals_full():
    df = hp.datasets.simulate("bernoulli", n_groups=40, group_sizes=(3, 8), n_predictors=0, seed=8)
    df["flag"] = np.arange(len(df)) % 2 == 0
    gd = hp.prepare(df, y="y", group="group", predictors=["flag"], family="bernoulli")
    full = quiet_fit(hp.random_intercepts(gd, collapse=False), draws=1000, tune=700, random_seed=3)
    coll = quiet_fit(hp.random_intercepts(gd, collapse=True), draws=1000, tune=700, random_seed=4)
    compare_posteriors(full, coll, [N.INTERCEPT, N.BETA, N.TAU, N.GROUP_EFFECT])


def test_thinning_keeps_group_effects_within_budget(sim_gaussian, monkeypatch):
    monkeypatch.setattr(pm, "sample", mock_sample)  # the thinning, not the sampler, is under test: no MCMC
    gd = hp.prepare(sim_gaussian, y="y", group="group")
    dt = quiet_fit(hp.random_intercepts(gd), draws=100, tune=100, max_group_effect_values=60 * 4 * 25,
                   sampler="pymc")
    assert dt.attrs["hierpool_thin"] == 4
    assert dt["posterior"].sizes["draw"] == 100  # every draw of the sampled parameters is kept
    ge = dt[N.GROUP_EFFECTS_GROUP][N.GROUP_EFFECT]  # only the group effects are thinned
    assert ge.shape == (4, 25, 60) and ge["draw"].values.tolist() == list(range(0, 100, 4))
    assert ge.dtype == np.float32  # thinned: stored in float32
    tab = hp.shrinkage(dt)  # the analysis reads float32 posteriors as they are
    assert np.all(np.isfinite(tab["estimate"])) and len(hp.rank_groups(dt)) == 60
    # implied_ridge needs no group effects: it reads every draw of tau and sigma, not the kept quarter
    imp = hp.implied_ridge(dt).set_index("units")
    post = dt["posterior"]
    lam = 1.0 / post[N.TAU].values.ravel() ** 2
    assert imp.loc["lam", "estimate"] == pytest.approx(np.median(lam), rel=1e-12)
    alpha = (post[N.SIGMA].values.ravel() ** 2) * lam  # sigma^2 / tau^2, paired draw by draw
    assert imp.loc["alpha_sklearn", "estimate"] == pytest.approx(np.median(alpha), rel=1e-12)


# ------------------------------------------------------------------------------------------------------
# bernoulli/binomial without predictors: group effects integrated out by adaptive quadrature
def _reference_log_ml(k, n, a, tau):
    """log of the integral by scipy.integrate.quad around the exact conditional mode."""
    from scipy import integrate, optimize

    t2 = tau * tau
    F = lambda u: k - n / (1 + np.exp(-(a + u))) - u / t2  # noqa: E731
    lo, hi = t2 * (k - n) - 1e-9, t2 * k + 1e-9
    m = optimize.brentq(F, lo, hi, xtol=1e-14)
    h = lambda u: k * (a + u) - n * np.logaddexp(0, a + u) - u * u / (2 * t2) - 0.5 * np.log(2 * np.pi * t2)  # noqa: E731
    sc = 1 / np.sqrt(n * 0.25 + 1 / t2)
    val, _ = integrate.quad(lambda u: np.exp(h(u) - h(m)), m - 60 * tau - 10, m + 60 * tau + 10,
                            points=[m - 3 * sc, m, m + 3 * sc], epsabs=0, epsrel=1e-13, limit=2000)
    return h(m) + np.log(val)


@pytest.mark.parametrize("tau,tol", [(0.05, 1e-10), (0.5, 1e-10), (1.0, 1e-10), (2.0, 1e-7), (3.0, 1e-5)])
def test_integrated_marginal_matches_numerical_integration(tau, tol):
    """Adaptive Gauss-Hermite marginal likelihood per pattern against scipy's quad (numpy and pytensor)."""
    from hierpool.models import integrated as I

    for a in (-4.0, -1.0, 0.0, 3.0):
        for n in (1, 3, 8, 40):
            k = np.arange(n + 1.0)
            got = I.marginal_logp(k, np.full_like(k, n), a, tau, lib=np)
            ref = np.array([_reference_log_ml(kk, n, a, tau) for kk in k])
            np.testing.assert_allclose(got, ref, rtol=0, atol=tol)
    sym = I.marginal_logp(k, np.full_like(k, n), pt_scalar(a), pt_scalar(tau)).eval()
    np.testing.assert_allclose(sym, I.marginal_logp(k, np.full_like(k, n), a, tau, lib=np), rtol=1e-12)


@pytest.mark.parametrize("mode", ["NUMBA", "FAST_RUN"])
def test_integrated_op_gradient_matches_finite_differences(mode):
    """The compiled Op's gradient (used by NUTS) against central differences of the numpy reference."""
    import pytensor
    import pytensor.tensor as pt

    from hierpool.models import integrated as I

    k = np.concatenate([np.arange(t + 1.0) for t in (1, 2, 5, 8)])
    n = np.concatenate([np.full(t + 1, float(t)) for t in (1, 2, 5, 8)])
    c = np.arange(k.size) % 5 + 1.0
    a, tau = pt.dscalar("a"), pt.dscalar("tau")
    total = pt.sum(c * I.marginal_logp(k, n, a, tau))
    f = pytensor.function([a, tau], [total, *pytensor.grad(total, [a, tau])], mode=mode)

    def ref(av, tv):
        return float(np.sum(c * I.marginal_logp(k, n, av, tv, lib=np)))

    for av, tv in [(-1.0, 0.7), (0.5, 2.0), (-3.0, 0.1)]:
        value, ga, gt = (float(v) for v in f(av, tv))
        assert value == pytest.approx(ref(av, tv), rel=1e-12)
        h = 1e-6
        assert ga == pytest.approx((ref(av + h, tv) - ref(av - h, tv)) / (2 * h), rel=1e-6, abs=1e-6)
        assert gt == pytest.approx((ref(av, tv + h) - ref(av, tv - h)) / (2 * h), rel=1e-6, abs=1e-6)


@pytest.mark.parametrize("mode", ["NUMBA", "FAST_RUN"])
def test_integrated_op_skips_unobserved_patterns_exactly(mode):
    """With ``counts=`` the Op evaluates only the patterns some group shows (0 elsewhere): the model's total
    and its gradient equal the every-pattern version to 1e-12, and a refit to other counts (a data
    container changed in place) is right too."""
    import pytensor
    import pytensor.tensor as pt

    from hierpool.models import integrated as I

    k = np.concatenate([np.arange(t + 1.0) for t in (1, 4, 30)])
    n = np.concatenate([np.full(t + 1, float(t)) for t in (1, 4, 30)])
    rng = np.random.default_rng(3)
    c_data = pytensor.shared(np.where(rng.random(k.size) < 0.2, rng.integers(1, 9, k.size), 0).astype(float))
    a, tau = pt.dscalar("a"), pt.dscalar("tau")
    per = I.marginal_logp(k, n, a, tau, counts=c_data)
    total = pt.sum(c_data * per)
    f = pytensor.function([a, tau], [per, total, *pytensor.grad(total, [a, tau])], mode=mode)
    full = pt.sum(c_data * I.marginal_logp(k, n, a, tau))
    g = pytensor.function([a, tau], [full, *pytensor.grad(full, [a, tau])], mode=mode)
    for counts in (c_data.get_value(), (np.arange(k.size) % 3 == 0) * 2.0):
        c_data.set_value(counts)
        for av, tv in [(-1.0, 0.7), (0.5, 2.0)]:
            per_v, *got = f(av, tv)
            ref = I.marginal_logp(k, n, av, tv, lib=np)
            seen = counts != 0
            assert seen.any() and not seen.all()
            np.testing.assert_allclose(per_v[seen], ref[seen], rtol=1e-12)
            assert np.all(per_v[~seen] == 0.0)
            np.testing.assert_allclose(got, g(av, tv), rtol=1e-12)


def pt_scalar(v):
    import pytensor.tensor as pt

    return pt.as_tensor_variable(np.float64(v))


def test_integrated_patterns_and_refit_data():
    from hierpool.models import integrated as I
    from hierpool.models.collapse import data_for

    df = hp.datasets.simulate("bernoulli", n_groups=30, group_sizes=(1, 4), n_predictors=0, seed=2)
    model = hp.random_intercepts(df, y="y", group="group", family="bernoulli")
    assert hp.describe(model).collapse == "integrated"
    assert set(model.free_RVs) == {model["intercept_centered"], model["tau"]}
    gd = hp.describe(model).data
    pat = I.patterns(np.bincount(gd.group_idx, weights=gd.y), gd.group_n)
    assert pat.counts.sum() == 30 and len(pat.k) == sum(t + 1 for t in np.unique(gd.group_n))
    np.testing.assert_array_equal(pat.k[pat.group_pattern], np.bincount(gd.group_idx, weights=gd.y))
    flipped = 1.0 - gd.y
    new = data_for(model, flipped)["pattern_counts"]
    np.testing.assert_array_equal(new, I.patterns(np.bincount(gd.group_idx, weights=flipped), gd.group_n).counts)
    with_x = hp.datasets.simulate("bernoulli", n_groups=30, group_sizes=(1, 4), n_predictors=1, seed=2)
    with pytest.raises(ValueError, match="collapse='integrated' needs"):
        hp.random_intercepts(with_x, y="y", group="group", predictors=["x1"], family="bernoulli",
                             collapse="integrated")
    with pytest.raises(ValueError, match="valid choices: 'auto', True, False, 'integrated'"):
        hp.random_intercepts(df, y="y", group="group", family="bernoulli", collapse="laplace")


def test_integrated_conditional_draws_match_quadrature():
    """Rejection draws of one group's effect: mean and sd equal the quadrature moments (MC error)."""
    from hierpool.models import integrated as I

    pat = I.patterns(np.array([0.0, 3.0, 5.0]), np.array([5.0, 5.0, 5.0]))
    S = 40_000
    u = I.draw_group_effects(pat, np.full(S, -1.0), np.full(S, 1.3), np.random.SeedSequence(3))
    grid = np.linspace(-12, 12, 20_001)
    for j, k in enumerate([0.0, 3.0, 5.0]):
        logf = k * (-1 + grid) - 5 * np.logaddexp(0, -1 + grid) - grid**2 / (2 * 1.3**2)
        w = np.exp(logf - logf.max())
        w /= w.sum()
        mean, sd = (w * grid).sum(), np.sqrt((w * grid**2).sum() - (w * grid).sum() ** 2)
        assert abs(u[:, j].mean() - mean) < 4 * sd / np.sqrt(S)
        assert abs(u[:, j].std() / sd - 1) < 4 / np.sqrt(2 * S)


@pytest.mark.slow
@pytest.mark.parametrize("sampler", ["nutpie", "auto"])
def test_integrated_bernoulli_posterior_equals_full(sampler):
    """Integrated-out group effects give the posterior of the row-level model (intercept, tau, effects):
    NUTS over the pattern-collapsed likelihood, and ``sampler="auto"``, which runs the integrated sampler
    (its own adaptive quadrature per group) on the same model."""
    df = hp.datasets.simulate("bernoulli", n_groups=40, group_sizes=(2, 7), n_predictors=0, seed=9)
    gd = hp.prepare(df, y="y", group="group", family="bernoulli")
    full = quiet_fit(hp.random_intercepts(gd, collapse=False), draws=1000, tune=700, random_seed=3)
    integ = quiet_fit(hp.random_intercepts(gd, collapse="integrated"), draws=1000, tune=700, random_seed=4,
                      sampler=sampler)
    assert integ.attrs["hierpool_settings"].count('"collapse": "integrated"') == 1
    assert integ.attrs["hierpool_sampler"] == {"nutpie": "nutpie", "auto": "integrated"}[sampler]
    compare_posteriors(full, integ, [N.INTERCEPT, N.TAU, N.GROUP_EFFECT])


@pytest.mark.parametrize("case", ["geometric", "small", "one", "wide", "beyond_bincount", "float", "float_whole",
                                  "float_nan", "negative", "empty"])
def test_unique_sizes_equal_numpy_unique(case):
    """The group-size classes by a count of each size: numpy's three arrays, values and dtypes."""
    from hierpool.data.stats import unique_sizes

    rng = np.random.default_rng(4)
    n = {"geometric": rng.geometric(0.4, 100_000), "small": np.array([3, 1, 3, 0, 7]), "one": np.array([5]),
         "wide": rng.integers(0, 1 << 21, 1000), "beyond_bincount": np.array([2**23, 1, 2**23]),
         "float": np.array([1.5, 2.0, 1.5]), "float_whole": rng.geometric(0.4, 100_000).astype(float),
         "float_nan": np.array([1.0, np.nan, 1.0]), "negative": np.array([-1, 2, -1]),
         "empty": np.array([], dtype=np.int64)}[case]
    got = unique_sizes(n)
    want = np.unique(n, return_inverse=True, return_counts=True)
    for g, w in zip(got, want, strict=True):
        np.testing.assert_array_equal(g, w)
        assert g.dtype == w.dtype
    if case == "float_whole":  # GaussianStats.n is float64: the count path serves it
        from hierpool.data.stats import GaussianStats

        st = GaussianStats(n=n, ybar=np.zeros(n.size), xbar=np.zeros((n.size, 0)), syy_w=0.0, sxy_w=np.zeros(0),
                           sxx_w=np.zeros((0, 0)), n_obs=int(n.sum()))
        assert all(np.array_equal(a, b) for a, b in zip(st.size_index, want, strict=True))


@pytest.mark.parametrize(("case", "expected"), [("binary", "counts"), ("continuous", None), ("distinct_rows", None),
                                              ("16_of_20", "counts"), ("17_of_20", None)])
def test_auto_count_collapse_pools_rows_only_when_cells_are_few(case, expected):
    """collapse='auto' pools count rows into cells when there are at most 0.8 x as many cells as rows. A
    predictor with more distinct values than that decides it without sorting the rows ("continuous");
    columns each with few values whose rows are all distinct still go through the rows' count
    ("distinct_rows": groups of two rows, one per level of a binary predictor). At the boundary, two groups
    of 10 rows: 16 distinct values in 16 cells are 0.8 x the rows (pooled), 17 are more (settled by the
    column)."""
    from hierpool.models.collapse import resolve_collapse

    rng = np.random.default_rng(5)
    group = np.repeat(np.arange(50), 8) if case == "binary" else np.repeat(np.arange(200), 2)
    if case in ("16_of_20", "17_of_20"):
        group = np.repeat([0, 1], 10)
        second = [8, 8, 9, 9] if case == "16_of_20" else [8, 8, 9, 16]
        x = np.array([0, 0, 1, 1, 2, 3, 4, 5, 6, 7, *second, 10, 11, 12, 13, 14, 15], float)
    elif case == "binary":  # at most 2 cells in a group of 8 rows
        x = (np.arange(group.size) % 3 == 0).astype(float)
    elif case == "continuous":
        x = rng.normal(size=group.size)
    else:
        x = (np.arange(group.size) % 2).astype(float)
    df = pd.DataFrame({"y": rng.poisson(1.0, size=group.size), "group": group, "x": x})
    gd = hp.prepare(df, y="y", group="group", predictors=["x"], family="poisson")
    cells = np.unique(np.column_stack([gd.group_idx, gd.X]), axis=0).shape[0]
    assert (cells <= 0.8 * gd.n_obs) == (expected == "counts")  # the rule, by brute force
    assert resolve_collapse(gd, "auto") == expected
