"""The integrated sampler in one process (threads) and on Dask's distributed scheduler (issue 17, target 5).

Bernoulli data of ``bench_counts_glmer.py`` (3 normal predictors and a 3-level factor, tau 0.8,
Geometric(0.4) rows per group), ``--groups`` groups. In one Python process: ``hp.prepare`` and
``hp.random_intercepts``, then, in each of ``--repeat`` rounds and in this order,

* ``threads``: ``hp.fit(model, sampler="integrated", draws, tune, random_seed=1)`` with the blocks of groups in
  this process, two threads;
* ``dask``: the same call with ``client=`` a ``LocalCluster(n_workers=2, threads_per_worker=1)`` (worker
  processes, started before the timing): the blocks are scattered to the workers once, each batch of
  proposals travels as a few numbers per proposal.

Reports wall seconds of the fit (the group effects' draws included; the pointwise log-likelihood is
not stored, in both), whether the draws are equal to the threaded run's (they must be: same seed, same
blocks, same order of sums), and the posterior means. Asserts nothing about time.

Usage::

    .venv/bin/python benchmarks/bench_distributed.py --groups 200000 --repeat 3
"""

from __future__ import annotations

import argparse
import json
import sys
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
    p.add_argument("--json", default=str(C.HERE / "results_2026-11-28_distributed.json"))
    args = p.parse_args(argv)
    from distributed import Client, LocalCluster

    import hierpool as hp

    results = {"machine": C.machine(), "groups": args.groups, "draws": args.draws, "tune": args.tune, "rounds": []}
    df = CG.simulate("bernoulli", args.groups)
    gd = hp.prepare(df, y="y", group="group", predictors=["x1", "x2", "x3", "x4"], family="bernoulli")
    model = hp.random_intercepts(gd)
    results["n_obs"] = gd.n_obs
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
            pa, pb = a["posterior"], b["posterior"]
            row["equal_draws"] = bool(all(np.array_equal(pa[v].values, pb[v].values) for v in pa.data_vars))
            row["means"] = {v: np.asarray(pa[v].mean(("chain", "draw"))).tolist() for v in ("intercept", "beta", "tau")}
            row["acceptance"] = json.loads(a.attrs["hierpool_diagnostics"])["integrated"]["acceptance_rate"]
            results["rounds"].append(row)
            print(f"round {k + 1}: threads {row['threads_s']:.1f} s, dask {row['dask_s']:.1f} s, "
                  f"equal draws {row['equal_draws']}", file=sys.stderr, flush=True)
    results["machine_end"] = C.machine()
    Path(args.json).write_text(json.dumps(results, indent=1))
    print(f"\nMachine: {results['machine']}\nbernoulli J = {args.groups:,}, N = {results['n_obs']:,} rows, "
          f"{args.draws} draws + {args.tune} tuning per chain, 4 chains\n")
    rows = [{"run": k + 1, "threads (2) s": C.f3(r["threads_s"]), "dask 2 workers s": C.f3(r["dask_s"]),
             "dask / threads": C.f3(r["dask_s"] / r["threads_s"]), "same draws": r["equal_draws"],
             "tau": C.f3(r["means"]["tau"])} for k, r in enumerate(results["rounds"])]
    C.print_table(rows, list(rows[0]), "Integrated sampler: one process vs a 2-worker Dask LocalCluster")


if __name__ == "__main__":
    main()
