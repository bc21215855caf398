"""The hand-written Pólya-Gamma sampler (Devroye's method as in BayesLogit; Polson, Scott & Windle 2013,
Algorithm 1, compiled by numba) that the Gibbs kernel used until bench_libraries.py measured it against
the polyagamma package (benchmarks/README.md, "Libraries").

Kept here, outside the package, only so that the comparison can be re-run: the functions as they were in
``hierpool/inference/gibbs.py`` (commit 89bf42a), verbatim, plus :func:`pg_draws_reference`.
"""

from __future__ import annotations

import math

import numpy as np
from numba import njit

_TRUNC = 0.64
_PI = math.pi

# ------------------------------------------------------------------------------------------------------
# Pólya-Gamma PG(1, c): Devroye's sampler as in BayesLogit (Polson, Scott & Windle 2013, Algorithm 1).


@njit(inline="always")
def _acoef(n, x):
    k = n + 0.5
    if x > _TRUNC:
        return _PI * k * math.exp(-0.5 * k * k * _PI * _PI * x)
    return math.exp(-1.5 * (math.log(0.5 * _PI) + math.log(x)) + math.log(_PI * k) - 2.0 * k * k / x)


@njit(inline="always")
def _log_phi(x):
    return math.log(0.5 * math.erfc(-x / math.sqrt(2.0)))


@njit(inline="always")
def _mass_texpon(z):
    fz = 0.125 * _PI * _PI + 0.5 * z * z
    rt = math.sqrt(1.0 / _TRUNC)
    b = rt * (_TRUNC * z - 1.0)
    a = -rt * (_TRUNC * z + 1.0)
    x0 = math.log(fz) + fz * _TRUNC
    qdivp = 4.0 / _PI * (math.exp(x0 - z + _log_phi(b)) + math.exp(x0 + z + _log_phi(a)))
    return 1.0 / (1.0 + qdivp)


@njit(inline="always")
def _rtigauss(rng, z):
    """Inverse Gaussian IG(1/z, 1) truncated to (0, 0.64)."""
    mu = 1.0 / z if z > 0.0 else math.inf
    x = _TRUNC + 1.0
    if mu > _TRUNC:
        alpha = 0.0
        while rng.random() > alpha:
            e1 = rng.standard_exponential()
            e2 = rng.standard_exponential()
            while e1 * e1 > 2.0 * e2 / _TRUNC:
                e1 = rng.standard_exponential()
                e2 = rng.standard_exponential()
            x = 1.0 + e1 * _TRUNC
            x = _TRUNC / (x * x)
            alpha = math.exp(-0.5 * z * z * x)
    else:
        while x > _TRUNC:
            y = rng.standard_normal()
            muy = mu * y * y
            x = mu + 0.5 * mu * muy - 0.5 * mu * math.sqrt(4.0 * muy + muy * muy)
            if rng.random() > mu / (mu + x):
                x = mu * mu / x
    return x


@njit
def _pg1(rng, c):
    """One draw of PG(1, c)."""
    z = 0.5 * abs(c)
    fz = 0.125 * _PI * _PI + 0.5 * z * z
    while True:
        if rng.random() < _mass_texpon(z):
            x = _TRUNC + rng.standard_exponential() / fz
        else:
            x = _rtigauss(rng, z)
        s = _acoef(0, x)
        y = rng.random() * s
        n = 0
        while True:
            n += 1
            if n % 2 == 1:
                s -= _acoef(n, x)
                if y <= s:
                    return 0.25 * x
            else:
                s += _acoef(n, x)
                if y > s:
                    break


@njit
def _pg(rng, b, c):
    """PG(b, c) for a whole number b >= 0: the sum of b independent PG(1, c) draws."""
    out = 0.0
    for _ in range(b):
        out += _pg1(rng, c)
    return out


@njit(nogil=True, cache=True)
def _pg_many(rng, b, c, out):
    for i in range(c.shape[0]):
        out[i] = _pg(rng, b[i], c[i])


def pg_draws_reference(b, c, seed=None) -> np.ndarray:
    """Independent draws ``PG(b_i, c_i)`` from the hand-written sampler (whole numbers ``b``)."""
    b, c = np.broadcast_arrays(np.asarray(b), np.asarray(c, dtype=np.float64))
    out = np.empty(c.shape)
    _pg_many(np.random.default_rng(seed), np.ascontiguousarray(b, dtype=np.int64).ravel(),
             np.ascontiguousarray(c).ravel(), out.reshape(-1))
    return out
