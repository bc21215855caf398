"""Eight schools: hierpool's collapsed summary-level model against the same model with the group effects
sampled (``collapse=False``: non-centered, ``pm.Normal(..., sigma=se)``), over several seeds.

Prior of posteriordb's eight_schools_noncentered (mu ~ Normal(0, 5), tau ~ HalfCauchy(5)); hp.fit's
defaults (nutpie, target_accept 0.8, 4 chains x 1000 draws after 1000 tuning steps). Prints divergences
and bulk ESS of tau and the intercept per configuration, summed/averaged over the seeds.

Run: ``.venv/bin/python benchmarks/eight_schools_collapse.py [--seeds 10] [--json out.json]``
"""

from __future__ import annotations

import argparse
import json
import time
import warnings

import arviz as az
import numpy as np

import hierpool as hp


def one(collapse, seed: int, target_accept=None) -> dict:
    gd = hp.prepare(hp.datasets.eight_schools(), y="effect", se="stderr", group="school")
    priors = {"intercept": hp.Prior("Normal", mu=0, sigma=5), "tau": hp.Prior("HalfCauchy", beta=5)}
    # centered=False: the non-centered form this comparison measured (the factories' default became
    # centered="auto" afterwards, issue 16)
    model = hp.random_intercepts(gd, priors=priors, collapse=collapse, centered=False)
    t0 = time.perf_counter()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        dt = hp.fit(model, chains=4, cores=2, random_seed=seed, progressbar=False, target_accept=target_accept)
    seconds = time.perf_counter() - t0
    ess = az.ess(dt["posterior"].to_dataset()[["intercept", "tau"]], method="bulk")
    return {"divergences": int(dt["sample_stats"]["diverging"].sum()), "ess_tau": float(ess["tau"]),
            "ess_intercept": float(ess["intercept"]), "seconds": seconds}


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seeds", type=int, default=10)
    ap.add_argument("--json", default=None)
    args = ap.parse_args()
    configs = {"collapsed (default)": ("auto", None), "collapse=False": (False, None),
               "collapse=False, target_accept=0.95": (False, 0.95)}
    res = {}
    for name, (collapse, ta) in configs.items():
        res[name] = [one(collapse, seed, ta) for seed in range(1, args.seeds + 1)]
    print(f"| configuration ({args.seeds} seeds x 4000 draws) | divergences (total; fits with any) | "
          "ESS bulk tau (mean, min) | ESS bulk intercept (mean) | seconds per fit (mean) |")
    print("|---|---|---|---|---|")
    for name, runs in res.items():
        d = np.array([r["divergences"] for r in runs])
        et = np.array([r["ess_tau"] for r in runs])
        print(f"| {name} | {d.sum()}; {(d > 0).sum()} | {et.mean():.0f}, {et.min():.0f} | "
              f"{np.mean([r['ess_intercept'] for r in runs]):.0f} | {np.mean([r['seconds'] for r in runs]):.1f} |")
    if args.json:
        with open(args.json, "w") as f:
            json.dump(res, f, indent=1)


if __name__ == "__main__":
    main()
