"""Exact collapsed likelihoods: what the sampler needs after one pass over the rows.

Gaussian random intercepts (any variant: tau sampled, shrunk, or fixed at 1/sqrt(lam))
----------------------------------------------------------------------------------------
Integrating ``u_j ~ Normal(0, tau)`` out of ``y_ij = a + x_ij b + u_j + e_ij`` gives, for group j with
``n_j`` rows, mean residual ``e_j = ybar_j - a - xbar_j b`` and ``d_j = sigma^2 + n_j tau^2``::

    log p(y | a, b, tau, sigma) = -N/2 log(2 pi) - (N - J) log sigma - 1/2 sum_j log d_j
                                  - W(b) / (2 sigma^2) - 1/2 sum_j n_j e_j^2 / d_j

with the within-group sum of squares ``W(b) = Syy_w - 2 b'Sxy_w + b'Sxx_w b`` built from within-group
centered cross-products. So the data enter only through ``n_j``, ``ybar_j``, ``xbar_j`` (J x P) and three
global within-group cross-products, and each gradient costs O(J P). After sampling, the group effects are
drawn from their exact conditional normal::

    u_j | a, b, tau, sigma, y ~ Normal(n_j tau^2 e_j / d_j,  sigma^2 tau^2 / d_j)

so the posterior holds ``group_effect`` exactly as the full model's does (same joint distribution).

Summary-level gaussian data (one estimate per group with a known standard error)
----------------------------------------------------------------------------------
With ``y_j ~ Normal(a + x_j b + u_j, se_j)``, ``se_j`` known (``hp.prepare(..., se=)``), integrating
``u_j ~ Normal(0, tau)`` out gives independent marginals ``y_j ~ Normal(a + x_j b, sqrt(tau^2 + se_j^2))``
(:func:`known_se_marginal_logp`), and the conditional draw afterwards is the formula above with
``n_j = 1`` and ``sigma = se_j``: ``u_j | ... ~ Normal(tau^2 e_j / d_j, se_j tau / sqrt(d_j))``,
``d_j = tau^2 + se_j^2``. The sampler sees only ``a``, ``b`` and ``tau``: no funnel between tau and the
effects, which is what makes the non-centered eight schools diverge now and then (measured in
:func:`hierpool.random_intercepts`' docstring). ``collapse=False`` keeps the effects in the sampled
model (non-centered, ``pm.Normal(..., sigma=se)``).

Counts (bernoulli, binomial, poisson)
-------------------------------------
Rows that share a group and a predictor pattern have the same linear predictor, so their likelihood is
that of one binomial count (successes and trials summed; bernoulli rows are binomial rows with one
trial) or one Poisson count (counts and exposures summed). The collapsed likelihood differs from the
row-level one only by the constant ``sum log C(trials, y)`` (binomial) or ``sum log(y!)`` terms (poisson),
so the posterior is identical.

Bernoulli/binomial data without predictors go further: :mod:`hierpool.models.integrated` integrates the group
effects out over the (successes, trials) patterns (``collapse="auto"`` picks it), so the sampler sees
only the intercept and tau.

The stored log-likelihood is per ROW either way, computed after sampling from each draw's parameters and
group effects (:func:`hierpool.inference.sampling.pointwise_log_likelihood`), so PSIS-LOO means the same thing
(leave one row out, group effect conditioned on) whether a model was collapsed or not.


The collapse choice (:func:`resolve_collapse`) lives here too: which of these likelihoods a model uses.
The per-group statistics they read are computed in :mod:`hierpool.data.stats`; the exact conditional
draws of integrated-out group effects in :mod:`hierpool.inference.conditional`.
"""

from __future__ import annotations

import weakref

import numpy as np
import pytensor.tensor as pt
from pytensor.graph.basic import Apply
from pytensor.graph.op import Op

from hierpool.core import names as N
from hierpool.data.grouped import GroupedData, GroupedStats
from hierpool.data.stats import count_patterns, gaussian_stats, size_classes
from hierpool.models import integrated


def gaussian_marginal_logp(stats, a, b, tau, sigma, lib=pt):
    """The exact marginal log-likelihood above; ``lib`` is pytensor.tensor (in a model) or numpy.

    ``stats`` holds (possibly symbolic) ``n, ybar, xbar, syy_w, sxy_w, sxx_w`` and ``n_obs``; ``b`` may be
    None without predictors.
    """
    n, ybar, xbar = stats["n"], stats["ybar"], stats["xbar"]
    J = stats["n"].shape[0]
    s2, t2 = sigma**2, tau**2
    d = s2 + n * t2
    if b is None:
        e = ybar - a
        W = stats["syy_w"]
    else:
        e = ybar - a - lib.dot(xbar, b)
        W = stats["syy_w"] - 2 * lib.dot(b, stats["sxy_w"]) + lib.dot(b, lib.dot(stats["sxx_w"], b))
    N = stats["n_obs"]
    return (-0.5 * N * np.log(2 * np.pi) - (N - J) * lib.log(sigma) - 0.5 * lib.sum(lib.log(d))
            - W / (2 * s2) - 0.5 * lib.sum(n * e**2 / d))


def gaussian_marginal_logp_sizes(sc, a, b, tau, sigma, lib=pt):
    """The same exact marginal log-likelihood as :func:`gaussian_marginal_logp`, from size classes.

    ``sum_j log d_j = sum_k J_k log d_k`` and ``sum_j n_j e_j^2 / d_j = sum_k (n_k / d_k) v' M_k v``,
    so each evaluation costs O(K (P + 2)^2) for K distinct group sizes, whatever the number of groups.
    ``sc`` is a :class:`SizeClasses` or a dict with its fields (possibly symbolic).
    """
    get = sc.get if isinstance(sc, dict) else lambda k: getattr(sc, k)
    sizes, counts, M = get("sizes"), get("counts"), get("moments")
    s2, t2 = sigma**2, tau**2
    d = s2 + sizes * t2
    if b is None:
        v = lib.stack([lib.ones_like(a), -(a - get("center"))]) if lib is pt else np.array([1.0, -(a - get("center"))])
        W = get("syy_w")
    else:
        if lib is pt:
            v = pt.concatenate([pt.ones((1,)), pt.reshape(-(a - get("center")), (1,)), -b])
        else:
            v = np.concatenate([[1.0, -(a - get("center"))], -np.asarray(b)])
        W = get("syy_w") - 2 * lib.dot(b, get("sxy_w")) + lib.dot(b, lib.dot(get("sxx_w"), b))
    quad = lib.dot(lib.dot(M, v), v)  # (K,)
    N, J = get("n_obs"), get("n_groups")
    return (-0.5 * N * np.log(2 * np.pi) - (N - J) * lib.log(sigma) - 0.5 * lib.sum(counts * lib.log(d))
            - W / (2 * s2) - 0.5 * lib.sum(sizes * quad / d))


def known_se_marginal_logp(y, se, mean, tau, lib=pt):
    """``sum_j log Normal(y_j | mean_j, sqrt(tau^2 + se_j^2))``: the exact marginal log-likelihood of
    summary-level data; ``mean`` the fixed part ``a + x_j b`` (scalar or per group), ``lib`` pytensor.tensor
    or numpy."""
    d = tau**2 + se**2
    return lib.sum(-0.5 * np.log(2 * np.pi) - 0.5 * lib.log(d) - 0.5 * (y - mean) ** 2 / d)


COLLAPSE_CHOICES = N.COLLAPSE_CHOICES

#: How every refusal names data whose cells stay on Dask workers.
ON_WORKERS = "this model's data are count cells kept on Dask workers (hp.prepare(..., client=))"
#: What evaluating the likelihood of cells held by Dask workers in this process says.
ON_WORKERS_MESSAGE = (f"{ON_WORKERS}; no PyMC graph in this process can evaluate their likelihood. Fit it with "
                      "hp.fit(model) (the integrated sampler evaluates the cells where they live), or prepare the "
                      "data without client= to sample it here.")


class LikelihoodOnWorkers(Op):
    """The log-likelihood of count cells held by Dask workers (``hp.prepare(..., client=)``) as a node of
    the PyMC model: the model keeps its priors, coordinates and description, but the cells are not here,
    so evaluating the node (or its gradient) raises :data:`ON_WORKERS_MESSAGE` instead of sampling the
    prior silently (``pm.sample`` on such a model). ``hp.fit`` runs the integrated sampler, which
    evaluates the likelihood on the workers (:func:`hierpool.inference.integrated.plan`)."""

    __props__ = ()

    def make_node(self, x):
        x = pt.as_tensor_variable(x)
        return Apply(self, [x], [pt.dscalar()])

    def perform(self, node, inputs, outputs):
        raise RuntimeError(ON_WORKERS_MESSAGE)

    def pullback(self, inputs, outputs, output_grads):
        # the gradient is this node again (it refuses too); not multiplied by 0, which PyTensor would fold away
        x = inputs[0]
        return [pt.cast(self(x), x.dtype) * pt.ones_like(x)]


def group_totals(gd) -> tuple[np.ndarray, np.ndarray]:
    """Per-group successes and trials of a binomial-type fit without predictors (one cell per group).
    Data whose cells stay on Dask workers has them as its group totals (trials: the denominators)."""
    cp = gd.cells
    J = gd.n_groups
    if cp is None and getattr(gd, "cells_on_workers", None) is not None:
        return np.rint(gd.group_raw_mean * gd.group_denominator), np.asarray(gd.group_denominator, dtype=float)
    return (np.bincount(cp.group_idx, weights=cp.y, minlength=J),
            np.bincount(cp.group_idx, weights=cp.trials, minlength=J))


def can_integrate(gd) -> bool:
    """Binomial-type data without predictors whose patterns are few enough (hierpool.models.integrated)."""
    if not gd.fam.binomial_type or gd.n_predictors:
        return False
    return integrated.n_patterns(group_totals(gd)[1]) <= integrated.MAX_PATTERNS


#: Patterns per data object, computed once (data objects are immutable; entries go with them).
_PATTERNS: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()


def integrated_patterns(gd) -> integrated.Patterns:
    """The (successes, trials) patterns of ``gd``'s groups, computed once per data object."""
    cached = _PATTERNS.get(gd)
    if cached is None:
        cached = _PATTERNS[gd] = integrated.patterns(*group_totals(gd))
    return cached


def resolve_collapse(gd: GroupedData, collapse) -> str | None:
    """'gaussian', 'known_se' or 'integrated' (group effects integrated out), 'counts' (rows pooled into
    cells) or None."""
    if not any(collapse is c if isinstance(c, bool) else collapse == c for c in COLLAPSE_CHOICES):
        raise ValueError(f"collapse={collapse!r} is not valid; valid choices: 'auto', True, False, 'integrated'.")
    if gd.summary_level and not (collapse == "integrated" and not isinstance(collapse, bool)):
        return None if collapse is False else "known_se"
    if collapse == "integrated" and not isinstance(collapse, bool):
        if not can_integrate(gd):
            raise ValueError(
                "collapse='integrated' needs a bernoulli or binomial response without predictors and at most "
                f"{integrated.MAX_PATTERNS} (successes, trials) patterns; this data has family={gd.family!r} and "
                f"{gd.n_predictors} predictor(s). Use collapse='auto', True or False.")
        return "integrated"
    if isinstance(gd, GroupedStats):
        if collapse is False:
            raise ValueError("collapse=False needs the rows; data reduced to sufficient statistics (GroupedStats) "
                             "is always fitted with the exact collapsed likelihood.")
        if gd.fam.has_sigma:
            return "gaussian"
        return "integrated" if collapse == "auto" and not isinstance(collapse, bool) and can_integrate(gd) else "counts"
    if collapse is False:
        return None
    if gd.fam.has_sigma:  # gaussian random intercepts integrate out in closed form
        return "gaussian"
    if collapse is True:
        return "counts"
    if can_integrate(gd):
        return "integrated"
    # Cells are at least as many as the distinct values of any one predictor: a continuous one settles it
    # with one sort of a column (0.15 s at 2.5M rows) instead of the rows' (2.3 s with 6 columns).
    for p in range(gd.n_predictors):
        if np.unique(gd.X[:, p]).shape[0] > 0.8 * gd.n_obs:
            return None
    key = np.column_stack([gd.group_idx, gd.X]) if gd.n_predictors else gd.group_idx[:, None]
    cells = np.unique(key, axis=0).shape[0]
    return "counts" if cells <= 0.8 * gd.n_obs else None


def data_for(model, y) -> dict:
    """The data-container values that refit ``model`` to a new response ``y`` of the same design.

    Use with a compiled model, e.g. ``nutpie.compile_pymc_model(model).with_data(**data_for(model, y))``.
    """
    from hierpool.models.description import describe

    desc = describe(model)
    gd, how = desc.data, desc.collapse
    if how == "gaussian_slopes":
        from hierpool.models.slopes import data_for as slopes_data_for

        return slopes_data_for(gd, y)
    if how == "gaussian":
        sc = size_classes(gaussian_stats(gd, y))
        out = {N.SIZE_MOMENTS: sc.moments, N.YBAR_CENTER: np.asarray(sc.center), N.SYY_W: np.asarray(sc.syy_w)}
        if gd.n_predictors:
            out[N.SXY_W] = sc.sxy_w
        return out
    if how == "gaussian_crossed":
        from hierpool.data.crossed_stats import crossed_gaussian_stats
        from hierpool.models.crossed import crossed_response_data

        return crossed_response_data(crossed_gaussian_stats(gd, y))
    if how == "known_se":
        return {N.Y_OBSERVED: np.asarray(y, dtype=float)}
    if how == "integrated":
        k_j = np.bincount(gd.group_idx, weights=np.asarray(y, dtype=float), minlength=gd.n_groups)
        return {N.PATTERN_COUNTS: integrated.patterns(k_j, group_totals(gd)[1]).counts}
    if how == "counts":
        return {N.Y_OBSERVED: count_patterns(gd, y).y}
    return {N.Y_OBSERVED: np.asarray(y, dtype=float)}
