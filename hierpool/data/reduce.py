"""Data larger than memory: reduce rows to sufficient statistics, with Dask or pandas.

``hp.prepare`` hands a Dask DataFrame or a path to Parquet/CSV files to :func:`reduce`, which makes one
pass over the rows (partition by partition) and returns a :class:`GroupedStats`: everything the exact
collapsed models of :mod:`hierpool.models.collapse` need, and nothing per row.

- gaussian: rows per group, group means of y and of the predictors, and the within-group cross-products
  ``Syy_w``, ``Sxy_w``, ``Sxx_w``. Any model variant can be fitted from them, exactly.
- bernoulli, binomial, poisson: one cell per (group, predictor pattern) with summed counts, trials and
  exposures. Exact too; it shrinks the data when predictors are categorical or discrete (with continuous
  predictors nearly every row is its own cell).

A fit of a GroupedStats has the full posterior (parameters and every group effect) and every group-level
analysis (shrinkage, ranks, implied ridge, predictions), but no row-level log-likelihood, so PSIS-LOO and
posterior predictive checks of rows are not available for it.

Group labels keep their first-seen order (partitions in order), as the pandas path does; categorical
predictor levels are found in a first pass. Validation matches :func:`hierpool.prepare`: NaN or infinite
values, responses outside the family's support and single groups raise.
"""

from __future__ import annotations

import glob
import os
from pathlib import Path

import numpy as np
import pandas as pd

from hierpool.core import names as N
from hierpool.core.families import get_family
from hierpool.core.validate import one_of
from hierpool.data.grouped import GroupedStats
from hierpool.data.stats import CountPatterns, GaussianStats
from hierpool.data.terms import build_terms, design_matrix, predictor_list, require_columns, require_roles


def is_dask_or_path(obj) -> bool:
    """True for a Dask DataFrame, or a str/Path naming Parquet or CSV files."""
    if isinstance(obj, (str, os.PathLike)):
        return True
    return type(obj).__module__.startswith("dask")


# ------------------------------------------------------------------------------------------------------
def _open(data):
    """A Dask DataFrame from a Dask DataFrame, or from a path / glob of Parquet or CSV files."""
    try:
        import dask.dataframe as dd
    except ImportError as err:
        raise ImportError(
            "data beyond memory needs Dask; install it with: pip install 'hierpool[dask]'"
        ) from err
    if not isinstance(data, (str, os.PathLike)):
        return data, "dask DataFrame"
    path = str(data)
    files = sorted(glob.glob(path)) if any(c in path for c in "*?[") else [path]
    if not files or not all(os.path.exists(f) for f in files):
        raise FileNotFoundError(f"df={path!r}: no such file or folder.")
    first = Path(files[0])
    suffixes = {"".join(Path(f).suffixes[-1:]).lower() for f in files}
    if first.is_dir() or suffixes <= {".parquet", ".pq"}:
        return dd.read_parquet(files if len(files) > 1 else path), path
    if suffixes <= {".csv"} or suffixes <= {".gz"}:
        return dd.read_csv(files), path
    raise ValueError(f"df={path!r}: expected Parquet (.parquet, a folder) or CSV (.csv) files; got {sorted(suffixes)}.")


def _first_seen(ddf, group: str) -> pd.Index:
    parts = ddf[group].map_partitions(lambda s: pd.Series(pd.unique(s.to_numpy()), dtype=object),
                                      meta=(group, object)).compute()
    return pd.Index(pd.unique(parts.to_numpy()), name=N.GROUP)


def _levels_frame(ddf, predictors: list[str]) -> pd.DataFrame:
    """A small pandas frame with every level of each non-numeric predictor (for build_terms)."""
    sample = {}
    n = 1
    for col in predictors:
        s = ddf[col]
        if pd.api.types.is_numeric_dtype(s.dtype) and not pd.api.types.is_bool_dtype(s.dtype):
            sample[col] = None
            continue
        uniq = s.dropna().unique().compute()
        if isinstance(s.dtype, pd.CategoricalDtype):
            uniq = pd.Categorical(uniq, categories=s.cat.categories if s.cat.known else sorted(uniq))
        sample[col] = pd.Series(uniq)
        n = max(n, len(uniq))
    frame = {}
    for col, vals in sample.items():
        if vals is None:
            frame[col] = np.linspace(0, 1, max(n, 2))
        else:
            reps = np.resize(np.arange(len(vals)), max(n, 2))
            frame[col] = vals.iloc[reps].reset_index(drop=True)
    return pd.DataFrame(frame)


def _partition_stats(pdf: pd.DataFrame, y: str, group: str, terms: list[dict], family: str, trials,
                     exposure, shift_x: np.ndarray, shift_y: float) -> dict:
    """Sums over one partition: per-group sums and (gaussian) shifted global cross-products; or cells."""
    g = pdf[group].to_numpy()
    yv = pdf[y].to_numpy(dtype=float)
    X = design_matrix(pdf, terms, context="predictors")
    fam = get_family(family)
    if fam.has_sigma:  # gaussian: group sums and cross-products
        Xk, yk = X - shift_x, yv - shift_y
        frame = pd.DataFrame(np.column_stack([np.ones_like(yk), yk, Xk]))
        frame.insert(0, "g", g)
        sums = frame.groupby("g", sort=False).sum()
        return {"sums": sums, "xx": Xk.T @ Xk, "xy": Xk.T @ yk, "yy": float(yk @ yk)}
    cols = {"g": g}
    for k in range(X.shape[1]):
        cols[f"x{k}"] = X[:, k]
    frame = pd.DataFrame(cols)
    frame["y"] = yv
    frame["size"] = _row_sizes(pdf, fam, trials, exposure)  # trials (bernoulli: 1) or exposure (default 1)
    frame["rows"] = 1.0
    keys = ["g"] + [f"x{k}" for k in range(X.shape[1])]
    return {"cells": frame.groupby(keys, sort=False).sum().reset_index()}


def _row_sizes(pdf: pd.DataFrame, fam, trials, exposure) -> np.ndarray:
    """Each row's size (:meth:`hierpool.core.families.Family.row_size`) read from a partition."""
    tv = None
    if trials is not None:
        tv = pdf[trials].to_numpy(dtype=float) if isinstance(trials, str) else np.full(len(pdf), float(trials))
    ev = None if exposure is None else pdf[exposure].to_numpy(dtype=float)
    return fam.row_size(len(pdf), trials=tv, exposure=ev)


def _validate_partition(pdf: pd.DataFrame, y, group, family, trials, exposure) -> pd.DataFrame:
    """Per-partition checks; returns a one-row frame of counts of problems (combined and raised later)."""
    out = {}
    yv = pdf[y].to_numpy(dtype=float)
    out["y_bad"] = int((~np.isfinite(yv)).sum())
    out["y_not01"] = int((~np.isin(yv, (0.0, 1.0))).sum())
    out["group_na"] = int(pdf[group].isna().sum())
    try:
        fam = get_family(family)
        tv = _row_sizes(pdf, fam, trials, None) if fam.uses_trials else None
        fam.check_support(yv[np.isfinite(yv)], y, None if tv is None else tv[np.isfinite(yv)])
        out["support"] = ""
    except ValueError as err:
        out["support"] = str(err)
    return pd.DataFrame([out])


def reduce(df, y: str, group: str, predictors=(), family: str | None = None, trials=None,
           exposure=None) -> GroupedStats:
    """Reduce rows (pandas, Dask, or Parquet/CSV path) to the sufficient statistics of a collapsed model.

    Parameters are those of :func:`hierpool.prepare`. Returns a :class:`GroupedStats` that every factory
    accepts (gaussian: any variant; counts: collapsed cells).

    Examples
    --------
    >>> gs = hp.prepare("episodes/*.parquet", y="los", group="member_id", predictors=["age"])  # doctest: +SKIP
    """
    family_given = family is not None  # without family=: gaussian, unless y holds only 0 and 1 (pass 1 checks)
    family = "gaussian" if family is None else family
    one_of("family", family, N.FAMILIES)
    get_family(family).check_arguments(trials, exposure)
    predictors = predictor_list(predictors)
    if len(predictors) != len(set(predictors)):
        raise ValueError(f"predictors lists a column more than once: {predictors}.")
    if isinstance(df, pd.DataFrame):
        if len(df) == 0:
            raise ValueError("df is empty (0 rows); hierpool needs rows nested in at least two groups.")
        require_roles(df, y, group, predictors)
        try:
            import dask.dataframe as dd

            ddf, source = dd.from_pandas(df, npartitions=1), "pandas DataFrame"
        except ImportError:  # pandas path without Dask: one partition, same code
            ddf, source = None, "pandas DataFrame"
    else:
        ddf, source = _open(df)
    if ddf is None:
        return _reduce_partitions([df], df, y, group, predictors, family, trials, exposure, source,
                                  family_given=family_given)
    cols = list(ddf.columns)
    require_roles(pd.DataFrame(columns=cols), y, group, predictors)
    import dask

    parts = ddf.to_delayed()
    return _reduce_partitions(parts, ddf, y, group, predictors, family, trials, exposure, source,
                              family_given=family_given,
                              compute=dask.compute, delayed=dask.delayed)


def _reduce_partitions(parts, frame, y, group, predictors, family, trials, exposure, source,
                       compute=None, delayed=None, family_given=True):
    is_dask = compute is not None
    if len(frame.columns) and not (y in frame.columns and group in frame.columns):
        require_columns(pd.DataFrame(columns=list(frame.columns)), "y", [y])
        require_columns(pd.DataFrame(columns=list(frame.columns)), "group", [group])
    # pass 1: validation, group order, predictor levels, centers and scales
    if is_dask:
        checks = compute(*[delayed(_validate_partition)(p, y, group, family, trials, exposure) for p in parts])
        checks = pd.concat(checks, ignore_index=True)
        labels = _first_seen(frame, group)
        levels = _levels_frame(frame, predictors)
        n_obs = int(frame.shape[0].compute())
    else:
        pdf = parts[0]
        checks = _validate_partition(pdf, y, group, family, trials, exposure)
        labels = pd.Index(pd.unique(pdf[group].to_numpy()), name=N.GROUP)
        levels = pdf[predictors]
        n_obs = len(pdf)
    if int(checks["y_bad"].sum()):
        raise ValueError(f"y={y!r} has {int(checks['y_bad'].sum())} NaN or infinite values; hierpool drops "
                         "nothing silently: remove or impute these rows first.")
    if int(checks["group_na"].sum()):
        raise ValueError(f"group={group!r} has {int(checks['group_na'].sum())} missing labels.")
    support = [m for m in checks["support"] if m]
    if support:
        raise ValueError(support[0])
    if not family_given and int(checks["y_not01"].sum()) == 0:
        raise ValueError(
            f"y={y!r} holds only 0 and 1 and no family was given: pass family='bernoulli' for a binary outcome "
            "(a logistic model), or family='gaussian' to fit a linear-probability model on purpose."
        )
    if n_obs == 0:
        raise ValueError("df is empty (0 rows); hierpool needs rows nested in at least two groups.")
    if len(labels) < 2:
        raise ValueError(f"group={group!r} has a single group ({labels[0]!r}); partial pooling needs at least two groups.")
    terms = build_terms(levels, predictors)
    P = sum(len(t["names"]) for t in terms)
    names = [n for t in terms for n in t["names"]]

    # pass 2: sums
    shift_x = np.zeros(P)
    shift_y = 0.0
    gaussian = get_family(family).has_sigma  # reduced to gaussian statistics, else to count cells
    if gaussian:
        head = (frame.head(1000, npartitions=-1) if is_dask else frame.iloc[:1000])
        shift_x = design_matrix(head, terms).mean(axis=0) if P else shift_x
        shift_y = float(head[y].mean())
    if is_dask:
        results = compute(*[delayed(_partition_stats)(p, y, group, terms, family, trials, exposure, shift_x, shift_y)
                            for p in parts])
    else:
        results = [_partition_stats(parts[0], y, group, terms, family, trials, exposure, shift_x, shift_y)]

    if gaussian:
        sums = pd.concat([r["sums"] for r in results]).groupby(level=0, sort=False).sum().reindex(labels)
        arr = sums.to_numpy()
        n = arr[:, 0]
        ybar_k = arr[:, 1] / n  # shifted
        xbar_k = arr[:, 2:] / n[:, None]
        xx = sum(r["xx"] for r in results)
        xy = sum(r["xy"] for r in results)
        yy = sum(r["yy"] for r in results)
        # within-group cross-products (shift invariant)
        syy_w = yy - float(n @ ybar_k**2)
        sxy_w = xy - (xbar_k * (n * ybar_k)[:, None]).sum(axis=0)
        sxx_w = xx - (xbar_k * n[:, None]).T @ xbar_k
        mean_x = shift_x + (n @ xbar_k) / n_obs
        # centers and scales as prepare(): population sd of numeric columns, 1 for indicators
        total_xx = sxx_w + ((xbar_k - (mean_x - shift_x)) * n[:, None]).T @ (xbar_k - (mean_x - shift_x))
        scale = np.ones(P)
        col = 0
        for t in terms:
            if t["kind"] == "numeric":
                sd = float(np.sqrt(total_xx[col, col] / n_obs))
                if not sd > 0:
                    raise ValueError(f"predictors: column {t['column']!r} is constant; drop it.")
                scale[col] = sd
            col += len(t["names"])
        ybar = ybar_k + shift_y
        ymean = float(n @ ybar) / n_obs
        y_total_ss = syy_w + float(n @ (ybar - ymean) ** 2)
        xbar_std = (xbar_k + shift_x - mean_x) / scale
        gstats = GaussianStats(n=n, ybar=ybar, xbar=xbar_std, syy_w=float(syy_w), sxy_w=sxy_w / scale,
                               sxx_w=sxx_w / np.outer(scale, scale), n_obs=n_obs)
        return GroupedStats(family=family, groups=labels, group_n=n.astype(np.int64), group_denominator=n,
                            group_raw_mean=ybar, predictors=names, x_center=mean_x, x_scale=scale, terms=terms,
                            y_name=y, group_name=group, n_obs=n_obs, y_total_ss=float(y_total_ss),
                            gaussian=gstats, source=source)

    cells = pd.concat([r["cells"] for r in results], ignore_index=True)
    keys = ["g"] + [f"x{k}" for k in range(P)]
    cells = cells.groupby(keys, sort=False).sum().reset_index()
    gidx = labels.get_indexer(cells["g"].to_numpy())
    Xc = cells[[f"x{k}" for k in range(P)]].to_numpy(dtype=float) if P else np.zeros((len(cells), 0))
    rows = cells["rows"].to_numpy()
    mean_x = (rows @ Xc) / n_obs if P else np.zeros(0)
    scale = np.ones(P)
    col = 0
    for t in terms:
        if t["kind"] == "numeric":
            scale[col] = float(np.sqrt(rows @ (Xc[:, col] - mean_x[col]) ** 2 / n_obs))
            if not scale[col] > 0:
                raise ValueError(f"predictors: column {t['column']!r} is constant; drop it.")
        col += len(t["names"])
    J = len(labels)
    group_n = np.bincount(gidx, weights=rows, minlength=J)
    ysum = np.bincount(gidx, weights=cells["y"].to_numpy(), minlength=J)
    size_c = cells["size"].to_numpy(dtype=float)
    trials_c, exposure_c = get_family(family).cell_sizes(size_c)
    denom = np.bincount(gidx, weights=size_c, minlength=J)
    cp = CountPatterns(group_idx=gidx.astype(np.int64), Xs=(Xc - mean_x) / scale if P else Xc,
                       y=cells["y"].to_numpy(dtype=float), trials=trials_c, exposure=exposure_c, row_cell=None)
    return GroupedStats(family=family, groups=labels, group_n=group_n.astype(np.int64), group_denominator=denom,
                        group_raw_mean=ysum / denom, predictors=names, x_center=mean_x, x_scale=scale, terms=terms,
                        y_name=y, group_name=group, n_obs=n_obs, y_total_ss=0.0, cells=cp,
                        trials_name=trials, exposure_name=exposure,
                        source=source)
