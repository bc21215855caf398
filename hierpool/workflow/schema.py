"""The model-spec format as pydantic models, and its errors as :class:`SpecError` messages.

One pydantic model per TOML table: :class:`DataTable` (``[data]``), one model per variant kind
(``[variants.NAME]``, chosen by its ``kind``), :class:`SamplingTable` (``[sampling]``),
:class:`OutputTable` (``[output]``), and :class:`SpecFile` for the whole file. The choices come from where
the rest of the package defines them, so they cannot drift: kinds, families, penalties and samplers from
:mod:`hierpool.core.names`, ``collapse`` from :data:`hierpool.core.names.COLLAPSE_CHOICES` (the
factories' own constant), dataset names and simulators from :mod:`hierpool.data.datasets`. The last two
are imported only when a spec uses those keys, so that checking a spec stays light (the ``hierpool`` command
refuses a bad spec without importing PyMC; ``collapse`` is the exception, as its module builds on PyTensor).

``SpecFile.model_json_schema()`` gives the format as JSON Schema (for editors that complete TOML from one).
pydantic reports every problem it finds; :func:`check_spec` turns them into one :class:`SpecError` whose
lines each name the key (``[variants.ridge] lam``), the value given and the valid choices or range.
Rules between keys of one table (exactly one data source, ``trials`` only with the binomial family, ...)
are checked once the table's keys are each valid.

Examples
--------
>>> from hierpool.workflow.schema import check_spec, SpecError
>>> try:
...     check_spec({"data": {"dataset": "radon", "response": "log_radon", "group": "county",
...                          "family": "gaussian"},
...                 "variants": {"ridge": {"kind": "ridge_fixed_effects", "lam": -1}},
...                 "sampling": {"sampler": "stan"}})
... except SpecError as err:
...     print(err)
invalid spec (2 problems):
  - [variants.ridge] lam = -1 must be a positive number (the prior precision of a group effect).
  - [sampling] sampler = 'stan' is not valid; valid choices: 'auto', 'pymc', 'nutpie', 'numpyro', 'gibbs', 'integrated'.
"""

from __future__ import annotations

import inspect
import re
import typing
from pathlib import Path
from typing import Annotated, Any, ClassVar, Literal

from pydantic import (
    BaseModel,
    ConfigDict,
    Discriminator,
    Field,
    Tag,
    ValidationError,
    field_validator,
    model_validator,
)
from pydantic_core import PydanticCustomError

from hierpool.core import names as N

__all__ = ["SpecError", "SpecFile", "DataTable", "SamplingTable", "OutputTable", "KIND_MODELS", "KINDS",
           "SIMULATORS", "SOURCE_KEYS", "DATA_SUFFIXES", "OUTPUT_FILES", "check_spec", "check_sampling", "simulator"]

#: Simulators usable as ``[data] simulate = ...``, with the function of :mod:`hierpool.data.datasets` each runs.
_SIMULATOR_FUNCTIONS = {"episodes": "simulate_episodes", "grouped": "simulate"}
SIMULATORS = tuple(_SIMULATOR_FUNCTIONS)
SOURCE_KEYS = ("dataset", "path", "simulate")
DATA_SUFFIXES = (".csv", ".parquet", ".pq")
_NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]*$")
_PRIOR_EXAMPLE = '{dist = "HalfNormal", sigma = 1.0}'
#: The files `hierpool run` writes at the top of its output folder (:func:`hierpool.workflow.run.planned_files`);
#: each variant writes into a folder of its name, so these names are refused as variant names.
OUTPUT_FILES = ("summary.txt", "spec.toml", "run.json", "compare_loo.csv")
#: A variant's settings that ``method = "empirical_bayes"`` does not use: it samples nothing (no NUTS
#: setting) and estimates tau, the intercept and beta by (RE)ML from the likelihood alone (no prior, nor a
#: parameterization or collapse of the model it would sample).
_NOT_EMPIRICAL_BAYES = ("target_accept", "priors", "intercept_at", "centered", "collapse")
#: Settings of regularized_hierarchical used by some penalties only (the factory's docstring).
_PENALTY_KEYS = {"penalty_scale": ("ridge", "laplace", "elastic_net"), "l1_ratio": ("elastic_net",),
                 "expected_nonzero": ("horseshoe",), "slab_scale": ("horseshoe",), "slab_df": ("horseshoe",)}


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


def simulator(name: str):
    """The function of :mod:`hierpool.data.datasets` that ``[data] simulate = name`` runs."""
    from hierpool.data import datasets

    return getattr(datasets, _SIMULATOR_FUNCTIONS[name])


# ------------------------------------------------------------------------------------------------------
# Errors raised inside the models: their type tells :func:`_message` how to word them.
def _choice_error(choices) -> PydanticCustomError:
    return PydanticCustomError("choice", "not one of the valid choices", {"choices": tuple(choices)})


def _problems_error(problems: list[str]) -> PydanticCustomError:
    """Several problems of one table (rules between its keys), each worded after the table's name."""
    return PydanticCustomError("spec_problems", "{problems}", {"problems": problems})


def _lines_error(problems: list[str]) -> PydanticCustomError:
    """Problems between tables (raised by :class:`SpecFile`), each line naming its own table."""
    return PydanticCustomError("spec_lines", "{problems}", {"problems": problems})


def _show(value) -> str:
    """A value (or a choice) as it is written in TOML, for messages: booleans as true/false, tables as
    ``{k = v, ...}``, the rest as Python writes them."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, dict):
        return "{" + ", ".join(f"{k} = {_show(v)}" for k, v in value.items()) + "}"
    return repr(value)


def _same(a, b) -> bool:
    """Equal and of the same type (so that 1 is not taken for true)."""
    return type(a) is type(b) and a == b


class _Table(BaseModel):
    """A TOML table: unknown keys refused, no type coercion (a string is not a number, nor 1 a bool)."""

    model_config = ConfigDict(extra="forbid", strict=True, frozen=True)


# ------------------------------------------------------------------------------------------------------
class DataTable(_Table):
    """``[data]``: where the data come from and which columns play which role.

    The roles are ``response``, ``group`` and ``predictors``, or one ``formula`` in their place (lme4
    syntax, :mod:`hierpool.data.formula`), checked here without the data: its syntax, the one
    ``(1 | group)`` term, and ``cbind``/``offset`` against ``family``, ``trials`` and ``exposure``.
    """

    dataset: str = Field(None, description="one of hp.datasets.NAMES")
    path: str = Field(None, min_length=1, description="a file name (a string)")
    simulate: Literal[SIMULATORS] = Field(None, description="a simulator")
    parameters: dict[str, Any] = Field(None, description="a table of the simulator's arguments")
    formula: str = Field(None, min_length=1, description="an lme4-style formula, e.g. 'y ~ x + C(c) + (1 | group)'")
    response: str = Field(None, min_length=1, description="a column name")
    group: str = Field(None, min_length=1, description="a column name")
    predictors: list[Annotated[str, Field(min_length=1)]] = Field([], description="a list of column names")
    family: Literal[N.FAMILIES]
    trials: Annotated[str, Field(min_length=1)] | Annotated[int, Field(ge=1)] = Field(
        None, description="a column name or an integer >= 1")
    exposure: str = Field(None, min_length=1, description="a column name")

    @field_validator("dataset")
    @classmethod
    def _known_dataset(cls, v):
        from hierpool.data.datasets import NAMES

        if v not in NAMES:
            raise _choice_error(NAMES)
        return v

    @field_validator("path")
    @classmethod
    def _known_suffix(cls, v):
        if Path(v).suffix.lower() not in DATA_SUFFIXES:
            raise PydanticCustomError("spec", f"has an unknown file type; valid suffixes: {', '.join(DATA_SUFFIXES)}.")
        return v

    @field_validator("predictors", mode="before")
    @classmethod
    def _one_predictor(cls, v):
        return [v] if isinstance(v, str) else v

    @model_validator(mode="after")
    def _consistent(self):
        given = self.model_fields_set
        problems = []
        sources = [k for k in SOURCE_KEYS if k in given]
        if not sources:
            problems.append(f"needs one of the keys {', '.join(SOURCE_KEYS)} (where the data come from).")
        elif len(sources) > 1:
            problems.append(f"gives {' and '.join(sources)}; give exactly one of {', '.join(SOURCE_KEYS)}.")
        if "simulate" in given:
            valid = list(inspect.signature(simulator(self.simulate)).parameters)
            for k in self.parameters or {}:
                if k not in valid:
                    problems.append(f"parameters has unknown key {k!r} for simulate = {self.simulate!r}; "
                                    f"valid keys: {', '.join(valid)}.")
        elif "parameters" in given:
            problems.append("parameters is only used with simulate = ...; remove it or add simulate.")
        from hierpool.core.families import get_family

        fam = get_family(self.family)
        cbind = offset = False
        if "formula" in given:
            roles = [k for k in ("response", "group", "predictors") if k in given]
            if roles:
                problems.append(f"formula gives the response, the group and the predictors; remove "
                                f"{' and '.join(roles)} (or the formula).")
            from hierpool.data.formula import parse_formula

            try:
                parsed = parse_formula(self.formula)
            except ValueError as err:
                problems.append(f"formula = {self.formula!r} is not valid: {err}")
            else:
                cbind, offset = parsed.failures is not None, parsed.exposure is not None
                if cbind and self.family != "binomial":
                    problems.append(f"formula: cbind(successes, failures) is the binomial response; got "
                                    f"family = {self.family!r}.")
                if cbind and "trials" in given:
                    problems.append("trials is given by the formula's cbind(successes, failures); remove it.")
                if offset and "exposure" in given:
                    problems.append("exposure is given by the formula's offset(log(...)); remove it.")
                if offset and not fam.uses_exposure:
                    problems.append(f"formula: offset(log(...)) is the exposure of family = 'poisson'; got "
                                    f"family = {self.family!r}.")
        else:
            problems += [f"is missing the required key {k!r} (or give a formula, e.g. formula = 'y ~ x + (1 | g)')."
                         for k in ("response", "group") if k not in given]
        if "trials" in given and not fam.uses_trials:
            problems.append(f"trials is only used with family = 'binomial'; got family = {self.family!r}.")
        if "trials" not in given and fam.uses_trials and not cbind:
            alt = ", or a formula with cbind(successes, failures) ~ ..." if "formula" in given else ""
            problems.append(f"family = 'binomial' needs the key 'trials' (a column or an integer){alt}.")
        if "exposure" in given and not fam.uses_exposure:
            problems.append(f"exposure is only used with family = 'poisson'; got family = {self.family!r}.")
        if problems:
            raise _problems_error(problems)
        return self

    def as_dict(self) -> dict:
        """The keys given, with ``predictors`` always as a list."""
        return {**self.model_dump(exclude_unset=True), "predictors": list(self.predictors)}


# ------------------------------------------------------------------------------------------------------
class _Variant(_Table):
    """Settings every variant kind takes (the factories' keywords, plus ``target_accept`` for the sampler)."""

    kind: str
    name: str = Field(None, description="the variant's name, in [[variants]] form")
    priors: dict[str, Any] = Field(None, description=f"a table of priors by parameter, like {{tau = {_PRIOR_EXAMPLE}}}; "
                                   f"beta also takes a table by predictor, like {{beta = {{age = {_PRIOR_EXAMPLE}}}}}")
    intercept_at: Literal[N.INTERCEPT_AT] = Field(None, description="where the intercept's prior sits: at the "
                                                  "predictors' means or at x = 0")
    collapse: Any = Field(None, description="the factories' collapse choice")
    target_accept: float = Field(None, gt=0, lt=1, description="in (0, 1), e.g. 0.95")

    @field_validator("priors")
    @classmethod
    def _prior_tables(cls, priors):
        problems = []

        def check(where, v, per_term_ok):
            if isinstance(v, dict):
                if per_term_ok and v and not isinstance(v.get("dist"), str):  # beta: one table per predictor
                    for name, pv in v.items():
                        check(f"{where}.{name}", pv, False)
                elif "dist" not in v:
                    more = f", or a table by predictor like {{age = {_PRIOR_EXAMPLE}}}" if per_term_ok else ""
                    problems.append(f"{where} = {v!r} needs the key 'dist' (e.g. {_PRIOR_EXAMPLE}){more}.")
            elif not isinstance(v, (int, float)) or isinstance(v, bool):
                problems.append(f"{where} = {v!r} must be a table like {_PRIOR_EXAMPLE} or a number (which "
                                "fixes the parameter).")

        for k, v in priors.items():
            check(f"priors.{k}", v, k == "beta")
        if problems:
            raise _problems_error(problems)
        return priors

    @field_validator("collapse")
    @classmethod
    def _collapse_choice(cls, v):
        if not any(_same(v, c) for c in N.COLLAPSE_CHOICES):
            raise _choice_error(N.COLLAPSE_CHOICES)
        return v


def _centered_choice(v):
    """The factories' ``centered`` choices: true, false or "auto" (a bool or that string, nothing coerced)."""
    if not (isinstance(v, bool) or v == "auto"):
        raise PydanticCustomError("spec", "must be true, false or 'auto'.")
    return v


class RandomIntercepts(_Variant):
    """``kind = "random_intercepts"``: :func:`hierpool.random_intercepts`."""

    kind: Literal["random_intercepts"]
    centered: Any = Field(None, description="true, false or 'auto'")
    lkj_eta: float = Field(None, gt=0, description="a positive number (the LKJ prior of random slopes' correlation)")
    method: Literal[N.METHODS] = Field(None, description="hp.fit's method: 'full_bayes' (default) or "
                                                         "'empirical_bayes' (tau at its (RE)ML estimate)")

    @field_validator("centered")
    @classmethod
    def _centered(cls, v):
        return _centered_choice(v)

    @model_validator(mode="after")
    def _empirical_bayes_settings(self):
        if self.method != "empirical_bayes":
            return self
        unused = [k for k in _NOT_EMPIRICAL_BAYES if k in self.model_fields_set]
        if unused:
            raise _problems_error([
                f"{k} = {_show(getattr(self, k))} does not apply with method = 'empirical_bayes', which samples "
                "nothing and estimates tau, the intercept and beta from the likelihood alone (no prior, no "
                f"sampler setting): remove {k} or use method = 'full_bayes'." for k in unused])
        return self


class RidgeFixedEffects(_Variant):
    """``kind = "ridge_fixed_effects"``: :func:`hierpool.ridge_fixed_effects`."""

    kind: Literal["ridge_fixed_effects"]
    lam: float = Field(None, gt=0, description="a positive number (the prior precision of a group effect)")


class RegularizedHierarchical(_Variant):
    """``kind = "regularized_hierarchical"``: :func:`hierpool.regularized_hierarchical`."""

    kind: Literal["regularized_hierarchical"]
    penalty: Literal[N.PENALTIES] = None
    lkj_eta: float = Field(None, gt=0, description="a positive number (the LKJ prior of random slopes' correlation)")
    penalty_scale: float = Field(None, gt=0, description="a positive number")
    l1_ratio: float = Field(None, ge=0, le=1, description="a number in [0, 1] (glmnet's alpha; elastic_net only)")
    expected_nonzero: int = Field(None, ge=1, description="an integer >= 1")
    slab_scale: float = Field(None, gt=0, description="a positive number")
    slab_df: float = Field(None, gt=0, description="a positive number")
    tau_scale: float = Field(None, gt=0, description="a positive number")
    centered: Any = Field(None, description="true, false or 'auto'")

    @field_validator("centered")
    @classmethod
    def _centered(cls, v):
        return _centered_choice(v)

    @model_validator(mode="after")
    def _penalty_settings(self):
        penalty = self.penalty or "horseshoe"
        said = f"penalty = {penalty!r}" + ("" if self.penalty else " (the default)")
        problems = [f"{k} = {_show(getattr(self, k))} does not apply with {said}: it is a setting of "
                    f"penalty = {' or '.join(map(repr, used_by))} only; remove it or change penalty."
                    for k, used_by in _PENALTY_KEYS.items() if k in self.model_fields_set and penalty not in used_by]
        if problems:
            raise _problems_error(problems)
        return self


#: The model of each variant kind (the kinds are :data:`hierpool.core.names.VARIANTS`).
KIND_MODELS: dict[str, type[_Variant]] = {
    typing.get_args(m.model_fields["kind"].annotation)[0]: m
    for m in (RandomIntercepts, RidgeFixedEffects, RegularizedHierarchical)
}
#: Settings of each variant kind besides those every kind takes (kind, name, priors, collapse, target_accept).
KINDS = {kind: tuple(k for k in m.model_fields if k not in _Variant.model_fields) for kind, m in KIND_MODELS.items()}


def _kind_of(v):
    """The tag that picks a variant's model: its kind (None when it has none, "" when not a string)."""
    if not isinstance(v, dict) or "kind" not in v:
        return None
    return v["kind"] if isinstance(v["kind"], str) else ""


Variant = Annotated[typing.Union[tuple(Annotated[m, Tag(k)] for k, m in KIND_MODELS.items())],  # noqa: UP007
                    Discriminator(_kind_of)]


# ------------------------------------------------------------------------------------------------------
class SamplingTable(_Table):
    """``[sampling]``: the keywords of :func:`hierpool.fit` (``seed`` is its ``random_seed``)."""

    #: Keys always present in :meth:`as_dict` (with their defaults); the others only when given.
    ALWAYS: ClassVar[tuple[str, ...]] = ("draws", "tune", "chains", "sampler", "seed")

    draws: int = Field(1000, ge=1, description="an integer >= 1")
    tune: int = Field(1000, ge=0, description="an integer >= 0")
    chains: int = Field(4, ge=1, description="an integer >= 1")
    sampler: Literal[N.SAMPLERS] = "auto"
    seed: int | None = Field(None, ge=0, description="an integer >= 0")
    target_accept: float = Field(None, gt=0, lt=1, description="in (0, 1), e.g. 0.95")
    cores: int = Field(None, ge=1, description="an integer >= 1")
    min_ess: float = Field(None, gt=0, allow_inf_nan=False, description="a finite number > 0, e.g. 400")
    max_rounds: int = Field(None, ge=1, description="an integer >= 1")

    @model_validator(mode="after")
    def _rounds_need_a_target(self):
        if "max_rounds" in self.model_fields_set and "min_ess" not in self.model_fields_set:
            raise PydanticCustomError("spec", "max_rounds bounds the rounds of min_ess; add min_ess (e.g. 400) or "
                                              "remove max_rounds")
        return self

    def as_dict(self) -> dict:
        d = self.model_dump()
        return {k: v for k, v in d.items() if k in self.ALWAYS or k in self.model_fields_set}


class OutputTable(_Table):
    """``[output]``: where `hierpool run` writes, and what."""

    dir: str = Field(None, min_length=1, description="a folder name (a string)")
    ci_prob: float = Field(0.9, description="in the open interval (0, 1)")
    top_k: int = Field(None, ge=1, description="an integer >= 1")
    plots: bool = Field(True, description="true or false")
    ppc: bool = Field(True, description="true or false")
    loo: bool = Field(True, description="true or false")

    @field_validator("ci_prob")
    @classmethod
    def _probability(cls, ci):
        if not 0 < ci < 1:
            hint = f" (use {ci / 100:g}, not {ci:g})" if 1 < ci < 100 else ""
            raise PydanticCustomError("spec", f"must be in the open interval (0, 1){hint}.")
        return ci

    def as_dict(self) -> dict:
        return self.model_dump()


class SpecFile(_Table):
    """A whole spec file (see :mod:`hierpool.workflow.spec` for the format)."""

    name: str = Field(None, min_length=1, description="a non-empty string")
    description: str = Field("", description="a string")
    data: DataTable
    variants: dict[str, Variant] = Field(
        min_length=1, description="at least one table [variants.<name>] or [[variants]] entry")
    sampling: SamplingTable = SamplingTable()
    output: OutputTable = OutputTable()

    @model_validator(mode="after")
    def _slope_settings(self):
        """``lkj_eta`` is the prior of random slopes' correlation: only with slopes, which only a formula gives."""
        with_eta = [n for n, v in self.variants.items() if "lkj_eta" in v.model_fields_set]
        if not with_eta:
            return self
        slopes = ()
        if self.data.formula is not None:
            from hierpool.data.formula import parse_formula

            slopes = parse_formula(self.data.formula).slopes
        if slopes:
            return self
        why = (f"the formula {self.data.formula!r} has none" if self.data.formula is not None
               else "[data] has no formula with one, like 'y ~ x + (1 + x | group)'")
        raise _lines_error([f"[variants.{n}] lkj_eta = {self.variants[n].lkj_eta!r} does not apply: it is the prior "
                            f"of the random slopes' correlation, and {why}; remove lkj_eta or give the slopes."
                            for n in with_eta])


_SECTIONS: dict[str, type[_Table]] = {"data": DataTable, "sampling": SamplingTable, "output": OutputTable}


# ------------------------------------------------------------------------------------------------------
_MISSING_TABLE = {
    "data": "the spec is missing the required table [data] (dataset/path/simulate, response, group, family).",
    "variants": ("the spec has no [variants]; add at least one, e.g. [variants.ri] with kind = "
                 f"\"random_intercepts\" (valid kinds: {', '.join(N.VARIANTS)})."),
}
_NOT_A_TABLE = ("model_type", "dict_type", "model_attributes_type")


def _variants_table(vs, problems: list[str]):
    """``[[variants]]`` entries as ``{name: table}`` like ``[variants.NAME]`` tables; the names checked.

    A name defaults to the entry's kind. Entries that cannot be named are left out, with their problem.
    Anything else (an empty list, not a table) is returned as it is, for the schema to word.
    """
    if isinstance(vs, list) and vs:
        out: dict = {}
        for i, v in enumerate(vs, start=1):
            if not isinstance(v, dict):
                problems.append(f"[[variants]] entry {i} must be a table; got {v!r}.")
                continue
            name = v.get("name", v.get("kind"))
            if name is None:
                problems.append(f"[[variants]] entry {i} is missing the required key 'kind'; valid kinds: "
                                f"{', '.join(N.VARIANTS)}.")
                continue
            if str(name) in out:
                problems.append(f"[[variants]] entry {i}: the name {name!r} is used twice; give each variant its "
                                "own name = \"...\".")
                continue
            out[str(name)] = v
        vs = out
    elif isinstance(vs, dict):
        for name, v in vs.items():
            if isinstance(v, dict) and "name" in v:
                problems.append(f"[variants.{name}] has the key 'name'; in [variants.<name>] form the table's name "
                                "is the variant's name: remove it.")
        vs = {name: v for name, v in vs.items() if not (isinstance(v, dict) and "name" in v)}
    else:
        return vs
    for name in vs:
        if not isinstance(name, str) or not _NAME_RE.match(name):
            problems.append(f"[variants] name {name!r} must be letters, digits, '_', '-' or '.' (it names output "
                            "files).")
        elif name.casefold() in OUTPUT_FILES:
            problems.append(f"[variants] name {name!r} is the name of a file `hierpool run` writes next to the "
                            f"variants' folders ({', '.join(OUTPUT_FILES)}); choose another name.")
    return vs


def _choices_of(annotation) -> tuple:
    """The values of the Literal inside a field's annotation (empty when it has none)."""
    if typing.get_origin(annotation) is Literal:
        return typing.get_args(annotation)
    return tuple(c for a in typing.get_args(annotation) for c in _choices_of(a))


def _locate(loc: tuple) -> tuple[str, type[BaseModel] | None, str | None, tuple]:
    """Where a pydantic error points: (the table as messages name it, its model, the key, the key's path).

    The key is None for an error about a table as a whole.
    """
    head = loc[0] if loc else None
    if head in _SECTIONS:
        key = loc[1] if len(loc) > 1 else None
        return f"[{head}]", _SECTIONS[head], key, (head, key)
    if head == "variants" and len(loc) >= 2:  # ("variants", name, kind, key, ...)
        model = KIND_MODELS.get(loc[2]) if len(loc) >= 3 else None
        key = loc[3] if len(loc) >= 4 else None
        return f"[variants.{loc[1]}]", model, key, ("variants", loc[1], key)
    return "the spec", SpecFile, head, (head,)


def _value(raw, path: tuple):
    for k in path:
        if k is None:
            break
        raw = raw[k]
    return raw


def _message(err: dict, raw: dict, array_form: bool = False) -> list[str]:
    """The lines of :class:`SpecError` for one pydantic error: the key, the value and what is valid."""
    kind, ctx = err["type"], err.get("ctx") or {}
    section, model, key, path = _locate(err["loc"])
    top = model is SpecFile
    if kind == "spec_problems":  # rules between the keys of one table
        return [f"{section} {p}" for p in ctx["problems"]]
    if kind == "spec_lines":  # rules between tables, each line naming its table
        return list(ctx["problems"])
    if kind == "union_tag_not_found":  # a variant without a kind
        if not isinstance(err["input"], dict):
            return [f"{section} must be a table; got {err['input']!r}."]
        return [f"{section} is missing the required key 'kind'; valid choices: {', '.join(map(_show, N.VARIANTS))}."]
    if kind == "union_tag_invalid":
        return [f"{section} kind = {err['input']['kind']!r} is not valid; valid choices: "
                f"{', '.join(map(_show, N.VARIANTS))}."]
    if key is None:
        if kind in _NOT_A_TABLE:
            return [f"{section} must be a table; got {err['input']!r}."]
        return [f"{section}: {err['msg']}."]
    if kind == "extra_forbidden":
        if top:
            return [f"the spec has unknown top-level key {key!r}; valid keys: {', '.join(SpecFile.model_fields)}."]
        valid = list(model.model_fields)
        of_kind = ""
        if path[0] == "variants":
            of_kind = f" (kind = {_value(raw, path[:2])['kind']!r})"
            if not array_form:  # in [variants.<name>] form the table's name is the variant's name
                valid.remove("name")
        return [f"{section}{of_kind} has unknown key {key!r}; valid keys: {', '.join(valid)}."]
    field = model.model_fields[key]
    choices = ctx.get("choices") or _choices_of(field.annotation)
    if kind == "missing":
        if top:
            return [_MISSING_TABLE[key]]
        hint = (f"; valid choices: {', '.join(map(_show, choices))}" if choices
                else f" ({field.description})" if field.description else "")
        return [f"{section} is missing the required key {key!r}{hint}."]
    said = f"{key} = {_value(raw, path)!r}"
    said = said if top else f"{section} {said}"
    if kind in ("choice", "literal_error"):
        return [f"{said} is not valid; valid choices: {', '.join(map(_show, choices))}."]
    if kind == "spec":  # a field's own check, worded by it
        return [f"{said} {err['msg']}"]
    if field.description:
        return [f"{said} must be {field.description}."]
    return [f"{said}: {err['msg']}."]


def _problems(err: ValidationError, raw: dict, *, skip: tuple = (), prefix: tuple = (),
              array_form: bool = False) -> list[str]:
    """The lines of :class:`SpecError` for a pydantic error (``prefix``: where the model sits in the spec;
    ``array_form``: the variants were given as ``[[variants]]``, where ``name`` is a key)."""
    out: list[str] = []
    for e in err.errors(include_url=False):
        e["loc"] = prefix + tuple(e["loc"])
        if e["loc"] in skip:
            continue
        for line in _message(e, raw, array_form):
            if line not in out:  # a union of types reports once per member
                out.append(line)
    return out


def check_spec(raw: dict, source: str | None = None) -> SpecFile:
    """Check a spec (the dict ``tomllib`` reads) against the format; every problem in one :class:`SpecError`.

    Parameters
    ----------
    raw : dict
    source : str, optional
        The file it came from, named in the message.

    Returns
    -------
    SpecFile
        With ``variants`` keyed by name, whichever TOML form (``[variants.NAME]`` or ``[[variants]]``) gave them.
    """
    raw = dict(raw)
    problems: list[str] = []
    array_form = isinstance(raw.get("variants"), list)
    if "variants" in raw:
        raw["variants"] = _variants_table(raw["variants"], problems)
    spec = None
    try:
        spec = SpecFile.model_validate(raw)
    except ValidationError as err:
        # once [[variants]] entries were left out with their problem, "no variants" would say it twice
        problems += _problems(err, raw, skip=(("variants",),) if problems else (), array_form=array_form)
    if problems or spec is None:
        raise SpecError(problems, source)
    return spec


def check_sampling(sampling: dict, source: str | None = None) -> SamplingTable:
    """Check a ``[sampling]`` table alone (command-line overrides merged into a checked spec's)."""
    try:
        return SamplingTable.model_validate(sampling)
    except ValidationError as err:
        raise SpecError(_problems(err, {"sampling": sampling}, prefix=("sampling",)), source) from None
