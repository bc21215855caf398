"""hp.predict: known groups by hand, new groups from Normal(0, tau), the ridge's prior, input checks."""

from __future__ import annotations

import warnings

import numpy as np
import pandas as pd
import pytest
import xarray as xr
from fake_fits import COLOR, NUMERIC_X, make_fit
from scipy.special import expit

import hierpool as hp


def _flat(da):
    return da.values.reshape(-1, *da.shape[2:])


# ------------------------------------------------------------------------------------------------------
# fast: synthetic fits
def test_known_groups_equal_hand_computation():
    rng = np.random.default_rng(1)
    data = pd.DataFrame({"group": list("aabbcc"), "x": rng.normal(size=6),
                         "color": ["blue", "green", "red", "blue", "red", "green"], "y": rng.normal(size=6)})
    C, D = 2, 300
    icpt = rng.normal(1.0, 0.2, size=(C, D))
    beta = rng.normal([0.5, -1.0, 2.0], 0.1, size=(C, D, 3))
    ge = rng.normal([-1.0, 0.0, 1.0], 0.3, size=(C, D, 3))
    dt = make_fit(data=data, terms=[NUMERIC_X, COLOR], chains=C, draws=D, intercept=icpt, beta=beta,
                  group_effect=ge)
    new = pd.DataFrame({"group": ["c", "a"], "x": [0.3, -2.0], "color": ["red", "blue"]}, index=[10, 20])
    out = hp.predict(dt, new, ci_prob=0.8, random_seed=1)
    # row 10: group c (position 2), x = 0.3, color red -> indicator color[red]
    mu10 = icpt + 0.3 * beta[..., 0] + beta[..., 2] + ge[..., 2]
    mu20 = icpt - 2.0 * beta[..., 0] + ge[..., 0]
    assert list(out.index) == [10, 20]
    assert list(out.columns) == ["group", "new_group", "estimate", "std_error", "conf_low", "conf_high",
                                 "pred_low", "pred_high"]
    assert not out["new_group"].any()
    for label, mu in ((10, mu10), (20, mu20)):
        assert out.loc[label, "estimate"] == pytest.approx(mu.mean(), abs=1e-12)
        assert out.loc[label, "std_error"] == pytest.approx(mu.std(ddof=1), abs=1e-12)
        lo, hi = np.quantile(mu.reshape(-1), [0.1, 0.9])
        assert out.loc[label, "conf_low"] == pytest.approx(lo, abs=1e-12)
        assert out.loc[label, "conf_high"] == pytest.approx(hi, abs=1e-12)
        # the predictive interval adds sigma = 1 of noise: wider than the interval of the mean
        assert out.loc[label, "pred_high"] - out.loc[label, "pred_low"] > hi - lo + 1.5


def test_new_group_predictive_sd_is_sqrt_tau2_plus_sigma2():
    dt = make_fit(tau=2.0, sigma=1.0, intercept=0.5, beta=[0.0], group_effect=[0.0, 0.0, 0.0, 3.0],
                  chains=4, draws=2000)
    new = pd.DataFrame({"group": ["d", "zz"], "x": [0.0, 0.0]})
    draws = hp.predict(dt, new, kind="draws", random_seed=3)
    flat = _flat(draws)  # 8000 draws
    # known group d: effect 3 fixed, noise sd 1; new group: sd sqrt(4 + 1)
    assert flat[:, 0].mean() == pytest.approx(3.5, abs=0.05)
    assert flat[:, 0].std() == pytest.approx(1.0, abs=0.03)
    assert flat[:, 1].mean() == pytest.approx(0.5, abs=0.08)
    assert flat[:, 1].std() == pytest.approx(np.sqrt(5.0), abs=0.06)
    out = hp.predict(dt, new, random_seed=3)
    assert out["new_group"].tolist() == [False, True]
    # the mean response of a new group varies with its effect only: sd tau = 2; a known group's is fixed
    assert out.loc[1, "std_error"] == pytest.approx(2.0, abs=0.06)
    assert out.loc[0, "std_error"] == pytest.approx(0.0, abs=1e-12)
    z = 1.6448536
    assert out.loc[1, "pred_high"] - out.loc[1, "pred_low"] == pytest.approx(2 * z * np.sqrt(5), rel=0.05)


def test_rows_of_one_new_group_share_its_effect():
    dt = make_fit(tau=2.0, sigma=1.0, chains=4, draws=1500)
    new = pd.DataFrame({"group": ["n1", "n1", "n2"], "x": [0.0, 0.0, 0.0]})
    flat = _flat(hp.predict(dt, new, kind="draws", random_seed=5))
    r = np.corrcoef(flat.T)
    assert r[0, 1] == pytest.approx(4.0 / 5.0, abs=0.03)  # tau^2 / (tau^2 + sigma^2)
    assert abs(r[0, 2]) < 0.05


def test_draws_dims_coords_and_reproducibility():
    dt = make_fit(chains=2, draws=50)
    new = pd.DataFrame({"group": ["a", "new"], "x": [0.1, 0.2]})
    d1 = hp.predict(dt, new, kind="draws", random_seed=7)
    d2 = hp.predict(dt, new, kind="draws", random_seed=7)
    assert isinstance(d1, xr.DataArray)
    assert d1.dims == ("chain", "draw", "obs_id") and d1.shape == (2, 50, 2)
    assert d1["group"].values.tolist() == ["a", "new"]
    assert d1["new_group"].values.tolist() == [False, True]
    xr.testing.assert_equal(d1, d2)
    m1 = hp.predict(dt, new, random_seed=7)
    m2 = hp.predict(dt, new, random_seed=7)
    pd.testing.assert_frame_equal(m1, m2)


def test_ridge_new_group_uses_prior_sd_and_warns():
    dt = make_fit(variant="ridge_fixed_effects", lam=0.25, tau=None, sigma=1.0, chains=4, draws=1500)
    new = pd.DataFrame({"group": ["a", "unseen"], "x": [0.0, 0.0]})
    with pytest.warns(UserWarning, match=r"no tau.*1/sqrt\(lam\) = 2"):
        out = hp.predict(dt, new, random_seed=2)
    assert out.loc[1, "std_error"] == pytest.approx(2.0, abs=0.07)  # 1/sqrt(0.25)
    with warnings.catch_warnings():  # known groups only: nothing to warn about
        warnings.simplefilter("error")
        hp.predict(dt, new.iloc[:1], random_seed=2)
        hp.predict(dt, new, include_group_effect=False)


def test_include_group_effect_false_uses_zero_effect():
    dt = make_fit(intercept=1.0, beta=[2.0], group_effect=[5.0, 5.0, 5.0, 5.0], chains=1, draws=10)
    new = pd.DataFrame({"group": ["a", "new"], "x": [1.0, 1.0]})
    out = hp.predict(dt, new, include_group_effect=False)
    assert out["estimate"].tolist() == pytest.approx([3.0, 3.0], abs=1e-12)
    assert hp.predict(dt, new.iloc[:1])["estimate"].iloc[0] == pytest.approx(8.0, abs=1e-12)


def test_bernoulli_estimate_is_probability():
    rng = np.random.default_rng(4)
    ge = rng.normal([0.5, -0.5, 0.0, 1.0], 0.4, size=(2, 400, 4))
    dt = make_fit("bernoulli", intercept=-1.0, beta=[0.7], group_effect=ge, chains=2, draws=400)
    new = pd.DataFrame({"group": ["b"], "x": [1.5]})
    out = hp.predict(dt, new, random_seed=1)
    p = expit(-1.0 + 0.7 * 1.5 + ge[..., 1])
    assert out.loc[0, "estimate"] == pytest.approx(p.mean(), abs=1e-12)
    assert out.loc[0, "pred_low"] in (0.0, 1.0) and out.loc[0, "pred_high"] in (0.0, 1.0)


def test_binomial_needs_trials_and_scales_by_them():
    data = pd.DataFrame({"group": list("aabb"), "x": [0.0, 1.0, 2.0, 3.0], "y": [1.0, 2, 3, 4],
                         "n": [5.0, 5, 6, 6]})
    dt = make_fit("binomial", data=data, trials="n", intercept=0.2, beta=[0.0], group_effect=[0.3, -0.3],
                  chains=1, draws=20)
    new = pd.DataFrame({"group": ["a", "b"], "x": [0.0, 0.0], "n": [10, 20]})
    out = hp.predict(dt, new, random_seed=1)
    assert out["estimate"].tolist() == pytest.approx([10 * expit(0.5), 20 * expit(-0.1)], abs=1e-12)
    assert (out["pred_high"] <= [10, 20]).all()
    with pytest.raises(ValueError, match=r"lacks column 'n'.*trials"):
        hp.predict(dt, new.drop(columns="n"))
    with pytest.raises(ValueError, match=r"'n'.*integers >= 1"):
        hp.predict(dt, new.assign(n=[0, 3]))


def test_poisson_estimate_is_rate_times_exposure():
    data = pd.DataFrame({"group": list("aabb"), "x": [0.0, 1.0, 2.0, 3.0], "y": [1.0, 2, 3, 4],
                         "t": [1.0, 2, 3, 4]})
    dt = make_fit("poisson", data=data, exposure="t", intercept=np.log(2.0), beta=[0.0],
                  group_effect=[0.0, np.log(3.0)], chains=1, draws=20)
    new = pd.DataFrame({"group": ["a", "b"], "x": [0.0, 0.0], "t": [0.5, 10.0]})
    out = hp.predict(dt, new)
    assert out["estimate"].tolist() == pytest.approx([1.0, 60.0], rel=1e-12)
    with pytest.raises(ValueError, match=r"'t'.*must be positive"):
        hp.predict(dt, new.assign(t=[0.0, 1.0]))


def test_input_errors_name_the_column():
    data = pd.DataFrame({"group": list("aabbcc"), "x": np.arange(6.0),
                         "color": ["blue", "green", "red", "blue", "red", "green"], "y": np.arange(6.0)})
    dt = make_fit(data=data, terms=[NUMERIC_X, COLOR], chains=1, draws=10)
    good = pd.DataFrame({"group": ["a"], "x": [1.0], "color": ["red"]})
    hp.predict(dt, good)
    with pytest.raises(ValueError, match=r"lacks column 'x'.*\['group', 'x', 'color'\]"):
        hp.predict(dt, good.drop(columns="x"))
    with pytest.raises(ValueError, match=r"lacks column 'group'"):
        hp.predict(dt, good.drop(columns="group"))
    with pytest.raises(ValueError, match=r"column 'x' has 1 missing"):
        hp.predict(dt, good.assign(x=[np.nan]))
    with pytest.raises(ValueError, match=r"'x'.*NaN or infinite"):
        hp.predict(dt, good.assign(x=[np.inf]))
    with pytest.raises(ValueError, match=r"column 'color' has levels \['purple'\].*known levels"):
        hp.predict(dt, good.assign(color=["purple"]))
    with pytest.raises(ValueError, match=r"group column 'group' has 1 missing"):
        hp.predict(dt, good.assign(group=[None]))
    with pytest.raises(TypeError, match="new_df must be a pandas DataFrame"):
        hp.predict(dt, {"group": ["a"], "x": [1.0]})
    with pytest.raises(ValueError, match=r"kind='median' is not valid.*'mean', 'draws'"):
        hp.predict(dt, good, kind="median")
    with pytest.raises(ValueError, match=r"use 0.9, not 90"):
        hp.predict(dt, good, ci_prob=90)
    with pytest.raises(ValueError, match=r"got 1.5\.$"):  # no percentage hint below 50 ('use 0.015' misleads)
        hp.predict(dt, good, ci_prob=1.5)
    for seed in ("a", 1.5, -1):
        with pytest.raises(TypeError, match=r"random_seed must be None, a non-negative integer"):
            hp.predict(dt, good, random_seed=seed)
    with pytest.warns(UserWarning, match="groups the fit has not seen") as rec:  # pointed at this line
        hp.predict(dt, good.assign(group=["never seen"] * len(good)))
    assert rec[0].filename == __file__
    with pytest.raises(ValueError, match="no rows"):
        hp.predict(dt, good.iloc[:0])
    with pytest.raises(TypeError, match="DataTree"):
        hp.predict("fit.nc", good)


# ------------------------------------------------------------------------------------------------------
# on real fits (conftest's three variants of one gaussian data set)
@pytest.mark.slow
def test_predict_real_fit_known_group_by_hand(gaussian_fits, sim_gaussian):
    dt = gaussian_fits["random_intercepts"]
    post = dt["posterior"].to_dataset()
    rows = sim_gaussian.iloc[[0, 7, 30]][["group", "x1", "x2"]]
    out = hp.predict(dt, rows, random_seed=1)
    for (_, row), est in zip(rows.iterrows(), out["estimate"], strict=True):
        hand = (post["intercept"].mean() + row["x1"] * post["beta"].sel(predictor="x1").mean()
                + row["x2"] * post["beta"].sel(predictor="x2").mean()
                + post["group_effect"].sel(group=row["group"]).mean())
        assert est == pytest.approx(float(hand), abs=1e-10)


@pytest.mark.slow
def test_predict_real_fit_new_group_sd(gaussian_fits):
    dt = gaussian_fits["random_intercepts"]
    post = dt["posterior"].to_dataset()
    new = pd.DataFrame({"group": ["brand new", "g0"], "x1": [0.5, 0.5], "x2": [-1.0, -1.0]})
    flat = _flat(hp.predict(dt, new, kind="draws", random_seed=11))
    fixed = post["intercept"] + 0.5 * post["beta"].sel(predictor="x1") - post["beta"].sel(predictor="x2")
    expected = np.sqrt(float((post["tau"] ** 2).mean() + (post["sigma"] ** 2).mean() + fixed.var()))
    # 1200 draws: the SD of the draws is within about 3% of the expected value
    assert flat[:, 0].std() == pytest.approx(expected, rel=0.07)
    assert flat[:, 0].std() > flat[:, 1].std() * 1.1
    with pytest.warns(UserWarning, match="no tau"):
        hp.predict(gaussian_fits["ridge_fixed_effects"], new, random_seed=1)
