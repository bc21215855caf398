"""hp.ppc: Bayesian p-values, statistics by hand, the stored replicates, the plot, and a misspecified fit."""

from __future__ import annotations

import warnings

import numpy as np
import pandas as pd
import pytest
import xarray as xr
from fake_fits import make_fit
from scipy.stats import norm

import hierpool as hp
from hierpool.analysis.ppc import PPCResult, p_value, ppc_plot


def _with_pp(dt, y_rep):
    out = dt.copy()
    C, D = dt["posterior"].sizes["chain"], dt["posterior"].sizes["draw"]
    n = dt["observed_data"]["y"].size
    out["posterior_predictive"] = xr.DataTree(xr.Dataset(
        {"y": (("chain", "draw", "obs_id"), np.broadcast_to(y_rep, (C, D, n)).copy())},
        coords={"chain": np.arange(C), "draw": np.arange(D), "obs_id": np.arange(n)}))
    return out


def test_p_value_counts_ties_half():
    assert p_value([1, 1, 2, 3], 1) == pytest.approx(0.5 + 0.5 * 0.5)
    assert p_value([1, 2, 3, 4], 0) == 1.0
    assert p_value([1, 2, 3, 4], 9) == 0.0
    assert p_value([2, 2, 2, 2], 2) == 0.5


def test_statistics_of_observed_data_by_hand():
    data = pd.DataFrame({"group": list("aaabbc"), "x": np.arange(6.0), "y": [1.0, 2, 6, -1, 3, 10]})
    dt = make_fit(data=data, chains=2, draws=100)
    res = hp.ppc(dt, random_seed=1, plot=False)
    obs = res.table.set_index("statistic")["observed"]
    y = data["y"].to_numpy()
    means = np.array([3.0, 1.0, 10.0])
    assert obs["mean"] == pytest.approx(y.mean())
    assert obs["sd"] == pytest.approx(y.std(ddof=1))
    assert obs["min"] == -1.0 and obs["max"] == 10.0
    assert obs["max_group_mean"] == 10.0 and obs["min_group_mean"] == 1.0
    assert obs["sd_group_mean"] == pytest.approx(means.std(ddof=1))
    assert res.table["statistic"].tolist() == ["mean", "sd", "min", "max", "max_group_mean", "min_group_mean",
                                               "sd_group_mean"]
    assert ((res.table["p_value"] >= 0) & (res.table["p_value"] <= 1)).all()


def test_binomial_group_means_are_rates():
    data = pd.DataFrame({"group": list("aab"), "x": [0.0, 1.0, 2.0], "y": [1.0, 3.0, 2.0], "n": [4.0, 4.0, 10.0]})
    dt = make_fit("binomial", data=data, trials="n", chains=1, draws=50)
    res = hp.ppc(dt, stats=["max_group_mean", "min_group_mean", "prop_zero"], random_seed=1, plot=False)
    obs = res.table.set_index("statistic")["observed"]
    assert obs["max_group_mean"] == pytest.approx(0.5)  # (1 + 3) / 8
    assert obs["min_group_mean"] == pytest.approx(0.2)  # 2 / 10
    assert obs["prop_zero"] == 0.0
    assert (res.y_rep.values <= np.array([4, 4, 10])).all()


def test_existing_posterior_predictive_is_used_and_ties_give_half():
    dt = make_fit(chains=2, draws=30)
    y = dt["observed_data"]["y"].values
    res = hp.ppc(_with_pp(dt, y), plot=False)  # every replicate equals the data
    assert res.table["p_value"].tolist() == [0.5] * len(res.table)
    assert not res.table["flag"].any()
    res = hp.ppc(_with_pp(dt, y + 100.0), stats=["mean", "max"], plot=False)
    assert res.table["p_value"].tolist() == [1.0, 1.0]
    assert res.table["flag"].all() and res.flagged == ["mean", "max"]


def test_replicates_follow_the_model_and_are_stored_in_a_copy():
    # intercept 5, no group effects, sigma 2: y_rep ~ Normal(5, 2) row by row
    dt = make_fit(intercept=5.0, beta=[0.0], group_effect=[0, 0, 0, 0], sigma=2.0, chains=4, draws=1000)
    res = hp.ppc(dt, n_draws=400, random_seed=3, plot=False)
    assert "posterior_predictive" not in dt.children
    assert "posterior_predictive" in res.dt.children
    assert res.y_rep.dims == ("chain", "draw", "obs_id")
    assert res.y_rep.sizes["chain"] * res.y_rep.sizes["draw"] == 400
    flat = res.y_rep.values.reshape(-1)  # 4,800 independent Normal(5, 2) values
    # tolerances: 4.5 standard errors of iid draws, sd / sqrt(n) for the mean and sd / sqrt(2 n) for the
    # sd (0.13 and 0.092 here); a sigma 5% off (variance 10%) puts the sd 0.098 away
    n = flat.size
    assert flat.mean() == pytest.approx(5.0, abs=4.5 * 2.0 / np.sqrt(n))
    assert flat.std() == pytest.approx(2.0, abs=4.5 * 2.0 / np.sqrt(2 * n))
    tab = res.table.set_index("statistic")
    # the replicated mean of 12 rows is Normal(5, 2 / sqrt(12)) per data set: its average over the 400
    # replicates is within 4.5 sd / sqrt(400) of 5, and its 2.5% and 95% quantiles within 4.5 standard
    # errors of a sample quantile, sqrt(q (1 - q) / 400) / density at the quantile, of the exact ones
    m = 12
    sd_mean = 2.0 / np.sqrt(m)
    assert tab.loc["mean", "rep_mean"] == pytest.approx(5.0, abs=4.5 * sd_mean / np.sqrt(400))
    for col, q in (("rep_low", 0.025), ("rep_high", 0.975)):
        z = norm.ppf(q)
        se_q = np.sqrt(q * (1 - q) / 400) / norm.pdf(z) * sd_mean
        assert tab.loc["mean", col] == pytest.approx(5.0 + z * sd_mean, abs=4.5 * se_q)
    # reproducible
    again = hp.ppc(dt, n_draws=400, random_seed=3, plot=False)
    pd.testing.assert_frame_equal(res.table, again.table)


def test_bernoulli_defaults_and_proportions():
    rng = np.random.default_rng(0)
    data = pd.DataFrame({"group": np.repeat(list("abcd"), 5), "x": rng.normal(size=20),
                         "y": rng.integers(0, 2, 20).astype(float)})
    dt = make_fit("bernoulli", data=data, chains=2, draws=200)
    res = hp.ppc(dt, random_seed=1, plot=False)
    tab = res.table.set_index("statistic")
    assert "prop_one" in tab.index and "sd" not in tab.index
    assert tab.loc["prop_zero", "observed"] + tab.loc["prop_one", "observed"] == pytest.approx(1.0)
    assert tab.loc["prop_one", "observed"] == pytest.approx(data["y"].mean())
    # zero intercept, zero effects: each replicated row is 1 with probability 0.5, so the proportion of ones
    # averaged over the replicated data sets (n_rep x 20 independent rows) is within 4.5 standard errors,
    # sqrt(0.25 / (20 n_rep)), of 0.5
    n_rep = res.t_rep.sizes["chain"] * res.t_rep.sizes["draw"]
    assert tab.loc["prop_one", "rep_mean"] == pytest.approx(0.5, abs=4.5 * np.sqrt(0.25 / (20 * n_rep)))


def test_plot_result_and_html():
    import matplotlib
    import matplotlib.pyplot as plt

    dt = make_fit(chains=2, draws=100)
    res = hp.ppc(dt, random_seed=1)
    assert isinstance(res, PPCResult)
    assert isinstance(res.figure, matplotlib.figure.Figure)
    assert len(res.figure.axes) == 5
    titles = [ax.get_title() for ax in res.figure.axes[1:]]
    assert titles[0].startswith("sd: p = ")
    assert "<table" in res._repr_html_() and "p_value" in res._repr_html_()
    assert hp.ppc(dt, plot=False).figure is None
    fig = ppc_plot(res, stats=["mean", "max"])
    assert len(fig.axes) == 3
    plt.close("all")


def test_custom_statistic_function():
    dt = make_fit(chains=2, draws=50)
    y = dt["observed_data"]["y"].values
    res = hp.ppc(dt, stats={"q90": lambda a: np.quantile(a, 0.9, axis=-1)}, plot=False, random_seed=1)
    assert res.table["observed"].iloc[0] == pytest.approx(np.quantile(y, 0.9))


def test_bad_arguments():
    dt = make_fit(chains=1, draws=10)
    with pytest.raises(ValueError, match=r"'skew' is not a known statistic; valid names: mean, sd"):
        hp.ppc(dt, stats=["skew"], plot=False)
    with pytest.raises(ValueError, match="n_draws must be an integer >= 1; got 0"):
        hp.ppc(dt, n_draws=0, plot=False)
    with pytest.raises(ValueError, match="use 0.95, not 95"):
        hp.ppc(dt, ci_prob=95, plot=False)
    with pytest.raises(TypeError, match="plot must be True or False"):
        hp.ppc(dt, plot="yes")
    with pytest.raises(TypeError, match="DataTree"):
        hp.ppc(None)


# ------------------------------------------------------------------------------------------------------
def _grouped(seed: int, heavy: bool) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    J = 30
    sizes = rng.integers(3, 7, J)
    g = np.repeat(np.arange(J), sizes)
    u = rng.normal(0.0, 1.0, J)
    noise = rng.standard_t(2, g.size) if heavy else rng.normal(0.0, 1.0, g.size)
    return pd.DataFrame({"y": u[g] + noise, "group": [f"g{j}" for j in g]})


@pytest.mark.slow
def test_misspecified_gaussian_is_flagged_and_well_specified_is_not():
    stats = ["sd", "min", "max", "kurtosis"]
    res = {}
    for heavy in (True, False):
        df = _grouped(0, heavy)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", hp.HierpoolSamplingWarning)
            dt = hp.fit(hp.random_intercepts(df, y="y", group="group"), draws=250, tune=250, chains=2,
                        random_seed=0, progressbar=False, log_likelihood=False)
        res[heavy] = hp.ppc(dt, stats=stats, random_seed=1, plot=False).table.set_index("statistic")["p_value"]
    heavy, normal = res[True], res[False]
    assert ((heavy >= 0) & (heavy <= 1)).all() and ((normal >= 0) & (normal <= 1)).all()
    # Student-t(2) noise: the extremes and the kurtosis of the data are beyond what a gaussian replicates
    assert heavy["kurtosis"] < 0.025
    assert heavy["max"] < 0.025 or heavy["min"] > 0.975
    # gaussian data: a posterior predictive p-value of data from the model is at most as spread as a
    # uniform one, and P(p <= a) <= 2a (Meng 1994, Ann. Statist. 22, thm. 1); both tails of 4 statistics
    # at a = 0.002 then flag a correct fit with probability at most 4 x 2 x 2a = 3.2%, whatever the seed
    a = 0.002
    assert normal.between(a, 1 - a).all(), normal.to_dict()


def test_fit_without_rows_is_refused_with_a_reason():
    dt = make_fit(chains=1, draws=10)
    rowless = xr.DataTree.from_dict({"posterior": dt["posterior"].to_dataset(),
                                     "constant_data": dt["constant_data"].to_dataset()})
    rowless.attrs = dict(dt.attrs)
    with pytest.raises(ValueError, match="keeps no rows"):
        hp.ppc(rowless, plot=False)


def test_result_dt_works_with_arviz_plot_ppc_dist():
    import arviz as az
    import matplotlib.pyplot as plt

    dt = make_fit(chains=2, draws=40)
    res = hp.ppc(dt, random_seed=1, plot=False)
    pc = az.plot_ppc_dist(res.dt, num_samples=20)
    # the plot reads posterior_predictive/y against observed_data/y: 20 replicated and one observed curve
    assert list(pc.viz["plot"].data_vars) == ["y"]
    assert pc.viz["predictive_dist"].sizes["sample"] == 20
    assert "observed_dist" in pc.viz.children
    plt.close("all")


def test_chunked_replicates_bounded_storage_and_statistics_of_every_draw():
    """Replicates are drawn in chunks of draws; the statistics of every draw equal those of the stored
    replicates; with a small max_stored only the first draws of each chain are kept, the same draws."""
    from hierpool.analysis.fitview import as_fit
    from hierpool.analysis.ppc import _Context, _replicate_and_summarize, _resolve_stats

    dt = make_fit(intercept=1.0, beta=[0.5], group_effect=[0.3, -0.2, 0.0, 0.1], sigma=1.5, chains=4, draws=200)
    fv = as_fit(dt)
    funcs = _resolve_stats(None, "gaussian")
    ctx = _Context(fv)
    n = fv.const.sizes["obs_id"]
    y_all, t_all = _replicate_and_summarize(fv, funcs, ctx, 400, np.random.default_rng(4), max_stored=1e9,
                                            chunk_values=4 * 7 * n)  # chunks of 7 draws per chain
    assert y_all.shape == (4, 100, n)
    flat = y_all.values.reshape(-1, n)
    for name, f in funcs.items():
        np.testing.assert_allclose(t_all[name].values.reshape(-1), f(flat, ctx), rtol=1e-12)
    y_few, t_few = _replicate_and_summarize(fv, funcs, ctx, 400, np.random.default_rng(4), max_stored=4 * 10 * n,
                                            chunk_values=4 * 7 * n)
    assert y_few.shape == (4, 10, n)
    np.testing.assert_array_equal(y_few.values, y_all.values[:, :10])
    for name in funcs:
        np.testing.assert_array_equal(t_few[name].values, t_all[name].values)
    res = hp.ppc(dt, n_draws=400, random_seed=3, plot=False, max_stored=4 * 5 * n)
    assert res.y_rep.sizes["draw"] == 5 and res.t_rep.sizes["draw"] == 100
    assert "400 replicated data sets" in repr(res)
    with pytest.raises(ValueError, match="max_stored"):
        hp.ppc(dt, plot=False, max_stored=0)
