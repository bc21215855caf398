"""The linear predictor and the design of the training rows, computed from a fit's DataTree alone.

Works through the names of :mod:`hierpool.core.names`, so it serves a fit of any variant, freshly sampled or
loaded from disk, without the PyMC model. Used by :func:`hierpool.fit` (the stored log-likelihood) and by
the analysis layer (predictions, posterior predictive checks, cross-validation); the densities and
response draws are the family's (:mod:`hierpool.core.families`).
"""

from __future__ import annotations

import numpy as np
import xarray as xr

from hierpool.core import names as N


def linear_predictor(post: xr.Dataset, X, group_idx, offset=None, group_effect=None, extra=None) -> xr.DataArray:
    """eta = intercept + X beta + group_effect[group_idx] (+ offset) (+ extra), over the sample dims and
    ``obs_id``.

    ``X`` is a DataArray with dims (obs_id, predictor) on the user's scale, or None without predictors.
    ``group_effect`` defaults to the posterior's; pass draws for new groups to override. A random-slopes
    fit (``group_slope`` in the posterior) adds ``sum_k x_ik group_slope[g_i, k]`` unless ``group_effect``
    is given (then the caller handles the groups). ``extra``: the further grouping factors' effects at
    each row (:func:`other_factor_effects`), or None.
    """
    eta = post[N.INTERCEPT]
    if X is not None and N.BETA in post and X.sizes.get(N.PREDICTOR, 0):
        eta = eta + xr.dot(X, post[N.BETA], dim=N.PREDICTOR)
    u = post[N.GROUP_EFFECT] if group_effect is None else group_effect
    if N.GROUP in u.dims:
        u = u.isel({N.GROUP: group_idx})
    eta = eta + u
    if group_effect is None and N.GROUP_SLOPE in post and X is not None:
        slopes = [str(v) for v in post[N.SLOPE].values]
        Xs = X.sel({N.PREDICTOR: slopes}).rename({N.PREDICTOR: N.SLOPE}).drop_vars(N.SLOPE)
        v = post[N.GROUP_SLOPE].drop_vars(N.SLOPE, errors="ignore").isel({N.GROUP: group_idx})
        eta = eta + xr.dot(Xs, v, dim=N.SLOPE)
    if offset is not None:
        eta = eta + offset
    if extra is not None:
        eta = eta + extra
    return eta


def factor_names(post: xr.Dataset, const: xr.Dataset) -> list[str]:
    """The further grouping factors of a fit (beyond ``group``): those with an effect ``group_effect__f`` in
    ``post`` and a row index ``group_idx__f`` in ``const``, in the order of ``const``."""
    prefix = N.GROUP_IDX + N.FACTOR_SEP
    out = []
    for v in const.data_vars:
        v = str(v)
        if v.startswith(prefix) and N.factor_var(N.GROUP_EFFECT, v[len(prefix):]) in post:
            out.append(v[len(prefix):])
    return out


def other_factor_effects(post: xr.Dataset, const: xr.Dataset) -> xr.DataArray | None:
    """The sum of the further grouping factors' effects at each training row, dims (chain, draw, obs_id),
    or None for a fit with one grouping factor."""
    total = None
    for f in factor_names(post, const):
        u = post[N.factor_var(N.GROUP_EFFECT, f)]
        term = u.isel({N.factor_var(N.GROUP, f): const[N.factor_var(N.GROUP_IDX, f)]})
        term = term.drop_vars([c for c in term.coords if c not in (*N.SAMPLE_DIMS, N.OBS)])
        total = term if total is None else total + term
    return total


def design_from_constant(const: xr.Dataset):
    """(X, group_idx, offset, trials) of the training rows from constant_data."""
    X = const[N.X] if N.X in const else None
    gidx = const[N.GROUP_IDX]
    offset = np.log(const[N.EXPOSURE]) if N.EXPOSURE in const else None
    trials = const[N.TRIALS] if N.TRIALS in const else None
    return X, gidx, offset, trials
