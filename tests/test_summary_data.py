"""Summary-level data (issue 14): one estimate per group with its known standard error.

``hp.prepare(df, y=, se=, group=)``; the exact collapsed likelihood ``y_j ~ Normal(a + x_j b,
sqrt(tau^2 + se_j^2))`` and the exact conditional draws of the group effects; every analysis function on
such a fit; and the eight-schools posterior against an exact reference.

The fast tests build fits with :func:`hierpool.from_trace` from hand-made posterior draws of the sampled
parameters (no MCMC): ``from_trace`` runs the same finalization as ``hp.fit`` (conditional draws of the
group effects, constant_data, the pointwise log-likelihood).
"""

from __future__ import annotations

import warnings

import arviz as az
import numpy as np
import pandas as pd
import pytest
import xarray as xr
from scipy import stats

import hierpool as hp
from hierpool.core import names as N
from hierpool.inference.conditional import conditional_group_effects, known_se_conditional
from hierpool.models.collapse import known_se_marginal_logp

Y8 = np.array([28.0, 8.0, -3.0, 7.0, -1.0, 1.0, 18.0, 12.0])
SE8 = np.array([15.0, 10.0, 16.0, 11.0, 9.0, 11.0, 10.0, 18.0])
#: posteriordb's eight_schools_noncentered prior, by hierpool's names
POSTERIORDB_PRIORS = {"intercept": hp.Prior("Normal", mu=0.0, sigma=5.0), "tau": hp.Prior("HalfCauchy", beta=5.0)}


def _schools() -> pd.DataFrame:
    return hp.datasets.eight_schools()


def _meta(seed=3, J=12) -> pd.DataFrame:
    """Summary data with a study-level predictor (meta-regression)."""
    rng = np.random.default_rng(seed)
    x = rng.normal(size=J)
    se = rng.uniform(0.5, 2.0, size=J)
    return pd.DataFrame({"study": [f"s{j}" for j in range(J)], "est": 1.0 + 0.5 * x + rng.normal(0, 1, J)
                         + rng.normal(0, se), "se": se, "dose": x})


def _fit_from_draws(model, seed=0, chains=4, draws=200, fixed=None) -> xr.DataTree:
    """A fit of ``model`` from hand-made draws of its sampled parameters (no MCMC); ``fixed`` pins them."""
    desc = hp.describe(model)
    rng = np.random.default_rng(seed)
    shape = (chains, draws)
    post = {N.INTERCEPT: rng.normal(4.0, 1.0, shape)}
    if N.TAU in model.named_vars:
        post[N.TAU] = np.abs(rng.normal(3.0, 1.0, shape)) + 0.1
    P = desc.data.n_predictors
    if P:
        post[N.BETA] = rng.normal(0.5, 0.1, (*shape, P))
    for k, v in (fixed or {}).items():
        post[k] = np.full(shape, v, dtype=float)
    coords = {"chain": np.arange(chains), "draw": np.arange(draws)}
    ds = xr.Dataset({k: ((*N.SAMPLE_DIMS, N.PREDICTOR) if k == N.BETA else N.SAMPLE_DIMS, v)
                     for k, v in post.items()}, coords=coords)
    if P:
        ds = ds.assign_coords({N.PREDICTOR: list(desc.data.predictors)})
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", hp.HierpoolSamplingWarning)
        return hp.from_trace(xr.DataTree.from_dict({"posterior": ds}), model, random_seed=seed)


# ------------------------------------------------------------------------------------------------------
# data
def test_eight_schools_loader():
    df = _schools()
    assert list(df.columns) == ["school", "effect", "stderr"]
    assert df["school"].tolist() == list("ABCDEFGH")
    np.testing.assert_array_equal(df["effect"], Y8)
    np.testing.assert_array_equal(df["stderr"], SE8)


def test_prepare_summary_level():
    gd = hp.prepare(_schools(), y="effect", se="stderr", group="school")
    assert gd.summary_level and gd.n_groups == gd.n_obs == 8
    assert gd.groups.tolist() == list("ABCDEFGH")
    np.testing.assert_array_equal(gd.group_idx, np.arange(8))
    np.testing.assert_array_equal(gd.se, SE8)
    np.testing.assert_array_equal(gd.group_raw_mean, Y8)
    assert gd.spec()["se"] == "stderr"
    assert not gd.se.flags.writeable
    rows = hp.prepare(_schools(), y="effect", group="school")  # without se: rows, and no se in the recipe
    assert not rows.summary_level and "se" not in rows.spec()


@pytest.mark.parametrize(
    ("change", "kwargs", "err", "match"),
    [
        (None, {"se": "std_error"}, ValueError, r"se='std_error' is not a column of the data; columns are: 'school'"),
        ("zero", {}, ValueError, r"se='stderr' must be > 0 .*1 rows <= 0 .*group 'C', se=0\)"),
        ("negative", {}, ValueError, r"se='stderr' must be > 0 .*group 'C', se=-16\)"),
        ("nan", {}, ValueError, r"se: column 'stderr' has 1 NaN or infinite values \(first rows: \[2\]\)"),
        ("inf", {}, ValueError, r"se: column 'stderr' has 1 NaN or infinite values"),
        ("duplicate", {}, ValueError, r"group='school': summary-level data \(se='stderr'\) needs one row per group, "
                                      r"but 'B' has 2 rows"),
        ("text", {}, TypeError, r"se='stderr' must be numeric; got dtype "),
        (None, {"family": "bernoulli"}, ValueError, r"se='stderr' .*only supported for family='gaussian'; got "
                                                    r"family='bernoulli'"),
        (None, {"family": "gausian"}, ValueError, r"family='gausian' is not valid; valid choices: 'gaussian'"),
        (None, {"exposure": "stderr"}, ValueError, r"exposure='stderr' cannot be combined with se='stderr'"),
        (None, {"se": "effect"}, ValueError, r"se='effect' is also the y column"),
        (None, {"se": "school"}, ValueError, r"se='school' is also the group column"),
        (None, {"se": 3}, TypeError, r"se must be a column name \(str\); got 3"),
    ],
)
def test_prepare_summary_refusals(change, kwargs, err, match):
    df = _schools()
    if change == "zero":
        df.loc[2, "stderr"] = 0.0
    elif change == "negative":
        df.loc[2, "stderr"] = -16.0
    elif change == "nan":
        df.loc[2, "stderr"] = np.nan
    elif change == "inf":
        df.loc[5, "stderr"] = np.inf
    elif change == "duplicate":
        df.loc[3, "school"] = "B"
    elif change == "text":
        df["stderr"] = df["stderr"].astype(str)
    args = {"y": "effect", "se": "stderr", "group": "school", **kwargs}
    with pytest.raises(err, match=match):
        hp.prepare(df, **args)


def test_prepare_summary_refuses_predictor_se_and_paths(tmp_path):
    df = _schools().assign(x=np.arange(8.0))
    with pytest.raises(ValueError, match=r"predictors includes 'stderr', which is the se column"):
        hp.prepare(df, y="effect", se="stderr", group="school", predictors=["x", "stderr"])
    path = tmp_path / "schools.csv"
    df.to_csv(path, index=False)
    with pytest.raises(TypeError, match=r"se='stderr' \(summary-level data\) needs a pandas DataFrame .*got PosixPath"):
        hp.prepare(path, y="effect", se="stderr", group="school")
    gd = hp.prepare(df, y="effect", se="stderr", group="school", predictors=["x"])  # meta-regression
    assert gd.predictors == ["x"] and gd.summary_level


def test_factories_refuse_sigma_prior_and_keep_no_sigma():
    gd = hp.prepare(_schools(), y="effect", se="stderr", group="school")
    with pytest.raises(ValueError, match="sigma"):
        hp.random_intercepts(gd, priors={"sigma": hp.Prior("HalfNormal", sigma=1.0)})
    for model in (hp.random_intercepts(gd), hp.ridge_fixed_effects(gd, lam=0.1),
                  hp.regularized_hierarchical(_meta(), y="est", se="se", group="study", predictors=["dose"],
                                              penalty="ridge"),
                  hp.random_intercepts(gd, collapse=False)):
        assert N.SIGMA not in model.named_vars
    with pytest.raises(ValueError, match=r"collapse='integrated' needs a bernoulli or binomial response"):
        hp.random_intercepts(gd, collapse="integrated")


def test_collapse_choice():
    gd = hp.prepare(_schools(), y="effect", se="stderr", group="school")
    m = hp.random_intercepts(gd)
    assert hp.describe(m).collapse == "known_se"
    assert {v.name for v in m.free_RVs} == {N.INTERCEPT_CENTERED, N.TAU}  # no funnel: mu and tau only
    m0 = hp.random_intercepts(gd, collapse=False)
    assert hp.describe(m0).collapse is None and N.GROUP_EFFECT in m0.named_vars
    # the row-level likelihood reads the known se as its sigma
    np.testing.assert_array_equal(m0[N.SE].get_value(), SE8)


# ------------------------------------------------------------------------------------------------------
# exact identities
@pytest.mark.parametrize("predictors", [[], ["dose"]])
def test_collapsed_logp_is_sum_of_normal_marginals(predictors):
    """The model's likelihood term = sum_j log Normal(y_j | a + x_j b, sqrt(tau^2 + se_j^2)) (to 1e-8),
    with the marginal written out by scipy."""
    df = _meta()
    gd = hp.prepare(df, y="est", se="se", group="study", predictors=predictors)
    model = hp.random_intercepts(gd)
    pot = model.compile_fn(model.logp(vars=model.potentials))
    rng = np.random.default_rng(7)
    for _ in range(5):
        a_c, tau = rng.normal(), rng.uniform(0.1, 3.0)
        point = model.initial_point()
        point.update({N.INTERCEPT_CENTERED: a_c, "tau_log__": np.log(tau)})
        mean = np.full(gd.n_groups, a_c)
        if predictors:
            b_std = rng.normal(size=1)
            point[N.BETA_STD] = b_std
            mean = mean + gd.Xs @ b_std
        ref = stats.norm.logpdf(df["est"], mean, np.sqrt(tau**2 + df["se"] ** 2)).sum()
        np.testing.assert_allclose(pot(point), ref, rtol=0, atol=1e-8)
        np.testing.assert_allclose(known_se_marginal_logp(gd.y, gd.se, mean, tau, lib=np), ref, rtol=0, atol=1e-8)


def test_conditional_is_the_normal_normal_posterior():
    """u_j | mean, tau, y: precision-weighted Normal-Normal update; and the rows' formula with n_j = 1,
    sigma = se_j (to 1e-12)."""
    rng = np.random.default_rng(2)
    tau = rng.uniform(0.5, 5.0, size=(3, 4))
    mean = rng.normal(size=(3, 4, 8))
    m, sd = known_se_conditional(Y8, SE8, mean, tau)
    prec = 1.0 / tau[..., None] ** 2 + 1.0 / SE8**2
    np.testing.assert_allclose(sd, np.sqrt(1.0 / prec), rtol=1e-12)
    np.testing.assert_allclose(m, (Y8 - mean) / SE8**2 / prec, rtol=1e-12, atol=1e-12)
    for j in range(8):  # the rows' conditional of one group of one row with sigma = se_j
        from hierpool.data.stats import GaussianStats

        st = GaussianStats(n=np.ones(1), ybar=Y8[j:j + 1], xbar=np.zeros((1, 0)), syy_w=0.0, sxy_w=np.zeros(0),
                           sxx_w=np.zeros((0, 0)), n_obs=1)
        m_rows, sd_rows = conditional_group_effects(st, mean[..., j], None, tau, np.full_like(tau, SE8[j]))
        np.testing.assert_allclose(m_rows[..., 0], m[..., j], rtol=1e-12, atol=1e-12)
        np.testing.assert_allclose(sd_rows[..., 0], sd[..., j], rtol=1e-12)


def test_conditional_draws_match_their_normal():
    """With (a, tau) pinned, the stored group effects are draws of the exact conditional normal: means
    within 4 standard errors (sd / sqrt(8000), i.i.d. draws) and sds within 4 of theirs (sd / sqrt(2 n))."""
    gd = hp.prepare(_schools(), y="effect", se="stderr", group="school")
    dt = _fit_from_draws(hp.random_intercepts(gd), draws=2000, fixed={N.INTERCEPT: 4.0, N.TAU: 3.0})
    u = dt["posterior"][N.GROUP_EFFECT].values.reshape(-1, 8)
    m, sd = known_se_conditional(Y8, SE8, np.full(8, 4.0), np.asarray(3.0))
    n = u.shape[0]
    assert np.all(np.abs(u.mean(0) - m) < 4 * sd / np.sqrt(n))
    assert np.all(np.abs(u.std(0, ddof=1) - sd) < 4 * sd / np.sqrt(2 * n))
    # reproducible from the seed
    dt2 = _fit_from_draws(hp.random_intercepts(gd), draws=2000, fixed={N.INTERCEPT: 4.0, N.TAU: 3.0})
    np.testing.assert_array_equal(dt2["posterior"][N.GROUP_EFFECT].values, dt["posterior"][N.GROUP_EFFECT].values)


def test_stored_log_likelihood_uses_the_known_se():
    df = _meta()
    gd = hp.prepare(df, y="est", se="se", group="study", predictors=["dose"])
    dt = _fit_from_draws(hp.random_intercepts(gd), draws=50)
    post = dt["posterior"]
    theta = (post[N.INTERCEPT] + post[N.BETA].sel(predictor="dose") * xr.DataArray(df["dose"].to_numpy(), dims="group")
             + post[N.GROUP_EFFECT]).transpose("chain", "draw", "group").values
    ref = stats.norm.logpdf(df["est"].to_numpy(), theta, df["se"].to_numpy())
    ll = dt["log_likelihood"][N.Y].transpose("chain", "draw", N.OBS).values
    np.testing.assert_allclose(ll, ref, rtol=0, atol=1e-10)
    np.testing.assert_array_equal(dt["constant_data"][N.SE].values, df["se"].to_numpy())


# ------------------------------------------------------------------------------------------------------
# every analysis function on a summary-level fit
@pytest.fixture(scope="module")
def schools_fit():
    gd = hp.prepare(_schools(), y="effect", se="stderr", group="school")
    return _fit_from_draws(hp.random_intercepts(gd, priors=POSTERIORDB_PRIORS), draws=250)


def test_shrinkage_rho_is_tau2_over_tau2_plus_se2(schools_fit):
    tab = hp.shrinkage(schools_fit)
    post = schools_fit["posterior"]
    t2 = post[N.TAU].values.reshape(-1, 1) ** 2
    np.testing.assert_allclose(tab["rho"], np.mean(t2 / (t2 + SE8**2), axis=0), rtol=1e-12)
    theta = (post[N.INTERCEPT] + post[N.GROUP_EFFECT]).transpose("chain", "draw", "group").values.reshape(-1, 8)
    np.testing.assert_allclose(tab["estimate"], theta.mean(0), rtol=1e-10)
    assert (tab["n"] == 1).all() and tab.attrs["sigma"] is None
    np.testing.assert_array_equal(tab["raw_mean"], Y8)


def test_analysis_functions_work(schools_fit, tmp_path):
    dt = schools_fit
    ranks = hp.rank_groups(dt)
    assert sorted(ranks["group"]) == list("ABCDEFGH")
    res = hp.ppc(dt, random_seed=1, plot=False)
    assert np.isfinite(res.table["p_value"]).all()
    prof = hp.profile(dt)  # gaussian: differences, predicted - expected = the group effect
    u = dt["posterior"][N.GROUP_EFFECT].transpose("chain", "draw", "group").values.reshape(-1, 8)
    np.testing.assert_allclose(prof["estimate"], u.mean(0), rtol=1e-10, atol=1e-12)
    assert prof.attrs["measure"] == "rs_difference"
    hp.save(dt, tmp_path / "fit.nc")
    back = hp.load(tmp_path / "fit.nc")
    np.testing.assert_array_equal(back["constant_data"][N.SE].values, SE8)
    pd.testing.assert_frame_equal(hp.shrinkage(back), hp.shrinkage(dt))
    pd.testing.assert_frame_equal(hp.profile(back), hp.profile(dt))
    for fig in (hp.plots.caterpillar(dt), hp.plots.funnel_plot(dt), hp.plots.profile_caterpillar(dt)):
        assert fig.axes
    assert "standard error se" in hp.plots.funnel_plot(dt).axes[0].get_xlabel()
    imp = hp.implied_ridge(dt).set_index("units")
    assert list(imp.index) == ["lam", "alpha_sklearn"]
    path = hp.ridge_path(dt, lams=[1e-6, 1e6])
    np.testing.assert_allclose(path[path.lam == 1e-6]["estimate"], Y8, atol=1e-2)  # lam -> 0: the raw estimates
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)  # Pareto k of one-row groups
        assert len(hp.compare({"a": dt, "b": back})) == 2
    assert "known_se" in str(hp.summarize(dt))


def test_predict_new_estimate_needs_its_se(schools_fit):
    dt = schools_fit
    with pytest.raises(ValueError, match=r"new_df lacks column 'stderr'; .*se: the standard error of each new estimate"):
        hp.predict(dt, pd.DataFrame({"school": ["A"]}))
    with pytest.raises(ValueError, match=r"column 'stderr' \(se\) must be positive"):
        hp.predict(dt, pd.DataFrame({"school": ["A"], "stderr": [0.0]}))
    new = pd.DataFrame({"school": ["A", "A", "Z"], "stderr": [1e-6, 15.0, 10.0]})
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        draws = hp.predict(dt, new, kind="draws", random_seed=1)
    post = dt["posterior"]
    theta_a = (post[N.INTERCEPT] + post[N.GROUP_EFFECT].sel(group="A")).values
    # a new estimate of school A with se ~ 0 is the school's effect itself; with se 15 it spreads by 15
    np.testing.assert_allclose(draws.isel(obs_id=0).values, theta_a, atol=1e-4)
    resid = (draws.isel(obs_id=1).values - theta_a).reshape(-1)
    assert abs(resid.std() - 15.0) < 4 * 15.0 / np.sqrt(2 * resid.size)  # sd of an sd estimate: sd/sqrt(2n)
    # a new school: effect ~ Normal(mu, tau), then the estimate ~ Normal(effect, se)
    var_new = (post[N.TAU].values ** 2).mean() + 10.0**2 + post[N.INTERCEPT].values.var()
    z = draws.isel(obs_id=2).values.reshape(-1)
    assert abs(z.var() / var_new - 1) < 4 * np.sqrt(2 / z.size) * 2  # loose: heavy-ish tails from tau


def test_ridge_and_meta_regression_fits():
    gd = hp.prepare(_schools(), y="effect", se="stderr", group="school")
    lam = 1.0 / 9.0
    dt = _fit_from_draws(hp.ridge_fixed_effects(gd, lam=lam), draws=1000, fixed={N.INTERCEPT: 4.0})
    u = dt["posterior"][N.GROUP_EFFECT].values.reshape(-1, 8)
    m, sd = known_se_conditional(Y8, SE8, np.full(8, 4.0), np.asarray(3.0))  # tau = 1/sqrt(lam) = 3
    assert np.all(np.abs(u.mean(0) - m) < 4 * sd / np.sqrt(u.shape[0]))
    np.testing.assert_allclose(hp.shrinkage(dt)["rho"], 9.0 / (9.0 + SE8**2), rtol=1e-12)
    df = _meta()
    dtm = _fit_from_draws(hp.random_intercepts(df, y="est", se="se", group="study", predictors=["dose"]), draws=100)
    assert N.BETA in dtm["posterior"] and N.SIGMA not in dtm["posterior"]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)  # every row is of a new group, on purpose
        tab = hp.predict(dtm, df.assign(study="new study"), random_seed=0)
    assert np.isfinite(tab[["estimate", "pred_low", "pred_high"]].to_numpy()).all()


# ------------------------------------------------------------------------------------------------------
# the eight schools against an exact reference
def eight_schools_quadrature(n_mu=201, n_v=401) -> dict:
    """Exact posterior means of mu, tau and theta_A under posteriordb's prior, by 2-d quadrature.

    theta integrates out: p(mu, tau | y) ∝ N(mu | 0, 5) HalfCauchy(tau | 5) prod_j N(y_j | mu,
    sqrt(tau^2 + se_j^2)), and E[theta_A | mu, tau, y] = mu + tau^2 / (tau^2 + se_A^2) (y_A - mu). Midpoint
    rule in mu on [-40, 50] and in v on (0, 1) with tau = 5 tan(pi v / 2). This grid agrees with one 8 x
    10 times finer to 3e-6 (benchmarks/eight_schools_reference.py), and with a plain PyMC model sampled
    for 200,000 draws within one MCSE (mu 4.395 +- 0.008, tau 3.598 +- 0.009, theta_A 6.219 +- 0.013).
    """
    mu = np.linspace(-40.0, 50.0, n_mu)
    v = (np.arange(n_v) + 0.5) / n_v
    tau = 5.0 * np.tan(0.5 * np.pi * v)
    jac = 2.5 * np.pi / np.cos(0.5 * np.pi * v) ** 2
    M, T = np.meshgrid(mu, tau, indexing="ij")
    logp = (stats.norm.logpdf(M, 0, 5) + stats.halfcauchy.logpdf(T, scale=5) + np.log(jac)[None, :]
            + stats.norm.logpdf(Y8, M[..., None], np.sqrt(T[..., None] ** 2 + SE8**2)).sum(-1))
    w = np.exp(logp - logp.max())
    w /= w.sum()
    theta_a = M + T**2 / (T**2 + SE8[0] ** 2) * (Y8[0] - M)
    return {"mu": float((w * M).sum()), "tau": float((w * T).sum()), "theta_A": float((w * theta_a).sum())}


def test_posteriordb_reference_agrees_with_quadrature():
    """posteriordb's reference means (summary_statistics/mean/mean/eight_schools-eight_schools_noncentered.json:
    mu 4.4105 mcse 0.0330, tau 3.6021 mcse 0.0319, theta[1] 6.1505 mcse 0.0557) are within 4 of their
    MCSEs of the exact values."""
    ref = eight_schools_quadrature()
    for name, (mean, mcse) in {"mu": (4.41051833695493, 0.0330374705950917),
                               "tau": (3.60205952364059, 0.0318615135640706),
                               "theta_A": (6.15050229334425, 0.0557375282295219)}.items():
        assert abs(mean - ref[name]) < 4 * mcse, (name, mean, ref[name])


@pytest.mark.slow
@pytest.mark.parametrize("collapse", ["auto", False])
def test_eight_schools_posterior(collapse):
    """hierpool's fit of the eight schools (posteriordb's noncentered prior) reproduces the exact posterior
    means of mu, tau and theta_A within 4 MCSE (the fit's own, from its ESS: arviz.mcse), both collapsed
    (the default) and with the effects sampled (collapse=False, non-centered)."""
    ref = eight_schools_quadrature()
    gd = hp.prepare(_schools(), y="effect", se="stderr", group="school")
    model = hp.random_intercepts(gd, priors=POSTERIORDB_PRIORS, collapse=collapse, centered=False)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", hp.HierpoolSamplingWarning)
        dt = hp.fit(model, draws=2000, tune=1000, chains=4, cores=2, random_seed=11, progressbar=False,
                    target_accept=None if collapse == "auto" else 0.95)
    post = dt["posterior"].to_dataset()
    est = xr.Dataset({"mu": post[N.INTERCEPT], "tau": post[N.TAU],
                      "theta_A": post[N.INTERCEPT] + post[N.GROUP_EFFECT].sel(group="A", drop=True)})
    mcse = az.mcse(est, method="mean")
    for name in ("mu", "tau", "theta_A"):
        z = (float(est[name].mean()) - ref[name]) / float(mcse[name])
        assert abs(z) < 4, (name, float(est[name].mean()), ref[name], float(mcse[name]))
    if collapse == "auto":  # the collapsed model has no funnel: no divergences (measured: 0 in 10 seeds)
        assert int(dt["sample_stats"]["diverging"].sum()) == 0
