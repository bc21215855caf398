"""hierpool's whole pipeline against glmer on the users' count case: bernoulli and poisson with exposure (issue 17,
targets 1-3).

The issue's data: 3 standard-normal predictors ``x1..x3`` and a 3-level categorical ``x4`` (levels a, b, c,
equally likely, row-level), beta = (0.5, -0.3, 0.2), categorical effects (0, 0.4, -0.4), tau = 0.8,
Geometric(0.4) rows per group (1, 2, 3, ...; mean 2.5), ``--groups`` groups. Bernoulli: intercept -1.
Poisson: intercept -1 and an exposure per row, Uniform(0.5, 3), entering as ``offset(log(exposure))``.
Simulated once per family (seeded), written to Parquet (hierpool) and CSV (R); then, in each of
``--repeat`` rounds, every tool runs in its own process:

* ``hierpool``: the whole pipeline of :mod:`bench_vs_lme4`'s worker: prepare + random_intercepts +
  ``fit(draws=--draws, tune=--tune, chains=4, min_ess=--min-ess)`` (``sampler="auto"``, which is the
  integrated sampler here: hierpool.inference.integrated) + shrinkage + rank_groups of every group.
  ``min_ess``: the integrated sampler's chains are extended in place until the bulk and tail ESS of the
  intercept, every beta and tau reach it with R-hat <= 1.01 (the issue's target: 400), and the group
  effects are kept at about that many draws (``hp.fit``'s ``min_ess``). ``--draws`` is the first round
  per chain: 100 (400 / 4 chains, the least that could reach 400) since 2026-12-07's in-place
  extension; the earlier sections of benchmarks/README.md ran ``--draws 400`` with rounds of new chains.
* ``glmer``: ``lme4::glmer(y ~ x1 + x2 + x3 + x4 [+ offset(log(exposure))] + (1 | group), nAGQ = 1)``
  (``lme4_fit.R``; x4 a factor). ``--skip-glmer`` leaves it out (the J = 1M linearity runs),
  ``--skip-hierpool`` runs it alone (its one run at J = 1M).
* ``--dask-workers N``: hierpool's pipeline with the Parquet file read, shuffled by group and reduced to
  cells on a ``LocalCluster`` of N one-thread worker processes (``hp.prepare(path, ..., client=)``,
  started before the timing), the integrated sampler evaluating the cells there; the report adds each
  worker's peak memory (``peak GB`` is then the fitting process's alone).

Prints a markdown table with the ratio to glmer and each tool's tau; asserts nothing about time.

Usage::

    .venv/bin/python benchmarks/bench_counts_glmer.py --groups 20000 --repeat 1            # quick check
    .venv/bin/python benchmarks/bench_counts_glmer.py --groups 200000 --repeat 1
    .venv/bin/python benchmarks/bench_counts_glmer.py --groups 1000000 --skip-glmer --repeat 1
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pandas as pd

sys.path.insert(0, str(Path(__file__).resolve().parent))
import _common as C  # noqa: E402
import bench_gaussian_peers as P  # noqa: E402
import bench_vs_lme4 as B  # noqa: E402

#: issue 17 targets: hierpool / glmer wall time at J = 200k
TARGETS = {"bernoulli": 0.25, "poisson": 0.5}
TRUTH = {**P.TRUTH, "intercept": -1.0}


def simulate(family: str, n_groups: int, seed: int = 17) -> pd.DataFrame:
    """The issue's design (``bench_gaussian_peers.design``) with a bernoulli or poisson response."""
    df, eta, rng = P.design(n_groups, seed, TRUTH["intercept"])
    n = len(df)
    if family == "bernoulli":
        df.insert(0, "y", (rng.random(n) < 1.0 / (1.0 + np.exp(-eta))).astype(np.int64))
    else:
        df["exposure"] = rng.uniform(0.5, 3.0, size=n)
        df.insert(0, "y", rng.poisson(df["exposure"].to_numpy() * np.exp(eta)))
    return df


def one_round(family: str, csv: Path, pq: Path, args) -> dict:
    hargs = argparse.Namespace(draws=args.draws, tune=args.tune, chains=4, timeout=args.timeout, skip_r=False,
                               min_ess=args.min_ess, sampler=None, dask_workers=args.dask_workers)
    row = {}
    if not args.skip_hierpool:
        B.progress(f"  hierpool {family} ...")
        row["hierpool"] = B.run_hierpool(pq, family, hargs)
        B.progress(f"  hierpool: total {row['hierpool'].get('total_s')}")
    if not args.skip_glmer:
        B.progress(f"  glmer {family} ...")
        row["glmer"] = B.run_r(csv, family, 4, False, hargs, factors=("x4",))
        B.progress(f"  glmer: {row['glmer']}")
    return row


def report(results: dict) -> None:
    print(f"\nMachine: {results['machine']}")
    rows = []
    for fam, runs in results["families"].items():
        for k, rnd in enumerate(runs["rounds"], 1):
            h, g = rnd.get("hierpool", {"error": "skipped"}), rnd.get("glmer", {})
            gl = g.get("fit_s")
            ok = "error" not in h
            integ = (h.get("integrated") or {}) if ok else {}
            rows.append({
                "family": fam, "J": f"{results['groups']:,}", "rows": runs.get("n_obs"), "run": k,
                "hierpool s": C.f3(h.get("total_s")) if ok else h.get("error"),
                "fit s": C.f3(h.get("fit_s")), "rank s": C.f3(h.get("rank_s")), "peak GB": C.f3(h.get("peak_gb")),
                "workers' peak GB": ", ".join(C.f3(v) for v in h["worker_peak_gb"]) if h.get("worker_peak_gb")
                else "-",
                "chains": h.get("n_chains"), "R-hat max": C.f3(h.get("rhat_max")),
                "ESS bulk/tail min": f"{h.get('ess_bulk_min_params', 0):.0f}/{h.get('ess_tail_min_params', 0):.0f}"
                if ok else "", "accept": C.f3(integ.get("acceptance_rate")),
                "tau hp": C.f3(h.get("tau_mean")), "glmer s": C.f3(gl) if gl else g.get("error", "skipped"),
                "glmer peak GB": C.f3(g.get("peak_gb")), "tau glmer": C.f3(g.get("tau")),
                "x glmer": B.ratio(h.get("total_s"), gl), "target": f"<= {TARGETS[fam]}",
                "met": ("yes" if h["total_s"] <= TARGETS[fam] * gl else "NO") if ok and gl else "",
            })
    C.print_table(rows, list(rows[0]) if rows else [],
                  f"Counts, J = {results['groups']:,}: hierpool whole pipeline (full posterior, min_ess "
                  f"{results['min_ess']}) vs glmer(nAGQ = 1) fit (truth tau = {TRUTH['tau']})")


def main(argv=None) -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--groups", type=int, default=200_000, help="number of groups J")
    p.add_argument("--families", nargs="+", default=["bernoulli", "poisson"], choices=["bernoulli", "poisson"])
    p.add_argument("--repeat", type=int, default=1, help="rounds (every tool once per round)")
    p.add_argument("--dask-workers", type=int, default=None,
                   help="run hierpool's pipeline with the data kept on a LocalCluster of this many worker "
                        "processes (hp.prepare(path, ..., client=); issue 17 target 5): the fitting process "
                        "never reads the rows")
    p.add_argument("--draws", type=int, default=100)
    p.add_argument("--tune", type=int, default=50)
    p.add_argument("--min-ess", type=float, default=400.0)
    p.add_argument("--skip-glmer", action="store_true")
    p.add_argument("--skip-hierpool", action="store_true", help="glmer alone (its one run at J = 1M)")
    p.add_argument("--json", default=None, help="raw results (default: results_<date>_counts_<J>.json here)")
    p.add_argument("--timeout", type=float, default=7200, help=argparse.SUPPRESS)
    p.add_argument("--from-json", default=None, help="only print the table of an earlier --json file")
    args = p.parse_args(argv)
    if args.from_json:
        report(json.loads(Path(args.from_json).read_text()))
        return
    out = Path(args.json) if args.json else C.HERE / f"results_{time.strftime('%Y-%m-%d')}_counts_{args.groups}.json"
    tmp = Path(tempfile.mkdtemp(prefix="hierpool_counts_"))
    results = {"machine": C.machine(), "groups": args.groups, "truth": TRUTH, "draws": args.draws,
               "tune": args.tune, "min_ess": args.min_ess, "families": {}}
    try:
        for fam in args.families:
            df = simulate(fam, args.groups)
            results["families"][fam] = {"n_obs": len(df), "rounds": []}
            csv, pq = C.write_data(df, tmp, f"{fam}_{args.groups}")
            del df
            for k in range(args.repeat):
                B.progress(f"{fam}: round {k + 1}/{args.repeat}, J = {args.groups:,}")
                results["families"][fam]["rounds"].append(one_round(fam, csv, pq, args))
                C.save_json(results, out)
    finally:
        C.finish(results, tmp, out, report)


if __name__ == "__main__":
    main()
