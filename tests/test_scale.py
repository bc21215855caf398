"""Data beyond memory (issue 4): Dask / Parquet / CSV reductions equal the pandas path; fits from
sufficient statistics; a J = 100,000 smoke fit."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from conftest import quiet_fit

import hierpool as hp
from hierpool.core import names as N
from hierpool.data.grouped import GroupedStats
from hierpool.data.reduce import reduce
from hierpool.data.stats import count_patterns, gaussian_stats

dd = pytest.importorskip("dask.dataframe")


@pytest.fixture(scope="module")
def frame():
    df = hp.datasets.simulate("gaussian", n_groups=300, group_sizes=(1, 5), n_predictors=2, seed=21)
    df["x1"] = 60 + 10 * df["x1"]  # a predictor far from 0 (age-like): tests the numerics
    df["ward"] = np.array(["a", "b", "c"])[np.arange(len(df)) % 3]
    df["k"] = np.random.default_rng(0).poisson(2.0, len(df))
    df["hit"] = (df["y"] > 0).astype(int)
    return df


def _same_gaussian(gs: GroupedStats, gd):
    st = gaussian_stats(gd)
    assert gs.groups.tolist() == gd.groups.tolist()  # first-seen order, across partitions
    assert gs.predictors == gd.predictors
    np.testing.assert_array_equal(gs.group_n, gd.group_n)
    np.testing.assert_allclose(gs.group_raw_mean, gd.group_raw_mean, rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(gs.x_center, gd.x_center, rtol=1e-12)
    np.testing.assert_allclose(gs.x_scale, gd.x_scale, rtol=1e-10)
    np.testing.assert_allclose(gs.gaussian.ybar, st.ybar, rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(gs.gaussian.xbar, st.xbar, rtol=1e-9, atol=1e-10)
    np.testing.assert_allclose(gs.gaussian.syy_w, st.syy_w, rtol=1e-10)
    np.testing.assert_allclose(gs.gaussian.sxy_w, st.sxy_w, rtol=1e-9, atol=1e-9)
    np.testing.assert_allclose(gs.gaussian.sxx_w, st.sxx_w, rtol=1e-9, atol=1e-9)
    assert gs.y_scale == pytest.approx(gd.y_scale, rel=1e-10)


KW = dict(y="y", group="group", predictors=["x1", "x2", "ward"])


def test_dask_equals_pandas_gaussian(frame, tmp_path):
    gd = hp.prepare(frame, **KW)
    _same_gaussian(reduce(frame, **KW), gd)
    _same_gaussian(hp.prepare(dd.from_pandas(frame, npartitions=7), **KW), gd)
    frame.to_parquet(tmp_path / "rows.parquet")
    _same_gaussian(hp.prepare(str(tmp_path / "rows.parquet"), **KW), gd)
    for i, rows in enumerate(np.array_split(np.arange(len(frame)), 4)):
        frame.iloc[rows].to_csv(tmp_path / f"rows{i}.csv", index=False)
    _same_gaussian(hp.prepare(str(tmp_path / "rows*.csv"), **KW), gd)


@pytest.mark.parametrize("family, y, extra", [("bernoulli", "hit", {}), ("poisson", "k", {})])
def test_dask_equals_pandas_counts(frame, family, y, extra):
    kw = dict(y=y, group="group", predictors=["ward"], family=family, **extra)
    gd = hp.prepare(frame, **kw)
    gs = hp.prepare(dd.from_pandas(frame, npartitions=5), **kw)
    cp = count_patterns(gd)
    assert gs.cells.y.shape == cp.y.shape
    key = lambda g, X, v: sorted(zip(g.tolist(), map(tuple, np.round(X, 12).tolist()), v.tolist(), strict=True))  # noqa: E731
    assert key(gs.cells.group_idx, gs.cells.Xs, gs.cells.y) == key(cp.group_idx, cp.Xs, cp.y)
    np.testing.assert_allclose(gs.group_raw_mean, gd.group_raw_mean, rtol=1e-12)


def test_dask_bad_input(frame):
    ddf = dd.from_pandas(frame.assign(y=frame["y"].where(frame.index != 5)), npartitions=3)
    with pytest.raises(ValueError, match="y='y' has 1 NaN or infinite"):
        hp.prepare(ddf, **KW)
    with pytest.raises(ValueError, match="only 0 and 1"):
        hp.prepare(dd.from_pandas(frame, npartitions=2), y="y", group="group", family="bernoulli")
    with pytest.raises(ValueError, match="y='nope' is not a column"):
        hp.prepare(dd.from_pandas(frame, npartitions=2), y="nope", group="group")
    with pytest.raises(FileNotFoundError):
        hp.prepare("/nonexistent/file.parquet", y="y", group="group")
    gs = hp.prepare(dd.from_pandas(frame, npartitions=2), **KW)
    with pytest.raises(ValueError, match="collapse=False needs the rows"):
        hp.random_intercepts(gs, collapse=False)


@pytest.mark.slow
def test_fit_from_statistics_equals_fit_from_rows(frame):
    """Same model, same seed: the statistics path samples the same posterior as the in-memory path."""
    gd = hp.prepare(frame, **KW)
    gs = hp.prepare(dd.from_pandas(frame, npartitions=4), **KW)
    a = quiet_fit(hp.random_intercepts(gd), draws=500, tune=500, random_seed=5)
    b = quiet_fit(hp.random_intercepts(gs), draws=500, tune=500, random_seed=5)
    assert "observed_data" not in b.children and "log_likelihood" not in b.children
    for v in (N.INTERCEPT, N.BETA, N.TAU, N.SIGMA):
        # identical statistics up to rounding, so the chains agree to numerical precision or to MCMC error
        np.testing.assert_allclose(b["posterior"][v].mean(("chain", "draw")), a["posterior"][v].mean(("chain", "draw")),
                                   rtol=0.02, atol=0.01)
    sa, sb = hp.shrinkage(a), hp.shrinkage(b)
    np.testing.assert_allclose(sb["estimate"], sa["estimate"], atol=0.03)
    assert hp.rank_groups(b)["rank_mean"].notna().all()


@pytest.mark.slow
def test_hundred_thousand_groups_smoke():
    """J = 100,000 in bounded time and memory: collapsed fit, thinned group effects, group summaries."""
    rng = np.random.default_rng(1)
    J = 100_000
    sizes = rng.integers(1, 6, J)
    g = np.repeat(np.arange(J), sizes)
    x = rng.normal(size=g.size)
    y = 1.0 + 0.5 * x + rng.normal(0, 0.8, J)[g] + rng.normal(size=g.size)
    df = pd.DataFrame({"y": y, "member": g, "x": x})
    dt = quiet_fit(hp.random_intercepts(df, y="y", group="member", predictors=["x"]), draws=250, tune=250)
    post = dt["posterior"]
    assert post.sizes[N.GROUP] == J
    assert abs(float(post[N.TAU].mean()) - 0.8) < 0.05 and abs(float(post[N.BETA].mean()) - 0.5) < 0.02
    s = hp.shrinkage(dt)
    assert len(s) == J and s["conf_low"].lt(s["conf_high"]).all()
