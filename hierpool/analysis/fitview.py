"""Read side of the contract: a checked view of a fit's DataTree for the analysis functions.

Analysis code never imports the factories; it reads a fit through :func:`as_fit`, which checks the
DataTree and gives named access to what the contract stores.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from functools import cached_property

import numpy as np
import pandas as pd
import xarray as xr

from hierpool.core import kernels as K
from hierpool.core import names as N
from hierpool.core.families import Family, get_family


@dataclass(frozen=True, eq=False)
class FitView:
    """A checked, read-only view of a hierpool fit."""

    dt: xr.DataTree
    variant: str
    family: str
    settings: dict

    @property
    def fam(self) -> Family:
        """The response :class:`~hierpool.core.families.Family` of the fit."""
        return get_family(self.family)

    @cached_property
    def post(self) -> xr.Dataset:
        """The posterior every analysis function reads: one draw = one joint draw of all parameters.

        A fit thinned for memory (``attrs["hierpool_thin"]`` > 1) keeps every draw of the population
        parameters in ``posterior`` and ``group_effect`` at the kept draws in ``posterior_group_effects``;
        here they are aligned on the kept draws (the population parameters selected at the draw labels of
        the group effects, plus ``group_effect``, not copied), so analysis code sees one posterior either
        way. Without thinning this is the ``posterior`` group as it is.
        """
        post = self.dt["posterior"].to_dataset()
        if not self.thinned:
            return post
        node = self.dt[N.GROUP_EFFECTS_GROUP]
        ge = node[N.GROUP_EFFECT]
        out = post.sel(draw=ge["draw"].values)
        out[N.GROUP_EFFECT] = ge.variable  # same draw labels and order: no alignment, no copy
        if N.GROUP_SLOPE in node:  # random slopes: their deviations are thinned with the intercepts'
            out[N.GROUP_SLOPE] = node[N.GROUP_SLOPE].variable
        return out.assign_coords({N.GROUP: ge[N.GROUP].values})

    @property
    def thinned(self) -> bool:
        """Whether the group effects are stored apart, at the kept draws (``posterior_group_effects``)."""
        return N.GROUP_EFFECTS_GROUP in self.dt.children

    @property
    def population_post(self) -> xr.Dataset:
        """Every stored draw of the population-level parameters (intercept, beta, tau, sigma)."""
        post = self.dt["posterior"].to_dataset()
        return post[[v for v in (N.INTERCEPT, N.BETA, N.TAU, N.SIGMA) if v in post]]

    @cached_property
    def const(self) -> xr.Dataset:
        return self.dt["constant_data"].to_dataset()

    @property
    def y(self) -> xr.DataArray:
        return self.dt["observed_data"][N.Y]

    @property
    def groups(self) -> pd.Index:
        return pd.Index(self.post[N.GROUP].values, name=N.GROUP)

    @property
    def n_groups(self) -> int:
        return self.post.sizes[N.GROUP]

    @property
    def group_n(self) -> xr.DataArray:
        return self.const[N.GROUP_N]

    @property
    def raw_mean(self) -> xr.DataArray:
        return self.const[N.GROUP_RAW_MEAN]

    @property
    def summary_level(self) -> bool:
        """A fit of summary-level data (``hp.prepare(..., se=)``): one row per group, whose response has a
        known standard error (constant_data ``se``) in place of a residual ``sigma``."""
        return N.SE in self.const

    def se_by_group(self) -> np.ndarray:
        """Summary-level fits: the known standard error of each group's estimate, in group order (J,)."""
        out = np.full(self.n_groups, np.nan)
        out[self.const[N.GROUP_IDX].values] = self.const[N.SE].values
        return out

    def row_sd(self, post: xr.Dataset | None = None) -> np.ndarray | None:
        """The response SD of every training row, broadcasting against (chain, draw, obs_id) arrays of
        ``post`` (default: the posterior): sigma per draw (gaussian), the known se per row (summary-level
        data), or None (other families)."""
        if self.summary_level:
            return self.const[N.SE].values[None, None, :]
        if not self.fam.has_sigma:
            return None
        post = self.post if post is None else post
        return post[N.SIGMA].transpose(*N.SAMPLE_DIMS).values[..., None]

    @property
    def hierarchical(self) -> bool:
        return N.TAU in self.post

    @property
    def lam(self) -> float | None:
        return self.settings.get("lam")

    @property
    def predictors(self) -> list[str]:
        return [] if N.PREDICTOR not in self.post.dims else [str(p) for p in self.post[N.PREDICTOR].values]

    def intercept_at_center(self) -> xr.DataArray:
        """Intercept at the predictors' means (the linear predictor of an average row), per draw."""
        a = self.post[N.INTERCEPT]
        if N.BETA in self.post and N.X_CENTER in self.const:
            a = a + xr.dot(self.post[N.BETA], self.const[N.X_CENTER], dim=N.PREDICTOR)
        return a

    def group_effect_matrix(self):
        """The draws of ``group_effect`` as a (samples x groups) numpy array, or None if not in memory.

        No copy when the posterior is numpy-backed: float64, or float32 as large collapsed fits store
        it (other dtypes are converted to float64). Lazy posteriors (e.g. a zarr store) give None, so
        callers read them chunk by chunk instead.
        """
        ge = self.post[N.GROUP_EFFECT].transpose(*N.SAMPLE_DIMS, N.GROUP)
        if not ge.variable._in_memory:
            return None
        return K.as_float_array(ge.values).reshape(self.post.sizes["chain"] * self.post.sizes["draw"], self.n_groups)

    def group_mean_response(self) -> xr.DataArray:
        """Each group's mean response at the average predictor values, natural scale, per draw."""
        return self.fam.inverse_link(self.intercept_at_center() + self.post[N.GROUP_EFFECT])

    def overall_mean_response(self) -> xr.DataArray:
        """The mean response of an average group (group effect 0) at the average predictors, per draw."""
        return self.fam.inverse_link(self.intercept_at_center())


def as_fit(dt, arg: str = "dt") -> FitView:
    """Check that ``dt`` is a fit that the analysis functions can read and return a :class:`FitView`."""
    if not isinstance(dt, xr.DataTree):
        raise TypeError(f"{arg} must be an xarray.DataTree returned by hp.fit or hp.load; got {type(dt).__name__}.")
    if "posterior" not in dt.children:
        raise ValueError(f"{arg} has no 'posterior' group; pass the DataTree returned by hp.fit.")
    post = dt["posterior"]
    if N.GROUP_EFFECTS_GROUP in dt.children:  # thinned for memory: group effects apart, at the kept draws
        post = _check_thinned(dt, arg)
    if N.GROUP_EFFECT not in post and N.ATTR_VARIANT not in dt.attrs and N.INTERCEPT in post:
        raise ValueError(
            f"{arg} has no 'group_effect' and no hierpool attrs: it looks like a trace sampled outside hp.fit "
            "(pm.sample, nutpie). A hierpool model whose group effects are integrated out (collapse='gaussian' "
            "or 'integrated') does not sample them. Turn the trace into a fit with hp.from_trace(trace, "
            "model), which draws them from their exact conditional, or sample with hp.fit(model)."
        )
    if N.GROUP not in post.dims:
        raise ValueError(
            f"{arg}.posterior has no dim named 'group' (its dims: {sorted(post.dims)}). hierpool reads group "
            "effects from a variable 'group_effect' with dims (chain, draw, group); rename yours, e.g. "
            "dt['posterior'] = dt['posterior'].to_dataset().rename({'county': 'group', 'a_county': "
            "'group_effect'})."
        )
    missing = [v for v in (N.INTERCEPT, N.GROUP_EFFECT) if v not in post]
    if missing:
        raise ValueError(
            f"{arg}.posterior lacks {missing}; hierpool needs 'intercept' and 'group_effect' (dims chain, "
            f"draw, group). Variables present: {sorted(post.data_vars)}."
        )
    if post.sizes.get("chain", 0) * post.sizes.get("draw", 0) == 0:
        raise ValueError(f"{arg} has no draws (posterior chain x draw: {post.sizes.get('chain', 0)} x "
                         f"{post.sizes.get('draw', 0)}): there is nothing to summarize; fit with draws >= 1.")
    for key in (N.ATTR_VARIANT, N.ATTR_FAMILY):
        if key not in dt.attrs:
            raise ValueError(
                f"{arg}.attrs lacks {key!r}: this DataTree was not produced by hp.fit. Fits from other tools "
                f"need dt.attrs['{N.ATTR_FAMILY}'] (one of {N.FAMILIES}), dt.attrs['{N.ATTR_VARIANT}'] and a "
                "'constant_data' group with group_idx, group_n and group_raw_mean."
            )
    if "constant_data" not in dt.children or N.GROUP_N not in dt["constant_data"]:
        raise ValueError(f"{arg} has no constant_data with 'group_n'; pass the DataTree returned by hp.fit.")
    settings = json.loads(dt.attrs.get(N.ATTR_SETTINGS, "{}"))
    return FitView(dt=dt, variant=str(dt.attrs[N.ATTR_VARIANT]), family=str(dt.attrs[N.ATTR_FAMILY]),
                   settings=settings)


def _check_thinned(dt: xr.DataTree, arg: str) -> xr.Dataset:
    """Check a fit whose group effects are stored apart (``posterior_group_effects``) and return the
    posterior aligned on their draws, for the checks of :func:`as_fit`."""
    ge_node = dt[N.GROUP_EFFECTS_GROUP]
    if N.GROUP_EFFECT not in ge_node:
        raise ValueError(f"{arg}.{N.GROUP_EFFECTS_GROUP} lacks 'group_effect'; variables present: "
                         f"{sorted(ge_node.data_vars)}.")
    if N.GROUP_EFFECT in dt["posterior"]:
        raise ValueError(f"{arg} holds 'group_effect' both in posterior and in {N.GROUP_EFFECTS_GROUP}; keep one.")
    ge = ge_node[N.GROUP_EFFECT]
    missing = [d for d in (*N.SAMPLE_DIMS, N.GROUP) if d not in ge.dims]
    if missing:
        raise ValueError(f"{arg}.{N.GROUP_EFFECTS_GROUP}.group_effect lacks dims {missing} (its dims: {ge.dims}).")
    post = dt["posterior"]
    kept = ge["draw"].values
    absent = np.setdiff1d(kept, post["draw"].values)
    if absent.size or not np.array_equal(ge["chain"].values, post["chain"].values):
        raise ValueError(
            f"{arg}.{N.GROUP_EFFECTS_GROUP} does not match the posterior: its draws must be draws of the "
            f"posterior (missing: {absent[:5].tolist()}) and its chains the posterior's.")
    out = post.to_dataset().sel(draw=kept)
    out[N.GROUP_EFFECT] = ge
    return out


# ------------------------------------------------------------------------------------------------------
# several grouping factors: present the chosen one as ``group``
_FACTOR_BASES_POST = (N.GROUP_EFFECT, N.TAU)
_FACTOR_BASES_CONST = (N.GROUP_IDX, N.GROUP_N, N.GROUP_RAW_MEAN, N.GROUP_DENOM)


def fit_factors(dt: xr.DataTree) -> list[str]:
    """The grouping factors of a fit, the first (``group``) first: ``attrs["hierpool_factors"]``, or the
    data recipe's group for a fit with one factor (``[]`` when neither says)."""
    if N.ATTR_FACTORS in dt.attrs:
        return list(json.loads(dt.attrs[N.ATTR_FACTORS]))
    spec = json.loads(dt.attrs.get(N.ATTR_SETTINGS, "{}")).get("data") or {}
    return [spec["group"]] if isinstance(spec.get("group"), str) else []


def select_factor(dt, factor: str | None = None, arg: str = "factor"):
    """``dt`` with grouping factor ``factor`` presented as ``group`` (dim ``group``, ``group_effect``, ``tau``
    and the constant_data ``group_idx``, ``group_n``, ``group_raw_mean``, ``group_denominator``), the first
    factor moved to its ``__<first>`` names; so every analysis function reads the chosen factor unchanged.

    ``factor=None`` (or the first factor) returns ``dt`` itself. A fit whose first factor's group effects
    were kept at fewer draws (``posterior_group_effects``: thinned for memory or ``min_ess``) is presented
    at those draws, every factor's effects in ``posterior``. The other factors keep their ``__f`` names,
    and their effects still enter each training row's linear predictor where an analysis uses it (posterior
    predictive checks, ``hp.profile``'s expected and predicted outcomes, the log-likelihood). Group-level
    summaries of the chosen factor (``hp.shrinkage``'s estimate, ranks) are at the other factors' average
    level, effect 0.

    Raises
    ------
    ValueError
        ``factor`` is not one of the fit's grouping factors (the message lists them).
    """
    if factor is None or not isinstance(dt, xr.DataTree):
        return dt
    if not isinstance(factor, str):
        raise TypeError(f"{arg} must be the name of a grouping factor (str); got {factor!r}.")
    factors = fit_factors(dt)
    if factor not in factors:
        raise ValueError(f"{arg}={factor!r} is not a grouping factor of this fit; valid choices: "
                         f"{', '.join(repr(f) for f in factors) or 'none recorded'}.")
    first = factors[0]
    if factor == first:
        return dt

    def swap(ds: xr.Dataset, bases) -> xr.Dataset:
        ren = {}
        for b in bases:
            if b in ds:
                ren[b] = N.factor_var(b, first)
            if N.factor_var(b, factor) in ds:
                ren[N.factor_var(b, factor)] = b
        dims = {N.GROUP: N.factor_var(N.GROUP, first), N.factor_var(N.GROUP, factor): N.GROUP}
        tmp = {k: f"__swap__{v}" for k, v in {**ren, **dims}.items() if k in ds.variables or k in ds.dims}
        ds = ds.rename(tmp)
        return ds.rename({v: v[len("__swap__"):] for v in tmp.values()})

    # a fit thinned for memory keeps the first factor's group effects apart, at the kept draws: the view
    # is then the posterior at those draws with them in it (renamed to the first factor's names below)
    thinned = N.GROUP_EFFECTS_GROUP in dt.children
    post = _check_thinned(dt, "dt") if thinned else dt["posterior"].to_dataset()
    post = swap(post, _FACTOR_BASES_POST)
    const = swap(dt["constant_data"].to_dataset(), _FACTOR_BASES_CONST)
    children = {k: dt[k].to_dataset() for k in dt.children
                if k not in ("posterior", "constant_data", N.GROUP_EFFECTS_GROUP)}
    out = xr.DataTree.from_dict({"posterior": post, "constant_data": const, **children})
    attrs = dict(dt.attrs)
    settings = json.loads(attrs.get(N.ATTR_SETTINGS, "{}"))
    if isinstance(settings.get("data"), dict):
        settings["data"] = {**settings["data"], "group": factor}
    attrs[N.ATTR_SETTINGS] = json.dumps(settings)
    attrs[N.ATTR_FACTORS] = json.dumps([factor, first, *[f for f in factors[1:] if f != factor]])
    out.attrs = attrs
    return out
