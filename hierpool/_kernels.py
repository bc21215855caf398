"""Compiled kernels (numba) for the per-group work on large posteriors: ranks, column quantiles, draws.

At a million groups the analysis layer handles a few hundred draws x a million groups; numpy's
general-purpose routines (a stable argsort per draw, ``np.quantile`` along the draws axis) were the
largest costs of a whole fit there. These kernels compute the SAME numbers (tests compare them with the
numpy definitions exactly) with algorithms chosen for this shape:

- :func:`rank_rows`: ranks within each draw by a stable LSD radix sort (two 16-bit digits) on a 32-bit
  monotone key (the value rounded to float32), then an exact float64 fix-up of the rare runs of equal keys, so the result
  equals the inverse of ``np.argsort(values, kind="stable")`` (ties in group order). Per-group sums of
  ranks, squared ranks, top-k and best counts, values and the order statistics accumulate in the same
  pass, in a fixed number of partial sums (results do not depend on the number of threads).
- :func:`column_order_stats`: chosen order statistics of every column (a branch-free multi-position
  quickselect on a transposed block of columns), from which :func:`column_quantiles` forms numpy's ``linear``, ``lower`` and
  ``higher`` quantiles and the median exactly as numpy does.
- :func:`gaussian_conditional_draws`: exact conditional draws of gaussian group effects, from
  independent ``numpy`` generators (one per block of rows, spawned from one ``SeedSequence``) in
  threads; the stream depends on the seed and the array's shape only, not on the number of threads.

numba (a dependency of PyTensor, hence of PyMC) compiles each kernel on first use and caches it on disk
(``cache=True``), so only the first call in a fresh environment pays the compilation.
"""

from __future__ import annotations

import os
import threading
from concurrent.futures import ThreadPoolExecutor

import numba
import numpy as np
from numba import njit, prange

__all__ = ["rank_rows", "column_order_stats", "column_quantiles", "column_summaries",
           "gaussian_conditional_draws", "N_PARTS"]

#: Partial sums per accumulator in :func:`rank_rows` (fixed, so results do not depend on threads).
N_PARTS = 4
_RADIX_BITS = 16
_RADIX = 1 << _RADIX_BITS
_MASK = _RADIX - 1


# ------------------------------------------------------------------------------------------------------
# ranks within rows
@njit(cache=True, nogil=True)
def _sort_row(row, descending, f32, keys, keys2, idx, idx2, counts):
    """Fill ``idx`` with the stable ascending argsort of ``row`` (of ``-row`` when descending).

    ``f32`` is a float32 work array of the row's length; ``keys``/``keys2`` uint32, ``idx``/``idx2``
    int32 work arrays, ``counts`` (2, 65536) int32.
    """
    J = row.shape[0]
    sign = -1.0 if descending else 1.0
    for j in range(J):
        f32[j] = np.float32(sign * row[j] + 0.0)  # + 0.0 turns -0.0 into +0.0: equal values, equal keys
    bits = f32.view(np.uint32)
    counts[:] = 0
    for j in range(J):
        b = bits[j]
        # monotone map of float32 bit patterns to unsigned integers; histograms of both digits
        k = ~b if b & np.uint32(0x80000000) else b | np.uint32(0x80000000)
        keys[j] = k
        idx[j] = j
        counts[0, k & _MASK] += 1
        counts[1, k >> _RADIX_BITS] += 1
    # two stable LSD passes of 16 bits (measured 1.5x faster than three of 11 bits at a million keys)
    src_k, src_i, dst_k, dst_i = keys, idx, keys2, idx2
    for p in range(2):
        total = 0
        for r in range(_RADIX):
            c = counts[p, r]
            counts[p, r] = total
            total += c
        shift = p * _RADIX_BITS
        for j in range(J):
            k = src_k[j]
            r = (k >> shift) & _MASK
            pos = counts[p, r]
            counts[p, r] = pos + 1
            dst_k[pos] = k
            dst_i[pos] = src_i[j]
        src_k, src_i, dst_k, dst_i = dst_k, dst_i, src_k, src_i
    # two passes (an even number of swaps): the result is back in keys/idx
    # exact fix-up: runs of equal float32 keys are ordered by the float64 values (stable insertion sort)
    j = 1
    while j < J:
        if keys[j] != keys[j - 1]:
            j += 1
            continue
        start = j - 1
        end = j + 1
        while end < J and keys[end] == keys[start]:
            end += 1
        for a in range(start + 1, end):
            cur = idx[a]
            cv = sign * row[cur]
            b = a - 1
            while b >= start and sign * row[idx[b]] > cv:
                idx[b + 1] = idx[b]
                b -= 1
            idx[b + 1] = cur
        j = end


@njit(cache=True, parallel=True)
def _rank_rows(vals, descending, ranks, acc_sorted, f32, keys, keys2, idx, idx2, counts):
    S, J = vals.shape
    n_parts = acc_sorted.shape[0]
    for t in prange(n_parts):
        for s in range(t, S, n_parts):
            row = vals[s]
            out = ranks[s]
            _sort_row(row, descending, f32[t], keys[t], keys2[t], idx[t], idx2[t], counts[t])
            order = idx[t]
            if descending:  # ascending order statistics: best-first position i is J - 1 - i
                for i in range(J):
                    j = order[i]
                    out[j] = i + 1
                    acc_sorted[t, J - 1 - i] += row[j]
            else:
                for i in range(J):
                    j = order[i]
                    out[j] = i + 1
                    acc_sorted[t, i] += row[j]


@njit(cache=True, parallel=True)
def _accumulate_ranks(ranks, top_k, acc_rank, acc_sq, acc_top, acc_best, block):
    S, J = ranks.shape
    n_blocks = (J + block - 1) // block
    for bi in prange(n_blocks):
        j0 = bi * block
        j1 = min(j0 + block, J)
        for s in range(S):
            for j in range(j0, j1):
                r = ranks[s, j]
                acc_rank[j] += r
                acc_sq[j] += float(r) * float(r)
                if r <= top_k:
                    acc_top[j] += 1
                if r == 1:
                    acc_best[j] += 1


def rank_rows(vals: np.ndarray, descending: bool, top_k: int, acc: dict, out: np.ndarray | None = None) -> np.ndarray:
    """Rank the groups within each row (draw) of ``vals`` (draws x groups) and accumulate per group.

    Returns the int32 ranks (same shape; written into ``out`` if given): 1..J, 1 = smallest (largest
    when ``descending``), ties in group order, i.e. the inverse of ``np.argsort(±vals, kind="stable")``.
    ``acc`` (from :func:`new_rank_accumulators`, which also holds the work arrays) gains the per-group
    sums of ranks (``rank``), squared ranks (``sq``), counts of rank <= ``top_k`` (``top``) and of rank 1
    (``best``), the sums of the values (``value``) and of the ascending order statistics (``sorted``,
    kept as ``N_PARTS`` partial sums).
    """
    vals = np.ascontiguousarray(vals, dtype=np.float64)
    ranks = np.empty(vals.shape, dtype=np.int32) if out is None else out
    if vals.size == 0:
        return ranks
    w = acc["work"]
    _rank_rows(vals, bool(descending), ranks, acc["sorted"], w["f32"], w["keys"], w["keys2"], w["idx"],
               w["idx2"], w["counts"])
    _accumulate_ranks(ranks, int(top_k), acc["rank"], acc["sq"], acc["top"], acc["best"], 4096)
    acc["value"] += vals.sum(axis=0)
    return ranks


def new_rank_accumulators(J: int) -> dict:
    """Zeroed per-group accumulators for :func:`rank_rows`, and its work arrays (about 24 * N_PARTS * J bytes)."""
    work = {"f32": np.empty((N_PARTS, J), np.float32), "keys": np.empty((N_PARTS, J), np.uint32),
            "keys2": np.empty((N_PARTS, J), np.uint32), "idx": np.empty((N_PARTS, J), np.int32),
            "idx2": np.empty((N_PARTS, J), np.int32), "counts": np.empty((N_PARTS, 2, _RADIX), np.int32)}
    return {"rank": np.zeros(J), "sq": np.zeros(J), "top": np.zeros(J, np.int64), "best": np.zeros(J, np.int64),
            "value": np.zeros(J), "sorted": np.zeros((N_PARTS, J)), "work": work}


# ------------------------------------------------------------------------------------------------------
# order statistics of columns
@njit(cache=True, nogil=True)
def _multiselect(a, buf, ks, out, j):
    """Put the ``ks``-th smallest values (sorted 0-based positions) of ``a`` into ``out[:, j]``.

    Quickselect for several positions at once: each pass partitions a segment around a median-of-three
    pivot into (< pivot, == pivot, > pivot) without data-dependent branches (every element is written
    to both outputs and the write positions advance by the comparison results), then continues only
    into the parts that still hold a wanted position. Robust to many equal values (ranks). ``a`` is
    scrambled; ``buf`` is scratch of the same length.
    """
    nk = ks.shape[0]
    stack = np.empty((nk + 1, 4), np.int64)
    stack[0, 0], stack[0, 1], stack[0, 2], stack[0, 3] = 0, a.shape[0], 0, nk
    sp = 1
    while sp > 0:
        sp -= 1
        lo, hi, klo, khi = stack[sp, 0], stack[sp, 1], stack[sp, 2], stack[sp, 3]
        if hi - lo <= 16:
            for i in range(lo + 1, hi):  # insertion sort of a short segment
                v = a[i]
                m = i - 1
                while m >= lo and a[m] > v:
                    a[m + 1] = a[m]
                    m -= 1
                a[m + 1] = v
            for q in range(klo, khi):
                out[q, j] = a[ks[q]]
            continue
        x, y, z = a[lo], a[(lo + hi) // 2], a[hi - 1]
        if x > y:
            x, y = y, x
        if y > z:
            y = z
            if x > y:
                y = x
        pivot = y
        n_less = lo
        n_greater = 0
        for i in range(lo, hi):
            v = a[i]
            a[n_less] = v  # n_less <= i: overwrites an element already read
            buf[n_greater] = v
            n_less += v < pivot
            n_greater += v > pivot
        eq_end = hi - n_greater
        for i in range(n_less, eq_end):
            a[i] = pivot
        for i in range(n_greater):
            a[eq_end + i] = buf[i]
        q = klo
        while q < khi and ks[q] < n_less:
            q += 1
        if q > klo:
            stack[sp, 0], stack[sp, 1], stack[sp, 2], stack[sp, 3] = lo, n_less, klo, q
            sp += 1
        while q < khi and ks[q] < eq_end:
            out[q, j] = pivot
            q += 1
        if q < khi:
            stack[sp, 0], stack[sp, 1], stack[sp, 2], stack[sp, 3] = eq_end, hi, q, khi
            sp += 1


@njit(cache=True, parallel=True)
def _column_order_stats(mat, ks, out, block):
    S, J = mat.shape
    n_blocks = (J + block - 1) // block
    for bi in prange(n_blocks):
        j0 = bi * block
        j1 = min(j0 + block, J)
        cols = np.empty((j1 - j0, S), mat.dtype)
        scratch = np.empty(S, mat.dtype)
        for s in range(S):
            for j in range(j0, j1):
                cols[j - j0, s] = mat[s, j]
        for j in range(j0, j1):
            _multiselect(cols[j - j0], scratch, ks, out, j)


def column_order_stats(mat: np.ndarray, ks) -> np.ndarray:
    """The ``ks``-th smallest values (0-based, any order) of every column of ``mat`` (draws x groups).

    Returns an array (len(ks), J) of ``mat``'s dtype.
    """
    ks = np.asarray(ks, dtype=np.int64)
    order = np.argsort(ks, kind="stable")
    sk = ks[order]
    mat = np.ascontiguousarray(mat)
    out_sorted = np.empty((sk.shape[0], mat.shape[1]), dtype=mat.dtype)
    if mat.shape[1] and sk.shape[0]:
        _column_order_stats(mat, sk, out_sorted, 64)
    out = np.empty_like(out_sorted)
    out[order] = out_sorted
    return out


@njit(cache=True, parallel=True)
def _column_summaries(mat, offset, link, ks, mean, var, out, block):
    S, J = mat.shape
    n_blocks = (J + block - 1) // block
    for bi in prange(n_blocks):
        j0 = bi * block
        j1 = min(j0 + block, J)
        cols = np.empty((j1 - j0, S))
        scratch = np.empty(S)
        for s in range(S):
            off = offset[s]
            for j in range(j0, j1):
                v = mat[s, j] + off
                if link == 1:
                    v = 1.0 / (1.0 + np.exp(-v))
                elif link == 2:
                    v = np.exp(v)
                cols[j - j0, s] = v
        for j in range(j0, j1):
            col = cols[j - j0]
            total = 0.0
            for s in range(S):
                total += col[s]
            m = total / S
            ss = 0.0
            for s in range(S):
                d = col[s] - m
                ss += d * d
            mean[j] = m
            var[j] = ss / (S - 1) if S > 1 else 0.0
            _multiselect(col, scratch, ks, out, j)


_LINKS = {"gaussian": 0, "bernoulli": 1, "binomial": 1, "poisson": 2}


def column_summaries(mat: np.ndarray, offset: np.ndarray, family: str, specs) -> tuple:
    """Mean, variance (ddof=1) and quantiles of every column of ``inverse_link(offset[:, None] + mat)``.

    ``mat`` is (draws x groups), read in place (no copy of its size); ``specs`` as in
    :func:`column_quantiles`. Returns ``(mean, var, [quantile arrays])``. The quantiles follow numpy's
    definitions exactly; mean and variance are two-pass sums (agreeing with numpy's to rounding).
    """
    S, J = mat.shape
    plan, ks = _quantile_plan(S, specs)
    mean, var = np.empty(J), np.empty(J)
    stats = np.empty((len(ks), J))
    if J:
        _column_summaries(mat, np.ascontiguousarray(offset, dtype=np.float64), _LINKS[family],
                          np.asarray(ks, dtype=np.int64), mean, var, stats, 64)
    return mean, var, _quantiles_from_stats(stats, ks, plan)


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


def column_quantiles(mat: np.ndarray, specs) -> list[np.ndarray]:
    """Quantiles of every column, each equal to numpy's on ``axis=0``.

    ``specs`` is a list of ``(q, method)`` with method ``"linear"``, ``"lower"``, ``"higher"`` or
    ``"median"`` (``np.median``: ``q`` ignored). Returns one (J,) float64 array per spec.
    """
    plan, ks = _quantile_plan(mat.shape[0], specs)
    return _quantiles_from_stats(column_order_stats(mat, ks), ks, plan)


# ------------------------------------------------------------------------------------------------------
# random draws
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


@njit(cache=True, nogil=True)
def _gaussian_conditional_rows(out, z, r0, ybar, xbar, size_idx, a, b, c, sd):
    R, J = z.shape
    P = xbar.shape[1]
    for r in range(R):
        s = r0 + r
        for j in range(J):
            e = ybar[j] - a[s]
            for p in range(P):
                e -= xbar[j, p] * b[s, p]
            k = size_idx[j]
            out[r, j] = c[s, k] * e + sd[s, k] * z[r, j]


def gaussian_conditional_draws(out: np.ndarray, seed_seq: np.random.SeedSequence, ybar, xbar, size_idx, a, b, c,
                               sd, block_values: int = 1 << 20) -> None:
    """Fill ``out`` (draws x groups) with ``c[s, k_j] * (ybar_j - a_s - xbar_j . b_s) + sd[s, k_j] * z``.

    ``z`` standard normal; ``k_j`` is group j's size class, ``c`` and ``sd`` (draws x classes) the
    conditional mean factor and sd of that class. Blocks of about ``block_values`` values get their own
    generator (``seed_seq.spawn``), so the draws depend on the seed and the shape only; blocks run in
    threads (numpy and the kernel release the GIL) and ``out`` is written once.
    """
    S, J = out.shape
    args = (np.ascontiguousarray(ybar, dtype=np.float64), np.ascontiguousarray(xbar, dtype=np.float64),
            np.asarray(size_idx, dtype=np.int64), np.ascontiguousarray(a, dtype=np.float64),
            np.ascontiguousarray(b, dtype=np.float64), np.ascontiguousarray(c, dtype=np.float64),
            np.ascontiguousarray(sd, dtype=np.float64))
    per = max(1, block_values // max(J, 1))
    starts = list(range(0, S, per))
    children = seed_seq.spawn(len(starts))
    local = threading.local()  # one normals buffer per thread, reused (fresh buffers cost page faults)

    def work(i):
        r0 = starts[i]
        rows = out[r0:r0 + per]
        buf = getattr(local, "z", None)
        if buf is None:
            buf = local.z = np.empty((per, J))
        z = buf[:rows.shape[0]]
        np.random.default_rng(children[i]).standard_normal(out=z)
        _gaussian_conditional_rows(rows, z, r0, *args)

    each_in_threads(work, range(len(starts)))
