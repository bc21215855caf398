"""Independent references for the eight-schools posterior (posteriordb's eight_schools_noncentered).

Two references that share no code with hierpool:

1. a plain PyMC model written here (non-centered, the prior of posteriordb: mu ~ Normal(0, 5),
   tau ~ HalfCauchy(5), theta_trans ~ Normal(0, 1), theta = mu + tau * theta_trans), sampled long;
2. deterministic quadrature: with theta integrated out the posterior of (mu, tau) is two-dimensional,
   ``p(mu, tau | y) ∝ N(mu | 0, 5) HalfCauchy(tau | 5) prod_j N(y_j | mu, sqrt(tau^2 + se_j^2))``, and
   ``E[theta_j | mu, tau, y] = mu + tau^2 / (tau^2 + se_j^2) (y_j - mu)``, so posterior means are 2-d
   integrals, computed on a fine grid (tau = 5 tan(pi/2 * v) maps v in (0, 1) onto the half line).

Printed: means, sds and MCSEs of mu, tau and theta[1] (school A), next to posteriordb's reference
(``reference_posteriors/summary_statistics/mean/mean/eight_schools-eight_schools_noncentered.json``:
mean theta[1] 6.1505 (mcse 0.056), mu 4.4105 (0.033), tau 3.6021 (0.032)).

Run: ``.venv/bin/python benchmarks/eight_schools_reference.py [--draws 50000] [--json out.json]``
"""

from __future__ import annotations

import argparse
import json
import time

import numpy as np
from scipy import stats

Y = np.array([28.0, 8.0, -3.0, 7.0, -1.0, 1.0, 18.0, 12.0])
SE = np.array([15.0, 10.0, 16.0, 11.0, 9.0, 11.0, 10.0, 18.0])
POSTERIORDB = {"mu": (4.41051833695493, 0.0330374705950917), "tau": (3.60205952364059, 0.0318615135640706),
               "theta[1]": (6.15050229334425, 0.0557375282295219)}


def quadrature(n_mu: int = 1601, n_v: int = 4001) -> dict:
    """Posterior means and sds of mu, tau, theta[1] by a 2-d grid (trapezoid rule in mu and v)."""
    mu = np.linspace(-40.0, 50.0, n_mu)
    v = np.linspace(0.0, 1.0, n_v + 1)[:-1] + 0.5 / n_v  # midpoints: avoid tau = infinity
    tau = 5.0 * np.tan(0.5 * np.pi * v)
    dtau_dv = 5.0 * 0.5 * np.pi / np.cos(0.5 * np.pi * v) ** 2
    M, T = np.meshgrid(mu, tau, indexing="ij")
    sd = np.sqrt(T[..., None] ** 2 + SE**2)
    logp = (stats.norm.logpdf(M, 0, 5) + stats.halfcauchy.logpdf(T, scale=5)
            + stats.norm.logpdf(Y, M[..., None], sd).sum(-1) + np.log(dtau_dv)[None, :])
    w = np.exp(logp - logp.max())
    w /= w.sum()
    w1 = SE[0] ** 2
    theta1_mean = M + T**2 / (T**2 + w1) * (Y[0] - M)
    theta1_var = T**2 * w1 / (T**2 + w1)
    out = {}
    for name, m, var in (("mu", M, 0.0), ("tau", T, 0.0), ("theta[1]", theta1_mean, theta1_var)):
        mean = float((w * m).sum())
        out[name] = {"mean": mean, "sd": float(np.sqrt((w * (var + m**2)).sum() - mean**2))}
    return out


def long_run(draws: int, seed: int) -> dict:
    import arviz as az
    import pymc as pm

    with pm.Model():
        mu = pm.Normal("mu", 0.0, 5.0)
        tau = pm.HalfCauchy("tau", 5.0)
        theta_trans = pm.Normal("theta_trans", 0.0, 1.0, shape=8)
        theta = pm.Deterministic("theta", mu + tau * theta_trans)
        pm.Normal("y", theta, SE, observed=Y)
        t0 = time.perf_counter()
        idata = pm.sample(draws=draws, tune=2000, chains=4, cores=2, target_accept=0.95, random_seed=seed,
                          nuts_sampler="nutpie", progressbar=False)
        seconds = time.perf_counter() - t0
    post = idata["posterior"].to_dataset()
    post["theta[1]"] = post["theta"].isel(theta_dim_0=0)
    summ = az.summary(post[["mu", "tau", "theta[1]"]], round_to="none")
    out = {name: {k: float(summ.loc[name, k]) for k in ("mean", "sd", "mcse_mean", "ess_bulk", "r_hat")}
           for name in ("mu", "tau", "theta[1]")}
    out["divergences"] = int(idata["sample_stats"]["diverging"].sum())
    out["seconds"] = seconds
    out["draws"] = draws * 4
    return out


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--draws", type=int, default=50000, help="draws per chain (4 chains)")
    ap.add_argument("--seed", type=int, default=20261128)
    ap.add_argument("--json", default=None)
    args = ap.parse_args()
    res = {"quadrature": quadrature(), "posteriordb": POSTERIORDB}
    res["pymc_noncentered"] = long_run(args.draws, args.seed)
    print("| quantity | posteriordb mean (mcse) | quadrature mean (sd) | plain PyMC mean (sd, mcse) |")
    print("|---|---|---|---|")
    for name in ("mu", "tau", "theta[1]"):
        q, p, r = res["quadrature"][name], POSTERIORDB[name], res["pymc_noncentered"][name]
        print(f"| {name} | {p[0]:.3f} ({p[1]:.3f}) | {q['mean']:.3f} ({q['sd']:.3f}) | "
              f"{r['mean']:.3f} ({r['sd']:.3f}, {r['mcse_mean']:.3f}) |")
    run = res["pymc_noncentered"]
    print(f"\nplain PyMC: {run['draws']} draws, {run['divergences']} divergences, {run['seconds']:.1f} s")
    if args.json:
        with open(args.json, "w") as f:
            json.dump(res, f, indent=1)


if __name__ == "__main__":
    main()
