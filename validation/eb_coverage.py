"""Where empirical-Bayes (plug-in) intervals under-cover and where they agree with full Bayes.

For gaussian random intercepts (groups of ``n_rows`` rows, one standardized predictor), every simulated
dataset is fitted twice: full Bayes (``hp.fit``'s default: nutpie on the collapsed likelihood, group
effects from their exact conditional) and empirical Bayes (``method="empirical_bayes"``: REML estimates
plugged in, group effects from their conditional given them). For each group, the central ``prob``
interval of its effect is checked against the true effect.

Two settings, chosen to show what theory says:

- **Few groups, truth from the prior** (``tau=None``): intercept ~ Normal(0, 1), beta ~ Normal(0, 0.5),
  tau ~ HalfNormal(1), sigma ~ HalfNormal(1), and the full-Bayes fit uses exactly those priors. Averaged
  over the prior, Bayesian intervals cover at their nominal rate, whatever the number of groups. Plug-in
  intervals ignore the uncertainty in tau (and in the intercept and beta); with 5 groups REML's tau is
  noisy and often 0 (lme4's singular fit: every interval collapses to a point), so they under-cover.
  The group *effect* (a deviation from the intercept) under-covers worst: with 5 groups the intercept's
  own uncertainty (about tau / sqrt(5)) moves every effect together, and lme4's ``condVar``, like this
  plug-in, conditions on it. The group's *level* (intercept plus effect) is reported too.
- **Many groups, tau well away from zero** (``tau=1.0``, ``sigma=1.0`` fixed in the truth; the fit still
  estimates them under its priors): tau is estimated precisely, and the two kinds of interval nearly
  coincide; both cover near the nominal rate (a frequentist property at a fixed tau, not a guarantee).

Monte Carlo error: the intervals of one dataset share the estimates, so the standard error of a coverage
is the cluster standard error over datasets (SD of the per-dataset proportions / sqrt(R)); a coverage is
"within tolerance" when it is within 3 of those (and at least 3 binomial SEs at the nominal rate) of the
nominal rate. ``python -m validation.eb_coverage`` prints both tables and writes the raw rows as JSON to
``validation/results/``.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np
import pandas as pd

import hierpool as hp
from hierpool.inference import empirical_bayes as eb

from .coverage import coverage_with_se
from .sbc import SBC_PRIORS, build_pair, compile_model, make_design, quiet, refit, simulate_from_model

__all__ = ["eb_coverage_run", "eb_coverage_summary"]


def eb_coverage_run(*, n_groups: int, n_rows: int = 4, n_datasets: int = 60, tau: float | None = None,
                    sigma: float = 1.0, prob: float = 0.9, draws: int = 500, tune: int = 300, chains: int = 2,
                    seed: int = 0) -> pd.DataFrame:
    """Simulate ``n_datasets`` gaussian datasets and record, per group and method, whether the central
    ``prob`` interval of the group effect covers the truth.

    Parameters
    ----------
    n_groups, n_rows : int
        Groups, and rows per group.
    n_datasets : int
        Replications R.
    tau : float, optional
        None: intercept, beta, tau and sigma drawn from the fit's priors (module docstring); a number: tau
        (and ``sigma``) fixed at these values in the truth.
    prob : float
        Central interval probability.
    draws, tune, chains : int
        nutpie settings of each full-Bayes fit; the empirical-Bayes fit keeps ``chains * draws`` draws.
    seed : int

    Returns
    -------
    pandas.DataFrame
        One row per dataset x group x method (``"full_bayes"``, ``"empirical_bayes"``) x target
        (``"effect"``: the group effect u_j, the contract's ``group_effect``; ``"level"``: the group's
        intercept plus effect, at the predictors' zero): ``dataset``, ``group``, ``method``, ``target``, ``truth``, ``conf_low``, ``conf_high``, ``width``, ``covered``, ``tau_true``,
        ``tau_hat`` (REML; the posterior mean for full Bayes), ``divergences``.
    """
    design = make_design("gaussian", (int(n_rows),) * int(n_groups), seed=seed + 11)
    data_priors = None if tau is None else {"tau": float(tau), "sigma": float(sigma)}
    fit_model, data_model = build_pair("random_intercepts", "gaussian", design=design, priors=dict(SBC_PRIORS),
                                       data_priors=data_priors)
    truth, ys = simulate_from_model(data_model, n_datasets, seed)
    compiled = compile_model(fit_model)
    desc = hp.describe(fit_model)
    groups = list(fit_model.coords["group"])
    q = [(1 - prob) / 2, (1 + prob) / 2]
    rows = []
    with quiet():
        for i in range(n_datasets):
            post, div = refit(compiled, fit_model, ys[i], draws=draws, tune=tune, chains=chains,
                              seed=seed * 100_003 + i)
            ebpost, info = eb.estimate(desc.with_response(ys[i]), draws=draws, chains=chains, random_seed=i,
                                       max_group_effect_values=1e9)
            true_u = truth["group_effect"].isel(sim=i).values
            tau_true = float(truth["tau"].isel(sim=i)) if "tau" in truth else float(tau)
            for method, p, tau_hat in (("full_bayes", post, float(post["tau"].mean())),
                                       ("empirical_bayes", ebpost, float(info["tau"]))):
                ge = p["group_effect"].stack(sample=("chain", "draw")).transpose("group", "sample").values
                a = p["intercept"].stack(sample=("chain", "draw")).values
                true_a = float(truth["intercept"].isel(sim=i))
                for target, draws_, true_ in (("effect", ge, true_u), ("level", ge + a, true_u + true_a)):
                    lo, hi = np.quantile(draws_, q, axis=1)
                    for j, g in enumerate(groups):
                        rows.append({"dataset": i, "group": g, "method": method, "target": target,
                                     "truth": float(true_[j]), "conf_low": float(lo[j]), "conf_high": float(hi[j]),
                                     "width": float(hi[j] - lo[j]), "covered": bool(lo[j] <= true_[j] <= hi[j]),
                                     "tau_true": tau_true, "tau_hat": tau_hat,
                                     "divergences": div if method == "full_bayes" else 0})
    out = pd.DataFrame(rows)
    out.attrs.update(n_groups=int(n_groups), n_rows=int(n_rows), n_datasets=int(n_datasets), prob=float(prob),
                     tau=tau, sigma=float(sigma))
    return out


def eb_coverage_summary(cov: pd.DataFrame, *, n_se: float = 3.0) -> pd.DataFrame:
    """Coverage and interval width per method, with the cluster standard error over datasets.

    Columns ``target``, ``method``, ``coverage``, ``se_cluster``, ``se_binomial`` (at the nominal rate, over all
    intervals), ``tolerance`` (``n_se`` times the larger), ``within_tolerance``, ``mean_width``,
    ``width_ratio`` (mean width over the full-Bayes mean width), ``share_tau_zero`` (datasets whose plug-in
    tau is below 1e-6).
    """
    prob = float(cov.attrs.get("prob", 0.9))
    rows = []
    for (target, method), sub in cov.groupby(["target", "method"], sort=False):
        fb_width = float(cov.loc[(cov["method"] == "full_bayes") & (cov["target"] == target), "width"].mean())
        rows.append({"target": target, "method": method, **coverage_with_se(sub, prob, n_se=n_se),
                     "mean_width": float(sub["width"].mean()), "width_ratio": float(sub["width"].mean()) / fb_width,
                     "share_tau_zero": float((sub.groupby("dataset")["tau_hat"].first() < 1e-6).mean())})
    return pd.DataFrame(rows)


SETTINGS = {
    "few groups (J = 5), truth from the prior": dict(n_groups=5, n_datasets=200, tau=None, seed=1),
    "many groups (J = 100), tau = 1": dict(n_groups=100, n_datasets=40, tau=1.0, seed=2),
}


def main(argv=None) -> int:
    out = {}
    for name, kw in SETTINGS.items():
        cov = eb_coverage_run(**kw)
        tab = eb_coverage_summary(cov)
        print(f"\n{name}: {kw}\n{tab.to_string(index=False, float_format=lambda v: f'{v:.3f}')}")
        out[name] = {"settings": kw, "summary": tab.to_dict("records"), "rows": cov.to_dict("records")}
    path = Path(__file__).parent / "results" / "eb_coverage.json"
    path.parent.mkdir(exist_ok=True)
    path.write_text(json.dumps(out, default=float))
    print(f"\nraw rows: {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
