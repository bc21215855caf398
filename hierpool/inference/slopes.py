"""Random slopes after sampling: exact conditional draws of the integrated-out effects (gaussian), the
per-draw covariance factor, and the pointwise log-likelihood with the slopes (numpy).

Conditional draw (:mod:`hierpool.models.slopes`): with ``Sigma = C C'``, ``A_j = sigma^2 I + C' Z_j'Z_j C``
and ``b_j = C' Z_j'(y_j - W_j c)``, the effects are ``u_j = C v_j`` with
``v_j | rest ~ Normal(A_j^{-1} b_j, sigma^2 A_j^{-1})``: one exact draw per posterior draw, so the stored
``group_effect`` and ``group_slope`` have the row-level model's joint posterior.
"""

from __future__ import annotations

import numpy as np
import xarray as xr

from hierpool.core import names as N
from hierpool.core.families import get_family
from hierpool.data.slope_stats import slope_stats

__all__ = ["cov_factor", "draw_slope_effects", "slope_effects", "pointwise_log_likelihood_slopes"]

_BLOCK_VALUES = 4_000_000  # draws x groups x q x q per block of the conditional draws (32 MB of float64)


def cov_factor(post: xr.Dataset, lam: float | None, q: int) -> np.ndarray:
    """Per-draw factor ``C`` (S, q, q) of the group-level covariance: ``diag(tau, tau_slope) chol(R)``, or
    ``I / sqrt(lam)`` for the ridge variant (S = chains x draws)."""
    S = post.sizes["chain"] * post.sizes["draw"]
    if lam is not None or N.GROUP_CORR not in post:
        if lam is None:
            raise ValueError("the fit has neither 'group_corr' in its posterior nor a ridge 'lam' in its settings: "
                             "nothing says how the slope deviations are distributed.")
        return np.broadcast_to(np.eye(q) / np.sqrt(lam), (S, q, q)).copy()
    tau = post[N.TAU].transpose(*N.SAMPLE_DIMS).values.reshape(S, 1)
    ts = post[N.TAU_SLOPE].transpose(*N.SAMPLE_DIMS, N.SLOPE).values.reshape(S, q - 1)
    R = post[N.GROUP_CORR].transpose(*N.SAMPLE_DIMS, N.TERM, N.TERM_).values.reshape(S, q, q)
    sd = np.concatenate([tau, ts], axis=1)
    return sd[:, :, None] * np.linalg.cholesky(R)


def draw_slope_effects(st, c: np.ndarray, C: np.ndarray, sigma: np.ndarray, seed) -> np.ndarray:
    """Exact conditional draws ``u`` (S, J, q) given per-draw fixed coefficients ``c`` (S, 1 + P), covariance
    factors ``C`` (S, q, q) and residual SDs ``sigma`` (S,); ``st`` a
    :class:`~hierpool.data.slope_stats.SlopeStats`."""
    rng = np.random.default_rng(seed)
    S, q = C.shape[0], C.shape[1]
    J = st.zz.shape[0]
    out = np.empty((S, J, q))
    chunk = max(1, _BLOCK_VALUES // (J * q * q))
    for s0 in range(0, S, chunk):
        sl = slice(s0, min(S, s0 + chunk))
        Cs, cs, s2 = C[sl], c[sl], sigma[sl] ** 2
        zr = st.zy[None] - np.einsum("jqp,sp->sjq", st.zw, cs)
        A = np.einsum("smq,jmn,snl->sjql", Cs, st.zz, Cs) + s2[:, None, None, None] * np.eye(q)
        b = np.einsum("smq,sjm->sjq", Cs, zr)
        L = np.linalg.cholesky(A)
        mean = np.linalg.solve(A, b[..., None])[..., 0]
        eps = rng.standard_normal(mean.shape)
        # sigma L^{-T} eps has covariance sigma^2 A^{-1}
        noise = np.linalg.solve(np.swapaxes(L, -1, -2), eps[..., None])[..., 0] * np.sqrt(s2)[:, None, None]
        out[sl] = np.einsum("sql,sjl->sjq", Cs, mean + noise)
    return out


def slope_effects(post: xr.Dataset, desc, random_seed, dtype=np.float64) -> tuple[xr.DataArray, xr.DataArray]:
    """``group_effect`` (chain, draw, group) and ``group_slope`` (chain, draw, group, slope) drawn from their
    exact conditional, for a collapsed gaussian random-slopes fit (stored as ``dtype``: float32 when
    :func:`hierpool.fit` thinned the posterior to fit memory)."""
    gd = desc.data
    C_, D_ = post.sizes["chain"], post.sizes["draw"]
    S = C_ * D_
    a = post[N.INTERCEPT].transpose(*N.SAMPLE_DIMS).values.reshape(S)
    cols = [a]
    if gd.n_predictors:
        beta = post[N.BETA].transpose(*N.SAMPLE_DIMS, N.PREDICTOR).values.reshape(S, -1)
        cols = [a + beta @ gd.x_center, *(beta * gd.x_scale).T]
    c = np.column_stack(cols)
    q = 1 + len(gd.slopes)
    C = cov_factor(post, desc.lam, q)
    sigma = post[N.SIGMA].transpose(*N.SAMPLE_DIMS).values.reshape(S)
    seed = np.random.SeedSequence([int(random_seed), 2]) if random_seed is not None else np.random.SeedSequence()
    u = draw_slope_effects(slope_stats(gd), c, C, sigma, seed).reshape(C_, D_, gd.n_groups, q).astype(dtype, copy=False)
    ge = xr.DataArray(u[..., 0], dims=(*N.SAMPLE_DIMS, N.GROUP))
    gs = xr.DataArray(u[..., 1:], dims=(*N.SAMPLE_DIMS, N.GROUP, N.SLOPE), coords={N.SLOPE: list(gd.slopes)})
    return ge, gs


def pointwise_log_likelihood_slopes(post: xr.Dataset, const: xr.Dataset, y: xr.DataArray,
                                    family: str) -> xr.DataArray:
    """log p(y_i | parameters and group effects and slopes of each draw), dims (chain, draw, obs_id): the
    numpy path for random-slopes fits (the compiled kernel knows intercepts only)."""
    from hierpool.inference.predictive import design_from_constant, linear_predictor

    X, gidx, offset, trials = design_from_constant(const)
    eta = linear_predictor(post, X, gidx, offset)  # includes the slopes
    sigma = post[N.SIGMA] if get_family(family).has_sigma else None
    ll = get_family(family).log_likelihood(y, eta, sigma=sigma, trials=trials)
    ll = ll.transpose(*N.SAMPLE_DIMS, N.OBS)
    return ll.drop_vars([c for c in ll.coords if c not in (*N.SAMPLE_DIMS, N.OBS)]).rename(None)
