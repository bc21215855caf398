"""Hand-built fit DataTrees (numpy + xarray, no sampling) with what the analysis layer reads.

They hold the same groups as a real fit from ``hp.fit`` (see ``sampling.constant_data``/``finalize``):
posterior (intercept, group_effect, tau or not, sigma for gaussian), constant_data (group_idx, group_n,
group_raw_mean, group_denominator, trials), observed_data y, and the hierpool attrs.
"""

from __future__ import annotations

import json

import numpy as np
import xarray as xr

from hierpool.core import names as N


def synthetic_fit(
    group_effect: np.ndarray,
    intercept: np.ndarray | float = 0.0,
    *,
    family: str = "gaussian",
    variant: str = "random_intercepts",
    tau: np.ndarray | float | None = 1.0,
    sigma: np.ndarray | float | None = 1.0,
    lam: float | None = None,
    y: np.ndarray | None = None,
    group_idx: np.ndarray | None = None,
    trials: np.ndarray | None = None,
    labels: list[str] | None = None,
    X: np.ndarray | None = None,
    beta: np.ndarray | None = None,
) -> xr.DataTree:
    """A fit-shaped DataTree from arrays: ``group_effect`` has shape (chains, draws, groups).

    Without ``y``, every group gets ``j + 1`` rows with y = j (so raw means are 0, 1, 2, ...).
    ``tau=None`` (or a ridge ``variant``) leaves tau out of the posterior; give ``lam`` for a ridge fit.
    Predictors: ``X`` (rows x predictors, user's scale) with ``beta`` (chains, draws, predictors).
    """
    ge = np.asarray(group_effect, dtype=float)
    C, D, J = ge.shape
    labels = labels or [f"g{j}" for j in range(J)]
    a = np.broadcast_to(np.asarray(intercept, dtype=float), (C, D)).copy()
    if y is None:
        group_idx = np.repeat(np.arange(J), np.arange(1, J + 1))
        y = group_idx.astype(float)
    y = np.asarray(y, dtype=float)
    group_idx = np.asarray(group_idx, dtype=np.int64)
    n = np.bincount(group_idx, minlength=J)
    denom = np.bincount(group_idx, weights=trials, minlength=J) if trials is not None else n.astype(float)
    raw = np.bincount(group_idx, weights=y, minlength=J) / denom
    sd = ("chain", "draw")
    post = {N.INTERCEPT: (sd, a), N.GROUP_EFFECT: ((*sd, N.GROUP), ge)}
    if tau is not None and variant != "ridge_fixed_effects":
        post[N.TAU] = (sd, np.broadcast_to(np.asarray(tau, dtype=float), (C, D)).copy())
    if family == "gaussian" and sigma is not None:
        post[N.SIGMA] = (sd, np.broadcast_to(np.asarray(sigma, dtype=float), (C, D)).copy())
    coords = {"chain": np.arange(C), "draw": np.arange(D), N.GROUP: np.asarray(labels, dtype=object)}
    posterior = xr.Dataset(post, coords=coords)
    const = xr.Dataset(
        {
            N.GROUP_IDX: ((N.OBS,), group_idx),
            N.GROUP_N: ((N.GROUP,), n),
            N.GROUP_RAW_MEAN: ((N.GROUP,), raw),
            N.GROUP_DENOM: ((N.GROUP,), denom),
        },
        coords={N.GROUP: np.asarray(labels, dtype=object), N.OBS: np.arange(y.size)},
    )
    if trials is not None:
        const[N.TRIALS] = ((N.OBS,), np.asarray(trials, dtype=float))
    if X is not None:
        X = np.asarray(X, dtype=float)
        names = np.asarray([f"x{k + 1}" for k in range(X.shape[1])], dtype=object)
        const = const.assign_coords({N.PREDICTOR: names})
        const[N.X] = ((N.OBS, N.PREDICTOR), X)
        const[N.X_CENTER] = ((N.PREDICTOR,), X.mean(axis=0))
        const[N.X_SCALE] = ((N.PREDICTOR,), X.std(axis=0))
        posterior = posterior.assign_coords({N.PREDICTOR: names})
        posterior[N.BETA] = ((*sd, N.PREDICTOR), np.asarray(beta, dtype=float))
    obs = xr.Dataset({N.Y: ((N.OBS,), y)}, coords={N.OBS: np.arange(y.size)})
    dt = xr.DataTree.from_dict({"posterior": posterior, "constant_data": const, "observed_data": obs})
    settings = {"priors": {}}
    if lam is not None:
        settings["lam"] = float(lam)
    dt.attrs = {N.ATTR_VARIANT: variant, N.ATTR_FAMILY: family, N.ATTR_VERSION: "test",
                N.ATTR_SETTINGS: json.dumps(settings)}
    return dt
