"""lme4-style formulas for :func:`hierpool.prepare` and the factories:
``"readmitted ~ age + los + C(admission) + (1 | member)"``.

The formula is parsed by `formulae <https://bambinos.github.io/formulae/>`_ (the parser bambi uses; imported
only when a formula is given). What hierpool accepts, and how each part maps onto :func:`prepare`'s keywords:

===========================================  ============================================================
formula                                      meaning
===========================================  ============================================================
``y ~ ...``                                  ``y="y"``: the response column
``cbind(s, f) ~ ...``                        binomial: ``y="s"``, trials ``s + f`` per row (``family``
                                             defaults to "binomial"; any other family is refused)
``(1 | g)``                                  ``group="g"``: random intercepts, the one grouping factor
``(1 + x | g)``, ``(x | g)``                 ``slopes=["x"]``: correlated random intercept and slope(s) of
                                             numeric fixed predictors (:mod:`hierpool.data.slope_stats`)
``(1 | a) + (1 | b)``                        ``group=["a", "b"]``: crossed factors (first: ``group``)
``(1 | a/b)``                                ``group="a/b"`` = ``["a", "a:b"]``: nested; the levels of
                                             ``a:b`` are named ``"<a>:<b>"`` (:mod:`hierpool.data.factors`)
``x``                                        a column, coded as ``predictors=["x"]`` codes it: numeric
                                             as is; category, string and boolean columns as treatment
                                             indicators ``x[level]``
``C(x)``                                     ``x`` as levels, also when it is numeric (reference: the
                                             first category, else the smallest value); named ``x[level]``
``a:b``, ``a*b`` (= ``a + b + a:b``),        interactions: row-wise products of the factors' columns,
``(a + b)**2``, ``a/b``                      named ``a:b`` (``x:c[level]``, ``c[u]:d[v]``)
``np.log(x)``, ``scale(x)``, ``I(x ** 2)``   transforms of numeric columns (:mod:`hierpool.data.expressions`),
                                             named as written by formulae (``I(x ** 2)``)
``offset(log(e))``, ``offset(np.log(e))``    poisson: ``exposure="e"``
===========================================  ============================================================

A formula and the equivalent keywords build the same :class:`~hierpool.data.GroupedData` (the same ``y``,
group codes, ``X`` and predictor names, trials and exposure); the formula is recorded in ``gd.formula``.
The model always has an intercept (the group effects are deviations from it): ``0 +`` or ``- 1`` is refused.

Decisions where lme4 and formulae leave a choice:

- Categorical factors of an interaction follow R's rule (``model.matrix``): a factor is coded by treatment
  contrasts when the term without it is in the model (the intercept counts as the empty term), otherwise by
  one indicator per level. ``x*c`` gives ``x:c[u]`` for the non-reference levels; ``x:c`` without ``c`` gives
  one slope per level, ``x:c[t]`` and ``x:c[u]``. Columns are ordered with the first factor varying slowest,
  as formulae orders them. A design whose columns are collinear (``a:b`` without ``a`` and ``b``, whose
  indicators add up to the intercept) is refused with the column that is a combination of the others:
  nothing is dropped silently.
- Interaction columns and transforms are scaled by their standard deviation inside the models like numeric
  columns; products of indicators stay 0/1 (scale 1), like indicators.
- A number where a column belongs is refused, not read as a column: ``2*x`` and ``+ 2`` in the fixed part
  (write ``I(2 * x)``; the intercept is always there), ``(1 | 2)``, ``(1 + 2 | g)`` and ``2 ~ ...``.
- ``C(x)`` takes a column only; to choose the reference level, order the categories of a ``category``
  column (its first category is the reference), as with ``predictors=``.
- Transforms and interactions are stored as terms of the fit (the transform's text and the training mean and
  standard deviation of ``scale``/``center``), so :func:`hierpool.predict` codes new rows exactly like the
  training rows. A fit with ``cbind(s, f)`` records ``trials`` as ``["s", "f"]``: predicting needs both
  columns.
- Data beyond memory (Dask, Parquet/CSV paths) takes formulas of plain columns only (``y ~ x + c + (1 | g)``
  with ``offset(log(e))``); interactions, transforms, ``C()`` and ``cbind`` need a pandas DataFrame.

Not supported yet, refused with a message (issue 15): random slopes with several grouping factors, random
slopes without a random intercept ``(0 + x | g)``, uncorrelated ones ``(1 | g) + (0 + x | g)``, and slopes that
are not numeric columns in the fixed part. Several grouping factors (crossed ``(1 | a) + (1 | b)``, nested
``(1 | a/b)``) need a pandas DataFrame, and the first factor must be a column (not an interaction ``a:b``).
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass, replace

import numpy as np
import pandas as pd

from hierpool.data.expressions import evaluate, expression_columns
from hierpool.data.terms import (
    _json_level,
    build_terms,
    check_finite,
    check_full_rank,
    indicator_term,
    numeric_column,
)

__all__ = ["Factor", "Formula", "parse_formula", "formula_terms", "prepare_formula"]

_NOT_YET = ("hierpool fits one grouping factor with random intercepts (1 | g) or correlated random slopes "
            "(1 + x | g); {what} is not supported yet.")


@dataclass(frozen=True)
class Factor:
    """One factor of a fixed term: a ``column``, a column as ``levels`` (``C(x)``), or a ``transform``."""

    kind: str
    text: str
    columns: tuple[str, ...]

    @property
    def key(self) -> str:
        """What identifies the factor in R's coding rule: the column (``c`` and ``C(c)`` alike) or the text."""
        return self.columns[0] if self.kind in ("column", "levels") else self.text


@dataclass(frozen=True)
class Formula:
    """A parsed formula: the roles of its columns and its fixed terms (each a tuple of factors)."""

    text: str
    response: str
    group: str
    terms: tuple[tuple[Factor, ...], ...]
    failures: str | None = None  # cbind(response, failures)
    exposure: str | None = None  # offset(log(exposure))
    slopes: tuple[str, ...] = ()  # random slopes (1 + x | g)
    factors: tuple[str, ...] = ()  # every grouping factor, ``group`` first (nested a/b: "a", "a:b")

    @property
    def group_arg(self):
        """``prepare``'s ``group=``: the one factor's column, or the list of factors."""
        return self.group if len(self.factors) <= 1 else list(self.factors)

    @property
    def columns(self) -> list[str]:
        """The columns the fixed terms read, in first-seen order."""
        return list(dict.fromkeys(c for term in self.terms for f in term for c in f.columns))

    def keywords(self) -> dict | None:
        """:func:`hierpool.prepare`'s keywords for this formula, or ``None`` when it needs more than they say
        (interactions, transforms, ``C()``, ``cbind``)."""
        if self.failures or any(len(t) > 1 or t[0].kind != "column" for t in self.terms):
            return None
        return {"y": self.response, "group": self.group_arg, "predictors": [t[0].columns[0] for t in self.terms],
                "exposure": self.exposure, **({"slopes": list(self.slopes)} if self.slopes else {})}


# ------------------------------------------------------------------------------------------------------
# parsing (no data)
def _bad(text: str, msg: str) -> ValueError:
    return ValueError(f"formula {text!r}: {msg}")


def _call_parts(name: str):
    """``(callee, [argument texts])`` of a call written like ``f(a, b)``, or ``None``."""
    import ast

    if not isinstance(name, str):  # a number (formulae's Variable(2))
        return None
    try:
        node = ast.parse(name, mode="eval").body
    except SyntaxError:
        return None
    if not isinstance(node, ast.Call) or node.keywords:
        return None
    return ast.unparse(node.func), [ast.unparse(a) for a in node.args], node.args


def _plain_names(args) -> list[str] | None:
    import ast

    return [a.id for a in args] if all(isinstance(a, ast.Name) for a in args) else None


def _not_a_number(text: str, comp, where: str, fix: str) -> None:
    """Refuse a number where a column belongs (formulae reads ``2`` in ``2*x`` or ``(1 | 2)`` as a Variable
    whose name is the number)."""
    from formulae.terms import Variable

    if isinstance(comp, Variable) and not isinstance(comp.name, str):
        raise _bad(text, f"the number {comp.name!r} {where} is not a column; {fix}")


def _factor(text: str, comp, term: str = "") -> Factor:
    from formulae.terms import Call, Variable

    _not_a_number(text, comp, f"in the fixed term {term!r}" if term and term != str(comp.name) else "in the fixed part",
                  "to multiply a column by a number write I(2 * x), and leave constants out (the model always has "
                  "an intercept).")
    if isinstance(comp, Variable):
        return Factor("column", comp.name, (comp.name,))
    if not isinstance(comp, Call):  # pragma: no cover - formulae has no other components
        raise _bad(text, f"the term {comp!r} is not supported.")
    name = comp.name
    parts = _call_parts(name)
    callee = parts[0] if parts else None
    if callee == "C":
        cols = _plain_names(parts[2])
        if cols is None or len(cols) != 1:
            raise _bad(text, f"{name!r}: C() takes one column here (C(x)); to choose the reference level, make "
                             "the column a category whose first category is the reference, e.g. "
                             "df['x'] = pd.Categorical(df['x'], categories=['ref', ...]).")
        return Factor("levels", name, (cols[0],))
    if callee in ("offset", "cbind"):
        raise _bad(text, f"{name!r} cannot be part of an interaction or a transform.")
    return Factor("transform", name, tuple(expression_columns(name)))


def _offset(text: str, name: str) -> str:
    parts = _call_parts(name)
    inner = _call_parts(parts[1][0]) if parts and len(parts[1]) == 1 else None
    if inner and inner[0] in ("log", "np.log", "numpy.log") and _plain_names(inner[2]) and len(inner[2]) == 1:
        return inner[2][0].id
    raise _bad(text, f"{name!r}: hierpool's offset is the log of an exposure column, offset(log(exposure)) "
                     "(poisson); other offsets are not supported.")


def _response(text: str, model) -> tuple[str, str | None]:
    from formulae.terms import Call, Variable

    comps = model.response.term.components if model.response is not None else []
    for c in comps:
        _not_a_number(text, c, "on the left of '~'", "the response must be a column, e.g. 'y ~ x + (1 | g)'.")
    if len(comps) == 1 and isinstance(comps[0], Variable):
        return comps[0].name, None
    if len(comps) == 1 and isinstance(comps[0], Call):
        parts = _call_parts(comps[0].name)
        if parts and parts[0] == "cbind":
            cols = _plain_names(parts[2])
            if cols is None or len(cols) != 2:
                raise _bad(text, f"{comps[0].name!r}: cbind takes two columns, cbind(successes, failures).")
            return cols[0], cols[1]
    shown = " ".join(str(c) for c in comps)
    raise _bad(text, f"the response {shown!r} must be a column, or cbind(successes, failures) for binomial; "
                     "transform the response in the DataFrame first.")


def _group(text: str, gterms) -> list[str]:
    """The grouping factors of the random-effect terms, in the order written (nested ``a/b`` gives ``a`` and
    ``a:b``, as formulae expands it)."""
    from formulae.terms import Intercept, Variable

    if not gterms:
        hint = " (put it in parentheses: (1 | g))" if "|" in text else ""
        raise _bad(text, f"no random-effect term{hint}; hierpool's models need one grouping factor, e.g. "
                         "'y ~ x + (1 | group)'.")
    for gt in gterms:
        for comp in gt.factor.components:
            _not_a_number(text, comp, "after '|' (the grouping factor)",
                          "write a column of group labels there, e.g. (1 | g).")
            if not isinstance(comp, Variable):
                raise _bad(text, f"the grouping factor {comp.name!r} must be a column; make a column of it first.")
    factors = list(dict.fromkeys(":".join(c.name for c in gt.factor.components) for gt in gterms))
    if len(factors) > 1:
        for gt in gterms:
            if not isinstance(gt.expr, Intercept):
                name = ":".join(c.name for c in gt.factor.components)
                raise _bad(text, _NOT_YET.format(what=f"a random slope ({gt.expr} | {name}) with several grouping "
                                                      "factors"))
    if ":" in factors[0]:
        raise _bad(text, f"the first grouping factor {factors[0]!r} is an interaction; write a factor that is a "
                         "column first (e.g. '(1 | a) + (1 | a:b)', or '(1 | a/b)').")
    return factors


def _slopes(text: str, gterms, group: str) -> tuple[str, ...]:
    """The random slopes of ``(1 + x | g)``: plain columns, with the random intercept, in one block."""
    import re

    from formulae.terms import Intercept, Variable

    blocks = re.findall(r"\(([^()|]*)\|([^()|]*)\)", text)
    if len(blocks) > 1 and any(t for t in gterms if not isinstance(t.expr, Intercept)):
        raise _bad(text, _NOT_YET.format(what="uncorrelated random effects in separate terms ((1 | g) + (0 + x | g))")
                   + f" Write one correlated block: (1 + x | {group}).")
    slopes = []
    for gt in gterms:
        if isinstance(gt.expr, Intercept):
            continue
        comps = gt.expr.components
        for c in comps:
            _not_a_number(text, c, f"before '| {group}' (a random slope)",
                          f"a random slope is a numeric column of the fixed part, e.g. (1 + x | {group}).")
        if len(comps) != 1 or not isinstance(comps[0], Variable):
            shown = ":".join(getattr(c, "name", str(c)) for c in comps)
            raise _bad(text, f"the random slope {shown!r} must be a numeric column of the fixed part; interactions, "
                             "transforms and C() cannot carry a random slope yet.")
        slopes.append(comps[0].name)
    if slopes and not any(isinstance(t.expr, Intercept) for t in gterms):
        raise _bad(text, _NOT_YET.format(what=f"a random slope without a random intercept ((0 + x | {group}))")
                   + f" Write (1 + x | {group}).")
    return tuple(slopes)


def parse_formula(text: str) -> Formula:
    """Parse and check a formula without data: its syntax and the terms hierpool supports.

    Raises
    ------
    TypeError
        ``text`` is not a string.
    ValueError
        With the formula and what is wrong: no ``~``, several, no response, a syntax error, no intercept, no
        or an unsupported random-effect term, an unsupported fixed term, a column in two roles.
    """
    if not isinstance(text, str):
        raise TypeError(f"formula must be a string like 'y ~ x + (1 | group)'; got {text!r}.")
    if text.count("~") != 1:
        what = "no '~'" if "~" not in text else "more than one '~'"
        raise _bad(text, f"has {what}; write one: 'response ~ terms', e.g. 'y ~ x + (1 | group)'.")
    if not text.split("~", 1)[0].strip():
        raise _bad(text, "has no response before '~'; write 'y ~ ...'.")
    from formulae import model_description
    from formulae.terms import GroupSpecificTerm, Intercept, Term

    try:
        model = model_description(text)
    except Exception as err:  # formulae's ScanError, ParseError, ResolverError and TypeError on bad syntax
        raise _bad(text, f"cannot be parsed: {err}") from None
    response, failures = _response(text, model)
    terms = list(model.terms)
    if not any(isinstance(t, Intercept) for t in terms):
        raise _bad(text, "removes the intercept (0 + or - 1); hierpool's models always have an intercept, from "
                         "which the group effects deviate. Remove the 0 / - 1.")
    gterms = [t for t in terms if isinstance(t, GroupSpecificTerm)]
    factors = _group(text, gterms)
    group = factors[0]
    slopes = _slopes(text, gterms, group) if len(factors) == 1 else ()
    fixed, exposure = [], None
    for t in terms:
        if not isinstance(t, Term):
            continue
        comps = t.components
        if len(comps) == 1 and (_call_parts(comps[0].name) or ("",))[0] == "offset":
            if exposure is not None:
                raise _bad(text, "has two offsets; give one, offset(log(exposure)).")
            exposure = _offset(text, comps[0].name)
            continue
        shown = ":".join(str(c.name) for c in comps)
        fixed.append(tuple(_factor(text, c, shown) for c in comps))
    f = Formula(text=text, response=response, group=group, terms=tuple(fixed), failures=failures,
                exposure=exposure, factors=tuple(factors), slopes=slopes)
    fixed_columns = [t[0].columns[0] for t in fixed if len(t) == 1 and t[0].kind == "column"]
    for s in slopes:
        if s not in fixed_columns:
            raise _bad(text, f"the random slope {s!r} is not a fixed term; add it ('{response} ~ {s} + ... + "
                             f"(1 + {s} | {group})'): the group slopes vary around the population slope. lme4's "
                             "slope without a fixed term (population slope fixed at 0) is not supported.")
    factor_cols = list(dict.fromkeys(c for name in factors for c in name.split(":")))
    for role, col in (*(("grouping factor", c) for c in factor_cols), ("response", response), ("failures of cbind", failures),
                      ("exposure", exposure)):
        uses = [" : ".join(x.text for x in term).replace(" : ", ":") for term in fixed
                if any(col in x.columns for x in term)]
        if col is not None and uses:
            raise _bad(text, f"the {role} {col!r} is also a fixed term ({uses[0]!r}); a column cannot be both. "
                             "Remove it from the fixed terms.")
    for col in factor_cols:
        if col in (response, failures, exposure):
            raise _bad(text, f"the grouping factor {col!r} is also the response or the exposure.")
    return f


# ------------------------------------------------------------------------------------------------------
# terms (with data)
def _level_values(s: pd.Series) -> list:
    """The sorted distinct values of a numeric column used as levels (``C(x)``), as Python scalars."""
    return [_json_level(v) for v in np.sort(pd.unique(s.to_numpy()))]


def _factor_term(df: pd.DataFrame, f: Factor) -> dict:
    if f.kind == "transform":
        for c in f.columns:
            t = build_terms(df, [c])[0]
            if t["kind"] != "numeric":
                raise TypeError(f"formula: {f.text!r} transforms column {c!r}, which is {t['kind']} (dtype "
                                f"{df[c].dtype}); transforms take numeric columns.")
        values, state = evaluate(f.text, lambda c: numeric_column(df[c], "predictors"))
        check_finite(values, "predictors", f.text, df.index)
        return {"kind": "transform", "expr": f.text, "columns": list(f.columns), "state": state, "names": [f.text]}
    col = f.columns[0]
    t = build_terms(df, [col])[0]  # the checks of predictors= (missing values, dtypes, text numbers, dates)
    if f.kind == "levels" and t["kind"] == "numeric":
        levels = _level_values(df[col])
        if len(levels) < 2:
            raise ValueError(f"predictors: column {col!r} is constant (only level {levels[0]!r}); a constant "
                             "predictor is confounded with the intercept. Drop it.")
        t = {"column": col, "kind": "categorical", "levels": levels, "names": [f"{col}[{lv}]" for lv in levels[1:]]}
    return t


def _factor_names(t: dict) -> list[str]:
    if t.get("full"):
        return [f"{t['column']}[{lv}]" for lv in t["levels"]]
    return list(t["names"])


def formula_terms(df: pd.DataFrame, f: Formula) -> list[dict]:
    """The predictor terms of the formula's fixed part on ``df``, in the form
    :func:`hierpool.data.terms.design_matrix` reads (at fitting and at prediction time)."""
    present = {frozenset(x.key for x in term) for term in f.terms} | {frozenset()}
    out = []
    for term in f.terms:
        factors = [_factor_term(df, x) for x in term]
        if len(factors) == 1:
            out.append(factors[0])
            continue
        keys = [x.key for x in term]
        for i, ft in enumerate(factors):
            if indicator_term(ft):  # R's rule: contrasts if the term without this factor is in the model
                ft["full"] = frozenset(keys[:i] + keys[i + 1:]) not in present
        names = [":".join(p) for p in itertools.product(*[_factor_names(ft) for ft in factors])]
        columns = list(dict.fromkeys(c for x in term for c in x.columns))
        out.append({"kind": "interaction", "columns": columns, "factors": factors, "names": names})
    return out


def prepare_formula(df, formula: str, *, y=None, group=None, predictors=(), family=None, trials=None,
                    exposure=None, client=None):
    """:func:`hierpool.prepare` for a formula (see this module's docstring for what a formula may say)."""
    from hierpool.data.prepare import _prepare, with_slopes
    from hierpool.data.reduce import is_dask_or_path

    given = [k for k, v in (("y", y), ("group", group)) if v is not None]
    if predictors is not None and not (isinstance(predictors, (list, tuple)) and not predictors):
        given.append("predictors")
    if given:
        raise ValueError(f"the formula gives the response, the group and the predictors; do not pass "
                         f"{'= and '.join(given)}= too (formula={formula!r}).")
    f = parse_formula(formula)
    if f.failures is not None:
        if family is None:
            family = "binomial"
        if family != "binomial":
            raise _bad(formula, f"cbind(successes, failures) is the binomial response; got family={family!r}.")
        if trials is not None:
            raise _bad(formula, f"cbind(successes, failures) gives the trials; do not pass trials={trials!r} too.")
    if f.exposure is not None and exposure is not None:
        raise _bad(formula, f"offset(log({f.exposure})) gives the exposure; do not pass exposure={exposure!r} too.")
    exposure = f.exposure if f.exposure is not None else exposure
    if not isinstance(df, pd.DataFrame):
        kw = f.keywords()
        if is_dask_or_path(df) and kw is None:
            raise _bad(formula, "data beyond memory (Dask, Parquet/CSV paths) takes formulas of plain columns "
                                "only; interactions, transforms, C() and cbind need a pandas DataFrame.")
        kw = kw or {"y": f.response, "group": f.group, "predictors": f.columns}
        if len(f.factors) > 1:
            raise _bad(formula, "several grouping factors need a pandas DataFrame; data beyond memory (Dask, "
                                "Parquet/CSV paths) takes one grouping factor.")
        if client is not None and f.slopes:  # refused before the data is read and shuffled
            with_slopes(None, f.slopes)
        return with_slopes(_prepare(df, kw["y"], kw["group"], kw["predictors"], family, trials, exposure,
                                    client=client), f.slopes)
    needed = [f.response, f.failures, *(c for name in f.factors for c in name.split(":")),
              exposure if isinstance(exposure, str) else None, *f.columns]
    missing = [c for c in dict.fromkeys(needed) if c is not None and c not in df.columns]
    if missing:
        shown = ", ".join(repr(c) for c in list(df.columns)[:20])
        more = "" if df.shape[1] <= 20 else f", ... ({df.shape[1]} in all)"
        raise _bad(formula, f"{missing[0]!r} is not a column of the data; columns are: {shown}{more}.")
    terms = formula_terms(df, f)
    data = df
    if f.failures is not None:
        fails = numeric_column(df[f.failures], "failures")
        check_finite(fails, "failures", f.failures, df.index)
        if (fails < 0).any() or (np.mod(fails, 1) != 0).any():
            raise _bad(formula, f"the failures column {f.failures!r} of cbind must hold integers >= 0.")
        trials = f"cbind({f.response}, {f.failures})"
        cols = [c for c in dict.fromkeys([f.response, *(c for name in f.factors for c in name.split(":")),
                                          *f.columns, exposure]) if c in df.columns]
        succ = numeric_column(df[f.response], "y")
        data = df[cols].assign(**{trials: succ + fails})
    if len(f.factors) > 1:
        from hierpool.data.prepare import prepare_factors

        gd = prepare_factors(data, f.response, list(f.factors), f.columns, family, trials, exposure, terms=terms)
    else:
        gd = _prepare(data, f.response, f.group, f.columns, family, trials, exposure, terms=terms)
    check_full_rank(gd.X, gd.x_center, gd.x_scale, gd.predictors, f"formula {formula!r}",  # the model's scaling
                    "Include the main effects of an interaction (a*b), or drop the term.")
    gd = with_slopes(gd, f.slopes)
    return replace(gd, formula=formula, **({"trials_name": [f.response, f.failures]} if f.failures else {}))
