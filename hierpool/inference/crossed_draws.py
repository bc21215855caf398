"""Exact conditional draws of the first factor's effects of a collapsed crossed gaussian model.

With the first factor (members) integrated out given the further factors' effects ``v``
(:mod:`hierpool.models.crossed`), each posterior draw gets one draw of every member effect from
``u_j | a, b, tau, sigma, v, y ~ Normal(n_j tau^2 e_j / d_j, sigma^2 tau^2 / d_j)``, ``d_j = sigma^2 + n_j
tau^2``, ``e_j = ybar_j - wbar_j - a - xbar_j b``, where ``n_j wbar_j = sum_f (C_f v_f)_j`` and ``C_f`` is the
sparse J x H_f count matrix of member j's rows at level h of factor f. So the stored ``group_effect``
has the row-level model's joint distribution. Draws are formed in blocks of posterior draws (a sparse
product per block), so the temporaries stay within the memory budget's working chunk.
"""

from __future__ import annotations

import numpy as np
import scipy.sparse as sp
import xarray as xr

from hierpool.core import config
from hierpool.core import names as N
from hierpool.data.crossed_stats import crossed_gaussian_stats
from hierpool.models.crossed import crossed_conditional_moments
from hierpool.models.description import ModelDescription

__all__ = ["count_matrices", "crossed_group_effects"]


def count_matrices(cs) -> list:
    """Per further factor, the J x H_f CSR matrix of rows of member j at level h."""
    J = cs.member.n.shape[0]
    return [sp.csr_matrix((cs.cell_n, (cs.cell_member, lev)), shape=(J, H))
            for lev, H in zip(cs.cell_levels, cs.n_levels, strict=True)]


def crossed_group_effects(post: xr.Dataset, desc: ModelDescription, seed: np.random.SeedSequence,
                          dtype=np.float64) -> xr.DataArray:
    """One exact conditional draw of every member effect per posterior draw, dims (chain, draw, group)."""
    gd = desc.data
    cs = crossed_gaussian_stats(gd)
    Cs = count_matrices(cs)
    a = post[N.INTERCEPT]
    C, D = a.sizes["chain"], a.sizes["draw"]
    S, J = C * D, gd.n_groups
    b = None
    if gd.n_predictors:
        a = a + xr.dot(post[N.BETA], xr.DataArray(gd.x_center, dims=N.PREDICTOR), dim=N.PREDICTOR)
        b = (post[N.BETA] * xr.DataArray(gd.x_scale, dims=N.PREDICTOR)).transpose(
            *N.SAMPLE_DIMS, N.PREDICTOR).values.reshape(S, -1)
    a = a.transpose(*N.SAMPLE_DIMS).values.reshape(S)
    tau = (post[N.TAU].transpose(*N.SAMPLE_DIMS).values.reshape(S) if N.TAU in post
           else np.full(S, desc.group_sd_fixed))
    sigma = post[N.SIGMA].transpose(*N.SAMPLE_DIMS).values.reshape(S)
    vs = [post[N.factor_var(N.GROUP_EFFECT, f.name)].transpose(*N.SAMPLE_DIMS, N.factor_var(N.GROUP, f.name))
          .values.reshape(S, -1) for f in gd.factors]
    out = np.empty((S, J), dtype=dtype)
    rng = np.random.default_rng(seed)
    block = max(1, min(S, config.chunk_values() // (4 * max(J, 1))))  # a few (block, J) temporaries per chunk
    for lo in range(0, S, block):
        hi = min(S, lo + block)
        wsum = sum(np.asarray((Cf @ v[lo:hi].T).T) for Cf, v in zip(Cs, vs, strict=True))
        m, sd = crossed_conditional_moments(cs, a[lo:hi], None if b is None else b[lo:hi], tau[lo:hi],
                                            sigma[lo:hi], wsum)
        out[lo:hi] = m + sd * rng.standard_normal(m.shape)
    return xr.DataArray(out.reshape(C, D, J), dims=(*N.SAMPLE_DIMS, N.GROUP))
