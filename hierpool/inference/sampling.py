"""Fitting: :func:`fit` runs NUTS on a factory's model and returns a self-contained ``xr.DataTree``;
(:func:`~hierpool.inference.diagnostics.check_sampling` reports divergences, R-hat and ESS problems.)

:func:`from_trace` turns a trace sampled outside :func:`fit` into the same contract.
"""

from __future__ import annotations

import importlib.util
import json
import os
import warnings

import numpy as np
import pymc as pm
import xarray as xr

from hierpool.core import config
from hierpool.core import kernels as K
from hierpool.core import names as N
from hierpool.core.families import get_family
from hierpool.core.validate import one_of, positive_int, probability
from hierpool.inference import gibbs
from hierpool.inference import nutpie as _nutpie
from hierpool.inference.conditional import collapsed_group_effects
from hierpool.inference.diagnostics import HierpoolSamplingWarning, check_sampling
from hierpool.inference.predictive import design_from_constant, linear_predictor
from hierpool.models.description import ModelDescription, describe

__all__ = ["fit", "from_trace", "finalize", "resolve_sampler", "constant_data", "pointwise_log_likelihood"]

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

    ('gibbs' is returned as it is; whether "auto" means the Gibbs sampler is decided per model by
    :func:`fit`.)"""
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
    n_nodes: int = 20,
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
    sampler : {"auto", "pymc", "nutpie", "numpyro", "gibbs"}
        ``"pymc"``, ``"nutpie"``, ``"numpyro"``: NUTS implementations. ``"gibbs"``: the exact
        Pólya-Gamma Gibbs sampler of :mod:`hierpool.inference.gibbs`, for logistic (bernoulli, binomial) random
        intercepts with predictors and Normal priors on the intercept and coefficients; ``tune`` is its
        burn-in. ``"auto"`` uses the Gibbs sampler for such models with at least 2,000 groups (there it
        is about ten times faster than NUTS per effective draw) and at least 15% of the rarer outcome
        (it mixes slowly on rare events), unless NUTS settings such as ``target_accept`` are given;
        otherwise nutpie when it is installed, else PyMC's NUTS. On a CPU, numpyro took 5.5-5.9x
        nutpie's sampling time for the same model and posterior (non-collapsed random intercepts, 1,000
        and 10,000 groups; ``benchmarks/README.md``); it is an option, not the default.
        ``"numpyro"`` runs JAX in this process; PyMC's own multi-process sampler forks afterwards, which
        JAX warns may deadlock: in one process, keep to nutpie after a numpyro fit (or pass
        ``mp_ctx="spawn"`` from a script guarded by ``if __name__ == "__main__":``).
    random_seed : int, optional
        Makes the fit reproducible.
    progressbar : bool
        Show sampling progress.
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
        budget's stored-array size, 2.5e8 float64 values = 2 GB at ``hp.set_options(memory_gb=2)``), the stored posterior is thinned to fit (every k-th draw,
        ``attrs["hierpool_thin"]``) and ``group_effect`` is stored in float32 (exact draws rounded to 7
        significant digits: 1 GB at the budget). For integrated-out models the group effects are drawn
        after sampling, one per kept draw, and convergence diagnostics are computed on all draws before
        thinning; the Gibbs sampler's diagnostics are computed on the kept draws.
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
    n_nodes : int
        Quadrature nodes per group for count empirical Bayes (glmer's ``nAGQ``); default 20.
    **kwargs
        Passed to :func:`pymc.sample`.

    Returns
    -------
    xarray.DataTree
        Groups ``posterior`` (intercept, beta, group_effect, tau, sigma as the variant has them),
        ``sample_stats``, ``observed_data``, ``log_likelihood`` and ``constant_data`` (group_idx, group_n,
        group_raw_mean, X, ...). ``attrs`` hold ``hierpool_variant``, ``hierpool_family``,
        ``hierpool_version``, ``hierpool_settings`` (JSON) and ``hierpool_diagnostics`` (JSON).

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
    draws = positive_int("draws", draws, 1)
    tune = positive_int("tune", tune, 0)
    chains = positive_int("chains", chains, 1)
    if log_likelihood not in (True, False, "auto"):
        raise ValueError(f"log_likelihood={log_likelihood!r} is not valid; valid choices: True, False, 'auto'.")
    one_of("method", method, N.METHODS)
    if method == "empirical_bayes" and desc.slopes:
        raise ValueError(f"method='empirical_bayes' fits random intercepts; this model has random slopes "
                         f"{list(desc.slopes)}. Use method='full_bayes'.")
    if method == "empirical_bayes":
        return _fit_empirical_bayes(desc, draws=draws, chains=chains, random_seed=random_seed, criterion=criterion,
                                    n_nodes=n_nodes, log_likelihood=log_likelihood,
                                    max_group_effect_values=max_group_effect_values, sampler=sampler,
                                    target_accept=target_accept, kwargs=kwargs)
    engine = resolve_sampler(sampler)
    if cores is None:
        cores = max(1, min(chains, os.cpu_count() or 1))
    if target_accept is None:
        target_accept = desc.fit_defaults.get("target_accept")
    if target_accept is not None:
        kwargs["target_accept"] = probability("target_accept", target_accept)
    if sampler == "gibbs" or (sampler == "auto" and not kwargs and desc.data.n_groups >= gibbs.AUTO_MIN_GROUPS):
        pl = gibbs.plan(model)
        if sampler == "auto" and isinstance(pl, gibbs.Plan) and gibbs.minority_share(pl) < gibbs.AUTO_MIN_MINORITY:
            pl = "events are rare"  # Pólya-Gamma Gibbs mixes slowly there: NUTS (see hierpool.inference.gibbs)
        if isinstance(pl, gibbs.Plan):
            if kwargs:
                raise TypeError(f"sampler='gibbs' takes no NUTS or pymc.sample settings; got {sorted(kwargs)}.")
            return _sample_gibbs(pl, desc, draws=draws, tune=tune, chains=chains, cores=cores,
                                 random_seed=random_seed, progressbar=progressbar, log_likelihood=log_likelihood,
                                 max_group_effect_values=max_group_effect_values)
        if sampler == "gibbs":
            raise ValueError(f"sampler='gibbs' cannot sample this model: {pl}. Use sampler='auto', 'nutpie', "
                             "'pymc' or 'numpyro'.")
    var_names = [v for v in _POSTERIOR_VARS if v in model.named_vars]
    small = _sample_small(model, desc, engine, var_names, draws=draws, tune=tune, chains=chains, cores=cores,
                          random_seed=random_seed, progressbar=progressbar, kwargs=kwargs)
    if small is not None:
        return finalize(small, desc, engine=engine, log_likelihood=log_likelihood, random_seed=random_seed,
                        max_group_effect_values=max_group_effect_values)
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
                    max_group_effect_values=max_group_effect_values)


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


def _fit_empirical_bayes(desc: ModelDescription, *, draws, chains, random_seed, criterion, n_nodes, log_likelihood,
                         max_group_effect_values, sampler, target_accept, kwargs) -> xr.DataTree:
    from hierpool.inference import empirical_bayes as eb

    if desc.variant != "random_intercepts":
        raise ValueError(f"method='empirical_bayes' fits random_intercepts models; got a {desc.variant!r} model "
                         "(its group-effect scale is chosen by the user or shrunk by a prior, not estimated).")
    if desc.group_sd_fixed is not None:
        raise ValueError("method='empirical_bayes' estimates tau; this model fixes it (priors={'tau': value}).")
    one_of("criterion", criterion, eb.CRITERIA)
    n_nodes = positive_int("n_nodes", n_nodes, 1)
    if sampler != "auto" or target_accept is not None or kwargs:
        given = (["sampler"] if sampler != "auto" else []) + (["target_accept"] if target_accept is not None else [])
        raise TypeError(f"method='empirical_bayes' samples nothing; it takes no sampler settings; got "
                        f"{given + sorted(kwargs)}.")
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
    post, u, thin, stats, _ = gibbs.sample(pl, draws=draws, tune=tune, chains=chains, cores=cores,
                                           random_seed=random_seed, progressbar=progressbar,
                                           max_group_effect_values=max_group_effect_values)
    keep = slice(None, None, thin)
    post = post.isel(draw=keep)
    post[N.GROUP_EFFECT] = xr.DataArray(u, dims=(*N.SAMPLE_DIMS, N.GROUP), coords={"draw": post["draw"].values})
    dt = xr.DataTree.from_dict({"posterior": post, "sample_stats": stats.isel(draw=keep)})
    return finalize(dt, desc, engine="gibbs", log_likelihood=log_likelihood, random_seed=random_seed, thin=thin)


def finalize(dt: xr.DataTree, desc: ModelDescription, *, engine: str, log_likelihood="auto", random_seed=None,
             max_group_effect_values: float | None = None, thin: int = 1, method: str = "full_bayes",
             extra_report: dict | None = None) -> xr.DataTree:
    """Attach constant_data, observed_data, the log-likelihood, attrs and the sampling report.

    For a collapsed gaussian model the sampling report covers the sampled parameters; then, if
    chains x draws x groups exceeds ``max_group_effect_values``, the posterior is thinned (every k-th
    draw, recorded in ``attrs["hierpool_thin"]``) before ``group_effect`` is drawn, so that the stored
    posterior stays within memory. ``thin`` > 1 says that ``dt`` holds a posterior thinned already
    (the Gibbs sampler's), to record in the attrs. ``method="empirical_bayes"``: ``dt`` holds the
    group effects already (conditional draws given fixed estimates), and ``extra_report`` the estimates.
    """
    gd = desc.data
    if max_group_effect_values is None:
        max_group_effect_values = config.stored_values()
    post = dt["posterior"].to_dataset()
    keep = [v for v in _POSTERIOR_VARS if v in post]
    post = post[keep]
    const = constant_data(gd)
    report = None
    stats_thin = 1
    if desc.integrates_out_group_effects and method == "full_bayes":
        report = check_sampling(xr.DataTree.from_dict({"posterior": post, **(
            {"sample_stats": dt["sample_stats"].to_dataset()} if "sample_stats" in dt.children else {})}),
            _stacklevel=4)
        total = post.sizes["chain"] * post.sizes["draw"] * gd.n_groups * (1 + len(desc.slopes))
        thin = stats_thin = max(1, int(np.ceil(total / max_group_effect_values)))
        if thin > 1:
            post = post.isel(draw=slice(None, None, thin))
            report["thinned_for_group_effects"] = thin
        # A posterior thinned to fit memory is stored in float32: the exact draws (computed in float64)
        # rounded to 7 significant digits, far below Monte Carlo error; half the memory and bandwidth.
        dtype = np.float32 if thin > 1 else np.float64
        if desc.slopes:  # random slopes (hierpool.inference.slopes)
            from hierpool.inference.slopes import slope_effects

            post[N.GROUP_EFFECT], post[N.GROUP_SLOPE] = slope_effects(post, desc, random_seed, dtype=dtype)
        else:
            post[N.GROUP_EFFECT] = collapsed_group_effects(post, desc, random_seed, dtype=dtype)
    post = post.assign_coords({N.GROUP: const[N.GROUP].values})
    if N.PREDICTOR in post.dims:
        post = post.assign_coords({N.PREDICTOR: const[N.PREDICTOR].values})
    if desc.slopes:
        terms = [N.INTERCEPT, *desc.slopes]
        post = post.assign_coords({N.SLOPE: list(desc.slopes), **(
            {N.TERM: terms, N.TERM_: terms} if N.GROUP_CORR in post else {})})
    children = {"posterior": post, "constant_data": const}
    rows = hasattr(gd, "y")  # GroupedStats keeps no rows: no observed_data, no row log-likelihood
    if rows:
        y = xr.DataArray(gd.y, dims=(N.OBS,), coords={N.OBS: const[N.OBS].values}, name=N.Y)
        children["observed_data"] = y.to_dataset()
    if "sample_stats" in dt.children:
        stats = dt["sample_stats"].to_dataset().isel(draw=slice(None, None, stats_thin))
        for v in list(stats.data_vars):  # nutpie's divergence messages: object arrays with NaN
            if stats[v].dtype == object:
                stats[v] = stats[v].fillna("").astype(str)
        children["sample_stats"] = stats
    n_values = post.sizes["chain"] * post.sizes["draw"] * gd.n_obs
    if rows and (log_likelihood is True or (log_likelihood == "auto" and n_values <= config.stored_values())):
        ll = pointwise_log_likelihood(post, const, y, gd.family)
        children["log_likelihood"] = ll.rename(N.Y).to_dataset()
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
        report = check_sampling(out, _stacklevel=4)
        if thin > 1:
            report["thinned_for_group_effects"] = thin
    if extra_report:
        report.update(extra_report)
    out.attrs[N.ATTR_DIAGNOSTICS] = json.dumps(report)
    return out
