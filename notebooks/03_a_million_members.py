# ---
# jupyter:
#   jupytext:
#     formats: ipynb,py:percent
#     text_representation:
#       extension: .py
#       format_name: percent
#       format_version: '1.3'
#       jupytext_version: 1.19.7
#   kernelspec:
#     display_name: Python 3 (ipykernel)
#     language: python
#     name: python3
# ---

# %% [markdown]
# # A million members
#
# A Gaussian outcome for members who mostly have one to five rows, at the scale of a real member base:
# a million members and about three million rows. hierpool fits the random-intercepts model **collapsed**:
# the member effects are integrated out exactly, so the sampler only sees the intercept, the coefficients,
# tau and sigma, whatever the number of members. `hp.fit` picks the **integrated sampler** for such a
# model, which goes one step further: given sigma and tau the intercept and coefficients are integrated
# out too (a Normal integral), so only sigma and tau are sampled (independence Metropolis-Hastings from
# a proposal fitted at their posterior mode; nothing to compile), and the coefficients are then drawn
# exactly from their conditional normal; each member's effect is drawn afterwards from its exact
# conditional normal. Summaries (shrinkage, ranks) then run over the members in chunks, in bounded memory.
#
# Then: data beyond memory. `hp.prepare` takes a Dask DataFrame or a path to Parquet/CSV files and reduces
# it to sufficient statistics in one pass, partition by partition; the fit is the same.
#
# The number of members comes from `HIERPOOL_N_GROUPS` (default 1,000,000; 20,000 with
# `HIERPOOL_NOTEBOOK_FAST=1`, as the test suite runs it).

# %%
import os
import resource
import tempfile
import time
from pathlib import Path

import arviz as az
import dask.dataframe as dd
import matplotlib.pyplot as plt
import numpy as np
import pandas as pd

import hierpool as hp

FAST = os.environ.get("HIERPOOL_NOTEBOOK_FAST", "0") == "1"
N = int(os.environ.get("HIERPOOL_N_GROUPS", 20_000 if FAST else 1_000_000))
DRAWS = 300 if FAST else 500
FILE_DRAWS = 200 if FAST else 250  # the refit from Parquet only shows that it works: fewer draws
pd.set_option("display.precision", 4)

try:
    import psutil
except ImportError:  # psutil is optional (hierpool[bench]); resource gives the peak only
    psutil = None


def memory_gb() -> str:
    """Peak resident memory of this process so far (and current, with psutil)."""
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024**2  # KiB on Linux
    now = f", now {psutil.Process().memory_info().rss / 1024**3:.2f} GB" if psutil else ""
    return f"peak {peak:.2f} GB{now}"


timings = {}


class timed:
    """Context manager: wall time and memory of a step, kept in `timings`."""

    def __init__(self, name):
        self.name = name

    def __enter__(self):
        self.t0 = time.perf_counter()

    def __exit__(self, *exc):
        timings[self.name] = time.perf_counter() - self.t0
        print(f"{self.name}: {timings[self.name]:.1f} s; memory {memory_gb()}")


print(f"{N:,} members; fast mode: {FAST}")

# %% [markdown]
# ## Simulated members with known truth
#
# One to five rows per member, two predictors, tau = 0.5 and sigma = 1: a member's few rows say little
# about the member, so shrinkage is strong.

# %%
with timed("simulate"):
    df = hp.datasets.simulate("gaussian", n_groups=N, group_sizes=(1, 5), n_predictors=2, tau=0.5, sigma=1.0,
                              intercept=3.0, seed=2026)
truth = df.attrs.pop("truth")  # keep the DataFrame light: the truth dict holds one entry per member
print(f"{len(df):,} rows; {df.memory_usage(deep=True).sum() / 1e9:.2f} GB in pandas")
df.head()

# %% [markdown]
# ## The collapsed fit

# %%
with timed("prepare"):
    gd = hp.prepare(df, y="y", group="group", predictors=["x1", "x2"])
with timed("build the model"):
    model = hp.random_intercepts(gd)
print("collapsed:", hp.describe(model).collapse, "| free variables the sampler sees:",
      [v.name for v in model.free_RVs])
with timed("fit (sampling + drawing every member's effect)"):
    dt = hp.fit(model, draws=DRAWS, tune=DRAWS, chains=4, random_seed=1, progressbar=False,
                log_likelihood=False, max_group_effect_values=1e8)
post = dt["posterior"]  # every draw of the population parameters
# the member effects: in the posterior, or (thinned for memory) at fewer draws in a group of their own
ge = (dt["posterior_group_effects"] if "posterior_group_effects" in dt.children else post)["group_effect"]
print(f"stored: {post.sizes['chain']} chains x {post.sizes['draw']} draws of the population parameters "
      f"(diagnostics on all of them); member effects at {ge.sizes['draw']} draws per chain x {ge.sizes['group']:,} "
      f"members ({ge.nbytes / 1e9:.2f} GB; draws per kept draw: {dt.attrs['hierpool_thin']:g})")

# %%
hp.summarize(dt)

# %% [markdown]
# The parameters against the truth:

# %%
est = hp.summarize(dt).parameters
truth_params = pd.Series({"intercept": truth["intercept"], "beta[x1]": truth["beta"][0],
                          "beta[x2]": truth["beta"][1], "tau": truth["tau"], "sigma": truth["sigma"]})
check = est[["mean", "sd", "eti90_lb", "eti90_ub"]].assign(truth=truth_params)
check["inside 90%"] = (check["truth"] >= check["eti90_lb"]) & (check["truth"] <= check["eti90_ub"])
check

# %% [markdown]
# ## Summaries of a million members in bounded memory
#
# `hp.shrinkage` and `hp.rank_groups` read the member effects in chunks. Ranks keep at most `max_draws`
# draws for the rank intervals, packed in 2.5 bytes a rank up to 1,048,576 members (2 up to 65,536, 4
# beyond), so their memory is `2.5 x max_draws x members` bytes here.

# %%
with timed("shrinkage table"):
    shr = hp.shrinkage(dt)
with timed("rank table"):
    ranks = hp.rank_groups(dt, max_draws=200)
shr.head()

# %% [markdown]
# Against the truth: each member's true mean response at the average predictor values, and whether the
# 90% interval covers it. Averaged over members, Bayesian intervals cover at their nominal rate when the
# model is right (up to the Monte Carlo error of quantiles taken from the stored, possibly thinned, draws).

# %%
u_true = pd.Series(truth["group_effect"]).reindex(shr["group"]).to_numpy()
center = truth["intercept"] + np.dot(truth["beta"], gd.x_center)
target = center + u_true
coverage = float(np.mean((shr["conf_low"] <= target) & (target <= shr["conf_high"])))
rmse = {"raw means": float(np.sqrt(np.mean((shr["raw_mean"] - target) ** 2))),
        "posterior means": float(np.sqrt(np.mean((shr["estimate"] - target) ** 2)))}
n_kept = post.sizes["chain"] * post.sizes["draw"]
print(f"90% intervals (from {n_kept} draws of each member's effect) cover the truth for {coverage:.1%} of the members.")
print("Root mean squared error against the truth: " + ", ".join(f"{k} {v:.3f}" for k, v in rmse.items()))

# %%
fig = hp.plots.shrinkage_plot(shr.sample(min(len(shr), 5000), random_state=1))

# %% [markdown]
# ## Time and memory

# %%
pd.Series(timings, name="seconds").round(1).to_frame()

# %% [markdown]
# ## Data beyond memory: Parquet and Dask
#
# Write the rows as Parquet files (as a warehouse export would be), then fit from the files without ever
# holding the rows in pandas: `hp.prepare` reads them with Dask, partition by partition, and keeps only
# sufficient statistics (per member: rows, means of y and of the predictors, within-member cross-products).
# The fit from the statistics is the same model, exactly.

# %%
workdir = Path(tempfile.mkdtemp(prefix="hierpool-parquet-"))
n_files = 8
bounds = np.linspace(0, len(df), n_files + 1).astype(int)
with timed("write Parquet"):
    for k in range(n_files):  # split between members, as an export by member id would be
        lo, hi = bounds[k], bounds[k + 1]
        while 0 < hi < len(df) and df["group"].iat[hi] == df["group"].iat[hi - 1]:
            hi += 1
        bounds[k + 1] = hi
        df.iloc[lo:hi].to_parquet(workdir / f"part-{k:02d}.parquet", index=False)
print(f"{n_files} files, {sum(f.stat().st_size for f in workdir.iterdir()) / 1e6:.0f} MB in {workdir}")

# %%
with timed("reduce Parquet to sufficient statistics (Dask)"):
    gs = hp.prepare(str(workdir / "*.parquet"), y="y", group="group", predictors=["x1", "x2"])
print(type(gs).__name__, "| members:", f"{gs.n_groups:,}", "| rows:", f"{gs.n_obs:,}")
pd.Series({
    "same members in the same order": bool(gs.groups.equals(gd.groups)),
    "same rows per member": bool(np.array_equal(gs.group_n, gd.group_n)),
    "max |difference| of member means of y": float(np.max(np.abs(gs.group_raw_mean - gd.group_raw_mean))),
    "max |difference| of predictor means": float(np.max(np.abs(gs.x_center - gd.x_center))),
    "max |difference| of predictor SDs": float(np.max(np.abs(gs.x_scale - gd.x_scale))),
}, name="Parquet (Dask) vs pandas").to_frame()

# %%
with timed("fit from the statistics"):
    dt_files = hp.fit(hp.random_intercepts(gs), draws=FILE_DRAWS, tune=FILE_DRAWS, chains=4, random_seed=1,
                      progressbar=False, log_likelihood=False, max_group_effect_values=1e8)

# %% [markdown]
# The posterior from the files against the one from the DataFrame: the same model, so they agree within
# Monte Carlo error (the refit ran fewer draws).

# %%
params = ["intercept", "beta", "tau", "sigma"]
both = pd.concat({"in memory": az.summary(dt, var_names=params, round_to="none")[["mean", "sd"]],
                  "from Parquet": az.summary(dt_files, var_names=params, round_to="none")[["mean", "sd"]]},
                 axis=1)
both

# %% [markdown]
# A Dask DataFrame works the same way, e.g. after filtering or joining lazily:

# %%
ddf = dd.read_parquet(str(workdir / "*.parquet"))
ddf = ddf[ddf["x1"] > -10]  # any lazy Dask operations; nothing is computed yet
with timed("reduce a Dask DataFrame"):
    gs_dask = hp.prepare(ddf, y="y", group="group", predictors=["x1", "x2"])
print(f"{gs_dask.n_groups:,} members, {gs_dask.n_obs:,} rows")

# %%
fig, ax = plt.subplots(figsize=(6, 3.2), layout="constrained")
t = pd.Series(timings)
t.plot.barh(ax=ax)
ax.set_xlabel("seconds")
ax.set_title(f"{N:,} members, {len(df):,} rows")
plt.show()

# %%
for f in workdir.iterdir():
    f.unlink()
workdir.rmdir()
