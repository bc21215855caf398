"""Shrinkage, implied ridge and the ridge path.

Exact checks against closed forms: a gaussian random-intercepts fit with tau and sigma FIXED has a
normal posterior whose means, sds and shrinkage factors are known, so every column of ``hp.shrinkage``
is compared with theory to Monte Carlo error (tolerances from the fit's own ESS). Fast checks use
hand-built DataTrees (``fake_fits``).
"""

from __future__ import annotations

import importlib
import warnings

import arviz as az
import numpy as np
import pandas as pd
import pytest
import xarray as xr
from fake_fits import frame, make_fit, staircase
from scipy import optimize, stats
from scipy.special import expit

import hierpool as hp
from hierpool.analysis.fitview import as_fit
from hierpool.core import names as N

shrink_mod = importlib.import_module("hierpool.analysis.shrinkage")  # hp.shrinkage is the function

TAU, SIGMA, PRIOR_SD = 0.8, 1.0, 10.0


def _fit(model, **kw):
    kw = {"draws": 500, "tune": 300, "chains": 4, "random_seed": 1, "progressbar": False, **kw}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", hp.HierpoolSamplingWarning)
        return hp.fit(model, **kw)


@pytest.fixture(scope="module")
def fixed():
    """12 groups of 1-8 rows, no predictors, tau and sigma fixed, intercept ~ Normal(0, 10)."""
    df = hp.datasets.simulate("gaussian", n_groups=12, group_sizes=(1, 8), n_predictors=0, tau=TAU,
                              sigma=SIGMA, seed=3)
    model = hp.random_intercepts(df, y="y", group="group", priors={
        "tau": TAU, "sigma": SIGMA, "intercept": hp.Prior("Normal", mu=0.0, sigma=PRIOR_SD)})
    dt = _fit(model)
    g = df.groupby("group", sort=False)["y"]
    n, ybar = g.size().to_numpy(float), g.mean().to_numpy()
    rho = TAU**2 / (TAU**2 + SIGMA**2 / n)
    w = rho / TAU**2  # = 1 / (tau^2 + sigma^2/n): precision of ybar_j about the intercept
    prec_a = w.sum() + 1.0 / PRIOR_SD**2  # exact posterior of the intercept (its prior mean is 0)
    mean_a = (w * ybar).sum() / prec_a
    theory = {
        "n": n, "ybar": ybar, "rho": rho, "mean_a": mean_a,
        "estimate": rho * ybar + (1.0 - rho) * mean_a,
        "sd": np.sqrt((1.0 - rho) ** 2 / prec_a + 1.0 / (n / SIGMA**2 + 1.0 / TAU**2)),
    }
    post = dt["posterior"].to_dataset()
    mu = post["intercept"] + post["group_effect"]
    mc = {
        "est": az.mcse(mu).values, "ess": az.ess(mu).values, "ess_tail": az.ess(mu, method="tail").values,
        "a": float(az.mcse(post["intercept"])),
    }
    return dt, df, theory, mc


# ------------------------------------------------------------------------------------------------------
# exact gaussian theory (sampling: slow)
@pytest.mark.slow
def test_shrinkage_matches_gaussian_theory(fixed):
    dt, df, th, mc = fixed
    tab = hp.shrinkage(dt)
    assert tab["group"].tolist() == df["group"].unique().tolist()
    np.testing.assert_array_equal(tab["n"], th["n"])
    np.testing.assert_allclose(tab["raw_mean"], th["ybar"], rtol=1e-12)
    # rho: tau and sigma are fixed, so theory is exact
    np.testing.assert_allclose(tab["rho"], th["rho"], rtol=1e-12)
    # estimate = rho ybar + (1 - rho) * GLS mean (with the intercept's prior), to 4 MCSE
    assert np.all(np.abs(tab["estimate"] - th["estimate"]) <= 4 * mc["est"])
    # posterior sd, to 4 relative MC errors of an sd (1/sqrt(2 ESS))
    assert np.all(np.abs(tab["std_error"] / th["sd"] - 1) <= 4 / np.sqrt(2 * mc["ess"]))
    # interval ends against the normal quantiles: MCSE of a 5% quantile ~ sd*sqrt(.05*.95)/(pdf(z)*sqrt(ESS))
    z = stats.norm.ppf(0.95)
    q_se = th["sd"] * np.sqrt(0.05 * 0.95) / stats.norm.pdf(z) / np.sqrt(mc["ess_tail"])
    assert np.all(np.abs(tab["conf_low"] - (th["estimate"] - z * th["sd"])) <= 4 * q_se + 4 * mc["est"])
    assert np.all(np.abs(tab["conf_high"] - (th["estimate"] + z * th["sd"])) <= 4 * q_se + 4 * mc["est"])
    # pooling estimates 1 - rho: numerator error = (est error) + (1 - rho)(overall error)
    overall = tab.attrs["overall"]
    assert abs(overall - th["mean_a"]) <= 4 * mc["a"]
    tol = 4 * (mc["est"] + (1 - th["rho"]) * mc["a"]) / np.abs(th["ybar"] - overall)
    assert np.all(np.abs(tab["pooling"] - (1 - th["rho"])) <= tol)
    assert np.median(tol) < 0.2  # the check has teeth for most groups
    assert tab.attrs["ci_prob"] == 0.9
    assert tab.attrs["tau"] == pytest.approx(TAU) and tab.attrs["sigma"] == pytest.approx(SIGMA)


@pytest.mark.slow
def test_ridge_path_at_implied_lam_equals_conditional_means(fixed):
    dt, df, th, mc = fixed
    a_hat = float(dt["posterior"]["intercept"].mean())
    lam = 1.0 / TAU**2
    path = hp.ridge_path(dt, lams=[lam])
    # exact: E[a + u_j | y, a = a_hat, tau, sigma] = a_hat + rho_j (ybar_j - a_hat)
    np.testing.assert_allclose(path["estimate"], a_hat + th["rho"] * (th["ybar"] - a_hat), rtol=1e-12)
    np.testing.assert_allclose(path["lam"], lam)
    # and, averaging over a, the posterior means of the shrinkage table (to MC error)
    est = hp.shrinkage(dt)["estimate"].to_numpy()
    assert np.all(np.abs(path["estimate"].to_numpy() - est) <= 4 * (mc["est"] + (1 - th["rho"]) * mc["a"]))
    # ends of the path: raw means (lam -> 0) and the overall mean (lam -> inf)
    ends = hp.ridge_path(dt, lams=[1e-10, 1e10]).pivot(index="group", columns="lam", values="estimate")
    ends = ends.loc[df["group"].unique()]
    np.testing.assert_allclose(ends[1e-10], th["ybar"], atol=1e-8)
    np.testing.assert_allclose(ends[1e10], a_hat, atol=1e-8)
    # default grid: around the implied lam, with the implied lam in attrs
    full = hp.ridge_path(dt, n_lams=7)
    assert full.attrs["implied_lam"] == pytest.approx(lam)
    np.testing.assert_allclose(np.unique(full["lam"]), np.geomspace(lam * 1e-3, lam * 1e3, 7))
    assert len(full) == 7 * len(th["n"])


@pytest.mark.slow
def test_implied_ridge_fixed_tau(fixed):
    dt, df, _, _ = fixed
    tab = hp.implied_ridge(dt).set_index("units")
    assert tab.index.tolist() == ["lam", "alpha_sklearn", "lambda_glmnet"]
    s_y, N = np.std(df["y"]), len(df)
    np.testing.assert_allclose(tab.loc["lam", ["estimate", "mean", "conf_low", "conf_high"]], 1 / TAU**2)
    np.testing.assert_allclose(tab.loc["alpha_sklearn", "estimate"], SIGMA**2 / TAU**2)
    np.testing.assert_allclose(tab.loc["lambda_glmnet", "estimate"], s_y * SIGMA**2 / (N * TAU**2))


@pytest.mark.slow
def test_efron_morris_binomial_beats_raw_averages():
    """Efron & Morris (1975): 18 players' first 45 at-bats; pooled averages predict the rest of 1970."""
    df = hp.datasets.load("efron_morris")
    raw_sse = float(((df["average"] - df["rest_average"]) ** 2).sum())
    assert raw_sse == pytest.approx(0.0754, abs=1e-3)
    dt = _fit(hp.random_intercepts(df, y="hits", group="name", family="binomial", trials="at_bats"),
              draws=400)
    tab = hp.shrinkage(dt).set_index("group").loc[df["name"]]
    np.testing.assert_allclose(tab["raw_mean"], df["hits"] / 45, rtol=1e-12)
    sse = float(((tab["estimate"].to_numpy() - df["rest_average"].to_numpy()) ** 2).sum())
    assert sse < 0.5 * raw_sse  # Efron-Morris's James-Stein estimate: 0.022; about a third of raw
    # every estimate lies between its raw average and the overall mean: pooling in (0, 1), except where
    # the raw average is within Monte Carlo error of the overall mean (one player: 0.2667 against ~0.263),
    # where pooling's denominator is ~0 and its value is noise (see hp.shrinkage's docstring)
    far = np.abs(tab["raw_mean"] - tab.attrs["overall"]) > 0.01
    assert far.sum() == 17
    assert np.all((tab["pooling"][far] > 0) & (tab["pooling"][far] < 1))
    assert np.all((tab["rho"] > 0) & (tab["rho"] < 1))


# ------------------------------------------------------------------------------------------------------
# fast checks on hand-built posteriors
def _gaussian_synthetic(seed=0, C=2, D=150, J=5, **kw):
    rng = np.random.default_rng(seed)
    ge = rng.normal(size=(C, D, J)) * 0.5 + np.arange(J)
    a = rng.normal(size=(C, D)) * 0.1 + 0.3
    tau = np.abs(rng.normal(1.0, 0.2, size=(C, D)))
    sigma = np.abs(rng.normal(2.0, 0.3, size=(C, D)))
    return make_fit(data=staircase(J), group_effect=ge, intercept=a, tau=tau, sigma=sigma, **kw), ge, a, tau, sigma


def test_shrinkage_columns_by_hand():
    dt, ge, a, tau, sigma = _gaussian_synthetic()
    tab = hp.shrinkage(dt, ci_prob=0.8)
    mu = (a[..., None] + ge).reshape(-1, ge.shape[-1])
    n = np.arange(1, 6)
    raw = np.arange(5.0)
    np.testing.assert_allclose(tab["estimate"], mu.mean(0))
    np.testing.assert_allclose(tab["std_error"], mu.std(0, ddof=1))
    np.testing.assert_allclose(tab["conf_low"], np.quantile(mu, 0.1, axis=0))
    np.testing.assert_allclose(tab["conf_high"], np.quantile(mu, 0.9, axis=0))
    overall = a.mean()
    pooling = (raw - mu.mean(0)) / (raw - overall)
    slack = np.minimum(3 * mu.std(0, ddof=1) / np.sqrt(mu.shape[0]) / np.abs(raw - overall), 0.05)
    fraction = (pooling >= -slack) & (pooling <= 1 + slack)
    assert fraction.any() and not fraction.all()  # both kinds of rows are checked
    np.testing.assert_allclose(tab["pooling"][fraction], pooling[fraction])
    assert tab["pooling"][~fraction].isna().all() and tab.attrs["pooling_undefined"] == int((~fraction).sum())
    t2, s2 = tau.reshape(-1, 1) ** 2, sigma.reshape(-1, 1) ** 2
    np.testing.assert_allclose(tab["rho"], np.mean(t2 / (t2 + s2 / n), axis=0))
    assert tab.attrs["ci_prob"] == 0.8 and tab.attrs["overall"] == pytest.approx(overall)
    assert list(tab.columns) == ["group", "n", "raw_mean", "estimate", "std_error", "conf_low", "conf_high",
                                 "pooling", "rho"]


def test_shrinkage_chunked_equals_unchunked(monkeypatch):
    dt, *_ = _gaussian_synthetic(J=7)
    full = hp.shrinkage(dt)
    with hp.set_options(memory_gb=700 * 12 * 8 / 1e9):  # chunks of 700 values: 300 samples -> 2 groups
        pd.testing.assert_frame_equal(hp.shrinkage(dt), full)


def test_pooling_nan_where_raw_equals_overall():
    ge = np.zeros((1, 4, 3))
    ge[..., 0] = 1.0
    dt = make_fit(data=staircase(3), group_effect=ge, intercept=1.0)  # raw means 0, 1, 2; overall = 1
    tab = hp.shrinkage(dt)
    assert np.isnan(tab["pooling"][1])  # raw == overall
    assert np.isnan(tab["pooling"][0])  # overshot: (0 - 2) / (0 - 1) = 2 is no fraction (issue 16)
    assert tab.attrs["pooling_undefined"] == 2


def test_rho_bernoulli_and_poisson_by_hand():
    rng = np.random.default_rng(4)
    C, D, J = 2, 50, 4
    ge = rng.normal(size=(C, D, J))
    a = rng.normal(-0.5, 0.1, size=(C, D))
    tau = np.abs(rng.normal(1.0, 0.1, size=(C, D)))
    gidx = np.repeat(np.arange(J), [1, 2, 3, 4])
    y = (rng.random(gidx.size) < 0.4).astype(float)
    trials = np.arange(1, gidx.size + 1, dtype=float)
    for family, tr in (("bernoulli", None), ("binomial", trials), ("poisson", None)):
        yy = np.minimum(y * 3, tr) if tr is not None else y
        data = frame(gidx, yy) if tr is None else frame(gidx, yy, n=tr)
        dt = make_fit(family, data=data, trials=None if tr is None else "n", group_effect=ge, intercept=a, tau=tau)
        eta = (a[..., None] + ge).reshape(-1, J)
        denom = np.bincount(gidx, weights=tr, minlength=J) if tr is not None else np.bincount(gidx)
        if family == "poisson":
            mu = np.exp(eta)
            v = 1 / (denom * mu)
        else:
            mu = expit(eta)
            v = 1 / (denom * mu * (1 - mu))
        t2 = tau.reshape(-1, 1) ** 2
        tab = hp.shrinkage(dt)
        np.testing.assert_allclose(tab["rho"], np.mean(t2 / (t2 + v), axis=0), rtol=1e-12)
        np.testing.assert_allclose(tab["estimate"], mu.mean(0), rtol=1e-12)
        np.testing.assert_allclose(tab["raw_mean"], np.bincount(gidx, weights=yy) / denom)


@pytest.mark.parametrize("family", ["bernoulli", "binomial", "poisson", "poisson_exposure"])
def test_count_shrinkage_compiled_equals_the_chunked_path(family):
    """A count fit's shrinkage table from the compiled pass over draws in memory equals the numpy pass over
    chunks of groups that a lazy posterior takes (group effects as a dask array), every column, to rounding:
    binomial's denominator is the summed trials, poisson's with exposure the summed exposure."""
    import dask.array as dsa

    rng = np.random.default_rng(6)
    C, D, J = 2, 60, 5
    gidx = np.repeat(np.arange(J), [1, 2, 3, 4, 6])
    y = rng.poisson(1.0, size=gidx.size).astype(float)
    kw = {}
    if family == "binomial":
        trials = rng.integers(2, 6, size=gidx.size).astype(float)
        data, kw = frame(gidx, np.minimum(y, trials), n=trials), {"trials": "n"}
    elif family == "poisson_exposure":
        data, kw = frame(gidx, y, e=rng.uniform(0.5, 3.0, size=gidx.size)), {"exposure": "e"}
    else:
        data = frame(gidx, np.minimum(y, 1.0) if family == "bernoulli" else y)
    dt = make_fit(family.split("_")[0], data=data, group_effect=rng.normal(size=(C, D, J)),
                  intercept=rng.normal(-0.5, 0.1, size=(C, D)), tau=np.abs(rng.normal(1.0, 0.1, size=(C, D))), **kw)
    full = hp.shrinkage(dt)
    lazy = dt.copy()
    ge = lazy["posterior"][N.GROUP_EFFECT]
    lazy["posterior"][N.GROUP_EFFECT] = ge.copy(data=dsa.from_array(ge.values, chunks=(1, 30, 2)))
    assert as_fit(lazy).group_effect_matrix() is None  # the chunked numpy path
    pd.testing.assert_frame_equal(hp.shrinkage(lazy), full, rtol=1e-12, atol=0)


def test_ridge_fit_uses_its_lam():
    rng = np.random.default_rng(5)
    ge = rng.normal(size=(2, 40, 3))
    sigma = np.abs(rng.normal(1.5, 0.1, size=(2, 40)))
    dt = make_fit(variant="ridge_fixed_effects", data=staircase(3), group_effect=ge, tau=None, sigma=sigma, lam=4.0)
    tab = hp.shrinkage(dt)
    s2 = sigma.reshape(-1, 1) ** 2
    np.testing.assert_allclose(tab["rho"], np.mean(0.25 / (0.25 + s2 / np.arange(1, 4)), axis=0))
    assert tab.attrs["tau"] == pytest.approx(0.5)
    with pytest.raises(ValueError, match=r"fixed lam=4\.0"):
        hp.implied_ridge(dt)
    path = hp.ridge_path(dt, n_lams=5)
    assert path.attrs["lam"] == 4.0 and "implied_lam" not in path.attrs
    np.testing.assert_allclose(np.unique(path["lam"]), np.geomspace(4e-3, 4e3, 5))
    # gaussian path formula with the plug-in sigma = posterior mean
    lam = 4.0
    n, raw = np.arange(1, 4), np.arange(3.0)
    want = raw * n / (n + sigma.mean() ** 2 * lam)  # intercept 0: residuals are y
    got = hp.ridge_path(dt, lams=[lam])["estimate"].to_numpy()
    np.testing.assert_allclose(got, want, rtol=1e-12)


def test_with_predictors_by_hand():
    """Estimates sit at the average predictors; the gaussian path uses residuals of the plug-in fixed part."""
    rng = np.random.default_rng(11)
    C, D, J = 2, 60, 4
    gidx = np.repeat(np.arange(J), [1, 2, 3, 4])
    X = rng.normal(size=(gidx.size, 2)) + np.array([1.0, -2.0])
    y = rng.normal(size=gidx.size)
    ge = rng.normal(size=(C, D, J))
    a = rng.normal(0.2, 0.1, size=(C, D))
    beta = rng.normal([0.5, -0.3], 0.05, size=(C, D, 2))
    sigma = np.abs(rng.normal(1.0, 0.1, size=(C, D)))
    dt = make_fit(data=frame(gidx, y, x=X), group_effect=ge, intercept=a, tau=0.7, sigma=sigma, beta=beta)
    iac = a + beta @ X.mean(0)
    tab = hp.shrinkage(dt)
    np.testing.assert_allclose(tab["estimate"], (iac[..., None] + ge).reshape(-1, J).mean(0))
    assert tab.attrs["overall"] == pytest.approx(iac.mean())
    lam = 2.0
    a_hat, b_hat, s_hat = a.mean(), beta.reshape(-1, 2).mean(0), sigma.mean()
    r = np.bincount(gidx, weights=y - a_hat - X @ b_hat)
    want = a_hat + X.mean(0) @ b_hat + r / (np.bincount(gidx) + s_hat**2 * lam)
    np.testing.assert_allclose(hp.ridge_path(dt, lams=[lam])["estimate"], want, rtol=1e-12)


def test_implied_ridge_quantiles_by_hand():
    dt, ge, a, tau, sigma = _gaussian_synthetic()
    tab = hp.implied_ridge(dt, ci_prob=0.5).set_index("units")
    lam = 1 / tau.ravel() ** 2
    alpha = sigma.ravel() ** 2 * lam
    y = dt["observed_data"]["y"].values
    glm = np.std(y) * alpha / y.size
    for unit, draws in (("lam", lam), ("alpha_sklearn", alpha), ("lambda_glmnet", glm)):
        row = tab.loc[unit]
        np.testing.assert_allclose(row[["estimate", "mean", "conf_low", "conf_high"]].astype(float),
                                   [np.median(draws), draws.mean(), *np.quantile(draws, [0.25, 0.75])])
    assert tab.attrs["ci_prob"] == 0.5


def test_implied_ridge_logit_and_poisson_units():
    rng = np.random.default_rng(6)
    ge = rng.normal(size=(2, 30, 3))
    tau = np.abs(rng.normal(0.8, 0.1, size=(2, 30)))
    gidx = np.repeat(np.arange(3), 2)
    trials = np.full(6, 10.0)
    dt = make_fit("binomial", data=frame(gidx, np.arange(6.0), n=trials), trials="n", group_effect=ge, tau=tau)
    tab = hp.implied_ridge(dt).set_index("units")
    assert tab.index.tolist() == ["lam", "alpha_sklearn", "C_sklearn", "lambda_glmnet"]
    t2 = tau.ravel() ** 2
    assert tab.loc["C_sklearn", "estimate"] == pytest.approx(np.median(t2))
    assert tab.loc["alpha_sklearn", "estimate"] == pytest.approx(np.median(1 / t2))
    assert tab.loc["lambda_glmnet", "estimate"] == pytest.approx(np.median(1 / (60 * t2)))  # N = 60 trials
    dtp = make_fit("poisson", data=frame(gidx, np.arange(6.0)), group_effect=ge, tau=tau)
    tp = hp.implied_ridge(dtp).set_index("units")
    assert tp.loc["alpha_sklearn", "estimate"] == pytest.approx(np.median(1 / (6 * t2)))  # mean deviance, N = 6


@pytest.mark.parametrize("family", ["bernoulli", "binomial", "poisson"])
def test_ridge_path_penalized_mode_matches_scalar_optimizer(family):
    rng = np.random.default_rng(7)
    J = 5
    gidx = np.repeat(np.arange(J), [1, 2, 3, 5, 8])
    trials = rng.integers(1, 6, size=gidx.size).astype(float) if family == "binomial" else None
    if family == "bernoulli":
        y = (rng.random(gidx.size) < 0.3).astype(float)
        y[gidx == 0] = 0.0  # an all-zero group: its unpenalized mode is -inf
    elif family == "binomial":
        y = rng.binomial(trials.astype(int), 0.4).astype(float)
    else:
        y = rng.poisson(2.0, size=gidx.size).astype(float)
        y[gidx == 0] = 0.0
    a = -0.4
    data = frame(gidx, y) if trials is None else frame(gidx, y, n=trials)
    dt = make_fit(family, data=data, trials=None if trials is None else "n", group_effect=np.zeros((1, 4, J)),
                  intercept=a, tau=0.9)
    lams = [1e-3, 0.1, 1.0, 30.0]
    long = hp.ridge_path(dt, lams=lams)
    path = long.pivot(index="group", columns="lam", values="estimate")
    m = 1.0 if trials is None else trials
    for j in range(J):
        sel = gidx == j
        for lam in lams:
            def obj(u, sel=sel, lam=lam):
                eta = a + u
                mm = np.broadcast_to(m, y.shape)[sel]
                nll = (np.exp(eta) * sel.sum() - y[sel].sum() * eta if family == "poisson"
                       else np.sum(mm * np.logaddexp(0, eta)) - y[sel].sum() * eta)
                return nll + 0.5 * lam * u**2
            u = optimize.minimize_scalar(obj, bounds=(-60, 60), method="bounded",
                                         options={"xatol": 1e-11}).x
            want = np.exp(a + u) if family == "poisson" else expit(a + u)
            assert path.loc[f"g{j}", lam] == pytest.approx(want, rel=1e-6, abs=1e-9)
    assert long.attrs["overall"] == pytest.approx(np.exp(a) if family == "poisson" else expit(a))
    assert long.attrs["implied_lam"] == pytest.approx(1 / 0.81)


# ------------------------------------------------------------------------------------------------------
# bad input
def test_bad_input():
    dt, *_ = _gaussian_synthetic()
    for fn in (hp.shrinkage, hp.implied_ridge):
        with pytest.raises(ValueError, match="use 0.9, not 90"):
            fn(dt, ci_prob=90)
    with pytest.raises(TypeError, match="ci_prob"):
        hp.shrinkage(dt, ci_prob="0.9")
    no_group = dt.copy()
    no_group["posterior"] = xr.Dataset({"intercept": dt["posterior"]["intercept"],
                                        "a_county": dt["posterior"]["group_effect"].rename(group="county")})
    for fn in (hp.shrinkage, hp.implied_ridge, hp.ridge_path):
        with pytest.raises(ValueError, match="no dim named 'group'"):
            fn(no_group)
    with pytest.raises(TypeError, match="DataTree"):
        hp.shrinkage(pd.DataFrame())
    with pytest.raises(ValueError, match="lams"):
        hp.ridge_path(dt, lams=[1.0, -2.0])
    with pytest.raises(ValueError, match="n_lams"):
        hp.ridge_path(dt, n_lams=1)


def test_ridge_path_of_a_fit_without_rows_is_refused_by_name():
    """A fit of data reduced to sufficient statistics keeps no rows (constant_data has no group_idx):
    ridge_path, which refits each group from its rows, says so instead of a KeyError."""
    dt = make_fit(data=staircase(4), group_effect=np.zeros(4))
    const = dt["constant_data"].to_dataset().drop_vars(["group_idx", "X"], errors="ignore")
    if "obs" in const.dims:
        const = const.drop_dims("obs")
    children = {k: dt[k].to_dataset() for k in dt.children if k not in ("constant_data", "observed_data",
                                                                         "log_likelihood")}
    stats_fit = xr.DataTree.from_dict({**children, "constant_data": const})
    stats_fit.attrs = dict(dt.attrs)
    with pytest.raises(ValueError, match="keeps no rows"):
        hp.ridge_path(stats_fit)
    assert len(hp.ridge_path(dt, n_lams=3)) == 12  # the same fit with its rows
