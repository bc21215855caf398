"""How the sampler sees sampled group effects: non-centered, centered, or partially non-centered per group.

For effects ``u_j ~ Normal(0, tau)`` that enter the linear predictor as ``m + u_j`` (``m`` the intercept at
the predictors' means for the first grouping factor, 0 for further factors) and a weight ``w_j`` in [0, 1],
the sampled variable is

    theta~_j = (m + u_j - (1 - w_j) m) / tau^(1 - w_j) ~ Normal(w_j m tau^(w_j - 1), tau^w_j)

(partial non-centering, Papaspiliopoulos, Roberts & Skold 2007, Statistical Science 22: 59-73).
``w = 0`` is the non-centered ``u = tau z`` (``centered=False``); ``w = 1`` is hierarchical centering,
``m + u_j ~ Normal(m, tau)`` (``centered=True``: for the first factor the intercept is then the mean of the
group intercepts instead of being correlated with the mean of the effects). ``centered="auto"`` sets
``w_j = tau^2 I_j / (1 + tau^2 I_j)``, the share of group j's conditional posterior precision that its own
data give (``I_j``: :func:`information`), at the current draw's tau: informative groups are centered while
tau is large, and every group is non-centered as tau shrinks toward zero, so neither the funnel of the
centered form at small tau nor the tau-effect coupling of the non-centered form at large tau remains.

Exactness: given (m, tau) the map ``u -> theta~`` is a bijection and ``theta~`` has exactly the law that
``Normal(0, tau)`` on ``u`` induces (the weights depend on tau only), so the joint posterior of (intercept,
beta, tau, group effects) is the same for every choice; only the geometry the sampler sees changes
(``tests/test_sampling_defaults.py`` checks the densities to 1e-8). Measurements:
``benchmarks/bench_sampling_defaults.py`` and :func:`hierpool.random_intercepts`.

The information ``I_j`` is computed once, from the data the model is built on, and enters the graph as a
constant: a compiled model refitted to new responses of the same design (simulation-based calibration,
:func:`hierpool.models.collapse.data_for`) keeps these weights, which is still exact, only possibly less
efficient. The weights cost one vector ``exp`` per gradient (about 1.7x the per-step CPU of
``centered=True`` on grouseticks, 118 groups, no predictors; at scale the likelihood dominates).
"""

from __future__ import annotations

import numpy as np
import pymc as pm
import pytensor.tensor as pt

__all__ = ["CENTERED_CHOICES", "check_centered", "information", "group_information", "group_effects"]

#: The factories' ``centered=`` choices.
CENTERED_CHOICES = ("auto", True, False)


def check_centered(centered):
    """``centered`` itself, or ``ValueError`` naming it and the valid choices."""
    if not (isinstance(centered, bool) or (isinstance(centered, str) and centered == "auto")):
        raise ValueError(f"centered={centered!r} is not valid; valid choices: 'auto', True, False.")
    return centered


def information(gd, denominator, raw_mean, n) -> np.ndarray:
    """Fisher information of each level about its own effect on the link scale, at its raw mean.

    ``1 / v`` with ``v`` the family's :meth:`~hierpool.core.families.Family.within_variance`:
    binomial-type ``trials p (1 - p)``, poisson ``exposure x rate`` (the level's count), gaussian
    ``n / sigma^2`` with sigma taken as sd(y) (an upper bound: the effects of a gaussian model are sampled
    only with ``collapse=False``). A level whose raw mean sits on the boundary (no events, or only events)
    has zero information there. The predictors and other factors are ignored: the result only sets how the
    sampler sees each level, never the posterior.
    """
    sigma = gd.y_sd if gd.fam.has_sigma else None
    with np.errstate(divide="ignore", invalid="ignore"):
        v = np.asarray(gd.fam.within_variance(np.asarray(denominator, dtype=float), np.asarray(raw_mean, dtype=float),
                                              sigma=sigma, n=np.asarray(n, dtype=float)), dtype=float)
        return np.where(np.isfinite(v) & (v > 0), 1.0 / v, 0.0)


def group_information(gd) -> np.ndarray:
    """:func:`information` of the first factor's groups; summary-level data: ``sum 1 / se^2`` per group."""
    if getattr(gd, "summary_level", False):
        return np.bincount(gd.group_idx, weights=1.0 / np.asarray(gd.se, dtype=float) ** 2, minlength=gd.n_groups)
    return information(gd, gd.group_denominator, gd.group_raw_mean, gd.group_n)


def group_effects(tau, info: np.ndarray, centered, *, dim: str, effect: str, z: str, centered_name: str,
                  partial: str, mean=None):
    """The effects ``u ~ Normal(0, tau)`` over ``dim``, named ``effect``, parameterized as ``centered`` says.

    ``mean`` is ``m`` of the module docstring (None: 0). The sampled variable is ``z`` (False),
    ``centered_name`` (True: ``m + u``, or ``u`` itself without a mean) or ``partial`` ("auto").
    """
    if centered is False:
        zz = pm.Normal(z, 0.0, 1.0, dims=dim)
        return pm.Deterministic(effect, zz * tau, dims=dim)
    if centered is True:
        if mean is None:
            return pm.Normal(effect, 0.0, tau, dims=dim)
        theta = pm.Normal(centered_name, mean, tau, dims=dim)
        return pm.Deterministic(effect, theta - mean, dims=dim)
    t2_info = tau**2 * np.asarray(info, dtype=float)
    w = t2_info / (1.0 + t2_info)
    tau_w = pt.exp(w * pt.log(tau))  # tau^w: one vector exp per gradient (three powers cost 3.6x as much)
    if mean is None:
        tt = pm.Normal(partial, 0.0, tau_w, dims=dim)
        return pm.Deterministic(effect, tau / tau_w * tt, dims=dim)
    tt = pm.Normal(partial, w * mean * tau_w / tau, tau_w, dims=dim)
    return pm.Deterministic(effect, tau / tau_w * tt - w * mean, dims=dim)
