"""hierpool: Bayesian models of grouped data, and what random-effects shrinkage does that ridge does not.

>>> import hierpool as hp
>>> gd = hp.prepare(df, y="y", group="member", predictors=["age"], family="bernoulli")  # doctest: +SKIP
>>> dt = hp.fit(hp.random_intercepts(gd), random_seed=1)                                # doctest: +SKIP
>>> hp.shrinkage(dt)                                                                   # doctest: +SKIP
"""

from __future__ import annotations

__version__ = "0.1.0"

from . import datasets, plots
from .compare import compare, cross_validate
from .data import GroupedData, prepare
from .io import load, save
from .models import random_intercepts, regularized_hierarchical, ridge_fixed_effects
from .ppc import ppc
from .predict import predict
from .priors import Prior
from .ranking import rank_groups, triple_goal
from .report import summarize
from .sampling import HierpoolSamplingWarning, check_sampling, fit
from .shrinkage import implied_ridge, ridge_path, shrinkage

__all__ = [
    "GroupedData", "HierpoolSamplingWarning", "Prior", "check_sampling", "compare", "cross_validate",
    "datasets", "fit", "implied_ridge", "load", "plots", "ppc", "predict", "prepare", "random_intercepts",
    "rank_groups", "regularized_hierarchical", "ridge_fixed_effects", "ridge_path", "save", "shrinkage",
    "summarize", "triple_goal",
]
