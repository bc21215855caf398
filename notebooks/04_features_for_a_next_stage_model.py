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
# # Group features for a next-stage model, without leaking the outcome
#
# A health plan has hospital episodes per member, most members with fewer than five. The analyst fits a
# random intercept for the member, ranks members by it, and feeds the member's estimate to a next-stage
# model that predicts the member's *next* readmission. Two things go wrong easily:
#
# 1. **The leak.** A member's mean outcome computed on all training rows contains each row's own
#    outcome: the next-stage model learns "this feature says readmitted, so readmitted", looks excellent
#    on the training rows and is poor on the next episode.
# 2. **No shrinkage where it matters.** scikit-learn's `TargetEncoder(smooth="auto")` shrinks a member by
#    `var(y) n / (var(y) n + SSD/n)`: a member whose outcomes are all equal (SSD = 0) is not shrunk at
#    all, so every one-episode member keeps its raw 0 or 1.
#
# `hp.GroupEncoder` is a scikit-learn transformer whose `fit_transform` returns **cross-fitted** features
# (each row's from a hierarchical fit that did not see that row's outcome) and whose `transform` uses the
# fit on all training rows. Its features carry the member's posterior: effect mean and SD, rank
# percentile and its interval width, P(top 10%).
#
# Set `HIERPOOL_NOTEBOOK_FAST=1` for a quick run with fewer members and draws (the test suite does).

# %%
import os
import sys
import warnings
from pathlib import Path

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
from IPython.display import Markdown, display
from sklearn.compose import ColumnTransformer
from sklearn.linear_model import LogisticRegression
from sklearn.model_selection import KFold, train_test_split
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import OneHotEncoder, TargetEncoder

import hierpool as hp

# the comparison harness is the benchmark's (one place for it): benchmarks/bench_encoders.py
sys.path.insert(0, str(Path(hp.__file__).resolve().parents[1] / "benchmarks"))
import bench_encoders as B  # noqa: E402

warnings.simplefilter("ignore", hp.HierpoolSamplingWarning)
FAST = os.environ.get("HIERPOOL_NOTEBOOK_FAST", "0") == "1"
N_MEMBERS, N_NEW = (800, 300) if FAST else (3000, 1000)
SETTINGS = {"draws": 300, "tune": 300, "chains": 2} if FAST else {"draws": 1000, "tune": 1000, "chains": 4}
ENCODERS = [e for e in B.ENCODERS if not (FAST and e == "GLMMEncoder")]  # GLMMEncoder is slow: full run only
print(f"fast mode: {FAST}; {N_MEMBERS} members, encoders: {ENCODERS}")

# %% [markdown]
# ## Simulated episodes with known member effects
#
# `hp.datasets.simulate_episodes`: 1 to 8 episodes per member (35% have one), readmission depends on age,
# length of stay, emergency admission, prior admissions and the member's effect ~ Normal(0, 0.8). Each
# member's next episode is simulated from the same model; new members, never seen in training, get one
# episode each.

# %%
d = B.episodes(N_MEMBERS, N_NEW, seed=2026)
train = d["train"]
sizes = train.groupby("member_id").size()
print(f"{len(train):,} training episodes of {N_MEMBERS:,} members; episodes per member:")
print(sizes.value_counts().sort_index().to_string())

# %% [markdown]
# ## TargetEncoder does not shrink members whose outcomes agree

# %%
te = TargetEncoder(target_type="binary", cv=KFold(5, shuffle=True, random_state=0))
te.fit(train[["member_id"]], train["readmitted"])
enc_te = pd.Series(te.encodings_[0], index=te.categories_[0])
raw = train.groupby("member_id")["readmitted"].mean()
one = sizes.index[sizes == 1]
zero_multi = raw.index[(raw == 0) & (sizes.reindex(raw.index) >= 2)]
same = lambda ix: float(np.mean(np.isclose(enc_te[ix], raw[ix])))  # noqa: E731
display(Markdown(
    f"At `transform` time **{same(one):.0%}** of one-episode members keep their raw outcome (0 or 1), and "
    f"so do {same(zero_multi):.0%} of the all-zero members with two or more episodes."))

# %% [markdown]
# ## Every encoder, one next-stage model each
#
# The next-stage models see the four row covariates plus the member features; they are trained on the
# training episodes with the cross-fitted features (`fit_transform`) and predict each member's next
# episode and the new members' episodes. `d_ll` is the log-loss difference from hierpool's effect mean
# with its paired standard error over the next episodes (negative: better than hierpool).

# %%
res = B.compare(N_MEMBERS, N_NEW, 2026, SETTINGS, ENCODERS)
tab = pd.DataFrame(res["rows"])
tab["d_ll"] = [f"{a:+.4f} ± {b:.4f}" for a, b in zip(tab["d_log_loss"], tab["se_d_log_loss"], strict=True)]
cols = ["encoder", "log_loss", "d_ll", "auc", "brier", "cal_slope", "log_loss_train", "log_loss_new", "fit_s"]
for model, t in tab.groupby("model", sort=False):
    display(Markdown(f"**Next stage: {model}**"))
    display(t[cols].round(4).set_index("encoder"))

# %%
lr = tab[tab["model"] == "LogisticRegression"].set_index("encoder")
leak = lr.loc["raw mean (in-sample)"]
display(Markdown(
    f"**The leak.** The in-sample member mean gives a training log-loss of {leak['log_loss_train']:.3f} "
    f"against {lr.loc[B.REFERENCE, 'log_loss_train']:.3f} for hierpool's cross-fitted feature, and a "
    f"next-episode log-loss of {leak['log_loss']:.3f} against {lr.loc[B.REFERENCE, 'log_loss']:.3f}. "
    f"hierpool against TargetEncoder on the next episode: {-lr.loc['TargetEncoder', 'd_log_loss']:+.4f} "
    f"(± {lr.loc['TargetEncoder', 'se_d_log_loss']:.4f}) log-loss in hierpool's favour; against the "
    f"oracle (the exact posterior mean given the true parameters): "
    f"{lr.loc['oracle', 'd_log_loss']:+.4f} ± {lr.loc['oracle', 'se_d_log_loss']:.4f}."))

# %% [markdown]
# ## Each encoder's value against the true member effect
#
# Members with 1, 2 and 5 training episodes. The raw mean can only take a few values; TargetEncoder
# leaves one-episode members at 0 or 1; hierpool's effect mean follows the exact posterior mean (oracle).

# %%
oracle_member, _ = B.oracle_means(train, d["coef"], d["tau"])
enc = hp.GroupEncoder(group="member_id", features=["effect_mean", "effect_sd"], random_state=0, **SETTINGS)
enc.fit(train[["member_id"]], train["readmitted"])
members = pd.DataFrame({"n": sizes, "truth": train.groupby("member_id")["true_member_effect"].first()})
members["raw mean"] = raw
members["TargetEncoder"] = enc_te
members["hierpool effect_mean"] = enc.encodings_["effect_mean"]
members["oracle"] = oracle_member
fig, axes = plt.subplots(4, 3, figsize=(11, 11), sharex=True)
for j, n in enumerate((1, 2, 5)):
    sub = members[members["n"] == n]
    for i, col in enumerate(["raw mean", "TargetEncoder", "hierpool effect_mean", "oracle"]):
        ax = axes[i, j]
        ax.scatter(sub["truth"], sub[col], s=8, alpha=0.5)
        ax.set_title(f"{col}, n = {n} ({len(sub)} members)", fontsize=9)
        if j == 0:
            ax.set_ylabel(col)
for ax in axes[-1]:
    ax.set_xlabel("true member effect (log-odds)")
fig.tight_layout()
plt.show()

# %% [markdown]
# The member's uncertainty is a feature too: a member seen once and a member seen eight times with the
# same effect mean are not the same.

# %%
fig, ax = plt.subplots(figsize=(6, 4))
ax.scatter(members["n"] + np.random.default_rng(0).uniform(-0.2, 0.2, len(members)),
           enc.encodings_.reindex(members.index)["effect_sd"], s=6, alpha=0.4)
ax.axhline(enc.population_["effect_sd"], color="k", ls="--", label="a new member (population)")
ax.set_xlabel("training episodes of the member")
ax.set_ylabel("posterior SD of the member effect")
ax.legend()
plt.show()

# %% [markdown]
# ## A real dataset: contraceptive use of 1,934 women in 60 districts of Bangladesh
#
# `hp.datasets.load("contraception")`. The district goes through `GroupEncoder` (its features and, in the
# same ColumnTransformer, the other columns as usual); `Pipeline.fit` calls `fit_transform`, so the
# logistic regression is trained on cross-fitted district features. Held-out women: 30%.

# %%
con = hp.datasets.load("contraception")
Xc, yc = con[["district", "livch", "age", "urban"]], con["use"]
X_tr, X_te, y_tr, y_te = train_test_split(Xc, yc, test_size=0.3, random_state=0)


def pipeline(district_encoder):
    ct = ColumnTransformer([("district", district_encoder, ["district"]),
                            ("livch", OneHotEncoder(drop="first"), ["livch"]),
                            ("rest", "passthrough", ["age", "urban"])])
    return make_pipeline(ct, LogisticRegression(max_iter=1000))


fits = {
    "hierpool GroupEncoder": pipeline(hp.GroupEncoder(group="district", features=["effect_mean", "effect_sd"],
                                                      random_state=0, **SETTINGS)),
    "TargetEncoder": pipeline(TargetEncoder(target_type="binary", cv=KFold(5, shuffle=True, random_state=0))),
    "no district": make_pipeline(ColumnTransformer([("livch", OneHotEncoder(drop="first"), ["livch"]),
                                                    ("rest", "passthrough", ["age", "urban"])]),
                                 LogisticRegression(max_iter=1000)),
}
losses = {}
for name, pipe in fits.items():
    p = pipe.fit(X_tr, y_tr).predict_proba(X_te)[:, 1]
    losses[name] = B._losses(y_te.to_numpy(float), p)
ref = losses["hierpool GroupEncoder"]
real = pd.DataFrame({name: {"log_loss": v.mean(), "minus hierpool": (v - ref).mean(),
                            "paired SE": (v - ref).std(ddof=1) / np.sqrt(v.size)} for name, v in losses.items()}).T
display(real.round(4))

# %% [markdown]
# ## What to take away
#
# - Use `fit_transform` on the training rows of the next-stage model and `transform` on new rows: the
#   in-sample member mean looks excellent on the training rows and is the worst feature on the next
#   episode.
# - hierpool's effect mean shrinks one-episode members the right amount (the oracle's), where
#   TargetEncoder leaves them at 0 or 1; a member never seen gets the population's features (effect 0,
#   SD tau, n 0).
# - The effect SD, rank percentile and P(top k) say how much the data know about each member.

# %%
print("Closing: the encoders compared on the next episode, and a real dataset.")
