"""Exact collapsed likelihoods: what the sampler needs after one pass over the rows.

Gaussian random intercepts (any variant: tau sampled, shrunk, or fixed at 1/sqrt(lam))
----------------------------------------------------------------------------------------
Integrating ``u_j ~ Normal(0, tau)`` out of ``y_ij = a + x_ij b + u_j + e_ij`` gives, for group j with
``n_j`` rows, mean residual ``e_j = ybar_j - a - xbar_j b`` and ``d_j = sigma^2 + n_j tau^2``::

    log p(y | a, b, tau, sigma) = -N/2 log(2 pi) - (N - J) log sigma - 1/2 sum_j log d_j
                                  - W(b) / (2 sigma^2) - 1/2 sum_j n_j e_j^2 / d_j

with the within-group sum of squares ``W(b) = Syy_w - 2 b'Sxy_w + b'Sxx_w b`` built from within-group
centered cross-products. So the data enter only through ``n_j``, ``ybar_j``, ``xbar_j`` (J x P) and three
global within-group cross-products, and each gradient costs O(J P). After sampling, the group effects are
drawn from their exact conditional normal::

    u_j | a, b, tau, sigma, y ~ Normal(n_j tau^2 e_j / d_j,  sigma^2 tau^2 / d_j)

so the posterior holds ``group_effect`` exactly as the full model's does (same joint distribution).

Counts (bernoulli, binomial, poisson)
-------------------------------------
Rows that share a group and a predictor pattern have the same linear predictor, so their likelihood is
that of one binomial count (successes and trials summed; bernoulli rows are binomial rows with one
trial) or one Poisson count (counts and exposures summed). The collapsed likelihood differs from the
row-level one only by the constant ``sum log C(trials, y)`` (binomial) or ``sum log(y!)`` terms (poisson),
so the posterior is identical.

Bernoulli/binomial data without predictors go further: :mod:`hierpool.integrated` integrates the group
effects out over the (successes, trials) patterns (``collapse="auto"`` picks it), so the sampler sees
only the intercept and tau.

The stored log-likelihood is per ROW either way, computed after sampling from each draw's parameters and
group effects (:func:`hierpool.sampling.pointwise_log_likelihood`), so PSIS-LOO means the same thing
(leave one row out, group effect conditioned on) whether a model was collapsed or not.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pytensor.tensor as pt

from . import _kernels as K
from .data import GroupedData

__all__ = ["GaussianStats", "SizeClasses", "gaussian_stats", "size_classes", "count_patterns",
           "gaussian_marginal_logp", "gaussian_marginal_logp_sizes", "draw_gaussian_group_effects", "data_for"]


@dataclass(frozen=True)
class GaussianStats:
    """Sufficient statistics of gaussian random intercepts (standardized predictors)."""

    n: np.ndarray  # (J,) rows per group
    ybar: np.ndarray  # (J,) group means of y
    xbar: np.ndarray  # (J, P) group means of the standardized predictors
    syy_w: float  # sum_j sum_i (y_ij - ybar_j)^2
    sxy_w: np.ndarray  # (P,) sum (x_ij - xbar_j)(y_ij - ybar_j)
    sxx_w: np.ndarray  # (P, P) sum (x_ij - xbar_j)(x_ij - xbar_j)'
    n_obs: int


def gaussian_stats(gd: GroupedData, y: np.ndarray | None = None) -> GaussianStats:
    """One pass over the rows: group counts and means, and within-group cross-products.

    ``y`` replaces the response (same design), e.g. for simulation-based calibration. The statistics of
    the data's own response are computed once per ``GroupedData`` and reused (model building and the
    conditional draws after sampling both need them).
    """
    if y is None:
        cached = getattr(gd, "_gaussian_stats", None)
        if cached is None:
            cached = gaussian_stats(gd, gd.y)
            object.__setattr__(gd, "_gaussian_stats", cached)  # frozen dataclass: a private memo
        return cached
    y = np.asarray(y, dtype=float)
    n = gd.group_n.astype(float)
    if gd.n_predictors:
        X, center, scale = gd.X, gd.x_center, gd.x_scale
    else:
        X, center, scale = np.zeros((y.shape[0], 0)), np.zeros(0), np.ones(0)
    ybar, xbar, syy, sxy, sxx = K.gaussian_group_stats(y, X, center, scale, gd.group_idx, n)
    return GaussianStats(n=n, ybar=ybar, xbar=xbar, syy_w=syy, sxy_w=sxy, sxx_w=sxx, n_obs=int(y.shape[0]))


def gaussian_marginal_logp(stats, a, b, tau, sigma, lib=pt):
    """The exact marginal log-likelihood above; ``lib`` is pytensor.tensor (in a model) or numpy.

    ``stats`` holds (possibly symbolic) ``n, ybar, xbar, syy_w, sxy_w, sxx_w`` and ``n_obs``; ``b`` may be
    None without predictors.
    """
    n, ybar, xbar = stats["n"], stats["ybar"], stats["xbar"]
    J = stats["n"].shape[0]
    s2, t2 = sigma**2, tau**2
    d = s2 + n * t2
    if b is None:
        e = ybar - a
        W = stats["syy_w"]
    else:
        e = ybar - a - lib.dot(xbar, b)
        W = stats["syy_w"] - 2 * lib.dot(b, stats["sxy_w"]) + lib.dot(b, lib.dot(stats["sxx_w"], b))
    N = stats["n_obs"]
    return (-0.5 * N * np.log(2 * np.pi) - (N - J) * lib.log(sigma) - 0.5 * lib.sum(lib.log(d))
            - W / (2 * s2) - 0.5 * lib.sum(n * e**2 / d))


@dataclass(frozen=True)
class SizeClasses:
    """The gaussian statistics pooled over groups of equal size (what the sampler sees).

    For size class k (``n_k`` rows per group, ``J_k`` groups) ``moments[k] = sum_j r_j r_j'`` with
    ``r_j = (ybar_j - m, 1, xbar_j)`` and ``m`` the mean of the group means, so that with
    ``v = (1, -(a - m), -b)`` the sum of ``e_j^2`` over the class is ``v' moments[k] v``.
    """

    sizes: np.ndarray  # (K,)
    counts: np.ndarray  # (K,)
    moments: np.ndarray  # (K, P + 2, P + 2)
    center: float  # m
    syy_w: float
    sxy_w: np.ndarray
    sxx_w: np.ndarray
    n_obs: int
    n_groups: int


def size_classes(st: GaussianStats) -> SizeClasses:
    """Pool :class:`GaussianStats` over groups of equal size: O(J) once, then O(K) per gradient."""
    sizes, inverse, counts = np.unique(st.n, return_inverse=True, return_counts=True)
    m = float(st.ybar.mean())
    R = np.column_stack([st.ybar - m, np.ones_like(st.ybar), st.xbar])
    moments = np.zeros((sizes.shape[0], R.shape[1], R.shape[1]))
    for k in range(sizes.shape[0]):
        Rk = R[inverse == k]
        moments[k] = Rk.T @ Rk
    return SizeClasses(sizes=sizes.astype(float), counts=counts.astype(float), moments=moments, center=m,
                       syy_w=st.syy_w, sxy_w=st.sxy_w, sxx_w=st.sxx_w, n_obs=st.n_obs, n_groups=st.n.shape[0])


def gaussian_marginal_logp_sizes(sc, a, b, tau, sigma, lib=pt):
    """The same exact marginal log-likelihood as :func:`gaussian_marginal_logp`, from size classes.

    ``sum_j log d_j = sum_k J_k log d_k`` and ``sum_j n_j e_j^2 / d_j = sum_k (n_k / d_k) v' M_k v``,
    so each evaluation costs O(K (P + 2)^2) for K distinct group sizes, whatever the number of groups.
    ``sc`` is a :class:`SizeClasses` or a dict with its fields (possibly symbolic).
    """
    get = sc.get if isinstance(sc, dict) else lambda k: getattr(sc, k)
    sizes, counts, M = get("sizes"), get("counts"), get("moments")
    s2, t2 = sigma**2, tau**2
    d = s2 + sizes * t2
    if b is None:
        v = lib.stack([lib.ones_like(a), -(a - get("center"))]) if lib is pt else np.array([1.0, -(a - get("center"))])
        W = get("syy_w")
    else:
        if lib is pt:
            v = pt.concatenate([pt.ones((1,)), pt.reshape(-(a - get("center")), (1,)), -b])
        else:
            v = np.concatenate([[1.0, -(a - get("center"))], -np.asarray(b)])
        W = get("syy_w") - 2 * lib.dot(b, get("sxy_w")) + lib.dot(b, lib.dot(get("sxx_w"), b))
    quad = lib.dot(lib.dot(M, v), v)  # (K,)
    N, J = get("n_obs"), get("n_groups")
    return (-0.5 * N * np.log(2 * np.pi) - (N - J) * lib.log(sigma) - 0.5 * lib.sum(counts * lib.log(d))
            - W / (2 * s2) - 0.5 * lib.sum(sizes * quad / d))


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
    draws come from :func:`hierpool._kernels.gaussian_conditional_draws` (threads, reproducible from
    ``seed``), written once into the output: no temporaries of its size. ``dtype`` float32 stores
    them rounded to 7 significant digits (computed in float64), for posteriors of millions of groups.
    """
    a = np.asarray(a, dtype=float)
    S, J = a.size, stats.n.shape[0]
    out = np.empty((S, J), dtype=dtype)
    seed_seq = seed if isinstance(seed, np.random.SeedSequence) else np.random.SeedSequence(seed)
    sizes, size_idx = np.unique(stats.n, return_inverse=True)
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


# ------------------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class CountPatterns:
    """Rows collapsed to unique (group, predictor pattern) cells."""

    group_idx: np.ndarray  # (M,)
    Xs: np.ndarray  # (M, P) standardized predictors of each cell
    y: np.ndarray  # (M,) summed counts
    trials: np.ndarray | None  # (M,) summed trials (bernoulli, binomial)
    exposure: np.ndarray | None  # (M,) summed exposure (poisson: rows in the cell without exposure=)
    row_cell: np.ndarray  # (N,) the cell of each row


def count_patterns(gd: GroupedData, y: np.ndarray | None = None) -> CountPatterns:
    """Collapse rows sharing a group and a predictor pattern (bernoulli, binomial, poisson)."""
    y = gd.y if y is None else np.asarray(y, dtype=float)
    key = np.column_stack([gd.group_idx.astype(float), gd.X]) if gd.n_predictors else gd.group_idx[:, None]
    _, first, inverse = np.unique(key, axis=0, return_index=True, return_inverse=True)
    inverse = inverse.reshape(-1)
    M = first.shape[0]
    ysum = np.bincount(inverse, weights=y, minlength=M)
    trials = None
    if gd.family == "bernoulli":
        trials = np.bincount(inverse, minlength=M).astype(float)
    elif gd.family == "binomial":
        trials = np.bincount(inverse, weights=gd.trials, minlength=M)
    exposure = None
    if gd.family == "poisson":  # a cell of r rows with unit exposure has exposure r: Poisson(r * rate)
        exposure = np.bincount(inverse, weights=gd.exposure, minlength=M).astype(float)
    Xs = gd.Xs[first]
    return CountPatterns(group_idx=gd.group_idx[first], Xs=Xs, y=ysum, trials=trials, exposure=exposure,
                         row_cell=inverse)


def data_for(model, y) -> dict:
    """The data-container values that refit ``model`` to a new response ``y`` of the same design.

    Use with a compiled model, e.g. ``nutpie.compile_pymc_model(model).with_data(**data_for(model, y))``.
    """
    info = model.hierpool
    gd = info["data"]
    how = info.get("collapse")
    if how == "gaussian":
        sc = size_classes(gaussian_stats(gd, y))
        out = {"size_moments": sc.moments, "ybar_center": np.asarray(sc.center), "syy_w": np.asarray(sc.syy_w)}
        if gd.n_predictors:
            out["sxy_w"] = sc.sxy_w
        return out
    if how == "integrated":
        from . import integrated
        from .models import _group_totals

        k_j = np.bincount(gd.group_idx, weights=np.asarray(y, dtype=float), minlength=gd.n_groups)
        return {"pattern_counts": integrated.patterns(k_j, _group_totals(gd)[1]).counts}
    if how == "counts":
        cp = count_patterns(gd, y)
        return {"y_observed": cp.y}
    return {"y_observed": np.asarray(y, dtype=float)}
