"""Random slopes ``(1 + x | g)`` (issue 15): the collapsed gaussian likelihood against the dense
multivariate normal, the exact conditional draws, formula == keywords, refusals, the log-likelihood and
predictions with slopes (no MCMC); lme4's sleepstudy, collapsed vs row-level posteriors and simulation-based
calibration (slow)."""

from __future__ import annotations

import json
import warnings

import numpy as np
import pandas as pd
import pytest
import scipy.stats as ss
import xarray as xr

import hierpool as hp
from hierpool.core import names as N
from hierpool.data.slope_stats import slope_stats
from hierpool.inference.slopes import draw_slope_effects
from hierpool.models.slopes import collapsed_logp


def _frame(J=9, seed=0, max_rows=6) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    n = rng.integers(1, max_rows + 1, J)  # includes groups with fewer rows than terms
    g = np.repeat(np.arange(J), n)
    N_ = g.shape[0]
    x = rng.normal(size=N_)
    w = 3.0 * rng.normal(size=N_) + 1.0
    u = rng.normal(size=(J, 2)) * [0.8, 0.4]
    y = 1.0 + 0.5 * x - 0.2 * w + u[g, 0] + u[g, 1] * x + 0.6 * rng.normal(size=N_)
    return pd.DataFrame({"g": [f"g{i}" for i in g], "x": x, "w": w, "c": rng.choice(["a", "b"], N_), "y": y})


def _dense_logp(gd, c, Sigma, sigma) -> float:
    W = np.column_stack([np.ones(gd.n_obs), gd.Xs])
    mu, Z = W @ c, gd.Z
    out = 0.0
    for j in range(gd.n_groups):
        m = gd.group_idx == j
        V = sigma**2 * np.eye(m.sum()) + Z[m] @ Sigma @ Z[m].T
        out += ss.multivariate_normal(mu[m], V).logpdf(gd.y[m])
    return out


@pytest.mark.parametrize("slopes", [["x"], ["x", "w"]])
def test_collapsed_loglik_equals_dense_mvn(slopes):
    gd = hp.prepare(_frame(), y="y", group="g", predictors=["x", "w", "c"], slopes=slopes)
    st = slope_stats(gd)
    rng = np.random.default_rng(3)
    q = 1 + len(slopes)
    for _ in range(5):
        c = rng.normal(size=1 + gd.n_predictors)
        C = np.tril(rng.normal(size=(q, q)))
        sigma = rng.uniform(0.3, 2.0)
        got = collapsed_logp(st, c, C, sigma, lib=np)
        assert got == pytest.approx(_dense_logp(gd, c, C @ C.T, sigma), abs=1e-8, rel=0)
    # a singular Sigma (tau = 0 for the slope) is allowed
    C0 = np.diag([0.7] + [0.0] * (q - 1))
    assert collapsed_logp(st, c, C0, 1.1, lib=np) == pytest.approx(_dense_logp(gd, c, C0 @ C0.T, 1.1), abs=1e-8)


@pytest.mark.parametrize("variant", ["random_intercepts", "ridge_fixed_effects", "regularized_hierarchical"])
def test_model_potential_equals_dense_mvn(variant):
    """The factory's graph (fixed coefficients, tau, tau_slope, LKJ correlation or 1/lam) wired right: its
    potential at a random point equals the dense likelihood of the parameters it reports."""
    df = _frame(seed=1)
    kw = {"lam": 2.0} if variant == "ridge_fixed_effects" else {}
    if variant == "regularized_hierarchical":
        kw["penalty"] = "ridge"
    model = getattr(hp, variant)(df, formula="y ~ x + w + (1 + x | g)", **kw)
    assert hp.describe(model).slopes == ("x",)
    point = model.initial_point()
    rng = np.random.default_rng(2)
    point = {k: v + rng.normal(scale=0.3, size=np.shape(v)) for k, v in point.items()}
    names = [N.INTERCEPT, N.BETA, N.SIGMA] + ([N.TAU, N.TAU_SLOPE, N.GROUP_CORR] if "lam" not in kw else [])
    outs = model.replace_rvs_by_values([model[v] for v in names] + [model[N.Y_MARGINAL]])
    f = model.compile_fn(outs, inputs=model.value_vars, on_unused_input="ignore")
    vals = dict(zip(names + ["pot"], f(point), strict=True))
    gd = hp.describe(model).data
    c = np.concatenate([[vals[N.INTERCEPT] + vals[N.BETA] @ gd.x_center], vals[N.BETA] * gd.x_scale])
    if "lam" in kw:
        Sigma = np.eye(2) / 2.0
    else:
        D = np.diag(np.concatenate([[vals[N.TAU]], vals[N.TAU_SLOPE]]))
        Sigma = D @ vals[N.GROUP_CORR] @ D
    assert float(vals["pot"]) == pytest.approx(_dense_logp(gd, c, Sigma, float(vals[N.SIGMA])), abs=1e-8, rel=0)


def test_conditional_draws_match_dense_posterior():
    """u_j | rest ~ Normal(m_j, V_j) with V_j = (Sigma^-1 + Z'Z/s2)^-1, m_j = V_j Z'r/s2: 20,000 draws' mean
    and covariance within 5 Monte Carlo standard errors (mean: sd/sqrt(S); variance: ~sqrt(2/S) relative)."""
    gd = hp.prepare(_frame(J=4, seed=5), y="y", group="g", predictors=["x", "w"], slopes=["x", "w"])
    st = slope_stats(gd)
    rng = np.random.default_rng(1)
    q, S = 3, 20000
    c = rng.normal(size=3)
    C = np.tril(rng.normal(size=(q, q))) + 2 * np.eye(q)
    sigma = 0.9
    u = draw_slope_effects(st, np.tile(c, (S, 1)), np.tile(C, (S, 1, 1)), np.full(S, sigma), seed=4)
    W = np.column_stack([np.ones(gd.n_obs), gd.Xs])
    r = gd.y - W @ c
    Sinv = np.linalg.inv(C @ C.T)
    for j in range(gd.n_groups):
        m = gd.group_idx == j
        Zj = gd.Z[m]
        V = np.linalg.inv(Sinv + Zj.T @ Zj / sigma**2)
        mean = V @ Zj.T @ r[m] / sigma**2
        sd = np.sqrt(np.diag(V))
        np.testing.assert_array_less(np.abs(u[:, j].mean(0) - mean), 5 * sd / np.sqrt(S))
        np.testing.assert_allclose(np.cov(u[:, j].T), V, atol=5 * np.sqrt(2 / S) * np.outer(sd, sd).max())


def test_formula_equals_keywords():
    df = _frame()
    a = hp.prepare(df, "y ~ x + w + c + (1 + x | g)")
    b = hp.prepare(df, y="y", group="g", predictors=["x", "w", "c"], slopes=["x"])
    c = hp.prepare(df, "y ~ x + w + c + (x | g)")  # lme4: the intercept is implied
    for other in (b, c):
        assert other.slopes == a.slopes == ("x",)
        np.testing.assert_array_equal(other.X, a.X)
        np.testing.assert_array_equal(other.Z, a.Z)
        np.testing.assert_array_equal(other.group_idx, a.group_idx)
        assert other.predictors == a.predictors
    assert a.spec()["slopes"] == ["x"]
    m1 = hp.random_intercepts(df, formula="y ~ x + w + (1 + x + w | g)")
    m2 = hp.random_intercepts(df, y="y", group="g", predictors=["x", "w"], slopes=["x", "w"])
    assert m1.coords[N.TERM] == m2.coords[N.TERM] == ("intercept", "x", "w")
    assert "slopes=['x', 'w']" in repr(hp.describe(m1))


@pytest.mark.parametrize("formula, match", [
    ("y ~ x + (0 + x | g)", "without a random intercept"),
    ("y ~ x + (1 | g) + (0 + x | g)", "uncorrelated"),
    ("y ~ w + (1 + x | g)", "'x' is not a fixed term"),
    ("y ~ x + (1 + C(c) | g)", "must be a numeric column"),
    ("y ~ x + (1 + x:w | g)", "must be a numeric column"),
])
def test_formula_refusals(formula, match):
    with pytest.raises(ValueError, match=match):
        hp.prepare(_frame(), formula)


def test_keyword_refusals():
    df = _frame()
    with pytest.raises(ValueError, match=r"slopes: 'x' is not a fixed predictor"):
        hp.prepare(df, y="y", group="g", predictors=["w"], slopes=["x"])
    with pytest.raises(TypeError, match=r"slopes: 'c' is not a numeric predictor"):
        hp.prepare(df, y="y", group="g", predictors=["x", "c"], slopes=["c"])
    with pytest.raises(ValueError, match="more than once"):
        hp.prepare(df, y="y", group="g", predictors=["x"], slopes=["x", "x"])
    with pytest.raises(TypeError, match="slopes must be column names"):
        hp.prepare(df, y="y", group="g", predictors=["x"], slopes=[1])
    with pytest.raises(ValueError, match="do not pass slopes"):
        hp.prepare(df, "y ~ x + (1 + x | g)", slopes=["x"])
    gd = hp.prepare(df, y="y", group="g", predictors=["x"], slopes=["x"])
    with pytest.raises(ValueError, match="centered=True"):
        hp.random_intercepts(gd, centered=True)
    with pytest.raises(ValueError, match="lkj_eta"):
        hp.random_intercepts(gd, lkj_eta=-1.0)
    with pytest.raises(ValueError, match="empirical_bayes"):
        hp.fit(hp.random_intercepts(gd), method="empirical_bayes")
    dfb = df.assign(yb=(df["y"] > 1).astype(int))
    with pytest.raises(ValueError, match="fitted row by row"):
        hp.random_intercepts(dfb, formula="yb ~ x + (1 + x | g)", family="bernoulli", collapse=True)


def test_gibbs_refuses_slopes_and_auto_does_not_route_there():
    from hierpool.inference import gibbs

    rng = np.random.default_rng(0)
    J = 2500
    df = pd.DataFrame({"g": np.repeat(np.arange(J), 2), "x": rng.normal(size=2 * J)})
    df["y"] = (rng.random(2 * J) < 0.5).astype(int)
    model = hp.random_intercepts(df, formula="y ~ x + (1 + x | g)", family="bernoulli")
    assert hp.describe(model).collapse is None
    pl = gibbs.plan(model)
    assert isinstance(pl, str) and "random slopes" in pl
    with pytest.raises(ValueError, match="random slopes"):
        hp.fit(model, sampler="gibbs")


def _fake_fit(variant="random_intercepts", seed=0):
    """A fit through hp.fit's finalize from made-up posterior draws of the sampled parameters (no MCMC)."""
    from hierpool.inference.sampling import finalize

    df = _frame(seed=seed)
    kw = {"lam": 2.0} if variant == "ridge_fixed_effects" else {}
    model = getattr(hp, variant)(df, formula="y ~ x + w + (1 + x | g)", **kw)
    rng = np.random.default_rng(seed)
    C, D = 2, 50
    post = {N.INTERCEPT: (("chain", "draw"), 1 + 0.1 * rng.normal(size=(C, D))),
            N.BETA: (("chain", "draw", N.PREDICTOR), [0.5, -0.2] + 0.05 * rng.normal(size=(C, D, 2))),
            N.SIGMA: (("chain", "draw"), 0.6 + 0.05 * rng.random((C, D)))}
    if not kw:
        r = rng.uniform(-0.5, 0.5, (C, D))
        post[N.TAU] = (("chain", "draw"), 0.8 + 0.1 * rng.random((C, D)))
        post[N.TAU_SLOPE] = (("chain", "draw", N.SLOPE), 0.4 + 0.1 * rng.random((C, D, 1)))
        post[N.GROUP_CORR] = (("chain", "draw", N.TERM, N.TERM_),
                              np.stack([np.stack([np.ones_like(r), r], -1), np.stack([r, np.ones_like(r)], -1)], -2))
    trace = xr.DataTree.from_dict({"posterior": xr.Dataset(post, coords={N.PREDICTOR: ["x", "w"]})})
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        dt = finalize(trace, hp.describe(model), engine="external", random_seed=1)
    return dt, hp.describe(model).data


@pytest.mark.parametrize("variant", ["random_intercepts", "ridge_fixed_effects"])
def test_fit_contract_and_pointwise_loglik(variant):
    dt, gd = _fake_fit(variant)
    post = dt["posterior"].to_dataset()
    assert post[N.GROUP_EFFECT].dims == ("chain", "draw", N.GROUP)
    assert post[N.GROUP_SLOPE].dims == ("chain", "draw", N.GROUP, N.SLOPE)
    assert list(post[N.SLOPE].values) == ["x"]
    assert json.loads(dt.attrs[N.SLOPES_ATTR]) == ["x"]
    # the stored log-likelihood includes the slopes: recomputed directly with scipy
    a = post[N.INTERCEPT].values[..., None]
    eta = (a + np.einsum("cdp,np->cdn", post[N.BETA].values, gd.X)
           + post[N.GROUP_EFFECT].values[..., gd.group_idx]
           + post[N.GROUP_SLOPE].values[:, :, gd.group_idx, 0] * gd.X[:, 0])
    want = ss.norm.logpdf(gd.y, eta, post[N.SIGMA].values[..., None])
    np.testing.assert_allclose(dt["log_likelihood"]["y"].values, want, rtol=0, atol=1e-8)


def test_predict_includes_slopes_for_known_and_population_for_new_groups():
    dt, gd = _fake_fit()
    post = dt["posterior"].to_dataset()
    new = pd.DataFrame({"g": ["g0", "g0", "brand new"], "x": [0.0, 2.0, 2.0], "w": [1.0, 1.0, 1.0]})
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        out = hp.predict(dt, new, random_seed=1)
    a, b = post[N.INTERCEPT].values, post[N.BETA].values
    for i in (0, 1):  # known group: exact posterior mean of its linear predictor
        x = new.loc[i, ["x", "w"]].to_numpy(float)
        eta = a + b @ x + post[N.GROUP_EFFECT].values[..., 0] + post[N.GROUP_SLOPE].values[..., 0, 0] * x[0]
        assert out.loc[i, "estimate"] == pytest.approx(eta.mean(), abs=1e-8)
    # a new group: mean of the population (slope deviation averages out), wider than a known group's
    x = np.array([2.0, 1.0])
    pop = (a + b @ x).mean()
    sd_new = np.sqrt(np.mean(post[N.TAU].values ** 2 + (2 * post[N.TAU_SLOPE].values[..., 0]) ** 2
                             + 4 * post[N.GROUP_CORR].values[..., 0, 1] * post[N.TAU].values
                             * post[N.TAU_SLOPE].values[..., 0]))
    assert out.loc[2, "estimate"] == pytest.approx(pop, abs=4 * sd_new / np.sqrt(100))  # 100 draws: 4 MCSE
    assert out.loc[2, "std_error"] == pytest.approx(sd_new, rel=0.3)  # 100 draws: sd of an sd ~ 7%; b's spread
    assert out.loc[2, "std_error"] > 2 * out.loc[1, "std_error"]


# ------------------------------------------------------------------------------------------------------
# slow: MCMC
@pytest.mark.slow
def test_sleepstudy_matches_lmer_reml():
    """lme4: ``lmer(Reaction ~ Days + (Days | Subject), sleepstudy)`` (REML): fixed effects 251.405 and
    10.467, Subject SDs 24.74 (intercept) and 5.92 (Days), correlation 0.07 (0.066), residual SD 25.59.

    Allowances: fixed effects within 0.1 posterior SD + 4 MCSE (the balanced design makes the GLS
    estimate nearly independent of the variance parameters; the weak priors move it by a small fraction of
    an SD; measured 0.01 and 0.03 SD). With 18 subjects the posteriors of the SDs are right-skewed and
    their medians lie above REML's estimates (measured +6% for both, with the HalfStudentT(3, s) priors):
    allowed 15%, and REML's value inside the central 90% interval. The correlation is barely identified
    (posterior SD about 0.3): its median within 0.5 posterior SD of 0.066. sigma has 162 residual degrees
    of freedom: median within 4%.
    """
    df = hp.datasets.load("sleepstudy")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        dt = hp.fit(hp.random_intercepts(df, formula="reaction ~ days + (days | subject)"), chains=4, cores=2,
                    random_seed=11, progressbar=False)
    post = dt["posterior"].to_dataset()
    s = az_summary(post)
    for name, ref in (("intercept", 251.405), ("beta[days]", 10.467)):
        assert abs(s.loc[name, "mean"] - ref) < 0.1 * s.loc[name, "sd"] + 4 * s.loc[name, "mcse_mean"], name
    med = post.median(("chain", "draw"))
    lo, hi = post.quantile(0.05, ("chain", "draw")), post.quantile(0.95, ("chain", "draw"))
    for v, ref in ((post[N.TAU], 24.74), (post[N.TAU_SLOPE].sel({N.SLOPE: "days"}), 5.92)):
        m = float(v.median())
        assert ref <= m < 1.15 * ref and float(v.quantile(0.05)) < ref < float(v.quantile(0.95))
    rho = post[N.GROUP_CORR].sel({N.TERM: "intercept", N.TERM_: "days"})
    assert abs(float(rho.median()) - 0.066) < 0.5 * float(rho.std())
    assert abs(float(med[N.SIGMA]) / 25.59 - 1) < 0.04
    assert float(lo[N.SIGMA]) < 25.59 < float(hi[N.SIGMA])
    # the posterior group slopes: conditional modes of lme4 (ranef) correlate strongly; check spread instead
    assert post[N.GROUP_SLOPE].mean(("chain", "draw")).std() > 3.0


def az_summary(post):
    import arviz as az

    return az.summary(post[[N.INTERCEPT, N.BETA]], round_to="none")


@pytest.mark.slow
def test_collapsed_and_row_level_posteriors_agree():
    """Same model, same data: collapsed (effects integrated out, drawn after) and row-level (non-centered
    NUTS) posterior means within 4.5 combined Monte Carlo standard errors (az.summary's mcse_mean): 41
    comparisons, so a normal |z| > 4.5 somewhere has probability about 3e-4 (measured max 2.0)."""
    import arviz as az

    df = _frame(J=12, seed=7, max_rows=8)
    pri = {"tau": hp.Prior("HalfNormal", sigma=1.0), "tau_slope": hp.Prior("HalfNormal", sigma=1.0),
           "sigma": hp.Prior("HalfNormal", sigma=1.0)}
    fits = {}
    for collapse in ("auto", False):
        m = hp.random_intercepts(df, formula="y ~ x + (1 + x | g)", priors=pri, collapse=collapse)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            fits[collapse] = hp.fit(m, draws=600, tune=600, chains=4, cores=2, random_seed=3, progressbar=False,
                                    target_accept=0.95)
    names = [N.INTERCEPT, N.BETA, N.TAU, N.TAU_SLOPE, N.SIGMA, N.GROUP_EFFECT, N.GROUP_SLOPE]
    a, b = (az.summary(fits[k]["posterior"].to_dataset()[names], round_to="none") for k in ("auto", False))
    z = (a["mean"] - b["mean"]).abs() / np.sqrt(a["mcse_mean"] ** 2 + b["mcse_mean"] ** 2)
    assert z.max() < 4.5, z.sort_values().tail()


def _sbc_design() -> pd.DataFrame:
    rng = np.random.default_rng(20)
    J, n = 10, 5
    design = pd.DataFrame({"g": np.repeat(np.arange(J), n), "x": rng.normal(size=J * n)})
    design["y"] = rng.normal(size=J * n)  # replaced by the simulated responses
    return design


def _sbc_ranks(fitter, gen_priors, n_sims, seed):
    """Ranks of the true values among 99 thinned posterior draws of each refit of the compiled collapsed
    model ``fitter = (compiled, desc)`` to responses simulated from the row-level model with ``gen_priors``."""
    import nutpie
    import pymc as pm

    from hierpool.inference.sampling import finalize
    from hierpool.models.slopes import data_for

    compiled, desc = fitter
    gen = hp.random_intercepts(_sbc_design(), formula="y ~ x + (1 + x | g)", priors=gen_priors, collapse=False)
    pp = pm.sample_prior_predictive(draws=n_sims, model=gen, random_seed=seed)
    prior = pp["prior"].to_dataset().isel(chain=0)
    ys = pp["prior_predictive"]["y"].values[0]
    ranks = {k: [] for k in ("intercept", "beta", "tau", "tau_slope", "sigma", "corr", "slope_g0")}
    for i in range(n_sims):
        y = ys[i]
        tr = nutpie.sample(compiled.with_data(**data_for(desc.data, y)), draws=198, tune=250, chains=1, cores=1,
                           seed=seed + i, progress_bar=False, target_accept=0.9)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            post = finalize(tr, desc.with_response(y), engine="nutpie", log_likelihood=False,
                            random_seed=i)["posterior"].to_dataset().isel(draw=slice(None, None, 2))
        truth = prior.isel(draw=i)
        pairs = {"intercept": (post[N.INTERCEPT], truth[N.INTERCEPT]),
                 "beta": (post[N.BETA][..., 0], truth[N.BETA][0]),
                 "tau": (post[N.TAU], truth[N.TAU]),
                 "tau_slope": (post[N.TAU_SLOPE][..., 0], truth[N.TAU_SLOPE][0]),
                 "sigma": (post[N.SIGMA], truth[N.SIGMA]),
                 "corr": (post[N.GROUP_CORR][..., 0, 1], truth[N.GROUP_CORR][0, 1]),
                 "slope_g0": (post[N.GROUP_SLOPE][..., 0, 0], truth[N.GROUP_SLOPE][0, 0])}
        for k, (draws, t) in pairs.items():
            ranks[k].append(int((np.asarray(draws).ravel() < float(t)).sum()))
    return {k: np.asarray(v) for k, v in ranks.items()}


def _chi2_pvalues(ranks: dict, n_bins=10, L=99) -> dict:
    out = {}
    for k, r in ranks.items():
        counts = np.bincount(r * n_bins // (L + 1), minlength=n_bins)
        out[k] = ss.chisquare(counts).pvalue
    return out


_SBC_PRIORS = {"intercept": hp.Prior("Normal", mu=0.0, sigma=1.0), "beta": hp.Prior("Normal", mu=0.0, sigma=1.0),
               "tau": hp.Prior("HalfNormal", sigma=1.0), "tau_slope": hp.Prior("HalfNormal", sigma=0.5),
               "sigma": hp.Prior("HalfNormal", sigma=1.0)}


@pytest.mark.slow
def test_sbc_collapsed_random_slopes_with_failing_control():
    """100 replications of 10 groups x 5 rows, collapsed gaussian: every parameter's 10-bin rank histogram
    passes a chi-square test at 0.01/7 (Bonferroni over 7 parameters). Control: data generated with
    tau_slope ~ HalfNormal(2) but fitted with the model's HalfNormal(0.5): tau_slope's ranks pile up at the
    top and fail (p < 1e-6, 30 replications)."""
    import nutpie

    model = hp.random_intercepts(_sbc_design(), formula="y ~ x + (1 + x | g)", priors=_SBC_PRIORS)
    keep = [N.INTERCEPT, N.BETA, N.TAU, N.TAU_SLOPE, N.SIGMA, N.GROUP_CORR]
    fitter = (nutpie.compile_pymc_model(model, var_names=keep), hp.describe(model))
    p = _chi2_pvalues(_sbc_ranks(fitter, _SBC_PRIORS, 100, seed=20))
    assert min(p.values()) > 0.01 / 7, p
    wrong = {**_SBC_PRIORS, "tau_slope": hp.Prior("HalfNormal", sigma=2.0)}
    pc = _chi2_pvalues(_sbc_ranks(fitter, wrong, 30, seed=21))
    assert pc["tau_slope"] < 1e-6, pc


@pytest.mark.parametrize("family, variant", [("bernoulli", "random_intercepts"), ("poisson", "regularized_hierarchical"),
                                             ("gaussian", "ridge_fixed_effects")])
def test_row_level_model_wiring(family, variant):
    """Row-level (non-centered) slope models: at a random point, the observed log-likelihood equals the
    family's density at intercept + X beta + group_effect[g] + x * group_slope[g] (exact, 1e-8)."""
    df = _frame(seed=4)
    df["yc"] = (df["y"] > 1).astype(int) if family == "bernoulli" else np.round(np.exp(df["y"] / 3)).astype(int)
    yname = "y" if family == "gaussian" else "yc"
    kw = {"lam": 3.0} if variant == "ridge_fixed_effects" else {"penalty": "ridge"} if "regularized" in variant else {}
    model = getattr(hp, variant)(df, formula=f"{yname} ~ x + w + (1 + x | g)", family=family, collapse=False, **kw)
    assert hp.describe(model).collapse is None
    rng = np.random.default_rng(5)
    point = {k: v + rng.normal(scale=0.3, size=np.shape(v)) for k, v in model.initial_point().items()}
    names = [N.INTERCEPT, N.BETA, N.GROUP_EFFECT, N.GROUP_SLOPE] + ([N.SIGMA] if family == "gaussian" else [])
    outs = model.replace_rvs_by_values([model[v] for v in names]) + [model.logp(vars=[model[N.Y]])]
    f = model.compile_fn(outs, inputs=model.value_vars, on_unused_input="ignore")
    vals = dict(zip(names + ["ll"], f(point), strict=True))
    gd = hp.describe(model).data
    eta = (vals[N.INTERCEPT] + gd.X @ vals[N.BETA] + vals[N.GROUP_EFFECT][gd.group_idx]
           + vals[N.GROUP_SLOPE][gd.group_idx, 0] * gd.X[:, 0])
    want = {"bernoulli": lambda: ss.bernoulli.logpmf(gd.y, 1 / (1 + np.exp(-eta))),
            "poisson": lambda: ss.poisson.logpmf(gd.y, np.exp(eta)),
            "gaussian": lambda: ss.norm.logpdf(gd.y, eta, vals.get(N.SIGMA, 1.0))}[family]().sum()
    assert float(vals["ll"]) == pytest.approx(want, abs=1e-8, rel=0)


def test_thinning_counts_the_slopes():
    """chains x draws x groups x (1 + slopes) above the budget: thinned, effects stored in float32."""
    from hierpool.inference.sampling import finalize

    dt, _ = _fake_fit()
    model = hp.random_intercepts(_frame(seed=0), formula="y ~ x + w + (1 + x | g)")
    trace = xr.DataTree.from_dict({"posterior": dt["posterior"].to_dataset()[
        [N.INTERCEPT, N.BETA, N.SIGMA, N.TAU, N.TAU_SLOPE, N.GROUP_CORR]]})
    J = hp.describe(model).data.n_groups
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        out = finalize(trace, hp.describe(model), engine="external", random_seed=1,
                       max_group_effect_values=2 * 50 * J * 2 / 4)  # 2 chains x 50 draws x J x 2 terms / 4
    # 12 draws per chain fit the budget (12.5 would): every draw of the population parameters is kept; the
    # group effects and slopes at 12 evenly spaced draws of each chain's 50, in float32
    assert out.attrs[N.ATTR_THIN] == pytest.approx(50 / 12)
    assert out["posterior"].sizes["draw"] == 50 and N.GROUP_SLOPE not in out["posterior"]
    node = out[N.GROUP_EFFECTS_GROUP]
    assert node.sizes["draw"] == 12 and node[N.GROUP_SLOPE].dtype == np.float32
    np.testing.assert_array_equal(node["draw"].values, np.arange(12) * 50 // 12)
    from hierpool.analysis.fitview import as_fit

    aligned = as_fit(out).post
    assert aligned.sizes["draw"] == 12 and N.GROUP_SLOPE in aligned and N.TAU_SLOPE in aligned
