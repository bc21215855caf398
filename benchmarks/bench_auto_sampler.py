"""Which sampler should ``sampler="auto"`` pick for small and medium data? The integrated samplers against nutpie.

For each case (family, groups, rows per group, true tau) one data set is simulated (seeded: intercept
-1 (bernoulli), 0.5 (poisson) or 0.3 (gaussian), coefficients 0.5 and -0.3 on two standard-normal
predictors (one, 0.5, for gaussian), sigma 1; ``*_nopred``: bernoulli, and binomial with 1-20 trials a
row, intercept -1 and no predictors), the default model ``hp.random_intercepts`` is built once,
and ``hp.fit`` runs it with ``sampler="integrated"`` and with ``sampler="nutpie"`` (4 chains x 1000 draws,
1000 tuning steps, seed 3), in this order, in one process. Reported: wall seconds of the whole ``hp.fit``
(nutpie's compilation included, as a user pays it), the smallest bulk and tail ESS over intercept,
coefficients, tau (and sigma), the largest R-hat, divergences, and tau's posterior mean and sd (the two
samplers must agree within Monte Carlo error). Asserts nothing about time.

Usage::

    .venv/bin/python benchmarks/bench_auto_sampler.py --json benchmarks/results_2026-12-06_auto_sampler.json
"""

from __future__ import annotations

import argparse
import json
import sys
import time
import warnings
from pathlib import Path

import arviz as az
import numpy as np
import pandas as pd

sys.path.insert(0, str(Path(__file__).resolve().parent))
import _common as C  # noqa: E402

import hierpool as hp  # noqa: E402

COUNT_CASES = [(f, J, tau, sizes) for f in ("bernoulli", "poisson")
               for J, sizes in ((10, (5, 40)), (40, (5, 40)), (150, (5, 40)), (600, (1, 5))) for tau in (0.1, 0.8)]
#: bernoulli and binomial WITHOUT predictors: the default model integrates the group effects out by
#: (successes, trials) patterns (collapse="integrated"), which "auto" sent to nutpie before 2026-12-07
NOPRED_CASES = [(f, J, tau, sizes) for f in ("bernoulli_nopred", "binomial_nopred")
                for J, sizes in ((10, (5, 40)), (40, (5, 40)), (150, (5, 40)), (600, (1, 5))) for tau in (0.1, 0.8)]
GAUSS_CASES = [("gaussian", 5, 0.05, (1, 4)), ("gaussian", 8, 0.1, (1, 5)), ("gaussian", 18, 0.3, (10, 10)),
               ("gaussian", 30, 0.0, (1, 3)), ("gaussian", 200, 0.02, (1, 3))]


def simulate(family: str, J: int, tau: float, sizes, seed: int) -> tuple[pd.DataFrame, list[str]]:
    r = np.random.default_rng(seed)
    n = r.integers(sizes[0], sizes[1] + 1, size=J)
    g = np.repeat(np.arange(J), n)
    u = r.normal(0, tau, J)
    if family == "gaussian":
        x = r.normal(size=g.size)
        y = 0.3 + 0.5 * x + u[g] + r.normal(size=g.size)
        return pd.DataFrame({"y": y, "x": x, "group": [f"g{j}" for j in g]}), ["x"]
    if family.endswith("_nopred"):  # intercept -1, no predictors; binomial: 1-20 trials a row
        trials = np.ones(g.size, dtype=np.int64) if family.startswith("bernoulli") else r.integers(1, 21, g.size)
        y = r.binomial(trials, 1 / (1 + np.exp(-(-1.0 + u[g]))))
        df = pd.DataFrame({"y": y, "group": [f"g{j}" for j in g]})
        if family.startswith("binomial"):
            df["trials"] = trials
        return df, []
    X = r.normal(size=(g.size, 2))
    eta = (-1.0 if family == "bernoulli" else 0.5) + X @ [0.5, -0.3] + u[g]
    y = r.binomial(1, 1 / (1 + np.exp(-eta))) if family == "bernoulli" else r.poisson(np.exp(eta))
    return pd.DataFrame({"y": y, "x1": X[:, 0], "x2": X[:, 1], "group": [f"g{j}" for j in g]}), ["x1", "x2"]


def one(model, sampler: str) -> dict:
    t0 = time.perf_counter()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        dt = hp.fit(model, sampler=sampler, random_seed=3, progressbar=False, log_likelihood=False)
    wall = time.perf_counter() - t0
    post = dt["posterior"].to_dataset()
    post = post[[v for v in ("intercept", "beta", "tau", "sigma") if v in post]]
    eb, et = az.ess(post, method="bulk"), az.ess(post, method="tail")
    rep = json.loads(dt.attrs["hierpool_diagnostics"])
    return {"seconds": wall, "ess_bulk_min": min(float(eb[v].min()) for v in eb.data_vars),
            "ess_tail_min": min(float(et[v].min()) for v in et.data_vars), "rhat_max": float(rep["max_rhat"]),
            "divergences": int(rep["divergences"]), "tau_mean": float(post["tau"].mean()),
            "tau_sd": float(post["tau"].std()), "sampler": dt.attrs["hierpool_sampler"]}


def report(results: dict) -> None:
    print(f"\nMachine: {results['machine']}")
    rows = []
    for c in results["cases"]:
        for s in ("integrated", "nutpie"):
            r = c[s]
            rows.append({"family": c["family"], "groups": c["groups"], "rows/group": c["sizes"], "tau": c["tau"],
                         "sampler": s, "seconds": C.f3(r["seconds"]), "ESS bulk/tail min":
                         f"{r['ess_bulk_min']:.0f} / {r['ess_tail_min']:.0f}", "R-hat max": f"{r['rhat_max']:.3f}",
                         "divergences": r["divergences"], "tau mean (sd)": f"{r['tau_mean']:.3f} ({r['tau_sd']:.3f})"})
    C.print_table(rows, ["family", "groups", "rows/group", "tau", "sampler", "seconds", "ESS bulk/tail min",
                         "R-hat max", "divergences", "tau mean (sd)"],
                  "hp.fit with sampler='integrated' and 'nutpie' (4 x 1000 draws; whole fit, compilation included)")


def main(argv=None) -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--json", default="", help="raw results ('' for none)")
    p.add_argument("--from-json", default=None, help="only print the table of an earlier --json file")
    p.add_argument("--families", nargs="*", default=["bernoulli", "poisson", "gaussian", "bernoulli_nopred",
                                                       "binomial_nopred"])
    args = p.parse_args(argv)
    if args.from_json:
        report(json.loads(Path(args.from_json).read_text()))
        return
    results = {"machine": C.machine(), "cases": []}
    for family, J, tau, sizes in COUNT_CASES + GAUSS_CASES + NOPRED_CASES:
        if family not in args.families:
            continue
        df, preds = simulate(family, J, tau, sizes, J + int(10 * tau))
        fam = family.removesuffix("_nopred")
        model = hp.random_intercepts(hp.prepare(df, y="y", group="group", predictors=preds, family=fam,
                                                **({"trials": "trials"} if "trials" in df else {})))
        case = {"family": family, "groups": J, "sizes": f"{sizes[0]}-{sizes[1]}", "tau": tau, "n_obs": len(df),
                "collapse": hp.describe(model).collapse}
        for s in ("integrated", "nutpie"):
            case[s] = one(model, s)
        print(json.dumps(case), flush=True)
        results["cases"].append(case)
        if args.json:
            Path(args.json).write_text(json.dumps(results, indent=1))
    report(results)


if __name__ == "__main__":
    main()
