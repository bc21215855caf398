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
    with pytest.raises(ValueError, match="min_ess=-3 must be a positive finite number"):
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
    # the group effects kept at exactly 600 draws in all: 150 per chain, evenly spaced (every k-th draw
    # for an integer k kept up to twice as many: 680 for 400 asked in issue 17's poisson fit)
    u = dt["posterior_group_effects"][N.GROUP_EFFECT]
    assert u.shape[:2] == (4, 150) and rep["group_effect_draws"] == 600
    np.testing.assert_array_equal(u["draw"].values, np.arange(150) * sizes[-1] // 150)
    assert dt.attrs["hierpool_thin"] == rep["thinned_for_group_effects"] == pytest.approx(sizes[-1] / 150)
    # the population parameters at those draws (FitView.post) are the posterior's at the same labels
    post = hp.analysis.fitview.as_fit(dt).post
    np.testing.assert_array_equal(post["tau"].values, dt["posterior"]["tau"].sel(draw=u["draw"].values).values)


def test_rounds_of_new_chains_report_every_rounds_kept_group_effects():
    """Rounds of new chains (the Gibbs sampler here) each keep the group effects within their share of the
    budget (1/max_rounds): 2 rounds of 2 chains x 40 draws, 4 x 5 x 30 values in all -> 5 evenly spaced
    draws per chain (every 8th); the report and hp.summarize count the combined fit's 20, not the first round's 10."""
    df = hp.datasets.simulate("bernoulli", n_groups=30, group_sizes=(2, 6), n_predictors=1, seed=3)
    model = hp.random_intercepts(df, y="y", group="group", predictors=["x1"], family="bernoulli", collapse=False)
    with pytest.warns(hp.HierpoolSamplingWarning, match="not reached after 2 rounds"):
        dt = hp.fit(model, sampler="gibbs", draws=40, tune=20, chains=2, random_seed=1, progressbar=False,
                    min_ess=1e6, max_rounds=2, max_group_effect_values=4 * 5 * 30)
    rep = json.loads(dt.attrs[N.ATTR_DIAGNOSTICS])
    u = dt["posterior_group_effects"][N.GROUP_EFFECT]
    assert rep["round_adds"] == "chains" and u.shape == (4, 5, 30) and dt["posterior"].sizes["chain"] == 4
    np.testing.assert_array_equal(u["draw"].values, np.arange(5) * 8)
    assert rep["group_effect_draws"] == 20 and rep["thinned_for_group_effects"] == 8
    assert "group effects kept at 20 of 160 draws" in str(hp.summarize(dt))


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
    # the draws are at max_rounds x draws, or the target is met: no more; a target far off asks for the
    # room left at most; the batches are not counted (the 5th ask of a rule with max_rounds=2 still adds)
    assert sampling._MoreDraws(400, 50, 1, 1e6)(post) == 0
    assert sampling._MoreDraws(400, 25, 2, 1e6)(post) == 0
    assert sampling._MoreDraws(100, 50, 4, 1e6)(post) == 0
    assert sampling._MoreDraws(1e6, 50, 3, 1e6)(post) == 100
    two = sampling._MoreDraws(400, 50, 2, 1e6)
    for _ in range(4):
        two(_iid_posterior(4, 10, seed=3))
    assert len(two.trail) == 4 and two(post) == 50
    # R-hat above 1.01 with the ESS met: its excess over 1 sets the ask
    shifted = post.copy(deep=True)
    shifted["intercept"] = shifted["intercept"] + xr.DataArray([0.0, 0.0, 0.0, 1.0], dims="chain")
    b2, t2, r2 = sampling._worst_ess(shifted)
    assert r2 > 1.02
    ask = sampling._MoreDraws(min(b2, t2) / 2, 50, 100, 1e6)(shifted)
    assert ask == int(np.ceil(sampling.ESS_MARGIN * 50 * (r2 - 1) / 0.01)) - 50
    # no usable estimate: chains stuck on one state each (R-hat near the largest float), or under 4 draws
    stuck = xr.Dataset({"intercept": (("chain", "draw"), np.repeat(np.arange(4.0)[:, None], 50, axis=1))})
    assert sampling._MoreDraws(400, 50, 4, 1e6)(stuck) == 150
    few = _iid_posterior(4, 3, seed=1)
    assert sampling._worst_ess(few) == (0.0, 0.0, np.inf)
    assert sampling._MoreDraws(400, 3, 4, 1e6)(few) == 9
    const = xr.Dataset({"tau": (("chain", "draw"), np.full((4, 3), 0.5))})  # nothing varies: nothing to reach
    assert sampling._worst_ess(const) == (np.inf, np.inf, 0.0)


def test_min_ess_must_be_finite(model):
    with pytest.raises(ValueError, match="min_ess=inf must be a positive finite number"):
        hp.fit(model, min_ess=float("inf"))


@pytest.mark.parametrize("log_last", [False, True])
def test_imh_chains_extended_equal_one_chain_over_the_same_proposals(monkeypatch, log_last):
    """Exact: each chain of an extended run is the independence-MH chain over its proposals of every batch
    in turn (its own uniforms going on), started where tuning left it: rebuilt here by a plain loop from
    the proposals recorded (a run that restarts a batch from its first proposal, or forgets the state,
    differs). Tuning of 0, 1 and 50 draws; batches down to one draw; a support boundary; with ``log_last``
    (the last coordinate a scale, the defensive component in its log) also tau <= 0 outside the support."""
    m = np.array([1.0, 2.0 if log_last else -2.0])
    S = np.array([[1.0, 0.6], [0.6, 2.0]])
    P = np.linalg.inv(S)

    def log_target(x):
        d = x - m
        out = np.where(x[:, 0] > 3.0, -np.inf, -0.5 * np.einsum("ni,ij,nj->n", d, P, d))
        return np.where(x[:, -1] > 0, out, -np.inf) if log_last else out

    calls = []
    orig = integrated._t_draws

    def recorded(rng, mu, L, n, log_last=False):
        x = orig(rng, mu, L, n, log_last)
        calls.append((mu.copy(), L.copy(), x))
        return x

    monkeypatch.setattr(integrated, "_t_draws", recorded)
    for asks in ([1, 1, 1, 0], [13, 2, 40, 0], [0]):
        for tune in (0, 1, 50):
            calls.clear()
            it = iter(asks)
            a, b = np.random.SeedSequence(7).spawn(2)
            seeds = b.spawn(3)
            psi, acc, info = integrated.imh_chains(log_target, m + 1.5, 0.3 * S, draws=7, tune=tune, chains=3,
                                                   rng=np.random.default_rng(a),
                                                   chain_rngs=[np.random.default_rng(s) for s in seeds],
                                                   more=lambda p, it=it: next(it), log_last=log_last)
            n_tune = min(tune, integrated.MAX_TUNE)
            batches = calls[1:] if n_tune else calls
            assert info["batches"] == len(batches) == len(asks)
            mu, L = batches[0][0], batches[0][1]
            for c in range(3):
                r = np.random.default_rng(seeds[c])
                cur = None
                if n_tune:
                    tp = calls[0][2][c * n_tune:(c + 1) * n_tune]
                    tw = log_target(tp) - integrated._t_logpdf(tp, calls[0][0], calls[0][1], log_last)
                    u = np.log(r.random(n_tune))
                    k = int(np.argmax(tw > -np.inf))  # the chain starts at its first proposal in the support
                    cur, cw = tp[k], tw[k]
                    for i in range(k + 1, n_tune):
                        if u[i] <= tw[i] - cw:
                            cur, cw = tp[i], tw[i]
                props = np.concatenate([x[c * (len(x) // 3):(c + 1) * (len(x) // 3)] for _, _, x in batches])
                w = log_target(props) - integrated._t_logpdf(props, mu, L, log_last)
                u = np.log(r.random(len(props)))
                want, want_acc = np.empty_like(props), np.zeros(len(props), dtype=bool)
                start = 0
                if cur is None:  # the first proposal in the support, repeated over the ones before it
                    k = int(np.argmax(w > -np.inf))
                    cur, cw, want[:k + 1], want_acc[k], start = props[k], w[k], props[k], True, k + 1
                else:
                    cw = log_target(cur[None])[0] - integrated._t_logpdf(cur[None], mu, L, log_last)[0]
                for i in range(start, len(props)):
                    if u[i] <= w[i] - cw:
                        cur, cw, want_acc[i] = props[i], w[i], True
                    want[i] = cur
                np.testing.assert_array_equal(psi[c], want)
                np.testing.assert_array_equal(acc[c], want_acc)


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


def test_imh_chains_of_no_draws_return_empty_chains():
    """draws=0 (a direct caller; hp.fit asks for at least one): empty (chains, 0, D) draws and acceptances
    after the tuning proposals (was UnboundLocalError)."""
    m = np.array([1.0, -2.0])
    psi, acc, info = integrated.imh_chains(lambda x: -0.5 * ((x - m) ** 2).sum(axis=1), m, np.eye(2), draws=0,
                                           tune=5, chains=3, rng=np.random.default_rng(0),
                                           chain_rngs=[np.random.default_rng(c) for c in range(3)])
    assert psi.shape == (3, 0, 2) and acc.shape == (3, 0) and info["batches"] == 0
