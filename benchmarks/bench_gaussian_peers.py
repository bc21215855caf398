"""hierpool's whole pipeline against lmer, mixedlm-rs, mixedlm and GPBoost on one gaussian data set (issue 17, target 4).

The issue's data: 3 standard-normal predictors ``x1..x3`` and a 3-level categorical ``x4`` (levels a, b, c,
equally likely, row-level), intercept 0, beta = (0.5, -0.3, 0.2), categorical effects (0, 0.4, -0.4),
tau = 0.8, sigma = 1, Geometric(0.4) rows per group (1, 2, 3, ...; mean 2.5), ``--groups`` groups. It is
simulated once (seeded) and written to Parquet (Python tools) and CSV (R); then, in each of ``--repeat``
rounds, every tool runs in its own process:

* ``hierpool``: the whole pipeline of :mod:`bench_vs_lme4`'s worker (prepare + random_intercepts +
  fit(4 chains x 1000 draws, 1000 tune) + shrinkage + rank_groups of every group); ``x4`` reaches
  ``hp.prepare`` as a pandas categorical, which treatment-codes it.
* ``lmer``: ``lme4::lmer(y ~ x1 + x2 + x3 + x4 + (1 | group), REML = TRUE)`` (``lme4_fit.R``, x4 a factor).
* ``mixedlm-rs``: ``mixedlm_rs.mixedlm("y ~ x1 + x2 + x3 + x4", groups="group").fit()`` (REML, patsy codes x4).
* ``mixedlm``: ``mixedlm.lmer("y ~ x1 + x2 + x3 + x4 + (1|group)")`` (REML).
* ``gpboost``: ``gpboost.GPModel(group_data=group, likelihood="gaussian").fit(y, X)`` with X the
  intercept, x1..x3 and the treatment-coded x4 (built inside the timing; GPBoost fits by ML, its default).

Timings: wall seconds of the model building + fit, reading the data file excluded for every tool (as
``read_s`` is for lmer and hierpool). hierpool's time is its whole pipeline (a full posterior, group
shrinkage and ranks); the peers' is their point estimate only. Peak RSS is each process's own
(ru_maxrss; ``/usr/bin/time -v`` for R). Prints a markdown table with ratios to lmer and to the fastest
Python peer, and each tool's tau and sigma. Asserts nothing about time.

Usage::

    .venv/bin/python benchmarks/bench_gaussian_peers.py --groups 10000            # quick check
    .venv/bin/python benchmarks/bench_gaussian_peers.py --groups 1000000 --repeat 3
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
import bench_vs_lme4 as B  # noqa: E402

TARGET_VS_LMER = 0.25  # issue 17 target 4: whole pipeline <= 0.25 x lmer ...
# ... and no slower than the fastest of mixedlm-rs/mixedlm and GPBoost
PEERS = ("mixedlm-rs", "mixedlm", "gpboost")
TRUTH = {"intercept": 0.0, "beta": [0.5, -0.3, 0.2], "cat": [0.0, 0.4, -0.4], "tau": 0.8, "sigma": 1.0}
LEVELS = ["a", "b", "c"]
DEFAULT_JSON = C.HERE / "results_2026-11-28_gaussian_peers.json"


def design(n_groups: int, seed: int, intercept: float):
    """The issue's design (module docstring): a frame with integer group ids 0..J-1, ``x1..x3`` and ``x4`` (a
    pandas categorical), the linear predictor of every row with the group effects (tau = TRUTH's), and the
    generator to draw the response with. Shared with ``bench_counts_glmer.py``."""
    rng = np.random.default_rng(seed)
    sizes = rng.geometric(0.4, size=n_groups)
    gidx = np.repeat(np.arange(n_groups, dtype=np.int64), sizes)
    n = gidx.size
    X = rng.normal(size=(n, 3))
    cat = rng.integers(0, 3, size=n)
    u = rng.normal(0.0, TRUTH["tau"], size=n_groups)
    eta = intercept + X @ np.asarray(TRUTH["beta"]) + np.asarray(TRUTH["cat"])[cat] + u[gidx]
    df = pd.DataFrame({"group": gidx, "x1": X[:, 0], "x2": X[:, 1], "x3": X[:, 2]})
    df["x4"] = pd.Categorical.from_codes(cat, categories=LEVELS)
    return df, eta, rng


def simulate(n_groups: int, seed: int = 17) -> pd.DataFrame:
    """The issue's gaussian data: :func:`design` plus Normal(0, sigma) noise."""
    df, eta, rng = design(n_groups, seed, TRUTH["intercept"])
    df.insert(0, "y", eta + rng.normal(0.0, TRUTH["sigma"], size=len(df)))
    return df


# ------------------------------------------------------------------------------------------------------
# peer worker: one peer's fit in this process
def peer_worker(name: str, data: str) -> None:
    df = pd.read_parquet(data)
    formula = "y ~ x1 + x2 + x3 + x4"
    if name == "mixedlm-rs":
        import mixedlm_rs as mod

        t0 = time.perf_counter()
        r = mod.mixedlm(formula, df, groups="group").fit()  # REML by default
        fit_s = time.perf_counter() - t0
        tau, sigma = float(np.sqrt(np.asarray(r.cov_re)[0, 0])), float(np.sqrt(r.scale))
        beta, extra = [float(b) for b in np.asarray(r.fe_params)], {"converged": bool(r.converged)}
    elif name == "mixedlm":
        import mixedlm as mod

        t0 = time.perf_counter()
        r = mod.lmer(formula + " + (1|group)", df)  # REML by default
        fit_s = time.perf_counter() - t0
        sig = r.sigma() if callable(r.sigma) else r.sigma
        sigma = float(sig)
        tau = float(np.asarray(r.theta).ravel()[0]) * sigma  # lme4's theta = tau / sigma
        beta, extra = [float(v) for v in r.fixef().values()], {"converged": bool(r.converged)}
    elif name == "gpboost":
        import gpboost as gpb

        t0 = time.perf_counter()
        X = pd.get_dummies(df[["x1", "x2", "x3", "x4"]], drop_first=True, dtype=float)
        X.insert(0, "Intercept", 1.0)
        m = gpb.GPModel(group_data=df["group"].to_numpy(), likelihood="gaussian")
        m.fit(y=df["y"].to_numpy(), X=X.to_numpy())
        fit_s = time.perf_counter() - t0
        cov = m.get_cov_pars()
        sigma, tau = float(np.sqrt(cov["Error_var"].iloc[0])), float(np.sqrt(cov["Group_1"].iloc[0]))
        beta, extra = [float(v) for v in np.asarray(m.get_coef()).ravel()], {}
    else:
        raise ValueError(f"peer={name!r}; valid: {PEERS}")
    print(json.dumps({"fit_s": fit_s, "peak_gb": C.peak_rss_gb(), "tau": tau, "sigma": sigma, "beta": beta,
                      "n_obs": len(df), **extra}))


def run_peer(name: str, pq: Path, args) -> dict:
    res = C.run_child([sys.executable, __file__, "--peer", name, "--data", str(pq)], timeout=args.timeout)
    out = C.last_json(res["stdout"])
    if res["rc"] != 0 or out is None:
        tail = (res["stderr"] or "").strip().splitlines()[-8:]
        print(f"  {name} FAILED (exit {res['rc']}):\n    " + "\n    ".join(tail), file=sys.stderr)
        return {"error": f"exit {res['rc']}", "wall": res["wall"]}
    out["process_wall_s"] = res["wall"]
    return out


def one_round(csv: Path, pq: Path, args) -> dict:
    hargs = argparse.Namespace(draws=1000, tune=1000, chains=4, timeout=args.timeout, skip_r=False)
    row = {}
    B.progress("  hierpool ...")
    row["hierpool"] = B.run_hierpool(pq, "gaussian", hargs)
    B.progress(f"  hierpool: total {row['hierpool'].get('total_s')}")
    B.progress("  lmer ...")
    row["lmer"] = B.run_r(csv, "gaussian", 4, False, hargs, factors=("x4",))
    B.progress(f"  lmer: {row['lmer']}")
    for name in PEERS:
        B.progress(f"  {name} ...")
        row[name] = run_peer(name, pq, args)
        B.progress(f"  {name}: {row[name]}")
    return row


def seconds(name: str, r: dict):
    """The compared time: hierpool's whole pipeline, the others' fit."""
    return r.get("total_s") if name == "hierpool" else r.get("fit_s")


def report(results: dict) -> None:
    print(f"\nMachine: {results['machine']}\nData: J = {results['groups']:,} groups, N = {results.get('n_obs')} rows")
    rows = []
    for k, rnd in enumerate(results["rounds"], 1):
        lmer = seconds("lmer", rnd["lmer"])
        peer_times = [seconds(p, rnd[p]) for p in PEERS if seconds(p, rnd[p]) is not None]
        fastest = min(peer_times) if peer_times else None
        for name in ("hierpool", "lmer", *PEERS):
            r = rnd[name]
            s = seconds(name, r)
            rows.append({"run": k, "tool": name, "seconds": s, "peak GB": r.get("peak_gb"),
                         "x lmer": B.ratio(s, lmer), "x fastest peer": B.ratio(s, fastest),
                         "tau": C.f3(r.get("tau_mean", r.get("tau"))),
                         "sigma": C.f3(r.get("sigma_mean", r.get("sigma"))), "note": r.get("error", "")})
        h = rnd["hierpool"]
        if "error" not in h and lmer and fastest:
            met = h["total_s"] <= TARGET_VS_LMER * lmer and h["total_s"] <= fastest
            rows[-5]["note"] = (f"target 4: {'met' if met else 'NOT met'}; R-hat max {h['rhat_max']:.4f}, "
                                 f"ESS bulk tau {h['ess_bulk_tau']:.0f}")
    C.print_table(rows, ["run", "tool", "seconds", "peak GB", "x lmer", "x fastest peer", "tau", "sigma", "note"],
                  f"Gaussian J = {results['groups']:,}: hierpool whole pipeline (full posterior) vs point "
                  f"estimates (truth tau = {TRUTH['tau']}, sigma = {TRUTH['sigma']}); target 4: hierpool <= "
                  f"{TARGET_VS_LMER} x lmer and <= the fastest peer")


def main(argv=None) -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--groups", type=int, default=1_000_000, help="number of groups J")
    p.add_argument("--repeat", type=int, default=3, help="rounds (every tool once per round)")
    p.add_argument("--json", default=str(DEFAULT_JSON), help="raw results ('' for none)")
    p.add_argument("--timeout", type=float, default=1800, help=argparse.SUPPRESS)
    p.add_argument("--from-json", default=None, help="only print the table of an earlier --json file")
    p.add_argument("--peer", choices=PEERS, help=argparse.SUPPRESS)
    p.add_argument("--data", help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if args.peer:
        peer_worker(args.peer, args.data)
        return
    if args.from_json:
        report(json.loads(Path(args.from_json).read_text()))
        return
    tmp = Path(tempfile.mkdtemp(prefix="hierpool_peers_"))
    results = {"machine": C.machine(), "groups": args.groups, "truth": TRUTH, "rounds": []}
    try:
        df = simulate(args.groups)
        results["n_obs"] = len(df)
        csv, pq = C.write_data(df, tmp, f"gauss_peers_{args.groups}")
        del df
        for k in range(args.repeat):
            B.progress(f"round {k + 1}/{args.repeat}, J = {args.groups:,}")
            results["rounds"].append(one_round(csv, pq, args))
            C.save_json(results, args.json)
    finally:
        C.finish(results, tmp, args.json, report)


if __name__ == "__main__":
    main()
