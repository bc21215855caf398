"""Model specs in TOML: which data, which model variants, how to sample, what to write.

A spec is read by :func:`load_spec`, checked completely (keys, types, choices; then, with
:meth:`ModelSpec.validate`, the data's columns and every model), and run by the ``hierpool`` command
line (:mod:`hierpool.workflow.cli`). Every problem is reported at once, each naming the key, the value and the
valid choices, before anything is fitted or written.

Format
------
.. code-block:: toml

    name = "radon"                      # optional; default: the file's stem
    description = "..."                 # optional

    [data]
    dataset = "radon"                   # one of hp.datasets.NAMES, or
    # path = "homes.csv"                # a CSV or Parquet file, relative to this spec file, or
    # simulate = "episodes"             # a simulator: "episodes" (hp.datasets.simulate_episodes) or
    #                                   # "grouped" (hp.datasets.simulate), with
    # parameters = {n_members = 2000, seed = 1}
    response = "log_radon"              # required
    group = "county"                    # required
    predictors = ["basement", "uranium"]
    family = "gaussian"                 # required: gaussian, bernoulli, binomial, poisson
    # trials = "at_bats"                # binomial: a column or one integer
    # exposure = "years"                # poisson: a column of positive exposures

    [variants.random_intercepts]        # or [[variants]] with name = "..."
    kind = "random_intercepts"
    priors = {tau = {dist = "HalfNormal", sigma = 1.0}}   # optional; a number fixes the parameter

    [variants.ridge]
    kind = "ridge_fixed_effects"
    lam = 4.0                           # prior precision of each group effect

    [variants.regularized]
    kind = "regularized_hierarchical"
    penalty = "horseshoe"               # horseshoe, laplace, ridge
    target_accept = 0.95                # a sampling setting for this variant only

    [sampling]                          # all optional
    draws = 1000
    tune = 1000
    chains = 4
    sampler = "auto"                    # auto, pymc, nutpie, numpyro, gibbs
    seed = 1
    # target_accept = 0.9
    # cores = 2

    [output]                            # all optional
    # dir = "radon-results"             # default output folder of `hierpool run` (relative to the
    #                                   # current directory); --out overrides it
    ci_prob = 0.9                       # intervals in the tables
    # top_k = 10                        # p_top_k in the rank table (default: 10% of the groups)
    plots = true
    ppc = true                          # posterior predictive checks (table and plot) per variant
    loo = true                          # PSIS-LOO comparison of the variants (hp.compare)

Settings of each variant ``kind`` are the keyword arguments of the factory of that name
(:func:`hierpool.random_intercepts`, :func:`hierpool.ridge_fixed_effects`,
:func:`hierpool.regularized_hierarchical`), plus ``target_accept``.
"""

from __future__ import annotations

import inspect
import re
import tomllib
from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd

from hierpool.core import names as N

__all__ = ["ModelSpec", "SpecError", "load_spec", "parse_spec", "KINDS", "SIMULATORS"]

TOP_KEYS = ("name", "description", "data", "variants", "sampling", "output")
DATA_KEYS = ("dataset", "path", "simulate", "parameters", "response", "group", "predictors", "family",
             "trials", "exposure")
SOURCE_KEYS = ("dataset", "path", "simulate")
_COMMON_VARIANT_KEYS = ("kind", "name", "priors", "collapse", "target_accept")
#: Settings allowed for each variant kind (besides kind, name, priors, collapse, target_accept).
KINDS = {
    "random_intercepts": ("centered",),
    "ridge_fixed_effects": ("lam",),
    "regularized_hierarchical": ("penalty", "penalty_scale", "expected_nonzero", "slab_scale", "slab_df",
                                 "tau_scale", "centered"),
}
SAMPLING_KEYS = ("draws", "tune", "chains", "sampler", "seed", "target_accept", "cores")
OUTPUT_KEYS = ("dir", "ci_prob", "top_k", "plots", "ppc", "loo")
#: Simulators usable as ``[data] simulate = ...``.
SIMULATORS = ("episodes", "grouped")
DATA_SUFFIXES = (".csv", ".parquet", ".pq")
_NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]*$")


class SpecError(ValueError):
    """A model spec is invalid; the message lists every problem found, each naming its key."""

    def __init__(self, problems, source: str | None = None):
        if isinstance(problems, str):
            problems = [problems]
        self.problems = list(problems)
        self.source = source
        where = f"{source}: " if source else ""
        if len(self.problems) == 1:
            msg = f"{where}invalid spec: {self.problems[0]}"
        else:
            msg = f"{where}invalid spec ({len(self.problems)} problems):\n" + "\n".join(
                f"  - {p}" for p in self.problems)
        super().__init__(msg)


@dataclass
class ModelSpec:
    """A checked model spec (see the module docstring for the format).

    Build it with :func:`load_spec` (from a file) or :func:`parse_spec` (from TOML text or a dict).

    Attributes
    ----------
    name : str
    description : str
    data : dict
        The ``[data]`` table, with ``predictors`` as a list and ``parameters`` as a dict.
    variants : dict
        ``{name: {"kind": ..., settings...}}`` in the spec's order.
    sampling : dict
        ``draws``, ``tune``, ``chains``, ``sampler``, ``seed`` (with defaults filled in), and
        ``target_accept``/``cores`` when given.
    output : dict
        ``dir`` (or None), ``ci_prob``, ``top_k`` (or None), ``plots``, ``ppc``, ``loo``.
    source : pathlib.Path or None
        The spec file; relative data paths are resolved against its folder.
    text : str
        The TOML text the spec was read from ("" when built from a dict).

    Examples
    --------
    >>> from hierpool.workflow.spec import parse_spec
    >>> spec = parse_spec('''
    ... [data]
    ... dataset = "dyestuff"
    ... response = "yield_"
    ... group = "batch"
    ... family = "gaussian"
    ... [variants.ri]
    ... kind = "random_intercepts"
    ... ''')
    >>> spec.variants
    {'ri': {'kind': 'random_intercepts'}}
    >>> spec.sampling["draws"]
    1000
    """

    name: str
    data: dict
    variants: dict
    sampling: dict
    output: dict
    description: str = ""
    source: Path | None = None
    text: str = ""
    _frame: pd.DataFrame | None = field(default=None, repr=False, compare=False)

    # ------------------------------------------------------------------------------------------------
    def with_sampling(self, **overrides) -> ModelSpec:
        """A copy with some ``[sampling]`` values replaced (None values are ignored), checked like the file's."""
        given = {k: v for k, v in overrides.items() if v is not None}
        problems: list[str] = []
        for k in given:
            if k not in SAMPLING_KEYS:
                problems.append(_unknown("[sampling]", k, SAMPLING_KEYS))
        sampling = _check_sampling({**self.sampling, **given}, problems)
        if problems:
            raise SpecError(problems, self._where)
        return ModelSpec(name=self.name, data=self.data, variants=self.variants, sampling=sampling,
                         output=self.output, description=self.description, source=self.source, text=self.text)

    @property
    def _where(self) -> str | None:
        return None if self.source is None else str(self.source)

    def data_path(self) -> Path | None:
        """The data file of ``[data] path``, resolved against the spec file's folder."""
        p = self.data.get("path")
        if p is None:
            return None
        p = Path(p).expanduser()
        if not p.is_absolute() and self.source is not None:
            p = self.source.parent / p
        return p

    def load_data(self) -> pd.DataFrame:
        """Read, load or simulate the data of ``[data]`` (cached on the spec)."""
        if self._frame is not None:
            return self._frame
        d = self.data
        try:
            if "dataset" in d:
                from hierpool.data.datasets import load

                df = load(d["dataset"])
            elif "simulate" in d:
                from hierpool.data import datasets

                params = dict(d.get("parameters", {}))
                if d["simulate"] == "episodes":
                    df = datasets.simulate_episodes(**params)
                else:
                    df = datasets.simulate(**params)
            else:
                path = self.data_path()
                if not path.exists():
                    raise SpecError(f"[data] path = {d['path']!r}: file {str(path)!r} does not exist.", self._where)
                if path.suffix.lower() == ".csv":
                    df = pd.read_csv(path)
                else:
                    df = pd.read_parquet(path)
        except SpecError:
            raise
        except ImportError as err:
            raise SpecError(f"[data]: {err}", self._where) from err
        except (TypeError, ValueError, OSError) as err:
            key = next(k for k in SOURCE_KEYS if k in d)
            raise SpecError(f"[data] {key} = {d[key]!r}: could not get the data: {err}", self._where) from err
        self._frame = df
        return df

    def prepare_kwargs(self) -> dict:
        """The keywords of :func:`hierpool.prepare` that ``[data]`` gives."""
        d = self.data
        kw = {"y": d["response"], "group": d["group"], "predictors": list(d.get("predictors", [])),
              "family": d["family"]}
        if "trials" in d:
            kw["trials"] = d["trials"]
        if "exposure" in d:
            kw["exposure"] = d["exposure"]
        return kw

    def prepare(self, df: pd.DataFrame | None = None):
        """Check the data's columns and values against ``[data]`` and return a :class:`GroupedData`."""
        from hierpool.data.prepare import prepare

        df = self.load_data() if df is None else df
        kw = self.prepare_kwargs()
        cols = [("response", kw["y"]), ("group", kw["group"])]
        cols += [("predictors", p) for p in kw["predictors"]]
        cols += [(k, kw[k]) for k in ("trials", "exposure") if isinstance(kw.get(k), str)]
        missing = [(key, c) for key, c in cols if c not in df.columns]
        if missing:
            shown = ", ".join(repr(c) for c in list(df.columns)[:25])
            more = "" if df.shape[1] <= 25 else f", ... ({df.shape[1]} in all)"
            raise SpecError([f"[data] {key}: column {c!r} is not in the data; the data's columns are: "
                             f"{shown}{more}." for key, c in missing], self._where)
        try:
            return prepare(df, **kw)
        except (TypeError, ValueError) as err:
            raise SpecError(f"[data]: the data do not fit the spec: {err}", self._where) from err

    def factory_kwargs(self, variant: str) -> dict:
        """The factory keywords of one variant (its settings without kind, name and target_accept)."""
        v = self.variants[variant]
        return {k: val for k, val in v.items() if k not in ("kind", "name", "target_accept")}

    def fit_kwargs(self, variant: str) -> dict:
        """Keywords of :func:`hierpool.fit` for one variant: ``[sampling]`` with the variant's overrides."""
        s = self.sampling
        kw = {"draws": s["draws"], "tune": s["tune"], "chains": s["chains"], "sampler": s["sampler"],
              "random_seed": s["seed"]}
        for k in ("cores", "target_accept"):
            if k in s:
                kw[k] = s[k]
        if "target_accept" in self.variants[variant]:
            kw["target_accept"] = self.variants[variant]["target_accept"]
        return kw

    def build(self, variant: str, gd=None):
        """Build the ``pm.Model`` of one variant (on ``gd``, or on the spec's data)."""
        from hierpool.models import factories as models

        gd = self.prepare() if gd is None else gd
        kind = self.variants[variant]["kind"]
        try:
            return getattr(models, kind)(gd, **self.factory_kwargs(variant))
        except (TypeError, ValueError) as err:
            raise SpecError(f"[variants.{variant}] (kind = {kind!r}): {err}", self._where) from err

    def validate(self) -> tuple:
        """Check everything that can be checked without sampling: the data (its columns and values) and
        every variant's model. Returns ``(GroupedData, {variant: pm.Model})``; raises :class:`SpecError`."""
        gd = self.prepare()
        problems, built = [], {}
        for name in self.variants:
            try:
                built[name] = self.build(name, gd)
            except SpecError as err:
                problems.extend(err.problems)
        if problems:
            raise SpecError(problems, self._where)
        return gd, built


# ------------------------------------------------------------------------------------------------------
def _unknown(section: str, key, valid) -> str:
    return f"{section} has unknown key {key!r}; valid keys: {', '.join(valid)}."


def _is_int(v) -> bool:
    return isinstance(v, int) and not isinstance(v, bool)


def _is_number(v) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool)


def _check_int(section: str, key: str, v, minimum: int, problems: list) -> None:
    if not _is_int(v) or v < minimum:
        problems.append(f"{section} {key} = {v!r} must be an integer >= {minimum}.")


def _check_choice(section: str, key: str, v, choices, problems: list) -> bool:
    if not isinstance(v, str) or v not in choices:
        problems.append(f"{section} {key} = {v!r} is not valid; valid choices: {', '.join(map(repr, choices))}.")
        return False
    return True


def _check_table(section: str, v, problems: list) -> bool:
    if not isinstance(v, dict):
        problems.append(f"{section} must be a table; got {v!r}.")
        return False
    return True


def _check_data(d, problems: list) -> dict:
    sec = "[data]"
    if not _check_table(sec, d, problems):
        return {}
    out = dict(d)
    for k in d:
        if k not in DATA_KEYS:
            problems.append(_unknown(sec, k, DATA_KEYS))
    sources = [k for k in SOURCE_KEYS if k in d]
    if not sources:
        problems.append(f"{sec} needs one of the keys {', '.join(SOURCE_KEYS)} (where the data come from).")
    elif len(sources) > 1:
        problems.append(f"{sec} gives {' and '.join(sources)}; give exactly one of {', '.join(SOURCE_KEYS)}.")
    if "dataset" in d:
        from hierpool.data.datasets import NAMES

        _check_choice(sec, "dataset", d["dataset"], NAMES, problems)
    if "path" in d:
        p = d["path"]
        if not isinstance(p, str) or not p:
            problems.append(f"{sec} path = {p!r} must be a file name (a string).")
        elif Path(p).suffix.lower() not in DATA_SUFFIXES:
            problems.append(f"{sec} path = {p!r}: unknown file type; valid suffixes: {', '.join(DATA_SUFFIXES)}.")
    if "simulate" in d:
        if _check_choice(sec, "simulate", d["simulate"], SIMULATORS, problems):
            params = d.get("parameters", {})
            if _check_table(f"{sec} parameters", params, problems):
                from hierpool.data import datasets

                fn = datasets.simulate_episodes if d["simulate"] == "episodes" else datasets.simulate
                valid = list(inspect.signature(fn).parameters)
                for k in params:
                    if k not in valid:
                        problems.append(f"{sec} parameters has unknown key {k!r} for simulate = "
                                        f"{d['simulate']!r}; valid keys: {', '.join(valid)}.")
    elif "parameters" in d:
        problems.append(f"{sec} parameters is only used with simulate = ...; remove it or add simulate.")
    for k in ("response", "group", "family"):
        if k not in d:
            hint = f" (one of {', '.join(N.FAMILIES)})" if k == "family" else " (a column name)"
            problems.append(f"{sec} is missing the required key {k!r}{hint}.")
    for k in ("response", "group", "exposure"):
        if k in d and (not isinstance(d[k], str) or not d[k]):
            problems.append(f"{sec} {k} = {d[k]!r} must be a column name (a string).")
    if "family" in d:
        _check_choice(sec, "family", d["family"], N.FAMILIES, problems)
    preds = d.get("predictors", [])
    if isinstance(preds, str):
        preds = [preds]
    if not isinstance(preds, list) or not all(isinstance(p, str) and p for p in preds):
        problems.append(f"{sec} predictors = {d.get('predictors')!r} must be a list of column names.")
        preds = []
    out["predictors"] = preds
    if "trials" in d:
        t = d["trials"]
        if not (isinstance(t, str) and t) and not (_is_int(t) and t >= 1):
            problems.append(f"{sec} trials = {t!r} must be a column name or an integer >= 1.")
        if d.get("family") != "binomial":
            problems.append(f"{sec} trials is only used with family = 'binomial'; got family = {d.get('family')!r}.")
    elif d.get("family") == "binomial":
        problems.append(f"{sec} family = 'binomial' needs the key 'trials' (a column or an integer).")
    if "exposure" in d and d.get("family") != "poisson":
        problems.append(f"{sec} exposure is only used with family = 'poisson'; got family = {d.get('family')!r}.")
    return out


def _check_priors(sec: str, priors, problems: list) -> None:
    if not _check_table(f"{sec} priors", priors, problems):
        return
    for k, v in priors.items():
        if isinstance(v, dict):
            if "dist" not in v:
                problems.append(f"{sec} priors.{k} = {v!r} needs the key 'dist' (e.g. {{dist = \"HalfNormal\", "
                                "sigma = 1.0}}).")
        elif not _is_number(v):
            problems.append(f"{sec} priors.{k} = {v!r} must be a table like {{dist = \"HalfNormal\", sigma = "
                            "1.0}} or a number (which fixes the parameter).")


def _check_variant(name: str, v: dict, problems: list) -> dict | None:
    sec = f"[variants.{name}]"
    if not _check_table(sec, v, problems):
        return None
    if not isinstance(name, str) or not _NAME_RE.match(name):
        problems.append(f"variant name {name!r} must be letters, digits, '_', '-' or '.' (it names output "
                        "files).")
    if "kind" not in v:
        problems.append(f"{sec} is missing the required key 'kind'; valid kinds: {', '.join(KINDS)}.")
        return None
    kind = v["kind"]
    if not _check_choice(sec, "kind", kind, tuple(KINDS), problems):
        return None
    valid = _COMMON_VARIANT_KEYS + KINDS[kind]
    for k in v:
        if k not in valid:
            problems.append(_unknown(f"{sec} (kind = {kind!r})", k, valid))
    if "priors" in v:
        _check_priors(sec, v["priors"], problems)
    if "lam" in v and (not _is_number(v["lam"]) or not v["lam"] > 0):
        problems.append(f"{sec} lam = {v['lam']!r} must be a positive number (the prior precision of a group "
                        "effect).")
    if "penalty" in v:
        _check_choice(sec, "penalty", v["penalty"], N.PENALTIES, problems)
    for k in ("penalty_scale", "slab_scale", "slab_df", "tau_scale"):
        if k in v and (not _is_number(v[k]) or not v[k] > 0):
            problems.append(f"{sec} {k} = {v[k]!r} must be a positive number.")
    if "expected_nonzero" in v:
        _check_int(sec, "expected_nonzero", v["expected_nonzero"], 1, problems)
    if "centered" in v and not isinstance(v["centered"], bool):
        problems.append(f"{sec} centered = {v['centered']!r} must be true or false.")
    if "collapse" in v and v["collapse"] not in (True, False, "auto"):
        problems.append(f"{sec} collapse = {v['collapse']!r} is not valid; valid choices: 'auto', true, false.")
    if "target_accept" in v and (not _is_number(v["target_accept"]) or not 0 < v["target_accept"] < 1):
        problems.append(f"{sec} target_accept = {v['target_accept']!r} must be in (0, 1), e.g. 0.95.")
    return {k: val for k, val in v.items() if k != "name"}


def _check_variants(vs, problems: list) -> dict:
    out: dict = {}
    if vs is None:
        problems.append(f"the spec has no [variants]; add at least one, e.g. [variants.ri] with kind = "
                        f"\"random_intercepts\" (valid kinds: {', '.join(KINDS)}).")
        return out
    if isinstance(vs, list):
        for i, v in enumerate(vs):
            if not isinstance(v, dict):
                problems.append(f"[[variants]] entry {i + 1} must be a table; got {v!r}.")
                continue
            name = v.get("name", v.get("kind"))
            if name is None:
                problems.append(f"[[variants]] entry {i + 1} is missing the required key 'kind'; valid kinds: "
                                f"{', '.join(KINDS)}.")
                continue
            if name in out:
                problems.append(f"[[variants]] entry {i + 1}: the name {name!r} is used twice; give each "
                                "variant its own name = \"...\".")
                continue
            checked = _check_variant(str(name), v, problems)
            if checked is not None:
                out[str(name)] = checked
    elif isinstance(vs, dict):
        for name, v in vs.items():
            if isinstance(v, dict) and "name" in v:
                problems.append(f"[variants.{name}] has the key 'name'; in [variants.<name>] form the table's "
                                "name is the variant's name: remove it.")
                continue
            checked = _check_variant(name, v, problems)
            if checked is not None:
                out[name] = checked
    else:
        problems.append(f"variants must be tables [variants.<name>] or [[variants]]; got {vs!r}.")
    if isinstance(vs, (list, dict)) and not vs:
        problems.append("[variants] is empty; add at least one variant.")
    return out


def _check_sampling(s, problems: list) -> dict:
    sec = "[sampling]"
    if not _check_table(sec, s, problems):
        s = {}
    out = {"draws": 1000, "tune": 1000, "chains": 4, "sampler": "auto", "seed": None}
    for k, v in s.items():
        if k not in SAMPLING_KEYS:
            problems.append(_unknown(sec, k, SAMPLING_KEYS))
            continue
        out[k] = v
    _check_int(sec, "draws", out["draws"], 1, problems)
    _check_int(sec, "tune", out["tune"], 0, problems)
    _check_int(sec, "chains", out["chains"], 1, problems)
    _check_choice(sec, "sampler", out["sampler"], N.SAMPLERS, problems)
    if out["seed"] is not None:
        _check_int(sec, "seed", out["seed"], 0, problems)
    if "cores" in out:
        _check_int(sec, "cores", out["cores"], 1, problems)
    if "target_accept" in out and (not _is_number(out["target_accept"]) or not 0 < out["target_accept"] < 1):
        problems.append(f"{sec} target_accept = {out['target_accept']!r} must be in (0, 1), e.g. 0.95.")
    return out


def _check_output(o, problems: list) -> dict:
    sec = "[output]"
    if not _check_table(sec, o, problems):
        o = {}
    out = {"dir": None, "ci_prob": 0.9, "top_k": None, "plots": True, "ppc": True, "loo": True}
    for k, v in o.items():
        if k not in OUTPUT_KEYS:
            problems.append(_unknown(sec, k, OUTPUT_KEYS))
            continue
        out[k] = v
    if out["dir"] is not None and (not isinstance(out["dir"], str) or not out["dir"]):
        problems.append(f"{sec} dir = {out['dir']!r} must be a folder name (a string).")
    ci = out["ci_prob"]
    if not _is_number(ci) or not 0 < ci < 1:
        hint = f" (use {ci / 100:g}, not {ci:g})" if _is_number(ci) and 1 < ci < 100 else ""
        problems.append(f"{sec} ci_prob = {ci!r} must be in the open interval (0, 1){hint}.")
    if out["top_k"] is not None:
        _check_int(sec, "top_k", out["top_k"], 1, problems)
    for k in ("plots", "ppc", "loo"):
        if not isinstance(out[k], bool):
            problems.append(f"{sec} {k} = {out[k]!r} must be true or false.")
    return out


def parse_spec(spec, source=None) -> ModelSpec:
    """Check a spec given as TOML text or as a dict and return a :class:`ModelSpec`.

    Structure, types and choices are checked here; the data and the models by :meth:`ModelSpec.validate`.
    All problems found are reported together in one :class:`SpecError`.

    Parameters
    ----------
    spec : str or dict
        TOML text, or the dict ``tomllib`` would return for it.
    source : str or Path, optional
        The file it came from (relative data paths are resolved against its folder; messages name it).

    Examples
    --------
    >>> from hierpool.workflow.spec import parse_spec, SpecError
    >>> try:
    ...     parse_spec({"data": {"dataset": "radon", "response": "log_radon", "group": "county",
    ...                          "family": "gausian"}, "variants": {"ri": {"kind": "random_intercepts"}}})
    ... except SpecError as err:
    ...     print(err)
    invalid spec: [data] family = 'gausian' is not valid; valid choices: 'gaussian', 'bernoulli', 'binomial', 'poisson'.
    """
    source = None if source is None else Path(source)
    where = None if source is None else str(source)
    text = ""
    if isinstance(spec, str):
        text = spec
        try:
            raw = tomllib.loads(spec)
        except tomllib.TOMLDecodeError as err:
            raise SpecError(f"not valid TOML: {err}", where) from err
    elif isinstance(spec, dict):
        raw = spec
    else:
        raise TypeError(f"spec must be TOML text or a dict; got {type(spec).__name__}.")
    problems: list[str] = []
    for k in raw:
        if k not in TOP_KEYS:
            problems.append(f"the spec has unknown top-level key {k!r}; valid keys: {', '.join(TOP_KEYS)}.")
    name = raw.get("name", source.stem if source is not None else "model")
    if not isinstance(name, str) or not name:
        problems.append(f"name = {name!r} must be a non-empty string.")
    description = raw.get("description", "")
    if not isinstance(description, str):
        problems.append(f"description = {description!r} must be a string.")
    if "data" not in raw:
        problems.append("the spec is missing the required table [data] (dataset/path/simulate, response, group, "
                        "family).")
        data = {}
    else:
        data = _check_data(raw["data"], problems)
    variants = _check_variants(raw.get("variants"), problems)
    sampling = _check_sampling(raw.get("sampling", {}), problems)
    output = _check_output(raw.get("output", {}), problems)
    if problems:
        raise SpecError(problems, where)
    return ModelSpec(name=name, description=description, data=data, variants=variants, sampling=sampling,
                     output=output, source=source, text=text)


def load_spec(path) -> ModelSpec:
    """Read and check a TOML model spec file (see :mod:`hierpool.workflow.spec` for the format).

    Examples
    --------
    >>> from hierpool.workflow.spec import load_spec
    >>> spec = load_spec("models/radon.toml")   # doctest: +SKIP
    >>> list(spec.variants)                     # doctest: +SKIP
    ['random_intercepts', 'ridge', 'regularized']
    """
    path = Path(path)
    if not path.is_file():
        raise SpecError(f"the spec file {str(path)!r} does not exist.")
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as err:
        raise SpecError(f"cannot read the spec file: {err}", str(path)) from err
    return parse_spec(text, source=path)
