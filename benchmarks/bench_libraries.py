"""Hand-written pieces against the libraries that could replace them: same inputs, same process.

Three comparisons, each a markdown table (median and min of a few repeats) and raw numbers in JSON:

- ``pg``: Pólya-Gamma draws PG(1, eta_i) for the rows of a bernoulli data set of J = 100k groups (the
  J = 100k Gibbs benchmark's rows, about 264k; eta ~ N(-1, 1.2)), one full sweep (one draw per row):
  ``hierpool.inference.gibbs.pg_draws`` (Devroye's sampler compiled by numba, as the Gibbs kernel draws
  them) against ``polyagamma.random_polyagamma`` (the package behind PyMC's ``pm.PolyaGamma``). Same
  distribution: the mean of 400k draws at fixed c against the exact ``E[PG(1, c)] = tanh(c/2) / (2c)``
  (z-score from the exact variance) and a two-sample Kolmogorov-Smirnov test of ours against theirs.
- ``rhat``: R-hat, bulk and tail ESS of arrays (4 chains, 1000 draws, J) for J = 10k and 100k:
  ``hierpool.inference.diagnostics.rhat_ess`` against arviz-stats' array layer (``rcParams
  ["stats.module"]`` "base", and "numba", whose array class replaces only quantiles, histograms and KDE:
  its R-hat and ESS are the base ones, a Python loop over variables). arviz-stats is timed on the first
  ``--rhat-sub`` variables and scaled to J (its cost is linear in the variables: one call per variable);
  the numbers are compared on those variables (max abs difference).
- ``normal``: exact conditional draws of gaussian group effects, (S = 4 chains x 62 draws) x J groups,
  float32 output, as ``hierpool.inference.conditional.draw_gaussian_group_effects`` writes them:
  the compiled ziggurat on xoshiro256++ (the kernel before this comparison, kept here as the reference)
  against numpy's ``Generator`` per thread block, two ways: ``standard_normal(out=...)`` into a buffer then
  a compiled affine pass, and the Generator passed into the compiled kernel (numba runs numpy's own
  normal algorithm on numpy's bit generator: the same stream as ``Generator.standard_normal``). Same
  distribution: the standardized draws ``(out - mean) / sd`` of 1M values, mean, variance and a KS test
  against N(0, 1).

Run: ``PYTHONPATH=. python benchmarks/bench_libraries.py [--only pg,rhat,normal] [--json out.json]``.
Default sizes fit a 2-core machine in a few minutes; ``--normal-groups 1000000`` is the J = 1M pipeline's
shape (about 1 GB of float32 output per variant).
"""

from __future__ import annotations

import argparse
import json
import math
import statistics
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import machine, simulate  # noqa: E402


def _times(fn, repeats: int) -> dict:
    """Wall seconds of ``repeats`` calls (after one warm-up call that compiles what needs compiling)."""
    fn()
    ts = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        ts.append(time.perf_counter() - t0)
    return {"median_s": statistics.median(ts), "min_s": min(ts), "runs_s": ts}


def _interleaved(fns: dict, repeats: int) -> dict:
    """Wall and process CPU seconds of each function, run in turns ``repeats`` times after one warm-up
    call each (on a shared machine the CPU time is the steadier number)."""
    for fn in fns.values():
        fn()
    runs = {k: [] for k in fns}
    for _ in range(repeats):
        for k, fn in fns.items():
            t0, c0 = time.perf_counter(), time.process_time()
            fn()
            runs[k].append((time.perf_counter() - t0, time.process_time() - c0))
    out = {}
    for k, v in runs.items():
        wall, cpu = [w for w, _ in v], [c for _, c in v]
        out[k] = {"median_s": statistics.median(wall), "min_s": min(wall), "cpu_median_s": statistics.median(cpu),
                  "cpu_min_s": min(cpu), "runs_s": wall, "runs_cpu_s": cpu}
    return out


def _table(title: str, head: list[str], rows: list[list]) -> str:
    out = [f"\n### {title}\n", "| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    out += ["| " + " | ".join(str(c) for c in r) + " |" for r in rows]
    return "\n".join(out)


# ------------------------------------------------------------------------------------------------------
def _reference_gibbs_kernel():
    """The Gibbs kernel ``hierpool.inference.gibbs._run`` with the hand-written Pólya-Gamma sampler in
    place of polyagamma's (its source with the one call replaced, compiled here)."""
    import inspect

    import pg_reference
    from numba import njit

    from hierpool.inference import gibbs

    src = inspect.getsource(gibbs._run.py_func)
    src = src[src.index("def _run"):]
    call = "_pg(bitgen, b[i], eta)"
    assert src.count(call) == 1, "the Gibbs kernel's Pólya-Gamma call changed: update this benchmark"
    ns = {**vars(gibbs), "_pg_ref": pg_reference._pg}
    exec(src.replace(call, "_pg_ref(rng, b[i], eta)"), ns)
    return njit(nogil=True)(ns["_run"])


def bench_pg(args) -> dict:
    from pg_reference import pg_draws_reference
    from polyagamma import random_polyagamma
    from scipy import stats

    import hierpool as hp
    from hierpool.inference import gibbs

    n_rows = len(simulate(100_000, "bernoulli", n_predictors=0, seed=1))
    rng = np.random.default_rng(0)
    eta = rng.normal(-1.0, 1.2, n_rows)
    b = np.ones(n_rows, dtype=np.int64)
    h = np.ones(n_rows)
    gen = np.random.default_rng(1)
    out = np.empty(n_rows)
    variants = {"hand-written (numba, Devroye), before": lambda: pg_draws_reference(b, eta, seed=gen),
                "`polyagamma.random_polyagamma(method='devroye')`":
                    lambda: random_polyagamma(h, eta, out=out, method="devroye", random_state=gen),
                "`polyagamma.random_polyagamma` (default: hybrid)":
                    lambda: random_polyagamma(h, eta, out=out, random_state=gen),
                "polyagamma's C sampler called from numba (`gibbs.pg_draws`), now":
                    lambda: gibbs.pg_draws(b, eta, seed=gen)}
    res = {"rows": n_rows, "sweep": _interleaved(variants, args.repeats)}
    rows = []
    base = res["sweep"][next(iter(variants))]
    for name, t in res["sweep"].items():
        rows.append([name, f"{t['median_s'] * 1e3:.1f}", f"{t['min_s'] * 1e3:.1f}", f"{t['cpu_median_s'] * 1e3:.1f}",
                     f"{t['cpu_median_s'] / n_rows * 1e9:.0f}", f"{t['cpu_median_s'] / base['cpu_median_s']:.2f}"])
    print(_table(f"Pólya-Gamma draws: one sweep of {n_rows:,} rows, b = 1, eta ~ N(-1, 1.2) "
                 f"({args.repeats} repeats, interleaved)",
                 ["sampler", "wall median ms", "wall min ms", "CPU median ms", "CPU ns / draw", "CPU / before"],
                 rows))
    # same distribution: means against the exact mean, and the package's against the hand-written (KS)
    checks = []
    n = 400_000
    for c in (0.0, 1.2, 4.0):
        mean = 0.25 if c == 0 else math.tanh(c / 2) / (2 * c)
        var = 1 / 24 if c == 0 else (math.sinh(c) - c) / (4 * c**3 * math.cosh(c / 2) ** 2)
        o = pg_draws_reference(1, np.full(n, c), seed=10)
        t = gibbs.pg_draws(1, np.full(n, c), seed=11)
        checks.append({"c": c, "exact_mean": mean, "before_mean": float(o.mean()), "now_mean": float(t.mean()),
                       "before_z": float((o.mean() - mean) / math.sqrt(var / n)),
                       "now_z": float((t.mean() - mean) / math.sqrt(var / n)),
                       "ks_p": float(stats.ks_2samp(o, t).pvalue)})
    res["checks"] = checks
    res["ks_p_rows"] = float(stats.ks_2samp(pg_draws_reference(b, eta, seed=12), gibbs.pg_draws(b, eta, seed=13)).pvalue)
    print(_table("Pólya-Gamma: same distribution (400k draws per c; z of the mean from the exact variance)",
                 ["c", "exact mean", "before (z)", "now (z)", "KS p, before vs now"],
                 [[c["c"], f"{c['exact_mean']:.5f}", f"{c['before_mean']:.5f} ({c['before_z']:+.2f})",
                   f"{c['now_mean']:.5f} ({c['now_z']:+.2f})", f"{c['ks_p']:.3f}"] for c in checks]
                 + [["rows' eta", "-", "-", "-", f"{res['ks_p_rows']:.3f}"]]))

    # the whole Gibbs iteration: J groups with 3 predictors, one chain, tune + draws iterations
    J, n_iter = args.gibbs_groups, args.gibbs_iterations
    df = simulate(J, "bernoulli", n_predictors=3, seed=2)
    pl = gibbs.plan(hp.random_intercepts(df, y="y", group="group", predictors=["x1", "x2", "x3"],
                                         family="bernoulli"))
    now_kernel, before_kernel = gibbs._run, _reference_gibbs_kernel()

    def run(kernel):
        def go():
            gibbs._run = kernel
            try:
                gibbs.sample(pl, draws=n_iter // 2, tune=n_iter - n_iter // 2, chains=1, cores=1, random_seed=3,
                             progressbar=False, max_group_effect_values=1e9)
            finally:
                gibbs._run = now_kernel
        return go

    res["gibbs"] = {"groups": J, "rows": len(df), "iterations": n_iter,
                    **_interleaved({"before": run(before_kernel), "now": run(now_kernel)}, args.repeats)}
    g = res["gibbs"]
    print(_table(f"Whole Gibbs run: bernoulli, {J:,} groups ({len(df):,} rows), 3 predictors, one chain, "
                 f"{n_iter} iterations ({args.repeats} repeats, interleaved)",
                 ["Pólya-Gamma sampler", "wall median s", "wall min s", "CPU median s", "ms / iteration (CPU)",
                  "CPU / before"],
                 [[k, f"{g[k]['median_s']:.2f}", f"{g[k]['min_s']:.2f}", f"{g[k]['cpu_median_s']:.2f}",
                   f"{g[k]['cpu_median_s'] / n_iter * 1e3:.1f}",
                   f"{g[k]['cpu_median_s'] / g['before']['cpu_median_s']:.2f}"] for k in ("before", "now")]))
    return res


# ------------------------------------------------------------------------------------------------------
def _chains(J: int, dtype, seed: int = 0) -> np.ndarray:
    """(4, 1000, J) AR(1) chains (phi 0.3: draws of group effects mix fast), each chain a little shifted."""
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((4, 1000, J)).astype(dtype)
    for d in range(1, 1000):
        x[:, d] *= np.sqrt(1 - 0.09)
        x[:, d] += 0.3 * x[:, d - 1]
    x += (0.02 * rng.standard_normal((4, 1, J))).astype(dtype)
    return x


def bench_rhat(args) -> dict:
    from arviz_base import rc_context, rcParams
    from arviz_stats.utils import get_array_function

    from hierpool.inference.diagnostics import rhat_ess

    prob = float(rcParams["stats.ci_prob"])
    res = {}
    rows = []
    for J in args.rhat_groups:
        x = _chains(J, np.float64 if J <= 10_000 else np.float32)
        sub = min(args.rhat_sub, J)
        got = {}
        ours = _times(lambda x=x, got=got: got.update(zip(("rhat", "bulk", "tail"), rhat_ess(x), strict=True)),
                      args.repeats)
        entry = {"dtype": str(x.dtype), "ours": ours, "arviz_sub": sub}
        rows.append([f"{J:,}", "hierpool `rhat_ess`", f"{ours['median_s']:.2f}", f"{ours['min_s']:.2f}", "-",
                     "1.0"])
        a = np.moveaxis(x[:, :, :sub], 2, 0).astype(np.float64)  # (V, chain, draw)
        for module in ("base", "numba"):
            with rc_context({"stats.module": module}):
                rhat_f, ess_f = get_array_function("rhat"), get_array_function("ess")

                def theirs(a=a, rhat_f=rhat_f, ess_f=ess_f):
                    return (rhat_f(a), ess_f(a, method="bulk"), ess_f(a, method="tail", prob=prob))

                out = {}
                t = _times(lambda theirs=theirs, out=out: out.update(
                    zip(("rhat", "bulk", "tail"), theirs(), strict=True)), 1)
            diff = {k: float(np.nanmax(np.abs(out[k] - got[k][:sub]))) for k in out}
            scaled = t["median_s"] * J / sub
            entry[module] = {**t, "scaled_to_J_s": scaled, "max_abs_diff": diff}
            rows.append([f"{J:,}", f"arviz-stats, stats.module={module!r}", f"{scaled:.1f}", "-",
                         ", ".join(f"{k} {v:.1e}" for k, v in diff.items()), f"{scaled / ours['median_s']:.0f}"])
        res[str(J)] = entry
        del x
    print(_table(f"R-hat, bulk and tail ESS of (4 chains, 1000 draws, J) ({args.repeats} repeats for hierpool; "
                 f"arviz-stats: one run on the first {args.rhat_sub:,} variables, scaled to J)",
                 ["J", "implementation", "median s", "min s", "max abs diff vs hierpool", "time / ours"], rows))
    return res


# ------------------------------------------------------------------------------------------------------
def _normal_variants():
    """The three implementations of the kernel ``out[s, j] = c[s, k_j] e_sj + sd[s, k_j] z``, same layout."""
    from numba import njit

    # the compiled ziggurat on xoshiro256++ (the hand-written kernel before this comparison)
    from ziggurat_reference import gaussian_conditional_draws as ziggurat

    from hierpool.core.kernels import each_in_threads

    @njit(cache=True, nogil=True)
    def affine(out_row, z, j0, s, ybar, xbar, size_idx, a, b, c, sd):
        P = xbar.shape[1]
        for q in range(z.shape[0]):
            j = j0 + q
            e = ybar[j] - a[s]
            for p in range(P):
                e -= xbar[j, p] * b[s, p]
            k = size_idx[j]
            out_row[q] = c[s, k] * e + sd[s, k] * z[q]

    def numpy_out(out, seed_seq, ybar, xbar, size_idx, a, b, c, sd, block_values=1 << 20, chunk=1 << 16):
        S, J = out.shape
        per = max(1, block_values // max(J, 1))
        starts = list(range(0, S, per))
        children = seed_seq.spawn(len(starts))

        def work(i):
            gen = np.random.Generator(np.random.PCG64(children[i]))
            z = np.empty(min(chunk, J))
            for s in range(starts[i], min(S, starts[i] + per)):
                for j0 in range(0, J, chunk):
                    m = min(chunk, J - j0)
                    gen.standard_normal(out=z[:m])
                    affine(out[s, j0:j0 + m], z[:m], j0, s, ybar, xbar, size_idx, a, b, c, sd)

        each_in_threads(work, range(len(starts)))

    from hierpool.core import kernels as K

    def generator_in_kernel(bitgen):
        def run(out, seed_seq, *args):
            K.gaussian_conditional_draws(out, seed_seq, *args, bit_generator=bitgen)
        return run

    return {"compiled ziggurat (xoshiro256++), hand-written": ziggurat,
            "numpy Generator.standard_normal(out=) + compiled affine pass": numpy_out,
            "numpy Generator (PCG64) inside the compiled kernel": generator_in_kernel(np.random.PCG64),
            "numpy Generator (SFC64) inside the compiled kernel": generator_in_kernel(np.random.SFC64)}


def bench_normal(args) -> dict:
    from scipy import stats

    S, J = 4 * 62, args.normal_groups
    rng = np.random.default_rng(3)
    n = rng.choice(np.arange(1, 9), size=J, p=[0.30, 0.25, 0.20, 0.12, 0.06, 0.04, 0.02, 0.01])
    sizes, size_idx = np.unique(n, return_inverse=True)
    P = 3
    ybar, xbar = rng.standard_normal(J), rng.standard_normal((J, P))
    a, b = rng.standard_normal(S), 0.3 * rng.standard_normal((S, P))
    t2, s2 = rng.uniform(0.5, 1.5, (S, 1)), rng.uniform(0.5, 1.5, (S, 1))
    d = s2 + sizes[None] * t2
    c, sd = sizes[None] * t2 / d, np.sqrt(s2 * t2 / d)
    inputs = (ybar, xbar, size_idx.astype(np.int64), a, b, c, sd)
    out = np.empty((S, J), dtype=np.float32)
    res = {"draws": S, "groups": J, "values": S * J}
    variants = _normal_variants()
    times = _interleaved({name: (lambda fn=fn: fn(out, np.random.SeedSequence(7), *inputs))
                          for name, fn in variants.items()}, args.repeats)
    rows = []
    base = None
    m = max(1, 1_000_000 // J)  # same distribution: standardize the first rows' draws (1M values)
    e = ybar[None, :] - a[:m, None] - b[:m] @ xbar.T
    k, rows_m = size_idx[None, :], np.arange(m)[:, None]
    for name, fn in variants.items():
        fn(out, np.random.SeedSequence(8), *inputs)
        zs = ((out[:m].astype(np.float64) - c[rows_m, k] * e) / sd[rows_m, k]).ravel()
        check = {"mean": float(zs.mean()), "var": float(zs.var()), "ks_p": float(stats.kstest(zs, "norm").pvalue),
                 "n": int(zs.size)}
        t = times[name]
        res[name] = {**t, "check": check}
        base = base or t
        rows.append([name, f"{t['median_s']:.3f}", f"{t['min_s']:.3f}", f"{t['cpu_median_s']:.3f}",
                     f"{t['cpu_median_s'] / (S * J) * 1e9:.2f}", f"{t['cpu_median_s'] / base['cpu_median_s']:.2f}",
                     f"{check['mean']:+.4f}", f"{check['var']:.4f}", f"{check['ks_p']:.2f}"])
    print(_table(f"Exact conditional normal draws: {S} draws x {J:,} groups, float32 output, 2 threads "
                 f"({args.repeats} repeats, interleaved; check on {res[name]['check']['n']:,} standardized draws: "
                 "mean (MCSE 0.001), variance (MCSE 0.0014), KS p against N(0, 1))",
                 ["implementation", "wall median s", "wall min s", "CPU median s", "CPU ns / value",
                  "CPU / ziggurat", "mean", "var", "KS p"],
                 rows))
    return res


def main(argv=None) -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--only", default="pg,rhat,normal", help="comma-separated: pg, rhat, normal")
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--rhat-groups", type=lambda s: [int(v) for v in s.split(",")], default=[10_000, 100_000])
    p.add_argument("--rhat-sub", type=int, default=1000, help="variables arviz-stats is timed on")
    p.add_argument("--gibbs-groups", type=int, default=20_000)
    p.add_argument("--gibbs-iterations", type=int, default=300)
    p.add_argument("--normal-groups", type=int, default=100_000)
    p.add_argument("--json", type=Path, default=None)
    args = p.parse_args(argv)
    results = {"machine": machine(), "args": {k: str(v) for k, v in vars(args).items()}}
    print(f"# bench_libraries\n\n{results['machine']}")
    benches = {"pg": bench_pg, "rhat": bench_rhat, "normal": bench_normal}
    for name in args.only.split(","):
        t0 = time.perf_counter()
        results[name] = benches[name](args)
        results[name]["total_s"] = time.perf_counter() - t0
    if args.json:
        args.json.write_text(json.dumps(results, indent=1, default=float))


if __name__ == "__main__":
    main()
