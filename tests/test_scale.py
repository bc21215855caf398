"""Data beyond memory (issue 4): Dask / Parquet / CSV reductions equal the pandas path; fits from
sufficient statistics; a J = 100,000 smoke fit."""

from __future__ import annotations

import arviz as az
import numpy as np
import pandas as pd
import pytest
import xarray as xr
from conftest import compare_posteriors, quiet_fit

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


def _mean_response(dt) -> xr.Dataset:
    """Draws of each group's mean at the average predictors, intercept + beta . x_center + group effect,
    computed here from the posterior (what ``hp.shrinkage`` summarizes for a gaussian fit)."""
    post, const = dt["posterior"], dt["constant_data"]
    iac = post[N.INTERCEPT] + (post[N.BETA] * const[N.X_CENTER]).sum(N.PREDICTOR)
    return (iac + post[N.GROUP_EFFECT]).transpose(*N.SAMPLE_DIMS, N.GROUP).to_dataset(name="mu")


def _hand_ranks(values: np.ndarray) -> np.ndarray:
    """Rank of each group within each draw, 1 = largest (rows: draws)."""
    return (-values).argsort(axis=1, kind="stable").argsort(axis=1) + 1.0


@pytest.mark.slow
def test_fit_from_statistics_equals_fit_from_rows(frame):
    """Same model, same seed: the statistics path samples the same posterior as the in-memory path."""
    gd = hp.prepare(frame, **KW)
    gs = hp.prepare(dd.from_pandas(frame, npartitions=4), **KW)
    a = quiet_fit(hp.random_intercepts(gd), draws=500, tune=500, random_seed=5)
    b = quiet_fit(hp.random_intercepts(gs), draws=500, tune=500, random_seed=5)
    assert "observed_data" not in b.children and "log_likelihood" not in b.children
    # identical statistics up to rounding: the chains agree to numerical precision or to MCMC error. Means
    # and SDs within 4.5 combined MCSEs (derivation in conftest.compare_posteriors)
    compare_posteriors(a, b, [N.INTERCEPT, N.BETA, N.TAU, N.SIGMA, N.GROUP_EFFECT])
    sa, sb = hp.shrinkage(a), hp.shrinkage(b)
    ma, mb = _mean_response(a), _mean_response(b)
    # each table summarizes its own draws exactly ...
    for tab, m in ((sa, ma), (sb, mb)):
        np.testing.assert_allclose(tab["estimate"], m["mu"].mean(N.SAMPLE_DIMS), rtol=1e-10)
    # ... and the two estimates of each group differ by less than 4.5 standard errors of that difference,
    # sqrt(mcse_a^2 + mcse_b^2) from each fit's draws (a 300-group vector passes by chance with p > 0.998)
    se = np.sqrt(az.mcse(ma, method="mean")["mu"] ** 2 + az.mcse(mb, method="mean")["mu"] ** 2).values
    z = np.abs(sa["estimate"].to_numpy() - sb["estimate"].to_numpy()) / se
    assert z.max() < 4.5, z.max()
    # ranks: the statistics fit's mean ranks are those of its draws (exact), and within 4.5 MCSE of the
    # rows fit's (the MCSE of a mean rank from the ranks per draw, az.mcse, of each fit)
    ranks = {}
    for name, m in (("a", ma), ("b", mb)):
        r = _hand_ranks(m["mu"].values.reshape(-1, m.sizes[N.GROUP])).reshape(m["mu"].shape)
        ranks[name] = xr.Dataset({"rank": (m["mu"].dims, r)})
    rb = hp.rank_groups(b).set_index("group").loc[mb[N.GROUP].values]
    np.testing.assert_allclose(rb["rank_mean"], ranks["b"]["rank"].mean(N.SAMPLE_DIMS), rtol=1e-12)
    ra = hp.rank_groups(a).set_index("group").loc[ma[N.GROUP].values]
    se = np.sqrt(az.mcse(ranks["a"], method="mean")["rank"] ** 2 + az.mcse(ranks["b"], method="mean")["rank"] ** 2)
    z = np.abs(ra["rank_mean"].to_numpy() - rb["rank_mean"].to_numpy()) / se.values
    assert z.max() < 4.5, z.max()


@pytest.mark.slow
def test_hundred_thousand_groups_smoke():
    """J = 100,000 in bounded time and memory: collapsed fit, thinned group effects, group summaries."""
    rng = np.random.default_rng(1)
    J, TAU, BETA, INTERCEPT = 100_000, 0.8, 0.5, 1.0
    sizes = rng.integers(1, 6, J)
    g = np.repeat(np.arange(J), sizes)
    x = rng.normal(size=g.size)
    u = rng.normal(0, TAU, J)
    y = INTERCEPT + BETA * x + u[g] + rng.normal(size=g.size)
    df = pd.DataFrame({"y": y, "member": g, "x": x})
    dt = quiet_fit(hp.random_intercepts(df, y="y", group="member", predictors=["x"]), draws=250, tune=250)
    post = dt["posterior"]
    assert post.sizes[N.GROUP] == J
    # truth within 4.5 sd of its posterior: (truth - posterior mean) / posterior sd is about N(0, 1) for
    # data simulated from the model (J = 100k: the posterior is normal); the MCSE of the mean adds in
    for v, truth in ((N.TAU, TAU), (N.BETA, BETA)):
        x = post[v].isel({N.PREDICTOR: 0}, drop=True) if N.PREDICTOR in post[v].dims else post[v]
        d = x.to_dataset()
        sd = float(d[v].std())
        z = abs(float(d[v].mean()) - truth) / np.hypot(sd, float(az.mcse(d, method="mean")[v]))
        assert z < 4.5, (v, float(d[v].mean()), sd, z)
    s = hp.shrinkage(dt)
    assert len(s) == J and s["group"].tolist() == list(range(J))
    # the intervals are the 5% and 95% quantiles of the stored (thinned) draws, here for 2,000 groups
    m = _mean_response(dt.isel(group=slice(0, 2000)))["mu"].values.reshape(-1, 2000).astype(float)
    np.testing.assert_allclose(s["conf_low"][:2000], np.quantile(m, 0.05, axis=0), rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(s["conf_high"][:2000], np.quantile(m, 0.95, axis=0), rtol=1e-5, atol=1e-5)
    # and they are calibrated: the true group means (u_j drawn from the model) fall inside 90% of them.
    # Given the hyperparameters (known to < 1% here) groups are independent, so the share covered has
    # binomial sd sqrt(0.9 * 0.1 / J) = 0.00095; an interval between sample quantiles of S stored draws
    # covers a value exchangeable with them with probability about 0.9 (S - 1) / (S + 1), so allow 2 / S more.
    S = post.sizes["chain"] * post.sizes["draw"]
    true_mean = INTERCEPT + BETA * float(dt["constant_data"][N.X_CENTER].values[0]) + u
    covered = float(((s["conf_low"] <= true_mean) & (true_mean <= s["conf_high"])).mean())
    assert abs(covered - 0.9) < 4.5 * np.sqrt(0.9 * 0.1 / J) + 2 / S, (covered, S)
