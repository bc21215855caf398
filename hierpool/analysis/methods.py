"""Empirical Bayes beside full Bayes on the same data: :func:`eb_vs_full_bayes`.

The question it answers: *is random-effects shrinkage the same as empirical Bayes?* Nearly: both shrink
each group toward the population by the same formula, but a mixed model (and ``hp.fit(...,
method="empirical_bayes")``) plugs in one estimate of tau, while full Bayes integrates over tau's
posterior. Where tau is well determined (many groups, tau away from zero) the two agree; where it is not,
plug-in intervals are narrower and under-cover (``validation/eb_coverage.py`` measures it).
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from hierpool.analysis.fitview import as_fit
from hierpool.core import kernels as K
from hierpool.core import names as N
from hierpool.core.validate import probability

__all__ = ["eb_vs_full_bayes"]


def _effect_summary(view, ci_prob: float):
    mat = view.group_effect_matrix()
    if mat is None:  # a lazy posterior: read it into memory (summaries per group need every draw)
        mat = np.asarray(view.post[N.GROUP_EFFECT].transpose(*N.SAMPLE_DIMS, N.GROUP).values, dtype=float).reshape(
            -1, view.n_groups)
    lo, hi = K.column_quantiles(mat, [((1.0 - ci_prob) / 2.0, "linear"), ((1.0 + ci_prob) / 2.0, "linear")])
    return mat.mean(axis=0), mat.std(axis=0), lo, hi


def eb_vs_full_bayes(empirical_bayes, full_bayes, ci_prob: float = 0.9) -> pd.DataFrame:
    """Group effects of an empirical-Bayes fit and a full-Bayes fit of the same data, side by side.

    Parameters
    ----------
    empirical_bayes : xarray.DataTree
        ``hp.fit(model, method="empirical_bayes")``.
    full_bayes : xarray.DataTree
        ``hp.fit(model)`` of the same model and data.
    ci_prob : float
        Probability of the central intervals.

    Returns
    -------
    pandas.DataFrame
        One row per group (the fits' order): ``group``, ``n``; ``estimate_eb``, ``std_error_eb``,
        ``conf_low_eb``, ``conf_high_eb`` (the conditional mean, sd and interval of the group effect given
        the plug-in estimates: lme4's ``ranef`` and ``condVar`` for gaussian); the same with ``_fb`` (the
        posterior's); ``width_ratio`` (EB interval width over full Bayes'). ``attrs`` hold the plug-in
        ``tau_eb``, the posterior mean ``tau_fb`` with its interval (``tau_fb_low``, ``tau_fb_high``),
        ``p_tau_below_eb`` (posterior probability that tau is below the plug-in value) and ``ci_prob``.

    Examples
    --------
    >>> m = hp.random_intercepts(df, y="y", group="group")                          # doctest: +SKIP
    >>> tab = hp.eb_vs_full_bayes(hp.fit(m, method="empirical_bayes"), hp.fit(m))   # doctest: +SKIP
    >>> tab["width_ratio"].median()   # below 1: plug-in intervals are narrower       # doctest: +SKIP
    """
    ci_prob = probability("ci_prob", ci_prob)
    eb = as_fit(empirical_bayes, "empirical_bayes")
    fb = as_fit(full_bayes, "full_bayes")
    got = (eb.dt.attrs.get(N.ATTR_METHOD, "full_bayes"), fb.dt.attrs.get(N.ATTR_METHOD, "full_bayes"))
    if got != ("empirical_bayes", "full_bayes"):
        raise ValueError(f"empirical_bayes and full_bayes must be fits with method='empirical_bayes' and the "
                         f"default method='full_bayes'; got methods {got}.")
    if not eb.groups.equals(fb.groups):
        raise ValueError(f"the two fits have different groups ({eb.n_groups} and {fb.n_groups}, or another "
                         "order): fit the same model and data twice.")
    if N.TAU not in eb.post or N.TAU not in fb.post:
        raise ValueError("both fits must estimate tau (random_intercepts or regularized_hierarchical).")
    m1, s1, lo1, hi1 = _effect_summary(eb, ci_prob)
    m2, s2, lo2, hi2 = _effect_summary(fb, ci_prob)
    with np.errstate(divide="ignore", invalid="ignore"):
        ratio = (hi1 - lo1) / (hi2 - lo2)
    tab = pd.DataFrame({
        "group": eb.groups, "n": eb.group_n.values.astype(int),
        "estimate_eb": m1, "std_error_eb": s1, "conf_low_eb": lo1, "conf_high_eb": hi1,
        "estimate_fb": m2, "std_error_fb": s2, "conf_low_fb": lo2, "conf_high_fb": hi2,
        "width_ratio": ratio,
    })
    tau_eb = float(eb.post[N.TAU].values.reshape(-1)[0])
    tau = fb.post[N.TAU].values.reshape(-1)
    tab.attrs.update(tau_eb=tau_eb, tau_fb=float(tau.mean()),
                     tau_fb_low=float(np.quantile(tau, (1 - ci_prob) / 2)),
                     tau_fb_high=float(np.quantile(tau, (1 + ci_prob) / 2)),
                     p_tau_below_eb=float(np.mean(tau < tau_eb)), ci_prob=ci_prob)
    return tab
