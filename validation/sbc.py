"""Simulation-based calibration (SBC) of hierpool's model factories.

Talts, Betancourt, Simpson, Vehtari & Gelman (2018), "Validating Bayesian inference algorithms with
simulation-based calibration": if parameters are drawn from the prior, data from the likelihood given them,
and the posterior is computed correctly, the rank of each true parameter among L independent posterior
draws is uniform on {0, ..., L}. A histogram of ranks that is not flat shows a bug in the model, the
sampler or the way the two are glued together (or that the sampler does not mix).

How this harness does it, and why:

- **One model, fixed design.** For each (variant, family) a model is built once on a fixed design
  (:func:`make_design`: 10 groups of 1-5 rows, one standardized predictor) and compiled once with nutpie.
  The model's response enters through ``pm.Data`` containers (``"y_observed"``, or the sufficient
  statistics of a collapsed model), so every replication refits the *same compiled model* to a new
  simulated response through ``compiled.with_data(...)``: no recompilation (a fit of this size takes
  about 0.1 s; a compilation several seconds).
- **Priors fixed before the data.** hierpool's default priors are scaled to the data (``sd(y)``, the
  link of the mean of y, and for the horseshoe ``s / sqrt(N)``). In a built model those are *constants*
  computed from the response the model was built with, so the model that generates the data and the model
  that refits them are the same whatever that response was. To make the priors explicit anyway, the
  placeholder response of the design has mean 0 and standard deviation 1 on the link scale where it
  matters (gaussian: standardized; bernoulli/binomial: rate 1/2; poisson: mean 1), so every data-scaled
  default is a known number (``s = 1``, ``m = 0``), and the priors of intercept, beta, tau and sigma are
  passed explicitly (:data:`SBC_PRIORS`). The only default left is the horseshoe's global scale
  ``g0 = s / sqrt(N) = 1 / sqrt(30)``, which has no override argument.
- **Collapsed likelihoods.** By default (``collapse="auto"``) a gaussian model integrates the group
  effects out (a potential on sufficient statistics) and ``hp.fit`` draws ``group_effect`` afterwards from
  its exact conditional; count families pool rows that repeat a group and predictor pattern into cells.
  The *fit* model is what users get; the *data* model is always its row-level twin (``collapse=False``,
  same priors), which can simulate rows (:func:`build_pair`). Each refit maps the simulated rows to the
  fit model's data containers with ``hierpool.models.collapse.data_for`` and passes the nutpie trace through
  ``hierpool.inference.sampling.finalize`` exactly as ``hp.fit`` does, so the post-hoc draws of the group effects
  are calibrated too.
- **Parameters and data together.** ``pm.sample_prior_predictive`` on the data model draws the
  parameters and the response of every replication in one call. Ranked: ``intercept`` (at x = 0),
  ``beta[x1]``, ``tau`` where present, ``sigma`` for gaussian, and the group effects of a group of one
  row (``g0``), of three rows (``g4``) and of five rows (``g9``).
- **Thinning.** Each refit runs ``chains`` chains; the pooled draws are thinned by ``thin`` to
  ``n_ranks = L = 99`` draws, so ranks lie in 0..99. The bulk ESS of the unthinned draws is recorded for
  every parameter and replication (it should exceed L, otherwise the thinned draws are autocorrelated and
  ranks pile up at the ends even for a correct model). With ``min_ess`` (the integrated samplers' chains
  extended in place, as ``hp.fit(..., min_ess=)`` does) the chains' lengths are the stopping rule's, and
  each parameter's pooled draws are thinned to L equally spaced ones.
- **Uniformity test.** Ranks are binned into ``n_bins = 10`` equal bins of 10 ranks; the chi-square
  statistic of the bin counts against R / 10 each has 9 degrees of freedom. A parameter fails when its
  p-value is below ``alpha / n_tests`` (Bonferroni over all parameters tested together; ``alpha = 0.01``).
- **The test can fail.** :func:`misspecified_pair` builds a deliberately wrong pair: data generated with
  an intercept prior centered three prior SDs away from the fitted one (``"shifted_intercept"``), or tau
  generated from HalfNormal(1) but fitted under HalfNormal(0.1) (``"tau_too_small"``). The same harness
  and threshold must reject these.
"""

from __future__ import annotations

import contextlib
import dataclasses
import logging
import math
import warnings

import numpy as np
import pandas as pd
import pymc as pm
import xarray as xr
from scipy import stats

import hierpool as hp

__all__ = [
    "FAMILIES", "VARIANTS", "SBC_SIZES", "SBC_PRIORS", "MISSPECIFICATIONS", "make_design", "sbc_settings",
    "build_model", "build_pair", "collapse_of", "simulate_from_model", "compile_model", "refit", "default_parameters", "sbc_ranks",
    "rank_uniformity", "misspecified_pair", "run_sbc", "plot_rank_histograms",
]

FAMILIES = ("gaussian", "bernoulli", "binomial", "poisson")
VARIANTS = ("random_intercepts", "ridge_fixed_effects", "regularized_hierarchical")

#: Rows per group of the fixed SBC design (10 groups, 30 rows).
SBC_SIZES = (1, 1, 2, 2, 3, 3, 4, 4, 5, 5)
#: Trials per row of the binomial design.
SBC_TRIALS = 10
#: lam (prior precision of each group effect) of the ridge variant under SBC.
SBC_LAM = 1.0
#: Groups whose effects are ranked: one row, three rows, five rows.
RANKED_GROUPS = ("g0", "g4", "g9")

#: The explicit priors of the SBC models (link scale; the predictor is standardized, so beta is per SD).
SBC_PRIORS = {
    "intercept": hp.Prior("Normal", mu=0.0, sigma=1.0),
    "beta": hp.Prior("Normal", mu=0.0, sigma=0.5),
    "tau": hp.Prior("HalfNormal", sigma=1.0),
    "sigma": hp.Prior("HalfNormal", sigma=1.0),
}

MISSPECIFICATIONS = ("shifted_intercept", "tau_too_small")


# ------------------------------------------------------------------------------------------------------
@contextlib.contextmanager
def quiet():
    """Silence PyMC's 'Sampling: [...]' log lines and sampling warnings inside a block."""
    logger = logging.getLogger("pymc")
    level = logger.level
    logger.setLevel(logging.ERROR)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            yield
    finally:
        logger.setLevel(level)


def make_design(family: str, sizes=SBC_SIZES, *, trials: int = SBC_TRIALS, predictor: str = "normal",
                seed: int = 20260) -> pd.DataFrame:
    """A fixed design for SBC: groups ``g0, g1, ...`` of the given sizes, one standardized predictor ``x1``
    and a placeholder response ``y`` chosen so that hierpool's data-scaled defaults are neutral.

    The placeholder has mean 0 and SD 1 (gaussian), rate 1/2 (bernoulli, binomial with ``trials`` per
    row) or mean 1 (poisson): ``y_scale = 1`` and ``y_location = 0`` (exactly, for an even number of rows
    and even ``trials``). The response is replaced by simulated ones before any fit.

    Parameters
    ----------
    family : {"gaussian", "bernoulli", "binomial", "poisson"}
    sizes : sequence of int
        Rows per group.
    trials : int
        Trials per row (binomial).
    predictor : {"normal", "binary"}
        A continuous predictor (every row its own pattern), or a 0/1 predictor (standardized), so that rows
        of a group repeat a predictor pattern and count families collapse to cells with ``collapse="auto"``.
    seed : int
        Seed of the predictor (and of the gaussian placeholder).

    Examples
    --------
    >>> df = make_design("bernoulli")
    >>> df.shape, float(df["y"].mean()), round(float(df["x1"].std(ddof=0)), 6)
    ((30, 3), 0.5, 1.0)
    """
    if family not in FAMILIES:
        raise ValueError(f"family={family!r} is not valid; valid choices: {', '.join(FAMILIES)}.")
    sizes = np.asarray(sizes, dtype=int)
    if sizes.ndim != 1 or len(sizes) < 2 or (sizes < 1).any():
        raise ValueError(f"sizes must list at least two group sizes >= 1; got {sizes.tolist()}.")
    rng = np.random.default_rng(seed)
    gidx = np.repeat(np.arange(len(sizes)), sizes)
    n = gidx.size
    if predictor not in ("normal", "binary"):
        raise ValueError(f"predictor={predictor!r} is not valid; valid choices: 'normal', 'binary'.")
    x = rng.normal(size=n) if predictor == "normal" else (np.arange(n) % 2 == 0).astype(float)
    if predictor == "binary":
        rng.shuffle(x)
    x = (x - x.mean()) / x.std()
    if family == "gaussian":
        y = rng.normal(size=n)
        y = (y - y.mean()) / y.std()
    elif family == "bernoulli":
        y = (np.arange(n) % 2).astype(float)
    elif family == "binomial":
        y = np.full(n, float(trials // 2))
    else:
        y = np.ones(n)
    df = pd.DataFrame({"y": y, "group": [f"g{j}" for j in gidx], "x1": x})
    if family == "binomial":
        df["trials"] = int(trials)
    return df


def sbc_settings(variant: str, family: str) -> dict:
    """Factory keyword arguments (priors and variant settings) used for SBC of ``variant`` x ``family``.

    - random_intercepts: intercept ~ Normal(0, 1), beta ~ Normal(0, 0.5), tau ~ HalfNormal(1),
      sigma ~ HalfNormal(1) (gaussian).
    - ridge_fixed_effects: ``lam = 1`` (group effects ~ Normal(0, 1)); intercept, beta, sigma as above.
    - regularized_hierarchical: the default horseshoe on beta (``expected_nonzero = 1``, ``slab_scale = 2``,
      ``slab_df = 4``, global scale ``1/sqrt(30)``), the variant's own penalized-complexity prior
      tau ~ Exponential with P(tau > 1) = 0.05 (``tau_scale = 1``); intercept and sigma as above.

    Examples
    --------
    >>> sorted(sbc_settings("ridge_fixed_effects", "bernoulli"))
    ['lam', 'priors']
    """
    if variant not in VARIANTS:
        raise ValueError(f"variant={variant!r} is not valid; valid choices: {', '.join(VARIANTS)}.")
    if family not in FAMILIES:
        raise ValueError(f"family={family!r} is not valid; valid choices: {', '.join(FAMILIES)}.")
    keys = {"random_intercepts": ["intercept", "beta", "tau", "sigma"],
            "ridge_fixed_effects": ["intercept", "beta", "sigma"],
            "regularized_hierarchical": ["intercept", "sigma"]}[variant]
    if family != "gaussian":
        keys.remove("sigma")
    out: dict = {"priors": {k: SBC_PRIORS[k] for k in keys}}
    if variant == "ridge_fixed_effects":
        out["lam"] = SBC_LAM
    elif variant == "regularized_hierarchical":
        out.update(penalty="horseshoe", expected_nonzero=1, slab_scale=2.0, slab_df=4.0, tau_scale=1.0)
    return out


def build_model(variant: str, family: str, *, design: pd.DataFrame | None = None, priors: dict | None = None,
                collapse: bool | str = "auto", **factory_kwargs) -> pm.Model:
    """Build the SBC model of ``variant`` x ``family`` on ``design`` (default :func:`make_design`).

    ``priors`` entries replace those of :func:`sbc_settings` (e.g. ``{"tau": 0.5}`` fixes tau);
    ``collapse`` is passed to the factory ("auto" is what users get: the exact collapsed gaussian
    likelihood, and pooled count cells where rows repeat a group and predictor pattern); ``factory_kwargs``
    replace the other settings.

    Examples
    --------
    >>> m = build_model("random_intercepts", "gaussian", collapse=False)
    >>> "y_observed" in m.named_vars
    True
    """
    settings = sbc_settings(variant, family)
    if design is None:
        design = make_design(family)
    settings["priors"] = {**settings["priors"], **(priors or {})}
    settings.update(factory_kwargs)
    if collapse != "auto":  # also works with a hierpool whose factories have no collapse= argument
        settings["collapse"] = collapse
    factory = {"random_intercepts": hp.random_intercepts, "ridge_fixed_effects": hp.ridge_fixed_effects,
               "regularized_hierarchical": hp.regularized_hierarchical}[variant]
    predictors = [c for c in design.columns if c.startswith("x")]
    extra = {"trials": "trials"} if family == "binomial" else {}
    gd = hp.prepare(design, y="y", group="group", predictors=predictors, family=family, **extra)
    return factory(gd, **settings)


def collapse_of(model: pm.Model) -> str | None:
    """How the model's likelihood is collapsed: None (row level), "gaussian" or "counts"."""
    return hp.describe(model).collapse


def build_pair(variant: str, family: str, *, design: pd.DataFrame | None = None, priors: dict | None = None,
               data_priors: dict | None = None, collapse: bool | str = "auto",
               **factory_kwargs) -> tuple[pm.Model, pm.Model]:
    """The (fit_model, data_model) pair of an SBC run.

    The data model is always the row-level model (``collapse=False``): a collapsed gaussian model has its
    likelihood as a potential on sufficient statistics and cannot simulate rows, and a count-collapsed
    one simulates cells. It has the fit model's priors unless ``data_priors`` replaces some of them (a
    deliberately misspecified pair).

    Examples
    --------
    >>> fit_m, data_m = build_pair("random_intercepts", "gaussian")
    >>> collapse_of(data_m) is None
    True
    """
    if design is None:
        design = make_design(family)
    fit_model = build_model(variant, family, design=design, priors=priors, collapse=collapse, **factory_kwargs)
    data_model = build_model(variant, family, design=design, priors={**(priors or {}), **(data_priors or {})},
                             collapse=False, **factory_kwargs)
    if "y_observed" not in data_model.named_vars:
        raise RuntimeError(
            "the row-level model has no data container 'y_observed'; SBC refits a compiled model to new "
            "responses through it (see hierpool.models._likelihood)."
        )
    return fit_model, data_model


def simulate_from_model(model: pm.Model, n_sims: int, seed: int) -> tuple[xr.Dataset, np.ndarray]:
    """Draw ``n_sims`` parameter sets and responses from the prior predictive of a row-level ``model``.

    Returns the parameters as a Dataset with leading dim ``sim`` and the responses as an array
    ``(n_sims, n_rows)``.
    """
    if collapse_of(model) is not None:
        raise ValueError(
            f"the data model must be a row-level model (collapse=False); got collapse={collapse_of(model)!r}."
        )
    with quiet():
        pp = pm.sample_prior_predictive(draws=n_sims, model=model, random_seed=seed)
    prior = pp["prior"].to_dataset().isel(chain=0).rename(draw="sim")
    y = np.asarray(pp["prior_predictive"]["y"].values[0], dtype=float)
    return prior, y


def compile_model(model: pm.Model):
    """Compile ``model`` once with nutpie (numba backend) for repeated refits."""
    import nutpie

    keep = [v for v in ("intercept", "beta", "tau", "sigma", "group_effect") if v in model.named_vars]
    with quiet():
        return nutpie.compile_pymc_model(model, var_names=keep)


def _data_for(model: pm.Model, y: np.ndarray) -> dict:
    """The data containers that refit ``model`` to the row-level response ``y``."""
    try:
        from hierpool.models.collapse import data_for
    except ImportError:  # a hierpool without collapsed likelihoods
        return {"y_observed": np.asarray(y, dtype=float)}
    return data_for(model, y)


def refit(compiled, model: pm.Model, y: np.ndarray, *, draws: int, tune: int, chains: int, seed: int,
          target_accept: float = 0.9) -> tuple[xr.Dataset, int]:
    """Refit a compiled hierpool model to the row-level response ``y``.

    Samples with nutpie (what ``hp.fit`` uses by default) and then passes the trace through
    ``hierpool.inference.sampling.finalize`` with the model's data set to ``y``, exactly as ``hp.fit`` does: for a
    collapsed gaussian model that is where ``group_effect`` is drawn from its exact conditional, so SBC
    checks that step too. Returns the contract's posterior Dataset and the number of divergences.
    """
    import nutpie

    from hierpool.inference.sampling import finalize

    y = np.asarray(y, dtype=float)
    with quiet():
        trace = nutpie.sample(compiled.with_data(**_data_for(model, y)), draws=draws, tune=tune, chains=chains,
                              cores=chains, seed=seed, progress_bar=False, target_accept=target_accept)
        div = int(trace["sample_stats"]["diverging"].sum()) if "sample_stats" in trace.children else 0
        dt = finalize(trace, hp.describe(model).with_response(y), engine="nutpie", log_likelihood=False,
                      random_seed=seed)
    return dt["posterior"].to_dataset(), div


def refit_gibbs(model: pm.Model, plan, y: np.ndarray, *, draws: int, tune: int, chains: int,
                seed: int) -> tuple[xr.Dataset, int]:
    """Refit ``model`` to the response ``y`` with hierpool's Pólya-Gamma Gibbs sampler (``plan`` is
    ``hierpool.inference.gibbs.plan(model)``; only the response changes between refits), through the same
    ``finalize`` as ``hp.fit``. Returns the posterior Dataset and 0 (a Gibbs sampler has no divergences)."""
    from hierpool.inference.sampling import _sample_gibbs

    y = np.asarray(y, dtype=float)
    pl = dataclasses.replace(plan, kappa=y - plan.b / 2)
    with quiet():
        dt = _sample_gibbs(pl, hp.describe(model).with_response(y), draws=draws, tune=tune, chains=chains, cores=chains, random_seed=seed,
                           progressbar=False, log_likelihood=False, max_group_effect_values=2.5e8)
    return dt["posterior"].to_dataset(), 0


def refit_integrated(model: pm.Model, y: np.ndarray, *, draws: int, tune: int, chains: int,
                     seed: int, min_ess: float | None = None, max_rounds: int = 20) -> tuple[xr.Dataset, int]:
    """Refit ``model`` to the response ``y`` with hierpool's integrated sampler
    (:mod:`hierpool.inference.integrated`), through the same ``finalize`` as ``hp.fit``. Returns the
    posterior Dataset and 0 (no divergences).

    With ``min_ess`` the chains are extended in place until the population parameters' bulk and tail ESS
    reach it with R-hat <= 1.01 (``hp.fit(..., min_ess=)``'s rule, :class:`hierpool.inference.sampling.
    _MoreDraws`, at most ``max_rounds x draws`` draws per chain); the group effects are then kept at about
    ``min_ess`` draws in all, on a draw dimension of their own (``ge_draw`` here; ``hp.fit`` puts them in the
    ``posterior_group_effects`` group)."""
    from hierpool.inference import integrated, integrated_gaussian
    from hierpool.inference.sampling import _MoreDraws, _sample_integrated, _sample_integrated_gaussian

    desc = hp.describe(model).with_response(np.asarray(y, dtype=float))
    more = None if min_ess is None else _MoreDraws(min_ess, draws, max_rounds, 2.5e8)
    with quiet():
        if desc.family == "gaussian":  # coefficients and group effects integrated out exactly
            dt = _sample_integrated_gaussian(integrated_gaussian.plan(desc), desc, draws=draws, tune=tune,
                                             chains=chains, random_seed=seed, log_likelihood=False,
                                             max_group_effect_values=2.5e8, more=more)
        else:
            dt = _sample_integrated(integrated.plan(desc), desc, draws=draws, tune=tune, chains=chains,
                                    random_seed=seed, progressbar=False, log_likelihood=False, n_nodes=None,
                                    max_group_effect_values=2.5e8, more=more)
    post = dt["posterior"].to_dataset()
    if "posterior_group_effects" in dt.children:  # thinned apart: kept on a draw dimension of their own
        ge = dt["posterior_group_effects"].to_dataset().rename({"draw": "ge_draw"})
        post = post.assign({name: ge[name] for name in ge.data_vars})
    if more is not None:  # what the rule did: the draws per chain it stopped at, and whether min_ess was met
        last = more.trail[-1]
        post.attrs["min_ess_reached"] = more.reached(last["min_ess_bulk"], last["min_ess_tail"], last["max_rhat"])
    return post, 0


def default_parameters(model: pm.Model, groups=RANKED_GROUPS) -> list[str]:
    """Labels of the parameters SBC ranks for ``model``: intercept, each beta, tau and sigma when free
    (a prior, not a fixed number), and the effects of ``groups``.

    Examples
    --------
    >>> default_parameters(build_model("ridge_fixed_effects", "poisson"))
    ['intercept', 'beta[x1]', 'group_effect[g0]', 'group_effect[g4]', 'group_effect[g9]']
    """
    free = {v.name for v in model.free_RVs}
    out = ["intercept"]
    out += [f"beta[{p}]" for p in model.coords.get("predictor", ())]
    out += [name for name in ("tau", "sigma") if name in free or f"{name}_sq" in free]
    known = set(model.coords["group"])
    out += [f"group_effect[{g}]" for g in groups if g in known]
    return out


def _values(ds: xr.Dataset, label: str, sample_dims: tuple[str, ...]) -> np.ndarray:
    """Values of ``label`` (``name`` or ``name[coord]``) with the sample dims first, other dims dropped."""
    if label.endswith("]"):
        name, coord = label[:-1].split("[", 1)
        da = ds[name]
        (dim,) = [d for d in da.dims if d not in sample_dims]
        da = da.sel({dim: coord})
    else:
        da = ds[label]
    return np.asarray(da.transpose(*sample_dims).values, dtype=float)


def _ess_bulk(x: np.ndarray) -> float:
    """Bulk ESS of draws shaped (chain, draw)."""
    from arviz_stats.base import array_stats

    if np.ptp(x) == 0:
        return float("nan")
    return float(array_stats.ess(x, chain_axis=0, draw_axis=1, method="bulk"))


def sbc_ranks(
    fit_model: pm.Model,
    *,
    data_model: pm.Model | None = None,
    n_sims: int = 100,
    parameters: list[str] | None = None,
    n_ranks: int = 99,
    thin: int = 4,
    chains: int = 2,
    tune: int = 300,
    seed: int = 0,
    target_accept: float = 0.9,
    compiled=None,
    sampler: str = "nutpie",
    min_ess: float | None = None,
    max_rounds: int = 20,
) -> pd.DataFrame:
    """Ranks of the true parameters among thinned posterior draws, one row per replication x parameter.

    Parameters
    ----------
    fit_model : pymc.Model
        The model refitted to every simulated response (built by a hierpool factory).
    data_model : pymc.Model, optional
        The row-level model (``collapse=False``) whose prior predictive generates parameters and
        responses (see :func:`build_pair`); default ``fit_model`` itself when that is row-level. A model
        with other priors checks that a misspecified fit is detected. Same design (rows, groups,
        predictors) as ``fit_model``.
    n_sims : int
        Replications R.
    parameters : list of str, optional
        Labels to rank; default :func:`default_parameters` of ``data_model`` that ``fit_model`` also has.
    n_ranks : int
        L, the number of thinned draws: ranks lie in 0..L.
    thin : int
        Keep every ``thin``-th of the pooled draws; each chain runs ``ceil(thin * L / chains)`` draws.
    chains, tune : int
        nutpie chains (run in parallel) and tuning steps per chain.
    seed : int
        Seeds the simulation and every refit (refit ``i`` uses ``seed * 100_003 + i``).
    target_accept : float
        NUTS target acceptance.
    compiled : nutpie compiled model, optional
        ``compile_model(fit_model)``, when already available.
    sampler : {"nutpie", "gibbs", "integrated"}
        Refit with nutpie's NUTS, with hierpool's Pólya-Gamma Gibbs sampler (logistic models with
        Normal priors on intercept and coefficients; ``tune`` is its burn-in), or with its integrated
        sampler (count random intercepts, :mod:`hierpool.inference.integrated`; gaussian random intercepts
        with the default collapsed likelihood, :mod:`hierpool.inference.integrated_gaussian`).
    min_ess, max_rounds : optional
        ``sampler="integrated"`` only: ``hp.fit(..., min_ess=)``'s path, each refit's chains extended in
        place from ``ceil(thin * L / chains)`` draws until the bulk and tail ESS of the population parameters
        reach ``min_ess`` (R-hat <= 1.01), at most ``max_rounds`` times that many. The pooled draws of each
        parameter (the population's and the group effects' own, kept at about ``min_ess``) are then thinned
        to L equally spaced ones; ``min_ess`` should be well above L for them to be about independent. What
        this checks is that the adaptive stopping rule keeps the posterior calibrated.

    Returns
    -------
    pandas.DataFrame
        Columns ``sim``, ``parameter``, ``rank`` (0..L), ``truth``, ``post_mean``, ``post_sd``,
        ``ess_bulk`` (of the unthinned draws), ``divergences`` (of the refit); with ``min_ess`` also
        ``draws`` (per chain, where the rule stopped) and ``min_ess_reached``. ``attrs["n_ranks"]`` is L.

    Examples
    --------
    >>> fit_model, data_model = build_pair("random_intercepts", "gaussian")
    >>> ranks = sbc_ranks(fit_model, data_model=data_model, n_sims=3, seed=1)   # doctest: +SKIP
    >>> ranks["rank"].between(0, 99).all()                 # doctest: +SKIP
    True
    """
    if data_model is None:
        if collapse_of(fit_model) is not None:
            raise ValueError(
                f"fit_model has a collapsed likelihood ({collapse_of(fit_model)!r}); give data_model=, the "
                "row-level twin that simulates rows (build_pair returns both)."
            )
        data_model = fit_model
    if len(data_model.coords["obs_id"]) != len(fit_model.coords["obs_id"]):
        raise ValueError("data_model and fit_model must share one design (same rows).")
    if parameters is None:
        fit_has = set(default_parameters(fit_model))
        parameters = [p for p in default_parameters(data_model) if p in fit_has]
    draws = math.ceil(thin * n_ranks / chains)
    if min_ess is not None and sampler != "integrated":
        raise ValueError(f"min_ess={min_ess!r} is for sampler='integrated' (chains extended in place); got "
                         f"sampler={sampler!r}.")
    truth, ys = simulate_from_model(data_model, n_sims, seed)
    if sampler == "gibbs":
        from hierpool.inference import gibbs

        plan = gibbs.plan(fit_model)
        if isinstance(plan, str):
            raise ValueError(f"sampler='gibbs' cannot sample this model: {plan}")
    elif sampler == "integrated":
        from hierpool.inference import integrated, integrated_gaussian

        desc = hp.describe(fit_model)
        why = (integrated_gaussian if desc.family == "gaussian" else integrated).plan(desc)
        if isinstance(why, str):
            raise ValueError(f"sampler='integrated' cannot sample this model: {why}")
    elif sampler != "nutpie":
        raise ValueError(f"sampler={sampler!r} is not valid; valid choices: 'nutpie', 'gibbs', 'integrated'.")
    elif compiled is None:
        compiled = compile_model(fit_model)
    rng = np.random.default_rng(seed + 7)
    rows = []
    for i in range(n_sims):
        if sampler == "gibbs":
            post, div = refit_gibbs(fit_model, plan, ys[i], draws=draws, tune=tune, chains=chains,
                                    seed=seed * 100_003 + i)
        elif sampler == "integrated":
            post, div = refit_integrated(fit_model, ys[i], draws=draws, tune=tune, chains=chains,
                                         seed=seed * 100_003 + i, min_ess=min_ess, max_rounds=max_rounds)
        else:
            post, div = refit(compiled, fit_model, ys[i], draws=draws, tune=tune, chains=chains,
                              seed=seed * 100_003 + i, target_accept=target_accept)
        for label in parameters:
            true_value = float(_values(truth.isel(sim=i), label, ()))
            name = label.split("[", 1)[0]
            draws_cd = _values(post, label, ("chain", "ge_draw" if "ge_draw" in post[name].dims else "draw"))
            flat = draws_cd.reshape(-1)
            if min_ess is None:
                kept = flat[::thin][:n_ranks]
            else:  # chains of the length the rule chose: L draws equally spaced over them
                kept = flat[np.linspace(0, flat.size - 1, n_ranks).round().astype(int)]
            ties = int((kept == true_value).sum())
            rank = int((kept < true_value).sum()) + (int(rng.integers(0, ties + 1)) if ties else 0)
            row = {
                "sim": i, "parameter": label, "rank": rank, "truth": true_value,
                "post_mean": float(flat.mean()), "post_sd": float(flat.std()),
                "ess_bulk": _ess_bulk(draws_cd), "divergences": div,
            }
            if min_ess is not None:
                row |= {"draws": int(post.sizes["draw"]), "min_ess_reached": bool(post.attrs["min_ess_reached"])}
            rows.append(row)
    out = pd.DataFrame(rows)
    out.attrs["n_ranks"] = int(n_ranks)
    return out


def rank_uniformity(
    ranks: pd.DataFrame,
    *,
    n_ranks: int | None = None,
    n_bins: int = 10,
    alpha: float = 0.01,
    n_tests: int | None = None,
) -> pd.DataFrame:
    """Chi-square test of uniformity of the rank histogram of every parameter.

    The L + 1 possible ranks are split into ``n_bins`` bins of equal width (L + 1 must be a multiple of
    ``n_bins``); under a correct model the counts are multinomial with equal probabilities, and
    ``X^2 = sum (count - R/B)^2 / (R/B)`` is approximately chi-square with B - 1 degrees of freedom
    (adequate when R/B >= 5). A parameter is flagged non-uniform when its p-value is below
    ``alpha / n_tests`` (Bonferroni); ``n_tests`` defaults to the number of parameters in ``ranks``.

    Returns
    -------
    pandas.DataFrame
        One row per parameter: ``parameter``, ``n_sims``, ``chi2``, ``df``, ``p_value``, ``p_threshold``,
        ``uniform``, ``mean_rank`` (L/2 expected), ``ess_bulk_min``, ``frac_ess_below_L`` (replications
        whose unthinned bulk ESS is below L), ``frac_divergent`` (replications with any divergence),
        ``counts`` (space-separated bin counts).

    Examples
    --------
    >>> rng = np.random.default_rng(0)
    >>> fake = pd.DataFrame({"sim": range(200), "parameter": "a", "rank": rng.integers(0, 100, 200)})
    >>> bool(rank_uniformity(fake, n_ranks=99)["uniform"].iloc[0])
    True
    """
    if n_ranks is None:
        n_ranks = ranks.attrs.get("n_ranks")
        if n_ranks is None:
            raise ValueError("n_ranks is not given and ranks.attrs has no 'n_ranks'.")
    if (n_ranks + 1) % n_bins:
        raise ValueError(f"n_bins={n_bins} must divide n_ranks + 1 = {n_ranks + 1} (equal-width bins).")
    if not 0 < alpha < 1:
        raise ValueError(f"alpha must be in the open interval (0, 1); got {alpha!r}.")
    params = list(dict.fromkeys(ranks["parameter"]))
    n_tests = len(params) if n_tests is None else int(n_tests)
    width = (n_ranks + 1) // n_bins
    rows = []
    for p in params:
        sub = ranks[ranks["parameter"] == p]
        r = sub["rank"].to_numpy()
        if r.min() < 0 or r.max() > n_ranks:
            raise ValueError(f"ranks of {p!r} must lie in 0..{n_ranks}.")
        counts = np.bincount(r // width, minlength=n_bins)
        expected = len(r) / n_bins
        chi2 = float(((counts - expected) ** 2 / expected).sum())
        pval = float(stats.chi2.sf(chi2, n_bins - 1))
        row = {
            "parameter": p, "n_sims": len(r), "chi2": chi2, "df": n_bins - 1, "p_value": pval,
            "p_threshold": alpha / n_tests, "uniform": pval >= alpha / n_tests, "mean_rank": float(r.mean()),
        }
        if "ess_bulk" in sub:
            row["ess_bulk_min"] = float(np.nanmin(sub["ess_bulk"]))
            row["frac_ess_below_L"] = float((sub["ess_bulk"] < n_ranks).mean())
        if "divergences" in sub:
            row["frac_divergent"] = float((sub["divergences"] > 0).mean())
        row["counts"] = " ".join(str(int(c)) for c in counts)
        rows.append(row)
    return pd.DataFrame(rows)


def misspecified_pair(kind: str, variant: str = "random_intercepts", family: str = "gaussian",
                      design: pd.DataFrame | None = None, collapse: bool | str = "auto") -> tuple[pm.Model, pm.Model]:
    """A deliberately wrong (fit_model, data_model) pair that SBC must reject.

    - ``"shifted_intercept"``: data from intercept ~ Normal(3, 1), fitted under Normal(0, 1): the truth
      sits three prior SDs from where the fitted prior puts it, so the posterior is pulled below it and
      the ranks of ``intercept`` pile up at the top.
    - ``"tau_too_small"``: data from tau ~ HalfNormal(1), fitted under tau ~ HalfNormal(0.1): the fitted
      group effects are shrunk too far, so ranks of tau sit at the top and those of group effects in
      the tails (random_intercepts only).

    Examples
    --------
    >>> fit_m, data_m = misspecified_pair("shifted_intercept")
    >>> fit_m is not data_m
    True
    """
    if kind not in MISSPECIFICATIONS:
        raise ValueError(f"kind={kind!r} is not valid; valid choices: {', '.join(MISSPECIFICATIONS)}.")
    if kind == "shifted_intercept":
        return build_pair(variant, family, design=design, collapse=collapse,
                          data_priors={"intercept": hp.Prior("Normal", mu=3.0, sigma=1.0)})
    if variant != "random_intercepts":
        raise ValueError("kind='tau_too_small' applies to variant='random_intercepts' only.")
    return build_pair(variant, family, design=design, collapse=collapse,
                      priors={"tau": hp.Prior("HalfNormal", sigma=0.1)}, data_priors={"tau": SBC_PRIORS["tau"]})


def run_sbc(variant: str, family: str, *, n_sims: int = 100, seed: int = 0, misspecified: str | None = None,
            collapse: bool | str = "auto", design: pd.DataFrame | None = None, **kwargs) -> pd.DataFrame:
    """Build the models of ``variant`` x ``family`` (or a misspecified pair) and return the SBC ranks.

    ``collapse`` goes to the fit model's factory ("auto" is the default users get); ``kwargs`` go to
    :func:`sbc_ranks`. The result's ``attrs`` record variant, family, collapse and misspecification.

    Examples
    --------
    >>> ranks = run_sbc("random_intercepts", "bernoulli", n_sims=100, seed=1)   # doctest: +SKIP
    >>> rank_uniformity(ranks)["uniform"].all()                                 # doctest: +SKIP
    True
    """
    if misspecified is None:
        fit_model, data_model = build_pair(variant, family, design=design, collapse=collapse)
    else:
        fit_model, data_model = misspecified_pair(misspecified, variant, family, design=design, collapse=collapse)
    ranks = sbc_ranks(fit_model, data_model=data_model, n_sims=n_sims, seed=seed, **kwargs)
    ranks.attrs.update(variant=variant, family=family, misspecified=misspecified or "",
                       collapse=str(collapse_of(fit_model)))
    return ranks


def plot_rank_histograms(ranks: pd.DataFrame, *, n_bins: int = 10, title: str = "", alpha_band: float = 0.99):
    """One panel per parameter: the rank histogram with the expected count and its central
    ``alpha_band`` binomial band (Talts et al. 2018, Fig. 2). Returns a matplotlib Figure."""
    import matplotlib.pyplot as plt

    n_ranks = ranks.attrs["n_ranks"]
    params = list(dict.fromkeys(ranks["parameter"]))
    ncol = min(len(params), 4)
    nrow = math.ceil(len(params) / ncol)
    fig, axes = plt.subplots(nrow, ncol, figsize=(3.2 * ncol, 2.4 * nrow), squeeze=False)
    width = (n_ranks + 1) // n_bins
    for ax, p in zip(list(axes.flat)[: len(params)], params, strict=True):
        r = ranks.loc[ranks["parameter"] == p, "rank"].to_numpy()
        counts = np.bincount(r // width, minlength=n_bins)
        R = len(r)
        lo, hi = stats.binom.ppf([(1 - alpha_band) / 2, 1 - (1 - alpha_band) / 2], R, 1 / n_bins)
        ax.axhspan(lo, hi, color="0.85", zorder=0)
        ax.axhline(R / n_bins, color="0.4", lw=1)
        ax.bar(np.arange(n_bins) * width, counts, width=width, align="edge", color="C0", edgecolor="white")
        ax.set_title(p, fontsize=9)
        ax.set_xlim(0, n_ranks + 1)
        ax.tick_params(labelsize=7)
    for ax in list(axes.flat)[len(params):]:
        ax.axis("off")
    if title:
        fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    return fig
