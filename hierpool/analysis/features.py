"""Group features for a next-stage model, computed from a fit's DataTree alone.

A row's group carries its posterior into a next-stage model (a scikit-learn classifier, say) through a few
numbers per group. :func:`group_features` computes them for every group of a fit, together with the
features of a group the fit has never seen (the population's), and :func:`row_features` hands each row the
features of its group. :class:`hierpool.GroupEncoder` (workflow layer) fits the models and calls these.

========================  ==============================================================================
feature                   definition (posterior of the fit; ``S`` draws; ``J`` groups)
========================  ==============================================================================
``effect_mean``           posterior mean of ``group_effect``: the group's deviation on the linear-predictor
                          scale (log-odds for bernoulli), before the link
``effect_sd``             its posterior standard deviation
``estimate``              posterior mean of the group's mean response at the average predictor values,
                          natural scale (a probability for bernoulli): ``inverse_link(intercept at the
                          predictors' means + group_effect)``
``rank_pct``              posterior mean of the group's rank percentile ``(J - rank) / (J - 1)``, rank 1 =
                          the largest effect: 1 is the top group, 0 the bottom one, 0.5 the middle
``rank_pct_width``        width of its equal-tailed ``ci_prob`` interval, on the same 0-1 scale:
                          ``(rank_high - rank_low) / (J - 1)``
``p_top_k``               posterior probability that the group is among the ``top_k`` largest effects
``n``                     the group's number of rows in the fit
========================  ==============================================================================

**A group the fit has not seen** gets the population's features: ``effect_mean`` 0 and ``effect_sd``
``sqrt(E[tau^2])`` (the posterior predictive SD of a new group's effect; ``1/sqrt(lam)`` for a ridge fit,
which has no tau), ``estimate`` the posterior mean of ``inverse_link(intercept + u)`` with ``u ~ Normal(0,
tau)`` (exact Gauss-Hermite quadrature per draw), ``n`` 0, and the rank features of a draw from the
population: a group drawn from the fitted population is equally likely to land at any rank, so
``rank_pct`` 0.5, ``rank_pct_width`` ``ci_prob`` and ``p_top_k`` ``top_k / J``.

The rank features come from :func:`hierpool.rank_groups` (one compiled pass over the draws, bounded memory);
the others from one pass over chunks of groups.
"""

from __future__ import annotations

from numbers import Integral, Real

import numpy as np
import pandas as pd
import xarray as xr

from hierpool.analysis.fitview import as_fit
from hierpool.analysis.predict import new_group_sd
from hierpool.analysis.ranking import rank_groups
from hierpool.core import config
from hierpool.core import names as N
from hierpool.core.families import get_family
from hierpool.core.validate import probability

__all__ = ["FEATURES", "group_features", "row_features", "check_features", "top_k_count"]

#: The features, in the order they are returned.
FEATURES = ("effect_mean", "effect_sd", "estimate", "rank_pct", "rank_pct_width", "p_top_k", "n")
_RANKED = ("rank_pct", "rank_pct_width", "p_top_k")
_QUADRATURE_NODES = 40  # Gauss-Hermite nodes for a new group's estimate: exact to ~1e-12 for logit/log links


def check_features(features) -> tuple[str, ...]:
    """``features`` as a tuple in :data:`FEATURES` order; ``"all"`` means every feature."""
    if isinstance(features, str):
        features = FEATURES if features == "all" else (features,)
    try:
        chosen = list(features)
    except TypeError:
        raise TypeError(f"features must be 'all' or a sequence of names from {FEATURES}; got {features!r}.") from None
    bad = [f for f in chosen if not isinstance(f, str) or f not in FEATURES]
    if bad or not chosen:
        raise ValueError(f"features={features!r} is not valid; valid choices: 'all' or a non-empty sequence of "
                         f"{', '.join(repr(f) for f in FEATURES)}.")
    return tuple(f for f in FEATURES if f in chosen)


def top_k_count(top_k, n_groups: int, clip: bool = False) -> int:
    """The number of top groups: ``top_k`` itself (an integer from 1 to ``n_groups``), or a fraction in
    (0, 1) of the groups, rounded (at least 1). A count above ``n_groups`` is refused (as
    :func:`hierpool.rank_groups` refuses it), or with ``clip`` taken as ``n_groups`` (the fits of
    :class:`hierpool.GroupEncoder`'s folds, which hold fewer groups than the data it was given)."""
    if isinstance(top_k, bool) or not isinstance(top_k, Real):
        raise TypeError(f"top_k must be a fraction in (0, 1) or an integer >= 1; got {top_k!r}.")
    if isinstance(top_k, Integral) or float(top_k).is_integer() and top_k >= 1:
        if top_k < 1:
            raise ValueError(f"top_k must be a fraction in (0, 1) or an integer >= 1; got {top_k!r}.")
        if int(top_k) > n_groups and not clip:
            raise ValueError(f"top_k={top_k!r} is out of range: a count of top groups must be from 1 to the number "
                             f"of groups ({n_groups}), or give a fraction in (0, 1).")
        return int(min(int(top_k), n_groups))
    if not 0.0 < float(top_k) < 1.0:
        raise ValueError(f"top_k must be a fraction in (0, 1) or an integer >= 1; got {top_k!r}.")
    return max(1, int(round(float(top_k) * n_groups)))


def _population_estimate(family: str, iac: np.ndarray, sd: np.ndarray) -> float:
    """Posterior mean of ``inverse_link(iac + u)``, ``u ~ Normal(0, sd)`` per draw (Gauss-Hermite)."""
    fam = get_family(family)
    if fam.link_name == "identity":
        return float(np.mean(iac))
    x, w = np.polynomial.hermite.hermgauss(_QUADRATURE_NODES)
    vals = fam.inverse_link(iac[:, None] + np.sqrt(2.0) * sd[:, None] * x[None, :]) @ (w / np.sqrt(np.pi))
    return float(np.mean(vals))


def group_features(dt: xr.DataTree, features="all", *, ci_prob: float = 0.9, top_k=0.1,
                   max_draws: int = 1000, clip_top_k: bool = False) -> tuple[pd.DataFrame, pd.Series]:
    """The features of every group of a fit, and those of a group it has not seen.

    Parameters
    ----------
    dt : xarray.DataTree
        A fit of any variant and family (:func:`hierpool.fit`).
    features : "all" or sequence of str
        Which of :data:`FEATURES` (module docstring) to compute.
    ci_prob : float
        Probability of the rank interval behind ``rank_pct_width``, in (0, 1).
    top_k : float or int
        ``p_top_k`` is the probability of being among the ``top_k`` largest effects: a fraction in (0, 1)
        of the groups (default 0.1, rounded, at least 1) or a count (at most the fit's groups).
    max_draws : int
        Draws kept for the rank quantiles (:func:`hierpool.rank_groups`).
    clip_top_k : bool
        Take a count above the fit's groups as all of them instead of refusing it (:func:`top_k_count`).

    Returns
    -------
    table : pandas.DataFrame
        Indexed by group label (the fit's group order), one column per feature.
    population : pandas.Series
        The features of a group not in the fit (module docstring).

    Examples
    --------
    >>> table, population = group_features(dt, ["effect_mean", "effect_sd", "n"])  # doctest: +SKIP
    """
    features = check_features(features)
    ci_prob = probability("ci_prob", ci_prob)
    view = as_fit(dt)
    J = view.n_groups
    k = top_k_count(top_k, J, clip=clip_top_k)
    post = view.post
    S = post.sizes["chain"] * post.sizes["draw"]
    cols: dict[str, np.ndarray] = {}
    if {"effect_mean", "effect_sd", "estimate"} & set(features):
        iac = np.asarray(view.intercept_at_center().transpose(*N.SAMPLE_DIMS).values, dtype=float).reshape(-1)
        mean, sd, est = np.empty(J), np.empty(J), np.empty(J)
        ge = post[N.GROUP_EFFECT].transpose(*N.SAMPLE_DIMS, N.GROUP)
        for sl in config.slices(J, S):
            u = np.asarray(ge.isel({N.GROUP: sl}).values, dtype=float).reshape(S, -1)
            mean[sl] = u.mean(axis=0)
            sd[sl] = u.std(axis=0, ddof=1) if S > 1 else 0.0
            if "estimate" in features:
                est[sl] = view.fam.inverse_link(iac[:, None] + u).mean(axis=0)
        cols.update(effect_mean=mean, effect_sd=sd, estimate=est)
    if set(_RANKED) & set(features):
        ranks = rank_groups(dt, descending=True, ci_prob=ci_prob, top_k=k, by="effect", max_draws=max_draws)
        ranks = ranks.set_index("group").reindex(view.groups.to_numpy())
        scale = max(J - 1, 1)
        cols["rank_pct"] = (J - ranks["rank_mean"].to_numpy()) / scale
        cols["rank_pct_width"] = (ranks["rank_high"].to_numpy() - ranks["rank_low"].to_numpy()) / scale
        cols["p_top_k"] = ranks["p_top_k"].to_numpy()
    cols["n"] = view.group_n.values.astype(float)
    table = pd.DataFrame({f: cols[f] for f in features}, index=pd.Index(view.groups.to_numpy(), name=N.GROUP))

    new_sd = new_group_sd(view, warn=False)  # (S,) tau per draw, or the ridge's fixed 1/sqrt(lam)
    pop = {"effect_mean": 0.0, "effect_sd": float(np.sqrt(np.mean(new_sd**2))), "rank_pct": 0.5,
           "rank_pct_width": ci_prob, "p_top_k": k / J, "n": 0.0}
    if "estimate" in features:
        pop["estimate"] = _population_estimate(view.family, iac, new_sd)
    population = pd.Series({f: pop[f] for f in features}, dtype=float, name="population")
    table.attrs.update(ci_prob=ci_prob, top_k=k, n_draws=int(S))
    return table, population


def row_features(table: pd.DataFrame, population: pd.Series, labels) -> np.ndarray:
    """The features of each row's group (rows of groups not in ``table`` get ``population``): (rows, features).

    ``labels`` are the rows' group labels, compared with ``table.index`` by value (as ``pandas.Index``
    does: ``1`` and ``1.0`` are one label, ``"1"`` another).
    """
    idx = table.index.get_indexer(pd.Index(np.asarray(labels, dtype=object), dtype=object))
    values = np.vstack([table.to_numpy(dtype=float), population.to_numpy(dtype=float)[None, :]])
    return values[np.where(idx >= 0, idx, len(table))]
