"""Group effects integrated out of binomial random intercepts without predictors (bernoulli, binomial).

Without predictors, group j's data reduce to its successes ``k_j`` out of ``n_j`` trials (bernoulli: rows),
and its marginal likelihood

    p(k | n, a, tau) = C(n, k) * integral of  sigmoid(a + u)^k (1 - sigmoid(a + u))^(n - k) Normal(u | 0, tau) du

depends on the group only through the PATTERN ``(k, n)``. The patterns are fixed by the design: every
``k = 0..n`` for each distinct trial total ``n`` (44 patterns for groups of 1-8 rows), and the response
enters only through how many groups show each pattern. So the sampler sees the intercept and tau (two
parameters, whatever the number of groups), and each gradient costs O(patterns some group shows x nodes).

The integral is computed by adaptive Gauss-Hermite quadrature (as ``glmer(nAGQ = q)`` does per group):
centred at the conditional mode of ``u`` and scaled by the curvature there, with :data:`N_NODES` nodes,
by the one quadrature module, :mod:`hierpool.core.quadrature` (its compiled pattern kernel in the Op, its
general numpy routine as the reference). Tests compare it with ``scipy.integrate.quad`` over a grid of
intercepts, taus and patterns.
This is the one collapse in hierpool that is numerical rather than algebraic; its error is far below
Monte Carlo error, and SBC checks the whole fit.

After sampling, each group's effect is drawn EXACTLY from its conditional given the draw's ``(a, tau)``
by rejection sampling: the log-likelihood ``l(u)`` is concave, so for any ``u0``
``l(u) <= l(u0) + l'(u0) (u - u0)``, and the conditional density is bounded by the normal envelope
``Normal(tau^2 l'(u0), tau)``; proposals are accepted with probability
``exp(l(u) - l(u0) - l'(u0) (u - u0))`` (most of them at once by the squeeze ``l'' >= -n/4``, without
evaluating ``l``). With ``u0`` the conditional mode the acceptance rate is about the ratio of the
conditional to the prior sd (one half or more for groups of a few rows).

Which sampler: ``hp.fit``'s default (``sampler="auto"``) runs :mod:`hierpool.inference.integrated` on
such a model since 2026-12-07 (the same marginal posterior, integrated group by group by its own
quadrature: 0.21-2.73 s against nutpie's 5.71-21.93 s at 10 to 600 groups, 4 x 1000 draws,
``benchmarks/bench_auto_sampler.py``);
this likelihood is what NUTS samples (``sampler="nutpie"``, ``"pymc"``, ``"numpyro"``, or NUTS settings).
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
from scipy.special import gammaln

from hierpool.core import kernels as K
from hierpool.core import quadrature as Q

__all__ = ["Patterns", "patterns", "marginal_logp", "draw_group_effects", "N_NODES", "MAX_PATTERNS"]

#: Gauss-Hermite nodes of the adaptive quadrature (compiled pattern kernel of hierpool.core.quadrature).
N_NODES = Q.N_NODES
#: ``collapse="auto"`` integrates the group effects out only up to this many patterns.
MAX_PATTERNS = 2000


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


def marginal_logp(k, n, a, tau, lib=pt, counts=None):
    """log p(k | n, a, tau) per pattern, without the binomial coefficient (a constant of the data).

    ``lib`` is pytensor.tensor (in a model: the compiled :class:`IntegratedLogml` Op, with its gradient)
    or numpy (:func:`hierpool.core.quadrature.log_marginal` with the binomial family's formulas, each
    pattern a group of one row: the reference the tests check the Op against); ``k``, ``n`` arrays of
    patterns, ``a`` and ``tau`` scalars (or, with numpy, arrays broadcasting against the patterns).

    ``counts`` (pytensor only: the model's groups per pattern, a data container) makes the Op skip the
    patterns no group shows: their entries are 0, so ``sum(counts * marginal_logp(...))`` and its gradient
    are unchanged, while the work follows the observed patterns, not the design's. The design enumerates
    every ``k = 0..n`` of each distinct trial total (so that a refit to new responses keeps the graph):
    60 districts of 2-118 women (``contraception``) make 1,395 patterns of which at most 60 are seen.
    """
    if lib is pt:
        if counts is None:
            counts = np.ones(np.shape(k))
        return IntegratedLogml()(k, n, counts, a, tau)
    if counts is not None:
        raise ValueError("counts= is for the compiled Op (lib=pytensor.tensor); the numpy reference "
                         "evaluates every pattern.")
    k, n, a, tau = np.broadcast_arrays(*(np.asarray(v, dtype=float) for v in (k, n, a, tau)))
    shape = k.shape
    k, n, a, tau = (v.reshape(1, -1) for v in (k, n, a, tau))  # one sample, every pattern its own group
    log_ml = Q.log_marginal("binomial", k[0], a, np.arange(k.shape[1]), k.shape[1], tau, trials=n[0],
                            n_nodes=N_NODES)
    log_coef = gammaln(n + 1) - gammaln(k + 1) - gammaln(n - k + 1)
    return (log_ml - log_coef).reshape(shape)


@njit(cache=True, nogil=True)
def _observed_logml(k, n, counts, a, tau, want_grad):
    """:func:`hierpool.core.quadrature.pattern_logml` at the patterns with ``counts`` != 0; zeros elsewhere."""
    P = k.shape[0]
    idx = np.nonzero(counts)[0]
    val, ga, gt = Q.pattern_logml(k[idx], n[idx], a, tau, want_grad)
    out, out_a, out_t = np.zeros(P), np.zeros(P), np.zeros(P)
    out[idx] = val
    if want_grad:
        out_a[idx] = ga
        out_t[idx] = gt
    return out, out_a, out_t


# ------------------------------------------------------------------------------------------------------
# the compiled log-likelihood and its gradient (a PyTensor Op with a numba implementation)
class IntegratedLogml(Op):
    """``marginal_logp`` per observed pattern as one compiled Op: inputs (k, n, counts, a, tau), output (P,)
    with 0 where ``counts`` is 0. The counts are data: the Op has no gradient in them (nor in k, n)."""

    __props__ = ()

    def make_node(self, k, n, counts, a, tau):
        ins = [pt.as_tensor_variable(v).astype("float64") for v in (k, n, counts, a, tau)]
        return Apply(self, ins, [pt.dvector()])

    def perform(self, node, inputs, outputs):
        k, n, c, a, tau = inputs
        outputs[0][0] = _observed_logml(k, n, c, float(a), float(tau), False)[0]

    def pullback(self, inputs, outputs, output_grads):
        k, n, c, a, tau = inputs
        ga, gt = IntegratedLogmlGrad()(k, n, c, a, tau)
        g = output_grads[0]
        return [disconnected_type(), disconnected_type(), disconnected_type(), pt.sum(g * ga), pt.sum(g * gt)]

    def connection_pattern(self, node):
        return [[False], [False], [False], [True], [True]]


class IntegratedLogmlGrad(Op):
    """Derivatives of :class:`IntegratedLogml` in ``a`` and ``tau``, per pattern (0 where unobserved)."""

    __props__ = ()

    def make_node(self, k, n, counts, a, tau):
        return Apply(self, [k, n, counts, a, tau], [pt.dvector(), pt.dvector()])

    def perform(self, node, inputs, outputs):
        k, n, c, a, tau = inputs
        _, ga, gt = _observed_logml(k, n, c, float(a), float(tau), True)
        outputs[0][0], outputs[1][0] = ga, gt


@register_funcify_default_op_cache_key(IntegratedLogml)
def _numba_logml(op, node=None, **kwargs):
    @numba_njit
    def logml(k, n, c, a, tau):
        return _observed_logml(k, n, c, a.item(), tau.item(), False)[0]

    return logml


@register_funcify_default_op_cache_key(IntegratedLogmlGrad)
def _numba_logml_grad(op, node=None, **kwargs):
    @numba_njit
    def logml_grad(k, n, c, a, tau):
        _, ga, gt = _observed_logml(k, n, c, a.item(), tau.item(), True)
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
            m = Q.pattern_mode(pk[p], pn[p], a[s], t2, 200, 1e-12)
            u0[p] = m
            l0[p] = Q.pattern_loglik(pk[p], pn[p], a[s] + m)
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
                if log_v < Q.pattern_loglik(pk[p], pn[p], a[s] + u) - l0[p] - g0[p] * d:
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
