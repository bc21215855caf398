"""Refusals of bad input in hierpool.data (review of issue t1-t13): every one a clear ValueError/TypeError
naming the argument and the value, the same from the pandas path and the Dask reduction. No sampling here."""

from __future__ import annotations

import re

import numpy as np
import pandas as pd
import pytest

import hierpool as hp
from hierpool.data.formula import parse_formula


def _frame(n: int = 40) -> pd.DataFrame:
    rng = np.random.default_rng(0)
    return pd.DataFrame({"y": rng.normal(size=n), "g": np.repeat(list("abcd"), n // 4), "x": rng.normal(size=n),
                         "c": np.tile(["u", "v"], n // 2), "k": rng.poisson(2, size=n), "n": 5,
                         "e": rng.uniform(0.5, 2, size=n)})


def _error(call) -> tuple[type, str]:
    with pytest.raises((TypeError, ValueError)) as info:
        call()
    return type(info.value), str(info.value)


# ------------------------------------------------------------------------------------------------------
# 1. slopes= with several grouping factors
@pytest.mark.parametrize("group", [["g", "c"], "g/c"])
@pytest.mark.parametrize("slopes", [["x"], "x", ["nonexistent"]])
def test_slopes_with_several_grouping_factors_refused(group, slopes):
    want = re.escape(f"slopes={[slopes] if isinstance(slopes, str) else slopes!r} with group={group!r}: random "
                     "slopes take one grouping factor")
    with pytest.raises(ValueError, match=want + r".*\(1 \+ x \| g\) \+ \(1 \| c\), are not supported yet"):
        hp.prepare(_frame(), y="y", group=group, predictors=["x"], slopes=slopes)


def test_slopes_wrong_type_refused_with_several_grouping_factors():
    with pytest.raises(TypeError, match=r"slopes must be a list of column names \(or one name\); got 5"):
        hp.prepare(_frame(), y="y", group=["g", "c"], slopes=5)


def test_no_slopes_with_several_grouping_factors_still_prepares():
    for slopes in (None, (), []):
        gd = hp.prepare(_frame(), y="y", group=["g", "c"], predictors=["x"], slopes=slopes)
        assert gd.slopes == () and gd.factor_names == ["g", "c"]


# ------------------------------------------------------------------------------------------------------
# 2. the Dask path checks the arguments as the pandas path does, with the same messages
dd = pytest.importorskip("dask.dataframe")


@pytest.fixture
def synchronous():
    import dask

    with dask.config.set(scheduler="synchronous"):
        yield


def _counts(df):
    return df.assign(y=df["k"])


def _binary(df):
    return df.assign(y=(df["k"] > 2).astype(int))


PARITY = [
    # (case, frame change, keywords, exception, message)
    ("trials float", _binary, dict(family="binomial", trials=2.5), TypeError,
     r"trials must be a column name \(str\) or an integer >= 1; got 2.5 \(float\)"),
    ("trials 0", _binary, dict(family="binomial", trials=0), ValueError, r"trials=0 must be an integer >= 1"),
    ("trials True", _binary, dict(family="binomial", trials=True), TypeError, r"got True \(bool\)"),
    ("trials missing", _binary, dict(family="binomial", trials="zz"), ValueError,
     r"trials='zz' is not a column of the data; columns are: 'y', 'g'"),
    ("trials is y", _binary, dict(family="binomial", trials="y"), ValueError,
     r"trials='y' is already used as y, group or a predictor"),
    ("trials bool column", lambda d: _binary(d).assign(n=True), dict(family="binomial", trials="n"), TypeError,
     r"trials='n' is boolean \(dtype bool\); trials takes numbers, not True/False"),
    ("exposure missing", _counts, dict(family="poisson", exposure="zz"), ValueError,
     r"exposure='zz' is not a column of the data"),
    ("exposure is y", _counts, dict(family="poisson", exposure="y"), ValueError,
     r"exposure='y' is already used as y, group or a predictor"),
    ("exposure is predictor", _counts, dict(family="poisson", exposure="e", predictors=["e"]), ValueError,
     r"exposure='e' is already used as y, group or a predictor"),
    ("exposure number", _counts, dict(family="poisson", exposure=2.0), TypeError,
     r"exposure must be a column name \(str\); got 2.0"),
    ("exposure bool column", lambda d: _counts(d).assign(e=True), dict(family="poisson", exposure="e"),
     TypeError, r"exposure='e' is boolean"),
    ("exposure complex", lambda d: _counts(d).assign(e=d["e"] + 0j), dict(family="poisson", exposure="e"),
     TypeError, r"exposure='e' must be real numbers; got complex dtype complex128"),
    ("y is group", None, dict(y="g"), ValueError, r"y and group are the same column 'g'"),
    ("y missing", None, dict(y="Y"), ValueError, r"y='Y' is not a column of the data"),
    ("bool y poisson", lambda d: d.assign(y=d["y"] > 0), dict(family="poisson"), TypeError,
     r"y='y' is boolean \(dtype bool\); family='poisson' needs numeric counts"),
    ("bool y binomial", lambda d: d.assign(y=d["y"] > 0), dict(family="binomial", trials=1), TypeError,
     r"y='y' is boolean \(dtype bool\); family='binomial' needs numeric counts"),
    ("complex y", lambda d: d.assign(y=d["y"] + 1j), {}, TypeError,
     r"y='y' must be real numbers for family='gaussian'; got complex dtype complex128"),
    ("datetime y", lambda d: d.assign(y=pd.Timestamp("2020-01-01") + pd.to_timedelta(np.arange(len(d)), "D")), {},
     TypeError, r"y='y' must be numeric for family='gaussian'; got dtype datetime64"),
    ("predictors set", None, dict(predictors={"x"}), TypeError,
     r"predictors must be a list \(or tuple, pd.Index\) of column names, one name, or None; got set \{'x'\}"),
    ("predictors twice", None, dict(predictors=["x", "x"]), ValueError,
     r"predictors lists 'x' more than once; each predictor may appear once"),
    ("predictor is group", None, dict(predictors=["g"]), ValueError, r"predictors includes 'g', which is the group"),
    ("empty", lambda d: d.iloc[:0], {}, ValueError, r"df is empty \(0 rows\)"),
    ("empty 0/1", lambda d: _binary(d).iloc[:0], {}, ValueError, r"df is empty \(0 rows\)"),
]


@pytest.mark.parametrize("case, change, kw, exc, match", PARITY, ids=[c[0] for c in PARITY])
def test_dask_refuses_as_pandas(synchronous, case, change, kw, exc, match):
    df = _frame() if change is None else change(_frame())
    kw = dict(dict(y="y", group="g"), **kw)
    pandas_err = _error(lambda: hp.prepare(df, **kw))
    dask_err = _error(lambda: hp.prepare(dd.from_pandas(df, npartitions=2), **kw))
    assert pandas_err[0] is exc and re.search(match, pandas_err[1]), pandas_err
    assert dask_err == pandas_err  # the same exception and the same message


_DTYPE = re.compile(r"dtype \w+")


@pytest.mark.parametrize("change, kw, match", [
    (lambda d: d.assign(y=np.where(d["y"] > 0, "a", "b")), dict(family="bernoulli"),
     r"y='y' must be numeric for family='bernoulli'; got dtype \w+\. Encode the outcome as 0/1\."),
    (lambda d: d.assign(y=np.where(d["y"] > 0, "a", "b")), {}, r"y='y' must be numeric for family='gaussian'"),
    (lambda d: _counts(d).assign(e=np.where(np.arange(len(d)) % 2, "1.5", "2")), dict(family="poisson", exposure="e"),
     r"exposure='e' must be numeric; got dtype \w+\.$"),
    (lambda d: _binary(d).assign(n="5"), dict(family="binomial", trials="n"), r"trials='n' must be numeric; got dtype"),
], ids=["text y bernoulli", "text y gaussian", "text exposure", "text trials"])
def test_dask_refuses_text_columns_as_pandas(synchronous, change, kw, match):
    """Text columns are refused by their dtype, never coerced (the Dask frame's text dtype has another name)."""
    df = change(_frame())
    kw = dict(dict(y="y", group="g"), **kw)
    pandas_err = _error(lambda: hp.prepare(df, **kw))
    dask_err = _error(lambda: hp.prepare(dd.from_pandas(df, npartitions=2), **kw))
    assert pandas_err[0] is TypeError and re.search(match, pandas_err[1]), pandas_err
    assert dask_err[0] is TypeError and _DTYPE.sub("dtype T", dask_err[1]) == _DTYPE.sub("dtype T", pandas_err[1])


def test_csv_text_exposure_refused(synchronous, tmp_path):
    df = _counts(_frame()).assign(e=np.where(np.arange(40) % 4, "1.5", "unknown"))
    df.to_csv(tmp_path / "rows.csv", index=False)
    with pytest.raises(TypeError, match=r"exposure='e' must be numeric; got dtype"):
        hp.prepare(str(tmp_path / "rows.csv"), y="y", group="g", family="poisson", exposure="e")


def test_dask_valid_counts_still_match_pandas(synchronous):
    df = _binary(_frame())
    kw = dict(y="y", group="g", family="binomial", trials="n", predictors=["c"])
    gd = hp.prepare(df, **kw)
    gs = hp.prepare(dd.from_pandas(df, npartitions=3), **kw)
    np.testing.assert_allclose(gs.group_denominator, np.bincount(gd.group_idx, weights=gd.trials))
    np.testing.assert_allclose(gs.group_raw_mean, gd.group_raw_mean)


# ------------------------------------------------------------------------------------------------------
# 3. a boolean response with family="gaussian" given explicitly (the advice of the 0/1 error)
def test_bool_y_with_explicit_gaussian_is_read_as_0_1(synchronous):
    df = _frame().assign(y=lambda d: d["y"] > 0)
    with pytest.raises(ValueError, match=r"y='y' holds only 0 and 1 and no family was given: pass "
                                         r"family='bernoulli'.*or family='gaussian'"):
        hp.prepare(df, y="y", group="g")
    gd = hp.prepare(df, y="y", group="g", family="gaussian")
    assert gd.family == "gaussian" and gd.y.dtype == np.float64
    np.testing.assert_array_equal(gd.y, df["y"].to_numpy(dtype=float))
    gs = hp.prepare(dd.from_pandas(df, npartitions=2), y="y", group="g", family="gaussian")
    np.testing.assert_allclose(gs.group_raw_mean, gd.group_raw_mean)


# ------------------------------------------------------------------------------------------------------
# 4. category levels a fit cannot store
@pytest.mark.parametrize("levels, kind", [
    (pd.to_datetime(["2020-01-01", "2021-01-01"]), "Timestamp"),
    ([pd.Period("2020-01", "M"), pd.Period("2020-02", "M")], "Period"),
    ([(1, 2), (3, 4)], "tuple"),
], ids=["Timestamp", "Period", "tuple"])
def test_category_levels_of_other_types_refused(synchronous, levels, kind):
    df = _frame().assign(o=pd.Categorical(list(levels) * 20))
    match = (rf"predictors: column 'o' is a category whose levels are of type {kind} .*must be str, int, float or "
             r"bool.*df\['o'\] = df\['o'\]\.astype\(str\)\.astype\('category'\)")
    with pytest.raises(TypeError, match=match):
        hp.prepare(df, y="y", group="g", predictors=["o"])
    with pytest.raises(TypeError, match=match):
        hp.prepare(df, "y ~ o + (1 | g)")
    fixed = df.assign(o=df["o"].astype(str).astype("category"))  # the suggested fix prepares
    assert len(hp.prepare(fixed, y="y", group="g", predictors=["o"]).predictors) == 1


def test_category_levels_of_plain_types_prepare():
    for levels in ([1, 2], [0.5, 1.5], [True, False], ["a", "b"], np.array([1, 2], dtype=np.int8)):
        df = _frame().assign(o=pd.Categorical(list(levels) * 20))
        assert len(hp.prepare(df, y="y", group="g", predictors=["o"]).predictors) == 1


# ------------------------------------------------------------------------------------------------------
# 5. numbers where a formula needs a column
@pytest.mark.parametrize("formula, match", [
    ("y ~ 2*x + (1|g)", r"the number 2 in the fixed part is not a column; to multiply a column by a number write "
                        r"I\(2 \* x\)"),
    ("y ~ x + 2*x + (1|g)", r"the number 2 in the fixed part is not a column; .*I\(2 \* x\)"),
    ("y ~ x + 2 + (1|g)", r"the number 2 in the fixed part is not a column; .*leave constants out"),
    ("y ~ x + (1|g) + 3", r"the number 3 in the fixed part is not a column"),
    ("y ~ x + (1|2)", r"the number 2 after '\|' \(the grouping factor\) is not a column; write a column of group "
                      r"labels there, e\.g\. \(1 \| g\)"),
    ("y ~ x + (1 + 2|g)", r"the number 2 before '\| g' \(a random slope\) is not a column"),
    ("y ~ x + (2|g)", r"the number 2 before '\| g' \(a random slope\) is not a column"),
    ("2 ~ x + (1|g)", r"the number 2 on the left of '~' is not a column"),
])
def test_numbers_in_formulas_refused(formula, match):
    full = re.escape(f"formula {formula!r}: ") + match
    with pytest.raises(ValueError, match=full):
        parse_formula(formula)
    with pytest.raises(ValueError, match=full):
        hp.prepare(_frame(), formula)


def test_formula_scaled_column_still_works():
    assert hp.prepare(_frame(), "y ~ I(2 * x) + (1 | g)").predictors == ["I(2 * x)"]


# ------------------------------------------------------------------------------------------------------
# 6. smaller refusals
@pytest.mark.parametrize("predictors, shown", [
    ({"x", "c"}, "set"), ({"x": 1}, r"dict \{'x': 1\}"), ((p for p in ["x"]), "generator"), (5, "int 5"),
])
def test_predictors_must_be_ordered_names(predictors, shown):
    with pytest.raises(TypeError, match=rf"predictors must be a list \(or tuple, pd.Index\) of column names, one "
                                        rf"name, or None; got {shown}"):
        hp.prepare(_frame(), y="y", group="g", predictors=predictors)


def test_predictors_ordered_containers_accepted():
    df = _frame()
    for predictors in (["x", "c"], ("x", "c"), pd.Index(["x", "c"]), np.array(["x", "c"])):
        gd = hp.prepare(df, y="y", group="g", predictors=predictors)
        assert gd.predictors == ["x", "c[v]"] and all(type(p) is str for p in gd.predictors)


def test_boolean_predictor_still_allowed():
    gd = hp.prepare(_frame().assign(b=np.tile([True, False], 20)), y="y", group="g", predictors=["b"])
    assert gd.predictors == ["b[True]"]


def test_summary_level_refuses_booleans():
    s = pd.DataFrame({"est": [1.0, 2, 3, 4], "se": [1.0, 1, 2, 0.5], "sch": list("abcd")})
    with pytest.raises(TypeError, match=r"se='se' is boolean \(dtype bool\); se takes numbers, not True/False"):
        hp.prepare(s.assign(se=True), y="est", se="se", group="sch")
    with pytest.raises(TypeError, match=r"y='est' is boolean \(dtype bool\); summary-level data \(se='se'\)"):
        hp.prepare(s.assign(est=[True, False, True, False]), y="est", se="se", group="sch")
    np.testing.assert_array_equal(hp.prepare(s.assign(est=[0, 1, 0, 1]), y="est", se="se", group="sch").y,
                                  [0.0, 1.0, 0.0, 1.0])


# ------------------------------------------------------------------------------------------------------
# 7. collinear predictors: the keywords refuse what the formula refuses
@pytest.mark.parametrize(("extra", "cols", "bad"), [
    ({"o": lambda d: 2 * d["x"] + 1}, ["x", "o"], "o"),  # an affine copy of x
    ({"c2": lambda d: d["c"]}, ["c", "c2"], "c2[v]"),  # the same categorical twice
    ({"s": lambda d: d["x"] + (d["c"] == "v")}, ["x", "c", "s"], "s"),  # a sum of a number and an indicator
])
def test_collinear_predictors_refused_by_keywords_as_by_formula(extra, cols, bad):
    df = _frame().assign(**extra)
    with pytest.raises(ValueError, match=re.escape(f"predictors: the column {bad!r} is a linear combination of the "
                                                   "intercept and the columns before it")):
        hp.prepare(df, y="y", group="g", predictors=cols)
    with pytest.raises(ValueError, match=re.escape(f"the column {bad!r} is a linear combination")):
        hp.prepare(df, f"y ~ {' + '.join(cols)} + (1 | g)")
    assert hp.prepare(df, y="y", group="g", predictors=cols[:-1]).n_predictors >= 1  # without it: fine


# ------------------------------------------------------------------------------------------------------
# 8. a nested factor's parts: one label type each (1 and "1" would merge into one level "a:1")
def test_nested_factor_parts_refuse_mixed_label_types():
    df = _frame().assign(w=pd.Series([1, "1"] * 20, dtype=object))
    with pytest.raises(TypeError, match=r"group='w' mixes label types \(int, str\)"):
        hp.prepare(df, y="y", group="g/w")
    assert hp.prepare(df.assign(w=df["w"].astype(str)), y="y", group="g/w").n_groups == 4


def test_rank_check_of_columns_far_from_zero():
    """The correlations are formed from centered rows: X'X/n - mean^2 would round them away for columns
    near 1e6 (a -1.5e-3 eigenvalue where the truth is 2e-6, and a copy 3x - 7 of x passed as full rank)."""
    rng = np.random.default_rng(0)
    df = pd.DataFrame({"y": rng.normal(size=400), "g": np.repeat(np.arange(100), 4), "x": 1e6 + rng.normal(size=400)})
    df["z"] = 1e6 + rng.normal(size=400) * 1e-3 + (df["x"] - 1e6) * 0.5  # correlated 0.999998, not collinear
    assert hp.prepare(df, y="y", group="g", predictors=["x", "z"]).predictors == ["x", "z"]
    with pytest.raises(ValueError, match="the column 'o' is a linear combination"):
        hp.prepare(df.assign(o=3 * df["x"] - 7), y="y", group="g", predictors=["x", "o"])
