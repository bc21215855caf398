"""Empirical Bayes: tau (and sigma) plugged in at their marginal (RE)ML estimate, the group effects drawn
from their conditional posterior given it. What ``hp.fit(model, method="empirical_bayes")`` runs.

This is what a mixed-model program does (lme4's ``ranef``/``condVar``, glmmTMB, statsmodels' MixedLM):
the population-level parameters ``(intercept, beta, tau[, sigma])`` are estimated once, by maximizing
the likelihood with the group effects integrated out, and each group's effect is then summarized by its
conditional distribution *given those estimates*. Full Bayes (``hp.fit``'s default) integrates over the
uncertainty in tau, the intercept and beta instead; the two agree when there are many groups and tau is
well away from zero, and plug-in intervals are too narrow (under-cover) when groups are few or tau is
near zero (``validation/eb_coverage.py`` measures where).

Gaussian
--------
Restricted maximum likelihood (REML, lme4's default; ``reml=False`` gives ML). With ``theta = tau/sigma``
and ``d_j = 1 + n_j theta^2``, every quantity comes from the per-group sufficient statistics
(:class:`hierpool.data.stats.GaussianStats`), so one evaluation costs O(J P^2) whatever the rows::

    X'L^-1 X = Sxx_within + sum_j (n_j / d_j) x_j x_j'        (x_j = (1, xbar_j))
    beta(theta) = (X'L^-1 X)^-1 (Sxy_within + sum_j (n_j / d_j) x_j ybar_j)     (GLS)
    RSS(theta)  = W(beta) + sum_j (n_j / d_j) (ybar_j - x_j beta)^2
    REML: sigma^2 = RSS / (N - p);  -2 l_R = (N - p) log(2 pi sigma^2) + sum_j log d_j + log|X'L^-1 X| + N - p
    ML:   sigma^2 = RSS / N;        -2 l   = N log(2 pi sigma^2) + sum_j log d_j + N

profiled over ``sigma`` and ``beta`` as lme4 does, and minimized over ``theta >= 0`` (a grid on the log
scale, then bounded Brent; ``theta = 0`` is allowed: lme4's "boundary (singular) fit"). The group
effects are then exact draws of ``Normal(n_j tau^2 e_j / (sigma^2 + n_j tau^2), sigma^2 tau^2 / (sigma^2 +
n_j tau^2))`` (:func:`hierpool.inference.conditional.draw_gaussian_group_effects`): their mean and
variance are lme4's conditional modes and ``condVar`` (both condition on the estimated beta).

Counts (bernoulli, binomial, poisson)
-------------------------------------
Maximum likelihood with the group effects integrated out by *adaptive Gauss-Hermite quadrature*
(:func:`hierpool.core.quadrature.group_modes` centers and scales the nodes at each group's mode, as
``glmer(nAGQ = q)``), 20 nodes by default, maximized jointly over ``(intercept, beta, log tau)`` by
L-BFGS-B with the exact gradient of the quadrature (the node-weighted scores). glmer's default is the
Laplace approximation (``nAGQ = 1``, one node), which puts tau low for groups of one to a few binary rows
(``../shared/NOTES.md``: 0.84-0.91 against 0.99-1.09 by quadrature, truth 1.0); glmer allows ``nAGQ > 1``
only for a single scalar random effect, which is the model here. The group effects are then exact draws
from ``p(u_j | y_j, intercept, beta, tau)`` by adaptive rejection sampling on a fixed hull
(:func:`draw_conditional`): the log-density is concave, so tangents at a grid around the mode bound it
above and chords below; a proposal under the chords is accepted without evaluating the likelihood, the
rest are checked exactly with the family's log-likelihood.

Priors are not used: the estimates are those of the likelihood alone (as lme4's), so a prior given to
the factory is ignored by this method and the fit says so in its report.
"""

from __future__ import annotations

import math

import numpy as np
import xarray as xr
from numba import njit
from scipy import optimize
from scipy.special import logsumexp

from hierpool.core import config
from hierpool.core import kernels as K
from hierpool.core import names as N
from hierpool.core.families import get_family
from hierpool.core.quadrature import _group_summer, group_modes
from hierpool.inference.conditional import draw_gaussian_group_effects
from hierpool.models.description import ModelDescription

__all__ = ["gaussian_reml", "counts_ml", "draw_conditional", "estimate", "CRITERIA"]

#: The estimation criteria ``hp.fit(..., method="empirical_bayes", criterion=...)`` accepts.
CRITERIA = ("reml", "ml")


# ------------------------------------------------------------------------------------------------------
# gaussian: REML / ML from the sufficient statistics
def _gaussian_profile(st, theta: float, reml: bool) -> dict:
    """Deviance (-2 log-likelihood) profiled over beta and sigma at ``theta = tau / sigma``."""
    J, P = st.xbar.shape
    p = P + 1
    x1 = np.column_stack([np.ones(J), st.xbar])
    w = st.n / (1.0 + st.n * theta**2)
    sxx = np.zeros((p, p))
    sxx[1:, 1:] = st.sxx_w
    sxy = np.zeros(p)
    sxy[1:] = st.sxy_w
    xtlx = sxx + (x1 * w[:, None]).T @ x1
    xtly = sxy + x1.T @ (w * st.ybar)
    coef = np.linalg.solve(xtlx, xtly)
    b = coef[1:]
    within = st.syy_w - 2.0 * b @ st.sxy_w + b @ st.sxx_w @ b
    e = st.ybar - x1 @ coef
    rss = within + np.sum(w * e**2)
    logdet = np.sum(np.log1p(st.n * theta**2))
    n_obs = st.n_obs
    dof = n_obs - p if reml else n_obs
    s2 = rss / dof
    dev = dof * math.log(2.0 * math.pi * s2) + logdet + dof
    if reml:
        dev += np.linalg.slogdet(xtlx)[1]
    return {"deviance": float(dev), "coef": coef, "sigma": math.sqrt(s2), "theta": float(theta)}


def gaussian_reml(st, reml: bool = True) -> dict:
    """REML (or ML) estimates of a gaussian random-intercepts model from its sufficient statistics.

    Parameters
    ----------
    st : GaussianStats
        ``gd.gaussian`` (standardized predictors).
    reml : bool
        REML (lme4's default) or maximum likelihood.

    Returns
    -------
    dict
        ``coef`` (intercept and coefficients on the standardized predictors), ``sigma``, ``tau``,
        ``theta = tau / sigma``, ``deviance`` (-2 times the (restricted) log-likelihood, as lme4's
        ``REMLcrit``/``deviance``), ``singular`` (tau estimated at 0).
    """
    dof = st.n_obs - (st.xbar.shape[1] + 1)
    if dof <= 0:
        raise ValueError(f"method='empirical_bayes' needs more rows ({st.n_obs}) than intercept and predictors "
                         f"({st.xbar.shape[1] + 1}).")
    grid = np.concatenate([[0.0], np.logspace(-4, 3, 57)])
    devs = np.array([_gaussian_profile(st, t, reml)["deviance"] for t in grid])
    k = int(np.argmin(devs))
    lo, hi = grid[max(k - 1, 0)], grid[min(k + 1, grid.size - 1)]
    res = optimize.minimize_scalar(lambda t: _gaussian_profile(st, t, reml)["deviance"], bounds=(lo, hi),
                                   method="bounded", options={"xatol": 1e-10 * max(hi, 1e-8)})
    best = _gaussian_profile(st, float(res.x), reml)
    if devs[k] < best["deviance"]:  # the grid point itself (for example theta = 0) is the minimum
        best = _gaussian_profile(st, grid[k], reml)
    best["tau"] = best["theta"] * best["sigma"]
    best["singular"] = best["theta"] < 1e-6
    best["converged"] = bool(res.success)
    return best


def _known_se_profile(y, se, X1, tau: float, reml: bool) -> dict:
    """-2 log-likelihood of ``y_j ~ Normal(X1_j coef, sqrt(tau^2 + se_j^2))`` at the GLS ``coef(tau)``."""
    w = 1.0 / (tau**2 + se**2)
    xtwx = (X1 * w[:, None]).T @ X1
    coef = np.linalg.solve(xtwx, X1.T @ (w * y))
    r = y - X1 @ coef
    dev = float(np.sum(np.log(2.0 * math.pi / w)) + np.sum(w * r**2))
    if reml:
        dev += float(np.linalg.slogdet(xtwx)[1]) - X1.shape[1] * math.log(2.0 * math.pi)
    return {"deviance": dev, "coef": coef, "tau": float(tau)}


def known_se_reml(y, se, X=None, reml: bool = True) -> dict:
    """REML (or ML) tau of summary-level data, ``y_j ~ Normal(x_j b + u_j, se_j)``, ``u_j ~ Normal(0, tau)``:
    the random-effects meta-analysis (``metafor::rma(method = "REML")``), ``X`` on the user's scale.

    Minimizes ``sum_j log(tau^2 + se_j^2) + sum_j w_j r_j^2 (+ log|X'WX| for REML)`` over ``tau >= 0`` (a
    log-scale grid, then bounded Brent), with the GLS coefficients profiled out. Returns ``coef``
    (intercept first), ``tau``, ``deviance``, ``singular``, ``converged``.
    """
    y = np.asarray(y, dtype=float)
    se = np.asarray(se, dtype=float)
    X1 = np.column_stack([np.ones(y.size)] + ([] if X is None else [np.asarray(X, dtype=float)]))
    if y.size <= X1.shape[1]:
        raise ValueError(f"method='empirical_bayes' needs more groups ({y.size}) than intercept and predictors "
                         f"({X1.shape[1]}).")
    scale = float(np.std(y)) + float(np.median(se))
    grid = np.concatenate([[0.0], scale * np.logspace(-4, 2, 49)])
    devs = np.array([_known_se_profile(y, se, X1, t, reml)["deviance"] for t in grid])
    k = int(np.argmin(devs))
    lo, hi = grid[max(k - 1, 0)], grid[min(k + 1, grid.size - 1)]
    res = optimize.minimize_scalar(lambda t: _known_se_profile(y, se, X1, t, reml)["deviance"], bounds=(lo, hi),
                                   method="bounded", options={"xatol": 1e-10 * max(hi, 1e-8)})
    best = _known_se_profile(y, se, X1, float(res.x), reml)
    if devs[k] < best["deviance"]:
        best = _known_se_profile(y, se, X1, grid[k], reml)
    best["singular"] = best["tau"] < 1e-6 * scale
    best["converged"] = bool(res.success)
    return best


# ------------------------------------------------------------------------------------------------------
# counts: ML by adaptive Gauss-Hermite quadrature, with its gradient
def marginal_loglik(fam, y, eta, codes, n_groups: int, tau: float, *, trials=None, n_nodes: int = 20,
                    X=None) -> tuple[float, np.ndarray | None]:
    """Sum over groups of the adaptive-quadrature marginal log-likelihood, and its gradient.

    Returns ``(value, grad)`` with ``grad`` over ``(intercept, beta (columns of X), log tau)``: each node's
    score weighted by the node's share of the integral (the exact gradient of the integral, evaluated by
    the same quadrature). ``eta`` (rows,) is the linear predictor without the group effect, offsets
    included.
    """
    fam = get_family(fam)
    u, h = group_modes(fam, y, eta, codes, n_groups, 1.0 / tau**2, trials=trials)
    u, h = u[0], h[0]
    x, w = np.polynomial.hermite_e.hermegauss(int(n_nodes))
    gsum = _group_summer(codes, n_groups)
    sd = 1.0 / np.sqrt(h)
    terms = np.empty((x.size, n_groups))
    for k in range(x.size):
        uk = u + x[k] * sd
        ll = gsum(fam.log_likelihood(y, eta + uk[codes], trials=trials)[None, :])[0]
        terms[k] = (math.log(w[k]) + 0.5 * x[k] ** 2 + ll - 0.5 * (uk / tau) ** 2 - math.log(tau)
                    - 0.5 * math.log(2.0 * math.pi))
    lse = logsumexp(terms, axis=0)
    value = float(np.sum(lse - 0.5 * np.log(h)))
    omega = np.exp(terms - lse)  # (nodes, groups): each node's share of the group's integral
    s_rows = np.zeros_like(eta, dtype=float)
    g_logtau = 0.0
    for k in range(x.size):
        uk = u + x[k] * sd
        s_rows += omega[k][codes] * fam.score(y, eta + uk[codes], trials=trials)
        g_logtau += float(np.sum(omega[k] * ((uk / tau) ** 2 - 1.0)))
    grad = np.concatenate([[s_rows.sum()], [] if X is None else X.T @ s_rows, [g_logtau]])
    return value, grad


def counts_ml(gd, n_nodes: int = 20) -> dict:
    """Maximum-likelihood ``(intercept, beta, tau)`` of a count random-intercepts model by adaptive
    Gauss-Hermite quadrature (``n_nodes`` nodes per group), from the data's (group, predictor pattern)
    cells.

    Returns a dict: ``coef`` (intercept and coefficients on the standardized predictors), ``tau``,
    ``loglik``, ``converged``, ``singular``, ``n_nodes``, ``message``.
    """
    cp = gd.cells
    fam = gd.fam
    codes = np.asarray(cp.group_idx, dtype=np.int64)
    offset = 0.0 if cp.exposure is None else np.log(cp.exposure)
    X = cp.Xs if gd.n_predictors else None
    P = 0 if X is None else X.shape[1]
    rate = cp.y.sum() / (cp.trials.sum() if cp.trials is not None else np.sum(cp.exposure))
    a0 = float(fam.link(max(rate, 1e-6)))  # an all-zero response; the logit link clips at 1 - 1e-6 itself

    def objective(phi):
        a, b, logtau = phi[0], phi[1:1 + P], phi[-1]
        eta = a + offset + (0.0 if X is None else X @ b)
        val, grad = marginal_loglik(fam, cp.y, np.broadcast_to(eta, cp.y.shape).astype(float), codes,
                                    gd.n_groups, math.exp(logtau), trials=cp.trials, n_nodes=n_nodes, X=X)
        return -val, -grad

    phi0 = np.concatenate([[a0], np.zeros(P), [math.log(0.5)]])
    bounds = [(None, None)] * (1 + P) + [(math.log(1e-4), math.log(50.0))]
    res = optimize.minimize(objective, phi0, jac=True, method="L-BFGS-B", bounds=bounds,
                            options={"maxiter": 500, "ftol": 1e-13, "gtol": 1e-7})
    tau = math.exp(res.x[-1])
    return {"coef": res.x[:-1].copy(), "tau": tau, "loglik": float(-res.fun), "converged": bool(res.success),
            "singular": bool(res.x[-1] <= math.log(1e-4) + 1e-6), "n_nodes": int(n_nodes),
            "message": str(res.message)}


# ------------------------------------------------------------------------------------------------------
# exact conditional draws of a log-concave one-dimensional density: adaptive rejection on a fixed hull
@njit(cache=True, nogil=True)
def _hull_draws(js, out, pend, logv, seed, t, f, d, z, logmass):
    """One proposal from the tangent hull of group ``js[m]`` for every m; accepted at once under the chord
    squeeze.

    ``out[m]``: the proposal; ``pend[m]``: 1 when it must be checked against the exact density, with
    ``logv[m] = log(V) + hull(x)`` (accept when the exact log-density is at least that).
    """
    np.random.seed(seed)
    G = t.shape[1]
    for m in range(js.shape[0]):
        j = js[m]
        # the segment: inverse of the cumulative (log) masses, by bisection
        r = math.log(np.random.random()) + logmass[j, G - 1]
        lo, hi = 0, G - 1
        while lo < hi:
            mid = (lo + hi) // 2
            if logmass[j, mid] < r:
                lo = mid + 1
            else:
                hi = mid
        k = lo
        zl = -np.inf if k == 0 else z[j, k - 1]
        zr = np.inf if k == G - 1 else z[j, k]
        dk = d[j, k]
        U = np.random.random()
        if abs(dk) < 1e-12:
            x = zl + U * (zr - zl)
        elif dk > 0:
            A = dk * (zl - t[j, k])
            B = dk * (zr - t[j, k])
            x = t[j, k] + (B + math.log(U + (1.0 - U) * math.exp(A - B))) / dk
        else:
            A = dk * (zl - t[j, k])
            B = dk * (zr - t[j, k])
            x = t[j, k] + (A + math.log((1.0 - U) + U * math.exp(B - A))) / dk
        hull = f[j, k] + dk * (x - t[j, k])
        lv = math.log(np.random.random()) + hull
        # squeeze: the chord between the grid points around x (no squeeze outside the grid)
        squeeze = -np.inf
        if t[j, 0] <= x <= t[j, G - 1]:
            lo, hi = 0, G - 2
            while lo < hi:
                mid = (lo + hi + 1) // 2
                if t[j, mid] <= x:
                    lo = mid
                else:
                    hi = mid - 1
            i = lo
            span = t[j, i + 1] - t[j, i]
            lam = (x - t[j, i]) / span if span > 0 else 0.0
            squeeze = (1.0 - lam) * f[j, i] + lam * f[j, i + 1]
        out[m] = x
        if lv <= squeeze:
            pend[m] = 0
        else:
            pend[m] = 1
            logv[m] = lv


def _hull(t, f, d):
    """Intersections of consecutive tangents and the cumulative log-masses of the hull's segments."""
    with np.errstate(divide="ignore", invalid="ignore", over="ignore"):
        dd = d[:, :-1] - d[:, 1:]
        z = (f[:, 1:] - f[:, :-1] - d[:, 1:] * t[:, 1:] + d[:, :-1] * t[:, :-1]) / dd
        mid = 0.5 * (t[:, :-1] + t[:, 1:])
        z = np.where(np.abs(dd) > 1e-12, z, mid)
        z = np.clip(np.nan_to_num(z, nan=0.0), t[:, :-1], t[:, 1:])
        zl = np.concatenate([np.full((t.shape[0], 1), -np.inf), z], axis=1)
        zr = np.concatenate([z, np.full((t.shape[0], 1), np.inf)], axis=1)
        A, B = d * (zl - t), d * (zr - t)
        flat = np.abs(d) < 1e-12
        pos = d > 0
        lm = np.where(pos, B + np.log1p(-np.exp(A - B)) - np.log(np.abs(d)),
                      A + np.log1p(-np.exp(B - A)) - np.log(np.abs(d)))
        lm = np.where(flat, np.log(np.maximum(zr - zl, 1e-300)), lm)
        lm = f + lm
    return z, np.logaddexp.accumulate(lm, axis=1)


def draw_conditional(fam, y, eta, codes, n_groups: int, tau: float, n_draws: int, *, trials=None,
                     seed=None, dtype=np.float64) -> np.ndarray:
    """Exact draws of every group's effect from ``p(u_j | y_j) ∝ prod_i p(y_i | eta_i + u_j) N(u_j | 0, tau)``.

    The log-density ``f_j`` is concave (log-concave likelihoods, normal prior). Tangents at a fixed grid
    around the mode (41 points within 5 Laplace sds, and 1, 2, 3, 5 and 8 tau out) bound it above; chords
    between the grid points bound it below (adaptive rejection sampling, Gilks and Wild 1992, with a hull
    that is not refined). A proposal from the hull is accepted when it falls under the chord; the few
    that do not are checked against ``f_j`` itself (the family's log-likelihood) and redrawn if refused.
    Every accepted value is an exact draw. Returns an array ``(n_draws, n_groups)``.
    """
    fam = get_family(fam)
    codes = np.asarray(codes, dtype=np.int64)
    gsum = _group_summer(codes, n_groups)
    prec = 1.0 / tau**2
    u0, h = group_modes(fam, y, eta, codes, n_groups, prec, trials=trials)
    u0, h = u0[0], h[0]
    offs = np.concatenate([np.linspace(-5.0, 5.0, 41)[None, :] / np.sqrt(h)[:, None],
                           np.tile(tau * np.array([-8, -5, -3, -2, -1, 1, 2, 3, 5, 8.0]), (n_groups, 1))], axis=1)
    t = np.sort(u0[:, None] + offs, axis=1)

    def logf(uv):
        """f_j at points uv (points, groups)."""
        return gsum(fam.log_likelihood(y, eta + uv[:, codes], trials=trials)) - 0.5 * prec * uv**2

    def dlogf(uv):
        return gsum(fam.score(y, eta + uv[:, codes], trials=trials)) - prec * uv

    grid_blocks = config.slices(t.shape[1], max(y.shape[0], 1))  # grid points x rows within the working chunk
    f = np.concatenate([logf(t.T[sl]) for sl in grid_blocks]).T
    d = np.concatenate([dlogf(t.T[sl]) for sl in grid_blocks]).T
    z, cum = _hull(t, f, d)
    out = np.empty((n_draws, n_groups), dtype=dtype)
    ss = seed if isinstance(seed, np.random.SeedSequence) else np.random.SeedSequence(seed)
    order = np.argsort(codes, kind="stable")
    starts = np.searchsorted(codes[order], np.arange(n_groups + 1))
    lens = starts[1:] - starts[:-1]
    per = max(1, config.chunk_values() // max(n_groups, 1))  # draws per block: bounded working memory
    for r0 in range(0, n_draws, per):
        B = min(per, n_draws - r0)
        vals = np.empty(B * n_groups)
        todo = np.arange(B * n_groups)
        js_all = np.repeat(np.arange(n_groups, dtype=np.int64), B)  # group-major: a group's hull stays in cache
        for _ in range(1000):
            js = js_all[todo]
            prop = np.empty(todo.size)
            pend = np.zeros(todo.size, dtype=np.int8)
            logv = np.zeros(todo.size)
            parts = config.slices(todo.size, 1, max(1, -(-todo.size // K._threads())))
            seeds = [int(c.generate_state(1)[0]) for c in ss.spawn(len(parts))]

            def work(i, parts=parts, seeds=seeds, js=js, prop=prop, pend=pend, logv=logv):
                sl = parts[i]
                _hull_draws(js[sl], prop[sl], pend[sl], logv[sl], seeds[i], t, f, d, z, cum)

            K.each_in_threads(work, range(len(parts)))
            ok = pend == 0
            chk = np.nonzero(~ok)[0]
            if chk.size:
                # the exact log-density at each pending point: the rows of its group only
                jc = js[chk]
                ln = lens[jc]
                rep = np.repeat(np.arange(chk.size), ln)
                within = np.arange(rep.size) - np.repeat(np.cumsum(ln) - ln, ln)
                rows = order[np.repeat(starts[jc], ln) + within]
                x = prop[chk]
                ll = np.bincount(rep, weights=fam.log_likelihood(y[rows], eta[rows] + x[rep],
                                                                 trials=None if trials is None else trials[rows]),
                                 minlength=chk.size)
                ok[chk] = logv[chk] <= ll - 0.5 * prec * x**2
            vals[todo[ok]] = prop[ok]
            todo = todo[~ok]
            if not todo.size:
                break
        else:
            raise RuntimeError("rejection sampling of the group effects did not finish within 1000 rounds")
        out[r0:r0 + B] = vals.reshape(n_groups, B).T
    return out


# ------------------------------------------------------------------------------------------------------
def estimate(desc: ModelDescription, *, draws: int, chains: int, random_seed, criterion: str = "reml",
             n_nodes: int = 20, max_group_effect_values: float) -> tuple[xr.Dataset, dict]:
    """The empirical-Bayes posterior: the estimates repeated over (chain, draw), and the group effects'
    conditional draws. Returns the posterior Dataset and the report's additions."""
    gd = desc.data
    P = gd.n_predictors
    J = gd.n_groups
    keep = max(1, min(draws, int(max_group_effect_values // max(chains * J, 1))))
    seed = np.random.SeedSequence([int(random_seed), 7]) if random_seed is not None else np.random.SeedSequence()
    info: dict = {"method": "empirical_bayes"}
    shape = (chains, keep)
    if gd.summary_level:
        from hierpool.inference.conditional import draw_known_se_group_effects

        est = known_se_reml(gd.y, gd.se, gd.X if P else None, reml=criterion == "reml")
        tau, coef = est["tau"], est["coef"]
        intercept, beta = float(coef[0]), (coef[1:] if P else None)
        u = draw_known_se_group_effects(gd, np.full(shape, intercept),
                                        np.broadcast_to(beta, (*shape, P)) if P else None, np.full(shape, tau), seed)
        info.update(criterion=criterion, deviance=est["deviance"], tau=tau, intercept=intercept,
                    converged=est["converged"], singular=est["singular"])
        if P:
            info["beta"] = dict(zip(gd.predictors, map(float, beta), strict=True))
        return _posterior(u, intercept, beta, tau, None, chains, keep), info
    if gd.fam.has_sigma:
        est = gaussian_reml(gd.gaussian, reml=criterion == "reml")
        # REML's log|X'V^-1 X| on the user's predictors (lme4's REMLcrit), not on the standardized ones
        dev = est["deviance"] + (2.0 * float(np.sum(np.log(gd.x_scale))) if criterion == "reml" and P else 0.0)
        info.update(criterion=criterion, deviance=dev)
        sigma = est["sigma"]
    else:
        est = counts_ml(gd, n_nodes=n_nodes)
        info.update(criterion="ml", loglik=est["loglik"], n_nodes=n_nodes, optimizer=est["message"])
        sigma = None
    tau = est["tau"]
    coef = est["coef"]
    b_std = coef[1:]
    beta = b_std / gd.x_scale if P else None
    intercept = coef[0] - (float(beta @ gd.x_center) if P else 0.0)
    if gd.fam.has_sigma:
        u = draw_gaussian_group_effects(gd.gaussian, np.full(shape, coef[0]), np.tile(b_std, (chains * keep, 1))
                                        if P else None, np.full(shape, tau), np.full(shape, sigma), seed)
    else:
        cp = gd.cells
        eta = coef[0] + (cp.Xs @ b_std if P else 0.0) + (0.0 if cp.exposure is None else np.log(cp.exposure))
        eta = np.broadcast_to(eta, cp.y.shape).astype(float)
        u = draw_conditional(gd.fam, cp.y, eta, cp.group_idx, J, max(tau, 1e-8), chains * keep, trials=cp.trials,
                             seed=seed).reshape(chains, keep, J)
    post = _posterior(u, intercept, beta, tau, sigma, chains, keep)
    info.update(tau=tau, intercept=intercept, converged=est["converged"], singular=est["singular"])
    if sigma is not None:
        info["sigma"] = sigma
    if P:
        info["beta"] = dict(zip(gd.predictors, map(float, beta), strict=True))
    if keep < draws:
        info["draws_reduced_to"] = keep
    return post, info


def _posterior(u, intercept, beta, tau, sigma, chains: int, keep: int) -> xr.Dataset:
    """The contract's posterior: the estimates repeated over (chain, draw), the group effects' draws."""
    shape = (chains, keep)
    coords = {"chain": np.arange(chains), "draw": np.arange(keep)}
    post = xr.Dataset({N.INTERCEPT: (N.SAMPLE_DIMS, np.full(shape, intercept)),
                       N.GROUP_EFFECT: ((*N.SAMPLE_DIMS, N.GROUP), np.asarray(u).reshape(chains, keep, -1)),
                       N.TAU: (N.SAMPLE_DIMS, np.full(shape, tau))}, coords=coords)
    if beta is not None:
        post[N.BETA] = ((*N.SAMPLE_DIMS, N.PREDICTOR), np.broadcast_to(beta, (*shape, len(beta))).copy())
    if sigma is not None:
        post[N.SIGMA] = (N.SAMPLE_DIMS, np.full(shape, sigma))
    return post
