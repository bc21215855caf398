"""penalty="elastic_net" for the regularized variant (issue 14): the contract, the prior's density and
scale, glmnet's mixing parameter at the ends, and simulation-based calibration."""

from __future__ import annotations

import math

import numpy as np
import pymc as pm
import pytensor
import pytensor.tensor as pt
import pytest
from scipy import integrate

import hierpool as hp
from hierpool.core import names as N
from hierpool.models.priors import elastic_net, elastic_net_rate
from validation import sbc


@pytest.mark.parametrize("family", ["gaussian", "bernoulli", "poisson"])
def test_contract_and_settings(family):
    df = hp.datasets.simulate(family, n_groups=12, n_predictors=2, seed=1)
    model = hp.regularized_hierarchical(df, penalty="elastic_net", l1_ratio=0.3, y="y", group="group",
                                        predictors=["x1", "x2"], family=family, collapse=False)
    assert {N.INTERCEPT, N.BETA, N.GROUP_EFFECT, N.TAU, N.Y} <= set(model.named_vars)
    assert model.named_vars_to_dims[N.BETA] == (N.PREDICTOR,)
    desc = hp.describe(model)
    assert desc.penalty == "elastic_net" and desc.settings["l1_ratio"] == 0.3
    assert np.isfinite(model.compile_logp()(model.initial_point()))
    with pytest.raises(ValueError, match=r"l1_ratio=1.5 must be a number in \[0, 1\]"):
        hp.regularized_hierarchical(df, penalty="elastic_net", l1_ratio=1.5, y="y", group="group",
                                    predictors=["x1"], family=family)


@pytest.mark.parametrize("l1_ratio", [0.1, 0.5, 0.9])
def test_prior_is_normalized_has_sd_scale_and_the_stated_shape(l1_ratio):
    """The log density integrates to 1 (quadrature, 1e-8), its sd is the penalty scale (1e-8), the
    log-density ratio of two points is the elastic net's, and 200,000 draws match its sd within 4.5
    Monte Carlo standard errors (se of the sd: sd * sqrt((kurtosis - 1) / (4 n)))."""
    scale = 1.7
    with pm.Model():
        x = elastic_net("x", scale, l1_ratio)
    v = pt.dscalar("v")
    logp_fn = pytensor.function([v], pm.logp(x, v))  # compiled once: quad calls it hundreds of times
    f = lambda t: math.exp(float(logp_fn(t)))  # noqa: E731
    total = integrate.quad(f, -60, 60, limit=200)[0]
    assert abs(total - 1) < 1e-8
    var = integrate.quad(lambda v: v * v * f(v), -60, 60, limit=200)[0]
    assert abs(math.sqrt(var) - scale) < 1e-8
    r = elastic_net_rate(scale, l1_ratio)
    lp = lambda t: float(logp_fn(t))  # noqa: E731
    want = -r * (l1_ratio * (2.0 - 0.5) + (1 - l1_ratio) / 2 * (4.0 - 0.25))
    assert abs((lp(2.0) - lp(0.5)) - want) < 1e-10
    with pm.Model():  # one call of the draw function for all of them (pm.draw loops over draws)
        many = elastic_net("many", scale, l1_ratio, shape=200_000)
    d = pm.draw(many, random_seed=3)
    kurt = integrate.quad(lambda v: v**4 * f(v), -60, 60, limit=200)[0] / var**2
    se = scale * math.sqrt((kurt - 1) / (4 * d.size))
    assert abs(d.std() - scale) < 4.5 * se
    assert abs(d.mean()) < 4.5 * scale / math.sqrt(d.size)


def test_ends_are_the_ridge_and_the_laplace():
    with pm.Model() as m:
        elastic_net("a", 2.0, 0.0)
        elastic_net("b", 2.0, 1.0)
    assert type(m["a"].owner.op).__name__ == "NormalRV" and type(m["b"].owner.op).__name__ == "LaplaceRV"
    assert elastic_net_rate(2.0, 0.0) == pytest.approx(1 / 4, rel=1e-15)
    assert elastic_net_rate(2.0, 1.0) == pytest.approx(math.sqrt(2) / 2, rel=1e-15)


@pytest.mark.slow
def test_sbc_elastic_net_gaussian():
    """Simulation-based calibration of the elastic-net penalty: 100 data sets drawn from the prior,
    refitted; rank histograms uniform (chi-square at alpha = 0.01 per parameter, as the other SBC tests)."""
    fit_m, data_m = sbc.build_pair("regularized_hierarchical", "gaussian", penalty="elastic_net", l1_ratio=0.5,
                                   penalty_scale=1.0)
    ranks = sbc.sbc_ranks(fit_m, data_model=data_m, n_sims=100, seed=21)
    tab = sbc.rank_uniformity(ranks, alpha=0.01)
    assert "beta[x1]" in set(tab["parameter"])
    assert tab["uniform"].all(), tab.to_string()
    assert np.allclose(tab["mean_rank"], 49.5, atol=4 * 2.9), tab.to_string()
