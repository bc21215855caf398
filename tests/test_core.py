"""Core: data preparation, the naming contract of every factory x family, fitting plumbing, storage.

Fast tests: models are built but not sampled, or sampling is mocked with prior draws
(``pymc.testing.mock_sample``).
"""

from __future__ import annotations

import json
import warnings

import numpy as np
import pandas as pd
import pymc as pm
import pytest
import xarray as xr
from pymc.testing import mock_sample

import hierpool as hp
from hierpool.core import names as N

FAMILIES = ("gaussian", "bernoulli", "binomial", "poisson")


def family_frame(family: str, seed: int = 0) -> tuple[pd.DataFrame, dict]:
    """Simulated frame with a numeric and a categorical predictor, plus prepare kwargs."""
    df = hp.datasets.simulate(family, n_groups=12, n_predictors=1, seed=seed)
    df["period"] = pd.Categorical(np.tile(["a", "b", "c"], len(df))[: len(df)], categories=["a", "b", "c"])
    kw = dict(y="y", group="group", predictors=["x1", "period"], family=family)
    if family == "binomial":
        kw["trials"] = "trials"
    if family == "poisson":
        df["exposure"] = np.linspace(0.5, 2.0, len(df))
        kw["exposure"] = "exposure"
    return df, kw


def build(variant: str, data, **kw):
    if variant == "random_intercepts":
        return hp.random_intercepts(data, **kw)
    if variant == "ridge_fixed_effects":
        return hp.ridge_fixed_effects(data, lam=4.0, **kw)
    return hp.regularized_hierarchical(data, penalty="horseshoe", **kw)


# ---------------------------------------------------------------------------------------------------
# the contract, without sampling
@pytest.mark.parametrize("family", FAMILIES)
@pytest.mark.parametrize("variant", N.VARIANTS)
def test_contract_dims_and_names(variant, family):
    df, kw = family_frame(family)
    gd = hp.prepare(df, **kw)
    model = build(variant, gd, collapse=False)  # the row-level model; collapsed ones are checked below
    assert set(model.coords) >= {N.GROUP, N.OBS, N.PREDICTOR}
    assert list(model.coords[N.GROUP]) == list(pd.unique(df["group"]))  # first-seen order
    assert list(model.coords[N.PREDICTOR]) == ["x1", "period[b]", "period[c]"]
    assert len(model.coords[N.OBS]) == len(df)
    names = set(model.named_vars)
    assert {N.INTERCEPT, N.BETA, N.GROUP_EFFECT, N.Y} <= names
    assert (N.TAU in names) == (variant != "ridge_fixed_effects")
    assert (N.SIGMA in names) == (family == "gaussian")
    assert model.named_vars_to_dims[N.GROUP_EFFECT] == (N.GROUP,)
    assert model.named_vars_to_dims[N.BETA] == (N.PREDICTOR,)
    assert model.named_vars_to_dims[N.Y] == (N.OBS,)
    assert hp.describe(model).variant == variant and hp.describe(model).family == family
    # the model's log density is finite at the initial point
    assert np.isfinite(model.compile_logp()(model.initial_point()))


@pytest.mark.parametrize("variant", N.VARIANTS)
def test_gaussian_models_collapse_by_default(variant):
    df, kw = family_frame("gaussian")
    model = build(variant, hp.prepare(df, **kw))
    assert hp.describe(model).collapse == "gaussian"
    assert N.GROUP_EFFECT not in model.named_vars  # integrated out; hp.fit draws it afterwards
    assert {N.INTERCEPT, N.BETA, N.SIGMA} <= set(model.named_vars)
    assert (N.TAU in model.named_vars) == (variant != "ridge_fixed_effects")
    assert np.isfinite(model.compile_logp()(model.initial_point()))
    with pytest.raises(ValueError, match="collapse='yes' is not valid"):
        build(variant, hp.prepare(df, **kw), collapse="yes")


def test_factories_accept_a_dataframe(sim_gaussian):
    m = hp.random_intercepts(sim_gaussian, y="y", group="group", predictors=["x1"])
    assert list(m.coords[N.PREDICTOR]) == ["x1"]
    with pytest.raises(ValueError, match="y= and group="):
        hp.random_intercepts(sim_gaussian)
    gd = hp.prepare(sim_gaussian, y="y", group="group")
    with pytest.raises(ValueError, match="already a GroupedData"):
        hp.random_intercepts(gd, y="y")


def test_no_predictors_has_no_beta(sim_gaussian):
    m = hp.random_intercepts(sim_gaussian, y="y", group="group")
    assert N.BETA not in m.named_vars and list(m.coords[N.PREDICTOR]) == []


def test_ridge_prior_is_precision():
    df, kw = family_frame("gaussian")
    m = hp.ridge_fixed_effects(df, lam=4.0, collapse=False, **kw)
    u = m[N.GROUP_EFFECT]
    # Normal(0, sd = 1/sqrt(4) = 0.5): the log density at 0.5 equals the standard normal's at 1 minus log 0.5
    logp = pm.logp(u, np.full(12, 0.5)).eval()
    np.testing.assert_allclose(logp, -0.5 - 0.5 * np.log(2 * np.pi) - np.log(0.5), rtol=1e-8)


# ---------------------------------------------------------------------------------------------------
# prepare
def test_prepare_codes_groups_and_predictors():
    df = pd.DataFrame({
        "y": [1.0, 2.0, 3.0, 4.0, 5.0, 7.0],
        "g": ["b", "a", "b", "c", "a", "c"],
        "x": [1.0, 2.0, 3.0, 4.0, 5.0, 6.0],
        "s": ["lo", "hi", "lo", "mid", "hi", "lo"],
        "flag": [True, False, False, False, True, True],  # not s == "lo" (a collinear design is refused)
    })
    gd = hp.prepare(df, y="y", group="g", predictors=["x", "s", "flag"])
    assert gd.groups.tolist() == ["b", "a", "c"]
    np.testing.assert_array_equal(gd.group_idx, [0, 1, 0, 2, 1, 2])
    assert gd.predictors == ["x", "s[lo]", "s[mid]", "flag[True]"]  # sorted levels, reference 'hi'
    np.testing.assert_array_equal(gd.X[:, 1], [1, 0, 1, 0, 0, 1])
    np.testing.assert_allclose(gd.x_center, gd.X.mean(axis=0))
    np.testing.assert_allclose(gd.x_scale[0], np.std(df["x"]))
    np.testing.assert_allclose(gd.x_scale[1:], 1.0)  # indicators are not scaled
    np.testing.assert_array_equal(gd.group_n, [2, 2, 2])
    np.testing.assert_allclose(gd.group_raw_mean, [2.0, 3.5, 5.5])


def test_categorical_columns_coded_from_their_codes_as_from_their_values():
    """A pandas categorical is coded from its own category codes: the same design as its values as text,
    whatever the order of its categories or unused ones, and an unseen level raises naming it."""
    from hierpool.data.terms import design_matrix

    df = pd.DataFrame({"y": np.arange(8.0), "g": list("aabbccdd"), "s": ["lo", "hi", "mid", "lo", "hi", "mid", "lo", "lo"]})
    gd = hp.prepare(df, y="y", group="g", predictors=["s"])
    want = design_matrix(df, gd.terms)
    np.testing.assert_array_equal(want, gd.X)
    shuffled = df.assign(s=pd.Categorical(df["s"], categories=["mid", "zz", "lo", "hi"]))  # other order, unused 'zz'
    np.testing.assert_array_equal(design_matrix(shuffled, gd.terms), want)
    as_cat = hp.prepare(df.assign(s=df["s"].astype("category")), y="y", group="g", predictors=["s"])
    np.testing.assert_array_equal(as_cat.X, want)
    unseen = df.assign(s=pd.Categorical(df["s"].where(df.index != 3, "new")))
    with pytest.raises(ValueError, match=r"column 's' has levels \['new'\] that were not in the training data"):
        design_matrix(unseen, gd.terms)
    with pytest.raises(ValueError, match=r"levels \['new'\]"):
        design_matrix(unseen.assign(s=unseen["s"].astype(object)), gd.terms)


@pytest.mark.parametrize("new_values", [
    [1.0, 2.0, 3.0, 1.0],                                   # floats for integer levels (1 == 1.0)
    np.array([1, 2, 3, 1], dtype=np.int8),                   # other integer dtype
    pd.Categorical([1, 2, 3, 1], categories=[3, 2, 1]),     # integer categories in another order
    pd.array([1, 2, 3, 1], dtype="Int64"),                   # nullable integers
])
def test_integer_levels_match_equal_values_of_other_types(new_values):
    """A categorical of integer levels, coded at prediction time from values of other types: levels are
    matched by equality (pandas' hashing and Python's == agree: 1, 1.0, int8(1), Int64 1 and the
    category 1 are one level); the matrix is pinned explicitly."""
    from hierpool.data.terms import design_matrix

    train = pd.DataFrame({"y": np.arange(6.0), "g": list("aabbcc"), "k": pd.Categorical([1, 2, 3, 1, 2, 3])})
    gd = hp.prepare(train, y="y", group="g", predictors=["k"])
    assert gd.predictors == ["k[2]", "k[3]"]
    got = design_matrix(pd.DataFrame({"k": new_values}), gd.terms)
    np.testing.assert_array_equal(got, [[0, 0], [1, 0], [0, 1], [0, 0]])


def test_prepare_natural_scale_means():
    df = pd.DataFrame({"y": [1, 3, 0, 2], "n": [2, 4, 5, 5], "g": [1, 1, 2, 2]})
    gd = hp.prepare(df, y="y", group="g", family="binomial", trials="n")
    np.testing.assert_allclose(gd.group_raw_mean, [4 / 6, 2 / 10])
    df = pd.DataFrame({"y": [1, 3, 0, 2], "e": [0.5, 1.5, 1.0, 1.0], "g": [1, 1, 2, 2]})
    gd = hp.prepare(df, y="y", group="g", family="poisson", exposure="e")
    np.testing.assert_allclose(gd.group_raw_mean, [2.0, 1.0])
    gd = hp.prepare(df, y="y", group="g", family="poisson")
    np.testing.assert_allclose(gd.group_raw_mean, [2.0, 1.0])
    gd = hp.prepare(df.assign(y=[True, False, True, True]), y="y", group="g", family="bernoulli")
    np.testing.assert_allclose(gd.group_raw_mean, [0.5, 1.0])


def _base():
    return pd.DataFrame({
        "y": [0.5, 1.5, 2.0, 3.0, 1.0, 0.0],
        "g": ["a", "a", "b", "b", "c", "c"],
        "x": [1.0, 2.0, 0.5, 1.5, 3.0, 2.5],
        "k": [1, 0, 1, 1, 0, 1],
    })


BAD_INPUTS = [
    ("not a frame", lambda: hp.prepare([1, 2], y="y", group="g"), TypeError, "pandas DataFrame"),
    ("empty", lambda: hp.prepare(_base().iloc[:0], y="y", group="g"), ValueError, "empty"),
    ("missing y", lambda: hp.prepare(_base(), y="z", group="g"), ValueError, "y='z' is not a column"),
    ("missing group", lambda: hp.prepare(_base(), y="y", group="G"), ValueError, "group='G'"),
    ("missing predictor", lambda: hp.prepare(_base(), y="y", group="g", predictors=["w"]), ValueError,
     "predictors='w'"),
    ("nan y", lambda: hp.prepare(_base().assign(y=[np.nan, 1, 2, 3, 4, 5]), y="y", group="g"), ValueError,
     "NaN or infinite"),
    ("inf y", lambda: hp.prepare(_base().assign(y=[np.inf, 1, 2, 3, 4, 5]), y="y", group="g"), ValueError,
     "NaN or infinite"),
    ("nan predictor", lambda: hp.prepare(_base().assign(x=[np.nan, 1, 2, 3, 4, 5]), y="y", group="g",
                                         predictors=["x"]), ValueError, "column 'x' has 1 NaN or missing"),
    ("inf predictor", lambda: hp.prepare(_base().assign(x=[np.inf, 1, 2, 3, 4, 5]), y="y", group="g",
                                         predictors=["x"]), ValueError, "predictors: column 'x' has 1 NaN or infinite"),
    ("nan group", lambda: hp.prepare(_base().assign(g=["a", None, "b", "b", "c", "c"]), y="y", group="g"),
     ValueError, "missing labels"),
    ("bernoulli support", lambda: hp.prepare(_base(), y="y", group="g", family="bernoulli"), ValueError,
     "only 0 and 1"),
    ("poisson support", lambda: hp.prepare(_base(), y="y", group="g", family="poisson"), ValueError,
     "non-negative integer"),
    ("poisson negative", lambda: hp.prepare(_base().assign(y=[-1, 0, 1, 2, 3, 4]), y="y", group="g",
                                            family="poisson"), ValueError, "non-negative integer"),
    ("binomial no trials", lambda: hp.prepare(_base().assign(y=[0, 1, 1, 2, 0, 0]), y="y", group="g",
                                              family="binomial"), ValueError, "needs trials"),
    ("binomial y > trials", lambda: hp.prepare(_base().assign(y=[0, 1, 1, 2, 0, 3], n=2), y="y", group="g",
                                               family="binomial", trials="n"), ValueError, "exceeds trials"),
    ("trials not binomial", lambda: hp.prepare(_base(), y="y", group="g", trials=3), ValueError,
     "only used with family='binomial'"),
    ("non-numeric y", lambda: hp.prepare(_base().assign(y=list("abcdef")), y="y", group="g"), TypeError,
     "must be numeric"),
    ("datetime predictor", lambda: hp.prepare(_base().assign(d=pd.date_range("2020", periods=6)), y="y",
                                              group="g", predictors=["d"]), TypeError, "datetime64"),
    ("mixed objects", lambda: hp.prepare(_base().assign(m=["a", 1, "b", 2.0, "c", "d"]), y="y", group="g",
                                         predictors=["m"]), TypeError, "mixed Python objects"),
    ("constant predictor", lambda: hp.prepare(_base().assign(c=1.0), y="y", group="g", predictors=["c"]),
     ValueError, "constant"),
    ("constant category", lambda: hp.prepare(_base().assign(c="z"), y="y", group="g", predictors=["c"]),
     ValueError, "constant"),
    ("duplicate predictor", lambda: hp.prepare(_base(), y="y", group="g", predictors=["x", "x"]), ValueError,
     "more than once"),
    ("y as predictor", lambda: hp.prepare(_base(), y="y", group="g", predictors=["y"]), ValueError,
     "the y column"),
    ("group as predictor", lambda: hp.prepare(_base(), y="y", group="g", predictors=["g"]), ValueError,
     "the group column"),
    ("single group", lambda: hp.prepare(_base().assign(g="a"), y="y", group="g"), ValueError,
     "single group"),
    ("unknown family", lambda: hp.prepare(_base(), y="y", group="g", family="gamma"), ValueError,
     "family='gamma' is not valid; valid choices: 'gaussian'"),
    ("exposure <= 0", lambda: hp.prepare(_base().assign(y=[0, 1, 2, 3, 4, 5], e=[0, 1, 1, 1, 1, 1]),
                                         y="y", group="g", family="poisson", exposure="e"), ValueError,
     "must be positive"),
]


@pytest.mark.parametrize("case, call, exc, match", BAD_INPUTS, ids=[c[0] for c in BAD_INPUTS])
def test_prepare_bad_input(case, call, exc, match):
    with pytest.raises(exc, match=match):
        call()


def test_factory_bad_arguments():
    df = _base()
    gd = hp.prepare(df, y="y", group="g", predictors=["x"])
    for bad in (0, -1.0, np.inf, np.nan):
        with pytest.raises(ValueError, match="lam must be a positive finite number"):
            hp.ridge_fixed_effects(gd, lam=bad)
    with pytest.raises(TypeError, match="lam must be"):
        hp.ridge_fixed_effects(gd, lam="4")
    with pytest.raises(ValueError, match="penalty='lasso' is not valid; valid choices: 'horseshoe'"):
        hp.regularized_hierarchical(gd, penalty="lasso")
    with pytest.raises(ValueError, match="unknown key 'rho'.*valid parameter names"):
        hp.random_intercepts(gd, priors={"rho": 1.0})
    with pytest.raises(ValueError, match="positive support"):
        hp.random_intercepts(gd, priors={"tau": hp.Prior("Normal", mu=0, sigma=1)})
    with pytest.raises(ValueError, match="both 'tau' and 'tau_sq'"):
        hp.random_intercepts(gd, priors={"tau": 1.0, "tau_sq": 1.0})
    with pytest.raises(ValueError, match="Prior dist='Foo'"):
        hp.Prior("Foo", x=1)
    # a mistyped parameter: PyMC's .dist() would take it into **kwargs and build HalfNormal(sigma=1)
    with pytest.raises(TypeError, match=r"Prior\('HalfNormal'\) has no parameter 'sigm'; valid: sigma, tau"):
        hp.Prior("HalfNormal", sigm=5.0)
    with pytest.raises(TypeError, match="has no parameter 'scale'"):
        hp.random_intercepts(gd, priors={"tau": {"dist": "HalfCauchy", "scale": 2.0}})
    with pytest.raises(ValueError, match="beta's prior is set by penalty"):
        hp.regularized_hierarchical(gd, priors={"beta": hp.Prior("Normal", mu=0, sigma=1)})
    m = hp.random_intercepts(gd)
    with pytest.raises(ValueError, match="draws must be an integer >= 1"):
        hp.fit(m, draws=0)
    with pytest.raises(ValueError, match="sampler='stan' is not valid"):
        hp.fit(m, sampler="stan")
    with pytest.raises(TypeError, match="not built by a hierpool factory"):
        hp.fit(pm.Model())


def test_prior_overrides_are_used():
    df = _base()
    m = hp.random_intercepts(df, y="y", group="g", predictors=["x"],
                             priors={"tau_sq": hp.Prior("InverseGamma", alpha=0.001, beta=0.001),
                                     "sigma": 2.0, "beta": {"dist": "Normal", "mu": 0, "sigma": 3}})
    assert "tau_sq" in m.named_vars and N.TAU in m.named_vars
    assert m[N.SIGMA].eval() == 2.0
    settings = hp.describe(m).settings
    assert settings["priors"]["tau_sq"] == {"dist": "InverseGamma", "alpha": 0.001, "beta": 0.001}
    # tau is the square root of tau_sq in every prior draw (IG(0.001, 0.001) draws underflow to 0: use IG(2, 1))
    m = hp.random_intercepts(df, y="y", group="g", priors={"tau_sq": hp.Prior("InverseGamma", alpha=2, beta=1)})
    draws = pm.sample_prior_predictive(draws=50, model=m, random_seed=1, var_names=["tau", "tau_sq"])["prior"]
    np.testing.assert_allclose(draws["tau"] ** 2, draws["tau_sq"], rtol=1e-10)


def test_missing_sampler_package_names_install(monkeypatch):
    import importlib.util

    from hierpool.inference import sampling as sampling

    real = importlib.util.find_spec
    monkeypatch.setattr(sampling.importlib.util, "find_spec",
                        lambda name, *a: None if name in ("nutpie", "numpyro") else real(name, *a))
    with pytest.raises(ImportError, match=r"pip install 'hierpool\[nutpie\]'"):
        sampling.resolve_sampler("nutpie")
    with pytest.raises(ImportError, match=r"hierpool\[numpyro\]"):
        sampling.resolve_sampler("numpyro")
    assert sampling.resolve_sampler("auto") == "pymc"


# ---------------------------------------------------------------------------------------------------
# fitting plumbing with mocked sampling
@pytest.fixture
def mocked_sample(monkeypatch):
    monkeypatch.setattr(pm, "sample", mock_sample)


@pytest.mark.parametrize("family", FAMILIES)
@pytest.mark.parametrize("variant", N.VARIANTS)
def test_fit_returns_the_contract(mocked_sample, variant, family):
    df, kw = family_frame(family)
    gd = hp.prepare(df, **kw)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", hp.HierpoolSamplingWarning)
        dt = hp.fit(build(variant, gd), draws=20, chains=2, random_seed=3, sampler="pymc")
    assert isinstance(dt, xr.DataTree)
    assert {"posterior", "observed_data", "constant_data", "log_likelihood"} <= set(dt.children)
    post = dt["posterior"]
    expected = {N.INTERCEPT, N.BETA, N.GROUP_EFFECT} | ({N.TAU} if variant != "ridge_fixed_effects" else set())
    expected |= {N.SIGMA} if family == "gaussian" else set()
    assert set(post.data_vars) == expected
    assert post[N.GROUP_EFFECT].dims == ("chain", "draw", N.GROUP)
    assert post.sizes["chain"] == 2 and post.sizes["draw"] == 20
    const = dt["constant_data"]
    np.testing.assert_array_equal(const[N.GROUP_N].values, gd.group_n)
    np.testing.assert_allclose(const[N.GROUP_RAW_MEAN].values, gd.group_raw_mean)
    np.testing.assert_array_equal(const[N.GROUP_IDX].values, gd.group_idx)
    np.testing.assert_allclose(const[N.X].values, gd.X)
    assert dt["observed_data"][N.Y].dims == (N.OBS,)
    assert dt["log_likelihood"][N.Y].dims == ("chain", "draw", N.OBS)
    assert dt.attrs[N.ATTR_VARIANT] == variant and dt.attrs[N.ATTR_FAMILY] == family
    assert dt.attrs[N.ATTR_VERSION] == hp.__version__
    settings = json.loads(dt.attrs[N.ATTR_SETTINGS])
    assert settings["data"]["predictors"] == ["x1", "period[b]", "period[c]"]
    if variant == "ridge_fixed_effects":
        assert settings["lam"] == 4.0
    # the intercept at x = 0 and the coefficients on the user's scale reproduce the linear predictor
    ll = dt["log_likelihood"][N.Y].isel(chain=0, draw=0).values
    p = post.isel(chain=0, draw=0)
    eta = float(p[N.INTERCEPT]) + gd.X @ p[N.BETA].values + p[N.GROUP_EFFECT].values[gd.group_idx]
    if family == "gaussian":
        s = float(p[N.SIGMA])
        expect = -0.5 * ((gd.y - eta) / s) ** 2 - np.log(s) - 0.5 * np.log(2 * np.pi)
    elif family == "bernoulli":
        expect = gd.y * eta - np.log1p(np.exp(eta))
    elif family == "binomial":
        from scipy.stats import binom

        expect = binom.logpmf(gd.y, gd.trials, 1 / (1 + np.exp(-eta)))
    else:
        from scipy.stats import poisson

        expect = poisson.logpmf(gd.y, np.exp(eta) * gd.exposure)
    np.testing.assert_allclose(ll, expect, rtol=1e-8, atol=1e-10)


def test_intercept_and_beta_on_users_scale():
    """intercept is at x = 0 and beta per unit of x, whatever the internal centering and scaling."""
    df, kw = family_frame("gaussian")
    df["x1"] = 100 + 50 * df["x1"]
    gd = hp.prepare(df, **kw)
    names = ["beta", "beta_std", "intercept", "intercept_centered"]
    prior = pm.sample_prior_predictive(draws=10, model=hp.random_intercepts(gd), random_seed=1,
                                       var_names=names)["prior"]
    beta = prior["beta_std"].values / gd.x_scale
    np.testing.assert_allclose(prior[N.BETA].values, beta, rtol=1e-10)
    icpt = prior["intercept_centered"].values - beta @ gd.x_center
    np.testing.assert_allclose(prior[N.INTERCEPT].values, icpt, rtol=1e-10)
    # the linear predictor of a row equals intercept + x beta on the user's scale
    Xs = (gd.X - gd.x_center) / gd.x_scale
    eta_internal = prior["intercept_centered"].values[..., None] + prior["beta_std"].values @ Xs.T
    eta_user = prior[N.INTERCEPT].values[..., None] + prior[N.BETA].values @ gd.X.T
    np.testing.assert_allclose(eta_user, eta_internal, rtol=1e-9, atol=1e-9)


def test_sampling_problems_are_reported():
    rng = np.random.default_rng(0)
    post = xr.Dataset({
        N.INTERCEPT: (("chain", "draw"), rng.normal(size=(4, 100)) + np.arange(4)[:, None]),  # chains disagree
        N.TAU: (("chain", "draw"), np.abs(rng.normal(size=(4, 100)))),
    })
    stats = xr.Dataset({"diverging": (("chain", "draw"), np.r_[np.ones(7), np.zeros(393)].reshape(4, 100) > 0)})
    dt = xr.DataTree.from_dict({"posterior": post, "sample_stats": stats})
    with pytest.warns(hp.HierpoolSamplingWarning) as rec:
        report = hp.check_sampling(dt)
    msgs = " ".join(str(w.message) for w in rec)
    assert "R-hat" in msgs and "'intercept'" in msgs
    assert "7 of 400 transitions diverged" in msgs
    assert report["divergences"] == 7 and report["max_rhat"] > 1.2


# ---------------------------------------------------------------------------------------------------
# storage of a fit with the real contract (sampling mocked); reproducibility (real sampling: slow)
@pytest.fixture(scope="module")
def tiny_fit(sim_gaussian):
    """hp.fit's full output (attrs, sample_stats, group effects drawn afterwards) with prior draws for MCMC."""
    with pytest.MonkeyPatch.context() as mp, warnings.catch_warnings():
        mp.setattr(pm, "sample", mock_sample)
        warnings.simplefilter("ignore", hp.HierpoolSamplingWarning)
        return hp.fit(hp.random_intercepts(sim_gaussian, y="y", group="group", predictors=["x1"]),
                      draws=100, chains=2, random_seed=7, sampler="pymc", progressbar=False)


@pytest.mark.slow
def test_reproducible_from_seed(sim_gaussian):
    from conftest import quiet_fit

    def run(seed):
        return quiet_fit(hp.random_intercepts(sim_gaussian, y="y", group="group", predictors=["x1"]),
                         draws=100, tune=100, random_seed=seed)

    first, again, other = run(7), run(7), run(8)
    xr.testing.assert_equal(first["posterior"].to_dataset(), again["posterior"].to_dataset())
    assert not np.allclose(first["posterior"][N.TAU].values, other["posterior"][N.TAU].values)


def test_save_load_round_trip(tiny_fit, tmp_path):
    path = hp.save(tiny_fit, tmp_path / "fit.nc")
    back = hp.load(path)
    assert back.attrs == tiny_fit.attrs
    for group in tiny_fit.children:
        xr.testing.assert_identical(back[group].to_dataset(), tiny_fit[group].to_dataset())
    with pytest.raises(FileExistsError, match="overwrite=True"):
        hp.save(tiny_fit, path)
    hp.save(tiny_fit, path, overwrite=True)
    with pytest.raises(FileNotFoundError):
        hp.load(tmp_path / "nope.nc")


def test_save_load_zarr(tiny_fit, tmp_path):
    pytest.importorskip("zarr")
    back = hp.load(hp.save(tiny_fit, tmp_path / "fit.zarr"))
    assert back.attrs == tiny_fit.attrs
    xr.testing.assert_identical(back["posterior"].to_dataset(), tiny_fit["posterior"].to_dataset())
