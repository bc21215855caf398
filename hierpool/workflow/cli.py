"""The ``hierpool`` command line: fit the model variants of a TOML spec and write fits, tables and plots.

::

    hierpool run SPEC [--out DIR] [--force] [--draws N] [--tune N] [--chains N] [--seed N]
                      [--sampler NAME] [--quiet]
    hierpool demo [--out DIR] [--force] [--draws N] [--tune N] [--chains N] [--seed N] [--print-spec]
    hierpool validate SPEC

Exit codes: 0 success, 2 a bad spec, bad arguments or output files in the way (nothing is written), 1 any
other failure. The spec format is documented in :mod:`hierpool.workflow.spec`.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import platform
import sys
import time
import warnings
from importlib import resources
from pathlib import Path

from hierpool.core.names import SAMPLERS
from hierpool.workflow.spec import SpecError, load_spec, parse_spec

__all__ = ["main", "run_spec", "demo_spec"]

DEMO_RESOURCE = "episodes.toml"

_EPILOG = """\
spec files (TOML), in short:
  [data]        dataset = NAME | path = "file.csv|.parquet" | simulate = "episodes"|"grouped" (+ parameters = {...});
                response, group, family (required); predictors, trials (binomial), exposure (poisson)
  [variants.N]  kind = "random_intercepts" | "ridge_fixed_effects" (lam = ...) |
                "regularized_hierarchical" (penalty = "horseshoe"|"laplace"|"ridge");
                priors = {tau = {dist = "HalfNormal", sigma = 1.0}}; target_accept
  [sampling]    draws, tune, chains, sampler ("auto"|"pymc"|"nutpie"|"numpyro"|"gibbs"), seed, target_accept, cores
  [output]      dir, ci_prob, top_k, plots, ppc, loo
See `hierpool demo --print-spec` for a complete example and the docstring of hierpool.workflow.spec for all keys.

output folder of `run` and `demo`:
  summary.txt (what was printed), spec.toml (the spec file), run.json (the sampling used, with overrides,
  timings, diagnostics),
  compare_loo.csv (PSIS-LOO comparison, with two or more variants) and one folder per variant:
  fit.nc (hp.load reads it), parameters.csv, shrinkage.csv, ranks.csv, implied_ridge.csv (hierarchical
  variants), ppc.csv, and the plots shrinkage.png, ranks.png, ridge_path.png, ppc.png.

exit codes: 0 success; 2 bad spec, bad arguments or existing output files (nothing written); 1 other errors.
"""


class _UsageError(Exception):
    """A problem to report in one line, with exit code 2."""


# ------------------------------------------------------------------------------------------------------
def demo_spec_text() -> str:
    """The TOML text of the embedded demo spec (``hierpool/workflow/specs/episodes.toml``)."""
    return resources.files("hierpool.workflow.specs").joinpath(DEMO_RESOURCE).read_text(encoding="utf-8")


def demo_spec():
    """The embedded demo spec, parsed: simulated hospital episodes, bernoulli, three variants."""
    return parse_spec(demo_spec_text(), source=f"<hierpool>/specs/{DEMO_RESOURCE}")


def _planned_files(spec, hierarchical: dict) -> list[str]:
    files = ["summary.txt", "spec.toml", "run.json"]
    out = spec.output
    if out["loo"] and len(spec.variants) >= 2:
        files.append("compare_loo.csv")
    for name in spec.variants:
        files += [f"{name}/fit.nc", f"{name}/parameters.csv", f"{name}/shrinkage.csv", f"{name}/ranks.csv"]
        if hierarchical[name]:
            files.append(f"{name}/implied_ridge.csv")
        if out["ppc"]:
            files.append(f"{name}/ppc.csv")
        if out["plots"]:
            files += [f"{name}/shrinkage.png", f"{name}/ranks.png", f"{name}/ridge_path.png"]
            if out["ppc"]:
                files.append(f"{name}/ppc.png")
    return files


class _Printer:
    def __init__(self, quiet: bool):
        self.quiet = quiet
        self.lines: list[str] = []  # what goes to summary.txt

    def progress(self, msg: str) -> None:
        if not self.quiet:
            print(msg, flush=True)

    def summary(self, msg: str = "") -> None:
        self.lines.append(msg)
        if not self.quiet:
            print(msg, flush=True)


def _fmt_table(df, **kw) -> str:
    return df.to_string(index=False, float_format=lambda v: f"{v:.4g}", **kw)


def _warning_lines(caught) -> list[str]:
    seen, out = set(), []
    for w in caught:
        msg = str(w.message).strip()
        if msg and msg not in seen:
            seen.add(msg)
            out.append(msg)
    return out


def _resolve_out(spec, out: str | None, default: str) -> Path:
    if out is not None:
        return Path(out)
    if spec.output.get("dir"):
        return Path(spec.output["dir"])
    return Path(default)


def run_spec(spec, out_dir, *, force: bool = False, quiet: bool = False, progressbar: bool | None = None) -> dict:
    """Validate a spec completely, then fit its variants and write fits, tables, plots and a summary.

    Nothing is written unless the whole spec (data, columns, every model) is valid and, without
    ``force``, none of the files to write exists yet.

    Parameters
    ----------
    spec : ModelSpec
        From :func:`hierpool.workflow.spec.load_spec` (sampling overrides applied with ``spec.with_sampling``).
    out_dir : str or Path
    force : bool
        Overwrite existing output files.
    quiet : bool
        Print nothing but warnings.
    progressbar : bool, optional
        The sampler's progress bar; default: shown when not quiet and stderr is a terminal.

    Returns
    -------
    dict
        What was written and measured (the content of ``run.json``).

    Examples
    --------
    >>> from hierpool.workflow.spec import load_spec
    >>> spec = load_spec("models/radon.toml").with_sampling(draws=200, tune=200)   # doctest: +SKIP
    >>> run_spec(spec, "radon-results")                                             # doctest: +SKIP
    """
    logger = logging.getLogger("pymc")
    level = logger.level
    if quiet:  # PyMC logs which sampler runs at INFO level
        logger.setLevel(logging.WARNING)
    try:
        return _run_spec(spec, out_dir, force=force, quiet=quiet, progressbar=progressbar)
    finally:
        logger.setLevel(level)


def _run_spec(spec, out_dir, *, force: bool, quiet: bool, progressbar: bool | None) -> dict:
    import matplotlib

    if "matplotlib.pyplot" not in sys.modules:
        matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from hierpool.analysis.compare import compare
    from hierpool.analysis.ppc import ppc, ppc_plot
    from hierpool.analysis.ranking import rank_groups
    from hierpool.analysis.report import summarize
    from hierpool.analysis.shrinkage import implied_ridge, ridge_path, shrinkage
    from hierpool.core import names as N
    from hierpool.core.version import __version__
    from hierpool.inference.diagnostics import HierpoolSamplingWarning
    from hierpool.inference.sampling import fit
    from hierpool.inference.storage import save
    from hierpool.plots import caterpillar, ridge_path_plot, shrinkage_plot

    p = _Printer(quiet)
    if progressbar is None:
        progressbar = (not quiet) and sys.stderr.isatty()
    out_dir = Path(out_dir)

    # 1. validate everything before writing anything ----------------------------------------------------
    t0 = time.perf_counter()
    p.progress(f"hierpool {__version__}: spec {spec.name!r}" + (f" ({spec.source})" if spec.source else ""))
    p.progress("checking the spec, the data and the models ...")
    gd, models = spec.validate()
    hierarchical = {name: spec.variants[name]["kind"] != "ridge_fixed_effects" for name in spec.variants}
    planned = _planned_files(spec, hierarchical)
    existing = [f for f in planned if (out_dir / f).exists()]
    if existing and not force:
        shown = ", ".join(existing[:5]) + (f", ... ({len(existing)} in all)" if len(existing) > 5 else "")
        raise FileExistsError(f"{str(out_dir)!r} already holds output files ({shown}); pass --force to "
                              "overwrite them or choose another --out.")
    if out_dir.exists() and not out_dir.is_dir():
        raise FileExistsError(f"--out {str(out_dir)!r} exists and is not a folder.")
    s = spec.sampling
    p.summary(f"spec {spec.name!r}: {spec.description}".rstrip(": "))
    p.summary(f"data: {gd!r}")
    p.summary(f"sampling: {s['chains']} chains x {s['draws']} draws (tune {s['tune']}), sampler {s['sampler']}, "
              f"seed {s['seed']}")
    p.summary(f"variants: {', '.join(f'{n} ({v['kind']})' for n, v in spec.variants.items())}")
    p.progress(f"checked in {time.perf_counter() - t0:.1f} s; writing to {out_dir}/")

    out_dir.mkdir(parents=True, exist_ok=True)
    (out_dir / "spec.toml").write_text(spec.text or "# spec given as a dict\n", encoding="utf-8")
    ci_prob, top_k = spec.output["ci_prob"], spec.output["top_k"]
    record: dict = {"hierpool_version": __version__, "python": platform.python_version(), "spec": spec.name,
                    "source": None if spec.source is None else str(spec.source), "sampling": dict(s),
                    "output": str(out_dir), "variants": {}}
    fits = {}
    n_var = len(spec.variants)

    # 2. fit and analyse each variant ---------------------------------------------------------------------
    for i, (name, model) in enumerate(models.items(), start=1):
        kind = spec.variants[name]["kind"]
        vdir = out_dir / name
        vdir.mkdir(exist_ok=True)
        p.progress(f"[{i}/{n_var}] {name} ({kind}): sampling ...")
        t = time.perf_counter()
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always", HierpoolSamplingWarning)
            dt = fit(model, progressbar=progressbar, **spec.fit_kwargs(name))
        t_fit = time.perf_counter() - t
        sampler_warnings = _warning_lines([w for w in caught if issubclass(w.category, HierpoolSamplingWarning)])
        p.progress(f"[{i}/{n_var}] {name}: sampled in {t_fit:.1f} s; analysing ...")
        t = time.perf_counter()
        notes: list[str] = []
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            save(dt, vdir / "fit.nc", overwrite=True)
            summ = summarize(dt, ci_prob=ci_prob, head=5)
            summ.parameters.to_csv(vdir / "parameters.csv", index_label="parameter")
            shr = shrinkage(dt, ci_prob=ci_prob)
            shr.to_csv(vdir / "shrinkage.csv", index=False)
            ranks = rank_groups(dt, ci_prob=ci_prob, top_k=min(top_k, gd.n_groups) if top_k else None)
            ranks.to_csv(vdir / "ranks.csv", index=False)
            if hierarchical[name]:
                implied_ridge(dt, ci_prob=ci_prob).to_csv(vdir / "implied_ridge.csv", index=False)
            ppc_res = None
            if spec.output["ppc"]:
                ppc_res = ppc(dt, random_seed=s["seed"], plot=False, n_draws=200)
                ppc_res.table.to_csv(vdir / "ppc.csv", index=False)
            if spec.output["plots"]:
                for fname, fig in (
                    ("shrinkage.png", shrinkage_plot(shr)),
                    ("ranks.png", caterpillar(ranks, top=min(30, len(ranks)))),
                    ("ridge_path.png", ridge_path_plot(ridge_path(dt))),
                ):
                    fig.savefig(vdir / fname, dpi=100)
                    plt.close(fig)
                if ppc_res is not None:
                    try:  # a failed plot should not throw away a long run: report it and go on
                        fig = ppc_plot(ppc_res)
                    except Exception as err:  # noqa: BLE001
                        warnings.warn(f"could not draw {name}/ppc.png: {type(err).__name__}: {err}", stacklevel=1)
                    else:
                        fig.savefig(vdir / "ppc.png", dpi=100)
                        plt.close(fig)
        notes = [m for m in _warning_lines(caught) if m not in sampler_warnings]
        t_an = time.perf_counter() - t
        p.progress(f"[{i}/{n_var}] {name}: done (sampling {t_fit:.1f} s, analysis {t_an:.1f} s)")
        fits[name] = dt

        p.summary("")
        p.summary("=" * 100)
        p.summary(f"{name}  ({kind})")
        p.summary("=" * 100)
        p.summary(summ.to_text())
        shown = ranks.head(5)[["group", "n", "estimate", "rank_mean", "rank_low", "rank_high", "p_top_k"]]
        p.summary("")
        p.summary(f"top groups by posterior rank ({ci_prob:.0%} rank intervals; p_top_k: P(rank <= "
                  f"{ranks.attrs['top_k']})):")
        p.summary(_fmt_table(shown))
        if ppc_res is not None:
            p.summary("")
            flagged = ppc_res.flagged
            p.summary("posterior predictive checks: " + (f"FLAGGED {', '.join(flagged)} (p < 0.025 or > 0.975)"
                                                          if flagged else "no statistic flagged"))
        for m in notes:
            p.summary(f"note: {m}")
        record["variants"][name] = {
            "kind": kind, "seconds_sampling": round(t_fit, 2), "seconds_analysis": round(t_an, 2),
            "diagnostics": json.loads(dt.attrs.get(N.ATTR_DIAGNOSTICS, "{}")),
            "sampler_warnings": sampler_warnings, "notes": notes,
        }

    # 3. compare the variants ----------------------------------------------------------------------------
    if spec.output["loo"] and len(fits) >= 2:
        p.summary("")
        p.summary("=" * 100)
        usable = {n: d for n, d in fits.items() if "log_likelihood" in d.children}
        if len(usable) < 2:
            p.summary("LOO comparison skipped: the fits hold no pointwise log-likelihood (too many rows).")
        else:
            p.progress("comparing the variants (PSIS-LOO) ...")
            with warnings.catch_warnings(record=True) as caught:
                warnings.simplefilter("always")
                table = compare(usable)
            table.to_csv(out_dir / "compare_loo.csv", index=False)
            p.summary("LOO comparison (hp.compare; elpd: expected log predictive density of a new row of a "
                      "known group, higher is better):")
            p.summary(_fmt_table(table[["model", "rank", "elpd", "se", "elpd_diff", "dse", "p", "weight",
                                        "n_pareto_k_bad", "warning"]]))
            for m in _warning_lines(caught):
                p.summary(f"note: {m}")
            record["compare_loo"] = table.to_dict(orient="records")

    # 4. sampler warnings once more, then the files ------------------------------------------------------
    all_warn = [(n, m) for n, v in record["variants"].items() for m in v["sampler_warnings"]]
    p.summary("")
    if all_warn:
        p.summary("SAMPLER WARNINGS (results of these variants may be unreliable):")
        for n, m in all_warn:
            p.summary(f"  ! {n}: {m}")
    else:
        p.summary("sampler warnings: none")
    total = time.perf_counter() - t0
    record["seconds_total"] = round(total, 2)
    record["files"] = [f for f in planned if (out_dir / f).exists() or f == "run.json"]
    (out_dir / "summary.txt").write_text("\n".join(p.lines) + "\n", encoding="utf-8")
    (out_dir / "run.json").write_text(json.dumps(record, indent=2, default=str) + "\n", encoding="utf-8")
    if all_warn and quiet:
        for n, m in all_warn:
            print(f"hierpool: warning: {n}: {m}", file=sys.stderr)
    print(f"wrote {len(record['files'])} files to {out_dir}/ in {total:.0f} s (summary: {out_dir / 'summary.txt'})",
          flush=True)
    return record


# ------------------------------------------------------------------------------------------------------
def _int_at_least(minimum: int):
    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{text!r} is not an integer") from None
        if value < minimum:
            raise argparse.ArgumentTypeError(f"{value} must be >= {minimum}")
        return value

    return parse


def _add_sampling_flags(sp: argparse.ArgumentParser) -> None:
    g = sp.add_argument_group("sampling overrides (replace the spec's [sampling] values)")
    g.add_argument("--draws", type=_int_at_least(1), metavar="N", help="posterior draws per chain")
    g.add_argument("--tune", type=_int_at_least(0), metavar="N", help="tuning steps per chain")
    g.add_argument("--chains", type=_int_at_least(1), metavar="N", help="number of chains")
    g.add_argument("--seed", type=_int_at_least(0), metavar="N", help="random seed (makes the run reproducible)")
    g.add_argument("--sampler", choices=SAMPLERS,
                   help="NUTS implementation, or gibbs (Pólya-Gamma, logistic models; see hp.fit)")


def _add_output_flags(sp: argparse.ArgumentParser, default: str) -> None:
    sp.add_argument("--out", metavar="DIR", help=f"output folder (default: the spec's [output] dir, else {default})")
    sp.add_argument("--force", action="store_true", help="overwrite existing output files")
    sp.add_argument("--quiet", "-q", action="store_true",
                    help="print only warnings and the final line (the summary is in DIR/summary.txt)")


def build_parser() -> argparse.ArgumentParser:
    from hierpool.core.version import __version__

    parser = argparse.ArgumentParser(
        prog="hierpool",
        description=("Bayesian models of grouped data: fit random intercepts, a ridge on one-hot group dummies "
                     "and a regularized hierarchical model side by side, and see how random-effects shrinkage "
                     "differs from ridge (L2) regularization on your data."),
        epilog=_EPILOG, formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--version", action="version", version=f"hierpool {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")

    run = sub.add_parser(
        "run", help="fit the variants of a TOML spec; write fits, tables, plots and a summary",
        description=("Fit every variant of SPEC, print a summary (parameters, implied ridge penalty, shrinkage "
                     "and rank tables, sampler warnings, LOO comparison) and write the fits (netCDF), the "
                     "tables (CSV) and the plots (PNG) into the output folder. The spec, its data and its "
                     "models are checked completely first: a bad spec writes nothing."),
        epilog=_EPILOG, formatter_class=argparse.RawDescriptionHelpFormatter)
    run.add_argument("spec", metavar="SPEC", help="TOML model spec (e.g. models/radon.toml)")
    _add_output_flags(run, "./<spec name>-results")
    _add_sampling_flags(run)

    demo = sub.add_parser(
        "demo", help="run the built-in example (simulated hospital episodes, about a minute)",
        description=("Run the spec shipped inside hierpool: simulated hospital episodes per member (most "
                     "members have fewer than five), readmission (bernoulli) by member with predictors age, "
                     "los, emergency; random intercepts vs ridge vs regularized. `--print-spec` shows the spec "
                     "to copy and adapt."),
        epilog=_EPILOG, formatter_class=argparse.RawDescriptionHelpFormatter)
    _add_output_flags(demo, "./hierpool-demo")
    _add_sampling_flags(demo)
    demo.add_argument("--print-spec", action="store_true", help="print the demo's TOML spec and exit")

    val = sub.add_parser(
        "validate", help="check a spec (keys, data columns, models) without fitting",
        description=("Check SPEC completely without sampling: its keys and values, that the data load and hold "
                     "the named columns with valid values, and that every variant's model builds. Exit code "
                     "0 when valid, 2 otherwise."))
    val.add_argument("spec", metavar="SPEC", help="TOML model spec")
    return parser


def _overrides(args) -> dict:
    return {k: getattr(args, k) for k in ("draws", "tune", "chains", "seed", "sampler")}


def main(argv=None) -> int:
    """Entry point of the ``hierpool`` console script (and ``python -m hierpool``); returns the exit code."""
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.command is None:
        parser.print_help()
        return 2
    os.environ.setdefault("MPLBACKEND", "Agg")
    try:
        if args.command == "demo" and args.print_spec:
            print(demo_spec_text(), end="")
            return 0
        if args.command == "validate":
            spec = load_spec(args.spec)
            gd, models = spec.validate()
            print(f"{args.spec}: valid. spec {spec.name!r}; data {gd!r}")
            for name, v in spec.variants.items():
                print(f"  variant {name}: {v['kind']}; fit with {spec.fit_kwargs(name)}")
            return 0
        if args.command == "demo":
            spec = demo_spec().with_sampling(**_overrides(args))
            out = _resolve_out(spec, args.out, "hierpool-demo")
        else:
            spec = load_spec(args.spec).with_sampling(**_overrides(args))
            out = _resolve_out(spec, args.out, f"{spec.name}-results")
        run_spec(spec, out, force=args.force, quiet=args.quiet)
        return 0
    except SpecError as err:
        print(f"hierpool: error: {err}", file=sys.stderr)
        return 2
    except FileExistsError as err:
        print(f"hierpool: error: {err}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("hierpool: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
