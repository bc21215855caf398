"""Sufficient statistics of a gaussian model with several grouping factors, for integrating the FIRST
factor's effects out given the others' (:func:`hierpool.models.crossed.crossed_gaussian_marginal_logp`).

Rows i of member j (the first factor) at levels ``h_f(i)`` of the further factors f. What the collapsed
likelihood reads, besides the first factor's own statistics (:class:`hierpool.data.stats.GaussianStats`:
``n_j``, ``ybar_j``, ``xbar_j`` and the within-member cross-products):

- the *cells*: the distinct combinations (member, level of every further factor), with ``n_c`` rows each
  (for one further factor, the nonzeros of the J x H count matrix ``C[j, h]`` = rows of member j at
  hospital h); every row of a cell has the same further-factor effects;
- per further factor f and level h, the within-member-centered sums
  ``gy_f[h] = sum_{i: h_f(i) = h} (y_i - ybar_j(i))`` and ``gx_f[h] = sum_{i: h_f(i) = h} (x_i - xbar_j(i))``
  (standardized predictors, ``H_f x P``).

One pass over the rows; the response enters only ``ybar``, ``syy_w``, ``sxy_w`` and ``gy_f``.
"""

from __future__ import annotations

import weakref
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np

from hierpool.data.stats import GaussianStats, gaussian_stats

if TYPE_CHECKING:  # annotations only
    from hierpool.data.grouped import GroupedData

__all__ = ["CrossedGaussianStats", "crossed_gaussian_stats"]

#: statistics of each data object's own response, computed once (entries go with the data objects)
_CACHE: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()


@dataclass(frozen=True, eq=False)
class CrossedGaussianStats:
    """The statistics above. ``member`` (first factor) holds the single-factor statistics."""

    member: GaussianStats
    cell_member: np.ndarray  # (K,) member of each cell, cells sorted by member
    cell_levels: tuple  # per further factor: (K,) its level in each cell
    cell_n: np.ndarray  # (K,) rows per cell (float)
    gy: tuple  # per further factor: (H_f,) within-member-centered response sums per level
    gx: tuple  # per further factor: (H_f, P) within-member-centered standardized-predictor sums per level
    n_levels: tuple  # H_f per further factor

    @property
    def n_cells(self) -> int:
        return int(self.cell_n.shape[0])


def crossed_gaussian_stats(gd: GroupedData, y: np.ndarray | None = None) -> CrossedGaussianStats:
    """The statistics of ``gd`` (several grouping factors); ``y`` replaces the response (same design).

    Those of ``gd``'s own response are computed once per data object (model building and the conditional
    draws after sampling both read them).
    """
    if not gd.factors:
        raise ValueError("crossed_gaussian_stats needs data with several grouping factors (gd.factors is empty).")
    if y is None:
        cached = _CACHE.get(gd)
        if cached is None:
            cached = _CACHE[gd] = _compute(gd, None)
        return cached
    return _compute(gd, y)


def _compute(gd, y) -> CrossedGaussianStats:
    yv = gd.y if y is None else np.asarray(y, dtype=float)
    st = gaussian_stats(gd, None if y is None else yv)
    gidx = np.asarray(gd.group_idx, dtype=np.int64)
    # cells: distinct (member, level_1, ..., level_F), ordered by member (lexsort's last key is primary)
    codes = np.column_stack([gidx] + [np.asarray(f.idx, dtype=np.int64) for f in gd.factors])
    uniq, inverse = np.unique(codes, axis=0, return_inverse=True)
    cell_n = np.bincount(inverse.reshape(-1), minlength=uniq.shape[0]).astype(float)
    ry = yv - st.ybar[gidx]
    P = gd.n_predictors
    rx = gd.Xs - st.xbar[gidx] if P else np.zeros((yv.shape[0], 0))
    gy, gx = [], []
    for f in gd.factors:
        H = f.n_levels
        gy.append(np.bincount(f.idx, weights=ry, minlength=H))
        gx.append(np.column_stack([np.bincount(f.idx, weights=rx[:, k], minlength=H) for k in range(P)])
                  if P else np.zeros((H, 0)))
    return CrossedGaussianStats(member=st, cell_member=uniq[:, 0].copy(),
                                cell_levels=tuple(uniq[:, 1 + k].copy() for k in range(len(gd.factors))),
                                cell_n=cell_n, gy=tuple(gy), gx=tuple(gx),
                                n_levels=tuple(f.n_levels for f in gd.factors))
