"""hierpool: Bayesian models of grouped data, and what random-effects shrinkage does that ridge does not.

>>> import hierpool as hp
>>> gd = hp.prepare(df, y="y", group="member", predictors=["age"], family="bernoulli")  # doctest: +SKIP
>>> dt = hp.fit(hp.random_intercepts(gd), random_seed=1)                                # doctest: +SKIP
>>> hp.shrinkage(dt)                                                                   # doctest: +SKIP

The public names are imported when first used (PEP 562), so ``import hierpool`` is fast and a command
that needs only part of the package (``hierpool validate``) does not load PyMC.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING

from hierpool.core.config import get_options, set_options
from hierpool.core.version import __version__

#: Public name -> the module that defines it (``None``: the name is that module itself).
_LAZY = {
    "plots": ("hierpool.plots", None),
    "datasets": ("hierpool.data.datasets", None),
    "compare": ("hierpool.analysis.compare", "compare"),
    "cross_validate": ("hierpool.analysis.compare", "cross_validate"),
    "eb_vs_full_bayes": ("hierpool.analysis.methods", "eb_vs_full_bayes"),
    "ppc": ("hierpool.analysis.ppc", "ppc"),
    "profile": ("hierpool.analysis.profile", "profile"),
    "predict": ("hierpool.analysis.predict", "predict"),
    "rank_groups": ("hierpool.analysis.ranking", "rank_groups"),
    "triple_goal": ("hierpool.analysis.ranking", "triple_goal"),
    "summarize": ("hierpool.analysis.report", "summarize"),
    "implied_ridge": ("hierpool.analysis.shrinkage", "implied_ridge"),
    "ridge_path": ("hierpool.analysis.shrinkage", "ridge_path"),
    "shrinkage": ("hierpool.analysis.shrinkage", "shrinkage"),
    "select_factor": ("hierpool.analysis.fitview", "select_factor"),
    "GroupedData": ("hierpool.data.grouped", "GroupedData"),
    "GroupedStats": ("hierpool.data.grouped", "GroupedStats"),
    "prepare": ("hierpool.data.prepare", "prepare"),
    "HierpoolSamplingWarning": ("hierpool.inference.diagnostics", "HierpoolSamplingWarning"),
    "check_sampling": ("hierpool.inference.diagnostics", "check_sampling"),
    "fit": ("hierpool.inference.sampling", "fit"),
    "from_trace": ("hierpool.inference.sampling", "from_trace"),
    "load": ("hierpool.inference.storage", "load"),
    "save": ("hierpool.inference.storage", "save"),
    "ModelDescription": ("hierpool.models.description", "ModelDescription"),
    "describe": ("hierpool.models.description", "describe"),
    "random_intercepts": ("hierpool.models.factories", "random_intercepts"),
    "regularized_hierarchical": ("hierpool.models.factories", "regularized_hierarchical"),
    "ridge_fixed_effects": ("hierpool.models.factories", "ridge_fixed_effects"),
    "Prior": ("hierpool.models.priors", "Prior"),
    "GroupEncoder": ("hierpool.workflow.encoder", "GroupEncoder"),  # imports scikit-learn when first used
}

__all__ = [
    "GroupEncoder", "GroupedData", "GroupedStats", "HierpoolSamplingWarning", "ModelDescription", "Prior", "__version__",
    "check_sampling", "compare", "cross_validate", "datasets", "describe", "eb_vs_full_bayes", "fit", "from_trace",
    "get_options", "implied_ridge", "load", "plots", "ppc", "predict", "profile", "prepare", "random_intercepts",
    "rank_groups", "regularized_hierarchical", "ridge_fixed_effects", "ridge_path", "save", "select_factor",
    "set_options",
    "shrinkage", "summarize", "triple_goal",
]


def __getattr__(name: str):
    try:
        module, attr = _LAZY[name]
    except KeyError:
        raise AttributeError(f"module 'hierpool' has no attribute {name!r}") from None
    mod = importlib.import_module(module)
    value = mod if attr is None else getattr(mod, attr)
    globals()[name] = value  # later look-ups are plain attribute reads
    return value


def __dir__():
    return __all__


if TYPE_CHECKING:  # for type checkers and IDEs: the same names, imported eagerly
    from hierpool import plots
    from hierpool.analysis.compare import compare, cross_validate
    from hierpool.analysis.fitview import select_factor
    from hierpool.analysis.ppc import ppc
    from hierpool.analysis.predict import predict
    from hierpool.analysis.profile import profile
    from hierpool.analysis.ranking import rank_groups, triple_goal
    from hierpool.analysis.report import summarize
    from hierpool.analysis.shrinkage import implied_ridge, ridge_path, shrinkage
    from hierpool.data import datasets
    from hierpool.data.grouped import GroupedData, GroupedStats
    from hierpool.data.prepare import prepare
    from hierpool.inference.diagnostics import HierpoolSamplingWarning, check_sampling
    from hierpool.inference.sampling import fit, from_trace
    from hierpool.inference.storage import load, save
    from hierpool.models.description import ModelDescription, describe
    from hierpool.models.factories import random_intercepts, regularized_hierarchical, ridge_fixed_effects
    from hierpool.models.priors import Prior
    from hierpool.workflow.encoder import GroupEncoder
