"""Provider profiling: observed against expected, risk-standardized ratios and flags backed by a stated
posterior probability (issue 14).

For group j with rows i (hospital episodes of a hospital, say), from each posterior draw s:

- ``expected_j = sum_i E[y_i | intercept, x_i beta]``: the outcome the group's case mix predicts for an
  average group (group effect 0), on the natural scale: sum of probabilities (bernoulli), of
  ``trials x probability`` (binomial), of ``exposure x rate`` (poisson); for gaussian the mean of the
  rows' predicted means.
- ``predicted_j``: the same with the group's own effect added.
- ``rs_ratio = predicted_j / expected_j`` (counts): the risk-standardized ratio as the CMS hospital
  measures define it ("predicted over expected"; multiply by the overall rate for a risk-standardized
  rate). For gaussian, ``rs_difference = predicted_j - expected_j`` instead, in response units.
- ``oe_ratio = observed_j / expected_j`` (observed against the posterior mean of expected): the raw,
  unshrunk ratio that funnel plots show; for gaussian ``oe_difference``.
- ``p_worse = P(rs_ratio > 1 + margin)`` and ``p_better = P(rs_ratio < 1 / (1 + margin))`` (gaussian:
  ``> margin`` and ``< -margin``), posterior probabilities; ``flag`` is "worse" or "better" where that
  probability is at least ``prob``, else "as expected". ``higher_is_worse=False`` swaps the directions
  (an outcome such as survival).

The table uses broom's vocabulary: ``estimate`` is the posterior mean of ``rs_ratio`` (or difference),
``conf_low``/``conf_high`` its equal-tailed interval. Memory stays within the budget of
:mod:`hierpool.core.config`: groups are processed in chunks, rows sorted by group once.
"""

from __future__ import annotations

from numbers import Real

import numpy as np
import pandas as pd
import xarray as xr

from hierpool.analysis.fitview import FitView, as_fit, select_factor
from hierpool.core import config
from hierpool.core import names as N
from hierpool.core.validate import positive_int, probability
from hierpool.inference.predictive import other_factor_effects

__all__ = ["profile", "expected_and_predicted"]


def _draw_index(view: FitView, max_draws: int) -> np.ndarray:
    S = view.post.sizes["chain"] * view.post.sizes["draw"]
    if S <= max_draws:
        return np.arange(S)
    return np.unique(np.linspace(0, S - 1, max_draws).round().astype(np.int64))


def expected_and_predicted(dt: xr.DataTree, max_draws: int = 1000, factor: str | None = None
                           ) -> tuple[np.ndarray, np.ndarray, pd.Index]:
    """Draws of each group's expected and predicted outcome, arrays (draws x groups), and the groups.

    Counts: totals over the group's rows (events, or trials x probability, or exposure x rate);
    gaussian: means over the group's rows. At most ``max_draws`` posterior draws, evenly spaced.
    """
    dt = select_factor(dt, factor)
    view = as_fit(dt)
    const = view.const
    if N.GROUP_IDX not in const:
        raise ValueError("hp.profile needs the fit's rows (constant_data 'group_idx'); this fit was made from "
                         "sufficient statistics (hp.prepare of Dask or files), which keep no rows.")
    keep = _draw_index(view, positive_int("max_draws", max_draws))
    post = view.post
    flat = lambda v: post[v].transpose(*N.SAMPLE_DIMS, ...).values.reshape(-1, *post[v].shape[2:])[keep]  # noqa: E731
    a = flat(N.INTERCEPT).astype(float)
    gidx = const[N.GROUP_IDX].values.astype(np.int64)
    J = view.n_groups
    order = np.argsort(gidx, kind="stable")
    starts = np.searchsorted(gidx[order], np.arange(J + 1))
    X = const[N.X].transpose(N.OBS, N.PREDICTOR).values if N.X in const and N.BETA in post else None
    beta = flat(N.BETA).astype(float) if X is not None else None
    offset = np.log(const[N.EXPOSURE].values) if N.EXPOSURE in const else None
    trials = const[N.TRIALS].values.astype(float) if N.TRIALS in const else None
    u = view.group_effect_matrix()
    u = (u[keep] if u is not None else flat(N.GROUP_EFFECT)).astype(float)
    extra = other_factor_effects(post, const)  # several grouping factors: the others' effects per row
    if extra is not None:
        extra = extra.transpose(*N.SAMPLE_DIMS, N.OBS).values.reshape(-1, gidx.shape[0])[keep]
    expected = np.empty((keep.size, J))
    predicted = np.empty((keep.size, J))
    n_rows = np.diff(starts)
    per_group = max(1, int(np.ceil(n_rows.mean()))) * keep.size
    for sl in config.slices(J, per_group):
        rows = order[starts[sl.start]:starts[sl.stop]]
        local = gidx[rows] - sl.start
        eta0 = np.broadcast_to(a[:, None], (keep.size, rows.size)).copy()
        if X is not None:
            eta0 += beta @ X[rows].T
        if offset is not None:
            eta0 += offset[rows]
        if extra is not None:
            eta0 += extra[:, rows]
        eta1 = eta0 + u[:, sl][:, local]
        mu0 = np.asarray(view.fam.inverse_link(eta0))
        mu1 = np.asarray(view.fam.inverse_link(eta1))
        if trials is not None:
            mu0, mu1 = mu0 * trials[rows], mu1 * trials[rows]
        bounds = starts[sl.start:sl.stop] - starts[sl.start]
        nonempty = n_rows[sl] > 0
        e = np.add.reduceat(mu0, bounds[nonempty], axis=1) if rows.size else np.zeros((keep.size, 0))
        p = np.add.reduceat(mu1, bounds[nonempty], axis=1) if rows.size else np.zeros((keep.size, 0))
        ex = np.zeros((keep.size, sl.stop - sl.start))
        pr = np.zeros_like(ex)
        ex[:, nonempty], pr[:, nonempty] = e, p
        if view.fam.link_name == "identity":  # means, not totals: differences of response units
            ex, pr = ex / np.maximum(n_rows[sl], 1), pr / np.maximum(n_rows[sl], 1)
        expected[:, sl], predicted[:, sl] = ex, pr
    return expected, predicted, view.groups


def profile(
    dt: xr.DataTree,
    prob: float = 0.95,
    margin: float = 0.0,
    *,
    ci_prob: float = 0.95,
    higher_is_worse: bool = True,
    max_draws: int = 1000,
    factor: str | None = None,
) -> pd.DataFrame:
    """Profile every group: observed and expected outcome, risk-standardized ratio, P(worse), a flag.

    Random-slopes fits (``(1 + x | g)``): uses the intercept deviations ``group_effect`` (and ``tau``)
    only; the slope deviations ``group_slope`` are not included (at a group's x, see :func:`hierpool.predict`).

    Parameters
    ----------
    dt : xarray.DataTree
        A fit of any variant and family, with its rows (constant_data).
    prob : float
        A group is flagged "worse" ("better") when the posterior probability of a worse (better) ratio
        than ``1 + margin`` (``1 / (1 + margin)``) is at least ``prob``.
    margin : float
        The relative excess that counts as worse, >= 0 (gaussian: an absolute difference in response units).
    ci_prob : float
        Probability of the equal-tailed interval ``conf_low``/``conf_high``.
    higher_is_worse : bool
        True when a higher outcome is worse (readmissions, deaths); False for outcomes such as survival.
    max_draws : int
        At most this many posterior draws, evenly spaced, enter the ratios.
    factor : str, optional
        A fit with several grouping factors (crossed or nested): the factor to analyse, by name (e.g.
        ``"hospital"``, ``"hospital:ward"``); default the first. The other factors' effects stay in each
        training row's linear predictor; the chosen factor's group-level estimates are at the other
        factors' average level (effect 0). See :func:`hierpool.analysis.fitview.select_factor`.

    Returns
    -------
    pandas.DataFrame
        One row per group, in the fit's group order: ``group``, ``n``, ``observed``, ``expected``,
        ``oe_ratio``, ``estimate`` (posterior mean of ``rs_ratio``), ``std_error``, ``conf_low``,
        ``conf_high``, ``p_worse``, ``p_better``, ``flag``; for gaussian ``oe_difference`` and the
        difference in place of the ratios. ``attrs`` hold ``prob``, ``margin``, ``ci_prob``, ``measure``
        ("rs_ratio" or "rs_difference") and ``overall`` (the overall observed rate or mean).

    Examples
    --------
    >>> tab = hp.profile(dt, prob=0.95)                # doctest: +SKIP
    >>> tab[tab.flag == "worse"]                        # doctest: +SKIP
    """
    prob = probability("prob", prob)
    ci_prob = probability("ci_prob", ci_prob)
    if isinstance(margin, bool) or not isinstance(margin, Real) or not np.isfinite(margin) or margin < 0:
        raise ValueError(f"margin must be a finite number >= 0; got {margin!r}.")
    if not isinstance(higher_is_worse, (bool, np.bool_)):
        raise TypeError(f"higher_is_worse must be True or False; got {higher_is_worse!r}.")
    dt = select_factor(dt, factor)
    view = as_fit(dt)
    expected, predicted, groups = expected_and_predicted(dt, max_draws=max_draws)
    n = view.group_n.values.astype(np.int64)
    gaussian = view.fam.link_name == "identity"
    raw = view.raw_mean.values.astype(float)
    denom = view.const[N.GROUP_DENOM].values.astype(float) if N.GROUP_DENOM in view.const else n.astype(float)
    observed = raw if gaussian else raw * denom  # group mean (gaussian) or total events / counts
    e_mean = expected.mean(axis=0)
    if gaussian:
        stat = predicted - expected
        oe = observed - e_mean
        worse, better = stat > margin, stat < -margin
        measure, oe_name = "rs_difference", "oe_difference"
    else:
        with np.errstate(divide="ignore", invalid="ignore"):
            stat = predicted / expected
            oe = observed / e_mean
        worse, better = stat > 1.0 + margin, stat < 1.0 / (1.0 + margin)
        measure, oe_name = "rs_ratio", "oe_ratio"
    if not higher_is_worse:
        worse, better = better, worse
    p_worse, p_better = worse.mean(axis=0), better.mean(axis=0)
    tail = (1.0 - ci_prob) / 2
    lo, hi = np.quantile(stat, [tail, 1.0 - tail], axis=0)
    flag = np.where(p_worse >= prob, "worse", np.where(p_better >= prob, "better", "as expected"))
    tab = pd.DataFrame({
        "group": groups.to_numpy(), "n": n, "observed": observed, "expected": e_mean, oe_name: oe,
        "estimate": stat.mean(axis=0), "std_error": stat.std(axis=0, ddof=1) if stat.shape[0] > 1 else np.nan,
        "conf_low": lo, "conf_high": hi, "p_worse": p_worse, "p_better": p_better, "flag": flag,
    })
    overall = float((raw * denom).sum() / denom.sum())
    tab.attrs.update(prob=prob, margin=float(margin), ci_prob=ci_prob, measure=measure, overall=overall,
                     family=view.family, n_draws=int(stat.shape[0]))
    return tab
