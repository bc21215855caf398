"""Shrinkage per group, the ridge penalty a hierarchical fit implies, and the ridge path between them.

Three views of one fact: a random-intercepts model moves each group's raw mean toward the overall mean,
by the weight ``rho_j = tau^2 / (tau^2 + sigma^2 / n_j)`` in the Gaussian case, and a ridge on one-hot
group dummies with precision ``lam = 1 / tau^2`` moves it by exactly the same amount (Henderson's
mixed-model equations).

- :func:`shrinkage`: per group, the raw mean, the pooled estimate with its interval, how far it moved
  (``pooling``) and how far theory says it should (``rho``).
- :func:`implied_ridge`: the posterior of ``lam = 1/tau^2`` in hierpool's units and in scikit-learn's
  and glmnet's.
- :func:`ridge_path`: each group's estimate as the ridge penalty runs from 0 (raw means) to infinity
  (the overall mean), with the implied ``lam`` marked.

Everything is read from a fit's DataTree through :mod:`hierpool.analysis.fitview` (any variant, fresh or
loaded). Per-group summaries run over chunks of groups, so memory stays bounded by
:func:`hierpool.core.config.chunk_values` floats beyond the posterior itself.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import xarray as xr

from hierpool.analysis.fitview import FitView, as_fit, select_factor
from hierpool.core import config
from hierpool.core import kernels as K
from hierpool.core import names as N
from hierpool.core.quadrature import group_modes
from hierpool.core.validate import positive_finite, positive_int, probability
from hierpool.data.stats import unique_sizes
from hierpool.inference.predictive import design_from_constant, factor_names

__all__ = ["shrinkage", "implied_ridge", "ridge_path"]

#: Largest number of values (samples x groups) materialized at once by the per-group summaries.

#: How far outside [0, 1] a pooling fraction may fall by Monte Carlo error before it is reported as NaN.
POOLING_SLACK = 0.05


# ------------------------------------------------------------------------------------------------------
# helpers shared with hierpool.analysis.ranking
def _n_samples(view: FitView) -> int:
    return int(view.post.sizes["chain"] * view.post.sizes["draw"])


def _flat(da: xr.DataArray) -> np.ndarray:
    """Values of a (chain, draw[, group]) DataArray as a (samples[, groups]) numpy array."""
    dims = [d for d in (*N.SAMPLE_DIMS, N.GROUP) if d in da.dims]
    vals = np.asarray(da.transpose(*dims).values, dtype=float)
    n = da.sizes["chain"] * da.sizes["draw"]
    return vals.reshape(n, -1) if N.GROUP in da.dims else vals.reshape(n)


def _tau_sq(view: FitView, every: bool = False) -> np.ndarray:
    """Draws of tau^2 (flattened samples); for a ridge fit the constant 1/lam. ``every``: every stored
    draw (:attr:`FitView.population_post`), not only those kept with the group effects of a thinned fit."""
    if view.hierarchical:
        return _flat((view.population_post if every else view.post)[N.TAU]) ** 2
    if view.lam is None:
        raise ValueError(
            "this fit has neither a 'tau' in its posterior nor settings['lam']; hierpool cannot tell how "
            "strongly its group effects are shrunk."
        )
    return np.full(_n_samples(view), 1.0 / float(view.lam))


def _sigma(view: FitView, every: bool = False) -> np.ndarray:
    """Draws of sigma (flattened samples); ``every`` as in :func:`_tau_sq` (the same draws, in order)."""
    if N.SIGMA not in view.post:
        raise ValueError("a gaussian fit needs 'sigma' (the residual SD) in its posterior; none was found.")
    return _flat((view.population_post if every else view.post)[N.SIGMA])


def _within_variance(view: FitView, mean_response: np.ndarray, group_slice: slice) -> np.ndarray:
    """Variance of a group's information about its own effect, on the link scale, per sample and group
    (:meth:`hierpool.core.families.Family.within_variance`).

    gaussian: sigma^2 / n_j. bernoulli/binomial: 1 / (D_j p (1 - p)), the inverse Fisher information of the
    logit of a group with D_j trials (rows for bernoulli, summed trials for binomial) at its fitted rate p.
    poisson: 1 / (D_j mu), D_j the rows or summed exposure and mu the fitted rate per unit.
    """
    fam = view.fam
    if view.summary_level:  # the known variance se_j^2 of each group's one estimate
        return np.broadcast_to(view.se_by_group()[group_slice][None, :] ** 2, np.shape(mean_response))
    sigma = _sigma(view)[:, None] if fam.has_sigma else None
    return fam.within_variance(view.const[N.GROUP_DENOM].values[group_slice].astype(float)[None, :],
                               mean_response, sigma=sigma,
                               n=view.group_n.values[group_slice].astype(float)[None, :])


def _quantiles(vals: np.ndarray, ci_prob: float) -> tuple[np.ndarray, np.ndarray]:
    """Equal-tailed interval of each column: ``np.quantile(vals, q, axis=0)`` (compiled, same numbers)."""
    lo, hi = K.column_quantiles(vals, [((1.0 - ci_prob) / 2.0, "linear"), ((1.0 + ci_prob) / 2.0, "linear")])
    return lo, hi


def _gaussian_rho(view: FitView, tau_sq: np.ndarray) -> np.ndarray:
    """Posterior mean of ``tau^2 / (tau^2 + sigma^2 / n_j)``: one value per distinct group size
    (summary-level data: ``tau^2 / (tau^2 + se_j^2)`` per group)."""
    if view.summary_level:
        se2 = view.se_by_group()[None, :] ** 2
        return np.mean(tau_sq[:, None] / (tau_sq[:, None] + se2), axis=0)
    sizes, inverse, _ = unique_sizes(view.group_n.values)
    sizes = sizes.astype(float)
    v = view.fam.within_variance(None, None, sigma=_sigma(view)[:, None], n=sizes[None, :])
    rho_k = np.mean(tau_sq[:, None] / (tau_sq[:, None] + v), axis=0)
    return rho_k[inverse.reshape(-1)]


# ------------------------------------------------------------------------------------------------------
def shrinkage(dt: xr.DataTree, ci_prob: float = 0.9, *, factor: str | None = None) -> pd.DataFrame:
    """How far each group's estimate moved from its raw mean toward the overall mean, and why.

    Random-slopes fits (``(1 + x | g)``): uses the intercept deviations ``group_effect`` (and ``tau``)
    only; the slope deviations ``group_slope`` are not included (at a group's x, see :func:`hierpool.predict`).

    Parameters
    ----------
    dt : xarray.DataTree
        A fit from :func:`hierpool.fit` (any variant and family) or :func:`hierpool.load`.
    ci_prob : float
        Probability of the equal-tailed interval, in (0, 1) (0.9, not 90).
    factor : str, optional
        A fit with several grouping factors (crossed or nested): the factor to analyse, by name (e.g.
        ``"hospital"``, ``"hospital:ward"``); default the first. The other factors' effects stay in each
        training row's linear predictor; the chosen factor's group-level estimates are at the other
        factors' average level (effect 0). See :func:`hierpool.analysis.fitview.select_factor`.

    Returns
    -------
    pandas.DataFrame
        One row per group, in the fit's group order, with columns

        - ``group``, ``n`` (rows of the group);
        - ``raw_mean``: the group's observed mean on the natural scale (a rate for binomial, a rate per
          unit of exposure for poisson with exposure);
        - ``estimate``, ``std_error``, ``conf_low``, ``conf_high``: posterior mean, sd and equal-tailed
          ``ci_prob`` interval of the group's mean response at the average predictor values, natural
          scale;
        - ``pooling``: the fraction of the way from the raw mean to the overall mean that the estimate
          moved, ``(raw_mean - estimate) / (raw_mean - overall)``, with ``overall`` the posterior mean of
          the mean response of an average group (group effect 0). 0 = no pooling, 1 = complete pooling.
          It is reported only where it is such a fraction: NaN where ``raw_mean == overall`` or where the
          ratio falls outside [0, 1] by more than its Monte Carlo error (``3 sd / sqrt(draws) /
          |raw_mean - overall|``, at most 0.05): the estimate overshot or moved away, as when predictors
          make the move include their adjustment of an unadjusted raw mean, or a raw mean close to the
          overall mean makes the ratio explode. ``attrs["pooling_undefined"]`` counts those rows;
          ``rho`` below is defined for every group;
        - ``rho``: the theoretical weight on the group's own data, averaged over the posterior draws:
          ``tau^2 / (tau^2 + v_j)`` with ``v_j`` the variance of the group's information about its effect
          on the link scale: gaussian ``sigma^2 / n_j`` (exact: then ``pooling`` estimates ``1 - rho``;
          summary-level data, ``hp.prepare(..., se=)``: the known ``se_j^2``, so ``rho_j = tau^2 /
          (tau^2 + se_j^2)``, and ``n`` is 1 for every group);
          bernoulli/binomial ``1 / (D_j p_j (1 - p_j))`` (the inverse Fisher information of the group's
          logit, with ``D_j`` its rows or summed trials and ``p_j`` its fitted rate in that draw);
          poisson ``1 / (D_j mu_j)`` (``D_j`` rows or summed exposure, ``mu_j`` its fitted rate per unit).
          The non-gaussian ``rho`` is the normal (Laplace) approximation to the weight, on the link
          scale, while ``pooling`` is measured on the natural scale, so the two agree only roughly. For a
          ridge fit (no tau) ``tau^2 = 1 / lam`` from the fit's settings.

        ``attrs`` hold ``ci_prob``, ``overall`` (the overall mean used by ``pooling``), ``family``,
        ``variant`` and the posterior medians ``tau`` (``1/sqrt(lam)`` for a ridge fit) and ``sigma``
        (gaussian with rows; None for summary-level data, whose se differs per group), which :func:`hierpool.plots.shrinkage_plot` uses for the theoretical curve.

    Notes
    -----
    The raw mean is NOT adjusted for predictors, while the estimate is the group's mean response at the
    average predictor values. When the predictors' distribution differs between groups, part of the move
    from raw mean to estimate is the predictors' adjustment, not pooling: ``pooling`` and ``rho`` then
    compare like with like only approximately. Without predictors (or with predictors balanced across
    groups) they are directly comparable.

    Memory: the summaries are computed over chunks of groups (at most :func:`hierpool.core.config.chunk_values` values at a
    time), so the only array of size draws x groups is the posterior itself (which may be lazy).

    Examples
    --------
    >>> import hierpool as hp
    >>> df = hp.datasets.simulate("gaussian", n_groups=20, n_predictors=0, seed=1)
    >>> dt = hp.fit(hp.random_intercepts(df, y="y", group="group"), draws=300, tune=300,
    ...             random_seed=1, progressbar=False)  # doctest: +SKIP
    >>> tab = hp.shrinkage(dt)                        # doctest: +SKIP
    >>> tab[["group", "n", "raw_mean", "estimate", "pooling", "rho"]].head()  # doctest: +SKIP
    """
    ci_prob = probability("ci_prob", ci_prob)
    dt = select_factor(dt, factor)
    view = as_fit(dt)
    S, J = _n_samples(view), view.n_groups
    fam = view.fam
    iac = _flat(view.intercept_at_center())  # (S,)
    overall = float(np.mean(fam.inverse_link(iac)))
    tau_sq = _tau_sq(view)
    ge = view.post[N.GROUP_EFFECT]
    cols = {k: np.empty(J) for k in ("estimate", "std_error", "conf_low", "conf_high", "rho")}
    # draws in memory: one compiled pass over them in place, no chunk copies (gaussian: rho from n_j only;
    # count families: rho in the same pass, from each draw's mean response)
    mat = view.group_effect_matrix()
    if mat is not None:
        specs = [((1.0 - ci_prob) / 2.0, "linear"), ((1.0 + ci_prob) / 2.0, "linear")]
        if fam.has_sigma:
            mean, var, (lo, hi) = K.column_summaries(mat, iac, view.family, specs)
            cols["rho"] = _gaussian_rho(view, tau_sq)
        else:
            denom = view.const[N.GROUP_DENOM].values.astype(float)
            mean, var, (lo, hi), cols["rho"] = K.column_summaries(mat, iac, view.family, specs,
                                                                  rho_of=(tau_sq, denom))
        cols.update(estimate=mean, std_error=np.sqrt(var), conf_low=lo, conf_high=hi)
    for sl in (() if mat is not None else config.slices(J, S)):
        mu = fam.inverse_link(iac[:, None] + _flat(ge.isel({N.GROUP: sl})))
        cols["estimate"][sl] = mu.mean(axis=0)
        cols["std_error"][sl] = mu.std(axis=0, ddof=1) if S > 1 else 0.0
        cols["conf_low"][sl], cols["conf_high"][sl] = _quantiles(mu, ci_prob)
        v = _within_variance(view, mu, sl)
        cols["rho"][sl] = np.mean(tau_sq[:, None] / (tau_sq[:, None] + v), axis=0)
    raw = view.raw_mean.values.astype(float)
    diff = raw - overall
    with np.errstate(divide="ignore", invalid="ignore"):
        pooling = (raw - cols["estimate"]) / diff
    # a fraction only where it is one: outside [0, 1] by more than its Monte Carlo error (3 MC errors of the
    # estimate over |raw - overall|, at most POOLING_SLACK) the row is NaN, counted in
    # attrs["pooling_undefined"]: the estimate overshot or moved away (with predictors the raw mean is not
    # adjusted), or a denominator near 0 blew the ratio up. So is raw == overall.
    with np.errstate(divide="ignore", invalid="ignore"):
        slack = np.minimum(3.0 * cols["std_error"] / np.sqrt(S) / np.abs(diff), POOLING_SLACK)
    undefined = ~((pooling >= -slack) & (pooling <= 1.0 + slack))
    pooling = np.where(undefined, np.nan, pooling)
    out = pd.DataFrame({  # every column a fresh array, not copied again (copy=False)
        "group": np.array(view.groups.to_numpy()),
        "n": view.group_n.values.astype(np.int64),
        "raw_mean": raw,
        "estimate": cols["estimate"],
        "std_error": cols["std_error"],
        "conf_low": cols["conf_low"],
        "conf_high": cols["conf_high"],
        "pooling": pooling,
        "rho": cols["rho"],
    }, copy=False)
    out.attrs.update(ci_prob=ci_prob, overall=overall, family=view.family, variant=view.variant,
                     pooling_undefined=int(undefined.sum()),
                     tau=float(np.median(np.sqrt(tau_sq))),
                     sigma=float(np.median(_sigma(view))) if fam.has_sigma and not view.summary_level else None)
    return out


# ------------------------------------------------------------------------------------------------------
def _n_rows_for_software(view: FitView) -> tuple[float, str]:
    """N of the glmnet/scikit-learn objectives: rows, or for binomial the trials (one row per trial)."""
    if view.fam.uses_trials:
        trials = view.const[N.TRIALS] if N.TRIALS in view.const else view.const[N.GROUP_DENOM]
        return float(trials.values.sum()), "N = total trials (one row per trial)"
    if N.OBS in view.const.sizes:
        return float(view.const.sizes[N.OBS]), "N = rows"
    return float(view.group_n.values.sum()), "N = rows"  # a fit of sufficient statistics keeps no rows


def implied_ridge(dt: xr.DataTree, ci_prob: float = 0.9, *, factor: str | None = None) -> pd.DataFrame:
    """The ridge penalty a hierarchical fit implies: the posterior of ``lam = 1/tau^2`` in several units.

    Random-slopes fits (``(1 + x | g)``): uses the intercept deviations ``group_effect`` (and ``tau``)
    only; the slope deviations ``group_slope`` are not included (at a group's x, see :func:`hierpool.predict`).

    A ridge on one-hot group dummies (intercept and predictors unpenalized) with penalty ``lam`` gives
    the same group estimates as the random-intercepts model with ``tau = 1/sqrt(lam)`` (exactly for
    gaussian, at the mode for other families). This function turns the posterior of tau (and sigma) into
    that penalty in the units of each tool:

    ======================  ========================================  ==================================
    units                   gaussian                                  bernoulli / binomial / poisson
    ======================  ========================================  ==================================
    ``lam``                 ``1 / tau^2`` (hierpool: the prior        ``1 / tau^2``
                            precision of a group effect,
                            ``hp.ridge_fixed_effects(lam=)``)
    ``alpha_sklearn``       ``sigma^2 / tau^2``: ``Ridge(alpha=)``    logit: ``1 / tau^2``, the penalty on
                            on the residual sum of squares            the summed log-loss;
                                                                      poisson: ``1 / (N tau^2)``,
                                                                      ``PoissonRegressor(alpha=)``
                                                                      (it averages the deviance)
    ``C_sklearn``           --                                        logit only: ``tau^2``,
                                                                      ``LogisticRegression(C=)``
    ``lambda_glmnet``       ``s_y sigma^2 / (N tau^2)`` (glmnet,      ``1 / (N tau^2)`` (glmnet,
                            ``alpha=0, standardize=FALSE``; ``s_y``   ``alpha=0``)
                            the 1/N sd of y, which glmnet divides
                            y by)
    ======================  ========================================  ==================================

    ``N`` is the number of rows (for binomial, the total number of trials: the software formulas are for
    the data expanded to one 0/1 row per trial). Summary-level data (``hp.prepare(..., se=)``) has no
    sigma: the ridge is weighted, ``sum_j (y_j - a - u_j)^2 / se_j^2 + alpha sum_j u_j^2``, so the table
    gives ``lam`` and ``alpha_sklearn = 1 / tau^2`` (``Ridge(alpha=).fit(X, y, sample_weight=1 / se**2)``)
    only. In every tool the group columns are one-hot with no
    reference level, and the intercept and predictors carry no penalty (glmnet: ``penalty.factor = 0``).

    Parameters
    ----------
    dt : xarray.DataTree
        A hierarchical fit (``random_intercepts`` or ``regularized_hierarchical``).
    ci_prob : float
        Probability of the equal-tailed interval, in (0, 1).
    factor : str, optional
        A fit with several grouping factors (crossed or nested): the factor to analyse, by name (e.g.
        ``"hospital"``, ``"hospital:ward"``); default the first. The other factors' effects stay in each
        training row's linear predictor; the chosen factor's group-level estimates are at the other
        factors' average level (effect 0). See :func:`hierpool.analysis.fitview.select_factor`.

    Returns
    -------
    pandas.DataFrame
        One row per unit: ``units``, ``estimate`` (posterior median: the formulas are monotone, so
        the medians map into each other, e.g. the median of ``C_sklearn`` is ``1 /`` the median of
        ``lam``, up to interpolation between the two middle draws), ``mean``,
        ``conf_low``, ``conf_high``, ``formula``. ``attrs["ci_prob"]``.

    Raises
    ------
    ValueError
        For a ridge fit: its ``lam`` is fixed by the user, there is nothing to imply.

    Examples
    --------
    >>> tab = hp.implied_ridge(dt)                          # doctest: +SKIP
    >>> tab.set_index("units").loc["alpha_sklearn", "estimate"]   # doctest: +SKIP
    """
    ci_prob = probability("ci_prob", ci_prob)
    dt = select_factor(dt, factor)
    view = as_fit(dt)
    if not view.hierarchical:
        raise ValueError(
            f"dt is a {view.variant} fit with a fixed lam={view.lam!r} chosen by the user (no tau in its "
            "posterior): there is no ridge penalty to imply. implied_ridge needs a hierarchical fit "
            "(random_intercepts or regularized_hierarchical)."
        )
    tau_sq = _tau_sq(view, every=True)  # every draw: no group effects needed (a thinned fit keeps them all)
    with np.errstate(divide="ignore"):
        lam = 1.0 / tau_sq
    n_rows, n_note = _n_rows_for_software(view)
    sig2, s_y = None, np.nan
    if view.fam.has_sigma and not view.summary_level:
        sig2 = _sigma(view, every=True) ** 2
        if "observed_data" in view.dt.children:
            s_y = float(np.std(view.y.values))
        else:  # a fit of sufficient statistics: the reduction recorded sd(y) (NaN if nothing did)
            s_y = float(view.settings.get("data", {}).get("y_sd", np.nan))
    rows = [("lam", lam, "1 / tau^2 (hierpool: prior precision of a group effect)")]
    if view.summary_level:  # known se_j: a weighted ridge, sum (y_j - a - u_j)^2 / se_j^2 + alpha sum u_j^2
        rows.append(("alpha_sklearn", lam, "1 / tau^2 (scikit-learn Ridge alpha with sample_weight = 1 / se^2)"))
    else:
        rows += view.fam.ridge_units(lam, tau_sq, n_rows, n_note, sigma_sq=sig2, s_y=s_y)
    recs = []
    for units, draws, formula in rows:
        lo, hi = _quantiles(np.asarray(draws, dtype=float)[:, None], ci_prob)
        recs.append({"units": units, "estimate": float(np.median(draws)), "mean": float(np.mean(draws)),
                     "conf_low": float(lo[0]), "conf_high": float(hi[0]), "formula": formula})
    out = pd.DataFrame.from_records(recs, columns=["units", "estimate", "mean", "conf_low", "conf_high",
                                                   "formula"])
    out.attrs["ci_prob"] = ci_prob
    return out


# ------------------------------------------------------------------------------------------------------
def _fixed_part(view: FitView):
    """Posterior-mean plug-ins: eta of each row without its group effect, and the intercept at center.

    With several grouping factors, each row's eta includes the posterior-mean effects of the other
    factors' levels (they are part of the fixed part of the chosen factor's penalized regression)."""
    X, gidx, offset, trials = design_from_constant(view.const)
    a = float(view.post[N.INTERCEPT].mean())
    n_obs = view.const.sizes[N.OBS]
    eta0 = np.full(n_obs, a)
    for f in factor_names(view.post, view.const):  # the mean of a sum of effects: the sum of their means
        u_f = view.post[N.factor_var(N.GROUP_EFFECT, f)].mean(dim=N.SAMPLE_DIMS).values
        eta0 += np.asarray(u_f, dtype=float)[np.asarray(view.const[N.factor_var(N.GROUP_IDX, f)].values,
                                                        dtype=np.int64)]
    iac = a
    if X is not None and N.BETA in view.post and X.sizes.get(N.PREDICTOR, 0):
        beta = view.post[N.BETA].mean(dim=N.SAMPLE_DIMS)
        eta0 = eta0 + xr.dot(X, beta, dim=N.PREDICTOR).transpose(N.OBS).values
        if N.X_CENTER in view.const:
            iac = a + float(xr.dot(beta, view.const[N.X_CENTER], dim=N.PREDICTOR))
    if offset is not None:
        eta0 = eta0 + np.asarray(offset.values, dtype=float)
    m = None if trials is None else np.asarray(trials.values, dtype=float)
    return eta0, iac, np.asarray(gidx.values, dtype=np.int64), m


def ridge_path(dt: xr.DataTree, lams=None, n_lams: int = 50, factor: str | None = None) -> pd.DataFrame:
    """Each group's estimate as a ridge penalty on its effect runs from 0 (raw mean) to infinity (overall).

    Random-slopes fits (``(1 + x | g)``): uses the intercept deviations ``group_effect`` (and ``tau``)
    only; the slope deviations ``group_slope`` are not included (at a group's x, see :func:`hierpool.predict`).

    For a penalty ``lam`` (hierpool's units: the precision of a group effect, ``1/tau^2``) the group
    effects are the penalized estimates with the fixed part (intercept, ``beta`` and, gaussian,
    ``sigma``) held at its posterior mean:

    the penalized mode ``argmin_u -loglik_j(u) + lam/2 u^2`` of each group
    (:func:`hierpool.core.quadrature.group_modes`: Newton steps vectorized over groups, the effects being
    independent given the fixed part), the solution of a ridge regression on the one-hot dummies with the
    fixed part as an offset:

    - gaussian: exact after one step, ``u_j(lam) = sum_i r_ij / (n_j + sigma^2 lam)`` with
      ``r = y - intercept - X beta`` the residuals of the group's rows; also the conditional posterior
      mean of the random intercepts given ``tau = 1/sqrt(lam)`` and the fixed part (so at
      ``lam = 1/tau^2`` it equals the BLUP); summary-level data: ``u_j(lam) = r_j / (1 + se_j^2 lam)``;
    - other families: a ridge logistic/Poisson regression with an offset.

    The estimate is reported on the natural scale at the average predictor values,
    ``inverse_link(intercept_at_center + u_j)``. As ``lam -> 0`` it tends to the raw mean (without
    predictors; with predictors, to the raw mean adjusted to the average predictor values); as ``lam ->
    inf`` to the overall mean.

    Parameters
    ----------
    dt : xarray.DataTree
        A fit of any variant.
    lams : array-like of float, optional
        Penalties (> 0) to evaluate. Default: ``n_lams`` values log-spaced from 1e-3 to 1e3 times the
        implied ``lam`` (posterior median of ``1/tau^2``), or times ``settings["lam"]`` for a ridge fit.
    n_lams : int
        Length of the default grid.
    factor : str, optional
        Grouping factor to penalize, for fits with several (default: the first). The other factors'
        effects enter each row's fixed part at their posterior means.

    Returns
    -------
    pandas.DataFrame
        Long format, columns ``group``, ``lam``, ``estimate``; sorted by group (fit order) then ``lam``.
        ``attrs``: ``overall`` (the plug-in overall mean), ``family``, and either ``implied_lam``,
        ``implied_lam_low``, ``implied_lam_high``, ``ci_prob`` (hierarchical fits, from
        :func:`implied_ridge` at ``ci_prob=0.9``) or ``lam`` (ridge fits).

    Examples
    --------
    >>> path = hp.ridge_path(dt, n_lams=20)           # doctest: +SKIP
    >>> path.pivot(index="lam", columns="group", values="estimate").head()  # doctest: +SKIP
    """
    dt = select_factor(dt, factor)
    view = as_fit(dt)
    n_lams = positive_int("n_lams", n_lams, 2)
    if N.GROUP_IDX not in view.const:
        raise ValueError("ridge_path refits each group's penalized effect from its rows; this fit is of data "
                         "reduced to sufficient statistics (hp.prepare of Dask or files), which keeps no rows. "
                         "hp.shrinkage and hp.implied_ridge work on it.")
    attrs: dict = {"family": view.family}
    if view.hierarchical:
        imp = implied_ridge(dt, ci_prob=0.9).set_index("units").loc["lam"]
        center = float(imp["estimate"])
        attrs.update(implied_lam=center, implied_lam_low=float(imp["conf_low"]),
                     implied_lam_high=float(imp["conf_high"]), ci_prob=0.9)
    else:
        center = float(_tau_sq(view)[0]) ** -1
        attrs["lam"] = center
    if lams is None:
        if not np.isfinite(center) or center <= 0:
            raise ValueError(f"cannot center a default lam grid on lam={center!r}; pass lams= explicitly.")
        lam_grid = np.geomspace(center * 1e-3, center * 1e3, n_lams)
    else:
        lam_grid = np.atleast_1d(np.asarray(lams, dtype=float))
        if lam_grid.ndim != 1 or lam_grid.size == 0:
            raise ValueError(f"lams must be a non-empty 1-d sequence of positive numbers; got {lams!r}.")
        for v in lam_grid:
            positive_finite("lams", float(v))
        lam_grid = np.unique(lam_grid)
    J = view.n_groups
    fam = view.fam
    eta0, iac, gidx, m = _fixed_part(view)
    y = np.asarray(view.y.values, dtype=float)
    if view.summary_level:  # the known se of each row (= group)
        sigma = np.asarray(view.const[N.SE].values, dtype=float)[None, :]
    else:
        sigma = float(_sigma(view, every=True).mean()) if fam.has_sigma else None
    est = np.empty((J, lam_grid.size))
    u = np.zeros((1, J))
    for k in np.argsort(lam_grid)[::-1]:  # large lam first: warm starts move outward from 0
        u, _ = group_modes(fam, y, eta0, gidx, J, lam_grid[k], sigma=sigma, trials=m, u0=u)
        est[:, k] = fam.inverse_link(iac + u[0])
    attrs["overall"] = float(fam.inverse_link(iac))
    out = pd.DataFrame({
        "group": np.repeat(view.groups.to_numpy(), lam_grid.size),
        "lam": np.tile(lam_grid, J),
        "estimate": est.reshape(-1),
    })
    out.attrs.update(attrs)
    return out
