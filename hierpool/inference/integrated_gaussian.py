"""The integrated sampler for gaussian random intercepts: coefficients and group effects integrated out.

What ``hp.fit(model, sampler="integrated")`` runs for a gaussian random-intercepts model (any variant:
tau free, tau^2 with a regularizing prior, or the ridge's fixed ``1/sqrt(lam)``), and what
``sampler="auto"`` runs for every such model (whatever the number of groups) unless NUTS settings are
given; models it cannot run (summary-level data, random slopes, several factors, ``collapse=False``,
priors outside Normal on intercept and coefficients, sigma fixed) go to NUTS as before. Given sigma and
tau the model is linear and Gaussian in ``theta = (intercept_c, beta_std)``, whose prior is Normal (the
factory's default; :func:`hierpool.inference.gibbs.population_prior` reads it), so

    p(sigma, tau | y)  ∝  prior(sigma) prior(tau) * integral of p(y | theta, sigma, tau) p(theta) d theta

is known in closed form, and so is ``theta | sigma, tau, y ~ Normal(A^-1 h, A^-1)``. Both come from the size
classes' statistics (:class:`hierpool.data.stats.SizeClasses`: groups of equal size pooled), so an
evaluation costs O(K (P + 2)^3) for K distinct group sizes and P coefficients, whatever the number of
groups or rows. With ``r = (1, intercept_c - m, beta_std)`` and ``w_k = n_k / (sigma^2 + n_k tau^2)``, the
log-likelihood of :func:`hierpool.models.collapse.gaussian_marginal_logp_sizes` is

    -N/2 log 2 pi - (N - J) log sigma - 1/2 sum_k J_k log(sigma^2 + n_k tau^2) - 1/2 (c0 - 2 theta'g + theta'H theta')

with ``H = sum_k w_k M_k[1:, 1:] + Sxx_w / sigma^2``, ``g = sum_k w_k M_k[1:, 0] + Sxy_w / sigma^2`` and
``c0 = sum_k w_k M_k[0, 0] + Syy_w / sigma^2`` (``theta' = theta - (m, 0)``; ``M_k`` the class's moments, the
within-group sums on the coefficients' block). With the prior ``Normal(m0, P0^-1)``, ``A = H + P0`` and
``h = g + P0 m0'`` (``m0' = m0 - (m, 0)``),

    log p(y | sigma, tau) = -N/2 log 2 pi - (N - J) log sigma - 1/2 sum_k J_k log d_k
                            - 1/2 (c0 + m0' P0 m0' - h' A^-1 h) - 1/2 log|A| + 1/2 log|P0|.

The sampler then

1. finds the mode of ``s = (log sigma[, log tau])`` (L-BFGS) and the Hessian there (central second
   differences, steps of a tenth of a posterior sd);
2. draws ``psi = (log sigma[, tau])`` (tau itself: its left tail may be long, as in the count models' sampler)
   by independence Metropolis-Hastings with the count models' defensive Student-t mixture and tuning
   (:func:`hierpool.inference.integrated.imh_chains`): every proposal is independent of the chain's state;
3. draws ``theta`` exactly from its Normal conditional at every draw (one Cholesky factor each);
4. leaves the group effects to :func:`hierpool.inference.sampling.finalize`, which draws them exactly from
   their conditional at every kept draw, as after NUTS on the collapsed model.

The stationary distribution is the model's exact posterior (no quadrature: every integral here is
Gaussian). Against NUTS on the same collapsed model (nutpie, which compiles the model's log density and
samples intercept, coefficients, tau and sigma jointly) it needs no compilation and evaluates a whole
phase's proposals in one batch: at a million groups (issue 17's data, 5 coefficients; 4 x 1000 draws) its
sampling took 0.27-0.32 s where nutpie took 1.2 s to compile and 2.0-2.2 s to sample, with 90% of proposals
accepted and a bulk ESS of tau of 3,175 (``benchmarks/README.md``, 2026-12-06; 95% and 3,390 since the
Laplace proposal is kept where a refit cannot improve it, :func:`hierpool.inference.integrated.refit_helps`). Why "auto" takes it at every size:
``benchmarks/bench_auto_sampler.py`` (2026-12-06; 5 to 200 groups, true tau 0 to 0.3, one predictor;
4 x 1000 draws, the whole ``hp.fit``): 0.13-0.27 s against nutpie's 2.4-6.0 s, with the smallest bulk ESS
of intercept, beta, tau and sigma 728-2,792 against nutpie's 1,036-5,075 (so 8 to 23 times nutpie's
effective draws per second), R-hat at most 1.005, tau's posterior mean and sd the same within Monte Carlo
error, and no divergences where nutpie had 2 (200 groups, tau 0.02).
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass

import numpy as np
import xarray as xr
from scipy import optimize

from hierpool.core import names as N
from hierpool.data.stats import SizeClasses
from hierpool.inference.gibbs import (
    PopulationPrior,
    _log_prior_s,
    population_dataset,
    population_prior,
    scale_prior,
)
from hierpool.inference.integrated import T_DF, density_in_tau, imh_chains, tau_coordinates
from hierpool.models.description import ModelDescription, describe

__all__ = ["GaussianPlan", "plan", "ineligible", "log_marginal", "theta_conditional", "sample"]


@dataclass
class GaussianPlan:
    """What the sampler needs from a gaussian random-intercepts model."""

    sc: SizeClasses
    prior: PopulationPrior  # theta's Normal prior and tau's (or tau fixed)
    sigma_code: int
    sigma_par: np.ndarray
    sigma_on_square: bool
    has_tau: bool
    n_predictors: int
    x_center: np.ndarray
    x_scale: np.ndarray

    @property
    def dim(self) -> int:
        """Sampled coordinates: log sigma and (hierarchical variants) tau."""
        return 1 + int(self.has_tau)


def _prior_or_reason(desc: ModelDescription):
    """``(population prior, sigma prior)`` when the sampler can run the model, else why not (a sentence)."""
    if desc.collapse != "gaussian":
        if desc.family != "gaussian":
            return f"family={desc.family!r}: this sampler serves gaussian random intercepts"
        if desc.collapse is None:
            return ("the model samples its group effects (collapse=False); the gaussian integrated sampler "
                    "integrates them out: build it with collapse='auto' (the default)")
        return (f"collapse={desc.collapse!r}: the gaussian integrated sampler serves random intercepts of one "
                "grouping factor with row-level data (collapse='gaussian')")
    gd = desc.data
    if gd.n_obs == gd.n_groups:
        return ("every group has one row, so sigma and tau are identified only through sigma^2 + tau^2 (a "
                "curved ridge the independence proposal cannot follow: R-hat 1.89 at 300 groups)")
    pp = population_prior(desc)
    if isinstance(pp, str):
        return pp
    sp = scale_prior(desc.priors, N.SIGMA)
    if isinstance(sp, str):
        return sp
    return pp, sp


def ineligible(desc: ModelDescription) -> str | None:
    """Why the sampler cannot run the described model (a sentence), or None when it can."""
    got = _prior_or_reason(desc)
    return got if isinstance(got, str) else None


def plan(model) -> GaussianPlan | str:
    """The sampler's inputs for ``model`` (or its description), or a sentence saying why it cannot run it."""
    desc = model if isinstance(model, ModelDescription) else describe(model)
    got = _prior_or_reason(desc)
    if isinstance(got, str):
        return got
    pp, (code, par, on_square) = got
    gd = desc.data
    return GaussianPlan(sc=gd.gaussian_sizes, prior=pp, sigma_code=code, sigma_par=par,
                        sigma_on_square=on_square,
                        has_tau=desc.variant != "ridge_fixed_effects" and pp.tau_fixed == 0.0,
                        n_predictors=gd.n_predictors, x_center=np.asarray(gd.x_center, dtype=np.float64),
                        x_scale=np.asarray(gd.x_scale, dtype=np.float64))


# ------------------------------------------------------------------------------------------------------
# the closed forms
def _quadratic(gp: GaussianPlan, sigma, tau):
    """For arrays of (sigma, tau): ``(loglik part without theta's quadratic, A, h, c)``, where
    ``log p(y | sigma, tau) = part - 1/2 (c - h' A^-1 h) - 1/2 log|A| + 1/2 log|P0|`` (module docstring)."""
    sc, pp = gp.sc, gp.prior
    sigma = np.asarray(sigma, dtype=np.float64).reshape(-1)
    tau = np.asarray(tau, dtype=np.float64).reshape(-1)
    s2, t2 = sigma**2, tau**2
    d = s2[:, None] + sc.sizes[None, :] * t2[:, None]  # (S, K)
    w = sc.sizes[None, :] / d
    M = sc.moments  # (K, D + 1, D + 1), index 0 the centred group mean, then intercept and coefficients
    D = M.shape[1] - 1
    H = np.einsum("sk,kij->sij", w, M[:, 1:, 1:])
    g = np.einsum("sk,ki->si", w, M[:, 1:, 0])
    c0 = w @ M[:, 0, 0] + sc.syy_w / s2
    if D > 1:
        H[:, 1:, 1:] += sc.sxx_w[None] / s2[:, None, None]
        g[:, 1:] += sc.sxy_w[None] / s2[:, None]
    m0c = pp.m0.copy()
    m0c[0] -= sc.center
    A = H + pp.prec0[None]
    h = g + (pp.prec0 @ m0c)[None]
    c = c0 + m0c @ pp.prec0 @ m0c
    part = (-0.5 * sc.n_obs * math.log(2 * math.pi) - (sc.n_obs - sc.n_groups) * np.log(sigma)
            - 0.5 * np.log(d) @ sc.counts)
    return part, A, h, c


def log_marginal(gp: GaussianPlan, sigma, tau) -> np.ndarray:
    """``log p(y | sigma, tau)`` with theta and the group effects integrated out, at arrays of (sigma, tau)."""
    with np.errstate(all="ignore"):  # a far proposal (sigma or tau overflowing) is -inf, not an error
        part, A, h, c = _quadratic(gp, sigma, tau)
        ok = np.isfinite(part) & np.all(np.isfinite(A), axis=(1, 2)) & np.all(np.isfinite(h), axis=1)
        out = np.full(part.shape[0], -np.inf)
        L = np.zeros_like(A)
        idx = np.flatnonzero(ok)
        try:
            L[idx] = np.linalg.cholesky(A[idx])
        except np.linalg.LinAlgError:  # not positive definite in floating point: factor row by row
            for j in idx:
                try:
                    L[j] = np.linalg.cholesky(A[j])
                except np.linalg.LinAlgError:
                    ok[j] = False
        if ok.any():
            Lk = L[ok]
            z = np.linalg.solve(Lk, h[ok][..., None])[..., 0]
            logdet_a = 2.0 * np.sum(np.log(np.diagonal(Lk, axis1=1, axis2=2)), axis=1)
            logdet_p0 = np.linalg.slogdet(gp.prior.prec0)[1]
            out[ok] = part[ok] - 0.5 * (c[ok] - np.sum(z * z, axis=1)) - 0.5 * logdet_a + 0.5 * logdet_p0
    return out


def theta_conditional(gp: GaussianPlan, sigma, tau) -> tuple[np.ndarray, np.ndarray]:
    """Mean (S, 1 + P) and precision (S, 1 + P, 1 + P) of ``theta = (intercept_c, beta_std) | sigma, tau, y``."""
    _, A, h, _ = _quadratic(gp, sigma, tau)
    mean = np.linalg.solve(A, h[..., None])[..., 0]
    mean[:, 0] += gp.sc.center
    return mean, A


def _tau_of(gp: GaussianPlan, n: int, tau=None) -> np.ndarray:
    return np.asarray(tau, dtype=np.float64) if gp.has_tau else np.full(n, gp.prior.tau_fixed)


def _log_post_s(gp: GaussianPlan, s: np.ndarray) -> np.ndarray:
    """Log posterior density of ``s = (log sigma[, log tau])`` rows (Jacobians included)."""
    s = np.atleast_2d(s)
    with np.errstate(over="ignore"):  # overflowing sigma or tau: -inf below
        sigma = np.exp(s[:, 0])
        tau = _tau_of(gp, s.shape[0], np.exp(s[:, 1]) if gp.has_tau else None)
    out = log_marginal(gp, sigma, tau)
    for i in range(s.shape[0]):
        out[i] += _log_prior_s(gp.sigma_code, gp.sigma_par, gp.sigma_on_square, float(s[i, 0]))
        if gp.has_tau:
            out[i] += gp.prior.log_s(float(s[i, 1]))
    return out


def _log_target(gp: GaussianPlan, psi: np.ndarray) -> np.ndarray:
    """Log density of ``psi = (log sigma[, tau])`` (-inf where tau <= 0)."""
    return density_in_tau(lambda s: _log_post_s(gp, s), psi, gp.has_tau)


def _hessian(f, x: np.ndarray, step: np.ndarray) -> np.ndarray:
    """Central second differences of a scalar function of a vector (all points in one call of ``f``)."""
    D = x.shape[0]
    E = np.diag(step)
    pts = [x]
    for i in range(D):
        pts += [x + E[i], x - E[i]]
        for j in range(i + 1, D):
            pts += [x + E[i] + E[j], x + E[i] - E[j], x - E[i] + E[j], x - E[i] - E[j]]
    v = f(np.array(pts))
    H = np.empty((D, D))
    k = 1
    for i in range(D):
        H[i, i] = (v[k] - 2 * v[0] + v[k + 1]) / step[i] ** 2
        k += 2
        for j in range(i + 1, D):
            H[i, j] = H[j, i] = (v[k] - v[k + 1] - v[k + 2] + v[k + 3]) / (4 * step[i] * step[j])
            k += 4
    return H


def posterior_mode(gp: GaussianPlan) -> tuple[np.ndarray, np.ndarray, dict]:
    """The mode of ``s = (log sigma[, log tau])`` and the covariance ``(-Hessian)^-1`` there."""
    sc = gp.sc
    # start: sigma from the within-group spread (or the total spread), tau from what the group means add
    within = sc.syy_w / max(sc.n_obs - sc.n_groups, 1)
    spread = float(sc.moments[:, 0, 0].sum() / max(sc.n_groups, 1))
    s_sigma = 0.5 * math.log(max(within if sc.n_obs > sc.n_groups else spread, 1e-12))
    start = [s_sigma] + ([0.5 * math.log(max(spread - within / max(sc.n_obs / sc.n_groups, 1.0), 0.01 * spread,
                                                 1e-12))] if gp.has_tau else [])

    def obj(s):
        v = _log_post_s(gp, s)[0]
        return -v if np.isfinite(v) else 1e300

    bounds = [(start[0] - 25.0, start[0] + 25.0)] + ([(math.log(1e-6) + start[0], start[0] + 25.0)]
                                                      if gp.has_tau else [])
    res = optimize.minimize(obj, np.array(start), method="L-BFGS-B", bounds=bounds,
                            options={"maxiter": 500, "ftol": 1e-15, "gtol": 1e-9})
    mode = res.x
    D = mode.shape[0]
    step = np.full(D, 1e-4)
    for _ in range(2):  # second pass: steps of a tenth of the first pass's posterior sd
        H = -_hessian(lambda p: _log_post_s(gp, p), mode, step)
        w, V = np.linalg.eigh(0.5 * (H + H.T))
        ok = bool(np.all(w > 0))
        w = np.maximum(w, 1e-8 * max(float(w.max()), 1e-8))
        cov = (V / w) @ V.T
        step = np.clip(0.1 * np.sqrt(np.diag(cov)), 1e-6, 0.1)
    return mode, cov, {"optimizer": str(res.message), "converged": bool(res.success), "hessian_pd": ok,
                       "mode_evaluations": int(res.nfev)}


# ------------------------------------------------------------------------------------------------------
def sample(gp: GaussianPlan, *, draws: int, tune: int, chains: int, random_seed, more=None) -> tuple[
        xr.Dataset, xr.Dataset, dict]:
    """Run ``chains`` independence-MH chains of ``(sigma, tau)`` and draw theta exactly at every draw.

    Returns ``(posterior, sample_stats, info)``: the posterior holds every draw of intercept, beta (user's
    scale), tau (hierarchical variants) and sigma; the group effects are drawn afterwards
    (:func:`hierpool.inference.sampling.finalize`). ``more``: None, or a callable given the posterior so far
    that returns how many draws per chain to add (:func:`hierpool.inference.integrated.imh_chains`;
    ``hp.fit(..., min_ess=)``): theta is drawn for each batch of draws as it comes."""
    t0 = time.perf_counter()
    ss = np.random.SeedSequence(random_seed)
    s_prop, s_chain, s_theta = ss.spawn(3)
    mode, cov, info = posterior_mode(gp)
    t_mode = time.perf_counter() - t0
    mu, cov = tau_coordinates(mode, cov) if gp.has_tau else (mode, cov)
    rng_theta = np.random.default_rng(s_theta)
    parts = []  # (sigma, tau, theta) of each batch of draws, (chains, n, ...)

    def posterior(psi):
        done = sum(p[0].shape[1] for p in parts)
        if psi.shape[1] > done:  # theta | sigma, tau, y exactly, for the new draws: mean + L^-T z, L L' = precision
            new = psi[:, done:]
            n = new.shape[1]
            flat = new.reshape(-1, gp.dim)
            sigma = np.exp(flat[:, 0])
            tau = _tau_of(gp, flat.shape[0], flat[:, 1] if gp.has_tau else None)
            mean, A = theta_conditional(gp, sigma, tau)
            L = np.linalg.cholesky(A)
            z = rng_theta.standard_normal(mean.shape)
            theta = mean + np.linalg.solve(np.swapaxes(L, 1, 2), z[..., None])[..., 0]
            parts.append((sigma.reshape(chains, n), tau.reshape(chains, n), theta.reshape(chains, n, -1)))
        sigma, tau, theta = (np.concatenate([p[k] for p in parts], axis=1) for k in range(3))
        post = population_dataset(theta, tau if gp.has_tau else None, gp.x_center, gp.x_scale)
        post[N.SIGMA] = (("chain", "draw"), sigma)
        return post

    psi, accepted, imh_info = imh_chains(lambda x: _log_target(gp, x), mu, cov, draws=draws, tune=tune,
                                         chains=chains, rng=np.random.default_rng(s_prop),
                                         chain_rngs=[np.random.default_rng(s) for s in s_chain.spawn(chains)],
                                         more=None if more is None else (lambda psi: more(posterior(psi))),
                                         log_last=gp.has_tau)
    info.update(imh_info)
    post = posterior(psi)
    stats = xr.Dataset({"accepted": (("chain", "draw"), accepted)}, coords=post.coords)
    info.update(acceptance_rate=float(accepted.mean()), mode_s=float(t_mode),
                sampling_s=float(time.perf_counter() - t0), proposal=f"multivariate t({T_DF:g})",
                integrated_out="coefficients and group effects (exactly)")
    return post, stats, info
