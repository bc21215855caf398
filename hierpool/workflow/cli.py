"""The ``hierpool`` command line: argument parsing, exit codes and messages around the run pipeline.

::

    hierpool run SPEC [--out DIR] [--force] [--draws N] [--tune N] [--chains N] [--seed N]
                      [--sampler NAME] [--quiet] [--debug]
    hierpool demo [--out DIR] [--force] [--draws N] [--tune N] [--chains N] [--seed N] [--print-spec] [--debug]
    hierpool validate SPEC [--debug]

Exit codes: 0 success, 2 a bad spec, bad arguments or output files in the way (nothing is written), 1 any
other failure (reported as ``hierpool: error: ...``; ``--debug`` shows its traceback instead). The spec format is documented in :mod:`hierpool.workflow.spec`; the pipeline (fit, analyse,
plot, write) is :mod:`hierpool.workflow.run`. A bad spec or an existing output folder is refused before
PyMC, ArviZ or the analysis layer is imported (they are imported by the pipeline's steps that use them).
"""

from __future__ import annotations

import argparse
import os
import sys
from importlib import resources
from pathlib import Path

from hierpool.core.names import SAMPLERS
from hierpool.workflow import run
from hierpool.workflow.spec import SpecError, load_spec, parse_spec

__all__ = ["main", "run_spec", "demo_spec", "demo_spec_text", "build_parser"]

#: The demo's spec, inside the package (``hierpool demo --print-spec`` prints it): the one copy.
DEMO_RESOURCE = "episodes.toml"
run_spec = run.run_spec  # the pipeline's entry point, where it was before the pipeline left this module

_EPILOG = """\
spec files (TOML), in short:
  [data]        dataset = NAME | path = "file.csv|.parquet" | simulate = "episodes"|"grouped" (+ parameters = {...});
                response, group, family (required); predictors, trials (binomial), exposure (poisson);
                or formula = "y ~ x + C(c) + (1 | group)" in place of response, group and predictors
  [variants.N]  kind = "random_intercepts" (centered, lkj_eta, method = "full_bayes"|"empirical_bayes") |
                "ridge_fixed_effects" (lam = ...) |
                "regularized_hierarchical" (penalty = "horseshoe"|"laplace"|"ridge"|"elastic_net"; tau_scale,
                centered, lkj_eta; penalty_scale: ridge, laplace, elastic_net; l1_ratio: elastic_net;
                expected_nonzero, slab_scale, slab_df: horseshoe); every kind: priors = {tau = {dist =
                "HalfNormal", sigma = 1.0}}, intercept_at, collapse, target_accept ([[variants]]: also name);
                lkj_eta needs random slopes (a formula with (1 + x | group)); empirical_bayes takes no
                priors, intercept_at, centered, collapse or target_accept
  [sampling]    draws, tune, chains, sampler ("auto"|"pymc"|"nutpie"|"numpyro"|"gibbs"|"integrated"), seed,
                target_accept, cores, min_ess (sample until every population parameter's ESS reaches it),
                max_rounds (with min_ess)
  [output]      dir, ci_prob, top_k, plots, ppc, loo
`validate` and `run` also check that hp.fit accepts each variant's sampling settings (the sampler is
installed and can run the model: gibbs, integrated; NUTS settings only with NUTS) before anything is written.
See `hierpool demo --print-spec` for a complete example and the docstring of hierpool.workflow.spec for all keys.

output folder of `run` and `demo`:
  summary.txt (what was printed), spec.toml (the spec file), run.json (the sampling used, with overrides,
  timings, diagnostics),
  compare_loo.csv (PSIS-LOO comparison, with two or more variants) and one folder per variant (so no
  variant may be named like one of these four files):
  fit.nc (hp.load reads it), parameters.csv, shrinkage.csv, ranks.csv, implied_ridge.csv (hierarchical
  variants), ppc.csv, and the plots shrinkage.png, ranks.png, ridge_path.png, ppc.png.

exit codes: 0 success; 2 bad spec, bad arguments or existing output files (nothing written); 1 other errors
(printed as "hierpool: error: ..."; --debug shows the traceback).
"""


# ------------------------------------------------------------------------------------------------------
def demo_spec_text() -> str:
    """The TOML text of the demo spec shipped in the package (``hierpool/workflow/specs/episodes.toml``)."""
    return resources.files("hierpool.workflow.specs").joinpath(DEMO_RESOURCE).read_text(encoding="utf-8")


def demo_spec():
    """The demo spec, parsed: simulated hospital episodes, bernoulli, three variants."""
    return parse_spec(demo_spec_text(), source=f"<hierpool>/workflow/specs/{DEMO_RESOURCE}")


def _resolve_out(spec, out: str | None, default: str) -> Path:
    if out is not None:
        return Path(out)
    if spec.output.get("dir"):
        return Path(spec.output["dir"])
    return Path(default)


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
                   help="NUTS implementation, gibbs (Pólya-Gamma, logistic models) or integrated (gaussian and count "
                        "random intercepts; see hp.fit)")


def _add_output_flags(sp: argparse.ArgumentParser, default: str) -> None:
    sp.add_argument("--out", metavar="DIR", help=f"output folder (default: the spec's [output] dir, else {default})")
    sp.add_argument("--force", action="store_true", help="overwrite existing output files")
    sp.add_argument("--quiet", "-q", action="store_true",
                    help="print only warnings and the final line (the summary is in DIR/summary.txt)")
    _add_debug_flag(sp)


def _add_debug_flag(sp: argparse.ArgumentParser) -> None:
    sp.add_argument("--debug", action="store_true",
                    help="on an unexpected error, show its Python traceback (default: one line, exit code 1)")


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

    run_cmd = sub.add_parser(
        "run", help="fit the variants of a TOML spec; write fits, tables, plots and a summary",
        description=("Fit every variant of SPEC, print a summary (parameters, implied ridge penalty, shrinkage "
                     "and rank tables, sampler warnings, LOO comparison) and write the fits (netCDF), the "
                     "tables (CSV) and the plots (PNG) into the output folder. The spec, its data and its "
                     "models are checked completely first: a bad spec writes nothing."),
        epilog=_EPILOG, formatter_class=argparse.RawDescriptionHelpFormatter)
    run_cmd.add_argument("spec", metavar="SPEC", help="TOML model spec (e.g. models/radon.toml)")
    _add_output_flags(run_cmd, "./<spec name>-results")
    _add_sampling_flags(run_cmd)

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
    _add_debug_flag(val)
    return parser


def _overrides(args) -> dict:
    return {k: getattr(args, k) for k in run.OVERRIDE_KEYS}


def _validate(path: str) -> int:
    spec = load_spec(path)
    gd, _ = run.check(spec)
    print(f"{path}: valid. spec {spec.name!r}; data {gd!r}")
    for name, v in spec.variants.items():
        print(f"  variant {name}: {v['kind']}; fit with {spec.fit_kwargs(name)}")
    for m in run.sampling_notes(spec):
        print(f"  note: {m}")
    return 0


def _run(spec, out: Path, args) -> int:
    record = run.run_spec(spec, out, force=args.force, quiet=args.quiet)
    if args.quiet:
        for name, v in record["variants"].items():
            for m in v["sampler_warnings"]:
                print(f"hierpool: warning: {name}: {m}", file=sys.stderr)
    print(f"wrote {len(record['files'])} files to {out}/ in {record['seconds_total']:.0f} s (summary: "
          f"{out / 'summary.txt'})", flush=True)
    return 0


def main(argv=None) -> int:
    """Entry point of the ``hierpool`` console script (and ``python -m hierpool``); returns the exit code."""
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.command is None:
        parser.print_help()
        return 2
    os.environ.setdefault("MPLBACKEND", "Agg")
    out = None
    try:
        if args.command == "validate":
            return _validate(args.spec)
        if args.command == "demo":
            if args.print_spec:
                print(demo_spec_text(), end="")
                return 0
            spec = demo_spec().with_sampling(**_overrides(args))
            out = _resolve_out(spec, args.out, "hierpool-demo")
        else:
            spec = load_spec(args.spec).with_sampling(**_overrides(args))
            out = _resolve_out(spec, args.out, f"{spec.name}-results")
        return _run(spec, out, args)  # run_spec refuses files in the way before importing anything heavy
    except (SpecError, FileExistsError) as err:
        print(f"hierpool: error: {err}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("hierpool: interrupted", file=sys.stderr)
        return 130
    except Exception as err:  # a failure of the run itself, not of the spec: one line, or --debug's traceback
        if args.debug:
            raise
        print(f"hierpool: error: {type(err).__name__}: {err}", file=sys.stderr)
        written = out is not None and out.is_dir() and any(out.iterdir())
        kept = f"; {out}/ keeps what was written before it: rerun with --force to overwrite it" if written else ""
        print(f"hierpool: an unexpected error; rerun with --debug to see its traceback{kept}.", file=sys.stderr)
        return 1


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
