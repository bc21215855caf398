"""Issue 16: inputs that used to give a wrong answer, or an unclear message, without a word. Each test
failed on the code before its fix."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import xarray as xr

import hierpool as hp
from hierpool.core import names as N


@pytest.fixture(scope="module")
def episodes():
    rng = np.random.default_rng(16)
    n = 400
    return pd.DataFrame({
        "y": rng.normal(size=n),
        "member": rng.integers(0, 60, n),
        "age": [f"{a:.1f}" for a in rng.normal(60, 12, n)],
        "admit_date": pd.date_range("2023-01-01", periods=n, freq="D").astype(str),
        "ward": rng.choice(["north", "south", "east"], n),
        "los": rng.integers(1, 15, n).astype(float),
    })


# 1. numbers or dates stored as text ----------------------------------------------------------------------
def test_text_numbers_are_refused_not_turned_into_hundreds_of_indicators(episodes):
    df = episodes.copy()
    df.loc[7, "age"] = "unknown"
    with pytest.raises(TypeError, match=r"column 'age' holds text, but \d+ of its \d+ distinct values are numbers"
                                        r".*'unknown'.*pd.to_numeric.*astype\('category'\)"):
        hp.prepare(df, y="y", group="member", predictors=["age", "los"])


def test_text_dates_are_refused(episodes):
    with pytest.raises(TypeError, match=r"column 'admit_date' holds text, but 400 of its 400 distinct values are "
                                        r"dates.*pd.to_datetime"):
        hp.prepare(episodes, y="y", group="member", predictors=["admit_date"])


def test_text_levels_and_category_numbers_still_work(episodes):
    gd = hp.prepare(episodes, y="y", group="member", predictors=["ward", "los"])
    assert gd.predictors == ["ward[north]", "ward[south]", "los"]
    codes = episodes.assign(code=np.where(np.arange(400) % 2, "1", "2").astype(object))
    with pytest.raises(TypeError, match="are numbers"):  # digits as text: refused unless declared as levels
        hp.prepare(codes, y="y", group="member", predictors=["code"])
    codes["code"] = codes["code"].astype("category")
    assert hp.prepare(codes, y="y", group="member", predictors=["code"]).predictors == ["code[2]"]


# storage ---------------------------------------------------------------------------------------------------
def _fake_fit():
    dt = xr.DataTree()
    dt.attrs[N.ATTR_VARIANT] = "random_intercepts"
    return dt


def test_save_refuses_a_misleading_suffix_and_a_missing_folder(tmp_path):
    with pytest.raises(ValueError, match=r"path=.*fit.csv.*valid suffixes: .nc, .nc4, .h5, .hdf5, .zarr"):
        hp.save(_fake_fit(), tmp_path / "fit.csv")
    assert not (tmp_path / "fit.csv").exists()
    with pytest.raises(FileNotFoundError, match="the folder .*missing.* does not exist"):
        hp.save(_fake_fit(), tmp_path / "missing" / "fit.nc")


def test_load_of_a_file_that_is_not_a_fit_says_so(tmp_path):
    p = tmp_path / "fit.nc"
    p.write_text("not netCDF")
    with pytest.raises(ValueError, match=r"could not be read as netCDF-4 \(HDF5\).*hp.load reads files written by "
                                         r"hp.save"):
        hp.load(p)
    with pytest.raises(ValueError, match="valid suffixes"):
        hp.load(tmp_path / "fit.csv")


# unclear messages -------------------------------------------------------------------------------------------
def test_fit_of_data_names_what_to_do(episodes):
    gd = hp.prepare(episodes, y="y", group="member")
    with pytest.raises(TypeError, match=r"got GroupedData\. Build a model from it first, e\.g\. "
                                        r"hp\.fit\(hp\.random_intercepts\(gd\)\)"):
        hp.fit(gd)
    with pytest.raises(TypeError, match="got DataFrame. Build a model from it first"):
        hp.fit(episodes)


def test_plots_namespace_lists_only_plots():
    assert dir(hp.plots) == sorted(["caterpillar", "eb_vs_full_bayes", "funnel_plot", "ppc_plot", "profile_caterpillar",
                                    "ridge_path_plot", "shrinkage_plot"])


# start-up ---------------------------------------------------------------------------------------------------
def test_import_is_light_and_every_public_name_resolves():
    """`import hierpool` loads neither PyMC nor pandas (PEP 562 lazy names); every name in __all__
    resolves. Timing is measured in the README (development section), not asserted here."""
    import subprocess
    import sys

    code = ("import sys, hierpool as hp; heavy = [m for m in ('pymc', 'pandas', 'arviz', 'numba', 'pytensor') "
            "if m in sys.modules]; print(heavy)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"
    import hierpool

    assert sorted(hierpool.__all__) == sorted([*hierpool._LAZY, "__version__", "get_options", "set_options"])
    for name in hierpool.__all__:
        assert getattr(hierpool, name) is not None, name


# fits without MCMC: prior draws of a collapsed gaussian model, completed by hp.from_trace -----------------
def _prior_fit(df, **kw):
    import pymc as pm

    model = hp.random_intercepts(df, **kw)
    keep = [v for v in (N.INTERCEPT, N.BETA, N.TAU, N.SIGMA) if v in model.named_vars]
    prior = pm.sample_prior_predictive(draws=60, model=model, random_seed=1)["prior"].to_dataset()
    return hp.from_trace(xr.DataTree.from_dict({"posterior": prior[keep]}), model, random_seed=1)


@pytest.fixture(scope="module")
def int_id_fit(episodes):
    return _prior_fit(episodes, y="y", group="member", predictors=["los"])


# 2. predict with ids of another type --------------------------------------------------------------------------
def test_predict_refuses_ids_of_another_type_and_warns_when_most_rows_are_new(int_id_fit, episodes):
    new = episodes.head(20).copy()
    assert not hp.predict(int_id_fit, new)["new_group"].any()
    new["member"] = new["member"].astype(str)  # str ids against the fit's int ids: nothing would match
    with pytest.raises(TypeError, match=r"new_df: group column 'member' holds str labels .* the fit's groups are "
                                        r"number .*astype\(int"):
        hp.predict(int_id_fit, new)
    new["member"] = episodes.head(20)["member"].to_numpy() + 1000  # all unseen
    with pytest.warns(UserWarning, match=r"100% of the rows \(20 of 20\) belong to groups the fit has not seen"):
        out = hp.predict(int_id_fit, new)
    assert out["new_group"].all()


# 3. a 0/1 outcome without family --------------------------------------------------------------------------
def test_binary_outcome_without_family_is_refused(episodes):
    df = episodes.assign(readmitted=(episodes["y"] > 0).astype(int))
    with pytest.raises(ValueError, match="y='readmitted' holds only 0 and 1 and no family was given: pass "
                                         "family='bernoulli'"):
        hp.prepare(df, y="readmitted", group="member")
    with pytest.raises(ValueError, match="no family was given"):
        hp.random_intercepts(df, y="readmitted", group="member")
    assert hp.prepare(df, y="readmitted", group="member", family="gaussian").family == "gaussian"  # on purpose
    assert hp.prepare(df, y="readmitted", group="member", family="bernoulli").family == "bernoulli"


# 4. the CLI's top_k ------------------------------------------------------------------------------------------
def test_cli_refuses_top_k_beyond_the_number_of_groups():
    from hierpool.workflow import run
    from hierpool.workflow.spec import SpecError, parse_spec

    spec = parse_spec({"data": {"simulate": "grouped", "parameters": {"n_groups": 12, "seed": 1},
                                "response": "y", "group": "group", "family": "gaussian"},
                       "variants": {"ri": {"kind": "random_intercepts"}}, "output": {"top_k": 50}})
    with pytest.raises(SpecError, match=r"\[output\] top_k = 50 exceeds the number of groups in the data \(12\)"):
        run.check(spec)


# 5. target_accept out of range, and R-hat of chains that never met --------------------------------------
def test_target_accept_is_checked_before_sampling(int_id_fit, episodes):
    model = hp.random_intercepts(episodes, y="y", group="member")
    with pytest.raises(ValueError, match=r"target_accept must be in the open interval \(0, 1\); got 1.5"):
        hp.fit(model, target_accept=1.5)
    from hierpool.inference.diagnostics import _fmt_rhat

    assert _fmt_rhat(1.0123) == "1.012" and _fmt_rhat(1e308).startswith("> 100")


# 6. more folds than groups -------------------------------------------------------------------------------------
def test_cross_validate_refuses_more_folds_than_groups_before_fitting():
    df = hp.datasets.simulate_gaussian(n_groups=25, seed=2)
    with pytest.raises(ValueError, match=r"folds=100 exceeds the number of groups \(25\) for by='group'"):
        hp.cross_validate(hp.random_intercepts, df, folds=100, by="group", y="y", group="group")
    with pytest.raises(TypeError, match="pass the DataFrame you gave hp.prepare"):
        hp.cross_validate(hp.random_intercepts, hp.prepare(df, y="y", group="group"), y="y", group="group")


# 7. pooling outside [0, 1] ------------------------------------------------------------------------------------
def test_pooling_is_a_fraction_or_nan(int_id_fit):
    tab = hp.shrinkage(int_id_fit)
    # the ratio as defined, recomputed from the table: (raw - estimate) / (raw - overall)
    with np.errstate(divide="ignore", invalid="ignore"):
        ratio = ((tab["raw_mean"] - tab["estimate"]) / (tab["raw_mean"] - tab.attrs["overall"])).to_numpy()
    S = int_id_fit["posterior"].sizes["chain"] * int_id_fit["posterior"].sizes["draw"]
    with np.errstate(divide="ignore", invalid="ignore"):  # its Monte Carlo slack: 3 MC errors, at most 0.05
        slack = np.minimum(3 * tab["std_error"].to_numpy() / np.sqrt(S)
                           / np.abs(tab["raw_mean"] - tab.attrs["overall"]).to_numpy(), 0.05)
    inside = (ratio >= -slack) & (ratio <= 1 + slack)
    # kept exactly where it is a fraction up to its MC error, NaN (and counted) exactly where it is not
    np.testing.assert_allclose(tab["pooling"].to_numpy()[inside], ratio[inside], rtol=1e-12)
    np.testing.assert_array_equal(tab["pooling"].isna().to_numpy(), ~inside)
    assert tab.attrs["pooling_undefined"] == int((~inside).sum())
    assert 0 < tab.attrs["pooling_undefined"] < len(tab)  # this prior-draw fit has both kinds of rows


# 8. group ids a fit cannot store ------------------------------------------------------------------------------
def test_group_ids_beyond_64_bits_and_objects_are_refused_before_fitting(episodes):
    df = episodes.copy()
    df["member"] = pd.Series([2**70 + int(m) for m in df["member"]], dtype=object)
    with pytest.raises(ValueError, match=r"group='member' has integer labels beyond 64 bits.*astype\(str\)"):
        hp.prepare(df, y="y", group="member")
    df["member"] = pd.Series([(int(m), 1) for m in episodes["member"]], dtype=object)
    with pytest.raises(TypeError, match="holds labels of type tuple"):
        hp.prepare(df, y="y", group="member")


# 9. ppc statistics that can vary --------------------------------------------------------------------------------
def test_ppc_of_one_row_bernoulli_groups_uses_statistics_that_vary():
    from fake_fits import frame, make_fit

    rng = np.random.default_rng(4)
    gidx = np.concatenate([np.arange(40), np.repeat(np.arange(40, 50), 6)])  # 40 one-row members
    y = rng.binomial(1, 0.3, gidx.size).astype(float)
    dt = make_fit("bernoulli", data=frame(gidx, y), intercept=-0.8, group_effect=np.zeros(50), jitter=0.3)
    res = hp.ppc(dt, n_draws=200, plot=False, random_seed=1)
    stats = set(res.table["statistic"])
    assert {"groups_all_zero", "groups_all_one"} <= stats
    assert not {"max_group_mean", "min_group_mean"} & stats
    assert res.t_rep["groups_all_one"].std() > 0  # it varies across replicates


# regularized_hierarchical without predictors ----------------------------------------------------------------
def test_regularized_without_predictors_says_what_it_is(episodes):
    with pytest.warns(UserWarning, match="without predictors: there is no coefficient to penalize"):
        hp.regularized_hierarchical(episodes, y="y", group="member")
