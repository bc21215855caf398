"""The compiled ziggurat (Marsaglia & Tsang 2000) on xoshiro256++ that drew hierpool's conditional normal
draws until bench_libraries.py measured it against numpy's Generator (benchmarks/README.md, "Libraries").

Kept here, outside the package, only so that the comparison can be re-run: it is the kernel as it was in
``hierpool/core/kernels.py`` (commit 89bf42a), verbatim.
"""

from __future__ import annotations

import math

import numpy as np
from numba import njit

from hierpool.core.kernels import each_in_threads


def _ziggurat_tables(n: int = 256, r: float = 3.6541528853610088):
    """Marsaglia & Tsang's (2000) ziggurat for the standard normal, ``n`` layers of equal area ``v``.

    ``edge[k]`` is the right edge of layer k (``edge[0] = v / f(r)``, the base strip's width, its
    rectangle ending at ``edge[1] = r``, then ``edge[k + 1] = f^-1(f(edge[k]) + v / edge[k])`` up to
    ``edge[n] = 0``); with ``r`` for 256 layers the top layer's area equals ``v`` to 1e-13.
    """
    def f(x):
        return math.exp(-0.5 * x * x)

    v = r * f(r) + math.sqrt(math.pi / 2) * math.erfc(r / math.sqrt(2))  # base: rectangle + tail
    edge = np.zeros(n + 1)
    edge[0], edge[1] = v / f(r), r
    for k in range(1, n - 1):
        edge[k + 1] = math.sqrt(-2.0 * math.log(f(edge[k]) + v / edge[k]))
    scale = 2.0 ** -52
    accept = np.floor(edge[1:] / edge[:-1] * 2.0**52).astype(np.int64)  # fast test: rabs < accept[k]
    return edge[:-1] * scale, accept, np.exp(-0.5 * edge**2), r


_ZIG_W, _ZIG_K, _ZIG_F, _ZIG_R = _ziggurat_tables()


@njit(cache=True, nogil=True, inline="always")
def _rotl(x, k):
    return (x << np.uint64(k)) | (x >> np.uint64(64 - k))


@njit(cache=True, nogil=True, inline="always")
def _xoshiro(s0, s1, s2, s3):
    """xoshiro256++ (Blackman & Vigna 2018): 64 random bits and the next state."""
    out = _rotl(s0 + s3, 23) + s0
    t = s1 << np.uint64(17)
    s2 ^= s0
    s3 ^= s1
    s1 ^= s2
    s0 ^= s3
    s2 ^= t
    s3 = _rotl(s3, 45)
    return out, s0, s1, s2, s3


@njit(cache=True, nogil=True)
def _uniform_open01(st):
    """Uniform on (0, 1] from 53 random bits; advances the state array ``st``."""
    bits, st[0], st[1], st[2], st[3] = _xoshiro(st[0], st[1], st[2], st[3])
    return (np.float64(np.int64(bits >> np.uint64(11))) + 1.0) * (1.0 / 9007199254740992.0)


@njit(cache=True, nogil=True)
def _normal_slow(st, k, x, negative, F, r):
    """The ziggurat's rare cases for a draw outside its layer's inner rectangle: the exact wedge test
    (layers k >= 1), or Marsaglia's exact tail method beyond ``r`` (the base layer). Returns
    (accepted, value)."""
    if k == 0:
        while True:
            xx = -math.log(_uniform_open01(st)) / r
            yy = -math.log(_uniform_open01(st))
            if yy + yy > xx * xx:
                return True, (-(r + xx) if negative else r + xx)
    if F[k] + (F[k + 1] - F[k]) * (1.0 - _uniform_open01(st)) < math.exp(-0.5 * x * x):
        return True, (-x if negative else x)
    return False, 0.0


@njit(cache=True, nogil=True)
def _fill_standard_normal(st, out, W, Kt, F, r):
    """Fill ``out`` with exact standard normal draws by the ziggurat (Marsaglia & Tsang 2000) on the
    xoshiro256++ state ``st`` (advanced). Of 64 random bits, 8 pick the layer, 1 the sign and 52 the
    position; 98.8% of draws are accepted by one integer comparison, the rest go to
    :func:`_normal_slow`. The state lives in registers on the fast path (about 2 ns a draw)."""
    s0, s1, s2, s3 = st[0], st[1], st[2], st[3]
    n = out.shape[0]
    i = 0
    while i < n:
        bits, s0, s1, s2, s3 = _xoshiro(s0, s1, s2, s3)
        b = np.int64(bits >> np.uint64(1))  # 63 bits, as a signed integer: fast conversion to float
        k = b & 0xFF
        negative = (b >> 8) & 1
        rabs = b >> 11  # 52 bits
        x = np.float64(rabs) * W[k]
        if rabs < Kt[k]:
            out[i] = -x if negative else x
            i += 1
            continue
        st[0], st[1], st[2], st[3] = s0, s1, s2, s3
        ok, v = _normal_slow(st, k, x, negative, F, r)
        s0, s1, s2, s3 = st[0], st[1], st[2], st[3]
        if ok:
            out[i] = v
            i += 1
    st[0], st[1], st[2], st[3] = s0, s1, s2, s3


def _rng_state(seed_seq: np.random.SeedSequence) -> np.ndarray:
    """A xoshiro256++ state (4 uint64, not all zero) from a ``SeedSequence``."""
    st = seed_seq.generate_state(4, np.uint64)
    if not st.any():
        st[0] = 1
    return st


def standard_normals(seed_seq: np.random.SeedSequence, n: int) -> np.ndarray:
    """``n`` standard normal draws from the compiled generator behind :func:`gaussian_conditional_draws`
    (for its tests)."""
    out = np.empty(int(n))
    _fill_standard_normal(_rng_state(seed_seq), out, _ZIG_W, _ZIG_K, _ZIG_F, _ZIG_R)
    return out


@njit(cache=True, nogil=True)
def _gaussian_conditional_rows(out, st, r0, ybar, xbar, size_idx, a, b, c, sd, W, Kt, F, r):
    R, J = out.shape
    P = xbar.shape[1]
    z = np.empty(min(J, 4096))  # normals drawn a cache-sized chunk at a time
    for i in range(R):
        s = r0 + i
        for j0 in range(0, J, z.shape[0]):
            m = min(z.shape[0], J - j0)
            _fill_standard_normal(st, z[:m], W, Kt, F, r)
            for q in range(m):
                j = j0 + q
                e = ybar[j] - a[s]
                for p in range(P):
                    e -= xbar[j, p] * b[s, p]
                k = size_idx[j]
                out[i, j] = c[s, k] * e + sd[s, k] * z[q]


def gaussian_conditional_draws(out: np.ndarray, seed_seq: np.random.SeedSequence, ybar, xbar, size_idx, a, b, c,
                               sd, block_values: int = 1 << 20) -> None:
    """Fill ``out`` (draws x groups) with ``c[s, k_j] * (ybar_j - a_s - xbar_j . b_s) + sd[s, k_j] * z``.

    ``z`` standard normal; ``k_j`` is group j's size class, ``c`` and ``sd`` (draws x classes) the
    conditional mean factor and sd of that class. Blocks of about ``block_values`` values get their own
    generator (a xoshiro256++ state from ``seed_seq.spawn``) and draw ``z`` by the ziggurat as they
    write, compiled (about 3x faster than numpy's ``standard_normal``, no buffer of normals); so the
    draws depend on the seed and the shape only. Blocks run in threads and ``out`` is written once.
    """
    S, J = out.shape
    args = (np.ascontiguousarray(ybar, dtype=np.float64), np.ascontiguousarray(xbar, dtype=np.float64),
            np.asarray(size_idx, dtype=np.int64), np.ascontiguousarray(a, dtype=np.float64),
            np.ascontiguousarray(b, dtype=np.float64), np.ascontiguousarray(c, dtype=np.float64),
            np.ascontiguousarray(sd, dtype=np.float64), _ZIG_W, _ZIG_K, _ZIG_F, _ZIG_R)
    per = max(1, block_values // max(J, 1))
    starts = list(range(0, S, per))
    children = seed_seq.spawn(len(starts))

    def work(i):
        r0 = starts[i]
        _gaussian_conditional_rows(out[r0:r0 + per], _rng_state(children[i]), r0, *args)

    each_in_threads(work, range(len(starts)))
