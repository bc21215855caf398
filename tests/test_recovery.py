"""Statistical checks of the factories: recovery of known truth and the exact ridge = BLUP identity."""

from __future__ import annotations

import arviz as az
import numpy as np
import pytest
from conftest import quiet_fit

import hierpool as hp
from hierpool.core import names as N


def _interval(da, prob=0.95):
    """Central posterior interval. Each containment check below fails with probability 1 - prob = 5% under a
    calibrated posterior (the seeds are fixed; the SBC tests calibrate over many data sets), and with
    certainty under a biased one: a sign or scale error moves the truth many posterior sds out."""
    q = da.quantile([(1 - prob) / 2, (1 + prob) / 2], dim=("chain", "draw"))
    return q.values


@pytest.mark.slow
def test_gaussian_recovery():
    df = hp.datasets.simulate("gaussian", n_groups=200, n_predictors=2, tau=1.0, sigma=1.0, seed=101)
    truth = df.attrs["truth"]
    dt = quiet_fit(hp.random_intercepts(df, y="y", group="group", predictors=["x1", "x2"]),
                   draws=500, tune=500, random_seed=1)
    post = dt["posterior"]
    for k, b in enumerate(truth["beta"]):
        lo, hi = _interval(post[N.BETA].isel(predictor=k))
        assert lo < b < hi, (k, lo, b, hi)
    lo, hi = _interval(post[N.TAU])
    assert lo < truth["tau"] < hi
    lo, hi = _interval(post[N.SIGMA])
    assert lo < truth["sigma"] < hi
    est = post[N.GROUP_EFFECT].mean(("chain", "draw")).to_series()
    true_u = np.array([truth["group_effect"][g] for g in est.index])
    # corr(E[u | y], u) = sqrt(mean rho_j) = 0.841 for these sizes (tau = sigma = 1, rho_j = n_j / (n_j + 1)),
    # sampling sd (1 - 0.708) / sqrt(200) = 0.021: 0.75 is 4.4 sd below (measured 0.829)
    assert np.corrcoef(est.values, true_u)[0, 1] > 0.75


@pytest.mark.slow
def test_bernoulli_recovery():
    df = hp.datasets.simulate("bernoulli", n_groups=300, group_sizes=(4, 10), n_predictors=1, tau=1.0,
                              intercept=-0.5, beta=[0.8], seed=102)
    truth = df.attrs["truth"]
    dt = quiet_fit(hp.random_intercepts(df, y="y", group="group", predictors=["x1"], family="bernoulli"),
                   draws=500, tune=500, random_seed=2)
    post = dt["posterior"]
    lo, hi = _interval(post[N.BETA].isel(predictor=0))
    assert lo < truth["beta"][0] < hi
    lo, hi = _interval(post[N.INTERCEPT])
    assert lo < truth["intercept"] < hi
    lo, hi = _interval(post[N.TAU])
    assert lo < truth["tau"] < hi
    est = post[N.GROUP_EFFECT].mean(("chain", "draw")).to_series()
    true_u = np.array([truth["group_effect"][g] for g in est.index])
    # linearized as the gaussian case: rho_j = n_j w / (n_j w + 1), w = E[p(1 - p)] = 0.184 over this design,
    # sqrt(mean rho_j) = 0.743, sampling sd (1 - 0.552) / sqrt(300) = 0.026: 0.63 is 4.4 sd below (measured 0.742)
    assert np.corrcoef(est.values, true_u)[0, 1] > 0.63


@pytest.mark.slow
def test_ridge_with_lam_one_over_tau_sq_is_the_blup():
    """Henderson: with lam = 1/tau^2 and sigma fixed, ridge group effects = rho_j (ybar_j - mu_hat).

    The model is jointly Gaussian in (intercept, group effects), so the posterior mean is available in
    closed form, including the intercept's wide Normal(m0, s0) prior: mu_hat is the precision-weighted mean
    of the group means with weights w_j = 1/(tau^2 + sigma^2/n_j) plus the prior's precision.
    """
    tau, sigma = 0.7, 1.3
    df = hp.datasets.simulate("gaussian", n_groups=40, n_predictors=0, tau=tau, sigma=sigma, seed=103)
    gd = hp.prepare(df, y="y", group="group")
    model = hp.ridge_fixed_effects(gd, lam=1 / tau**2, priors={"sigma": sigma})
    dt = quiet_fit(model, draws=2000, tune=500, random_seed=3)

    n, ybar = gd.group_n, gd.group_raw_mean
    m0, s0 = gd.y_location, 100 * gd.y_scale  # the ridge variant's documented intercept prior
    w = 1 / (tau**2 + sigma**2 / n)
    mu_hat = (m0 / s0**2 + np.sum(w * ybar)) / (1 / s0**2 + np.sum(w))
    rho = tau**2 / (tau**2 + sigma**2 / n)
    blup = rho * (ybar - mu_hat)

    post = dt["posterior"][N.GROUP_EFFECT]
    est = post.mean(("chain", "draw")).values
    mcse = az.mcse(dt["posterior"].to_dataset()[[N.GROUP_EFFECT]], method="mean")[N.GROUP_EFFECT].values
    z = (est - blup) / mcse
    assert np.all(np.abs(z) < 4.5), np.abs(z).max()  # 40 groups: 4.5 MCSE is a family-wise bound
    assert np.mean(z**2) < 2.0  # and the errors are of Monte Carlo size on average (E = 1)
    mu_post = float(dt["posterior"][N.INTERCEPT].mean())
    assert abs(mu_post - mu_hat) < 5 * float(az.mcse(dt["posterior"].to_dataset()[[N.INTERCEPT]])[N.INTERCEPT])
