"""Layer 2, models: priors, likelihoods and the collapse choice, and the three factories.

``priors`` (:class:`Prior`), ``integrated`` (bernoulli/binomial group effects integrated out by adaptive
quadrature), ``collapse`` (which exact collapsed likelihood a model uses), ``factories`` (the three
model factories, each returning a ``pm.Model`` with its typed description).
"""

from hierpool.models.factories import random_intercepts, regularized_hierarchical, ridge_fixed_effects
from hierpool.models.priors import Prior

__all__ = ["Prior", "random_intercepts", "regularized_hierarchical", "ridge_fixed_effects"]
