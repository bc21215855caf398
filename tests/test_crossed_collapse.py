"""Gaussian models with several grouping factors: the first factor integrated out given the others
(``collapse="gaussian_crossed"``, :mod:`hierpool.models.crossed`; hierpool issue 15).

Fast tests check exact identities: the collapsed log-likelihood (numpy and the model's PyTensor graph)
against the dense multivariate-normal marginal from scipy, and the conditional moments of the member
effects against the dense Gaussian posterior, to 1e-8; the conditional draws against those moments within
Monte Carlo error. The slow test compares collapsed and row-level posteriors on simulated crossed data.
"""

from __future__ import annotations

import json
import warnings

import numpy as np
import pandas as pd
import pytest
import xarray as xr
from scipy.stats import multivariate_normal

import hierpool as hp
from hierpool.core import names as N
from hierpool.data.crossed_stats import crossed_gaussian_stats
from hierpool.inference.crossed_draws import count_matrices, crossed_group_effects
from hierpool.inference.sampling import finalize
from hierpool.models.collapse import data_for
from hierpool.models.crossed import crossed_conditional_moments, crossed_data, crossed_gaussian_marginal_logp


def _df(seed=0, J=15, H=4, H2=3, P=2, unbalanced=True):
    """Members with 1-5 rows at random hospitals (and wards, a third crossed factor)."""
    rng = np.random.default_rng(seed)
    n = rng.integers(1, 6, J) if unbalanced else np.full(J, 3)
    member = np.repeat([f"m{j}" for j in range(J)], n)
    N_ = member.size
    hosp = np.array([f"h{h}" for h in range(H)])[rng.integers(0, H, N_)]
    hosp[:H] = [f"h{h}" for h in range(H)]  # every level present
    ward = np.array([f"w{h}" for h in range(H2)])[rng.integers(0, H2, N_)]
    ward[:H2] = [f"w{h}" for h in range(H2)]
    X = rng.normal(size=(N_, P)) * [1.0, 3.0][:P] + [0.0, 2.0][:P]
    y = 1.0 + X @ np.array([0.5, -0.2][:P]) + rng.normal(size=N_)
    out = pd.DataFrame({"y": y, "member": member, "hospital": hosp, "ward": ward})
    for k in range(P):
        out[f"x{k}"] = X[:, k]
    return out


def _dense_marginal(gd, a, b, tau, sigma, effects):
    """log N(y | a + Xs b + sum_f Z_f v_f, tau^2 Z Z' + sigma^2 I): the member effects integrated out."""
    mean = a + (gd.Xs @ b if b is not None else 0.0)
    for f, v in zip(gd.factors, effects, strict=True):
        mean = mean + v[f.idx]
    Z = np.zeros((gd.n_obs, gd.n_groups))
    Z[np.arange(gd.n_obs), gd.group_idx] = 1.0
    cov = tau**2 * Z @ Z.T + sigma**2 * np.eye(gd.n_obs)
    return multivariate_normal(mean, cov).logpdf(gd.y)


def _random_params(gd, rng):
    a = rng.normal(1.0, 0.5)
    b = rng.normal(0, 0.5, gd.n_predictors) if gd.n_predictors else None
    tau, sigma = rng.uniform(0.3, 2.0, 2)
    effects = [rng.normal(0, 0.8, f.n_levels) for f in gd.factors]
    return a, b, tau, sigma, effects


@pytest.mark.parametrize("groups, P", [(["member", "hospital"], 2), (["member", "hospital"], 0),
                                       (["member", "hospital", "ward"], 1), ("hospital/ward", 1)])
def test_collapsed_loglik_equals_dense_mvn(groups, P):
    preds = [f"x{k}" for k in range(P)]
    gd = hp.prepare(_df(P=max(P, 1)), y="y", group=groups, predictors=preds)
    data = crossed_data(crossed_gaussian_stats(gd))
    rng = np.random.default_rng(1)
    for _ in range(5):
        a, b, tau, sigma, effects = _random_params(gd, rng)
        got = crossed_gaussian_marginal_logp(data, a, b, tau, sigma, effects, lib=np)
        assert got == pytest.approx(_dense_marginal(gd, a, b, tau, sigma, effects), abs=1e-8)


def _model_potential(model, point):
    (out,) = model.replace_rvs_by_values([model[N.Y_MARGINAL]])
    fn = model.compile_fn(out, inputs=model.value_vars, on_unused_input="ignore")
    return float(fn(point))


def test_model_potential_equals_dense_mvn_and_refits():
    gd = hp.prepare(_df(), y="y", group=["member", "hospital", "ward"], predictors=["x0", "x1"])
    model = hp.random_intercepts(gd, centered=False)  # the point below gives the further effects non-centered
    assert hp.describe(model).collapse == "gaussian_crossed"
    assert N.GROUP_EFFECT not in model.named_vars and N.factor_var(N.GROUP_EFFECT, "hospital") in model.named_vars
    rng = np.random.default_rng(2)
    a, b, tau, sigma, effects = _random_params(gd, rng)
    th, tw = 0.7, 1.3
    point = {"intercept_centered": a, "beta_std": b, "tau_log__": np.log(tau), "sigma_log__": np.log(sigma),
             "tau__hospital_log__": np.log(th), "tau__ward_log__": np.log(tw),
             "group_effect_z__hospital": effects[0] / th, "group_effect_z__ward": effects[1] / tw}
    assert _model_potential(model, point) == pytest.approx(_dense_marginal(gd, a, b, tau, sigma, effects), abs=1e-8)
    # a new response of the same design through the data containers (no rebuild)
    y2 = rng.normal(size=gd.n_obs)
    with model:
        pm_set = data_for(model, y2)
        import pymc as pm

        pm.set_data(pm_set)
    gd2 = hp.prepare(_df().assign(y=y2), y="y", group=["member", "hospital", "ward"], predictors=["x0", "x1"])
    assert _model_potential(model, point) == pytest.approx(_dense_marginal(gd2, a, b, tau, sigma, effects), abs=1e-8)


def test_collapse_choices():
    df = _df()
    gd = hp.prepare(df, y="y", group=["member", "hospital"], predictors=["x0"])
    assert hp.describe(hp.random_intercepts(gd, collapse=True)).collapse == "gaussian_crossed"
    assert hp.describe(hp.random_intercepts(gd, collapse=False)).collapse is None
    assert hp.describe(hp.ridge_fixed_effects(gd, lam=2.0)).collapse == "gaussian_crossed"
    assert hp.describe(hp.regularized_hierarchical(gd, penalty="ridge")).collapse == "gaussian_crossed"
    with pytest.raises(ValueError, match=r"collapse='integrated'"):
        hp.random_intercepts(gd, collapse="integrated")
    with pytest.raises(ValueError, match=r"collapse='yes' is not valid; valid choices"):
        hp.random_intercepts(gd, collapse="yes")
    dfb = df.assign(y=(df["y"] > df["y"].median()).astype(int))
    gdb = hp.prepare(dfb, y="y", group=["member", "hospital"], family="bernoulli")
    assert hp.describe(hp.random_intercepts(gdb)).collapse is None
    with pytest.raises(ValueError, match=r"collapse=True: a model with several grouping factors .* "
                                         r"family='bernoulli'"):
        hp.random_intercepts(gdb, collapse=True)


def _dense_conditional(gd, a, b, tau, sigma, effects):
    """Mean and sd of u | y, a, b, v, tau, sigma from the dense normal: precision Z'Z / s2 + I / t2."""
    r = gd.y - a - (gd.Xs @ b if b is not None else 0.0)
    for f, v in zip(gd.factors, effects, strict=True):
        r = r - v[f.idx]
    Z = np.zeros((gd.n_obs, gd.n_groups))
    Z[np.arange(gd.n_obs), gd.group_idx] = 1.0
    prec = Z.T @ Z / sigma**2 + np.eye(gd.n_groups) / tau**2
    cov = np.linalg.inv(prec)
    return cov @ Z.T @ r / sigma**2, np.sqrt(np.diag(cov))


def test_conditional_moments_and_draws_equal_closed_form():
    gd = hp.prepare(_df(J=12), y="y", group=["member", "hospital", "ward"], predictors=["x0", "x1"])
    cs = crossed_gaussian_stats(gd)
    Cs = count_matrices(cs)
    rng = np.random.default_rng(3)
    a, b, tau, sigma, effects = _random_params(gd, rng)
    wsum = sum(Cf @ v for Cf, v in zip(Cs, effects, strict=True))[None, :]
    m, sd = crossed_conditional_moments(cs, [a], b[None, :], [tau], [sigma], wsum)
    m_ref, sd_ref = _dense_conditional(gd, a, b, tau, sigma, effects)
    np.testing.assert_allclose(m[0], m_ref, rtol=0, atol=1e-8)
    np.testing.assert_allclose(sd[0], sd_ref, rtol=0, atol=1e-8)
    # the draws after sampling: 4 x 2000 posterior draws all at this one parameter value (on the user's
    # scale: intercept at x = 0, beta / sd(x)); their mean and sd per member against the closed form.
    # Standard errors: sd / sqrt(8000) for the mean and sd / sqrt(2 * 8000) for the sd; allow 5 of them
    # (12 members x 2 statistics: a false alarm has probability about 1e-5).
    model = hp.random_intercepts(gd)
    C, D = 4, 2000
    beta = b / gd.x_scale
    dims = ("chain", "draw")
    post = xr.Dataset({
        N.INTERCEPT: (dims, np.full((C, D), a - beta @ gd.x_center)),
        N.BETA: ((*dims, N.PREDICTOR), np.broadcast_to(beta, (C, D, 2)).copy()),
        N.TAU: (dims, np.full((C, D), tau)), N.SIGMA: (dims, np.full((C, D), sigma)),
        "group_effect__hospital": ((*dims, "group__hospital"), np.broadcast_to(effects[0], (C, D, 4)).copy()),
        "group_effect__ward": ((*dims, "group__ward"), np.broadcast_to(effects[1], (C, D, 3)).copy()),
    })
    u = crossed_group_effects(post, hp.describe(model), np.random.SeedSequence(5)).values.reshape(C * D, -1)
    S = C * D
    assert np.all(np.abs(u.mean(0) - m_ref) < 5 * sd_ref / np.sqrt(S))
    assert np.all(np.abs(u.std(0) - sd_ref) < 5 * sd_ref / np.sqrt(2 * S))


def test_finalize_draws_member_effects_and_loglik():
    """hp.fit's finalize on known draws of the sampled parameters: group_effect appears, the stored
    log-likelihood is the row-level one at those draws (exact)."""
    gd = hp.prepare(_df(J=10), y="y", group=["member", "hospital"], predictors=["x0"])
    model = hp.random_intercepts(gd)
    rng = np.random.default_rng(4)
    C, D = 2, 50
    dims = ("chain", "draw")
    post = xr.Dataset({
        N.INTERCEPT: (dims, rng.normal(1, 0.1, (C, D))), N.BETA: ((*dims, N.PREDICTOR), rng.normal(0.5, 0.05, (C, D, 1))),
        N.TAU: (dims, rng.uniform(0.5, 1, (C, D))), N.SIGMA: (dims, rng.uniform(0.8, 1.2, (C, D))),
        "group_effect__hospital": ((*dims, "group__hospital"), rng.normal(0, 0.5, (C, D, 4))),
        "tau__hospital": (dims, rng.uniform(0.3, 0.8, (C, D))),
    }, coords={"chain": np.arange(C), "draw": np.arange(D)})
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        dt = finalize(xr.DataTree.from_dict({"posterior": post}), hp.describe(model), engine="external",
                      log_likelihood=True, random_seed=1)
    p = dt["posterior"]
    assert p["group_effect"].sizes == {"chain": C, "draw": D, "group": gd.n_groups}
    S = C * D
    eta = (p["intercept"].values.reshape(S, 1) + p["beta"].values.reshape(S, 1) @ gd.X.T
           + p["group_effect"].values.reshape(S, -1)[:, gd.group_idx]
           + p["group_effect__hospital"].values.reshape(S, -1)[:, gd.factors[0].idx])
    s = p["sigma"].values.reshape(S, 1)
    hand = -0.5 * ((gd.y - eta) / s) ** 2 - np.log(s) - 0.5 * np.log(2 * np.pi)
    np.testing.assert_allclose(dt["log_likelihood"]["y"].values.reshape(S, -1), hand, rtol=0, atol=1e-8)
    assert json.loads(dt.attrs[N.ATTR_SETTINGS])["collapse"] == "gaussian_crossed"
    hp.shrinkage(dt, factor="hospital")


@pytest.mark.slow
def test_collapsed_and_row_level_posteriors_agree():
    """40 members (1-5 rows) x 6 hospitals, simulated with tau = 1, tau_h = 0.7, sigma = 0.8. Posterior
    means of the population parameters and of a few member and hospital effects from the collapsed and
    the row-level fits (4 x 1000 draws each, different seeds) differ by less than 4.5 combined Monte Carlo
    standard errors (sqrt(mcse_1^2 + mcse_2^2), ArviZ's mcse_mean); 13 comparisons, so a false alarm has
    probability about 1e-4."""
    import arviz as az

    rng = np.random.default_rng(7)
    J, H = 40, 6
    n = rng.integers(1, 6, J)
    member = np.repeat(np.arange(J), n)
    hosp = rng.integers(0, H, member.size)
    x = rng.normal(size=member.size)
    y = (1.0 + 0.5 * x + rng.normal(0, 1.0, J)[member] + rng.normal(0, 0.7, H)[hosp]
         + rng.normal(0, 0.8, member.size))
    df = pd.DataFrame({"y": y, "x": x, "member": [f"m{j}" for j in member], "hospital": [f"h{h}" for h in hosp]})
    gd = hp.prepare(df, y="y", group=["member", "hospital"], predictors=["x"])
    fits = {}
    for how, seed in (("auto", 1), (False, 2)):
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            fits[how] = hp.fit(hp.random_intercepts(gd, collapse=how), draws=1000, tune=1000, chains=4, cores=2,
                               random_seed=seed, progressbar=False, target_accept=0.95)
    names = ["intercept", "beta", "tau", "sigma", "tau__hospital", "group_effect__hospital", "group_effect"]
    sums = {k: az.summary(fits[k], var_names=names, round_to="none") for k in fits}
    rows = [r for r in sums["auto"].index if not r.startswith("group_effect[") or r in
            ("group_effect[m0]", "group_effect[m1]", "group_effect[m2]")]
    rows = [r for r in rows if not r.startswith("group_effect__hospital[") or r in
            ("group_effect__hospital[h0]", "group_effect__hospital[h1]", "group_effect__hospital[h2]")]
    assert len(rows) == 11
    for r in rows:
        s1, s2 = sums["auto"].loc[r], sums[False].loc[r]
        se = np.hypot(s1["mcse_mean"], s2["mcse_mean"])
        assert abs(s1["mean"] - s2["mean"]) < 4.5 * se, (r, s1["mean"], s2["mean"], se)
    # posterior sd of tau (Monte Carlo se of an sd: about mcse_sd), loosely
    for r in ("tau", "tau__hospital"):
        s1, s2 = sums["auto"].loc[r], sums[False].loc[r]
        assert abs(s1["sd"] - s2["sd"]) < 4.5 * np.hypot(s1["mcse_sd"], s2["mcse_sd"]), r
