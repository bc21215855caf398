"""hp.summarize: the one-screen summary of a fit (text and HTML), on hand-built fits of known content."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
from fake_fits import frame, make_fit, staircase

import hierpool as hp
from hierpool.core import names as N


@pytest.fixture(scope="module")
def gaussian_fit():
    rng = np.random.default_rng(5)
    C, D, J = 4, 250, 6
    tau = rng.uniform(0.5, 1.5, size=(C, D))
    ge = rng.normal(0.0, 0.3, size=(C, D, J)) + np.arange(J) - 2.5
    dt = make_fit(data=staircase(J), group_effect=ge, intercept=rng.normal(2.5, 0.1, size=(C, D)), tau=tau,
                  sigma=rng.uniform(0.9, 1.1, size=(C, D)))
    dt.attrs[N.ATTR_DIAGNOSTICS] = json.dumps({
        "divergences": 3, "draws": D, "chains": C, "max_rhat": 1.02, "max_rhat_var": "tau",
        "min_ess_bulk": 150.0, "min_ess_bulk_var": "tau", "min_ess_tail": 210.0, "min_ess_tail_var": "sigma",
        "problems": ["R-hat up to 1.020 (> 1.01) for 'tau': chains disagree.", "3 of 1000 transitions diverged."],
    })
    dt.attrs["hierpool_sampler"] = "nutpie"
    return dt


def test_summary_numbers_come_from_the_fit(gaussian_fit):
    s = hp.summarize(gaussian_fit, ci_prob=0.8, head=3)
    post = gaussian_fit["posterior"]
    assert (s.variant, s.family, s.sampler) == ("random_intercepts", "gaussian", "nutpie")
    # staircase(6) gives group j (0..5) j + 1 rows: 21 rows in 6 groups
    assert (s.n_rows, s.n_groups, s.chains, s.draws) == (21, 6, 4, 250)
    assert s.group_sizes == {"min": 1, "median": 3.5, "max": 6, "share_under_5": pytest.approx(4 / 6)}
    assert list(s.parameters.index) == ["intercept", "tau", "sigma"]
    for v in ("intercept", "tau", "sigma"):
        assert s.parameters.loc[v, "mean"] == pytest.approx(float(post[v].mean()), rel=1e-12)
    q = np.quantile(post["tau"].values.ravel(), [0.1, 0.9])
    np.testing.assert_allclose(s.parameters.loc["tau", ["eti80_lb", "eti80_ub"]].to_numpy(float), q, rtol=1e-10)
    lam = 1.0 / post["tau"].values.ravel() ** 2
    row = s.implied_ridge.set_index("units").loc["lam"]
    assert row["mean"] == pytest.approx(lam.mean(), rel=1e-10)
    assert s.problems == ["R-hat up to 1.020 (> 1.01) for 'tau': chains disagree.", "3 of 1000 transitions diverged."]


def test_shrinkage_head_lists_the_groups_that_moved_most(gaussian_fit):
    s = hp.summarize(gaussian_fit, head=3)
    full = hp.shrinkage(gaussian_fit)
    moved = (full["estimate"] - full["raw_mean"]).abs()
    expected = full.loc[moved.sort_values(ascending=False).index[:3], "group"].tolist()
    assert s.shrinkage["group"].tolist() == expected
    assert len(s.shrinkage) == 3
    pd.testing.assert_frame_equal(
        s.shrinkage.reset_index(drop=True),
        full.set_index("group").loc[expected].reset_index()[s.shrinkage.columns].reset_index(drop=True),
    )


def test_text_and_html_show_the_headline_and_the_warnings(gaussian_fit):
    s = hp.summarize(gaussian_fit)
    text = repr(s)
    assert text == str(s) == s.to_text()
    assert text.startswith("random_intercepts: random intercepts")
    assert "21 rows in 6 groups" in text
    assert "SAMPLER WARNINGS" in text and "3 of 1000 transitions diverged." in text
    assert "divergences 3; max R-hat 1.020 (tau)" in text
    assert "implied ridge penalty: lam = 1/tau^2" in text
    html = s._repr_html_()
    assert html.startswith('<div class="hierpool-summary">') and html.endswith("</div>")
    assert "Sampler warnings" in html and "R-hat up to 1.020 (&gt; 1.01) for &#x27;tau&#x27;" in html
    assert html.count("<table") == 3  # parameters, implied ridge, shrinkage


def test_ridge_fit_has_no_implied_ridge_and_says_so():
    rng = np.random.default_rng(1)
    dt = make_fit(variant="ridge_fixed_effects", data=staircase(4), group_effect=rng.normal(size=(2, 100, 4)),
                  tau=None, lam=4.0)
    s = hp.summarize(dt)
    assert s.implied_ridge is None
    assert s.settings["lam"] == 4.0
    assert "tau" not in s.parameters.index
    assert "lam = 4 chosen by the user" in str(s)
    assert "sampler warnings: none" in str(s)  # no diagnostics stored: nothing to report
    assert s._repr_html_().count("<table") == 2


def test_bernoulli_fit_with_predictors():
    rng = np.random.default_rng(2)
    gidx = np.repeat(np.arange(5), 4)
    y = rng.integers(0, 2, size=20).astype(float)
    X = rng.normal(size=(20, 2))
    dt = make_fit("bernoulli", data=frame(gidx, y, x=X), group_effect=rng.normal(0, 0.5, size=(2, 50, 5)),
                  beta=rng.normal(size=(2, 50, 2)))
    s = hp.summarize(dt)
    assert list(s.parameters.index) == ["intercept", "beta[x1]", "beta[x2]", "tau"]
    assert s.predictors == ["x1", "x2"]
    assert set(s.implied_ridge["units"]) >= {"lam", "C_sklearn"}
    assert "predictors: x1, x2" in str(s)


def test_bad_arguments(gaussian_fit):
    with pytest.raises(ValueError, match=r"use 0.9, not 90"):
        hp.summarize(gaussian_fit, ci_prob=90)
    with pytest.raises(ValueError, match="head must be an integer >= 1"):
        hp.summarize(gaussian_fit, head=0)
    with pytest.raises(TypeError, match="must be an xarray.DataTree"):
        hp.summarize(pd.DataFrame())


def test_fit_without_rows(gaussian_fit):
    """A fit of sufficient statistics has no observed rows: the summary counts rows from group_n."""
    import xarray as xr

    const = gaussian_fit["constant_data"].to_dataset().drop_vars([N.GROUP_IDX]).drop_dims(N.OBS, errors="ignore")
    dt = xr.DataTree.from_dict({"posterior": gaussian_fit["posterior"].to_dataset(), "constant_data": const})
    dt.attrs = dict(gaussian_fit.attrs)
    s = hp.summarize(dt)
    assert s.n_rows == 21


def test_sampler_line_says_what_min_ess_did(gaussian_fit):
    dt = gaussian_fit.copy()
    diag = json.loads(gaussian_fit.attrs[N.ATTR_DIAGNOSTICS])
    diag.update(min_ess=400.0, min_ess_reached=True, rounds=3, round_adds="draws", thinned_for_group_effects=3)
    dt.attrs = {**gaussian_fit.attrs, N.ATTR_DIAGNOSTICS: json.dumps(diag)}
    text = hp.summarize(dt).to_text()
    assert ("sampled until ESS 400: reached after 3 rounds (the chains extended); group effects drawn at 1 draw "
            "in 3") in text
    diag.update(min_ess_reached=False, round_adds="chains", rounds=4)
    dt.attrs = {**gaussian_fit.attrs, N.ATTR_DIAGNOSTICS: json.dumps(diag)}
    assert "sampled until ESS 400: NOT reached after 4 rounds (rounds of new chains)" in hp.summarize(dt).to_text()
    assert "sampled until" not in hp.summarize(gaussian_fit).to_text()
