"""The Pólya-Gamma Gibbs sampler (hierpool.inference.gibbs): exact PG draws, exact conditionals, NUTS's posterior."""

from __future__ import annotations

import math

import numpy as np
import pymc as pm
import pytest
from conftest import compare_posteriors, quiet_fit
from scipy.stats import multivariate_normal

import hierpool as hp
from hierpool.core import names as N
from hierpool.inference import gibbs


# ---------------------------------------------------------------------------------------------- PG draws
def _pg_laplace(b, c, t):
    """E[exp(-t w)] for w ~ PG(b, c): cosh(c/2)^b / cosh(sqrt(t/2 + c^2/4))^b (Polson et al. 2013)."""
    return (math.cosh(c / 2) / math.cosh(math.sqrt(t / 2 + c * c / 4))) ** b


@pytest.mark.parametrize("b", [1, 3])
@pytest.mark.parametrize("c", [0.0, 0.7, -3.0, 12.0])
def test_pg_draws_match_the_laplace_transform_and_moments(b, c):
    n = 200_000
    w = gibbs.pg_draws(np.full(n, b), np.full(n, c), seed=7)
    assert np.all(w > 0)
    ac = abs(c)
    mean = b / 4 if ac == 0 else b * math.tanh(ac / 2) / (2 * ac)
    var = b / 24 if ac == 0 else b * (math.sinh(ac) - ac) / (4 * ac**3 * math.cosh(ac / 2) ** 2)
    assert abs(w.mean() - mean) < 4.5 * math.sqrt(var / n)
    assert abs(w.var() / var - 1) < 4.5 * math.sqrt(2 / n) * 3  # kurtosis > 3: a looser MC error for var
    # the Laplace transform at several points pins down the whole distribution, not two moments
    for t in (0.3, 2.0, 10.0, 50.0):
        e = np.exp(-t * w)
        assert abs(e.mean() - _pg_laplace(b, ac, t)) < 4.5 * e.std() / math.sqrt(n), t


def test_pg_draws_reject_bad_shape():
    with pytest.raises(ValueError, match="whole numbers"):
        gibbs.pg_draws([1.5], [0.0])


@pytest.mark.timeout(60, method="thread")  # (the signal method cannot stop a compiled loop)
def test_pg_draws_of_a_non_finite_tilt_are_nan_not_a_hang():
    """polyagamma's sampler loops for ever on c = NaN (1,000 draws did not end in 60 s): NaN comes back,
    for the slice step of log tau (or the driver) to report; finite tilts are unchanged."""
    w = gibbs.pg_draws(np.ones(1000, dtype=np.int64), np.where(np.arange(1000) % 2, np.nan, 0.5), seed=1)
    assert np.isnan(w[1::2]).all() and np.isfinite(w[::2]).all()
    assert np.isnan(gibbs.pg_draws([1, 2], [np.inf, -np.inf], seed=1)).all()


# ------------------------------------------------------------------------------------------- tau prior
@pytest.mark.parametrize("prior", [
    hp.Prior("HalfNormal", sigma=0.7), hp.Prior("HalfStudentT", nu=3, sigma=1.3), hp.Prior("HalfCauchy", beta=0.5),
    hp.Prior("Exponential", lam=2.0), hp.Prior("Gamma", alpha=2.0, beta=3.0),
    hp.Prior("InverseGamma", alpha=3.0, beta=2.0), hp.Prior("LogNormal", mu=-0.3, sigma=0.8),
    hp.Prior("Uniform", lower=0.0, upper=4.0), hp.Prior("Weibull", alpha=1.5, beta=2.0), hp.Prior("HalfFlat"),
])
def test_tau_prior_log_density_equals_pymc(prior):
    with pm.Model():
        rv = prior.build("t")
    code, n_par = gibbs.TAU_PRIORS[type(rv.owner.op).__name__]
    par = np.zeros(4)
    vals = [float(np.asarray(p.eval())) for p in rv.owner.inputs[2:2 + n_par]]
    par[:n_par] = vals
    for x in (0.05, 0.4, 1.0, 3.3, 9.0):
        theirs = float(pm.logp(rv, x).eval())
        ours = gibbs._prior_logpdf(code, par, x)
        assert ours == pytest.approx(theirs, abs=1e-6, rel=1e-6), (prior, x)


@pytest.mark.parametrize("prior", [
    hp.Prior("HalfNormal", sigma=0.7), hp.Prior("HalfStudentT", nu=3, sigma=1.3), hp.Prior("Exponential", lam=2.0),
    hp.Prior("Exponential", scale=0.5), hp.Prior("InverseGamma", alpha=3.0, beta=2.0), hp.Prior("HalfFlat"),
])
def test_pymc_logp_with_symbolic_parameters_equals_constant_evaluation(prior):
    """The self-check's PyMC density, compiled once with the parameters as inputs, equals
    ``pm.logp(...).eval()`` with them as constants (to 1e-7: the graphs are rewritten differently), and
    one compiled function serves every value of the parameters (the default tau prior's scale follows
    the data)."""
    pts = np.array([0.05, 0.3, 1.0, 2.5, 7.0])
    for scale in (1.0, 2.5):
        p = hp.Prior(prior.dist, **{k: (v * scale if k in ("sigma", "lam", "scale", "beta") else v)
                                    for k, v in prior.params.items()})
        theirs = pm.logp(getattr(pm, p.dist).dist(**p.params), pts).eval()
        np.testing.assert_allclose(gibbs._pymc_logp(p, pts), theirs, rtol=1e-7, atol=1e-7)
    assert sum(key[0] == prior.dist and key[1] == tuple(sorted(prior.params)) for key in gibbs._PYMC_LOGP) == 1


def test_tau_prior_self_check_refuses_an_invalid_scale():
    """A scale PyMC refuses (its ParameterValueError at evaluation) fails the self-check, as with constants."""
    code = gibbs.TAU_PRIORS["HalfNormalRV"][0]
    assert gibbs._check_tau_prior(hp.Prior("HalfNormal", sigma=0.8), code, np.array([0.0, 0.8, 0.0, 0.0]))
    assert not gibbs._check_tau_prior(hp.Prior("HalfNormal", sigma=-0.8), code, np.array([0.0, -0.8, 0.0, 0.0]))
    # our density with a wrong parameter is caught: the check compares values, not names
    assert not gibbs._check_tau_prior(hp.Prior("HalfNormal", sigma=0.9), code, np.array([0.0, 0.8, 0.0, 0.0]))


# ------------------------------------------------------------------ the collapsed tau step, exactly
def test_log_marginal_of_tau_equals_dense_gaussian_marginal():
    """Given omega, log p(tau | omega) (theta and u integrated out) equals the dense Gaussian marginal of
    the pseudo-data z = kappa / omega, up to one constant over tau."""
    rng = np.random.default_rng(3)
    J, P = 6, 2
    gidx = np.repeat(np.arange(J), [1, 2, 3, 1, 4, 2])
    n = gidx.size
    Xs = rng.normal(size=(n, P))
    y = rng.integers(0, 2, n).astype(float)
    kappa = y - 0.5
    omega = gibbs.pg_draws(np.ones(n), rng.normal(size=n), seed=1)
    D = np.column_stack([np.ones(n), Xs])
    m0, sd0 = np.array([0.3, 0.0, -0.2]), np.array([2.0, 1.5, 0.7])
    W = np.bincount(gidx, weights=omega, minlength=J)
    S = np.stack([np.bincount(gidx, weights=omega * D[:, a], minlength=J) for a in range(P + 1)], axis=1)
    Kj = np.bincount(gidx, weights=kappa, minlength=J)
    G = (D * omega[:, None]).T @ D
    Dk = D.T @ kappa
    code, par = gibbs.TAU_PRIORS["HalfNormalRV"][0], np.array([0.0, 1.0, 0.0, 0.0])
    Z = np.eye(J)[gidx]
    z = kappa / omega
    ours, dense = [], []
    for s in (-1.5, -0.4, 0.2, 0.9):
        L, v, scr = np.empty((P + 1, P + 1)), np.empty(P + 1), np.zeros(2)
        ours.append(gibbs._log_marginal_s(s, code, par, False, W, S, Kj, G, Dk, m0, np.diag(1 / sd0**2), L, v, scr))
        cov = np.diag(1 / omega) + D @ np.diag(sd0**2) @ D.T + math.exp(2 * s) * Z @ Z.T
        prior = gibbs._log_prior_s(code, par, False, s)
        dense.append(multivariate_normal(D @ m0, cov).logpdf(z) + prior)
    d = np.asarray(ours) - np.asarray(dense)
    np.testing.assert_allclose(d, d[0], atol=1e-9)


# ---------------------------------------------------------------------------- the fit: contract, errors
@pytest.fixture(scope="module")
def bern_pred():
    df = hp.datasets.simulate("bernoulli", n_groups=40, group_sizes=(2, 8), n_predictors=2, seed=21)
    return hp.prepare(df, y="y", group="group", predictors=["x1", "x2"], family="bernoulli")


def test_gibbs_fit_has_the_nuts_contract(bern_pred):
    dt = quiet_fit(hp.random_intercepts(bern_pred, collapse=False), sampler="gibbs", draws=60, tune=30)
    post = dt["posterior"]
    assert set(post.data_vars) == {N.INTERCEPT, N.BETA, N.TAU, N.GROUP_EFFECT}
    assert post[N.GROUP_EFFECT].dims == ("chain", "draw", N.GROUP)
    assert post[N.BETA].dims == ("chain", "draw", N.PREDICTOR)
    assert list(post[N.GROUP].values) == list(bern_pred.groups)
    assert dt.attrs["hierpool_sampler"] == "gibbs"
    assert dt["log_likelihood"][N.Y].shape == (4, 60, bern_pred.n_obs)
    assert "slice_evaluations" in dt["sample_stats"]
    assert len(hp.shrinkage(dt)) == 40 and len(hp.rank_groups(dt)) == 40


def test_gibbs_is_reproducible_and_thread_independent(bern_pred):
    m = hp.random_intercepts(bern_pred, collapse=False)
    a = quiet_fit(m, sampler="gibbs", draws=20, tune=10, random_seed=5, cores=1)
    b = quiet_fit(m, sampler="gibbs", draws=20, tune=10, random_seed=5, cores=2)
    np.testing.assert_array_equal(a["posterior"][N.GROUP_EFFECT].values, b["posterior"][N.GROUP_EFFECT].values)
    np.testing.assert_array_equal(a["posterior"][N.TAU].values, b["posterior"][N.TAU].values)


def test_gibbs_progressbar_shows_progress(bern_pred, capsys):
    """progressbar=True draws a tqdm bar (stderr in a terminal) that reaches chains x (tune + draws)."""
    pl = gibbs.plan(hp.random_intercepts(bern_pred, collapse=False))
    gibbs.sample(pl, draws=20, tune=10, chains=2, cores=1, random_seed=1, progressbar=True,
                 max_group_effect_values=1e6)
    err = capsys.readouterr().err
    assert "Pólya-Gamma Gibbs" in err and "60/60" in err, err
    gibbs.sample(pl, draws=20, tune=10, chains=2, cores=1, random_seed=1, progressbar=False,
                 max_group_effect_values=1e6)
    assert "Pólya-Gamma Gibbs" not in capsys.readouterr().err


def test_gibbs_thins_group_effects_to_the_budget(bern_pred):
    dt = quiet_fit(hp.random_intercepts(bern_pred, collapse=False), sampler="gibbs", draws=40, tune=10,
                   max_group_effect_values=4 * 10 * 40)
    assert dt.attrs["hierpool_thin"] == 4
    assert dt["posterior"].sizes["draw"] == 40  # every draw of intercept, beta, tau
    ge = dt[N.GROUP_EFFECTS_GROUP][N.GROUP_EFFECT]
    assert ge.sizes["draw"] == 10 and ge.dtype == np.float32
    assert dt["sample_stats"].sizes["draw"] == 40


@pytest.mark.timeout(120, method="thread")  # (the signal method cannot stop a compiled loop)
@pytest.mark.parametrize("variant", ["random_intercepts", "ridge"])
def test_gibbs_stops_with_an_error_on_non_finite_data(bern_pred, variant):
    """A NaN predictor value that got past hp.prepare (put into the plan here) made the slice step of
    log tau shrink for ever (its log density NaN everywhere); now it raises. With tau fixed (ridge: no
    slice step) the NaN reaches theta, and the driver raises."""
    import dataclasses

    m = (hp.random_intercepts(bern_pred, collapse=False) if variant == "random_intercepts"
         else hp.ridge_fixed_effects(bern_pred, lam=2.0, collapse=False))
    pl = gibbs.plan(m)
    Xs = pl.Xs.copy()
    Xs[3, 0] = np.nan
    bad = dataclasses.replace(pl, Xs=Xs)
    match = "slice sampler of log tau" if variant == "random_intercepts" else "non-finite intercept or beta"
    with pytest.raises(FloatingPointError, match=match):
        gibbs.sample(bad, draws=20, tune=20, chains=2, cores=1, random_seed=1, progressbar=False,
                     max_group_effect_values=1e6)
    ds = gibbs.sample(pl, draws=20, tune=20, chains=2, cores=1, random_seed=1, progressbar=False,
                      max_group_effect_values=1e6)[0]
    assert np.isfinite(ds[N.INTERCEPT].values).all()


def test_gibbs_refuses_what_it_cannot_sample(bern_pred, sim_gaussian):
    gd = hp.prepare(sim_gaussian, y="y", group="group")
    with pytest.raises(ValueError, match="sampler='gibbs' cannot sample this model: family='gaussian'"):
        hp.fit(hp.random_intercepts(gd), sampler="gibbs")
    with pytest.raises(ValueError, match="coefficients"):
        hp.fit(hp.regularized_hierarchical(bern_pred, penalty="horseshoe", collapse=False), sampler="gibbs")
    with pytest.raises(ValueError, match="tau's prior"):  # TruncatedNormal has no log density here
        hp.fit(hp.random_intercepts(bern_pred, collapse=False,
                                    priors={"tau": hp.Prior("TruncatedNormal", mu=0, sigma=1, lower=0)}),
               sampler="gibbs")
    with pytest.raises(TypeError, match="target_accept"):
        hp.fit(hp.random_intercepts(bern_pred, collapse=False), sampler="gibbs", target_accept=0.9)


def test_auto_prefers_the_integrated_sampler_to_gibbs():
    """Where both serve a model, "auto" takes the integrated sampler (benchmarks/README.md: faster per
    effective draw); the Gibbs sampler runs when asked for."""
    df = hp.datasets.simulate("bernoulli", n_groups=200, group_sizes=(1, 3), n_predictors=1, seed=2)
    gd = hp.prepare(df, y="y", group="group", predictors=["x1"], family="bernoulli")
    dt = quiet_fit(hp.random_intercepts(gd, collapse=False), draws=10, tune=5)
    assert dt.attrs["hierpool_sampler"] == "integrated"


# ------------------------------------------------------------------------ the posterior equals NUTS's
@pytest.mark.slow
def test_gibbs_posterior_equals_nuts(bern_pred):
    m = hp.random_intercepts(bern_pred, collapse=False)
    nuts = quiet_fit(m, sampler="nutpie", draws=1000, tune=700, random_seed=3)
    gib = quiet_fit(m, sampler="gibbs", draws=1000, tune=300, random_seed=4)
    compare_posteriors(nuts, gib, [N.INTERCEPT, N.BETA, N.TAU, N.GROUP_EFFECT])


@pytest.mark.slow
def test_gibbs_posterior_equals_nuts_binomial_ridge_and_tau_sq_prior():
    df = hp.datasets.simulate("binomial", n_groups=25, group_sizes=(1, 4), n_predictors=1, trials=6, seed=5)
    gd = hp.prepare(df, y="y", group="group", predictors=["x1"], family="binomial", trials="trials")
    for m in (hp.ridge_fixed_effects(gd, lam=2.0, collapse=False),
              hp.random_intercepts(gd, collapse=False, priors={"tau_sq": hp.Prior("InverseGamma", alpha=2, beta=1)})):
        nuts = quiet_fit(m, sampler="nutpie", draws=1000, tune=700, random_seed=3)
        gib = quiet_fit(m, sampler="gibbs", draws=1000, tune=300, random_seed=4)
        names = [N.INTERCEPT, N.BETA, N.GROUP_EFFECT] + ([N.TAU] if N.TAU in nuts["posterior"] else [])
        compare_posteriors(nuts, gib, names)


def test_auto_takes_the_integrated_sampler_when_events_are_rare():
    df = hp.datasets.simulate("bernoulli", n_groups=2000, group_sizes=(1, 3), n_predictors=1,
                              intercept=-4.0, seed=3)
    gd = hp.prepare(df, y="y", group="group", predictors=["x1"], family="bernoulli")
    assert isinstance(gibbs.plan(hp.random_intercepts(gd, collapse=False)), gibbs.Plan)  # the Gibbs sampler serves it
    assert min(gd.y.mean(), 1 - gd.y.mean()) < 0.05  # where the Gibbs sampler mixes slowly (hierpool.inference.gibbs)
    dt = quiet_fit(hp.random_intercepts(gd, collapse=False), draws=10, tune=5)
    assert dt.attrs["hierpool_sampler"] == "integrated"  # its independence proposals do not slow on rare events
