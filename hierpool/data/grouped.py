"""Rows nested in groups (:class:`GroupedData`) and their sufficient statistics (:class:`GroupedStats`):
what every model factory takes.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from functools import cached_property

import numpy as np
import pandas as pd

from hierpool.core.families import Family, get_family
from hierpool.data.stats import (
    CellsOnWorkers,
    CountPatterns,
    GaussianStats,
    SizeClasses,
    count_patterns,
    gaussian_stats,
    size_classes,
)


class GroupedBase:
    """What :class:`GroupedData` (rows) and :class:`hierpool.data.GroupedStats` (sufficient statistics)
    share: sizes and the data scales that the default priors use."""

    #: Summary-level data (one estimate per group with its known standard error): the standard errors,
    #: else None. Only :class:`GroupedData` built by ``prepare(..., se=)`` has them.
    se = None
    #: grouping factors beyond the first (:class:`GroupedData` with several factors only)
    factors: tuple = ()
    #: random slopes (:class:`GroupedData` only; data reduced to statistics has random intercepts)
    slopes: tuple = ()

    @cached_property
    def gaussian_sizes(self) -> SizeClasses:
        """The gaussian statistics pooled over groups of equal size (computed once: the collapsed model and
        the gaussian integrated sampler both read them)."""
        return size_classes(self.gaussian)

    @property
    def summary_level(self) -> bool:
        """True for summary-level data: one row per group, a response with a known standard error ``se``
        (:func:`hierpool.data.summary.prepare_summary`), so the model has no residual ``sigma``."""
        return self.se is not None

    @property
    def fam(self) -> Family:
        """The response :class:`~hierpool.core.families.Family`."""
        return get_family(self.family)

    @property
    def n_groups(self) -> int:
        return len(self.groups)

    @property
    def n_predictors(self) -> int:
        return len(self.predictors)

    @property
    def overall_mean(self) -> float:
        """The pooled mean of the response on its natural scale (a rate for binomial/poisson)."""
        return float((self.group_raw_mean * self.group_denominator).sum() / self.group_denominator.sum())

    @property
    def y_location(self) -> float:
        """The overall mean on the linear-predictor scale: the center of the default intercept prior."""
        return float(self.fam.link(self.overall_mean))

    @property
    def y_scale(self) -> float:
        """The scale of the linear predictor used by default priors: sd(y) for gaussian, 1 otherwise."""
        return self.fam.prior_scale(self.y_sd)


@dataclass(frozen=True, eq=False)
class GroupedData(GroupedBase):
    """Validated rows nested in groups, ready for a model factory.

    Build it with :func:`prepare`. Arrays are read-only numpy arrays; ``X`` is on the user's scale
    (indicators are 0/1), with ``x_center`` and ``x_scale`` the internal centering and scaling.
    Summary-level data (``prepare(..., se=)``) has one row per group and ``se``, the known standard
    error of each row's response.
    """

    family: str
    y: np.ndarray
    group_idx: np.ndarray
    groups: pd.Index
    X: np.ndarray
    predictors: list[str]
    x_center: np.ndarray
    x_scale: np.ndarray
    terms: list[dict]
    y_name: str
    group_name: str
    trials: np.ndarray | None = None
    exposure: np.ndarray | None = None
    trials_name: str | int | list[str] | None = None  # a list: cbind(successes, failures), trials = their sum
    exposure_name: str | None = None
    formula: str | None = None  # the formula it was prepared from, if any
    se: np.ndarray | None = None
    se_name: str | None = None
    #: Random slopes ``(1 + x | g)``: the predictors (numeric columns) whose coefficient varies by group,
    #: jointly with the intercept (:mod:`hierpool.data.slope_stats`). Empty: random intercepts only.
    slopes: tuple[str, ...] = ()
    #: grouping factors beyond the first (crossed or nested; :mod:`hierpool.data.factors`), else ()
    factors: tuple = ()
    group_n: np.ndarray = field(init=False)
    group_denominator: np.ndarray = field(init=False)
    group_raw_mean: np.ndarray = field(init=False)

    def __post_init__(self):
        J = len(self.groups)
        n = np.bincount(self.group_idx, minlength=J).astype(np.int64)
        denom = np.bincount(self.group_idx, weights=self.row_sizes, minlength=J)
        sums = np.bincount(self.group_idx, weights=self.y, minlength=J)
        object.__setattr__(self, "group_n", n)
        object.__setattr__(self, "group_denominator", denom)
        object.__setattr__(self, "group_raw_mean", sums / denom)
        for arr in (self.y, self.group_idx, self.X, self.x_center, self.x_scale, self.group_n,
                    self.group_denominator, self.group_raw_mean, self.trials, self.exposure, self.se):
            if arr is not None:
                arr.setflags(write=False)

    # sufficient statistics, computed once (cached properties: the instance stays immutable) -----------
    @cached_property
    def gaussian(self) -> GaussianStats:
        """Group means and within-group cross-products of the response (gaussian models)."""
        return gaussian_stats(self, self.y)

    @cached_property
    def cells(self) -> CountPatterns:
        """Rows pooled into (group, predictor pattern) cells (count models)."""
        return count_patterns(self)

    # sizes -------------------------------------------------------------------------------------------
    @property
    def n_obs(self) -> int:
        return int(self.y.shape[0])

    @cached_property
    def y_sd(self) -> float:
        """The 1/N standard deviation of the response (computed once: every default prior reads it)."""
        return float(np.std(self.y))

    @property
    def Xs(self) -> np.ndarray:
        """The predictors centered and scaled as the models see them: ``(X - x_center) / x_scale``."""
        return (self.X - self.x_center) / self.x_scale

    @property
    def row_sizes(self) -> np.ndarray:
        """What each row adds to its group's denominator: 1, its trials, or its exposure."""
        return self.fam.row_size(self.y.shape[0], trials=self.trials, exposure=self.exposure)

    @property
    def log_offset(self) -> np.ndarray | None:
        """log(exposure) for poisson with exposure, else None."""
        return None if self.exposure is None else np.log(self.exposure)

    @property
    def factor_names(self) -> list[str]:
        """Every grouping factor, the first (``group_name``) first."""
        return [self.group_name, *(f.name for f in self.factors)]

    def factor_stats(self, f) -> dict:
        """Per-level rows, denominators and raw means of an extra factor ``f`` (a GroupingFactor)."""
        J = f.n_levels
        n = np.bincount(f.idx, minlength=J).astype(np.int64)
        denom = np.bincount(f.idx, weights=self.row_sizes, minlength=J)
        sums = np.bincount(f.idx, weights=self.y, minlength=J)
        return {"n": n, "denominator": denom, "raw_mean": sums / denom}

    def spec(self) -> dict:
        """The JSON-serializable recipe of this data: columns, family and predictor terms."""
        return {
            "y": self.y_name,
            "group": self.group_name,
            "family": self.family,
            "trials": self.trials_name,
            "exposure": self.exposure_name,
            "predictors": self.predictors,
            "terms": self.terms,
            "x_center": self.x_center.tolist(),
            "x_scale": self.x_scale.tolist(),
            "n_obs": self.n_obs,
            "y_sd": self.y_sd,
            **({"formula": self.formula} if self.formula else {}),
            **({"se": self.se_name} if self.se is not None else {}),
            **({"slopes": list(self.slopes)} if self.slopes else {}),
            **({"factors": self.factor_names} if self.factors else {}),
        }

    @property
    def slope_idx(self) -> np.ndarray:
        """The columns of ``X`` that carry random slopes (in the order of :attr:`slopes`)."""
        return np.asarray([self.predictors.index(s) for s in self.slopes], dtype=np.int64)

    @property
    def Z(self) -> np.ndarray:
        """The random-effects design of each row on the user's scale: ``[1, x_slope...]`` (rows x terms)."""
        return np.column_stack([np.ones(self.n_obs), self.X[:, self.slope_idx]])

    def __repr__(self) -> str:
        preds = ", ".join(self.predictors) if self.predictors else "none"
        sizes = self.group_n
        if self.se is not None:
            return (f"GroupedData(summary-level, y={self.y_name!r}, se={self.se_name!r}, group={self.group_name!r}, "
                    f"groups={self.n_groups} (one estimate each; se from {self.se.min():.4g} to "
                    f"{self.se.max():.4g}), predictors=[{preds}])")
        slopes = f", slopes=[{', '.join(self.slopes)}]" if self.slopes else ""
        if self.factors:
            more = ", ".join(f"{f.name!r} ({f.n_levels} levels)" for f in self.factors)
            return (f"GroupedData(family={self.family!r}, y={self.y_name!r}, group={self.group_name!r} "
                    f"({self.n_groups} levels), further factors: {more}, rows={self.n_obs}, predictors=[{preds}])")
        return (
            f"GroupedData(family={self.family!r}, y={self.y_name!r}, group={self.group_name!r}, "
            f"rows={self.n_obs}, groups={self.n_groups} (rows per group: min {sizes.min()}, median "
            f"{np.median(sizes):g}, max {sizes.max()}), predictors=[{preds}]{slopes})"
        )


@dataclass(frozen=True, eq=False)
class GroupedStats(GroupedBase):
    """Sufficient statistics of rows nested in groups (no rows kept). Build it with :func:`reduce`."""

    family: str
    groups: pd.Index
    group_n: np.ndarray
    group_denominator: np.ndarray
    group_raw_mean: np.ndarray
    predictors: list[str]
    x_center: np.ndarray
    x_scale: np.ndarray
    terms: list[dict]
    y_name: str
    group_name: str
    n_obs: int
    y_total_ss: float  # sum (y - mean y)^2 (gaussian), for the default prior scale
    gaussian: GaussianStats | None = None
    cells: CountPatterns | None = None
    trials_name: str | int | None = None
    exposure_name: str | None = None
    source: str = field(default="")
    #: count cells kept on Dask workers (``hp.prepare(..., client=)``) in place of ``cells``, else None
    cells_on_workers: CellsOnWorkers | None = None

    @property
    def y_sd(self) -> float:
        """The 1/N standard deviation of the response (gaussian; 0 for counts, which do not use it)."""
        return float(np.sqrt(self.y_total_ss / self.n_obs))

    def spec(self) -> dict:
        return {
            "y": self.y_name, "group": self.group_name, "family": self.family, "trials": self.trials_name,
            "exposure": self.exposure_name, "predictors": self.predictors, "terms": self.terms,
            "x_center": self.x_center.tolist(), "x_scale": self.x_scale.tolist(), "rows_kept": False,
            "n_obs": self.n_obs, "y_sd": self.y_sd,
            "source": self.source, **({"cells_on_workers": True} if self.cells_on_workers is not None else {}),
        }

    def __repr__(self) -> str:
        if self.gaussian is not None:
            kind = "gaussian statistics"
        elif self.cells_on_workers is not None:
            kind = f"{self.cells_on_workers.n_cells} cells on Dask workers"
        else:
            kind = f"{self.cells.y.shape[0]} cells"
        return (f"GroupedStats(family={self.family!r}, rows={self.n_obs}, groups={self.n_groups}, "
                f"predictors={self.predictors}, {kind})")
