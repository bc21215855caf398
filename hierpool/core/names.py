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
SAMPLERS = ("auto", "pymc", "nutpie", "numpyro", "gibbs", "integrated")
#: The factories' ``intercept_at=`` choices: where the intercept's prior is placed (at the predictors'
#: means, as brms and rstanarm do, or at x = 0, as published BUGS analyses do).
INTERCEPT_AT = ("means", "zero")

# internal variables of the factories' models (not part of the public contract)
INTERCEPT_CENTERED = "intercept_centered"  # the intercept at the predictors' means (where its prior is)
BETA_STD = "beta_std"  # coefficients per standard deviation of each predictor
GROUP_EFFECT_Z = "group_effect_z"  # the non-centered group effects
GROUP_INTERCEPT = "group_intercept"  # centered=True: intercept_c + group_effect
GROUP_EFFECT_PARTIAL = "group_effect_partial"  # centered="auto": partially non-centered group effects
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
#: draws per kept draw of the group effects: 1 (every draw), an int k (every k-th) or a float d / m (m
#: evenly spaced draws of each chain's d: hierpool.core.config.kept_draws)
ATTR_THIN = "hierpool_thin"
#: DataTree group of a fit thinned for memory (``ATTR_THIN`` > 1): ``group_effect`` (chain, draw, group) at
#: the kept draws, whose ``draw`` coordinate holds their indices in the full chains (0, k, 2k, ... for every
#: k-th draw; floor(i d / m) for m evenly spaced draws of d). The
#: ``posterior`` group then keeps every draw of the population-level parameters and no ``group_effect``.
GROUP_EFFECTS_GROUP = "posterior_group_effects"
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
# several grouping factors (crossed or nested; hierpool.data.factors) ----------------------------------
#: With one grouping factor a fit has ``group``, ``group_effect``, ``tau`` as above. With several, the FIRST
#: factor keeps those names and every other factor ``f`` (as written: ``"hospital"``, nested
#: ``"hospital:ward"``) gets ``<base>__<f>``: dim ``group__f``, posterior ``group_effect__f`` (dims
#: ``group__f``) and ``tau__f`` (``tau_sq__f`` for a prior on its square), constant_data ``group_idx__f``
#: (dims ``obs_id``), ``group_n__f``, ``group_raw_mean__f``, ``group_denominator__f`` (dims ``group__f``).
#: The double underscore keeps the names apart from any column name used as a factor.
FACTOR_SEP = "__"
#: DataTree attrs: the grouping factors in order (JSON list), present on fits with several factors.
ATTR_FACTORS = "hierpool_factors"


def factor_var(base: str, factor: str | None) -> str:
    """The name of ``base`` (``group``, ``group_effect``, ``tau``, ``group_idx``, ...) for an extra
    grouping factor; ``factor=None`` is the first factor, whose names are the single-factor ones."""
    return base if factor is None else f"{base}{FACTOR_SEP}{factor}"
#: collapsed crossed gaussian models (hierpool.models.crossed): response-dependent data containers
CROSSED_YBAR = "crossed_ybar"  # the first factor's response means
CROSSED_GY = "crossed_gy"  # crossed_gy__<k>: the k-th further factor's within-member-centered response sums
