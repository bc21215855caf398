"""Data larger than memory: reduce rows to sufficient statistics, with Dask or pandas.

``hp.prepare`` hands a Dask DataFrame or a path to Parquet/CSV files to :func:`reduce`, which makes one
pass over the rows (partition by partition) and returns a :class:`GroupedStats`: everything the exact
collapsed models of :mod:`hierpool.models.collapse` need, and nothing per row.

- gaussian: rows per group, group means of y and of the predictors, and the within-group cross-products
  ``Syy_w``, ``Sxy_w``, ``Sxx_w``. Any model variant can be fitted from them, exactly.
- bernoulli, binomial, poisson: one cell per (group, predictor pattern) with summed counts, trials and
  exposures. Exact too; it shrinks the data when predictors are categorical or discrete (with continuous
  predictors nearly every row is its own cell).

- counts with ``client=`` (a ``dask.distributed.Client``): the same cells, built and KEPT on the workers
  (rows shuffled by group, each partition reduced where it lives; :class:`CellsOnWorkers`), for data with
  continuous predictors that no single process should hold. Only the integrated sampler fits them.

A fit of a GroupedStats has the full posterior (parameters and every group effect) and every group-level
analysis (shrinkage, ranks, implied ridge, predictions), but no row-level log-likelihood, so PSIS-LOO and
posterior predictive checks of rows are not available for it.

Group labels keep their first-seen order (partitions in order), as the pandas path does; categorical
predictor levels are found in a first pass. Validation matches :func:`hierpool.prepare`: the arguments, the
columns' roles and their dtypes are checked by the same function before any row is read
(:func:`hierpool.data.prepare.check_columns`, so the messages are the same: ``trials`` an integer >= 1 or a
numeric column, required columns present, no column in two roles, a real (not text, not complex) response, booleans
only for bernoulli or an explicit gaussian, numeric non-boolean trials and exposure columns); then the values,
partition by partition, with the same rules (the messages count the bad rows instead of listing them): NaN or
infinite values, trials and exposures out of range, responses outside the family's support, missing group labels,
an empty frame (before the check of a 0/1 response without ``family=``) and single groups raise.
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
from hierpool.data.prepare import ZERO_ONE_WITHOUT_FAMILY, check_columns
from hierpool.data.stats import CellsOnWorkers, CountPatterns, GaussianStats
from hierpool.data.terms import (
    build_terms,
    check_group_labels,
    design_matrix,
)

#: What ``client=`` with a pandas DataFrame says (:func:`reduce`, and :func:`hierpool.prepare` before it
#: branches to paths that take no client).
PANDAS_WITH_CLIENT = ("client= keeps the cells of a Dask DataFrame (or Parquet/CSV files) on the workers; a pandas "
                      "DataFrame is in this process already: drop client=, or pass "
                      "dask.dataframe.from_pandas(df, npartitions=...).")


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
    # typed where one type allows it (int64, str, datetime ...), as pandas input gives; mixed types stay
    # object (and are refused by check_group_labels)
    return pd.Index(pd.unique(parts.to_numpy()).tolist(), name=N.GROUP)


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


def _scales(terms: list[dict], variance) -> np.ndarray:
    """The predictors' scales as :func:`hierpool.prepare` sets them: the population sd of each numeric
    column (``variance(col)``: its population variance, however the reduction summed it), 1 for
    indicators; a constant numeric column is refused."""
    scale = np.ones(sum(len(t["names"]) for t in terms))
    col = 0
    for t in terms:
        if t["kind"] == "numeric":
            scale[col] = float(np.sqrt(variance(col)))
            if not scale[col] > 0:
                raise ValueError(f"predictors: column {t['column']!r} is constant; drop it.")
        col += len(t["names"])
    return scale


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


def _size_problem(pdf: pd.DataFrame, trials, exposure) -> str:
    """What is wrong with a partition's trials or exposure column, as the pandas path says it ("" if
    nothing): trials must be whole numbers >= 1, exposures finite and positive."""
    if isinstance(trials, str):  # numeric, not boolean (check_columns)
        tv = pdf[trials].to_numpy(dtype=float)
        bad = ~np.isfinite(tv) | (tv < 1) | (np.mod(tv, 1) != 0)
        if bad.any():
            return (f"trials={trials!r} must hold integers >= 1; found {int(bad.sum())} rows that are not (NaN, "
                    "fractional or < 1).")
    if isinstance(exposure, str):
        ev = pdf[exposure].to_numpy(dtype=float)
        bad = ~np.isfinite(ev) | (ev <= 0)
        if bad.any():
            return f"exposure={exposure!r} must be finite and positive; found {int(bad.sum())} rows that are not."
    return ""


def _validate_partition(pdf: pd.DataFrame, y, group, family, trials, exposure) -> pd.DataFrame:
    """Per-partition checks; returns a one-row frame of counts of problems (combined and raised later)."""
    out = {}
    yv = pdf[y].to_numpy(dtype=float)
    out["y_bad"] = int((~np.isfinite(yv)).sum())
    out["y_not01"] = int((~np.isin(yv, (0.0, 1.0))).sum())
    out["group_na"] = int(pdf[group].isna().sum())
    out["sizes"] = _size_problem(pdf, trials, exposure)
    try:
        fam = get_family(family)
        tv = _row_sizes(pdf, fam, trials, None) if fam.uses_trials else None
        fam.check_support(yv[np.isfinite(yv)], y, None if tv is None else tv[np.isfinite(yv)])
        out["support"] = ""
    except ValueError as err:
        out["support"] = str(err)
    return pd.DataFrame([out])


def reduce(df, y: str, group: str, predictors=(), family: str | None = None, trials=None,
           exposure=None, client=None) -> GroupedStats:
    """Reduce rows (pandas, Dask, or Parquet/CSV path) to the sufficient statistics of a collapsed model.

    Parameters are those of :func:`hierpool.prepare`. Returns a :class:`GroupedStats` that every factory
    accepts (gaussian: any variant; counts: collapsed cells).

    ``client`` (a ``dask.distributed.Client``; count families, Dask or path input): the cells are built and
    KEPT on the client's workers instead of gathered here (``GroupedStats.cells_on_workers``); every pass
    runs on that client. After the first passes (validation, group labels in first-seen order, predictor
    levels, and the rows' sums and sums of squares of the predictors for their centers and scales), the
    rows are shuffled by group
    (``DataFrame.shuffle``; as many partitions as the input has, and at least two per worker thread), so
    each group's rows meet in one partition, and each partition is reduced to its cells on the worker that
    holds it, group indices global. Only per-group totals (rows, response sum,
    trials or exposure: O(groups)) come back. The same cells as without ``client`` (in another order), so
    the same model; the integrated sampler evaluates them where they live (:func:`hierpool.fit`).

    Examples
    --------
    >>> gs = hp.prepare("episodes/*.parquet", y="los", group="member_id", predictors=["age"])  # doctest: +SKIP
    """
    family_given = family is not None  # without family=: gaussian, unless y holds only 0 and 1 (pass 1 checks)
    family = "gaussian" if family is None else family
    one_of("family", family, N.FAMILIES)
    if client is not None:
        _check_client(client, df, family, family_given)
    if isinstance(df, pd.DataFrame):
        if len(df) == 0:
            raise ValueError("df is empty (0 rows); hierpool needs rows nested in at least two groups.")
        predictors = check_columns(df, y, group, predictors, family, trials, exposure)
        try:
            import dask.dataframe as dd

            ddf, source = dd.from_pandas(df, npartitions=1), "pandas DataFrame"
        except ImportError:  # pandas path without Dask: one partition, same code
            ddf, source = None, "pandas DataFrame"
    else:
        ddf, source = _open(df)
        if not hasattr(ddf, "columns") or not hasattr(ddf, "to_delayed"):
            raise TypeError(f"df must be a pandas or Dask DataFrame, or a path to Parquet/CSV files; got "
                            f"{type(ddf).__module__}.{type(ddf).__name__}.")
        # the same checks of the arguments, the columns and their dtypes as the pandas path
        predictors = check_columns(ddf, y, group, predictors, family, trials, exposure)
    if ddf is None:
        return _reduce_partitions([df], df, y, group, predictors, family, trials, exposure, source,
                                  family_given=family_given)
    import dask

    parts = ddf.to_delayed()
    with dask.config.set(**({"scheduler": client} if client is not None else {})):  # every pass on the client
        return _reduce_partitions(parts, ddf, y, group, predictors, family, trials, exposure, source,
                                  family_given=family_given,
                                  compute=dask.compute, delayed=dask.delayed, client=client)


def _check_client(client, df, family: str, family_given: bool) -> None:
    """``client=`` of :func:`reduce`: a distributed Client, with Dask or path input and a count family."""
    try:
        from distributed import Client
    except ImportError as err:
        raise ImportError("client= needs dask.distributed; install it with: pip install 'hierpool[dask]'") from err
    if not isinstance(client, Client):
        raise TypeError(f"client must be a dask.distributed.Client; got {type(client).__name__}.")
    if isinstance(df, pd.DataFrame):
        raise TypeError(PANDAS_WITH_CLIENT)
    if not family_given:
        raise TypeError("client= keeps count data's cells on the Dask workers: give family= ('bernoulli', "
                        "'binomial' or 'poisson').")
    if get_family(family).has_sigma:
        raise TypeError(f"client= keeps count data's cells on the Dask workers (family='bernoulli', 'binomial' or "
                        f"'poisson'); family={family!r} data reduces to sufficient statistics of a few numbers per "
                        "group in this process: drop client=.")


def _reduce_partitions(parts, frame, y, group, predictors, family, trials, exposure, source,
                       compute=None, delayed=None, family_given=True, client=None):
    is_dask = compute is not None
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
    if n_obs == 0:  # before the checks of the values, as the pandas path
        raise ValueError("df is empty (0 rows); hierpool needs rows nested in at least two groups.")
    if int(checks["y_bad"].sum()):
        raise ValueError(f"y={y!r} has {int(checks['y_bad'].sum())} NaN or infinite values; hierpool drops "
                         "nothing silently: remove or impute these rows first.")
    if int(checks["group_na"].sum()):
        raise ValueError(f"group={group!r} has {int(checks['group_na'].sum())} missing labels.")
    sizes = [m for m in checks["sizes"] if m]
    if sizes:
        raise ValueError(sizes[0])
    support = [m for m in checks["support"] if m]
    if support:
        raise ValueError(support[0])
    check_group_labels(pd.Series(labels, dtype=object), group)  # one label type across partitions and files
    if not family_given and int(checks["y_not01"].sum()) == 0:
        raise ValueError(ZERO_ONE_WITHOUT_FAMILY.format(y=y))
    if len(labels) < 2:
        raise ValueError(f"group={group!r} has a single group ({labels[0]!r}); partial pooling needs at least two groups.")
    terms = build_terms(levels, predictors)
    P = sum(len(t["names"]) for t in terms)
    names = [n for t in terms for n in t["names"]]
    if client is not None:
        return _cells_on_workers(client, frame, labels, terms, names, y, group, family, trials, exposure, n_obs,
                                 source)

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
        scale = _scales(terms, lambda c: total_xx[c, c] / n_obs)
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
    scale = _scales(terms, lambda c: rows @ (Xc[:, c] - mean_x[c]) ** 2 / n_obs)
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


# ------------------------------------------------------------------------------------------------------
# count cells kept on Dask workers
def _partition_moments(pdf: pd.DataFrame, terms: list[dict], shift: np.ndarray) -> np.ndarray:
    """Sums and sums of squares of one partition's predictor columns about ``shift``: (2, P)."""
    X = design_matrix(pdf, terms, context="predictors") - shift
    return np.stack([X.sum(axis=0), (X * X).sum(axis=0)])


def _partition_cells(pdf: pd.DataFrame, labels: pd.Index, y, group, terms, family, trials, exposure,
                     center: np.ndarray, scale: np.ndarray) -> tuple:
    """One partition of rows shuffled by group (each group's rows all here) reduced to its cells, on the
    worker that holds it: ``(CountPatterns, totals, cells)``, ``totals`` (4, groups here): global group
    index, rows, response sum and size sum (trials or exposure) of each of its groups."""
    P = center.shape[0]
    fam = get_family(family)
    cells = _partition_stats(pdf, y, group, terms, family, trials, exposure, np.zeros(P), 0.0)["cells"]
    gidx = labels.get_indexer(cells["g"].to_numpy()).astype(np.int64)
    Xc = cells[[f"x{k}" for k in range(P)]].to_numpy(dtype=float) if P else np.zeros((len(cells), 0))
    size = cells["size"].to_numpy(dtype=float)
    yv = cells["y"].to_numpy(dtype=float)
    trials_c, exposure_c = fam.cell_sizes(size)
    cp = CountPatterns(group_idx=gidx, Xs=(Xc - center) / scale if P else Xc, y=yv, trials=trials_c,
                       exposure=exposure_c, row_cell=None)
    ids, inv = np.unique(gidx, return_inverse=True)
    totals = np.stack([ids.astype(float)] + [np.bincount(inv, weights=w, minlength=ids.shape[0])
                                              for w in (cells["rows"].to_numpy(dtype=float), yv, size)])
    return cp, totals, len(cells)


def _cells_on_workers(client, frame, labels: pd.Index, terms, names: list[str], y, group, family, trials, exposure,
                      n_obs: int, source: str) -> GroupedStats:
    """:func:`reduce` with ``client``: the cells built on the workers and left there."""
    import operator

    from dask import delayed

    P = len(names)
    # centers and scales as prepare(): the rows' mean and population sd (numeric columns; 1 for indicators),
    # from sums about the first rows' mean (no cancellation)
    shift = design_matrix(frame.head(1000, npartitions=-1), terms).mean(axis=0) if P else np.zeros(0)
    moments = sum(client.gather(client.compute([delayed(_partition_moments)(p, terms, shift)
                                                for p in frame.to_delayed()])))
    m1 = moments[0] / n_obs
    center = shift + m1
    scale = _scales(terms, lambda c: max(moments[1, c] / n_obs - m1[c] ** 2, 0.0))
    # rows shuffled by group into at least two partitions per worker thread (so every worker holds some
    # groups, and blocks can be evaluated in parallel), each partition reduced to its cells where it lives
    nparts = max(frame.npartitions, 2 * sum(client.nthreads().values()))
    rows = client.compute(frame.shuffle(on=group, npartitions=nparts).to_delayed())
    # the labels as a typed index where they allow it (first-seen order kept): faster lookups on the workers
    lab = client.scatter(pd.Index(labels.tolist(), name=labels.name), broadcast=True, hash=False)
    built = client.map(_partition_cells, rows, labels=lab, y=y, group=group, terms=terms, family=family,
                       trials=trials, exposure=exposure, center=center, scale=scale, pure=False)
    parts = client.map(operator.itemgetter(0), built, pure=False)
    meta = client.gather(client.map(operator.itemgetter(1, 2), built, pure=False))
    totals = [m[0] for m in meta]
    del rows, built, lab  # the partitions' rows and the labels are released on the workers
    J = len(labels)
    ids = np.concatenate([t[0] for t in totals]).astype(np.int64)
    if ids.shape[0] != J or np.bincount(ids, minlength=J).max() != 1:
        raise RuntimeError(f"the shuffle by group={group!r} left {ids.shape[0]} groups in the partitions for {J} "
                           "labels: a group's rows were not brought together.")
    tot = np.empty((3, J))
    tot[:, ids] = np.concatenate([t[1:] for t in totals], axis=1)
    group_n, ysum, denom = tot
    cells = CellsOnWorkers(client=client, parts=tuple(parts), partition_cells=tuple(int(m[1]) for m in meta))
    return GroupedStats(family=family, groups=labels, group_n=np.rint(group_n).astype(np.int64),
                        group_denominator=denom, group_raw_mean=ysum / denom, predictors=names, x_center=center,
                        x_scale=scale, terms=terms, y_name=y, group_name=group, n_obs=n_obs, y_total_ss=0.0,
                        trials_name=trials, exposure_name=exposure, source=source, cells_on_workers=cells)
