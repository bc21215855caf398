"""lme4-style formulas (hierpool.data.formula): the same GroupedData as the keywords, formulae's design
matrix as the reference for interactions and transforms, clear refusals, specs and the CLI. No MCMC."""

from __future__ import annotations

import json
import re
import textwrap
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from fake_fits import make_fit
from scipy.special import expit

import hierpool as hp
from hierpool.data.formula import parse_formula
from hierpool.data.terms import design_matrix
from hierpool.workflow.cli import main
from hierpool.workflow.spec import SpecError, parse_spec

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def df() -> pd.DataFrame:
    rng = np.random.default_rng(15)
    n = 400
    out = pd.DataFrame({
        "member": rng.integers(0, 40, n).astype(str),
        "age": rng.normal(60, 10, n).round(),
        "los": rng.gamma(2.0, 2.0, n) + 0.5,
        "admission": pd.Categorical(rng.choice(["elective", "emergency", "transfer"], n),
                                    categories=["emergency", "elective", "transfer"]),
        "ward": rng.choice(["a", "b"], n),
        "icu": rng.random(n) < 0.3,
        "stage": rng.integers(1, 4, n),
    })
    out["y"] = 0.05 * out["age"] + rng.normal(size=n)
    out["readmitted"] = rng.integers(0, 2, n)
    out["s"] = rng.integers(0, 6, n)
    out["f"] = rng.integers(0, 6, n) + 1
    out["n"] = out["s"] + out["f"]
    out["years"] = rng.gamma(3.0, 1.0, n) + 0.1
    out["events"] = rng.poisson(2.0 * out["years"])
    return out


def assert_same(a, b, *, trials_name=True):
    """Two GroupedData describe the same model: response, groups, design and names, trials, exposure."""
    assert a.family == b.family
    np.testing.assert_array_equal(a.y, b.y)
    np.testing.assert_array_equal(a.group_idx, b.group_idx)
    assert list(a.groups) == list(b.groups)
    np.testing.assert_array_equal(a.X, b.X)
    assert a.predictors == b.predictors
    np.testing.assert_array_equal(a.x_center, b.x_center)
    np.testing.assert_array_equal(a.x_scale, b.x_scale)
    for arr in ("trials", "exposure"):
        x, y = getattr(a, arr), getattr(b, arr)
        assert (x is None) == (y is None)
        if x is not None:
            np.testing.assert_array_equal(x, y)
    if trials_name:
        assert a.terms == b.terms
        assert (a.trials_name, a.exposure_name) == (b.trials_name, b.exposure_name)


def formulae_matrix(formula: str, data: pd.DataFrame, new: pd.DataFrame | None = None):
    """The reference: formulae's common design matrix without its intercept, and its column labels."""
    import formulae

    dm = formulae.design_matrices(formula, data)
    common = dm.common if new is None else dm.common.evaluate_new_data(new)
    labels = [lab for t in dm.common.terms.values() for lab in t.labels][1:]
    return np.asarray(common.design_matrix)[:, 1:], labels


# ------------------------------------------------------------------------------------------------------
# the formula and the keywords build the same data
def test_gaussian_formula_equals_keywords(df):
    kw = hp.prepare(df, y="y", group="member", predictors=["age", "los", "admission", "icu"], family="gaussian")
    fo = hp.prepare(df, "y ~ age + los + admission + icu + (1 | member)", family="gaussian")
    assert_same(fo, kw)
    assert fo.formula == "y ~ age + los + admission + icu + (1 | member)" and kw.formula is None
    assert fo.spec()["formula"] == fo.formula and "formula" not in kw.spec()
    # C() of a category column is that column: the same names (column[level]) and reference level
    assert_same(hp.prepare(df, "y ~ age + los + C(admission) + icu + (1 | member)"), kw)
    assert fo.predictors == ["age", "los", "admission[elective]", "admission[transfer]", "icu[True]"]
    # spacing, the order of the random term and the keyword form of the formula do not matter
    assert_same(hp.prepare(df, formula="y~(1|member)+age+los+admission+icu"), kw)


def test_bernoulli_categorical_and_interaction_match_formulae_and_keywords(df):
    text = "readmitted ~ age * C(admission) + los + C(stage) + ward + ward:icu + (1 | member)"
    # formulae sorts the levels of a category column; hierpool takes the category order (R's factor
    # levels), so the reference comparison uses a category whose order is the sorted one
    df = df.assign(admission=df["admission"].astype(str).astype("category"))
    gd = hp.prepare(df, text, family="bernoulli")
    # main effects: the keyword form's columns, names and scales
    kw = hp.prepare(df, y="readmitted", group="member", predictors=["age", "admission", "los"], family="bernoulli")
    main = [gd.predictors.index(p) for p in kw.predictors]
    np.testing.assert_array_equal(gd.X[:, main], kw.X)
    np.testing.assert_array_equal(gd.x_scale[main], kw.x_scale)
    np.testing.assert_array_equal(gd.y, kw.y)
    np.testing.assert_array_equal(gd.group_idx, kw.group_idx)
    # the whole design equals formulae's (exact: the same 0/1 indicators and products of the same floats)
    ref, labels = formulae_matrix(text.replace(" + (1 | member)", ""), df)
    np.testing.assert_array_equal(gd.X, ref)
    # (formulae codes a boolean as a number, icu; hierpool as levels, icu[True], as predictors= does)
    assert gd.predictors == [lab.replace("C(admission)", "admission").replace("C(stage)", "stage")
                             .replace(":icu", ":icu[True]") for lab in labels]
    assert gd.predictors == ["age", "admission[emergency]", "admission[transfer]", "age:admission[emergency]",
                             "age:admission[transfer]", "los", "stage[2]", "stage[3]", "ward[b]",
                             "ward[a]:icu[True]", "ward[b]:icu[True]"]
    # interactions with a numeric factor are scaled by their sd; products of indicators stay 0/1
    k = gd.predictors.index("age:admission[emergency]")
    assert gd.x_scale[k] == pytest.approx(gd.X[:, k].std(), rel=1e-12)
    assert gd.x_scale[gd.predictors.index("ward[b]:icu[True]")] == 1.0
    # C() of an integer column: levels in sorted order, the smallest the reference; the keyword form
    # says the same with a category column
    cat = df.assign(stage=pd.Categorical(df["stage"]))
    kw2 = hp.prepare(cat, y="readmitted", group="member", predictors=["stage"], family="bernoulli")
    gd2 = hp.prepare(df, "readmitted ~ C(stage) + (1 | member)", family="bernoulli")
    np.testing.assert_array_equal(gd2.X, kw2.X)
    assert gd2.predictors == kw2.predictors == ["stage[2]", "stage[3]"]


def test_interaction_coding_follows_r(df):
    # x:c without c: one slope per level (full coding), as R's model.matrix and formulae do
    gd = hp.prepare(df, "y ~ age:ward + (1 | member)")
    assert gd.predictors == ["age:ward[a]", "age:ward[b]"]
    ref, _ = formulae_matrix("y ~ age:ward", df)
    np.testing.assert_array_equal(gd.X, ref)
    # a + a:b: b coded by contrasts, a by one indicator per level (formulae sorts levels: see above)
    df = df.assign(admission=df["admission"].astype(str).astype("category"))
    gd = hp.prepare(df, "y ~ ward + ward:admission + (1 | member)")
    ref, labels = formulae_matrix("y ~ ward + ward:admission", df)
    np.testing.assert_array_equal(gd.X, ref)
    assert gd.predictors == labels
    # transforms: the reference's values (scale: population sd, as formulae), and their names
    text = "y ~ np.log(los) + scale(age) + center(los) + I(age ** 2) + {age * los} + (1 | member)"
    gd = hp.prepare(df, text)
    ref, labels = formulae_matrix(text.replace(" + (1 | member)", ""), df)
    np.testing.assert_allclose(gd.X, ref, rtol=1e-12)
    assert gd.predictors == labels == ["np.log(los)", "scale(age)", "center(los)", "I(age ** 2)", "I(age * los)"]


def test_new_data_coded_like_formulae_and_terms_survive_json(df):
    text = "y ~ scale(age) * ward + np.log(los) + C(stage) + (1 | member)"
    gd = hp.prepare(df, text)
    new = df.iloc[:25].assign(age=np.linspace(20, 90, 25), los=np.linspace(0.5, 9, 25))
    terms = json.loads(json.dumps(gd.spec()["terms"]))  # what a saved fit keeps
    ref, _ = formulae_matrix(text.replace(" + (1 | member)", ""), df, new=new)
    np.testing.assert_allclose(design_matrix(new, terms), ref, rtol=1e-12)
    with pytest.raises(ValueError, match=r"column 'stage' has levels \[7\] that were not in the training data"):
        design_matrix(new.assign(stage=7), terms)


def test_binomial_cbind_and_trials_column(df):
    kw = hp.prepare(df, y="s", group="member", predictors=["age"], family="binomial", trials="n")
    cb = hp.prepare(df, "cbind(s, f) ~ age + (1 | member)", family="binomial")
    assert_same(cb, kw, trials_name=False)
    assert cb.terms == kw.terms and cb.trials_name == ["s", "f"] and cb.spec()["trials"] == ["s", "f"]
    assert hp.prepare(df, "cbind(s, f) ~ age + (1 | member)").family == "binomial"  # cbind implies it
    # a trials column, given as prepare's keyword beside the formula
    assert_same(hp.prepare(df, "s ~ age + (1 | member)", family="binomial", trials="n"), kw)
    assert_same(hp.prepare(df, "s ~ age + (1 | member)", family="binomial", trials=12),
                hp.prepare(df, y="s", group="member", predictors=["age"], family="binomial", trials=12))
    with pytest.raises(ValueError, match=r"cbind\(successes, failures\) is the binomial response; got family='poisson'"):
        hp.prepare(df, "cbind(s, f) ~ age + (1 | member)", family="poisson")
    with pytest.raises(ValueError, match="gives the trials; do not pass trials='n' too"):
        hp.prepare(df, "cbind(s, f) ~ age + (1 | member)", family="binomial", trials="n")
    with pytest.raises(ValueError, match=r"failures column 'f' of cbind must hold integers >= 0"):
        hp.prepare(df.assign(f=-df["f"]), "cbind(s, f) ~ age + (1 | member)")
    with pytest.raises(ValueError, match="cbind takes two columns"):
        hp.prepare(df, "cbind(s) ~ age + (1 | member)")


def test_poisson_offset_log_exposure(df):
    kw = hp.prepare(df, y="events", group="member", predictors=["age", "ward"], family="poisson", exposure="years")
    for text in ("events ~ age + ward + offset(log(years)) + (1 | member)",
                 "events ~ offset(np.log(years)) + age + ward + (1 | member)"):
        assert_same(hp.prepare(df, text, family="poisson"), kw)
    assert_same(hp.prepare(df, "events ~ age + ward + (1 | member)", family="poisson", exposure="years"), kw)
    with pytest.raises(ValueError, match=r"offset is the log of an exposure column"):
        hp.prepare(df, "events ~ age + offset(years) + (1 | member)", family="poisson")
    with pytest.raises(ValueError, match="gives the exposure; do not pass exposure='years' too"):
        hp.prepare(df, "events ~ age + offset(log(years)) + (1 | member)", family="poisson", exposure="years")


def test_factories_take_a_formula(df):
    text = "readmitted ~ age + C(admission) + (1 | member)"
    m1 = hp.random_intercepts(df, formula=text, family="bernoulli")
    m2 = hp.random_intercepts(df, y="readmitted", group="member", predictors=["age", "admission"],
                              family="bernoulli")
    assert sorted(v.name for v in m1.data_vars) == sorted(v.name for v in m2.data_vars)
    for v in m1.data_vars:
        np.testing.assert_array_equal(v.eval(), m2[v.name].eval())
    assert [v.name for v in m1.free_RVs] == [v.name for v in m2.free_RVs]
    assert list(m1.coords["predictor"]) == list(m2.coords["predictor"])
    assert hp.ridge_fixed_effects(df, 2.0, formula=text, family="bernoulli").coords["group"] == m2.coords["group"]
    with pytest.raises(ValueError, match="do not pass group= too"):
        hp.random_intercepts(df, formula=text, group="member", family="bernoulli")


def test_predict_codes_new_rows_through_the_formula_terms(df):
    data = df.iloc[:60].rename(columns={"member": "group"})
    gd = hp.prepare(data, "y ~ np.log(los) * ward + (1 | group)")
    beta = np.array([0.5, -1.0, 2.0])
    icpt, ge = 0.3, np.linspace(-1, 1, gd.n_groups)
    dt = make_fit(data=data, terms=gd.terms, chains=1, draws=10, intercept=icpt, beta=beta, group_effect=ge)
    new = pd.DataFrame({"group": [gd.groups[0], gd.groups[1]], "los": [1.0, np.e], "ward": ["b", "a"]})
    out = hp.predict(dt, new, random_seed=1)
    expected = [icpt + 0.0 * beta[0] + beta[1] + 0.0 * beta[2] + ge[0], icpt + 1.0 * beta[0] + ge[1]]
    np.testing.assert_allclose(out["estimate"], expected, atol=1e-12)
    with pytest.raises(ValueError, match=r"lacks column 'los'"):
        hp.predict(dt, new.drop(columns="los"))


def test_predict_with_cbind_trials_sums_the_two_columns():
    data = pd.DataFrame({"group": list("aabb"), "x": [0.0, 1.0, 2.0, 3.0], "y": [1.0, 2, 3, 4],
                         "s": [1, 2, 3, 4], "f": [4, 3, 3, 2], "n": [5.0, 5, 6, 6]})
    dt = make_fit("binomial", data=data, trials="n", intercept=0.2, beta=[0.0], group_effect=[0.3, -0.3],
                  chains=1, draws=20)
    settings = json.loads(dt.attrs["hierpool_settings"])
    settings["data"]["trials"] = ["s", "f"]  # as a fit prepared from cbind(s, f) records it
    dt.attrs["hierpool_settings"] = json.dumps(settings)
    new = pd.DataFrame({"group": ["a", "b"], "x": [0.0, 0.0], "s": [3, 0], "f": [7, 20]})
    out = hp.predict(dt, new, random_seed=1)
    assert out["estimate"].tolist() == pytest.approx([10 * expit(0.5), 20 * expit(-0.1)], abs=1e-12)
    with pytest.raises(ValueError, match=r"lacks column 'f'.*trials"):
        hp.predict(dt, new.drop(columns="f"))


# ------------------------------------------------------------------------------------------------------
# refusals
@pytest.mark.parametrize("text, message", [
    ("y ~ agee + (1 | member)", r"'agee' is not a column of the data; columns are: 'member', 'age'"),
    ("y ~ age + (1 | membr)", r"'membr' is not a column of the data"),
    ("yy ~ age + (1 | member)", r"'yy' is not a column of the data"),
    ("y ~ age + bs(los) + (1 | member)", r"the term 'bs\(los\)' uses the function 'bs'.*transforms may use"),
    ("y ~ age + np.random(los) + (1 | member)", r"uses the function 'np.random'"),
    ("y ~ C(ward, Treatment('b')) + (1 | member)", r"C\(\) takes one column here"),
    ("y ~ age + member + (1 | member)", r"the grouping factor 'member' is also a fixed term \('member'\)"),
    ("y ~ age:C(member) + (1 | member)", r"grouping factor 'member' is also a fixed term \('age:C\(member\)'\)"),
    ("y ~ age + los", r"no random-effect term; .*'y ~ x \+ \(1 \| group\)'"),
    ("y ~ age + 1 | member", r"no random-effect term \(put it in parentheses"),
    ("y ~ age ~ los + (1 | member)", r"has more than one '~'"),
    ("~ age + (1 | member)", r"has no response before '~'"),
    ("age + (1 | member)", r"has no '~'"),
    ("y ~ age + (1 | member", r"cannot be parsed"),
    ("y ~ 0 + age + (1 | member)", r"removes the intercept \(0 \+ or - 1\); hierpool's models always have"),
    ("y ~ age - 1 + (1 | member)", r"removes the intercept"),
    ("np.log(y) ~ age + (1 | member)", r"the response .* must be a column, or cbind"),
    ("y ~ y + age + (1 | member)", r"the response 'y' is also a fixed term"),
    # random slopes are supported (tests/test_random_slopes.py); these forms are refused
    ("y ~ age + (1 + los | member)", r"the random slope 'los' is not a fixed term"),
    ("y ~ age + (los | member)", r"the random slope 'los' is not a fixed term"),
    ("y ~ los + (0 + los | member)", r"random slope without a random intercept .*not supported yet"),
    ("y ~ los + (1 + los | member) + (1 | ward)", r"random slope .* with several grouping factors .*not supported yet"),
    # several grouping factors are supported (tests/test_crossed.py); these are refused
    ("y ~ age + (1 | ward:member) + (1 | ward)", r"the first grouping factor 'ward:member' is an interaction"),
    ("y ~ age + (1 | member) + (1 | age)", r"the grouping factor 'age' is also a fixed term"),
    ("y ~ ward:admission + (1 | member)", r"the column 'ward\[b\]:admission\[transfer\]' is a linear "
                                          r"combination of the intercept and the columns before it"),
    ("y ~ np.log(age - age) + (1 | member)", r"column 'np.log\(age - age\)' has 400 NaN or infinite"),
    ("y ~ np.log(ward) + (1 | member)", r"transforms column 'ward', which is string"),
])
def test_bad_formulas_fail_clearly(df, text, message):
    with pytest.raises((ValueError, TypeError), match=message):
        hp.prepare(df, formula=text)


def test_keyword_conflicts_and_the_refusals_of_predictors_apply(df):
    with pytest.raises(ValueError, match="do not pass y= and group= too"):
        hp.prepare(df, formula="y ~ age + (1 | member)", y="y", group="member")
    with pytest.raises(ValueError, match="do not pass predictors= too"):
        hp.prepare(df, "y ~ age + (1 | member)", predictors=["los"])
    with pytest.raises(TypeError, match="needs y= and group="):
        hp.prepare(df)
    with pytest.raises(TypeError, match="formula must be a string"):
        parse_formula(3)
    # the checks of predictors= apply to the formula's columns (one path): text that holds numbers ...
    bad = df.assign(age=df["age"].astype(str).where(df.index > 0, "unknown"))
    with pytest.raises(TypeError, match="column 'age' holds text, but"):
        hp.prepare(bad, "y ~ age + (1 | member)")
    # ... missing values, also inside an interaction or a transform
    with pytest.raises(ValueError, match="column 'los' has 1 NaN or missing values"):
        hp.prepare(df.assign(los=df["los"].where(df.index != 3)), "y ~ age * np.log(los) + (1 | member)")
    # the response is checked by prepare as with keywords
    with pytest.raises(ValueError, match="no family was given: pass family='bernoulli'"):
        hp.prepare(df, "readmitted ~ age + (1 | member)")


def test_parse_formula_roles():
    f = parse_formula("cbind(s, f) ~ a * C(b) + np.log(x) + offset(log(e)) + (1 | g)")
    assert (f.response, f.failures, f.group, f.exposure) == ("s", "f", "g", "e")
    assert f.columns == ["a", "b", "x"] and f.keywords() is None
    assert [[x.text for x in t] for t in f.terms] == [["a"], ["C(b)"], ["a", "C(b)"], ["np.log(x)"]]
    assert parse_formula("y ~ a + b + (1|g)").keywords() == {"y": "y", "group": "g", "predictors": ["a", "b"],
                                                             "exposure": None}


def test_data_beyond_memory_takes_plain_formulas(df, tmp_path):
    path = tmp_path / "rows.csv"
    df[["y", "member", "age", "ward"]].to_csv(path, index=False)
    kw = hp.prepare(str(path), y="y", group="member", predictors=["age", "ward"])
    fo = hp.prepare(str(path), "y ~ age + ward + (1 | member)")
    np.testing.assert_array_equal(fo.group_n, kw.group_n)
    assert fo.predictors == kw.predictors
    np.testing.assert_array_equal(fo.gaussian.xbar, kw.gaussian.xbar)
    with pytest.raises(ValueError, match="data beyond memory .* takes formulas of plain columns only"):
        hp.prepare(str(path), "y ~ age * ward + (1 | member)")


# ------------------------------------------------------------------------------------------------------
# model specs and the CLI
SPEC = """
[data]
simulate = "episodes"
parameters = {n_members = 60, seed = 3}
formula = "readmitted ~ age * emergency + np.log(los) + (1 | member_id)"
family = "bernoulli"

[variants.ri]
kind = "random_intercepts"
"""


def test_spec_with_a_formula_is_checked_and_prepared():
    spec = parse_spec(SPEC)
    assert spec.prepare_kwargs() == {"formula": "readmitted ~ age * emergency + np.log(los) + (1 | member_id)",
                                     "family": "bernoulli"}
    gd = spec.prepare()
    assert gd.predictors == ["age", "emergency[True]", "age:emergency[True]", "np.log(los)"]
    assert gd.formula == spec.data["formula"]


@pytest.mark.parametrize("edit, expected", [
    (('formula = "', 'response = "r"\nformula = "'), r"\[data\] formula gives the response, the group and the "
                                                      r"predictors; remove response"),
    (("(1 | member_id)", "(0 + age | member_id)"), r"\[data\] formula = .* is not valid: .*random slope"),
    ((" + (1 | member_id)", ""), r"no random-effect term"),
    (('formula = "readmitted ~ age * emergency + np.log(los) + (1 | member_id)"\n', ""),
     r"\[data\] is missing the required key 'response' \(or give a formula"),
    (("readmitted ~", "cbind(readmitted, episode) ~"), r"cbind\(successes, failures\) is the binomial response; got "
                                                    r"family = 'bernoulli'"),
    (("age * emergency", "agee"), r"\[data\] formula: column 'agee' is not in the data"),
])
def test_bad_formula_specs_fail_clearly(edit, expected):
    text = SPEC.replace(*edit)
    with pytest.raises(SpecError, match=expected):
        spec = parse_spec(text)
        spec.prepare()


def test_hierpool_validate_a_formula_spec(tmp_path, capsys):
    path = tmp_path / "formula.toml"
    path.write_text(textwrap.dedent(SPEC))
    assert main(["validate", str(path)]) == 0
    out = capsys.readouterr().out
    assert "valid." in out and "predictors=[age, emergency[True], age:emergency[True], np.log(los)]" in out
    path.write_text(textwrap.dedent(SPEC).replace("(1 | member_id)", "(1 | member_id) + (1 | age)"))
    assert main(["validate", str(path)]) == 2
    assert "the grouping factor 'age' is also a fixed term" in capsys.readouterr().err


_SHIPPED = [ROOT / "models" / "radon.toml", ROOT / "models" / "efron_morris.toml",
            ROOT / "hierpool" / "workflow" / "specs" / "episodes.toml"]


@pytest.mark.parametrize("path", _SHIPPED, ids=lambda p: p.stem)
def test_the_formula_in_each_shipped_spec_builds_the_same_data(path):
    """Each shipped spec shows its [data] as a formula in a comment: uncommented, it gives the same data."""
    text = path.read_text()
    line = next(ln for ln in text.splitlines() if ln.startswith("# formula = "))
    formula = line.split('"')[1]
    keyed = text
    for key in ("response", "group", "predictors"):
        keyed = re.sub(rf"(?m)^{key} = .*\n", "", keyed)
    keyed = keyed.replace("[data]\n", f'[data]\nformula = "{formula}"\n', 1)
    kw_spec, fo_spec = parse_spec(text, source=path), parse_spec(keyed, source=path)
    assert "formula" in fo_spec.data and "response" not in fo_spec.data
    assert_same(fo_spec.prepare(), kw_spec.prepare())


def test_design_matrix_of_no_rows_keeps_its_columns(df):
    """New data with no rows (e.g. ``predict`` on an empty frame): every term gives its columns, an
    interaction's too (its product of blocks was reshaped with -1, which numpy refuses for 0 rows)."""
    from hierpool.data.terms import design_matrix

    text = "readmitted ~ age * C(admission) + np.log(los) + C(stage) + ward + ward:icu + (1 | member)"
    gd = hp.prepare(df.assign(admission=df["admission"].astype(str).astype("category")), text, family="bernoulli")
    empty = design_matrix(df.iloc[:0], gd.terms)
    assert empty.shape == (0, len(gd.predictors))
    np.testing.assert_array_equal(design_matrix(df.iloc[:3], gd.terms), gd.X[:3])
