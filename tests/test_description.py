"""The typed model description (hp.describe), the Gibbs plan read from its Prior objects, and a factory's
model sampled outside hp.fit (hp.from_trace). No MCMC: prior draws stand in for a trace."""

from __future__ import annotations

import numpy as np
import pymc as pm
import pytest
import xarray as xr

import hierpool as hp
from hierpool.core import names as N
from hierpool.inference import gibbs
from hierpool.inference.conditional import conditional_group_effects


@pytest.fixture(scope="module")
def gauss_df():
    return hp.datasets.simulate_gaussian(n_groups=30, n_predictors=2, seed=3)


@pytest.fixture(scope="module")
def bern_df():
    return hp.datasets.simulate("bernoulli", n_groups=40, n_predictors=2, seed=4)


def test_description_carries_every_prior_the_factory_built(gauss_df):
    model = hp.random_intercepts(gauss_df, y="y", group="group", predictors=["x1", "x2"])
    desc = hp.describe(model)
    assert isinstance(desc, hp.ModelDescription)
    assert (desc.variant, desc.family, desc.collapse) == ("random_intercepts", "gaussian", "gaussian")
    gd = desc.data
    s = gd.y_scale
    assert desc.priors["intercept"] == hp.Prior("Normal", mu=gd.y_location, sigma=2.5 * s)
    assert desc.priors[N.BETA_STD] == hp.Prior("Normal", mu=0.0, sigma=2.5 * s)
    assert desc.priors[N.TAU] == hp.Prior("HalfStudentT", nu=3, sigma=s)
    assert desc.priors[N.SIGMA] == hp.Prior("HalfStudentT", nu=3, sigma=s)
    assert desc.integrates_out_group_effects and desc.group_sd_fixed is None
    with pytest.raises(TypeError):
        desc.priors["tau"] = 1.0  # read-only


def test_description_of_user_priors_fixed_values_and_ridge(gauss_df):
    m = hp.random_intercepts(gauss_df, y="y", group="group", priors={"tau_sq": hp.Prior("InverseGamma", alpha=1,
                                                                                         beta=1), "sigma": 2.0})
    d = hp.describe(m)
    assert d.priors["tau_sq"] == hp.Prior("InverseGamma", alpha=1, beta=1) and N.TAU not in d.priors
    assert d.priors[N.SIGMA] == 2.0
    r = hp.describe(hp.ridge_fixed_effects(gauss_df, lam=4.0, y="y", group="group"))
    assert r.lam == 4.0 and r.group_sd_fixed == pytest.approx(0.5, rel=1e-15) and N.TAU not in r.priors
    f = hp.describe(hp.random_intercepts(gauss_df, y="y", group="group", priors={"tau": 0.7}))
    assert f.group_sd_fixed == 0.7
    reg = hp.describe(hp.regularized_hierarchical(gauss_df, penalty="laplace", y="y", group="group",
                                                  predictors=["x1", "x2"], penalty_scale=2.0))
    assert reg.penalty == "laplace" and reg.priors[N.BETA_STD] == hp.Prior("Laplace", mu=0.0, b=2.0 / np.sqrt(2))
    hs = hp.describe(hp.regularized_hierarchical(gauss_df, y="y", group="group", predictors=["x1", "x2"]))
    assert N.BETA_STD not in hs.priors and hs.fit_defaults["target_accept"] == 0.99


@pytest.mark.parametrize("bad", [None, 3, "model"])
def test_describe_refuses_what_no_factory_built(bad, gauss_df):
    with pytest.raises(TypeError, match="built by hp.random_intercepts"):
        hp.describe(bad)
    with pytest.raises(TypeError, match="Build a model from it first"):
        hp.describe(hp.prepare(gauss_df, y="y", group="group"))
    with pytest.raises(TypeError, match="got DataFrame"):
        hp.fit(gauss_df)


def test_gibbs_plan_reads_the_prior_objects(bern_df):
    """The plan's prior means and precisions are those of the description's Prior objects, whatever
    parameterization they were given in, and an ineligible prior is named in the reason."""
    kw = dict(y="y", group="group", predictors=["x1", "x2"], family="bernoulli", collapse=False)
    model = hp.random_intercepts(bern_df, priors={"intercept": hp.Prior("Normal", mu=0.3, tau=4.0),
                                                  "tau": hp.Prior("HalfNormal", sigma=1.5)}, **kw)
    pl = gibbs.plan(model)
    assert isinstance(pl, gibbs.Plan)
    gd = hp.describe(model).data
    np.testing.assert_allclose(pl.m0, [0.3, 0.0, 0.0], rtol=0, atol=1e-15)
    np.testing.assert_allclose(pl.prec0, np.diag([4.0, 1 / 2.5**2, 1 / 2.5**2]), rtol=1e-12)  # beta_std ~ N(0, 2.5)
    assert pl.code == gibbs.TAU_PRIORS["HalfNormalRV"][0] and pl.par[1] == pytest.approx(1.5, rel=1e-15)
    # a user's Normal prior on beta (user's scale) enters as beta_std = beta * sd(x)
    m2 = hp.random_intercepts(bern_df, priors={"beta": hp.Prior("Normal", mu=0.0, sigma=2.0)}, **kw)
    np.testing.assert_allclose(np.diag(gibbs.plan(m2).prec0)[1:], 1 / (2.0 * gd.x_scale) ** 2, rtol=1e-12)
    lap = hp.regularized_hierarchical(bern_df, penalty="laplace", **kw)
    assert "not Normal" in gibbs.plan(lap)
    ridge = gibbs.plan(hp.ridge_fixed_effects(bern_df, lam=4.0, **kw))
    assert ridge.tau_fixed == pytest.approx(0.5, rel=1e-15) and not ridge.has_tau


def test_from_trace_draws_the_integrated_out_group_effects(gauss_df):
    """A collapsed gaussian model sampled outside hp.fit has no group_effect; the analysis refuses the
    trace with advice, and hp.from_trace draws every group effect from its exact conditional.

    Prior draws stand in for a trace (the conditional is exact given any parameter draw). Check: for
    each group, the mean over S draws of (u - m) / s, with m and s the exact conditional mean and sd of
    each draw, is N(0, 1/S): |z| < 4.5 for all 30 groups (false alarm probability 2e-4).
    """
    model = hp.random_intercepts(gauss_df, y="y", group="group", predictors=["x1", "x2"])
    assert N.GROUP_EFFECT not in model.named_vars
    prior = pm.sample_prior_predictive(draws=800, model=model, random_seed=1)["prior"].to_dataset()
    keep = [N.INTERCEPT, N.BETA, N.TAU, N.SIGMA]
    trace = xr.DataTree.from_dict({"posterior": prior[keep]})
    with pytest.raises(ValueError, match="hp.from_trace"):
        hp.shrinkage(trace)
    dt = hp.from_trace(trace, model, random_seed=2)
    u = dt["posterior"][N.GROUP_EFFECT]
    assert u.dims == ("chain", "draw", N.GROUP) and u.sizes[N.GROUP] == 30
    gd = hp.describe(model).data
    post = dt["posterior"]
    a_c = (post[N.INTERCEPT] + (post[N.BETA] * xr.DataArray(gd.x_center, dims=N.PREDICTOR)).sum(N.PREDICTOR))
    b_std = (post[N.BETA] * xr.DataArray(gd.x_scale, dims=N.PREDICTOR)).transpose(*N.SAMPLE_DIMS, N.PREDICTOR)
    m, s = conditional_group_effects(gd.gaussian, a_c.values, b_std.values, post[N.TAU].values,
                                     post[N.SIGMA].values)
    z = ((u.values - m) / s).reshape(-1, 30)
    assert np.abs(z.mean(axis=0) * np.sqrt(z.shape[0])).max() < 4.5
    assert abs(z.std() - 1) < 0.021  # 24,000 standard normals: sd of the sd is 0.0046 (4.5 of them)
    assert dt.attrs[N.ATTR_SAMPLER] == "external"
    hp.shrinkage(dt)  # every analysis function reads it
