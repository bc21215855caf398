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
from hierpool.core import names as N

os.environ.setdefault("MPLBACKEND", "Agg")

SAMPLE = N.SAMPLE_DIMS


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
    """Two independent fits of one posterior agree to Monte Carlo error, in means and in spreads.

    For each variable and element, the difference of the two estimates over its standard error
    sqrt(mcse_1^2 + mcse_2^2) (each fit's MCSE from its own draws, :func:`arviz.mcse`) must stay below
    ``z_max``: means with ``method="mean"``, posterior SDs with ``method="sd"``. At z_max = 4.5 a correct
    sampler fails an element with probability 7e-6 (normal tails), so even a vector of 60 group effects
    passes by chance with probability > 0.999.

    One element's SD is known only to about sd / sqrt(2 ESS) (3% at an ESS of 500), too coarse to see a
    variance bug of 10% (5% in the SD). So for a vector variable the spread is also compared as a whole:
    the mean over elements of the squared deviations from their posterior means, q = mean_k (x_k -
    mean(x_k))^2, is one number per draw whose posterior mean is the average posterior variance; its MCSE
    (``method="mean"`` on q) accounts for the autocorrelation and the correlation between elements exactly.
    Its relative MCSE is about sqrt(2 / (K ESS)), 0.4% for 60 effects at an ESS of 2,000: a 10% variance
    bug is then more than 10 standard errors off. (Centering at the estimated means biases q by a relative
    1/ESS, far below its MCSE.)
    """
    p1, p2 = d1["posterior"].to_dataset(), d2["posterior"].to_dataset()

    def z_of(stat1, stat2, e1, e2):
        return np.abs((stat1 - stat2) / np.sqrt(e1**2 + e2**2)).values

    for v in names:
        x1, x2 = p1[[v]], p2[[v]]
        z = z_of(x1[v].mean(SAMPLE), x2[v].mean(SAMPLE), az.mcse(x1, method="mean")[v], az.mcse(x2, method="mean")[v])
        assert np.all(z < z_max), (v, "mean", z.max())
        z = z_of(x1[v].std(SAMPLE), x2[v].std(SAMPLE), az.mcse(x1, method="sd")[v], az.mcse(x2, method="sd")[v])
        assert np.all(z < z_max), (v, "sd", z.max())
        event = [d for d in x1[v].dims if d not in SAMPLE]
        if event:
            q1 = ((x1[v] - x1[v].mean(SAMPLE)) ** 2).mean(event).to_dataset(name=v)
            q2 = ((x2[v] - x2[v].mean(SAMPLE)) ** 2).mean(event).to_dataset(name=v)
            z = z_of(q1[v].mean(SAMPLE), q2[v].mean(SAMPLE), az.mcse(q1, method="mean")[v],
                     az.mcse(q2, method="mean")[v])
            assert z < z_max, (v, "average variance", float(z), float(q1[v].mean()), float(q2[v].mean()))


@pytest.fixture(scope="session")
def sim_gaussian():
    """60 groups of 1-5 rows, two predictors; truth in df.attrs['truth']."""
    return hp.datasets.simulate("gaussian", n_groups=60, n_predictors=2, tau=1.0, sigma=1.0, seed=11)


@pytest.fixture(scope="session")
def gaussian_fits(sim_gaussian):
    """The three variants fitted to the same gaussian data (small but converged). MCMC: slow tests only."""
    gd = hp.prepare(sim_gaussian, y="y", group="group", predictors=["x1", "x2"])
    return {
        "random_intercepts": quiet_fit(hp.random_intercepts(gd)),
        "ridge_fixed_effects": quiet_fit(hp.ridge_fixed_effects(gd, lam=1.0)),
        "regularized_hierarchical": quiet_fit(hp.regularized_hierarchical(gd, penalty="horseshoe")),
    }


@pytest.fixture
def rng():
    return np.random.default_rng(2026)
