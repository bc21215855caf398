"""The integrated sampler in one process (threads) and on Dask's distributed scheduler (issue 17, target 5).

Bernoulli data of ``bench_counts_glmer.py`` (3 normal predictors and a 3-level factor, tau 0.8,
Geometric(0.4) rows per group), ``--groups`` groups. In one Python process: ``hp.prepare`` and
``hp.random_intercepts``, then, in each of ``--repeat`` rounds and in this order,

* ``threads``: ``hp.fit(model, sampler="integrated", draws, tune, random_seed=1)`` with the blocks of groups in
  this process, two threads;
* ``dask``: the same call with ``client=`` a ``LocalCluster(n_workers=2, threads_per_worker=1)`` (worker
  processes, started before the timing): the blocks are scattered to the workers once, each batch of
  proposals travels as a few numbers per proposal;
* ``workers``: the data as Parquet files (``--files``, written before the timing) that this process
  never reads: ``hp.prepare(path, ..., client=client)`` shuffles the rows by group on the workers and
  leaves each partition's cells there, then ``hp.fit(hp.random_intercepts(gd), ...)`` builds the blocks on
  the workers and samples. Timed: prepare, and model + fit.

Reports wall seconds of the fit (the group effects' draws included; the pointwise log-likelihood is
not stored, in all), whether the ``dask`` draws are equal to the threaded run's (they must be: same seed,
same blocks, same order of sums), how far the ``workers`` population draws are from them (the sums run
in another order: the mode and every draw move by rounding only) and whether its group effects agree
within Monte Carlo error (mean over groups of the squared difference of the two posterior means over
twice the posterior variance / draws: about 1 or below when they agree), and the posterior means.
The time of ``hp.prepare`` of the in-memory frame (in-process modes) is reported beside the workers'.
Asserts nothing about time.

Usage::

    .venv/bin/python benchmarks/bench_distributed.py --groups 100000 --repeat 3 --json benchmarks/results_<date>_distributed.json
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
import warnings
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
import _common as C  # noqa: E402
import bench_counts_glmer as CG  # noqa: E402


def main(argv=None) -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--groups", type=int, default=200_000)
    p.add_argument("--repeat", type=int, default=3)
    p.add_argument("--draws", type=int, default=500)
    p.add_argument("--tune", type=int, default=100)
    p.add_argument("--files", type=int, default=8, help="Parquet files of the workers mode")
    p.add_argument("--json", default=str(C.HERE / "results_2026-11-28_distributed.json"))
    args = p.parse_args(argv)
    from distributed import Client, LocalCluster

    import hierpool as hp

    results = {"machine": C.machine(), "groups": args.groups, "draws": args.draws, "tune": args.tune, "rounds": []}
    df = CG.simulate("bernoulli", args.groups)
    pkw = dict(y="y", group="group", predictors=["x1", "x2", "x3", "x4"], family="bernoulli")
    t0 = time.perf_counter()
    gd = hp.prepare(df, **pkw)
    results["prepare_in_process_s"] = time.perf_counter() - t0
    model = hp.random_intercepts(gd)
    results["n_obs"] = gd.n_obs
    tmp = tempfile.TemporaryDirectory(prefix="hierpool_bench_")
    edges = np.linspace(0, len(df), args.files + 1).astype(int)  # row order as simulated: groups split at edges
    for i in range(args.files):
        df.iloc[edges[i]:edges[i + 1]].to_parquet(Path(tmp.name) / f"part{i:03d}.parquet")
    files = str(Path(tmp.name) / "*.parquet")
    kw = dict(sampler="integrated", draws=args.draws, tune=args.tune, random_seed=1, progressbar=False,
              log_likelihood=False)
    with LocalCluster(n_workers=2, threads_per_worker=1, processes=True, dashboard_address=None) as cl, \
            Client(cl) as client, warnings.catch_warnings():
        warnings.simplefilter("ignore")
        for k in range(args.repeat):
            row = {}
            t0 = time.perf_counter()
            a = hp.fit(model, **kw)
            row["threads_s"] = time.perf_counter() - t0
            t0 = time.perf_counter()
            b = hp.fit(model, client=client, **kw)
            row["dask_s"] = time.perf_counter() - t0
            t0 = time.perf_counter()
            gw = hp.prepare(files, client=client, **pkw)
            row["workers_prepare_s"] = time.perf_counter() - t0
            t0 = time.perf_counter()
            w = hp.fit(hp.random_intercepts(gw), **kw)
            row["workers_fit_s"] = time.perf_counter() - t0
            row["workers_cells"] = gw.cells_on_workers.n_cells
            del gw
            pa, pb, pw = a["posterior"], b["posterior"], w["posterior"]
            row["equal_draws"] = bool(all(np.array_equal(pa[v].values, pb[v].values) for v in pa.data_vars))
            row["workers_max_abs_diff"] = float(max(np.max(np.abs(pa[v].values - pw[v].values))
                                                    for v in ("intercept", "beta", "tau")))
            row["workers_group_z2"] = _group_z2(a, w)
            row["means"] = {v: np.asarray(pa[v].mean(("chain", "draw"))).tolist() for v in ("intercept", "beta", "tau")}
            row["acceptance"] = json.loads(a.attrs["hierpool_diagnostics"])["integrated"]["acceptance_rate"]
            results["rounds"].append(row)
            print(f"round {k + 1}: threads {row['threads_s']:.1f} s, dask {row['dask_s']:.1f} s, "
                  f"equal draws {row['equal_draws']}; workers prepare {row['workers_prepare_s']:.1f} s, fit "
                  f"{row['workers_fit_s']:.1f} s, max |diff| {row['workers_max_abs_diff']:.1e}, group z2 "
                  f"{row['workers_group_z2']:.2f}", file=sys.stderr, flush=True)
    results["machine_end"] = C.machine()
    Path(args.json).write_text(json.dumps(results, indent=1))
    print(f"\nMachine: {results['machine']}\nbernoulli J = {args.groups:,}, N = {results['n_obs']:,} rows, "
          f"{args.draws} draws + {args.tune} tuning per chain, 4 chains\n")
    rows = [{"run": k + 1, "threads (2) s": C.f3(r["threads_s"]), "dask 2 workers s": C.f3(r["dask_s"]),
             "dask / threads": C.f3(r["dask_s"] / r["threads_s"]), "same draws": r["equal_draws"],
             "workers: prepare s": C.f3(r["workers_prepare_s"]), "workers: fit s": C.f3(r["workers_fit_s"]),
             "workers fit / threads": C.f3(r["workers_fit_s"] / r["threads_s"]),
             "max |diff| of draws": f"{r['workers_max_abs_diff']:.1e}", "group z2": C.f3(r["workers_group_z2"]),
             "tau": C.f3(r["means"]["tau"])} for k, r in enumerate(results["rounds"])]
    print(f"hp.prepare of the in-memory frame (in-process modes): {results['prepare_in_process_s']:.2f} s\n")
    C.print_table(rows, list(rows[0]), "Integrated sampler: one process vs a 2-worker Dask LocalCluster")


def _group_z2(a, b) -> float:
    """Mean over groups of (difference of the two fits' posterior means)^2 / (2 var / draws): about 1 (or
    less: the population draws are shared) when the group effects agree within Monte Carlo error."""
    ua, ub = a["posterior"]["group_effect"], b["posterior"]["group_effect"]
    S = ua.sizes["chain"] * ua.sizes["draw"]
    var = 0.5 * (ua.var(("chain", "draw")) + ub.var(("chain", "draw"))).values
    diff = (ua.mean(("chain", "draw")) - ub.mean(("chain", "draw"))).values
    return float(np.mean(diff**2 / (2 * var / S)))


if __name__ == "__main__":
    main()
