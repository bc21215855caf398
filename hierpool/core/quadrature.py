"""Group effects integrated out: the mode of each group's effect and adaptive Gauss-Hermite quadrature.

For a group g with rows i, a linear predictor ``eta_i`` without the group's effect and
``u_g ~ Normal(0, tau)``, the log integrand is

    L_g(u) = sum_i loglik(y_i | eta_i + u) - u^2 / (2 tau^2) - log(tau) - log(2 pi) / 2,

strictly concave in ``u`` for every family here. Two routines, written once and used by every layer:

- :func:`group_modes`: the maximizer of ``L_g`` (a penalized mode with precision ``1/tau^2``, the ridge
  solution for that penalty) and the curvature there, for every sample and group at once, by Newton steps
  with Armijo backtracking (per group and sample), from the family's score and curvature. Used by
  :func:`hierpool.analysis.shrinkage.ridge_path` (the ridge path) and by :func:`log_marginal`.
- :func:`log_marginal`: ``log integral exp(L_g(u)) du`` by adaptive Gauss-Hermite quadrature (as
  ``glmer(nAGQ = q)``): nodes centered at the mode and scaled by the curvature there. Used by
  :func:`hierpool.analysis.compare.heldout_log_density` (new groups) and as the reference of the
  compiled kernel below (:func:`hierpool.models.integrated.marginal_logp` with ``lib=numpy``).

And their compiled fast path for binomial patterns (``k`` successes out of ``n`` trials, no predictors),
:func:`pattern_logml` with :func:`pattern_mode`, which the PyTensor Op of
:mod:`hierpool.models.integrated` and its exact conditional draws call: the same mode and quadrature with
the binomial formulas written as numba literals (a compiled kernel needs them; a test holds it equal to
:func:`log_marginal` with the :class:`~hierpool.core.families.Family`'s formulas) and the gradient in
``(a, tau)``. Measured (2 shared CPU cores, the 44 patterns of groups of 1-8 rows, 60 nodes): one value
with its gradient costs 0.18 ms compiled, one value 10.8 ms with :func:`log_marginal` (60 times more).
The Op runs once per leapfrog step, and inside nutpie's numba graph, where a Python function cannot run;
so the J = 100k bernoulli collapsed fit keeps the compiled path (same code as before this module
existed: 4 chains x 1000 draws took 64, 76 and 77 s before and 69, 77 and 77 s after, within the
noise of the shared machine).
"""

from __future__ import annotations

import numpy as np
from numba import njit
from scipy import sparse
from scipy.special import logsumexp

from hierpool.core import kernels as K
from hierpool.core.families import get_family

__all__ = ["group_modes", "log_marginal", "pattern_logml", "pattern_mode", "pattern_loglik", "N_NODES"]

_LOG_2PI_HALF = 0.5 * np.log(2.0 * np.pi)


# ------------------------------------------------------------------------------------------------------
# numpy: any family, any rows
def _group_summer(codes, n_groups: int):
    """``f(a)``: sums of the columns of ``a`` (samples, rows) within groups ``codes`` -> (samples, groups)."""
    codes = np.asarray(codes, dtype=np.int64)
    m = codes.shape[0]
    G = sparse.csr_matrix((np.ones(m), (np.arange(m), codes)), shape=(m, n_groups)).T.tocsr()

    def gsum(a):
        return np.asarray(G.dot(np.asarray(a).T)).T

    return gsum


def _as_column(v):
    """A per-sample value (scalar, (S,) or (S, 1)) as an array broadcasting against (S, groups or rows)."""
    if v is None:
        return None
    v = np.asarray(v, dtype=float)
    return v.reshape(-1, 1) if v.ndim <= 1 else v


def group_modes(family, y, eta, codes, n_groups: int, prec, *, sigma=None, trials=None, u0=None,
                tol: float = 1e-10, max_iter: int = 100):
    """Mode of each group's effect: ``argmax_u sum_i loglik(y_i | eta_i + u) - prec u^2 / 2``.

    Parameters
    ----------
    family : str or Family
    y : array (rows,)
    eta : array (samples, rows) or (rows,)
        Linear predictor of each row without its group's effect (offsets included).
    codes : int array (rows,)
        Group of each row, ``0 .. n_groups - 1``.
    prec : float or array
        Prior precision of the effect, ``1/tau^2``: a scalar, one per sample ((samples,)), or an array
        broadcasting against (samples, groups).
    sigma : float or array (samples,), optional
        Residual SD (gaussian).
    trials : array (rows,), optional
        Trials of each row (binomial, or bernoulli rows pooled into cells).
    u0 : array (samples, groups), optional
        Start (default 0).

    Returns
    -------
    u, h : arrays (samples, groups)
        The mode and ``-L''(u)`` there (the summed curvature plus ``prec``). Newton steps with Armijo
        backtracking per (sample, group) until no step exceeds ``tol``; exact after one step for
        gaussian.
    """
    fam = get_family(family)
    eta = np.atleast_2d(np.asarray(eta, dtype=float))
    y = np.asarray(y, dtype=float)
    codes = np.asarray(codes, dtype=np.int64)
    gsum = _group_summer(codes, n_groups)
    prec = _as_column(prec)
    sig = _as_column(sigma)
    S = eta.shape[0]
    u = np.zeros((S, n_groups)) if u0 is None else np.array(np.broadcast_to(u0, (S, n_groups)), dtype=float)

    def objective(v):
        with np.errstate(over="ignore", invalid="ignore"):
            return gsum(fam.log_likelihood(y, eta + v[:, codes], sigma=sig, trials=trials)) - 0.5 * prec * v**2

    f0 = objective(u)
    for _ in range(max_iter):
        e = eta + u[:, codes]
        g = gsum(fam.score(y, e, sigma=sig, trials=trials)) - prec * u
        h = gsum(fam.curvature(y, e, sigma=sig, trials=trials)) + prec
        step = g / h
        t = np.ones_like(u)
        for _ in range(60):  # backtracking (Armijo) per sample and group: the objective is strictly concave
            cand = u + t * step
            f1 = objective(cand)
            bad = ~(f1 >= f0 + 1e-4 * t * g * step - 1e-12 * np.abs(f0))
            if not bad.any():
                break
            t = np.where(bad, 0.5 * t, t)
        moved = np.where(bad, 0.0, t * step)  # a group still refused after 60 halvings stays put
        u, f0 = u + moved, np.where(bad, f0, f1)
        if np.max(np.abs(moved), initial=0.0) < tol:
            break
    e = eta + u[:, codes]
    h = gsum(fam.curvature(y, e, sigma=sig, trials=trials)) + prec
    return u, np.broadcast_to(h, u.shape)


def log_marginal(family, y, eta, codes, n_groups: int, tau, *, sigma=None, trials=None, n_nodes: int = 20):
    """``log integral prod_i p(y_i | eta_i + u) Normal(u | 0, tau) du`` per sample and group.

    Adaptive Gauss-Hermite quadrature: :func:`group_modes` finds the mode ``u*`` and curvature ``h`` of
    the log integrand ``L``, and ``log p = logsumexp_k(log w_k + x_k^2 / 2 + L(u* + x_k / sqrt(h)))
    - log(h) / 2`` with the probabilists' Gauss-Hermite nodes ``x_k`` and weights ``w_k``. Exact for
    gaussian rows; for the others the error falls fast with ``n_nodes`` (tests: below 1e-8 relative
    against ``scipy.integrate.quad``).

    Parameters are those of :func:`group_modes`, with ``tau`` (the effect's SD: scalar, one per sample,
    or broadcasting against (samples, groups)) for ``prec``. Returns an array (samples, groups).
    """
    fam = get_family(family)
    eta = np.atleast_2d(np.asarray(eta, dtype=float))
    codes = np.asarray(codes, dtype=np.int64)
    tau = np.maximum(_as_column(tau), 1e-10)
    sig = _as_column(sigma)
    u, h = group_modes(fam, y, eta, codes, n_groups, 1.0 / tau**2, sigma=sig, trials=trials)
    gsum = _group_summer(codes, n_groups)
    x, w = np.polynomial.hermite_e.hermegauss(int(n_nodes))
    terms = np.empty((x.shape[0],) + u.shape)
    for k in range(x.shape[0]):
        uk = u + x[k] / np.sqrt(h)
        ll = gsum(fam.log_likelihood(y, eta + uk[:, codes], sigma=sig, trials=trials))
        log_prior = -0.5 * (uk / tau) ** 2 - np.log(tau) - _LOG_2PI_HALF
        terms[k] = np.log(w[k]) + 0.5 * x[k] ** 2 + ll + log_prior
    return logsumexp(terms, axis=0) - 0.5 * np.log(h)


# ------------------------------------------------------------------------------------------------------
# compiled: binomial patterns (the integrated collapse)
#: Gauss-Hermite nodes of the compiled pattern quadrature.
N_NODES = 60
#: Newton steps of :func:`pattern_logml` (a fixed count: the Op's value is a smooth function of a, tau).
NEWTON_STEPS = 6

_GH_X, _GH_W = np.polynomial.hermite.hermgauss(N_NODES)
_GH_LOGW = np.log(_GH_W) + _GH_X**2  # weights of the integrand divided by exp(-x^2)
_NODES = np.sqrt(2.0) * _GH_X


@njit(cache=True)
def pattern_loglik(k, n, eta):
    """k * eta - n * log(1 + exp(eta)), stable: the binomial log-likelihood without its coefficient
    (the literal of ``Family.log_likelihood`` for binomial, less ``log C(n, k)``)."""
    return k * eta - n * K._log1p_exp(eta)


@njit(cache=True)
def pattern_mode(k, n, a, t2, steps, tol):
    """Mode of u for pattern (k, n) given intercept ``a`` and ``t2 = tau^2``: Newton steps safeguarded by
    bisection of the bracket ``(t2 (k - n), t2 k)`` that holds the root of the decreasing score
    ``k - n sigmoid(a + u) - u / t2``, from the empirical-logit normal approximation.

    ``steps`` iterations at most; stops early once a step moves u by less than ``tol * (1 + |u|)``
    (a negative ``tol`` runs exactly ``steps``, as the quadrature does).
    """
    lo, hi = t2 * (k - n), t2 * k
    p_hat = (k + 0.5) / (n + 1.0)
    w_hat = n * p_hat * (1.0 - p_hat)
    u = w_hat * (np.log(p_hat) - np.log1p(-p_hat) - a) / (w_hat + 1.0 / t2)
    for _ in range(steps):
        s = 1.0 / (1.0 + np.exp(-(a + u)))
        F = k - n * s - u / t2
        if F > 0:
            lo = u
        else:
            hi = u
        newton = u + F / (n * s * (1.0 - s) + 1.0 / t2)
        new = newton if lo <= newton <= hi else 0.5 * (lo + hi)
        if abs(new - u) < tol * (1.0 + abs(u)):
            return new
        u = new
    return u


@njit(cache=True)
def pattern_logml(k, n, a, tau, want_grad):
    """Per pattern: the log marginal likelihood without ``log C(n, k)`` and (if ``want_grad``) its
    derivatives in ``a`` and ``tau``.

    The quadrature of :func:`log_marginal` with :data:`N_NODES` nodes around :func:`pattern_mode`; the
    derivatives are those of the quadrature sum at fixed nodes (softmax-weighted derivatives of the log
    integrand).
    """
    P = k.shape[0]
    M = _NODES.shape[0]
    t2 = tau * tau
    out, ga, gt = np.empty(P), np.zeros(P), np.zeros(P)
    h, d_a, d_t = np.empty(M), np.empty(M), np.empty(M)
    log_norm = 0.5 * np.log(2.0 * np.pi * t2)
    for p in range(P):
        kp, n_p = k[p], n[p]
        u = pattern_mode(kp, n_p, a, t2, NEWTON_STEPS, -1.0)
        s = 1.0 / (1.0 + np.exp(-(a + u)))
        scale = 1.0 / np.sqrt(n_p * s * (1.0 - s) + 1.0 / t2)
        top = -np.inf
        for i in range(M):
            v = u + scale * _NODES[i]
            eta = a + v
            h[i] = pattern_loglik(kp, n_p, eta) - v * v / (2.0 * t2) - log_norm + _GH_LOGW[i]
            top = max(top, h[i])
            if want_grad:
                d_a[i] = kp - n_p / (1.0 + np.exp(-eta))
                d_t[i] = v * v / (t2 * tau) - 1.0 / tau
        total = sa = st = 0.0
        for i in range(M):
            w = np.exp(h[i] - top)
            total += w
            if want_grad:
                sa += w * d_a[i]
                st += w * d_t[i]
        out[p] = top + np.log(total) + np.log(np.sqrt(2.0) * scale)
        if want_grad:
            ga[p], gt[p] = sa / total, st / total
    return out, ga, gt
