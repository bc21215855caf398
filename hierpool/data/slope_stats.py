"""Random slopes ``(1 + x | g)`` for one grouping factor: which predictors may carry them, and the per-group
cross-products that make the gaussian likelihood collapse exactly.

Model (row i of group j, ``z_ij = (1, x_ij[slopes])`` on the user's scale, q = 1 + number of slopes)::

    y_ij = a + x_ij b + z_ij' u_j + e_ij,    u_j ~ MVN(0, Sigma),    e_ij ~ Normal(0, sigma)

``u_j[0]`` is the intercept deviation (``group_effect``), ``u_j[1:]`` the slope deviations
(``group_slope``). The likelihood with ``u_j`` integrated out needs, per group, only ``Z_j'Z_j`` (q x q),
``Z_j'W_j`` (q x (1 + P), ``W = [1, standardized X]`` the fixed design) and ``Z_j'y_j`` (q), plus the global
``y'y``, ``W'y`` and ``W'W`` (:func:`hierpool.models.slopes.collapsed_logp`).

Decisions (where lme4 leaves a choice):

- A slope must also be a fixed predictor: the deviations ``u_j[k]`` vary around the population slope
  ``beta_k``. lme4 accepts ``(0 + x | g)`` or ``(1 + x | g)`` without ``x`` in the fixed part (the population
  slope is then fixed at 0); hierpool refuses it and says to add ``x``.
- A slope is a numeric column (not an indicator, an interaction or a transform): its values enter ``Z`` on the
  user's scale, uncentered, as in lme4, so ``Sigma`` and the correlation are lme4's.
- Always a random intercept, correlated with the slopes (one block per group, an LKJ prior on the
  correlation); uncorrelated forms ``(1 | g) + (0 + x | g)`` and ``(x || g)`` are not supported.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:  # annotations only
    from hierpool.data.grouped import GroupedData

__all__ = ["SlopeStats", "check_slopes", "slope_list", "slope_stats"]


def slope_list(slopes) -> tuple[str, ...]:
    """``slopes=`` as a tuple of column names (a single string is one slope; None or () none)."""
    if slopes is None:
        return ()
    if isinstance(slopes, str):
        return (slopes,)
    if not isinstance(slopes, (list, tuple)):
        raise TypeError(f"slopes must be a list of column names (or one name); got {slopes!r}.")
    for s in slopes:
        if not isinstance(s, str):
            raise TypeError(f"slopes must be column names (str); got {s!r} in slopes={list(slopes)!r}.")
    dup = sorted({s for s in slopes if list(slopes).count(s) > 1})
    if dup:
        raise ValueError(f"slopes lists {dup[0]!r} more than once; each slope may appear once.")
    return tuple(slopes)


def check_slopes(slopes: tuple[str, ...], terms: list[dict], predictors: list[str]) -> None:
    """Refuse slopes that are not numeric fixed predictors (see the module's decisions)."""
    numeric = [t["column"] for t in terms if t.get("kind") == "numeric"]
    for s in slopes:
        if s in numeric and s in predictors:
            continue
        if s in predictors or any(t.get("column") == s for t in terms):
            raise TypeError(f"slopes: {s!r} is not a numeric predictor column; random slopes take numeric columns "
                            f"(numeric fixed predictors: {numeric or 'none'}). Indicators, interactions and "
                            "transforms cannot carry a random slope yet.")
        raise ValueError(f"slopes: {s!r} is not a fixed predictor (predictors: {predictors or 'none'}); a random "
                         f"slope varies around the population slope, so add {s!r} to the predictors (formula: "
                         f"'y ~ {s} + (1 + {s} | g)'). lme4's slope without a fixed term (population slope fixed "
                         "at 0) is not supported.")


@dataclass(frozen=True)
class SlopeStats:
    """Sufficient statistics of gaussian random slopes (``W = [1, standardized X]``, ``Z = [1, x_slopes]``)."""

    n: np.ndarray  # (J,) rows per group
    zz: np.ndarray  # (J, q, q) Z_j'Z_j
    zw: np.ndarray  # (J, q, 1 + P) Z_j'W_j
    zy: np.ndarray  # (J, q) Z_j'y_j
    yy: float  # y'y
    wy: np.ndarray  # (1 + P,) W'y
    ww: np.ndarray  # (1 + P, 1 + P) W'W
    n_obs: int


def _group_sum(idx: np.ndarray, values: np.ndarray, J: int) -> np.ndarray:
    """Per-group sums of each column of ``values`` (rows x k) -> (J, k)."""
    return np.stack([np.bincount(idx, weights=values[:, k], minlength=J) for k in range(values.shape[1])], axis=1)


def slope_stats(gd: GroupedData, y: np.ndarray | None = None) -> SlopeStats:
    """One pass over the rows (``y`` replaces the response, same design): O(N q (q + P))."""
    y = gd.y if y is None else np.asarray(y, dtype=float)
    J, idx = gd.n_groups, gd.group_idx
    Z = gd.Z
    W = np.column_stack([np.ones(gd.n_obs), gd.Xs])
    q, P1 = Z.shape[1], W.shape[1]
    zz = _group_sum(idx, (Z[:, :, None] * Z[:, None, :]).reshape(-1, q * q), J).reshape(J, q, q)
    zw = _group_sum(idx, (Z[:, :, None] * W[:, None, :]).reshape(-1, q * P1), J).reshape(J, q, P1)
    zy = _group_sum(idx, Z * y[:, None], J)
    return SlopeStats(n=gd.group_n.astype(float), zz=zz, zw=zw, zy=zy, yy=float(y @ y), wy=W.T @ y, ww=W.T @ W,
                      n_obs=int(y.shape[0]))
