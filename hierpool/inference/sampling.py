"""Fitting: :func:`fit` runs NUTS on a factory's model and returns a self-contained ``xr.DataTree``;
(:func:`~hierpool.inference.diagnostics.check_sampling` reports divergences, R-hat and ESS problems.)

:func:`from_trace` turns a trace sampled outside :func:`fit` into the same contract.
"""

from __future__ import annotations

import contextvars
import importlib.util
import json
import math
import os
import warnings
from numbers import Integral

import numpy as np
import pymc as pm
import xarray as xr

from hierpool.core import config
from hierpool.core import kernels as K
from hierpool.core import names as N
from hierpool.core.families import get_family
from hierpool.core.validate import one_of, positive_int, probability
from hierpool.inference import gibbs, integrated, integrated_gaussian
from hierpool.inference import nutpie as _nutpie
from hierpool.inference.conditional import collapsed_group_effects
from hierpool.inference.diagnostics import HierpoolSamplingWarning, check_sampling, varies
from hierpool.inference.predictive import design_from_constant, linear_predictor, other_factor_effects
from hierpool.models.collapse import ON_WORKERS
from hierpool.models.crossed import posterior_names
from hierpool.models.description import ModelDescription, describe

__all__ = ["fit", "check_fit", "from_trace", "finalize", "resolve_sampler", "constant_data", "pointwise_log_likelihood"]

_INSTALL = {
    "nutpie": "pip install 'hierpool[nutpie]'  (or: pip install nutpie)",
    "numpyro": "pip install 'hierpool[numpyro]'  (or: pip install numpyro jax)",
}






#: The posterior variables a fit keeps (random slopes add group_slope, tau_slope and group_corr).
_POSTERIOR_VARS = (N.INTERCEPT, N.BETA, N.GROUP_EFFECT, N.TAU, N.SIGMA, N.GROUP_SLOPE, N.TAU_SLOPE, N.GROUP_CORR)


def _version() -> str:
    from hierpool.core.version import __version__

    return __version__


def resolve_sampler(sampler: str) -> str:
    """The NUTS implementation: 'auto' picks nutpie when installed (fastest on CPU here), else PyMC's own.

    ('gibbs' and 'integrated' are returned as they are; whether "auto" means an integrated sampler is
    decided per model by :func:`fit`.)"""
    one_of("sampler", sampler, N.SAMPLERS)
    if sampler == "auto":
        return "nutpie" if importlib.util.find_spec("nutpie") else "pymc"
    needed = {"nutpie": ["nutpie"], "numpyro": ["numpyro", "jax"]}.get(sampler, [])
    for mod in needed:
        if importlib.util.find_spec(mod) is None:
            raise ImportError(f"sampler={sampler!r} needs the package {mod!r}; install it with: {_INSTALL[sampler]}")
    return sampler


def constant_data(gd) -> xr.Dataset:
    """What the analysis needs without the original frame, as a Dataset with the contract's dims.

    Data reduced to sufficient statistics (GroupedStats) has no rows: only the group-level variables.
    """
    if not hasattr(gd, "group_idx"):
        ds = xr.Dataset(
            {N.GROUP_N: ((N.GROUP,), gd.group_n), N.GROUP_RAW_MEAN: ((N.GROUP,), gd.group_raw_mean),
             N.GROUP_DENOM: ((N.GROUP,), gd.group_denominator)},
            coords={N.GROUP: gd.groups.to_numpy()},
        )
        if gd.n_predictors:
            ds.coords[N.PREDICTOR] = np.asarray(gd.predictors, dtype=object)
            ds[N.X_CENTER] = ((N.PREDICTOR,), gd.x_center)
            ds[N.X_SCALE] = ((N.PREDICTOR,), gd.x_scale)
        return ds
    coords = {N.GROUP: gd.groups.to_numpy(), N.OBS: np.arange(gd.n_obs)}
    ds = xr.Dataset(
        {
            N.GROUP_IDX: ((N.OBS,), gd.group_idx),
            N.GROUP_N: ((N.GROUP,), gd.group_n),
            N.GROUP_RAW_MEAN: ((N.GROUP,), gd.group_raw_mean),
            N.GROUP_DENOM: ((N.GROUP,), gd.group_denominator),
        },
        coords=coords,
    )
    if gd.n_predictors:
        ds.coords[N.PREDICTOR] = np.asarray(gd.predictors, dtype=object)
        ds[N.X] = ((N.OBS, N.PREDICTOR), gd.X)
        ds[N.X_CENTER] = ((N.PREDICTOR,), gd.x_center)
        ds[N.X_SCALE] = ((N.PREDICTOR,), gd.x_scale)
    if gd.trials is not None:
        ds[N.TRIALS] = ((N.OBS,), gd.trials)
    if gd.exposure is not None:
        ds[N.EXPOSURE] = ((N.OBS,), gd.exposure)
    if gd.summary_level:  # summary-level data: the known standard error of each row (= group)
        ds[N.SE] = ((N.OBS,), gd.se)
    for f in getattr(gd, "factors", ()):  # further grouping factors (hierpool.data.factors)
        dim = N.factor_var(N.GROUP, f.name)
        st = gd.factor_stats(f)
        ds.coords[dim] = f.levels.to_numpy()
        ds[N.factor_var(N.GROUP_IDX, f.name)] = ((N.OBS,), f.idx)
        ds[N.factor_var(N.GROUP_N, f.name)] = ((dim,), st["n"])
        ds[N.factor_var(N.GROUP_RAW_MEAN, f.name)] = ((dim,), st["raw_mean"])
        ds[N.factor_var(N.GROUP_DENOM, f.name)] = ((dim,), st["denominator"])
    return ds


def pointwise_log_likelihood(post: xr.Dataset, const: xr.Dataset, y: xr.DataArray, family: str) -> xr.DataArray:
    """log p(y_i | parameters of each draw), dims (chain, draw, obs_id).

    One compiled pass writes the result (:func:`hierpool.core.kernels.pointwise_loglik`): no temporaries of
    its size, whatever the number of draws and rows.
    """
    if N.GROUP_SLOPE in post:  # random slopes: the numpy path (hierpool.inference.slopes)
        from hierpool.inference.slopes import pointwise_log_likelihood_slopes

        return pointwise_log_likelihood_slopes(post, const, y, family)
    X, gidx, offset, trials = design_from_constant(const)
    extra = other_factor_effects(post, const)
    if extra is not None:  # several grouping factors: every factor's effect enters each row's eta
        eta = linear_predictor(post, X, gidx, offset, extra=extra)
        sigma = post[N.SIGMA] if get_family(family).has_sigma else None
        ll = get_family(family).log_likelihood(y, eta, sigma=sigma, trials=trials)
        return ll.transpose(*N.SAMPLE_DIMS, N.OBS).drop_vars(
            [c for c in ll.coords if c not in (*N.SAMPLE_DIMS, N.OBS)]).rename(None)
    if N.SE in const:  # summary-level data: the known se of each row in place of sigma (rows = groups: few)
        eta = linear_predictor(post, X, gidx, offset)
        ll = get_family(family).log_likelihood(y, eta, sigma=const[N.SE])
        return ll.transpose(*N.SAMPLE_DIMS, N.OBS).drop_vars(
            [c for c in ll.coords if c not in (*N.SAMPLE_DIMS, N.OBS)]).rename(None)
    C, D = post.sizes["chain"], post.sizes["draw"]
    beta = post[N.BETA].transpose(*N.SAMPLE_DIMS, N.PREDICTOR).values if X is not None and N.BETA in post else None
    sigma = post[N.SIGMA].transpose(*N.SAMPLE_DIMS).values if get_family(family).has_sigma else None
    ll = K.pointwise_loglik(
        family, post[N.INTERCEPT].transpose(*N.SAMPLE_DIMS).values, beta,
        post[N.GROUP_EFFECT].transpose(*N.SAMPLE_DIMS, N.GROUP).values.reshape(C * D, -1), sigma, y.values,
        None if X is None else X.transpose(N.OBS, N.PREDICTOR).values, gidx.values,
        None if offset is None else offset.values, None if trials is None else trials.values)
    return xr.DataArray(ll.reshape(C, D, -1), dims=(*N.SAMPLE_DIMS, N.OBS),
                        coords={"chain": post["chain"].values, "draw": post["draw"].values, N.OBS: y[N.OBS].values})


class _DryRun(Exception):
    """Raised by :func:`_stop_if_dry` where :func:`fit` would start sampling, under :func:`check_fit`."""


_DRY = contextvars.ContextVar("hierpool_fit_dry_run", default=False)


def _stop_if_dry() -> None:
    """The point of no return of :func:`fit`: every check passed, the sampling starts next."""
    if _DRY.get():
        raise _DryRun


def check_fit(model: pm.Model, *args, random_seed=None, **kwargs) -> None:
    """Run :func:`fit`'s checks with :func:`fit`'s arguments, and stop where it would start sampling.

    Raises what :func:`fit` raises before it samples (the same code raises it: :func:`fit` itself runs up
    to the sampler's call and stops there): an argument out of range, a sampler that is not installed or
    cannot run the model (``"gibbs"``, ``"integrated"``), settings the chosen sampler or method refuses,
    a model empirical Bayes cannot fit. Returns None where :func:`fit` would sample. The ``hierpool``
    command line calls it for every variant before it writes anything.

    Costs what :func:`fit` pays before sampling: the integrated and Gibbs samplers' plans are built (the
    data's per-group statistics; milliseconds for the data of a spec, seconds at a million groups). A numpy
    ``Generator`` given as ``random_seed`` is not drawn from. What PyMC checks only when it samples (the
    keywords passed on to :func:`pymc.sample`) is left to :func:`fit`.
    """
    if isinstance(random_seed, np.random.Generator):  # fit draws an integer from it: not from the caller's
        random_seed = None
    token = _DRY.set(True)
    try:
        fit(model, *args, random_seed=random_seed, **kwargs)
    except _DryRun:
        return None
    finally:
        _DRY.reset(token)
    raise AssertionError("fit returned under check_fit without reaching the sampler")  # pragma: no cover


def fit(
    model: pm.Model,
    draws: int = 1000,
    tune: int = 1000,
    chains: int = 4,
    sampler: str = "auto",
    random_seed: int | None = None,
    progressbar: bool = True,
    *,
    cores: int | None = None,
    target_accept: float | None = None,
    log_likelihood: bool | str = "auto",
    max_group_effect_values: float | None = None,
    method: str = "full_bayes",
    criterion: str = "reml",
    n_nodes: int | None = None,
    min_ess: float | None = None,
    max_rounds: int = 4,
    client=None,
    **kwargs,
) -> xr.DataTree:
    """Sample the posterior of a hierpool model and return a self-contained ``xr.DataTree``.

    Parameters
    ----------
    model : pymc.Model
        Built by :func:`random_intercepts`, :func:`ridge_fixed_effects` or :func:`regularized_hierarchical`.
    draws, tune, chains : int
        Posterior draws and tuning steps per chain, and the number of chains (4 by default; R-hat needs
        several).
    sampler : {"auto", "pymc", "nutpie", "numpyro", "gibbs", "integrated"}
        ``"pymc"``, ``"nutpie"``, ``"numpyro"``: NUTS implementations. ``"integrated"``: the sampler of
        :mod:`hierpool.inference.integrated` for bernoulli, binomial and poisson random intercepts (with or
        without predictors, exposure, the ridge and the ridge-penalized hierarchical variant; Normal priors
        on the intercept and coefficients; also the pattern-collapsed models, ``collapse="integrated"``,
        the default for bernoulli and binomial without predictors, whose marginal posterior it integrates by
        its own quadrature per group): the group effects integrated out by adaptive Gauss-Hermite quadrature
        (``n_nodes`` per group), the few population parameters drawn by independence Metropolis-Hastings
        from a Student-t mixture fitted at the posterior mode (``min(tune, 50)`` tuning draws per chain,
        which refit it where that helps), and every group effect drawn exactly from its conditional at each
        kept draw. For
        gaussian random intercepts (collapsed, as by default; any variant) it is the sampler of
        :mod:`hierpool.inference.integrated_gaussian`: the intercept, coefficients and group effects are
        integrated out exactly, sigma and tau drawn by the same independence Metropolis-Hastings, the
        coefficients then drawn exactly from their normal conditional (nothing to compile).
        ``"gibbs"``: the exact Pólya-Gamma Gibbs sampler of :mod:`hierpool.inference.gibbs`, for logistic
        (bernoulli, binomial) random intercepts with predictors; ``tune`` is its burn-in. ``"auto"`` uses
        the integrated sampler for every model it can run, at any number of groups, unless NUTS settings
        such as ``target_accept`` are given. Measured (``benchmarks/bench_auto_sampler.py``, 2026-12-06,
        4 x 1000 draws, the whole ``hp.fit``): count models with 2 predictors, 10 to 600 groups, tau 0.1
        or 0.8: 0.08-2.4 s against nutpie's 3.5-14.0 s, smallest bulk ESS of intercept, coefficients and
        tau 685-2,093 against nutpie's 99-7,079; where tau is near 0 nutpie's R-hat reached 1.04 (bulk ESS
        99-453) while the integrated sampler's stayed at most 1.005; bernoulli and binomial without
        predictors, pattern-collapsed (2026-12-07, 10 to 600 groups, until then sent to nutpie): 0.21-2.73 s
        against 5.71-21.93 s; gaussian, 5 to 200 groups: 0.13-0.27 s
        against 2.4-6.0 s, with 0.4-1.4 times nutpie's effective draws; at a million groups its sampling took 0.27-0.32 s where nutpie took 1.2 s to
        compile and 2.0-2.2 s to sample (:mod:`hierpool.inference.integrated_gaussian`,
        ``benchmarks/README.md``). Models it cannot run go to nutpie
        when it is installed, else PyMC's NUTS (the Gibbs sampler runs when asked). On a CPU, numpyro took 5.5-5.9x
        nutpie's sampling time for the same model and posterior (non-collapsed random intercepts, 1,000
        and 10,000 groups; ``benchmarks/README.md``); it is an option, not the default.
        ``"numpyro"`` runs JAX in this process; PyMC's own multi-process sampler forks afterwards, which
        JAX warns may deadlock: in one process, keep to nutpie after a numpyro fit (or pass
        ``mp_ctx="spawn"`` from a script guarded by ``if __name__ == "__main__":``).
    random_seed : int or numpy.random.Generator, optional
        Makes the fit reproducible: an integer >= 0, or a numpy ``Generator`` (one integer is drawn from
        it and seeds every sampler and the group-effect draws, so the fit follows the generator's state).
    progressbar : bool
        Show sampling progress (the gaussian integrated sampler shows none: its sampling takes about a
        second at most).
    cores : int, optional
        Chains run in parallel on this many processes (threads for the Gibbs sampler); default
        ``min(chains, os.cpu_count())``.
    target_accept : float, optional
        NUTS target acceptance (raise to 0.95 or 0.99 after divergences). Default: PyMC's (0.8), or the
        model's own default (0.99 for a regularized horseshoe).
    log_likelihood : bool or "auto"
        Store the pointwise log-likelihood of every row (needed by LOO). ``"auto"`` stores it unless it
        would exceed the memory budget's stored-array size (:mod:`hierpool.core.config`: 2.5e8 values at
        the default ``hp.set_options(memory_gb=2)``).
    max_group_effect_values : float
        Models whose group effects are integrated out (gaussian, and bernoulli/binomial without
        predictors), and the Gibbs sampler: when chains x draws x groups would exceed this (default: the memory
        budget's stored-array size, 2.5e8 float64 values = 2 GB at ``hp.set_options(memory_gb=2)``), only
        the group effects are thinned to fit: ``group_effect`` is kept at m evenly spaced draws of each
        chain's d, as many as fit (``attrs["hierpool_thin"]`` = d / m, an int k where they are every k-th
        draw; :func:`hierpool.core.config.kept_draws`) in float32 (exact draws, to 7 significant digits: 1 GB at
        the budget; gaussian ones from float32 standard normals, :func:`hierpool.core.kernels.box_muller_f32`),
        while every draw of intercept, beta, tau and sigma is kept (see Returns). For
        integrated-out models the group effects are drawn after sampling, one per kept draw; the
        convergence report covers every draw of the population parameters (so it agrees with
        ``az.summary(dt)``), and for the Gibbs sampler also the kept draws of the group effects.
    method : {"full_bayes", "empirical_bayes"}
        ``"full_bayes"`` (default): the joint posterior of every parameter. ``"empirical_bayes"``: tau (and
        sigma for gaussian), the intercept and beta fixed at their marginal maximum-likelihood (REML for
        gaussian) estimates, and the group effects drawn exactly from their conditional posterior given them
        (:mod:`hierpool.inference.empirical_bayes`): lme4's ``ranef`` and ``condVar`` for gaussian; adaptive
        Gauss-Hermite quadrature (``n_nodes``) for counts, where glmer's default is the Laplace
        approximation. Random-intercepts models only; priors are not used. The result has the same
        contract (``chains`` x ``draws`` conditional draws of ``group_effect``, the estimates repeated),
        ``attrs["hierpool_method"]`` says which, and the report holds the estimates. ``sampler``,
        ``tune`` and NUTS settings do not apply.
    criterion : {"reml", "ml"}
        Gaussian empirical Bayes: REML (lme4's default) or maximum likelihood. Counts use ML.
    n_nodes : int, optional
        Quadrature nodes per group (glmer's ``nAGQ``) for count empirical Bayes (default 20) and the
        integrated sampler (default 12 for bernoulli/binomial, 20 for poisson:
        :func:`hierpool.inference.integrated.default_nodes` gives the measured errors; after the mode
        search the default is doubled until the quadrature's error varies by at most 0.05 over the
        posterior, :func:`hierpool.inference.integrated.check_nodes`, while a given ``n_nodes`` that fails
        that check warns; the report's ``integrated.node_check`` lists each step, and
        ``integrated.node_check_draws`` the same spread at each parameter's extreme draws, which warns
        above 0.05 too: :func:`hierpool.inference.integrated.check_nodes_at_draws`); the gaussian
        integrated sampler integrates exactly and refuses it.
    min_ess : float, optional
        Sample until the bulk AND tail ESS of every population-level parameter (intercept, beta, tau,
        sigma and the further factors' SDs) reach ``min_ess`` and their R-hat is at most 1.01; the first
        round is ``chains`` x ``draws`` as asked. The integrated samplers (``sampler="integrated"``, and
        ``"auto"`` where it picks them) then EXTEND THE SAME CHAINS: each further round adds, per chain,
        the draws that the ESS and R-hat so far say reach the target (ESS grows in proportion to the draws
        of a stationary chain, R-hat's excess over 1 about as their inverse; times ``ESS_MARGIN`` = 1.1,
        at least a tenth more), up to ``max_rounds`` x ``draws`` draws per chain in all; an independence
        sampler's proposals do not depend on the chain's state, so a chain extended this way is the chain
        that longer ``draws`` would have drawn (its proposals come in another order). So a small ``draws``
        (``min_ess / chains``, e.g. 100 for 400 over 4 chains) spends least: measured at issue 17's
        200,000 groups (benchmarks/README.md), ``draws=100`` stopped at 301-309 draws per chain (the
        R-hat bound asked for more than the ESS), 20-22% fewer marginal-likelihood evaluations than one
        round of ``draws=400`` (bernoulli 1,439 against 1,835, poisson 1,489 against 1,853). The group
        effects are drawn once, at the final chains' kept draws: ``min_ess`` draws in all (rounded up to
        whole chains), evenly spaced in each chain, or fewer when ``max_group_effect_values`` asks (stored as a fit thinned
        for memory is: float32 in ``posterior_group_effects``, the log-likelihood at the kept draws). They
        are exact conditional draws given the population parameters, so a typical group's ESS is about
        their number, not every group's: poisson, 300 groups, 524-580 kept draws, 3 seeds: median bulk
        ESS 512-555, minimum 277-344. The other samplers (NUTS, Gibbs) cannot resume a finished run:
        while a target is missed they add a round of ``chains`` new chains (own tuning, own seed), up to
        ``max_rounds`` rounds, each round's group-effect memory ``max_group_effect_values / max_rounds``
        so that the whole fit stays within the budget. The returned fit holds every draw (``chains`` x
        rounds chains for the others), its report says ``rounds``, ``round_adds`` (``"draws"``: extended
        in place; ``"chains"``), ``min_ess``, whether it was reached and ``ess_rounds`` (the worst ESS and
        R-hat after each round, with its chains and draws per chain), and a missed target warns. Stopping
        when an ESS estimate reaches a target is the sequential stopping rule of Flegal and Jones; the
        fit's own diagnostics are computed on the returned chains as for any fit.
    max_rounds : int
        What ``min_ess`` may spend (default 4): the integrated samplers at most ``max_rounds`` x ``draws``
        draws per chain (in as many rounds as that takes), the others at most ``max_rounds`` rounds of new
        chains.
    client : dask.distributed.Client, optional
        Run the integrated sampler on this Dask cluster: its blocks of groups are scattered to the
        workers once and stay there; each batch of proposals sends the few population parameters and
        receives one log-likelihood value per proposal and block (:func:`hierpool.inference.integrated.sample`).
        The same posterior as without a client, and for the same ``random_seed`` the same draws up to
        rounding (same blocks, same order of sums, each block's tasks pinned to the worker that holds it;
        CI once saw the population draws 1.7e-12 apart, so bit-for-bit is not promised). A worker that
        Dask retires hands its blocks on and the fit follows them; one that dies raises a RuntimeError.
        Only the count models' integrated sampler takes a client (``sampler="integrated"``,
        or ``"auto"`` where it applies); gaussian models are sampled from their sufficient statistics in
        this process. Data prepared with ``hp.prepare(..., client=)`` (count cells kept on the workers,
        ``gd.cells_on_workers``) needs no ``client=`` here: the integrated sampler builds its blocks on the
        workers that hold the cells; with predictors it is the only way to fit such data (other samplers,
        NUTS settings and another client are refused), and ``method="empirical_bayes"`` is refused for it.
        (Without predictors a binomial-type model integrates by patterns of the group totals, in this
        process, and any sampler fits it.)
    **kwargs
        Passed to :func:`pymc.sample`.

    Returns
    -------
    xarray.DataTree
        Groups ``posterior`` (intercept, beta, group_effect, tau, sigma as the variant has them),
        ``sample_stats``, ``observed_data``, ``log_likelihood`` and ``constant_data`` (group_idx, group_n,
        group_raw_mean, X, ...). ``attrs`` hold ``hierpool_variant``, ``hierpool_family``,
        ``hierpool_version``, ``hierpool_settings`` (JSON), ``hierpool_thin`` and
        ``hierpool_diagnostics`` (JSON).

        Layout of a fit thinned for memory or by ``min_ess`` (``attrs["hierpool_thin"]`` = d / m > 1; the
        design decision of hierpool issue 17: what was sampled is kept, only what must be is thinned,
        the group effects): ``posterior`` holds
        every chain x draw of intercept, beta, tau and sigma and no ``group_effect``; a group
        ``posterior_group_effects`` holds ``group_effect`` (chain, draw, group; float32) at the m kept
        draws of each chain, its ``draw`` coordinate their labels in the full chains (0, k, 2k, ... for
        an int k; 0, 1, 3, 5, 6, ... for d / m = 1.7), and the report ``thinned_for_group_effects`` (d / m)
        and ``group_effect_draws`` (chains x m);
        ``sample_stats`` keeps every draw; ``log_likelihood`` is computed at the kept draws (with their
        labels). Every hierpool analysis function reads such a fit through the posterior aligned on the
        kept draws (:class:`hierpool.analysis.fitview.FitView` ``.post``: the population parameters at
        those draws plus ``group_effect``), so their results are those of a fit of the kept draws;
        ``hp.summarize``'s parameter table and ``az.summary(dt)`` use every draw. For ``az.loo`` on such
        a fit directly, give it the aligned posterior (``hp.compare`` does): its relative efficiency
        comes from the posterior's ESS. Without thinning (d / m = 1, the usual case) ``group_effect`` is in
        ``posterior`` with every draw and there is no ``posterior_group_effects``.
        A model with several grouping factors (crossed or nested) keeps ``group``, ``group_effect`` and
        ``tau`` for its FIRST factor and adds, for every further factor ``f``, dim ``group__f``,
        ``group_effect__f``, ``tau__f`` (absent for the ridge) and constant_data ``group_idx__f``,
        ``group_n__f``, ``group_raw_mean__f``, ``group_denominator__f``; ``attrs["hierpool_factors"]``
        lists the factors (JSON), and the log-likelihood includes every factor's effect. Analysis functions
        take ``factor=`` (default the first; :func:`hierpool.select_factor`).
        A model with random slopes (``slopes=`` or ``(1 + x | g)``) adds ``group_slope`` (group, slope: the
        slope deviations, user's scale), ``tau_slope`` (slope) and ``group_corr`` (term, term_: the
        correlation of intercept and slope deviations, terms ``["intercept", *slopes]``);
        ``group_effect`` and ``tau`` stay the intercept's, and ``attrs["hierpool_slopes"]`` lists the slopes.
        ``attrs["hierpool_method"]`` is ``"full_bayes"`` or ``"empirical_bayes"``.

    Warns
    -----
    HierpoolSamplingWarning
        On divergences, R-hat > 1.01 or bulk/tail ESS below 100 per chain.

    Examples
    --------
    >>> import hierpool as hp
    >>> df = hp.datasets.simulate_gaussian(n_groups=20, seed=1)
    >>> dt = hp.fit(hp.random_intercepts(df, y="y", group="group"), draws=200, tune=200, random_seed=1,
    ...             progressbar=False)  # doctest: +SKIP
    """
    desc = describe(model)
    if max_group_effect_values is None:
        max_group_effect_values = config.stored_values()
    random_seed = _seed(random_seed)
    draws = positive_int("draws", draws, 1)
    tune = positive_int("tune", tune, 0)
    chains = positive_int("chains", chains, 1)
    if log_likelihood not in (True, False, "auto"):
        raise ValueError(f"log_likelihood={log_likelihood!r} is not valid; valid choices: True, False, 'auto'.")
    one_of("method", method, N.METHODS)
    if method == "empirical_bayes" and desc.slopes:
        raise ValueError(f"method='empirical_bayes' fits random intercepts; this model has random slopes "
                         f"{list(desc.slopes)}. Use method='full_bayes'.")
    if client is not None and method == "empirical_bayes":
        raise TypeError("client= runs the integrated sampler; method='empirical_bayes' takes no Dask client.")
    _check_cells_on_workers(desc, method=method, sampler=sampler, client=client,
                            kwargs={**kwargs, **({"target_accept": target_accept} if target_accept is not None else {})})
    if min_ess is not None:
        if method == "empirical_bayes":
            raise TypeError("min_ess applies to sampling; method='empirical_bayes' draws independent exact draws.")
        return _fit_until_ess(model, desc, min_ess=min_ess, max_rounds=max_rounds, draws=draws, tune=tune,
                              chains=chains, sampler=sampler, random_seed=random_seed, progressbar=progressbar,
                              cores=cores, target_accept=target_accept, log_likelihood=log_likelihood,
                              max_group_effect_values=max_group_effect_values, n_nodes=n_nodes, client=client,
                              kwargs=kwargs)
    if method == "empirical_bayes":
        n_nodes = 20 if n_nodes is None else n_nodes
        return _fit_empirical_bayes(desc, draws=draws, chains=chains, random_seed=random_seed, criterion=criterion,
                                    n_nodes=n_nodes, log_likelihood=log_likelihood,
                                    max_group_effect_values=max_group_effect_values, sampler=sampler,
                                    target_accept=target_accept, kwargs=kwargs)
    return _run(model, desc, draws=draws, tune=tune, chains=chains, sampler=sampler, random_seed=random_seed,
                progressbar=progressbar, cores=cores, target_accept=target_accept, log_likelihood=log_likelihood,
                max_group_effect_values=max_group_effect_values, n_nodes=n_nodes, client=client, kwargs=kwargs)


def _run(model, desc: ModelDescription, *, draws, tune, chains, sampler, random_seed, progressbar, cores,
         target_accept, log_likelihood, max_group_effect_values, n_nodes, client, kwargs, more=None):
    """:func:`fit`'s sampling, its arguments checked; ``more`` (a :class:`_MoreDraws` of ``min_ess``) is taken
    by the integrated samplers, which extend their chains in place, and ignored by the others."""
    engine = resolve_sampler(sampler)
    if cores is None:
        cores = max(1, min(chains, os.cpu_count() or 1))
    if target_accept is None:
        target_accept = desc.fit_defaults.get("target_accept")
    if target_accept is not None:
        kwargs["target_accept"] = probability("target_accept", target_accept)
    if client is not None and sampler not in ("auto", "integrated"):
        raise TypeError(f"client= runs the integrated sampler; sampler={sampler!r} takes no Dask client.")
    if sampler == "integrated" or (sampler == "auto" and not kwargs):
        if client is not None and desc.family == "gaussian":
            raise TypeError("client= distributes the rows of count models over Dask workers; gaussian random "
                            "intercepts are sampled from their sufficient statistics in this process (hp.prepare "
                            "reduces a Dask DataFrame to them): drop client=.")
        ip = integrated_gaussian.plan(desc) if desc.family == "gaussian" else integrated.plan(model)
        # one run extended in place (min_ess): the whole group-effect budget is this run's, not a round's share
        budget = max_group_effect_values if more is None else more.max_group_effect_values
        if kwargs and not isinstance(ip, str):
            raise TypeError(f"sampler='integrated' takes no NUTS or pymc.sample settings; got {sorted(kwargs)}.")
        if isinstance(ip, integrated_gaussian.GaussianPlan):
            if n_nodes is not None:
                raise TypeError(f"n_nodes={n_nodes!r} sets the quadrature of the count models' integrated sampler; "
                                "gaussian random intercepts are integrated exactly and take no n_nodes.")
            _stop_if_dry()
            return _sample_integrated_gaussian(ip, desc, draws=draws, tune=tune, chains=chains,
                                               random_seed=random_seed, log_likelihood=log_likelihood,
                                               max_group_effect_values=budget, more=more)
        if isinstance(ip, integrated.Plan):
            _stop_if_dry()
            return _sample_integrated(ip, desc, draws=draws, tune=tune, chains=chains, random_seed=random_seed,
                                      progressbar=progressbar, log_likelihood=log_likelihood, n_nodes=n_nodes,
                                      max_group_effect_values=budget, client=client, more=more)
        if getattr(desc.data, "cells_on_workers", None) is not None and desc.collapse == "counts":
            raise _integrated_cannot_run(ip)
        if sampler == "integrated" or client is not None:
            raise ValueError(f"sampler='integrated' cannot sample this model: {ip}. Use sampler='auto', 'nutpie', "
                             "'pymc' or 'numpyro'.")
    if sampler == "gibbs":
        pl = gibbs.plan(model)
        if isinstance(pl, gibbs.Plan):
            if kwargs:
                raise TypeError(f"sampler='gibbs' takes no NUTS or pymc.sample settings; got {sorted(kwargs)}.")
            _stop_if_dry()
            return _sample_gibbs(pl, desc, draws=draws, tune=tune, chains=chains, cores=cores,
                                 random_seed=random_seed, progressbar=progressbar, log_likelihood=log_likelihood,
                                 max_group_effect_values=max_group_effect_values)
        raise ValueError(f"sampler='gibbs' cannot sample this model: {pl}. Use sampler='auto', 'nutpie', "
                         "'pymc' or 'numpyro'.")
    _stop_if_dry()
    advice = integrated_advice(desc)
    var_names = [v for v in (*_POSTERIOR_VARS, *posterior_names(desc.data)) if v in model.named_vars]
    small = _sample_small(model, desc, engine, var_names, draws=draws, tune=tune, chains=chains, cores=cores,
                          random_seed=random_seed, progressbar=progressbar, kwargs=kwargs)
    if small is not None:
        return finalize(small, desc, engine=engine, log_likelihood=log_likelihood, random_seed=random_seed,
                        max_group_effect_values=max_group_effect_values, advice=advice)
    with warnings.catch_warnings():
        # PyMC's own convergence messages are replaced by hierpool's report below.
        warnings.filterwarnings("ignore", message=".*(rhat|effective sample size).*", category=UserWarning)
        dt = pm.sample(
            draws=draws,
            tune=tune,
            chains=chains,
            cores=cores,
            random_seed=random_seed,
            progressbar=progressbar,
            nuts_sampler=engine,
            var_names=var_names,
            model=model,
            **kwargs,
        )
    return finalize(dt, desc, engine=engine, log_likelihood=log_likelihood, random_seed=random_seed,
                    max_group_effect_values=max_group_effect_values, advice=advice)


#: What a NUTS fit's sampling warnings add when the integrated sampler could run the model.
INTEGRATED_ADVICE = ("This model can also be fitted by hp.fit(..., sampler='integrated'), which integrates the "
                     "group effects out (no funnel when tau is near 0) and then draws them exactly.")


def integrated_advice(desc: ModelDescription) -> str | None:
    """:data:`INTEGRATED_ADVICE` when the integrated sampler can run the model, else None.

    Measured on bernoulli hospitals whose effects are mostly 0 (tau near 0, a funnel for NUTS): 150
    hospitals (notebook 05), NUTS 4 x 250 draws gave R-hat 1.14 and bulk ESS 21 for tau in 14.0 s, the
    integrated sampler no warning in 7.4 s (one core, 2026-12-06); 60 hospitals (``tests/test_profile.py``),
    NUTS raised R-hat warnings and took 3.7 times as long.
    """
    return INTEGRATED_ADVICE if integrated.ineligible(desc) is None else None


def from_trace(trace: xr.DataTree, model, *, random_seed: int | None = None, log_likelihood: bool | str = "auto",
               max_group_effect_values: float | None = None) -> xr.DataTree:
    """Turn a trace of a factory's model sampled outside :func:`fit` into a hierpool fit.

    A model whose group effects are integrated out (``collapse="gaussian"`` or ``"integrated"``) has no
    ``group_effect`` when sampled with plain ``pm.sample`` or nutpie: the sampler sees only the intercept,
    the coefficients, tau and sigma. This draws every group effect from its exact conditional given each
    posterior draw and adds what :func:`fit` adds (``constant_data``, ``observed_data``, the pointwise
    log-likelihood, the attrs and the sampling report), so every analysis function reads the result.

    Parameters
    ----------
    trace : xarray.DataTree
        What ``pm.sample(model=model)`` (or ``nutpie.sample``) returned.
    model : pymc.Model
        The factory's model that was sampled.
    random_seed : int, optional
        Seeds the conditional draws of the group effects.
    log_likelihood, max_group_effect_values
        As in :func:`fit`.

    Examples
    --------
    >>> import pymc as pm, hierpool as hp
    >>> model = hp.random_intercepts(hp.datasets.simulate_gaussian(n_groups=20, seed=1), y="y", group="group")
    >>> trace = pm.sample(model=model, random_seed=1)          # doctest: +SKIP
    >>> dt = hp.from_trace(trace, model, random_seed=1)      # doctest: +SKIP
    >>> hp.shrinkage(dt)                                      # doctest: +SKIP
    """
    desc = describe(model)
    if not isinstance(trace, xr.DataTree) or "posterior" not in trace.children:
        raise TypeError(f"trace must be the DataTree that pm.sample returned; got {type(trace).__name__}.")
    wanted = [N.INTERCEPT, N.BETA, N.TAU, N.SIGMA] + ([] if desc.integrates_out_group_effects else [N.GROUP_EFFECT])
    missing = [v for v in wanted if v in model.named_vars and v not in trace["posterior"]]
    if missing:
        raise ValueError(f"trace.posterior lacks {missing}: sample it with the default var_names.")
    return finalize(trace, desc, engine="external", log_likelihood=log_likelihood, random_seed=random_seed,
                    max_group_effect_values=max_group_effect_values)


def _population_vars(post: xr.Dataset) -> list[str]:
    """The population-level variables of a posterior: those without a group dim (``group``, ``group__f``)."""
    return [v for v in post.data_vars if not any(str(d).startswith(N.GROUP) for d in post[v].dims)]


def _diagnosed(dt: xr.DataTree) -> xr.DataTree:
    """What a fit's sampling report diagnoses: the fit itself, or, for the integrated sampler, its chain of
    population parameters on every draw (its group effects are exact conditional draws given that chain,
    as the collapsed models' are; their R-hat over 200k groups and 72 kept draws per chain reached 1.07
    by chance)."""
    if dt.attrs.get(N.ATTR_SAMPLER) != "integrated":
        return dt
    post = dt["posterior"].to_dataset()
    children = {"posterior": post[_population_vars(post)]}
    if "sample_stats" in dt.children:
        children["sample_stats"] = dt["sample_stats"].to_dataset()
    return xr.DataTree.from_dict(children)


def _worst_ess(post: xr.Dataset) -> tuple[float, float, float]:
    """(min bulk ESS, min tail ESS, max R-hat) over the population-level parameters (the variables without a
    group dim), by :func:`check_sampling`; ``(inf, inf, 0)`` when none of them varies, ``(0, 0, inf)`` (not
    diagnosed, so not reached) when some vary but the chains are too short to diagnose (under 4 draws)."""
    pop = _population_vars(post)
    rep = check_sampling(xr.DataTree.from_dict({"posterior": post[pop]}), warn=False)
    if "max_rhat" not in rep:
        if post.sizes["draw"] < 4 and any(varies(post[v]) for v in pop):
            return 0.0, 0.0, np.inf
        return np.inf, np.inf, 0.0
    return rep["min_ess_bulk"], rep["min_ess_tail"], rep["max_rhat"]


def _concat_chains(parts: list[xr.DataTree]) -> xr.DataTree:
    """Fits of the same model and data, their chains side by side (renumbered 0, 1, ...)."""
    first = parts[0]
    children = {}
    for name in first.children:
        if "chain" in first[name].to_dataset().dims:
            dss, offset = [], 0
            for p in parts:
                ds = p[name].to_dataset()
                dss.append(ds.assign_coords(chain=np.arange(offset, offset + ds.sizes["chain"])))
                offset += ds.sizes["chain"]
            children[name] = xr.concat(dss, dim="chain", join="exact", combine_attrs="override")
        else:
            children[name] = first[name].to_dataset()
    out = xr.DataTree.from_dict(children)
    out.attrs = dict(first.attrs)
    return out


#: ``min_ess`` with the integrated samplers: a run extended in place asks for the draws that the ESS so far
#: says reach the target (a stationary chain's ESS grows in proportion to its draws), times this margin.
ESS_MARGIN = 1.1


class _MoreDraws:
    """``min_ess`` for the samplers that extend their chains in place (the integrated ones:
    :func:`hierpool.inference.integrated.imh_chains`). Called with the population posterior so far (chains,
    n draws), it records the worst bulk and tail ESS and R-hat (the ``ess_rounds`` of the report) and
    returns how many draws per chain to add:

    - 0 when the targets are met or the chains hold ``max_rounds x draws`` draws (the most the rounds of
      new chains could draw; the batches are not counted: each adds at least a tenth, so there are at
      most about 1 + log(max_rounds) / log(1.1) of them);
    - all that is left when there is no usable estimate (under 4 draws; R-hat or ESS not finite);
    - else ``ESS_MARGIN x n x max(min_ess / worst ESS, (R-hat - 1) / 0.01) - n`` within that bound (the
      worst ESS grows in proportion to the draws, R-hat's excess over 1 about as their inverse; at least a
      tenth of ``n``, both ratios being above 1 when a target is missed).

    ``min_ess`` also sets how many group-effect draws are kept (:func:`config.kept_draws`: ``min_ess``
    rounded up to whole chains, fewer where memory asks): exact
    conditional draws given the population parameters, whose ESS is about their number for a typical
    group."""

    def __init__(self, min_ess: float, draws: int, max_rounds: int, max_group_effect_values: float):
        self.min_ess = float(min_ess)
        self.max_draws = int(draws) * int(max_rounds)
        self.max_group_effect_values = max_group_effect_values
        self.trail: list[dict] = []

    def reached(self, bulk: float, tail: float, rhat: float) -> bool:
        return bulk >= self.min_ess and tail >= self.min_ess and rhat <= 1.01

    def __call__(self, post: xr.Dataset) -> int:
        bulk, tail, rhat = _worst_ess(post)
        n = int(post.sizes["draw"])
        self.trail.append({"round": len(self.trail) + 1, "chains": int(post.sizes["chain"]), "draws": n,
                           "min_ess_bulk": bulk, "min_ess_tail": tail, "max_rhat": rhat})
        room = self.max_draws - n
        if self.reached(bulk, tail, rhat) or room <= 0:
            return 0
        worst = min(bulk, tail)
        if not (worst > 0 and math.isfinite(worst) and math.isfinite(rhat)):
            return room  # no usable estimate (too few draws to diagnose; chains stuck on one state)
        want = ESS_MARGIN * n * max(self.min_ess / worst, 1.0)
        if rhat > 1.01:  # R-hat's excess over 1 shrinks about as 1 / draws in mixing chains
            want = max(want, ESS_MARGIN * n * (rhat - 1.0) / 0.01)
        want = min(want, float(n + room))  # (R-hat of chains that never moved is near the largest float)
        return int(min(room, max(math.ceil(want) - n, 1)))  # (at least n / 10: ESS_MARGIN x a ratio > 1)


def _fit_until_ess(model, desc: ModelDescription, *, min_ess, max_rounds, draws, tune, chains, sampler, random_seed,
                   progressbar, cores, target_accept, log_likelihood, max_group_effect_values, n_nodes, client,
                   kwargs) -> xr.DataTree:
    if isinstance(min_ess, bool) or not isinstance(min_ess, (int, float)) or not 0 < min_ess < math.inf:
        raise ValueError(f"min_ess={min_ess!r} must be a positive finite number (bulk and tail ESS to reach), "
                         "e.g. 400.")
    max_rounds = positive_int("max_rounds", max_rounds, 1)
    seeds = np.random.SeedSequence(random_seed).generate_state(max_rounds) if random_seed is not None else \
        [None] * max_rounds
    more = _MoreDraws(min_ess, draws, max_rounds, max_group_effect_values)
    parts, trail = [], []
    dt = None
    for r in range(max_rounds):
        with warnings.catch_warnings():  # one report for the combined fit, below
            warnings.simplefilter("ignore", HierpoolSamplingWarning)
            parts.append(_run(model, desc, draws=draws, tune=tune, chains=chains, sampler=sampler,
                              random_seed=None if seeds[r] is None else int(seeds[r]), progressbar=progressbar,
                              cores=cores, target_accept=target_accept, log_likelihood=False,
                              max_group_effect_values=max_group_effect_values / max_rounds, n_nodes=n_nodes,
                              client=client, kwargs=dict(kwargs), more=more))
        dt = parts[0] if len(parts) == 1 else _concat_chains(parts)
        if more.trail:  # an integrated sampler extended its chains in place until min_ess said enough
            trail = more.trail
            break
        bulk, tail, rhat = _worst_ess(dt["posterior"].to_dataset())
        trail.append({"round": r + 1, "chains": int(dt["posterior"].sizes["chain"]),
                      "draws": int(dt["posterior"].sizes["draw"]), "min_ess_bulk": bulk, "min_ess_tail": tail,
                      "max_rhat": rhat})
        if more.reached(bulk, tail, rhat):
            break
    # the log-likelihood once, of the combined fit (per round, each would take the whole budget)
    dt = _attach_log_likelihood(dt, desc, log_likelihood)
    report = json.loads(parts[0].attrs[N.ATTR_DIAGNOSTICS])
    extra = {k: v for k, v in report.items() if k not in ("divergences", "draws", "chains", "problems", "max_rhat",
                                                          "max_rhat_var", "min_ess_bulk", "min_ess_bulk_var",
                                                          "min_ess_tail", "min_ess_tail_var")}
    # the ESS floor is the target asked for (not 100 per chain: rounds multiply the chains)
    report = check_sampling(_diagnosed(dt), ess_min_per_chain=float(min_ess) / dt["posterior"].sizes["chain"],
                            _stacklevel=4)
    last = trail[-1]
    reached = more.reached(last["min_ess_bulk"], last["min_ess_tail"], last["max_rhat"])
    report.update(extra, rounds=len(trail), round_adds="draws" if more.trail else "chains", min_ess=float(min_ess),
                  min_ess_reached=bool(reached), ess_rounds=trail)
    if N.GROUP_EFFECTS_GROUP in dt.children:  # every round's kept draws (the first round's report has its own)
        kept = dt[N.GROUP_EFFECTS_GROUP]
        report["group_effect_draws"] = int(kept.sizes["chain"] * kept.sizes["draw"])
    _report_node_problem(report, extra.get("integrated", {}), stacklevel=3)  # (the rounds' warnings were silenced)
    if not reached:
        msg = (f"min_ess={min_ess:g} not reached after {len(trail)} rounds ({last['chains']} chains of "
               f"{last['draws']} draws): min bulk ESS {last['min_ess_bulk']:.0f}, tail {last['min_ess_tail']:.0f}, "
               f"max R-hat {last['max_rhat']:.3f} over the population parameters; raise draws or max_rounds.")
        report["problems"].append(msg)
        warnings.warn(msg, HierpoolSamplingWarning, stacklevel=3)
    dt.attrs[N.ATTR_DIAGNOSTICS] = json.dumps(report)
    return dt


def _attach_log_likelihood(dt: xr.DataTree, desc: ModelDescription, log_likelihood) -> xr.DataTree:
    """``dt`` with the pointwise log-likelihood of its (kept) draws, as :func:`finalize` stores it: when
    ``log_likelihood`` is True, or "auto" and chains x kept draws x rows is within the memory budget."""
    gd = desc.data
    if log_likelihood is False or not hasattr(gd, "y") or "log_likelihood" in dt.children:
        return dt
    post = dt["posterior"].to_dataset()
    aligned = post
    if N.GROUP_EFFECTS_GROUP in dt.children:
        node = dt[N.GROUP_EFFECTS_GROUP].to_dataset()
        aligned = post.sel(draw=node["draw"].values)
        for v in node.data_vars:
            aligned[v] = node[v]
    n_values = aligned.sizes["chain"] * aligned.sizes["draw"] * gd.n_obs
    if not (log_likelihood is True or n_values <= config.stored_values()):
        return dt
    ll = pointwise_log_likelihood(aligned, dt["constant_data"].to_dataset(), dt["observed_data"][N.Y], gd.family)
    children = {name: dt[name].to_dataset() for name in dt.children}
    children["log_likelihood"] = ll.rename(N.Y).to_dataset()
    out = xr.DataTree.from_dict(children)
    out.attrs = dict(dt.attrs)
    return out


def _fit_empirical_bayes(desc: ModelDescription, *, draws, chains, random_seed, criterion, n_nodes, log_likelihood,
                         max_group_effect_values, sampler, target_accept, kwargs) -> xr.DataTree:
    from hierpool.inference import empirical_bayes as eb

    if desc.variant != "random_intercepts":
        raise ValueError(f"method='empirical_bayes' fits random_intercepts models; got a {desc.variant!r} model "
                         "(its group-effect scale is chosen by the user or shrunk by a prior, not estimated).")
    if getattr(desc.data, "factors", ()):
        raise ValueError(f"method='empirical_bayes' fits one grouping factor; this model has several "
                         f"({', '.join(desc.data.factor_names)}). Use method='full_bayes'.")
    if desc.group_sd_fixed is not None:
        raise ValueError("method='empirical_bayes' estimates tau; this model fixes it (priors={'tau': value}).")
    one_of("criterion", criterion, eb.CRITERIA)
    n_nodes = positive_int("n_nodes", n_nodes, 1)
    if sampler != "auto" or target_accept is not None or kwargs:
        given = (["sampler"] if sampler != "auto" else []) + (["target_accept"] if target_accept is not None else [])
        raise TypeError(f"method='empirical_bayes' samples nothing; it takes no sampler settings; got "
                        f"{given + sorted(kwargs)}.")
    _stop_if_dry()
    post, info = eb.estimate(desc, draws=draws, chains=chains, random_seed=random_seed, criterion=criterion,
                             n_nodes=n_nodes, max_group_effect_values=max_group_effect_values)
    dt = xr.DataTree.from_dict({"posterior": post})
    return finalize(dt, desc, engine="empirical_bayes", log_likelihood=log_likelihood, random_seed=random_seed,
                    max_group_effect_values=max_group_effect_values, method="empirical_bayes", extra_report=info)


def _sample_small(model, desc: ModelDescription, engine, var_names, *, draws, tune, chains, cores, random_seed, progressbar, kwargs):
    """nutpie with Python callbacks for models whose group effects are integrated out (few parameters;
    see hierpool.inference.nutpie).

    Returns nutpie's DataTree, or None to take the ``pymc.sample`` route (another sampler, a model that
    is not collapsed, keyword arguments this route does not know, or nutpie's private API changed).
    """
    if engine != "nutpie" or not desc.integrates_out_group_effects or set(kwargs) - _nutpie.SUPPORTED_KWARGS:
        return None
    compiled = _nutpie.compile_small(model, var_names)
    if compiled is None:
        return None
    return _nutpie.sample_small(compiled, draws=draws, tune=tune, chains=chains, cores=cores,
                                random_seed=random_seed, progressbar=progressbar, kwargs=kwargs)


def _sample_gibbs(pl, desc: ModelDescription, *, draws, tune, chains, cores, random_seed, progressbar, log_likelihood,
                  max_group_effect_values):
    post, u, at, stats, _ = gibbs.sample(pl, draws=draws, tune=tune, chains=chains, cores=cores,
                                         random_seed=random_seed, progressbar=progressbar,
                                         max_group_effect_values=max_group_effect_values)
    # every draw of intercept, beta and tau is kept; the group effects at the draws ``at``
    ge = xr.DataArray(u, dims=(*N.SAMPLE_DIMS, N.GROUP),
                      coords={"chain": post["chain"].values, "draw": post["draw"].values[at]})
    dt = xr.DataTree.from_dict({"posterior": post, "sample_stats": stats})
    return finalize(dt, desc, engine="gibbs", log_likelihood=log_likelihood, random_seed=random_seed,
                    group_effect=ge)


def _integrated_cannot_run(reason: str) -> ValueError:
    """The refusal of data kept on Dask workers whose model the integrated sampler cannot run (``reason``:
    the sampler's sentence, from :func:`integrated.ineligible` or :func:`integrated.plan`)."""
    return ValueError(f"{ON_WORKERS}, and the integrated sampler, the one sampler that evaluates them there, cannot "
                      f"run this model: {reason}. Prepare the data without client= to sample it in this process.")


def _check_cells_on_workers(desc: ModelDescription, *, method, sampler, client, kwargs) -> None:
    """Data whose cells stay on Dask workers (``hp.prepare(..., client=)``) is fitted by the integrated
    sampler only, with the client that holds them: anything else is refused here, by name."""
    on = getattr(desc.data, "cells_on_workers", None)
    if on is None:
        return
    if method != "full_bayes":
        raise ValueError(f"method={method!r}: {ON_WORKERS}; only the integrated sampler (method='full_bayes', "
                         "sampler='auto' or 'integrated') evaluates them there. Prepare the data without client= "
                         "for empirical Bayes.")
    if desc.collapse != "counts":  # no predictors: the patterns of group totals, here; any sampler fits them
        return
    if sampler not in ("auto", "integrated") or kwargs:
        what = f"sampler={sampler!r}" if sampler not in ("auto", "integrated") else f"NUTS settings {sorted(kwargs)}"
        raise ValueError(f"{what}: {ON_WORKERS}; only sampler='auto' or 'integrated' (the integrated sampler, which "
                         "evaluates them where they live) can fit it. Prepare the data without client= to sample "
                         "it in this process.")
    reason = integrated.ineligible(desc)
    if reason is not None:
        raise _integrated_cannot_run(reason)
    if client is not None and client is not on.client:
        raise ValueError(integrated.OTHER_CLIENT)


def _sample_integrated(pl, desc: ModelDescription, *, draws, tune, chains, random_seed, progressbar, log_likelihood,
                       n_nodes, max_group_effect_values, client=None, more=None):
    adapt = n_nodes is None  # the default nodes grow where they would bias the posterior (check_nodes)
    if n_nodes is None:
        n_nodes = integrated.default_nodes(pl)
    n_nodes = positive_int("n_nodes", n_nodes, 2)
    post, u, at, stats, info = integrated.sample(pl, draws=draws, tune=tune, chains=chains, random_seed=random_seed,
                                                 progressbar=progressbar, n_nodes=n_nodes, client=client,
                                                 adapt_nodes=adapt,
                                                 max_group_effect_values=max_group_effect_values,
                                                 more=more, min_kept=None if more is None else more.min_ess)
    post = _with_fixed_tau(post, desc)
    ge = xr.DataArray(u, dims=(*N.SAMPLE_DIMS, N.GROUP),
                      coords={"chain": post["chain"].values, "draw": post["draw"].values[at]})
    dt = xr.DataTree.from_dict({"posterior": post, "sample_stats": stats})
    dt = finalize(dt, desc, engine="integrated", log_likelihood=log_likelihood, random_seed=random_seed,
                  group_effect=ge, extra_report={"integrated": info})
    if info.get("node_problem"):
        report = json.loads(dt.attrs[N.ATTR_DIAGNOSTICS])
        _report_node_problem(report, info, stacklevel=4)  # the user's hp.fit line: _run, fit, the caller
        dt.attrs[N.ATTR_DIAGNOSTICS] = json.dumps(report)
    return dt


def _report_node_problem(report: dict, info: dict, stacklevel: int) -> None:
    """The quadrature-node checks' failure (:func:`hierpool.inference.integrated.check_nodes` around the mode,
    :func:`~hierpool.inference.integrated.check_nodes_at_draws` at the extreme draws), if any, added to
    ``report["problems"]`` and warned (:class:`HierpoolSamplingWarning`)."""
    msg = info.get("node_problem")
    if msg:
        report["problems"].append(msg)
        warnings.warn(msg, HierpoolSamplingWarning, stacklevel=stacklevel + 1)


def _seed(random_seed) -> int | None:
    """``random_seed`` as the integer every sampler and the group-effect draws take (a Generator gives one
    draw from it), or a TypeError naming it."""
    if isinstance(random_seed, np.random.Generator):
        return int(random_seed.integers(2**31))
    if random_seed is None or (isinstance(random_seed, Integral) and not isinstance(random_seed, bool)
                               and random_seed >= 0):
        return None if random_seed is None else int(random_seed)
    raise TypeError(f"random_seed={random_seed!r} is not valid; valid: None, an integer >= 0, or a numpy "
                    "Generator.")


def _with_fixed_tau(post: xr.Dataset, desc: ModelDescription) -> xr.Dataset:
    """A tau fixed by a number (``priors={"tau": 0.5}``) stays in the posterior as a constant, as in a NUTS
    fit (where it is a model variable), so that the analysis (e.g. ``hp.shrinkage``) finds it; a ridge's
    ``1/sqrt(lam)`` is read from the settings instead."""
    if N.TAU in post or desc.lam is not None or desc.group_sd_fixed is None:
        return post
    return post.assign({N.TAU: (("chain", "draw"), np.full((post.sizes["chain"], post.sizes["draw"]),
                                                          float(desc.group_sd_fixed)))})


def _sample_integrated_gaussian(gp, desc: ModelDescription, *, draws, tune, chains, random_seed, log_likelihood,
                                max_group_effect_values, more=None):
    """The gaussian integrated sampler (:mod:`hierpool.inference.integrated_gaussian`); the group effects are
    drawn by :func:`finalize` from their exact conditional, as after NUTS on the collapsed model."""
    post, stats, info = integrated_gaussian.sample(gp, draws=draws, tune=tune, chains=chains, random_seed=random_seed,
                                                   more=more)
    post = _with_fixed_tau(post, desc)
    return finalize(xr.DataTree.from_dict({"posterior": post, "sample_stats": stats}), desc, engine="integrated",
                    log_likelihood=log_likelihood, random_seed=random_seed,
                    max_group_effect_values=max_group_effect_values, extra_report={"integrated": info},
                    min_kept=None if more is None else more.min_ess)


def finalize(dt: xr.DataTree, desc: ModelDescription, *, engine: str, log_likelihood="auto", random_seed=None,
             max_group_effect_values: float | None = None, method: str = "full_bayes",
             extra_report: dict | None = None, group_effect: xr.DataArray | None = None,
             advice: str | None = None, min_kept: float | None = None) -> xr.DataTree:
    """Attach constant_data, observed_data, the log-likelihood, attrs and the sampling report.

    Layout. Without thinning (``attrs["hierpool_thin"]`` = 1, the common case) ``posterior`` holds every
    draw of every parameter, ``group_effect`` included. A fit thinned for memory or by ``min_kept`` (the
    group effects kept at m of each chain's d draws, evenly spaced: :func:`hierpool.core.config.kept_draws`;
    ``attrs["hierpool_thin"]`` = d / m > 1, an int k where they are every k-th draw) keeps what was sampled
    and thins only the group effects:

    - ``posterior`` holds EVERY draw of intercept, beta, tau and sigma (so ``az.summary(dt)`` and the
      sampling report see the same draws) and no ``group_effect``;
    - ``posterior_group_effects`` (:data:`hierpool.core.names.GROUP_EFFECTS_GROUP`) holds ``group_effect``
      (chain, draw, group) in float32 at the kept draws; its ``draw`` coordinate holds the kept draws'
      labels in the full chains (0, k, 2k, ... or e.g. 0, 1, 3, 5, 6, ... for d / m = 1.7), so
      ``posterior.sel(draw=...)`` finds the population parameters each group-effect draw belongs to;
    - ``sample_stats`` keeps every draw; ``log_likelihood`` (it needs the group effects) is computed at
      the kept draws and carries their labels.

    The analysis reads a fit through :class:`hierpool.analysis.fitview.FitView`, whose ``post`` is the
    posterior aligned on the kept draws (population parameters at those draws plus ``group_effect``).

    For a model whose group effects are integrated out, the sampling report covers the sampled
    parameters (all draws); then, if chains x draws x groups exceeds ``max_group_effect_values``, the group
    effects are drawn from their exact conditional at the kept draws only. ``group_effect`` (the Gibbs
    and the integrated count samplers) holds the group effects a sampler drew, at the draws its ``draw``
    coordinate labels: every draw, or fewer (then ``dt``'s posterior holds every draw of the population
    parameters). ``advice``: a sentence every sampling warning ends with (:func:`integrated_advice`).
    ``min_kept`` (``min_ess`` of a run extended in place): the group effects drawn here are kept at no
    more draws than that many in all need (:func:`hierpool.core.config.kept_draws`).
    ``method="empirical_bayes"``: ``dt`` holds the group effects already (conditional draws given
    fixed estimates), and ``extra_report`` the estimates.
    """
    gd = desc.data
    if max_group_effect_values is None:
        max_group_effect_values = config.stored_values()
    post = dt["posterior"].to_dataset()
    keep = [v for v in (*_POSTERIOR_VARS, *posterior_names(gd)) if v in post]
    post = post[keep]
    const = constant_data(gd)
    report = None
    group_slope = None
    if desc.integrates_out_group_effects and method == "full_bayes":
        report = check_sampling(xr.DataTree.from_dict({"posterior": post, **(
            {"sample_stats": dt["sample_stats"].to_dataset()} if "sample_stats" in dt.children else {})}),
            _stacklevel=4)
        at = config.kept_draws(post.sizes["draw"], post.sizes["chain"], gd.n_groups * (1 + len(desc.slopes)),
                               max_group_effect_values, min_kept)
        kept = post.isel(draw=at)
        dtype = config.group_effect_dtype(at.size, post.sizes["draw"])  # float32 when thinned
        if desc.slopes:  # random slopes (hierpool.inference.slopes)
            from hierpool.inference.slopes import slope_effects

            ge, gs = slope_effects(kept, desc, random_seed, dtype=dtype)
            group_effect = ge.assign_coords(chain=kept["chain"].values, draw=kept["draw"].values)
            group_slope = gs.assign_coords(chain=kept["chain"].values, draw=kept["draw"].values)
        else:
            group_effect = collapsed_group_effects(kept, desc, random_seed, dtype=dtype).assign_coords(
                chain=kept["chain"].values, draw=kept["draw"].values)
    thin = 1
    if group_effect is not None:
        labels = group_effect["draw"].values
        if not (np.isin(labels, post["draw"].values).all() and np.all(np.diff(labels) > 0)
                and (labels.size or not post.sizes["draw"])):
            raise ValueError(f"group_effect's draws {labels[:5]}... are not increasing draws of the posterior "
                             f"(draws {post['draw'].values[:5]}...).")
        thin = config.thin_ratio(post.sizes["draw"], labels.size)
        group_effect = group_effect.transpose(*N.SAMPLE_DIMS, N.GROUP).assign_coords(
            {N.GROUP: const[N.GROUP].values})
        if group_slope is not None:
            group_slope = group_slope.transpose(*N.SAMPLE_DIMS, N.GROUP, N.SLOPE).assign_coords(
                {N.GROUP: const[N.GROUP].values, N.SLOPE: list(desc.slopes)})
        if thin == 1:
            post[N.GROUP_EFFECT] = group_effect
            if group_slope is not None:
                post[N.GROUP_SLOPE] = group_slope
    if N.GROUP in post.dims:
        post = post.assign_coords({N.GROUP: const[N.GROUP].values})
    if N.PREDICTOR in post.dims:
        post = post.assign_coords({N.PREDICTOR: const[N.PREDICTOR].values})
    if desc.slopes:
        terms = [N.INTERCEPT, *desc.slopes]
        post = post.assign_coords({**({N.SLOPE: list(desc.slopes)} if N.SLOPE in post.dims else {}), **(
            {N.TERM: terms, N.TERM_: terms} if N.GROUP_CORR in post else {})})
    for f in getattr(gd, "factors", ()):
        dim = N.factor_var(N.GROUP, f.name)
        if dim in post.dims:
            post = post.assign_coords({dim: const[dim].values})
    children = {"posterior": post, "constant_data": const}
    if thin > 1:
        node = group_effect.to_dataset(name=N.GROUP_EFFECT)
        if group_slope is not None:
            node[N.GROUP_SLOPE] = group_slope
        children[N.GROUP_EFFECTS_GROUP] = node
    rows = hasattr(gd, "y")  # GroupedStats keeps no rows: no observed_data, no row log-likelihood
    if rows:
        y = xr.DataArray(gd.y, dims=(N.OBS,), coords={N.OBS: const[N.OBS].values}, name=N.Y)
        children["observed_data"] = y.to_dataset()
    if "sample_stats" in dt.children:
        stats = dt["sample_stats"].to_dataset()  # every draw, as the posterior
        for v in list(stats.data_vars):  # nutpie's divergence messages: object arrays with NaN
            if stats[v].dtype == object:
                stats[v] = stats[v].fillna("").astype(str)
        children["sample_stats"] = stats
    out = xr.DataTree.from_dict(children)
    out.attrs = {
        N.ATTR_VARIANT: desc.variant,
        N.ATTR_FAMILY: desc.family,
        N.ATTR_VERSION: _version(),
        N.ATTR_SETTINGS: json.dumps(dict(desc.settings)),
        N.ATTR_SAMPLER: engine,
        N.ATTR_THIN: thin,
        N.ATTR_METHOD: method,
        **({N.SLOPES_ATTR: json.dumps(list(desc.slopes))} if desc.slopes else {}),
    }
    if getattr(gd, "factors", ()):
        out.attrs[N.ATTR_FACTORS] = json.dumps(gd.factor_names)
    out = _attach_log_likelihood(out, desc, log_likelihood)
    if report is None and method == "empirical_bayes":
        # independent exact draws given fixed estimates: nothing for R-hat or ESS to diagnose; what can go
        # wrong is the estimation, reported here
        report = {"divergences": 0, "draws": int(post.sizes["draw"]), "chains": int(post.sizes["chain"]),
                  "problems": []}
        if extra_report and not extra_report.get("converged", True):
            report["problems"].append(f"the (RE)ML optimizer did not converge: {extra_report.get('optimizer', '')}")
        if extra_report and extra_report.get("singular"):
            report["problems"].append("tau is estimated at 0 (a boundary, lme4's 'singular fit'): every group "
                                      "effect is shrunk to 0; full Bayes (method='full_bayes') integrates over "
                                      "tau instead")
        for p in report["problems"]:
            warnings.warn(p, HierpoolSamplingWarning, stacklevel=4)
    if report is None:
        report = check_sampling(_diagnosed(out), advice=advice, _stacklevel=4)
    if thin != 1:
        report["thinned_for_group_effects"] = thin
        report["group_effect_draws"] = int(group_effect.sizes["chain"] * group_effect.sizes["draw"])
    if extra_report:
        report.update(extra_report)
    out.attrs[N.ATTR_DIAGNOSTICS] = json.dumps(report)
    return out
