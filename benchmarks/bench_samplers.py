"""Effective samples per second: hierpool's collapsed model against full NUTS models, on the same data.

Gaussian random intercepts with 3 predictors, most groups of 1-5 rows (N ~ 2.6 J), for each J in
``--sizes``, each configuration in its own Python process:

- ``hierpool collapsed``: ``hp.fit(hp.random_intercepts(gd))`` (nutpie on intercept, beta, tau, sigma;
  group effects drawn afterwards from their exact conditional);
- ``hierpool full``: the same with ``collapse=False`` (non-centered, every group effect sampled by nutpie);
- ``hierpool full (numpyro)``: the same full model with ``sampler="numpyro"`` (JAX; compilation happens
  inside the sampling call, so its ``compile`` column is empty and ``sampling`` includes it);
- ``pymc NUTS``: a plain non-centered PyMC model with the same priors, ``pm.sample(nuts_sampler="pymc")``;
- ``bambi default``: ``bmb.Model("y ~ x1 + x2 + x3 + (1|group)", df).fit()`` (PyMC's NUTS, bambi's
  defaults: 1000 draws, 1000 tuning steps, chains = max(2, cores) = 2 here). ``--bambi-draws`` caps
  draws and tuning at large J; ESS per second is what is compared.

All others use 4 chains x (1000 tuning + 1000 draws) by default. Reported: ESS (bulk) of tau and the
smallest bulk ESS over the group effects, each per second of sampling and per second of total wall time
(model building + compilation + sampling + post-processing), the same per CPU-second (all threads and
sampling processes: the steadier number on a shared machine), R-hat max over every parameter including all
group effects, and the wall times. Prints markdown tables; asserts nothing about time.

Usage::

    .venv/bin/python benchmarks/bench_samplers.py --bambi-draws 500     # J = 1k and 10k (long: see README)
    .venv/bin/python benchmarks/bench_samplers.py --sizes 1000 --configs collapsed bambi
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
import _common as C  # noqa: E402

CONFIGS = ("collapsed", "full", "numpyro", "pymc", "bambi")
LABELS = {"collapsed": "hierpool collapsed (nutpie)", "full": "hierpool full, collapse=False (nutpie)",
          "numpyro": "hierpool full, collapse=False (numpyro, JAX)",
          "pymc": "plain PyMC non-centered (PyMC NUTS)", "bambi": "bambi default (PyMC NUTS)"}
TARGET = 100.0  # issue 4: tau's ESS/s at J = 10k at least 100x bambi's default


def _diag(az, post, tau_name: str, u_name: str) -> dict:
    ess_tau = az.ess(post[[tau_name]], method="bulk")[tau_name]
    ess_u = az.ess(post[[u_name]], method="bulk")[u_name]
    rhat = az.rhat(post)
    rmax = max(float(np.nanmax(np.atleast_1d(rhat[v].values))) for v in rhat.data_vars)
    return {"ess_tau": float(ess_tau), "min_ess_u": float(np.nanmin(ess_u.values)), "rhat_max": rmax,
            "tau_mean": float(post[tau_name].mean()), "n_samples": int(post.sizes["chain"] * post.sizes["draw"]),
            "chains": int(post.sizes["chain"])}


def worker(args) -> None:
    import pandas as pd

    df = pd.read_parquet(args.data)
    preds = [c for c in df.columns if c.startswith("x")]
    import arviz as az
    import pymc as pm

    t: dict = {}
    cfg = args.config
    if cfg in ("collapsed", "full", "numpyro"):
        import nutpie

        import hierpool as hp
        import hierpool.inference.sampling as hs

        C.time_calls(t, nutpie, "compile_pymc_model", "compile_s")
        C.time_calls(t, hs, "finalize", "post_s")
        # collapsed models compile through hierpool.inference.nutpie (Python callbacks); time that as "compile" too
        import hierpool.inference.nutpie as hn

        C.time_calls(t, hn, "compile_small", "compile_s")
        with C.timer(t, "total_s"):
            gd = hp.prepare(df, y="y", group="group", predictors=preds)
            model = hp.random_intercepts(gd, collapse="auto" if cfg == "collapsed" else False)
            dt = hp.fit(model, draws=args.draws, tune=args.tune, chains=args.chains, random_seed=1,
                        progressbar=False, sampler="numpyro" if cfg == "numpyro" else "auto")
        t["sample_s"] = t["total_s"] - t.get("compile_s", 0.0) - t["post_s"]
        post = dt["posterior"].to_dataset()[["intercept", "beta", "tau", "sigma", "group_effect"]]
        d = _diag(az, post, "tau", "group_effect")
    elif cfg == "pymc":
        with C.timer(t, "total_s"):
            codes, labels = pd.factorize(df["group"])
            X = df[preds].to_numpy()
            Xs = (X - X.mean(0)) / X.std(0)
            s = float(df["y"].std())
            with pm.Model(coords={"group": labels, "predictor": preds}) as model:
                a = pm.Normal("intercept", float(df["y"].mean()), 2.5 * s)
                b = pm.Normal("beta", 0.0, 2.5 * s, dims="predictor")
                tau = pm.HalfStudentT("tau", nu=3, sigma=s)
                sigma = pm.HalfStudentT("sigma", nu=3, sigma=s)
                z = pm.Normal("z", 0.0, 1.0, dims="group")
                u = pm.Deterministic("group_effect", z * tau, dims="group")
                pm.Normal("y", a + pm.math.dot(Xs, b) + u[codes], sigma, observed=df["y"].to_numpy())
                dt = pm.sample(draws=args.draws, tune=args.tune, chains=args.chains, cores=2, random_seed=1,
                               nuts_sampler="pymc", progressbar=False,
                               var_names=["intercept", "beta", "tau", "sigma", "group_effect"])
        t["sample_s"] = float(dt["posterior"].attrs.get("sampling_time", np.nan))
        post = dt["posterior"].to_dataset()
        d = _diag(az, post, "tau", "group_effect")
    elif cfg == "bambi":
        import bambi as bmb

        df = df.assign(group=("g" + df["group"].astype(str)).astype("category"))
        kw = {} if args.bambi_draws is None else {"draws": args.bambi_draws, "tune": args.bambi_draws}
        with C.timer(t, "total_s"):
            m = bmb.Model(f"y ~ {' + '.join(preds)} + (1|group)", df)
            dt = m.fit(random_seed=1, progressbar=False, **kw)
        t["sample_s"] = float(dt["posterior"].attrs.get("sampling_time", np.nan))
        post = dt["posterior"].to_dataset()
        d = _diag(az, post, "1|group_sigma", "1|group")
        d["bambi_kwargs"] = kw
    else:
        raise ValueError(cfg)
    print(json.dumps({**t, **d, "peak_gb": C.peak_rss_gb(), "n_obs": len(df)}))


def progress(msg: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {msg}", file=sys.stderr, flush=True)


def report(results: dict) -> None:
    print(f"\nMachine: {results['machine']}")
    print(f"Settings: {results['chains']} chains x ({results['tune']} tune + {results['draws']} draws) unless "
          "noted; bambi with its defaults. ESS = bulk ESS. 'sampling' = the MCMC run only; 'total' = model "
          "building + compilation + sampling + post-processing (what a user waits for).")
    rows = []
    by_j: dict = {}
    for e in results["runs"]:
        r = e["result"]
        row = {"J": e["J"], "method": LABELS[e["config"]], "chains x draws": e.get("draws_note"),
               "compile": r.get("compile_s"), "sampling": r.get("sample_s"), "total": r.get("total_s"),
               "ESS tau": r.get("ess_tau"), "ESS/s tau (sampling)": C_ratio(r.get("ess_tau"), r.get("sample_s")),
               "ESS/s tau (total)": C_ratio(r.get("ess_tau"), r.get("total_s")),
               "total CPU": r.get("total_s_cpu"),
               "ESS/CPU-s tau (total)": C_ratio(r.get("ess_tau"), r.get("total_s_cpu")),
               "min ESS u": r.get("min_ess_u"), "ESS/s min u (total)": C_ratio(r.get("min_ess_u"), r.get("total_s")),
               "R-hat max": C.f4(r.get("rhat_max")), "tau": C.f3(r.get("tau_mean")), "peak GB": r.get("peak_gb"),
               "error": r.get("error", "")}
        by_j.setdefault(e["J"], {})[e["config"]] = row
        rows.append(row)
    for rows_j in by_j.values():
        base = rows_j.get("bambi")
        for row in rows_j.values():
            for key, col in (("ESS/s tau (total)", "vs bambi (tau, total)"),
                             ("ESS/s tau (sampling)", "vs bambi (tau, sampling)"),
                             ("ESS/CPU-s tau (total)", "vs bambi (tau, CPU)")):
                row[col] = C_ratio(row.get(key), base.get(key)) if base else None
    C.print_table(rows, ["J", "method", "chains x draws", "compile", "sampling", "total", "ESS tau",
                         "ESS/s tau (sampling)", "ESS/s tau (total)", "total CPU", "ESS/CPU-s tau (total)", "min ESS u",
                         "ESS/s min u (total)", "R-hat max", "tau", "peak GB", "vs bambi (tau, sampling)",
                         "vs bambi (tau, total)", "vs bambi (tau, CPU)",
                         "error"],
                  f"ESS per second (target at J = 10k: hierpool's ESS/s for tau >= {TARGET:g}x bambi's default)")


def C_ratio(a, b):
    try:
        return a / b if a is not None and b else float("nan")
    except TypeError:
        return float("nan")


def main(argv=None) -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--sizes", type=int, nargs="*", default=[1_000, 10_000])
    p.add_argument("--configs", nargs="*", default=list(CONFIGS), choices=CONFIGS)
    p.add_argument("--draws", type=int, default=1000)
    p.add_argument("--tune", type=int, default=1000)
    p.add_argument("--chains", type=int, default=4)
    p.add_argument("--bambi-draws", type=int, default=None,
                   help="draws = tune for bambi at J >= --bambi-cap-from (default: bambi's own 1000/1000)")
    p.add_argument("--bambi-cap-from", type=int, default=10_000)
    p.add_argument("--timeout", type=float, default=1800)
    p.add_argument("--json", default=None)
    p.add_argument("--from-json", default=None, help="only print the tables of an earlier --json file")
    p.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    p.add_argument("--data", help=argparse.SUPPRESS)
    p.add_argument("--config", help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if args.worker:
        if args.bambi_draws is not None and args.bambi_draws <= 0:
            args.bambi_draws = None
        worker(args)
        return
    if args.from_json:
        report(json.loads(Path(args.from_json).read_text()))
        return
    import tempfile

    results = {"machine": C.machine(), "draws": args.draws, "tune": args.tune, "chains": args.chains, "runs": []}
    tmp = Path(tempfile.mkdtemp(prefix="hierpool_bench_"))
    try:
        for J in args.sizes:
            _, pq = C.write_data(C.simulate(J, "gaussian", 3, seed=1), tmp, f"gauss_{J}")
            for cfg in args.configs:
                cmd = [sys.executable, __file__, "--worker", "--data", str(pq), "--config", cfg,
                       "--draws", str(args.draws), "--tune", str(args.tune), "--chains", str(args.chains)]
                note = f"{args.chains} x {args.draws}"
                if cfg == "bambi":
                    capped = args.bambi_draws is not None and J >= args.bambi_cap_from
                    cmd += ["--bambi-draws", str(args.bambi_draws if capped else 0)]
                    note = f"2 x {args.bambi_draws} (capped)" if capped else "2 x 1000 (default)"
                progress(f"J={J:,} {LABELS[cfg]} ...")
                res = C.run_child(cmd, timeout=args.timeout)
                out = C.last_json(res["stdout"])
                if res["rc"] != 0 or out is None:
                    tail = (res["stderr"] or "").strip().splitlines()[-10:]
                    progress("  FAILED:\n    " + "\n    ".join(tail))
                    out = {"error": "timeout" if res["rc"] == "timeout" else f"exit {res['rc']}"}
                elif cfg == "bambi":
                    note = f"{out['chains']} x {out['n_samples'] // out['chains']}" + (" (capped)" if "capped" in note else
                                                                                       " (default)")
                progress(f"  {out}")
                results["runs"].append({"J": J, "config": cfg, "draws_note": note, "result": out})
                C.save_json(results, args.json)
    finally:
        C.finish(results, tmp, args.json, report)


if __name__ == "__main__":
    main()
