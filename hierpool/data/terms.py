"""Predictor terms: column checks, the coding of numeric and categorical predictors, and the design matrix.

Decisions, stated once:

- Numeric predictors are used as they are on the user's scale; the models center them at their means and
  scale them by their standard deviations internally, and report ``beta`` on the user's scale.
- Categorical predictors (pandas ``category``, string or boolean columns) are expanded to treatment-coded
  0/1 indicators named ``column[level]``. The reference level is the first category of a ``category``
  column, the first level in sorted order of a string column (as R does), and ``False`` for booleans.
  Category levels that never occur in the data get no indicator; levels must be str, int, float or bool (a
  fit stores them and codes new data against them), so a category of Timestamps, Periods or tuples is
  refused (convert it with ``.astype(str).astype("category")``). Integer columns are numeric; convert them
  to ``category`` to treat them as levels.
- Nothing is dropped or coerced silently: a NaN or infinite value anywhere in a used column is an error.
- A formula (:mod:`hierpool.data.formula`) adds two kinds of term, built from the column terms above (so
  the same checks apply): ``transform`` (a numeric expression of numeric columns, named as written, e.g.
  ``np.log(x)``) and ``interaction`` (row-wise products of its factors' columns, named ``a:b[level]``).
  Their columns are scaled like numeric ones, except products of indicators (scale 1).
"""

from __future__ import annotations

import re
from collections.abc import Sequence

import numpy as np
import pandas as pd

from hierpool.core import kernels as K


# ------------------------------------------------------------------------------------------------------
def require_columns(df: pd.DataFrame, arg: str, cols: Sequence[str]) -> None:
    missing = [c for c in cols if c not in df.columns]
    if missing:
        shown = ", ".join(repr(c) for c in list(df.columns)[:20])
        more = "" if len(df.columns) <= 20 else f", ... ({len(df.columns)} in all)"
        raise ValueError(f"{arg}={missing[0]!r} is not a column of the data; columns are: {shown}{more}.")


def predictor_list(predictors) -> list:
    """``predictors=`` as a list: a str is one column, ``None`` or ``()`` none; a list, tuple, ``pd.Index`` or
    1-d array keeps its order. A set, a dict (its values would be dropped) or another iterable is refused:
    the order of the predictors is the order of the coefficients."""
    if predictors is None:
        return []
    if isinstance(predictors, str):
        return [predictors]
    if isinstance(predictors, (list, tuple, pd.Index)) or (isinstance(predictors, np.ndarray)
                                                            and predictors.ndim == 1):
        return predictors.tolist() if isinstance(predictors, (pd.Index, np.ndarray)) else list(predictors)
    raise TypeError(f"predictors must be a list (or tuple, pd.Index) of column names, one name, or None; got "
                    f"{type(predictors).__name__} {predictors!r}. The order of the predictors is the order of the "
                    "coefficients (a set has none, and a dict's values would be ignored): pass a list, e.g. "
                    "predictors=['x1', 'x2'].")


def require_unique_columns(df: pd.DataFrame, cols: Sequence) -> None:
    """Refuse a frame that has one of ``cols`` under the same name twice (pandas would hand back a
    DataFrame where a column is expected)."""
    dup = df.columns[df.columns.duplicated()]
    used = [c for c in cols if c in set(dup)]
    if used:
        raise ValueError(
            f"df has {int((df.columns == used[0]).sum())} columns named {used[0]!r}, a column the model uses "
            "(y, group, predictors, trials or exposure); rename or drop the duplicates first."
        )


#: Largest group label an int may be: fits store labels as int64 (netCDF), so larger ones cannot be saved.
_INT64 = 2**63


def check_group_labels(labels: pd.Series, group) -> None:
    """Group labels must be of one type that a fit can store: str, int within 64 bits, float, bool.

    Mixed types ("1" and 1) would split one member into two groups; tuples and other objects, and
    Python ints beyond 64 bits, fit but cannot be saved (``hp.save`` would fail after sampling).
    """
    if labels.dtype != object:
        return
    kinds = {type(v).__name__ for v in labels}
    if len(kinds) > 1:
        raise TypeError(f"group={group!r} mixes label types ({', '.join(sorted(kinds))}); use one type (e.g. str).")
    first = labels.iloc[0] if len(labels) else None
    if first is None or isinstance(first, (str, bool, float, np.floating, np.integer, np.bool_)):
        return
    if isinstance(first, int):
        big = [v for v in pd.unique(labels.to_numpy()) if not -_INT64 <= v < _INT64]
        if big:
            raise ValueError(
                f"group={group!r} has integer labels beyond 64 bits (e.g. {big[0]}), which a fit cannot store; "
                f"convert them to text first: df[{group!r}] = df[{group!r}].astype(str)."
            )
        return
    raise TypeError(
        f"group={group!r} holds labels of type {type(first).__name__} (e.g. {first!r}); a fit stores str, int, "
        f"float or bool labels: convert them, e.g. df[{group!r}] = df[{group!r}].astype(str)."
    )


def require_roles(df: pd.DataFrame, y: str, group: str, predictors: Sequence[str]) -> None:
    """The response, group and predictor columns exist in ``df`` (any frame with those columns), and no
    predictor is the response or the group column."""
    require_columns(df, "y", [y])
    require_columns(df, "group", [group])
    require_columns(df, "predictors", predictors)
    for role, col in (("y", y), ("group", group)):
        if col in predictors:
            raise ValueError(f"predictors includes {col!r}, which is the {role} column; remove it.")


def check_finite(values: np.ndarray, arg: str, col: str, index: pd.Index) -> None:
    bad = ~np.isfinite(values)
    if bad.any():
        rows = index[bad][:5].tolist()
        label = f"{arg}={col!r}" if arg in ("y", "trials", "exposure") else f"{arg}: column {col!r}"
        raise ValueError(
            f"{label} has {int(bad.sum())} NaN or infinite values (first rows: {rows}); hierpool "
            "drops nothing silently: remove or impute these rows before calling prepare()."
        )


def check_numeric_dtype(dtype, arg: str, name, *, allow_bool: bool = True) -> None:
    """Refuse a column of ``dtype`` (pandas or Dask) that is not real numbers: text, dates, category and
    complex numbers; booleans too unless ``allow_bool`` (they are read as 0/1 where that is documented,
    never for counts such as trials, or for exposures and standard errors)."""
    if pd.api.types.is_bool_dtype(dtype):
        if allow_bool:
            return
        raise TypeError(f"{arg}={name!r} is boolean (dtype {dtype}); {arg} takes numbers, not True/False. If "
                        f"the values are meant as numbers, convert the column on purpose: "
                        f"df[{name!r}].astype(int).")
    if pd.api.types.is_complex_dtype(dtype):
        raise TypeError(f"{arg}={name!r} must be real numbers; got complex dtype {dtype}.")
    if not pd.api.types.is_numeric_dtype(dtype):
        raise TypeError(f"{arg}={name!r} must be numeric; got dtype {dtype}.")


def numeric_column(s: pd.Series, arg: str, *, allow_bool: bool = True) -> np.ndarray:
    """A column as float (checked by :func:`check_numeric_dtype`; booleans are 0/1 if ``allow_bool``)."""
    check_numeric_dtype(s.dtype, arg, s.name, allow_bool=allow_bool)
    return s.to_numpy(dtype=float)


_DATE = re.compile(r"^\s*(\d{4}[-/.]\d{1,2}[-/.]\d{1,2}|\d{1,2}[-/.]\d{1,2}[-/.]\d{2,4})([ T]\d{1,2}:\d{2}(:\d{2})?)?\s*$")


def _refuse_text_numbers_and_dates(values: pd.Series, name) -> None:
    """Refuse a text column whose values are mostly numbers or dates: read from a CSV with one stray
    entry ("unknown", "n/a"), it would otherwise become hundreds of indicators, one per distinct value.

    A column that is meant as levels says so by being ``category``; this check only reads str columns.
    """
    uniq = pd.unique(values.to_numpy())
    numeric = pd.to_numeric(pd.Series(uniq), errors="coerce").notna().to_numpy()
    dates = np.array([bool(_DATE.match(v)) for v in uniq])
    for mask, what, fix in (
        (numeric, "numbers", f"pd.to_numeric(df[{name!r}], errors='coerce') and decide what the missing entries "
                             "mean"),
        (dates, "dates", f"a numeric column derived from pd.to_datetime(df[{name!r}]) (e.g. days since a date)"),
    ):
        if mask.sum() >= 2 and mask.mean() >= 0.5:
            rest = [v for v, m in zip(uniq.tolist(), mask, strict=True) if not m][:5]
            odd = f"; the others are not: {rest}" if rest else ""
            raise TypeError(
                f"predictors: column {name!r} holds text, but {int(mask.sum())} of its {len(uniq)} distinct values "
                f"are {what} (e.g. {uniq[mask][0]!r}){odd}. As text it would become one indicator per distinct "
                f"value. Use {fix}; or, to use the values as levels on purpose, convert the column to "
                f"category: df[{name!r}] = df[{name!r}].astype('category')."
            )


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
            _refuse_text_numbers_and_dates(non_null, name)
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


def build_terms(df: pd.DataFrame, predictors: list[str]) -> list[dict]:
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
        if kind == "categorical":
            _check_category_levels(levels, col)
        if len(levels) < 2 or s.nunique() < 2:
            raise ValueError(
                f"predictors: column {col!r} is constant (only level {levels[0]!r}); a constant predictor "
                "is confounded with the intercept. Drop it."
            )
        names = [f"{col}[{_level_name(lv)}]" for lv in levels[1:]]
        terms.append({"column": col, "kind": kind, "levels": [_json_level(lv) for lv in levels],
                      "names": names})
    return terms


#: Types a category level may have: a fit stores levels as they are (JSON) and codes new data against them.
_LEVEL_TYPES = (str, bool, int, float, np.integer, np.floating, np.bool_)


def _check_category_levels(levels: list, col) -> None:
    """Refuse levels that a fit cannot store and compare again (Timestamp, Period, tuple, ...): turned into
    text when stored, new data of the same column would no longer match them."""
    odd = [lv for lv in levels if not isinstance(lv, _LEVEL_TYPES)]
    if odd:
        raise TypeError(
            f"predictors: column {col!r} is a category whose levels are of type {type(odd[0]).__name__} (e.g. "
            f"{odd[0]!r}); category levels must be str, int, float or bool, which a fit stores and matches in "
            f"new data. Convert the levels to text first: df[{col!r}] = df[{col!r}].astype(str).astype('category')."
        )


def _json_level(level):
    if isinstance(level, (np.generic,)):
        return level.item()
    return level


def term_columns(term: dict) -> list[str]:
    """The data columns a term reads: one for a column term, one or more for a formula's transform or
    interaction."""
    return list(term["columns"]) if "columns" in term else [term["column"]]


def indicator_term(term: dict) -> bool:
    """Whether a term's columns are 0/1 indicators (categorical terms and interactions of categorical
    factors only): the models scale those by 1, every other column by its standard deviation."""
    if term["kind"] == "interaction":
        return all(indicator_term(f) for f in term["factors"])
    return term["kind"] in ("categorical", "string", "boolean")


def _term_block(df: pd.DataFrame, t: dict, context: str, out: np.ndarray | None = None) -> np.ndarray:
    """The columns of one term (n x len(names)) on the user's scale; a numeric or categorical term is
    written into ``out`` when given (interactions and transforms build their block)."""
    kind = t["kind"]
    if kind == "interaction":  # row-wise products, the first factor varying slowest (as formulae orders them)
        block = np.ones((len(df), 1))
        for f in t["factors"]:
            fb = _term_block(df, f, context)
            block = (block[:, :, None] * fb[:, None, :]).reshape(len(df), block.shape[1] * fb.shape[1])
        return block
    if kind == "transform":
        from hierpool.data.expressions import evaluate

        def column(name):
            s = df[name]
            if not pd.api.types.is_numeric_dtype(s) or pd.api.types.is_bool_dtype(s):
                raise TypeError(f"{context}: column {name!r} (in {t['expr']!r}) must be numeric; got dtype {s.dtype}.")
            v = s.to_numpy(dtype=float)
            check_finite(v, context, name, df.index)
            return v

        v, _ = evaluate(t["expr"], column, t["state"])
        check_finite(v, context, t["expr"], df.index)
        return v[:, None]
    s = df[t["column"]]
    if s.isna().any():
        raise ValueError(f"{context}: column {t['column']!r} has {int(s.isna().sum())} missing values.")
    if kind == "numeric":
        if not pd.api.types.is_numeric_dtype(s) or pd.api.types.is_bool_dtype(s):
            raise TypeError(f"{context}: column {t['column']!r} must be numeric; got dtype {s.dtype}.")
        v = s.to_numpy(dtype=float)
        check_finite(v, context, t["column"], df.index)
        if out is None:
            return v[:, None]
        out[:, 0] = v
        return out
    levels = t["levels"]
    known = pd.Index(levels, dtype=object)
    values = None
    if isinstance(s.dtype, pd.CategoricalDtype):  # the column's own codes, mapped to the training levels
        codes = known.get_indexer(s.cat.categories.astype(object))[s.cat.codes.to_numpy()]
    else:  # one hashing pass over the rows, then a lookup per distinct value
        values = s.astype(object).to_numpy() if kind != "boolean" else s.to_numpy()
        row_codes, distinct = pd.factorize(values)
        codes = known.get_indexer(pd.Index(distinct, dtype=object))[row_codes]
    unknown = codes < 0  # a level that is not in the training data
    if unknown.any():
        values = s.astype(object).to_numpy() if values is None else values
        new = pd.unique(values[unknown])[:5].tolist()
        raise ValueError(
            f"{context}: column {t['column']!r} has levels {new} that were not in the training data; "
            f"known levels: {levels}."
        )
    first = 0 if t.get("full") else 1  # "full": every level (a formula's interaction coding); else drop the first
    if out is None:
        out = np.empty((len(codes), len(levels) - first))
    out[:] = 0.0
    rows = np.flatnonzero(codes >= first)
    out[rows, codes[rows] - first] = 1.0
    return out


def _fill_term(df: pd.DataFrame, t: dict, context: str, out: np.ndarray) -> None:
    """Write one term's columns into ``out`` (a column slice of the design matrix), with no block of its
    own for numeric and categorical terms."""
    if t["kind"] in ("interaction", "transform"):
        out[:] = _term_block(df, t, context)
    else:
        _term_block(df, t, context, out)


def design_matrix(df: pd.DataFrame, terms: list[dict], *, context: str = "predictors") -> np.ndarray:
    """Build the predictor matrix (user's scale) for ``df`` from the ``terms`` recorded by :func:`prepare`.

    Used at fitting time and again at prediction time, so new data is coded exactly like the training
    data. A level never seen in training raises ``ValueError``. Besides the column terms of ``predictors=``
    (kinds numeric, categorical, string, boolean), a formula's terms may be a ``transform`` of numeric
    columns (:mod:`hierpool.data.expressions`) or an ``interaction`` (row-wise products of its factors'
    columns, named ``a:b``). The columns are written in place into one C-ordered float64 array
    (:func:`hierpool.core.kernels.empty_large`), not stacked from blocks.
    """
    needed = list(dict.fromkeys(c for t in terms for c in term_columns(t)))
    missing = [c for c in needed if c not in df.columns]
    if missing:
        raise ValueError(
            f"{context}: column {missing[0]!r} is missing from the data; the model needs columns "
            f"{needed}."
        )
    widths = [len(t["names"]) for t in terms]
    X = K.empty_large((len(df), sum(widths)), np.float64)
    col = 0
    for t, w in zip(terms, widths, strict=True):
        _fill_term(df, t, context, X[:, col:col + w])
        col += w
    return X


def check_full_rank(X: np.ndarray, center: np.ndarray, scale: np.ndarray, names: list[str], where: str,
                    advice: str) -> None:
    """Refuse predictors whose columns are a linear combination of the intercept and the columns before them
    (a coefficient the data cannot identify), from the cross-products of the columns of ``X`` centered at
    ``center`` and divided by ``scale`` (the intercept projected out). They are formed in blocks of rows: no
    copy of ``X``, and no cancellation as in ``X'X / n - center^2``, which rounds the variance of a column far
    from 0 away (a copy ``3x - 7`` of a column near 1e6 passed as full rank). ``where`` starts the message,
    ``advice`` ends it."""
    p = X.shape[1]
    if p == 0:
        return
    cross = np.zeros((p, p))
    for r0 in range(0, X.shape[0], 1 << 16):
        Z = (X[r0:r0 + (1 << 16)] - center) / scale
        cross += Z.T @ Z
    cross /= X.shape[0]
    tol = 1e-9 * max(1.0, float(np.trace(cross)))
    if np.linalg.matrix_rank(cross, tol=tol) == p:
        return
    for k in range(1, p + 1):  # find the first column that adds nothing
        if np.linalg.matrix_rank(cross[:k, :k], tol=tol) < k:
            raise ValueError(f"{where}: the column {names[k - 1]!r} is a linear combination of the intercept and "
                             f"the columns before it ({', '.join(names[:k - 1]) or 'none'}); its coefficient is not "
                             f"identified. {advice}")
