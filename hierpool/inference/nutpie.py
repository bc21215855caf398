"""nutpie for models with few parameters: skip the compilation of C callbacks, keep nutpie's sampler.

``nutpie.compile_pymc_model`` (numba backend) wraps PyTensor's compiled log-density in numba C
callbacks that nutpie's Rust sampler calls without Python. Those wrappers cannot be cached on disk and
take 7-11 s to compile on the 2-core reference machine, whatever the model's size, while sampling a
collapsed model (a handful of parameters, O(distinct group sizes) per gradient) takes about 1-2 s.

For such models hierpool compiles the same log-density and gradient with PyTensor's numba backend (whose
compiled functions ARE cached on disk) and hands nutpie a Python callback
(``nutpie.compiled_pyfunc.from_pyfunc``, the route nutpie's own JAX backend takes). Each gradient then
costs a few microseconds of Python overhead, negligible at this size, while compilation drops to about
1.5 s. The sampler, its adaptation and its output are nutpie's, unchanged.

This uses ``nutpie.compile_pymc._make_functions``, a private helper of nutpie; if it is missing or its
signature changed, :func:`compile_small` returns None and :func:`hierpool.fit` uses ``pymc.sample`` with
nutpie's regular compilation instead (same posterior, slower start).
"""

from __future__ import annotations

import threading

import numpy as np

__all__ = ["compile_small", "sample_small", "SUPPORTED_KWARGS"]

#: ``hp.fit`` keyword arguments this path understands (others go through ``pymc.sample``).
SUPPORTED_KWARGS = {"target_accept", "max_treedepth"}


class _SampledCoords:
    """``model`` seen with only the coordinates of the sampled variables' dims.

    nutpie turns every coordinate of the model into a ``pandas.Index``; a model with a million groups
    spends about 0.8 s on the ``group`` coordinate, which no sampled variable of a collapsed model uses.
    """

    def __init__(self, model, names):
        self._model = model
        value_to_rv = {v.name: rv.name for v, rv in model.values_to_rvs.items()}
        dims = model.named_vars_to_dims
        used = {d for n in names for key in (n, value_to_rv.get(n)) for d in (dims.get(key) or ())}
        self.coords = {k: v for k, v in model.coords.items() if k in used}

    def __getattr__(self, name):
        return getattr(self._model, name)


def compile_small(model, var_names):
    """A nutpie model of ``model`` with Python callbacks into PyTensor's numba functions, or None."""
    try:
        from nutpie import compile_pymc as cp
        from nutpie.compiled_pyfunc import from_pyfunc
        from pymc.initial_point import make_initial_point_fn

        ipf = make_initial_point_fn(model=model, jitter_rvs=set(model.free_RVs), default_strategy="support_point",
                                    return_transformed=True)
        lock = threading.Lock()

        def locked_ipf(*args, **kwargs):
            with lock:
                return ipf(*args, **kwargs)

        n_dim, _, logp_pt, expand_pt, init_fn, shape_info, reparam = cp._make_functions(
            model, mode="NUMBA", compute_grad=True, join_expanded=False, pymc_initial_point_fn=locked_ipf,
            var_names=var_names)
        logp_jit, expand_jit = logp_pt.vm.jit_fn, expand_pt.vm.jit_fn
        logp_shared = [v.get_value() for v in logp_pt.get_shared()]
        expand_shared = [v.get_value() for v in expand_pt.get_shared()]
        names, _, shapes = shape_info
        dims, coords = cp._prepare_dims_and_coords(_SampledCoords(model, names), shape_info, reparam)
    except (ImportError, AttributeError, TypeError, ValueError):
        return None

    def make_logp_fn():
        def logp(x, **_):
            value, grad = logp_jit(x, *logp_shared)
            return float(value), np.asarray(grad, dtype=np.float64)

        return logp

    def make_expand_fn(seed1, seed2, chain):
        def expand(x, **_):
            values = expand_jit(x, *expand_shared)
            return {n: np.asarray(v, dtype=np.float64).reshape(s) for n, v, s in zip(names, values, shapes, strict=True)}

        return expand

    return from_pyfunc(ndim=n_dim, make_logp_fn=make_logp_fn, make_expand_fn=make_expand_fn,
                       make_initial_point_fn=init_fn, expanded_dtypes=[np.dtype("float64")] * len(names),
                       expanded_shapes=shapes, expanded_names=names, dims=dims, coords=coords,
                       reparameterized_names=reparam)


def sample_small(compiled, *, draws: int, tune: int, chains: int, cores: int, random_seed, progressbar: bool,
                 kwargs: dict):
    """Run nutpie on a model from :func:`compile_small`; returns nutpie's DataTree (posterior, sample_stats)."""
    import nutpie

    nuts = dict(kwargs)
    if "max_treedepth" in nuts:
        nuts["maxdepth"] = nuts.pop("max_treedepth")
    seed = None if random_seed is None else int(np.random.SeedSequence(int(random_seed)).generate_state(1)[0])
    # The callbacks hold the GIL, so chains in parallel threads only contend for it: one thread running
    # the chains one after another was faster (about 1.0 s against 1.9 s for 4 x 2000 iterations of a
    # collapsed model on the 2-core machine). ``cores`` is accepted for symmetry and ignored.
    del cores
    return nutpie.sample(compiled, draws=draws, tune=max(int(tune), 1), chains=chains, cores=1, seed=seed,
                         save_warmup=False, progress_bar=progressbar, **nuts)
