"""Response families: support checks, canonical links and natural-scale summaries.

=========  ==========  =================================================  ===========================
family     link        response                                           natural scale of a group
=========  ==========  =================================================  ===========================
gaussian   identity    real numbers                                       mean of y
bernoulli  logit       0/1 (booleans are read as 0/1)                     rate: mean of y
binomial   logit       successes 0 <= y <= trials (``trials=``)           rate: sum(y) / sum(trials)
poisson    log         non-negative integer counts (``exposure=``)        mean count, or sum(y) /
                                                                          sum(exposure) with exposure
=========  ==========  =================================================  ===========================
"""

from __future__ import annotations

import numpy as np
from scipy.special import expit, logit

LINKS = {"gaussian": "identity", "bernoulli": "logit", "binomial": "logit", "poisson": "log"}


def link(family: str, mu):
    """The canonical link of ``family`` applied to a natural-scale value ``mu``."""
    mu = np.asarray(mu, dtype=float)
    if family == "gaussian":
        return mu
    if family in ("bernoulli", "binomial"):
        return logit(np.clip(mu, 1e-6, 1 - 1e-6))
    return np.log(np.maximum(mu, 1e-6))


def inverse_link(family: str, eta):
    """Map a linear predictor to the natural scale (works on numpy and xarray objects)."""
    if family == "gaussian":
        return eta
    if family in ("bernoulli", "binomial"):
        return expit(eta)
    return np.exp(eta)


def _is_integer_valued(y: np.ndarray) -> bool:
    return bool(np.all(np.equal(np.mod(y, 1), 0)))


def check_support(family: str, y: np.ndarray, name: str, trials: np.ndarray | None = None) -> None:
    """Raise ``ValueError`` if ``y`` lies outside the support of ``family``."""
    if family == "bernoulli":
        bad = ~np.isin(y, (0.0, 1.0))
        if bad.any():
            raise ValueError(
                f"y={name!r} must hold only 0 and 1 for family='bernoulli'; found "
                f"{np.unique(y[bad])[:5].tolist()} in {int(bad.sum())} rows. For counts out of a number of "
                "trials use family='binomial' with trials=."
            )
    elif family == "binomial":
        if not _is_integer_valued(y) or (y < 0).any():
            raise ValueError(
                f"y={name!r} must hold non-negative integer success counts for family='binomial'."
            )
        over = y > trials
        if over.any():
            i = int(np.flatnonzero(over)[0])
            raise ValueError(
                f"y={name!r} exceeds trials in {int(over.sum())} rows (first: row {i}, y={y[i]:g} > "
                f"trials={trials[i]:g}); successes must satisfy 0 <= y <= trials."
            )
    elif family == "poisson":
        if (y < 0).any() or not _is_integer_valued(y):
            bad = y[(y < 0) | (np.mod(y, 1) != 0)]
            raise ValueError(
                f"y={name!r} must hold non-negative integer counts for family='poisson'; found "
                f"{np.unique(bad)[:5].tolist()}."
            )
