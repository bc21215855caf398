"""Group effects integrated out of count random intercepts WITH predictors: compiled per-group quadrature
and exact conditional draws, over blocks of groups.

For group j with rows (cells) i, a linear predictor ``eta_i = offset_i + theta_0 + x_i . beta`` and
``u_j ~ Normal(0, tau)``, the marginal likelihood is the one-dimensional integral

    p(y_j | theta, tau) = integral of  prod_i p(y_i | eta_i + u)  Normal(u | 0, tau)  du,

computed here as :func:`hierpool.core.quadrature.log_marginal` computes it (adaptive Gauss-Hermite
quadrature, ``glmer(nAGQ = q)``): Newton steps with step halving to the mode of the log integrand, nodes
centred there and scaled by its curvature. That numpy routine stays the reference; this module is its
compiled form for the integrated sampler (:mod:`hierpool.inference.integrated`), which needs the sum over
every group for a whole batch of parameter values, many times. Two families, as literals (compiled code
cannot call the :class:`~hierpool.core.families.Family` objects; tests hold the values equal to
``log_marginal`` with the Family's formulas to 1e-9):

- ``LOGIT`` (bernoulli, binomial; ``b_i`` trials): ``log p(y_i | e) = log C(b_i, y_i) + y_i e - b_i log(1 + exp e)``;
  each node costs a pass over the group's rows. The value alone (what the sampler's proposals need) is a
  product over the rows per node, with no log per row (:func:`_logit_log_integral`); the gradient (the
  mode search) keeps one log1p per row and node.
- ``POISSON`` (``offset_i = log exposure_i``): the group's log-likelihood depends on u only through
  ``S_j = sum_i y_i`` and ``A_j = sum_i exp(eta_i)``: ``l_j(u) = c_j + S_j u - A_j exp(u)``. One pass
  over the rows per parameter value gives ``A_j`` and ``c_j``; the mode and the nodes are then scalar
  work per group.

The exponentials of the rows' predictors and of the nodes are loops over arrays that vectorize
(:func:`_exp_array`: a polynomial exp within an ulp of the C library's, which numba calls once per
value). Each group's node arrays are padded to whole vectors of 8, and the exponentials and the
one-trial rows' node products run over the padded length, so that 12 or 20 nodes leave them no
scalar remainder (the other node loops, short sums and maxima, run over the K nodes); a loop writing
in place would run scalar (LLVM's overlap check), so none does. The sampler's proposals at 200,000
groups (2 threads, the benchmark's data, the same 64 proposals, two A/B runs in one process each):
bernoulli 22.1-22.8 ms against 31.9-33.0 ms with ``math.exp``, poisson 20.8-21.9 ms against
33.1-33.4; values equal to 2e-16 relative.

The value includes every constant (log binomial coefficients, ``-log y!``), so it equals the numpy
reference and :func:`hierpool.inference.empirical_bayes.marginal_loglik`. The gradient (for the mode
search) in ``phi = (theta_0, beta, log tau)`` is the node-weighted score, the quadrature of the exact
gradient ``E[score | y]``.

Exact draws of ``u_j`` given ``(theta, tau)`` (:func:`block_draws`): the log density ``f_j`` is concave,
so any tangents bound it above (adaptive rejection sampling, Gilks and Wild 1992, with a hull that is
not refined) and the chords between their points bound it below. Three tangents: near the mode, at
``m``, the last point of Newton steps from ``u0`` (the group's mode at the posterior mode of phi, moved
along its slopes in phi), ``f`` evaluated at each step, which stop at the first point within
``_CENTRE_SLOPE = 0.05`` sd of the mode (``|f'| < 0.05 sqrt(h)`` with a Newton step below
``_CENTRE_STEP = 0.25``, so that f is close to quadratic there: for a normal ``f`` the hull's mass then
grows by less than ``0.05^2 / 2``) or whose step is below ``NEWTON_TOL (1 + |m|)``; and at
``m -+ sqrt(2) / sqrt(h)``, ``h`` the curvature at ``m`` (moved outwards until their slopes have
opposite signs). Stopping within 0.05 sd spares most draws a second Newton evaluation: 16 x 200,000
draws in one thread, 3 processes alternated, bernoulli 1.156-1.163 s against 1.268-1.382 with the
tolerance alone, poisson 0.614-0.616 against 0.657-0.786. (Before that: re-evaluating after the last step
cost 9% of the draws' time for bernoulli and 14% for poisson; a product over the rows in place of each
row's log1p, as the quadrature's value path has, saved nothing here.) A proposal from the hull under the chord is
accepted at once; otherwise ``f_j`` is evaluated. For a normal ``f_j`` and tangents at the mode and
``-+ delta`` sds the hull's mass is ``(delta + 2 / delta)`` sds, least at ``delta = sqrt(2)``: 88.6% of
proposals are accepted, 68% by the squeeze without evaluating ``f_j``. Every accepted value is an
exact draw whatever the tangent points; they only set the acceptance rate.
"""

from __future__ import annotations

import math

import numpy as np
from numba import njit

from hierpool.core.vmath import exp as _exp

__all__ = ["LOGIT", "POISSON", "FAMILY_CODES", "block_logml", "block_draws", "gh_nodes"]

LOGIT = 0
POISSON = 1
#: The family code of each count family.
FAMILY_CODES = {"bernoulli": LOGIT, "binomial": LOGIT, "poisson": POISSON}
_LOG_2PI_HALF = 0.5 * math.log(2.0 * math.pi)
_DELTA = math.sqrt(2.0)
#: Bound on each loop of :func:`block_draws` (outward tangent steps, rejection proposals). A concave f with
#: 1 / tau^2 > 0 needs one outward step almost always, and 88.6% of proposals are accepted (module
#: docstring), so the bound is met only where f has no finite mode or a value is not finite.
_MAX_TRIES = 10_000
#: :func:`block_draws` centres its hull at the first Newton point whose slope is below this many square
#: roots of its curvature (within that many sds of the mode where f is close to quadratic) and whose
#: Newton step is below ``_CENTRE_STEP``: in a logistic or poisson tail f' is about -f'', so the slope test
#: alone held far from the mode once the curvature was small (large tau), and the hull was poor there
#: (a review's emulation of the hull, one-row group of y = 0: acceptance 0.39 against 0.61 at tau = 100;
#: with the kernel, 32 of 8,000 bernoulli draws failed at log tau = 11.5, which a test now holds to none).
_CENTRE_SLOPE = 0.05
_CENTRE_STEP = 0.25
#: :func:`block_draws` moves an outer tangent point towards the mode while its ``f - f(m)`` or ``f'`` is at
#: least this large, so that the hull's arithmetic (products of slopes and points) stays finite.
_TANGENT_MAX = 1e100


@njit(cache=True, nogil=True, fastmath={"contract"})
def _exp_array(x, out):
    """``out[k] = exp(x[k])`` (``out`` must not overlap ``x``: LLVM's overlap check would then run the
    scalar loop). Compiled code calls the C library's ``exp`` once per value (numba's pip wheels have no
    SVML, so LLVM cannot vectorize ``math.exp``); this loop over :func:`hierpool.core.vmath.exp` vectorizes (AVX-512 here).
    It allows FMA contraction, so on a CPU without FMA the last bit may differ. Measured on the AMD
    EPYC, one thread: 0.87 ns a value over 500,000 values against 4.2-4.3 ns for ``math.exp``; called
    per group on 12 or 20 nodes padded to 16 or 24 (with the copies in and out, as the kernels do) 3.5
    and 2.6 ns a node against 5.0 and 4.8 ns; within one ulp of ``math.exp`` (mean 0.06 ulp over 4
    million values) and of numpy (``tests/test_integrated.py``)."""
    for k in range(x.shape[0]):
        out[k] = _exp(x[k])


def gh_nodes(n_nodes: int) -> tuple[np.ndarray, np.ndarray]:
    """Probabilists' Gauss-Hermite nodes and ``log(weight) + x^2 / 2`` (weights of the integrand itself)."""
    x, w = np.polynomial.hermite_e.hermegauss(int(n_nodes))
    return np.ascontiguousarray(x), np.ascontiguousarray(np.log(w) + 0.5 * x**2)


@njit(cache=True, nogil=True)
def _eta(off, Xs, phi, P, out):
    """eta_i = offset_i + theta_0 + x_i . beta (beta = phi[1:1+P])."""
    for i in range(out.shape[0]):
        e = off[i] + phi[0]
        for p in range(P):
            e += Xs[i, p] * phi[1 + p]
        out[i] = e


@njit(cache=True, nogil=True)
def _logit_fgh(b, q, r0, r1, c, Sy, u, inv_t2, need_f):
    """f(u) = sum_i y_i (eta_i + u) - b_i log(1 + exp(eta_i + u)) - u^2 / (2 tau^2) (no constants) and its
    first two derivatives (the second as a positive curvature), from ``q_i = exp(eta_i)``, ``c = sum_i
    y_i eta_i`` and ``Sy = sum_i y_i``: one multiplication per row, and one log1p when ``need_f``."""
    ew = math.exp(u)
    f = c + Sy * u - 0.5 * u * u * inv_t2
    g = Sy - u * inv_t2
    h = inv_t2
    for i in range(r0, r1):
        p = q[i] * ew
        s = p / (1.0 + p) if p < 1e300 else 1.0
        g -= b[i] * s
        h += b[i] * s * (1.0 - s)
        if need_f:
            f -= b[i] * (math.log1p(p) if p < 1e300 else math.log(q[i]) + u)
    return f, g, h


@njit(cache=True, nogil=True, inline="always")
def _pois_fgh(S, A, u, inv_t2):
    """f(u) = S u - A exp(u) - u^2 / (2 tau^2) (no constants: + c_j) and its derivatives."""
    eu = math.exp(u)
    return S * u - A * eu - 0.5 * u * u * inv_t2, S - A * eu - u * inv_t2, A * eu + inv_t2


@njit(cache=True, nogil=True)
def _fgh(fam, b, q, r0, r1, c, S, A, u, inv_t2, need_f):
    """f, f' and -f'' of the family's group log density at u (f itself only when ``need_f``, LOGIT)."""
    if fam == LOGIT:
        return _logit_fgh(b, q, r0, r1, c, S, u, inv_t2, need_f)
    return _pois_fgh(S, A, u, inv_t2)


@njit(cache=True, nogil=True)
def _mode(fam, b, q, r0, r1, c, S, A, u, inv_t2, tol=1e-7):
    """Newton steps (each at most 1 in size: f is strictly concave and smooth) from u until a step is
    below tol (1 + |u|); returns the point after that step (within about tol^2 of the mode: Newton
    converges quadratically) and f's gradient and curvature before it (f is not evaluated)."""
    for _ in range(1000):
        f, g, h = _fgh(fam, b, q, r0, r1, c, S, A, u, inv_t2, False)
        step = min(max(g / h, -1.0), 1.0)
        u += step
        if abs(step) < tol * (1.0 + abs(u)):
            break
    return u, f, g, h


#: Newton tolerance of the value-only LOGIT path: the nodes are centred at the last point evaluated, whose
#: distance to the mode is about the step that stopped (below ``NEWTON_TOL (1 + |u|)``). Centring and
#: scaling anywhere near the mode is a valid quadrature rule; this offset changes a group's value by its
#: size times the quadrature error's derivative. Measured against the per-row form converged to 1e-7:
#: 1.9e-9 in total over 200,000 bernoulli groups near the posterior mode; at tau = 6, where 12 nodes are
#: 9e-2 off over 300 groups, 1.6e-6 (``tests/test_integrated.py`` holds both).
NEWTON_TOL = 1e-5


@njit(cache=True, nogil=True)
def _logit_log_integral(b, q, r0, r1, c, Sy, u, inv_t2, xn, lwn, sv, nk):
    """``(ok, log of the adaptive quadrature sum + log sd, centre)`` of a LOGIT group: the value of
    :func:`block_logml`'s node loop without its gradient, with about a third of its transcendental calls.

    Newton from ``u`` (the last evaluation doubles as the centre's). With ``c_i = 1 / (1 + p_i)`` and
    ``s_i = p_i c_i`` the row's probabilities at the centre ``u`` (``p_i = q_i e^u``) and ``e_k = exp(x_k
    sd)``, the likelihood ratio of node k to the centre is ``prod_i (c_i + s_i e_k)^-b_i`` (``(1 + q_i e^(u +
    x sd)) / (1 + q_i e^u)``, exactly; a sum of two positive terms, so no cancellation where s_i is near 1
    and e_k near 0, which ``1 + s_i (e_k - 1)`` had): a product over the group's rows instead of a log1p
    per row and node, and each node's term relative to the centre is bounded, so no log-sum-exp shift is
    needed. Per group and node two ``exp``, each in a loop over the padded nodes that vectorizes
    (:func:`_exp_array`), as does the product over the rows of one trial (per row, a loop over the padded
    nodes; binomial rows take a scalar power); per group one log. ``ok`` is False (the caller then uses
    the per-row logs) when a product leaves [1e-280, 1e280]: a group of hundreds of rows far in a tail.
    ``sv`` (2, the group's rows) and ``nk`` (5, K padded to whole vectors) are scratch."""
    K = xn.shape[0]
    for _ in range(1000):
        ew = math.exp(u)
        g = Sy - u * inv_t2
        h = inv_t2
        lg = 0.0  # sum_i b_i log(1 + p_i), by products renormalized before they overflow
        lp = 1.0
        for i in range(r0, r1):
            p = q[i] * ew
            if not p < 1e300:
                return False, 0.0, u
            ci = 1.0 / (1.0 + p)
            s = p * ci
            sv[0, i - r0] = s
            sv[1, i - r0] = ci
            g -= b[i] * s
            h += b[i] * s * ci
            lp *= (1.0 + p) if b[i] == 1.0 else (1.0 + p) ** b[i]
            if not lp < 1e280:
                if not lp < math.inf:
                    return False, 0.0, u
                lg += math.log(lp)
                lp = 1.0
        step = min(max(g / h, -1.0), 1.0)
        if abs(step) < NEWTON_TOL * (1.0 + abs(u)):
            break
        u += step
    sd = 1.0 / math.sqrt(h)
    du, e, pr, lt, tm = nk[0], nk[1], nk[2], nk[3], nk[4]  # nk.shape[1] >= K values; padding never read
    for k in range(nk.shape[1]):
        du[k] = xn[k] * sd if k < K else 0.0
        pr[k] = 1.0
    _exp_array(du, e)
    for i in range(r1 - r0):
        si, ci = sv[0, i], sv[1, i]
        if b[r0 + i] == 1.0:  # a loop over the nodes per row: it vectorizes
            for k in range(pr.shape[0]):
                pr[k] *= ci + si * e[k]
        else:
            for k in range(K):
                pr[k] *= (ci + si * e[k]) ** b[r0 + i]
    for k in range(K):
        if not (1e-280 < pr[k] < 1e280):
            return False, 0.0, u
        lt[k] = lwn[k] + Sy * du[k] - du[k] * (u + 0.5 * du[k]) * inv_t2
    _exp_array(lt, tm)
    acc = 0.0
    for k in range(K):
        acc += tm[k] / pr[k]
    # log f(u) + log acc + log sd in one log (lp < 1e280, sd <= tau, acc bounded by the weights)
    return True, c + Sy * u - 0.5 * u * u * inv_t2 - lg + math.log(acc * sd / lp), u


@njit(cache=True, nogil=True, inline="always")
def _inv_tau_sq(tau):
    """``1 / tau^2``, or NaN where tau is NaN or ``tau^2`` or ``1 / tau^2`` overflows (``|log tau|`` above
    about 354.9): the phis :func:`block_logml` and :func:`block_draws` give no value or draw."""
    t2 = tau * tau
    if 0.0 < t2 < math.inf:
        inv = 1.0 / t2
        if inv < math.inf:
            return inv
    return math.nan


@njit(cache=True, nogil=True, inline="always")
def _newton_start(u0, du0, phi0, phi, j):
    """Group j's Newton start at phi: ``u0[j] + du0[j] . (phi - phi0)``, or ``u0[j]`` before any slopes
    (``du0`` of shape (0, D))."""
    u = u0[j]
    if du0.shape[0] > j:
        for d in range(du0.shape[1]):
            u += du0[j, d] * (phi[d] - phi0[d])
    return u


@njit(cache=True, nogil=True)
def block_logml(fam, starts, y, b, off, Xs, const, phis, has_tau, tau_fixed, xn, lwn, u0, phi0, du0, want_grad,
                val, grad, umode, want_slopes, slopes):
    """The log marginal likelihood of a block of groups at each row of ``phis``, summed over the block.

    Parameters
    ----------
    fam : int
        :data:`LOGIT` or :data:`POISSON`.
    starts : int64 (J + 1,)
        The block's rows (cells) sorted by group: group j's are ``starts[j]:starts[j + 1]``.
    y, b, off : float64 (M,)
        Response, trials (LOGIT; ignored for POISSON) and offset (log exposure, or 0) of each row.
    Xs : float64 (M, P)
        Standardized predictors.
    const : float
        The block's constant (log binomial coefficients, or ``-sum log y!``).
    phis : float64 (S, D)
        ``(theta_0, beta_1..P[, log tau])`` per parameter value (``log tau`` when ``has_tau``).
    tau_fixed : float
        tau when ``has_tau`` is False.
    xn, lwn : float64 (K,)
        :func:`gh_nodes`.
    u0 : float64 (J,)
        Each group's mode at ``phi0`` (for example at the posterior mode), or any Newton start.
    phi0 : float64 (D,), du0 : float64 (J, D)
        The point of ``u0`` and the modes' slopes there (``slopes`` of an earlier call): the Newton start
        at phi is ``u0 + du0 (phi - phi0)`` (first-order in phi - phi0). ``du0`` of shape (0, D): start at
        ``u0``. Measured at 200,000 bernoulli groups on proposals from the sampler's t at the mode: 42 ms
        per proposal either way (2 threads, before the vectorized exponentials; the modes move little
        there); it saves Newton steps for
        proposals far from phi0 (the defensive component, the mode search).
    want_grad : bool
    val : float64 (S,), grad : float64 (S, D)
        Output: the block's total and (if ``want_grad``) its gradient in phi; NaN for a phi whose
        ``tau^2`` or ``1 / tau^2`` overflows (``|log tau|`` above about 354.9) or is NaN, which the samplers
        reject (:func:`hierpool.inference.integrated.density_in_tau`).
    umode : float64 (J,)
        Output: the modes at the LAST row of ``phis`` (the next Newton start).
    want_slopes : bool, slopes : float64 (J, D)
        Output (when ``want_slopes``; requires ``want_grad``): ``d mode_j / d phi`` at the last row.
    """
    S = phis.shape[0]
    J = starts.shape[0] - 1
    M = y.shape[0]
    P = Xs.shape[1]
    K = xn.shape[0]
    D = phis.shape[1]
    eta = np.empty(M)
    q = np.empty(M)
    maxn = 1
    for j in range(J):
        maxn = max(maxn, starts[j + 1] - starts[j])
    sc = np.empty((K, maxn))  # per node, the score of each row of the group (gradient of LOGIT)
    tk = np.empty(K)
    Kp = -(-K // 8) * 8  # node arrays padded to whole vectors (see _exp_array)
    ek = np.empty(Kp)
    rw = np.empty(maxn)
    uv = np.zeros(Kp)  # the nodes' u, then their log terms relative to the largest
    wk = np.zeros(Kp)  # those terms
    nk = np.zeros((5, Kp))  # scratch of the LOGIT product path
    sc2 = np.empty((2, maxn))  # its rows' probabilities and complements
    for s in range(S):
        phi = phis[s]
        tau = math.exp(phi[1 + P]) if has_tau else tau_fixed
        inv_t2 = _inv_tau_sq(tau)
        if inv_t2 != inv_t2:  # no value (was a ZeroDivisionError)
            val[s] = np.nan
            if want_grad:
                for d in range(grad.shape[1]):
                    grad[s, d] = np.nan
            continue  # (umode and slopes not written for it: the caller keeps its Newton starts)
        log_tau = math.log(tau)
        _eta(off, Xs, phi, P, eta)
        _exp_array(eta, q)
        total = const
        if want_grad:
            for d in range(grad.shape[1]):
                grad[s, d] = 0.0
        for j in range(J):
            r0, r1 = starts[j], starts[j + 1]
            Sy = 0.0
            A = 0.0
            c = 0.0
            for i in range(r0, r1):
                Sy += y[i]
                A += q[i]
                c += y[i] * eta[i]
            ustart = _newton_start(u0, du0, phi0, phi, j)
            if fam == LOGIT and not want_grad:
                ok, v, m = _logit_log_integral(b, q, r0, r1, c, Sy, ustart, inv_t2, xn, lwn, sc2, nk)
                if ok:
                    total += v - log_tau - _LOG_2PI_HALF
                    umode[j] = m
                    continue
            m, f, g, h = _mode(fam, b, q, r0, r1, c, Sy, A, ustart, inv_t2)
            umode[j] = m
            if want_slopes:
                # d mode / d phi at the mode (implicit function theorem: g(u, phi) = 0): minus the rows'
                # curvature weights w_i (times x_i) over the curvature hm = 1 / tau^2 + sum_i w_i, and
                # 2 m / tau^2 / hm for log tau. Later Newton starts are the modes moved along these slopes.
                em = math.exp(m)
                hm = inv_t2
                for d in range(D):
                    slopes[j, d] = 0.0
                for i in range(r0, r1):
                    if fam == LOGIT:
                        pp = q[i] * em
                        ss = pp / (1.0 + pp) if pp < 1e300 else 1.0
                        wi = b[i] * ss * (1.0 - ss)
                    else:
                        wi = q[i] * em
                    hm += wi
                    slopes[j, 0] -= wi
                    for p in range(P):
                        slopes[j, 1 + p] -= wi * Xs[i, p]
                for d in range(1 + P):
                    slopes[j, d] /= hm
                if has_tau:
                    slopes[j, 1 + P] = 2.0 * m * inv_t2 / hm
            sd = 1.0 / math.sqrt(h)
            top = -np.inf
            for k in range(K):
                uv[k] = m + xn[k] * sd
            _exp_array(uv, ek)
            if fam == POISSON:  # arithmetic only: the loop vectorizes
                for k in range(K):
                    uk = uv[k]
                    tk[k] = lwn[k] + (c + Sy * uk - A * ek[k] - 0.5 * uk * uk * inv_t2)
            else:
                for k in range(K):
                    uk = uv[k]
                    fk = c + Sy * uk - 0.5 * uk * uk * inv_t2
                    for i in range(r0, r1):
                        p = q[i] * ek[k]
                        if p < 1e300:
                            fk -= b[i] * math.log1p(p)
                            if want_grad:
                                sc[k, i - r0] = y[i] - b[i] * p / (1.0 + p)
                        else:
                            fk -= b[i] * (eta[i] + uk)
                            if want_grad:
                                sc[k, i - r0] = y[i] - b[i]
                    tk[k] = lwn[k] + fk
            for k in range(K):
                top = max(top, tk[k])
            for k in range(K):
                uv[k] = tk[k] - top
            _exp_array(uv, wk)
            acc = 0.0
            for k in range(K):
                acc += wk[k]
            lse = top + math.log(acc)
            total += lse + math.log(sd) - log_tau - _LOG_2PI_HALF
            if want_grad:
                e_u = 0.0  # POISSON: E[exp u]
                d_s = 0.0
                for i in range(r1 - r0):
                    rw[i] = 0.0
                for k in range(K):
                    w = math.exp(tk[k] - lse)
                    uk = m + xn[k] * sd
                    d_s += w * (uk * uk * inv_t2 - 1.0)
                    if fam == LOGIT:
                        for i in range(r1 - r0):
                            rw[i] += w * sc[k, i]
                    else:
                        e_u += w * ek[k]
                for i in range(r0, r1):
                    r = rw[i - r0] if fam == LOGIT else y[i] - q[i] * e_u
                    grad[s, 0] += r
                    for p in range(P):
                        grad[s, 1 + p] += r * Xs[i, p]
                if has_tau:
                    grad[s, 1 + P] += d_s
        val[s] = total


@njit(cache=True, nogil=True, inline="always")
def _outer_tangent(fam, b, q, r0, r1, c, Sy, A, m, fm, gm, dlt, side, inv_t2, tries):
    """:func:`block_draws`' outer tangent point on one ``side`` of the centre m (-1 left, +1 right):
    ``(found, x, f(x), f'(x))`` for the first of ``m + side dlt``, ``m + 2 side dlt``, ... whose slope has
    the side's sign and is steeper than the centre's (``side f'(x) < 0`` and ``side f'(x) < side f'(m)``),
    within ``tries`` evaluations. A point whose ``f - f(m)`` or ``f'`` is beyond :data:`_TANGENT_MAX` in
    size (exp(u) overflowing far out: a poisson group of no events at tau ~ e^7.5 put m + dlt near u =
    2,500) is put at half its distance from m, the side's step halved with it (again while needed): any
    tangent points bound f; these keep the hull finite. ``found`` False: f' kept one sign (f has no finite
    mode) or ``tries`` is 0."""
    step = dlt
    x = m + side * step
    fx = gx = math.nan
    for _ in range(tries):
        fx, gx, hx = _fgh(fam, b, q, r0, r1, c, Sy, A, x, inv_t2, True)
        if not (abs(fx - fm) < _TANGENT_MAX and abs(gx) < _TANGENT_MAX):
            step *= 0.5
            x = m + side * step
            continue
        if side * gx < 0.0 and side * gx < side * gm:
            return True, x, fx, gx
        x += side * step
    return False, x, fx, gx


@njit(cache=True, nogil=True)
def block_draws(fam, starts, y, b, off, Xs, phis, has_tau, tau_fixed, u0, phi0, du0, seed, out):
    """One exact draw of every group's effect per row of ``phis``: ``out[s, j] ~ p(u_j | y_j, phis[s])``.

    Arguments as :func:`block_logml` (Newton starts ``u0 + du0 (phi - phi0)``); ``seed`` seeds this call's
    generator (call it in one thread), ``out`` (S, J) float32 or float64. Tangent hull and chord squeeze of
    the module docstring.

    Returns the number of draws that failed, each left NaN in ``out``: every draw of a phi whose
    ``tau^2`` or ``1 / tau^2`` overflows (``|log tau|`` above about 354.9) or is NaN, and a draw whose log density
    has no finite mode or value, or whose outer tangents or rejection loop do not settle in
    ``_MAX_TRIES`` steps (with a finite ``1 / tau^2 > 0`` and finite data, none). Every loop is bounded,
    so no input spins (a NaN phi did before 2026-12-07).
    """
    np.random.seed(seed)
    failed = 0
    S = phis.shape[0]
    J = starts.shape[0] - 1
    M = y.shape[0]
    P = Xs.shape[1]
    eta = np.empty(M)
    q = np.empty(M)
    t = np.empty(3)
    fv = np.empty(3)
    dv = np.empty(3)
    for s in range(S):
        phi = phis[s]
        tau = math.exp(phi[1 + P]) if has_tau else tau_fixed
        inv_t2 = _inv_tau_sq(tau)
        if inv_t2 != inv_t2:  # no draw of this phi
            for j in range(J):
                out[s, j] = np.nan
            failed += J
            continue
        _eta(off, Xs, phi, P, eta)
        _exp_array(eta, q)
        for j in range(J):
            r0, r1 = starts[j], starts[j + 1]
            Sy = 0.0
            A = 0.0
            c = 0.0  # f without c (relative values only)
            for i in range(r0, r1):
                Sy += y[i]
                A += q[i]
            # Newton towards the mode, f evaluated at every point; the centre tangent is at the last point
            # evaluated (within _CENTRE_SLOPE sd or the stopping step of the mode: any m is exact). m, fm, gm
            # and h always belong to one point, also when the steps run out first (m is then put back).
            m = _newton_start(u0, du0, phi0, phi, j)
            at = m
            for _ in range(1000):
                fm, gm, h = _fgh(fam, b, q, r0, r1, c, Sy, A, m, inv_t2, True)
                at = m
                if not h > 0.0:  # 0 (1 / tau^2 = 0, every row saturated) or NaN: no step; fails below
                    break
                step = min(max(gm / h, -1.0), 1.0)
                if abs(step) < NEWTON_TOL * (1.0 + abs(m)) or (abs(gm) < _CENTRE_SLOPE * math.sqrt(h)
                                                               and abs(step) < _CENTRE_STEP):
                    break
                m += step
            m = at
            if not (math.isfinite(m) and math.isfinite(fm) and math.isfinite(gm) and math.isfinite(h)
                    and h > 0.0):
                out[s, j] = np.nan  # a non-finite phi or value
                failed += 1
                continue
            dlt = _DELTA / math.sqrt(h)
            t[1], fv[1], dv[1] = m, fm, gm
            # left and right tangent points: slopes of opposite signs (moved outwards if needed; with
            # 1 / tau^2 > 0 f' falls at least that fast, so one step almost always settles it; where f has
            # no finite mode, f' keeps one sign and the loop ends after _MAX_TRIES steps: a failed draw)
            left, x, fx, gx = _outer_tangent(fam, b, q, r0, r1, c, Sy, A, m, fm, gm, dlt, -1.0, inv_t2, _MAX_TRIES)
            t[0], fv[0], dv[0] = x, fx, gx
            right, x, fx, gx = _outer_tangent(fam, b, q, r0, r1, c, Sy, A, m, fm, gm, dlt, 1.0, inv_t2,
                                              _MAX_TRIES if left else 0)
            if not right:
                out[s, j] = np.nan
                failed += 1
                continue
            t[2], fv[2], dv[2] = x, fx, gx
            # breakpoints z0 (tangents 0, 1) and z1 (tangents 1, 2); values relative to fm. Where a
            # breakpoint is the tangents' intersection (not clamped), the outer tangent's value there is
            # the centre's: taken from the centre (the outer one's sum cancels terms of size |f| at its
            # point, 1e158 for a poisson group of no events at tau = e^7, where it overflowed)
            z0r = (fv[1] - fv[0] - dv[1] * t[1] + dv[0] * t[0]) / (dv[0] - dv[1])
            z1r = (fv[2] - fv[1] - dv[2] * t[2] + dv[1] * t[1]) / (dv[1] - dv[2])
            z0 = min(max(z0r, t[0]), t[1])
            z1 = min(max(z1r, t[1]), t[2])
            h1a = fv[1] + dv[1] * (z0 - t[1]) - fm
            h1b = fv[1] + dv[1] * (z1 - t[1]) - fm
            h0 = h1a if z0 == z0r else fv[0] + dv[0] * (z0 - t[0]) - fm  # hull at z0 and z1, relative to f(m)
            h2 = h1b if z1 == z1r else fv[2] + dv[2] * (z1 - t[2]) - fm
            m0 = math.exp(h0) / dv[0]
            if abs(dv[1]) < 1e-12:
                m1 = math.exp(h1a) * (z1 - z0)
            else:  # expm1: no cancellation where h1b - h1a is small (a centre slope near 0)
                m1 = math.exp(h1a) * math.expm1(h1b - h1a) / dv[1]
            m2 = math.exp(h2) / (-dv[2])
            tot = m0 + m1 + m2
            accepted = False
            for _ in range(_MAX_TRIES):
                r = np.random.random() * tot
                U = np.random.random()
                if r < m0:  # left tail: density exp(h0 + d0 (x - z0)) on (-inf, z0]
                    x = z0 + math.log(U) / dv[0] if U > 0.0 else z0 - 50.0 / dv[0]
                    hull = h0 + dv[0] * (x - z0)
                elif r < m0 + m1:
                    if abs(dv[1]) < 1e-12:
                        x = z0 + U * (z1 - z0)
                    else:  # inverse CDF of exp(d1 x) on [z0, z1]; log1p/expm1 keep its relative precision
                        a_ = dv[1] * (z0 - t[1])  # where d1 is tiny (a plain log(U + (1 - U) exp(b - a))
                        b_ = dv[1] * (z1 - t[1])  # has an absolute error of about eps, eps / d1 in x)
                        if a_ > b_:
                            x = t[1] + (a_ + math.log1p((1.0 - U) * math.expm1(b_ - a_))) / dv[1]
                        else:
                            x = t[1] + (b_ + math.log1p(U * math.expm1(a_ - b_))) / dv[1]
                    hull = fv[1] + dv[1] * (x - t[1]) - fm
                else:  # right tail on [z1, inf)
                    x = z1 + math.log(U) / dv[2] if U > 0.0 else z1 - 50.0 / dv[2]
                    hull = h2 + dv[2] * (x - z1)
                lv = math.log(np.random.random()) + hull
                if t[0] <= x <= t[2]:  # chord squeeze
                    k = 0 if x <= t[1] else 1
                    lam = (x - t[k]) / (t[k + 1] - t[k])
                    if lv <= (1.0 - lam) * fv[k] + lam * fv[k + 1] - fm:
                        accepted = True
                        break
                fx, gx, hx = _fgh(fam, b, q, r0, r1, c, Sy, A, x, inv_t2, True)
                if lv <= fx - fm:
                    accepted = True
                    break
            if accepted:
                out[s, j] = x
            else:
                out[s, j] = np.nan
                failed += 1
    return failed
