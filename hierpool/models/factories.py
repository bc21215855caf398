"""The three model factories. Each returns a ``pm.Model`` built under the naming contract of
:mod:`hierpool.core.names`: dims ``group``, ``obs_id``, ``predictor``; variables ``intercept``, ``beta``,
``group_effect``, ``tau`` (hierarchical variants), ``sigma`` (gaussian) and the observed ``y``.

Shared structure of the linear predictor for row i of group j::

    eta_i = intercept_c + sum_k beta_k (x_ik - xbar_k) + group_effect_j [+ log(exposure_i)]

``intercept_c`` is the intercept at the predictors' means (what the intercept prior is placed on, as in
brms and rstanarm); the posterior's ``intercept`` is the value at x = 0, as lme4 reports it. Standardized
coefficients ``beta_std = beta * sd(x)`` are what the sampler sees by default, and ``beta`` is reported on
the user's scale. Links: identity (gaussian), logit (bernoulli, binomial), log (poisson).

Default priors are weakly informative and scaled to the data as rstanarm's autoscaling does. With
``s = sd(y)`` for gaussian and ``s = 1`` on the logit/log scale, and ``m`` the overall mean of the
response mapped through the link:

==================  =========================================  ==========================================
parameter           random_intercepts / regularized            ridge_fixed_effects ("fixed effects")
==================  =========================================  ==========================================
intercept_c         Normal(m, 2.5 s)                           Normal(m, 100 s) gaussian, Normal(m, 10)
beta (per sd of x)  Normal(0, 2.5 s)                           Normal(0, 100 s) gaussian, Normal(0, 10)
tau                 HalfStudentT(nu=3, sigma=s)                absent: group_effect ~ Normal(0, 1/sqrt(lam))
sigma (gaussian)    HalfStudentT(nu=3, sigma=s)                HalfStudentT(nu=3, sigma=s)
==================  =========================================  ==========================================

``regularized_hierarchical`` replaces the prior on beta by its penalty and the prior on tau by a shrinking
penalized-complexity prior (see its docstring). Every default can be overridden through ``priors=`` by
parameter name (``"intercept"``, ``"beta"`` on the user's scale, for all coefficients or per predictor as
``{"beta": {"age": prior}}``, ``"tau"`` or ``"tau_sq"``, ``"sigma"`` or ``"sigma_sq"``); a number fixes
the parameter. ``intercept_at="zero"`` moves the intercept's prior from the means to x = 0 (the BUGS
convention): the intercept at x = 0 is then sampled and ``intercept_c`` derived from it.
"""

from __future__ import annotations

import math
import warnings

import numpy as np
import pandas as pd
import pymc as pm
import pytensor.tensor as pt

from hierpool.core import names as N
from hierpool.core.validate import one_of, positive_finite, positive_int
from hierpool.data.crossed_stats import crossed_gaussian_stats
from hierpool.data.grouped import GroupedData, GroupedStats
from hierpool.data.prepare import prepare
from hierpool.data.reduce import is_dask_or_path
from hierpool.models import crossed, integrated, parameterization
from hierpool.models import slopes as _slopes
from hierpool.models.collapse import (
    LikelihoodOnWorkers,
    gaussian_marginal_logp_sizes,
    integrated_patterns,
    known_se_marginal_logp,
    resolve_collapse,
)
from hierpool.models.description import INTEGRATED_OUT, ModelDescription
from hierpool.models.priors import Prior, elastic_net, normalize_priors, scale_parameter, serialize


def _as_grouped(data, prepare_kwargs: dict) -> GroupedData:
    given = {k: v for k, v in prepare_kwargs.items() if v is not None and not (k in ("predictors", "slopes") and not v)}
    if isinstance(data, (GroupedData, GroupedStats)):
        extra = [k for k in given if not (k == "family" and given[k] == data.family)]
        if extra:
            raise ValueError(
                f"data is already a GroupedData; {extra[0]}= cannot be given again (pass a DataFrame to "
                "use prepare's keywords)."
            )
        return data
    if isinstance(data, pd.DataFrame) or is_dask_or_path(data):
        if "formula" not in given and ("y" not in given or "group" not in given):
            raise ValueError("with a DataFrame, give at least y= and group= (the keywords of hp.prepare), or "
                             "formula= such as 'y ~ x + (1 | group)'.")
        return prepare(data, **{k: v for k, v in prepare_kwargs.items() if v is not None})
    raise TypeError(f"data must be a GroupedData (from hp.prepare) or a pandas DataFrame; got {type(data).__name__}.")


def _coords(gd: GroupedData) -> dict:
    rows = np.arange(gd.n_obs) if isinstance(gd, GroupedData) else np.arange(0)  # GroupedStats keeps no rows
    out = {N.GROUP: gd.groups.tolist(), N.OBS: rows, N.PREDICTOR: list(gd.predictors), **crossed.factor_coords(gd)}
    if getattr(gd, "slopes", ()):
        terms = [N.INTERCEPT, *gd.slopes]
        out.update({N.SLOPE: list(gd.slopes), N.TERM: terms, N.TERM_: terms})
    return out


def _resolve_collapse(gd, collapse) -> str | None:
    """The collapse choice: the row level for a model with several grouping factors (models.crossed),
    :func:`hierpool.models.slopes.resolve_collapse` for random slopes, else :func:`resolve_collapse`."""
    if crossed.has_factors(gd):
        if getattr(gd, "slopes", ()):
            raise ValueError(f"random slopes {list(gd.slopes)} take one grouping factor; this model has several "
                             f"({', '.join([gd.group_name, *gd.factor_names])}).")
        resolve_collapse(gd, collapse)  # the same check of the argument
        return crossed.resolve_collapse_factors(gd, collapse)
    if getattr(gd, "slopes", ()):
        return _slopes.resolve_collapse(gd, collapse)
    return resolve_collapse(gd, collapse)


def _allowed_priors(gd: GroupedData, keys: tuple[str, ...]) -> dict[str, str]:
    kinds = {"intercept": "real", "beta": "real", "tau": "positive", "tau_sq": "positive",
             "sigma": "positive", "sigma_sq": "positive"}
    out = {k: kinds[k] for k in keys}
    if not gd.fam.has_sigma or gd.summary_level:  # summary-level data: the known se replaces sigma
        out.pop("sigma", None)
        out.pop("sigma_sq", None)
    if gd.n_predictors == 0:
        out.pop("beta", None)
    if getattr(gd, "slopes", ()) and "tau" in out:  # random slopes: one prior for every slope SD
        out["tau_slope"] = "positive"
    if "tau" in keys:  # several grouping factors: each further factor's SD, tau__<factor>
        out.update(crossed.factor_prior_keys(gd))
    return out


def _data_containers(gd: GroupedData, how: str | None):
    """pm.Data for what the analysis needs without the original frame (ends up in constant_data).

    The row-level containers (group index, predictors, trials, exposure) are left out of collapsed
    gaussian models, whose likelihood reads only sufficient statistics: :func:`hierpool.fit` stores them
    in ``constant_data`` from the data itself, and at millions of rows copying them into the model cost
    time and memory for nothing.
    """
    pm.Data(N.GROUP_N, gd.group_n, dims=N.GROUP)
    pm.Data(N.GROUP_RAW_MEAN, gd.group_raw_mean, dims=N.GROUP)
    pm.Data(N.GROUP_DENOM, gd.group_denominator, dims=N.GROUP)
    if gd.n_predictors:
        pm.Data(N.X_CENTER, gd.x_center, dims=N.PREDICTOR)
        pm.Data(N.X_SCALE, gd.x_scale, dims=N.PREDICTOR)
    if gd.summary_level:  # the known standard errors, read by the likelihood
        pm.Data(N.SE, gd.se, dims=N.OBS)
    if isinstance(gd, GroupedStats) or how in ("gaussian", _slopes.COLLAPSED, crossed.CROSSED_GAUSSIAN):
        return
    pm.Data(N.GROUP_IDX, gd.group_idx, dims=N.OBS)
    crossed.factor_data(gd)
    if gd.n_predictors:
        pm.Data(N.X, gd.X, dims=(N.OBS, N.PREDICTOR))
    if gd.trials is not None:
        pm.Data(N.TRIALS, gd.trials, dims=N.OBS)
    if gd.exposure is not None:
        pm.Data(N.EXPOSURE, gd.exposure, dims=N.OBS)


def default_intercept_prior(gd, width: float, intercept_at: str) -> Prior:
    """The default prior of the intercept where it is placed (see :func:`_intercept_and_beta`).

    At the means: ``Normal(m, width * s)``. At x = 0: ``Normal(m, width * s * sqrt(1 + sum_k (xbar_k /
    sd_k)^2))``, the marginal that the default priors at the means (``Normal(m, width * s)`` on the
    intercept at the means and ``Normal(0, width * s)`` on each ``beta_std``) imply for the intercept at
    x = 0, so that moving the prior's place alone does not make a predictor far from zero (a year, an
    age) pull the intercept toward ``m``.
    """
    sd = width * gd.y_scale
    if intercept_at == "zero" and gd.n_predictors:
        ratio = np.asarray(gd.x_center, dtype=float) / np.asarray(gd.x_scale, dtype=float)
        sd *= math.sqrt(1.0 + float(ratio @ ratio))
    return Prior("Normal", mu=gd.y_location, sigma=sd)


def _coefficients(gd: GroupedData, priors: dict, width: float, used: dict, beta_std=None):
    """Build ``beta`` (user's scale, in the posterior) and return ``(beta, beta_std)`` tensors.

    ``beta_std`` multiplies the standardized predictors ``(x - mean) / sd``; ``beta = beta_std / sd``.
    A prior the user gives (all coefficients or per coefficient) is on the user's scale of the
    predictor: ``beta_k ~ prior`` and ``beta_std_k = beta_k * sd_k`` (exact: no Jacobian, the prior's
    density is on beta_k itself). Coefficients without a user prior get the default ``Normal(0, width *
    s)`` on ``beta_std_k`` (so ``Normal(0, width * s / sd_k)`` on ``beta_k``). A number fixes the
    coefficient(s) on the user's scale.
    """
    xs = gd.x_scale
    default = Prior("Normal", mu=0.0, sigma=width * gd.y_scale)
    given = priors.get("beta")
    if beta_std is not None:  # the penalty of the regularized variant
        beta = pm.Deterministic(N.BETA, beta_std / xs, dims=N.PREDICTOR)
    elif isinstance(given, dict):  # per coefficient, on the user's scale; the others keep the default
        used["beta"] = dict(given)
        parts = []
        for k, name in enumerate(gd.predictors):
            p = given.get(name)
            if isinstance(p, Prior):
                parts.append(p.build(f"{N.BETA}[{name}]"))
            elif p is not None:
                parts.append(pt.as_tensor_variable(float(p)))
            else:
                used[N.BETA_STD] = default
                parts.append(default.build(f"{N.BETA_STD}[{name}]") / float(xs[k]))
        beta = pm.Deterministic(N.BETA, pt.stack(parts), dims=N.PREDICTOR)
        beta_std = beta * xs
    elif given is not None:  # one prior (or a fixed value) for every coefficient, on the user's scale
        used["beta"] = given
        if isinstance(given, Prior):
            beta = given.build(N.BETA, dims=N.PREDICTOR)
        else:
            beta = pm.Deterministic(N.BETA, pt.as_tensor_variable(np.full(gd.n_predictors, float(given))),
                                    dims=N.PREDICTOR)
        beta_std = beta * xs
    else:
        used[N.BETA_STD] = default
        beta_std = default.build(N.BETA_STD, dims=N.PREDICTOR)
        beta = pm.Deterministic(N.BETA, beta_std / xs, dims=N.PREDICTOR)
    return beta, beta_std


def _intercept_and_beta(gd: GroupedData, priors: dict, width: float, used: dict, beta_std=None,
                        intercept_at: str = "means"):
    """Build the intercept and the coefficients; return (intercept_c, beta_std or None).

    ``intercept_c`` is the intercept at the predictors' means, what the likelihood uses with the
    centered predictors. Where the intercept's prior sits (``intercept_at``):

    - ``"means"``: the prior is on ``intercept_c`` (a free variable); the posterior's ``intercept``
      (at x = 0) is the deterministic ``intercept_c - sum_k beta_k xbar_k``.
    - ``"zero"``: the prior is on ``intercept`` (at x = 0, a free variable) and ``intercept_c = intercept
      + sum_k beta_k xbar_k`` is deterministic. The map (intercept, beta) -> (intercept_c, beta) is linear
      with determinant 1, so this is exactly the model with the prior density on the intercept at x = 0
      (no Jacobian term).

    Without predictors the two places coincide and the graph is that of "means". The prior of each
    parameter built here is recorded in ``used`` (the description's priors).
    """
    icpt = priors.get("intercept", default_intercept_prior(gd, width, intercept_at))
    used["intercept"] = icpt
    if gd.n_predictors == 0 or intercept_at == "means":
        if isinstance(icpt, Prior):
            intercept_c = icpt.build(N.INTERCEPT_CENTERED)
        else:
            intercept_c = pm.Deterministic(N.INTERCEPT_CENTERED, pt.as_tensor_variable(float(icpt)))
        if gd.n_predictors == 0:
            pm.Deterministic(N.INTERCEPT, intercept_c)
            return intercept_c, None
        beta, beta_std = _coefficients(gd, priors, width, used, beta_std)
        pm.Deterministic(N.INTERCEPT, intercept_c - pt.dot(beta, gd.x_center))
        return intercept_c, beta_std
    beta, beta_std = _coefficients(gd, priors, width, used, beta_std)
    if isinstance(icpt, Prior):
        intercept = icpt.build(N.INTERCEPT)
    else:
        intercept = pm.Deterministic(N.INTERCEPT, pt.as_tensor_variable(float(icpt)))
    intercept_c = pm.Deterministic(N.INTERCEPT_CENTERED, intercept + pt.dot(beta, gd.x_center))
    return intercept_c, beta_std


def _hierarchical_effects(gd, intercept_c, tau, centered):
    """``group_effect`` (dims ``group``), ``Normal(0, tau)``, parameterized for NUTS as ``centered`` says
    (:mod:`hierpool.models.parameterization`; "auto": each group partially non-centered by its data's
    information, the intercept at the predictors' means as the centre)."""
    return parameterization.group_effects(
        tau, parameterization.group_information(gd), centered, dim=N.GROUP, effect=N.GROUP_EFFECT, z=N.GROUP_EFFECT_Z,
        centered_name=N.GROUP_INTERCEPT, partial=N.GROUP_EFFECT_PARTIAL, mean=intercept_c)


def _scale_parameter(name: str, priors: dict, default: Prior, used: dict):
    """Build a standard deviation (tau, sigma) and record its prior (on it or on its square) in ``used``."""
    key = f"{name}_sq" if f"{name}_sq" in priors else name
    used[key] = priors.get(key, default)
    return scale_parameter(name, priors, default)


def _sigma(gd: GroupedData, priors: dict, used: dict):
    return _scale_parameter(N.SIGMA, priors, Prior("HalfStudentT", nu=3, sigma=gd.y_scale), used)


def _likelihood(gd: GroupedData, intercept_c, beta_std, group_effect, priors: dict, collapse: str | None,
                used: dict, extra=None):
    """The observed part. ``group_effect`` is a tensor of group effects, or for the collapsed gaussian
    and integrated models the group-level SD (tau, or 1/sqrt(lam)) that the integrated-out effects have.
    ``extra``: the further grouping factors' effects at each row (row-level models only), or None."""
    if collapse == "gaussian":
        sc = gd.gaussian_sizes
        data = {
            "sizes": sc.sizes, "counts": sc.counts, "sxx_w": sc.sxx_w, "n_obs": sc.n_obs, "n_groups": sc.n_groups,
            # response-dependent statistics are data containers: refit new responses without recompiling
            "moments": pm.Data(N.SIZE_MOMENTS, sc.moments),
            "center": pm.Data(N.YBAR_CENTER, np.asarray(sc.center)),
            "syy_w": pm.Data(N.SYY_W, np.asarray(sc.syy_w)),
            "sxy_w": pm.Data(N.SXY_W, sc.sxy_w, dims=N.PREDICTOR) if gd.n_predictors else sc.sxy_w,
        }
        sigma = _sigma(gd, priors, used)
        return pm.Potential(N.Y_MARGINAL, gaussian_marginal_logp_sizes(data, intercept_c, beta_std, group_effect, sigma))
    if collapse == crossed.CROSSED_GAUSSIAN:  # first factor integrated out given the others' effects
        model = pm.Model.get_context()
        effects = [model[N.factor_var(N.GROUP_EFFECT, f.name)] for f in gd.factors]
        data = crossed.crossed_data(crossed_gaussian_stats(gd), containers=True)
        sigma = _sigma(gd, priors, used)
        return pm.Potential(N.Y_MARGINAL, crossed.crossed_gaussian_marginal_logp(data, intercept_c, beta_std,
                                                                                 group_effect, sigma, effects))
    if collapse == "known_se":  # summary-level data: y_j ~ Normal(a + x_j b, sqrt(tau^2 + se_j^2))
        y_obs = pm.Data(N.Y_OBSERVED, gd.y, dims=N.OBS)
        mean = intercept_c if beta_std is None else intercept_c + pt.dot(pt.as_tensor_variable(gd.Xs), beta_std)
        se = pm.Model.get_context()[N.SE]
        return pm.Potential(N.Y_MARGINAL, known_se_marginal_logp(y_obs, se, mean, group_effect))
    if collapse == "integrated":
        pat = integrated_patterns(gd)
        counts = pm.Data(N.PATTERN_COUNTS, pat.counts)  # the response enters only here (refits: data_for)
        return pm.Potential(N.Y_MARGINAL, pt.sum(counts * integrated.marginal_logp(
            pat.k, pat.n, intercept_c, group_effect, counts=counts)))
    if collapse == "counts":
        cp = gd.cells
        if cp is None:  # cells kept on Dask workers: hp.fit evaluates them there; here, a node that refuses
            return pm.Potential(N.Y_MARGINAL, LikelihoodOnWorkers()(intercept_c))
        Xs, gidx, yv, trials = cp.Xs, cp.group_idx, cp.y, cp.trials
        offset = None if cp.exposure is None else np.log(cp.exposure)
        dims = N.CELL
        pm.Model.get_context().add_coord(N.CELL, np.arange(cp.y.shape[0]))
    else:
        Xs = gd.Xs
        gidx, yv, trials, offset, dims = gd.group_idx, gd.y, gd.trials, gd.log_offset, N.OBS
    # The response is a data container ("y_observed") so that a compiled model can be refitted to new
    # responses of the same design without recompiling (simulation-based calibration uses this).
    y_obs = pm.Data(N.Y_OBSERVED, yv, dims=dims)
    # a tensor index: PyTensor checks a numpy index element by element for booleans (2.3 s at 2.5M rows,
    # against 0.2 ms for the same graph from a constant)
    eta = intercept_c + group_effect[pt.as_tensor_variable(gidx)]
    if extra is not None:
        eta = eta + extra
    if beta_std is not None:
        eta = eta + pt.dot(pt.as_tensor_variable(Xs), beta_std)
    if offset is not None:
        eta = eta + offset
    if gd.summary_level:  # the known standard errors in place of a residual sigma
        sigma = pm.Model.get_context()[N.SE]
    else:
        sigma = _sigma(gd, priors, used) if gd.fam.has_sigma else None
    return gd.fam.pymc_likelihood(N.Y, eta, y_obs, dims, sigma=sigma, trials=trials)


def _attach(model: pm.Model, variant: str, gd: GroupedData, settings: dict, collapse: str | None, used: dict,
            **extra) -> pm.Model:
    """Attach the model's :class:`ModelDescription` (read back with :func:`describe`)."""
    settings["collapse"] = collapse
    desc = ModelDescription(variant=variant, family=gd.family, data=gd, collapse=collapse, priors=used,
                            settings=settings, slopes=tuple(getattr(gd, "slopes", ())), **extra)
    setattr(model, N.MODEL_ATTR, desc)
    return model


def _slope_part(gd, a, b, pri, used, how, tau=None, lam=None, lkj_eta=None):
    """Random slopes: the group-level covariance and the likelihood (:mod:`hierpool.models.slopes`)."""
    C = _slopes.build_cov_factor(gd, pri, used, tau, lam, lkj_eta)
    _slopes.likelihood(gd, a, b, C, pri, how, lambda: _sigma(gd, pri, used))


def _check_lkj_eta(gd, lkj_eta) -> float | None:
    eta = positive_finite("lkj_eta", lkj_eta)
    return eta if getattr(gd, "slopes", ()) else None


# ------------------------------------------------------------------------------------------------------
def random_intercepts(
    data,
    *,
    y=None,
    group=None,
    predictors=(),
    family=None,
    trials=None,
    exposure=None,
    formula=None,
    se=None,
    priors: dict | None = None,
    intercept_at: str = "means",
    centered: bool | str = "auto",
    collapse: bool | str = "auto",
    slopes=(),
    lkj_eta: float = _slopes.LKJ_ETA,
) -> pm.Model:
    """Hierarchical random intercepts: partial pooling with the shrinkage chosen by the data through tau.

    ``eta = intercept + X beta + group_effect[group]``, ``group_effect_j ~ Normal(0, tau)``, each group
    partially non-centered by default according to how much its own data say (``centered="auto"``).

    **Several grouping factors** (crossed ``group=["member", "hospital"]`` or ``"y ~ (1 | member) +
    (1 | hospital)"``, nested ``group="hospital/ward"`` or ``(1 | hospital/ward)``): the first factor keeps
    ``group``, ``group_effect`` and ``tau``; every further factor ``f`` adds ``group_effect__f ~ Normal(0,
    tau__f)`` (dim ``group__f``) to the linear predictor, with ``tau__f`` given tau's default prior
    (override: ``priors={"tau__f": ...}``). gaussian: ``collapse="auto"`` (or True) integrates the FIRST
    factor's effects out exactly given the others' (which NUTS samples), and ``hp.fit`` draws them from
    their exact conditional afterwards; list the factor with most levels first. ``collapse=False`` keeps
    the row-level model. Other families are fitted at the row level (``True``/``"integrated"`` are
    refused). See :mod:`hierpool.models.crossed`.

    Parameters
    ----------
    data : GroupedData or pandas.DataFrame
        Prepared data, or a frame together with the keywords of :func:`hierpool.prepare`.
    y, group, predictors, family, trials, exposure, formula, se
        As in :func:`hierpool.prepare` (only with a DataFrame): keywords, or an lme4-style ``formula``
        such as ``"y ~ x + C(c) + (1 | group)"`` (:mod:`hierpool.data.formula`); ``se=`` reads
        summary-level data (one estimate per group with its known standard error; see below).
    priors : dict, optional
        Overrides by parameter name: ``"intercept"`` (where ``intercept_at`` places it), ``"beta"``,
        ``"tau"`` or ``"tau_sq"``, ``"sigma"`` or ``"sigma_sq"`` (gaussian). Values are
        :class:`hierpool.Prior` objects, dicts like ``{"dist": "HalfNormal", "sigma": 1}``, or numbers
        that fix the parameter. ``"beta"`` takes one prior for every coefficient or a dict by predictor
        name, ``{"beta": {"age": hp.Prior("Normal", mu=0, sigma=0.1)}}`` (as brms's ``prior(normal(0,
        0.1), class = b, coef = age)`` and bambi's priors by term): the coefficients not named keep the
        default, and a name that is not a predictor is refused with the valid names. Keys are the
        predictor names exactly as in ``model.coords["predictor"]`` (a formula's ``c[b]`` too: no
        bracket syntax to parse). A dict is one prior exactly when its ``"dist"`` is a string, so a
        predictor named ``dist`` works as well. Every prior on ``beta`` is on the **user's scale** of
        its predictor: ``beta_k ~ prior`` itself (a free variable ``beta[name]`` per named coefficient),
        and the model multiplies by the predictor's sd to get the coefficient of the standardized
        predictor that the likelihood uses, ``beta_std_k = beta_k * sd_k`` (no Jacobian: the density is
        placed on ``beta_k``). The defaults are instead on ``beta_std`` (``Normal(0, 2.5 s)`` per sd of
        x, i.e. ``Normal(0, 2.5 s / sd_k)`` on ``beta_k``).
    centered : {"auto", True, False}
        How the sampler sees the group effects when they are sampled (models whose group effects are
        integrated out have none to parameterize); the posterior is the same for all three. ``False``:
        non-centered, ``group_effect = tau * z``, ``z ~ Normal(0, 1)`` (best when every group has
        little data). ``True``: hierarchically centered, ``intercept_c + group_effect ~ Normal(intercept_c,
        tau)`` (best when every group has much data). ``"auto"`` (default): partial non-centering per
        group, with group j's weight ``w_j = tau^2 I_j / (1 + tau^2 I_j)`` between the two at each draw's
        tau, ``I_j`` the information the group's own data give about its effect at its raw mean (e.g.
        its count for poisson, ``n p (1 - p)`` for binomial); see :func:`_hierarchical_effects`.
        Why "auto" is the default (``benchmarks/bench_sampling_defaults.py``, 5 seeds, 4 x 1000 draws,
        nutpie, 2026-11-28): on lme4's grouseticks (poisson, 118 broods, tau about 1.6) the former
        non-centered default failed R-hat <= 1.01 / ESS >= 400 on every seed (R-hat up to 1.039,
        tau's bulk ESS 106-239), and 3,000 tuning steps or ``target_accept=0.95`` did not fix it;
        on the 12-hospital surgical data (binomial, tau about 0.45) it gave R-hat 1.025 and tail ESS 86
        on one seed of five, and divergences on three. "auto" met the target on every seed of both (R-hat
        <= 1.008, bulk and tail ESS >= 849) with no divergence, at 9.0 and 6.8 leapfrog steps per
        draw (non-centered: 15.0 and 7.4). ``centered=True`` met it too but diverged on 3 of 5
        surgical seeds; nutpie's low-rank mass matrix (``hp.fit(..., nuts={"adaptation":
        "low_rank"})``) met it at 2-22x the sampling CPU per effective draw of tau. Long runs of three
        parameterizations agree on the posterior means within Monte Carlo error.
    intercept_at : {"means", "zero"}
        Where the intercept's prior sits. ``"means"`` (default; rstanarm's and brms's choice): on the
        intercept at the predictors' means, ``intercept_c``; the reported ``intercept`` (at x = 0) is
        ``intercept_c - sum_k beta_k xbar_k``. ``"zero"`` (published BUGS analyses, e.g. posteriordb's
        seeds): on the intercept at x = 0 itself, which is then the free variable, with ``intercept_c =
        intercept + sum_k beta_k xbar_k`` (a shift of determinant 1, so the density is exact). The
        default prior at zero is ``Normal(m, 2.5 s sqrt(1 + sum_k (xbar_k / sd_k)^2))``, the spread the
        default priors at the means imply for the intercept at x = 0. Without predictors both are the
        same model.
    collapse : {"auto", True, False, "integrated"}
        Use an exact collapsed likelihood (:mod:`hierpool.models.collapse`). gaussian: the group effects are
        integrated out (the sampler sees intercept, beta, tau, sigma; ``hp.fit`` draws ``group_effect``
        from its exact conditional afterwards), always with "auto". bernoulli/binomial WITHOUT
        predictors: "auto" (or "integrated") integrates the group effects out by adaptive Gauss-Hermite
        quadrature over the (successes, trials) patterns (:mod:`hierpool.models.integrated`; the sampler sees
        intercept and tau) and draws them exactly afterwards; ``hp.fit``'s default sampler runs the
        integrated sampler on it (:mod:`hierpool.inference.integrated`, the same marginal posterior by its
        own quadrature per group), ``sampler="nutpie"`` NUTS over the pattern likelihood. Other counts: rows sharing a group and a
        predictor pattern are pooled into one binomial/Poisson cell (``True``, or "auto" when that removes
        at least 20% of the rows). The posterior is the same either way; ``False`` forces the row-level
        model.
        A model whose group effects are integrated out has no ``group_effect`` variable: ``hp.fit``
        draws it; a trace sampled with plain ``pm.sample`` becomes a fit through ``hp.from_trace(trace,
        model)``, and the analysis functions refuse such a trace with that advice.
        Summary-level data (``hp.prepare(..., se=)``): "auto" or True integrate the group effects out
        exactly, ``y_j ~ Normal(intercept + x_j beta, sqrt(tau^2 + se_j^2))`` (the sampler sees the
        intercept, beta and tau; ``group_effect`` is drawn from its exact conditional afterwards);
        ``False`` samples them (parameterized as ``centered`` says, with ``I_j = 1 / se_j^2``) with
        ``y_j ~ Normal(..., sigma=se_j)``.

    **Summary-level data** (one estimate ``y_j`` per group with a known standard error ``se_j``: the eight
    schools, published provider rates) has no ``sigma``: ``y_j ~ Normal(intercept + x_j beta + u_j,
    se_j)``. The default prior scale ``s`` is then the sd of the estimates. Why collapsed by default,
    measured on the eight schools with posteriordb's prior (mu ~ Normal(0, 5), tau ~ HalfCauchy(5)),
    ``hp.fit`` defaults (nutpie, target_accept 0.8, 4 x 1000 draws), 10 seeds
    (``benchmarks/eight_schools_collapse.py``, 2-core machine, wall time with compilation): collapsed,
    0 divergences in 10 fits, bulk ESS of tau 1,794 (min 1,471), 1.9 s per fit; ``collapse=False``
    (non-centered, ``centered=False``), 32 divergences with at least one in every fit (so every fit warns, and the funnel
    it signals is under-explored), ESS of tau 2,163, 6.9 s; ``collapse=False, target_accept=0.95``, 0
    divergences, ESS 1,873, 10.6 s. Both reproduce the exact posterior (tests/test_summary_data.py).

    Defaults (``s = sd(y)`` gaussian, 1 otherwise; ``m`` = link(overall mean)): intercept at the predictor
    means ~ Normal(m, 2.5 s); beta per standard deviation of its predictor ~ Normal(0, 2.5 s);
    tau ~ HalfStudentT(3, s); sigma ~ HalfStudentT(3, s).

    **Random slopes** (``prepare(..., slopes=["x"])``, ``slopes=`` here with a DataFrame, or the formula
    ``"y ~ x + (1 + x | g)"``): the intercept and the slopes of ``x`` vary by group jointly,
    ``(group_effect_j, group_slope_j) ~ MVN(0, diag(tau, tau_slope) R diag(tau, tau_slope))`` with
    ``R ~ LKJ(lkj_eta)`` (default 1, uniform, as brms and rstanarm) and ``tau_slope ~ HalfStudentT(3,
    s / sd(x))`` (override with ``priors={"tau_slope": ...}``); details in :mod:`hierpool.models.slopes`.
    The posterior adds ``group_slope`` (group, slope), ``tau_slope`` (slope) and ``group_corr`` (term,
    term_); ``group_effect`` and ``tau`` stay the intercept's. gaussian integrates the effects out exactly
    and draws them afterwards (``collapse=False``: row level); counts are fitted row by row, non-centered.
    ``centered=True`` is not available with slopes; the default ``"auto"`` (and ``False``) samples them
    non-centered (the partial non-centering of ``"auto"`` applies to intercept-only effects).

    Returns
    -------
    pymc.Model

    Examples
    --------
    >>> import hierpool as hp
    >>> df = hp.datasets.simulate_gaussian(n_groups=20, seed=1)
    >>> model = hp.random_intercepts(df, y="y", group="group", predictors=["x1"])
    >>> sorted(model.coords)
    ['group', 'obs_id', 'predictor']
    """
    gd = _as_grouped(data, dict(y=y, group=group, predictors=predictors, family=family, trials=trials,
                                exposure=exposure, formula=formula, se=se, slopes=slopes))
    parameterization.check_centered(centered)
    eta = _check_lkj_eta(gd, lkj_eta)
    if gd.slopes and centered is True:
        raise ValueError("centered=True: random slopes are sampled non-centered (or integrated out); use "
                         "centered='auto' or False.")
    one_of("intercept_at", intercept_at, N.INTERCEPT_AT)
    pri = normalize_priors(priors, _allowed_priors(gd, ("intercept", "beta", "tau", "tau_sq", "sigma",
                                                         "sigma_sq")), "random_intercepts", gd.predictors)
    how = _resolve_collapse(gd, collapse)
    used: dict = {}
    with pm.Model(coords=_coords(gd)) as model:
        _data_containers(gd, how)
        a, b = _intercept_and_beta(gd, pri, width=2.5, used=used, intercept_at=intercept_at)
        tau = _scale_parameter(N.TAU, pri, Prior("HalfStudentT", nu=3, sigma=gd.y_scale), used)
        if gd.slopes:
            _slope_part(gd, a, b, pri, used, how, tau=tau, lkj_eta=eta)
        else:
            u = tau if how in INTEGRATED_OUT else _hierarchical_effects(gd, a, tau, centered)
            extra = crossed.factor_effects(gd, pri, used, tau_default=Prior("HalfStudentT", nu=3, sigma=gd.y_scale),
                                           centered=centered, mean=a if how in INTEGRATED_OUT else None)
            _likelihood(gd, a, b, u, pri, how, used, extra)
    settings = {"priors": serialize(pri), "intercept_at": intercept_at, "centered": centered, "data": gd.spec(),
                **({"lkj_eta": eta} if gd.slopes else {})}
    return _attach(model, "random_intercepts", gd, settings, how, used, centered=centered,
                   intercept_at=intercept_at, lkj_eta=eta)


def ridge_fixed_effects(
    data,
    lam: float = 1.0,
    *,
    y=None,
    group=None,
    predictors=(),
    family=None,
    trials=None,
    exposure=None,
    formula=None,
    se=None,
    priors: dict | None = None,
    intercept_at: str = "means",
    collapse: bool | str = "auto",
    slopes=(),
) -> pm.Model:
    """Fixed group effects on one-hot dummies with a ridge (L2) prior of precision ``lam``.

    ``group_effect_j ~ Normal(0, sd = 1/sqrt(lam))``, independently, with ``lam`` chosen by the user (no
    tau: nothing is learned about the spread of the groups). The intercept and ``beta`` get very wide
    priors (Normal with sd 100 s for gaussian, 10 on the logit/log scale): the "fixed effects" of the
    model are unpenalized, as in a ridge regression with an unpenalized intercept. Every group has its own
    dummy (no reference level), so shrinkage goes toward the intercept, not toward an arbitrary group.

    **Correspondence with ridge software.** The posterior mode of this model (with sigma fixed) minimizes
    ``RSS + sigma^2 * lam * sum_j u_j^2`` (gaussian), so:

    - scikit-learn ``Ridge(alpha=a, fit_intercept=True)`` on the one-hot group columns (predictors
      unpenalized) has ``a = sigma^2 * lam``;
    - glmnet (``alpha = 0``, ``standardize = FALSE``, penalty factor 0 on predictors) minimizes
      ``RSS / (2N) + lambda/2 * sum u^2`` on ``y / s_y`` (it rescales a gaussian response by its 1/N sd
      ``s_y``), so ``lambda = s_y * sigma^2 * lam / N``;
    - for bernoulli/binomial/poisson the penalized negative log-likelihood is ``-loglik + lam/2 sum u^2``:
      scikit-learn's ``LogisticRegression(C=c)`` has ``c = 1/lam`` and glmnet's ``lambda = lam / N``.

    With ``lam = 1/tau^2`` (gaussian: sigma^2/tau^2 in scikit-learn units) the group effects equal the
    random-intercepts model's BLUP for that tau: the mixed-model equations of Henderson.

    Summary-level data (``se=``, one estimate per group with a known standard error) works here too:
    ``y_j ~ Normal(intercept + x_j beta + u_j, se_j)`` with ``u_j ~ Normal(0, 1/sqrt(lam))``, integrated
    out exactly; the equivalent scikit-learn ridge is ``Ridge(alpha=lam)`` with ``sample_weight = 1/se^2``.

    **Random slopes** (``slopes=`` / ``(1 + x | g)``): each group's block of intercept and slope
    deviations gets the same penalty, ``(group_effect_j, group_slope_j) ~ MVN(0, I / lam)`` (the ridge on the
    one-hot columns and their products with ``x``); see :mod:`hierpool.models.slopes`.

    Parameters
    ----------
    data : GroupedData or pandas.DataFrame
        Prepared data, or a frame with prepare's keywords or a ``formula`` (see :func:`random_intercepts`).
    lam : float
        Prior precision of each group effect, > 0 (on the linear-predictor scale: response units for
        gaussian, log-odds or log-rate otherwise).
    priors : dict, optional
        Overrides for ``"intercept"``, ``"beta"`` (one prior, or a dict by predictor name),
        ``"sigma"``/``"sigma_sq"`` (see :func:`random_intercepts`).
    intercept_at : {"means", "zero"}
        Where the intercept's prior sits (see :func:`random_intercepts`); at zero the default sd is
        ``100 s`` (10 on the logit/log scale) times ``sqrt(1 + sum_k (xbar_k / sd_k)^2)``.
    collapse : {"auto", True, False, "integrated"}
        Exact collapsed likelihood, as in :func:`random_intercepts` (gaussian, and bernoulli/binomial
        without predictors: group effects integrated out given lam, and drawn from their conditional
        after sampling).

    Examples
    --------
    >>> import hierpool as hp
    >>> df = hp.datasets.simulate_gaussian(n_groups=20, seed=1)
    >>> model = hp.ridge_fixed_effects(df, lam=4.0, y="y", group="group")
    >>> "tau" in model.named_vars
    False
    """
    gd = _as_grouped(data, dict(y=y, group=group, predictors=predictors, family=family, trials=trials,
                                exposure=exposure, formula=formula, se=se, slopes=slopes))
    lam = positive_finite("lam", lam)
    one_of("intercept_at", intercept_at, N.INTERCEPT_AT)
    pri = normalize_priors(priors, _allowed_priors(gd, ("intercept", "beta", "sigma", "sigma_sq")),
                           "ridge_fixed_effects", gd.predictors)
    width = gd.fam.fixed_effect_prior_width
    how = _resolve_collapse(gd, collapse)
    used: dict = {}
    with pm.Model(coords=_coords(gd)) as model:
        _data_containers(gd, how)
        a, b = _intercept_and_beta(gd, pri, width=width, used=used, intercept_at=intercept_at)
        if gd.slopes:
            _slope_part(gd, a, b, pri, used, how, lam=lam)
        else:
            if how in INTEGRATED_OUT:
                u = pt.as_tensor_variable(1.0 / math.sqrt(lam))
            else:
                u = pm.Normal(N.GROUP_EFFECT, 0.0, sigma=1.0 / math.sqrt(lam), dims=N.GROUP)
            extra = crossed.factor_effects(gd, pri, used, tau_default=None, lam=lam)
            _likelihood(gd, a, b, u, pri, how, used, extra)
    settings = {"lam": lam, "priors": serialize(pri), "intercept_at": intercept_at,
                "fixed_effect_prior_sd": width * gd.y_scale, "data": gd.spec()}
    return _attach(model, "ridge_fixed_effects", gd, settings, how, used, lam=lam, intercept_at=intercept_at)


def regularized_hierarchical(
    data,
    penalty: str = "horseshoe",
    *,
    y=None,
    group=None,
    predictors=(),
    family=None,
    trials=None,
    exposure=None,
    formula=None,
    se=None,
    penalty_scale: float | None = None,
    l1_ratio: float = 0.5,
    expected_nonzero: int | None = None,
    slab_scale: float | None = None,
    slab_df: float = 4.0,
    tau_scale: float | None = None,
    priors: dict | None = None,
    intercept_at: str = "means",
    centered: bool | str = "auto",
    collapse: bool | str = "auto",
    slopes=(),
    lkj_eta: float = _slopes.LKJ_ETA,
) -> pm.Model:
    """Random intercepts with a regularizing prior on the predictors and a shrinking prior on tau.

    Random slopes (``slopes=`` / ``(1 + x | g)``) get the prior of :func:`random_intercepts` (LKJ
    correlation, ``tau_slope``); ``tau`` keeps this variant's shrinking prior and the penalty acts on
    ``beta`` only.

    The hierarchy and the penalty are orthogonal: the group effects are partially pooled as in
    :func:`random_intercepts`, while ``beta`` (on standardized predictors, ``beta_std = beta * sd(x)``)
    gets a sparsity or shrinkage prior, and tau a prior that pulls it toward zero.

    Penalties on ``beta_std`` (``s = sd(y)`` for gaussian, 1 otherwise):

    - ``"ridge"``: ``Normal(0, penalty_scale)``, default ``penalty_scale = s``.
    - ``"laplace"`` (Bayesian lasso): ``Laplace(0, b = penalty_scale / sqrt(2))``: the same prior sd as
      the ridge, more mass near zero and heavier tails.
    - ``"elastic_net"``: density ``exp(-r (l1_ratio |b| + (1 - l1_ratio) b^2 / 2))``, with ``l1_ratio``
      glmnet's ``alpha`` (scikit-learn's ``l1_ratio``; default 0.5; 0 is the ridge, 1 the laplace) and the
      rate ``r`` set so that the prior sd is ``penalty_scale`` again. The posterior mode with sigma fixed
      minimizes glmnet's objective ``RSS / (2N) + lambda (alpha |b|_1 + (1 - alpha) / 2 |b|_2^2)`` on the
      standardized predictors with ``alpha = l1_ratio`` and ``lambda = sigma^2 r / N`` (logit/log link:
      ``lambda = r / N``, the deviance in place of RSS / sigma^2). Not served by the Gibbs sampler (NUTS).
    - ``"horseshoe"``: the regularized horseshoe of Piironen & Vehtari (2017), non-centered:
      ``beta_std_k = z_k * g * lambda~_k``, ``lambda_k ~ HalfCauchy(1)``, global
      ``g ~ HalfCauchy(g0)`` with ``g0 = p0 / (P - p0) * s / sqrt(N)`` (``p0 = expected_nonzero``, default
      ``max(1, P // 3)``, and ``P - p0`` at least 1), slab ``c^2 ~ InverseGamma(slab_df/2,
      slab_df/2 * slab_scale^2)`` with ``slab_scale = 2 s`` by default, and
      ``lambda~_k^2 = c^2 lambda_k^2 / (c^2 + g^2 lambda_k^2)``.

    ``hp.fit`` samples a horseshoe model with ``target_accept=0.99`` unless told otherwise: the funnel
    between the global and local scales diverges at the default 0.8 (on radon: 78 divergences at 0.8,
    4 at 0.95, none at 0.99).

    The group effects are parameterized for the sampler as ``centered=`` says (default ``"auto"``: each
    group partially non-centered by its own data's information; see :func:`random_intercepts`).

    tau gets a penalized-complexity prior (Simpson et al. 2017): ``tau ~ Exponential(rate)`` with
    ``P(tau > tau_scale) = 0.05``, i.e. ``rate = -log(0.05) / tau_scale``; default ``tau_scale = s / 2``.
    Its density is largest at tau = 0, so it shrinks the random-effects model toward complete pooling
    unless the data insist. Override with ``priors={"tau": ...}`` (or ``"intercept"``, ``"sigma"``; the
    penalty sets beta's prior, so ``"beta"`` is not taken here). ``intercept_at="zero"`` places the
    intercept's prior at x = 0 instead of at the predictors' means, as in :func:`random_intercepts`.

    Examples
    --------
    >>> import hierpool as hp
    >>> df = hp.datasets.simulate_gaussian(n_groups=20, n_predictors=3, seed=1)
    >>> model = hp.regularized_hierarchical(df, penalty="laplace", y="y", group="group",
    ...                                     predictors=["x1", "x2", "x3"])
    >>> hp.describe(model).penalty
    'laplace'
    """
    gd = _as_grouped(data, dict(y=y, group=group, predictors=predictors, family=family, trials=trials,
                                exposure=exposure, formula=formula, se=se, slopes=slopes))
    one_of("penalty", penalty, N.PENALTIES)
    one_of("intercept_at", intercept_at, N.INTERCEPT_AT)
    parameterization.check_centered(centered)
    eta = _check_lkj_eta(gd, lkj_eta)
    if gd.slopes and centered is True:
        raise ValueError("centered=True: random slopes are sampled non-centered (or integrated out); use "
                         "centered='auto' or False.")
    s = gd.y_scale
    penalty_scale = s if penalty_scale is None else positive_finite("penalty_scale", penalty_scale)
    if isinstance(l1_ratio, bool) or not isinstance(l1_ratio, (int, float)) or not 0.0 <= l1_ratio <= 1.0:
        raise ValueError(f"l1_ratio={l1_ratio!r} must be a number in [0, 1] (glmnet's alpha: 0 ridge, 1 lasso).")
    l1_ratio = float(l1_ratio)
    slab_scale = 2.0 * s if slab_scale is None else positive_finite("slab_scale", slab_scale)
    slab_df = positive_finite("slab_df", slab_df)
    tau_scale = 0.5 * s if tau_scale is None else positive_finite("tau_scale", tau_scale)
    P = gd.n_predictors
    if P == 0:
        warnings.warn(
            "regularized_hierarchical without predictors: there is no coefficient to penalize, so this is "
            "random_intercepts with the shrinking (penalized-complexity) prior on tau; for that prior alone, "
            "hp.random_intercepts(..., priors={'tau': hp.Prior('Exponential', lam=...)}) says so directly.",
            UserWarning, stacklevel=2)
    if expected_nonzero is None:
        expected_nonzero = max(1, P // 3)
    else:
        expected_nonzero = positive_int("expected_nonzero", expected_nonzero)
        if P and expected_nonzero > P:
            raise ValueError(f"expected_nonzero={expected_nonzero} exceeds the number of predictors ({P}).")
    pri = normalize_priors(priors, _allowed_priors(gd, ("intercept", "tau", "tau_sq", "sigma", "sigma_sq")),
                           f"regularized_hierarchical (beta's prior is set by penalty={penalty!r})")
    global_scale = expected_nonzero / max(P - expected_nonzero, 1) * s / math.sqrt(gd.n_obs)
    how = _resolve_collapse(gd, collapse)
    used: dict = {}
    with pm.Model(coords=_coords(gd)) as model:
        _data_containers(gd, how)
        beta_std = None
        if P:
            if penalty == "ridge":
                used[N.BETA_STD] = Prior("Normal", mu=0.0, sigma=penalty_scale)
                beta_std = used[N.BETA_STD].build(N.BETA_STD, dims=N.PREDICTOR)
            elif penalty == "laplace":
                used[N.BETA_STD] = Prior("Laplace", mu=0.0, b=penalty_scale / math.sqrt(2.0))
                beta_std = used[N.BETA_STD].build(N.BETA_STD, dims=N.PREDICTOR)
            elif penalty == "elastic_net":
                beta_std = elastic_net(N.BETA_STD, penalty_scale, l1_ratio, dims=N.PREDICTOR)
            else:
                g = pm.HalfStudentT("hs_global", nu=1, sigma=global_scale)
                lam_local = pm.HalfStudentT("hs_local", nu=1, sigma=1.0, dims=N.PREDICTOR)
                c2 = pm.InverseGamma("hs_slab_sq", alpha=slab_df / 2, beta=slab_df / 2 * slab_scale**2)
                lam_tilde = pt.sqrt(c2 * lam_local**2 / (c2 + g**2 * lam_local**2))
                z = pm.Normal("hs_z", 0.0, 1.0, dims=N.PREDICTOR)
                beta_std = z * g * lam_tilde
        a, b = _intercept_and_beta(gd, pri, width=2.5, used=used, beta_std=beta_std, intercept_at=intercept_at)
        tau_prior = Prior("Exponential", lam=-math.log(0.05) / tau_scale)
        tau = _scale_parameter(N.TAU, pri, tau_prior, used)
        if gd.slopes:
            _slope_part(gd, a, b, pri, used, how, tau=tau, lkj_eta=eta)
        else:
            u = tau if how in INTEGRATED_OUT else _hierarchical_effects(gd, a, tau, centered)
            extra = crossed.factor_effects(gd, pri, used, tau_default=tau_prior, centered=centered,
                                           mean=a if how in INTEGRATED_OUT else None)
            _likelihood(gd, a, b, u, pri, how, used, extra)
    settings = {
        "penalty": penalty, "penalty_scale": penalty_scale, "expected_nonzero": expected_nonzero,
        **({"l1_ratio": l1_ratio} if penalty == "elastic_net" else {}),
        "slab_scale": slab_scale, "slab_df": slab_df, "horseshoe_global_scale": global_scale,
        "tau_scale": tau_scale, "tau_prior": "Exponential, P(tau > tau_scale) = 0.05",
        "priors": serialize(pri), "intercept_at": intercept_at, "centered": centered, "data": gd.spec(),
        **({"lkj_eta": eta} if gd.slopes else {}),
    }
    # the horseshoe's funnel between global and local scales needs small steps (as brms advises)
    fit_defaults = {"target_accept": 0.99} if penalty == "horseshoe" and P else {}
    return _attach(model, "regularized_hierarchical", gd, settings, how, used, penalty=penalty, centered=centered,
                   fit_defaults=fit_defaults, intercept_at=intercept_at, lkj_eta=eta)
