"""From a DataFrame of rows nested in groups to a validated :class:`~hierpool.data.GroupedData`.

Group labels keep their first-seen order in the data (``pd.factorize(sort=False)``); they are the ``group``
coordinate of every model and table. Predictor coding is described in :mod:`hierpool.data.terms`.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import replace
from numbers import Integral

import numpy as np
import pandas as pd

from hierpool.core import names as N
from hierpool.core.families import get_family
from hierpool.core.validate import one_of
from hierpool.data.grouped import GroupedData
from hierpool.data.slope_stats import check_slopes, slope_list
from hierpool.data.terms import (
    build_terms,
    check_finite,
    check_full_rank,
    check_group_labels,
    check_numeric_dtype,
    design_matrix,
    indicator_term,
    predictor_list,
    require_columns,
    require_roles,
    require_unique_columns,
)


def prepare(
    df,
    y: str | None = None,
    group: str | None = None,
    predictors: Sequence[str] | str = (),
    family: str | None = None,
    trials: str | int | None = None,
    exposure: str | None = None,
    *,
    formula: str | None = None,
    se: str | None = None,
    slopes: Sequence[str] | str | None = (),
    client=None,
) -> GroupedData:
    """Validate a DataFrame of rows nested in groups and return a :class:`GroupedData`.

    The columns' roles are given by keywords (``y=``, ``group=``, ``predictors=``, ...) or by an lme4-style
    formula in their place, ``prepare(df, "readmitted ~ age + los + C(admission) + (1 | member)",
    family="bernoulli")``: the two build identical data (:mod:`hierpool.data.formula` lists what a formula
    may say: ``C(x)``, interactions ``a:b`` and ``a*b``, transforms such as ``np.log(x)`` and ``scale(x)``,
    ``cbind(successes, failures)``, ``offset(log(exposure))``; one grouping factor with random intercepts,
    ``(1 | g)``, and always an intercept).

    Parameters
    ----------
    df : pandas.DataFrame, dask DataFrame, or str / Path
        One row per observation. A Dask DataFrame or a path (or glob) of Parquet/CSV files is reduced to
        sufficient statistics with Dask (:func:`hierpool.data.reduce`), returning a ``GroupedStats`` that
        the factories fit exactly without keeping rows.
    y : str
        Response column. gaussian: real numbers; bernoulli: 0/1 (or boolean); binomial: success counts;
        poisson: non-negative integer counts. A boolean column is read as 0/1 for bernoulli, and for
        gaussian when ``family="gaussian"`` is given explicitly (a linear-probability model on purpose);
        binomial and poisson refuse it, and every family refuses complex numbers and text. A string with
        ``~`` is a formula (as ``formula=``).
    group : str or list of str
        Column of group labels (any hashable: member id, county, ...). At least two groups. Several
        grouping factors: a list, ``["member", "hospital"]`` (crossed; the first is ``group``), and
        ``"hospital/ward"`` (nested, = ``["hospital", "hospital:ward"]``; a name ``"a:b"`` that is not a
        column is the interaction of columns ``a`` and ``b``, its levels named ``"<a>:<b>"``); formulas say
        the same with ``(1 | member) + (1 | hospital)`` and ``(1 | hospital/ward)``. See
        :mod:`hierpool.data.factors`. Needs a pandas DataFrame.
    predictors : list, tuple or pandas.Index of str, a str, or None
        Columns used as population-level predictors (``None`` or ``()``: none), in the order of the
        coefficients; a set, a dict or a generator is refused (a list, tuple, ``pandas.Index`` or 1-d array
        is taken). Numeric columns are used on their scale; category, string and boolean columns become
        treatment-coded indicators named ``column[level]``. The levels of a category column must be str, int,
        float or bool (not Timestamps, Periods or tuples: convert them with
        ``.astype(str).astype("category")``). A constant column, or one that is a linear combination of the
        intercept and the columns before it (a copy of another, in other units), is refused: its
        coefficient would not be identified (lme4 drops such a column with a message; a formula refuses it too).
    family : {"gaussian", "bernoulli", "binomial", "poisson"}, optional
        Response family; links are identity, logit, logit and log. Default: gaussian, except that a
        response of only 0 and 1 (or booleans) without ``family=`` is an error: say ``"bernoulli"`` for a
        logistic model, or ``"gaussian"`` for a linear-probability model on purpose (data beyond memory
        too: the reduction's first pass checks it).
    trials : str or int, optional
        binomial only: column of trial counts (whole numbers >= 1; a boolean column is refused), or one
        integer >= 1 for every row.
    exposure : str, optional
        poisson only: column of positive exposures (numeric; a boolean column is refused); ``log(exposure)``
        enters as an offset.
    formula : str, optional
        An lme4-style formula instead of ``y``, ``group`` and ``predictors`` (which must then not be
        given); ``family``, and ``trials``/``exposure`` unless the formula gives them, stay keywords. The
        formula is kept as ``gd.formula``. Predictor names follow the keyword form: ``x``, ``c[level]``
        (also for ``C(c)``), ``a:c[level]`` for interactions, and a transform as written (``np.log(x)``).
    se : str, optional
        Summary-level data (meta-analysis, published provider rates): ``df`` holds ONE row per group,
        ``y`` the group's estimate and ``se`` the column of its known standard error (finite, > 0). The
        model is then ``y_j ~ Normal(intercept + x_j beta + u_j, se_j)``, ``u_j ~ Normal(0, tau)``, with
        no residual ``sigma`` (gaussian only; predictors give a meta-regression). A repeated group
        label, an ``se`` <= 0 or NaN, another family, ``trials``/``exposure`` or a Dask/path input
        is an error. See :mod:`hierpool.data.summary`.
    slopes : sequence of str, optional
        Random slopes: numeric predictors whose coefficient varies by group, jointly with the intercept
        (lme4's ``(1 + x | g)``; the formula ``"y ~ x + (1 + x | g)"`` builds the same data). Each must also
        be in ``predictors`` (the slopes vary around the population slope); a slope without the fixed term,
        a categorical column, or slopes with ``se=`` or data beyond memory are refused
        (:mod:`hierpool.data.slope_stats`), and so are slopes with several grouping factors (lme4's
        ``(1 + x | g) + (1 | c)`` is not supported yet). Kept as ``gd.slopes``.
    client : dask.distributed.Client, optional
        Count data beyond memory (bernoulli, binomial, poisson; a Dask DataFrame or a path) whose cells
        should stay on this cluster's workers: the rows are shuffled by group there and each partition
        reduced to its (group, predictor pattern) cells where it lives; only O(groups) totals come back
        (``gd.cells_on_workers``; :func:`hierpool.data.reduce.reduce`). With continuous predictors nearly
        every row is a cell, so without ``client`` the cells of every row are gathered into this process.
        Such data is fitted by the integrated sampler, which evaluates the cells on the workers
        (:func:`hierpool.fit`); pandas input, gaussian data, several grouping factors, ``se=`` and slopes
        take no client.

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
    >>> hp.prepare(df, "y ~ x + (1 | g)").predictors
    ['x']
    >>> gd8 = hp.prepare(hp.datasets.eight_schools(), y="effect", se="stderr", group="school")
    >>> gd8.n_groups, gd8.summary_level
    (8, True)
    """
    if client is not None and isinstance(df, pd.DataFrame):
        from hierpool.data.reduce import PANDAS_WITH_CLIENT

        raise TypeError(PANDAS_WITH_CLIENT)
    if formula is not None or (isinstance(y, str) and "~" in y):
        if se is not None:
            raise TypeError("se= (summary-level data) takes the keywords y=, se= and group=, not a formula.")
        from hierpool.data.formula import prepare_formula

        if formula is None:
            formula, y = y, None
        if slope_list(slopes):
            raise ValueError(f"the formula gives the random slopes, (1 + x | g); do not pass slopes={slopes!r} too "
                             f"(formula={formula!r}).")
        return prepare_formula(df, formula, y=y, group=group, predictors=predictors, family=family, trials=trials,
                               exposure=exposure, client=client)
    if group is not None and not isinstance(group, str) or isinstance(group, str) and "/" in group:
        from hierpool.data.factors import factor_names

        names = factor_names(group)
        if len(names) > 1:
            if slope_list(slopes):  # as the formula path refuses (1 + x | g) + (1 | c)
                raise ValueError(f"slopes={list(slope_list(slopes))!r} with group={group!r}: random slopes take one "
                                 "grouping factor, lme4's (1 + x | g); random slopes with several grouping factors, "
                                 "(1 + x | g) + (1 | c), are not supported yet. Give one group= column, or drop "
                                 "slopes=.")
            if se is not None:
                raise ValueError(f"se= (summary-level data, one row per group) takes one grouping factor; got "
                                 f"group={group!r}.")
            return prepare_factors(df, y, names, predictors, family, trials, exposure)
        group = names[0]
    if y is None or group is None:
        raise TypeError("prepare() needs y= and group= (column names), or a formula such as "
                        "'y ~ x + (1 | group)'.")
    slopes = slope_list(slopes)
    if se is not None:
        if slopes:
            raise ValueError(f"slopes={list(slopes)!r}: summary-level data (se=) has one row per group; random "
                             "slopes need rows within groups.")
        from hierpool.data.summary import prepare_summary

        return prepare_summary(df, y=y, se=se, group=group, predictors=predictors, family=family, trials=trials,
                               exposure=exposure)
    if client is not None and slopes:  # refused before the data is read and shuffled
        with_slopes(None, slopes)
    gd = _prepare(df, y, group, predictors, family, trials, exposure, client=client)
    return with_slopes(gd, slopes)


#: The error for a response of only 0 and 1 (or booleans) without ``family=`` (pandas and Dask paths).
ZERO_ONE_WITHOUT_FAMILY = (
    "y={y!r} holds only 0 and 1 and no family was given: pass family='bernoulli' for a binary outcome "
    "(a logistic model), or family='gaussian' to fit a linear-probability model on purpose."
)


def check_columns(df, y, group, predictors, family: str, trials, exposure) -> list:
    """The checks of :func:`prepare`'s arguments that read only the columns' names and dtypes, shared by
    the pandas path and :func:`hierpool.data.reduce.reduce` (so both say the same): ``y`` and ``group`` are
    names of columns, the predictors a list of distinct columns, ``trials`` an integer >= 1 or a column,
    ``exposure`` a column; no column has two roles; the response is real numbers (booleans for bernoulli, and
    for gaussian given on purpose), trials and exposure columns numeric (not boolean). ``df`` is a pandas or
    Dask DataFrame (its values are checked by the caller). Returns the predictors as a list."""
    fam = get_family(family)
    for arg, val in (("y", y), ("group", group)):
        if not isinstance(val, str):
            raise TypeError(f"{arg} must be a column name (str); got {val!r}.")
    predictors = predictor_list(predictors)
    for p in predictors:
        if not isinstance(p, str):
            raise TypeError(f"predictors must be column names (str); got {p!r}.")
    dup = sorted({p for p in predictors if predictors.count(p) > 1})
    if dup:
        raise ValueError(f"predictors lists {dup[0]!r} more than once; each predictor may appear once.")
    fam.check_arguments(trials, exposure)
    if fam.uses_trials:
        if isinstance(trials, bool) or not isinstance(trials, (str, Integral)):
            raise TypeError(f"trials must be a column name (str) or an integer >= 1; got {trials!r} "
                            f"({type(trials).__name__}).")
        if not isinstance(trials, str) and trials < 1:
            raise ValueError(f"trials={trials!r} must be an integer >= 1.")
    if exposure is not None and not isinstance(exposure, str):
        raise TypeError(f"exposure must be a column name (str); got {exposure!r} ({type(exposure).__name__}).")
    sizes = {"trials": trials if isinstance(trials, str) else None, "exposure": exposure}
    require_unique_columns(df, [y, group, *predictors, *[c for c in sizes.values() if c is not None]])
    require_roles(df, y, group, predictors)
    if y == group:
        raise ValueError(f"y and group are the same column {y!r}.")
    for arg, col in sizes.items():
        if col is None:
            continue
        require_columns(df, arg, [col])
        if col in (y, group) or col in predictors:
            raise ValueError(f"{arg}={col!r} is already used as y, group or a predictor.")

    ydt = df[y].dtype
    if pd.api.types.is_bool_dtype(ydt):
        if not (fam.accepts_bool or fam.has_sigma):
            raise TypeError(f"y={y!r} is boolean (dtype {ydt}); family={family!r} needs numeric counts. For a "
                            "binary outcome use family='bernoulli'; to count True as 1 on purpose, convert it: "
                            f"df[{y!r}].astype(int).")
    elif pd.api.types.is_complex_dtype(ydt):
        raise TypeError(f"y={y!r} must be real numbers for family={family!r}; got complex dtype {ydt}.")
    elif not pd.api.types.is_numeric_dtype(ydt):
        raise TypeError(f"y={y!r} must be numeric for family={family!r}; got dtype {ydt}." + fam.response_hint())
    for arg, col in sizes.items():
        if col is not None:
            check_numeric_dtype(df[col].dtype, arg, col, allow_bool=False)
    return predictors


def with_slopes(gd, slopes: tuple[str, ...]):
    """``gd`` with random slopes on ``slopes`` (checked: numeric fixed predictors, rows kept)."""
    if not slopes:
        return gd
    if not isinstance(gd, GroupedData):
        raise ValueError(f"slopes={list(slopes)!r}: data beyond memory (Dask, Parquet/CSV) is reduced to "
                         "random-intercept statistics; random slopes need a pandas DataFrame.")
    check_slopes(slopes, gd.terms, gd.predictors)
    return replace(gd, slopes=tuple(slopes))


def prepare_factors(df, y, names: list[str], predictors, family, trials, exposure, terms=None) -> GroupedData:
    """:func:`prepare` with several grouping factors ``names`` (:mod:`hierpool.data.factors`): the first is
    ``group``; the others are coded in :attr:`GroupedData.factors`."""
    from dataclasses import replace

    from hierpool.data.factors import grouping_factor

    if not isinstance(df, pd.DataFrame):
        raise TypeError(f"several grouping factors ({names}) need a pandas DataFrame; data beyond memory (Dask, "
                        f"Parquet/CSV paths) takes one grouping factor. Got {type(df).__name__}.")
    first = names[0]
    if ":" in first and first not in df.columns:
        raise ValueError(f"group: the first grouping factor {first!r} is an interaction; the first factor must be "
                         f"a column (list it after its parts, e.g. ['a', 'a:b']). Factors: {names}.")
    gd = _prepare(df, y, first, predictors, family, trials, exposure, terms=terms)
    taken = {"y": y, "trials": trials if isinstance(trials, str) else None,
             "exposure": exposure if isinstance(exposure, str) else None}
    pred_cols = {c for t in gd.terms for c in (t.get("columns") or [t.get("column")]) if c}
    extra = []
    for name in names[1:]:
        for role, col in taken.items():
            if col is not None and name == col:
                raise ValueError(f"group: the grouping factor {name!r} is also the {role} column.")
        if name in pred_cols:
            raise ValueError(f"group: the grouping factor {name!r} is also a predictor; a column cannot be both.")
        extra.append(grouping_factor(df, name))
    return replace(gd, factors=tuple(extra))


def _prepare(df, y, group, predictors, family, trials, exposure, terms: list[dict] | None = None, client=None):
    """:func:`prepare` without the formula: ``terms`` (from a formula) replace those built from ``predictors``
    (then the columns the terms read)."""
    if not isinstance(df, pd.DataFrame):
        from hierpool.data.reduce import is_dask_or_path, reduce

        if is_dask_or_path(df):
            return reduce(df, y=y, group=group, predictors=predictors, family=family, trials=trials,
                          exposure=exposure, client=client)
        raise TypeError(
            f"df must be a pandas DataFrame, a Dask DataFrame or a path to Parquet/CSV files; got {type(df).__name__}."
        )
    family_given = family is not None
    family = "gaussian" if family is None else family
    one_of("family", family, N.FAMILIES)
    fam = get_family(family)
    if len(df) == 0:
        raise ValueError("df is empty (0 rows); hierpool needs rows nested in at least two groups.")
    predictors = check_columns(df, y, group, predictors, family, trials, exposure)

    # response ---------------------------------------------------------------------------------------
    ys = df[y]
    if not family_given and len(ys) and (pd.api.types.is_bool_dtype(ys) or ys.isin((0, 1)).all()):
        raise ValueError(ZERO_ONE_WITHOUT_FAMILY.format(y=y))
    yv = ys.to_numpy(dtype=float)  # booleans (bernoulli, or gaussian given on purpose) as 0/1
    check_finite(yv, "y", y, df.index)

    # trials / exposure --------------------------------------------------------------------------------
    tv = ev = None
    if fam.uses_trials:
        if isinstance(trials, str):
            tv = df[trials].to_numpy(dtype=float)
            check_finite(tv, "trials", trials, df.index)
            if (tv < 1).any() or (np.mod(tv, 1) != 0).any():
                raise ValueError(f"trials={trials!r} must hold integers >= 1.")
        else:
            tv = np.full(len(df), float(trials))
    if exposure is not None:
        ev = df[exposure].to_numpy(dtype=float)
        check_finite(ev, "exposure", exposure, df.index)
        if (ev <= 0).any():
            raise ValueError(f"exposure={exposure!r} must be positive; found {int((ev <= 0).sum())} rows <= 0.")
    fam.check_support(yv, y, tv)

    # groups -----------------------------------------------------------------------------------------
    gs = df[group]
    if gs.isna().any():
        bad = gs.isna().to_numpy()
        raise ValueError(
            f"group={group!r} has {int(bad.sum())} missing labels (first rows: {df.index[bad][:5].tolist()}); "
            "every row must belong to a group."
        )
    check_group_labels(gs, group)
    codes, uniques = pd.factorize(gs, sort=False)
    labels = pd.Index(np.asarray(uniques), name=N.GROUP)
    if len(labels) < 2:
        raise ValueError(
            f"group={group!r} has a single group ({labels[0]!r}); partial pooling needs at least two groups."
        )

    # predictors ---------------------------------------------------------------------------------------
    from_formula = terms is not None  # the formula path checks the rank itself, in its own words
    terms = build_terms(df, predictors) if terms is None else terms
    X = design_matrix(df, terms)
    names = [n for t in terms for n in t["names"]]
    center = X.mean(axis=0) if X.shape[1] else np.zeros(0)
    scale = np.ones(X.shape[1])
    sds = np.ones(X.shape[1])
    col = 0
    for t in terms:
        k = len(t["names"])
        for c in range(col, col + k):
            sd = sds[c] = X[:, c].std()
            if not sd > 0:
                what = f"column {t['column']!r}" if t["kind"] == "numeric" else f"the column {names[c]!r}"
                raise ValueError(
                    f"predictors: {what} is constant ({X[0, c]:g}); a constant predictor is "
                    "confounded with the intercept. Drop it."
                )
            if not indicator_term(t):
                scale[c] = sd
        col += k
    dup_names = sorted({n for n in names if names.count(n) > 1})
    if dup_names:
        raise ValueError(f"predictors produce the name {dup_names[0]!r} twice; rename a column.")
    if not from_formula and X.shape[1] > 1:  # on the correlation scale (every column by its sd)
        check_full_rank(X, center, sds, names, "predictors", "Drop one of them (a column, or a level of a "
                        "categorical that another column repeats).")

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
