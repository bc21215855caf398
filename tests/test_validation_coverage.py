"""Coverage of central posterior intervals of group effects (validation/coverage.py).

The truth is drawn with tau = 1 (and sigma = 1) held fixed and the fit fixes them at those values too;
intercept and beta are drawn from the fit's own priors. Each group effect's prior is then exactly the one
that generated it, so 50% and 90% central intervals cover at 50% and 90% for every group, in particular
for groups of one row, up to Monte Carlo error. Tolerance: 3 x max(binomial SE at the nominal rate,
cluster SE over datasets). A fit with tau fixed at 0.3 (truth 1) must miss that tolerance: the check can
fail.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from validation import coverage as cv


def test_coverage_design():
    df = cv.coverage_design("bernoulli")
    sizes = df.groupby("group", sort=False).size()
    assert len(sizes) == 20 and len(df) == 48
    assert (sizes == 1).sum() == 8 and (sizes == 5).sum() == 4


def test_coverage_summary_hand_computation():
    # 40 datasets x 5 groups (2 of one row, 3 larger), 90% intervals.
    rng = np.random.default_rng(0)
    rows = []
    for d in range(40):
        for g, n in enumerate([1, 1, 2, 3, 5]):
            rows.append({"dataset": d, "group": f"g{g}", "n": n, "prob": 0.9, "covered": bool(rng.random() < 0.9)})
    cov = pd.DataFrame(rows)
    tab = cv.coverage_summary(cov).set_index("groups")
    one = cov[cov["n"] == 1]
    assert tab.loc["n = 1", "n_intervals"] == 80
    assert tab.loc["n = 1", "coverage"] == pytest.approx(one["covered"].mean())
    assert tab.loc["n = 1", "se_binomial"] == pytest.approx(np.sqrt(0.9 * 0.1 / 80))
    per_ds = one.groupby("dataset")["covered"].mean()
    assert tab.loc["n = 1", "se_cluster"] == pytest.approx(per_ds.std(ddof=1) / np.sqrt(40))
    se = max(tab.loc["n = 1", "se_binomial"], tab.loc["n = 1", "se_cluster"])
    assert tab.loc["n = 1", "tolerance"] == pytest.approx(3 * se)
    assert tab.loc["all", "n_intervals"] == 200
    assert tab.loc["all", "coverage"] == pytest.approx(cov["covered"].mean())


def test_coverage_run_rejects_conflicting_arguments():
    with pytest.raises(ValueError, match="estimate_tau"):
        cv.coverage_run("gaussian", n_datasets=1, estimate_tau=True, fit_tau=0.5)


def _check_calibrated(cov: pd.DataFrame):
    tab = cv.coverage_summary(cov)
    assert set(tab["groups"]) == {"n = 1", "n >= 2", "all"}
    assert set(tab["prob"]) == {0.5, 0.9}
    for row in tab.itertuples():
        assert abs(row.coverage - row.prob) <= row.tolerance, tab.to_string()
    return tab


@pytest.mark.slow
def test_coverage_gaussian_random_intercepts():
    cov = cv.coverage_run("gaussian", n_datasets=100, draws=250, tune=200, seed=21)
    assert cov["dataset"].nunique() == 100 and len(cov) == 100 * 20 * 2
    assert (cov["conf_low"] < cov["conf_high"]).all()
    _check_calibrated(cov)


@pytest.mark.slow
def test_coverage_bernoulli_random_intercepts():
    cov = cv.coverage_run("bernoulli", n_datasets=100, draws=250, tune=200, seed=22)
    _check_calibrated(cov)


@pytest.mark.slow
def test_coverage_check_fails_for_a_misspecified_fit():
    # tau fixed at 0.3 in the fit while the truth has tau = 1: intervals far too narrow and shrunk.
    cov = cv.coverage_run("gaussian", n_datasets=30, draws=250, tune=200, seed=23, fit_tau=0.3)
    tab = cv.coverage_summary(cov).set_index(["prob", "groups"])
    assert not tab["within_tolerance"].any(), tab.to_string()
    assert tab.loc[(0.9, "n = 1"), "coverage"] < 0.9 - 3 * tab.loc[(0.9, "n = 1"), "tolerance"]
