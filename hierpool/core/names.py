"""The naming contract shared by the model factories and the analysis layer.

Every factory builds its model with these dims and variable names, and every analysis function reads a
fit through them. Nothing else couples the two halves of the package (see ``DESIGN.md``).
"""

from __future__ import annotations

# dims
GROUP = "group"
OBS = "obs_id"
PREDICTOR = "predictor"
SAMPLE_DIMS = ("chain", "draw")

# posterior variables
INTERCEPT = "intercept"
BETA = "beta"
GROUP_EFFECT = "group_effect"
TAU = "tau"
SIGMA = "sigma"

# observed variable
Y = "y"

# constant_data variables
GROUP_IDX = "group_idx"
X = "X"  # predictor matrix on the user's scale (rows x predictor)
X_CENTER = "x_center"
X_SCALE = "x_scale"
GROUP_N = "group_n"
GROUP_RAW_MEAN = "group_raw_mean"
GROUP_DENOM = "group_denominator"  # rows, trials or exposure summed per group
TRIALS = "trials"
EXPOSURE = "exposure"
SE = "se"  # summary-level data: the known standard error of each row's response (obs_id)

# DataTree attrs
ATTR_VARIANT = "hierpool_variant"
ATTR_FAMILY = "hierpool_family"
ATTR_VERSION = "hierpool_version"
ATTR_SETTINGS = "hierpool_settings"
ATTR_DIAGNOSTICS = "hierpool_diagnostics"

VARIANTS = ("random_intercepts", "ridge_fixed_effects", "regularized_hierarchical")
FAMILIES = ("gaussian", "bernoulli", "binomial", "poisson")
PENALTIES = ("horseshoe", "laplace", "ridge", "elastic_net")
#: The factories' ``collapse=`` choices (hierpool.models.collapse.resolve_collapse).
COLLAPSE_CHOICES = ("auto", True, False, "integrated")
SAMPLERS = ("auto", "pymc", "nutpie", "numpyro", "gibbs")

# internal variables of the factories' models (not part of the public contract)
INTERCEPT_CENTERED = "intercept_centered"  # the intercept at the predictors' means (where its prior is)
BETA_STD = "beta_std"  # coefficients per standard deviation of each predictor
GROUP_EFFECT_Z = "group_effect_z"  # the non-centered group effects
TAU_SQ = "tau_sq"
SIGMA_SQ = "sigma_sq"
Y_OBSERVED = "y_observed"  # the response's data container (refits of new responses without recompiling)
Y_MARGINAL = "y_marginal"  # the potential of a likelihood with the group effects integrated out
SIZE_MOMENTS = "size_moments"  # collapsed gaussian: response-dependent statistics per group size
YBAR_CENTER = "ybar_center"
SYY_W = "syy_w"
SXY_W = "sxy_w"
PATTERN_COUNTS = "pattern_counts"  # integrated bernoulli/binomial: groups per (successes, trials) pattern
CELL = "cell"  # dim of rows pooled into (group, predictor pattern) cells

# the attribute of a factory's pm.Model that holds its ModelDescription
MODEL_ATTR = "hierpool"

# more DataTree attrs
ATTR_SAMPLER = "hierpool_sampler"
ATTR_THIN = "hierpool_thin"
ATTR_METHOD = "hierpool_method"
#: ``hp.fit(method=...)``: the full posterior (the default) or tau plugged in at its (RE)ML estimate.
METHODS = ("full_bayes", "empirical_bayes")

# random slopes (1 + x | g), one grouping factor (hierpool.data.slope_stats, hierpool.models.slopes).
# group_effect stays the intercept deviation and tau its SD, so every analysis of intercepts still works.
SLOPE = "slope"  # dim: the predictors with random slopes
TERM = "term"  # dims of the correlation matrix: ["intercept", *slopes]
TERM_ = "term_"
GROUP_SLOPE = "group_slope"  # (group, slope) slope deviations from beta, on the user's scale
TAU_SLOPE = "tau_slope"  # (slope) SD of each slope deviation
GROUP_CORR = "group_corr"  # (term, term_) correlation of the intercept and slope deviations
SLOPES_ATTR = "hierpool_slopes"  # DataTree attr: JSON list of the slope predictors
# internal variables of slope models
GROUP_CORR_CHOL = "group_corr_chol"  # Cholesky factor of group_corr (LKJCorr)
GROUP_SLOPE_Z = "group_re_z"  # (group, term) non-centered standard normals
