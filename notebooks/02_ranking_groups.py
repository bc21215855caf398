# ---
# jupyter:
#   jupytext:
#     formats: ipynb,py:percent
#     text_representation:
#       extension: .py
#       format_name: percent
#   kernelspec:
#     display_name: Python 3 (ipykernel)
#     language: python
#     name: python3
# ---

# %% [markdown]
# # Ranking groups: who is really in the top 10%?
#
# Hospital episodes per member (simulated, so the truth is known): a 30-day readmission (0/1) per episode,
# with the member's age, length of stay and whether the admission was an emergency. Most members have one
# to four episodes. Which members have the highest readmission propensity?
#
# Ranking members by their raw readmission rates rewards luck: a member with one episode that happened to
# end in a readmission has a raw rate of 100%. Here we rank by the posterior instead: ranks within each
# posterior draw, rank intervals, the probability of being in the top 10%, and the triple-goal estimates
# (Shen & Louis 1998) that get the values, the ranks and the spread right at once. Then the same on the
# classic Efron-Morris batting averages, where the rest of the season tells us who was really best.
#
# Set `HIERPOOL_NOTEBOOK_FAST=1` for a quick run with fewer members and draws (the test suite does).

# %%
import os
import time

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
from IPython.display import Markdown, display
from scipy import sparse
from scipy.stats import spearmanr

import hierpool as hp

FAST = os.environ.get("HIERPOOL_NOTEBOOK_FAST", "0") == "1"
N_MEMBERS = 300 if FAST else 2000
DRAWS = 300 if FAST else 1000
FIT = dict(draws=DRAWS, tune=DRAWS, chains=4, random_seed=7, progressbar=False)
pd.set_option("display.precision", 3)
pd.set_option("display.width", 120)
print(f"fast mode: {FAST}; {N_MEMBERS} members")

# %% [markdown]
# ## The data, and why raw rates mislead

# %%
df = hp.datasets.simulate_episodes(n_members=N_MEMBERS, seed=7)
members = df.groupby("member_id", sort=False).agg(
    episodes=("readmitted", "size"), readmissions=("readmitted", "sum"), raw_rate=("readmitted", "mean"),
    true_effect=("true_member_effect", "first"),
)
TOP_K = max(1, round(0.1 * N_MEMBERS))
print(f"{len(df):,} episodes of {N_MEMBERS:,} members; {(members['episodes'] < 5).mean():.0%} have fewer than "
      f"5 episodes; overall readmission rate {df['readmitted'].mean():.1%}. Top 10% = {TOP_K} members.")
members["episodes"].value_counts().sort_index().rename("members").to_frame().T

# %% [markdown]
# The top 10% by raw rate (ties broken at random), against everyone:

# %%
rng = np.random.default_rng(0)
order = np.lexsort((rng.random(len(members)), -members["raw_rate"].to_numpy()))
top_raw = members.iloc[order[:TOP_K]]
small = lambda t: (t["episodes"] <= 2).mean()  # noqa: E731
perfect = members[members["raw_rate"] == 1]
print(f"{len(perfect)} members have a raw rate of 100%; {small(perfect):.0%} of them have 1-2 episodes.")
print(f"Members with 1-2 episodes: {small(members):.0%} of all members, {small(top_raw):.0%} of the raw top 10%.")

fig, ax = plt.subplots(figsize=(7, 3.8), layout="constrained")
jitter = rng.uniform(-0.15, 0.15, len(members))
ax.scatter(members["episodes"] + jitter, members["raw_rate"], s=8, alpha=0.4, label="all members")
ax.scatter(top_raw["episodes"] + jitter[order[:TOP_K]], top_raw["raw_rate"], s=14, color="C3",
           label="raw top 10%")
ax.set_xlabel("episodes")
ax.set_ylabel("raw readmission rate")
ax.legend()
ax.set_title("Raw readmission rates by number of episodes")
plt.show()

# %% [markdown]
# ## The hierarchical fit
#
# Random intercepts on the log-odds scale: member effects ~ Normal(0, tau), with age, length of stay and
# emergency as predictors. Ranks below use the member's readmission probability at the average predictor
# values (a monotone function of the member effect, so the same ranks as the effect itself).

# %%
t0 = time.perf_counter()
dt = hp.fit(hp.random_intercepts(df, y="readmitted", group="member_id", predictors=["age", "los", "emergency"],
                                 family="bernoulli"), **FIT)
print(f"fitted in {time.perf_counter() - t0:.1f} s")
hp.summarize(dt)

# %% [markdown]
# ## Posterior ranks
#
# In every posterior draw the members are ranked (1 = highest propensity); `rank_low`-`rank_high` is the
# 90% interval of a member's rank and `p_top_k` the probability of being in the top 10%.

# %%
ranks = hp.rank_groups(dt, top_k=TOP_K, ci_prob=0.9)
ranks.head(10)

# %%
fig = hp.plots.caterpillar(ranks, top=30)

# %%
ranks = ranks.merge(members, left_on="group", right_index=True)
ranks["true_rank"] = ranks["true_effect"].rank(ascending=False, method="first").astype(int)

# %% [markdown]
# The ten highest raw rates, seen through the posterior: where the raw league table puts them, where the
# posterior puts them, and where the truth does.

# %%
ranks.set_index("group").loc[top_raw.index[:10], ["episodes", "readmissions", "raw_rate", "rank_mean", "rank_low",
                                                  "rank_high", "p_top_k", "true_rank"]]

# %%
width = ranks["rank_high"] - ranks["rank_low"]
by_size = ranks.assign(interval_width=width).groupby("episodes")["interval_width"].median()
fig, ax = plt.subplots(figsize=(6, 3.5), layout="constrained")
ax.scatter(ranks["episodes"] + jitter[: len(ranks)], width, s=8, alpha=0.4)
ax.plot(by_size.index, by_size.to_numpy(), "o-", color="C3", label="median")
ax.set_xlabel("episodes")
ax.set_ylabel("width of the 90% rank interval")
ax.legend()
ax.set_title("Width of the rank intervals by number of episodes")
plt.show()
print(f"Median width of the 90% rank interval: {by_size.iloc[0]:.0f} ranks for members with {by_size.index[0]} "
      f"episode(s), {by_size.iloc[-1]:.0f} for members with {by_size.index[-1]} (out of {N_MEMBERS}).")

# %% [markdown]
# How sure can we be that anyone is in the top 10%?

# %%
p = ranks["p_top_k"]
print(f"Members with P(top 10%) > 0.5: {(p > 0.5).sum()}; > 0.8: {(p > 0.8).sum()}; > 0.95: {(p > 0.95).sum()} "
      f"(the sum of P(top 10%) over all members is exactly {p.sum():.0f} = {TOP_K}).")
fig, ax = plt.subplots(figsize=(6, 3.2), layout="constrained")
ax.hist(p, bins=40)
ax.set_yscale("log")
ax.set_xlabel("P(member in the top 10%)")
ax.set_ylabel("members")
plt.show()

# %% [markdown]
# ## Selection against the truth
#
# The simulation knows each member's true effect. Which top-10% list recovers more of the true top 10%:
# the raw rates, the posterior mean ranks, or the members most likely to be top?

# %%
true_top = set(members["true_effect"].nlargest(TOP_K).index)
picks = {
    "raw rate": set(top_raw.index),
    "posterior mean rank": set(ranks.nsmallest(TOP_K, "rank_mean")["group"]),
    "P(top 10%)": set(ranks.nlargest(TOP_K, "p_top_k")["group"]),
}
hits = pd.Series({name: len(s & true_top) for name, s in picks.items()}, name=f"of the true top {TOP_K}")
hits.to_frame()

# %%
spear = {
    "raw rate": spearmanr(members["raw_rate"], members["true_effect"]).statistic,
    "posterior mean": spearmanr(ranks.set_index("group").loc[members.index, "estimate"],
                                members["true_effect"]).statistic,
}
print("Spearman correlation with the true member effects: "
      + ", ".join(f"{k} {v:.3f}" for k, v in spear.items()))

# %% [markdown]
# ## Triple-goal estimates
#
# Posterior means are the best estimate of each member, but their spread is too small (they are shrunk);
# a histogram of them understates how different members really are. The triple-goal values keep the
# posterior's ordering and have the spread of the estimated distribution of member effects.

# %%
tg = hp.triple_goal(dt, by="effect")
sd = pd.Series({
    "true member effects": members["true_effect"].std(),
    "posterior means": tg["estimate"].std(),
    "triple-goal estimates": tg["triple_goal"].std(),
}, name="SD (log-odds)")
display(sd.to_frame())
fig, ax = plt.subplots(figsize=(7, 3.8), layout="constrained")
bins = np.linspace(min(members["true_effect"].min(), tg["triple_goal"].min()),
                   max(members["true_effect"].max(), tg["triple_goal"].max()), 40)
ax.hist(members["true_effect"], bins=bins, histtype="step", lw=2, color="k", label="truth")
ax.hist(tg["estimate"], bins=bins, alpha=0.5, label="posterior means")
ax.hist(tg["triple_goal"], bins=bins, alpha=0.5, label="triple-goal")
ax.set_xlabel("member effect (log-odds)")
ax.legend()
plt.show()

# %% [markdown]
# ## Posterior predictive checks
#
# Does the model reproduce the data, including the features that fooled the raw ranking: how many members
# have a raw rate of 100% (or 0%), and how spread out the raw rates are? Each statistic is computed on the
# observed data and on data sets replicated from the posterior; Bayesian p-values near 0 or 1 flag a
# feature the model misses.

# %%
codes = pd.factorize(df["member_id"], sort=False)[0]  # the fit's member order (first seen)
per_member = sparse.csr_matrix((np.ones(len(df)), (np.arange(len(df)), codes)))
n_episodes = np.bincount(codes)


def member_rates(y):  # y: (replications, rows) -> (replications, members)
    return np.asarray(per_member.T.dot(np.atleast_2d(y).T)).T / n_episodes


check = hp.ppc(dt, random_seed=1, stats={
    "readmission rate": lambda y: y.mean(axis=-1),
    "share of members at 100%": lambda y: (member_rates(y) == 1).mean(axis=-1),
    "share of members at 0%": lambda y: (member_rates(y) == 0).mean(axis=-1),
    "SD of member raw rates": lambda y: member_rates(y).std(axis=-1, ddof=1),
})
check.table

# %% [markdown]
# ## Efron-Morris: 18 batters after 45 at-bats
#
# The classic: each player's average after 45 at-bats of 1970, the rest of the season as the truth.

# %%
em = hp.datasets.load("efron_morris")
em_fit = hp.fit(hp.random_intercepts(em, y="hits", group="name", family="binomial", trials="at_bats"), **FIT)
em_shr = hp.shrinkage(em_fit).merge(em[["name", "rest_average"]], left_on="group", right_on="name")
mse = {
    "raw average (45 at-bats)": float(((em_shr["raw_mean"] - em_shr["rest_average"]) ** 2).mean()),
    "partial pooling": float(((em_shr["estimate"] - em_shr["rest_average"]) ** 2).mean()),
}
print("Mean squared error against the rest of the season: "
      + ", ".join(f"{k} {v:.5f}" for k, v in mse.items())
      + f" (ratio {mse['raw average (45 at-bats)'] / mse['partial pooling']:.1f})")
fig = hp.plots.shrinkage_plot(em_fit)

# %%
em_ranks = hp.rank_groups(em_fit, top_k=3).merge(em[["name", "average", "rest_average"]], left_on="group",
                                                 right_on="name")
em_ranks["rest_rank"] = em_ranks["rest_average"].rank(ascending=False, method="min").astype(int)
em_ranks[["group", "average", "estimate", "rank_mean", "rank_low", "rank_high", "p_top_k", "rest_average",
          "rest_rank"]]

# %% [markdown]
# ## What follows
#
# Written from the numbers above.

# %%
lines = [
    f"- {len(perfect)} members have a raw readmission rate of 100%, and {small(perfect):.0%} of them have one or "
    f"two episodes (against {small(members):.0%} of all members); of the raw top 10%, {small(top_raw):.0%} have "
    "one or two episodes. The top of a raw league table is where small samples land by luck.",
    f"- Against the truth, the raw-rate list recovers {hits['raw rate']} of the true top {TOP_K}, the posterior "
    f"mean ranks {hits['posterior mean rank']} and P(top 10%) {hits['P(top 10%)']}; the rank correlation with "
    f"the true effects is {spear['raw rate']:.2f} for raw rates and {spear['posterior mean']:.2f} for posterior "
    "means.",
    f"- {(p > 0.8).sum()} of {N_MEMBERS} members are in the top 10% with probability above 0.8, and the median 90% rank "
    f"interval of a one-episode member spans {by_size.iloc[0]:.0f} ranks: a league table of members "
    "is mostly noise, and the rank intervals say so.",
    f"- Posterior means have SD {sd['posterior means']:.2f} against {sd['true member effects']:.2f} for the "
    f"true effects; the triple-goal estimates have SD {sd['triple-goal estimates']:.2f}. Report the "
    "triple-goal values when the spread of the groups matters (e.g. a histogram of members).",
    f"- Posterior predictive checks flag: {', '.join(check.flagged) if check.flagged else 'nothing'}.",
    f"- Efron-Morris: partial pooling predicts the rest of the season with "
    f"{mse['raw average (45 at-bats)'] / mse['partial pooling']:.1f} times smaller mean squared error than the "
    "raw averages.",
]
display(Markdown("\n".join(lines)))
