"""Model specs in TOML: which data, which model variants, how to sample, what to write.

A spec is read by :func:`load_spec` (or :func:`parse_spec`), checked against the format
(:mod:`hierpool.workflow.schema`: keys, types, choices), and becomes a :class:`ModelSpec`, which only
describes the run. The pipeline (:mod:`hierpool.workflow.run`) checks the data's columns, builds every
model and checks that :func:`hierpool.fit` takes its sampling settings (:func:`hierpool.workflow.run.check`)
before it fits and writes; the ``hierpool`` command line
(:mod:`hierpool.workflow.cli`) calls it. Every problem is reported at once, each naming the key, the value
and the valid choices, before anything is fitted or written.

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
    response = "log_radon"              # required (unless formula)
    group = "county"                    # required (unless formula)
    predictors = ["basement", "uranium"]
    # formula = "log_radon ~ basement + uranium + (1 | county)"
    #                                   # instead of response, group and predictors: an lme4-style formula
    #                                   # (hierpool.data.formula: C(x), a*b, np.log(x), scale(x),
    #                                   # cbind(successes, failures), offset(log(exposure)))
    family = "gaussian"                 # required: gaussian, bernoulli, binomial, poisson
    # trials = "at_bats"                # binomial: a column or one integer
    # exposure = "years"                # poisson: a column of positive exposures

    [variants.random_intercepts]        # or [[variants]] with name = "..."
    kind = "random_intercepts"
    priors = {tau = {dist = "HalfNormal", sigma = 1.0}}   # optional; a number fixes the parameter
    #                                   # beta: one table for all, or one per predictor (user's scale;
    #                                   # the others keep the default), e.g. priors = {beta = {uranium =
    #                                   # {dist = "Normal", mu = 0.7, sigma = 0.5}}}
    # intercept_at = "means"            # where the intercept's prior sits: "means" or "zero" (x = 0)
    # collapse = "auto"                 # "auto", true, false, "integrated" (the factories' choices)
    # centered = "auto"                # true, false or "auto": how the group effects are parameterized
    # lkj_eta = 2.0                     # only with random slopes (a formula with (1 + x | county))
    # method = "empirical_bayes"        # tau at its (RE)ML estimate instead of full Bayes (lme4's view);
    #                                   # it samples nothing: no priors, intercept_at, centered, collapse
    #                                   # or target_accept, and [sampling] sampler, tune, target_accept,
    #                                   # cores, min_ess, max_rounds do not apply to it

    [variants.ridge]
    kind = "ridge_fixed_effects"
    lam = 4.0                           # prior precision of each group effect

    [variants.regularized]
    kind = "regularized_hierarchical"
    penalty = "horseshoe"               # horseshoe (default), laplace, ridge, elastic_net
    # expected_nonzero = 1              # horseshoe only: with slab_scale, slab_df
    # penalty_scale = 1.0               # ridge, laplace and elastic_net only: the prior sd of beta_std
    # l1_ratio = 0.5                    # elastic_net only: glmnet's alpha (0 ridge, 1 laplace)
    # tau_scale = 0.5                   # every penalty: P(tau > tau_scale) = 0.05
    target_accept = 0.95                # a sampling setting for this variant only

    [sampling]                          # all optional
    draws = 1000
    tune = 1000
    chains = 4
    sampler = "auto"                    # auto, pymc, nutpie, numpyro, gibbs, integrated (checked
    #                                   # against every variant before anything is written, as hp.fit does)
    seed = 1
    # target_accept = 0.9
    # cores = 2
    # min_ess = 400                     # sample until every population parameter's bulk and tail ESS
    # max_rounds = 4                    # reach 400 (hp.fit's min_ess; draws is then the first round)

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
:func:`hierpool.regularized_hierarchical`), plus ``target_accept`` (and, for random intercepts,
``method``: :func:`hierpool.fit`'s ``"full_bayes"`` or ``"empirical_bayes"``). A setting that would have no
effect is refused, naming it and why: a penalty's setting with another penalty, ``lkj_eta`` without random
slopes, a prior or sampling setting with empirical Bayes. ``name`` is a key in ``[[variants]]`` form only, and
a variant may not be named like a file the run writes beside the variants' folders (``summary.txt``,
``spec.toml``, ``run.json``, ``compare_loo.csv``). The format is written once, as pydantic models, in
:mod:`hierpool.workflow.schema`; ``hierpool demo --print-spec`` prints a complete example.
"""

from __future__ import annotations

import tomllib
from dataclasses import dataclass, replace
from pathlib import Path

from hierpool.workflow.schema import KINDS, SIMULATORS, SpecError, check_sampling, check_spec

__all__ = ["ModelSpec", "SpecError", "load_spec", "parse_spec", "KINDS", "SIMULATORS"]


@dataclass(frozen=True, eq=False)
class ModelSpec:
    """A checked model spec: what to load, which models to build, how to sample, what to write.

    A description only: it loads no data and builds no model (:mod:`hierpool.workflow.run` does, from it).
    Build it with :func:`load_spec` (from a file) or :func:`parse_spec` (from TOML text or a dict).

    Attributes
    ----------
    name : str
    description : str
    data : dict
        The ``[data]`` keys given, with ``predictors`` always a list (empty with a ``formula``) and
        ``parameters`` a dict.
    variants : dict
        ``{name: {"kind": ..., settings...}}`` in the spec's order (the settings given).
    sampling : dict
        ``draws``, ``tune``, ``chains``, ``sampler``, ``seed`` (with defaults filled in), and
        ``target_accept``/``cores``/``min_ess``/``max_rounds`` when given.
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
    >>> spec.fit_kwargs("ri")
    {'draws': 1000, 'tune': 1000, 'chains': 4, 'sampler': 'auto', 'random_seed': None}
    """

    name: str
    data: dict
    variants: dict
    sampling: dict
    output: dict
    description: str = ""
    source: Path | None = None
    text: str = ""

    # ------------------------------------------------------------------------------------------------
    def with_sampling(self, **overrides) -> ModelSpec:
        """A copy with some ``[sampling]`` values replaced (None values are ignored), checked like the file's."""
        given = {k: v for k, v in overrides.items() if v is not None}
        sampling = check_sampling({**self.sampling, **given}, self.where).as_dict()
        return replace(self, sampling=sampling)

    @property
    def where(self) -> str | None:
        """The spec file as messages name it (None for a spec given as text or a dict)."""
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

    def prepare_kwargs(self) -> dict:
        """The keywords of :func:`hierpool.prepare` that ``[data]`` gives."""
        d = self.data
        if "formula" in d:
            kw = {"formula": d["formula"], "family": d["family"]}
        else:
            kw = {"y": d["response"], "group": d["group"], "predictors": list(d.get("predictors", [])),
                  "family": d["family"]}
        for k in ("trials", "exposure"):
            if k in d:
                kw[k] = d[k]
        return kw

    def factory_kwargs(self, variant: str) -> dict:
        """The factory keywords of one variant (its settings without kind, name, target_accept and method)."""
        v = self.variants[variant]
        return {k: val for k, val in v.items() if k not in ("kind", "name", "target_accept", "method")}

    def fit_kwargs(self, variant: str) -> dict:
        """Keywords of :func:`hierpool.fit` for one variant: ``[sampling]`` with the variant's overrides."""
        s = self.sampling
        kw = {"draws": s["draws"], "tune": s["tune"], "chains": s["chains"], "sampler": s["sampler"],
              "random_seed": s["seed"]}
        for k in ("cores", "target_accept", "min_ess", "max_rounds"):
            if k in s:
                kw[k] = s[k]
        if "target_accept" in self.variants[variant]:
            kw["target_accept"] = self.variants[variant]["target_accept"]
        if self.variants[variant].get("method") == "empirical_bayes":  # nothing is sampled: no sampler settings
            kw = {"draws": kw["draws"], "chains": kw["chains"], "random_seed": kw["random_seed"],
                  "method": "empirical_bayes"}
        return kw

    def hierarchical(self, variant: str) -> bool:
        """Whether a variant learns the spread of the groups (tau): every kind but the ridge."""
        return self.variants[variant]["kind"] != "ridge_fixed_effects"

    # Thin wrappers over the pipeline (hierpool.workflow.run), kept so that code and tests written against
    # the former ModelSpec methods still work. Each delegates; none keeps state on the spec.
    def load_data(self):
        """Read, load or simulate the data of ``[data]``: :func:`hierpool.workflow.run.load_data`."""
        from hierpool.workflow import run

        return run.load_data(self)

    def prepare(self, df=None):
        """The data as a :class:`GroupedData`, columns checked: :func:`hierpool.workflow.run.prepare_data`."""
        from hierpool.workflow import run

        return run.prepare_data(self, df)

    def build(self, variant: str, gd=None):
        """The ``pm.Model`` of one variant: :func:`hierpool.workflow.run.build_model`."""
        from hierpool.workflow import run

        return run.build_model(self, variant, run.prepare_data(self) if gd is None else gd)

    def validate(self) -> tuple:
        """The data and every model checked, without sampling: :func:`hierpool.workflow.run.check`.

        Returns ``(GroupedData, {variant: pm.Model})``; raises :class:`SpecError`.
        """
        from hierpool.workflow import run

        return run.check(self)


# ------------------------------------------------------------------------------------------------------
def parse_spec(spec, source=None) -> ModelSpec:
    """Check a spec given as TOML text or as a dict and return a :class:`ModelSpec`.

    Structure, types and choices are checked here (:func:`hierpool.workflow.schema.check_spec`); the data
    and the models by :func:`hierpool.workflow.run.check`. All problems found are reported together in one
    :class:`SpecError`.

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
    checked = check_spec(raw, where)
    return ModelSpec(
        name=checked.name or (source.stem if source is not None else "model"),
        description=checked.description,
        data=checked.data.as_dict(),
        variants={name: v.model_dump(exclude_unset=True, exclude={"name"}) for name, v in checked.variants.items()},
        sampling=checked.sampling.as_dict(),
        output=checked.output.as_dict(),
        source=source,
        text=text,
    )


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
