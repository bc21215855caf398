"""The run pipeline of a model spec: load the data, build each variant's model, fit, analyse, plot, write.

Each step is one function taking a checked :class:`~hierpool.workflow.spec.ModelSpec`;
:func:`run_spec` chains them::

    check_output(spec, out)          # refuse files in the way: cheap, before anything heavy is imported
    gd, models = check(spec)         # load_data -> prepare_data -> build_model -> check_fit_settings, per variant
    for each variant:
        dt = fit_variant(...)        # hp.fit, its sampler warnings caught
        res = analyse_variant(...)   # summary, shrinkage, ranks, implied ridge, ppc
        write_tables(res, dir); draw_plots(res, dt, dir)
    compare_variants(fits)           # PSIS-LOO, with two or more variants

Nothing is written unless the whole spec (data, columns, every model, the sampler and sampling settings
of every variant as :func:`hierpool.fit` checks them before sampling) is valid and, without ``force``, no
file to write exists yet. PyMC, ArviZ and the analysis layer are imported inside the functions that need
them, so that refusing a run costs no more than reading the spec.

Output folder: ``summary.txt`` (what was printed), ``spec.toml``, ``run.json`` (sampling, timings,
diagnostics, the files written), ``compare_loo.csv`` (two or more variants) and per variant ``fit.nc``,
``parameters.csv``, ``shrinkage.csv``, ``ranks.csv``, ``implied_ridge.csv`` (hierarchical variants),
``ppc.csv`` and the plots ``shrinkage.png``, ``ranks.png``, ``ridge_path.png``, ``ppc.png``.
"""

from __future__ import annotations

import json
import logging
import platform
import sys
import time
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from hierpool.core.version import __version__
from hierpool.workflow.schema import OUTPUT_FILES, SOURCE_KEYS, SamplingTable, SpecError, simulator

if TYPE_CHECKING:
    import pandas as pd
    import pymc as pm

    from hierpool.analysis.ppc import PPCResult
    from hierpool.analysis.report import FitSummary
    from hierpool.data.grouped import GroupedData
    from hierpool.workflow.spec import ModelSpec

__all__ = ["RunPrinter", "VariantResults", "analyse_variant", "build_model", "check", "check_fit_settings",
           "check_output", "compare_variants", "draw_plots", "fit_variant", "load_data", "planned_files",
           "prepare_data", "run_spec", "sampling_notes", "write_tables"]

#: Rows of the rank table drawn in ranks.png.
RANKS_SHOWN = 30
#: Posterior predictive draws of the checks (ppc.csv, ppc.png).
PPC_DRAWS = 200


class RunPrinter:
    """Progress lines (printed unless quiet) and summary lines (printed unless quiet, and kept for summary.txt)."""

    def __init__(self, quiet: bool = False):
        self.quiet = quiet
        self.lines: list[str] = []

    def progress(self, msg: str) -> None:
        if not self.quiet:
            print(msg, flush=True)

    def summary(self, msg: str = "") -> None:
        self.lines.append(msg)
        if not self.quiet:
            print(msg, flush=True)


# ------------------------------------------------------------------------------------------------------
# 1. data and models
def load_data(spec: ModelSpec) -> pd.DataFrame:
    """Read, load or simulate the data of ``[data]``; problems become :class:`SpecError` naming the key."""
    import pandas as pd

    d = spec.data
    try:
        if "dataset" in d:
            from hierpool.data.datasets import load

            return load(d["dataset"])
        if "simulate" in d:
            return simulator(d["simulate"])(**dict(d.get("parameters", {})))
        path = spec.data_path()
        if not path.exists():
            raise SpecError(f"[data] path = {d['path']!r}: file {str(path)!r} does not exist.", spec.where)
        return pd.read_csv(path) if path.suffix.lower() == ".csv" else pd.read_parquet(path)
    except SpecError:
        raise
    except ImportError as err:
        raise SpecError(f"[data]: {err}", spec.where) from err
    except (TypeError, ValueError, OSError) as err:
        key = next(k for k in SOURCE_KEYS if k in d)
        raise SpecError(f"[data] {key} = {d[key]!r}: could not get the data: {err}", spec.where) from err


def prepare_data(spec: ModelSpec, df: pd.DataFrame | None = None) -> GroupedData:
    """Check the data's columns and values against ``[data]`` and return a :class:`GroupedData`.

    ``df`` defaults to :func:`load_data`. Every missing column is named, with the data's columns.
    """
    from hierpool.data.prepare import prepare

    df = load_data(spec) if df is None else df
    kw = spec.prepare_kwargs()
    if "formula" in kw:  # the columns the formula names (it was parsed when the spec was checked)
        from hierpool.data.formula import parse_formula

        f = parse_formula(kw["formula"])
        cols = [("formula", c) for c in (f.response, f.failures, f.group, f.exposure, *f.columns) if c is not None]
    else:
        cols = [("response", kw["y"]), ("group", kw["group"])]
        cols += [("predictors", p) for p in kw["predictors"]]
    cols += [(k, kw[k]) for k in ("trials", "exposure") if isinstance(kw.get(k), str)]
    missing = [(key, c) for key, c in cols if c not in df.columns]
    if missing:
        shown = ", ".join(repr(c) for c in list(df.columns)[:25])
        more = "" if df.shape[1] <= 25 else f", ... ({df.shape[1]} in all)"
        raise SpecError([f"[data] {key}: column {c!r} is not in the data; the data's columns are: "
                         f"{shown}{more}." for key, c in missing], spec.where)
    try:
        return prepare(df, **kw)
    except (TypeError, ValueError) as err:
        raise SpecError(f"[data]: the data do not fit the spec: {err}", spec.where) from err


def build_model(spec: ModelSpec, variant: str, gd: GroupedData) -> pm.Model:
    """The ``pm.Model`` of one variant on ``gd``: its kind's factory with its settings."""
    from hierpool.models import factories

    kind = spec.variants[variant]["kind"]
    try:
        return getattr(factories, kind)(gd, **spec.factory_kwargs(variant))
    except (TypeError, ValueError) as err:
        raise SpecError(f"[variants.{variant}] (kind = {kind!r}): {err}", spec.where) from err


#: ``[sampling]`` keys that only sampling uses (``method = "empirical_bayes"`` takes draws, chains and seed).
SAMPLING_ONLY = ("sampler", "tune", "target_accept", "cores", "min_ess", "max_rounds")
#: ``[sampling]`` keys that the ``run`` and ``demo`` commands can override (``--draws``, ...).
OVERRIDE_KEYS = ("draws", "tune", "chains", "seed", "sampler")


def _from_sampling(key: str) -> str:
    """Where a ``[sampling]`` value comes from, as messages name it."""
    return f"from [sampling] or --{key}" if key in OVERRIDE_KEYS else "from [sampling]"


def _setting_sources(spec: ModelSpec, variant: str, kw: dict) -> str:
    """The settings of a variant's fit that decide how it is sampled, each with where it was given."""
    v = spec.variants[variant]
    if kw.get("method") == "empirical_bayes":
        return f"method = 'empirical_bayes' (from [variants.{variant}])"
    parts = [f"sampler = {kw['sampler']!r} ({_from_sampling('sampler')})"]
    for k in ("target_accept", "cores", "min_ess", "max_rounds"):
        if k in kw:
            where = f"from [variants.{variant}]" if k in v else _from_sampling(k)
            parts.append(f"{k} = {kw[k]!r} ({where})")
    return ", ".join(parts)


def check_fit_settings(spec: ModelSpec, variant: str, model: pm.Model) -> str | None:
    """The problem, if any, that :func:`hierpool.fit` would refuse this variant's model with, before sampling.

    Runs :func:`hierpool.inference.sampling.check_fit` (the same checks, nothing sampled) with the variant's
    fit settings: the sampler is installed and can run the model (``gibbs``, ``integrated``), the settings
    suit the sampler and the method. Returns one line naming the variant, the settings and hp.fit's reason.
    """
    from hierpool.inference.sampling import check_fit

    kw = spec.fit_kwargs(variant)
    try:
        check_fit(model, **kw)
    except (ImportError, TypeError, ValueError) as err:
        kind = spec.variants[variant]["kind"]
        settings = _setting_sources(spec, variant, kw)
        return f"[variants.{variant}] (kind = {kind!r}) cannot be fitted with {settings}: {err}"
    return None


def _sampling_only_given(spec: ModelSpec) -> list[str]:
    """The :data:`SAMPLING_ONLY` keys of ``[sampling]`` given (those always present: when not the default)."""
    s, fields = spec.sampling, SamplingTable.model_fields
    return [k for k in SAMPLING_ONLY if k in s and (k not in SamplingTable.ALWAYS or s[k] != fields[k].default)]


def sampling_notes(spec: ModelSpec) -> list[str]:
    """Which ``[sampling]`` settings an empirical-Bayes variant does not use, when other variants sample (with
    no variant sampling, :func:`check` refuses them): one line per such variant, for the printed output."""
    given = _sampling_only_given(spec)
    if not given:
        return []
    return [f"variant {n} (method = 'empirical_bayes') samples nothing: it does not use [sampling] "
            f"{', '.join(given)}, which apply to the other variants." for n, v in spec.variants.items()
            if v.get("method") == "empirical_bayes"]


def _unused_sampling(spec: ModelSpec) -> list[str]:
    """``[sampling]`` keys that no variant uses: every variant is empirical Bayes, which samples nothing."""
    if any(v.get("method") != "empirical_bayes" for v in spec.variants.values()):
        return []
    return [f"[sampling] {k} = {spec.sampling[k]!r} ({_from_sampling(k)}) applies to no variant: every variant "
            "has method = 'empirical_bayes', which samples nothing (it takes draws, chains and seed only); "
            "remove it." for k in _sampling_only_given(spec)]


def check(spec: ModelSpec) -> tuple[GroupedData, dict[str, pm.Model]]:
    """Check everything that can be checked without sampling: the data (columns, values), every model, and
    that :func:`hierpool.fit` takes each variant's fit settings (:func:`check_fit_settings`).

    Returns
    -------
    (GroupedData, dict)
        The data and ``{variant: pm.Model}`` in the spec's order.

    Raises
    ------
    SpecError
        With the problems of every variant at once.
    """
    gd = prepare_data(spec)
    problems, models = [], {}
    top_k = spec.output.get("top_k")
    if top_k and top_k > gd.n_groups:  # every group would be in the top k: P(top k) = 1 says nothing
        problems.append(f"[output] top_k = {top_k} exceeds the number of groups in the data ({gd.n_groups}); "
                        f"choose top_k <= {gd.n_groups}.")
    problems += _unused_sampling(spec)
    for name in spec.variants:
        try:
            models[name] = build_model(spec, name, gd)
        except SpecError as err:
            problems.extend(err.problems)
            continue
        problem = check_fit_settings(spec, name, models[name])
        if problem:
            problems.append(problem)
    if problems:
        raise SpecError(problems, spec.where)
    return gd, models


# ------------------------------------------------------------------------------------------------------
# 2. the output folder
def planned_files(spec: ModelSpec) -> list[str]:
    """The files a run of ``spec`` writes, relative to its output folder (``compare_loo.csv`` and ``ppc.png``
    may be missing in the end: no pointwise log-likelihood, or a plot that failed)."""
    files = [f for f in OUTPUT_FILES if f != "compare_loo.csv"]
    out = spec.output
    if out["loo"] and len(spec.variants) >= 2:
        files.append("compare_loo.csv")
    for name in spec.variants:
        files += [f"{name}/fit.nc", f"{name}/parameters.csv", f"{name}/shrinkage.csv", f"{name}/ranks.csv"]
        if spec.hierarchical(name):
            files.append(f"{name}/implied_ridge.csv")
        if out["ppc"]:
            files.append(f"{name}/ppc.csv")
        if out["plots"]:
            files += [f"{name}/shrinkage.png", f"{name}/ranks.png", f"{name}/ridge_path.png"]
            if out["ppc"]:
                files.append(f"{name}/ppc.png")
    return files


def check_output(spec: ModelSpec, out_dir, *, force: bool = False) -> Path:
    """Refuse an output folder that already holds a file of this run (unless ``force``), that is a file or
    lies under one, or where a variant's folder would be a file.

    Imports nothing: :func:`run_spec` calls it before it imports PyMC, ArviZ or the analysis layer.

    Raises
    ------
    FileExistsError
    """
    out_dir = Path(out_dir)
    if out_dir.exists() and not out_dir.is_dir():
        raise FileExistsError(f"--out {str(out_dir)!r} exists and is not a folder.")
    parent = out_dir.parent  # the nearest one that exists (or is a link) must be a folder to create it in
    while not (parent.exists() or parent.is_symlink()) and parent != parent.parent:
        parent = parent.parent
    if not parent.is_dir():
        what = "is not a folder" if parent.exists() else "is a broken link"
        raise FileExistsError(f"--out {str(out_dir)!r} cannot be created: {str(parent)!r} {what}.")
    blocked = [n for n in spec.variants if (out_dir / n).exists() and not (out_dir / n).is_dir()]
    if blocked:
        raise FileExistsError(f"{str(out_dir)!r} holds a file where a variant's folder goes: "
                              f"{', '.join(blocked)}; move it or choose another --out (--force overwrites files "
                              "inside the variants' folders, not a file in place of one).")
    existing = [f for f in planned_files(spec) if (out_dir / f).exists()]
    if existing and not force:
        shown = ", ".join(existing[:5]) + (f", ... ({len(existing)} in all)" if len(existing) > 5 else "")
        raise FileExistsError(f"{str(out_dir)!r} already holds output files ({shown}); pass --force to "
                              "overwrite them or choose another --out.")
    return out_dir


# ------------------------------------------------------------------------------------------------------
# 3. one variant: fit, analyse, write, plot
def _warning_lines(caught) -> list[str]:
    seen, out = set(), []
    for w in caught:
        msg = str(w.message).strip()
        if msg and msg not in seen:
            seen.add(msg)
            out.append(msg)
    return out


def fit_variant(spec: ModelSpec, variant: str, model: pm.Model, *, progressbar: bool = False):
    """Sample one variant with :func:`hierpool.fit` and the spec's settings.

    Returns
    -------
    (xr.DataTree, float, list of str)
        The fit, the seconds it took and the sampler's warnings (divergences, R-hat, ESS), each once.
    """
    from hierpool.inference.diagnostics import HierpoolSamplingWarning
    from hierpool.inference.sampling import fit

    t = time.perf_counter()
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", HierpoolSamplingWarning)
        dt = fit(model, progressbar=progressbar, **spec.fit_kwargs(variant))
    sampler = _warning_lines([w for w in caught if issubclass(w.category, HierpoolSamplingWarning)])
    return dt, time.perf_counter() - t, sampler


@dataclass
class VariantResults:
    """What :func:`analyse_variant` computes from one fit (None where the spec asked for none)."""

    summary: FitSummary
    shrinkage: pd.DataFrame
    ranks: pd.DataFrame
    implied_ridge: pd.DataFrame | None
    ppc: PPCResult | None
    ci_prob: float


def analyse_variant(spec: ModelSpec, variant: str, dt, n_groups: int) -> VariantResults:
    """The tables of one fit: summary, shrinkage, ranks, implied ridge (hierarchical variants), ppc."""
    from hierpool.analysis.ppc import ppc
    from hierpool.analysis.ranking import rank_groups
    from hierpool.analysis.report import summarize
    from hierpool.analysis.shrinkage import implied_ridge, shrinkage

    ci_prob, top_k = spec.output["ci_prob"], spec.output["top_k"]
    return VariantResults(
        summary=summarize(dt, ci_prob=ci_prob, head=5),
        shrinkage=shrinkage(dt, ci_prob=ci_prob),
        ranks=rank_groups(dt, ci_prob=ci_prob, top_k=top_k or None),
        implied_ridge=implied_ridge(dt, ci_prob=ci_prob) if spec.hierarchical(variant) else None,
        ppc=(ppc(dt, random_seed=spec.sampling["seed"], plot=False, n_draws=PPC_DRAWS)
             if spec.output["ppc"] else None),
        ci_prob=ci_prob,
    )


def write_tables(res: VariantResults, folder: Path) -> None:
    """parameters.csv, shrinkage.csv, ranks.csv, implied_ridge.csv and ppc.csv (those computed)."""
    res.summary.parameters.to_csv(folder / "parameters.csv", index_label="parameter")
    res.shrinkage.to_csv(folder / "shrinkage.csv", index=False)
    res.ranks.to_csv(folder / "ranks.csv", index=False)
    if res.implied_ridge is not None:
        res.implied_ridge.to_csv(folder / "implied_ridge.csv", index=False)
    if res.ppc is not None:
        res.ppc.table.to_csv(folder / "ppc.csv", index=False)


def draw_plots(res: VariantResults, dt, folder: Path) -> None:
    """shrinkage.png, ranks.png, ridge_path.png and ppc.png; a failed ppc plot is a warning, not an error."""
    import matplotlib

    if "matplotlib.pyplot" not in sys.modules:
        matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from hierpool.analysis.ppc import ppc_plot
    from hierpool.analysis.shrinkage import ridge_path
    from hierpool.plots import caterpillar, ridge_path_plot, shrinkage_plot

    for fname, fig in (
        ("shrinkage.png", shrinkage_plot(res.shrinkage)),
        ("ranks.png", caterpillar(res.ranks, top=min(RANKS_SHOWN, len(res.ranks)))),
        ("ridge_path.png", ridge_path_plot(ridge_path(dt))),
    ):
        fig.savefig(folder / fname, dpi=100)
        plt.close(fig)
    if res.ppc is not None:
        try:  # a failed plot should not throw away a long run: report it and go on
            fig = ppc_plot(res.ppc)
        except Exception as err:  # noqa: BLE001
            warnings.warn(f"could not draw {folder.name}/ppc.png: {type(err).__name__}: {err}", stacklevel=1)
        else:
            fig.savefig(folder / "ppc.png", dpi=100)
            plt.close(fig)


def _fmt_table(df, **kw) -> str:
    return df.to_string(index=False, float_format=lambda v: f"{v:.4g}", **kw)


def _summarize_variant(p: RunPrinter, name: str, kind: str, res: VariantResults, notes: list[str]) -> None:
    p.summary("")
    p.summary("=" * 100)
    p.summary(f"{name}  ({kind})")
    p.summary("=" * 100)
    p.summary(res.summary.to_text())
    shown = res.ranks.head(5)[["group", "n", "estimate", "rank_mean", "rank_low", "rank_high", "p_top_k"]]
    p.summary("")
    p.summary(f"top groups by posterior rank ({res.ci_prob:.0%} rank intervals; p_top_k: P(rank <= "
              f"{res.ranks.attrs['top_k']})):")
    p.summary(_fmt_table(shown))
    if res.ppc is not None:
        p.summary("")
        flagged = res.ppc.flagged
        p.summary("posterior predictive checks: " + (f"FLAGGED {', '.join(flagged)} (p < 0.025 or > 0.975)"
                                                      if flagged else "no statistic flagged"))
    for m in notes:
        p.summary(f"note: {m}")


# ------------------------------------------------------------------------------------------------------
# 4. the variants together
def compare_variants(fits: dict):
    """PSIS-LOO comparison of the fits that hold a pointwise log-likelihood.

    Returns
    -------
    (pandas.DataFrame or None, list of str)
        :func:`hierpool.compare`'s table (None with fewer than two usable fits) and its warnings.
    """
    usable = {n: d for n, d in fits.items() if "log_likelihood" in d.children}
    if len(usable) < 2:
        return None, []
    from hierpool.analysis.compare import compare

    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        table = compare(usable)
    return table, _warning_lines(caught)


def run_spec(spec: ModelSpec, out_dir, *, force: bool = False, quiet: bool = False,
             progressbar: bool | None = None) -> dict:
    """Validate a spec completely, then fit its variants and write fits, tables, plots and a summary.

    Nothing is written unless the whole spec (data, columns, every model) is valid and, without
    ``force``, none of the files to write exists yet (checked first, before anything heavy is imported).

    Parameters
    ----------
    spec : ModelSpec
        From :func:`hierpool.workflow.spec.load_spec` (sampling overrides applied with ``spec.with_sampling``).
    out_dir : str or Path
    force : bool
        Overwrite existing output files.
    quiet : bool
        Print nothing (the summary is in ``summary.txt``).
    progressbar : bool, optional
        The sampler's progress bar; default: shown when not quiet and stderr is a terminal.

    Returns
    -------
    dict
        What was written and measured (the content of ``run.json``; ``files`` lists every file written).

    Raises
    ------
    SpecError
        The data or a model do not fit the spec.
    FileExistsError
        Output files in the way (without ``force``).

    Examples
    --------
    >>> from hierpool.workflow.spec import load_spec
    >>> spec = load_spec("models/radon.toml").with_sampling(draws=200, tune=200)   # doctest: +SKIP
    >>> run_spec(spec, "radon-results")["files"][:3]                                # doctest: +SKIP
    ['summary.txt', 'spec.toml', 'run.json']
    """
    out_dir = check_output(spec, out_dir, force=force)
    logger = logging.getLogger("pymc")
    level = logger.level
    if quiet:  # PyMC logs which sampler runs at INFO level
        logger.setLevel(logging.WARNING)
    try:
        return _run(spec, out_dir, quiet=quiet,
                    progressbar=(not quiet) and sys.stderr.isatty() if progressbar is None else progressbar)
    finally:
        logger.setLevel(level)


def _run(spec: ModelSpec, out_dir: Path, *, quiet: bool, progressbar: bool) -> dict:
    from hierpool.core import names as N
    from hierpool.inference.storage import save

    p = RunPrinter(quiet)
    t0 = time.perf_counter()
    p.progress(f"hierpool {__version__}: spec {spec.name!r}" + (f" ({spec.source})" if spec.source else ""))
    p.progress("checking the spec, the data and the models ...")
    gd, models = check(spec)
    s = spec.sampling
    p.summary(f"spec {spec.name!r}: {spec.description}".rstrip(": "))
    p.summary(f"data: {gd!r}")
    p.summary(f"sampling: {s['chains']} chains x {s['draws']} draws (tune {s['tune']}), sampler {s['sampler']}, "
              f"seed {s['seed']}" + (f", until ESS {s['min_ess']:g}" if "min_ess" in s else ""))
    p.summary(f"variants: {', '.join(f'{n} ({v['kind']})' for n, v in spec.variants.items())}")
    for m in sampling_notes(spec):
        p.summary(f"note: {m}")
    p.progress(f"checked in {time.perf_counter() - t0:.1f} s; writing to {out_dir}/")

    out_dir.mkdir(parents=True, exist_ok=True)
    (out_dir / "spec.toml").write_text(spec.text or "# spec given as a dict\n", encoding="utf-8")
    record: dict = {"hierpool_version": __version__, "python": platform.python_version(), "spec": spec.name,
                    "source": None if spec.source is None else str(spec.source), "sampling": dict(s),
                    "output": str(out_dir), "variants": {}}
    fits = {}
    n_var = len(models)
    for i, (name, model) in enumerate(models.items(), start=1):
        kind = spec.variants[name]["kind"]
        folder = out_dir / name
        folder.mkdir(exist_ok=True)
        p.progress(f"[{i}/{n_var}] {name} ({kind}): sampling ...")
        dt, t_fit, sampler_warnings = fit_variant(spec, name, model, progressbar=progressbar)
        p.progress(f"[{i}/{n_var}] {name}: sampled in {t_fit:.1f} s; analysing ...")
        t = time.perf_counter()
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            save(dt, folder / "fit.nc", overwrite=True)
            res = analyse_variant(spec, name, dt, gd.n_groups)
            write_tables(res, folder)
            if spec.output["plots"]:
                draw_plots(res, dt, folder)
        notes = [m for m in _warning_lines(caught) if m not in sampler_warnings]
        t_an = time.perf_counter() - t
        p.progress(f"[{i}/{n_var}] {name}: done (sampling {t_fit:.1f} s, analysis {t_an:.1f} s)")
        fits[name] = dt
        _summarize_variant(p, name, kind, res, notes)
        record["variants"][name] = {
            "kind": kind, "seconds_sampling": round(t_fit, 2), "seconds_analysis": round(t_an, 2),
            "diagnostics": json.loads(dt.attrs.get(N.ATTR_DIAGNOSTICS, "{}")),
            "sampler_warnings": sampler_warnings, "notes": notes,
        }

    if spec.output["loo"] and len(fits) >= 2:
        p.summary("")
        p.summary("=" * 100)
        p.progress("comparing the variants (PSIS-LOO) ...")
        table, notes = compare_variants(fits)
        if table is None:
            p.summary("LOO comparison skipped: the fits hold no pointwise log-likelihood (too many rows).")
        else:
            table.to_csv(out_dir / "compare_loo.csv", index=False)
            p.summary("LOO comparison (hp.compare; elpd: expected log predictive density of a new row of a "
                      "known group, higher is better):")
            p.summary(_fmt_table(table[["model", "rank", "elpd", "se", "elpd_diff", "dse", "p", "weight",
                                        "n_pareto_k_bad", "warning"]]))
            for m in notes:
                p.summary(f"note: {m}")
            record["compare_loo"] = table.to_dict(orient="records")

    all_warn = [(n, m) for n, v in record["variants"].items() for m in v["sampler_warnings"]]
    p.summary("")
    if all_warn:
        p.summary("SAMPLER WARNINGS (results of these variants may be unreliable):")
        for n, m in all_warn:
            p.summary(f"  ! {n}: {m}")
    else:
        p.summary("sampler warnings: none")
    (out_dir / "summary.txt").write_text("\n".join(p.lines) + "\n", encoding="utf-8")
    record["seconds_total"] = round(time.perf_counter() - t0, 2)
    record["files"] = [f for f in planned_files(spec) if (out_dir / f).exists() or f == "run.json"]
    (out_dir / "run.json").write_text(json.dumps(record, indent=2, default=str) + "\n", encoding="utf-8")
    return record
