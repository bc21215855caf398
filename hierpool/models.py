"""The three model factories. Each returns a ``pm.Model`` built under the naming contract of
:mod:`hierpool._names`: dims ``group``, ``obs_id``, ``predictor``; variables ``intercept``, ``beta``,
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
parameter name (``"intercept"``, ``"beta"`` on the user's scale, ``"tau"`` or ``"tau_sq"``, ``"sigma"`` or
``"sigma_sq"``); a number fixes the parameter.
"""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pymc as pm
import pytensor.tensor as pt

from . import _names as N
from . import integrated
from ._validate import one_of, positive_finite, positive_int
from .collapse import count_patterns, gaussian_marginal_logp_sizes, gaussian_stats, size_classes
from .data import GroupedData, prepare
from .priors import Prior, normalize_priors, scale_parameter, serialize
from .scale import GroupedStats, is_dask_or_path

__all__ = ["random_intercepts", "ridge_fixed_effects", "regularized_hierarchical", "model_info"]

def model_info(model: pm.Model) -> dict:
    """The hierpool description attached to a model built by a factory (variant, family, settings, data)."""
    info = getattr(model, "hierpool", None)
    if info is None:
        raise TypeError(
            "this pm.Model was not built by a hierpool factory; build it with hp.random_intercepts, "
            "hp.ridge_fixed_effects or hp.regularized_hierarchical."
        )
    return info


def _as_grouped(data, prepare_kwargs: dict) -> GroupedData:
    given = {k: v for k, v in prepare_kwargs.items() if v is not None and not (k == "predictors" and not v)}
    if isinstance(data, (GroupedData, GroupedStats)):
        extra = [k for k in given if not (k == "family" and given[k] == data.family)]
        if extra:
            raise ValueError(
                f"data is already a GroupedData; {extra[0]}= cannot be given again (pass a DataFrame to "
                "use prepare's keywords)."
            )
        return data
    if isinstance(data, pd.DataFrame) or is_dask_or_path(data):
        if "y" not in given or "group" not in given:
            raise ValueError("with a DataFrame, give at least y= and group= (the keywords of hp.prepare).")
        return prepare(data, **{k: v for k, v in prepare_kwargs.items() if v is not None})
    raise TypeError(f"data must be a GroupedData (from hp.prepare) or a pandas DataFrame; got {type(data).__name__}.")


def _coords(gd: GroupedData) -> dict:
    rows = np.arange(gd.n_obs) if isinstance(gd, GroupedData) else np.arange(0)  # GroupedStats keeps no rows
    return {N.GROUP: gd.groups.tolist(), N.OBS: rows, N.PREDICTOR: list(gd.predictors)}


def _allowed_priors(gd: GroupedData, keys: tuple[str, ...]) -> dict[str, str]:
    kinds = {"intercept": "real", "beta": "real", "tau": "positive", "tau_sq": "positive",
             "sigma": "positive", "sigma_sq": "positive"}
    out = {k: kinds[k] for k in keys}
    if gd.family != "gaussian":
        out.pop("sigma", None)
        out.pop("sigma_sq", None)
    if gd.n_predictors == 0:
        out.pop("beta", None)
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
    if isinstance(gd, GroupedStats) or how == "gaussian":
        return
    pm.Data(N.GROUP_IDX, gd.group_idx, dims=N.OBS)
    if gd.n_predictors:
        pm.Data(N.X, gd.X, dims=(N.OBS, N.PREDICTOR))
    if gd.trials is not None:
        pm.Data(N.TRIALS, gd.trials, dims=N.OBS)
    if gd.exposure is not None:
        pm.Data(N.EXPOSURE, gd.exposure, dims=N.OBS)


def _intercept_and_beta(gd: GroupedData, priors: dict, width: float, beta_std=None):
    """Build the centered intercept and the coefficients; return (intercept_c, beta_std or None).

    ``beta_std`` multiplies the standardized predictors ``(x - mean) / sd``; ``beta = beta_std / sd``.
    """
    s = gd.y_scale
    icpt = priors.get("intercept", Prior("Normal", mu=gd.y_location, sigma=width * s))
    if isinstance(icpt, Prior):
        intercept_c = icpt.build("intercept_centered")
    else:
        intercept_c = pm.Deterministic("intercept_centered", pt.as_tensor_variable(float(icpt)))
    if gd.n_predictors == 0:
        pm.Deterministic(N.INTERCEPT, intercept_c)
        return intercept_c, None
    if beta_std is not None:  # the penalty of the regularized variant
        beta = pm.Deterministic(N.BETA, beta_std / gd.x_scale, dims=N.PREDICTOR)
    elif "beta" in priors:  # user's prior, on the user's scale
        beta = priors["beta"].build(N.BETA, dims=N.PREDICTOR)
        beta_std = beta * gd.x_scale
    else:
        beta_std = pm.Normal("beta_std", 0.0, width * s, dims=N.PREDICTOR)
        beta = pm.Deterministic(N.BETA, beta_std / gd.x_scale, dims=N.PREDICTOR)
    pm.Deterministic(N.INTERCEPT, intercept_c - pt.dot(beta, gd.x_center))
    return intercept_c, beta_std


def _hierarchical_effects(tau, centered: bool):
    if centered:
        return pm.Normal(N.GROUP_EFFECT, 0.0, tau, dims=N.GROUP)
    z = pm.Normal("group_effect_z", 0.0, 1.0, dims=N.GROUP)
    return pm.Deterministic(N.GROUP_EFFECT, z * tau, dims=N.GROUP)


_COLLAPSE_CHOICES = ("auto", True, False, "integrated")


def _group_totals(gd) -> tuple[np.ndarray, np.ndarray]:
    """Per-group successes and trials of a binomial-type fit without predictors (one cell per group)."""
    cp = gd.cells if isinstance(gd, GroupedStats) else count_patterns(gd)
    J = gd.n_groups
    return (np.bincount(cp.group_idx, weights=cp.y, minlength=J),
            np.bincount(cp.group_idx, weights=cp.trials, minlength=J))


def _can_integrate(gd) -> bool:
    """Binomial-type data without predictors whose patterns are few enough (hierpool.integrated)."""
    if gd.family not in ("bernoulli", "binomial") or gd.n_predictors:
        return False
    return integrated.n_patterns(_group_totals(gd)[1]) <= integrated.MAX_PATTERNS


def integrated_patterns(gd) -> integrated.Patterns:
    """The (successes, trials) patterns of ``gd``'s groups, computed once per data object."""
    cached = getattr(gd, "_integrated_patterns", None)
    if cached is None:
        cached = integrated.patterns(*_group_totals(gd))
        object.__setattr__(gd, "_integrated_patterns", cached)  # frozen dataclass: a private memo
    return cached


def _resolve_collapse(gd: GroupedData, collapse) -> str | None:
    """'gaussian' or 'integrated' (group effects integrated out), 'counts' (rows pooled into cells) or None."""
    if not any(collapse is c if isinstance(c, bool) else collapse == c for c in _COLLAPSE_CHOICES):
        raise ValueError(f"collapse={collapse!r} is not valid; valid choices: 'auto', True, False, 'integrated'.")
    if collapse == "integrated" and not isinstance(collapse, bool):
        if not _can_integrate(gd):
            raise ValueError(
                "collapse='integrated' needs a bernoulli or binomial response without predictors and at most "
                f"{integrated.MAX_PATTERNS} (successes, trials) patterns; this data has family={gd.family!r} and "
                f"{gd.n_predictors} predictor(s). Use collapse='auto', True or False.")
        return "integrated"
    if isinstance(gd, GroupedStats):
        if collapse is False:
            raise ValueError("collapse=False needs the rows; data reduced to sufficient statistics (GroupedStats) "
                             "is always fitted with the exact collapsed likelihood.")
        if gd.family == "gaussian":
            return "gaussian"
        return "integrated" if collapse == "auto" and not isinstance(collapse, bool) and _can_integrate(gd) else "counts"
    if collapse is False:
        return None
    if gd.family == "gaussian":
        return "gaussian"
    if collapse is True:
        return "counts"
    if _can_integrate(gd):
        return "integrated"
    key = np.column_stack([gd.group_idx, gd.X]) if gd.n_predictors else gd.group_idx[:, None]
    cells = np.unique(key, axis=0).shape[0]
    return "counts" if cells <= 0.8 * gd.n_obs else None


def _sigma(gd: GroupedData, priors: dict):
    return scale_parameter(N.SIGMA, priors, Prior("HalfStudentT", nu=3, sigma=gd.y_scale))


def _likelihood(gd: GroupedData, intercept_c, beta_std, group_effect, priors: dict, collapse: str | None):
    """The observed part. ``group_effect`` is a tensor of group effects, or for the collapsed gaussian
    and integrated models the group-level SD (tau, or 1/sqrt(lam)) that the integrated-out effects have."""
    stats_only = isinstance(gd, GroupedStats)
    if collapse == "gaussian":
        sc = size_classes(gd.gaussian if stats_only else gaussian_stats(gd))
        data = {
            "sizes": sc.sizes, "counts": sc.counts, "sxx_w": sc.sxx_w, "n_obs": sc.n_obs, "n_groups": sc.n_groups,
            # response-dependent statistics are data containers: refit new responses without recompiling
            "moments": pm.Data("size_moments", sc.moments),
            "center": pm.Data("ybar_center", np.asarray(sc.center)),
            "syy_w": pm.Data("syy_w", np.asarray(sc.syy_w)),
            "sxy_w": pm.Data("sxy_w", sc.sxy_w, dims=N.PREDICTOR) if gd.n_predictors else sc.sxy_w,
        }
        sigma = _sigma(gd, priors)
        return pm.Potential("y_marginal", gaussian_marginal_logp_sizes(data, intercept_c, beta_std, group_effect, sigma))
    if collapse == "integrated":
        pat = integrated_patterns(gd)
        counts = pm.Data("pattern_counts", pat.counts)  # the response enters only here (refits: data_for)
        return pm.Potential("y_marginal", pt.sum(counts * integrated.marginal_logp(pat.k, pat.n, intercept_c,
                                                                                   group_effect)))
    if collapse == "counts":
        cp = gd.cells if stats_only else count_patterns(gd)
        Xs, gidx, yv, trials = cp.Xs, cp.group_idx, cp.y, cp.trials
        offset = None if cp.exposure is None else np.log(cp.exposure)
        dims = "cell"
        pm.Model.get_context().add_coord("cell", np.arange(cp.y.shape[0]))
    else:
        Xs = gd.Xs
        gidx, yv, trials, offset, dims = gd.group_idx, gd.y, gd.trials, gd.log_offset, N.OBS
    # The response is a data container ("y_observed") so that a compiled model can be refitted to new
    # responses of the same design without recompiling (simulation-based calibration uses this).
    y_obs = pm.Data("y_observed", yv, dims=dims)
    eta = intercept_c + group_effect[gidx]
    if beta_std is not None:
        eta = eta + pt.dot(pt.as_tensor_variable(Xs), beta_std)
    if offset is not None:
        eta = eta + offset
    if gd.family == "gaussian":
        return pm.Normal(N.Y, mu=eta, sigma=_sigma(gd, priors), observed=y_obs, dims=dims)
    if gd.family == "bernoulli" and collapse is None:
        return pm.Bernoulli(N.Y, logit_p=eta, observed=y_obs, dims=dims)
    if gd.family in ("bernoulli", "binomial"):
        return pm.Binomial(N.Y, n=trials, logit_p=eta, observed=y_obs, dims=dims)
    return pm.Poisson(N.Y, mu=pt.exp(eta), observed=y_obs, dims=dims)


def _attach(model: pm.Model, variant: str, gd: GroupedData, settings: dict, collapse: str | None) -> pm.Model:
    settings["collapse"] = collapse
    model.hierpool = {"variant": variant, "family": gd.family, "settings": settings, "data": gd,
                      "collapse": collapse}
    return model


def _check_bool(name, value):
    if not isinstance(value, bool):
        raise TypeError(f"{name} must be True or False; got {value!r}.")


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
    priors: dict | None = None,
    centered: bool = False,
    collapse: bool | str = "auto",
) -> pm.Model:
    """Hierarchical random intercepts: partial pooling with the shrinkage chosen by the data through tau.

    ``eta = intercept + X beta + group_effect[group]``, ``group_effect_j ~ Normal(0, tau)``, non-centered
    by default (``group_effect = tau * z``, ``z ~ Normal(0, 1)``), which samples well when groups are small.

    Parameters
    ----------
    data : GroupedData or pandas.DataFrame
        Prepared data, or a frame together with the keywords of :func:`hierpool.prepare`.
    y, group, predictors, family, trials, exposure
        As in :func:`hierpool.prepare` (only with a DataFrame).
    priors : dict, optional
        Overrides by parameter name: ``"intercept"`` (at the predictors' means), ``"beta"`` (user's
        scale), ``"tau"`` or ``"tau_sq"``, ``"sigma"`` or ``"sigma_sq"`` (gaussian). Values are
        :class:`hierpool.Prior` objects, dicts like ``{"dist": "HalfNormal", "sigma": 1}``, or numbers
        that fix the parameter.
    centered : bool
        Sample ``group_effect ~ Normal(0, tau)`` directly instead of non-centered.
    collapse : {"auto", True, False, "integrated"}
        Use an exact collapsed likelihood (:mod:`hierpool.collapse`). gaussian: the group effects are
        integrated out (the sampler sees intercept, beta, tau, sigma; ``hp.fit`` draws ``group_effect``
        from its exact conditional afterwards), always with "auto". bernoulli/binomial WITHOUT
        predictors: "auto" (or "integrated") integrates the group effects out by adaptive Gauss-Hermite
        quadrature over the (successes, trials) patterns (:mod:`hierpool.integrated`; the sampler sees
        intercept and tau) and draws them exactly afterwards. Other counts: rows sharing a group and a
        predictor pattern are pooled into one binomial/Poisson cell (``True``, or "auto" when that removes
        at least 20% of the rows). The posterior is the same either way; ``False`` forces the row-level
        model.

    Defaults (``s = sd(y)`` gaussian, 1 otherwise; ``m`` = link(overall mean)): intercept at the predictor
    means ~ Normal(m, 2.5 s); beta per standard deviation of its predictor ~ Normal(0, 2.5 s);
    tau ~ HalfStudentT(3, s); sigma ~ HalfStudentT(3, s).

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
                                exposure=exposure))
    _check_bool("centered", centered)
    pri = normalize_priors(priors, _allowed_priors(gd, ("intercept", "beta", "tau", "tau_sq", "sigma",
                                                         "sigma_sq")), "random_intercepts")
    how = _resolve_collapse(gd, collapse)
    with pm.Model(coords=_coords(gd)) as model:
        _data_containers(gd, how)
        a, b = _intercept_and_beta(gd, pri, width=2.5)
        tau = scale_parameter(N.TAU, pri, Prior("HalfStudentT", nu=3, sigma=gd.y_scale))
        u = tau if how in ("gaussian", "integrated") else _hierarchical_effects(tau, centered)
        _likelihood(gd, a, b, u, pri, how)
    settings = {"priors": serialize(pri), "centered": centered, "data": gd.spec()}
    return _attach(model, "random_intercepts", gd, settings, how)


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
    priors: dict | None = None,
    collapse: bool | str = "auto",
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

    Parameters
    ----------
    data : GroupedData or pandas.DataFrame
    lam : float
        Prior precision of each group effect, > 0 (on the linear-predictor scale: response units for
        gaussian, log-odds or log-rate otherwise).
    priors : dict, optional
        Overrides for ``"intercept"``, ``"beta"``, ``"sigma"``/``"sigma_sq"`` (see :func:`random_intercepts`).
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
                                exposure=exposure))
    lam = positive_finite("lam", lam)
    pri = normalize_priors(priors, _allowed_priors(gd, ("intercept", "beta", "sigma", "sigma_sq")),
                           "ridge_fixed_effects")
    width = 100.0 if gd.family == "gaussian" else 10.0
    how = _resolve_collapse(gd, collapse)
    with pm.Model(coords=_coords(gd)) as model:
        _data_containers(gd, how)
        a, b = _intercept_and_beta(gd, pri, width=width)
        if how in ("gaussian", "integrated"):
            u = pt.as_tensor_variable(1.0 / math.sqrt(lam))
        else:
            u = pm.Normal(N.GROUP_EFFECT, 0.0, sigma=1.0 / math.sqrt(lam), dims=N.GROUP)
        _likelihood(gd, a, b, u, pri, how)
    settings = {"lam": lam, "priors": serialize(pri), "fixed_effect_prior_sd": width * gd.y_scale,
                "data": gd.spec()}
    return _attach(model, "ridge_fixed_effects", gd, settings, how)


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
    penalty_scale: float | None = None,
    expected_nonzero: int | None = None,
    slab_scale: float | None = None,
    slab_df: float = 4.0,
    tau_scale: float | None = None,
    priors: dict | None = None,
    centered: bool = False,
    collapse: bool | str = "auto",
) -> pm.Model:
    """Random intercepts with a regularizing prior on the predictors and a shrinking prior on tau.

    The hierarchy and the penalty are orthogonal: the group effects are partially pooled as in
    :func:`random_intercepts`, while ``beta`` (on standardized predictors, ``beta_std = beta * sd(x)``)
    gets a sparsity or shrinkage prior, and tau a prior that pulls it toward zero.

    Penalties on ``beta_std`` (``s = sd(y)`` for gaussian, 1 otherwise):

    - ``"ridge"``: ``Normal(0, penalty_scale)``, default ``penalty_scale = s``.
    - ``"laplace"`` (Bayesian lasso): ``Laplace(0, b = penalty_scale / sqrt(2))``: the same prior sd as
      the ridge, more mass near zero and heavier tails.
    - ``"horseshoe"``: the regularized horseshoe of Piironen & Vehtari (2017), non-centered:
      ``beta_std_k = z_k * g * lambda~_k``, ``lambda_k ~ HalfCauchy(1)``, global
      ``g ~ HalfCauchy(g0)`` with ``g0 = p0 / (P - p0) * s / sqrt(N)`` (``p0 = expected_nonzero``, default
      ``max(1, P // 3)``, and ``P - p0`` at least 1), slab ``c^2 ~ InverseGamma(slab_df/2,
      slab_df/2 * slab_scale^2)`` with ``slab_scale = 2 s`` by default, and
      ``lambda~_k^2 = c^2 lambda_k^2 / (c^2 + g^2 lambda_k^2)``.

    ``hp.fit`` samples a horseshoe model with ``target_accept=0.99`` unless told otherwise: the funnel
    between the global and local scales diverges at the default 0.8 (on radon: 78 divergences at 0.8,
    4 at 0.95, none at 0.99).

    tau gets a penalized-complexity prior (Simpson et al. 2017): ``tau ~ Exponential(rate)`` with
    ``P(tau > tau_scale) = 0.05``, i.e. ``rate = -log(0.05) / tau_scale``; default ``tau_scale = s / 2``.
    Its density is largest at tau = 0, so it shrinks the random-effects model toward complete pooling
    unless the data insist. Override with ``priors={"tau": ...}``.

    Examples
    --------
    >>> import hierpool as hp
    >>> df = hp.datasets.simulate_gaussian(n_groups=20, n_predictors=3, seed=1)
    >>> model = hp.regularized_hierarchical(df, penalty="laplace", y="y", group="group",
    ...                                     predictors=["x1", "x2", "x3"])
    >>> model.hierpool["settings"]["penalty"]
    'laplace'
    """
    gd = _as_grouped(data, dict(y=y, group=group, predictors=predictors, family=family, trials=trials,
                                exposure=exposure))
    one_of("penalty", penalty, N.PENALTIES)
    _check_bool("centered", centered)
    s = gd.y_scale
    penalty_scale = s if penalty_scale is None else positive_finite("penalty_scale", penalty_scale)
    slab_scale = 2.0 * s if slab_scale is None else positive_finite("slab_scale", slab_scale)
    slab_df = positive_finite("slab_df", slab_df)
    tau_scale = 0.5 * s if tau_scale is None else positive_finite("tau_scale", tau_scale)
    P = gd.n_predictors
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
    with pm.Model(coords=_coords(gd)) as model:
        _data_containers(gd, how)
        beta_std = None
        if P:
            if penalty == "ridge":
                beta_std = pm.Normal("beta_std", 0.0, penalty_scale, dims=N.PREDICTOR)
            elif penalty == "laplace":
                beta_std = pm.Laplace("beta_std", 0.0, penalty_scale / math.sqrt(2.0), dims=N.PREDICTOR)
            else:
                g = pm.HalfStudentT("hs_global", nu=1, sigma=global_scale)
                lam_local = pm.HalfStudentT("hs_local", nu=1, sigma=1.0, dims=N.PREDICTOR)
                c2 = pm.InverseGamma("hs_slab_sq", alpha=slab_df / 2, beta=slab_df / 2 * slab_scale**2)
                lam_tilde = pt.sqrt(c2 * lam_local**2 / (c2 + g**2 * lam_local**2))
                z = pm.Normal("hs_z", 0.0, 1.0, dims=N.PREDICTOR)
                beta_std = z * g * lam_tilde
        a, b = _intercept_and_beta(gd, pri, width=2.5, beta_std=beta_std)
        tau = scale_parameter(N.TAU, pri, Prior("Exponential", lam=-math.log(0.05) / tau_scale))
        u = tau if how in ("gaussian", "integrated") else _hierarchical_effects(tau, centered)
        _likelihood(gd, a, b, u, pri, how)
    settings = {
        "penalty": penalty, "penalty_scale": penalty_scale, "expected_nonzero": expected_nonzero,
        "slab_scale": slab_scale, "slab_df": slab_df, "horseshoe_global_scale": global_scale,
        "tau_scale": tau_scale, "tau_prior": "Exponential, P(tau > tau_scale) = 0.05",
        "priors": serialize(pri), "centered": centered, "data": gd.spec(),
    }
    model = _attach(model, "regularized_hierarchical", gd, settings, how)
    if penalty == "horseshoe" and P:
        # the horseshoe's funnel between global and local scales needs small steps (as brms advises)
        model.hierpool["fit_defaults"] = {"target_accept": 0.99}
    return model
