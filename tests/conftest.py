"""Shared fixtures: seeded simulated data of known truth and small fits reused across tests.

Expensive fits are session-scoped (bambi's habit) so many tests read one posterior.
"""

from __future__ import annotations

import os
import warnings

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
