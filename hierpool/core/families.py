"""Response families: one object per family owns everything that differs between them.

=========  ==========  =================================================  ===========================
family     link        response                                           natural scale of a group
=========  ==========  =================================================  ===========================
gaussian   identity    real numbers                                       mean of y
bernoulli  logit       0/1 (booleans are read as 0/1)                     rate: mean of y
binomial   logit       successes 0 <= y <= trials (``trials=``)           rate: sum(y) / sum(trials)
poisson    log         non-negative integer counts (``exposure=``)        mean count, or sum(y) /
                                                                          sum(exposure) with exposure
=========  ==========  =================================================  ===========================

:func:`get_family` returns the :class:`Family` of a name. A family knows its link and inverse link, the
support of its response and the message when data leave it, its log-likelihood with the first two
derivatives in the linear predictor (what the mode searches and the quadrature of
:mod:`hierpool.core.quadrature` use), response draws, the natural-scale mean, the size of a row (what a
group's rate is divided by: rows, trials or exposure), the within-group variance behind the shrinkage
weight ``rho``, the default prior scales, the PyMC likelihood, and the ridge penalty in other tools'
units. Everything else in hierpool asks the family; only the compiled kernels of
:mod:`hierpool.core.kernels` and :mod:`hierpool.core.quadrature` write the formulas again as literals
(numba needs them), and tests hold them equal to these.

Every array method works on numpy arrays and on xarray objects alike (numpy ufuncs, broadcasting).
PyMC is imported inside :meth:`Family.pymc_likelihood` only, so importing this module stays light.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy.special import expit, gammaln, logit

from hierpool.core import names as N

__all__ = ["Family", "get_family", "FAMILIES"]

_LOG_2PI_HALF = 0.5 * np.log(2.0 * np.pi)


def _is_integer_valued(y: np.ndarray) -> bool:
    return bool(np.all(np.equal(np.mod(y, 1), 0)))


@dataclass(frozen=True)
class Family:
    """What one response family does differently (the base holds what families share).

    Attributes
    ----------
    name : str
        ``"gaussian"``, ``"bernoulli"``, ``"binomial"`` or ``"poisson"``.
    link_name : str
        ``"identity"``, ``"logit"`` or ``"log"``.
    has_sigma : bool
        The likelihood has a residual SD ``sigma`` (gaussian): a parameter, a prior and a posterior
        variable. Its random intercepts also integrate out in closed form (normal effects, normal rows),
        which is what the exact gaussian collapse and the gaussian shortcuts rely on.
    binomial_type : bool
        Rows are successes out of trials (bernoulli: one trial per row) under a logit link: rows pool
        into binomial counts, and the Pólya-Gamma sampler and the integrated collapse apply.
    uses_trials, uses_exposure : bool
        The family takes ``trials=`` (required) or ``exposure=`` (optional).
    accepts_bool : bool
        A boolean response column is read as 0/1.
    integer_response : bool
        Responses are whole numbers (counts).
    fixed_effect_prior_width : float
        The ridge variant's intercept and coefficients get ``Normal(., width * prior_scale)`` priors.
    """

    name: str
    link_name: str
    has_sigma: bool = False
    binomial_type: bool = False
    uses_trials: bool = False
    uses_exposure: bool = False
    accepts_bool: bool = False
    integer_response: bool = True
    fixed_effect_prior_width: float = 10.0

    # links ------------------------------------------------------------------------------------------
    def link(self, mu):
        """The canonical link of a natural-scale value ``mu`` (clipped inside the support)."""
        return np.asarray(mu, dtype=float)

    def inverse_link(self, eta):
        """The natural-scale value of a linear predictor (numpy and xarray)."""
        return eta

    # arguments and support --------------------------------------------------------------------------
    def check_arguments(self, trials, exposure) -> None:
        """Refuse ``trials=`` / ``exposure=`` where the family does not use them, and a missing ``trials=``."""
        if trials is not None and not self.uses_trials:
            raise ValueError(f"trials={trials!r} is only used with family='binomial' (got family={self.name!r}).")
        if exposure is not None and not self.uses_exposure:
            raise ValueError(f"exposure={exposure!r} is only used with family='poisson' (got family={self.name!r}).")
        if self.uses_trials and trials is None:
            raise ValueError(f"family={self.name!r} needs trials=: a column of trial counts or one integer.")

    def check_support(self, y: np.ndarray, name: str, trials: np.ndarray | None = None) -> None:
        """Raise ``ValueError`` naming the column if ``y`` lies outside the family's support."""

    def response_hint(self) -> str:
        """A sentence appended to the error for a non-numeric response column."""
        return ""

    # likelihood and its derivatives in eta ----------------------------------------------------------
    def log_likelihood(self, y, eta, sigma=None, trials=None):
        """Pointwise log density (mass) of ``y`` given the linear predictor ``eta``, with all constants."""
        raise NotImplementedError

    def score(self, y, eta, sigma=None, trials=None):
        """First derivative of :meth:`log_likelihood` in ``eta``."""
        raise NotImplementedError

    def curvature(self, y, eta, sigma=None, trials=None):
        """Minus the second derivative of :meth:`log_likelihood` in ``eta`` (the observed information,
        >= 0: every family here is log-concave in ``eta``)."""
        raise NotImplementedError

    # responses --------------------------------------------------------------------------------------
    def draw(self, eta, rng: np.random.Generator, sigma=None, trials=None) -> np.ndarray:
        """Responses drawn given a linear predictor array (numpy), as floats."""
        raise NotImplementedError

    def mean(self, eta, trials=None):
        """E[y | eta] on the response's scale: mean, probability, expected successes, expected count."""
        return self.inverse_link(eta)

    def row_size(self, n_rows: int, trials=None, exposure=None) -> np.ndarray:
        """What each row adds to its group's denominator (rows, trials or exposure): a group's natural-scale
        raw mean is ``sum(y) / sum(row_size)``, and rows pooled into a cell add up their sizes."""
        return np.ones(n_rows)

    def cell_sizes(self, sizes: np.ndarray) -> tuple[np.ndarray | None, np.ndarray | None]:
        """``(trials, exposure)`` of count cells whose rows' sizes add up to ``sizes``."""
        raise ValueError(f"family={self.name!r} keeps no count cells (its rows reduce to gaussian statistics).")

    # pooling ----------------------------------------------------------------------------------------
    def within_variance(self, denom, mean_response, sigma=None, n=None):
        """Variance of a group's information about its own effect, on the link scale (the ``v_j`` of
        ``rho_j = tau^2 / (tau^2 + v_j)``); ``denom`` the group's rows, trials or exposure, ``mean_response``
        its fitted natural-scale value."""
        raise NotImplementedError

    def prior_scale(self, y_sd: float) -> float:
        """The scale of the linear predictor used by the default priors (``y_scale``)."""
        return 1.0

    def ridge_units(self, lam, tau_sq, n_rows: float, n_note: str, sigma_sq=None, s_y: float = np.nan) -> list:
        """The ridge penalty implied by ``lam = 1/tau^2`` in other tools' units: ``(units, draws, formula)``."""
        raise NotImplementedError

    # PyMC -------------------------------------------------------------------------------------------
    def pymc_likelihood(self, name: str, eta, observed, dims, sigma=None, trials=None):
        """The observed variable of a PyMC model (inside a model context); ``trials`` of count cells."""
        raise NotImplementedError

    def __repr__(self) -> str:
        return f"Family({self.name!r}, link={self.link_name!r})"


@dataclass(frozen=True, repr=False)
class _Gaussian(Family):
    def log_likelihood(self, y, eta, sigma=None, trials=None):
        z = (y - eta) / sigma
        return -0.5 * z**2 - np.log(sigma) - _LOG_2PI_HALF

    def score(self, y, eta, sigma=None, trials=None):
        return (y - eta) / sigma**2

    def curvature(self, y, eta, sigma=None, trials=None):
        return np.broadcast_to(1.0 / sigma**2, np.broadcast_shapes(np.shape(eta), np.shape(sigma)))

    def draw(self, eta, rng, sigma=None, trials=None):
        return rng.normal(eta, sigma)

    def within_variance(self, denom, mean_response, sigma=None, n=None):
        return sigma**2 / n

    def prior_scale(self, y_sd):
        return y_sd if y_sd > 0 else 1.0

    def ridge_units(self, lam, tau_sq, n_rows, n_note, sigma_sq=None, s_y=np.nan):
        return [
            ("alpha_sklearn", sigma_sq * lam, "sigma^2 / tau^2 (scikit-learn Ridge alpha, on the RSS)"),
            ("lambda_glmnet", s_y * sigma_sq * lam / n_rows,
             f"s_y * sigma^2 / (N * tau^2) (glmnet alpha=0, standardize=FALSE; s_y = 1/N sd(y) = {s_y:.6g}, "
             f"{n_note} = {n_rows:g})"),
        ]

    def pymc_likelihood(self, name, eta, observed, dims, sigma=None, trials=None):
        import pymc as pm

        return pm.Normal(name, mu=eta, sigma=sigma, observed=observed, dims=dims)


@dataclass(frozen=True, repr=False)
class _Logit(Family):
    """bernoulli and binomial: successes out of trials (one per row for bernoulli) under a logit link."""

    def link(self, mu):
        return logit(np.clip(np.asarray(mu, dtype=float), 1e-6, 1 - 1e-6))

    def inverse_link(self, eta):
        return expit(eta)

    def log_likelihood(self, y, eta, sigma=None, trials=None):
        if trials is None:
            return y * eta - np.logaddexp(0.0, eta)
        const = gammaln(trials + 1) - gammaln(y + 1) - gammaln(trials - y + 1)
        return const + y * eta - trials * np.logaddexp(0.0, eta)

    def score(self, y, eta, sigma=None, trials=None):
        return y - (1.0 if trials is None else trials) * expit(eta)

    def curvature(self, y, eta, sigma=None, trials=None):
        p = expit(eta)
        return (1.0 if trials is None else trials) * p * (1.0 - p)

    def draw(self, eta, rng, sigma=None, trials=None):
        n = 1 if trials is None else np.asarray(trials).astype(np.int64)
        return rng.binomial(n, expit(eta)).astype(float)

    def mean(self, eta, trials=None):
        p = expit(eta)
        return p if trials is None else p * trials

    def cell_sizes(self, sizes):
        return sizes, None

    def within_variance(self, denom, mean_response, sigma=None, n=None):
        with np.errstate(divide="ignore"):
            return 1.0 / (denom * mean_response * (1.0 - mean_response))

    def ridge_units(self, lam, tau_sq, n_rows, n_note, sigma_sq=None, s_y=np.nan):
        with np.errstate(divide="ignore"):
            return [
                ("alpha_sklearn", lam, "1 / tau^2 (penalty on the summed log-loss)"),
                ("C_sklearn", tau_sq, "tau^2 (scikit-learn LogisticRegression C)"),
                ("lambda_glmnet", lam / n_rows, f"1 / (N * tau^2) (glmnet alpha=0; {n_note} = {n_rows:g})"),
            ]

    def pymc_likelihood(self, name, eta, observed, dims, sigma=None, trials=None):
        import pymc as pm

        if trials is None:
            return pm.Bernoulli(name, logit_p=eta, observed=observed, dims=dims)
        return pm.Binomial(name, n=trials, logit_p=eta, observed=observed, dims=dims)


@dataclass(frozen=True, repr=False)
class _Bernoulli(_Logit):
    def check_support(self, y, name, trials=None):
        bad = ~np.isin(y, (0.0, 1.0))
        if bad.any():
            raise ValueError(
                f"y={name!r} must hold only 0 and 1 for family='bernoulli'; found "
                f"{np.unique(y[bad])[:5].tolist()} in {int(bad.sum())} rows. For counts out of a number of "
                "trials use family='binomial' with trials=."
            )

    def response_hint(self):
        return " Encode the outcome as 0/1."


@dataclass(frozen=True, repr=False)
class _Binomial(_Logit):
    def check_support(self, y, name, trials=None):
        if not _is_integer_valued(y) or (y < 0).any():
            raise ValueError(
                f"y={name!r} must hold non-negative integer success counts for family='binomial'."
            )
        over = y > trials
        if over.any():
            i = int(np.flatnonzero(over)[0])
            raise ValueError(
                f"y={name!r} exceeds trials in {int(over.sum())} rows (first: row {i}, y={y[i]:g} > "
                f"trials={trials[i]:g}); successes must satisfy 0 <= y <= trials."
            )

    def row_size(self, n_rows, trials=None, exposure=None):
        return np.broadcast_to(np.asarray(trials, dtype=float), (n_rows,))


@dataclass(frozen=True, repr=False)
class _Poisson(Family):
    def link(self, mu):
        return np.log(np.maximum(np.asarray(mu, dtype=float), 1e-6))

    def inverse_link(self, eta):
        return np.exp(eta)

    def check_support(self, y, name, trials=None):
        if (y < 0).any() or not _is_integer_valued(y):
            bad = y[(y < 0) | (np.mod(y, 1) != 0)]
            raise ValueError(
                f"y={name!r} must hold non-negative integer counts for family='poisson'; found "
                f"{np.unique(bad)[:5].tolist()}."
            )

    def log_likelihood(self, y, eta, sigma=None, trials=None):
        return y * eta - np.exp(eta) - gammaln(y + 1)

    def score(self, y, eta, sigma=None, trials=None):
        return y - np.exp(eta)

    def curvature(self, y, eta, sigma=None, trials=None):
        return np.exp(eta)

    def draw(self, eta, rng, sigma=None, trials=None):
        return rng.poisson(np.exp(eta)).astype(float)

    def row_size(self, n_rows, trials=None, exposure=None):
        return np.ones(n_rows) if exposure is None else np.asarray(exposure, dtype=float)

    def cell_sizes(self, sizes):
        return None, sizes

    def within_variance(self, denom, mean_response, sigma=None, n=None):
        with np.errstate(divide="ignore"):
            return 1.0 / (denom * mean_response)

    def ridge_units(self, lam, tau_sq, n_rows, n_note, sigma_sq=None, s_y=np.nan):
        return [
            ("alpha_sklearn", lam / n_rows,
             f"1 / (N * tau^2) (scikit-learn PoissonRegressor alpha, mean deviance; {n_note} = {n_rows:g})"),
            ("lambda_glmnet", lam / n_rows, f"1 / (N * tau^2) (glmnet alpha=0; {n_note} = {n_rows:g})"),
        ]

    def pymc_likelihood(self, name, eta, observed, dims, sigma=None, trials=None):
        import pymc as pm

        return pm.Poisson(name, mu=pm.math.exp(eta), observed=observed, dims=dims)


_REGISTRY: dict[str, Family] = {
    f.name: f
    for f in (
        _Gaussian("gaussian", "identity", has_sigma=True, integer_response=False, fixed_effect_prior_width=100.0),
        _Bernoulli("bernoulli", "logit", binomial_type=True, accepts_bool=True),
        _Binomial("binomial", "logit", binomial_type=True, uses_trials=True),
        _Poisson("poisson", "log", uses_exposure=True),
    )
}

#: The family names, in the order of the table above (the names module's, where the contract lists them).
FAMILIES = N.FAMILIES


def get_family(family) -> Family:
    """The :class:`Family` named ``family`` (a Family is returned as it is).

    Raises
    ------
    ValueError
        For an unknown name, listing the valid choices.
    """
    if isinstance(family, Family):
        return family
    try:
        return _REGISTRY[family]
    except (KeyError, TypeError):
        raise ValueError(
            f"family={family!r} is not valid; valid choices: {', '.join(repr(f) for f in FAMILIES)}."
        ) from None
