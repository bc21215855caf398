"""hp.GroupEncoder and hierpool.analysis.features.

Fast tests replace the sampler with a plug-in posterior (``plugin_sample``: hyperparameters near
data-based values, group effects drawn from their exact conditional by hierpool's own ``finalize``), so the
encoder's data handling, cross-fitting and scikit-learn behaviour are checked without MCMC. Slow tests
sample for real: exact leak-freeness, and the statistical comparison on simulated episodes.
"""

from __future__ import annotations

import pickle
import subprocess
import sys
import warnings

import numpy as np
import pandas as pd
import pytest
import xarray as xr
from fake_fits import make_fit
from scipy.special import expit
from sklearn.base import clone
from sklearn.compose import ColumnTransformer
from sklearn.linear_model import LogisticRegression
from sklearn.model_selection import GroupKFold
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import TargetEncoder
from sklearn.utils.estimator_checks import parametrize_with_checks

import hierpool as hp
from hierpool.analysis.features import FEATURES, check_features, group_features, row_features, top_k_count
from hierpool.core import names as N
from hierpool.inference.sampling import finalize
from hierpool.workflow import encoder as enc_module


# ------------------------------------------------------------------------------------------------------
# a plug-in posterior instead of MCMC (fast tests)
def plugin_sample(model, *, draws, tune, chains, sampler, random_seed):
    """A hierpool fit of ``model`` without MCMC: iid draws of the hyperparameters near data-based values,
    group effects from their exact conditional given each draw (``finalize``, as hp.fit does)."""
    desc = hp.describe(model)
    gd = desc.data
    assert desc.integrates_out_group_effects, "plugin_sample serves collapsed gaussian / integrated models"
    rng = np.random.default_rng(random_seed)
    shape = (2, 40)
    post = {N.INTERCEPT: (N.SAMPLE_DIMS, gd.y_location + 0.02 * rng.normal(size=shape))}
    if gd.n_predictors:
        post[N.BETA] = ((*N.SAMPLE_DIMS, N.PREDICTOR), 0.02 * rng.normal(size=(*shape, gd.n_predictors)))
    if N.TAU in model.named_vars:
        post[N.TAU] = (N.SAMPLE_DIMS, 0.7 * gd.y_scale * np.exp(0.02 * rng.normal(size=shape)))
    if gd.family == "gaussian":
        post[N.SIGMA] = (N.SAMPLE_DIMS, 0.7 * gd.y_scale * np.exp(0.02 * rng.normal(size=shape)))
    ds = xr.Dataset(post, coords={"chain": np.arange(2), "draw": np.arange(40)})
    return finalize(xr.DataTree.from_dict({"posterior": ds}), desc, engine="plugin", log_likelihood=False,
                    random_seed=random_seed)


@pytest.fixture
def plugin(monkeypatch):
    monkeypatch.setattr(enc_module, "_sample", plugin_sample)


def episodes(n_members=60, seed=0, tau=0.8, a=-1.0):
    """Members with 1-8 episodes (most few), bernoulli outcome, no predictors; true effects known."""
    rng = np.random.default_rng(seed)
    sizes = rng.choice(np.arange(1, 9), size=n_members, p=[0.35, 0.25, 0.16, 0.10, 0.06, 0.04, 0.02, 0.02])
    u = rng.normal(0, tau, size=n_members)
    gidx = np.repeat(np.arange(n_members), sizes)
    df = pd.DataFrame({"member": np.array([f"m{j}" for j in range(n_members)], dtype=object)[gidx],
                       "x": rng.normal(size=gidx.size)})
    df["y"] = rng.binomial(1, expit(a + u[gidx]))
    df.attrs.update(u=u, a=a, tau=tau, sizes=sizes)
    return df


# ------------------------------------------------------------------------------------------------------
# analysis.features on synthetic fits
def test_group_features_match_hand_computed_values():
    rng = np.random.default_rng(1)
    ge = rng.normal(size=(2, 300, 4)) + np.array([0.5, -0.5, 2.0, 0.0])
    dt = make_fit("bernoulli", group_effect=ge, intercept=-1.0, tau=0.8, chains=2, draws=300, seed=1)
    table, pop = group_features(dt, "all", ci_prob=0.8, top_k=1)
    assert list(table.columns) == list(FEATURES)
    assert list(table.index) == ["a", "b", "c", "d"]
    flat = ge.reshape(-1, 4)
    np.testing.assert_allclose(table["effect_mean"], flat.mean(0))
    np.testing.assert_allclose(table["effect_sd"], flat.std(0, ddof=1))
    np.testing.assert_allclose(table["estimate"], expit(-1.0 + flat).mean(0))
    ranks = (-flat).argsort(1).argsort(1) + 1  # 1 = largest
    np.testing.assert_allclose(table["rank_pct"], (4 - ranks.mean(0)) / 3)
    np.testing.assert_allclose(table["p_top_k"], (ranks == 1).mean(0))
    assert ((table["rank_pct_width"] >= 0) & (table["rank_pct_width"] <= 1)).all()
    np.testing.assert_array_equal(table["n"], [3, 3, 3, 3])
    assert pop["effect_mean"] == 0 and pop["n"] == 0 and pop["rank_pct"] == 0.5
    assert pop["rank_pct_width"] == 0.8 and pop["p_top_k"] == 0.25
    np.testing.assert_allclose(pop["effect_sd"], 0.8)
    z = np.random.default_rng(0).normal(size=400_000)  # the quadrature against Monte Carlo (SE ~ 3e-4)
    np.testing.assert_allclose(pop["estimate"], expit(-1.0 + 0.8 * z).mean(), atol=1.5e-3)


def test_row_features_give_unseen_groups_the_population():
    dt = make_fit("gaussian", group_effect=np.array([1.0, 2.0, 3.0, 4.0]), tau=2.0)
    table, pop = group_features(dt, ["effect_mean", "effect_sd", "n"])
    out = row_features(table, pop, np.array(["b", "zzz", "a"], dtype=object))
    np.testing.assert_allclose(out[0], [2.0, 0.0, 3.0])
    np.testing.assert_allclose(out[1], [0.0, 2.0, 0.0])
    np.testing.assert_allclose(out[2], [1.0, 0.0, 3.0])


def test_ridge_population_uses_the_fixed_prior_sd():
    dt = make_fit("gaussian", variant="ridge_fixed_effects", lam=4.0, tau=None)
    _, pop = group_features(dt, ["effect_sd"])
    assert pop["effect_sd"] == pytest.approx(0.5)


def test_feature_and_top_k_arguments():
    assert check_features("all") == FEATURES
    assert check_features(["n", "effect_mean"]) == ("effect_mean", "n")
    with pytest.raises(ValueError, match="features=.*valid choices"):
        check_features(["effect_mean", "nope"])
    with pytest.raises(ValueError, match="features"):
        check_features([])
    assert top_k_count(0.1, 95) == 10 and top_k_count(3, 95) == 3 and top_k_count(0.001, 10) == 1
    with pytest.raises(ValueError, match="top_k"):
        top_k_count(0, 10)
    with pytest.raises(TypeError, match="top_k"):
        top_k_count("5", 10)
    with pytest.raises(ValueError, match=r"top_k=11 is out of range.*number of groups \(10\)"):
        top_k_count(11, 10)  # as rank_groups refuses it; a fold's fit clips it (clip=True)
    assert top_k_count(11, 10, clip=True) == 10


# ------------------------------------------------------------------------------------------------------
# the encoder, plug-in posterior
def _enc(**kw):
    kw.setdefault("group", "member")
    kw.setdefault("cv", 3)
    kw.setdefault("random_state", 0)
    return hp.GroupEncoder(**kw)


def test_leak_free_exactly_plugin(plugin):
    df = episodes(60, seed=1)
    X = df[["member"]]
    y = df["y"].to_numpy().copy()
    enc = _enc(features="all")
    before = enc.fit_transform(X, y)
    # members with >= 2 episodes: flipping row i's outcome changes the fits that see it, not row i's features
    for i in np.flatnonzero(df.groupby("member")["y"].transform("size").to_numpy() >= 2)[:3]:
        y2 = y.copy()
        y2[i] = 1 - y2[i]
        enc2 = clone(enc)
        after = enc2.fit_transform(X, y2)
        np.testing.assert_array_equal(after[i], before[i])
        member = df["member"].iloc[i]  # while the fit on all rows, which saw it, moves the member
        assert enc2.encodings_.loc[member, "effect_mean"] != enc.encodings_.loc[member, "effect_mean"]


def test_fit_transform_is_cross_fitted_and_transform_in_sample(plugin):
    df = episodes(60, seed=2)
    enc = _enc()
    cross = enc.fit_transform(df[["member"]], df["y"])
    insample = enc.transform(df[["member"]])
    assert cross.shape == insample.shape == (len(df), 2)
    assert not np.allclose(cross, insample)
    np.testing.assert_allclose(insample, _enc().fit(df[["member"]], df["y"]).transform(df[["member"]]))
    assert enc.family_ == "bernoulli" and list(enc.classes_) == [0, 1]
    assert enc.tau_ == pytest.approx(0.7, rel=0.05)
    assert len(enc.groups_) == df["member"].nunique() and enc.encodings_.shape[0] == len(enc.groups_)
    assert isinstance(enc.datatree_, xr.DataTree)
    hp.shrinkage(enc.datatree_)  # the kept fit is a regular hierpool fit


def test_unseen_groups_get_the_population(plugin):
    df = episodes(40, seed=3)
    enc = _enc(features=["effect_mean", "effect_sd", "n", "rank_pct"]).fit(df[["member"]], df["y"])
    new = pd.DataFrame({"member": ["never seen", df["member"].iloc[0]]})
    Z = enc.transform(new)
    np.testing.assert_allclose(Z[0], [0.0, enc.population_["effect_sd"], 0.5, 0.0])  # FEATURES order
    assert Z[1, 3] == (df["member"] == df["member"].iloc[0]).sum()
    # GroupKFold holds whole members out: every cross-fitted row gets its fold's population features
    Zc = _enc(features=["effect_mean", "n"], cv=GroupKFold(3)).fit_transform(df[["member"]], df["y"])
    np.testing.assert_array_equal(Zc, 0.0)


def test_group_ids_of_another_kind_than_training_are_refused(plugin):
    df = episodes(30, seed=6)
    codes = pd.factorize(df["member"])[0]
    enc = _enc(features=["effect_mean", "n"]).fit(pd.DataFrame({"member": codes}), df["y"])
    # "1" against the training ids 1, 2, ...: no row would match, each would get the population silently
    with pytest.raises(TypeError, match=r"X: group column 'member' holds str labels \(e.g. '1'\)"):
        enc.transform(pd.DataFrame({"member": ["1", "2"]}))
    np.testing.assert_array_equal(enc.transform(pd.DataFrame({"member": [1.0, 10**6]}))[:, 1],
                                  [(codes == 1).sum(), 0.0])  # numbers match numbers by value; unseen: n = 0
    # a count of top groups above the training groups is refused; in the smaller folds it is all of them
    with pytest.raises(ValueError, match="top_k=31 is out of range"):
        _enc(top_k=31).fit(df[["member"]], df["y"])
    assert np.isfinite(_enc(top_k=30, features=["p_top_k"]).fit_transform(df[["member"]], df["y"])).all()


def test_string_and_integer_group_columns_give_the_same_features(plugin):
    df = episodes(40, seed=4)
    codes = pd.factorize(df["member"])[0]
    a = _enc().fit_transform(df[["member"]], df["y"])
    b = _enc().fit_transform(pd.DataFrame({"member": codes}), df["y"])
    c = _enc(group=0).fit_transform(codes[:, None].astype(float), df["y"])  # a numpy array, position 0
    np.testing.assert_allclose(a, b)
    np.testing.assert_allclose(a, c)


def test_predictors_and_columns_by_position(plugin):
    g = hp.datasets.simulate("gaussian", n_groups=30, n_predictors=2, seed=5)
    enc = hp.GroupEncoder(group="group", predictors=["x1"], family="gaussian", cv=2, random_state=0)
    Z = enc.fit_transform(g[["x2", "group", "x1"]], g["y"])
    assert Z.shape == (len(g), 2)
    assert list(enc.datatree_["posterior"]["predictor"].values) == ["x1"]
    arr = g[["group", "x1"]].assign(group=pd.factorize(g["group"])[0]).to_numpy(dtype=float)
    enc2 = hp.GroupEncoder(group=0, predictors=[1], family="gaussian", cv=2, random_state=0).fit(arr, g["y"])
    assert list(enc2.get_feature_names_out()) == ["x0__effect_mean", "x0__effect_sd"]
    with pytest.raises(ValueError, match="predictors includes the group column"):
        hp.GroupEncoder(group="group", predictors=["group"]).fit(g[["group"]], g["y"])
    with pytest.raises(ValueError, match="group='nope' is not a column of X"):
        hp.GroupEncoder(group="nope").fit(g[["group"]], g["y"])


def test_nan_in_the_group_column_is_a_clear_error(plugin):
    df = episodes(30, seed=6)
    X = df[["member"]].copy()
    X.iloc[[2, 5], 0] = None
    with pytest.raises(ValueError, match=r"group column 'member' of X has 2 missing .*first row positions: \[2, 5\]"):
        _enc().fit(X, df["y"])
    fitted = _enc().fit(df[["member"]], df["y"])
    with pytest.raises(ValueError, match="missing"):
        fitted.transform(X)
    with pytest.raises(ValueError, match="missing .* or infinite"):
        _enc(group=0).fit(np.array([[1.0], [np.inf], [2.0]]), [0, 1, 0])


def test_bad_y_is_a_clear_error(plugin):
    df = episodes(30, seed=7)
    X = df[["member"]]
    with pytest.raises(ValueError, match=f"y has {len(df) - 1} values but X has {len(df)} rows"):
        _enc().fit(X, df["y"].iloc[1:])
    with pytest.raises(ValueError, match="must hold only 0 and 1 for family='bernoulli'"):
        _enc(family="bernoulli").fit(X, np.where(np.arange(len(df)) == 0, 2, df["y"]))
    with pytest.raises(ValueError, match="distinct non-numeric labels"):
        _enc().fit(X, np.array(["a", "b", "c"] * (len(df) // 3) + ["a"] * (len(df) % 3), dtype=object))
    with pytest.raises(ValueError, match="missing or infinite"):
        _enc(family="gaussian").fit(X, np.where(np.arange(len(df)) == 3, np.nan, 1.0))
    with pytest.raises(ValueError, match="non-negative integer counts"):
        _enc(family="poisson").fit(X, np.full(len(df), -1.0))
    with pytest.raises(ValueError, match="requires y to be passed"):
        _enc().fit(X)
    # two labels of any kind are a bernoulli outcome, classes_[1] the event
    enc = _enc().fit(X, np.where(df["y"] == 1, "readmitted", "home"))
    assert enc.family_ == "bernoulli" and list(enc.classes_) == ["home", "readmitted"]
    np.testing.assert_allclose(enc.transform(X), _enc().fit(X, df["y"]).transform(X))


@pytest.mark.parametrize(("kw", "err", "match"), [
    ({"family": "binomial"}, ValueError, "family='binomial' is not valid; valid choices"),
    ({"variant": "ridge"}, ValueError, "variant='ridge' is not valid"),
    ({"features": ["rank"]}, ValueError, "features="),
    ({"cv": 1}, ValueError, "cv must be an integer >= 2"),
    ({"cv": "five"}, TypeError, "cv must be"),
    ({"draws": 0}, ValueError, "draws must be an integer >= 1"),
    ({"ci_prob": 90}, ValueError, "ci_prob"),
    ({"predictors": "x"}, TypeError, r"predictors must be a sequence of columns, e.g. \['x'\]"),
    ({"model_kwargs": {"group": "x"}}, ValueError, "model_kwargs must not set"),
])
def test_bad_parameters_are_clear_errors(kw, err, match):
    df = episodes(20, seed=8)
    with pytest.raises(err, match=match):
        _enc(**kw).fit(df[["member", "x"]], df["y"])


def test_pickle_clone_and_set_output(plugin):
    df = episodes(40, seed=9)
    enc = _enc(features=["effect_mean", "n"]).fit(df[["member"]], df["y"])
    back = pickle.loads(pickle.dumps(enc))
    np.testing.assert_array_equal(back.transform(df[["member"]]), enc.transform(df[["member"]]))
    assert back.encodings_.equals(enc.encodings_)
    c = clone(enc)
    assert c.get_params() == enc.get_params() and not hasattr(c, "encodings_")
    out = _enc(features=["effect_mean", "n"]).set_output(transform="pandas").fit_transform(df[["member"]], df["y"])
    assert list(out.columns) == ["member__effect_mean", "member__n"]
    assert out.index.equals(df.index)


def test_pipeline_and_column_transformer(plugin):
    df = episodes(60, seed=10)
    pipe = make_pipeline(_enc(), LogisticRegression())
    pipe.fit(df[["member"]], df["y"])
    p = pipe.predict_proba(pd.DataFrame({"member": ["m1", "new member"]}))[:, 1]
    assert np.all((p > 0) & (p < 1))
    ct = ColumnTransformer([("member", _enc(features=["effect_mean", "n"]), ["member"]),
                            ("rest", "passthrough", ["x"])]).set_output(transform="pandas")
    Z = ct.fit_transform(df[["member", "x"]], df["y"])
    assert list(Z.columns) == ["member__member__effect_mean", "member__member__n", "rest__x"]
    make_pipeline(ct, LogisticRegression()).fit(df[["member", "x"]], df["y"])


def test_import_hierpool_does_not_import_sklearn():
    code = "import sys, hierpool; assert 'sklearn' not in sys.modules; hierpool.GroupEncoder; assert 'sklearn' in sys.modules"
    subprocess.run([sys.executable, "-c", code], check=True)


# scikit-learn's own estimator checks. X is a numeric array here, so the group is column 0 (every distinct
# value a group) and y a numeric outcome (gaussian). Checks that cannot apply, and why:
_CROSS_FIT = ("fit_transform returns cross-fitted features, which differ from fit(X).transform(X) by design "
              "(as scikit-learn's TargetEncoder documents)")
EXPECTED_FAILED = {
    "check_transformer_general": _CROSS_FIT,
    "check_transformer_general(readonly_memmap=True)": _CROSS_FIT,
    "check_transformer_data_not_an_array": _CROSS_FIT,
}


@pytest.mark.usefixtures("plugin")
@parametrize_with_checks([hp.GroupEncoder(group=0, family="gaussian", cv=2, random_state=0)],
                         expected_failed_checks=lambda est: EXPECTED_FAILED)
def test_sklearn_estimator_checks(estimator, check):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", hp.HierpoolSamplingWarning)
        check(estimator)


# ------------------------------------------------------------------------------------------------------
# real sampling
def _quiet(fn, *a, **k):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", hp.HierpoolSamplingWarning)
        return fn(*a, **k)


@pytest.mark.slow
def test_leak_free_exactly_with_mcmc():
    g = hp.datasets.simulate("gaussian", n_groups=40, n_predictors=0, seed=12)
    y = g["y"].to_numpy().copy()
    enc = hp.GroupEncoder(group="group", cv=2, random_state=3, draws=100, tune=100, chains=2)
    before = _quiet(enc.fit_transform, g[["group"]], y)
    i = int(np.flatnonzero(g.groupby("group")["y"].transform("size").to_numpy() >= 2)[0])
    y[i] += 5.0
    after = _quiet(clone(enc).fit_transform, g[["group"]], y)
    np.testing.assert_array_equal(after[i], before[i])
    assert not np.array_equal(after, before)


def _oracle_effect_mean(k, n, a, tau, nodes=80):
    """Exact E[u | k successes in n, a, tau] for u ~ Normal(0, tau) (Gauss-Hermite quadrature)."""
    x, w = np.polynomial.hermite.hermgauss(nodes)
    u = np.sqrt(2.0) * tau * x
    p = expit(a + u)
    lik = w * p[None, :] ** k[:, None] * (1 - p[None, :]) ** (n - k)[:, None]
    return (lik * u).sum(1) / lik.sum(1)


@pytest.mark.slow
def test_next_episode_not_worse_than_target_encoder_and_close_to_the_oracle():
    """1,500 members (1-8 episodes), bernoulli, no predictors. Each member's next episode is predicted
    by a logistic regression on the member's feature, fitted on cross-fitted training features.
    Tolerances: 2 paired standard errors of the mean log-loss difference over the 1,500 next episodes."""
    df = episodes(1500, seed=2026, tau=0.8, a=-1.2)
    u, a, tau = df.attrs["u"], df.attrs["a"], df.attrs["tau"]
    rng = np.random.default_rng(7)
    members = pd.unique(df["member"])
    nxt = pd.DataFrame({"member": members})
    y_next = rng.binomial(1, expit(a + u))
    X, y = df[["member"]], df["y"].to_numpy()

    def next_stage(train_feature, test_feature):  # the effect mean alone (first column)
        lr = LogisticRegression().fit(train_feature.reshape(len(y), -1)[:, :1], y)
        return lr.predict_proba(test_feature.reshape(len(members), -1)[:, :1])[:, 1]

    def losses(p):
        return -(y_next * np.log(p) + (1 - y_next) * np.log1p(-p))

    enc = hp.GroupEncoder(group="member", features=["effect_mean", "effect_sd"], cv=5, random_state=0, draws=500,
                          tune=500, chains=2)
    hp_train = _quiet(enc.fit_transform, X, y)
    ll_hp = losses(next_stage(hp_train, enc.transform(nxt)))
    te = TargetEncoder(target_type="binary", random_state=0)
    ll_te = losses(next_stage(te.fit_transform(X, y), te.transform(nxt)))
    # the oracle: exact posterior mean given the true a and tau (cross-fitted on the same folds is not
    # needed for the next stage: the feature of a training row from its member's other rows)
    k = df.groupby("member", sort=False)["y"].sum().to_numpy()
    n = df.groupby("member", sort=False)["y"].size().to_numpy()
    oracle_next = _oracle_effect_mean(k, n, a, tau)
    gidx = pd.factorize(df["member"])[0]
    k_loo, n_loo = k[gidx] - y, n[gidx] - 1  # leave-own-row-out
    oracle_train = _oracle_effect_mean(k_loo, n_loo, a, tau)
    ll_or = losses(next_stage(oracle_train, oracle_next))

    d_te = ll_hp - ll_te
    se_te = d_te.std(ddof=1) / np.sqrt(d_te.size)
    assert d_te.mean() <= 2 * se_te, (d_te.mean(), se_te)
    d_or = ll_hp - ll_or
    se_or = d_or.std(ddof=1) / np.sqrt(d_or.size)
    assert abs(d_or.mean()) <= 2 * se_or + 1e-3, (d_or.mean(), se_or)
    # the features themselves: given hierpool's posterior means of the intercept and tau, the exact posterior
    # means (quadrature) differ from hierpool's effect means by Monte Carlo error (variance effect_sd^2 / S
    # for S draws, the group effects being exact conditional draws) plus the small effect of integrating over
    # the hyperparameters instead of plugging in their means: mean squared difference within 3x the mean
    # Monte Carlo variance
    post = enc.datatree_["posterior"]
    S = post.sizes["chain"] * post.sizes["draw"]
    plug = _oracle_effect_mean(k, n, float(post["intercept"].mean()), float(post["tau"].mean()))
    tab = enc.encodings_.reindex(members)
    msd = np.mean((tab["effect_mean"].to_numpy() - plug) ** 2)
    mc_var = np.mean(tab["effect_sd"].to_numpy() ** 2 / S)
    assert msd < 3 * mc_var, (msd, mc_var)
