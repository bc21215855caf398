"""Layer 3, inference: sampling a factory's model and storing the fit.

``fit`` (:func:`fit`: NUTS through nutpie/PyMC/numpyro, or the Gibbs sampler, into a self-contained
``xr.DataTree``), ``conditional`` (exact draws of integrated-out group effects), ``gibbs`` (Pólya-Gamma
Gibbs sampler), ``nutpie`` (glue for collapsed models), ``diagnostics`` (R-hat, ESS, the sampling report),
``predictive`` (linear predictor and log-likelihood from a fit's DataTree), ``storage`` (save, load).
"""

# Nothing is imported here: ``import hierpool`` and the CLI's checks load only the modules they use.
