"""The full validation run: SBC of every variant x family (and of the collapsed and row-level likelihoods),
the misspecified controls, and the coverage study. Writes to ``validation/results/``:

- ``sbc_results.csv`` / ``sbc_results.md``: one row per run x parameter (chi-square, p-value, Bonferroni
  threshold, verdict, ESS and divergence diagnostics, bin counts);
- ``sbc_ranks.csv``: every rank;
- ``sbc_<run>.png``: rank histograms with the expected count and its 99% binomial band;
- ``coverage_results.csv`` / ``coverage_results.md`` and ``coverage_intervals.csv``;
- ``summary.md``: date, hierpool version, git commit, package versions, settings, timings and verdicts.

Usage::

    python -m validation.run_full                  # everything (about 25 min on 2 busy shared cores)
    python -m validation.run_full --quick          # a smoke test of the script (minutes, not conclusive)
    python -m validation.run_full --only cells     # runs whose name contains "cells" (written to
                                                   # validation/results/only-cells/)
"""

from __future__ import annotations

import argparse
import datetime as _dt
import json
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd

from .coverage import coverage_run, coverage_summary
from .sbc import FAMILIES, VARIANTS, make_design, plot_rank_histograms, rank_uniformity, run_sbc

RESULTS = Path(__file__).resolve().parent / "results"


def sbc_plan(n_sims: int = 200, n_sims_extra: int = 150) -> list[dict]:
    """The SBC runs of the full validation, as keyword dicts for :func:`validation.sbc.run_sbc`.

    - the 12 variant x family runs with the default likelihood (``collapse="auto"``: exact collapsed
      gaussian likelihood; count families stay row-level because the predictor is continuous);
    - the 3 gaussian variants with the row-level likelihood (``collapse=False``), thinned more because
      the non-centered row-level model mixes slower;
    - random intercepts for the 3 count families on a binary predictor, where ``collapse="auto"`` pools
      rows into binomial/Poisson cells;
    - controls that must fail: a shifted intercept prior (gaussian, default likelihood) and a too small
      tau prior (bernoulli).

    The horseshoe of ``regularized_hierarchical`` runs at ``target_accept = 0.99`` (its divergences at
    0.9 are what hierpool's sampling report tells users to fix this way).
    """
    plan = []
    for variant in VARIANTS:
        for family in FAMILIES:
            ta = 0.99 if variant == "regularized_hierarchical" else 0.9
            plan.append({"name": f"{variant}-{family}", "variant": variant, "family": family, "collapse": "auto",
                         "n_sims": n_sims, "thin": 6, "target_accept": ta, "control": False})
    for variant in VARIANTS:
        ta = 0.99 if variant == "regularized_hierarchical" else 0.9
        plan.append({"name": f"{variant}-gaussian-rowlevel", "variant": variant, "family": "gaussian",
                     "collapse": False, "n_sims": n_sims_extra, "thin": 12, "target_accept": ta, "control": False})
    for family in ("bernoulli", "binomial", "poisson"):
        plan.append({"name": f"random_intercepts-{family}-cells", "variant": "random_intercepts", "family": family,
                     "collapse": "auto", "predictor": "binary", "n_sims": n_sims_extra, "thin": 6,
                     "target_accept": 0.9, "control": False})
    plan.append({"name": "CONTROL-shifted_intercept-random_intercepts-gaussian", "variant": "random_intercepts",
                 "family": "gaussian", "collapse": "auto", "misspecified": "shifted_intercept",
                 "n_sims": n_sims_extra, "thin": 6, "target_accept": 0.9, "control": True})
    plan.append({"name": "CONTROL-tau_too_small-random_intercepts-bernoulli", "variant": "random_intercepts",
                 "family": "bernoulli", "collapse": "auto", "misspecified": "tau_too_small",
                 "n_sims": n_sims_extra, "thin": 6, "target_accept": 0.9, "control": True})
    return plan


def _git_commit() -> str:
    root = Path(__file__).resolve().parent.parent
    try:
        commit = subprocess.run(["git", "rev-parse", "HEAD"], cwd=root, capture_output=True, text=True,
                                check=True).stdout.strip()
        dirty = subprocess.run(["git", "status", "--porcelain", "--", "hierpool"], cwd=root,
                               capture_output=True, text=True, check=True).stdout.strip()
        return commit + (" (hierpool/ has uncommitted changes)" if dirty else "")
    except (OSError, subprocess.CalledProcessError):
        return "unknown"


def _versions() -> dict:
    import arviz
    import nutpie
    import pymc

    import hierpool

    return {"hierpool": hierpool.__version__, "pymc": pymc.__version__, "nutpie": nutpie.__version__,
            "arviz": arviz.__version__, "numpy": np.__version__, "python": sys.version.split()[0]}


def _md(df: pd.DataFrame, floatfmt: str = ".4g") -> str:
    """A markdown table without the optional 'tabulate' dependency."""
    cols = list(df.columns)

    verdicts = {"uniform", "within_tolerance"}

    def fmt(col, v):
        if isinstance(v, (bool, np.bool_)):
            return "yes" if v else ("**NO**" if col in verdicts else "no")
        if isinstance(v, (float, np.floating)):
            return format(float(v), floatfmt)
        return str(v)

    lines = ["| " + " | ".join(cols) + " |", "|" + "|".join("---" for _ in cols) + "|"]
    lines += ["| " + " | ".join(fmt(c, v) for c, v in zip(cols, row, strict=True)) + " |" for row in df.itertuples(index=False)]
    return "\n".join(lines)


def run_sbc_plan(plan: list[dict], *, seed: int, alpha: float, out: Path, log=print) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Run every SBC entry of ``plan``; Bonferroni over all parameters of the non-control runs."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    all_ranks, timings = [], {}
    for k, entry in enumerate(plan):
        t0 = time.time()
        design = make_design(entry["family"], predictor=entry.get("predictor", "normal"))
        ranks = run_sbc(entry["variant"], entry["family"], n_sims=entry["n_sims"], seed=seed + k,
                        misspecified=entry.get("misspecified"), collapse=entry["collapse"], design=design,
                        thin=entry["thin"], target_accept=entry["target_accept"])
        timings[entry["name"]] = time.time() - t0
        ranks.insert(0, "run", entry["name"])
        all_ranks.append(ranks)
        log(f"[sbc] {entry['name']}: {entry['n_sims']} replications in {timings[entry['name']]:.0f} s "
            f"(likelihood: {ranks.attrs['collapse']})")
    n_tests = sum(r["parameter"].nunique() for r, e in zip(all_ranks, plan, strict=True) if not e["control"])
    tables = []
    for ranks, entry in zip(all_ranks, plan, strict=True):
        tab = rank_uniformity(ranks, alpha=alpha, n_tests=n_tests)
        tab.insert(0, "run", entry["name"])
        tab.insert(1, "likelihood", ranks.attrs["collapse"].replace("None", "rows"))
        tab.insert(2, "control", entry["control"])
        tab["seconds"] = timings[entry["name"]]
        tables.append(tab)
        fig = plot_rank_histograms(ranks, title=f"{entry['name']} (R = {entry['n_sims']}, L = 99)")
        fig.savefig(out / f"sbc_{entry['name']}.png", dpi=90)
        plt.close(fig)
    return pd.concat(tables, ignore_index=True), pd.concat(all_ranks, ignore_index=True)


def coverage_plan(n_datasets: int = 150) -> list[dict]:
    """Coverage runs: gaussian and bernoulli random intercepts with tau (and sigma) fixed at 1 in the fit
    (calibration guarantee), the same with tau estimated (for information), and a control with tau fixed
    at 0.3 in the fit while the truth has tau = 1 (must miss)."""
    plan = []
    for family in ("gaussian", "bernoulli"):
        plan.append({"name": f"{family}-tau_fixed", "family": family, "n_datasets": n_datasets, "asserted": True})
    for family in ("gaussian", "bernoulli"):
        plan.append({"name": f"{family}-tau_estimated", "family": family, "n_datasets": n_datasets,
                     "estimate_tau": True, "asserted": False})
    plan.append({"name": "CONTROL-gaussian-fit_tau_0.3", "family": "gaussian", "n_datasets": max(n_datasets // 2, 10),
                 "fit_tau": 0.3, "asserted": False})
    return plan


def run_coverage_plan(plan: list[dict], *, seed: int, log=print) -> tuple[pd.DataFrame, pd.DataFrame]:
    tables, intervals = [], []
    for k, entry in enumerate(plan):
        t0 = time.time()
        cov = coverage_run(entry["family"], n_datasets=entry["n_datasets"], seed=seed + 100 + k,
                           estimate_tau=entry.get("estimate_tau", False), fit_tau=entry.get("fit_tau"))
        secs = time.time() - t0
        log(f"[coverage] {entry['name']}: {entry['n_datasets']} datasets in {secs:.0f} s")
        tab = coverage_summary(cov)
        tab.insert(0, "run", entry["name"])
        tab.insert(1, "asserted", entry["asserted"])
        tab["frac_divergent"] = float((cov.groupby("dataset")["divergences"].first() > 0).mean())
        tab["seconds"] = secs
        tables.append(tab)
        cov.insert(0, "run", entry["name"])
        intervals.append(cov)
    return pd.concat(tables, ignore_index=True), pd.concat(intervals, ignore_index=True)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m validation.run_full", description=__doc__.split("\n\n")[0])
    ap.add_argument("--n-sims", type=int, default=200, help="SBC replications of the 12 main runs")
    ap.add_argument("--n-sims-extra", type=int, default=150, help="SBC replications of extra runs and controls")
    ap.add_argument("--n-datasets", type=int, default=150, help="datasets per coverage run")
    ap.add_argument("--seed", type=int, default=2026)
    ap.add_argument("--alpha", type=float, default=0.01, help="family-wise level of the SBC uniformity tests")
    ap.add_argument("--only", default=None, help="run only SBC/coverage runs whose name contains this")
    ap.add_argument("--skip-sbc", action="store_true")
    ap.add_argument("--skip-coverage", action="store_true")
    ap.add_argument("--quick", action="store_true", help="20 replications everywhere (smoke test)")
    ap.add_argument("--out", type=Path, default=RESULTS)
    args = ap.parse_args(argv)
    if args.quick:
        args.n_sims = args.n_sims_extra = args.n_datasets = 20
    out = args.out
    if args.only and out == RESULTS:  # a partial rerun does not overwrite the full run's tables
        out = RESULTS / ("only-" + "".join(c if c.isalnum() or c in "-_" else "_" for c in args.only))
    out.mkdir(parents=True, exist_ok=True)
    started = _dt.datetime.now().astimezone()
    meta = {"started": started.isoformat(timespec="seconds"), "git_commit": _git_commit(), "versions": _versions(),
            "args": {k: (str(v) if isinstance(v, Path) else v) for k, v in vars(args).items()}}
    print(json.dumps(meta, indent=1), flush=True)
    t_all = time.time()
    sections = []
    verdicts = []
    if not args.skip_sbc:
        plan = [e for e in sbc_plan(args.n_sims, args.n_sims_extra) if args.only is None or args.only in e["name"]]
        table, ranks = run_sbc_plan(plan, seed=args.seed, alpha=args.alpha, out=out,
                                    log=lambda m: print(m, flush=True))
        table.to_csv(out / "sbc_results.csv", index=False)
        ranks.to_csv(out / "sbc_ranks.csv", index=False)
        main_ok = bool(table.loc[~table["control"], "uniform"].all())
        controls = table[table["control"]].groupby("run")["uniform"].all()
        controls_fail = bool((~controls).all()) if len(controls) else True
        verdicts.append(f"SBC: every parameter of every correct run uniform: {'yes' if main_ok else 'NO'}; "
                        f"every misspecified control rejected: {'yes' if controls_fail else 'NO'}.")
        show = table.drop(columns=["df", "p_threshold"])
        md = (f"Bonferroni threshold per parameter: p < {table['p_threshold'].iloc[0]:.3g} "
              f"(alpha = {args.alpha} over {int(round(args.alpha / table['p_threshold'].iloc[0]))} tests).\n\n"
              + _md(show))
        (out / "sbc_results.md").write_text(md + "\n")
        sections.append("## Simulation-based calibration\n\n" + md)
    if not args.skip_coverage:
        cplan = [e for e in coverage_plan(args.n_datasets) if args.only is None or args.only in e["name"]]
        ctab, intervals = run_coverage_plan(cplan, seed=args.seed, log=lambda m: print(m, flush=True))
        ctab.to_csv(out / "coverage_results.csv", index=False)
        intervals.to_csv(out / "coverage_intervals.csv", index=False)
        ok = bool(ctab.loc[ctab["asserted"], "within_tolerance"].all())
        ctrl = ctab[ctab["run"].str.startswith("CONTROL")]
        verdicts.append(f"Coverage: every calibrated run within 3 SE of nominal: {'yes' if ok else 'NO'}; "
                        f"control outside tolerance: {'yes' if len(ctrl) and not ctrl['within_tolerance'].any() else 'NO'}.")
        md = _md(ctab)
        (out / "coverage_results.md").write_text(md + "\n")
        sections.append("## Coverage of group-effect intervals\n\n" + md)
    minutes = (time.time() - t_all) / 60
    head = [
        "# hierpool validation results", "",
        f"- date: {started.strftime('%Y-%m-%d %H:%M %Z')}",
        f"- hierpool {meta['versions']['hierpool']}, git commit {meta['git_commit']}",
        f"- versions: {', '.join(f'{k} {v}' for k, v in meta['versions'].items())}",
        f"- command: python -m validation.run_full {' '.join(argv if argv is not None else sys.argv[1:])}",
        f"- wall time: {minutes:.1f} min", "",
        *[f"**{v}**" + "  " for v in verdicts], "",
    ]
    (out / "summary.md").write_text("\n".join(head) + "\n" + "\n\n".join(sections) + "\n")
    (out / "meta.json").write_text(json.dumps({**meta, "minutes": minutes, "verdicts": verdicts}, indent=1))
    print("\n".join(verdicts), flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
