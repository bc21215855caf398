"""Linear predictor, pointwise log-likelihood and response draws computed from a fit's DataTree alone.

Works through the names of :mod:`hierpool.core.names`, so it serves a fit of any variant, freshly sampled or
loaded from disk, without the PyMC model. Used by :func:`hierpool.fit` (the stored log-likelihood) and by
the analysis layer (predictions, posterior predictive checks, cross-validation).
"""

from __future__ import annotations

import numpy as np
import xarray as xr
from scipy.special import gammaln

from hierpool.core import names as N


def linear_predictor(post: xr.Dataset, X, group_idx, offset=None, group_effect=None) -> xr.DataArray:
    """eta = intercept + X beta + group_effect[group_idx] (+ offset), over the sample dims and ``obs_id``.

    ``X`` is a DataArray with dims (obs_id, predictor) on the user's scale, or None without predictors.
    ``group_effect`` defaults to the posterior's; pass draws for new groups to override.
    """
    eta = post[N.INTERCEPT]
    if X is not None and N.BETA in post and X.sizes.get(N.PREDICTOR, 0):
        eta = eta + xr.dot(X, post[N.BETA], dim=N.PREDICTOR)
    u = post[N.GROUP_EFFECT] if group_effect is None else group_effect
    if N.GROUP in u.dims:
        u = u.isel({N.GROUP: group_idx})
    eta = eta + u
    if offset is not None:
        eta = eta + offset
    return eta


def log_likelihood(family: str, y, eta, sigma=None, trials=None):
    """Pointwise log density of ``y`` given the linear predictor (numpy or xarray, broadcasting)."""
    if family == "gaussian":
        z = (y - eta) / sigma
        return -0.5 * z**2 - np.log(sigma) - 0.5 * np.log(2 * np.pi)
    if family == "bernoulli":
        return y * eta - np.logaddexp(0.0, eta)
    if family == "binomial":
        const = gammaln(trials + 1) - gammaln(y + 1) - gammaln(trials - y + 1)
        return const + y * eta - trials * np.logaddexp(0.0, eta)
    if family == "poisson":
        return y * eta - np.exp(eta) - gammaln(y + 1)
    raise ValueError(f"unknown family {family!r}")


def draw_response(family: str, eta: np.ndarray, rng: np.random.Generator, sigma=None, trials=None):
    """Draw responses given a linear predictor array (numpy)."""
    if family == "gaussian":
        return rng.normal(eta, sigma)
    if family == "bernoulli":
        return rng.binomial(1, 1.0 / (1.0 + np.exp(-eta))).astype(float)
    if family == "binomial":
        return rng.binomial(trials.astype(np.int64), 1.0 / (1.0 + np.exp(-eta))).astype(float)
    return rng.poisson(np.exp(eta)).astype(float)


def design_from_constant(const: xr.Dataset):
    """(X, group_idx, offset, trials) of the training rows from constant_data."""
    X = const[N.X] if N.X in const else None
    gidx = const[N.GROUP_IDX]
    offset = np.log(const[N.EXPOSURE]) if N.EXPOSURE in const else None
    trials = const[N.TRIALS] if N.TRIALS in const else None
    return X, gidx, offset, trials
