"""Compiled kernels (numba) for the per-group work on large posteriors: ranks, column quantiles, draws.

At a million groups the analysis layer handles a few hundred draws x a million groups; numpy's
general-purpose routines (a stable argsort per draw, ``np.quantile`` along the draws axis) were the
largest costs of a whole fit there. These kernels compute the SAME numbers (tests compare them with the
numpy definitions exactly) with algorithms chosen for this shape:

- :func:`rank_rows`: ranks within each draw of ``inverse_link(offset + value)`` (applied on the fly:
  the stored draws are read in place) by a stable LSD radix sort (four 8-bit digits) of (key, group)
  packed in 64 bits, the key being the value's float32 bits in order, then the runs of neighbours the
  keys do not decide are ordered by (float64 value, group), so the result equals the inverse of
  ``np.argsort(values, kind="stable")`` (ties in group order). Per-group sums of ranks,
  squared rank deviations, top-k and best counts, values and the order statistics accumulate in the same pass, in
  a fixed number of partial sums (results do not depend on the number of threads). The ranks a caller
  keeps go into a :class:`RankStore` (2 or 2.5 bytes a rank up to 2**20 groups), whose quantile pass
  (:func:`rank_store_order_stats`) can take over the per-group rank sums.
- :func:`column_order_stats`: chosen order statistics of every column (blocks of columns transposed
  into contiguous rows and sorted by numpy's SIMD sort, in threads), from which :func:`column_quantiles`
  forms numpy's ``linear``, ``lower`` and ``higher`` quantiles and the median exactly as numpy does;
  :func:`column_summaries` does the same for ``inverse_link(offset + value)`` with means and variances.
- :func:`gaussian_group_stats`: group means and within-group cross-products of the gaussian collapse
  in two passes over the rows, without temporaries of the rows' size.
- :func:`pointwise_loglik`: the stored pointwise log-likelihood of every draw and row, written once
  (no temporaries of its size: at 10,000 groups it holds 1e8 values).
- :func:`gaussian_conditional_draws`: exact conditional draws of gaussian group effects, with standard
  normals from numpy's ``Generator`` (one per block of rows, seeded from one ``SeedSequence``): called
  inside the compiled kernel for float64 output, by Box-Muller on numpy's SIMD float32 functions for
  float32 output (:func:`box_muller_f32`), in threads; the stream depends on the seed and the array's
  shape and dtype only, not on the number of threads (float32 output: on one machine and numpy build;
  numpy's float32 SIMD functions differ by a unit in the last place between CPU feature sets).

numba (a dependency of PyTensor, hence of PyMC) compiles each kernel on first use and caches it on disk
(``cache=True``), so only the first call in a fresh environment pays the compilation.

The family formulas (inverse links, log-likelihoods) are written here again as literals, selected by
integer codes (``_LINKS``, ``_FAMILY_CODES``): compiled code cannot call the
:class:`~hierpool.core.families.Family` objects. These literal branches are the only copies of the family
formulas outside :mod:`hierpool.core.families` (and the binomial pattern kernel of
:mod:`hierpool.core.quadrature` and the count kernels of :mod:`hierpool.core.integrated_rows`), with the
count families' ``within_variance`` in :func:`_column_block` (``hp.shrinkage``'s ``rho``); tests hold
them equal to the Family's to 1e-12 for all four families (those of integrated_rows to scipy's
integration of the same formulas, ``tests/test_integrated.py``).
"""

from __future__ import annotations

import math
import mmap
import os
from concurrent.futures import ThreadPoolExecutor

import numba
import numpy as np
from llvmlite import ir as llvm_ir
from numba import njit, prange, types
from numba.extending import intrinsic

from hierpool.core import vmath as V

__all__ = ["as_float_array", "rank_rows", "RankStore", "rank_store_order_stats", "column_order_stats",
           "column_quantiles", "column_summaries", "gaussian_conditional_draws", "gaussian_group_stats",
           "pointwise_loglik", "empty_large", "box_muller_f32", "N_PARTS"]

#: Partial sums per accumulator in :func:`rank_rows` (fixed, so results do not depend on threads).
N_PARTS = 4
_RADIX_BITS = 8
_RADIX = 1 << _RADIX_BITS
_MASK = _RADIX - 1
_PASSES = 32 // _RADIX_BITS


def as_float_array(a) -> np.ndarray:
    """``a`` as a C-contiguous float32 or float64 array, the dtype kept (float32 draws are read as they
    are stored); other dtypes become float64. No copy when ``a`` already is one."""
    a = np.asarray(a)
    return np.ascontiguousarray(a if a.dtype in (np.float32, np.float64) else a.astype(np.float64))


# ------------------------------------------------------------------------------------------------------
# ranks within rows
_SIGN_BIT = np.uint32(0x80000000)
#: The key of every NaN (above +inf's), whatever its sign bit and payload: ties, so they keep group order.
_NAN_KEY = np.uint32(0xFFFFFFFF)


@intrinsic
def _f32_bits(typingctx, x):
    """The bit pattern of a float32 as uint32 (a bitcast, no memory round trip)."""
    def codegen(context, builder, signature, args):
        return builder.bitcast(args[0], llvm_ir.IntType(32))
    return types.uint32(types.float32), codegen


@intrinsic
def _f32_from_bits(typingctx, x):
    """The float32 whose bit pattern is the uint32 ``x``."""
    def codegen(context, builder, signature, args):
        return builder.bitcast(args[0], llvm_ir.FloatType())
    return types.float32(types.uint32), codegen


@njit(cache=True, nogil=True, inline="always")
def _monotone_key(bits):
    """Map float32 bit patterns to unsigned integers in the order of the floats (-0.0 just below +0.0)."""
    return ~bits if bits & _SIGN_BIT else bits | _SIGN_BIT


@njit(cache=True, nogil=True, inline="always")
def _from_key(key):
    """The inverse of :func:`_monotone_key`: the float32 bit pattern."""
    return key & ~_SIGN_BIT if key & _SIGN_BIT else ~key


@njit(cache=True, nogil=True, inline="always")
def _link_value(x, off, link):
    """The inverse link (code of ``_LINKS``) of ``off + x``, in float64."""
    v = off + x
    if link == 1:
        return 1.0 / (1.0 + np.exp(-v))
    if link == 2:
        return np.exp(v)
    return v


@njit(cache=True, nogil=True)
def _radix_sort_row(row, off, link, sign, exact, acc_value, b, a, val, counts):
    """Sort one row's (key, group) pairs: afterwards ``b[:J]`` holds them packed in uint64 (key in the
    high 32 bits), in the order of the keys, ties in group order; unless ``exact``, ``acc_value`` gains
    the values and ``val`` holds the signed values (computed here anyway). ``a`` is work space.

    ``value = link(off + row[j])`` in float64. Keys are the value's float32 bits, mapped to unsigned
    integers in order; four stable LSD radix passes of 8 bits sort (key, group) packed in one uint64 (a
    pass whose digit is the same for every group moves nothing and is skipped). When ``exact`` (float32
    rows, identity link) the key holds ``sign * row[j]`` itself, and the value is recomputed from it where
    needed. Reading the groups back in value order: :func:`_read_back`, or for exact rows
    :func:`_exact_ranks`.

    Why 8-bit digits: a pass scatters into one write stream per digit value, and 256 streams stay in the
    first-level cache where 65,536 (two 16-bit passes, this kernel until 2026-12) or 2,048 (three 11-bit
    passes) do not; and the digits are counted in a loop of their own, after the keys' (which then
    vectorizes). 1,000,000 float32 normals (exact keys), one thread, on the 2-core AMD EPYC of
    ``benchmarks/README.md``, alternated in one process: 7.4-9.2 ms a row against 12.7-15.1 ms with the
    counts in the key loop; two 16-bit passes took 14.8 ms and three 11-bit passes 17.3 ms.
    """
    J = row.shape[0]
    for j in range(J):
        x = np.float64(row[j])
        if exact:
            f = np.float32(sign * x)
        else:
            v = _link_value(x, off, link)
            acc_value[j] += v
            sv = sign * v + 0.0  # + 0.0 turns -0.0 into +0.0
            val[j] = sv
            f = np.float32(sv)
        k = _monotone_key(_f32_bits(f)) if f == f else _NAN_KEY  # NaN of either sign last, as numpy's sort
        b[j] = (np.uint64(k) << np.uint64(32)) | np.uint64(j)
    if J == 0:
        return
    counts[:] = 0  # the digits' counts in a loop of their own: the key loop above vectorizes without them
    for j in range(J):
        k = np.uint32(b[j] >> np.uint64(32))
        for p in range(_PASSES):
            counts[p, (k >> np.uint32(_RADIX_BITS * p)) & _MASK] += 1
    src = b
    dst = a
    for p in range(_PASSES):
        shift = np.uint64(32 + _RADIX_BITS * p)
        cp = counts[p]
        if cp[np.int64((src[0] >> shift) & np.uint64(_MASK))] == J:
            continue  # one digit value for every group: the pass would keep the order
        total = 0
        for r in range(_RADIX):
            c = cp[r]
            cp[r] = total
            total += c
        for i in range(J):  # stable: equal digits keep their order (ties of keys stay in group order)
            packed = src[i]
            r = np.int64((packed >> shift) & np.uint64(_MASK))
            pos = cp[r]
            cp[r] = pos + 1
            dst[pos] = packed
        src, dst = dst, src
    if src is not b:
        b[:J] = src[:J]


@njit(cache=True, nogil=True, inline="always")
def _exact_value(packed, off, sign):
    """The signed value ``sign * (off + x)`` of an exact row's sorted pair (x from the key's float32)."""
    x = sign * np.float64(_f32_from_bits(_from_key(np.uint32(packed >> np.uint64(32)))))
    return sign * (off + x) + 0.0


@njit(cache=True, nogil=True)
def _exact_ranks(b, off, sign, rk, acc, descending):
    """Exact rows: ``rk[j]`` = the rank of group j from the sorted pairs ``b``, and ``acc`` gains the
    order statistics (:func:`_add_order_stat`); False if two neighbours' values are equal with their
    groups out of order (keys that do not decide: ``off + x`` rounding distinct x to one value, or -0.0
    and 0.0), and then :func:`_read_back` orders the row's groups again.

    The values ``off + x`` of increasing x do not decrease (rounding is monotone), so the sorted pairs
    are in numpy's stable order unless such a tie occurs, and their values are the order statistics
    whether or not one does (a tie reorders groups of one value). No arrays of the order and values are
    written (:func:`_read_back` writes 12 bytes a group and reads them again)."""
    J = rk.shape[0]
    prev_v = -np.inf
    prev_j = np.int64(-1)
    ok = True
    for i in range(J):
        packed = b[i]
        j = np.int64(packed & np.uint64(0xFFFFFFFF))
        v = _exact_value(packed, off, sign)
        if v == prev_v and j < prev_j:
            ok = False
        rk[j] = i + 1
        _add_order_stat(acc, i, v, descending)
        prev_v = v
        prev_j = j
    return ok


#: Segments of :func:`_read_back` up to this long are ordered by insertion, longer ones by a merge sort.
_INSERTION_MAX = 16


@njit(cache=True, nogil=True)
def _order_segment(order, sval, i0, i1):
    """Order ``order[i0:i1]`` and ``sval[i0:i1]`` by (value, group): by insertion when short, else by a
    stable merge sort of the values after ordering the groups. A segment of NaN (one key, so already in
    group order) is left as it is."""
    if sval[i0] != sval[i0]:
        return
    if i1 - i0 <= _INSERTION_MAX:
        for i in range(i0 + 1, i1):
            v = sval[i]
            j = order[i]
            m = i - 1
            while m >= i0 and (sval[m] > v or (sval[m] == v and order[m] > j)):
                sval[m + 1] = sval[m]
                order[m + 1] = order[m]
                m -= 1
            sval[m + 1] = v
            order[m + 1] = j
        return
    groups = order[i0:i1].copy()
    by_group = np.argsort(groups)  # distinct groups: any sort
    vals = sval[i0:i1][by_group]
    by_value = np.argsort(vals, kind="mergesort")  # stable: equal values keep their group order
    for t in range(i1 - i0):
        order[i0 + t] = groups[by_group[by_value[t]]]
        sval[i0 + t] = vals[by_value[t]]


@njit(cache=True, nogil=True)
def _read_back(b, off, link, sign, exact, keys, a, val):
    """Read the groups back from the sorted pairs ``b``: afterwards ``keys[:J]`` (as int32) holds the groups
    best first and ``a[:J]`` (as float64) their signed values ``sign * value``, in the order of
    ``np.argsort(sign * value, kind="stable")``. The segments the keys do not decide (maximal runs whose
    neighbours share their float32 key, values possibly differing in float64, or their value, keys
    differing) are ordered by (value, group) (:func:`_order_segment`), so the order equals numpy's exactly.

    Between segments the order is already right: different keys of non-exact rows are roundings of
    different values, in order, and the values of exact rows do not decrease along the keys. Long
    segments arise where float32 cannot tell the values apart (tiny group effects at a large offset, or
    probabilities near 1): one insertion pass over the whole row, as this was until 2026-12, took
    quadratic time there (0.09-0.11 s a row at 20,000 groups in one segment, minutes at a million)."""
    J = keys.shape[0]
    order = keys.view(np.int32)
    sval = a.view(np.float64)
    for i in range(J):
        packed = b[i]
        j = np.int32(packed & np.uint64(0xFFFFFFFF))
        order[i] = j
        sval[i] = _exact_value(packed, off, sign) if exact else val[j]
    i0 = 0
    while i0 < J:
        i1 = i0 + 1
        while i1 < J and (b[i1] >> np.uint64(32) == b[i1 - 1] >> np.uint64(32) or sval[i1] == sval[i1 - 1]):
            i1 += 1
        if i1 - i0 > 1:
            _order_segment(order, sval, i0, i1)
        i0 = i1


@njit(cache=True, nogil=True, inline="always")
def _add_order_stat(acc, i, v, descending):
    """Add the signed value ``v`` at best-first position ``i`` to the ascending order statistics ``acc``
    (best-first position i is J - 1 - i when ``descending``; ``v`` is then minus the value)."""
    if descending:
        acc[acc.shape[0] - 1 - i] -= v
    else:
        acc[i] += v


@njit(cache=True, nogil=True, inline="always")
def _store_ranks(rk, hi, lo, kind):
    """Write one draw's ranks ``rk`` (int32, 1..J) into a :class:`RankStore` row (``hi``, ``lo``)."""
    J = rk.shape[0]
    if kind == 0:
        hi[:] = rk
    elif kind == 1:
        for j in range(J):
            hi[j] = rk[j] - 1
    else:  # two simple loops (vectorized by LLVM)
        for j in range(J):
            hi[j] = (rk[j] - 1) >> 4
        for h in range(J // 2):
            lo[h] = ((rk[2 * h] - 1) & 15) | (((rk[2 * h + 1] - 1) & 15) << 4)
        if J % 2:
            lo[J >> 1] = (rk[J - 1] - 1) & 15


@njit(cache=True, nogil=True, inline="always")
def _rank_at(hi, lo, kind, s, j):
    """The rank (1..J) of group ``j`` in draw ``s`` of a :class:`RankStore`."""
    if kind == 0:
        return np.int64(hi[s, j])
    if kind == 1:
        return np.int64(hi[s, j]) + 1
    return ((np.int64(hi[s, j]) << 4) | ((np.int64(lo[s, j >> 1]) >> ((j & 1) * 4)) & 15)) + 1


@njit(cache=True, nogil=True)
def _store_rows(ranks, hi, lo, kind, r0):
    for s in range(ranks.shape[0]):
        _store_ranks(ranks[s], hi[r0 + s], lo[r0 + s], kind)


@njit(cache=True, nogil=True)
def _decode_columns(hi, lo, kind, j0, out, accumulate, top_k, acc_rank, acc_sq, acc_top, acc_best, acc_pivot):
    """``out[q, s]`` = the rank of group ``j0 + q`` in draw ``s`` (columns as contiguous int32 rows); if
    ``accumulate``, each column's sums over the draws in order, as :func:`_accumulate_ranks`' (squares of
    the ranks less the group's pivot, its first rank: ``acc_pivot`` is set where it is still -1)."""
    S = hi.shape[0]
    for s in range(S):
        for q in range(out.shape[0]):
            out[q, s] = _rank_at(hi, lo, kind, s, j0 + q)
    if not accumulate:
        return
    for q in range(out.shape[0]):  # integer sums along each contiguous column (vectorized): exact, so
        col = out[q]  # equal to the float64 sums of _accumulate_ranks wherever those are exact (< 2**53)
        j = j0 + q
        if acc_pivot[j] < 0.0:
            acc_pivot[j] = col[0]
        piv = np.int64(acc_pivot[j])
        rs = np.int64(0)
        sq = np.int64(0)
        top = np.int64(0)
        best = np.int64(0)
        for s in range(S):
            r = np.int64(col[s])
            rs += r
            sq += (r - piv) * (r - piv)
            top += r <= top_k
            best += r == 1
        acc_rank[j] += rs
        acc_sq[j] += sq
        acc_top[j] += top
        acc_best[j] += best


@njit(cache=True, parallel=True)
def _rank_rows(vals, offset, link, descending, exact, hi, lo, kind, acc_sorted, acc_value, keys, a, b, val, counts):
    S, J = vals.shape
    n_parts = acc_sorted.shape[0]
    n_work = keys.shape[0]  # work arrays per worker (<= n_parts); partial sums per part, in the parts' order
    sign = -1.0 if descending else 1.0
    for w in prange(n_work):
        for t in range(w, n_parts, n_work):
            for s in range(t, S, n_parts):
                off = offset[s]
                _radix_sort_row(vals[s], off, link, sign, exact, acc_value[t], b[w], a[w], val[w], counts[w])
                if exact:  # ranks straight from the sorted pairs (keys is free: the sort does not use it)
                    rk = keys[w].view(np.int32)
                    if _exact_ranks(b[w], off, sign, rk, acc_sorted[t], descending):
                        _store_ranks(rk, hi[s], lo[s], kind)
                        continue
                _read_back(b[w], off, link, sign, exact, keys[w], a[w], val[w])
                order = keys[w].view(np.int32)
                sval = a[w].view(np.float64)
                rk = b[w].view(np.int32)[:J]  # b is free once read back: scatter the ranks there, then store
                for i in range(J):  # them in order (the store may be a large array without huge pages:
                    rk[order[i]] = i + 1  # random writes to it would miss the TLB on most of them)
                _store_ranks(rk, hi[s], lo[s], kind)
                if not exact:  # (exact rows added them in _exact_ranks: the same values in order)
                    for i in range(J):
                        _add_order_stat(acc_sorted[t], i, sval[i], descending)


@njit(cache=True, parallel=True)
def _accumulate_ranks(hi, lo, kind, vals, offset, exact, with_ranks, top_k, acc_rank, acc_sq, acc_top, acc_best,
                      acc_pivot, acc_value, block):
    """Per-group sums over the draws in order, in blocks of groups: of the ranks if ``with_ranks``; of the
    values (``offset + vals``) if ``exact`` (identity link, float32 rows: :func:`_radix_sort_row` did not
    compute them). The squares are of each rank less the group's pivot, its first rank (``acc_pivot``,
    set where it is still -1): deviations of the size of the rank's spread, whose squares sum exactly where
    the squares of ranks near a million lose the variance (``rank_sd``) to rounding."""
    S, J = vals.shape
    n_blocks = (J + block - 1) // block
    for bi in prange(n_blocks):
        j0 = bi * block
        j1 = min(j0 + block, J)
        for s in range(S):
            off = offset[s]
            for j in range(j0, j1):
                if exact:
                    acc_value[j] += off + np.float64(vals[s, j])
                if not with_ranks:
                    continue
                r = _rank_at(hi, lo, kind, s, j)
                if acc_pivot[j] < 0.0:
                    acc_pivot[j] = r
                d = float(r) - acc_pivot[j]
                acc_rank[j] += r
                acc_sq[j] += d * d
                if r <= top_k:
                    acc_top[j] += 1
                if r == 1:
                    acc_best[j] += 1


_LINKS = {"gaussian": 0, "bernoulli": 1, "binomial": 1, "poisson": 2}

#: Stand-ins for the rank sums of :func:`_decode_columns` when it takes none (empty, never written).
_NO_RANK_SUMS = (np.zeros(0), np.zeros(0), np.zeros(0, np.int64), np.zeros(0, np.int64), np.zeros(0))


class RankStore:
    """Ranks 1..J of S draws x J groups, stored in as few bytes as J allows.

    ``kind`` 1 (J <= 65,536): ``rank - 1`` as uint16 (2 bytes a rank); kind 2 (J <= 2**20): the high 16
    of the 20 bits of ``rank - 1`` as uint16 and the low 4 in a nibble (2.5 bytes); kind 0: int32 (4
    bytes). :func:`rank_rows` writes into it (``out=``), :func:`column_order_stats` and
    :func:`column_quantiles` read it as they read an int32 array, :meth:`to_array` decodes it.
    Why: the ranks ``rank_groups`` keeps are its largest array (248 x 1,000,000 in issue 17's gaussian
    pipeline: 1 GB as int32, 0.625 GB packed), and on the 2-core AMD EPYC virtual machine of
    ``benchmarks/README.md`` first touching fresh memory was the largest single cost of that stage:
    2.2-2.4 s of system time (two threads) for the 250,000 page faults of the int32 array, against
    5.8-5.9 s of user time for the whole stage.
    """

    def __init__(self, hi: np.ndarray, lo: np.ndarray | None, kind: int):
        self.hi = hi
        self.lo = np.empty((hi.shape[0], 0), np.uint8) if lo is None else lo
        self.kind = int(kind)

    @staticmethod
    def kind_for(J: int) -> int:
        return 1 if J <= 1 << 16 else 2 if J <= 1 << 20 else 0

    @classmethod
    def empty(cls, S: int, J: int) -> RankStore:
        """Uninitialized storage for S draws x J groups (:func:`empty_large`: pages mapped at once)."""
        kind = cls.kind_for(J)
        if kind == 0:
            return cls(empty_large((S, J), np.int32), None, 0)
        hi = empty_large((S, J), np.uint16)
        return cls(hi, empty_large((S, (J + 1) // 2), np.uint8) if kind == 2 else None, kind)

    @property
    def shape(self) -> tuple[int, int]:
        return self.hi.shape

    @property
    def nbytes(self) -> int:
        return self.hi.nbytes + self.lo.nbytes

    @property
    def sums_fit_int64(self) -> bool:
        """Whether :func:`rank_store_order_stats` can take the rank sums (int64 sums of squared rank
        deviations, each below J**2: S * J**2 < 2**62)."""
        S, J = self.shape
        return S * J * J < 2**62

    def rows(self, r0: int, r1: int) -> RankStore:
        """Draws ``r0..r1-1``: a view, written through by :func:`rank_rows`."""
        return RankStore(self.hi[r0:r1], self.lo[r0:r1], self.kind)

    def put(self, r0: int, ranks: np.ndarray) -> None:
        """Store the int32 ranks ``ranks`` (draws x J) as draws ``r0, r0 + 1, ...``."""
        ranks = np.ascontiguousarray(ranks, dtype=np.int32)
        if ranks.ndim != 2 or ranks.shape[1] != self.shape[1] or not 0 <= r0 <= self.shape[0] - ranks.shape[0]:
            raise ValueError(f"ranks of shape {ranks.shape} do not fit draws {r0}.. of a store of {self.shape}.")
        _store_rows(ranks, self.hi, self.lo, self.kind, int(r0))

    def to_array(self) -> np.ndarray:
        """The ranks as an int32 array (draws x J)."""
        out = np.empty(self.shape[::-1], np.int32)
        if out.size:
            _decode_columns(self.hi, self.lo, self.kind, 0, out, False, 0, *_NO_RANK_SUMS)
        return np.ascontiguousarray(out.T)


def rank_rows(vals: np.ndarray, descending: bool, top_k: int, acc: dict, out: np.ndarray | RankStore | None = None,
              offset: np.ndarray | None = None, family: str = "gaussian", rank_sums: bool = True):
    """Rank the groups within each row (draw) of ``value = inverse_link(offset[:, None] + vals)`` and
    accumulate per group.

    ``vals`` (draws x groups, float32 or float64) is read in place; ``offset`` (one per row, default 0)
    and the family's inverse link are applied on the fly, in float64. Returns the int32 ranks (same
    shape; written into ``out`` if given): 1..J, 1 = smallest value (largest when ``descending``), ties in
    group order, i.e. the inverse of ``np.argsort(±value, kind="stable")``. (The logit and log links'
    ``exp`` here is the C library's; numpy's SIMD ``np.exp`` can differ from it by a unit in the last
    place, so two link-scale values that close may rank in the other order than with ``np.exp``'s values:
    e.g. -0.6275267246151393 and the next float64 below it, poisson link.) ``acc`` (from
    :func:`new_rank_accumulators`, which also holds the work arrays) gains the per-group sums of ranks
    (``rank``), squared deviations of the ranks from a pivot (``sq``; ``pivot``: the group's rank in the first
    draw it accumulated; the variance is ``(sq - (rank - S pivot)^2 / S) / (S - 1)``, exact where the
    squares of the ranks themselves would round it away), counts of rank <= ``top_k`` (``top``) and of rank 1 (``best``),
    of the values (``value``) and of the ascending order statistics (``sorted``), the last two kept as
    ``N_PARTS`` partial sums (for float32 gaussian rows all of ``value`` is in its first row: summed per
    group in draw order by the blocked pass, which reads the row values in place anyway).

    ``out`` may be a :class:`RankStore` (then returned, filled). ``rank_sums=False`` leaves the first four
    sums to the caller's :func:`rank_store_order_stats` pass over the store (``column_quantiles(store,
    specs, top_k=, acc=)``), which decodes every rank anyway.
    """
    vals = as_float_array(vals)
    S = vals.shape[0]
    offset = np.zeros(S) if offset is None else np.ascontiguousarray(offset, dtype=np.float64).reshape(S)
    ranks = np.empty(vals.shape, dtype=np.int32) if out is None else out
    store = ranks if isinstance(ranks, RankStore) else RankStore(ranks, None, 0)
    if store.shape != vals.shape:
        raise ValueError(f"out has shape {store.shape}; the draws have shape {vals.shape}.")
    if vals.size == 0:
        return ranks
    link = _LINKS[family]
    # exact keys (the row's float32 values themselves) order off + x only for a finite offset: an
    # infinite or NaN one makes values inf and NaN whatever x, ranked by the float64 values instead
    exact = vals.dtype == np.float32 and link == 0 and bool(np.isfinite(offset).all())
    w = acc["work"]
    if not exact and w["val"] is None:
        w["val"] = np.empty((w["keys"].shape[0], vals.shape[1]))
    val = w["val"] if w["val"] is not None else np.empty((w["keys"].shape[0], 0))
    _rank_rows(vals, offset, link, bool(descending), exact, store.hi, store.lo, store.kind, acc["sorted"],
               acc["value"], w["keys"], w["a"], w["b"], val, w["counts"])
    if rank_sums or exact:
        _accumulate_ranks(store.hi, store.lo, store.kind, vals, offset, exact, bool(rank_sums), int(top_k),
                          acc["rank"], acc["sq"], acc["top"], acc["best"], acc["pivot"], acc["value"][0], 4096)
    return ranks


def new_rank_accumulators(J: int, n_workers: int | None = None) -> dict:
    """Zeroed per-group accumulators for :func:`rank_rows` (``N_PARTS`` partial sums), and its work arrays
    for ``n_workers`` threads (default: the cores, at most ``N_PARTS``; 20 * n_workers * J bytes, and
    8 * n_workers * J more for rows that are not float32 gaussian values). The results do not depend on
    ``n_workers``: each part's draws are summed in order by one worker."""
    n = max(1, min(N_PARTS, _threads() if n_workers is None else int(n_workers)))
    work = {"keys": np.empty((n, J), np.uint32), "a": np.empty((n, J), np.uint64),
            "b": np.empty((n, J), np.uint64), "val": None, "counts": np.empty((n, _PASSES, _RADIX), np.int32)}
    return {"rank": np.zeros(J), "sq": np.zeros(J), "pivot": np.full(J, -1.0), "top": np.zeros(J, np.int64),
            "best": np.zeros(J, np.int64),
            "value": np.zeros((N_PARTS, J)), "sorted": np.zeros((N_PARTS, J)), "work": work}


# ------------------------------------------------------------------------------------------------------
# order statistics of columns
#: Bytes of one block of columns (transposed, then sorted) in :func:`column_order_stats`.
SORT_BLOCK_BYTES = 4 << 20


def column_order_stats(mat: np.ndarray, ks) -> np.ndarray:
    """The ``ks``-th smallest values (0-based, any order) of every column of ``mat`` (draws x groups).

    Returns an array (len(ks), J) of ``mat``'s dtype. Blocks of columns (about :data:`SORT_BLOCK_BYTES`)
    are transposed into contiguous rows and sorted with numpy's ``ndarray.sort(axis=1)`` (SIMD sorts
    for 32- and 64-bit numbers; it releases the GIL, so the blocks run in threads).

    Why numpy's sort and not a selection: at 248 draws x 1,000,000 groups of int32 ranks (the shape of
    the issue-17 ``rank_groups``; the median and the 0.05/0.95 quantiles), the compiled multi-position
    quickselect this replaced took 1.38-1.65 s (2 threads, warm) and the blocked sort 0.39-0.54 s
    (A/B against the previous code in one session, 2026-12-06, the 2-core AMD EPYC of ``benchmarks/README.md``,
    which has AVX2; numpy 2.5).
    """
    ks = np.asarray(ks, dtype=np.int64)
    if isinstance(mat, RankStore):
        return rank_store_order_stats(mat, ks)
    mat = np.asarray(mat)
    out = np.empty((ks.shape[0], mat.shape[1]), dtype=mat.dtype)
    if ks.shape[0]:  # always a copy of the block: the caller's array is not sorted
        _sorted_column_blocks(mat.shape, mat.dtype.itemsize, lambda j0, j1: np.array(mat[:, j0:j1].T, order="C"),
                              ks, out)
    return out


def rank_store_order_stats(store: RankStore, ks, top_k: int = 0, acc: dict | None = None) -> np.ndarray:
    """:func:`column_order_stats` of the ranks in ``store`` (int32, (len(ks), J)). With ``acc`` (from
    :func:`new_rank_accumulators`), the per-group sums :func:`rank_rows` leaves out when called with
    ``rank_sums=False`` (ranks, squared deviations from each group's pivot rank, counts of rank <= ``top_k`` and of rank 1) are added in
    the same pass, from the columns the blocks decode anyway: at 248 x 1,000,000 they add 0.1-0.2 s of one
    thread to the decode, where the separate pass of :func:`rank_rows` over the store took 0.35 s of two
    threads for int32 ranks and 0.46 s packed (the whole rank pass measured the same either way within
    noise: 2.83-2.93 s against 2.87-3.39 s on pre-touched memory)."""
    ks = np.asarray(ks, dtype=np.int64)
    S, J = store.shape
    if acc is not None and not store.sums_fit_int64:  # the int64 sums of squared rank deviations could overflow
        raise ValueError(f"{S} draws x {J} groups: too many for the rank sums of the quantile pass; sum them in "
                         "rank_rows (rank_sums=True).")
    out = np.empty((ks.shape[0], J), dtype=np.int32)
    sums = (acc["rank"], acc["sq"], acc["top"], acc["best"], acc["pivot"]) if acc is not None else _NO_RANK_SUMS

    def block_rows(j0, j1):
        cols = np.empty((j1 - j0, S), np.int32)
        _decode_columns(store.hi, store.lo, store.kind, j0, cols, acc is not None, int(top_k), *sums)
        return cols

    if ks.shape[0] or acc is not None:
        _sorted_column_blocks((S, J), 4, block_rows, ks, out)
    return out


#: At most this many bits of a float64 block's 32-bit sort keys hold the draw's index (65,536 draws).
_KEY_INDEX_BITS_MAX = 16


@njit(cache=True, nogil=True)
def _float_keys(cols, bits, keys, has_nan):
    """``keys[q, s]``: the order-preserving key of ``float32(cols[q, s])`` with its low ``bits`` replaced
    by ``s``; ``has_nan[q]``: whether column q holds NaN."""
    B, S = cols.shape
    mask = np.uint32(0xFFFFFFFF) << np.uint32(bits)
    for q in range(B):
        nan = False
        for s in range(S):
            v = cols[q, s]
            nan |= v != v
            keys[q, s] = (_monotone_key(_f32_bits(np.float32(v))) & mask) | np.uint32(s)
        has_nan[q] = nan


@njit(cache=True, nogil=True)
def _order_stats_from_keys(cols, keys, ks, bits, has_nan, out):
    """``out[i, q]`` = the ``ks[i]``-th smallest of ``cols[q]`` from its sorted keys (:func:`_float_keys`):
    the run of keys around position ``ks[i]`` whose high bits are equal holds it; a run of one is read
    directly, a longer run (values equal or close in float32) is sorted by the float64 values. NaN for a
    column holding NaN (numpy's quantiles are NaN there)."""
    B, S = cols.shape
    low = np.uint32((1 << bits) - 1)
    sh = np.uint32(bits)
    buf = np.empty(S)
    for q in range(B):
        if has_nan[q]:
            for i in range(ks.shape[0]):
                out[i, q] = np.nan
            continue
        kq = keys[q]
        col = cols[q]
        for i in range(ks.shape[0]):
            k = ks[i]
            hk = kq[k] >> sh
            lo = k
            while lo > 0 and kq[lo - 1] >> sh == hk:
                lo -= 1
            hi = k + 1
            while hi < S and kq[hi] >> sh == hk:
                hi += 1
            if hi - lo == 1:
                out[i, q] = col[kq[k] & low]
                continue
            for m in range(lo, hi):
                buf[m - lo] = col[kq[m] & low]
            out[i, q] = np.sort(buf[:hi - lo])[k - lo]


def _sorted_column_blocks(shape: tuple, itemsize: int, block_rows, ks: np.ndarray, out: np.ndarray) -> None:
    """``out[:, j] = sorted(column j)[ks]`` for the (draws x groups) ``shape``, in blocks of columns of about
    :data:`SORT_BLOCK_BYTES` run in threads: ``block_rows(j0, j1)`` returns columns ``j0..j1-1`` as the rows
    of a new C-contiguous array (sorted here in place). A column holding NaN gets NaN order statistics
    (NaN sorts last), so the quantiles formed from them are NaN, as numpy's.

    float64 blocks of up to 65,536 draws are not sorted as float64: each value's float32 key, its low bits
    replaced by the draw's index, is sorted as uint32 (numpy's SIMD sort, twice the numbers a vector of
    float64), and the order statistic is read from the run of equal high bits around its position,
    sorted by the float64 values when it holds more than one (float32 rounding and truncation are
    monotone, so the runs come in the order of the values: the result is numpy's exactly). One thread,
    1,000,000 columns of 248 draws with 4 order statistics (``hp.shrinkage``'s interval at issue 17's
    size): 0.63-0.66 s against 1.52-1.58 s for numpy's float64 sort of the rows."""
    S, J = shape
    width = max(1, SORT_BLOCK_BYTES // max(1, S * itemsize))
    bits = max(1, (S - 1).bit_length())

    def work(j0):
        j1 = min(j0 + width, J)
        cols = block_rows(j0, j1)
        if cols.dtype == np.float64 and bits <= _KEY_INDEX_BITS_MAX:  # sorted as 32-bit keys (see the docstring)
            keys = np.empty(cols.shape, np.uint32)
            has_nan = np.empty(cols.shape[0], np.bool_)
            _float_keys(cols, bits, keys, has_nan)
            keys.sort(axis=1)
            block = np.empty((ks.shape[0], cols.shape[0]))
            _order_stats_from_keys(cols, keys, ks, bits, has_nan, block)
            out[:, j0:j1] = block
            return
        cols.sort(axis=1)
        block = cols[:, ks].T
        if np.issubdtype(cols.dtype, np.floating):
            block[:, np.isnan(cols[:, -1])] = np.nan
        out[:, j0:j1] = block

    each_in_threads(work, range(0, J, width))


@njit(cache=True, nogil=True)
def _column_block(mat, offset, link, j0, cols, mean, var, tau_sq, denom, rho):
    """``cols[q, s] = inverse_link(offset[s] + mat[s, j0 + q])`` in float64, and each column's mean and
    variance (ddof=1; two-pass sums); where ``rho`` has J entries (count links), also each column's mean
    over s of ``tau_sq[s] / (tau_sq[s] + v)``, with ``v = 1 / w`` the family's within variance
    (:meth:`hierpool.core.families.Family.within_variance`): ``w = denom[j] p (1 - p)`` (logit) or
    ``denom[j] mu`` (log), computed as ``tau_sq w / (tau_sq w + 1)`` (no division by a zero w)."""
    S = mat.shape[0]
    B = cols.shape[0]
    want_rho = rho.shape[0] > 0
    for s in range(S):
        off = offset[s]
        row = mat[s]
        for q in range(B):
            cols[q, s] = _link_value(row[j0 + q], off, link)
    for q in range(B):
        col = cols[q]
        total = 0.0
        for s in range(S):
            total += col[s]
        m = total / S
        ss = 0.0
        for s in range(S):
            d = col[s] - m
            ss += d * d
        mean[j0 + q] = m
        var[j0 + q] = ss / (S - 1) if S > 1 else 0.0
        if want_rho:
            dj = denom[j0 + q]
            acc = 0.0
            for s in range(S):
                mu = col[s]
                w = dj * mu * (1.0 - mu) if link == 1 else dj * mu
                tw = tau_sq[s] * w
                acc += 1.0 if tw == math.inf else tw / (tw + 1.0)  # (a NaN stays NaN, as in numpy)
            rho[j0 + q] = acc / S


def column_summaries(mat: np.ndarray, offset: np.ndarray, family: str, specs, *, rho_of=None) -> tuple:
    """Mean, variance (ddof=1) and quantiles of every column of ``inverse_link(offset[:, None] + mat)``.

    ``mat`` is (draws x groups), read in place when it is a C-contiguous float32 or float64 array (the
    posterior's group effects; any other array is first copied as float64); ``specs`` as in
    :func:`column_quantiles`. Returns ``(mean, var, [quantile arrays])``. The quantiles follow numpy's
    definitions exactly; mean and variance are two-pass sums (agreeing with numpy's to rounding).
    Blocks of columns are transformed by a compiled pass into contiguous float64 rows and sorted by
    numpy, in threads (as :func:`column_order_stats`). At 248 float32 draws x 1,000,000 groups with the
    0.05 and 0.95 quantiles (``hp.shrinkage`` at issue 17's size): 1.14-1.31 s, against 1.48-1.73 s for
    the compiled quickselect it replaced (same A/B as :func:`column_order_stats`).

    ``rho_of=(tau_sq, denom)`` (a count family: draws and groups) adds a fourth element, ``hp.shrinkage``'s
    ``rho``: the mean over draws of ``tau_sq / (tau_sq + within_variance(denom, value))`` per column, in the
    same pass. At 200,000 bernoulli groups x 404 draws it takes ``hp.shrinkage`` from 3.0 s (numpy over
    chunks of groups: the inverse link, within variance, quantiles and means each a pass over a temporary
    of the chunk's size) to 0.40 s (the same fit, one process; 0.42-0.43 s in ``benchmarks/README.md``'s runs).
    """
    S, J = mat.shape
    plan, ks = _quantile_plan(S, specs)
    ks = np.asarray(ks, dtype=np.int64)
    mean, var = np.empty(J), np.empty(J)
    stats = np.empty((len(ks), J))
    link = _LINKS[family]
    if rho_of is not None and link == 0:
        raise ValueError(f"rho_of is for the count families (a within variance that depends on the value); "
                         f"family={family!r} has sigma^2 / n_j.")
    if rho_of is None:
        tau_sq, denom, rho = np.zeros(0), np.zeros(0), np.zeros(0)
    else:
        tau_sq = np.ascontiguousarray(rho_of[0], dtype=np.float64).reshape(S)
        denom = np.ascontiguousarray(rho_of[1], dtype=np.float64).reshape(J)
        rho = np.empty(J)
    if J:
        mat = as_float_array(mat)
        offset = np.ascontiguousarray(offset, dtype=np.float64).reshape(S)

        def block_rows(j0, j1):  # the inverse-link values (float64), with the columns' means and variances
            cols = np.empty((j1 - j0, S))
            _column_block(mat, offset, link, j0, cols, mean, var, tau_sq, denom, rho)
            return cols

        _sorted_column_blocks((S, J), 8, block_rows, ks, stats)
    out = (mean, var, _quantiles_from_stats(stats, ks, plan))
    return out if rho_of is None else (*out, rho)


def _lerp(a, b, t):
    """numpy's interpolation in ``np.quantile(method="linear")`` (same operations, same rounding)."""
    diff = b - a
    res = a + diff * t
    return np.where(t >= 0.5, b - diff * (1 - t), res)


def _quantile_plan(n: int, specs):
    """The order statistics (sorted 0-based positions) that numpy's quantiles of n values need."""
    need, plan = [], []
    for q, method in specs:
        if method == "median":
            lo_k, hi_k = (n - 1) // 2, n // 2
            plan.append(("mean", lo_k, hi_k, None))
            need += [lo_k, hi_k]
            continue
        virtual = (n - 1) * np.float64(q)
        if method == "lower":
            k = int(np.floor(virtual))
            plan.append(("at", k, None, None))
            need.append(k)
        elif method == "higher":
            k = int(np.ceil(virtual))
            plan.append(("at", k, None, None))
            need.append(k)
        elif method == "linear":
            lo_k = int(np.floor(virtual))
            hi_k = min(lo_k + 1, n - 1)
            plan.append(("lerp", lo_k, hi_k, virtual - np.floor(virtual)))
            need += [lo_k, hi_k]
        else:
            raise ValueError(f"method={method!r} is not valid; valid choices: linear, lower, higher, median.")
    return plan, sorted(set(need))


def _quantiles_from_stats(stats: np.ndarray, ks, plan) -> list[np.ndarray]:
    pos = {k: i for i, k in enumerate(ks)}
    out = []
    for kind, a, b, t in plan:
        va = stats[pos[a]].astype(np.float64)
        if kind == "at":
            out.append(va)
        elif kind == "mean":
            vb = stats[pos[b]].astype(np.float64)
            out.append(np.where(a == b, va, (va + vb) / 2.0))
        else:
            vb = stats[pos[b]].astype(np.float64)
            out.append(_lerp(va, vb, np.float64(t)))
    return out


def column_quantiles(mat: np.ndarray | RankStore, specs, *, top_k: int = 0, acc: dict | None = None) -> list[np.ndarray]:
    """Quantiles of every column, each equal to numpy's on ``axis=0``.

    ``specs`` is a list of ``(q, method)`` with method ``"linear"``, ``"lower"``, ``"higher"`` or
    ``"median"`` (``np.median``: ``q`` ignored). Returns one (J,) float64 array per spec. ``top_k`` and
    ``acc``: for a :class:`RankStore` only, as :func:`rank_store_order_stats`.
    """
    plan, ks = _quantile_plan(mat.shape[0], specs)
    if acc is not None:
        if not isinstance(mat, RankStore):
            raise TypeError(f"acc= needs the ranks as a RankStore; got {type(mat).__name__}.")
        return _quantiles_from_stats(rank_store_order_stats(mat, ks, top_k, acc), ks, plan)
    return _quantiles_from_stats(column_order_stats(mat, ks), ks, plan)


# ------------------------------------------------------------------------------------------------------
# gaussian sufficient statistics
@njit(cache=True, nogil=True)
def _class_moments(yc, xbar, cls, out):
    J, P = xbar.shape
    D = P + 2
    r = np.empty(D)
    for j in range(J):  # in group order
        k = cls[j]
        r[0] = yc[j]
        r[1] = 1.0
        for p in range(P):
            r[2 + p] = xbar[j, p]
        for a in range(D):
            for b in range(a, D):
                out[k, a, b] += r[a] * r[b]
    for k in range(out.shape[0]):
        for a in range(D):
            for b in range(a + 1, D):
                out[k, b, a] = out[k, a, b]


def class_moments(yc, xbar, cls, n_classes: int) -> np.ndarray:
    """``out[k] = sum over groups j of class k of r_j r_j'`` with ``r_j = (yc_j, 1, xbar_j)``: (K, P + 2, P + 2).

    One compiled pass over the groups. Replaced a numpy version (``column_stack`` then one boolean mask and
    one ``Rk' Rk`` per class) that took 0.36 s at a million groups and 30 sizes (issue 17's data, 5
    coefficients), more than the gaussian integrated sampler's whole run.
    """
    xbar = np.ascontiguousarray(xbar, dtype=np.float64)
    out = np.zeros((int(n_classes), xbar.shape[1] + 2, xbar.shape[1] + 2))
    _class_moments(np.ascontiguousarray(yc, dtype=np.float64), xbar, np.asarray(cls, dtype=np.int64), out)
    return out


@njit(cache=True, nogil=True)
def _group_sums(y, X, center, scale, idx, sy, sx):
    for i in range(y.shape[0]):  # in row order: the same sums as numpy.bincount's
        g = idx[i]
        sy[g] += y[i]
        for p in range(X.shape[1]):
            sx[g, p] += (X[i, p] - center[p]) / scale[p]


@njit(cache=True, parallel=True)
def _within_cross_products(y, X, center, scale, idx, ybar, xbar, block, out):
    N, P = X.shape
    n_blocks = out.shape[0]
    for bi in prange(n_blocks):
        r = np.empty(P + 1)
        acc = out[bi]
        for i in range(bi * block, min((bi + 1) * block, N)):
            g = idx[i]
            r[0] = y[i] - ybar[g]
            for p in range(P):
                r[p + 1] = (X[i, p] - center[p]) / scale[p] - xbar[g, p]
            for a in range(P + 1):
                for b in range(a, P + 1):
                    acc[a, b] += r[a] * r[b]


def gaussian_group_stats(y, X, center, scale, idx, n) -> tuple:
    """Group means of ``y`` and of the standardized predictors ``(X - center) / scale``, and the
    within-group cross-products of their deviations from the group means, in two passes over the rows
    without temporaries of the rows' size.

    Returns ``(ybar (J,), xbar (J, P), syy, sxy (P,), sxx (P, P))``. The group means equal
    ``numpy.bincount``'s sums divided by ``n`` exactly; the cross-products are sums over fixed blocks
    of rows (the same numbers whatever the number of threads).
    """
    y = np.ascontiguousarray(y, dtype=np.float64)
    X = np.ascontiguousarray(X, dtype=np.float64).reshape(y.shape[0], -1)
    center = np.ascontiguousarray(center, dtype=np.float64).reshape(-1)
    scale = np.ascontiguousarray(scale, dtype=np.float64).reshape(-1)
    idx = np.ascontiguousarray(idx, dtype=np.int64)
    J, P = n.shape[0], X.shape[1]
    sy, sx = np.zeros(J), np.zeros((J, P))
    _group_sums(y, X, center, scale, idx, sy, sx)
    sy /= n  # in place: no second array of the sums' size to fault in
    sx /= n[:, None]
    ybar, xbar = sy, sx
    block = 1 << 16
    out = np.zeros((max(1, -(-y.shape[0] // block)), P + 1, P + 1))
    _within_cross_products(y, X, center, scale, idx, ybar, xbar, block, out)
    m = out.sum(axis=0)
    m = np.triu(m) + np.triu(m, 1).T
    return ybar, xbar, float(m[0, 0]), m[0, 1:].copy(), m[1:, 1:].copy()


# ------------------------------------------------------------------------------------------------------
# pointwise log-likelihood
_LOG_2PI_HALF = 0.5 * math.log(2.0 * math.pi)


@njit(cache=True, nogil=True, inline="always")
def _log1p_exp(x):
    """log(1 + exp(x)), as numpy's ``logaddexp(0, x)``."""
    if x > 0.0:
        return x + math.log1p(math.exp(-x))
    return math.log1p(math.exp(x))


#: Rows per tile of :func:`_pointwise_loglik`: each draw's row of the result is written a tile at a
#: time, the tile's predictor, offset and response columns read from cache for every pass over it.
_LL_TILE = 2048


@njit(cache=True, parallel=True, fastmath={"contract"}, error_model="numpy")
def _pointwise_loglik(out, family, a, B, U, sigma, y, XT, gidx, offset, trials, const):
    """``out[s, i] = log p(y_i | eta_si)`` (see :func:`pointwise_loglik`), draws in parallel, rows in tiles
    of ``_LL_TILE``. ``XT`` is the design transposed (predictors x rows): every loop is a simple loop over
    the tile's rows, which LLVM vectorizes, and ``softplus`` and ``exp`` are :mod:`hierpool.core.vmath`'s
    (``error_model="numpy"``: no zero-division branch in ``log1p_unit``, which would keep the loop
    scalar). Measured (2026-12-07, the AMD EPYC, 2 threads, 402 draws x 498,855 rows, 5 predictors,
    200,000 float32 group effects, warm): bernoulli 1.1 s against 3.1-3.7 s for the former per-row loop
    with the C library's ``log1p`` and ``exp`` (poisson 0.76-1.0 against 1.9 s, most of it now the
    first write of the 1.6 GB result); equal to it within 2e-15 relative."""
    S, N = out.shape
    P = XT.shape[0]
    for s in prange(S):
        row = out[s]
        us = U[s]
        a_s = a[s]
        inv_sig = 1.0 / sigma[s]
        norm_const = -math.log(sigma[s]) - _LOG_2PI_HALF  # gaussian: once per draw
        for i0 in range(0, N, _LL_TILE):
            i1 = min(i0 + _LL_TILE, N)
            n = i1 - i0
            seg = row[i0:i1]  # views indexed from 0: no negative-index checks in the loops
            g = gidx[i0:i1]
            off = offset[i0:i1]
            for q in range(n):
                seg[q] = a_s + off[q] + us[g[q]]
            for p in range(P):
                bp = B[s, p]
                xp = XT[p, i0:i1]
                for q in range(n):
                    seg[q] += xp[q] * bp
            yy = y[i0:i1]
            if family == 0:
                for q in range(n):
                    z = (yy[q] - seg[q]) * inv_sig
                    seg[q] = -0.5 * z * z + norm_const
            elif family == 1:
                for q in range(n):
                    e = seg[q]
                    seg[q] = yy[q] * e - V.softplus(e)
            elif family == 2:
                cc = const[i0:i1]
                tt = trials[i0:i1]
                for q in range(n):
                    e = seg[q]
                    seg[q] = cc[q] + yy[q] * e - tt[q] * V.softplus(e)
            else:
                cc = const[i0:i1]
                for q in range(n):
                    e = seg[q]
                    seg[q] = yy[q] * e - V.exp(e) + cc[q]


_FAMILY_CODES = {"gaussian": 0, "bernoulli": 1, "binomial": 2, "poisson": 3}


def pointwise_loglik(family: str, intercept, beta, group_effect, sigma, y, X, group_idx, offset=None,
                     trials=None) -> np.ndarray:
    """log p(y_i | draw s) for every draw and row, shape (draws, rows), written once without temporaries.

    ``eta = intercept_s + X_i . beta_s + group_effect_s[group_idx_i] + offset_i``; the densities are those
    of :meth:`hierpool.core.families.Family.log_likelihood` written as literals (gaussian with ``sigma_s``,
    bernoulli, binomial with ``trials`` and its binomial coefficient, poisson with ``-log(y!)``). ``group_effect`` (draws x groups)
    is read in place, float32 or float64.
    """
    from scipy.special import gammaln

    a = np.ascontiguousarray(intercept, dtype=np.float64).reshape(-1)
    S = a.shape[0]
    y = np.ascontiguousarray(y, dtype=np.float64)
    N = y.shape[0]
    X = np.zeros((N, 0)) if X is None else np.asarray(X, dtype=np.float64).reshape(N, -1)
    B = np.zeros((S, 0)) if X.shape[1] == 0 else np.ascontiguousarray(beta, dtype=np.float64).reshape(S, -1)
    XT = np.ascontiguousarray(X.T)  # predictors x rows: the kernel's loops run along rows
    U = as_float_array(group_effect).reshape(S, -1)
    sig = np.ones(S) if sigma is None else np.ascontiguousarray(sigma, dtype=np.float64).reshape(S)
    off = np.zeros(N) if offset is None else np.ascontiguousarray(offset, dtype=np.float64).reshape(N)
    tr = np.ones(N) if trials is None else np.ascontiguousarray(trials, dtype=np.float64).reshape(N)
    if family == "binomial":
        const = gammaln(tr + 1) - gammaln(y + 1) - gammaln(tr - y + 1)
    elif family == "poisson":
        const = -gammaln(y + 1)
    else:
        const = np.zeros(N)
    out = np.empty((S, N))
    _pointwise_loglik(out, _FAMILY_CODES[family], a, B, U, sig, y, XT,
                      np.ascontiguousarray(group_idx, dtype=np.int64), off, tr, const)
    return out


# ------------------------------------------------------------------------------------------------------
# large arrays
#: Arrays of at least this many bytes come from :func:`empty_large` (smaller ones: ``np.empty``).
LARGE_BYTES = 64 << 20
_PAGE = mmap.PAGESIZE


@njit(cache=True, nogil=True)
def _touch_pages(buf, page):
    for i in range((buf.shape[0] + page - 1) // page):
        buf[i * page] = 0


def empty_large(shape, dtype) -> np.ndarray:
    """``np.empty(shape, dtype)`` for arrays written once in order, its pages mapped at once, in threads.

    An array of at least :data:`LARGE_BYTES` is a private anonymous ``mmap`` (ordinary pages, zeroed;
    copy-on-write in a forked child, as ``np.empty``'s) whose pages are touched by a compiled loop in one
    thread per core before it is returned; ``np.empty`` asks for transparent huge pages (``madvise``) and
    takes its page faults later, in whichever thread first writes. Used for the draws x groups arrays
    written row by row (the group effects a fit stores, the :class:`RankStore` of the ranks
    ``rank_groups`` keeps) and for the design matrix ``prepare`` builds (2.5M x 5 float64 at issue 17's
    size: ``prepare`` took 0.66 s with ``np.hstack`` of the term blocks, 0.30 s of it, and 0.38 s filling
    this instead; a second call in one process, where the first pays numba's start-up). Why: on the
    2-core AMD EPYC virtual machine of ``benchmarks/README.md`` (THP ``madvise``) memory the host has not
    lately backed is slow to fault in, most of all as huge pages.
    Filling a fresh 1 GB array (issue 17's 248 x 1,000,000 float32 or int32) after 2 GB already touched:
    ``np.empty`` 2.63-2.83 s in one thread and 1.20-1.65 s in two; ordinary pages touched in two threads
    0.43-0.65 s while the host still backs recently freed memory, 1.84-1.99 s once it does not;
    ``MAP_POPULATE`` (one thread) 0.39-0.47 s and 3.18-3.22 s. What decided it, issue 17's gaussian
    pipeline at J = 1M (``bench_vs_lme4`` worker, runs alternated): ``hp.fit``'s group effects took
    2.47-2.58 s this way, 3.35-3.52 s with ``np.empty`` touched in two threads and 3.39-3.50 s with plain
    ``np.empty`` (these with a shared map; the private one, alternated with it in the same pipeline:
    9.4-11.6 s against 10.0-10.9 s for the whole, within the host's noise). Below the size, where ``mmap``
    has no anonymous maps, or when the map fails, plain ``np.empty``. The memory is returned when the
    array and its views are gone.
    """
    dtype = np.dtype(dtype)
    shape = (int(shape),) if isinstance(shape, (int, np.integer)) else tuple(int(n) for n in shape)
    nbytes = math.prod(shape) * dtype.itemsize
    if nbytes < LARGE_BYTES or not hasattr(mmap, "MAP_ANONYMOUS"):
        return np.empty(shape, dtype)
    try:  # private (copy-on-write across fork, as np.empty's memory), not the shared map mmap(-1, n) makes
        m = mmap.mmap(-1, nbytes, flags=mmap.MAP_PRIVATE | mmap.MAP_ANONYMOUS)
    except OSError:  # e.g. ENOMEM under strict overcommit: numpy says it in its own words (MemoryError)
        return np.empty(shape, dtype)
    buf = np.frombuffer(m, dtype=np.uint8)
    n_threads = _threads()
    step = -(-nbytes // (n_threads * _PAGE)) * _PAGE  # whole pages per thread
    # threads of this process (each_in_threads), not numba's parallel layer: safe when fits run in threads
    each_in_threads(lambda b0: _touch_pages(buf[b0:b0 + step], _PAGE), range(0, nbytes, step), n_threads)
    return buf.view(dtype).reshape(shape)


# ------------------------------------------------------------------------------------------------------
# threads
def _threads() -> int:
    return max(1, min(numba.config.NUMBA_NUM_THREADS, os.cpu_count() or 1))


def each_in_threads(work, items, n_threads: int | None = None) -> None:
    """Call ``work(item)`` for every item, in ``n_threads`` threads (default :func:`_threads`), or in
    this thread when one thread or one item would do (``work`` releases the GIL in compiled code)."""
    items = list(items)
    n = _threads() if n_threads is None else max(1, int(n_threads))
    if n == 1 or len(items) <= 1:
        for it in items:
            work(it)
        return
    with ThreadPoolExecutor(min(n, len(items))) as ex:
        list(ex.map(work, items))


# ------------------------------------------------------------------------------------------------------
# conditional normal draws
@njit(cache=True, nogil=True, inline="always")
def _conditional_value(j, s, z, ybar, xbar, size_idx, a, b, c, sd):
    """``c[s, k_j] * (ybar_j - a_s - xbar_j . b_s) + sd[s, k_j] * z`` in float64."""
    e = ybar[j] - a[s]
    for p in range(xbar.shape[1]):
        e -= xbar[j, p] * b[s, p]
    k = size_idx[j]
    return c[s, k] * e + sd[s, k] * z


@njit(cache=True, nogil=True)
def _gaussian_conditional_rows(out, rng, r0, ybar, xbar, size_idx, a, b, c, sd):
    R, J = out.shape
    for i in range(R):
        s = r0 + i
        for j in range(J):
            out[i, j] = _conditional_value(j, s, rng.standard_normal(), ybar, xbar, size_idx, a, b, c, sd)


@njit(cache=True, nogil=True)
def _gaussian_conditional_tile(out, s0, s1, j0, j1, r, cs, sn, e, ybar, xbar_t, size_idx, a, b, c, sd):
    """``out[s, j]`` for draws ``s0 <= s < s1`` and groups ``j0 <= j < j1``, the tile's normals in row
    order: the f-th is ``r[f] * cs[f]`` for ``f < m = r.shape[0]``, else ``r[f - m] * sn[f - m]`` (the two
    normals of each Box-Muller pair). ``xbar_t`` is ``xbar`` transposed (predictors x groups) and ``e`` a
    work array of the tile's width: each loop is a simple one over the tile's groups (vectorized by
    LLVM), whose statistics are read from cache for every draw."""
    m = r.shape[0]
    T = j1 - j0
    yb = ybar[j0:j1]  # views indexed from 0 (no negative-index checks in the loops: they vectorize)
    ks = size_idx[j0:j1]
    for i in range(s1 - s0):
        s = s0 + i
        a_s = a[s]
        for q in range(T):
            e[q] = yb[q] - a_s
        for p in range(xbar_t.shape[0]):
            b_sp = b[s, p]
            xp = xbar_t[p, j0:j1]
            for q in range(T):
                e[q] -= xp[q] * b_sp
        c_s = c[s]
        sd_s = sd[s]
        row = out[s, j0:j1]
        f0 = i * T
        n1 = min(T, max(0, m - f0))  # values of this row from r * cs
        rc, cc = r[f0:f0 + n1], cs[f0:f0 + n1]
        for q in range(n1):
            k = ks[q]
            row[q] = c_s[k] * e[q] + sd_s[k] * np.float64(rc[q] * cc[q])
        if n1 == T:
            continue
        f1 = f0 + n1 - m  # >= 0: the row reaches the second half
        rs, ss = r[f1:f1 + T - n1], sn[f1:f1 + T - n1]
        for q in range(T - n1):
            k = ks[n1 + q]
            row[n1 + q] = c_s[k] * e[n1 + q] + sd_s[k] * np.float64(rs[q] * ss[q])


#: The float32 path of :func:`gaussian_conditional_draws` draws tiles of up to ``_TILE_ROWS`` draws x
#: ``_TILE_GROUPS`` groups, ``_PAIR_CHUNK`` normals at a time (work arrays of 640 KB; the tile's group
#: statistics, 32 KB a column, are read once per tile). Measured at 248 x 1M with 5 predictors, two
#: threads: 16 x 4096 and 32 x 2048 1.4-1.6 s, 8 x 4096 1.8-2.0 s, 8 x 2048 2.2-2.5 s.
_PAIR_CHUNK = 1 << 16
_TILE_ROWS = 16
_TILE_GROUPS = _PAIR_CHUNK // _TILE_ROWS
_TWO_PI_F32 = np.float32(2.0 * np.pi)


def _box_muller_work(m: int) -> dict:
    """Work arrays of :func:`box_muller_f32` for up to ``m`` pairs: the uniforms (float64) and the
    radius, cosine and sine (float32)."""
    return {"u": np.empty(m), "r": np.empty(m, np.float32), "c": np.empty(m, np.float32),
            "s": np.empty(m, np.float32)}


def box_muller_f32(rng: np.random.Generator, m: int, work: dict | None = None) -> tuple:
    """``2 m`` standard normals as float32, by Box-Muller on numpy's SIMD float32 ``log``, ``sqrt``,
    ``cos`` and ``sin``: returns ``(r, cos, sin)``, three float32 arrays of length ``m``; the normals are
    ``r * cos`` and ``r * sin``.

    ``r = sqrt(-2 log(float32(1 - u)))`` with ``u = rng.random()`` (53 bits, so ``1 - u`` is at least
    ``2**-53`` and the largest normal is 8.57, not the 5.77 that a 24-bit uniform allows: beyond 8.57 lies
    1e-17 of the normal's mass), and the angle ``2 pi v`` with ``v = rng.random(dtype=float32)``. The
    float32 functions are accurate to a few units in the last place of float32, the precision of the
    float32 draws they make. ``work`` (from :func:`_box_muller_work` of at least ``m``) avoids
    allocations in a loop.
    """
    work = _box_muller_work(m) if work is None else work
    u, r, cs, sn = work["u"][:m], work["r"][:m], work["c"][:m], work["s"][:m]
    rng.random(out=u)
    np.subtract(1.0, u, out=r, casting="same_kind")  # in (0, 1], rounded once to float32
    np.log(r, out=r)
    np.multiply(r, np.float32(-2.0), out=r)
    np.sqrt(r, out=r)
    rng.random(out=cs, dtype=np.float32)
    np.multiply(cs, _TWO_PI_F32, out=cs)
    np.sin(cs, out=sn)
    np.cos(cs, out=cs)
    return r, cs, sn


def gaussian_conditional_draws(out: np.ndarray, seed_seq: np.random.SeedSequence, ybar, xbar, size_idx, a, b, c,
                               sd, block_values: int = 1 << 20, *, bit_generator=np.random.PCG64) -> None:
    """Fill ``out`` (draws x groups) with ``c[s, k_j] * (ybar_j - a_s - xbar_j . b_s) + sd[s, k_j] * z``.

    ``z`` standard normal; ``k_j`` is group j's size class, ``c`` and ``sd`` (draws x classes) the
    conditional mean factor and sd of that class, computed in float64 and written once into ``out``
    (float32 or float64). Blocks of about ``block_values`` values get their own numpy
    :class:`~numpy.random.Generator` (``bit_generator``, numpy's default PCG64, seeded from
    ``seed_seq.spawn``, in the blocks' order): float64 blocks of whole rows, float32 blocks of one tile of
    ``_TILE_ROWS`` draws by whole tiles of ``_TILE_GROUPS`` groups (at 16 draws x 1M groups: 16 blocks of
    65,536 groups). So the draws depend on the seed, the shape and the dtype only,
    not on the number of threads the blocks run in; float32 draws are bit-identical on one machine and
    numpy build, and may differ by a float32 unit in the last place on another (numpy's float32 ``log``,
    ``sin`` and ``cos`` take different SIMD code on different CPUs: a reviewer found 22% of 640,000
    values 1 ulp apart with AVX2 disabled), while float64 draws are numpy's stream everywhere.

    float64 ``out``: the generator is passed into the compiled kernel: numba runs numpy's own normal
    algorithm on that bit generator, the same stream as ``Generator.standard_normal``.
    ``benchmarks/bench_libraries.py`` (2026-11-27, 2-core shared machine, 248 draws x 100,000 groups,
    float32, CPU seconds, median of 3) measured this kernel at 8.1 ns a value against 7.7 for the compiled
    ziggurat on xoshiro256++ it replaced (1.05x; SFC64 instead of PCG64: 0.99x), while
    ``Generator.standard_normal(out=...)`` into a buffer followed by a compiled pass took 16.7 (2.16x:
    the buffer of normals is written and read again).

    float32 ``out`` (the draws of large posteriors): ``z`` by :func:`box_muller_f32`, chunks of
    ``_PAIR_CHUNK`` normals at a time (the ziggurat's table lookups and branches do not vectorize; numpy's
    float32 ``log``, ``sin`` and ``cos`` do), each chunk's first half ``r * cos`` and second half
    ``r * sin`` of the same pairs, over tiles of ``_TILE_ROWS`` draws x ``_TILE_GROUPS`` groups (the
    groups' statistics read from cache for every draw of the tile), block by block.
    Measured on the 2-core AMD EPYC (2026-12-07): one thread, 6.0-6.3 ns a normal against 11.0 for
    ``Generator.standard_normal(out=...)``; 248 draws x 1M groups with 5 predictors, both threads,
    alternated (5 runs each after a first): 1.41-1.47 s against 2.12-2.28 s for the float64 path's
    kernel writing float32 (chunks of one draw, not tiles: 1.7-1.8 s), with blocks of 16 whole rows;
    blocks of 16 draws x 65,536 groups (many blocks for the threads even with few draws): 1.22-1.34 s
    against 1.89-1.96 s for the float64 path's kernel, alternated in another hour. Few draws of many
    groups are slower than float64 (2 draws x 3M groups: 0.06-0.1 s against 0.04 s: a tile of 2 draws
    makes 8,192 normals per call of the numpy functions).
    """
    S, J = out.shape
    if out.size == 0:
        return
    args = (np.ascontiguousarray(ybar, dtype=np.float64), np.ascontiguousarray(xbar, dtype=np.float64),
            np.asarray(size_idx, dtype=np.int64), np.ascontiguousarray(a, dtype=np.float64),
            np.ascontiguousarray(b, dtype=np.float64), np.ascontiguousarray(c, dtype=np.float64),
            np.ascontiguousarray(sd, dtype=np.float64))
    pairs = out.dtype == np.float32
    if pairs:  # blocks of one tile of rows x whole tiles of groups, about block_values values
        per = _TILE_ROWS
        width = max(_TILE_GROUPS, block_values // _TILE_ROWS // _TILE_GROUPS * _TILE_GROUPS)
        tile_args = (args[0], np.ascontiguousarray(args[1].T), np.asarray(size_idx, dtype=np.int32), *args[3:])
    else:  # blocks of whole rows
        per, width = max(1, block_values // max(J, 1)), J
    blocks = [(r0, j0) for r0 in range(0, S, per) for j0 in range(0, J, width)]
    children = seed_seq.spawn(len(blocks))  # spawn once: each call of spawn gives new children

    def work(i):
        r0, b0 = blocks[i]
        rng = np.random.Generator(bit_generator(children[i]))
        if not pairs:
            _gaussian_conditional_rows(out[r0:r0 + per], rng, r0, *args)
            return
        buf = _box_muller_work(_PAIR_CHUNK // 2)
        e = np.empty(min(J, _TILE_GROUPS))
        s0, s1 = r0, min(r0 + per, S)
        for j0 in range(b0, min(b0 + width, J), _TILE_GROUPS):
            j1 = min(j0 + _TILE_GROUPS, b0 + width, J)
            r, cs, sn = box_muller_f32(rng, ((s1 - s0) * (j1 - j0) + 1) // 2, buf)
            _gaussian_conditional_tile(out, s0, s1, j0, j1, r, cs, sn, e, *tile_args)

    each_in_threads(work, range(len(blocks)))
