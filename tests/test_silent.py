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
    assert dir(hp.plots) == sorted(["caterpillar", "funnel_plot", "ppc_plot", "profile_caterpillar", "ridge_path_plot", "shrinkage_plot"])


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
