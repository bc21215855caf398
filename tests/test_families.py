"""The Family objects (hierpool.core.families) and the one quadrature module (hierpool.core.quadrature).

References are independent: scipy.stats densities, central finite differences, scipy.integrate.quad.
No MCMC.
"""

from __future__ import annotations

import numpy as np
import pytest
import xarray as xr
from scipy import integrate, stats

from hierpool.core import quadrature as Q
from hierpool.core.families import FAMILIES, Family, get_family

RNG = np.random.default_rng(11)


def _data(name, n=40, rng=RNG):
    """Responses, linear predictors, sigma and trials of a family (trials also for bernoulli: None)."""
    eta = rng.normal(0.2, 1.3, n)
    trials = sigma = None
    if name == "gaussian":
        sigma = 0.7
        y = rng.normal(eta, sigma)
    elif name == "bernoulli":
        y = rng.binomial(1, 1 / (1 + np.exp(-eta))).astype(float)
    elif name == "binomial":
        trials = rng.integers(1, 9, n).astype(float)
        y = rng.binomial(trials.astype(int), 1 / (1 + np.exp(-eta))).astype(float)
    else:
        y = rng.poisson(np.exp(eta)).astype(float)
    return y, eta, sigma, trials


def test_get_family_names_the_valid_choices():
    assert FAMILIES == ("gaussian", "bernoulli", "binomial", "poisson")
    for name in FAMILIES:
        fam = get_family(name)
        assert isinstance(fam, Family) and fam.name == name and get_family(fam) is fam
    with pytest.raises(ValueError, match="family='gamma' is not valid; valid choices: 'gaussian', 'bernoulli'"):
        get_family("gamma")
    assert [get_family(f).link_name for f in FAMILIES] == ["identity", "logit", "logit", "log"]


@pytest.mark.parametrize("name", FAMILIES)
def test_log_likelihood_equals_scipy(name):
    y, eta, sigma, trials = _data(name)
    got = get_family(name).log_likelihood(y, eta, sigma=sigma, trials=trials)
    p = 1 / (1 + np.exp(-eta))
    ref = {"gaussian": lambda: stats.norm.logpdf(y, eta, sigma),
           "bernoulli": lambda: stats.bernoulli.logpmf(y, p),
           "binomial": lambda: stats.binom.logpmf(y, trials, p),
           "poisson": lambda: stats.poisson.logpmf(y, np.exp(eta))}[name]()
    np.testing.assert_allclose(got, ref, rtol=1e-10, atol=1e-12)


@pytest.mark.parametrize("name", FAMILIES)
def test_score_and_curvature_are_the_derivatives(name):
    """score = d loglik / d eta and curvature = -d2 loglik / d eta2, against central differences."""
    fam = get_family(name)
    y, eta, sigma, trials = _data(name)
    h = 1e-5

    def ll(e):
        return fam.log_likelihood(y, e, sigma=sigma, trials=trials)

    fd1 = (ll(eta + h) - ll(eta - h)) / (2 * h)
    fd2 = -(ll(eta + h) - 2 * ll(eta) + ll(eta - h)) / h**2
    np.testing.assert_allclose(fam.score(y, eta, sigma=sigma, trials=trials), fd1, rtol=1e-6, atol=1e-7)
    np.testing.assert_allclose(fam.curvature(y, eta, sigma=sigma, trials=trials), fd2, rtol=1e-4, atol=1e-4)


@pytest.mark.parametrize("name", FAMILIES)
def test_links_mean_and_xarray(name):
    fam = get_family(name)
    eta = np.linspace(-3, 3, 13)
    np.testing.assert_allclose(fam.link(fam.inverse_link(eta)), eta, rtol=1e-10, atol=1e-10)
    da = xr.DataArray(eta, dims="obs_id")
    out = fam.inverse_link(da)
    assert isinstance(out, xr.DataArray) and out.dims == ("obs_id",)
    y, e, sigma, trials = _data(name)
    ll = fam.log_likelihood(xr.DataArray(y, dims="obs_id"), xr.DataArray(e, dims="obs_id"), sigma=sigma,
                            trials=trials)
    assert isinstance(ll, xr.DataArray)
    mean = fam.mean(e, trials)
    expected = fam.inverse_link(e) * (1.0 if trials is None else trials)
    np.testing.assert_allclose(mean, expected)


@pytest.mark.parametrize("name", FAMILIES)
def test_draws_have_the_family_mean(name):
    """The mean of 20,000 draws per row equals fam.mean within 4 Monte Carlo standard errors."""
    fam = get_family(name)
    _, eta, sigma, trials = _data(name, n=6)
    rng = np.random.default_rng(5)
    S = 20_000
    draws = fam.draw(np.broadcast_to(eta, (S, eta.size)), rng, sigma=sigma, trials=trials)
    assert draws.dtype == float
    mc_se = draws.std(axis=0) / np.sqrt(S)
    assert np.all(np.abs(draws.mean(axis=0) - fam.mean(eta, trials)) < 4 * mc_se + 1e-12)


def test_within_variance_and_row_sizes():
    n, D, mu = np.array([2.0, 5.0]), np.array([4.0, 10.0]), np.array([0.2, 0.5])
    np.testing.assert_allclose(get_family("gaussian").within_variance(D, mu, sigma=2.0, n=n), 4.0 / n)
    np.testing.assert_allclose(get_family("binomial").within_variance(D, mu), 1 / (D * mu * (1 - mu)))
    np.testing.assert_allclose(get_family("poisson").within_variance(D, mu), 1 / (D * mu))
    assert get_family("binomial").row_size(3, trials=np.array([2.0, 3.0, 4.0])).tolist() == [2, 3, 4]
    assert get_family("poisson").row_size(2, exposure=np.array([0.5, 2.0])).tolist() == [0.5, 2.0]
    assert get_family("bernoulli").row_size(2).tolist() == [1.0, 1.0]
    with pytest.raises(ValueError, match="needs trials="):
        get_family("binomial").check_arguments(None, None)
    with pytest.raises(ValueError, match="exposure='e' is only used with family='poisson'"):
        get_family("bernoulli").check_arguments(None, "e")


# ------------------------------------------------------------------------------------------------------
# quadrature
def _quad_log_marginal(fam, y, eta, tau, sigma=None, trials=None):
    """log integral prod_i p(y_i | eta_i + u) Normal(u | 0, tau) du by scipy.integrate.quad."""
    def log_f(u):
        return (np.sum(fam.log_likelihood(y, eta + u, sigma=sigma, trials=trials))
                + stats.norm.logpdf(u, 0.0, tau))

    grid = np.linspace(-12 * tau - 6, 12 * tau + 6, 241)
    vals = np.array([log_f(u) for u in grid])
    m = grid[np.argmax(vals)]
    top = vals.max()
    val, _ = integrate.quad(lambda u: np.exp(log_f(u) - top), m - 12 * tau - 6, m + 12 * tau + 6,
                            points=[m], epsabs=0, epsrel=1e-13, limit=2000)
    return top + np.log(val)


@pytest.mark.parametrize("name", ["gaussian", "bernoulli", "binomial", "poisson"])
def test_log_marginal_matches_numerical_integration(name):
    """Adaptive Gauss-Hermite (30 nodes) against scipy's quad: relative error of the integral < 1e-8,
    for groups of 1 to 6 rows and several taus, two draws at once."""
    fam = get_family(name)
    rng = np.random.default_rng(3)
    sizes = np.array([1, 2, 4, 6])
    codes = np.repeat(np.arange(sizes.size), sizes)
    m = codes.size
    y, _, sigma, trials = _data(name, n=m, rng=rng)
    eta = np.stack([rng.normal(-0.3, 0.6, m), rng.normal(0.4, 0.6, m)])  # (2 draws, rows)
    for tau in (0.3, 1.0, 1.5):
        taus = np.array([tau, 0.8 * tau])
        sig = None if sigma is None else np.array([sigma, 1.3 * sigma])
        got = Q.log_marginal(fam, y, eta, codes, sizes.size, taus, sigma=sig, trials=trials, n_nodes=30)
        assert got.shape == (2, sizes.size)
        for s in range(2):
            for g in range(sizes.size):
                rows = codes == g
                ref = _quad_log_marginal(fam, y[rows], eta[s, rows], taus[s],
                                         sigma=None if sig is None else sig[s],
                                         trials=None if trials is None else trials[rows])
                assert abs(np.expm1(got[s, g] - ref)) < 1e-8, (name, tau, s, g, got[s, g], ref)


@pytest.mark.parametrize("name", FAMILIES)
def test_group_modes_solve_the_penalized_score(name):
    """At the mode the penalized score is 0; gaussian has the closed form sum(r) / (n + sigma^2 prec)."""
    fam = get_family(name)
    rng = np.random.default_rng(8)
    codes = np.repeat(np.arange(5), [1, 2, 3, 5, 8])
    y, eta, sigma, trials = _data(name, n=codes.size, rng=rng)
    for prec in (0.01, 1.0, 50.0):
        u, h = Q.group_modes(fam, y, eta, codes, 5, prec, sigma=sigma, trials=trials)
        e = eta + u[0, codes]
        g = np.bincount(codes, weights=fam.score(y, e, sigma=sigma, trials=trials)) - prec * u[0]
        assert np.max(np.abs(g)) < 1e-8
        np.testing.assert_allclose(h[0], np.bincount(codes, weights=np.broadcast_to(
            fam.curvature(y, e, sigma=sigma, trials=trials), e.shape)) + prec, rtol=1e-12)
        if fam.has_sigma:
            n = np.bincount(codes).astype(float)
            exact = np.bincount(codes, weights=y - eta) / (n + sigma**2 * prec)
            np.testing.assert_allclose(u[0], exact, rtol=1e-12, atol=1e-14)


def test_compiled_pattern_kernel_equals_log_marginal():
    """The compiled binomial pattern kernel (the integrated collapse's Op) equals the general quadrature
    with the Family's binomial formulas (its log C(n, k) removed)."""
    from scipy.special import gammaln

    k = np.concatenate([np.arange(t + 1.0) for t in (1, 3, 8)])
    n = np.concatenate([np.full(t + 1, float(t)) for t in (1, 3, 8)])
    for a, tau in [(-2.0, 0.4), (0.3, 1.0), (1.5, 2.0)]:
        got = Q.pattern_logml(k, n, a, tau, False)[0]
        ref = Q.log_marginal("binomial", k, np.full((1, k.size), a), np.arange(k.size), k.size, tau, trials=n,
                             n_nodes=Q.N_NODES)[0]
        ref = ref - (gammaln(n + 1) - gammaln(k + 1) - gammaln(n - k + 1))
        np.testing.assert_allclose(got, ref, rtol=1e-11, atol=1e-11)
