"""Several grouping factors: crossed ``(1 | member) + (1 | hospital)`` and nested ``(1 | hospital/ward)``.

A model with one grouping factor keeps today's names (``group``, ``group_effect``, ``tau``). With several,
the FIRST factor keeps them, and every other factor ``f`` gets its own (see :mod:`hierpool.core.names`,
:func:`hierpool.core.names.factor_var`): dim ``group__f``, effect ``group_effect__f``, SD ``tau__f``, and in
``constant_data`` ``group_idx__f``, ``group_n__f``, ``group_raw_mean__f``, ``group_denominator__f``.

How factors are written
-----------------------
- formula: ``(1 | a) + (1 | b)`` (crossed: factors ``a``, ``b``), ``(1 | a/b)`` (nested: ``a`` and ``a:b``,
  as lme4 expands it), ``(1 | a:b)`` (the interaction of two columns as one factor).
- keywords: ``group=["a", "b"]`` (crossed), ``group="a/b"`` or ``group=["a", "a:b"]`` (nested). A name
  ``"a:b"`` that is not itself a column is the interaction of columns ``a`` and ``b``. Formula and keywords
  build the same :class:`~hierpool.data.GroupedData`.

Decisions
---------
- The factors keep the order in which they are written; the first is ``group`` (the default factor of
  every analysis function). The first factor must be a column (not an interaction ``a:b``): write
  ``(1 | a) + (1 | a:b)`` rather than the reverse.
- Level names of an interaction factor ``a:b`` are ``f"{a}:{b}"`` of the two labels (lme4's ``ranef``
  names them so): ward ``w1`` of hospital ``h2`` is ``"h2:w1"``. So a ward label reused in two
  hospitals is two levels, which is what nesting means. Levels keep their first-seen order.
- A factor listed twice, or a factor that is also the response, a predictor, the trials or the exposure,
  is refused.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

from hierpool.data.terms import check_group_labels

__all__ = ["GroupingFactor", "factor_names", "factor_columns", "factor_labels", "grouping_factor"]


@dataclass(frozen=True, eq=False)
class GroupingFactor:
    """One grouping factor of a :class:`~hierpool.data.GroupedData` beyond the first.

    ``name`` is the factor as written (``"hospital"``, ``"hospital:ward"``), ``idx`` the level of each row
    (int64, read-only), ``levels`` the level labels in first-seen order."""

    name: str
    idx: np.ndarray
    levels: pd.Index

    @property
    def n_levels(self) -> int:
        return len(self.levels)


def factor_names(group, arg: str = "group") -> list[str]:
    """The grouping factors that ``group=`` names, in order: ``"g"`` -> ``["g"]``, ``"a/b"`` ->
    ``["a", "a:b"]``, ``["m", "h"]`` -> ``["m", "h"]`` (each entry may itself be nested)."""
    items = [group] if isinstance(group, str) else group
    if not isinstance(items, (list, tuple)) or not items:
        raise TypeError(f"{arg} must be a column name, a nested 'a/b', or a list of them (several grouping "
                        f"factors); got {group!r}.")
    out: list[str] = []
    for item in items:
        if not isinstance(item, str) or not item.strip():
            raise TypeError(f"{arg} entries must be column names (str); got {item!r} in {group!r}.")
        parts = [p.strip() for p in item.split("/")]
        if any(not p for p in parts):
            raise ValueError(f"{arg}={item!r}: an empty name in a nested factor; write 'a/b'.")
        for k in range(1, len(parts) + 1):
            out.append(":".join(parts[:k]))
    dup = sorted({f for f in out if out.count(f) > 1})
    if dup:
        raise ValueError(f"{arg}={group!r} names the grouping factor {dup[0]!r} twice; list each factor once.")
    return out


def factor_columns(df_columns, name: str, arg: str = "group") -> list[str]:
    """The columns factor ``name`` reads: itself if it is a column, else the parts of ``a:b``."""
    cols = list(df_columns)
    if name in cols:
        return [name]
    parts = name.split(":")
    missing = [p for p in parts if p not in cols]
    if len(parts) == 1 or missing:
        shown = ", ".join(repr(c) for c in cols[:20])
        raise ValueError(f"{arg}: the grouping factor {name!r} is not a column"
                         + (f" (nor are its parts {missing})" if len(parts) > 1 else "")
                         + f"; columns are: {shown}.")
    return parts


def factor_labels(df: pd.DataFrame, name: str, arg: str = "group") -> np.ndarray:
    """The label of factor ``name`` on every row of ``df`` (object array): the column, or for ``a:b`` the
    strings ``f"{a}:{b}"``. Missing labels are an error naming the rows."""
    cols = factor_columns(df.columns, name, arg)
    for c in cols:
        s = df[c]
        if s.isna().any():
            bad = s.isna().to_numpy()
            raise ValueError(f"{arg}: the grouping column {c!r} has {int(bad.sum())} missing labels (first rows: "
                             f"{df.index[bad][:5].tolist()}); every row must belong to a level of {name!r}.")
    if len(cols) == 1:
        return df[cols[0]].to_numpy(dtype=object)
    out = df[cols[0]].astype(str).to_numpy(dtype=object)
    for c in cols[1:]:
        out = out + ":" + df[c].astype(str).to_numpy(dtype=object)
    return out


def grouping_factor(df: pd.DataFrame, name: str, arg: str = "group") -> GroupingFactor:
    """Code factor ``name`` of ``df``: levels in first-seen order, at least two."""
    labels = factor_labels(df, name, arg)
    for c in [name] if name in df.columns else factor_columns(df.columns, name, arg):  # a nested factor: each
        check_group_labels(df[c], c)  # part ("1" and 1 in one column would merge into one level "a:1")
    codes, uniques = pd.factorize(pd.Index(labels, dtype=object), sort=False)
    levels = pd.Index(np.asarray(uniques), name=name)
    if len(levels) < 2:
        raise ValueError(f"{arg}: the grouping factor {name!r} has a single level ({levels[0]!r}); a factor "
                         "needs at least two levels.")
    idx = codes.astype(np.int64)
    idx.setflags(write=False)
    return GroupingFactor(name=name, idx=idx, levels=levels)
