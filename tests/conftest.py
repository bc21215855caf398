"""Shared fixtures: seeded simulated data of known truth and small fits reused across tests.

Expensive fits are session-scoped (bambi's habit) so many tests read one posterior.
"""

from __future__ import annotations

import os
import warnings

import arviz as az
import numpy as np
import pytest

import hierpool as hp

os.environ.setdefault("MPLBACKEND", "Agg")


def quiet_fit(model, **kwargs):
    """hp.fit with small defaults for tests; sampling warnings are not errors here."""
    kwargs.setdefault("draws", 300)
    kwargs.setdefault("tune", 300)
    kwargs.setdefault("chains", 4)
    kwargs.setdefault("random_seed", 1)
    kwargs.setdefault("progressbar", False)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", hp.HierpoolSamplingWarning)
        return hp.fit(model, **kwargs)


def compare_posteriors(d1, d2, names, z_max=4.5):
    """Two fits of one posterior: means agree within z_max combined MCSEs, sds within 20%."""
    p1, p2 = d1["posterior"].to_dataset(), d2["posterior"].to_dataset()
    for v in names:
        m1, m2 = p1[v].mean(("chain", "draw")), p2[v].mean(("chain", "draw"))
        e1 = az.mcse(p1[[v]], method="mean")[v]
        e2 = az.mcse(p2[[v]], method="mean")[v]
        z = np.abs((m1 - m2) / np.sqrt(e1**2 + e2**2)).values
        assert np.all(z < z_max), (v, z.max())
        s1, s2 = p1[v].std(("chain", "draw")).values, p2[v].std(("chain", "draw")).values
        np.testing.assert_allclose(s1, s2, rtol=0.2, err_msg=v)  # sd to ~20% with ~1000-2000 ESS


@pytest.fixture(scope="session")
def sim_gaussian():
    """60 groups of 1-5 rows, two predictors; truth in df.attrs['truth']."""
    return hp.datasets.simulate("gaussian", n_groups=60, n_predictors=2, tau=1.0, sigma=1.0, seed=11)


@pytest.fixture(scope="session")
def sim_bernoulli():
    return hp.datasets.simulate("bernoulli", n_groups=60, n_predictors=1, tau=1.0, seed=12)


@pytest.fixture(scope="session")
def gaussian_fits(sim_gaussian):
    """The three variants fitted to the same gaussian data (small but converged)."""
    gd = hp.prepare(sim_gaussian, y="y", group="group", predictors=["x1", "x2"])
    return {
        "random_intercepts": quiet_fit(hp.random_intercepts(gd)),
        "ridge_fixed_effects": quiet_fit(hp.ridge_fixed_effects(gd, lam=1.0)),
        "regularized_hierarchical": quiet_fit(hp.regularized_hierarchical(gd, penalty="horseshoe")),
    }


@pytest.fixture(scope="session")
def bernoulli_fit(sim_bernoulli):
    gd = hp.prepare(sim_bernoulli, y="y", group="group", predictors=["x1"], family="bernoulli")
    return quiet_fit(hp.random_intercepts(gd))


@pytest.fixture
def rng():
    return np.random.default_rng(2026)
