"""hierpool's full posterior against lme4's point estimates, on the same simulated data.

Gaussian random intercepts with 3 predictors, most groups of 1-5 rows (N ~ 2.6 J), for each J in
``--sizes``: hierpool (``hp.prepare`` + ``hp.random_intercepts`` + ``hp.fit(draws=1000, tune=1000,
chains=4)`` + ``hp.shrinkage`` + ``hp.rank_groups`` of every group), each size in its own Python process
so that its peak memory is its own, against ``lme4::lmer`` (REML fit only, and with
``ranef(condVar = TRUE)`` up to ``--condvar-max`` groups) run by ``Rscript benchmarks/lme4_fit.R`` under
``/usr/bin/time -v``. Bernoulli (``--bernoulli-sizes``): no predictors (hierpool integrates the group
effects out over the (successes, trials) patterns: hierpool.models.integrated) and 3 continuous predictors
(nothing to pool: ``sampler="auto"`` runs the integrated sampler, hierpool.inference.integrated) against
``glmer(nAGQ = 1)``.

Prints markdown tables (times in seconds, memory in GB) and ratios; asserts nothing about time.

Usage::

    .venv/bin/python benchmarks/bench_vs_lme4.py                         # everything (long: see README)
    .venv/bin/python benchmarks/bench_vs_lme4.py --sizes 1000 10000 --bernoulli-sizes 10000   # short
    .venv/bin/python benchmarks/bench_vs_lme4.py --sizes 1000000 --repeat 2 --bernoulli-sizes

Needs R with lme4 for the comparison (``apt-get install -y r-base-core r-cran-lme4``); without it the
tables say so and show hierpool alone.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
import _common as C  # noqa: E402

TARGET_RATIO = 0.5  # issue 4: at J = 1M, hierpool's whole pipeline in at most half of lmer's fit time
TARGET_PEAK_GB = 8.0
TARGET_RHAT = 1.01


# ------------------------------------------------------------------------------------------------------
# worker: one hierpool pipeline in this process
def worker(args) -> None:
    import pandas as pd

    t = {}
    client = None
    if getattr(args, "dask_workers", None):  # the data stays on the workers: this process never reads it
        from distributed import Client, LocalCluster

        cluster = LocalCluster(n_workers=args.dask_workers, threads_per_worker=1, processes=True,
                               dashboard_address=None)
        client = Client(cluster)
        import pyarrow.parquet as pq

        df = pd.DataFrame(columns=pq.read_schema(args.data).names)  # the column names only
    else:
        with C.timer(t, "read_s"):
            df = pd.read_parquet(args.data)
    rss_data = C.rss_gb()
    import arviz as az
    import nutpie

    import hierpool as hp
    import hierpool.inference.sampling as hs

    try:  # one-time imports stay outside the timings, as library(lme4) stays outside lmer's: xarray
        import dask.array  # noqa: F401  imports dask (when installed) the first time it wraps an array
    except ImportError:
        pass

    preds = [c for c in df.columns if c.startswith("x")]
    family = args.family
    peaks = {"after_import": C.peak_rss_gb()}
    orig_finalize = hs.finalize

    def timed_finalize(dt, *a, **k):
        with C.timer(t, "finalize_s"):
            return orig_finalize(dt, *a, **k)

    hs.finalize = timed_finalize
    C.time_calls(t, nutpie, "compile_pymc_model", "compile_s")
    # collapsed models compile through hierpool.inference.nutpie (Python callbacks); time that as "compile" too
    import hierpool.inference.nutpie as hn

    C.time_calls(t, hn, "compile_small", "compile_s")

    exposure = "exposure" if "exposure" in df.columns else None
    with C.timer(t, "prepare_s"):
        gd = hp.prepare(df if client is None else str(args.data), y="y", group="group", predictors=preds,
                        family=family, **({"exposure": exposure} if exposure else {}),
                        **({"client": client} if client is not None else {}))
    peaks["prepare"] = C.peak_rss_gb()
    with C.timer(t, "model_s"):
        model = hp.random_intercepts(gd)
    peaks["model"] = C.peak_rss_gb()
    collapse = hp.describe(model).collapse
    with C.timer(t, "fit_s"):
        extra = {}
        if getattr(args, "min_ess", None):
            extra["min_ess"] = args.min_ess
        if getattr(args, "sampler", None):
            extra["sampler"] = args.sampler
        dt = hp.fit(model, draws=args.draws, tune=args.tune, chains=args.chains, random_seed=1,
                    progressbar=False, **extra)
    peaks["fit"] = C.peak_rss_gb()
    for sfx in ("", "_cpu"):
        t[f"sample_s{sfx}"] = t[f"fit_s{sfx}"] - t.get(f"compile_s{sfx}", 0.0) - t.get(f"finalize_s{sfx}", 0.0)
    with C.timer(t, "shrinkage_s"):
        shr = hp.shrinkage(dt)
    peaks["shrinkage"] = C.peak_rss_gb()
    with C.timer(t, "rank_s"):
        rk = hp.rank_groups(dt)
    peaks["rank"] = C.peak_rss_gb()
    assert len(shr) == gd.n_groups and len(rk) == gd.n_groups
    for sfx in ("", "_cpu"):
        t[f"total_s{sfx}"] = sum(t[f"{k}_s{sfx}"] for k in ("prepare", "model", "fit", "shrinkage", "rank"))

    diag = json.loads(dt.attrs["hierpool_diagnostics"])
    # every draw of every chain (all min_ess rounds): the returned posterior keeps them all, thinned or not
    full = dt["posterior"].to_dataset()
    post = full[[v for v in ("intercept", "beta", "tau", "sigma") if v in full]].load()
    sampled = post[[v for v in post.data_vars if float(post[v].std()) > 0]]
    rhat = az.rhat(sampled)
    ess_b = az.ess(post[["tau"]], method="bulk")
    ess_t = az.ess(post[["tau"]], method="tail")
    ess_all_b = az.ess(sampled, method="bulk")
    ess_all_t = az.ess(sampled, method="tail")
    rhat_max_params = max(float(np.max(rhat[v].values)) for v in rhat.data_vars)
    out = {
        **t, "rss_data_gb": rss_data, "peak_gb": C.peak_rss_gb(), "peaks": peaks, "collapse": collapse,
        "sampler": dt.attrs.get("hierpool_sampler"), "n_obs": gd.n_obs, "n_groups": gd.n_groups,
        "thin": round(float(dt.attrs.get("hierpool_thin", 1)), 3),
        "group_effect_draws": diag.get("group_effect_draws", int(post.sizes["chain"] * post.sizes["draw"])),
        "rhat_max": max(rhat_max_params, float(diag.get("max_rhat", 0.0))),
        "rhat_max_var": diag.get("max_rhat_var"), "rhat_tau": float(rhat["tau"]),
        "ess_bulk_tau": float(ess_b["tau"]), "ess_tail_tau": float(ess_t["tau"]),
        "min_ess_bulk_all": diag.get("min_ess_bulk"), "divergences": diag.get("divergences"),
        "ess_bulk_min_params": min(float(np.min(ess_all_b[v].values)) for v in ess_all_b.data_vars),
        "ess_tail_min_params": min(float(np.min(ess_all_t[v].values)) for v in ess_all_t.data_vars),
        "n_chains": int(post.sizes["chain"]), "rounds": diag.get("rounds"),
        "integrated": diag.get("integrated"),
        "beta_mean": [float(v) for v in np.ravel(post["beta"].mean(("chain", "draw")).values)] if "beta" in post
        else None, "intercept_mean": float(post["intercept"].mean()),
        "tau_mean": float(post["tau"].mean()), "sigma_mean": float(post["sigma"].mean()) if "sigma" in post else None,
        "n_draws_stored": int(dt["posterior"].sizes["draw"]),
        "has_log_lik": "log_likelihood" in dt.children,
    }
    if client is not None:
        import resource

        peak = client.run(lambda: resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20)  # KiB -> GB
        out.update(dask_workers=args.dask_workers, worker_peak_gb=sorted(peak.values()),
                   cells=gd.cells_on_workers.n_cells, partitions=len(gd.cells_on_workers.parts))
        client.close()
        cluster.close()
    print(json.dumps(out))


# ------------------------------------------------------------------------------------------------------
def run_hierpool(data: Path, family: str, args) -> dict:
    cmd = [sys.executable, __file__, "--worker", "--data", str(data), "--family", family, "--draws", str(args.draws),
           "--tune", str(args.tune), "--chains", str(args.chains)]
    if getattr(args, "min_ess", None):
        cmd += ["--min-ess", str(args.min_ess)]
    if getattr(args, "sampler", None):
        cmd += ["--sampler", args.sampler]
    if getattr(args, "dask_workers", None):
        cmd += ["--dask-workers", str(args.dask_workers)]
    res = C.run_child(cmd, timeout=args.timeout)
    out = C.last_json(res["stdout"])
    if res["rc"] != 0 or out is None:
        tail = (res["stderr"] or "").strip().splitlines()[-12:]
        why = "timeout" if res["rc"] == "timeout" else f"exit {res['rc']}"
        if res["rc"] == -9:
            why += " (killed: out of memory?)"
        print(f"  hierpool FAILED ({why}) after {res['wall']:.0f} s:\n    " + "\n    ".join(tail), file=sys.stderr)
        return {"error": why, "wall": res["wall"]}
    out["process_wall_s"] = res["wall"]
    return out


def run_r(csv: Path, family: str, n_pred: int, condvar: bool, args, nagq: int = 1,
          factors: tuple[str, ...] = ()) -> dict:
    if args.skip_r or C.rscript() is None:
        return {"error": "R/lme4 not available (apt-get install -y r-base-core r-cran-lme4)"}
    cmd = [C.rscript(), str(C.HERE / "lme4_fit.R"), str(csv), family, str(n_pred), str(int(condvar)), str(nagq),
           ",".join(factors)]
    if Path("/usr/bin/time").exists():
        cmd = ["/usr/bin/time", "-v", *cmd]
    res = C.run_child(cmd, timeout=args.timeout)
    out = C.last_json(res["stdout"])
    if res["rc"] != 0 or out is None:
        tail = (res["stderr"] or "").strip().splitlines()[-8:]
        print(f"  lme4 FAILED (exit {res['rc']}):\n    " + "\n    ".join(tail), file=sys.stderr)
        return {"error": f"lme4 failed (exit {res['rc']})"}
    out["peak_gb"] = C.time_v_peak_gb(res["stderr"])
    return out


def progress(msg: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {msg}", file=sys.stderr, flush=True)


def gaussian_rows(args, tmp: Path, results: dict) -> None:
    for J in args.sizes:
        for rep in range(args.repeat if J == max(args.sizes) else 1):
            df = C.simulate(J, "gaussian", 3, seed=1)
            csv, pq = C.write_data(df, tmp, f"gauss_{J}")
            del df
            progress(f"gaussian J={J:,} (run {rep + 1}): hierpool ...")
            hp_res = run_hierpool(pq, "gaussian", args)
            progress(f"  hierpool: {json.dumps({k: v for k, v in hp_res.items() if k != 'peaks'})}")
            progress("  lmer ...")
            r_fit = run_r(csv, "gaussian", 3, False, args)
            progress(f"  lmer: {r_fit}")
            r_cv = {}
            if J <= args.condvar_max and "error" not in r_fit:
                progress("  lmer + ranef(condVar) ...")
                r_cv = run_r(csv, "gaussian", 3, True, args)
                progress(f"  lmer+condVar: {r_cv}")
            results["gaussian"].append({"J": J, "run": rep + 1, "hierpool": hp_res, "lmer": r_fit, "lmer_condvar": r_cv})
            C.save_json(results, args.json)


def bernoulli_rows(args, tmp: Path, results: dict) -> None:
    for J in args.bernoulli_sizes:
        for n_pred in args.bernoulli_predictors:
            df = C.simulate(J, "bernoulli", n_pred, seed=2)
            csv, pq = C.write_data(df, tmp, f"bern{n_pred}_{J}")
            del df
            progress(f"bernoulli J={J:,}, {n_pred} predictors: hierpool ...")
            hp_res = run_hierpool(pq, "bernoulli", args)
            progress(f"  hierpool: {json.dumps({k: v for k, v in hp_res.items() if k != 'peaks'})}")
            progress("  glmer ...")
            r_fit = run_r(csv, "bernoulli", n_pred, False, args, nagq=1)
            progress(f"  glmer: {r_fit}")
            results["bernoulli"].append({"J": J, "n_pred": n_pred, "hierpool": hp_res, "glmer": r_fit})
            C.save_json(results, args.json)


def ratio(a, b):
    try:
        return a / b if a is not None and b else float("nan")
    except TypeError:
        return float("nan")


def report(results: dict) -> None:
    print(f"\nMachine: {results['machine']}")
    print(f"Settings: draws={results['draws']}, tune={results['tune']}, chains={results['chains']}, hp.fit's default "
          "sampler ('auto': the integrated samplers where they apply, else nutpie; see the sampler column); "
          "times are wall-clock seconds, memory is peak RSS in GB of the process.")
    g = results["gaussian"]
    if g:
        rows = []
        for e in g:
            h = e["hierpool"]
            rows.append({"J": e["J"], "run": e["run"], "N": h.get("n_obs"), "prepare": h.get("prepare_s"),
                         "model": h.get("model_s"), "compile": h.get("compile_s"), "sample": h.get("sample_s"),
                         "draw u": h.get("finalize_s"), "fit": h.get("fit_s"), "shrinkage": h.get("shrinkage_s"),
                         "rank": h.get("rank_s"), "total": h.get("total_s"), "total CPU": h.get("total_s_cpu"),
                         "peak GB": h.get("peak_gb"),
                         "thin": h.get("thin"), "error": h.get("error", "")})
        C.print_table(rows, ["J", "run", "N", "prepare", "model", "compile", "sample", "draw u", "fit", "shrinkage",
                             "rank", "total", "total CPU", "peak GB", "thin", "error"],
                      "Gaussian, hierpool stages (fit = compile + sample + draw u; 'draw u' = finalize: group "
                      "effects drawn from their exact conditional, thinned by 'thin')")
        rows = []
        for e in g:
            h, r, cv = e["hierpool"], e["lmer"], e["lmer_condvar"]
            ok = None
            if e["J"] >= 1_000_000 and "error" not in h and "error" not in r:
                ok = ("yes" if h["total_s"] <= TARGET_RATIO * r["fit_s"] and h["peak_gb"] <= TARGET_PEAK_GB
                      and h["rhat_max"] <= TARGET_RHAT else "NO")
            rows.append({
                "J": e["J"], "run": e["run"], "hp total": h.get("total_s"), "hp peak GB": h.get("peak_gb"),
                "R-hat max": C.f4(h.get("rhat_max")), "ESS bulk tau": h.get("ess_bulk_tau"),
                "ESS tail tau": h.get("ess_tail_tau"), "tau hp": C.f3(h.get("tau_mean")),
                "lmer fit": r.get("fit_s", r.get("error")), "lmer CPU": r.get("fit_cpu_s"), "lmer peak GB": r.get("peak_gb"), "tau lmer": C.f3(r.get("tau")),
                "lmer+condVar": (cv.get("fit_s", 0) + cv.get("condvar_s", 0)) if cv and "error" not in cv else None,
                "condVar peak GB": cv.get("peak_gb") if cv else None,
                "hp/lmer": ratio(h.get("total_s"), r.get("fit_s")),
                "hp/lmer CPU": ratio(h.get("total_s_cpu"), r.get("fit_cpu_s")),
                "hp/(lmer+condVar)": ratio(h.get("total_s"),
                                           (cv.get("fit_s", 0) + cv.get("condvar_s", 0)) if cv and "error" not in cv
                                           else None),
                "target (1M)": ok,
            })
        C.print_table(rows, ["J", "run", "hp total", "hp peak GB", "R-hat max", "ESS bulk tau", "ESS tail tau",
                             "tau hp", "lmer fit", "lmer CPU", "lmer peak GB", "tau lmer", "lmer+condVar", "condVar peak GB",
                             "hp/lmer", "hp/lmer CPU", "hp/(lmer+condVar)", "target (1M)"],
                      f"Gaussian, hierpool (whole pipeline) vs lmer (REML). Target at J=1M: hp/lmer <= {TARGET_RATIO}, "
                      f"peak <= {TARGET_PEAK_GB:g} GB, R-hat <= {TARGET_RHAT}")
    b = results["bernoulli"]
    if b:
        rows = []
        for e in b:
            h, r = e["hierpool"], e["glmer"]
            target = 1.0 if e["n_pred"] == 0 else 3.0
            rf = ratio(h.get("fit_s"), r.get("fit_s"))
            rows.append({
                "J": e["J"], "predictors": e["n_pred"], "N": h.get("n_obs"), "collapse": h.get("collapse") or "none",
                "sampler": h.get("sampler"), "hp compile": h.get("compile_s"), "hp sample": h.get("sample_s"), "hp finalize": h.get("finalize_s"),
                "hp fit": h.get("fit_s"), "hp total": h.get("total_s"), "hp peak GB": h.get("peak_gb"),
                "R-hat max": C.f4(h.get("rhat_max")), "ESS bulk tau": h.get("ess_bulk_tau"), "tau hp": C.f3(h.get("tau_mean")),
                "glmer fit": r.get("fit_s", r.get("error")), "glmer peak GB": r.get("peak_gb"), "tau glmer": C.f3(r.get("tau")),
                "hp fit/glmer": rf, "goal": f"<= {target:g}",
                "met": None if np.isnan(rf) else ("yes" if rf <= target else "NO"),
            })
        C.print_table(rows, ["J", "predictors", "N", "collapse", "sampler", "hp compile", "hp sample", "hp finalize", "hp fit",
                             "hp total", "hp peak GB", "R-hat max", "ESS bulk tau", "tau hp", "glmer fit",
                             "glmer peak GB", "tau glmer", "hp fit/glmer", "goal", "met"],
                      "Bernoulli, hierpool full posterior vs glmer(nAGQ=1) (goal: no predictors, collapsed: as fast "
                      "as glmer; 3 continuous predictors: within 3x glmer)")


def main(argv=None) -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--sizes", type=int, nargs="*", default=[1_000, 10_000, 100_000, 1_000_000],
                   help="numbers of groups J for the gaussian comparison")
    p.add_argument("--bernoulli-predictors", type=int, nargs="+", default=[0, 3],
                   help="bernoulli runs with these numbers of predictors (0: the integrated model)")
    p.add_argument("--bernoulli-sizes", type=int, nargs="*", default=[100_000],
                   help="numbers of groups for the bernoulli comparison (none: skip)")
    p.add_argument("--condvar-max", type=int, default=100_000, help="largest J for lmer + ranef(condVar=TRUE)")
    p.add_argument("--repeat", type=int, default=1, help="runs of the largest gaussian size (noisy machines)")
    p.add_argument("--draws", type=int, default=1000)
    p.add_argument("--tune", type=int, default=1000)
    p.add_argument("--chains", type=int, default=4)
    p.add_argument("--timeout", type=float, default=3600, help="seconds per child process")
    p.add_argument("--skip-r", action="store_true", help="hierpool only")
    p.add_argument("--json", default=None, help="also write the raw results to this JSON file")
    p.add_argument("--keep-data", default=None, help="write the simulated data here (default: a temp dir)")
    p.add_argument("--from-json", default=None, help="only print the tables of an earlier --json file")
    # internal: the per-size hierpool process
    p.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    p.add_argument("--data", help=argparse.SUPPRESS)
    p.add_argument("--family", default="gaussian", help=argparse.SUPPRESS)
    p.add_argument("--min-ess", type=float, default=None, help=argparse.SUPPRESS)
    p.add_argument("--sampler", default=None, help=argparse.SUPPRESS)
    p.add_argument("--dask-workers", type=int, default=None, help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if args.worker:
        worker(args)
        return
    if args.from_json:
        report(json.loads(Path(args.from_json).read_text()))
        return
    if C.rscript() is None and not args.skip_r:
        print("NOTE: Rscript not found: lme4 is skipped (apt-get install -y r-base-core r-cran-lme4).")
    results = {"machine": C.machine(), "draws": args.draws, "tune": args.tune, "chains": args.chains,
               "gaussian": [], "bernoulli": []}
    tmp = Path(args.keep_data) if args.keep_data else Path(tempfile.mkdtemp(prefix="hierpool_bench_"))
    try:
        gaussian_rows(args, tmp, results)
        bernoulli_rows(args, tmp, results)
    finally:
        C.finish(results, None if args.keep_data else tmp, args.json, report)


if __name__ == "__main__":
    main()
