"""Summary-level data: one estimate per group with its known standard error (meta-analysis, profiling).

``hp.prepare(df, y="effect", se="stderr", group="school")`` reads a frame of one row per group (the
eight schools; published provider rates with their standard errors) into a :class:`GroupedData` whose
rows ARE the groups, with the standard errors in ``GroupedData.se``. The model is the gaussian random
intercepts model with the residual SD replaced by the known standard errors::

    y_j ~ Normal(intercept + x_j beta + u_j, se_j),    u_j ~ Normal(0, tau)

so it has no ``sigma``. Decisions, where the issue is silent:

- family gaussian only: an estimate with a standard error is read as normally distributed around the
  group's true value (the usual meta-analysis assumption); another family with ``se=`` is an error.
- predictors are allowed (meta-regression: ``x_j`` describes group j); they cost nothing extra.
- one row per group: a repeated group label is an error naming it (averaging two estimates of one group
  needs their correlation, which the data do not carry).
- ``se`` must be finite and > 0 (numbers, not booleans); an ``se`` of 0 would make the estimate the truth.
  The estimates ``y`` are real numbers (a boolean column is refused).
- ``trials=``/``exposure=`` belong to count families and are refused; so are Dask frames and paths
  (summary data has one row per group and fits in memory).
"""

from __future__ import annotations

import dataclasses

import numpy as np
import pandas as pd

from hierpool.core.validate import one_of
from hierpool.data.grouped import GroupedData
from hierpool.data.terms import check_finite, numeric_column, predictor_list, require_columns

__all__ = ["prepare_summary"]


def prepare_summary(df, y: str, se: str, group: str, predictors=(), family: str | None = None,
                    trials=None, exposure=None) -> GroupedData:
    """:func:`hierpool.prepare` with ``se=``: validate summary-level data and return a :class:`GroupedData`.

    The response, the group labels and the predictors are validated by :func:`hierpool.prepare` as for
    rows; this function adds what summary-level data needs (see the module docstring).
    """
    from hierpool.data.prepare import prepare  # prepare dispatches here: import at call time

    if family is not None:
        from hierpool.core import names as N

        one_of("family", family, N.FAMILIES)
        if family != "gaussian":
            raise ValueError(
                f"se={se!r} (summary-level data: one estimate per group with its standard error) is only "
                f"supported for family='gaussian'; got family={family!r}. For counts, pass the rows (or one row per "
                "group with its count and trials/exposure) without se=."
            )
    if not isinstance(df, pd.DataFrame):
        raise TypeError(
            f"se={se!r} (summary-level data) needs a pandas DataFrame of one row per group; got "
            f"{type(df).__name__}. Summary data fits in memory: read it with pandas first."
        )
    if not isinstance(se, str):
        raise TypeError(f"se must be a column name (str); got {se!r}.")
    for arg, val in (("trials", trials), ("exposure", exposure)):
        if val is not None:
            raise ValueError(f"{arg}={val!r} cannot be combined with se={se!r}: summary-level data is gaussian "
                             f"(an estimate and its standard error); {arg}= belongs to count families.")
    require_columns(df, "se", [se])
    for role, col in (("y", y), ("group", group)):
        if se == col:
            raise ValueError(f"se={se!r} is also the {role} column; the standard errors need a column of their own.")
    if se in predictor_list(predictors):
        raise ValueError(f"predictors includes {se!r}, which is the se column; remove it.")
    if int((df.columns == se).sum()) > 1:
        raise ValueError(f"df has {int((df.columns == se).sum())} columns named {se!r} (the se column); rename or "
                         "drop the duplicates first.")
    if isinstance(y, str) and y in df.columns and pd.api.types.is_bool_dtype(df[y].dtype):
        raise TypeError(f"y={y!r} is boolean (dtype {df[y].dtype}); summary-level data (se={se!r}) takes each "
                        "group's estimate, a real number.")
    gd = prepare(df, y=y, group=group, predictors=predictors, family="gaussian")
    if gd.group_n.max() > 1:
        dup = gd.group_n > 1
        first = gd.groups[int(np.argmax(dup))]
        raise ValueError(
            f"group={group!r}: summary-level data (se={se!r}) needs one row per group, but {first!r} has "
            f"{int(gd.group_n[np.argmax(dup)])} rows ({int(dup.sum())} groups repeat). Combine each group's "
            "estimates into one (with its standard error) first, or pass the rows without se=."
        )
    sv = numeric_column(df[se], "se", allow_bool=False)
    check_finite(sv, "se", se, df.index)
    bad = sv <= 0
    if bad.any():
        i = int(np.argmax(bad))
        raise ValueError(
            f"se={se!r} must be > 0 (a standard error); found {int(bad.sum())} rows <= 0 (first: row "
            f"{df.index[i]!r}, group {df[group].iloc[i]!r}, se={sv[i]:g})."
        )
    return dataclasses.replace(gd, se=sv, se_name=se)
