# Fit random intercepts with lme4 and print the timings as one JSON line (used by bench_vs_lme4.py).
#
# Usage: Rscript benchmarks/lme4_fit.R DATA.csv FAMILY N_PREDICTORS CONDVAR NAGQ [FACTORS]
#   FAMILY        gaussian (lmer, REML), bernoulli (glmer, binomial logit) or poisson (glmer, log link;
#                 a column "exposure" enters as offset(log(exposure)))
#   N_PREDICTORS  0 or more: the columns x1..xK enter as fixed effects
#   CONDVAR       1: also time ranef(fit, condVar = TRUE) (conditional variances of every group)
#   NAGQ          glmer's nAGQ (1 = Laplace); ignored by lmer
#   FACTORS       optional, comma-separated: those of x1..xK read as factors (treatment-coded by lmer)
# The CSV has columns y, group (integer ids), x1..xK. Reading it is timed separately ("read_s").

args <- commandArgs(trailingOnly = TRUE)
if (length(args) < 5) stop("usage: Rscript lme4_fit.R DATA.csv FAMILY N_PREDICTORS CONDVAR NAGQ")
path <- args[1]
family <- args[2]
npred <- as.integer(args[3])
condvar <- as.integer(args[4]) == 1L
nagq <- as.integer(args[5])
factors <- if (length(args) >= 6 && nzchar(args[6])) strsplit(args[6], ",")[[1]] else character(0)

suppressPackageStartupMessages(library(lme4))

classes <- c(y = "numeric", group = "integer")
if (npred > 0) classes <- c(classes, setNames(rep("numeric", npred), paste0("x", seq_len(npred))))
classes[factors] <- "factor"
t_read <- system.time({
  d <- read.csv(path, colClasses = classes)
  d$group <- factor(d$group)
})[["elapsed"]]

fixed <- if (npred > 0) paste(paste0("x", seq_len(npred)), collapse = " + ") else "1"
if ("exposure" %in% names(d)) fixed <- paste(fixed, "+ offset(log(exposure))")
f <- as.formula(paste("y ~", fixed, "+ (1 | group)"))

n_warn <- 0L
invisible(gc(reset = TRUE))
t_fit <- system.time({
  fit <- withCallingHandlers(
    if (family == "gaussian") {
      lmer(f, data = d, REML = TRUE)
    } else if (family == "poisson") {
      glmer(f, data = d, family = poisson, nAGQ = nagq)
    } else {
      glmer(f, data = d, family = binomial, nAGQ = nagq)
    },
    warning = function(w) {
      n_warn <<- n_warn + 1L
      invokeRestart("muffleWarning")
    }
  )
})
vc <- as.data.frame(VarCorr(fit))
tau <- vc$sdcor[vc$grp == "group"][1]
sigma <- if (family == "gaussian") sigma(fit) else NA

t_cv <- NA
if (condvar) {
  t_cv <- system.time(re <- ranef(fit, condVar = TRUE))[["elapsed"]]
}

num <- function(x) if (is.na(x)) "null" else format(x, digits = 8)
cat(sprintf(
  '{"read_s": %s, "fit_s": %s, "fit_cpu_s": %s, "condvar_s": %s, "tau": %s, "sigma": %s, "warnings": %d, "n_obs": %d, "n_groups": %d, "lme4": "%s", "R": "%s"}\n',
  num(t_read), num(t_fit[["elapsed"]]), num(t_fit[["user.self"]] + t_fit[["sys.self"]]), num(t_cv),
  num(tau), num(sigma), n_warn, nrow(d), nlevels(d$group), as.character(packageVersion("lme4")),
  paste(R.version$major, R.version$minor, sep = ".")
))
