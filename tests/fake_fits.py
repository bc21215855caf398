"""Synthetic hierpool fits built with numpy/xarray (no sampling), for fast tests of the analysis layer.

``make_fit`` returns a DataTree with the groups and attrs ``hp.fit`` produces, from posterior draws the
test chooses, so expected values can be computed by hand.
"""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import xarray as xr

from hierpool.core import names as N
from hierpool.core.families import get_family
from hierpool.data.terms import design_matrix
from hierpool.inference.predictive import linear_predictor

NUMERIC_X = {"column": "x", "kind": "numeric", "names": ["x"]}
COLOR = {"column": "color", "kind": "string", "levels": ["blue", "green", "red"],
         "names": ["color[green]", "color[red]"]}


def _draws(value, shape, rng, scale=0.0):
    if value is None:
        return None
    arr = np.asarray(value, dtype=float)
    if arr.shape == shape:
        return arr
    return np.broadcast_to(arr, shape) + scale * rng.normal(size=shape)


def make_fit(
    family: str = "gaussian",
    variant: str = "random_intercepts",
    *,
    data: pd.DataFrame | None = None,
    terms: list[dict] | None = None,
    chains: int = 4,
    draws: int = 500,
    intercept=0.0,
    beta=None,
    group_effect=None,
    tau=1.0,
    sigma=1.0,
    lam: float | None = None,
    jitter: float = 0.0,
    trials=None,
    exposure: str | None = None,
    seed: int = 0,
    log_lik: bool = True,
) -> xr.DataTree:
    """A DataTree shaped like hp.fit's output.

    ``data`` holds columns ``y``, ``group`` and the term columns (default: 4 groups a-d of 3 rows, one
    numeric predictor ``x``). Posterior values are scalars (constant over draws, plus ``jitter`` x normal
    noise) or full arrays (chains, draws[, ...]).
    """
    rng = np.random.default_rng(seed)
    if data is None:
        data = pd.DataFrame({
            "group": np.repeat(["a", "b", "c", "d"], 3),
            "x": rng.normal(size=12),
        })
        data["y"] = rng.normal(size=12) if family == "gaussian" else rng.integers(0, 2, size=12).astype(float)
    if terms is None:
        terms = [NUMERIC_X] if "x" in data.columns else []
    codes, labels = pd.factorize(data["group"], sort=False)
    J, n = len(labels), len(data)
    X = design_matrix(data, terms)
    names = [nm for t in terms for nm in t["names"]]
    P = len(names)
    shape = (chains, draws)
    post = {N.INTERCEPT: ((*N.SAMPLE_DIMS,), _draws(intercept, shape, rng, jitter))}
    if P:
        b = np.zeros(P) if beta is None else beta
        post[N.BETA] = ((*N.SAMPLE_DIMS, N.PREDICTOR), _draws(b, (*shape, P), rng, jitter))
    ge = np.zeros(J) if group_effect is None else group_effect
    post[N.GROUP_EFFECT] = ((*N.SAMPLE_DIMS, N.GROUP), _draws(ge, (*shape, J), rng, jitter))
    if tau is not None and variant != "ridge_fixed_effects":
        post[N.TAU] = ((*N.SAMPLE_DIMS,), np.abs(_draws(tau, shape, rng, jitter)))
    if family == "gaussian":
        post[N.SIGMA] = ((*N.SAMPLE_DIMS,), np.abs(_draws(sigma, shape, rng, jitter)))
    coords = {"chain": np.arange(chains), "draw": np.arange(draws), N.GROUP: np.asarray(labels, dtype=object)}
    if P:
        coords[N.PREDICTOR] = np.asarray(names, dtype=object)
    posterior = xr.Dataset(post, coords=coords)

    y = data["y"].to_numpy(dtype=float)
    const = xr.Dataset(
        {N.GROUP_IDX: ((N.OBS,), codes.astype(np.int64)),
         N.GROUP_N: ((N.GROUP,), np.bincount(codes, minlength=J))},
        coords={N.OBS: np.arange(n), N.GROUP: np.asarray(labels, dtype=object)},
    )
    denom = np.bincount(codes, minlength=J).astype(float)
    trials_name = None
    if family == "binomial":
        if isinstance(trials, str):
            tv = data[trials].to_numpy(dtype=float)
        else:
            tv = np.full(n, float(trials))
        trials_name = trials
        const[N.TRIALS] = ((N.OBS,), tv)
        denom = np.bincount(codes, weights=tv, minlength=J)
    if exposure is not None:
        ev = data[exposure].to_numpy(dtype=float)
        const[N.EXPOSURE] = ((N.OBS,), ev)
        denom = np.bincount(codes, weights=ev, minlength=J)
    const[N.GROUP_DENOM] = ((N.GROUP,), denom)
    const[N.GROUP_RAW_MEAN] = ((N.GROUP,), np.bincount(codes, weights=y, minlength=J) / denom)
    if P:
        const = const.assign_coords({N.PREDICTOR: np.asarray(names, dtype=object)})
        const[N.X] = ((N.OBS, N.PREDICTOR), X)
        const[N.X_CENTER] = ((N.PREDICTOR,), X.mean(axis=0))
        const[N.X_SCALE] = ((N.PREDICTOR,), np.ones(P))
    obs = xr.Dataset({N.Y: ((N.OBS,), y)}, coords={N.OBS: np.arange(n)})
    children = {"posterior": posterior, "constant_data": const, "observed_data": obs}
    if log_lik:
        Xda = const[N.X] if P else None
        offset = np.log(const[N.EXPOSURE]) if N.EXPOSURE in const else None
        eta = linear_predictor(posterior, Xda, const[N.GROUP_IDX], offset)
        ll = get_family(family).log_likelihood(obs[N.Y], eta, sigma=posterior.get(N.SIGMA),
                                               trials=const.get(N.TRIALS))
        children["log_likelihood"] = ll.transpose(*N.SAMPLE_DIMS, N.OBS).rename(N.Y).to_dataset()
    dt = xr.DataTree.from_dict(children)
    settings = {"data": {"y": "y", "group": "group", "family": family, "trials": trials_name,
                         "exposure": exposure, "predictors": names, "terms": terms}}
    if variant == "ridge_fixed_effects":
        settings["lam"] = 1.0 if lam is None else lam
    dt.attrs = {N.ATTR_VARIANT: variant, N.ATTR_FAMILY: family, N.ATTR_VERSION: "test",
                N.ATTR_SETTINGS: json.dumps(settings)}
    return dt
