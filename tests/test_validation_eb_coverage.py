"""Coverage of empirical-Bayes (plug-in) and full-Bayes intervals (validation/eb_coverage.py).

Few groups (J = 5, groups of 4 rows), truth drawn from the fit's priors: full-Bayes intervals must cover at
their nominal 90% within 3 cluster standard errors (a calibration guarantee); plug-in intervals must fall
short of 90% by more than that tolerance (what theory predicts: tau's estimate is noisy and often 0, and
the intercept's uncertainty is ignored). The second half of the check is what can fail: if plug-in
intervals were as good, the test would fail. Many groups (J = 100, tau = 1): both cover within tolerance
and the plug-in widths are within 10% of full Bayes'.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from validation import eb_coverage as ec


def test_eb_coverage_summary_hand_computation():
    rng = np.random.default_rng(1)
    rows = []
    for d in range(30):
        for method, p in (("full_bayes", 0.9), ("empirical_bayes", 0.7)):
            for g in range(4):
                rows.append({"dataset": d, "group": g, "method": method, "target": "effect",
                             "covered": bool(rng.random() < p), "width": 2.0 if method == "full_bayes" else 1.0,
                             "tau_hat": 0.0 if (method == "empirical_bayes" and d < 3) else 1.0})
    cov = pd.DataFrame(rows)
    cov.attrs["prob"] = 0.9
    tab = ec.eb_coverage_summary(cov).set_index("method")
    sub = cov[cov["method"] == "empirical_bayes"]
    per = sub.groupby("dataset")["covered"].mean()
    assert tab.loc["empirical_bayes", "coverage"] == pytest.approx(sub["covered"].mean())
    assert tab.loc["empirical_bayes", "se_cluster"] == pytest.approx(per.std(ddof=1) / np.sqrt(30))
    assert tab.loc["empirical_bayes", "width_ratio"] == pytest.approx(0.5)
    assert tab.loc["empirical_bayes", "share_tau_zero"] == pytest.approx(0.1)
    assert tab.loc["full_bayes", "share_tau_zero"] == 0.0


@pytest.mark.slow
def test_plug_in_intervals_under_cover_with_few_groups():
    cov = ec.eb_coverage_run(n_groups=5, n_datasets=60, tau=None, seed=1)
    tab = ec.eb_coverage_summary(cov).set_index(["target", "method"])
    for target in ("effect", "level"):
        fb = tab.loc[(target, "full_bayes")]
        assert abs(fb["coverage"] - 0.9) <= fb["tolerance"], tab.to_string()
        e = tab.loc[(target, "empirical_bayes")]
        assert e["coverage"] < 0.9 - e["tolerance"], tab.to_string()
        assert e["width_ratio"] < 1.0


@pytest.mark.slow
def test_plug_in_and_full_bayes_agree_with_many_groups():
    cov = ec.eb_coverage_run(n_groups=100, n_datasets=10, tau=1.0, seed=2)
    tab = ec.eb_coverage_summary(cov).set_index(["target", "method"])
    for row in tab.itertuples():
        assert abs(row.coverage - 0.9) <= row.tolerance, tab.to_string()
    for target in ("effect", "level"):
        assert 0.9 <= tab.loc[(target, "empirical_bayes"), "width_ratio"] <= 1.02, tab.to_string()
