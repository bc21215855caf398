"""``hp.fit(..., min_ess=)``: rounds of new chains until the population parameters' bulk and tail ESS reach
the target (R-hat checked), one report for the combined fit."""

from __future__ import annotations

import json

import arviz as az
import numpy as np
import pytest

import hierpool as hp
from hierpool.core import names as N


@pytest.fixture(scope="module")
def model():
    df = hp.datasets.simulate_gaussian(n_groups=30, seed=3)
    return hp.random_intercepts(df, y="y", group="group")


def test_min_ess_refusals(model):
    with pytest.raises(ValueError, match="min_ess=-3 must be a positive number"):
        hp.fit(model, min_ess=-3)
    with pytest.raises(ValueError, match="max_rounds"):
        hp.fit(model, min_ess=100, max_rounds=0)
    with pytest.raises(TypeError, match="empirical_bayes"):
        hp.fit(model, min_ess=100, method="empirical_bayes")


@pytest.mark.slow
def test_min_ess_adds_rounds_until_reached(model):
    """100 draws x 4 chains cannot give a tail ESS of 600 (400 draws in all), so a second round at least
    is needed; the combined fit's own ESS (ArviZ on the returned DataTree) then meets the target, which
    is what the report says."""
    dt = hp.fit(model, draws=100, tune=300, chains=4, random_seed=5, progressbar=False, min_ess=600, max_rounds=6)
    rep = json.loads(dt.attrs[N.ATTR_DIAGNOSTICS])
    assert rep["rounds"] >= 2 and rep["min_ess_reached"]
    assert dt["posterior"].sizes["chain"] == 4 * rep["rounds"]
    s = az.summary(dt, var_names=["intercept", "tau", "sigma"], round_to="none")
    assert (s["ess_bulk"] >= 600).all() and (s["ess_tail"] >= 600).all() and (s["r_hat"] <= 1.01).all()
    np.testing.assert_array_equal(dt["posterior"]["chain"].values, np.arange(4 * rep["rounds"]))
    assert dt["log_likelihood"].sizes["chain"] == 4 * rep["rounds"]
    hp.shrinkage(dt)  # the analysis reads the combined fit


@pytest.mark.slow
def test_min_ess_missed_warns(model):
    with pytest.warns(hp.HierpoolSamplingWarning, match=r"min_ess=1e\+06 not reached after 2 rounds"):
        dt = hp.fit(model, draws=50, tune=100, chains=2, random_seed=1, progressbar=False, min_ess=1e6, max_rounds=2)
    rep = json.loads(dt.attrs[N.ATTR_DIAGNOSTICS])
    assert rep["rounds"] == 2 and not rep["min_ess_reached"] and dt["posterior"].sizes["chain"] == 4
