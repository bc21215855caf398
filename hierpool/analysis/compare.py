"""Model comparison: PSIS-LOO on fitted models, and K-fold cross-validation that holds out rows or whole
groups.

Which to use
------------
- :func:`compare` on fits estimates how well each model predicts a *new row of a group it has seen*, by
  Pareto-smoothed importance sampling leave-one-out (arviz's ``loo``), from one fit per model. When a
  Pareto k is high (a row whose removal changes the posterior a lot, typical of groups of one or two rows
  whose effect is determined by that row) the estimate is unreliable, and :func:`compare` says so.
- :func:`cross_validate` refits each model K times. ``by="row"`` holds out rows, stratified so that every
  held-out row's group stays in training (what LOO estimates, without importance sampling).
  ``by="group"`` holds out whole groups: the score of predicting *groups the model has never seen*, where
  random effects (which learn tau) and a ridge with a hand-picked lambda differ most.

Units of the elpd
-----------------
``by="row"`` scores each held-out row: ``log mean_s p(y_i | theta_s)`` over the posterior draws of the
training fit, with the row's group effect from that fit. Rows of single-row groups cannot be held out
without their group becoming new, so they are always kept in training and not scored
(``CVResult.n_always_train`` counts them).

``by="group"`` scores each held-out *group* jointly: its effect is unknown, so for every draw ``s`` it is
integrated out, ``p(y_g | theta_s) = integral prod_i p(y_i | u, theta_s) Normal(u | 0, tau_s) du``,
and ``elpd_g = log mean_s p(y_g | theta_s)``. The integral is computed by adaptive Gauss-Hermite
quadrature (:func:`hierpool.core.quadrature.log_marginal`: centered at the mode of the integrand,
``n_nodes`` nodes, exact for gaussian models). The
ridge variant has no tau and uses its prior ``Normal(0, 1/sqrt(lam))``, which is what it assumes about a
new group. Group-level elpd values are comparable between models, not with row-level ones.

Comparing CV results
--------------------
``hp.compare({name: cv_result, ...})`` ranks :class:`CVResult` objects computed on the same data with the
same ``folds``, ``by`` and ``random_seed`` (the same units), with the same columns as the LOO table;
``cross_validate`` given a dict of factories does it for you.
"""

from __future__ import annotations

import warnings
from collections.abc import Mapping
from dataclasses import dataclass

import numpy as np
import pandas as pd
import xarray as xr
from scipy.special import logsumexp

from hierpool.analysis.fitview import as_fit
from hierpool.analysis.predict import eta_block, flat_draws, new_group_sd, new_rows, row_sigma
from hierpool.core import config
from hierpool.core import names as N
from hierpool.core.quadrature import log_marginal
from hierpool.core.validate import generator, one_of, positive_int

__all__ = ["compare", "cross_validate", "CVResult", "heldout_log_density"]

_COLUMNS = ["model", "rank", "elpd", "se", "elpd_diff", "dse", "p", "weight", "n_pareto_k_bad", "warning",
            "p_worse"]


# ------------------------------------------------------------------------------------------------------
# PSIS-LOO
def _check_fits_dict(fits) -> None:
    if not isinstance(fits, Mapping):
        raise TypeError(
            f"fits must be a dict {{name: fit}} (fits from hp.fit, or CV results from hp.cross_validate); "
            f"got {type(fits).__name__}."
        )
    if len(fits) < 2:
        raise ValueError(f"fits must hold at least 2 models to compare; got {len(fits)}.")
    for name in fits:
        if not isinstance(name, str):
            raise TypeError(f"fits: model names must be str; got {name!r}.")


def _same_data(fits: Mapping[str, xr.DataTree]) -> None:
    """Refuse fits of different data: same rows, same responses, same grouping."""
    ref_name, ref = next(iter(fits.items()))
    y0 = ref["observed_data"][N.Y].values
    g0 = ref["constant_data"][N.GROUP_IDX].values
    lab0 = np.asarray(as_fit(ref).groups, dtype=object)
    for name, dt in fits.items():
        if name == ref_name:
            continue
        y = dt["observed_data"][N.Y].values
        if y.shape != y0.shape:
            raise ValueError(
                f"fits {ref_name!r} and {name!r} were fitted to different data: {y0.shape[0]} rows against "
                f"{y.shape[0]}. LOO compares models of the same observations."
            )
        if not np.array_equal(y, y0):
            n_diff = int(np.sum(y != y0))
            raise ValueError(
                f"fits {ref_name!r} and {name!r} were fitted to different data: the response differs in "
                f"{n_diff} rows. LOO compares models of the same observations."
            )
        g = dt["constant_data"][N.GROUP_IDX].values
        lab = np.asarray(as_fit(dt).groups, dtype=object)
        if g.shape != g0.shape or not np.array_equal(lab0[g0], lab[g]):
            raise ValueError(
                f"fits {ref_name!r} and {name!r} were fitted to different data: the rows' groups differ. "
                "LOO compares models of the same observations with the same grouping."
            )


def _loo_tree(dt: xr.DataTree) -> xr.DataTree:
    """What :func:`arviz.loo` reads: the log-likelihood and the posterior of the same draws.

    A fit thinned for memory stores the log-likelihood at the draws that have group effects, while its
    posterior keeps every draw of the population parameters; arviz's relative efficiency (mean ESS of
    the posterior / number of log-likelihood draws) must come from the aligned draws, as in an unthinned
    fit of those draws, not from all of them (it would exceed 1 and shorten the Pareto tails).
    """
    fv = as_fit(dt)
    if not fv.thinned:
        return dt
    return xr.DataTree.from_dict({"posterior": fv.post, "log_likelihood": dt["log_likelihood"].to_dataset()})


def _loo_table(fits: Mapping[str, xr.DataTree]) -> pd.DataFrame:
    import arviz as az

    loos, bad = {}, {}
    for name, dt in fits.items():
        as_fit(dt, arg=f"fits[{name!r}]")
        if "observed_data" not in dt.children:
            raise ValueError(
                f"fits[{name!r}] keeps no rows (a fit of data reduced to sufficient statistics), so it has no "
                "pointwise log-likelihood for LOO; compare models fitted to a pandas DataFrame, or use "
                "hp.cross_validate on one."
            )
        if "log_likelihood" not in dt.children or N.Y not in dt["log_likelihood"]:
            raise ValueError(
                f"fits[{name!r}] has no log_likelihood group: refit with hp.fit(..., log_likelihood=True) "
                "(it is skipped by default above the memory budget: hp.set_options(memory_gb=...)), or compare with hp.cross_validate."
            )
    _same_data(fits)
    for name, dt in fits.items():
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", message=".*Pareto.*", category=UserWarning)
            loos[name] = az.loo(_loo_tree(dt), var_name=N.Y, pointwise=True)
        k = np.asarray(loos[name].pareto_k).reshape(-1)
        threshold = loos[name].good_k if loos[name].good_k is not None else 0.7
        bad[name] = (int(np.sum(k > threshold)), float(threshold), int(k.size))
    for name, (n_bad, threshold, n) in bad.items():
        if n_bad:
            # summary-level data has one row per group: holding out a row is holding out its group
            by = "group" if N.SE in fits[name]["constant_data"] else "row"
            warnings.warn(
                f"model {name!r}: {n_bad} of {n} observations have Pareto k > {threshold:.2f}, so its PSIS-LOO "
                "estimate is unreliable (typically rows of groups with one or two rows, whose effect hinges "
                f"on them). Check with K-fold cross-validation: hp.cross_validate(..., by={by!r}).",
                UserWarning,
                stacklevel=3,
            )
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=".*Pareto.*", category=UserWarning)
        table = az.compare(loos, round_to="none")
    out = _tidy(table)
    out["n_pareto_k_bad"] = [bad[m][0] for m in out["model"]]
    out["warning"] = [bool(bad[m][0] or loos[m].warning) for m in out["model"]]
    out = out[_COLUMNS]
    out.attrs["ic"] = "loo"
    return out


def _tidy(table: pd.DataFrame) -> pd.DataFrame:
    out = table.copy()
    out.index.name = "model"
    out = out.reset_index()
    out["rank"] = out["rank"].astype(int)
    if "p_worse" not in out:
        out["p_worse"] = np.nan
    out["p_worse"] = out["p_worse"].astype(float)
    return out.sort_values("rank").reset_index(drop=True)


def compare(fits: Mapping, ic: str = "loo") -> pd.DataFrame:
    """Rank models by their expected log predictive density (PSIS-LOO, or K-fold CV results).

    Parameters
    ----------
    fits : dict of {str: xarray.DataTree} or dict of {str: CVResult}
        At least two fits of the same data (same rows, responses and groups) made with the pointwise
        log-likelihood (``hp.fit`` stores it by default); or at least two :class:`CVResult` from
        :func:`cross_validate` with the same data, folds, ``by`` and seed.
    ic : {"loo"}
        Information criterion for fits: Pareto-smoothed importance-sampling leave-one-out
        (:func:`arviz.loo`). Ignored for CV results, which are compared on their K-fold elpd.

    Returns
    -------
    pandas.DataFrame
        One row per model, best first: ``model``, ``rank`` (0 = best), ``elpd`` (higher is better),
        ``se``, ``elpd_diff`` (to the best model, <= 0), ``dse`` (SE of that difference from the paired
        pointwise values), ``p`` (effective number of parameters; NaN for CV), ``weight`` (stacking
        weights), ``n_pareto_k_bad`` (observations with Pareto k above arviz's threshold ``good_k``, 0.7 for
        2,200 or more draws and lower for fewer; 0 for CV, which does not use importance sampling),
        ``warning`` (True when an estimate is unreliable: high Pareto k for LOO, sampling problems in a
        fold for CV) and ``p_worse`` (normal-approximation probability that the model is worse than the
        best). ``attrs["ic"]`` names the estimate: ``"loo"``, ``"kfold_row"`` or ``"kfold_group"``.

    Warns
    -----
    UserWarning
        For each model with Pareto k above the threshold, naming the model and the count.

    Examples
    --------
    >>> table = hp.compare({"random intercepts": dt1, "ridge": dt2, "regularized": dt3})   # doctest: +SKIP
    >>> table[["model", "rank", "elpd", "elpd_diff", "dse", "weight"]]                       # doctest: +SKIP
    """
    _check_fits_dict(fits)
    one_of("ic", ic, ("loo",))
    values = list(fits.values())
    n_cv = sum(isinstance(v, CVResult) for v in values)
    if n_cv == len(values):
        return _compare_cv(fits)
    if n_cv:
        raise TypeError("fits mixes fits and CV results; compare fits with fits (LOO) or CV results with CV results.")
    for name, v in fits.items():
        if not isinstance(v, xr.DataTree):
            raise TypeError(
                f"fits[{name!r}] must be an xarray.DataTree from hp.fit (or a CVResult); got {type(v).__name__}."
            )
    return _loo_table(fits)


# ------------------------------------------------------------------------------------------------------
# held-out log predictive density
def _response(fv, df: pd.DataFrame, arg: str) -> np.ndarray:
    col = fv.settings["data"]["y"]
    if col not in df.columns:
        raise ValueError(f"{arg} lacks the response column {col!r}.")
    s = df[col]
    if fv.fam.accepts_bool and pd.api.types.is_bool_dtype(s):
        y = s.to_numpy(dtype=float)
    elif not pd.api.types.is_numeric_dtype(s):
        raise TypeError(f"{arg}: response column {col!r} must be numeric; got dtype {s.dtype}.")
    else:
        y = s.to_numpy(dtype=float)
    if not np.isfinite(y).all():
        raise ValueError(f"{arg}: response column {col!r} has NaN or infinite values.")
    return y


def heldout_log_density(dt: xr.DataTree, test_df: pd.DataFrame, *, n_nodes: int = 20,
                        warn: bool = True) -> pd.DataFrame:
    """Log predictive density of held-out rows under a fit, one value per unit.

    Rows of groups in the fit are units of their own: ``log mean_s p(y_i | theta_s)``. Rows of groups
    not in the fit are scored jointly per group, the group's effect integrated out per draw (see the
    module docstring).

    Returns
    -------
    pandas.DataFrame
        Columns ``unit_kind`` ("row" or "group"), ``row`` (position of the row in ``test_df``, or of the
        group's first row), ``group``, ``n_rows`` and ``elpd_i``; rows first, then groups.
    """
    fv = as_fit(dt)
    rows = new_rows(fv, test_df, arg="test_df", warn_new=False)
    y = _response(fv, test_df, "test_df")
    d = flat_draws(fv)
    S = d.S
    sigma = d.sigma
    out = []
    known = np.flatnonzero(~rows.is_new)
    size = max(1, config.chunk_values() // S)
    for start in range(0, known.size, size):
        sel = known[start:start + size]
        eta = eta_block(d, rows, sel, None)
        trials = None if rows.trials is None else rows.trials[sel]
        ll = fv.fam.log_likelihood(y[sel], eta, sigma=row_sigma(d, rows, sel), trials=trials)
        lpd = logsumexp(ll, axis=0) - np.log(S)
        out.append(pd.DataFrame({"unit_kind": "row", "row": sel, "group": rows.labels[sel], "n_rows": 1,
                                 "elpd_i": lpd}))
    if rows.new_labels:
        tau = new_group_sd(fv, warn=warn, stacklevel=3)
        K = len(rows.new_labels)
        new_pos = np.flatnonzero(rows.is_new)
        codes_all = rows.new_code[new_pos]
        order = np.argsort(codes_all, kind="stable")
        counts = np.bincount(codes_all, minlength=K)
        ends = np.cumsum(counts)
        lpd_g = np.empty(K)
        g0 = 0
        while g0 < K:  # blocks of whole groups of at most `size` rows (at least one group)
            g1 = g0 + 1
            while g1 < K and ends[g1] - (ends[g0 - 1] if g0 else 0) <= size:
                g1 += 1
            lo = ends[g0 - 1] if g0 else 0
            sel = new_pos[order[lo:ends[g1 - 1]]]
            eta = eta_block(d, rows, sel, None, include_group_effect=False)
            trials = None if rows.trials is None else rows.trials[sel]
            sd = sigma if rows.se is None else row_sigma(d, rows, sel)  # per draw, or per row (summary data)
            lp = log_marginal(fv.fam, y[sel], eta, rows.new_code[sel] - g0, g1 - g0, tau, sigma=sd,
                              trials=trials, n_nodes=n_nodes)
            lpd_g[g0:g1] = logsumexp(lp, axis=0) - np.log(S)
            g0 = g1
        first = np.array([new_pos[order[(ends[g - 1] if g else 0)]] for g in range(K)], dtype=np.int64)
        out.append(pd.DataFrame({"unit_kind": "group", "row": first,
                                 "group": np.asarray(rows.new_labels, dtype=object), "n_rows": counts,
                                 "elpd_i": lpd_g}))
    return pd.concat(out, ignore_index=True)


# ------------------------------------------------------------------------------------------------------
# K-fold cross-validation
@dataclass(eq=False)
class CVResult:
    """Result of :func:`cross_validate` for one model.

    Attributes
    ----------
    elpd : float
        Sum of the held-out log predictive densities over the units.
    se : float
        ``sqrt(n_units * var(elpd_i))``, as for LOO.
    by : {"row", "group"}
        Unit of the elpd: a held-out row, or a held-out group scored jointly.
    n_folds, n_units : int
    pointwise : pandas.DataFrame
        One row per unit in data order: ``unit`` (row label of ``data`` for by="row", group label for
        by="group"), ``group``, ``fold``, ``n_rows``, ``elpd_i``.
    per_fold : pandas.DataFrame
        ``fold``, ``n_train_rows``, ``n_test_rows``, ``n_units``, ``elpd`` (the fold's sum; they add up to
        ``elpd``), ``sampling_problems``.
    n_always_train : int
        Rows of single-row groups, kept in every training set and not scored (by="row").
    n_samples : int
        Posterior draws per fold's fit.
    variant : str
        The model variant (from the fits).
    """

    elpd: float
    se: float
    by: str
    n_folds: int
    n_units: int
    pointwise: pd.DataFrame
    per_fold: pd.DataFrame
    n_always_train: int
    n_samples: int
    variant: str
    random_seed: int | None = None

    @property
    def warning(self) -> bool:
        return bool((self.per_fold["sampling_problems"] > 0).any())

    @property
    def table(self) -> pd.DataFrame:
        """One-row summary: variant, by, n_folds, n_units, elpd, se, elpd_per_unit."""
        return pd.DataFrame([{"variant": self.variant, "by": self.by, "n_folds": self.n_folds,
                              "n_units": self.n_units, "elpd": self.elpd, "se": self.se,
                              "elpd_per_unit": self.elpd / self.n_units}])

    def to_elpd_data(self):
        """The result as arviz's ``ELPDDataLOOKFold`` (for ``arviz.compare`` and ``arviz.plot_compare``)."""
        from arviz_stats.utils import ELPDDataLOOKFold

        elpd_i = xr.DataArray(self.pointwise["elpd_i"].to_numpy(), dims=("unit",),
                              coords={"unit": np.arange(self.n_units)})
        return ELPDDataLOOKFold(elpd=self.elpd, se=self.se, p=np.nan, n_samples=self.n_samples,
                                n_data_points=self.n_units, scale="log", warning=self.warning, good_k=None,
                                elpd_i=elpd_i, n_folds=self.n_folds)

    def __repr__(self) -> str:
        unit = "held-out rows" if self.by == "row" else "held-out groups (each scored jointly)"
        return (f"CVResult({self.variant}, {self.n_folds}-fold by {self.by!r}: elpd = {self.elpd:.2f} "
                f"(se {self.se:.2f}) over {self.n_units} {unit})")

    def _repr_html_(self) -> str:
        return f"<p>{self.__repr__()}</p>" + self.per_fold.to_html(index=False)


def fold_ids(groups: np.ndarray, folds: int, by: str, rng: np.random.Generator) -> np.ndarray:
    """Fold of each row (0..folds-1; -1: always in training).

    by="group": groups are shuffled and dealt to folds in turn. by="row": groups are put in random order
    and their rows shuffled within the group; the rows of groups with at least two rows are then dealt to
    folds in turn, so a group's rows land in different folds and every held-out row keeps at least one
    row of its group in training. Rows of single-row groups get -1.
    """
    codes, uniq = pd.factorize(pd.Index(groups, dtype=object), sort=False)
    G = len(uniq)
    out = np.full(codes.shape[0], -1, dtype=np.int64)
    if by == "group":
        if folds > G:  # some folds would hold no group: refused before any model is fitted
            raise ValueError(f"folds={folds} exceeds the number of groups ({G}) for by='group'; each fold holds "
                             f"out whole groups, so folds <= {G} (folds={G} is leave-one-group-out).")
        if G - -(-G // folds) < 2:
            raise ValueError(
                f"by='group' with folds={folds} needs more groups: with {G} groups a training set would keep "
                f"fewer than 2. Use fewer folds or more groups."
            )
        fold_of = np.empty(G, dtype=np.int64)
        fold_of[rng.permutation(G)] = np.arange(G) % folds
        return fold_of[codes]
    sizes = np.bincount(codes, minlength=G)
    pos = 0
    for g in rng.permutation(G):
        if sizes[g] < 2:
            continue
        members = rng.permutation(np.flatnonzero(codes == g))
        out[members] = (pos + np.arange(members.size)) % folds
        pos += members.size
    if pos < folds:
        raise ValueError(
            f"by='row' with folds={folds}: only {pos} rows belong to groups with at least two rows; rows of "
            "single-row groups are never held out. Use fewer folds or by='group'."
        )
    return out


def _fit_fold(factory, train: pd.DataFrame, factory_kwargs: dict, fit_kwargs: dict, fold: int):
    from hierpool.inference import sampling as sampling
    from hierpool.inference.diagnostics import HierpoolSamplingWarning

    try:
        model = factory(train, **factory_kwargs)
    except (TypeError, ValueError) as err:
        raise type(err)(f"cross_validate fold {fold}: the factory failed on the training rows: {err}") from err
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", HierpoolSamplingWarning)
        dt = sampling.fit(model, **fit_kwargs)
    problems = 0
    for w in caught:
        if issubclass(w.category, HierpoolSamplingWarning):
            problems += 1
            warnings.warn(f"cross_validate fold {fold}: {w.message}", HierpoolSamplingWarning,
                          stacklevel=4)
        else:
            warnings.warn_explicit(w.message, w.category, w.filename, w.lineno)
    return dt, problems


def cross_validate(
    factory,
    data: pd.DataFrame,
    folds: int = 5,
    by: str = "row",
    random_seed: int | None = 0,
    fit_kwargs: dict | None = None,
    *,
    n_nodes: int = 20,
    **factory_kwargs,
):
    """K-fold cross-validation of a model (or several) holding out rows or whole groups.

    Parameters
    ----------
    factory : callable or dict
        A model factory (``hp.random_intercepts``, ``hp.ridge_fixed_effects``,
        ``hp.regularized_hierarchical``, or any ``f(DataFrame, **factory_kwargs) -> pm.Model`` built by
        one of them); or a dict ``{name: (factory, kwargs)}`` (or ``{name: factory}``) to cross-validate
        several models on the same folds and get the ranked table of :func:`compare`.
    data : pandas.DataFrame
        All rows; each fold's training rows are passed to the factory.
    folds : int
        Number of folds, >= 2.
    by : {"row", "group"}
        ``"row"``: hold out rows, stratified by group so that every held-out row's group keeps rows in
        training (rows of single-row groups always stay in training and are not scored). ``"group"``:
        hold out whole groups (new groups), each scored jointly with its effect integrated out.
    random_seed : int, optional
        Seeds the fold assignment; fold ``k``'s fit gets ``random_seed + k`` unless ``fit_kwargs`` sets
        its own.
    fit_kwargs : dict, optional
        Passed to :func:`hierpool.fit` (e.g. ``draws``, ``tune``, ``chains``); ``progressbar=False`` by
        default. Each fold compiles a new model: for small data ``{"sampler": "pymc", "cores": 1}``
        compiles faster than nutpie, and compiling dominates the time of a small fit.
    n_nodes : int
        Gauss-Hermite nodes for integrating a held-out group's effect (by="group").
    **factory_kwargs
        Passed to the factory (``y=``, ``group=``, ``predictors=``, ``family=``, ``lam=``, ...); ``group=``
        is required. With a dict of factories these are shared and each model's own kwargs are added.

    Returns
    -------
    CVResult or pandas.DataFrame
        For one factory a :class:`CVResult` (``elpd``, ``se``, ``per_fold``, ``pointwise``, ``n_units``);
        for a dict the ranked table of ``hp.compare`` over the CV results, which are kept in
        ``table.attrs["cv_results"]``.

    Warns
    -----
    UserWarning
        For a ridge model with by="group": a held-out group's effect follows the fixed prior
        ``Normal(0, 1/sqrt(lam))``.
    HierpoolSamplingWarning
        Sampling problems of a fold's fit, prefixed with the fold.

    Examples
    --------
    >>> cv = hp.cross_validate(hp.random_intercepts, df, folds=5, by="group", y="y", group="group",
    ...                        fit_kwargs={"draws": 500})                                # doctest: +SKIP
    >>> cv.elpd, cv.se, cv.per_fold                                                      # doctest: +SKIP
    >>> hp.cross_validate({"ri": (hp.random_intercepts, {}),
    ...                    "ridge": (hp.ridge_fixed_effects, {"lam": 1.0})},
    ...                   df, by="group", y="y", group="group")                          # doctest: +SKIP
    """
    if isinstance(factory, Mapping):
        if len(factory) < 1:
            raise ValueError("factory is an empty dict; give {name: (factory, kwargs)}.")
        results = {}
        for name, spec in factory.items():
            if callable(spec):
                f, kw = spec, {}
            elif isinstance(spec, tuple) and len(spec) == 2 and callable(spec[0]) and isinstance(spec[1], Mapping):
                f, kw = spec
            else:
                raise TypeError(f"factory[{name!r}] must be a factory or a (factory, kwargs dict) pair; got {spec!r}.")
            results[name] = cross_validate(f, data, folds=folds, by=by, random_seed=random_seed,
                                           fit_kwargs=fit_kwargs, n_nodes=n_nodes, **{**factory_kwargs, **kw})
        if len(results) < 2:
            return results[next(iter(results))]
        table = compare(results)
        table.attrs["cv_results"] = results
        return table
    if not callable(factory):
        raise TypeError(f"factory must be a model factory (e.g. hp.random_intercepts) or a dict of them; got {factory!r}.")
    if not isinstance(data, pd.DataFrame):
        hint = (" cross-validation splits the rows and prepares each training set anew, so pass the DataFrame "
                "you gave hp.prepare together with its keywords (y=, group=, predictors=, family=, ...)."
                if type(data).__name__ in ("GroupedData", "GroupedStats") else "")
        raise TypeError(f"data must be a pandas DataFrame; got {type(data).__name__}.{hint}")
    folds = positive_int("folds", folds, 2)
    one_of("by", by, ("row", "group"))
    n_nodes = positive_int("n_nodes", n_nodes)
    if fit_kwargs is None:
        fit_kwargs = {}
    if not isinstance(fit_kwargs, Mapping):
        raise TypeError(f"fit_kwargs must be a dict of hp.fit arguments; got {fit_kwargs!r}.")
    group = factory_kwargs.get("group")
    if not isinstance(group, str):
        raise ValueError("cross_validate needs group= (the group column) among the factory keywords.")
    if group not in data.columns:
        raise ValueError(f"group={group!r} is not a column of data; columns are: {list(data.columns)[:20]}.")
    if data[group].isna().any():
        raise ValueError(f"group={group!r} has missing labels; every row must belong to a group.")
    rng = generator("random_seed", random_seed)
    fold = fold_ids(data[group].to_numpy(dtype=object), folds, by, rng)

    parts, per_fold = [], []
    warned = False
    n_samples = 0
    variant = ""
    for k in range(folds):
        test_mask = fold == k
        train, test = data.loc[~test_mask], data.loc[test_mask]
        kw = {"progressbar": False, "log_likelihood": False, **fit_kwargs}
        if "random_seed" not in fit_kwargs and random_seed is not None:
            kw["random_seed"] = int(random_seed) + k
        dt, problems = _fit_fold(factory, train, factory_kwargs, kw, k)
        fv = as_fit(dt)
        variant = fv.variant
        n_samples = fv.post.sizes["chain"] * fv.post.sizes["draw"]
        if by == "group" and not fv.hierarchical and not warned:
            new_group_sd(fv, warn=True, stacklevel=3)
            warned = True
        try:
            lp = heldout_log_density(dt, test, n_nodes=n_nodes, warn=False)
        except ValueError as err:
            raise ValueError(f"cross_validate fold {k}: {err}") from err
        lp["row"] = np.flatnonzero(test_mask)[lp["row"].to_numpy()]
        lp["fold"] = k
        parts.append(lp)
        per_fold.append({"fold": k, "n_train_rows": int((~test_mask).sum()), "n_test_rows": int(test_mask.sum()),
                         "n_units": len(lp), "elpd": float(lp["elpd_i"].sum()), "sampling_problems": problems})
    pw = pd.concat(parts, ignore_index=True).sort_values("row", kind="stable").reset_index(drop=True)
    pw["unit"] = data.index.to_numpy()[pw["row"].to_numpy()] if by == "row" else pw["group"]
    pw = pw[["unit", "group", "fold", "n_rows", "elpd_i"]]
    elpd_i = pw["elpd_i"].to_numpy()
    n = elpd_i.size
    return CVResult(
        elpd=float(elpd_i.sum()), se=float(np.sqrt(n * np.var(elpd_i))), by=by, n_folds=folds, n_units=n,
        pointwise=pw, per_fold=pd.DataFrame(per_fold), n_always_train=int((fold < 0).sum()),
        n_samples=int(n_samples), variant=variant, random_seed=random_seed,
    )


def _compare_cv(results: Mapping[str, CVResult]) -> pd.DataFrame:
    import arviz as az

    names = list(results)
    ref = results[names[0]]
    for name in names[1:]:
        r = results[name]
        if r.by != ref.by or r.n_folds != ref.n_folds:
            raise ValueError(
                f"CV results {names[0]!r} (by={ref.by!r}, {ref.n_folds} folds) and {name!r} (by={r.by!r}, "
                f"{r.n_folds} folds) are not comparable; use the same by, folds and random_seed."
            )
        if r.n_units != ref.n_units or not (
            np.array_equal(r.pointwise["unit"].to_numpy(), ref.pointwise["unit"].to_numpy())
            and np.array_equal(r.pointwise["fold"].to_numpy(), ref.pointwise["fold"].to_numpy())
        ):
            raise ValueError(
                f"CV results {names[0]!r} and {name!r} scored different units or folds: cross-validate both on "
                "the same data with the same folds, by and random_seed."
            )
    elpd = {name: r.to_elpd_data() for name, r in results.items()}
    table = az.compare(elpd, round_to="none")
    out = _tidy(table)
    out["p"] = np.nan
    out["n_pareto_k_bad"] = 0
    out["warning"] = [results[m].warning for m in out["model"]]
    out = out[_COLUMNS]
    out.attrs["ic"] = f"kfold_{ref.by}"
    return out
