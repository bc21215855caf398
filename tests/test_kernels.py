"""The compiled kernels give exactly the numbers of their numpy definitions (ranks, quantiles), and the
conditional draws are reproducible, independent of threads, and have the right distribution."""

import numpy as np
import pytest

from hierpool.core import kernels as K


def _stable_ranks(vals, descending):
    order = np.argsort(-vals if descending else vals, axis=1, kind="stable")
    ranks = np.empty(vals.shape, dtype=np.int32)
    ranks[np.arange(vals.shape[0])[:, None], order] = np.arange(1, vals.shape[1] + 1)
    return ranks, order


def _hard_values(rng, S, J):
    vals = rng.standard_normal((S, J))
    vals[0, : J // 3] = 0.5  # exact ties
    vals[1, 0], vals[1, 1] = -0.0, 0.0  # equal values with different bits
    vals[2, 2] = vals[2, 3] * (1 + 1e-12)  # equal as float32, different as float64
    vals[2, 4] = vals[2, 3] * (1 - 1e-13)
    vals[3] = np.round(vals[3], 1)  # many short runs of ties
    vals[4, :5] = [1e300, -1e300, 1e-300, -1e-300, 3.4e38]  # beyond float32's range
    return vals


@pytest.mark.parametrize("descending", [False, True])
@pytest.mark.parametrize("J", [1, 2, 37, 5000])
def test_rank_rows_equal_stable_argsort(descending, J):
    rng = np.random.default_rng(J)
    vals = _hard_values(rng, 9, J) if J >= 5 else rng.standard_normal((9, J))
    acc = K.new_rank_accumulators(J)
    ranks = K.rank_rows(vals, descending, 3, acc)
    ref, order = _stable_ranks(vals, descending)
    np.testing.assert_array_equal(ranks, ref)
    np.testing.assert_array_equal(acc["rank"], ref.sum(axis=0))
    np.testing.assert_array_equal(acc["pivot"], ref[0])  # squares of deviations from the first draw's rank
    np.testing.assert_array_equal(acc["sq"], ((ref - ref[0]).astype(float) ** 2).sum(axis=0))
    np.testing.assert_array_equal(acc["top"], (ref <= 3).sum(axis=0))
    np.testing.assert_array_equal(acc["best"], (ref == 1).sum(axis=0))
    np.testing.assert_allclose(acc["value"].sum(axis=0), vals.sum(axis=0), rtol=1e-12)
    srt = np.take_along_axis(vals, order, axis=1).sum(axis=0)
    np.testing.assert_allclose(acc["sorted"].sum(axis=0), srt[::-1] if descending else srt, rtol=1e-12)


@pytest.mark.parametrize("descending", [False, True])
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_rank_rows_when_radix_passes_are_skipped_equal_stable_argsort(descending, dtype):
    """The radix sort skips a pass whose 8-bit digit is the same for every group, so 0 to 4 passes run and
    the sorted pairs end in either work array. Rows whose float32 keys differ only in chosen bytes (each
    value repeated: ties in group order) take every such path; the ranks equal numpy's."""
    rng = np.random.default_rng(11)
    J = 3001
    base = np.uint32(0x3F800000)  # 1.0: positive, so the keys' bytes are the bits' (sign bit aside)
    rows = []
    for mask in (0x0, 0xFF, 0xFF00, 0xFFFF, 0xFF0000, 0xFF00FF, 0x7FFFFF, 0x7FFF00):
        bits = base | (rng.integers(0, 2**23, J // 3 + 1).astype(np.uint32) & np.uint32(mask))
        row = np.repeat(bits.view(np.float32), 3)[:J]
        rows.append(rng.permutation(row))
    rows.append(-rows[2])  # negative values: the keys' bytes are the bits' complement
    vals = np.array(rows).astype(dtype)
    ranks = K.rank_rows(vals, descending, 3, K.new_rank_accumulators(J))
    np.testing.assert_array_equal(ranks, _stable_ranks(vals, descending)[0])


@pytest.mark.parametrize("descending", [False, True])
@pytest.mark.parametrize("case", ["gaussian_float64", "poisson", "bernoulli", "exact_huge_offset"])
def test_rank_rows_order_long_runs_the_float32_keys_cannot_split_as_numpy(descending, case):
    """Values float32 cannot tell apart (tiny effects at an offset of 3, probabilities near 1, an offset
    of 1e20 that rounds every value to one) make segments of thousands of groups with one key, or one
    value: they are ordered by a merge sort (until 2026-12 by one insertion pass, quadratic there), with
    repeated values (ties in group order) and a few values outside the segment."""
    rng = np.random.default_rng(5)
    S, J = 3, 6000
    family, dtype = {"gaussian_float64": ("gaussian", np.float64), "poisson": ("poisson", np.float32),
                     "bernoulli": ("bernoulli", np.float32), "exact_huge_offset": ("gaussian", np.float32)}[case]
    scale, offset = {"gaussian_float64": (1e-10, 3.0), "poisson": (1e-9, 3.0), "bernoulli": (1e-3, 20.0),
                     "exact_huge_offset": (1.0, 1e20)}[case]
    base = rng.standard_normal((S, J // 2)) * scale
    vals = np.concatenate([base, base[:, : J - J // 2]], axis=1)  # every value twice: ties
    vals = rng.permuted(vals, axis=1)
    vals[:, :10] = rng.standard_normal((S, 10))  # a few groups elsewhere
    vals = vals.astype(dtype)
    off = np.full(S, offset)
    values = _NUMPY_LINKS[family](off[:, None] + vals.astype(np.float64))
    ref, order = _stable_ranks(values, descending)
    keys = values.astype(np.float32)
    assert max(np.unique(k, return_counts=True)[1].max() for k in keys) > 1000  # long runs of one key
    acc = K.new_rank_accumulators(J)
    np.testing.assert_array_equal(K.rank_rows(vals, descending, 5, acc, offset=off, family=family), ref)
    srt = np.take_along_axis(values, order, axis=1).sum(axis=0)
    np.testing.assert_allclose(acc["sorted"].sum(axis=0), srt[::-1] if descending else srt, rtol=1e-12)


@pytest.mark.parametrize("descending", [False, True])
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_rank_rows_put_nan_of_either_sign_last_as_numpy(descending, dtype):
    """NaN ranks last (after the other values, in group order), as in numpy's stable argsort, whatever
    its sign bit and payload: x86's NaN from ``inf - inf`` has the sign bit set, and keyed by its bits
    alone it ranked first (it did until the kernel gave every NaN one key)."""
    rng = np.random.default_rng(3)
    S, J = 4, 3000
    vals = rng.standard_normal((S, J)).astype(dtype)
    with np.errstate(invalid="ignore"):
        neg_nan = np.array(np.inf, dtype) - np.array(np.inf, dtype)
    assert np.signbit(neg_nan) or np.isnan(neg_nan)
    payload = np.array([0x7FC00123 if dtype == np.float32 else 0x7FF8000000000123],
                       dtype=np.uint32 if dtype == np.float32 else np.uint64).view(dtype)[0]
    vals[0, [5, 17, 2999]] = [np.nan, -np.nan, neg_nan]
    vals[1, :J // 2] = np.nan  # half the row
    vals[2, [0, 1]] = [payload, -payload]
    vals[3, [9, 10, 11]] = [np.inf, np.nan, -np.inf]
    ref, order = _stable_ranks(vals.astype(np.float64), descending)
    for offset in (None, np.linspace(-1.0, 1.0, S)):
        acc = K.new_rank_accumulators(J)
        ranks = K.rank_rows(vals, descending, 3, acc, offset=offset)
        np.testing.assert_array_equal(ranks, ref)
    assert (ranks[0, [5, 17, 2999]] == [J - 2, J - 1, J]).all()


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_rank_rows_with_a_non_finite_offset_equal_stable_argsort(dtype):
    """An infinite or NaN offset makes the values inf or NaN whatever the row holds: float32 gaussian rows
    are then ranked by those values (NaN last, ties in group order), not by the row's own keys."""
    vals = np.array([[1.0, -3.0, 2.0, 0.5], [1.0, -np.inf, 2.0, 0.5], [1.0, -np.inf, 2.0, 0.5]], dtype)
    offset = np.array([np.nan, np.inf, -np.inf])
    with np.errstate(invalid="ignore"):
        values = offset[:, None] + vals.astype(np.float64)
    for descending in (False, True):
        acc = K.new_rank_accumulators(4)
        ranks = K.rank_rows(vals, descending, 1, acc, offset=offset)
        np.testing.assert_array_equal(ranks, _stable_ranks(values, descending)[0])


_NUMPY_LINKS = {"gaussian": lambda v: v, "bernoulli": lambda v: 1.0 / (1.0 + np.exp(-v)), "poisson": np.exp}


@pytest.mark.parametrize("descending", [False, True])
@pytest.mark.parametrize("family", ["gaussian", "bernoulli", "poisson"])
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_rank_rows_with_offset_and_link_equal_stable_argsort(descending, family, dtype):
    """Ranks of inverse_link(offset + vals) computed on the fly, from float32 rows (the exact-key path
    when gaussian) or float64 rows: the same as numpy's on the transformed values, ties included."""
    rng = np.random.default_rng(7)
    S, J = 8, 4000
    vals = _hard_values(rng, S, J)[:, :J]
    vals[4, :5] = rng.standard_normal(5)  # keep within float32's range and away from overflow
    vals[5, :50] = 40.0 + rng.standard_normal(50) * 1e-3  # expit saturates to 1.0: ties on the natural scale
    vals = vals.astype(dtype)
    offset = rng.standard_normal(S)
    offset[6] = 1e9  # off + x rounds distinct x to equal values: ties broken by group order
    offset[7] = -0.0
    if family == "poisson":
        offset[6] = 3.0
    with np.errstate(over="ignore"):
        values = _NUMPY_LINKS[family](offset[:, None] + vals.astype(np.float64))
    acc = K.new_rank_accumulators(J)
    ranks = K.rank_rows(vals, descending, 10, acc, offset=offset, family=family)
    ref, order = _stable_ranks(values, descending)
    np.testing.assert_array_equal(ranks, ref)
    np.testing.assert_allclose(acc["value"].sum(axis=0), values.sum(axis=0), rtol=1e-12)
    srt = np.take_along_axis(values, order, axis=1).sum(axis=0)
    np.testing.assert_allclose(acc["sorted"].sum(axis=0), srt[::-1] if descending else srt, rtol=1e-12)
    np.testing.assert_array_equal(acc["top"], (ref <= 10).sum(axis=0))


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_rank_rows_same_numbers_whatever_the_number_of_work_arrays(dtype):
    """The work arrays are per worker (1 to N_PARTS), the partial sums per part: bit-identical results."""
    rng = np.random.default_rng(11)
    vals = rng.standard_normal((13, 500)).astype(dtype)
    offset = rng.standard_normal(13)
    results = []
    for n in range(1, K.N_PARTS + 1):
        acc = K.new_rank_accumulators(500, n_workers=n)
        assert acc["work"]["keys"].shape[0] == n
        ranks = K.rank_rows(vals, True, 7, acc, offset=offset, family="bernoulli")
        results.append((ranks, acc))
    for ranks, acc in results[1:]:
        np.testing.assert_array_equal(ranks, results[0][0])
        for key in ("rank", "sq", "top", "best", "value", "sorted"):
            np.testing.assert_array_equal(acc[key], results[0][1][key])


def test_rank_rows_accumulates_over_calls_and_writes_into_out():
    rng = np.random.default_rng(3)
    vals = rng.standard_normal((10, 300))
    acc = K.new_rank_accumulators(300)
    out = np.empty((10, 300), np.int32)
    K.rank_rows(vals[:4], True, 5, acc, out=out[:4])
    K.rank_rows(vals[4:], True, 5, acc, out=out[4:])
    ref, _ = _stable_ranks(vals, True)
    np.testing.assert_array_equal(out, ref)
    np.testing.assert_array_equal(acc["rank"], ref.sum(axis=0))


@pytest.mark.parametrize("J", [1, 2, 3, 300, 1 << 16, (1 << 16) + 1, (1 << 16) + 2, 1 << 20, (1 << 20) + 1])
def test_rank_store_round_trips_and_feeds_the_rank_kernel(J):
    """The packed store (2 bytes a rank up to 65,536 groups, 2.5 up to 2**20, else 4) holds exactly the
    ranks the kernel computes, at the edges of each width (J = 2**20: rank 1,048,576 fills all 20 bits)."""
    S = 3 if J > 1000 else 7
    rng = np.random.default_rng(J)
    vals = rng.standard_normal((S, J)).astype(np.float32)
    store = K.RankStore.empty(S, J)
    assert store.kind == (1 if J <= 1 << 16 else 2 if J <= 1 << 20 else 0)
    assert store.nbytes == {1: 2 * S * J, 2: 2 * S * J + S * ((J + 1) // 2), 0: 4 * S * J}[store.kind]
    acc = K.new_rank_accumulators(J)
    K.rank_rows(vals[:1], True, 5, acc, out=store.rows(0, 1))
    K.rank_rows(vals[1:], True, 5, acc, out=store.rows(1, S))
    ref, _ = _stable_ranks(vals.astype(np.float64), True)
    np.testing.assert_array_equal(store.to_array(), ref)
    np.testing.assert_array_equal(acc["rank"], ref.sum(axis=0))
    np.testing.assert_array_equal(acc["pivot"], ref[0])  # squares of deviations from the first draw's rank
    np.testing.assert_array_equal(acc["sq"], ((ref - ref[0]).astype(float) ** 2).sum(axis=0))
    np.testing.assert_array_equal(acc["top"], (ref <= 5).sum(axis=0))
    np.testing.assert_array_equal(acc["best"], (ref == 1).sum(axis=0))
    for got, want in zip(K.column_quantiles(store, SPECS), K.column_quantiles(ref, SPECS), strict=True):
        np.testing.assert_array_equal(got, want)
    # rank_sums=False: the same sums come with the quantiles, from the columns they decode
    fused = K.new_rank_accumulators(J)
    K.rank_rows(vals, True, 5, fused, out=store, rank_sums=False)
    assert not fused["rank"].any() and not fused["top"].any()
    for got, want in zip(K.column_quantiles(store, SPECS, top_k=5, acc=fused), K.column_quantiles(ref, SPECS),
                         strict=True):
        np.testing.assert_array_equal(got, want)
    for key in ("rank", "sq", "pivot", "top", "best"):
        np.testing.assert_array_equal(fused[key], acc[key])
    for key in ("value", "sorted"):  # partial sums split by draw within each call: equal to rounding
        np.testing.assert_allclose(fused[key].sum(axis=0), acc[key].sum(axis=0), rtol=1e-12)
    other = K.RankStore.empty(S, J)  # put(): int32 ranks stored row by row, in two calls
    other.put(0, ref[:2])
    other.put(2, ref[2:])
    np.testing.assert_array_equal(other.to_array(), ref)


def test_rank_store_refuses_ranks_of_the_wrong_shape():
    store = K.RankStore.empty(4, 10)
    with pytest.raises(ValueError, match="do not fit"):
        store.put(3, np.ones((2, 10), np.int32))
    with pytest.raises(ValueError, match="do not fit"):
        store.put(0, np.ones((2, 9), np.int32))
    with pytest.raises(ValueError, match="out has shape"):
        K.rank_rows(np.zeros((3, 10)), True, 1, K.new_rank_accumulators(10), out=store)
    with pytest.raises(TypeError, match="RankStore"):
        K.column_quantiles(np.zeros((3, 10), np.int32), SPECS, acc=K.new_rank_accumulators(10))
    huge = K.RankStore(np.broadcast_to(np.zeros(1, np.int32), (1 << 21, 1 << 21)), None, 0)  # no memory
    with pytest.raises(ValueError, match="rank_sums=True"):  # int64 sums of squared ranks could overflow
        K.rank_store_order_stats(huge, [0], 1, acc={})


SPECS = [(0.05, "linear"), (0.95, "linear"), (0.05, "lower"), (0.95, "higher"), (0.5, "median"),
         (0.0, "lower"), (1.0, "higher"), (0.25, "linear")]


def _numpy_quantiles(m):
    return [np.median(m, axis=0) if meth == "median" else np.quantile(m, q, axis=0, method=meth)
            for q, meth in SPECS]


@pytest.mark.parametrize("S", [1, 2, 3, 16, 17, 252, 1001])
def test_column_quantiles_equal_numpy(S):
    rng = np.random.default_rng(S)
    floats = rng.standard_normal((S, 203))
    floats[:, 0] = 1.5  # a constant column
    ints = rng.integers(1, 6, (S, 203)).astype(np.int32)  # many equal values (ranks)
    for m in (floats, ints):
        for got, ref in zip(K.column_quantiles(m, SPECS), _numpy_quantiles(m), strict=True):
            np.testing.assert_array_equal(got, ref)


@pytest.mark.parametrize("dtype", [np.float32, np.float64, np.int32])
def test_column_quantiles_in_many_blocks_equal_numpy(monkeypatch, dtype):
    """Small blocks: many blocks of columns (the last one partial), run in threads; same numbers."""
    monkeypatch.setattr(K, "SORT_BLOCK_BYTES", 37 * 5 * 8)
    rng = np.random.default_rng(4)
    m = (rng.standard_normal((37, 1003)) * 10).astype(dtype)
    # float32 order statistics are interpolated in float64: numpy's quantiles of the values as float64
    ref_m = m.astype(np.float64) if dtype == np.float32 else m
    for got, ref in zip(K.column_quantiles(m, SPECS), _numpy_quantiles(ref_m), strict=True):
        np.testing.assert_array_equal(got, ref)
    mean, var, (lo, hi) = K.column_summaries(m, np.zeros(37), "gaussian", [(0.05, "linear"), (0.95, "linear")])
    m64 = m.astype(np.float64)
    np.testing.assert_allclose(mean, m64.mean(axis=0), rtol=1e-12)
    np.testing.assert_allclose(var, m64.var(axis=0, ddof=1), rtol=1e-10)
    np.testing.assert_array_equal(lo, np.quantile(m64, 0.05, axis=0))
    np.testing.assert_array_equal(hi, np.quantile(m64, 0.95, axis=0))


def test_column_quantiles_leave_the_input_unchanged_and_follow_numpy_on_nan():
    """Blocks whose transpose is already contiguous (one column, Fortran order, a transposed array) are
    copied before sorting; a column holding NaN has NaN quantiles, as numpy's."""
    rng = np.random.default_rng(8)
    for m in (rng.standard_normal((7, 1)), np.asfortranarray(rng.standard_normal((9, 4))),
              rng.standard_normal((5, 11)).T):
        before = m.copy()
        got = K.column_quantiles(m, SPECS)
        np.testing.assert_array_equal(m, before)
        for g, ref in zip(got, _numpy_quantiles(before), strict=True):
            np.testing.assert_array_equal(g, ref)
        K.column_summaries(m, np.zeros(m.shape[0]), "gaussian", [(0.5, "linear")])
        np.testing.assert_array_equal(m, before)
    m = rng.standard_normal((11, 6))
    m[3, 1] = np.nan
    m[[0, 5], 4] = np.nan
    for g, ref in zip(K.column_quantiles(m, SPECS), _numpy_quantiles(m), strict=True):
        np.testing.assert_array_equal(g, ref)
    mean, var, (lo, hi) = K.column_summaries(m, np.zeros(11), "gaussian", [(0.05, "linear"), (0.95, "linear")])
    np.testing.assert_array_equal(lo, np.quantile(m, 0.05, axis=0))
    np.testing.assert_array_equal(hi, np.quantile(m, 0.95, axis=0))
    assert np.isnan(mean[[1, 4]]).all() and np.isfinite(mean[[0, 2, 3, 5]]).all()


@pytest.mark.parametrize("S", [1, 2, 5, 248, 1001, 1 << 16, (1 << 16) + 1])
def test_float64_order_statistics_from_32_bit_keys_equal_numpy(S):
    """float64 blocks are sorted as float32 keys carrying the draw's index (up to 65,536 draws; beyond,
    as float64): values equal or close in float32, beyond float32's range, tiny, signed zeros and
    infinities still give numpy's quantiles exactly."""
    rng = np.random.default_rng(S)
    J = 3 if S > 5000 else 40
    m = rng.standard_normal((S, J))
    m[:, 1] = 1.0 + rng.integers(0, 4, S) * 1e-12  # runs equal in float32, distinct in float64
    m[:, 2] = m[0, 2]  # a constant column
    if J > 3:
        m[:, 3] = rng.choice([1e300, -1e300, 3.5e38, -4e38, 1e-300, -1e-300, 0.0, -0.0, np.inf, -np.inf], S)
        m[:, 4] = np.nextafter(1.0, 2.0) ** rng.integers(0, 3, S)  # neighbours of 1.0
        m[:, 5] = rng.standard_normal(S) * 1e-42  # below float32's normal range
    with np.errstate(invalid="ignore", over="ignore"):  # inf - inf in numpy's interpolation (and ours)
        want = _numpy_quantiles(m)
        for got, ref in zip(K.column_quantiles(m, SPECS), want, strict=True):
            np.testing.assert_array_equal(got, ref)
        _, _, got = K.column_summaries(m, np.zeros(S), "gaussian", SPECS)
    for g, ref in zip(got, want, strict=True):
        np.testing.assert_array_equal(g, ref)


def test_column_quantiles_rejects_unknown_method():
    with pytest.raises(ValueError, match="method='nearest'"):
        K.column_quantiles(np.zeros((3, 2)), [(0.5, "nearest")])


@pytest.mark.parametrize("family", ["gaussian", "bernoulli", "poisson"])
def test_column_summaries_equal_numpy(family):
    from hierpool.core.families import get_family

    rng = np.random.default_rng(7)
    mat = rng.standard_normal((101, 500))
    off = rng.standard_normal(101)
    mean, var, (lo, hi) = K.column_summaries(mat, off, family, [(0.05, "linear"), (0.95, "linear")])
    mu = get_family(family).inverse_link(off[:, None] + mat)
    np.testing.assert_allclose(mean, mu.mean(axis=0), rtol=1e-12)
    np.testing.assert_allclose(var, mu.var(axis=0, ddof=1), rtol=1e-10)
    np.testing.assert_allclose(lo, np.quantile(mu, 0.05, axis=0), rtol=1e-14)
    np.testing.assert_allclose(hi, np.quantile(mu, 0.95, axis=0), rtol=1e-14)


@pytest.mark.parametrize("blocks", ["one", "many"])
@pytest.mark.parametrize("family", ["bernoulli", "binomial", "poisson"])
def test_column_summaries_rho_equals_the_family_formula(monkeypatch, family, blocks):
    """hp.shrinkage's rho of a count fit, computed in the compiled pass: the mean over draws of tau^2 / (tau^2 +
    within_variance(denom, value)), equal to the Family's numpy formula to rounding, including columns where
    the inverse link saturates (p = 1 exactly, a zero weight; exp overflowing to inf, weight 1), in one block
    of columns and in many (each block's columns at their offset into denom and rho)."""
    from hierpool.core.families import get_family

    if blocks == "many":
        monkeypatch.setattr(K, "SORT_BLOCK_BYTES", 57 * 7 * 8)
    rng = np.random.default_rng(8)
    mat = rng.standard_normal((57, 300))
    mat[:, :3] = 800.0  # logit: p = 1 (w = 0, rho 0); log: mu = inf (w = inf, rho 1)
    off = rng.standard_normal(57)
    tau_sq = rng.random(57) + 0.2
    denom = rng.integers(1, 9, size=300).astype(float)
    with np.errstate(invalid="ignore"):  # the quantile of a column of inf (inf - inf in the interpolation)
        mean, var, (lo,), rho = K.column_summaries(mat, off, family, [(0.05, "linear")], rho_of=(tau_sq, denom))
    fam = get_family(family)
    with np.errstate(over="ignore"):
        mu = fam.inverse_link(off[:, None] + mat)
    with np.errstate(divide="ignore", invalid="ignore"):
        v = fam.within_variance(denom[None, :], mu)
        want = np.mean(tau_sq[:, None] / (tau_sq[:, None] + v), axis=0)
    np.testing.assert_allclose(rho, want, rtol=1e-12, atol=0)
    assert rho[:3].tolist() == ([0.0] * 3 if family != "poisson" else [1.0] * 3)
    np.testing.assert_allclose(lo[3:], np.quantile(mu[:, 3:], 0.05, axis=0), rtol=1e-14)
    with pytest.raises(ValueError, match="rho_of is for the count families"):
        K.column_summaries(mat, off, "gaussian", [(0.5, "linear")], rho_of=(tau_sq, denom))
    tau_sq[5] = np.nan  # a NaN draw gives NaN, as numpy's formula does
    assert np.isnan(K.column_summaries(mat, off, family, [(0.5, "linear")], rho_of=(tau_sq, denom))[3]).all()


def _draw_inputs(rng, S, J, P):
    return dict(ybar=rng.standard_normal(J), xbar=rng.standard_normal((J, P)), size_idx=rng.integers(0, 3, J),
                a=rng.standard_normal(S), b=rng.standard_normal((S, P)), c=rng.random((S, 3)),
                sd=rng.random((S, 3)) + 0.1)


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
def test_conditional_draws_reproducible_and_thread_independent(monkeypatch, dtype):
    S = 12 if dtype == np.float64 else 40  # float32: 6 blocks: 16, 16 and 8 draws x 65,536 and 4,464 groups
    args = _draw_inputs(np.random.default_rng(1), S, 70_000, 2)
    runs = []
    for threads in (1, 2, 2):
        monkeypatch.setattr(K, "_threads", lambda t=threads: t)
        out = np.empty((S, 70_000), dtype)
        K.gaussian_conditional_draws(out, np.random.SeedSequence(5), **args)
        runs.append(out)
    np.testing.assert_array_equal(runs[0], runs[1])
    np.testing.assert_array_equal(runs[1], runs[2])
    other = np.empty((S, 70_000), dtype)
    K.gaussian_conditional_draws(other, np.random.SeedSequence(6), **args)
    assert not np.array_equal(other, runs[0])


def test_conditional_draws_are_numpys_generator_stream():
    """float64 output: with mean factor 0 and sd 1 the kernel writes numpy's ``Generator.standard_normal``
    stream of each block's child seed exactly (numba runs numpy's algorithm on numpy's bit generator)."""
    S, J = 6, 50_000
    args = dict(ybar=np.zeros(J), xbar=np.zeros((J, 0)), size_idx=np.zeros(J, np.int64), a=np.zeros(S),
                b=np.zeros((S, 0)), c=np.zeros((S, 1)), sd=np.ones((S, 1)))
    out = np.empty((S, J))
    K.gaussian_conditional_draws(out, np.random.SeedSequence(11), **args, block_values=2 * J)
    children = np.random.SeedSequence(11).spawn(3)  # blocks of 2 rows
    want = np.concatenate([np.random.Generator(np.random.PCG64(ch)).standard_normal((2, J)) for ch in children])
    np.testing.assert_array_equal(out, want)


def _box_muller_reference(rng, n):
    """The float32 path's ``n`` normals, in float64 from the same uniforms: ``r * cos`` of the ``m`` pairs,
    then ``r * sin`` (``kernels.box_muller_f32``)."""
    m = (n + 1) // 2
    u = rng.random(m)
    v = rng.random(m, dtype=np.float32)
    r = np.sqrt(-2.0 * np.log((1.0 - u).astype(np.float32).astype(np.float64)))
    t = (v * np.float32(2.0 * np.pi)).astype(np.float64)
    return np.concatenate([r * np.cos(t), r * np.sin(t)])[:n]


def test_conditional_draws_float32_are_the_documented_box_muller_tiles():
    """float32 output: each block (one tile of up to 16 draws x whole tiles of 4,096 groups, 65,536
    groups at the default block size; blocks in row-major order, each its own child seed) draws its tiles
    in order, each tile's normals Box-Muller pairs in row order (the first half r * cos, the second
    r * sin). Compared with the same stream computed in float64: numpy's float32 log, sqrt, sin and cos
    are accurate to a few float32 units (the angle's rounding moves a normal by at most 8.6 * 4.8e-7), so
    1e-5 holds; a tile in another order, a swapped half or another block's stream differs by O(1)."""
    S, J = 40, 9_000  # block_values 2**16: blocks of 16, 16, 8 draws x 4,096, 4,096, 808 groups
    args = dict(ybar=np.zeros(J), xbar=np.zeros((J, 0)), size_idx=np.zeros(J, np.int64), a=np.zeros(S),
                b=np.zeros((S, 0)), c=np.zeros((S, 1)), sd=np.ones((S, 1)))
    out = np.empty((S, J), np.float32)
    K.gaussian_conditional_draws(out, np.random.SeedSequence(11), **args, block_values=1 << 16)
    children = iter(np.random.SeedSequence(11).spawn(9))
    want = np.empty((S, J))
    for s0 in range(0, S, 16):
        for j0 in range(0, J, 4096):
            rng = np.random.Generator(np.random.PCG64(next(children)))
            tile = want[s0:s0 + 16, j0:j0 + 4096]
            tile[...] = _box_muller_reference(rng, tile.size).reshape(tile.shape)
    np.testing.assert_allclose(out, want, rtol=0, atol=1e-5)
    # the mean and sd are applied in float64 and rounded once
    args2 = _draw_inputs(np.random.default_rng(3), S, J, 2)
    out2 = np.empty((S, J), np.float32)
    K.gaussian_conditional_draws(out2, np.random.SeedSequence(11), **args2, block_values=1 << 16)
    k = args2["size_idx"]
    e = args2["ybar"][None, :] - args2["a"][:, None] - args2["b"] @ args2["xbar"].T
    mean = np.take_along_axis(args2["c"], np.broadcast_to(k, (S, J)), axis=1) * e
    sd = np.take_along_axis(args2["sd"], np.broadcast_to(k, (S, J)), axis=1)
    np.testing.assert_allclose(out2, mean + sd * want, rtol=1e-6, atol=1e-5)


def _normal_checks(z: np.ndarray) -> dict:
    """Standardized deviations of a sample from N(0, 1): mean, variance, two tail frequencies (each
    N(0, 1) under the null) and the Kolmogorov-Smirnov statistic over its 1e-6 critical value."""
    from scipy import stats

    n = z.size
    out = {"mean": z.mean() / np.sqrt(1.0 / n), "var": (z.var() - 1.0) / np.sqrt(2.0 / n)}
    for t in (3.0, 4.0):
        p = 2 * stats.norm.sf(t)
        out[f"tail{t:g}"] = (np.mean(np.abs(z) > t) - p) / np.sqrt(p * (1 - p) / n)
    out["ks"] = stats.kstest(z, "norm").statistic / (np.sqrt(-0.5 * np.log(0.5e-6)) / np.sqrt(n))
    return out


def test_conditional_draws_float32_normals_are_standard_normal():
    """2**22 float32 normals (c = 0, sd = 1): mean, variance and the frequencies beyond 3 and 4 within 5
    standard errors of N(0, 1)'s, the KS statistic below its 1e-6 critical value (fixed seed; each check
    fails for a correct generator with probability below 1e-6). Control: the same checks on
    ``sqrt(-1.96 log u)`` radii (variance 0.98: 0.4% of the mass of |z| > 3 moved) fail."""
    S, J = 4, 1 << 20
    args = dict(ybar=np.zeros(J), xbar=np.zeros((J, 0)), size_idx=np.zeros(J, np.int64), a=np.zeros(S),
                b=np.zeros((S, 0)), c=np.zeros((S, 1)), sd=np.ones((S, 1)))
    out = np.empty((S, J), np.float32)
    K.gaussian_conditional_draws(out, np.random.SeedSequence(2026), **args)
    checks = _normal_checks(out.reshape(-1).astype(np.float64))
    assert all(abs(v) < 5 for k, v in checks.items() if k != "ks"), checks
    assert checks["ks"] < 1.0, checks
    wrong = out.reshape(-1).astype(np.float64) * np.sqrt(0.98)
    bad = _normal_checks(wrong)
    assert abs(bad["var"]) > 5 or bad["ks"] > 1.0, bad


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
def test_conditional_draws_have_the_stated_normal(dtype):
    """Many draws of one parameter set: mean and sd per group agree with c * e and sd (within MC error:
    4 standard errors)."""
    rng = np.random.default_rng(2)
    S, J, P = 4000, 6, 2
    one = _draw_inputs(rng, 1, J, P)
    args = {k: (np.repeat(v, S, axis=0) if k in ("a", "b", "c", "sd") else v) for k, v in one.items()}
    out = np.empty((S, J), dtype)
    K.gaussian_conditional_draws(out, np.random.SeedSequence(9), **args)
    out = out.astype(np.float64)
    k = one["size_idx"]
    e = one["ybar"] - one["a"][0] - one["xbar"] @ one["b"][0]
    mean, sd = one["c"][0, k] * e, one["sd"][0, k]
    z = (out.mean(axis=0) - mean) / (sd / np.sqrt(S))
    assert np.all(np.abs(z) < 4.0), z
    ratio = out.std(axis=0, ddof=1) / sd
    assert np.all(np.abs(ratio - 1.0) < 4.0 / np.sqrt(2 * S)), ratio


@pytest.mark.parametrize("chains,draws", [(4, 301), (3, 200), (1, 50)])
def test_rhat_ess_equal_arviz(chains, draws):
    """The vectorized diagnostics give ArviZ's rank-normalized R-hat, bulk and tail ESS: correlated
    chains, chains with shifted means, ties, a constant variable, odd draws, one chain."""
    import arviz as az
    import xarray as xr

    from hierpool.inference.diagnostics import rhat_ess

    rng = np.random.default_rng(chains * draws)
    V = 24
    x = rng.normal(size=(chains, draws, V))
    for v in range(V):
        phi = 0.9 * v / V
        for d in range(1, draws):
            x[:, d, v] += phi * x[:, d - 1, v]
        if v % 4 == 0:
            x[:, :, v] += rng.normal(0, 0.5, size=(chains, 1))  # chains that disagree
    x[:, :, 1] = np.round(x[:, :, 1])  # many ties
    x[:, :, 2] = 3.0  # constant
    x[:, :, 5] = rng.integers(-1, 2, size=(chains, draws))  # folded values tie across the median
    for d in range(1, draws):  # slow mixing: Geyer's truncation far beyond the direct sums' lags
        x[:, d, 3] = 0.995 * x[:, d - 1, 3] + 0.1 * rng.normal(size=chains)
    ds = xr.Dataset({"u": (("chain", "draw", "g"), x)})
    r, b, t = rhat_ess(x, block=7)  # several blocks, in threads
    with np.errstate(invalid="ignore", divide="ignore"):
        ref_r = az.rhat(ds)["u"].values
    np.testing.assert_allclose(r, ref_r, rtol=1e-10, equal_nan=True)
    np.testing.assert_allclose(b, az.ess(ds, method="bulk")["u"].values, rtol=1e-8, equal_nan=True)
    np.testing.assert_allclose(t, az.ess(ds, method="tail")["u"].values, rtol=1e-8, equal_nan=True)


def test_direct_and_fft_autocovariances_give_the_same_ess():
    """The ESS from lag-by-lag autocovariance sums equals the FFT's; slowly mixing variables (truncation
    beyond the direct sums' reach) go to the FFT."""
    from hierpool.inference import diagnostics as D

    rng = np.random.default_rng(1)
    C, n, V = 4, 400, 12
    a = rng.normal(size=(V, C, n))
    for v in range(V):
        phi = [0.0, 0.3, 0.6, 0.9, 0.99, 0.999][v % 6]
        for d in range(1, n):
            a[v, :, d] += phi * a[v, :, d - 1]
    a[0] = 2.0  # constant
    out, fallback = np.empty(V), np.zeros(V, dtype=bool)
    D._ess_direct(a, D._MAX_DIRECT_LAG, np.finfo(float).resolution, out, fallback)
    assert fallback.any() and not fallback.all()
    np.testing.assert_allclose(D._ess_fast(a), D._ess(a), rtol=1e-10)


@pytest.mark.parametrize("P", [0, 1, 3])
def test_gaussian_group_stats_equal_numpy(P):
    """Group means exactly numpy's (bincount / n); within-group cross-products to rounding."""
    rng = np.random.default_rng(P)
    N, J = 200_003, 70_001
    idx = rng.integers(0, J, N)
    idx[:J] = np.arange(J)  # every group present
    n = np.bincount(idx, minlength=J).astype(float)
    y = rng.standard_normal(N) * 3 + 10
    X = rng.standard_normal((N, P)) * [2.0, 0.5, 7.0][:P] + 4
    center, scale = X.mean(axis=0), X.std(axis=0)
    ybar, xbar, syy, sxy, sxx = K.gaussian_group_stats(y, X, center, scale, idx, n)
    Xs = (X - center) / scale
    ref_ybar = np.bincount(idx, weights=y, minlength=J) / n
    ref_xbar = np.stack([np.bincount(idx, weights=Xs[:, k], minlength=J) for k in range(P)], axis=1) / n[:, None] \
        if P else np.zeros((J, 0))
    np.testing.assert_array_equal(ybar, ref_ybar)
    np.testing.assert_array_equal(xbar, ref_xbar.reshape(J, P))
    yw, Xw = y - ref_ybar[idx], Xs - ref_xbar.reshape(J, P)[idx]
    np.testing.assert_allclose(syy, yw @ yw, rtol=1e-11)
    np.testing.assert_allclose(sxy, Xw.T @ yw, rtol=1e-9, atol=1e-8 * np.sqrt(N))
    np.testing.assert_allclose(sxx, Xw.T @ Xw, rtol=1e-11)
    assert sxx.shape == (P, P) and sxy.shape == (P,)


@pytest.mark.parametrize("family", ["gaussian", "bernoulli", "binomial", "poisson"])
@pytest.mark.parametrize("ge_dtype", [np.float64, np.float32])
def test_pointwise_log_likelihood_equals_the_formula(family, ge_dtype):
    """The stored log-likelihood (one compiled pass, the kernel's literal formulas) equals the Family's
    log_likelihood of linear_predictor(...), row by row and draw by draw: predictors, exposure offsets,
    trials and float32 group effects (large thinned fits) included."""
    import pandas as pd
    from fake_fits import make_fit

    from hierpool.core import names as N
    from hierpool.core.families import get_family
    from hierpool.inference.predictive import design_from_constant, linear_predictor
    from hierpool.inference.sampling import pointwise_log_likelihood

    rng = np.random.default_rng(4)
    n, J = 60, 7
    data = pd.DataFrame({"group": rng.integers(0, J, n).astype(str), "x": rng.normal(size=n),
                         "t": rng.uniform(0.5, 3, n), "k": rng.integers(1, 6, n).astype(float)})
    if family == "gaussian":
        data["y"] = rng.normal(size=n)
    elif family == "bernoulli":
        data["y"] = rng.integers(0, 2, n).astype(float)
    elif family == "binomial":
        data["y"] = np.floor(rng.uniform(0, 1, n) * (data["k"] + 1)).clip(0, data["k"])
    else:
        data["y"] = rng.poisson(2.0, n).astype(float)
    kw = {"trials": "k"} if family == "binomial" else {"exposure": "t"} if family == "poisson" else {}
    dt = make_fit(family, data=data, chains=2, draws=9, intercept=0.3, beta=[0.4], jitter=0.7, seed=3,
                  log_lik=False, **kw)
    post = dt["posterior"].to_dataset()
    post[N.GROUP_EFFECT] = post[N.GROUP_EFFECT].astype(ge_dtype)
    const, y = dt["constant_data"].to_dataset(), dt["observed_data"].to_dataset()[N.Y]
    got = pointwise_log_likelihood(post, const, y, family)
    X, gidx, offset, trials = design_from_constant(const)
    eta = linear_predictor(post, X, gidx, offset)
    ref = get_family(family).log_likelihood(y, eta, sigma=post.get(N.SIGMA), trials=trials)
    ref = ref.transpose(*N.SAMPLE_DIMS, N.OBS)
    assert got.dims == ref.dims
    np.testing.assert_allclose(got.values, ref.values, rtol=1e-12, atol=1e-12)


def test_vectorized_softplus_and_log1p_equal_numpy_within_a_few_ulp():
    """``vmath.log1p_unit`` on [0, 1] and ``vmath.softplus`` over the float64 range (the stored
    log-likelihood's): within 8 ulp of numpy (measured here: 3 and 4), softplus 0 far below, x far above,
    inf at inf and NaN at NaN; the loops over them vectorize (``error_model="numpy"``: packed arithmetic
    on ymm or zmm registers in the machine code where the CPU has AVX2), which is what they are for."""
    import re

    from numba import njit

    from hierpool.core import vmath as V

    @njit(fastmath={"contract"}, error_model="numpy")
    def log1p_arr(x, out):
        for k in range(x.shape[0]):
            out[k] = V.log1p_unit(x[k])

    @njit(fastmath={"contract"}, error_model="numpy")
    def softplus_arr(x, out):
        for k in range(x.shape[0]):
            out[k] = V.softplus(x[k])

    rng = np.random.default_rng(1)
    t = np.concatenate([rng.random(200_000), np.geomspace(1e-300, 1, 20_000), [0.0, 1.0, np.nextafter(1.0, 0)]])
    out = np.empty_like(t)
    log1p_arr(t, out)
    ref = np.log1p(t)
    pos = ref > 0
    assert np.max(np.abs(out[pos] - ref[pos]) / np.spacing(ref[pos])) <= 8 and out[~pos].tolist() == [0.0]
    x = np.concatenate([rng.normal(0, 5, 200_000), np.linspace(-800, 800, 20_001), -np.geomspace(1e-300, 700, 5_000),
                        np.geomspace(1e-300, 700, 5_000), [np.inf, -np.inf, np.nan, 0.0, -0.0]])
    out = np.empty_like(x)
    softplus_arr(x, out)
    with np.errstate(invalid="ignore"):
        ref = np.logaddexp(0.0, x)
    fin = np.isfinite(ref) & (ref > 0)
    assert np.max(np.abs(out[fin] - ref[fin]) / np.spacing(ref[fin])) <= 8
    np.testing.assert_array_equal(out[~fin], ref[~fin])  # inf, NaN, and 0 far below (exp underflows)
    import llvmlite.binding as llvm

    if "avx2" in llvm.get_host_cpu_features().flatten():
        # packed double arithmetic on vector registers (Intel CPUs may prefer 256-bit ymm, AMD zmm); the
        # scalar loop has none of these
        asm = next(iter(softplus_arr.inspect_asm().values()))
        assert len(re.findall(r"\bv(?:fmadd|fnmadd|mul|add|sub|div)\w*pd\s+%[yz]mm", asm)) > 10


@pytest.mark.parametrize("family", ["gaussian", "bernoulli", "binomial", "poisson"])
def test_pointwise_loglik_over_tiles_and_extreme_predictors(family):
    """The compiled log-likelihood over more rows than one tile (2,048; a partial last tile), with and
    without predictors, at linear predictors from -700 to 700 (softplus and exp at their extremes), equals
    numpy's formulas to 1e-12 relative."""
    from scipy.special import gammaln

    rng = np.random.default_rng(2)
    S, N, J = 3, 5_000, 40
    gidx = rng.integers(0, J, N)
    U = rng.normal(0, 1, (S, J))
    a = rng.normal(0, 1, S)
    off = np.where(rng.random(N) < 0.1, rng.uniform(-700, 700, N), rng.normal(0, 1, N))
    if family == "poisson":
        off = np.minimum(off, 600.0)  # exp(eta) stays finite
    trials = rng.integers(1, 6, N).astype(float)
    sigma = rng.uniform(0.5, 2, S)
    for P in (0, 3):
        X = rng.normal(size=(N, P))
        B = rng.normal(0, 0.3, (S, P))
        eta = a[:, None] + (B @ X.T) + U[:, gidx] + off
        if family == "gaussian":
            y = rng.normal(size=N)
            ref = -0.5 * ((y - eta) / sigma[:, None]) ** 2 - np.log(sigma)[:, None] - 0.5 * np.log(2 * np.pi)
        elif family == "bernoulli":
            y = rng.integers(0, 2, N).astype(float)
            ref = y * eta - np.logaddexp(0.0, eta)
        elif family == "binomial":
            y = np.floor(rng.random(N) * (trials + 1))
            ref = (gammaln(trials + 1) - gammaln(y + 1) - gammaln(trials - y + 1) + y * eta
                   - trials * np.logaddexp(0.0, eta))
        else:
            y = rng.poisson(2.0, N).astype(float)
            ref = y * eta - np.exp(eta) - gammaln(y + 1)
        got = K.pointwise_loglik(family, a, B if P else None, U, sigma if family == "gaussian" else None, y,
                                 X if P else None, gidx, off, trials if family == "binomial" else None)
        assert got.shape == (S, N)
        np.testing.assert_allclose(got, ref, rtol=1e-12, atol=1e-12)


def test_class_moments_equal_numpy_per_class_products():
    rng = np.random.default_rng(3)
    J, P, K_ = 5000, 3, 7
    yc, xbar, cls = rng.normal(size=J), rng.normal(size=(J, P)), rng.integers(0, K_, size=J)
    R = np.column_stack([yc, np.ones(J), xbar])
    want = np.stack([R[cls == k].T @ R[cls == k] for k in range(K_)])
    np.testing.assert_allclose(K.class_moments(yc, xbar, cls, K_), want, rtol=1e-12, atol=1e-9)
    assert K.class_moments(yc, np.zeros((J, 0)), cls, K_).shape == (K_, 2, 2)


def test_empty_large_maps_and_touches_large_arrays(monkeypatch):
    """At or above LARGE_BYTES: a writable C-contiguous array of the shape and dtype on an anonymous map
    (zeroed pages, already touched); below it, or for other shapes, plain np.empty. Both behave as arrays."""
    import mmap

    monkeypatch.setattr(K, "LARGE_BYTES", 4096 * 3)
    big = K.empty_large((7, 1000), np.int32)  # 28,000 bytes: mapped
    assert big.shape == (7, 1000) and big.dtype == np.int32 and big.flags.c_contiguous and big.flags.writeable
    base = big
    while isinstance(base, np.ndarray):
        base = base.base
    assert isinstance(base.obj if isinstance(base, memoryview) else base, mmap.mmap)
    np.testing.assert_array_equal(big, 0)
    big[...] = np.arange(7000).reshape(7, 1000)
    assert big.sum() == 7000 * 6999 // 2
    small = K.empty_large(5, np.float32)  # 20 bytes: np.empty
    assert small.shape == (5,) and small.dtype == np.float32 and small.base is None
    assert K.empty_large((0, 4), np.float64).shape == (0, 4)


@pytest.mark.skipif(not hasattr(__import__("os"), "fork"), reason="needs os.fork")
@pytest.mark.filterwarnings("ignore:This process .* is multi-threaded")  # the child only writes and exits
def test_empty_large_is_private_across_fork(monkeypatch):
    """A forked child writing into a mapped array changes its own copy only, as with np.empty's memory."""
    import os

    monkeypatch.setattr(K, "LARGE_BYTES", 4096)
    a = K.empty_large((4, 4096), np.float32)
    pid = os.fork()
    if pid == 0:  # child
        a[0, 0] = 12345.0
        os._exit(0)
    os.waitpid(pid, 0)
    assert a[0, 0] == 0.0
