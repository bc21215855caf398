"""Exact conditional draws of group effects that were integrated out of the sampled model.

Gaussian: ``u_j | a, b, tau, sigma, y ~ Normal(n_j tau^2 e_j / d_j, sigma^2 tau^2 / d_j)`` with
``d_j = sigma^2 + n_j tau^2`` and ``e_j`` the group's mean residual; summary-level data (known standard
errors): the same with ``n_j = 1`` and ``sigma = se_j``; bernoulli/binomial without predictors:
rejection sampling from the (successes, trials) pattern's conditional (:mod:`hierpool.models.integrated`).
One draw per posterior draw, so the stored ``group_effect`` has the full model's joint distribution.
"""

from __future__ import annotations

import numpy as np
import xarray as xr

from hierpool.core import kernels as K
from hierpool.core import names as N
from hierpool.data.stats import GaussianStats
from hierpool.models import integrated
from hierpool.models.collapse import integrated_patterns
from hierpool.models.description import ModelDescription


def conditional_group_effects(stats: GaussianStats, a, b, tau, sigma):
    """Mean and sd of u_j | a, b, tau, sigma, y for arrays of draws (leading dims) -> (..., J)."""
    a = np.asarray(a, dtype=float)[..., None]
    e = stats.ybar - a
    if b is not None and stats.xbar.shape[1]:
        e = e - np.asarray(b, dtype=float) @ stats.xbar.T
    t2 = np.asarray(tau, dtype=float)[..., None] ** 2
    s2 = np.asarray(sigma, dtype=float)[..., None] ** 2
    d = s2 + stats.n * t2
    return stats.n * t2 * e / d, np.sqrt(s2 * t2 / d)


def draw_gaussian_group_effects(stats: GaussianStats, a, b, tau, sigma,
                                seed: np.random.SeedSequence | int | None = None, dtype=np.float64) -> np.ndarray:
    """Exact conditional draws of the group effects, shape ``a.shape + (J,)`` (e.g. chains, draws, J).

    One draw per posterior draw of ``(a, b, tau, sigma)`` from :func:`conditional_group_effects`' normal.
    The mean factor and sd depend on the group's size only, so they are formed per size class; the
    draws come from :func:`hierpool.core.kernels.gaussian_conditional_draws` (threads, reproducible from
    ``seed``; float32 ones on one machine and numpy build), written once into the output: no temporaries
    of its size. ``dtype`` float32 stores them to 7 significant digits (computed in float64 from float32
    standard normals, the precision they are stored in), for posteriors of millions of groups.
    """
    a = np.asarray(a, dtype=float)
    S, J = a.size, stats.n.shape[0]
    out = K.empty_large((S, J), dtype)
    seed_seq = seed if isinstance(seed, np.random.SeedSequence) else np.random.SeedSequence(seed)
    sizes, size_idx, _ = stats.size_index
    t2 = np.asarray(tau, dtype=float).reshape(-1, 1) ** 2
    s2 = np.asarray(sigma, dtype=float).reshape(-1, 1) ** 2
    d = s2 + sizes[None, :] * t2
    c = sizes[None, :] * t2 / d
    sd = np.sqrt(s2 * t2 / d)
    P = stats.xbar.shape[1]
    fb = np.zeros((S, 0)) if b is None or P == 0 else np.asarray(b, dtype=float).reshape(S, P)
    xbar = stats.xbar if fb.shape[1] else np.zeros((J, 0))
    K.gaussian_conditional_draws(out, seed_seq, stats.ybar, xbar, size_idx.reshape(-1), a.reshape(-1), fb, c, sd)
    return out.reshape(a.shape + (J,))


def known_se_conditional(y, se, mean, tau):
    """Mean and sd of ``u_j | mean, tau, y`` for summary-level data: ``y_j ~ Normal(mean_j + u_j, se_j)``,
    ``u_j ~ Normal(0, tau)``; ``mean`` (..., J) and ``tau`` (...) arrays of draws -> two (..., J) arrays."""
    t2 = np.asarray(tau, dtype=float)[..., None] ** 2
    s2 = np.asarray(se, dtype=float) ** 2
    d = t2 + s2
    return t2 * (np.asarray(y, dtype=float) - mean) / d, np.sqrt(t2 * s2 / d)


def draw_known_se_group_effects(gd, a, b, tau, seed: np.random.SeedSequence, dtype=np.float64) -> np.ndarray:
    """Exact conditional draws of summary-level group effects, shape ``a.shape + (J,)``.

    ``a`` the intercept at x = 0 and ``b`` the coefficients on the user's scale (``a.shape + (P,)``, or
    None), per draw. Rows are the groups (one estimate each), in group order.
    """
    a = np.asarray(a, dtype=float)
    mean = np.broadcast_to(a[..., None], a.shape + (gd.n_groups,))
    if b is not None:
        mean = mean + np.asarray(b, dtype=float) @ gd.X.T
    m, sd = known_se_conditional(gd.y, gd.se, mean, tau)
    rng = np.random.default_rng(seed)
    return (m + sd * rng.standard_normal(m.shape)).astype(dtype, copy=False)


def collapsed_group_effects(post: xr.Dataset, desc: ModelDescription, random_seed, dtype=np.float64) -> xr.DataArray:
    """Exact conditional draws of the integrated-out group effects, one per posterior draw."""
    gd = desc.data
    seed = np.random.SeedSequence([int(random_seed), 1]) if random_seed is not None else np.random.SeedSequence()
    a = post[N.INTERCEPT]
    tau = post[N.TAU].values if N.TAU in post else np.full(a.shape, desc.group_sd_fixed)
    if desc.collapse == "integrated":
        u = integrated.draw_group_effects(integrated_patterns(gd), a.transpose(*N.SAMPLE_DIMS).values,
                                          np.broadcast_to(tau, a.shape), seed, dtype=dtype)
        return xr.DataArray(u, dims=(*N.SAMPLE_DIMS, N.GROUP))
    if desc.collapse == "gaussian_crossed":  # first of several factors (hierpool.inference.crossed_draws)
        from hierpool.inference.crossed_draws import crossed_group_effects

        return crossed_group_effects(post, desc, seed, dtype=dtype)
    if desc.collapse == "known_se":
        b = None
        if gd.n_predictors:
            b = post[N.BETA].transpose(*N.SAMPLE_DIMS, N.PREDICTOR).values
        u = draw_known_se_group_effects(gd, a.transpose(*N.SAMPLE_DIMS).values, b,
                                        np.broadcast_to(tau, a.shape), seed, dtype=dtype)
        return xr.DataArray(u, dims=(*N.SAMPLE_DIMS, N.GROUP))
    st = gd.gaussian
    b = None
    if gd.n_predictors:
        a = a + xr.dot(post[N.BETA], xr.DataArray(gd.x_center, dims=N.PREDICTOR), dim=N.PREDICTOR)
        b = (post[N.BETA] * xr.DataArray(gd.x_scale, dims=N.PREDICTOR)).transpose(*N.SAMPLE_DIMS, N.PREDICTOR).values
    u = draw_gaussian_group_effects(st, a.transpose(*N.SAMPLE_DIMS).values, b, tau, post[N.SIGMA].values, seed,
                                    dtype=dtype)
    return xr.DataArray(u, dims=(*N.SAMPLE_DIMS, N.GROUP))
