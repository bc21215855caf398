"""Plots of shrinkage, rank intervals and the ridge path (matplotlib; every function returns the Figure).

Each function takes a fit's DataTree, or the table the matching analysis function returned (so a
large fit is summarized once and plotted many times), and an optional ``ax``.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import xarray as xr

from hierpool.analysis import ranking as _ranking
from hierpool.analysis import shrinkage as _shrinkage
from hierpool.core import names as N

__all__ = ["shrinkage_plot", "caterpillar", "ridge_path_plot", "ppc_plot", "funnel_plot", "profile_caterpillar",
           "eb_vs_full_bayes"]


def __dir__():  # the plotting functions only: hp.plots is not a second home of numpy or the tables
    return sorted(__all__)


def _pyplot():
    import matplotlib.pyplot as plt

    return plt


def _table(obj, fn, name: str, required: tuple[str, ...], **kwargs) -> pd.DataFrame:
    if isinstance(obj, xr.DataTree):
        return fn(obj, **kwargs)
    if isinstance(obj, pd.DataFrame):
        missing = [c for c in required if c not in obj.columns]
        if missing:
            raise ValueError(f"the table passed to {name} lacks columns {missing}; pass the DataTree of a fit "
                             f"or the DataFrame returned by hp.{fn.__name__}.")
        return obj
    raise TypeError(f"{name} takes a fit's xarray.DataTree or the DataFrame of hp.{fn.__name__}; got "
                    f"{type(obj).__name__}.")


def _marker_sizes(n: np.ndarray) -> np.ndarray:
    n = np.asarray(n, dtype=float)
    return 12.0 + 60.0 * np.sqrt(n / max(n.max(), 1.0))


def shrinkage_plot(dt_or_table, ax=None, factor: str | None = None):
    """Raw group means against pooled estimates, with arrows toward the overall mean; and rho against n.

    Left panel: each group at (raw mean, estimate), point area growing with its number of rows; an arrow
    runs from the no-pooling line ``estimate = raw mean`` (dotted diagonal) to the estimate, toward the
    overall mean (dashed horizontal line). Small groups travel furthest. Right panel: the theoretical
    weight ``rho_j`` on each group's own data against its size ``n_j`` (log axis), with, for gaussian
    fits, the curve ``tau^2 / (tau^2 + sigma^2 / n)`` at the posterior medians of tau and sigma
    (``tau^2 = 1/lam`` for a ridge fit).

    Parameters
    ----------
    dt_or_table : xarray.DataTree or pandas.DataFrame
        A fit, or the table returned by :func:`hierpool.analysis.shrinkage`.
    ax : matplotlib Axes or sequence of two Axes, optional
        Two Axes draw both panels; a single Axes only the left panel. Default: a new figure with two.

    Returns
    -------
    matplotlib.figure.Figure

    Examples
    --------
    >>> fig = hp.plots.shrinkage_plot(dt)         # doctest: +SKIP
    >>> fig.savefig("shrinkage.png")              # doctest: +SKIP
    """
    tab = _table(dt_or_table, _shrinkage.shrinkage, "shrinkage_plot", ("raw_mean", "estimate", "n", "rho"),
                 **({} if factor is None else {"factor": factor}))
    plt = _pyplot()
    if ax is None:
        fig, axes = plt.subplots(1, 2, figsize=(11, 4.5), layout="constrained")
    else:
        axes = list(np.atleast_1d(ax).ravel())
        if len(axes) not in (1, 2):
            raise ValueError(f"ax must be one Axes or a sequence of two; got {len(axes)}.")
        fig = axes[0].figure
    raw, est = tab["raw_mean"].to_numpy(float), tab["estimate"].to_numpy(float)
    n = tab["n"].to_numpy(float)
    overall = tab.attrs.get("overall")
    a0 = axes[0]
    lims = [np.nanmin(np.r_[raw, est]), np.nanmax(np.r_[raw, est])]
    a0.plot(lims, lims, ls=":", color="0.5", lw=1, label="no pooling (estimate = raw mean)")
    if overall is not None:
        a0.axhline(overall, ls="--", color="C3", lw=1, label=f"overall mean {overall:.3g}")
    a0.quiver(raw, raw, np.zeros_like(raw), est - raw, angles="xy", scale_units="xy", scale=1,
              color="0.4", alpha=0.6, width=0.003)
    a0.scatter(raw, est, s=_marker_sizes(n), color="C0", alpha=0.8, zorder=3, label="groups (size ~ n)")
    a0.set_xlabel("raw group mean")
    a0.set_ylabel("pooled estimate")
    a0.set_title("Shrinkage toward the overall mean")
    a0.legend(loc="best", fontsize="small")
    if len(axes) == 2:
        a1 = axes[1]
        a1.scatter(n, tab["rho"].to_numpy(float), s=18, color="C0", alpha=0.7, label=r"$\rho_j$ (posterior mean)")
        tau, sigma = tab.attrs.get("tau"), tab.attrs.get("sigma")
        if tau and sigma:  # sigma: gaussian fits only (the exact curve)
            grid = np.geomspace(max(n.min(), 1.0) * 0.8, n.max() * 1.25, 200)
            a1.plot(grid, tau**2 / (tau**2 + sigma**2 / grid), color="C1",
                    label=rf"$\tau^2/(\tau^2+\sigma^2/n)$, $\tau$={tau:.3g}, $\sigma$={sigma:.3g}")
        if n.max() > 2 * max(n.min(), 1.0):
            from matplotlib.ticker import LogLocator, NullFormatter, ScalarFormatter

            a1.set_xscale("log")
            a1.xaxis.set_major_locator(LogLocator(subs=(1.0, 2.0, 5.0)))
            a1.xaxis.set_major_formatter(ScalarFormatter())
            a1.xaxis.set_minor_formatter(NullFormatter())
        a1.set_ylim(-0.02, 1.02)
        a1.set_xlabel("rows in group (n)")
        a1.set_ylabel(r"weight on the group's own data $\rho$")
        a1.set_title("Theory: small groups borrow most")
        a1.legend(loc="lower right", fontsize="small")
    return fig


def _interval_rows(tab: pd.DataFrame, top, ax):
    """The first ``top`` rows of a sorted table and a figure tall enough for one interval per row:
    ``(rows, number of rows before the cut, figure, axes, y positions)``."""
    n_all = len(tab)
    if top is not None:
        if isinstance(top, bool) or not isinstance(top, (int, np.integer)) or top < 1:
            raise ValueError(f"top must be a positive integer or None (every group); got {top!r}.")
        tab = tab.head(int(top))
    if ax is None:
        fig, ax = _pyplot().subplots(figsize=(7, max(2.5, 0.22 * len(tab) + 1)), layout="constrained")
    else:
        fig = ax.figure
    return tab, n_all, fig, ax, np.arange(len(tab))


#: Groups a caterpillar plot shows by default: a readable figure (about 8 inches tall).
CATERPILLAR_TOP = 30


def caterpillar(dt_or_table, top: int | None = CATERPILLAR_TOP, ax=None, **rank_kwargs):
    """Rank intervals per group: the posterior mean rank and its equal-tailed interval, best first.

    Parameters
    ----------
    dt_or_table : xarray.DataTree or pandas.DataFrame
        A fit, or the table returned by :func:`hierpool.rank_groups`.
    top : int or None
        Show the ``top`` groups with the best mean rank (default 30, a readable figure; the title says
        how many of how many are shown). ``None`` draws every group: about 0.22 inch per group.
    ax : matplotlib Axes, optional
    **rank_kwargs
        Passed to :func:`hierpool.rank_groups` when a DataTree is given (``ci_prob``, ``descending``...).

    Returns
    -------
    matplotlib.figure.Figure

    Examples
    --------
    >>> fig = hp.plots.caterpillar(dt, top=20)     # doctest: +SKIP
    """
    tab = _table(dt_or_table, _ranking.rank_groups, "caterpillar", ("group", "rank_mean", "rank_low", "rank_high"),
                 **rank_kwargs)
    tab, n_all, fig, ax, ypos = _interval_rows(tab.sort_values("rank_mean", kind="stable"), top, ax)
    ax.hlines(ypos, tab["rank_low"], tab["rank_high"], color="C0", lw=2, alpha=0.7)
    ax.plot(tab["rank_mean"], ypos, "o", color="C1", ms=4, label="mean rank")
    ax.set_yticks(ypos, tab["group"].astype(str).tolist(), fontsize="small" if len(tab) > 30 else None)
    ax.invert_yaxis()
    ci = tab.attrs.get("ci_prob")
    ax.set_xlabel("rank" + (f" ({ci:.0%} interval)" if ci else ""))
    shown = "" if len(tab) == n_all else f": the best {len(tab)} of {n_all} (top=None shows all)"
    ax.set_title("Posterior ranks of the groups" + shown)
    ax.legend(loc="best", fontsize="small")
    return fig


def ridge_path_plot(dt_or_table, groups=None, n_groups: int = 10, lams=None, ax=None):
    """Group estimates against the ridge penalty (log axis), with the implied penalty and its interval.

    Parameters
    ----------
    dt_or_table : xarray.DataTree or pandas.DataFrame
        A fit, or the table returned by :func:`hierpool.ridge_path`.
    groups : sequence, optional
        Group labels to draw. Default: ``n_groups`` groups spread evenly over the order of their
        estimates at the smallest penalty (their raw means, roughly).
    n_groups : int
        How many groups the default picks.
    lams : array-like, optional
        Passed to :func:`hierpool.ridge_path` when a DataTree is given.
    ax : matplotlib Axes, optional

    Returns
    -------
    matplotlib.figure.Figure

    Examples
    --------
    >>> fig = hp.plots.ridge_path_plot(dt, n_groups=8)   # doctest: +SKIP
    """
    kw = {} if lams is None else {"lams": lams}
    path = _table(dt_or_table, _shrinkage.ridge_path, "ridge_path_plot", ("group", "lam", "estimate"), **kw)
    if groups is None:
        first = path[path["lam"] == path["lam"].min()].sort_values("estimate")
        labels = first["group"].to_numpy()
        pick = np.unique(np.linspace(0, len(labels) - 1, min(n_groups, len(labels))).round().astype(int))
        groups = labels[pick]
    else:
        groups = list(groups)
        unknown = [g for g in groups if g not in set(path["group"])]
        if unknown:
            raise ValueError(f"groups {unknown[:5]} are not groups of this fit.")
    plt = _pyplot()
    if ax is None:
        fig, ax = plt.subplots(figsize=(8, 4.5), layout="constrained")
    else:
        fig = ax.figure
    sub = path[path["group"].isin(groups)]
    colors = plt.get_cmap("viridis")(np.linspace(0.0, 0.9, max(len(groups), 1)))
    for (g, d), color in zip(sub.groupby("group", sort=False), colors, strict=False):
        ax.plot(d["lam"], d["estimate"], lw=1.2, color=color, label=str(g))
    at = path.attrs
    if "implied_lam" in at:
        ax.axvspan(at["implied_lam_low"], at["implied_lam_high"], color="C3", alpha=0.2,
                   label=f"implied lam, {at.get('ci_prob', 0.9):.0%} interval")
        ax.axvline(at["implied_lam"], color="C3", lw=1.5, label=f"implied lam = 1/tau^2 = {at['implied_lam']:.3g}")
    elif "lam" in at:
        ax.axvline(at["lam"], color="C3", lw=1.5, label=f"fit's lam = {at['lam']:.3g}")
    if "overall" in at:
        ax.axhline(at["overall"], ls="--", color="0.4", lw=1, label="overall mean")
    ax.set_xscale("log")
    ax.set_xlabel("ridge penalty lam (prior precision of a group effect)")
    ax.set_ylabel("group estimate")
    ax.set_title("Ridge path: raw means (lam -> 0) to the overall mean (lam -> inf)", fontsize="medium")
    ax.legend(loc="center left", bbox_to_anchor=(1.0, 0.5), fontsize="small")
    return fig


def ppc_plot(result, stats=None, n_lines=50):
    """Plot of a posterior predictive check (see :func:`hierpool.analysis.ppc.ppc_plot`)."""
    from hierpool.analysis.ppc import ppc_plot as _ppc_plot

    return _ppc_plot(result, stats=stats, n_lines=n_lines)


def _profile_table(dt_or_table, **kw) -> pd.DataFrame:
    from hierpool.analysis.profile import profile

    return _table(dt_or_table, profile, "the profile plots", ("group", "estimate", "conf_low", "conf_high", "flag"),
                  **kw)


def funnel_plot(dt, prob: float = 0.95, limits=(0.95, 0.998), ax=None, random_seed: int | None = 0,
                factor: str | None = None):
    """Funnel plot: each group's observed/expected ratio against its expected count, with control limits.

    Two pairs of limits for each probability in ``limits``, both for a group of average risk:

    - **model-based** (solid): the fitted model's predictive spread, group-to-group variation included:
      ``u ~ Normal(0, tau)`` over the posterior draws of tau (ridge fits: ``tau = 1/sqrt(lam)``), then
      ``O ~ Poisson(E exp(u))`` (poisson) or ``O ~ Binomial(n, expit(logit(r) + u))`` (logit link, with
      ``r`` the overall rate and ``n = E / r`` trials), simulated.
    - **sampling-only** (dashed): the classic funnel of Spiegelhalter (2005), ``O ~ Poisson(E)`` or
      ``Binomial(n, r)``, which ignores the variation between groups and so flags many groups once
      volumes are large.

    Groups that :func:`hierpool.profile` flags at ``prob`` (posterior probability, not the limits) are
    marked: worse in red, better in blue. Gaussian fits plot the observed minus expected mean against
    the group size, with ``sigma^2 / n`` (sampling) and ``sigma^2 / n + tau^2`` (model) variances;
    summary-level fits (``hp.prepare(..., se=)``) against each estimate's standard error, with ``se^2``
    and ``se^2 + tau^2`` (the meta-analysis funnel, drawn on a log axis).

    Returns
    -------
    matplotlib.figure.Figure
    """
    from scipy import stats

    from hierpool.analysis.fitview import as_fit, select_factor

    dt = select_factor(dt, factor)  # a fit with several grouping factors: the one to plot (default: first)
    view = as_fit(dt)
    tab = _profile_table(dt, prob=prob)
    post = view.post
    tau = (post[N.TAU].values.reshape(-1) if N.TAU in post
           else np.full(1, 1.0 / np.sqrt(view.lam)) if view.lam else np.zeros(1))
    rng = np.random.default_rng(random_seed)
    plt = _pyplot()
    if ax is None:
        fig, ax = plt.subplots(figsize=(7, 4.5), layout="constrained")
    else:
        fig = ax.figure
    gaussian = view.fam.link_name == "identity"
    summary = view.summary_level  # one estimate per group with a known se: the classic meta-analysis funnel
    x = (view.se_by_group() if summary else tab["n"].to_numpy(float)) if gaussian else tab["expected"].to_numpy(float)
    y = tab["oe_difference" if gaussian else "oe_ratio"].to_numpy(float)
    grid = np.geomspace(max(x.min(), 1e-3), x.max(), 60)
    center = 0.0 if gaussian else 1.0
    tau_draws = rng.choice(tau, 4000)
    z_draws = rng.normal(0.0, 1.0, (1, 4000))  # the same standard normals at every point: smooth limits
    rate = float(np.clip(tab.attrs["overall"], 1e-9, 1 - 1e-9))
    sigma = float(post[N.SIGMA].mean()) if gaussian and N.SIGMA in post else 1.0
    for k, p in enumerate(limits):
        q = ((1 - p) / 2, 1 - (1 - p) / 2)
        if gaussian:
            z = stats.norm.ppf(q[1])
            se_grid = grid if summary else sigma / np.sqrt(grid)  # the sampling SD at each x
            samp = z * se_grid
            model = z * np.sqrt(se_grid**2 + np.mean(tau_draws**2))
            pairs = ((-samp, samp), (-model, model))
        elif view.fam.link_name == "log":
            samp = [stats.poisson.ppf(qq, grid) / grid for qq in q]
            sims = rng.poisson(grid[:, None] * np.exp(z_draws * tau_draws[None, :]))
            model = [np.quantile(sims, qq, axis=1) / grid for qq in q]
            pairs = ((samp[0], samp[1]), (model[0], model[1]))
        else:  # logit link: trials n = E / rate at the overall rate; the group effect shifts the log-odds
            trials = np.maximum(np.round(grid / rate), 1)
            samp = [stats.binom.ppf(qq, trials, rate) / grid for qq in q]
            p_u = 1.0 / (1.0 + np.exp(-(np.log(rate / (1 - rate)) + z_draws * tau_draws[None, :])))
            sims = rng.binomial(trials[:, None].astype(np.int64), p_u)
            model = [np.quantile(sims, qq, axis=1) / grid for qq in q]
            pairs = ((samp[0], samp[1]), (model[0], model[1]))
        style = dict(color="0.35", lw=1.0, alpha=0.9 if k == 0 else 0.6)
        for lo_hi, ls, label in ((pairs[0], "--", "sampling only"), (pairs[1], "-", "model (tau + sampling)")):
            ax.plot(grid, lo_hi[0], ls=ls, **style, label=f"{label}, {p:.1%}")
            ax.plot(grid, lo_hi[1], ls=ls, **style)
    ax.axhline(center, color="0.6", lw=0.8)
    colors = np.where(tab["flag"] == "worse", "C3", np.where(tab["flag"] == "better", "C0", "0.55"))
    ax.scatter(x, y, s=_marker_sizes(tab["n"].to_numpy()), c=colors, alpha=0.8, edgecolors="none", zorder=3)
    ax.set_xscale("log")
    ax.set_xlabel(("standard error se" if summary else "group size n") if gaussian else "expected count E (log scale)")
    ax.set_ylabel("observed - expected mean" if gaussian else "observed / expected (O/E)")
    ax.set_title(f"Funnel plot: red worse, blue better at P >= {prob:g}")
    ax.legend(fontsize="x-small", loc="best")
    return fig


def profile_caterpillar(dt_or_table, top: int | None = CATERPILLAR_TOP, ax=None, **profile_kwargs):
    """Risk-standardized ratios (gaussian: differences) with their intervals, ordered by estimate,
    worst first; flagged groups coloured (red worse, blue better). ``top`` as in :func:`caterpillar`.

    Returns
    -------
    matplotlib.figure.Figure
    """
    tab = _profile_table(dt_or_table, **profile_kwargs).sort_values("estimate", ascending=False, kind="stable")
    tab, n_all, fig, ax, ypos = _interval_rows(tab, top, ax)
    colors = np.where(tab["flag"] == "worse", "C3", np.where(tab["flag"] == "better", "C0", "0.45"))
    ax.hlines(ypos, tab["conf_low"], tab["conf_high"], colors=colors, lw=2, alpha=0.7)
    ax.scatter(tab["estimate"], ypos, c=colors, s=14, zorder=3)
    ax.axvline(0.0 if tab.attrs.get("measure") == "rs_difference" else 1.0, color="0.6", lw=0.8)
    ax.set_yticks(ypos, tab["group"].astype(str).tolist(), fontsize="small" if len(tab) > 30 else None)
    ax.invert_yaxis()
    measure = "risk-standardized difference" if tab.attrs.get("measure") == "rs_difference" else "risk-standardized ratio"
    ax.set_xlabel(measure + (f" ({tab.attrs['ci_prob']:.0%} interval)" if "ci_prob" in tab.attrs else ""))
    shown = "" if len(tab) == n_all else f": {len(tab)} of {n_all}, worst first"
    ax.set_title("Profile" + shown)
    return fig


def eb_vs_full_bayes(table_or_fits, full_bayes=None, ci_prob: float = 0.9):
    """Empirical Bayes against full Bayes: interval widths by group size, and the plug-in tau against
    tau's posterior.

    Takes the table of :func:`hierpool.eb_vs_full_bayes`, or the two fits (``eb_vs_full_bayes(eb, fb)``).
    Left: each group's interval-width ratio (EB over full Bayes) against its size; below 1 means the
    plug-in interval is narrower. Right: each group's effect estimated both ways, on the identity line
    when they agree. The title states tau's plug-in value and its posterior interval.

    Returns
    -------
    matplotlib.figure.Figure
    """
    from hierpool.analysis.methods import eb_vs_full_bayes as _table_fn

    if isinstance(table_or_fits, pd.DataFrame):
        tab = _table(table_or_fits, _table_fn, "eb_vs_full_bayes", ("n", "width_ratio", "estimate_eb", "estimate_fb"))
    elif full_bayes is None:
        raise TypeError("eb_vs_full_bayes takes the table of hp.eb_vs_full_bayes, or the two fits: "
                        "eb_vs_full_bayes(eb_fit, full_bayes_fit).")
    else:
        tab = _table_fn(table_or_fits, full_bayes, ci_prob=ci_prob)
    plt = _pyplot()
    fig, (a1, a2) = plt.subplots(1, 2, figsize=(10, 4), layout="constrained")
    a1.scatter(tab["n"], tab["width_ratio"], s=14, alpha=0.6, edgecolors="none")
    a1.axhline(1.0, color="0.5", lw=0.8)
    a1.set_xscale("log")
    a1.set_xlabel("group size n (log scale)")
    a1.set_ylabel("interval width: empirical / full Bayes")
    lo = float(min(tab["estimate_eb"].min(), tab["estimate_fb"].min()))
    hi = float(max(tab["estimate_eb"].max(), tab["estimate_fb"].max()))
    a2.plot([lo, hi], [lo, hi], color="0.5", lw=0.8)
    a2.scatter(tab["estimate_fb"], tab["estimate_eb"], s=14, alpha=0.6, edgecolors="none")
    a2.set_xlabel("group effect, full Bayes (posterior mean)")
    a2.set_ylabel("group effect, empirical Bayes")
    at = tab.attrs
    if "tau_eb" in at:
        fig.suptitle(f"tau plug-in {at['tau_eb']:.3g}; posterior mean {at['tau_fb']:.3g} "
                     f"[{at['ci_prob']:.0%}: {at['tau_fb_low']:.3g}, {at['tau_fb_high']:.3g}], "
                     f"P(tau < plug-in) = {at['p_tau_below_eb']:.2f}")
    return fig
