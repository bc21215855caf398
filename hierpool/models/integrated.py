"""Group effects integrated out of binomial random intercepts without predictors (bernoulli, binomial).

Without predictors, group j's data reduce to its successes ``k_j`` out of ``n_j`` trials (bernoulli: rows),
and its marginal likelihood

    p(k | n, a, tau) = C(n, k) * integral of  sigmoid(a + u)^k (1 - sigmoid(a + u))^(n - k) Normal(u | 0, tau) du

depends on the group only through the PATTERN ``(k, n)``. The patterns are fixed by the design: every
``k = 0..n`` for each distinct trial total ``n`` (44 patterns for groups of 1-8 rows), and the response
enters only through how many groups show each pattern. So the sampler sees the intercept and tau (two
parameters, whatever the number of groups), and each gradient costs O(patterns x nodes).

The integral is computed by adaptive Gauss-Hermite quadrature (as ``glmer(nAGQ = q)`` does per group):
centred at the conditional mode of ``u`` (twelve Newton steps safeguarded by bisection, from the
empirical-logit normal approximation) and scaled by the curvature there, with :data:`N_NODES` nodes. Tests compare it with
``scipy.integrate.quad`` over a grid of intercepts, taus and patterns (relative error below 1e-8).
This is the one collapse in hierpool that is numerical rather than algebraic; its error is far below
Monte Carlo error, and SBC checks the whole fit.

After sampling, each group's effect is drawn EXACTLY from its conditional given the draw's ``(a, tau)``
by rejection sampling: the log-likelihood ``l(u)`` is concave, so for any ``u0``
``l(u) <= l(u0) + l'(u0) (u - u0)``, and the conditional density is bounded by the normal envelope
``Normal(tau^2 l'(u0), tau)``; proposals are accepted with probability
``exp(l(u) - l(u0) - l'(u0) (u - u0))`` (most of them at once by the squeeze ``l'' >= -n/4``, without
evaluating ``l``). With ``u0`` the conditional mode the acceptance rate is about the ratio of the
conditional to the prior sd (one half or more for groups of a few rows).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pytensor.tensor as pt
from numba import njit
from pytensor.gradient import disconnected_type
from pytensor.graph.basic import Apply
from pytensor.graph.op import Op
from pytensor.link.numba.dispatch.basic import numba_njit, register_funcify_default_op_cache_key

from hierpool.core import kernels as K

__all__ = ["Patterns", "patterns", "marginal_logp", "draw_group_effects", "N_NODES", "MAX_PATTERNS"]

#: Gauss-Hermite nodes of the adaptive quadrature.
N_NODES = 60
#: ``collapse="auto"`` integrates the group effects out only up to this many patterns.
MAX_PATTERNS = 2000
_NEWTON_STEPS = 6

_GH_X, _GH_W = np.polynomial.hermite.hermgauss(N_NODES)
_GH_LOGW = np.log(_GH_W) + _GH_X**2  # weights of the integrand divided by exp(-x^2)
_NODES = np.sqrt(2.0) * _GH_X


@dataclass(frozen=True)
class Patterns:
    """Every possible (successes, trials) pattern of the design and which one each group shows."""

    k: np.ndarray  # (P,) successes
    n: np.ndarray  # (P,) trials
    group_pattern: np.ndarray  # (J,) pattern index of each group
    counts: np.ndarray  # (P,) groups showing each pattern


def patterns(successes: np.ndarray, trials: np.ndarray) -> Patterns:
    """Patterns of per-group totals ``successes`` (J,) out of ``trials`` (J,), both integer-valued."""
    k_j = np.rint(np.asarray(successes, dtype=float)).astype(np.int64)
    n_j = np.rint(np.asarray(trials, dtype=float)).astype(np.int64)
    totals = np.unique(n_j)
    k = np.concatenate([np.arange(t + 1) for t in totals])
    n = np.concatenate([np.full(t + 1, t) for t in totals])
    offset = np.concatenate([[0], np.cumsum(totals + 1)[:-1]])
    group_pattern = offset[np.searchsorted(totals, n_j)] + k_j
    counts = np.bincount(group_pattern, minlength=k.shape[0]).astype(float)
    return Patterns(k=k.astype(float), n=n.astype(float), group_pattern=group_pattern, counts=counts)


def n_patterns(trials: np.ndarray) -> int:
    """How many patterns :func:`patterns` would build for these per-group trial totals."""
    totals = np.unique(np.rint(np.asarray(trials, dtype=float)).astype(np.int64))
    return int((totals + 1).sum())


def marginal_logp(k, n, a, tau, lib=pt):
    """log p(k | n, a, tau) per pattern, without the binomial coefficient (a constant of the data).

    ``lib`` is pytensor.tensor (in a model: the compiled :class:`IntegratedLogml` Op, with its gradient)
    or numpy (the same algorithm written with array operations: the reference the tests check the Op
    against); ``k``, ``n`` arrays of patterns, ``a`` and ``tau`` scalars (or, with numpy, arrays
    broadcasting against the patterns).
    """
    if lib is pt:
        return IntegratedLogml()(k, n, a, tau)
    k, n, a, tau = (np.asarray(v, dtype=float) for v in (k, n, a, tau))
    t2 = tau**2
    # The mode solves F(u) = k - n sigmoid(a + u) - u / tau^2 = 0, F decreasing, root inside
    # (tau^2 (k - n), tau^2 k). Newton steps safeguarded by bisection of that bracket (fixed count).
    lo, hi = t2 * (k - n), t2 * k
    p_hat = (k + 0.5) / (n + 1.0)  # start: the normal approximation at the empirical logit
    w_hat = n * p_hat * (1.0 - p_hat)
    u = w_hat * (np.log(p_hat) - np.log1p(-p_hat) - a) / (w_hat + 1.0 / t2)
    for _ in range(_NEWTON_STEPS):
        s = 1.0 / (1.0 + np.exp(-(a + u)))
        F = k - n * s - u / t2
        lo, hi = np.where(F > 0, u, lo), np.where(F > 0, hi, u)
        newton = u + F / (n * s * (1.0 - s) + 1.0 / t2)
        u = np.where((newton >= lo) & (newton <= hi), newton, 0.5 * (lo + hi))
    s = 1.0 / (1.0 + np.exp(-(a + u)))
    scale = 1.0 / np.sqrt(n * s * (1.0 - s) + 1.0 / t2)
    nodes = u[..., None] + scale[..., None] * _NODES
    eta = a[..., None] + nodes
    log_f = (k[..., None] * eta - n[..., None] * np.logaddexp(0.0, eta) - nodes**2 / (2.0 * t2[..., None])
             - 0.5 * np.log(2.0 * np.pi * t2[..., None]) + _GH_LOGW)
    top = log_f.max(axis=-1, keepdims=True)
    return top[..., 0] + np.log(np.exp(log_f - top).sum(axis=-1)) + np.log(np.sqrt(2.0) * scale)


# ------------------------------------------------------------------------------------------------------
# the compiled log-likelihood and its gradient (a PyTensor Op with a numba implementation)
@njit(cache=True)
def _mode(k, n, a, t2, steps, tol):
    """Conditional mode of u for pattern (k, n): Newton safeguarded by bisection, as in :func:`marginal_logp`.

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
def _loglik(k, n, eta):
    """k * eta - n * log(1 + exp(eta)), stable."""
    return k * eta - n * K._log1p_exp(eta)


@njit(cache=True)
def _logml(k, n, a, tau, want_grad):
    """Per pattern: log marginal likelihood and (if ``want_grad``) its derivatives in ``a`` and ``tau``.

    The same steps as :func:`marginal_logp`; the derivatives are those of the quadrature sum at fixed
    nodes (softmax-weighted derivatives of the log integrand).
    """
    P = k.shape[0]
    M = _NODES.shape[0]
    t2 = tau * tau
    out, ga, gt = np.empty(P), np.zeros(P), np.zeros(P)
    h, d_a, d_t = np.empty(M), np.empty(M), np.empty(M)
    log_norm = 0.5 * np.log(2.0 * np.pi * t2)
    for p in range(P):
        kp, n_p = k[p], n[p]
        u = _mode(kp, n_p, a, t2, _NEWTON_STEPS, -1.0)
        s = 1.0 / (1.0 + np.exp(-(a + u)))
        scale = 1.0 / np.sqrt(n_p * s * (1.0 - s) + 1.0 / t2)
        top = -np.inf
        for i in range(M):
            v = u + scale * _NODES[i]
            eta = a + v
            h[i] = _loglik(kp, n_p, eta) - v * v / (2.0 * t2) - log_norm + _GH_LOGW[i]
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


class IntegratedLogml(Op):
    """``marginal_logp`` per pattern as one compiled Op: inputs (k, n, a, tau), output (P,)."""

    __props__ = ()

    def make_node(self, k, n, a, tau):
        ins = [pt.as_tensor_variable(v).astype("float64") for v in (k, n, a, tau)]
        return Apply(self, ins, [pt.dvector()])

    def perform(self, node, inputs, outputs):
        k, n, a, tau = inputs
        outputs[0][0] = _logml(k, n, float(a), float(tau), False)[0]

    def pullback(self, inputs, outputs, output_grads):
        k, n, a, tau = inputs
        ga, gt = IntegratedLogmlGrad()(k, n, a, tau)
        g = output_grads[0]
        return [disconnected_type(), disconnected_type(), pt.sum(g * ga), pt.sum(g * gt)]

    def connection_pattern(self, node):
        return [[False], [False], [True], [True]]


class IntegratedLogmlGrad(Op):
    """Derivatives of :class:`IntegratedLogml` in ``a`` and ``tau``, per pattern."""

    __props__ = ()

    def make_node(self, k, n, a, tau):
        return Apply(self, [k, n, a, tau], [pt.dvector(), pt.dvector()])

    def perform(self, node, inputs, outputs):
        k, n, a, tau = inputs
        _, ga, gt = _logml(k, n, float(a), float(tau), True)
        outputs[0][0], outputs[1][0] = ga, gt


@register_funcify_default_op_cache_key(IntegratedLogml)
def _numba_logml(op, node=None, **kwargs):
    @numba_njit
    def logml(k, n, a, tau):
        return _logml(k, n, a.item(), tau.item(), False)[0]

    return logml


@register_funcify_default_op_cache_key(IntegratedLogmlGrad)
def _numba_logml_grad(op, node=None, **kwargs):
    @numba_njit
    def logml_grad(k, n, a, tau):
        _, ga, gt = _logml(k, n, a.item(), tau.item(), True)
        return ga, gt

    return logml_grad


# ------------------------------------------------------------------------------------------------------
# exact conditional draws
@njit(cache=True, nogil=True)
def _draw_rows(out, r0, seed, a, tau, pk, pn, group_pattern):
    np.random.seed(seed)
    R, J = out.shape
    P = pk.shape[0]
    u0 = np.empty(P)
    l0 = np.empty(P)
    g0 = np.empty(P)
    for r in range(R):
        s = r0 + r
        t2 = tau[s] * tau[s]
        for p in range(P):
            m = _mode(pk[p], pn[p], a[s], t2, 200, 1e-12)
            u0[p] = m
            l0[p] = _loglik(pk[p], pn[p], a[s] + m)
            g0[p] = pk[p] - pn[p] / (1.0 + np.exp(-(a[s] + m)))
        for j in range(J):
            p = group_pattern[j]
            centre = t2 * g0[p]
            for _ in range(1_000_000):
                u = centre + tau[s] * np.random.standard_normal()
                log_v = np.log(np.random.random())
                d = u - u0[p]
                # squeeze: l'' >= -n/4, so the log acceptance ratio is at least -(n/8) d^2
                if log_v < -0.125 * pn[p] * d * d:
                    break
                if log_v < _loglik(pk[p], pn[p], a[s] + u) - l0[p] - g0[p] * d:
                    break
            else:
                raise RuntimeError("rejection sampler did not accept within 1e6 proposals")
            out[r, j] = u


def draw_group_effects(pat: Patterns, a, tau, seed: np.random.SeedSequence, block_values: int = 1 << 20,
                       dtype=np.float64) -> np.ndarray:
    """Exact conditional draws of every group's effect, shape ``a.shape + (J,)``, one per draw of (a, tau).

    Blocks of about ``block_values`` values get their own seed (``seed.spawn``) and run in threads, so
    the result depends on the seed and the shapes only.
    """
    a = np.asarray(a, dtype=float)
    fa, ft = a.reshape(-1), np.broadcast_to(np.asarray(tau, dtype=float), a.shape).reshape(-1).copy()
    S, J = fa.shape[0], pat.group_pattern.shape[0]
    out = np.empty((S, J), dtype=dtype)
    per = max(1, block_values // max(J, 1))
    starts = list(range(0, S, per))
    seeds = [int(c.generate_state(1)[0]) for c in seed.spawn(len(starts))]
    gp = np.ascontiguousarray(pat.group_pattern, dtype=np.int64)

    def work(i):
        r0 = starts[i]
        _draw_rows(out[r0:r0 + per], r0, seeds[i], fa, ft, pat.k, pat.n, gp)

    K.each_in_threads(work, range(len(starts)))
    return out.reshape(a.shape + (J,))
