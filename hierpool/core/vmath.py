"""Elementary functions that compiled loops can vectorize: exp, log1p on [0, 1] and softplus.

numba's pip wheels have no SVML, so LLVM cannot vectorize a loop that calls ``math.exp`` or
``math.log1p``: each value costs a call into the C library (4.2-4.3 ns for exp, more for log1p, on the
AMD EPYC of ``benchmarks/README.md``). The functions here are arithmetic, selects and bit casts only,
inlined, so that a simple loop over arrays calling them vectorizes (AVX-512 there). Each says its
accuracy; the tests hold them to numpy's functions (``tests/test_kernels.py``,
``tests/test_integrated.py``).

Used by the quadrature of :mod:`hierpool.core.integrated_rows` (``exp``) and the stored pointwise
log-likelihood (:func:`hierpool.core.kernels.pointwise_loglik`: ``exp`` and ``softplus``). A loop calling
``log1p_unit`` or ``softplus`` vectorizes only compiled with ``error_model="numpy"`` (numba's default
checks every division for zero, a branch that keeps the loop scalar).

Maintenance: these functions are inlined into their callers, and numba's on-disk cache checks only the
caller's own source file: after editing this module, delete the ``__pycache__`` of ``hierpool/core`` (or
touch ``kernels.py`` and ``integrated_rows.py``) before timing or testing, or stale machine code runs.
"""

from __future__ import annotations

import math

import numpy as np
from numba import njit, types
from numba.extending import intrinsic

__all__ = ["exp", "log1p_unit", "softplus"]


@intrinsic
def f64_from_bits(typingctx, i):
    """The float64 whose bit pattern is the int64 ``i`` (a bitcast, which numba has no function for)."""
    def codegen(context, builder, signature, args):
        return builder.bitcast(args[0], context.get_value_type(types.float64))
    return types.float64(types.int64), codegen


_LOG2E = 1.4426950408889634
_LN2_HI = 6.93147180369123816490e-01  # ln 2 in two parts (Cody and Waite): n * _LN2_HI is exact for |n| < 2**11
_LN2_LO = 1.90821492927058770002e-10


@njit(cache=True, nogil=True, inline="always")
def expm1_parts(x):
    """``(expm1(r), n)`` with ``x = n ln 2 + r``, ``|r| <= ln 2 / 2``: Cody-Waite reduction and the Taylor
    polynomial of degree 14 (truncation below 1e-18 relative there). Arithmetic and selects only, so that
    loops over it vectorize. x is clamped to [-746, 709.8]: below, the scaled result underflows to 0 by
    itself; the caller selects inf above and NaN."""
    v = min(max(x, -746.0), 709.8)
    nf = np.floor(v * _LOG2E + 0.5)
    r = (v - nf * _LN2_HI) - nf * _LN2_LO
    p = 1.0 / 87178291200.0
    p = p * r + 1.0 / 6227020800.0
    p = p * r + 1.0 / 479001600.0
    p = p * r + 1.0 / 39916800.0
    p = p * r + 1.0 / 3628800.0
    p = p * r + 1.0 / 362880.0
    p = p * r + 1.0 / 40320.0
    p = p * r + 1.0 / 5040.0
    p = p * r + 1.0 / 720.0
    p = p * r + 1.0 / 120.0
    p = p * r + 1.0 / 24.0
    p = p * r + 1.0 / 6.0
    p = p * r + 0.5
    p = p * r + 1.0
    return p * r, np.int64(nf)


@njit(cache=True, nogil=True, inline="always")
def scale2(v, n):
    """``v * 2**n`` for -1076 <= n <= 1024, in two factors so that neither overflows nor is subnormal."""
    h = n >> 1
    return v * f64_from_bits((h + 1023) << 52) * f64_from_bits((n - h + 1023) << 52)


@njit(cache=True, nogil=True, inline="always")
def exp(x):
    """exp(x) within one ulp (against the C library and numpy), overflow to inf, underflow through the
    subnormals to 0, and NaN: :func:`expm1_parts` scaled."""
    q, n = expm1_parts(x)
    res = scale2(q + 1.0, n)
    res = math.inf if x > 709.8 else res
    return x if x != x else res


@njit(cache=True, nogil=True, inline="always")
def log1p_unit(t):
    """``log1p(t)`` for ``0 <= t <= 1`` (NaN gives NaN): ``2 atanh(s)``, ``s = t / (2 + t) <= 1/3``, by its
    series to ``s^31 / 31`` (the rest below 2e-17 relative at t = 1, less below), within a few ulp."""
    s = t / (2.0 + t)
    s2 = s * s
    p = 1.0 / 31.0
    p = p * s2 + 1.0 / 29.0
    p = p * s2 + 1.0 / 27.0
    p = p * s2 + 1.0 / 25.0
    p = p * s2 + 1.0 / 23.0
    p = p * s2 + 1.0 / 21.0
    p = p * s2 + 1.0 / 19.0
    p = p * s2 + 1.0 / 17.0
    p = p * s2 + 1.0 / 15.0
    p = p * s2 + 1.0 / 13.0
    p = p * s2 + 1.0 / 11.0
    p = p * s2 + 1.0 / 9.0
    p = p * s2 + 1.0 / 7.0
    p = p * s2 + 1.0 / 5.0
    p = p * s2 + 1.0 / 3.0
    p = p * s2 + 1.0
    return 2.0 * s * p


@njit(cache=True, nogil=True, inline="always")
def softplus(x):
    """``log(1 + exp(x))`` = ``max(x, 0) + log1p(exp(-|x|))``, within a few ulp; inf at inf, NaN at NaN."""
    return max(x, 0.0) + log1p_unit(exp(-abs(x)))
