"""Fake hierpool fits for fast tests: DataTrees shaped like ``hp.fit``'s output, with no sampling.

One builder, :func:`make_fit`, on :func:`arviz_base.from_dict` (the habit of ArviZ's own tests): the test
chooses the rows and the posterior draws, so every expected value can be computed by hand. The tree holds
what :func:`hierpool.analysis.fitview.as_fit` reads from a real fit (see
``hierpool.inference.sampling.constant_data``):

- ``posterior``: ``intercept``; ``beta`` (dims ``predictor``) with predictors; ``group_effect`` (dims
  ``group``); ``tau`` unless the variant is ridge or ``tau=None``; ``sigma`` for the gaussian family;
- ``constant_data``: ``group_idx`` (rows), ``group_n``, ``group_raw_mean``, ``group_denominator``
  (groups), ``X``/``x_center``/``x_scale`` with predictors, ``trials`` or ``exposure`` when given;
- ``observed_data``: ``y``; ``log_likelihood``: ``y`` per draw and row (computed here with scipy, an
  independent reference for the package's compiled log-likelihood);
- attrs ``hierpool_variant``, ``hierpool_family``, ``hierpool_version``, ``hierpool_settings`` (JSON).

Rows come as a DataFrame with columns ``group``, ``y`` and the term columns; :func:`frame` and
:func:`staircase` build common ones.
"""

from __future__ import annotations

import json
import re

import numpy as np
import pandas as pd
import xarray as xr
from arviz_base import from_dict
from scipy import stats

from hierpool.core import names as N
from hierpool.data.terms import design_matrix

NUMERIC_X = {"column": "x", "kind": "numeric", "names": ["x"]}
COLOR = {"column": "color", "kind": "string", "levels": ["blue", "green", "red"],
         "names": ["color[green]", "color[red]"]}

DEFAULT_CHAINS, DEFAULT_DRAWS = 4, 500


def numeric_terms(*columns: str) -> list[dict]:
    """Terms of numeric predictor columns, as ``hp.prepare`` records them."""
    return [{"column": c, "kind": "numeric", "names": [c]} for c in columns]


def frame(group_idx, y, labels=None, **columns) -> pd.DataFrame:
    """Rows from a group index: ``group`` is ``labels[group_idx]`` (default ``g0, g1, ...``), then ``y``
    and any other columns (predictors ``x1, x2, ...``, trials, exposure).

    Groups are ordered by first appearance (as in ``hp.prepare``), so a sorted ``group_idx`` keeps the
    order of the columns of a ``group_effect`` array.
    """
    group_idx = np.asarray(group_idx, dtype=np.int64)
    if labels is None:
        labels = [f"g{j}" for j in range(group_idx.max() + 1)]
    out = pd.DataFrame({"group": np.asarray(labels, dtype=object)[group_idx],
                        "y": np.asarray(y, dtype=float)})
    for name, values in columns.items():
        values = np.asarray(values, dtype=float)
        if values.ndim == 2:  # a matrix of predictors: columns name1, name2, ...
            for k in range(values.shape[1]):
                out[f"{name}{k + 1}"] = values[:, k]
        else:
            out[name] = values
    return out


def staircase(n_groups: int) -> pd.DataFrame:
    """Group ``g{j}`` has ``j + 1`` rows, all with ``y = j``: raw means 0, 1, 2, ..., no predictors."""
    gidx = np.repeat(np.arange(n_groups), np.arange(1, n_groups + 1))
    return frame(gidx, gidx.astype(float))


def _default_data(family: str, rng: np.random.Generator) -> pd.DataFrame:
    """4 groups a-d of 3 rows, one numeric predictor ``x``."""
    data = pd.DataFrame({"group": np.repeat(["a", "b", "c", "d"], 3), "x": rng.normal(size=12)})
    data["y"] = rng.normal(size=12) if family == "gaussian" else rng.integers(0, 2, size=12).astype(float)
    return data


def _sample_shape(chains, draws, arrays) -> tuple[int, int]:
    """(chains, draws): as given, else from the first argument given as full draws, else the defaults."""
    for value, event_ndim in arrays:
        arr = None if value is None else np.asarray(value)
        if arr is not None and arr.ndim == event_ndim + 2:
            chains = arr.shape[0] if chains is None else chains
            draws = arr.shape[1] if draws is None else draws
            break
    return (DEFAULT_CHAINS if chains is None else chains, DEFAULT_DRAWS if draws is None else draws)


def _draws(name, value, shape, rng, jitter):
    """Full draws of shape ``shape``: ``value`` itself, or broadcast and jittered by ``jitter`` x N(0, 1)."""
    arr = np.asarray(value, dtype=float)
    if arr.shape == shape:
        return arr.copy()
    try:
        base = np.broadcast_to(arr, shape)
    except ValueError:
        raise ValueError(f"{name} has shape {arr.shape}; give a value per event ({shape[2:]}) or full draws "
                         f"{shape}.") from None
    return base + jitter * rng.normal(size=shape)


def _log_likelihood(family, y, eta, sigma, trials):
    """Pointwise log-likelihood (chains, draws, rows) by scipy.stats."""
    if family == "gaussian":
        return stats.norm.logpdf(y, eta, sigma[..., None])
    if family == "poisson":
        return stats.poisson.logpmf(y, np.exp(eta))
    n = 1.0 if trials is None else trials
    return stats.binom.logpmf(y, n, 1.0 / (1.0 + np.exp(-eta)))


def make_fit(
    family: str = "gaussian",
    variant: str = "random_intercepts",
    *,
    data: pd.DataFrame | None = None,
    terms: list[dict] | None = None,
    chains: int | None = None,
    draws: int | None = None,
    intercept=0.0,
    beta=None,
    group_effect=None,
    tau=1.0,
    sigma=1.0,
    lam: float | None = None,
    jitter: float = 0.0,
    trials: str | float | None = None,
    exposure: str | None = None,
    seed: int = 0,
    log_lik: bool = True,
) -> xr.DataTree:
    """A DataTree shaped like ``hp.fit``'s output, from rows and posterior draws chosen by the test.

    Parameters
    ----------
    family, variant : str
        Stored in the attrs; ``family`` also picks the likelihood and whether ``sigma`` is stored.
    data : pandas.DataFrame, optional
        Columns ``group``, ``y`` and the term columns. Default: 4 groups a-d of 3 rows, with one numeric
        predictor ``x`` and responses drawn with ``seed``. Groups take the order of first appearance.
    terms : list of dict, optional
        Predictor terms as ``hp.prepare`` records them. Default: the numeric columns named ``x``, ``x1``,
        ``x2``, ... of ``data``.
    chains, draws : int, optional
        Sample sizes. Default: those of the first posterior argument given as full draws, else 4 x 500.
    intercept, beta, group_effect, tau, sigma : float or array_like
        Posterior values: full draws (chains, draws[, predictor | group]), or one value (per predictor or
        group) constant over draws plus ``jitter`` x N(0, 1) noise. ``beta`` and ``group_effect``
        default to zeros. ``tau=None`` (or the ridge variant) leaves tau out.
    lam : float, optional
        The ridge variant's lam, stored in the settings (default 1.0 for that variant).
    trials : str or float, optional
        Binomial trials: a column of ``data`` or one number for every row.
    exposure : str, optional
        Poisson exposure column of ``data`` (the log offset of each row).
    seed : int
        Seeds the default data and the jitter.
    log_lik : bool
        Store the pointwise log-likelihood (needed by ``hp.compare``).
    """
    rng = np.random.default_rng(seed)
    if data is None:
        data = _default_data(family, rng)
    if terms is None:
        terms = numeric_terms(*[c for c in data.columns if re.fullmatch(r"x\d*", str(c))])
    codes, labels = pd.factorize(data["group"], sort=False)
    labels = np.asarray(labels, dtype=object)
    J, n = len(labels), len(data)
    X = design_matrix(data, terms)
    names = [nm for t in terms for nm in t["names"]]
    P = len(names)
    C, D = _sample_shape(chains, draws, [(group_effect, 1), (intercept, 0), (beta, 1), (tau, 0), (sigma, 0)])

    post = {N.INTERCEPT: _draws(N.INTERCEPT, intercept, (C, D), rng, jitter)}
    if P:
        post[N.BETA] = _draws(N.BETA, np.zeros(P) if beta is None else beta, (C, D, P), rng, jitter)
    post[N.GROUP_EFFECT] = _draws(N.GROUP_EFFECT, np.zeros(J) if group_effect is None else group_effect,
                                  (C, D, J), rng, jitter)
    if tau is not None and variant != "ridge_fixed_effects":
        post[N.TAU] = np.abs(_draws(N.TAU, tau, (C, D), rng, jitter))
    if family == "gaussian":
        post[N.SIGMA] = np.abs(_draws(N.SIGMA, sigma, (C, D), rng, jitter))

    y = data["y"].to_numpy(dtype=float)
    group_n = np.bincount(codes, minlength=J)
    const = {N.GROUP_IDX: codes.astype(np.int64), N.GROUP_N: group_n}
    denom = group_n.astype(float)
    tv = offset = None
    if family == "binomial":
        tv = data[trials].to_numpy(dtype=float) if isinstance(trials, str) else np.full(n, float(trials))
        const[N.TRIALS] = tv
        denom = np.bincount(codes, weights=tv, minlength=J)
    if exposure is not None:
        ev = data[exposure].to_numpy(dtype=float)
        const[N.EXPOSURE] = ev
        offset = np.log(ev)
        denom = np.bincount(codes, weights=ev, minlength=J)
    const[N.GROUP_DENOM] = denom
    const[N.GROUP_RAW_MEAN] = np.bincount(codes, weights=y, minlength=J) / denom
    if P:
        scale = X.std(axis=0)
        const.update({N.X: X, N.X_CENTER: X.mean(axis=0), N.X_SCALE: np.where(scale > 0, scale, 1.0)})

    groups = {"posterior": post, "constant_data": const, "observed_data": {N.Y: y}}
    if log_lik:
        eta = post[N.INTERCEPT][..., None] + post[N.GROUP_EFFECT][..., codes]
        if P:
            eta = eta + post[N.BETA] @ X.T
        if offset is not None:
            eta = eta + offset
        groups["log_likelihood"] = {N.Y: _log_likelihood(family, y, eta, post.get(N.SIGMA), tv)}

    settings = {"data": {"y": "y", "group": "group", "family": family,
                         "trials": trials if isinstance(trials, str) else None, "exposure": exposure,
                         "predictors": names, "terms": terms}}
    if variant == "ridge_fixed_effects":
        settings["lam"] = 1.0 if lam is None else float(lam)
    attrs = {N.ATTR_VARIANT: variant, N.ATTR_FAMILY: family, N.ATTR_VERSION: "test",
             N.ATTR_SETTINGS: json.dumps(settings)}
    dims = {N.BETA: [N.PREDICTOR], N.GROUP_EFFECT: [N.GROUP], N.Y: [N.OBS], N.GROUP_IDX: [N.OBS],
            N.GROUP_N: [N.GROUP], N.GROUP_RAW_MEAN: [N.GROUP], N.GROUP_DENOM: [N.GROUP], N.TRIALS: [N.OBS],
            N.EXPOSURE: [N.OBS], N.X: [N.OBS, N.PREDICTOR], N.X_CENTER: [N.PREDICTOR],
            N.X_SCALE: [N.PREDICTOR]}
    coords = {"chain": np.arange(C), "draw": np.arange(D), N.GROUP: labels, N.OBS: np.arange(n)}
    if P:
        coords[N.PREDICTOR] = np.asarray(names, dtype=object)
    return from_dict(groups, sample_dims=list(N.SAMPLE_DIMS), coords=coords, dims=dims, attrs={"/": attrs})
