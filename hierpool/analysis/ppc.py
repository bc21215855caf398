"""Posterior predictive checks: replicated data sets drawn from the fit, test statistics of the observed
response against their replicated distribution, Bayesian p-values and a plot.

For a statistic ``T`` the Bayesian p-value is ``P(T(y_rep) >= T(y))`` over the posterior predictive
distribution, with ties counted half (``P(T_rep > T) + P(T_rep = T) / 2``), so that a discrete statistic
that the model reproduces exactly gets 0.5 rather than 1. Values near 0 or 1 (flagged below 0.025 and
above 0.975) say that the model does not reproduce this feature of the data.

Group-level statistics use each group's mean on the scale of ``constant_data.group_raw_mean``: the row
mean for gaussian and bernoulli, ``sum(y) / sum(trials)`` for binomial and ``sum(y) / sum(exposure)``
for poisson with exposure.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field

import numpy as np
import pandas as pd
import xarray as xr
from scipy import sparse

from hierpool.analysis.fitview import FitView, as_fit
from hierpool.core import config
from hierpool.core import names as N
from hierpool.core.families import get_family
from hierpool.core.validate import generator, positive_int, probability
from hierpool.inference.predictive import design_from_constant, linear_predictor, other_factor_effects

__all__ = ["ppc", "ppc_plot", "PPCResult", "STATISTICS"]

#: Statistics available by name, with what each measures.
STATISTICS = {
    "mean": "overall mean of y",
    "sd": "standard deviation of y",
    "min": "smallest y",
    "max": "largest y",
    "median": "median of y",
    "skewness": "sample skewness of y",
    "kurtosis": "sample excess kurtosis of y (heavy tails)",
    "prop_zero": "proportion of rows with y = 0 (bernoulli, binomial, poisson)",
    "prop_one": "proportion of rows with y = 1 (bernoulli)",
    "max_group_mean": "largest group mean",
    "min_group_mean": "smallest group mean",
    "sd_group_mean": "standard deviation of the group means (between-group spread)",
    "groups_all_zero": "share of groups whose rows are all 0 (bernoulli, binomial, poisson)",
    "groups_all_one": "share of groups whose rows are all successes (bernoulli, binomial)",
}

_DEFAULTS = {
    "gaussian": ["mean", "sd", "min", "max", "max_group_mean", "min_group_mean", "sd_group_mean"],
    "bernoulli": ["mean", "prop_zero", "prop_one", "max_group_mean", "min_group_mean", "sd_group_mean"],
    "binomial": ["mean", "sd", "min", "max", "prop_zero", "max_group_mean", "min_group_mean",
                 "sd_group_mean"],
    "poisson": ["mean", "sd", "min", "max", "prop_zero", "max_group_mean", "min_group_mean",
                "sd_group_mean"],
}

_KEY = {
    "gaussian": ["sd", "max", "min", "sd_group_mean"],
    "bernoulli": ["mean", "max_group_mean", "min_group_mean", "groups_all_zero", "groups_all_one", "sd_group_mean"],
    "binomial": ["sd", "max", "prop_zero", "sd_group_mean"],
    "poisson": ["sd", "max", "prop_zero", "sd_group_mean"],
}


@dataclass(eq=False)
class PPCResult:
    """Result of :func:`ppc`.

    Attributes
    ----------
    table : pandas.DataFrame
        One row per statistic: ``statistic``, ``observed``, ``rep_mean``, ``rep_low``, ``rep_high``
        (equal-tailed ``ci_prob`` interval of the replicated statistic), ``p_value``, ``flag``.
    y_rep : xarray.DataArray
        Replicated responses, dims ``(chain, draw, obs_id)``: all of them, or the first draws of each chain
        when ``n_draws x rows`` exceeds :func:`ppc`'s ``max_stored``.
    t_rep : xarray.Dataset
        The replicated statistics of all data sets, one variable per statistic, dims ``(chain, draw)``.
    dt : xarray.DataTree
        The fit with a ``posterior_predictive`` group holding ``y_rep`` (a copy when it was added), ready for
        ``arviz.plot_ppc_dist(result.dt)`` and the other arviz-plots PPC functions.
    figure : matplotlib.figure.Figure or None
        The plot of :func:`ppc_plot` when ``plot=True``.
    """

    table: pd.DataFrame
    y_rep: xr.DataArray
    t_rep: xr.Dataset
    dt: xr.DataTree
    family: str
    figure: object | None = None
    ci_prob: float = 0.95
    observed: dict = field(default_factory=dict)

    @property
    def flagged(self) -> list[str]:
        """Names of the statistics with p < 0.025 or p > 0.975."""
        return self.table.loc[self.table["flag"], "statistic"].tolist()

    def __repr__(self) -> str:
        n_draws = self.t_rep.sizes["chain"] * self.t_rep.sizes["draw"]
        head = f"PPCResult ({self.family}, {n_draws} replicated data sets; flagged: {self.flagged or 'none'})"
        return head + "\n" + self.table.to_string(index=False)

    def _repr_html_(self) -> str:
        n_draws = self.t_rep.sizes["chain"] * self.t_rep.sizes["draw"]
        caption = (f"Posterior predictive checks ({self.family}, {n_draws} replicated data sets; "
                   f"p_value = P(T(y_rep) &ge; T(y)), flag: p &lt; 0.025 or p &gt; 0.975)")
        return f"<p>{caption}</p>" + self.table.to_html(index=False, float_format=lambda v: f"{v:.4g}")


# ------------------------------------------------------------------------------------------------------
# statistics on arrays of shape (m, n_obs)
class _Context:
    def __init__(self, fv: FitView):
        const = fv.const
        gidx = const[N.GROUP_IDX].values.astype(np.int64)
        n, J = gidx.shape[0], fv.n_groups
        self.indicator = sparse.csr_matrix((np.ones(n), (np.arange(n), gidx)), shape=(n, J))
        denom = const[N.GROUP_DENOM].values if N.GROUP_DENOM in const else np.bincount(gidx, minlength=J)
        self.denom = np.asarray(denom, dtype=float)
        self._cache: tuple | None = None

    def group_means(self, y: np.ndarray) -> np.ndarray:
        # several statistics use the group means of the same array: keep the last one (and a reference
        # to its array, so an identity check cannot be fooled by a recycled id)
        if self._cache is None or self._cache[0] is not y:
            self._cache = (y, np.asarray(self.indicator.T.dot(y.T)).T / self.denom)
        return self._cache[1]


def _moment(y: np.ndarray, k: int) -> np.ndarray:
    z = y - y.mean(axis=-1, keepdims=True)
    sd = y.std(axis=-1)
    with np.errstate(invalid="ignore", divide="ignore"):
        out = (z**k).mean(axis=-1) / sd**k
    return np.where(sd > 0, out, 0.0)


_FUNCS: dict[str, Callable] = {
    "mean": lambda y, c: y.mean(axis=-1),
    "sd": lambda y, c: y.std(axis=-1, ddof=1),
    "min": lambda y, c: y.min(axis=-1),
    "max": lambda y, c: y.max(axis=-1),
    "median": lambda y, c: np.median(y, axis=-1),
    "skewness": lambda y, c: _moment(y, 3),
    "kurtosis": lambda y, c: _moment(y, 4) - 3.0,
    "prop_zero": lambda y, c: (y == 0).mean(axis=-1),
    "prop_one": lambda y, c: (y == 1).mean(axis=-1),
    "max_group_mean": lambda y, c: c.group_means(y).max(axis=-1),
    "min_group_mean": lambda y, c: c.group_means(y).min(axis=-1),
    "sd_group_mean": lambda y, c: c.group_means(y).std(axis=-1, ddof=1),
    "groups_all_zero": lambda y, c: (c.group_means(y) == 0.0).mean(axis=-1),
    "groups_all_one": lambda y, c: (c.group_means(y) == 1.0).mean(axis=-1),
}

#: Groups this small make the extreme group means of 0/1 data sit at 0 and 1 in every replicate: the
#: defaults then check the shares of all-0 and all-1 groups instead (they vary, and test the spread).
_SMALL_GROUP_DENOM = 5


def _resolve_stats(stats, family: str) -> dict[str, Callable]:
    if stats is None:
        return {name: _FUNCS[name] for name in _DEFAULTS[family]}
    if isinstance(stats, str):
        stats = [stats]
    if isinstance(stats, Mapping):
        out = {}
        for name, f in stats.items():
            if not callable(f):
                raise TypeError(f"stats[{name!r}] must be a function of y (array (draws, rows)) -> (draws,).")
            out[str(name)] = (lambda g: (lambda y, c: np.asarray(g(y))))(f)
        if not out:
            raise ValueError("stats is empty; give statistic names or {name: function}.")
        return out
    if isinstance(stats, Sequence):
        stats = list(stats)
        if not stats:
            raise ValueError(f"stats is empty; valid names: {', '.join(STATISTICS)}.")
        for s in stats:
            if s not in _FUNCS:
                raise ValueError(f"stats: {s!r} is not a known statistic; valid names: {', '.join(STATISTICS)}.")
        return {s: _FUNCS[s] for s in stats}
    raise TypeError(f"stats must be None, a list of statistic names or a dict of functions; got {stats!r}.")


def p_value(t_rep: np.ndarray, t_obs: float) -> float:
    """P(T_rep >= T_obs) with ties counted half."""
    t_rep = np.asarray(t_rep, dtype=float).reshape(-1)
    return float(np.mean(t_rep > t_obs) + 0.5 * np.mean(t_rep == t_obs))


# ------------------------------------------------------------------------------------------------------
def _thin(post: xr.Dataset, n_draws: int) -> xr.Dataset:
    C, D = post.sizes["chain"], post.sizes["draw"]
    if n_draws >= C * D:
        return post
    per_chain = max(1, -(-n_draws // C))
    idx = np.unique(np.linspace(0, D - 1, per_chain).round().astype(int))
    return post.isel(draw=idx)


def posterior_predictive(fv: FitView, post: xr.Dataset, rng: np.random.Generator,
                         draws_per_chunk: int | None = None):
    """Replicated responses of the training rows for the draws of ``post`` (``fv``'s posterior, thinned),
    in chunks of draws.

    Yields ``(draw_slice, y)`` with ``y`` of shape (chain, draws in the chunk, obs_id), the chunks in
    order along ``post``'s draws. One chunk (``draws_per_chunk=None``) is everything at once.
    """
    X, gidx, offset, trials = design_from_constant(fv.const)
    trials = None if trials is None else trials.values
    D = post.sizes["draw"]
    per = D if draws_per_chunk is None else max(1, int(draws_per_chunk))
    for d0 in range(0, D, per):
        sl = slice(d0, min(D, d0 + per))
        sub = post.isel(draw=sl)
        extra = other_factor_effects(sub, fv.const)  # several grouping factors: every factor's effect
        eta = linear_predictor(sub, X, gidx, offset, extra=extra).transpose(*N.SAMPLE_DIMS, N.OBS).values
        yield sl, fv.fam.draw(eta, rng, sigma=fv.row_sd(sub), trials=trials)


def _replicate_and_summarize(fv: FitView, funcs: dict, ctx, n_draws: int, rng, max_stored: float,
                             chunk_values: float) -> tuple[xr.DataArray, dict]:
    """Draw the replicated data sets chunk by chunk, computing every statistic on each chunk.

    Returns ``y_rep`` (the first draws of each chain that fit in ``max_stored`` values, all when they
    fit) and the statistics of all draws, arrays (chain, draw).
    """
    post = _thin(fv.post, n_draws)
    C, D = post.sizes["chain"], post.sizes["draw"]
    n = fv.const.sizes[N.OBS]
    per = D if C * D * n <= chunk_values else max(1, int(chunk_values // (C * n)))
    keep = D if C * D * n <= max_stored else max(1, int(max_stored // (C * n)))
    t = {name: np.empty((C, D)) for name in funcs}
    stored = None
    for sl, y in posterior_predictive(fv, post, rng, draws_per_chunk=per):
        flat = y.reshape(-1, n)
        for name, f in funcs.items():
            t[name][:, sl] = np.asarray(f(flat, ctx), dtype=float).reshape(C, -1)
        if sl.start < keep:
            if stored is None:
                stored = np.empty((C, keep, n), dtype=y.dtype)
            stored[:, sl.start:min(keep, sl.stop)] = y[:, :min(keep, sl.stop) - sl.start]
    draws = post["draw"].values
    y_rep = xr.DataArray(stored, dims=(*N.SAMPLE_DIMS, N.OBS), name=N.Y,
                         coords={"chain": post["chain"].values, "draw": draws[:keep], N.OBS: fv.const[N.OBS].values})
    return y_rep, {name: xr.DataArray(v, dims=N.SAMPLE_DIMS, coords={"chain": post["chain"].values, "draw": draws})
                   for name, v in t.items()}


def ppc(
    dt: xr.DataTree,
    stats=None,
    n_draws: int = 500,
    random_seed: int | None = None,
    plot: bool = True,
    *,
    ci_prob: float = 0.95,
    max_stored: float | None = None,
) -> PPCResult:
    """Posterior predictive checks of a fit: statistics, Bayesian p-values and a plot.

    Parameters
    ----------
    dt : xarray.DataTree
        A fit returned by :func:`hierpool.fit`. If it already holds ``posterior_predictive/y`` those draws
        are used; otherwise ``n_draws`` replicated data sets are drawn from a thinned posterior and stored
        in a ``posterior_predictive`` group of a copy of ``dt`` (``result.dt``); ``dt`` is not modified.
    stats : list of str or dict, optional
        Statistic names (see :data:`STATISTICS`: ``mean``, ``sd``, ``min``, ``max``, ``median``,
        ``skewness``, ``kurtosis``, ``prop_zero``, ``prop_one``, ``max_group_mean``, ``min_group_mean``,
        ``sd_group_mean``) or ``{name: function}`` with functions mapping an array of responses
        ``(draws, rows)`` to ``(draws,)``. Default by family: mean, sd, min, max, the proportion of zeros
        (counts) or zeros and ones (bernoulli), and the max, min and SD of the group means. For 0/1 data
        with groups of fewer than 5 trials the max and min group means are 1 and 0 in every replicate, so
        the shares of all-0 and all-1 groups replace them.
    n_draws : int
        Number of replicated data sets (posterior draws thinned evenly within each chain). They are drawn
        and summarized in chunks of the memory budget's working size (:mod:`hierpool.core.config`), so the statistics of all ``n_draws`` data sets cost
        bounded memory at any number of rows.
    max_stored : float, optional
        At most this many replicated values are kept in ``result.y_rep`` and ``result.dt`` (default: the
        memory budget's stored-array size, 2.5e8 float64 values at ``hp.set_options(memory_gb=2)``): when
        ``n_draws x rows`` exceeds it, they hold the first data sets of each chain that fit, while ``t_rep``, the table and the p-values use all
        ``n_draws``.
    random_seed : int, optional
    plot : bool
        Draw the figure (``result.figure``) with :func:`ppc_plot`.
    ci_prob : float
        Probability of the interval ``rep_low``-``rep_high`` of each replicated statistic. The default
        0.95 matches the flag: a statistic is flagged when its observed value lies outside the central 95%
        of its replicated distribution (p < 0.025 or p > 0.975).

    Returns
    -------
    PPCResult
        ``.table`` (statistic, observed, rep_mean, rep_low, rep_high, p_value, flag), ``.y_rep``,
        ``.t_rep``, ``.dt`` and ``.figure``.

    Examples
    --------
    >>> res = hp.ppc(dt, random_seed=1)         # doctest: +SKIP
    >>> res.table                                # doctest: +SKIP
    >>> res.flagged                              # doctest: +SKIP
    >>> import arviz as az; az.plot_ppc_dist(res.dt)   # arviz-plots works on res.dt  # doctest: +SKIP
    """
    fv = as_fit(dt)
    n_draws = positive_int("n_draws", n_draws)
    ci_prob = probability("ci_prob", ci_prob)
    if not isinstance(plot, bool):
        raise TypeError(f"plot must be True or False; got {plot!r}.")
    funcs = _resolve_stats(stats, fv.family)
    if stats is None and fv.fam.binomial_type and float(fv.const[N.GROUP_DENOM].min()) < _SMALL_GROUP_DENOM:
        funcs.pop("max_group_mean", None)
        funcs.pop("min_group_mean", None)
        funcs.update(groups_all_zero=_FUNCS["groups_all_zero"], groups_all_one=_FUNCS["groups_all_one"])
    if "observed_data" not in dt.children or N.Y not in dt["observed_data"]:
        raise ValueError(
            "dt has no observed_data/y: posterior predictive checks compare replicated rows with the observed "
            "rows, and a fit of data reduced to sufficient statistics (hp.prepare on a Dask DataFrame or on "
            "files) keeps no rows. Check the model on a fit of a pandas DataFrame (a sample of the rows)."
        )
    y_obs = dt["observed_data"][N.Y].values.astype(float)

    ctx = _Context(fv)
    if "posterior_predictive" in dt.children and N.Y in dt["posterior_predictive"]:
        y_rep = dt["posterior_predictive"][N.Y].transpose(*N.SAMPLE_DIMS, N.OBS)
        out_dt = dt
        if y_rep.sizes[N.OBS] != y_obs.shape[0]:
            raise ValueError(
                f"posterior_predictive/y has {y_rep.sizes[N.OBS]} rows but observed_data/y has {y_obs.shape[0]}."
            )
        C, D, n = y_rep.shape
        flat = y_rep.values.reshape(C * D, n)
        coords = {"chain": y_rep["chain"].values, "draw": y_rep["draw"].values}
        t_rep = {name: xr.DataArray(np.asarray(f(flat, ctx), dtype=float).reshape(C, D), dims=N.SAMPLE_DIMS,
                                    coords=coords) for name, f in funcs.items()}
    else:
        max_stored = float(config.stored_values() if max_stored is None else max_stored)
        if not max_stored >= 1:
            raise ValueError(f"max_stored={max_stored!r} must be a number >= 1 (replicated values kept).")
        y_rep, t_rep = _replicate_and_summarize(fv, funcs, ctx, n_draws, generator("random_seed", random_seed),
                                                max_stored, chunk_values=config.chunk_values())
        out_dt = dt.copy()
        out_dt["posterior_predictive"] = xr.DataTree(y_rep.to_dataset())
    q = [(1 - ci_prob) / 2, (1 + ci_prob) / 2]
    rows, observed = [], {}
    for name, f in funcs.items():
        t_obs = float(np.asarray(f(y_obs[None, :], ctx)).reshape(-1)[0])
        t = t_rep[name].values.reshape(-1)
        observed[name] = t_obs
        p = p_value(t, t_obs)
        lo, hi = np.quantile(t, q)
        rows.append({"statistic": name, "observed": t_obs, "rep_mean": float(t.mean()), "rep_low": float(lo),
                     "rep_high": float(hi), "p_value": p, "flag": bool(p < 0.025 or p > 0.975)})
    table = pd.DataFrame(rows)
    table.attrs["ci_prob"] = ci_prob
    res = PPCResult(table=table, y_rep=y_rep, t_rep=xr.Dataset(t_rep), dt=out_dt, family=fv.family,
                    ci_prob=ci_prob, observed=observed)
    if plot:
        res.figure = ppc_plot(res)
    return res


# ------------------------------------------------------------------------------------------------------
def _plot_tree(result: PPCResult, n_lines: int, max_rows: int = 5000) -> xr.DataTree:
    """The DataTree arviz-plots draws from: ``posterior_predictive/y`` and ``observed_data/y``, at most
    ``max_rows`` rows (a random subset: the distribution of a subsample is enough for a picture), whole
    numbers as integers (arviz-plots' count plots refuse float data)."""
    y_obs = result.dt["observed_data"][N.Y]
    y_rep = result.y_rep
    n = y_obs.sizes[N.OBS]
    if n > max_rows:
        keep = np.sort(np.random.default_rng(0).choice(n, max_rows, replace=False))
        y_obs, y_rep = y_obs.isel({N.OBS: keep}), y_rep.isel({N.OBS: keep})
    if get_family(result.family).has_sigma:  # continuous: the density panel overlays n_lines data sets
        per_chain = max(1, -(-n_lines // y_rep.sizes["chain"]))
        pick = np.unique(np.linspace(0, y_rep.sizes["draw"] - 1, per_chain).round().astype(int))
        y_rep = y_rep.isel(draw=pick)
    else:
        y_obs, y_rep = y_obs.astype(np.int64), y_rep.astype(np.int64)
    return xr.DataTree.from_dict({"posterior_predictive": xr.Dataset({N.Y: y_rep.drop_vars(N.OBS, errors="ignore")}),
                                  "observed_data": xr.Dataset({N.Y: y_obs.drop_vars(N.OBS, errors="ignore")})})


def ppc_plot(result: PPCResult, stats: Sequence[str] | None = None, n_lines: int = 50, *, figsize=(11, 5.5)):
    """Plot a :class:`PPCResult`: y against replicated data sets, and four statistics' T(y_rep) vs T(y).

    The left panel is arviz-plots': :func:`arviz_plots.plot_ppc_dist` (densities of ``n_lines``
    replicated data sets over the observed one) for gaussian, :func:`arviz_plots.plot_ppc_rootogram`
    (square-root frequencies of each value, replicated mean and 90% interval against the observed) for
    counts and 0/1 data. The four panels on the right show histograms of the replicated statistics
    with the observed value marked and the p-value in the title. They stay in matplotlib: they show the
    statistics :func:`ppc` computed on all ``n_draws`` data sets (the table's p-values), including the
    group-level ones (max, min and SD of the group means) and ``sd`` with ``ddof=1``, while
    :func:`arviz_plots.plot_ppc_tstat` recomputes a row-level statistic from the stored replicates only
    (fewer when ``max_stored`` capped them), so its picture would not match the table.

    Parameters
    ----------
    result : PPCResult
        From :func:`ppc`.
    stats : list of str, optional
        Up to four statistics of ``result.table`` to show; default: flagged ones first, then the family's
        key statistics (gaussian: sd, max, min, sd_group_mean).
    n_lines : int
        Replicated data sets drawn in the left panel (gaussian).

    Returns
    -------
    matplotlib.figure.Figure

    Examples
    --------
    >>> from hierpool.analysis.ppc import ppc_plot
    >>> fig = ppc_plot(hp.ppc(dt, plot=False))   # doctest: +SKIP
    >>> fig.savefig("ppc.png")                           # doctest: +SKIP
    """
    import warnings

    from arviz_plots import plot_ppc_dist, plot_ppc_rootogram

    if not isinstance(result, PPCResult):
        raise TypeError(f"result must be a PPCResult from hp.ppc; got {type(result).__name__}.")
    n_lines = positive_int("n_lines", n_lines)
    available = result.table["statistic"].tolist()
    if stats is None:
        order = result.flagged + [s for s in _KEY[result.family] if s in available]
        order += available
        stats = list(dict.fromkeys(order))[:4]
    else:
        stats = list(stats)
        bad = [s for s in stats if s not in available]
        if bad:
            raise ValueError(f"stats: {bad[0]!r} is not in result.table; available: {available}.")
        stats = stats[:4]

    tree = _plot_tree(result, n_lines)
    with warnings.catch_warnings():
        # 0/1 data: a rootogram of two values is the picture wanted here (arviz-plots suggests PAVA,
        # a calibration plot, which answers another question); few draws per chain after thinning
        warnings.filterwarnings("ignore", message=".*look binary.*")
        warnings.filterwarnings("ignore", message=".*chain dimension to be longer.*")
        if get_family(result.family).has_sigma:  # a continuous response: densities; counts: a rootogram
            pc = plot_ppc_dist(tree, var_names=[N.Y], num_samples=n_lines, kind="kde", backend="matplotlib")
        else:
            pc = plot_ppc_rootogram(tree, var_names=[N.Y], ci_prob=0.9, backend="matplotlib")
    fig = pc.viz["figure"].item()
    fig.set_size_inches(*figsize)
    ax0 = fig.axes[0]
    gs = fig.add_gridspec(2, 3)
    ax0.set_subplotspec(gs[:, 0])
    ax0.set_title("observed vs replicated")
    tab = result.table.set_index("statistic")
    for k, name in enumerate(stats):
        ax = fig.add_subplot(gs[k // 2, 1 + k % 2])
        t = result.t_rep[name].values.reshape(-1)
        values, counts = np.unique(t, return_counts=True)
        if values.size <= 30:  # a discrete statistic (max of counts, proportions of few rows): one bar per value
            step = np.min(np.diff(values)) if values.size > 1 else 1.0
            ax.bar(values, counts, width=0.8 * step, color="C0", alpha=0.6)
        else:
            ax.hist(t, bins=30, color="C0", alpha=0.6)
        obs = tab.loc[name, "observed"]
        ax.axvline(obs, color="C3" if tab.loc[name, "flag"] else "k", lw=2)
        ax.set_title(f"{name}: p = {tab.loc[name, 'p_value']:.3f}", fontsize=10,
                     color="C3" if tab.loc[name, "flag"] else "k")
        ax.set_yticks([])
    fig.suptitle("Posterior predictive checks")
    return fig
