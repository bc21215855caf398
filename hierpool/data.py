"""Data preparation: from a DataFrame of rows nested in groups to a validated :class:`GroupedData`.

Decisions, stated once:

- Group labels keep their first-seen order in the data (``pd.factorize(sort=False)``); they are the
  ``group`` coordinate of every model and table.
- Numeric predictors are used as they are on the user's scale; the models center them at their means and
  scale them by their standard deviations internally, and report ``beta`` on the user's scale.
- Categorical predictors (pandas ``category``, string or boolean columns) are expanded to treatment-coded
  0/1 indicators named ``column[level]``. The reference level is the first category of a ``category``
  column, the first level in sorted order of a string column (as R does), and ``False`` for booleans.
  Category levels that never occur in the data get no indicator. Integer columns are numeric; convert them
  to ``category`` to treat them as levels.
- Nothing is dropped or coerced silently: a NaN or infinite value anywhere in a used column is an error.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass, field
from numbers import Integral

import numpy as np
import pandas as pd

from . import _names as N
from ._validate import one_of
from .families import check_support, link

__all__ = ["GroupedData", "prepare", "design_matrix"]


class GroupedBase:
    """What :class:`GroupedData` (rows) and :class:`hierpool.scale.GroupedStats` (sufficient statistics)
    share: sizes and the data scales that the default priors use."""

    @property
    def n_groups(self) -> int:
        return len(self.groups)

    @property
    def n_predictors(self) -> int:
        return len(self.predictors)

    @property
    def overall_mean(self) -> float:
        """The pooled mean of the response on its natural scale (a rate for binomial/poisson)."""
        return float((self.group_raw_mean * self.group_denominator).sum() / self.group_denominator.sum())

    @property
    def y_location(self) -> float:
        """The overall mean on the linear-predictor scale: the center of the default intercept prior."""
        return float(link(self.family, self.overall_mean))

    @property
    def y_scale(self) -> float:
        """The scale of the linear predictor used by default priors: sd(y) for gaussian, 1 otherwise."""
        if self.family != "gaussian":
            return 1.0
        return self.y_sd if self.y_sd > 0 else 1.0


@dataclass(frozen=True, eq=False)
class GroupedData(GroupedBase):
    """Validated rows nested in groups, ready for a model factory.

    Build it with :func:`prepare`. Arrays are read-only numpy arrays; ``X`` is on the user's scale
    (indicators are 0/1), with ``x_center`` and ``x_scale`` the internal centering and scaling.
    """

    family: str
    y: np.ndarray
    group_idx: np.ndarray
    groups: pd.Index
    X: np.ndarray
    predictors: list[str]
    x_center: np.ndarray
    x_scale: np.ndarray
    terms: list[dict]
    y_name: str
    group_name: str
    trials: np.ndarray | None = None
    exposure: np.ndarray | None = None
    trials_name: str | int | None = None
    exposure_name: str | None = None
    group_n: np.ndarray = field(init=False)
    group_denominator: np.ndarray = field(init=False)
    group_raw_mean: np.ndarray = field(init=False)

    def __post_init__(self):
        J = len(self.groups)
        n = np.bincount(self.group_idx, minlength=J).astype(np.int64)
        if self.family == "binomial":
            denom = np.bincount(self.group_idx, weights=self.trials, minlength=J)
        elif self.family == "poisson" and self.exposure is not None:
            denom = np.bincount(self.group_idx, weights=self.exposure, minlength=J)
        else:
            denom = n.astype(float)
        sums = np.bincount(self.group_idx, weights=self.y, minlength=J)
        object.__setattr__(self, "group_n", n)
        object.__setattr__(self, "group_denominator", denom)
        object.__setattr__(self, "group_raw_mean", sums / denom)
        for arr in (self.y, self.group_idx, self.X, self.x_center, self.x_scale, self.group_n,
                    self.group_denominator, self.group_raw_mean, self.trials, self.exposure):
            if arr is not None:
                arr.setflags(write=False)

    # sizes -------------------------------------------------------------------------------------------
    @property
    def n_obs(self) -> int:
        return int(self.y.shape[0])

    @property
    def y_sd(self) -> float:
        """The 1/N standard deviation of the response."""
        return float(np.std(self.y))

    @property
    def Xs(self) -> np.ndarray:
        """The predictors centered and scaled as the models see them: ``(X - x_center) / x_scale``."""
        return (self.X - self.x_center) / self.x_scale

    @property
    def log_offset(self) -> np.ndarray | None:
        """log(exposure) for poisson with exposure, else None."""
        return None if self.exposure is None else np.log(self.exposure)

    def spec(self) -> dict:
        """The JSON-serializable recipe of this data: columns, family and predictor terms."""
        return {
            "y": self.y_name,
            "group": self.group_name,
            "family": self.family,
            "trials": self.trials_name,
            "exposure": self.exposure_name,
            "predictors": self.predictors,
            "terms": self.terms,
            "x_center": self.x_center.tolist(),
            "x_scale": self.x_scale.tolist(),
            "n_obs": self.n_obs,
            "y_sd": self.y_sd,
        }

    def __repr__(self) -> str:
        preds = ", ".join(self.predictors) if self.predictors else "none"
        sizes = self.group_n
        return (
            f"GroupedData(family={self.family!r}, y={self.y_name!r}, group={self.group_name!r}, "
            f"rows={self.n_obs}, groups={self.n_groups} (rows per group: min {sizes.min()}, median "
            f"{np.median(sizes):g}, max {sizes.max()}), predictors=[{preds}])"
        )


# ------------------------------------------------------------------------------------------------------
def _require_columns(df: pd.DataFrame, arg: str, cols: Sequence[str]) -> None:
    missing = [c for c in cols if c not in df.columns]
    if missing:
        shown = ", ".join(repr(c) for c in list(df.columns)[:20])
        more = "" if df.shape[1] <= 20 else f", ... ({df.shape[1]} in all)"
        raise ValueError(f"{arg}={missing[0]!r} is not a column of the data; columns are: {shown}{more}.")


def _check_finite(values: np.ndarray, arg: str, col: str, index: pd.Index) -> None:
    bad = ~np.isfinite(values)
    if bad.any():
        rows = index[bad][:5].tolist()
        label = f"{arg}={col!r}" if arg in ("y", "trials", "exposure") else f"{arg}: column {col!r}"
        raise ValueError(
            f"{label} has {int(bad.sum())} NaN or infinite values (first rows: {rows}); hierpool "
            "drops nothing silently: remove or impute these rows before calling prepare()."
        )


def _numeric_column(s: pd.Series, arg: str) -> np.ndarray:
    if pd.api.types.is_bool_dtype(s):
        return s.to_numpy(dtype=float)
    if not pd.api.types.is_numeric_dtype(s) or pd.api.types.is_complex_dtype(s):
        raise TypeError(f"{arg}={s.name!r} must be numeric; got dtype {s.dtype}.")
    return s.to_numpy(dtype=float)


def _predictor_kind(s: pd.Series) -> str:
    name = s.name
    if isinstance(s.dtype, pd.CategoricalDtype):
        return "categorical"
    if pd.api.types.is_bool_dtype(s):
        return "boolean"
    if pd.api.types.is_datetime64_any_dtype(s) or pd.api.types.is_timedelta64_dtype(s) or isinstance(
        s.dtype, pd.PeriodDtype
    ):
        raise TypeError(
            f"predictors: column {name!r} has dtype {s.dtype}, which cannot be used as a predictor; "
            "derive a numeric column (e.g. days since a date) or a category first."
        )
    if pd.api.types.is_complex_dtype(s):
        raise TypeError(f"predictors: column {name!r} is complex; use numeric, boolean, string or category.")
    if pd.api.types.is_numeric_dtype(s):
        return "numeric"
    if pd.api.types.is_string_dtype(s) or s.dtype == object:
        non_null = s.dropna()
        kinds = {type(v).__name__ for v in non_null}
        if kinds <= {"str"}:
            return "string"
        raise TypeError(
            f"predictors: column {name!r} holds mixed Python objects ({', '.join(sorted(kinds))}); a "
            "predictor must be numeric, boolean, string or category."
        )
    raise TypeError(
        f"predictors: column {name!r} has dtype {s.dtype}, which cannot be used as a predictor; valid: "
        "numeric, boolean, string or category."
    )


def _levels(s: pd.Series, kind: str) -> list:
    if kind == "categorical":
        present = set(s.unique().tolist())
        return [c for c in s.cat.categories.tolist() if c in present]
    if kind == "boolean":
        return [False, True]
    return sorted(s.unique().tolist())


def _level_name(level) -> str:
    return str(level)


def _build_terms(df: pd.DataFrame, predictors: list[str]) -> list[dict]:
    terms = []
    for col in predictors:
        s = df[col]
        if s.isna().any():
            bad = s.isna().to_numpy()
            raise ValueError(
                f"predictors: column {col!r} has {int(bad.sum())} NaN or missing values (first rows: "
                f"{df.index[bad][:5].tolist()}); remove or impute them before calling prepare()."
            )
        kind = _predictor_kind(s)
        if kind == "numeric":
            terms.append({"column": col, "kind": "numeric", "names": [col]})
            continue
        levels = _levels(s, kind)
        if len(levels) < 2 or s.nunique() < 2:
            raise ValueError(
                f"predictors: column {col!r} is constant (only level {levels[0]!r}); a constant predictor "
                "is confounded with the intercept. Drop it."
            )
        names = [f"{col}[{_level_name(lv)}]" for lv in levels[1:]]
        terms.append({"column": col, "kind": kind, "levels": [_json_level(lv) for lv in levels],
                      "names": names})
    return terms


def _json_level(level):
    if isinstance(level, (np.generic,)):
        return level.item()
    return level


def design_matrix(df: pd.DataFrame, terms: list[dict], *, context: str = "predictors") -> np.ndarray:
    """Build the predictor matrix (user's scale) for ``df`` from the ``terms`` recorded by :func:`prepare`.

    Used at fitting time and again at prediction time, so new data is coded exactly like the training
    data. A level never seen in training raises ``ValueError``.
    """
    cols = []
    needed = [t["column"] for t in terms]
    missing = [c for c in needed if c not in df.columns]
    if missing:
        raise ValueError(
            f"{context}: column {missing[0]!r} is missing from the data; the model needs columns "
            f"{needed}."
        )
    for t in terms:
        s = df[t["column"]]
        if s.isna().any():
            raise ValueError(f"{context}: column {t['column']!r} has {int(s.isna().sum())} missing values.")
        if t["kind"] == "numeric":
            if not pd.api.types.is_numeric_dtype(s) or pd.api.types.is_bool_dtype(s):
                raise TypeError(f"{context}: column {t['column']!r} must be numeric; got dtype {s.dtype}.")
            v = s.to_numpy(dtype=float)
            _check_finite(v, context, t["column"], df.index)
            cols.append(v[:, None])
            continue
        levels = t["levels"]
        values = s.astype(object).to_numpy() if t["kind"] != "boolean" else s.to_numpy()
        known = pd.Index(levels, dtype=object)
        unknown = ~pd.Index(values, dtype=object).isin(known)
        if unknown.any():
            new = pd.unique(values[unknown])[:5].tolist()
            raise ValueError(
                f"{context}: column {t['column']!r} has levels {new} that were not in the training data; "
                f"known levels: {levels}."
            )
        for lv in levels[1:]:
            cols.append((values == lv).astype(float)[:, None])
    if not cols:
        return np.zeros((len(df), 0))
    return np.hstack(cols)


def prepare(
    df,
    y: str,
    group: str,
    predictors: Sequence[str] | str = (),
    family: str = "gaussian",
    trials: str | int | None = None,
    exposure: str | None = None,
) -> GroupedData:
    """Validate a DataFrame of rows nested in groups and return a :class:`GroupedData`.

    Parameters
    ----------
    df : pandas.DataFrame, dask DataFrame, or str / Path
        One row per observation. A Dask DataFrame or a path (or glob) of Parquet/CSV files is reduced to
        sufficient statistics with Dask (:func:`hierpool.scale.reduce`), returning a ``GroupedStats`` that
        the factories fit exactly without keeping rows.
    y : str
        Response column. gaussian: real; bernoulli: 0/1 (or boolean); binomial: success counts;
        poisson: non-negative integer counts.
    group : str
        Column of group labels (any hashable: member id, county, ...). At least two groups.
    predictors : sequence of str
        Columns used as population-level predictors. Numeric columns are used on their scale; category,
        string and boolean columns become treatment-coded indicators named ``column[level]``.
    family : {"gaussian", "bernoulli", "binomial", "poisson"}
        Response family; links are identity, logit, logit and log.
    trials : str or int, optional
        binomial only: column of trial counts, or one integer for every row.
    exposure : str, optional
        poisson only: column of positive exposures; ``log(exposure)`` enters as an offset.

    Returns
    -------
    GroupedData (pandas input) or GroupedStats (Dask or path input)

    Examples
    --------
    >>> import pandas as pd, hierpool as hp
    >>> df = pd.DataFrame({"y": [1.0, 2.0, 3.0, 4.0], "g": ["a", "a", "b", "b"], "x": [0.1, 0.5, 0.2, 0.9]})
    >>> gd = hp.prepare(df, y="y", group="g", predictors=["x"])
    >>> gd.n_groups, gd.predictors
    (2, ['x'])
    """
    if not isinstance(df, pd.DataFrame):
        from .scale import is_dask_or_path, reduce

        if is_dask_or_path(df):
            return reduce(df, y=y, group=group, predictors=predictors, family=family, trials=trials,
                          exposure=exposure)
        raise TypeError(
            f"df must be a pandas DataFrame, a Dask DataFrame or a path to Parquet/CSV files; got {type(df).__name__}."
        )
    one_of("family", family, N.FAMILIES)
    if len(df) == 0:
        raise ValueError("df is empty (0 rows); hierpool needs rows nested in at least two groups.")
    for arg, val in (("y", y), ("group", group)):
        if not isinstance(val, str):
            raise TypeError(f"{arg} must be a column name (str); got {val!r}.")
    if isinstance(predictors, str):
        predictors = [predictors]
    predictors = list(predictors)
    for p in predictors:
        if not isinstance(p, str):
            raise TypeError(f"predictors must be column names (str); got {p!r}.")
    dup = sorted({p for p in predictors if predictors.count(p) > 1})
    if dup:
        raise ValueError(f"predictors lists {dup[0]!r} more than once; each predictor may appear once.")
    _require_columns(df, "y", [y])
    _require_columns(df, "group", [group])
    _require_columns(df, "predictors", predictors)
    for role, col in (("y", y), ("group", group)):
        if col in predictors:
            raise ValueError(f"predictors includes {col!r}, which is the {role} column; remove it.")
    if y == group:
        raise ValueError(f"y and group are the same column {y!r}.")

    # response ---------------------------------------------------------------------------------------
    ys = df[y]
    if family == "bernoulli" and pd.api.types.is_bool_dtype(ys):
        yv = ys.to_numpy(dtype=float)
    elif not pd.api.types.is_numeric_dtype(ys) or pd.api.types.is_bool_dtype(ys):
        raise TypeError(
            f"y={y!r} must be numeric for family={family!r}; got dtype {ys.dtype}."
            + (" Encode the outcome as 0/1." if family == "bernoulli" else "")
        )
    else:
        yv = ys.to_numpy(dtype=float)
    _check_finite(yv, "y", y, df.index)

    # trials / exposure --------------------------------------------------------------------------------
    tv = ev = None
    if trials is not None and family != "binomial":
        raise ValueError(f"trials={trials!r} is only used with family='binomial' (got family={family!r}).")
    if exposure is not None and family != "poisson":
        raise ValueError(f"exposure={exposure!r} is only used with family='poisson' (got family={family!r}).")
    if family == "binomial":
        if trials is None:
            raise ValueError("family='binomial' needs trials=: a column of trial counts or one integer.")
        if isinstance(trials, Integral) and not isinstance(trials, bool):
            if trials < 1:
                raise ValueError(f"trials={trials!r} must be an integer >= 1.")
            tv = np.full(len(df), float(trials))
        elif isinstance(trials, str):
            _require_columns(df, "trials", [trials])
            if trials in (y, group) or trials in predictors:
                raise ValueError(f"trials={trials!r} is already used as y, group or a predictor.")
            tv = _numeric_column(df[trials], "trials")
            _check_finite(tv, "trials", trials, df.index)
            if (tv < 1).any() or (np.mod(tv, 1) != 0).any():
                raise ValueError(f"trials={trials!r} must hold integers >= 1.")
        else:
            raise TypeError(f"trials must be a column name or an integer; got {trials!r}.")
    if family == "poisson" and exposure is not None:
        if not isinstance(exposure, str):
            raise TypeError(f"exposure must be a column name; got {exposure!r}.")
        _require_columns(df, "exposure", [exposure])
        if exposure in (y, group) or exposure in predictors:
            raise ValueError(f"exposure={exposure!r} is already used as y, group or a predictor.")
        ev = _numeric_column(df[exposure], "exposure")
        _check_finite(ev, "exposure", exposure, df.index)
        if (ev <= 0).any():
            raise ValueError(f"exposure={exposure!r} must be positive; found {int((ev <= 0).sum())} rows <= 0.")
    check_support(family, yv, y, tv)

    # groups -----------------------------------------------------------------------------------------
    gs = df[group]
    if gs.isna().any():
        bad = gs.isna().to_numpy()
        raise ValueError(
            f"group={group!r} has {int(bad.sum())} missing labels (first rows: {df.index[bad][:5].tolist()}); "
            "every row must belong to a group."
        )
    if gs.dtype == object:
        kinds = {type(v).__name__ for v in gs}
        if len(kinds) > 1:
            raise TypeError(
                f"group={group!r} mixes label types ({', '.join(sorted(kinds))}); use one type (e.g. str)."
            )
    codes, uniques = pd.factorize(gs, sort=False)
    labels = pd.Index(np.asarray(uniques), name=N.GROUP)
    if len(labels) < 2:
        raise ValueError(
            f"group={group!r} has a single group ({labels[0]!r}); partial pooling needs at least two groups."
        )

    # predictors ---------------------------------------------------------------------------------------
    terms = _build_terms(df, predictors)
    X = design_matrix(df, terms)
    names = [n for t in terms for n in t["names"]]
    center = X.mean(axis=0) if X.shape[1] else np.zeros(0)
    scale = np.ones(X.shape[1])
    col = 0
    for t in terms:
        k = len(t["names"])
        if t["kind"] == "numeric":
            sd = X[:, col].std()
            if not sd > 0:
                raise ValueError(
                    f"predictors: column {t['column']!r} is constant ({X[0, col]:g}); a constant predictor is "
                    "confounded with the intercept. Drop it."
                )
            scale[col] = sd
        col += k
    dup_names = sorted({n for n in names if names.count(n) > 1})
    if dup_names:
        raise ValueError(f"predictors produce the name {dup_names[0]!r} twice; rename a column.")

    return GroupedData(
        family=family,
        y=yv,
        group_idx=codes.astype(np.int64),
        groups=labels,
        X=X,
        predictors=names,
        x_center=center,
        x_scale=scale,
        terms=json.loads(json.dumps(terms, default=str)) if terms else [],
        y_name=y,
        group_name=group,
        trials=tv,
        exposure=ev,
        trials_name=trials,
        exposure_name=exposure,
    )
