"""The typed description a factory attaches to the model it builds.

A ``pm.Model`` holds the graph; what inference needs besides the graph (the variant, the family, the data,
the collapse choice, and the :class:`~hierpool.models.priors.Prior` object of every parameter) travels in
a :class:`ModelDescription`, attached as ``model.hierpool`` (:data:`hierpool.core.names.MODEL_ATTR`) and
read with :func:`describe`. The Gibbs sampler plans from these Prior objects, ``hp.fit`` writes
``settings`` into the fit's attrs, and simulation-based calibration swaps the data with
:meth:`ModelDescription.with_response`.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from types import MappingProxyType

from hierpool.core import names as N
from hierpool.data.grouped import GroupedData, GroupedStats
from hierpool.models.priors import Prior

__all__ = ["ModelDescription", "describe"]

#: Collapses whose group effects are integrated out of the sampled model and drawn after sampling.
INTEGRATED_OUT = ("gaussian", "known_se", "integrated", "gaussian_slopes", "gaussian_crossed")


@dataclass(frozen=True, eq=False)
class ModelDescription:
    """What a factory built, besides the PyMC graph.

    Attributes
    ----------
    variant : str
        One of :data:`hierpool.core.names.VARIANTS`.
    family : str
        One of :data:`hierpool.core.names.FAMILIES`.
    data : GroupedData or GroupedStats
        The data the model was built on.
    collapse : {"gaussian", "known_se", "integrated", "gaussian_slopes", "gaussian_crossed", "counts", None}
        The exact collapsed likelihood in use (:func:`hierpool.models.collapse.resolve_collapse`):
        group effects integrated out ("gaussian"; "known_se" for summary-level data; "integrated";
        "gaussian_slopes" for random slopes, :mod:`hierpool.models.slopes`; "gaussian_crossed": the first
        of several factors, given the others, :mod:`hierpool.models.crossed`),
        rows pooled into cells ("counts"), or
        the row-level likelihood (None).
    priors : mapping of str to Prior or float
        The prior of every parameter the model has, defaults included, on the scale it is placed:
        ``"intercept"`` (at the predictors' means, or at x = 0 when :attr:`intercept_at` is "zero"),
        ``"beta_std"`` (per standard deviation of each predictor) or ``"beta"`` (user's scale, when the
        user gave it), ``"tau"`` or ``"tau_sq"``, ``"sigma"`` or ``"sigma_sq"``. A float fixes the
        parameter. ``"beta"`` is a dict ``{predictor name: Prior or float}`` when the user gave priors
        per coefficient; ``"beta_std"`` is then present too when some coefficients kept the default, and
        applies to those only. The horseshoe penalty has no single prior on the coefficients and leaves
        ``"beta_std"`` out.
    lam : float or None
        The ridge variant's prior precision of each group effect.
    penalty : str or None
        The regularized variant's penalty on the coefficients.
    centered : bool or "auto"
        How sampled group effects are parameterized: non-centered (False), hierarchically centered
        (True) or partially non-centered per group ("auto"); see :func:`hierpool.random_intercepts`.
    intercept_at : {"means", "zero"}
        Where the intercept's prior is placed: on the intercept at the predictors' means (the sampled
        ``intercept_centered``) or on the intercept at x = 0 (the sampled ``intercept``).
    settings : mapping
        JSON-serializable settings, stored in a fit's attrs (:data:`hierpool.core.names.ATTR_SETTINGS`).
    fit_defaults : mapping
        Sampler settings the model asks for unless the user gives others (``target_accept``).
    slopes : tuple of str
        The predictors with random slopes, correlated with the intercept (``(1 + x | g)``); empty for
        random intercepts only.
    lkj_eta : float or None
        The LKJ shape of the slopes' correlation prior (None without slopes, and for the ridge variant).
    """

    variant: str
    family: str
    data: GroupedData | GroupedStats
    collapse: str | None
    priors: Mapping[str, Prior | float]
    settings: Mapping
    lam: float | None = None
    penalty: str | None = None
    centered: bool | str = False
    intercept_at: str = "means"
    fit_defaults: Mapping = field(default_factory=dict)
    slopes: tuple[str, ...] = ()
    lkj_eta: float | None = None

    def __post_init__(self):
        object.__setattr__(self, "priors", MappingProxyType(dict(self.priors)))
        object.__setattr__(self, "fit_defaults", MappingProxyType(dict(self.fit_defaults)))

    @property
    def fam(self):
        """The :class:`~hierpool.core.families.Family` object of :attr:`family`."""
        from hierpool.core.families import get_family

        return get_family(self.family)

    @property
    def integrates_out_group_effects(self) -> bool:
        """True when the sampled model has no ``group_effect``: it is drawn from its exact conditional
        by :func:`hierpool.fit` after sampling."""
        return self.collapse in INTEGRATED_OUT

    @property
    def group_sd_fixed(self) -> float | None:
        """The fixed standard deviation of the group effects: ``1/sqrt(lam)`` (ridge), a fixed tau, or None."""
        if self.lam is not None:
            return 1.0 / math.sqrt(self.lam)
        for key, root in ((N.TAU, False), ("tau_sq", True)):
            value = self.priors.get(key)
            if value is not None and not isinstance(value, Prior):
                return math.sqrt(value) if root else float(value)
        return None

    def with_response(self, y) -> ModelDescription:
        """The same description with the response replaced (same design), for refits of new data."""
        if not isinstance(self.data, GroupedData):
            raise TypeError("with_response needs a model built on rows (GroupedData), not on GroupedStats.")
        return dataclasses.replace(self, data=dataclasses.replace(self.data, y=y))

    def __repr__(self) -> str:
        extra = f", lam={self.lam:g}" if self.lam is not None else ""
        extra += f", penalty={self.penalty!r}" if self.penalty else ""
        if self.slopes:
            extra += f", slopes={list(self.slopes)}" + (f", lkj_eta={self.lkj_eta:g}" if self.lkj_eta else "")
        extra += f", intercept_at={self.intercept_at!r}" if self.intercept_at != "means" else ""
        return (f"ModelDescription(variant={self.variant!r}, family={self.family!r}, collapse={self.collapse!r}"
                f"{extra}, groups={self.data.n_groups}, priors={dict(self.priors)})")


def describe(model) -> ModelDescription:
    """The :class:`ModelDescription` of a model built by a hierpool factory.

    Raises ``TypeError`` for anything else, naming what was given.
    """
    desc = getattr(model, N.MODEL_ATTR, None)
    if isinstance(desc, ModelDescription):
        return desc
    got = type(model).__name__
    if got == "Model":
        raise TypeError(
            "this pm.Model was not built by a hierpool factory (it has no ModelDescription); build it with "
            "hp.random_intercepts, hp.ridge_fixed_effects or hp.regularized_hierarchical, or sample it with "
            "pm.sample yourself."
        )
    hint = ""
    if isinstance(model, (GroupedData, GroupedStats)) or type(model).__name__ == "DataFrame":
        hint = " Build a model from it first, e.g. hp.fit(hp.random_intercepts(gd))."
    raise TypeError(
        f"model must be a pm.Model built by hp.random_intercepts, hp.ridge_fixed_effects or "
        f"hp.regularized_hierarchical; got {got}.{hint}"
    )
