"""The model parts of grouping factors beyond the first (crossed or nested; :mod:`hierpool.data.factors`).

The factories build the first factor exactly as for one factor (``group``, ``group_effect``, ``tau``). Each
further factor ``f`` adds, under the names of :func:`hierpool.core.names.factor_var`:

- random_intercepts / regularized_hierarchical: ``group_effect__f ~ Normal(0, tau__f)`` over dim
  ``group__f``, parameterized as the factory's ``centered=`` says (default "auto", partial non-centering
  per level; :mod:`hierpool.models.parameterization`), with ``tau__f`` given the same default prior as
  ``tau`` (HalfStudentT(3, s), resp. the penalized-complexity Exponential) and overridable by
  ``priors={"tau__f": ...}`` (a prior or a number; priors on its square are not offered);
- ridge_fixed_effects: ``group_effect__f ~ Normal(0, 1/sqrt(lam))``: every factor's one-hot block is
  penalized with the same ``lam``.

The linear predictor of row i adds ``group_effect__f[group_idx__f[i]]`` for every further factor.

Collapsing the first factor given the others (gaussian, ``collapse="gaussian_crossed"``)
-----------------------------------------------------------------------------------------
Given the further factors' effects ``v`` (sampled by NUTS, parameterized as ``centered=`` says), the
first factor's effects ``u_j`` (members) are independent across members, so they integrate out exactly.
With ``w_i = sum_f v_f[h_f(i)]`` the further effects at row i and ``r_i = y_i - w_i``, the member
marginal is the single-factor formula of :func:`hierpool.models.collapse.gaussian_marginal_logp` applied
to ``r``::

    log p(y | a, b, tau, sigma, v) = -N/2 log(2 pi) - (N - J) log sigma - 1/2 sum_j log d_j
                                     - W(b, v) / (2 sigma^2) - 1/2 sum_j n_j e_j^2 / d_j

    d_j = sigma^2 + n_j tau^2,   e_j = ybar_j - wbar_j - a - xbar_j b,   wbar_j = (1/n_j) sum_{i in j} w_i

Every row of a *cell* c (a distinct combination of member and further levels; for one further factor the
nonzeros of the J x H count matrix ``C[j, h]``) has the same ``w_c``, so ``n_j wbar_j = sum_{c in j} n_c
w_c`` (= ``(C v)_j`` for one factor). The within-member sum of squares of ``r - x b`` splits as::

    W(b, v) = W_0(b) - 2 sum_i t_i w_i + sum_i (w_i - wbar_j)^2
    W_0(b)  = Syy_w - 2 b'Sxy_w + b'Sxx_w b                    (today's within-member cross-products)
    sum_i t_i w_i = sum_f [ v_f . gy_f - b' (gx_f' v_f) ]       (t_i = y_i - ybar_j - (x_i - xbar_j) b)
    sum_i (w_i - wbar_j)^2 = sum_c n_c (w_c - wbar_j(c))^2

using that ``t`` sums to zero within each member (so ``wbar_j`` drops out of the cross term), with
``gy_f[h] = sum_{i at h} (y_i - ybar_j(i))`` and ``gx_f[h] = sum_{i at h} (x_i - xbar_j(i))``
(:mod:`hierpool.data.crossed_stats`). For one factor the last sum is ``sum_h m_h v_h^2 - sum_j (C v)_j^2 /
n_j`` (``m_h`` rows at hospital h), computed here in the centered form, which cannot lose precision to
cancellation. Each gradient costs O(K F + J P + sum_f H_f P) for K cells (K <= N rows, F further
factors): the member sums are a scatter-add over cells (PyTensor's ``inc_subtensor``; the gradient a
gather), the cell values a gather from each ``v_f``. After sampling, the member effects are drawn from
their exact conditional given each draw, ``u_j | ... ~ Normal(n_j tau^2 e_j / d_j, sigma^2 tau^2 / d_j)``
(:mod:`hierpool.inference.crossed_draws`), so the posterior holds ``group_effect`` as the row-level model's.

The collapse choice (:func:`resolve_collapse_factors`): ``collapse="auto"`` and ``True`` integrate the first
factor out for every gaussian model with several factors (row data; the ridge variant too, its member SD
being ``1/sqrt(lam)``): the likelihood is exact, each gradient is no dearer than the row level's
O(N P + J + H), and the J member effects and their funnel with tau leave the sampler. It pays most when the
first factor is the large one: list the factor with the most levels first (``group=["member",
"hospital"]``); with the small factor first the large one is still sampled. ``collapse=False`` keeps the
row-level model. Other families are fitted at the row level ("auto" and False); ``True`` and
``"integrated"`` are refused for them: the count collapses integrate out ONE factor whose groups are
independent, which crossed effects are not. The integrated and Gibbs samplers refuse models with several
factors (:func:`hierpool.inference.integrated.plan`, :func:`hierpool.inference.integrated_gaussian.plan`,
:func:`hierpool.inference.gibbs.plan`), so ``sampler="auto"`` picks NUTS.
"""

from __future__ import annotations

import numpy as np
import pymc as pm
import pytensor.tensor as pt

from hierpool.core import names as N
from hierpool.models.parameterization import group_effects, information
from hierpool.models.priors import Prior, scale_parameter

__all__ = ["has_factors", "resolve_collapse_factors", "crossed_gaussian_marginal_logp", "crossed_data",
           "crossed_conditional_moments", "CROSSED_GAUSSIAN", "factor_coords", "factor_prior_keys", "factor_data",
           "factor_effects"]


def has_factors(gd) -> bool:
    """True when ``gd`` has grouping factors beyond the first."""
    return bool(getattr(gd, "factors", ()))


#: ``ModelDescription.collapse`` of a gaussian model with several factors whose first factor is integrated out.
CROSSED_GAUSSIAN = "gaussian_crossed"


def resolve_collapse_factors(gd, collapse) -> str | None:
    """The collapse choice of a model with several factors (the argument is checked by the caller).

    gaussian row data: ``"gaussian_crossed"`` for "auto" and True (the first factor integrated out given
    the others), None for False. Other families: the row level (None) for "auto" and False; True and
    "integrated" are refused.
    """
    auto = collapse == "auto" and not isinstance(collapse, bool)
    if collapse is False:
        return None
    if gd.summary_level:  # pragma: no cover - prepare refuses se= with several factors
        raise ValueError("summary-level data takes one grouping factor.")
    gaussian = gd.fam.has_sigma and hasattr(gd, "group_idx")
    if gaussian and (auto or collapse is True):
        return CROSSED_GAUSSIAN
    if auto:
        return None
    raise ValueError(
        f"collapse={collapse!r}: a model with several grouping factors ({', '.join(gd.factor_names)}) and "
        f"family={gd.family!r} is fitted at the row level; only gaussian models integrate the first factor out "
        "given the others (collapse='auto' or True), and the count collapses integrate out one factor whose "
        "groups are independent, which crossed or nested effects are not. Use collapse='auto' or False.")


def _segment_sum(idx, values, size, lib):
    """``out[k] = sum of values[idx == k]`` (numpy bincount, or PyTensor's scatter-add)."""
    if lib is pt:
        return pt.inc_subtensor(pt.zeros((size,), dtype="float64")[idx], values)
    return np.bincount(idx, weights=values, minlength=size)


def crossed_gaussian_marginal_logp(data: dict, a, b, tau, sigma, effects, lib=pt):
    """The exact log-likelihood with the first factor integrated out given the further effects (above).

    ``data`` from :func:`crossed_data` (entries numpy arrays or symbolic data containers), ``a`` the
    intercept at the predictors' means, ``b`` the coefficients of the standardized predictors (None
    without), ``tau`` the first factor's SD, ``effects`` a list of the further factors' effect vectors
    (``v_f``, in factor order); ``lib`` is pytensor.tensor (in a model) or numpy.
    """
    J = data["n_groups"]
    n, ybar = data["n"], data["ybar"]
    w = None
    for lev, v in zip(data["cell_levels"], effects, strict=True):
        w = v[lev] if w is None else w + v[lev]
    cell_n, cell_member = data["cell_n"], data["cell_member"]
    wbar = _segment_sum(cell_member, cell_n * w, J, lib) / n
    Q = lib.sum(cell_n * (w - wbar[cell_member]) ** 2)
    cross = 0.0
    for v, gy, gx in zip(effects, data["gy"], data["gx"], strict=True):
        cross = cross + lib.dot(v, gy)
        if b is not None:
            cross = cross - lib.dot(b, lib.dot(v, gx))
    e = ybar - wbar - a
    W = data["syy_w"]
    if b is not None:
        e = e - lib.dot(data["xbar"], b)
        W = W - 2 * lib.dot(b, data["sxy_w"]) + lib.dot(b, lib.dot(data["sxx_w"], b))
    W = W - 2 * cross + Q
    s2, t2 = sigma**2, tau**2
    N = data["n_obs"]
    sizes, size_counts = data["sizes"], data["size_counts"]
    return (-0.5 * N * np.log(2 * np.pi) - (N - J) * lib.log(sigma)
            - 0.5 * lib.sum(size_counts * lib.log(s2 + sizes * t2))
            - W / (2 * s2) - 0.5 * lib.sum(n * e**2 / (s2 + n * t2)))


def crossed_data(cs, *, containers: bool = False) -> dict:
    """The entries :func:`crossed_gaussian_marginal_logp` reads, from a
    :class:`~hierpool.data.crossed_stats.CrossedGaussianStats`. ``containers=True`` (inside a model) makes
    the response-dependent ones (``ybar``, ``syy_w``, ``sxy_w``, ``gy_f``) ``pm.Data`` (refits of a new
    response without recompiling: :func:`hierpool.models.collapse.data_for`)."""
    st = cs.member
    sizes, _, counts = st.size_index
    out = {"n_groups": int(st.n.shape[0]), "n": st.n, "ybar": st.ybar, "xbar": st.xbar, "syy_w": st.syy_w,
           "sxy_w": st.sxy_w, "sxx_w": st.sxx_w, "n_obs": st.n_obs, "sizes": sizes.astype(float),
           "size_counts": counts.astype(float), "cell_member": cs.cell_member, "cell_levels": list(cs.cell_levels),
           "cell_n": cs.cell_n, "gy": list(cs.gy), "gx": list(cs.gx)}
    if containers:
        for k, v in crossed_response_data(cs).items():
            pm.Data(k, v)
        model = pm.Model.get_context()
        out["ybar"] = model[N.CROSSED_YBAR]
        out["syy_w"] = model[N.SYY_W]
        out["sxy_w"] = model[N.SXY_W] if st.xbar.shape[1] else st.sxy_w
        out["gy"] = [model[N.factor_var(N.CROSSED_GY, str(k))] for k in range(len(cs.gy))]
    return out


def crossed_response_data(cs) -> dict:
    """The response-dependent data containers of a collapsed crossed model, by name."""
    st = cs.member
    out = {N.CROSSED_YBAR: st.ybar, N.SYY_W: np.asarray(st.syy_w)}
    if st.xbar.shape[1]:
        out[N.SXY_W] = st.sxy_w
    for k, gy in enumerate(cs.gy):
        out[N.factor_var(N.CROSSED_GY, str(k))] = gy
    return out


def crossed_conditional_moments(cs, a, b, tau, sigma, wsum):
    """Mean and sd of ``u_j | a, b, tau, sigma, v, y`` for S draws -> two (S, J) arrays.

    ``a`` (S,) the intercept at the predictors' means, ``b`` (S, P) standardized coefficients or None,
    ``tau``, ``sigma`` (S,), ``wsum`` (S, J) the member sums ``n_j wbar_j`` of the further effects.
    """
    st = cs.member
    a = np.asarray(a, dtype=float)[:, None]
    e = st.ybar - wsum / st.n - a
    if b is not None and st.xbar.shape[1]:
        e = e - np.asarray(b, dtype=float) @ st.xbar.T
    t2 = np.asarray(tau, dtype=float)[:, None] ** 2
    s2 = np.asarray(sigma, dtype=float)[:, None] ** 2
    d = s2 + st.n * t2
    return st.n * t2 * e / d, np.sqrt(s2 * t2 / d)


def factor_coords(gd) -> dict:
    """The dims of the further factors: ``group__f`` -> level labels."""
    return {N.factor_var(N.GROUP, f.name): f.levels.tolist() for f in gd.factors}


def factor_prior_keys(gd) -> dict[str, str]:
    """``priors=`` keys for the further factors' SDs (``tau__f``: positive)."""
    return {N.factor_var(N.TAU, f.name): "positive" for f in gd.factors}


def factor_data(gd) -> None:
    """pm.Data of every further factor: the row index and per-level sizes and raw means."""
    for f in gd.factors:
        dim = N.factor_var(N.GROUP, f.name)
        st = gd.factor_stats(f)
        pm.Data(N.factor_var(N.GROUP_IDX, f.name), f.idx, dims=N.OBS)
        pm.Data(N.factor_var(N.GROUP_N, f.name), st["n"], dims=dim)
        pm.Data(N.factor_var(N.GROUP_RAW_MEAN, f.name), st["raw_mean"], dims=dim)
        pm.Data(N.factor_var(N.GROUP_DENOM, f.name), st["denominator"], dims=dim)


def factor_effects(gd, priors: dict, used: dict, *, tau_default: Prior | None, centered: bool | str = False,
                   lam: float | None = None, mean=None):
    """Build every further factor's effects; return their sum at each row (a tensor over rows), or None.

    ``tau_default`` is the default prior of each ``tau__f`` (hierarchical variants); ``lam`` (ridge) fixes
    each effect's prior to ``Normal(0, 1/sqrt(lam))`` instead. ``centered`` parameterizes the effects as
    for the first factor (:mod:`hierpool.models.parameterization`): ``True`` samples ``group_effect__f``
    itself (or ``mean + group_effect__f``), ``"auto"`` partially non-centers each level by its data's
    information. ``mean`` (the intercept at the predictors' means) is given when the first factor is
    integrated out (``collapse="gaussian_crossed"``): the first further factor's levels are then centred on
    it, so that the intercept is not tied to the mean of those effects. Measured (5,000 members x 50
    hospitals, about 250 rows per hospital, gaussian, 4 x 500 draws, seed 1, shared 2-core machine): with
    the effects centred at 0 (``centered="auto"``) the intercept's bulk ESS was 35 (R-hat 1.09), 60
    non-centered, 25 centered; centred on the intercept (``"auto"``), the smallest bulk ESS of any
    parameter was 3,259 and the largest R-hat 1.011, in 15.8 s.
    """
    total = None
    for f in gd.factors:
        dim = N.factor_var(N.GROUP, f.name)
        eff = N.factor_var(N.GROUP_EFFECT, f.name)
        if lam is not None:
            u = pm.Normal(eff, 0.0, sigma=1.0 / lam ** 0.5, dims=dim)
        else:
            key = N.factor_var(N.TAU, f.name)
            used[key] = priors.get(key, tau_default)
            tau = scale_parameter(key, priors, tau_default)
            st = gd.factor_stats(f)
            m = mean if f is gd.factors[0] else None
            u = group_effects(tau, information(gd, st["denominator"], st["raw_mean"], st["n"]), centered, dim=dim,
                              effect=eff, z=N.factor_var(N.GROUP_EFFECT_Z, f.name),
                              centered_name=eff if m is None else N.factor_var(N.GROUP_INTERCEPT, f.name),
                              partial=N.factor_var(N.GROUP_EFFECT_PARTIAL, f.name), mean=m)
        term = u[pt.as_tensor_variable(f.idx)]
        total = term if total is None else total + term
    return total


def posterior_names(gd) -> list[str]:
    """The further factors' posterior variables (effects and, hierarchical variants, SDs)."""
    out = []
    for f in gd.factors:
        out += [N.factor_var(N.GROUP_EFFECT, f.name), N.factor_var(N.TAU, f.name)]
    return out
