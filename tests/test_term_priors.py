"""Priors per coefficient (``priors={"beta": {name: Prior}}``) and where the intercept's prior sits
(``intercept_at="means"`` or ``"zero"``): the model's density against hand-written PyMC models, the
description, refusals, the spec format, the Gibbs plan's prior, and (slow) fits pinned by tight priors."""

from __future__ import annotations

import json
import math
import textwrap

import numpy as np
import pymc as pm
import pytensor.tensor as pt
import pytest
from conftest import compare_posteriors, quiet_fit
from scipy.stats import multivariate_normal

import hierpool as hp
from hierpool.core import names as N
from hierpool.inference import gibbs
from hierpool.workflow.spec import SpecError, parse_spec

TIGHT = hp.Prior("Normal", mu=0.7, sigma=0.5)


def _data(family: str):
    """Two predictors; x1 shifted far from zero so that the two intercept placements differ a lot."""
    df = hp.datasets.simulate(family, n_groups=12, n_predictors=2, seed=5)
    df["x1"] = 4.0 + 2.0 * df["x1"]
    return df


def _reference_model(gd, intercept_at: str, family: str) -> pm.Model:
    """The model written by hand on the user's scale: beta[x1] ~ Normal(0.7, 0.5); x2 keeps the default
    Normal(0, 2.5 s) per sd of x2; the intercept's default Normal(m, 2.5 s) at the means, or at zero
    Normal(m, 2.5 s sqrt(1 + sum (xbar/sd)^2)) (the documented default there)."""
    s, m = gd.y_scale, gd.y_location
    xc, xs = np.asarray(gd.x_center), np.asarray(gd.x_scale)
    with pm.Model() as ref:
        b1 = pm.Normal("beta[x1]", 0.7, 0.5)
        b2 = pm.Normal("beta_std[x2]", 0.0, 2.5 * s) / xs[1]
        beta = pt.stack([b1, b2])
        if intercept_at == "zero":
            a = pm.Normal("intercept", m, 2.5 * s * math.sqrt(1.0 + float(np.sum((xc / xs) ** 2))))
        else:
            a = pm.Normal("intercept_centered", m, 2.5 * s) - pt.dot(beta, xc)
        tau = pm.HalfStudentT("tau", nu=3, sigma=s)
        z = pm.Normal("group_effect_z", 0.0, 1.0, shape=gd.n_groups)
        eta = a + pt.dot(pt.as_tensor_variable(gd.X), beta) + tau * z[gd.group_idx]
        if family == "gaussian":
            sigma = pm.HalfStudentT("sigma", nu=3, sigma=s)
            pm.Normal("y", eta, sigma, observed=gd.y)
        else:
            pm.Bernoulli("y", logit_p=eta, observed=gd.y)
    return ref


@pytest.mark.parametrize("family", ["gaussian", "bernoulli"])
@pytest.mark.parametrize("intercept_at", ["means", "zero"])
def test_logp_equals_hand_written_model(family, intercept_at):
    df = _data(family)
    model = hp.random_intercepts(df, y="y", group="group", predictors=["x1", "x2"], family=family,
                                 priors={"beta": {"x1": TIGHT}}, intercept_at=intercept_at, collapse=False)
    gd = hp.describe(model).data
    ref = _reference_model(gd, intercept_at, family)
    names = {v.name for v in model.value_vars}
    assert names == {v.name for v in ref.value_vars}
    ours, theirs = model.compile_logp(), ref.compile_logp()
    rng = np.random.default_rng(7)
    for _ in range(5):
        point = {v.name: rng.normal(0.0, 0.8, size=model.initial_point()[v.name].shape) for v in model.value_vars}
        # exact identity up to floating point: 1e-8 absolute on log densities of order 100
        assert ours(point) == pytest.approx(theirs(point), rel=0, abs=1e-8)
    # the reported intercept is the one at x = 0 either way; intercept_centered the one at the means
    f = model.compile_fn([model[N.INTERCEPT], model[N.INTERCEPT_CENTERED], model[N.BETA]], inputs=model.value_vars,
                         on_unused_input="ignore")
    a, a_c, beta = f(point)
    assert a_c - a == pytest.approx(float(beta @ gd.x_center), abs=1e-10)


def test_intercept_at_zero_without_predictors_is_the_same_model():
    df = _data("gaussian")
    m1 = hp.random_intercepts(df, y="y", group="group", intercept_at="zero")
    m0 = hp.random_intercepts(df, y="y", group="group")
    assert {v.name for v in m1.free_RVs} == {v.name for v in m0.free_RVs}
    pt_ = m0.initial_point()
    assert m1.compile_logp()(pt_) == pytest.approx(m0.compile_logp()(pt_), abs=1e-10)


def test_describe_records_per_term_priors_and_placement():
    df = _data("gaussian")
    kw = dict(y="y", group="group", predictors=["x1", "x2"])
    model = hp.random_intercepts(df, priors={"beta": {"x1": TIGHT}}, intercept_at="zero", **kw)
    desc = hp.describe(model)
    gd = desc.data
    assert desc.intercept_at == "zero" and desc.settings["intercept_at"] == "zero"
    assert desc.priors["beta"] == {"x1": TIGHT}
    assert desc.priors[N.BETA_STD] == hp.Prior("Normal", mu=0.0, sigma=2.5 * gd.y_scale)  # x2 keeps the default
    r = np.asarray(gd.x_center) / np.asarray(gd.x_scale)
    assert desc.priors["intercept"].params["sigma"] == pytest.approx(2.5 * gd.y_scale * math.sqrt(1 + r @ r),
                                                                    rel=1e-12)
    assert "intercept_at='zero'" in repr(desc)
    assert json.loads(json.dumps(desc.settings["priors"])) == {"beta": {"x1": TIGHT.to_dict()}}
    # every coefficient named: no default prior left; a number fixes that coefficient
    both = hp.describe(hp.random_intercepts(df, priors={"beta": {"x2": 0.25, "x1": TIGHT}}, **kw))
    assert list(both.priors["beta"]) == ["x1", "x2"] and N.BETA_STD not in both.priors
    assert both.intercept_at == "means"
    m2 = hp.random_intercepts(df, priors={"beta": {"x2": 0.25, "x1": TIGHT}}, **kw)
    assert "beta[x2]" not in m2.named_vars and "beta[x1]" in m2.named_vars
    assert m2.compile_fn(m2[N.BETA], inputs=m2.value_vars, on_unused_input="ignore")(m2.initial_point())[1] == 0.25
    # one number for all coefficients fixes all of them (it raised AttributeError before)
    m3 = hp.random_intercepts(df, priors={"beta": 0.5}, **kw)
    assert N.BETA not in {v.name for v in m3.free_RVs}
    # the ridge variant takes them too
    ridge = hp.describe(hp.ridge_fixed_effects(df, lam=2.0, priors={"beta": {"x2": TIGHT}}, **kw))
    assert ridge.priors["beta"] == {"x2": TIGHT}


def test_predictor_names_with_brackets_and_a_predictor_named_dist():
    df = _data("gaussian").rename(columns={"x1": "c[level]", "x2": "dist"})
    kw = dict(y="y", group="group", predictors=["c[level]", "dist"])
    model = hp.random_intercepts(df, priors={"beta": {"c[level]": TIGHT, "dist": {"dist": "Normal", "sigma": 2}}},
                                 **kw)
    assert {"beta[c[level]]", "beta[dist]"} <= set(model.named_vars)
    assert hp.describe(model).priors["beta"]["dist"] == hp.Prior("Normal", sigma=2.0)
    # a dict whose "dist" is a string is one prior for every coefficient
    one = hp.random_intercepts(df, priors={"beta": {"dist": "Normal", "sigma": 2}}, **kw)
    assert hp.describe(one).priors["beta"] == hp.Prior("Normal", sigma=2.0)


def test_refusals():
    df = _data("gaussian")
    kw = dict(y="y", group="group", predictors=["x1", "x2"])
    with pytest.raises(ValueError, match=r"'x3', which is not a predictor.*\['x1', 'x2'\]"):
        hp.random_intercepts(df, priors={"beta": {"x3": TIGHT}}, **kw)
    with pytest.raises(ValueError, match="empty dict"):
        hp.random_intercepts(df, priors={"beta": {}}, **kw)
    with pytest.raises(ValueError, match=r"priors\['beta'\]\['x1'\].*real support"):
        hp.random_intercepts(df, priors={"beta": {"x1": hp.Prior("HalfNormal", sigma=1.0)}}, **kw)
    with pytest.raises(TypeError, match=r"priors\['beta'\]\['x2'\] must be"):
        hp.random_intercepts(df, priors={"beta": {"x2": "wide"}}, **kw)
    with pytest.raises(ValueError, match=r"intercept_at='mean' is not valid; valid choices: 'means', 'zero'"):
        hp.random_intercepts(df, intercept_at="mean", **kw)
    for factory in (hp.ridge_fixed_effects, hp.regularized_hierarchical):
        with pytest.raises(ValueError, match="intercept_at=0"):
            factory(df, intercept_at=0, **kw)
    with pytest.raises(ValueError, match="unknown key 'beta'.*penalty"):  # the penalty sets beta's prior
        hp.regularized_hierarchical(df, penalty="ridge", priors={"beta": {"x1": TIGHT}}, **kw)


def test_regularized_intercept_at_zero_puts_the_prior_on_the_intercept():
    df = _data("gaussian")
    model = hp.regularized_hierarchical(df, penalty="laplace", y="y", group="group", predictors=["x1", "x2"],
                                        intercept_at="zero", priors={"intercept": hp.Prior("Normal", mu=1, sigma=2)})
    free = {v.name for v in model.free_RVs}
    assert N.INTERCEPT in free and N.INTERCEPT_CENTERED not in free


# ---------------------------------------------------------------------------------------------- spec
SPEC = """
[data]
dataset = "dyestuff"
response = "yield_"
group = "batch"
family = "gaussian"

[variants.ri]
kind = "random_intercepts"
intercept_at = "zero"
priors = {tau = {dist = "HalfNormal", sigma = 1.0}, beta = {x1 = {dist = "Normal", mu = 0.7, sigma = 0.5}, x2 = 0.1}}
"""


def test_spec_takes_per_term_priors_and_intercept_at():
    spec = parse_spec(textwrap.dedent(SPEC))
    kw = spec.factory_kwargs("ri")
    assert kw["intercept_at"] == "zero"
    model = hp.random_intercepts(_data("gaussian"), y="y", group="group", predictors=["x1", "x2"], **kw)
    desc = hp.describe(model)
    assert desc.priors["beta"] == {"x1": TIGHT, "x2": 0.1} and desc.intercept_at == "zero"
    bad = SPEC.replace('x2 = 0.1', 'x2 = "wide"').replace('intercept_at = "zero"', 'intercept_at = "mean"')
    with pytest.raises(SpecError) as info:
        parse_spec(textwrap.dedent(bad))
    text = "\n".join(info.value.problems)
    assert "priors.beta.x2 = 'wide' must be a table" in text
    assert "intercept_at" in text and "'zero'" in text
    with pytest.raises(SpecError, match="priors.tau = .* needs the key 'dist'"):
        parse_spec(textwrap.dedent(SPEC.replace('tau = {dist = "HalfNormal", sigma = 1.0}', 'tau = {sigma = 1.0}')))


# ---------------------------------------------------------------------------------------------- Gibbs
@pytest.mark.parametrize("intercept_at", ["means", "zero"])
def test_gibbs_plan_prior_matches_the_model_prior(intercept_at):
    """The plan's Gaussian prior on theta = (intercept_c, beta_std), mapped to the model's free variables,
    equals the model's prior log density (pymc.logp of the intercept and coefficient terms) up to one
    constant (the Jacobian of beta_std = beta * sd, constant): checked at random points to 1e-8."""
    df = _data("bernoulli")
    icpt = hp.Prior("Normal", mu=-0.4, sigma=1.3)
    model = hp.random_intercepts(df, y="y", group="group", predictors=["x1", "x2"], family="bernoulli",
                                 priors={"beta": {"x1": TIGHT}, "intercept": icpt}, intercept_at=intercept_at,
                                 collapse=False)
    pl = gibbs.plan(model)
    assert isinstance(pl, gibbs.Plan)
    gd = hp.describe(model).data
    xc, xs = np.asarray(gd.x_center), np.asarray(gd.x_scale)
    if intercept_at == "means":  # diagonal, with the per-term entry on the standardized scale
        np.testing.assert_allclose(pl.prec0, np.diag([1 / 1.3**2, 1 / (0.5 * xs[0]) ** 2, 1 / (2.5 ** 2)]),
                                   rtol=1e-12, atol=1e-15)
        np.testing.assert_allclose(pl.m0, [-0.4, 0.7 * xs[0], 0.0], rtol=1e-12, atol=1e-15)
    else:
        assert pl.prec0[0, 1] != 0.0 and np.allclose(pl.prec0, pl.prec0.T, rtol=0, atol=1e-14)
    a_name = N.INTERCEPT if intercept_at == "zero" else N.INTERCEPT_CENTERED
    rvs = [model[a_name], model["beta[x1]"], model["beta_std[x2]"]]
    prior_logp = model.compile_logp(vars=rvs)
    gauss = multivariate_normal(pl.m0, np.linalg.inv(pl.prec0))
    rng = np.random.default_rng(3)
    diffs = []
    for _ in range(6):
        theta = rng.normal(0.0, 1.5, 3)
        beta = theta[1:] / xs
        a = theta[0] - beta @ xc if intercept_at == "zero" else theta[0]
        point = {**model.initial_point(), a_name: np.array(a), "beta[x1]": np.array(beta[0]),
                 "beta_std[x2]": np.array(theta[2])}
        diffs.append(prior_logp(point) - gauss.logpdf(theta))
    np.testing.assert_allclose(diffs, diffs[0], rtol=0, atol=1e-8)


def test_gibbs_refuses_fixed_or_non_normal_per_term_priors():
    df = _data("bernoulli")
    kw = dict(y="y", group="group", predictors=["x1", "x2"], family="bernoulli", collapse=False)
    fixed = gibbs.plan(hp.random_intercepts(df, priors={"beta": {"x2": 0.3}}, **kw))
    assert isinstance(fixed, str) and "'x2'" in fixed and "fixes it" in fixed
    cauchy = gibbs.plan(hp.random_intercepts(df, priors={"beta": {"x1": hp.Prior("Cauchy", alpha=0, beta=1)}}, **kw))
    assert isinstance(cauchy, str) and "'x1'" in cauchy and "not Normal" in cauchy
    with pytest.raises(ValueError, match="'x2'.*fixes it"):
        hp.fit(hp.random_intercepts(df, priors={"beta": {"x2": 0.3}}, **kw), sampler="gibbs", draws=10, tune=10)


def test_log_marginal_of_tau_with_a_full_prior_precision():
    """The kernel with a non-diagonal prior precision (intercept_at="zero") equals the dense Gaussian
    marginal of the pseudo-data z = kappa / omega, up to a constant in s (checked to 1e-9)."""
    rng = np.random.default_rng(4)
    J, P = 5, 2
    gidx = np.repeat(np.arange(J), [2, 1, 3, 2, 4])
    n = gidx.size
    Xs = rng.normal(size=(n, P))
    kappa = rng.integers(0, 2, n) - 0.5
    omega = gibbs.pg_draws(np.ones(n), rng.normal(size=n), seed=2)
    D = np.column_stack([np.ones(n), Xs])
    m0 = np.array([0.3, 0.1, -0.2])
    B = rng.normal(size=(3, 3))
    cov0 = B @ B.T + 0.5 * np.eye(3)
    prec0 = np.linalg.inv(cov0)
    W = np.bincount(gidx, weights=omega, minlength=J)
    S = np.stack([np.bincount(gidx, weights=omega * D[:, a], minlength=J) for a in range(P + 1)], axis=1)
    Kj = np.bincount(gidx, weights=kappa, minlength=J)
    G = (D * omega[:, None]).T @ D
    Dk = D.T @ kappa
    code, par = gibbs.TAU_PRIORS["HalfNormalRV"][0], np.array([0.0, 1.0, 0.0, 0.0])
    Z = np.eye(J)[gidx]
    d = []
    for s in (-1.2, -0.3, 0.4, 1.0):
        L, v, scr = np.empty((P + 1, P + 1)), np.empty(P + 1), np.zeros(2)
        ours = gibbs._log_marginal_s(s, code, par, False, W, S, Kj, G, Dk, m0, prec0, L, v, scr)
        cov = np.diag(1 / omega) + D @ cov0 @ D.T + math.exp(2 * s) * Z @ Z.T
        d.append(ours - multivariate_normal(D @ m0, cov).logpdf(kappa / omega) - gibbs._log_prior_s(code, par, False, s))
    np.testing.assert_allclose(d, d[0], rtol=0, atol=1e-9)


# ---------------------------------------------------------------------------------------------- fits
def _quiet_fit(model, **kw):
    return quiet_fit(model, cores=2, **kw)


@pytest.mark.slow
def test_tight_per_term_prior_pins_the_coefficient():
    """beta[x1] ~ Normal(0.7, 1e-3) against data whose truth is far from 0.7: the likelihood's sd of
    beta[x1] is about 0.1, so the posterior is the prior shifted by at most (1e-3 / 0.1)^2 x (gap ~1)
    = 1e-4 with sd 1e-3 x (1 - 1e-4); the posterior mean of 1,200 draws has MCSE < 1e-4. Tolerances:
    |mean - 0.7| < 6e-4, sd within 20% of 1e-3 (the sd's MCSE is ~3% at ESS 500)."""
    df = _data("gaussian")
    pin = {"beta": {"x1": hp.Prior("Normal", mu=0.7, sigma=1e-3)}}
    dt = _quiet_fit(hp.random_intercepts(df, y="y", group="group", predictors=["x1", "x2"], priors=pin,
                                         intercept_at="zero"))
    b = dt["posterior"][N.BETA].sel(predictor="x1")
    assert abs(float(b.mean()) - 0.7) < 6e-4
    assert 0.8e-3 < float(b.std()) < 1.2e-3
    assert float(dt["posterior"][N.BETA].sel(predictor="x2").std()) > 0.01  # x2 is not pinned


@pytest.mark.slow
def test_gibbs_with_the_intercept_prior_at_zero_pins_the_intercept():
    """The full prior precision end to end: a tight prior at x = 0, intercept ~ Normal(-0.5, 1e-3), with
    x1 centered near 4 (so intercept_c and the coefficients are correlated a priori). The Gibbs draws of
    the reported intercept (at x = 0) must sit at -0.5 (shift from the likelihood < 1e-4 as above;
    tolerance 6e-4, sd within 25%: the sd's MCSE is ~5% at the Gibbs ESS of a few hundred)."""
    df = _data("bernoulli")
    model = hp.random_intercepts(df, y="y", group="group", predictors=["x1", "x2"], family="bernoulli",
                                 priors={"intercept": hp.Prior("Normal", mu=-0.5, sigma=1e-3)}, intercept_at="zero",
                                 collapse=False)
    dt = _quiet_fit(model, sampler="gibbs")
    assert dt.attrs[N.ATTR_SAMPLER] == "gibbs"
    a = dt["posterior"][N.INTERCEPT]
    assert abs(float(a.mean()) + 0.5) < 6e-4
    assert 0.75e-3 < float(a.std()) < 1.25e-3


@pytest.mark.slow
def test_gibbs_equals_nuts_with_per_term_priors_and_the_intercept_at_zero():
    """Informative priors that both matter: the intercept at x = 0 ~ Normal(0, 0.5) with x1 centered near
    4 (so the prior ties intercept_c to beta), beta[x1] ~ Normal(0.7, 0.3) on the user's scale. The two
    samplers' posteriors agree within Monte Carlo error (compare_posteriors: |z| < 4.5 on means and sds)."""
    df = hp.datasets.simulate("bernoulli", n_groups=40, group_sizes=(2, 8), n_predictors=2, seed=21)
    df["x1"] = 4.0 + 2.0 * df["x1"]
    pri = {"intercept": hp.Prior("Normal", mu=0.0, sigma=0.5), "beta": {"x1": hp.Prior("Normal", mu=0.7, sigma=0.3)}}
    m = hp.random_intercepts(df, y="y", group="group", predictors=["x1", "x2"], family="bernoulli", priors=pri,
                             intercept_at="zero", collapse=False)
    nuts = quiet_fit(m, sampler="nutpie", draws=1000, tune=700, random_seed=3)
    gib = quiet_fit(m, sampler="gibbs", draws=1000, tune=300, random_seed=4)
    compare_posteriors(nuts, gib, [N.INTERCEPT, N.BETA, N.TAU])
