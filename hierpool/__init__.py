"""hierpool: Bayesian models of grouped data, and what random-effects shrinkage does that ridge does not.

>>> import hierpool as hp
>>> gd = hp.prepare(df, y="y", group="member", predictors=["age"], family="bernoulli")  # doctest: +SKIP
>>> dt = hp.fit(hp.random_intercepts(gd), random_seed=1)                                # doctest: +SKIP
>>> hp.shrinkage(dt)                                                                   # doctest: +SKIP
"""

from __future__ import annotations

from hierpool import plots
from hierpool.analysis.compare import compare, cross_validate
from hierpool.analysis.ppc import ppc
from hierpool.analysis.predict import predict
from hierpool.analysis.ranking import rank_groups, triple_goal
from hierpool.analysis.report import summarize
from hierpool.analysis.shrinkage import implied_ridge, ridge_path, shrinkage
from hierpool.core.config import get_options, set_options
from hierpool.core.version import __version__
from hierpool.data import datasets
from hierpool.data.grouped import GroupedData
from hierpool.data.prepare import prepare
from hierpool.inference.diagnostics import HierpoolSamplingWarning, check_sampling
from hierpool.inference.sampling import fit, from_trace
from hierpool.inference.storage import load, save
from hierpool.models.description import ModelDescription, describe
from hierpool.models.factories import random_intercepts, regularized_hierarchical, ridge_fixed_effects
from hierpool.models.priors import Prior

__all__ = [
    "__version__",
    "GroupedData", "HierpoolSamplingWarning", "Prior", "check_sampling", "compare", "cross_validate",
    "datasets", "describe", "get_options", "set_options", "fit", "from_trace", "ModelDescription", "implied_ridge", "load", "plots", "ppc", "predict", "prepare", "random_intercepts",
    "rank_groups", "regularized_hierarchical", "ridge_fixed_effects", "ridge_path", "save", "shrinkage",
    "summarize", "triple_goal", "GroupEncoder",
]


def __getattr__(name: str):
    """Lazy exports: ``hp.GroupEncoder`` imports scikit-learn only when first used (``import hierpool``
    stays fast)."""
    if name == "GroupEncoder":
        from hierpool.workflow.encoder import GroupEncoder

        globals()[name] = GroupEncoder
        return GroupEncoder
    raise AttributeError(f"module 'hierpool' has no attribute {name!r}")


def __dir__():
    return sorted(set(globals()) | {"GroupEncoder"})
