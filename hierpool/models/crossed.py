"""The model parts of grouping factors beyond the first (crossed or nested; :mod:`hierpool.data.factors`).

The factories build the first factor exactly as for one factor (``group``, ``group_effect``, ``tau``). Each
further factor ``f`` adds, under the names of :func:`hierpool.core.names.factor_var`:

- random_intercepts / regularized_hierarchical: ``group_effect__f ~ Normal(0, tau__f)`` over dim
  ``group__f``, non-centered unless ``centered=True``, with ``tau__f`` given the same default prior as
  ``tau`` (HalfStudentT(3, s), resp. the penalized-complexity Exponential) and overridable by
  ``priors={"tau__f": ...}`` (a prior or a number; priors on its square are not offered);
- ridge_fixed_effects: ``group_effect__f ~ Normal(0, 1/sqrt(lam))``: every factor's one-hot block is
  penalized with the same ``lam``.

The linear predictor of row i adds ``group_effect__f[group_idx__f[i]]`` for every further factor.

Collapsing: a model with several factors is fitted at the row level. ``collapse="auto"`` (and ``False``)
choose the row-level likelihood; ``True`` and ``"integrated"`` are refused: the closed-form gaussian collapse
and the count patterns of :mod:`hierpool.models.collapse` integrate out ONE factor whose groups are
independent given the rest, which crossed effects are not. The Gibbs sampler refuses such models too
(:func:`hierpool.inference.gibbs.plan`), so ``sampler="auto"`` picks NUTS.
"""

from __future__ import annotations

import pymc as pm
import pytensor.tensor as pt

from hierpool.core import names as N
from hierpool.models.priors import Prior, scale_parameter

__all__ = ["has_factors", "resolve_collapse_factors", "factor_coords", "factor_prior_keys", "factor_data",
           "factor_effects"]


def has_factors(gd) -> bool:
    """True when ``gd`` has grouping factors beyond the first."""
    return bool(getattr(gd, "factors", ()))


def resolve_collapse_factors(gd, collapse) -> None:
    """The collapse choice of a model with several factors: always the row level (None)."""
    if collapse is False or (collapse == "auto" and not isinstance(collapse, bool)):
        return None
    if gd.summary_level:  # pragma: no cover - prepare refuses se= with several factors
        raise ValueError("summary-level data takes one grouping factor.")
    raise ValueError(
        f"collapse={collapse!r}: a model with several grouping factors ({', '.join(gd.factor_names)}) is fitted "
        "at the row level; the collapsed likelihoods integrate out one factor whose groups are independent, "
        "which crossed or nested effects are not. Use collapse='auto' or False.")


def factor_coords(gd) -> dict:
    """The dims of the further factors: ``group__f`` -> level labels."""
    return {N.factor_var(N.GROUP, f.name): f.levels.tolist() for f in gd.factors}


def factor_prior_keys(gd) -> dict[str, str]:
    """``priors=`` keys for the further factors' SDs (``tau__f``: positive)."""
    return {N.factor_var(N.TAU, f.name): "positive" for f in gd.factors}


def factor_data(gd) -> None:
    """pm.Data of every further factor: the row index and per-level sizes and raw means."""
    for f in gd.factors:
        dim = N.factor_var(N.GROUP, f.name)
        st = gd.factor_stats(f)
        pm.Data(N.factor_var(N.GROUP_IDX, f.name), f.idx, dims=N.OBS)
        pm.Data(N.factor_var(N.GROUP_N, f.name), st["n"], dims=dim)
        pm.Data(N.factor_var(N.GROUP_RAW_MEAN, f.name), st["raw_mean"], dims=dim)
        pm.Data(N.factor_var(N.GROUP_DENOM, f.name), st["denominator"], dims=dim)


def factor_effects(gd, priors: dict, used: dict, *, tau_default: Prior | None, centered: bool = False,
                   lam: float | None = None):
    """Build every further factor's effects; return their sum at each row (a tensor over rows), or None.

    ``tau_default`` is the default prior of each ``tau__f`` (hierarchical variants); ``lam`` (ridge) fixes
    each effect's prior to ``Normal(0, 1/sqrt(lam))`` instead.
    """
    total = None
    for f in gd.factors:
        dim = N.factor_var(N.GROUP, f.name)
        eff = N.factor_var(N.GROUP_EFFECT, f.name)
        if lam is not None:
            u = pm.Normal(eff, 0.0, sigma=1.0 / lam ** 0.5, dims=dim)
        else:
            key = N.factor_var(N.TAU, f.name)
            used[key] = priors.get(key, tau_default)
            tau = scale_parameter(key, priors, tau_default)
            if centered:
                u = pm.Normal(eff, 0.0, tau, dims=dim)
            else:
                z = pm.Normal(N.factor_var(N.GROUP_EFFECT_Z, f.name), 0.0, 1.0, dims=dim)
                u = pm.Deterministic(eff, z * tau, dims=dim)
        term = u[pt.as_tensor_variable(f.idx)]
        total = term if total is None else total + term
    return total


def posterior_names(gd) -> list[str]:
    """The further factors' posterior variables (effects and, hierarchical variants, SDs)."""
    out = []
    for f in gd.factors:
        out += [N.factor_var(N.GROUP_EFFECT, f.name), N.factor_var(N.TAU, f.name)]
    return out
