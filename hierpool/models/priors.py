"""Prior specifications: a small serializable description of a PyMC distribution.

``Prior("HalfNormal", sigma=2.0)`` describes a prior; factories take a dict of them through ``priors=``
(keys are parameter names such as ``"tau"``), keep them in the fit's attrs as JSON and rebuild them from
there. A plain number in ``priors=`` fixes that parameter at the value (useful for exact checks and for
reproducing analyses with a known variance). ``"tau_sq"`` and ``"sigma_sq"`` put the prior on the variance
instead, e.g. the classic ``Prior("InverseGamma", alpha=0.001, beta=0.001)`` on tau^2. ``"beta"`` takes
one prior for every coefficient or a dict by predictor name (:func:`is_per_term`), each on the user's
scale of its predictor.
"""

from __future__ import annotations

import inspect
import math
from functools import cache
from numbers import Real

import numpy as np
import pymc as pm
import pytensor.tensor as pt

__all__ = ["Prior"]

# Distributions allowed for a standard deviation (positive support).
POSITIVE = {
    "HalfNormal", "HalfStudentT", "HalfCauchy", "Exponential", "Gamma", "InverseGamma", "LogNormal",
    "Weibull", "Uniform", "TruncatedNormal", "HalfFlat",
}
# Distributions allowed for a real-valued parameter (intercept, beta).
REAL = {"Normal", "StudentT", "Cauchy", "Laplace", "Logistic", "Uniform", "Flat", "SkewNormal"}


class Prior:
    """A named PyMC distribution with numeric parameters.

    Parameters
    ----------
    dist : str
        Name of a PyMC distribution, e.g. ``"Normal"``, ``"HalfStudentT"``, ``"InverseGamma"``.
    **params : float
        Its parameters, by PyMC's names.

    Examples
    --------
    >>> from hierpool import Prior
    >>> p = Prior("HalfStudentT", nu=3, sigma=2.5)
    >>> Prior.from_dict(p.to_dict()) == p
    True
    """

    def __init__(self, dist: str, **params):
        if not isinstance(dist, str) or not hasattr(pm, dist) or dist not in POSITIVE | REAL:
            valid = ", ".join(sorted(POSITIVE | REAL))
            raise ValueError(f"Prior dist={dist!r} is not supported; valid choices: {valid}.")
        valid = _param_names(dist)
        for k, v in params.items():
            if k not in valid:  # PyMC's .dist() would swallow it in **kwargs and use its default instead
                raise TypeError(f"Prior({dist!r}) has no parameter {k!r}; valid: {', '.join(valid) or 'none'}.")
            if isinstance(v, bool) or not isinstance(v, Real) or not math.isfinite(float(v)):
                raise TypeError(f"Prior({dist!r}) parameter {k}={v!r} must be a finite number.")
        self.dist = dist
        self.params = {k: float(v) for k, v in params.items()}

    def to_dict(self) -> dict:
        return {"dist": self.dist, **self.params}

    @classmethod
    def from_dict(cls, d: dict) -> Prior:
        d = dict(d)
        if "dist" not in d:
            raise ValueError(f"a prior given as a dict needs the key 'dist'; got keys {sorted(d)}.")
        return cls(d.pop("dist"), **d)

    def build(self, name: str, **kwargs):
        """Create the PyMC random variable ``name`` inside the current model context."""
        try:
            return getattr(pm, self.dist)(name, **self.params, **kwargs)
        except TypeError as err:
            raise TypeError(f"prior for {name!r}: {self!r} has parameters PyMC does not accept: {err}") from err

    def __eq__(self, other):
        return isinstance(other, Prior) and self.to_dict() == other.to_dict()

    def __repr__(self):
        args = ", ".join(f"{k}={v:g}" for k, v in self.params.items())
        return f"Prior({self.dist!r}{', ' if args else ''}{args})"


@cache
def _param_names(dist: str) -> tuple[str, ...]:
    """The named parameters of PyMC's ``dist`` (those of its ``.dist``): PyMC 6 takes any other keyword
    into ``**kwargs`` without a word, so ``HalfNormal(sigm=5)`` would be HalfNormal(sigma=1)."""
    sig = inspect.signature(getattr(pm, dist).dist)
    return tuple(n for n, q in sig.parameters.items() if q.kind not in (q.VAR_POSITIONAL, q.VAR_KEYWORD))


def _shown(key: str) -> str:
    return key if key.startswith("priors[") else f"priors[{key!r}]"


def as_prior(key: str, value) -> Prior | float:
    """Normalize a user's entry of ``priors=``: a Prior, a dict with 'dist', or a number (fixed value)."""
    if isinstance(value, Prior):
        return value
    if isinstance(value, dict):
        return Prior.from_dict(value)
    if isinstance(value, Real) and not isinstance(value, bool):
        v = float(value)
        if not math.isfinite(v):
            raise ValueError(f"{_shown(key)}={value!r} must be finite to fix the parameter.")
        return v
    raise TypeError(
        f"{_shown(key)} must be a hierpool.Prior, a dict like {{'dist': 'HalfNormal', 'sigma': 1}}, or a "
        f"number that fixes the parameter; got {value!r}."
    )


def is_per_term(value) -> bool:
    """Whether an entry of ``priors=`` is a per-coefficient mapping (``{"age": Prior(...), ...}``) rather
    than one prior: a dict is one prior exactly when it has the key ``"dist"`` with a string value (a
    prior's distribution name), so a predictor named ``dist`` can still be given its own prior."""
    return isinstance(value, dict) and not isinstance(value.get("dist"), str)


def _check_support(key: str, p, kind: str, shown: str) -> None:
    if isinstance(p, Prior):
        want = POSITIVE if kind == "positive" else REAL
        if p.dist not in want:
            raise ValueError(
                f"{shown}={p!r}: {key} needs a distribution with {kind} support; valid: {', '.join(sorted(want))}."
            )
    elif kind == "positive" and p <= 0:
        raise ValueError(f"{shown}={p!r}: a fixed {key} must be > 0.")


def normalize_priors(priors: dict | None, allowed: dict[str, str], variant: str, terms=()) -> dict:
    """Check ``priors`` keys against ``allowed`` (key -> 'positive' | 'real') and normalize values.

    ``priors["beta"]`` may be one prior for every coefficient or a mapping ``{predictor name: prior}``
    (:func:`is_per_term`) over the names in ``terms``; it is normalized to a dict in the order of ``terms``.
    """
    if priors is None:
        return {}
    if not isinstance(priors, dict):
        raise TypeError(f"priors must be a dict of parameter name -> Prior; got {type(priors).__name__}.")
    out = {}
    for key, value in priors.items():
        if key not in allowed:
            valid = ", ".join(sorted(allowed))
            raise ValueError(f"priors has unknown key {key!r} for {variant}; valid parameter names: {valid}.")
        if key == "beta" and is_per_term(value):
            out[key] = _per_term(value, tuple(terms), allowed[key])
            continue
        p = as_prior(key, value)
        _check_support(key, p, allowed[key], f"priors[{key!r}]")
        out[key] = p
    for base in ("tau", "sigma"):
        if base in out and f"{base}_sq" in out:
            raise ValueError(f"priors gives both {base!r} and {base + '_sq'!r}; give one of them.")
    return out


def _per_term(value: dict, terms: tuple[str, ...], kind: str) -> dict:
    """Normalize ``priors["beta"] = {predictor name: prior}``: names checked against ``terms``."""
    if not value:
        raise ValueError(
            "priors['beta'] is an empty dict: give one prior for every coefficient (a hierpool.Prior or "
            "{'dist': ...}) or a prior per predictor by name, e.g. {'beta': {'age': hp.Prior('Normal', "
            f"mu=0, sigma=1)}}; predictors: {list(terms)}."
        )
    unknown = [k for k in value if k not in terms]
    if unknown:
        raise ValueError(
            f"priors['beta'] names {unknown[0]!r}, which is not a predictor of this model; valid names: "
            f"{list(terms)} (a per-coefficient prior is keyed by the predictor's name)."
        )
    out = {}
    for name in terms:  # the predictors' order
        if name in value:
            shown = f"priors['beta'][{name!r}]"
            p = as_prior(shown, value[name]) if not isinstance(value[name], Prior) else value[name]
            _check_support(f"beta[{name}]", p, kind, shown)
            out[name] = p
    return out


def serialize(priors: dict) -> dict:
    """JSON-ready form: each Prior as a dict, numbers kept, per-coefficient mappings kept as nested dicts."""
    return {k: (serialize(v) if isinstance(v, dict) else v.to_dict() if isinstance(v, Prior) else v)
            for k, v in priors.items()}


def scale_parameter(name: str, priors: dict, default: Prior):
    """Build a standard deviation ``name`` (e.g. tau): a fixed number, a prior on it, or on its square."""
    if name in priors:
        p = priors[name]
        if isinstance(p, Prior):
            return p.build(name)
        return pm.Deterministic(name, pt.as_tensor_variable(float(p)))
    if f"{name}_sq" in priors:
        p = priors[f"{name}_sq"]
        if isinstance(p, Prior):
            var = p.build(f"{name}_sq")
            return pm.Deterministic(name, pt.sqrt(var))
        return pm.Deterministic(name, pt.as_tensor_variable(math.sqrt(float(p))))
    return default.build(name)


# ------------------------------------------------------------------------------------------------------
# The elastic-net prior of the regularized variant's coefficients


def elastic_net_rate(scale: float, l1_ratio: float) -> float:
    """The rate ``r`` of the elastic-net density ``exp(-r (l1_ratio |x| + (1 - l1_ratio) x^2 / 2))``
    whose standard deviation is ``scale`` (solved numerically; closed forms at the ends:
    ``1 / scale^2`` for l1_ratio = 0, the normal, and ``sqrt(2) / scale`` for l1_ratio = 1, the Laplace)."""
    from scipy.optimize import brentq

    if l1_ratio == 0.0:
        return 1.0 / scale**2
    if l1_ratio == 1.0:
        return math.sqrt(2.0) / scale

    def log_sd_gap(log_rate: float) -> float:
        return 0.5 * math.log(_elastic_net_second_moment(math.exp(log_rate), l1_ratio)) - math.log(scale)

    lo, hi = math.log(min(1.0 / scale**2, math.sqrt(2.0) / scale)) - 5, math.log(max(1.0 / scale**2,
                                                                                     math.sqrt(2.0) / scale)) + 5
    return math.exp(brentq(log_sd_gap, lo, hi, xtol=1e-13, rtol=1e-13))


def _elastic_net_ab(rate: float, l1_ratio: float) -> tuple[float, float]:
    return rate * l1_ratio, rate * (1.0 - l1_ratio) / 2.0


def _elastic_net_second_moment(rate: float, l1_ratio: float) -> float:
    """E[x^2]: |x| is a Normal(-a / (2 b), 1 / sqrt(2 b)) truncated to x > 0."""
    from scipy.stats import truncnorm

    a, b = _elastic_net_ab(rate, l1_ratio)
    mu, sd = -a / (2 * b), 1 / math.sqrt(2 * b)
    m, v = truncnorm.stats(-mu / sd, math.inf, loc=mu, scale=sd, moments="mv")
    return float(v + m**2)


def elastic_net_logz(rate: float, l1_ratio: float) -> float:
    """log of the normalizing constant: ``2 int_0^inf exp(-a x - b x^2) dx = sqrt(pi / b) erfcx(a / (2 sqrt b))``."""
    from scipy.special import erfcx

    a, b = _elastic_net_ab(rate, l1_ratio)
    return 0.5 * math.log(math.pi / b) + math.log(erfcx(a / (2.0 * math.sqrt(b))))


def elastic_net(name: str, scale: float, l1_ratio: float, **kwargs):
    """Build the elastic-net prior ``name`` in the current model: ``l1_ratio = 0`` is ``Normal(0, scale)``,
    ``1`` is ``Laplace(0, scale / sqrt(2))`` (both with sd ``scale``), and in between the density
    ``exp(-r (l1_ratio |x| + (1 - l1_ratio) x^2 / 2)) / Z`` with the rate ``r`` that keeps the sd at
    ``scale`` (:func:`elastic_net_rate`). Draws: ``|x|`` is a normal truncated to x > 0 (completing the
    square), with a random sign; the log density is exact (normalized), so prior draws and SBC work.
    """
    if l1_ratio == 0.0:
        return pm.Normal(name, 0.0, scale, **kwargs)
    if l1_ratio == 1.0:
        return pm.Laplace(name, 0.0, scale / math.sqrt(2.0), **kwargs)
    rate = elastic_net_rate(scale, l1_ratio)
    a, b = _elastic_net_ab(rate, l1_ratio)
    logz = elastic_net_logz(rate, l1_ratio)

    def logp(value, a_, b_):
        return -a_ * pt.abs(value) - b_ * value**2 - logz

    def random(a_, b_, rng=None, size=None):
        from scipy.stats import truncnorm

        a_, b_ = np.asarray(a_, dtype=float), np.asarray(b_, dtype=float)
        mu, sd = -a_ / (2 * b_), 1 / np.sqrt(2 * b_)
        mag = truncnorm.rvs(-mu / sd, np.inf, loc=mu, scale=sd, size=size, random_state=rng)
        sign = rng.choice(np.array([-1.0, 1.0]), size=size)
        return sign * mag

    return pm.CustomDist(name, a, b, logp=logp, random=random, **kwargs)
