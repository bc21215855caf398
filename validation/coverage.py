"""Coverage of central posterior intervals of group effects, with groups of one row reported apart.

Design (:func:`coverage_design`): 20 groups, 8 of them with a single row, 4 of two rows, 4 of three and 4
of five (48 rows), one standardized predictor. For every simulated dataset the group effects are drawn
from Normal(0, tau) with **tau and sigma fixed at known values** (tau = 1, sigma = 1), and the 50% and 90%
central posterior intervals of every group effect are checked against the truth.

Which guarantee is being tested, and why tau and sigma are fixed *in the fit as well*: a Bayesian
interval has its nominal coverage when the truth is drawn from the prior that the fit uses. With tau and
sigma fixed to their true values in the fit (``priors={"tau": 1.0, "sigma": 1.0}``) and the intercept
and beta drawn each time from the fit's own priors (Normal(0, 1) and Normal(0, 0.5)), the prior of every
group effect is exactly Normal(0, tau), so the 50% and 90% intervals must cover at 50% and 90%, for every
group, hence separately for groups of one row (where the interval is mostly prior) and for larger groups,
up to Monte Carlo error. (If tau were estimated while the truth is held at one fixed tau, coverage would
be a frequentist property at that tau and not guaranteed: :func:`coverage_run` with
``estimate_tau=True`` reports that case for information.)

Monte Carlo error: the coverage proportion of ``n`` intervals has binomial standard error
``sqrt(p (1 - p) / n)`` at the nominal ``p``; intervals of one dataset share the intercept estimate and are
not quite independent, so the cluster standard error over datasets (SD of the per-dataset proportions /
sqrt(R)) is computed too. An observed coverage passes when it lies within 3 times the larger of the two
of the nominal rate (a two-sided check at about 0.3% per comparison). The interval endpoints are quantiles
of 1,000 posterior draws; their Monte Carlo noise is much smaller than this tolerance.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from .sbc import SBC_PRIORS, build_pair, compile_model, make_design, quiet, refit, simulate_from_model

__all__ = ["COVERAGE_SIZES", "coverage_design", "coverage_run", "coverage_summary", "coverage_with_se"]

#: Rows per group: 8 groups of one row, 4 of two, 4 of three, 4 of five (20 groups, 48 rows).
COVERAGE_SIZES = (1,) * 8 + (2,) * 4 + (3,) * 4 + (5,) * 4
PROBS = (0.5, 0.9)


def coverage_design(family: str, sizes=COVERAGE_SIZES, seed: int = 31) -> pd.DataFrame:
    """The fixed design of the coverage study (see the module docstring).

    Examples
    --------
    >>> df = coverage_design("gaussian")
    >>> int((df.groupby("group").size() == 1).sum()), len(df)
    (8, 48)
    """
    return make_design(family, sizes, seed=seed)


def coverage_run(
    family: str,
    *,
    tau: float = 1.0,
    sigma: float = 1.0,
    n_datasets: int = 100,
    probs=PROBS,
    draws: int = 500,
    tune: int = 300,
    chains: int = 2,
    seed: int = 0,
    estimate_tau: bool = False,
    fit_tau: float | None = None,
    collapse: bool | str = "auto",
    sizes=COVERAGE_SIZES,
) -> pd.DataFrame:
    """Simulate ``n_datasets`` datasets from random intercepts with fixed tau (and sigma) and record
    whether each group effect's central intervals cover the truth.

    Parameters
    ----------
    family : {"gaussian", "bernoulli", "binomial", "poisson"}
    tau, sigma : float
        True group-level SD and (gaussian) residual SD; fixed in the fit too unless ``estimate_tau``.
    n_datasets : int
        Replications R.
    probs : sequence of float
        Central interval probabilities.
    draws, tune, chains : int
        nutpie settings of each refit (``draws`` per chain).
    seed : int
    estimate_tau : bool
        Fit tau under a HalfNormal(1) prior instead of fixing it (a frequentist check at a fixed tau, not
        a calibration guarantee; sigma stays fixed).
    fit_tau : float, optional
        Fix tau in the fit at this value instead of the truth: a deliberately misspecified control whose
        intervals must miss their nominal coverage.
    collapse : {"auto", True, False}
        Passed to the fit model's factory ("auto": the exact collapsed gaussian likelihood, group effects
        drawn afterwards from their exact conditional).
    sizes : sequence of int
        Rows per group.

    Returns
    -------
    pandas.DataFrame
        One row per dataset x group x probability: ``dataset``, ``group``, ``n``, ``prob``, ``truth``,
        ``conf_low``, ``conf_high``, ``covered``, ``divergences``.

    Examples
    --------
    >>> cov = coverage_run("gaussian", n_datasets=2, seed=1)    # doctest: +SKIP
    >>> sorted(cov["prob"].unique())                            # doctest: +SKIP
    [0.5, 0.9]
    """
    design = coverage_design(family, sizes)
    fixed = {"tau": float(tau)}
    if family == "gaussian":
        fixed["sigma"] = float(sigma)
    if estimate_tau and fit_tau is not None:
        raise ValueError("give estimate_tau=True or fit_tau=, not both.")
    fit_priors = dict(fixed)
    if estimate_tau:
        fit_priors["tau"] = SBC_PRIORS["tau"]
    elif fit_tau is not None:
        fit_priors["tau"] = float(fit_tau)
    fit_model, data_model = build_pair("random_intercepts", family, design=design, priors=fit_priors,
                                       data_priors=fixed, collapse=collapse)
    truth, ys = simulate_from_model(data_model, n_datasets, seed)
    compiled = compile_model(fit_model)
    groups = list(fit_model.coords["group"])
    n_j = pd.Series(design["group"]).value_counts().reindex(groups).to_numpy()
    probs = [float(p) for p in probs]
    rows = []
    with quiet():
        for i in range(n_datasets):
            post, div = refit(compiled, fit_model, ys[i], draws=draws, tune=tune, chains=chains, seed=seed * 100_003 + i)
            ge = post["group_effect"].stack(sample=("chain", "draw")).transpose("group", "sample").values
            true_u = truth["group_effect"].isel(sim=i).values
            for p in probs:
                lo, hi = np.quantile(ge, [(1 - p) / 2, (1 + p) / 2], axis=1)
                covered = (lo <= true_u) & (true_u <= hi)
                for j, g in enumerate(groups):
                    rows.append({"dataset": i, "group": g, "n": int(n_j[j]), "prob": p, "truth": float(true_u[j]),
                                 "conf_low": float(lo[j]), "conf_high": float(hi[j]),
                                 "covered": bool(covered[j]), "divergences": div})
    out = pd.DataFrame(rows)
    out.attrs.update(family=family, tau=float(tau), sigma=float(sigma) if family == "gaussian" else None,
                     estimate_tau=bool(estimate_tau), fit_tau=fit_tau, n_datasets=int(n_datasets))
    return out


def coverage_summary(cov: pd.DataFrame, *, n_se: float = 3.0) -> pd.DataFrame:
    """Coverage by interval probability and group-size class (``n = 1``, ``n >= 2``, ``all``).

    Returns
    -------
    pandas.DataFrame
        Columns ``prob``, ``groups`` (the class), ``n_intervals``, ``coverage``, ``se_binomial``
        (at the nominal rate), ``se_cluster`` (over datasets), ``tolerance`` (``n_se`` times the larger SE),
        ``within_tolerance``.

    Examples
    --------
    >>> fake = pd.DataFrame({"dataset": np.repeat(np.arange(50), 2), "n": [1, 2] * 50, "prob": 0.5,
    ...                      "covered": [True, False] * 50})
    >>> coverage_summary(fake)["coverage"].tolist()
    [1.0, 0.0, 0.5]
    """
    rows = []
    for p, sub in cov.groupby("prob", sort=True):
        for label, mask in (("n = 1", sub["n"] == 1), ("n >= 2", sub["n"] >= 2), ("all", sub["n"] >= 1)):
            part = sub[mask]
            if part.empty:
                continue
            rows.append({"prob": float(p), "groups": label, "n_intervals": len(part),
                         **coverage_with_se(part, p, n_se=n_se)})
    return pd.DataFrame(rows)


def coverage_with_se(part: pd.DataFrame, prob: float, *, n_se: float = 3.0) -> dict:
    """Coverage of the intervals in ``part`` (columns ``dataset``, ``covered``) at nominal ``prob``:
    ``coverage``, ``se_binomial`` (at the nominal rate), ``se_cluster`` (SD of the per-dataset proportions
    / sqrt(datasets)), ``tolerance`` (``n_se`` times the larger) and ``within_tolerance``."""
    c = float(part["covered"].mean())
    per_ds = part.groupby("dataset")["covered"].mean()
    se_bin = float(np.sqrt(prob * (1 - prob) / len(part)))
    se_cl = float(per_ds.std(ddof=1) / np.sqrt(len(per_ds))) if len(per_ds) > 1 else float("nan")
    tol = n_se * float(np.nanmax([se_bin, se_cl]))
    return {"coverage": c, "se_binomial": se_bin, "se_cluster": se_cl, "tolerance": tol,
            "within_tolerance": abs(c - prob) <= tol}
