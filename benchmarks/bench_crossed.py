"""Crossed gaussian random intercepts at scale: the first factor (members) integrated out given the
second (hospitals), the row-level NUTS model, and lmer, on the same simulated data (hierpool issue 15).

Data: J members with 1-8 rows (93% with 1-5; mean 2.64 rows, ``_common.SIZE_PROBS``), each with a home
hospital out of H where a row lands with probability 0.8 (else a uniform hospital);
``y = 0.5 x + u_member + v_hospital + e``, tau = 1, tau_hospital = 0.5, sigma = 1, x ~ N(0, 1).
Model: ``hp.random_intercepts(df, y="y", group=["member", "hospital"], predictors=["x"])``.

Each fit runs in its own process (``--worker``) under a wall-clock limit: ``hp.prepare`` + the factory +
``hp.fit(draws=500, tune=500, chains=4, cores=2, random_seed=1)`` (log-likelihood stored only within the
memory budget, as hp.fit's default does). Reported: wall seconds of each step, divergences, the smallest
bulk ESS among intercept, beta, tau, tau__hospital and sigma, their posterior means, and the time of one
log-density + gradient of the sampled model (mean of 20 calls, PyTensor's numba backend, as nutpie calls
it). hp.fit samples a collapsed model through hierpool's nutpie Python-callback route (chains one after
another, fast compilation; hierpool.inference.nutpie); "collapsed, pymc.sample route" is the same model
through nutpie's own compilation with 2 chains at a time. lmer: ``lmer(y ~ x + (1|member) + (1|hospital))`` (REML) via
Rscript, fit time without reading the CSV.

The machine is shared (2 cores, other workers): times are rough, and the script is meant to be run once.

Usage::

    .venv/bin/python benchmarks/bench_crossed.py [--out benchmarks/results_2026-11-28_crossed.json]
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pandas as pd

sys.path.insert(0, str(Path(__file__).resolve().parent))
import _common as C  # noqa: E402

TRUTH = {"beta": 0.5, "tau": 1.0, "tau__hospital": 0.5, "sigma": 1.0}
#: (label, J, H, collapse, route); route "default" is hp.fit as it is, "pymc" the pymc.sample route
CONFIGS = [
    ("collapsed", 10_000, 100, "auto", "default"),
    ("collapsed, pymc.sample route", 10_000, 100, "auto", "pymc"),
    ("collapsed", 100_000, 1000, "auto", "default"),
    ("row level", 10_000, 100, False, "default"),
    ("row level", 30_000, 300, False, "default"),
]
LMER_R = """
suppressPackageStartupMessages(library(lme4))
args <- commandArgs(trailingOnly = TRUE)
d <- read.csv(args[1], colClasses = c(y = "numeric", x = "numeric", member = "integer", hospital = "integer"))
d$member <- factor(d$member); d$hospital <- factor(d$hospital)
t <- system.time(m <- lmer(y ~ x + (1 | member) + (1 | hospital), data = d))[["elapsed"]]
vc <- as.data.frame(VarCorr(m))
cat(sprintf('{"fit_s": %.3f, "beta": %.6f, "tau": %.6f, "tau__hospital": %.6f, "sigma": %.6f}\\n', t,
    fixef(m)[["x"]], vc$sdcor[vc$grp == "member"], vc$sdcor[vc$grp == "hospital"], vc$sdcor[vc$grp == "Residual"]))
"""


def simulate(J: int, H: int, seed: int = 1) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    sizes = rng.choice(np.arange(1, C.SIZE_PROBS.size + 1), size=J, p=C.SIZE_PROBS)
    member = np.repeat(np.arange(J, dtype=np.int64), sizes)
    home = rng.integers(0, H, J)
    hosp = np.where(rng.random(member.size) < 0.8, home[member], rng.integers(0, H, member.size))
    x = rng.normal(size=member.size)
    y = (TRUTH["beta"] * x + rng.normal(0, TRUTH["tau"], J)[member] + rng.normal(0, TRUTH["tau__hospital"], H)[hosp]
         + rng.normal(0, TRUTH["sigma"], member.size))
    return pd.DataFrame({"y": y, "x": x, "member": member, "hospital": hosp})


def worker(J: int, H: int, collapse, route: str) -> dict:
    import warnings

    import arviz as az

    import hierpool as hp
    from hierpool.inference import sampling

    if route == "pymc":  # nutpie's own compilation through pymc.sample: 2 chains at a time
        sampling._sample_small = lambda *a, **k: None
    df = simulate(J, H)
    out = {"J": J, "H": H, "rows": len(df), "collapse": str(collapse), "route": route}
    t0 = time.perf_counter()
    gd = hp.prepare(df, y="y", group=["member", "hospital"], predictors=["x"])
    out["prepare_s"] = time.perf_counter() - t0
    t0 = time.perf_counter()
    model = hp.random_intercepts(gd, collapse=collapse)
    out["build_s"] = time.perf_counter() - t0
    out["how"] = hp.describe(model).collapse
    out["grad_ms"] = grad_ms(model)
    t0 = time.perf_counter()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        dt = hp.fit(model, draws=500, tune=500, chains=4, cores=2, random_seed=1, progressbar=False)
    out["fit_s"] = time.perf_counter() - t0
    rep = json.loads(dt.attrs["hierpool_diagnostics"])
    out["divergences"] = rep.get("divergences")
    names = ["intercept", "beta", "tau", "tau__hospital", "sigma"]
    s = az.summary(dt, var_names=names, round_to="none")
    out["ess_bulk_min"] = float(s["ess_bulk"].min())
    out["r_hat_max"] = float(s["r_hat"].max())
    out["means"] = {k: float(s.loc[k if k != "beta" else "beta[x]", "mean"]) for k in names}
    out["has_loglik"] = "log_likelihood" in dt.children
    out["peak_gb"] = C.peak_rss_gb()
    return out


def grad_ms(model, calls: int = 20) -> float:
    """Milliseconds per log-density + gradient of the sampled model (numba, at the initial point)."""
    import pytensor

    logp = model.logp()
    grads = pytensor.grad(logp, model.value_vars)
    fn = model.compile_fn([logp, *grads], inputs=model.value_vars, mode="NUMBA", point_fn=False)
    ip = model.initial_point()
    args = [ip[v.name] for v in model.value_vars]
    fn(*args)
    t0 = time.perf_counter()
    for _ in range(calls):
        fn(*args)
    return 1000 * (time.perf_counter() - t0) / calls


def run_lmer(J: int, H: int, folder: Path) -> dict:
    df = simulate(J, H)
    csv = folder / f"crossed_{J}_{H}.csv"
    df.to_csv(csv, index=False, float_format="%.10g")
    script = folder / "lmer_crossed.R"
    script.write_text(LMER_R)
    t0 = time.perf_counter()
    r = subprocess.run(["Rscript", str(script), str(csv)], capture_output=True, text=True, timeout=1800)
    res = C.last_json(r.stdout) or {"error": r.stderr[-500:]}
    res["wall_s"] = time.perf_counter() - t0
    return res


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", default=str(C.HERE / "results_2026-11-28_crossed.json"))
    ap.add_argument("--timeout", type=float, default=420.0, help="wall seconds per fit (default 420)")
    ap.add_argument("--worker", nargs=4, metavar=("J", "H", "COLLAPSE", "ROUTE"))
    args = ap.parse_args()
    if args.worker:
        J, H, collapse, route = args.worker
        print(json.dumps(worker(int(J), int(H), {"auto": "auto", "False": False}[collapse], route)))
        return
    results = {"machine": "2 cores shared with 3 other workers; rough times", "draws": "4 chains x 500 draws, "
               "500 tuning steps, cores=2", "truth": TRUTH, "fits": [], "lmer": []}
    skip_row_after = None
    for label, J, H, collapse, route in CONFIGS:
        if collapse is False and skip_row_after is not None and J > skip_row_after:
            results["fits"].append({"label": label, "J": J, "H": H, "skipped": f"row level over the limit at J = "
                                    f"{skip_row_after}"})
            continue
        cmd = [sys.executable, __file__, "--worker", str(J), str(H), str(collapse), route]
        r = C.run_child(cmd, timeout=args.timeout)
        res = C.last_json(r["stdout"]) if r["rc"] == 0 else None
        if res is None:
            res = {"J": J, "H": H, "error": r["rc"], "wall_s": r["wall"], "stderr": r["stderr"][-800:]}
            if collapse is False:
                skip_row_after = J
        res["label"] = label
        results["fits"].append(res)
        print(json.dumps(res), flush=True)
    with tempfile.TemporaryDirectory() as tmp:
        for J, H in ((10_000, 100), (30_000, 300), (100_000, 1000)):
            res = {"J": J, "H": H, **run_lmer(J, H, Path(tmp))}
            results["lmer"].append(res)
            print(json.dumps(res), flush=True)
    Path(args.out).write_text(json.dumps(results, indent=1))
    print_table(results)


def print_table(results: dict) -> None:
    lm = {(r["J"], r["H"]): r for r in results["lmer"]}
    print("\n2-core machine shared with other workers (rough); hp.fit: 4 chains x 500 draws (+500 tuning)\n")
    print("| model | J x H | rows | grad ms | fit s | div | min ESS | tau | tau_h | sigma | lmer fit s | "
          "lmer tau / tau_h / sigma |")
    print("|---|---|---|---|---|---|---|---|---|---|---|---|")
    for r in results["fits"]:
        key = (r["J"], r["H"])
        lr = lm.get(key, {})
        lmer_s = f"{lr.get('fit_s', float('nan')):.1f}"
        lmer_p = f"{lr.get('tau', float('nan')):.3f} / {lr.get('tau__hospital', float('nan')):.3f} / " \
                 f"{lr.get('sigma', float('nan')):.3f}"
        if "fit_s" not in r:
            print(f"| {r['label']} | {r['J']} x {r['H']} | | | {r.get('error', r.get('skipped'))} | | | | | | "
                  f"{lmer_s} | {lmer_p} |")
            continue
        m = r["means"]
        print(f"| {r['label']} | {r['J']} x {r['H']} | {r['rows']} | {r['grad_ms']:.2f} | {r['fit_s']:.1f} | "
              f"{r['divergences']} | {r['ess_bulk_min']:.0f} | {m['tau']:.3f} | {m['tau__hospital']:.3f} | "
              f"{m['sigma']:.3f} | {lmer_s} | {lmer_p} |")


if __name__ == "__main__":
    main()
