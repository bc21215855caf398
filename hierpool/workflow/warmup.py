"""Compile hierpool's kernels ahead of time, so that a user's first analysis does not wait for numba.

The compiled kernels (:mod:`hierpool.core.kernels`, the diagnostics, the Gibbs sampler, the integrated
likelihood) are cached on disk by numba (``cache=True``): only the first call in a fresh environment
compiles them. ``python -m hierpool.workflow.warmup`` (run by ``scripts/setup.sh`` after installing) makes
that first call on tiny data, without MCMC: prior draws stand in for a posterior (:func:`hierpool.from_trace`),
then every analysis a run makes is computed once, for a gaussian fit (float64 group effects and float32,
as large fits store them) and a bernoulli one.
"""

from __future__ import annotations

import sys
import time
import warnings

__all__ = ["warm_up"]


def _prior_fit(model, draws: int = 40):
    import pymc as pm
    import xarray as xr

    import hierpool as hp
    from hierpool.core import names as N

    keep = [v for v in (N.INTERCEPT, N.BETA, N.GROUP_EFFECT, N.TAU, N.SIGMA) if v in model.named_vars]
    prior = pm.sample_prior_predictive(draws=draws, model=model, random_seed=1)["prior"]
    return hp.from_trace(xr.DataTree.from_dict({"posterior": prior.to_dataset()[keep]}), model, random_seed=1)


def warm_up(verbose: bool = False) -> float:
    """Call every cached kernel once on tiny data; return the seconds it took."""
    import logging

    import numpy as np

    import hierpool as hp
    from hierpool.core import names as N

    t0 = time.perf_counter()
    pymc_log = logging.getLogger("pymc")
    level = pymc_log.level
    pymc_log.setLevel(logging.ERROR)  # "Sampling: [...]" of the prior draws says nothing to a user
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        for family in ("gaussian", "bernoulli"):
            df = hp.datasets.simulate(family, n_groups=30, n_predictors=1, seed=1)
            dt = _prior_fit(hp.random_intercepts(df, y="y", group="group", predictors=["x1"], family=family))
            for dtype in (np.float64, np.float32):
                dt["posterior"][N.GROUP_EFFECT] = dt["posterior"][N.GROUP_EFFECT].astype(dtype)
                hp.shrinkage(dt)
                hp.rank_groups(dt)
            hp.ppc(dt, n_draws=20, plot=False, random_seed=1)
            hp.predict(dt, df.head(5), random_seed=1)
            hp.check_sampling(dt, warn=False)
        from hierpool.core import kernels as K

        K._touch_pages(np.zeros(2 * K._PAGE, np.uint8), K._PAGE)  # only large arrays call it (kernels.empty_large)
        for dtype in (np.float32, np.float64):  # ranks kept as int32: more than 2**20 groups only
            acc = K.new_rank_accumulators(3)
            store = K.RankStore(np.empty((2, 3), np.int32), None, 0)
            K.rank_rows(np.zeros((2, 3), dtype), True, 1, acc, out=store, rank_sums=False)
            K.column_quantiles(store, [(0.5, "median")], top_k=1, acc=acc)
            # the conditional draws of collapsed gaussian fits (float32: those of large fits)
            K.gaussian_conditional_draws(np.empty((2, 3), dtype), np.random.SeedSequence(1), np.zeros(3),
                                         np.zeros((3, 1)), np.zeros(3, np.int64), np.zeros(2), np.zeros((2, 1)),
                                         np.zeros((2, 1)), np.ones((2, 1)))
    pymc_log.setLevel(level)
    seconds = time.perf_counter() - t0
    if verbose:
        print(f"hierpool: kernels compiled and cached in {seconds:.1f} s", file=sys.stderr)
    return seconds


if __name__ == "__main__":
    warm_up(verbose=True)
