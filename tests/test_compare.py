"""hp.compare (PSIS-LOO), the held-out log density, fold assignment and hp.cross_validate."""

from __future__ import annotations

import warnings

import arviz as az
import numpy as np
import pandas as pd
import pytest
import xarray as xr
from fake_fits import make_fit
from scipy import integrate, stats
from scipy.special import expit, logsumexp

import hierpool as hp
from hierpool.analysis.compare import CVResult, fold_ids, heldout_log_density

COLUMNS = ["model", "rank", "elpd", "se", "elpd_diff", "dse", "p", "weight", "n_pareto_k_bad", "warning",
           "p_worse"]


def _data(seed=0):
    rng = np.random.default_rng(seed)
    return pd.DataFrame({"group": np.repeat(["a", "b", "c", "d"], 3), "x": rng.normal(size=12),
                         "y": rng.normal(size=12)})


def _two_fits(jitter=0.05):
    data = _data()
    a = make_fit(data=data, group_effect=[0.5, -0.5, 0.0, 1.0], jitter=jitter, seed=1)
    b = make_fit(data=data, group_effect=[0.0, 0.0, 0.0, 0.0], jitter=jitter, seed=2)
    return a, b


# ------------------------------------------------------------------------------------------------------
# compare: LOO on synthetic fits (fast)
def test_compare_matches_arviz_loo():
    a, b = _two_fits()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        table = hp.compare({"a": a, "b": b})
        loos = {name: az.loo(dt, var_name="y") for name, dt in (("a", a), ("b", b))}
    assert list(table.columns) == COLUMNS
    assert table["rank"].tolist() == [0, 1]
    assert table["elpd"].is_monotonic_decreasing
    for _, row in table.iterrows():
        assert row["elpd"] == pytest.approx(loos[row["model"]].elpd, rel=1e-12)
        assert row["se"] == pytest.approx(loos[row["model"]].se, rel=1e-12)
        assert row["p"] == pytest.approx(loos[row["model"]].p, rel=1e-12)
    assert table["elpd_diff"].tolist() == pytest.approx((table["elpd"] - table["elpd"].max()).tolist(), abs=1e-9)
    assert table["weight"].sum() == pytest.approx(1.0, abs=1e-6)
    assert table.attrs["ic"] == "loo"


def test_compare_warns_about_high_pareto_k():
    a, b = _two_fits()
    ll = a["log_likelihood"]["y"].values.copy()
    rng = np.random.default_rng(0)
    ll[..., 0] = -rng.exponential(2.0, size=ll.shape[:2])  # importance ratios exp(-ll) with Pareto tail k = 2
    ll[..., 1] = -rng.exponential(2.0, size=ll.shape[:2])
    a["log_likelihood"] = xr.DataTree(a["log_likelihood"].to_dataset().assign(y=(("chain", "draw", "obs_id"), ll)))
    with pytest.warns(UserWarning, match=r"model 'heavy': 2 of 12 observations have Pareto k > 0\.\d+.*cross_validate"):
        table = hp.compare({"heavy": a, "b": b})
    tab = table.set_index("model")
    assert tab.loc["heavy", "n_pareto_k_bad"] == 2 and tab.loc["heavy", "warning"]
    assert tab.loc["b", "n_pareto_k_bad"] == 0 and not tab.loc["b", "warning"]


def test_compare_refuses_different_data():
    a, b = _two_fits()
    other = make_fit(data=_data(5))  # same layout, different responses
    with pytest.raises(ValueError, match="'a' and 'c' were fitted to different data: the response differs"):
        hp.compare({"a": a, "c": other})
    shorter = make_fit(data=pd.DataFrame({"group": list("aabb"), "x": [0.0, 1, 2, 3], "y": [0.0, 1, 2, 3]}))
    with pytest.raises(ValueError, match="12 rows against 4"):
        hp.compare({"a": a, "s": shorter})
    regrouped = b.copy()
    const = regrouped["constant_data"].to_dataset()
    const["group_idx"] = ("obs_id", np.roll(const["group_idx"].values, 1))
    regrouped["constant_data"] = xr.DataTree(const)
    with pytest.raises(ValueError, match="the rows' groups differ"):
        hp.compare({"a": a, "b": regrouped})


def test_compare_bad_arguments():
    a, b = _two_fits()
    no_ll = make_fit(data=_data(), log_lik=False)
    with pytest.raises(ValueError, match=r"fits\['n'\] has no log_likelihood group: refit with .*log_likelihood=True"):
        hp.compare({"a": a, "n": no_ll})
    rowless = xr.DataTree.from_dict({"posterior": b["posterior"].to_dataset(),
                                     "constant_data": b["constant_data"].to_dataset()})
    rowless.attrs = dict(b.attrs)
    with pytest.raises(ValueError, match=r"fits\['r'\] keeps no rows.*cross_validate"):
        hp.compare({"a": a, "r": rowless})
    with pytest.raises(ValueError, match="at least 2 models"):
        hp.compare({"a": a})
    with pytest.raises(TypeError, match="fits must be a dict"):
        hp.compare([a, b])
    with pytest.raises(ValueError, match=r"ic='waic' is not valid; valid choices: 'loo'"):
        hp.compare({"a": a, "b": b}, ic="waic")
    with pytest.raises(TypeError, match=r"fits\['b'\] must be an xarray.DataTree"):
        hp.compare({"a": a, "b": "fit.nc"})
    with pytest.raises(TypeError, match="mixes fits and CV results"):
        hp.compare({"a": a, "cv": _cv_result([0.0, 1.0])})


# ------------------------------------------------------------------------------------------------------
# the held-out log predictive density (fast)
def test_heldout_rows_of_known_groups_by_hand():
    rng = np.random.default_rng(3)
    ge = rng.normal(0.0, 0.5, size=(2, 200, 4))
    sigma = np.abs(rng.normal(1.0, 0.1, size=(2, 200)))
    dt = make_fit(intercept=0.3, beta=[1.0], group_effect=ge, sigma=sigma, chains=2, draws=200)
    test = pd.DataFrame({"group": ["b", "d"], "x": [0.5, -1.0], "y": [1.2, -0.4]})
    out = heldout_log_density(dt, test)
    assert out["unit_kind"].tolist() == ["row", "row"]
    for i, (g, x, y) in enumerate(zip([1, 3], [0.5, -1.0], [1.2, -0.4], strict=True)):
        eta = 0.3 + x + ge[..., g]
        hand = logsumexp(stats.norm.logpdf(y, eta, sigma)) - np.log(400)
        assert out.loc[i, "elpd_i"] == pytest.approx(hand, abs=1e-10)


def test_heldout_new_gaussian_group_equals_the_exact_marginal():
    rng = np.random.default_rng(4)
    icpt = rng.normal(0.2, 0.1, size=(1, 50))
    tau = np.abs(rng.normal(1.5, 0.2, size=(1, 50)))
    sigma = np.abs(rng.normal(0.8, 0.1, size=(1, 50)))
    dt = make_fit(intercept=icpt, beta=[0.5], tau=tau, sigma=sigma, chains=1, draws=50)
    test = pd.DataFrame({"group": ["new", "new", "new", "other"], "x": [0.0, 1.0, -1.0, 2.0],
                         "y": [1.0, 2.5, 0.1, -1.0]})
    out = heldout_log_density(dt, test).set_index("group")
    assert out["unit_kind"].tolist() == ["group", "group"] and out.loc["new", "n_rows"] == 3
    x, y = test["x"].to_numpy(), test["y"].to_numpy()
    for label, rows in (("new", [0, 1, 2]), ("other", [3])):
        m = len(rows)
        lp = [stats.multivariate_normal.logpdf(y[rows], icpt[0, s] + 0.5 * x[rows],
                                               sigma[0, s] ** 2 * np.eye(m) + tau[0, s] ** 2 * np.ones((m, m)))
              for s in range(50)]
        assert out.loc[label, "elpd_i"] == pytest.approx(logsumexp(lp) - np.log(50), abs=1e-9)


@pytest.mark.parametrize("family", ["bernoulli", "poisson"])
def test_heldout_new_group_quadrature_matches_numerical_integration(family):
    rng = np.random.default_rng(5)
    icpt = rng.normal(-0.3, 0.2, size=(1, 8))
    tau = np.abs(rng.normal(1.2, 0.3, size=(1, 8)))
    dt = make_fit(family, intercept=icpt, beta=[0.4], tau=tau, chains=1, draws=8)
    y = [1.0, 1.0, 0.0, 1.0] if family == "bernoulli" else [3.0, 0.0, 5.0, 2.0]
    test = pd.DataFrame({"group": ["n"] * 4, "x": [0.0, 1.0, -0.5, 2.0], "y": y})
    got = heldout_log_density(dt, test)["elpd_i"].iloc[0]
    x, yv = test["x"].to_numpy(), np.asarray(y)
    dens = []
    for s in range(8):
        def f(u, s=s):
            eta = icpt[0, s] + 0.4 * x + u
            ll = stats.bernoulli.logpmf(yv, expit(eta)) if family == "bernoulli" else stats.poisson.logpmf(yv, np.exp(eta))
            return np.exp(ll.sum()) * stats.norm.pdf(u, 0.0, tau[0, s])
        dens.append(integrate.quad(f, -12 * tau[0, s], 12 * tau[0, s], epsabs=0, epsrel=1e-11, limit=200)[0])
    assert got == pytest.approx(np.log(np.mean(dens)), abs=1e-7)


def test_heldout_ridge_new_group_uses_prior_sd():
    dt = make_fit(variant="ridge_fixed_effects", lam=4.0, tau=None, sigma=1.0, chains=1, draws=5)
    test = pd.DataFrame({"group": ["n"], "x": [0.0], "y": [0.7]})
    with pytest.warns(UserWarning, match="no tau"):
        got = heldout_log_density(dt, test)["elpd_i"].iloc[0]
    assert got == pytest.approx(stats.norm.logpdf(0.7, 0.0, np.sqrt(1.0 + 0.25)), abs=1e-10)


# ------------------------------------------------------------------------------------------------------
# folds (fast)
def test_fold_ids_by_row_keep_every_held_out_group_in_training():
    rng = np.random.default_rng(0)
    sizes = rng.integers(1, 8, size=40)
    groups = np.repeat([f"g{j}" for j in range(40)], sizes)
    fold = fold_ids(groups, 3, "row", np.random.default_rng(1))
    singletons = np.isin(groups, [f"g{j}" for j in np.flatnonzero(sizes == 1)])
    assert (fold[singletons] == -1).all() and (fold[~singletons] >= 0).all()
    counts = np.bincount(fold[fold >= 0], minlength=3)
    assert counts.max() - counts.min() <= 1
    for k in range(3):
        held, train = set(groups[fold == k]), set(groups[fold != k])
        assert held <= train


def test_fold_ids_by_group_hold_out_whole_groups():
    groups = np.repeat([f"g{j}" for j in range(10)], 3)
    fold = fold_ids(groups, 3, "group", np.random.default_rng(2))
    for g in set(groups):
        assert len(set(fold[groups == g])) == 1
    assert sorted(np.bincount(fold) // 3) == [3, 3, 4]  # groups per fold
    with pytest.raises(ValueError, match="needs more groups"):
        fold_ids(np.array(["a", "b"]), 2, "group", np.random.default_rng(0))


def _cv_result(values, by="group", folds=None):
    values = np.asarray(values, dtype=float)
    n = values.size
    folds = np.arange(n) % 2 if folds is None else folds
    pw = pd.DataFrame({"unit": [f"u{i}" for i in range(n)], "group": [f"u{i}" for i in range(n)], "fold": folds,
                       "n_rows": 1, "elpd_i": values})
    per_fold = pw.groupby("fold")["elpd_i"].sum().rename("elpd").reset_index().assign(sampling_problems=0)
    return CVResult(elpd=float(values.sum()), se=float(np.sqrt(n * values.var())), by=by, n_folds=2, n_units=n,
                    pointwise=pw, per_fold=per_fold, n_always_train=0, n_samples=100, variant="test")


def test_compare_cv_results_by_hand():
    a = _cv_result([-1.0, -2.0, -1.5, -0.5])
    b = _cv_result([-1.2, -2.5, -1.0, -2.0])
    table = hp.compare({"b": b, "a": a})
    assert table["model"].tolist() == ["a", "b"] and table["rank"].tolist() == [0, 1]
    diff = b.pointwise["elpd_i"].to_numpy() - a.pointwise["elpd_i"].to_numpy()
    row = table.set_index("model").loc["b"]
    assert row["elpd"] == pytest.approx(-6.7) and row["elpd_diff"] == pytest.approx(diff.sum())
    assert row["dse"] == pytest.approx(np.sqrt(4 * diff.var()))
    assert np.isnan(row["p"]) and row["n_pareto_k_bad"] == 0
    assert table.attrs["ic"] == "kfold_group"
    with pytest.raises(ValueError, match="not comparable"):
        hp.compare({"a": a, "r": _cv_result([-1.0, -2.0, -1.5, -0.5], by="row")})
    with pytest.raises(ValueError, match="different units or folds"):
        hp.compare({"a": a, "f": _cv_result([-1.0, -2.0, -1.5, -0.5], folds=np.array([1, 0, 1, 0]))})


def test_cross_validate_bad_arguments():
    df = hp.datasets.simulate("gaussian", n_groups=6, seed=1)
    with pytest.raises(ValueError, match="needs group="):
        hp.cross_validate(hp.random_intercepts, df, y="y")
    with pytest.raises(ValueError, match="folds must be an integer >= 2; got 1"):
        hp.cross_validate(hp.random_intercepts, df, folds=1, y="y", group="group")
    with pytest.raises(ValueError, match=r"by='groups' is not valid; valid choices: 'row', 'group'"):
        hp.cross_validate(hp.random_intercepts, df, by="groups", y="y", group="group")
    with pytest.raises(TypeError, match="data must be a pandas DataFrame"):
        hp.cross_validate(hp.random_intercepts, df.to_dict(), y="y", group="group")
    with pytest.raises(TypeError, match="factory must be a model factory"):
        hp.cross_validate("random_intercepts", df, y="y", group="group")
    with pytest.raises(ValueError, match="group='county' is not a column"):
        hp.cross_validate(hp.random_intercepts, df, y="y", group="county")
    with pytest.raises(TypeError, match=r"factory\['x'\] must be a factory or a \(factory, kwargs dict\) pair"):
        hp.cross_validate({"x": (hp.random_intercepts, 3)}, df, y="y", group="group")


# ------------------------------------------------------------------------------------------------------
# real fits (slow)
@pytest.mark.slow
def test_compare_three_variants_equals_arviz_loo(gaussian_fits):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        table = hp.compare(gaussian_fits)
        loos = {name: az.loo(dt, var_name="y", pointwise=True) for name, dt in gaussian_fits.items()}
    assert sorted(table["model"]) == sorted(gaussian_fits)
    assert table["rank"].tolist() == [0, 1, 2]
    for _, row in table.iterrows():
        lo = loos[row["model"]]
        assert row["elpd"] == pytest.approx(lo.elpd, rel=1e-12)
        assert row["n_pareto_k_bad"] == int((lo.pareto_k.values > lo.good_k).sum())
    best = loos[table["model"].iloc[0]].elpd_i.values
    for _, row in table.iloc[1:].iterrows():
        d = loos[row["model"]].elpd_i.values - best
        assert row["elpd_diff"] == pytest.approx(d.sum(), rel=1e-9)
        assert row["dse"] == pytest.approx(np.sqrt(d.size * d.var()), rel=1e-9)


# PyMC's own NUTS in one process compiles a small model faster than nutpie: most of a fold's time is compiling
CV_FIT = {"draws": 200, "tune": 200, "chains": 2, "sampler": "pymc", "cores": 1}
VARIANTS = {
    "random_intercepts": (hp.random_intercepts, {}),
    "ridge_tiny_lam": (hp.ridge_fixed_effects, {"lam": 1e-4}),
    "regularized": (hp.regularized_hierarchical, {"penalty": "ridge"}),
}


@pytest.fixture(scope="module")
def cv_data():
    """18 groups of 1-4 rows (tau = 1, sigma = 1): small groups, where pooling matters."""
    return hp.datasets.simulate("gaussian", n_groups=18, group_sizes=(1, 4), n_predictors=1, seed=3)


def _run_cv(cv_data, by):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", hp.HierpoolSamplingWarning)
        warnings.filterwarnings("ignore", message=".*no tau.*", category=UserWarning)
        warnings.filterwarnings("ignore", message=".*overflow.*", category=RuntimeWarning)  # ridge, sd 100
        return hp.cross_validate(VARIANTS, cv_data, folds=3, by=by, random_seed=0, fit_kwargs=CV_FIT, y="y",
                                 group="group", predictors=["x1"])


def _check_sums(table, results, n_units):
    assert table["rank"].tolist() == [0, 1, 2]
    assert table["elpd"].is_monotonic_decreasing
    for _, row in table.iterrows():
        r = results[row["model"]]
        assert r.n_folds == 3 and r.n_units == n_units == len(r.pointwise)
        assert r.elpd == pytest.approx(r.per_fold["elpd"].sum(), abs=1e-9)
        assert r.elpd == pytest.approx(r.pointwise["elpd_i"].sum(), abs=1e-9)
        assert row["elpd"] == pytest.approx(r.elpd, abs=1e-9)
        assert r.se == pytest.approx(np.sqrt(n_units * r.pointwise["elpd_i"].var(ddof=0)), rel=1e-9)
        assert r.per_fold["n_test_rows"].sum() + r.n_always_train == 39


@pytest.mark.slow
def test_cross_validate_by_row_three_variants(cv_data):
    assert len(cv_data) == 39
    table = _run_cv(cv_data, "row")
    results = table.attrs["cv_results"]
    singletons = int((cv_data.groupby("group").size() == 1).sum())
    _check_sums(table, results, 39 - singletons)
    r = results["random_intercepts"]
    assert r.n_always_train == singletons and r.by == "row"
    # held-out rows of known groups: each scored once, and the rows' labels are data's index labels
    assert sorted(r.pointwise["unit"]) == sorted(cv_data.index[~cv_data["group"].isin(
        cv_data.groupby("group").size().loc[lambda s: s == 1].index)])
    # no model predicts a held-out row better than the truth, N(y | true mean, sigma), beyond chance: by
    # Gibbs' inequality each pointwise difference d_i = elpd_i - log p_true(y_i) has expectation <= 0, so
    # sum(d) stays below 4.5 of its standard error sqrt(n var(d)) (the paired SE, as hp.compare's dse)
    truth = cv_data.attrs["truth"]
    mean = truth["intercept"] + truth["beta"][0] * cv_data["x1"] + cv_data["true_group_effect"]
    oracle = pd.Series(stats.norm.logpdf(cv_data["y"], mean, truth["sigma"]), index=cv_data.index)
    for name, res in results.items():
        d = res.pointwise["elpd_i"].to_numpy() - oracle.loc[res.pointwise["unit"]].to_numpy()
        assert d.sum() < 4.5 * np.sqrt(d.size * d.var()), (name, d.sum(), np.sqrt(d.size * d.var()))


@pytest.mark.slow
def test_cross_validate_by_group_ridge_with_tiny_lam_predicts_new_groups_worst(cv_data):
    table = _run_cv(cv_data, "group")
    results = table.attrs["cv_results"]
    _check_sums(table, results, 18)
    assert table.attrs["ic"] == "kfold_group"
    # a nearly unpooled ridge (prior sd 100 for an unseen group) assigns a new group's rows a density
    # ~100 times too flat per group: worse than random intercepts, which learned tau ~ 1, by more than 4.5
    # standard errors of the paired difference (dse); by chance with probability < 1e-5
    assert table["model"].iloc[-1] == "ridge_tiny_lam"
    row = table.set_index("model").loc["ridge_tiny_lam"]
    assert row["elpd_diff"] < -4.5 * row["dse"], (row["elpd_diff"], row["dse"])
