"""``hp.fit(..., min_ess=)``: rounds until the population parameters' bulk and tail ESS reach the target
(R-hat checked), one report for the combined fit: the integrated samplers extend their chains in place,
the others add rounds of new chains."""

from __future__ import annotations

import json

import arviz as az
import numpy as np
import pytest
import xarray as xr

import hierpool as hp
from hierpool.core import names as N
from hierpool.inference import integrated, sampling


@pytest.fixture(scope="module")
def model():
    df = hp.datasets.simulate_gaussian(n_groups=30, seed=3)
    return hp.random_intercepts(df, y="y", group="group")


def test_min_ess_refusals(model):
    with pytest.raises(ValueError, match="min_ess=-3 must be a positive number"):
        hp.fit(model, min_ess=-3)
    with pytest.raises(ValueError, match="max_rounds"):
        hp.fit(model, min_ess=100, max_rounds=0)
    with pytest.raises(TypeError, match="empirical_bayes"):
        hp.fit(model, min_ess=100, method="empirical_bayes")


@pytest.mark.slow
def test_min_ess_adds_rounds_until_reached(model):
    """NUTS (nutpie) cannot resume a run: 100 draws x 4 chains cannot give a tail ESS of 600 (400 draws in
    all), so a second round of new chains at least is needed; the combined fit's own ESS (ArviZ on the
    returned DataTree) then meets the target, which is what the report says."""
    dt = hp.fit(model, draws=100, tune=300, chains=4, random_seed=5, progressbar=False, min_ess=600, max_rounds=6,
                sampler="nutpie")
    rep = json.loads(dt.attrs[N.ATTR_DIAGNOSTICS])
    assert rep["rounds"] >= 2 and rep["min_ess_reached"] and rep["round_adds"] == "chains"
    assert dt["posterior"].sizes["chain"] == 4 * rep["rounds"]
    s = az.summary(dt, var_names=["intercept", "tau", "sigma"], round_to="none")
    assert (s["ess_bulk"] >= 600).all() and (s["ess_tail"] >= 600).all() and (s["r_hat"] <= 1.01).all()
    np.testing.assert_array_equal(dt["posterior"]["chain"].values, np.arange(4 * rep["rounds"]))
    assert dt["log_likelihood"].sizes["chain"] == 4 * rep["rounds"]
    hp.shrinkage(dt)  # the analysis reads the combined fit


@pytest.mark.slow
def test_min_ess_missed_warns(model):
    with pytest.warns(hp.HierpoolSamplingWarning, match=r"min_ess=1e\+06 not reached after 2 rounds"):
        dt = hp.fit(model, draws=50, tune=100, chains=2, random_seed=1, progressbar=False, min_ess=1e6, max_rounds=2,
                    sampler="nutpie")
    rep = json.loads(dt.attrs[N.ATTR_DIAGNOSTICS])
    assert rep["rounds"] == 2 and not rep["min_ess_reached"] and dt["posterior"].sizes["chain"] == 4
    # the integrated sampler (what "auto" picks here): the same 2 chains, 50 draws and 50 more
    with pytest.warns(hp.HierpoolSamplingWarning, match=r"not reached after 2 rounds \(2 chains of 100 draws\)"):
        dt = hp.fit(model, draws=50, tune=100, chains=2, random_seed=1, progressbar=False, min_ess=1e6, max_rounds=2)
    rep = json.loads(dt.attrs[N.ATTR_DIAGNOSTICS])
    assert rep["rounds"] == 2 and not rep["min_ess_reached"] and rep["round_adds"] == "draws"
    assert dt["posterior"].sizes["chain"] == 2 and dt["posterior"].sizes["draw"] == 100


def test_min_ess_extends_the_integrated_chains_in_place(model):
    """The integrated sampler goes on with the same chains until the target is met: the returned fit's own
    ESS and R-hat (ArviZ) meet it, and are the report's; every round's draws per chain are recorded."""
    dt = hp.fit(model, draws=100, tune=50, chains=4, random_seed=5, progressbar=False, min_ess=600, max_rounds=6)
    rep = json.loads(dt.attrs[N.ATTR_DIAGNOSTICS])
    assert dt.attrs[N.ATTR_SAMPLER] == "integrated" and rep["round_adds"] == "draws"
    assert rep["rounds"] >= 2 and rep["min_ess_reached"] and dt["posterior"].sizes["chain"] == 4
    sizes = [r["draws"] for r in rep["ess_rounds"]]
    assert sizes[0] == 100 and sizes == sorted(set(sizes)) and sizes[-1] == dt["posterior"].sizes["draw"]
    s = az.summary(dt, var_names=["intercept", "tau", "sigma"], round_to="none")
    assert (s["ess_bulk"] >= 600).all() and (s["ess_tail"] >= 600).all() and (s["r_hat"] <= 1.01).all()
    np.testing.assert_allclose(rep["min_ess_bulk"], s["ess_bulk"].min(), rtol=1e-8)
    np.testing.assert_allclose(rep["min_ess_tail"], s["ess_tail"].min(), rtol=1e-8)
    # the group effects kept at every k-th draw, k as large as keeps 600 draws in all
    k = int(dt.attrs["hierpool_thin"])
    assert k == 4 * sizes[-1] // 600 and k > 1
    u = dt["posterior_group_effects"][N.GROUP_EFFECT]
    assert u.shape[:2] == (4, -(-sizes[-1] // k)) and 4 * u.shape[1] >= 600


def _iid_posterior(chains: int, draws: int, seed: int) -> xr.Dataset:
    rng = np.random.default_rng(seed)
    return xr.Dataset({"intercept": (("chain", "draw"), rng.normal(size=(chains, draws))),
                       "tau": (("chain", "draw"), rng.gamma(4.0, size=(chains, draws)))})


def test_more_draws_asks_for_what_the_ess_so_far_says_within_the_bounds():
    post = _iid_posterior(4, 50, seed=2)
    bulk, tail, rhat = sampling._worst_ess(post)
    worst = min(bulk, tail)
    assert 100 < worst < 300 and rhat < 1.05  # iid draws: ESS near 200
    more = sampling._MoreDraws(min_ess=400, draws=50, max_rounds=4, max_group_effect_values=1e6)
    n = more(post)
    want = sampling.ESS_MARGIN * 50 * max(400 / worst, (rhat - 1) / 0.01)
    assert n == min(150, int(np.ceil(want)) - 50) and n > 5
    assert more.trail[0] == {"round": 1, "chains": 4, "draws": 50, "min_ess_bulk": bulk, "min_ess_tail": tail,
                             "max_rhat": rhat}
    # the rounds are spent, the draws are at max_rounds x draws, or the target is met: no more
    assert sampling._MoreDraws(400, 50, 1, 1e6)(post) == 0
    assert sampling._MoreDraws(400, 25, 2, 1e6)(post) == 0
    assert sampling._MoreDraws(100, 50, 4, 1e6)(post) == 0
    # a target far off asks for the room left at most
    assert sampling._MoreDraws(1e6, 50, 3, 1e6)(post) == 100


def test_imh_chains_extended_in_place_keep_their_states_and_their_target():
    """Independence MH on a correlated normal target (the proposal centred off it), extended twice: each
    chain's state carries across the batches (a rejected step repeats the previous draw, an accepted one
    moves), and the extended chains' means and variances equal the target's within 4 Monte Carlo standard
    errors (ESS by ArviZ); with ``more`` asking for nothing, the draws are those of a run without it."""
    m = np.array([1.0, -2.0])
    S = np.array([[1.0, 0.6], [0.6, 2.0]])
    P = np.linalg.inv(S)

    def log_target(x):
        d = x - m
        return -0.5 * np.einsum("ni,ij,nj->n", d, P, d)

    asks = iter([300, 500, 0])
    calls = []

    def more(psi):
        calls.append(psi.shape[1])
        return next(asks)

    def run(more_fn, seed=4):
        ss = np.random.SeedSequence(seed)
        a, b = ss.spawn(2)
        return integrated.imh_chains(log_target, m + 0.5, 1.5 * S, draws=200, tune=50, chains=4,
                                     rng=np.random.default_rng(a),
                                     chain_rngs=[np.random.default_rng(s) for s in b.spawn(4)], more=more_fn)

    psi, acc, info = run(more)
    assert calls == [200, 500, 1000] and psi.shape == (4, 1000, 2) and acc.shape == (4, 1000)
    assert info["batches"] == 3
    moved = np.any(psi[:, 1:] != psi[:, :-1], axis=2)
    np.testing.assert_array_equal(moved, acc[:, 1:])
    assert 0.2 < acc.mean() < 0.95
    ds = xr.Dataset({"x": (("chain", "draw", "k"), psi), "sq": (("chain", "draw", "k"), (psi - m) ** 2)})
    ess = az.ess(ds)
    for k in range(2):
        se_mean = np.sqrt(S[k, k] / float(ess["x"].values[k]))
        se_var = np.sqrt(2.0) * S[k, k] / np.sqrt(float(ess["sq"].values[k]))
        assert abs(psi[..., k].mean() - m[k]) < 4 * se_mean
        assert abs(((psi[..., k] - m[k]) ** 2).mean() - S[k, k]) < 4 * se_var
    plain, plain_acc, _ = run(None)
    again, again_acc, _ = run(lambda psi: 0)
    np.testing.assert_array_equal(again, plain)
    np.testing.assert_array_equal(again_acc, plain_acc)
