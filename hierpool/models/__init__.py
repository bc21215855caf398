"""Layer 2, models: priors, likelihoods and the collapse choice, and the three factories.

``priors`` (:class:`Prior`), ``integrated`` (bernoulli/binomial group effects integrated out by adaptive
quadrature), ``collapse`` (which exact collapsed likelihood a model uses), ``factories`` (the three
model factories, each returning a ``pm.Model`` with its typed description).
"""

# Nothing is imported here: ``import hierpool`` and the CLI's checks load only the modules they use.
