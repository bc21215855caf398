"""Posterior ranks and triple-goal estimates, checked against hand computations on hand-built posteriors.

The hand computations use a different algorithm from hierpool's (ranks by pairwise comparison instead of
argsort, all draws at once instead of chunks), so agreement is a real check.
"""

from __future__ import annotations

import importlib
import warnings

import numpy as np
import pandas as pd
import pytest
import xarray as xr
from fake_fits import frame, make_fit, staircase
from scipy.special import expit

import hierpool as hp

rank_mod = importlib.import_module("hierpool.analysis.ranking")  # hp.rank_groups is the function

# A posterior with known ordering and overlap: g0 always first, g5 always last, g1-g4 overlap.
MEANS = np.array([10.0, 1.0, 0.8, 0.5, 0.0, -10.0])
SDS = np.array([0.1, 1.0, 0.3, 1.0, 0.5, 0.1])


@pytest.fixture(scope="module")
def posterior():
    rng = np.random.default_rng(42)
    C, D = 4, 250
    ge = MEANS + SDS * rng.normal(size=(C, D, MEANS.size))
    return ge


def hand_ranks(values: np.ndarray, descending=True) -> np.ndarray:
    """Ranks by pairwise comparison: 1 + number of groups strictly better in the same draw."""
    v = values.reshape(-1, values.shape[-1])
    better = v[:, None, :] > v[:, :, None] if descending else v[:, None, :] < v[:, :, None]
    return 1 + better.sum(axis=2)  # (samples, groups)


def test_rank_groups_equals_hand_computation(posterior):
    dt = make_fit(data=staircase(6), group_effect=posterior)
    tab = hp.rank_groups(dt, ci_prob=0.8, top_k=2).set_index("group").loc[[f"g{j}" for j in range(6)]]
    r = hand_ranks(posterior)
    np.testing.assert_allclose(tab["rank_mean"], r.mean(0), rtol=1e-12)
    np.testing.assert_allclose(tab["rank_sd"], r.std(0, ddof=1), rtol=1e-9, atol=1e-12)
    np.testing.assert_allclose(tab["rank_median"], np.median(r, axis=0))
    np.testing.assert_array_equal(tab["rank_low"], np.quantile(r, 0.1, axis=0, method="lower"))
    np.testing.assert_array_equal(tab["rank_high"], np.quantile(r, 0.9, axis=0, method="higher"))
    np.testing.assert_allclose(tab["p_top_k"], (r <= 2).mean(0))
    np.testing.assert_allclose(tab["p_best"], (r == 1).mean(0))
    np.testing.assert_allclose(tab["estimate"], posterior.reshape(-1, 6).mean(0))
    # the known structure
    assert tab.loc["g0", "p_best"] == 1.0 and tab.loc["g0", "rank_low"] == tab.loc["g0", "rank_high"] == 1
    assert tab.loc["g5", "rank_mean"] == 6.0 and tab.loc["g5", "p_top_k"] == 0.0
    assert tab.loc["g1", "rank_high"] - tab.loc["g1", "rank_low"] >= 2  # overlapping groups: wide intervals
    # at least ci_prob of the draws lie in each interval
    inside = (r >= tab["rank_low"].to_numpy()) & (r <= tab["rank_high"].to_numpy())
    assert np.all(inside.mean(0) >= 0.8)
    # sorted by mean rank, attrs
    full = hp.rank_groups(dt, ci_prob=0.8, top_k=2)
    assert full["rank_mean"].is_monotonic_increasing and full["group"].iloc[0] == "g0"
    assert full.attrs == {"ci_prob": 0.8, "top_k": 2, "descending": True, "by": "estimate", "n_draws": 1000,
                          "n_draws_quantiles": 1000}
    # default top_k: 10% of 6 groups rounds to 1, so p_top_k = p_best
    default = hp.rank_groups(dt)
    assert default.attrs["top_k"] == 1
    np.testing.assert_allclose(default["p_top_k"], default["p_best"])


def test_ascending_ranks_mirror_descending(posterior):
    dt = make_fit(data=staircase(6), group_effect=posterior)
    desc = hp.rank_groups(dt).set_index("group").sort_index()
    asc = hp.rank_groups(dt, descending=False, top_k=1).set_index("group").sort_index()
    np.testing.assert_allclose(asc["rank_mean"], 7 - desc["rank_mean"])
    np.testing.assert_allclose(asc.loc["g5", "p_best"], 1.0)
    np.testing.assert_allclose(asc["triple_goal"], desc["triple_goal"])  # direction-free


def test_chunking_and_thinning(posterior, monkeypatch):
    dt = make_fit(data=staircase(6), group_effect=posterior)
    full = hp.rank_groups(dt, top_k=3)
    with hp.set_options(memory_gb=13 * 12 * 8 / 1e9):  # chunks of 13 values: 2 draws of 6 groups
        pd.testing.assert_frame_equal(hp.rank_groups(dt, top_k=3), full)
    thin = hp.rank_groups(dt, top_k=3, max_draws=100).set_index("group").sort_index()
    assert thin.attrs["n_draws_quantiles"] == 100 and thin.attrs["n_draws"] == 1000
    # exact accumulators use every draw
    f = full.set_index("group").sort_index()
    for col in ("rank_mean", "p_top_k", "p_best", "estimate", "triple_goal"):
        np.testing.assert_allclose(thin[col], f[col])
    # quantiles: the evenly thinned draws (flat index chain * draws + draw)
    r = hand_ranks(posterior)[np.linspace(0, 999, 100).round().astype(int)]
    np.testing.assert_array_equal(thin["rank_low"], np.quantile(r, 0.05, axis=0, method="lower"))
    np.testing.assert_array_equal(thin["rank_high"], np.quantile(r, 0.95, axis=0, method="higher"))
    np.testing.assert_allclose(thin["rank_median"], np.median(r, axis=0))


def test_triple_goal_order_and_spread(posterior):
    dt = make_fit(data=staircase(6), group_effect=posterior)
    tab = hp.rank_groups(dt)
    v = posterior.reshape(-1, 6)
    edf = np.sort(v, axis=1).mean(0)  # posterior mean of the order statistics (ISEL EDF)
    # ordered as the mean ranks (the table is sorted by rank_mean, best first, descending values)
    np.testing.assert_allclose(tab["triple_goal"], edf[::-1])
    # the empirical distribution of the values is the EDF estimate: wider than the posterior means
    np.testing.assert_allclose(np.sort(tab["triple_goal"]), edf)
    assert tab["triple_goal"].var() > tab["estimate"].var()
    np.testing.assert_allclose(tab["triple_goal"].mean(), v.mean())  # the means of both agree
    gr = hp.triple_goal(dt)
    assert gr["group"].tolist() == [f"g{j}" for j in range(6)]
    merged = gr.merge(tab, on="group", suffixes=("", "_r"))
    np.testing.assert_allclose(merged["triple_goal"], merged["triple_goal_r"])
    np.testing.assert_array_equal(np.argsort(gr["triple_goal_rank"]), np.argsort(gr["rank_mean"]))
    assert sorted(gr["triple_goal_rank"]) == list(range(1, 7))


def test_triple_goal_differs_from_means_when_shrunk():
    """Equal-sized noisy groups: posterior means are under-dispersed, triple-goal values restore spread."""
    rng = np.random.default_rng(3)
    J, S = 30, 400
    true = rng.normal(size=J)
    post_mean = 0.5 * true  # shrunk halfway
    ge = (post_mean + np.sqrt(0.5) * rng.normal(size=(S, J)))[None]
    tab = hp.rank_groups(make_fit(data=staircase(J), group_effect=ge))
    ratio = tab["triple_goal"].std() / tab["estimate"].std()
    # var of the values per draw ~ var(post_mean) + 0.5; ratio of sds ~ sqrt(1 + 0.5 / var(post_mean))
    want = np.sqrt(1 + 0.5 / np.var(ge[0].mean(0), ddof=1))
    assert ratio == pytest.approx(want, rel=0.1)


def test_by_effect_gives_same_ranks_on_other_scale():
    rng = np.random.default_rng(9)
    ge = rng.normal(size=(2, 100, 5)) + np.linspace(-1, 1, 5)
    a = rng.normal(-1.0, 0.3, size=(2, 100))
    gidx = np.repeat(np.arange(5), 2)
    dt = make_fit("bernoulli", data=frame(gidx, np.tile([0.0, 1.0], 5)), group_effect=ge, intercept=a)
    est = hp.rank_groups(dt, top_k=2).set_index("group").sort_index()
    eff = hp.rank_groups(dt, top_k=2, by="effect").set_index("group").sort_index()
    for col in ("rank_mean", "rank_low", "rank_high", "p_top_k", "p_best"):
        np.testing.assert_allclose(est[col], eff[col])
    np.testing.assert_allclose(est["estimate"], expit(a[..., None] + ge).reshape(-1, 5).mean(0))
    np.testing.assert_allclose(eff["estimate"], ge.reshape(-1, 5).mean(0))
    assert eff.attrs["by"] == "effect"


def test_ties_broken_by_group_order():
    ge = np.zeros((1, 3, 4))
    tab = hp.rank_groups(make_fit(data=staircase(4), group_effect=ge), top_k=2).set_index("group").sort_index()
    np.testing.assert_array_equal(tab["rank_mean"], [1, 2, 3, 4])


@pytest.mark.slow
def test_rank_groups_on_a_real_fit_recovers_truth():
    """A sampled fit: the group with the largest true effect among well-separated ones ranks near the top."""
    df = hp.datasets.simulate("gaussian", n_groups=8, group_sizes=10, n_predictors=0, tau=2.0, sigma=0.5,
                              seed=8)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", hp.HierpoolSamplingWarning)
        dt = hp.fit(hp.random_intercepts(df, y="y", group="group"), draws=300, tune=300, chains=4,
                    random_seed=2, progressbar=False)
    tab = hp.rank_groups(dt, top_k=1)
    truth = pd.Series(df.attrs["truth"]["group_effect"])
    true_rank = truth.rank(ascending=False)
    # with sigma/sqrt(n) = 0.16 against tau = 2 the posterior ordering is (nearly) certain
    got = tab.set_index("group")["rank_median"]
    assert (got - true_rank.loc[got.index]).abs().max() <= 1
    assert tab["p_best"].iloc[0] > 0.5 and tab["group"].iloc[0] == truth.idxmax()


# ------------------------------------------------------------------------------------------------------
def test_bad_input(posterior):
    dt = make_fit(data=staircase(6), group_effect=posterior)
    with pytest.raises(ValueError, match="use 0.9, not 90"):
        hp.rank_groups(dt, ci_prob=90)
    for bad in (0, 7, -1):
        with pytest.raises(ValueError, match=rf"top_k={bad} is out of range.*1 to the number of groups \(6\)"):
            hp.rank_groups(dt, top_k=bad)
    with pytest.raises(TypeError, match="top_k must be an integer"):
        hp.rank_groups(dt, top_k=2.5)
    with pytest.raises(ValueError, match="by='rank' is not valid; valid choices: 'estimate', 'effect'"):
        hp.rank_groups(dt, by="rank")
    with pytest.raises(ValueError, match="by="):
        hp.triple_goal(dt, by="mean")
    with pytest.raises(TypeError, match="descending must be True or False"):
        hp.rank_groups(dt, descending="yes")
    with pytest.raises(ValueError, match="max_draws"):
        hp.rank_groups(dt, max_draws=0)
    no_group = dt.copy()
    no_group["posterior"] = xr.Dataset({"intercept": dt["posterior"]["intercept"],
                                        "a_county": dt["posterior"]["group_effect"].rename(group="county")})
    with pytest.raises(ValueError, match="no dim named 'group'"):
        hp.rank_groups(no_group)
    with pytest.raises(ValueError, match="no dim named 'group'"):
        hp.triple_goal(no_group)


@pytest.mark.parametrize("J", [1, 2, 7, 1000, 70_000])
def test_best_first_equals_the_stable_argsort_of_the_mean_ranks(J):
    """The order of the table: integer rank sums packed with the group index and sorted, the same as
    numpy's stable argsort of the means (ties in group order); non-integer sums take the argsort."""
    rng = np.random.default_rng(J)
    S = 248
    sums = rng.integers(S, S * J + 1, J).astype(float)
    sums[: J // 3] = sums[0]  # a third of the groups tied
    np.testing.assert_array_equal(rank_mod._best_first(sums), np.argsort(sums / S, kind="stable"))
    frac = sums + 0.5 * (np.arange(J) % 2)  # not integers (never a sum of ranks): the fallback
    np.testing.assert_array_equal(rank_mod._best_first(frac), np.argsort(frac, kind="stable"))
    huge = sums + 2.0**53  # integers too large to pack: the fallback
    np.testing.assert_array_equal(rank_mod._best_first(huge), np.argsort(huge, kind="stable"))


def _bare_fit(ge: np.ndarray) -> xr.DataTree:
    """The least DataTree the analysis functions read: group effects (chains, draws, groups) of a gaussian fit."""
    import json

    C, D, J = ge.shape
    groups = np.array([f"g{j}" for j in range(J)], dtype=object)
    post = xr.Dataset({"intercept": (("chain", "draw"), np.zeros((C, D))), "tau": (("chain", "draw"), np.ones((C, D))),
                       "sigma": (("chain", "draw"), np.ones((C, D))),
                       "group_effect": (("chain", "draw", "group"), ge)},
                      coords={"chain": np.arange(C), "draw": np.arange(D), "group": groups})
    const = xr.Dataset({"group_n": ("group", np.full(J, 3)), "group_raw_mean": ("group", np.zeros(J)),
                        "group_denominator": ("group", np.full(J, 3.0))}, coords={"group": groups})
    dt = xr.DataTree.from_dict({"posterior": post, "constant_data": const})
    dt.attrs = {"hierpool_variant": "random_intercepts", "hierpool_family": "gaussian", "hierpool_version": "t",
                "hierpool_settings": json.dumps({})}
    return dt


def test_rank_sd_keeps_its_precision_at_a_million_groups():
    """rank_sd of ranks near a million: the sum of squared ranks over 20 draws is about 2e13, whose rounding
    (about 2e-3) was the whole variance of a group ranked last in 19 draws and second-last in one
    (sd 0.2236; the formula sq / S - mean^2 gave 0.22386, 1.1e-3 off). Squares of deviations from each
    group's first rank keep it exact; the same through the fused pass (every draw kept) and the separate one
    (max_draws below the draws)."""
    J, S = 1_000_000, 20
    rng = np.random.default_rng(0)
    ge = rng.standard_normal((1, S, J)).astype(np.float32)
    ge[0, :, 0] = -100.0  # g0 last in every draw ...
    ge[0, 3, 1] = -200.0  # ... but draw 3, where g1 is below it
    want = np.full(S, J)
    want[3] = J - 1
    dt = _bare_fit(ge)
    for max_draws in (S, 5):
        tab = hp.rank_groups(dt, max_draws=max_draws).set_index("group")
        assert tab.loc["g0", "rank_sd"] == pytest.approx(want.std(ddof=1), rel=1e-12)
        assert tab.loc["g0", "rank_mean"] == pytest.approx(want.mean(), rel=1e-15)


def test_thinned_crossed_fit_analyses_a_further_factor():
    """A fit with two grouping factors whose first factor's effects were kept at fewer draws
    (posterior_group_effects, as finalize writes a thinned fit) and the further factor's at every draw:
    factor="site" reads the site effects at the kept draws (it raised "holds 'group_effect' both in posterior
    and in posterior_group_effects"), equal to a fit that is the posterior at those draws."""
    import json

    C, D, J, H = 2, 6, 4, 3
    rng = np.random.default_rng(0)
    kept = np.array([0, 2, 4])
    sites = ["s0", "s1", "s2"]
    post = xr.Dataset({"intercept": (("chain", "draw"), rng.normal(size=(C, D))),
                       "tau": (("chain", "draw"), np.ones((C, D))), "sigma": (("chain", "draw"), np.ones((C, D))),
                       "tau__site": (("chain", "draw"), np.ones((C, D))),
                       "group_effect__site": (("chain", "draw", "group__site"), rng.normal(size=(C, D, H)))},
                      coords={"chain": [0, 1], "draw": np.arange(D), "group__site": sites})
    ge = rng.normal(size=(C, kept.size, J)).astype(np.float32)
    node = xr.Dataset({"group_effect": (("chain", "draw", "group"), ge)},
                      coords={"chain": [0, 1], "draw": kept, "group": [f"g{j}" for j in range(J)]})
    const = xr.Dataset({"group_idx": ("obs_id", np.repeat(np.arange(J), 3)), "group_n": ("group", np.full(J, 3)),
                        "group_raw_mean": ("group", np.zeros(J)), "group_denominator": ("group", np.full(J, 3.0)),
                        "group_idx__site": ("obs_id", np.arange(12) % H), "group_n__site": ("group__site", np.full(H, 4)),
                        "group_raw_mean__site": ("group__site", np.zeros(H)),
                        "group_denominator__site": ("group__site", np.full(H, 4.0))},
                       coords={"group": [f"g{j}" for j in range(J)], "group__site": sites})
    attrs = {"hierpool_variant": "random_intercepts", "hierpool_family": "gaussian", "hierpool_version": "t",
             "hierpool_settings": json.dumps({"data": {"group": "group"}}),
             "hierpool_factors": json.dumps(["group", "site"]), "hierpool_thin": 2}
    dt = xr.DataTree.from_dict({"posterior": post, "constant_data": const, "posterior_group_effects": node})
    dt.attrs = attrs
    full = post.sel(draw=kept)
    full["group_effect"] = node["group_effect"]
    ref = xr.DataTree.from_dict({"posterior": full, "constant_data": const})
    ref.attrs = {**attrs, "hierpool_thin": 1}
    for f in (hp.rank_groups, hp.shrinkage):
        got, want = f(dt, factor="site"), f(ref, factor="site")
        assert list(got["group"]) and set(got["group"]) == set(sites)
        pd.testing.assert_frame_equal(got, want)
    pd.testing.assert_frame_equal(hp.rank_groups(dt), hp.rank_groups(ref))  # the first factor, as before


def test_a_fit_of_no_draws_is_refused_by_name():
    """A posterior of no draws (finalize accepts one from outside hp.fit) gave an IndexError in rank_groups, a
    ZeroDivisionError in shrinkage and all-NaN triple-goal values; now one clear error."""
    dt = _bare_fit(np.zeros((1, 0, 3), dtype=np.float32))
    for f in (hp.rank_groups, hp.shrinkage, hp.triple_goal):
        with pytest.raises(ValueError, match="has no draws"):
            f(dt)
