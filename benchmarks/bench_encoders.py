"""Group features for a next-stage model: hp.GroupEncoder against the encoders people reach for (issue 13).

Two parts, each optional:

1. **compare** (``--members``): simulated hospital episodes (``hp.datasets.simulate_episodes``: 1 to 8
   episodes per member, bernoulli readmission, member effects ~ Normal(0, tau), four row covariates). Each
   member's *next* episode is simulated from the same model (same coefficients and member effect), and
   ``--new-members`` members never seen in training get one episode each. A next-stage model
   (``LogisticRegression`` on the standardized covariates plus the member features, and
   ``HistGradientBoostingClassifier``) is trained on the training episodes with each encoder's features
   (cross-fitted ones where the encoder has them: ``fit_transform``) and predicts the next episodes and the
   new members' episodes. Encoders, all given only (member, outcome):

   - ``none``: covariates only;
   - ``raw mean (in-sample)``: the member's mean outcome including the row's own (the leak);
   - ``raw mean (out-of-fold)``: 5-fold cross-fitted member mean (new members and members without rows in
     the other folds: the overall mean);
   - ``TargetEncoder``: scikit-learn's, ``smooth="auto"``, cross-fitted over the same 5 shuffled folds;
   - ``GLMMEncoder``: category_encoders' (statsmodels' mixed GLM), as documented: ``fit_transform``;
   - ``hierpool (mean)``: ``GroupEncoder`` effect mean only;
   - ``hierpool (mean, sd, rank, P(top k))``: effect mean and SD, rank percentile and its 90% width,
     P(top 10%) (one ``fit_transform`` serves both hierpool rows);
   - ``oracle``: the exact posterior mean of the member effect given the TRUE coefficients and tau
     (Gauss-Hermite quadrature), leave-own-row-out on training rows: the best attainable feature.

   Reported per next-stage model and encoder: log-loss, AUC, Brier score, calibration slope (logistic
   regression of the outcome on the predicted logit; 1 is calibrated) on the next episodes; the log-loss
   difference from ``hierpool (mean)`` with its paired standard error over the next episodes (per-row
   losses; AUC's from a paired bootstrap of 200 resamples); log-loss on the training rows (in-sample: where
   the leak looks excellent) and on the new members; the encoder's fit time.

2. **timing** (``--sizes``, ``--bernoulli-sizes``): a 5-fold ``GroupEncoder.fit_transform`` (6 fits:
   one per fold and one on all rows) against one ``hp.fit`` of the same data (prepare + model + fit), random
   intercepts without predictors (the collapsed gaussian and the integrated bernoulli paths), groups of
   1-8 rows (``_common.simulate``), 4 chains x 1000 draws.

Usage::

    .venv/bin/python benchmarks/bench_encoders.py --json results_encoders.json        # the issue's sizes (long)
    .venv/bin/python benchmarks/bench_encoders.py --members 2000 --sizes 10000 --bernoulli-sizes   # short
    .venv/bin/python benchmarks/bench_encoders.py --from-json results_encoders.json   # reprint the tables
"""

from __future__ import annotations

import argparse
import json
import sys
import time
import warnings
from pathlib import Path

import numpy as np
import pandas as pd
from scipy.special import expit, logit

sys.path.insert(0, str(Path(__file__).resolve().parent))
import _common as C  # noqa: E402

import hierpool as hp  # noqa: E402

COVARIATES = ["age", "los", "emergency", "n_prior_admits"]
RICH = ["effect_mean", "effect_sd", "rank_pct", "rank_pct_width", "p_top_k"]
REFERENCE = "hierpool (mean)"


# ------------------------------------------------------------------------------------------------------
# data
def episodes(n_members: int, n_new: int, seed: int, tau: float = 0.8) -> dict:
    """Training episodes, each member's next episode, and new members' first episodes (with the truth)."""
    train = hp.datasets.simulate_episodes(n_members=n_members, seed=seed, tau=tau)
    truth = train.attrs["truth"]
    coef = truth["coefficients"]
    rng = np.random.default_rng(seed + 1)
    last = train.groupby("member_id", sort=False).tail(1).reset_index(drop=True)
    nxt = pd.DataFrame({
        "member_id": last["member_id"], "episode": last["episode"] + 1,
        "age": np.clip(last["age"] + rng.uniform(0, 2, len(last)), 18, 95).round(0),
        "los": rng.gamma(2.0, 2.0, size=len(last)).round(0) + 1, "emergency": rng.random(len(last)) < 0.4,
        "n_prior_admits": np.minimum(last["episode"], 5), "true_member_effect": last["true_member_effect"]})
    nxt["readmitted"] = rng.binomial(1, expit(fixed_part(nxt, coef) + nxt["true_member_effect"]))
    new = hp.datasets.simulate_episodes(n_members=n_new, seed=seed + 2, tau=tau)
    new = new.groupby("member_id", sort=False).head(1).reset_index(drop=True)
    new["member_id"] = "new-" + new["member_id"]
    return {"train": train, "next": nxt, "new": new, "coef": coef, "tau": tau}


def fixed_part(df: pd.DataFrame, coef: dict) -> np.ndarray:
    """The true linear predictor without the member effect."""
    return (coef["intercept"] + coef["age"] * (df["age"] - 65) + coef["los"] * (df["los"] - 4)
            + coef["emergency"] * df["emergency"] + coef["n_prior_admits"] * df["n_prior_admits"]).to_numpy(float)


def oracle_means(train: pd.DataFrame, coef: dict, tau: float, nodes: int = 60) -> tuple[pd.Series, np.ndarray]:
    """Exact E[u_j | member j's episodes, true coefficients, tau]: per member (all rows) and per row
    (leaving the row's own outcome out), by Gauss-Hermite quadrature over u ~ Normal(0, tau)."""
    x, w = np.polynomial.hermite.hermgauss(nodes)
    u = np.sqrt(2.0) * tau * x
    off = fixed_part(train, coef)
    y = train["readmitted"].to_numpy(float)
    p = expit(off[:, None] + u[None, :])
    ll_row = y[:, None] * np.log(p) + (1 - y[:, None]) * np.log1p(-p)  # (rows, nodes)
    codes, members = pd.factorize(train["member_id"])
    ll_m = np.zeros((len(members), nodes))
    np.add.at(ll_m, codes, ll_row)

    def post_mean(ll):
        ll = ll - ll.max(axis=1, keepdims=True)
        wt = w[None, :] * np.exp(ll)
        return (wt @ u) / wt.sum(axis=1)

    return pd.Series(post_mean(ll_m), index=members), post_mean(ll_m[codes] - ll_row)


# ------------------------------------------------------------------------------------------------------
# encoders: each returns (training features, features of the next episodes, of the new members, seconds)
def _member_mean(train_ids, train_y, ids, default):
    m = pd.Series(train_y).groupby(np.asarray(train_ids)).mean()
    return pd.Series(np.asarray(ids)).map(m).fillna(default).to_numpy()[:, None]


_CACHE: dict = {}


def encode(name: str, d: dict, cv, hp_settings: dict, oracle=None):
    """Features of ``name`` for the training rows, the next episodes and the new members, and seconds."""
    tr, nx, nw = d["train"], d["next"], d["new"]
    ids, y = tr["member_id"].to_numpy(), tr["readmitted"].to_numpy()
    t0 = time.perf_counter()
    if name == "none":
        out = (np.zeros((len(tr), 0)), np.zeros((len(nx), 0)), np.zeros((len(nw), 0)))
    elif name == "raw mean (in-sample)":
        out = tuple(_member_mean(ids, y, df["member_id"], y.mean()) for df in (tr, nx, nw))
    elif name == "raw mean (out-of-fold)":
        ztr = np.empty((len(tr), 1))
        for a, b in cv.split(tr):
            ztr[b] = _member_mean(ids[a], y[a], ids[b], y[a].mean())
        out = (ztr, *(_member_mean(ids, y, df["member_id"], y.mean()) for df in (nx, nw)))
    elif name == "TargetEncoder":
        from sklearn.preprocessing import TargetEncoder

        te = TargetEncoder(target_type="binary", cv=cv)
        out = (te.fit_transform(tr[["member_id"]], y), te.transform(nx[["member_id"]]), te.transform(nw[["member_id"]]))
    elif name == "GLMMEncoder":
        import category_encoders as ce

        ge = ce.GLMMEncoder(cols=["member_id"], binomial_target=True)
        out = tuple(np.asarray(v, dtype=float) for v in (ge.fit_transform(tr[["member_id"]], y),
                                                         ge.transform(nx[["member_id"]]), ge.transform(nw[["member_id"]])))
    elif name.startswith("hierpool"):
        # one encoder serves both rows: "mean" is the first column of the richer one (same fits), and
        # both report the time of that one fit_transform
        key = ("hierpool", id(d))
        if key not in _CACHE:
            enc = hp.GroupEncoder(group="member_id", features=RICH, cv=cv, random_state=0, **hp_settings)
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", hp.HierpoolSamplingWarning)
                ztr = enc.fit_transform(tr[["member_id"]], y)
            _CACHE[key] = (ztr, enc.transform(nx[["member_id"]]), enc.transform(nw[["member_id"]]),
                           time.perf_counter() - t0)
        *z, secs = _CACHE[key]
        cols = slice(0, 1) if name == REFERENCE else slice(None)
        return (*(v[:, cols] for v in z), secs)
    elif name == "oracle":
        per_member, loo = oracle
        out = (loo[:, None], nx["member_id"].map(per_member).to_numpy()[:, None], np.zeros((len(nw), 1)))
    else:
        raise ValueError(name)
    return (*out, time.perf_counter() - t0)


ENCODERS = ("none", "raw mean (in-sample)", "raw mean (out-of-fold)", "TargetEncoder", "GLMMEncoder",
            REFERENCE, "hierpool (mean, sd, rank, P(top k))", "oracle")


# ------------------------------------------------------------------------------------------------------
def _design(df, z):
    return np.column_stack([df[COVARIATES].to_numpy(float), z])


def _models():
    from sklearn.ensemble import HistGradientBoostingClassifier
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    return {"LogisticRegression": lambda: make_pipeline(StandardScaler(), LogisticRegression(max_iter=1000)),
            "HistGradientBoosting": lambda: HistGradientBoostingClassifier(max_iter=200, learning_rate=0.05,
                                                                           random_state=0)}


def _losses(y, p):
    p = np.clip(p, 1e-12, 1 - 1e-12)
    return -(y * np.log(p) + (1 - y) * np.log1p(-p))


def _calibration_slope(y, p):
    """Slope of the logistic regression of y on logit(p) (1: calibrated; unpenalized, as a GLM fit)."""
    from sklearn.linear_model import LogisticRegression

    lp = logit(np.clip(p, 1e-9, 1 - 1e-9))
    return float(LogisticRegression(penalty=None, max_iter=1000).fit(lp[:, None], y).coef_[0, 0])


def compare(members: int, new_members: int, seed: int, hp_settings: dict, encoders=ENCODERS) -> dict:
    from sklearn.metrics import roc_auc_score
    from sklearn.model_selection import KFold

    d = episodes(members, new_members, seed)
    _CACHE.clear()
    cv = KFold(5, shuffle=True, random_state=0)
    oracle = oracle_means(d["train"], d["coef"], d["tau"])
    feats = {}
    for name in encoders:
        feats[name] = encode(name, d, cv, hp_settings, oracle)
        print(f"  encoded: {name} ({feats[name][3]:.1f} s)", flush=True)
    y_tr, y_nx, y_nw = (d[k]["readmitted"].to_numpy(float) for k in ("train", "next", "new"))
    rows, preds = [], {}
    boot = np.random.default_rng(0).integers(0, len(y_nx), size=(200, len(y_nx)))
    for mname, make in _models().items():
        for name in encoders:
            ztr, znx, znw, secs = feats[name]
            model = make().fit(_design(d["train"], ztr), y_tr)
            p_tr, p_nx, p_nw = (model.predict_proba(_design(d[k], z))[:, 1]
                                for k, z in (("train", ztr), ("next", znx), ("new", znw)))
            preds[mname, name] = p_nx
            rows.append({"model": mname, "encoder": name, "log_loss": float(_losses(y_nx, p_nx).mean()),
                         "auc": float(roc_auc_score(y_nx, p_nx)), "brier": float(np.mean((p_nx - y_nx) ** 2)),
                         "cal_slope": _calibration_slope(y_nx, p_nx),
                         "log_loss_train": float(_losses(y_tr, p_tr).mean()),
                         "log_loss_new": float(_losses(y_nw, p_nw).mean()), "fit_s": secs})
        ref = preds[mname, REFERENCE]
        for r in rows:
            if r["model"] != mname:
                continue
            dl = _losses(y_nx, preds[mname, r["encoder"]]) - _losses(y_nx, ref)
            r["d_log_loss"], r["se_d_log_loss"] = float(dl.mean()), float(dl.std(ddof=1) / np.sqrt(dl.size))
            aucs = [roc_auc_score(y_nx[b], preds[mname, r["encoder"]][b]) - roc_auc_score(y_nx[b], ref[b])
                    for b in boot]
            r["d_auc"], r["se_d_auc"] = r["auc"] - float(roc_auc_score(y_nx, ref)), float(np.std(aucs, ddof=1))
    return {"rows": rows, "members": members, "new_members": new_members, "train_rows": len(d["train"]),
            "event_rate": float(y_tr.mean()), "seed": seed, "hp_settings": hp_settings}


def timing(family: str, n_groups: int, draws: int, tune: int, chains: int) -> dict:
    df = C.simulate(n_groups, family=family, n_predictors=0, seed=1)
    out = {"family": family, "groups": n_groups, "rows": len(df)}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", hp.HierpoolSamplingWarning)
        with C.timer(out, "one_fit"):
            dt = hp.fit(hp.random_intercepts(hp.prepare(df, y="y", group="group", family=family)), draws=draws,
                        tune=tune, chains=chains, random_seed=1, progressbar=False, log_likelihood=False)
        out["sampler"] = dt.attrs["hierpool_sampler"]
        del dt
        enc = hp.GroupEncoder(group="group", family=family, cv=5, random_state=0, draws=draws, tune=tune,
                              chains=chains)
        with C.timer(out, "fit_transform"):
            enc.fit_transform(df[["group"]], df["y"])
    out["ratio"] = out["fit_transform"] / out["one_fit"]
    out["peak_gb"] = C.peak_rss_gb()
    return out


# ------------------------------------------------------------------------------------------------------
def print_tables(res: dict) -> None:
    cmp_ = res.get("compare")
    if cmp_:
        print(f"\nSimulated episodes: {cmp_['members']:,} members, {cmp_['train_rows']:,} training episodes "
              f"(event rate {cmp_['event_rate']:.3f}), next episode of every member, {cmp_['new_members']:,} "
              f"new members; hierpool settings {cmp_['hp_settings']}.")
        for m in ("LogisticRegression", "HistGradientBoosting"):
            rows = [dict(r, d_ll=f"{r['d_log_loss']:+.4f} ± {r['se_d_log_loss']:.4f}",
                         d_auc=f"{r['d_auc']:+.4f} ± {r['se_d_auc']:.4f}")
                    for r in cmp_["rows"] if r["model"] == m]
            C.print_table(rows, ["encoder", "log_loss", "d_ll", "auc", "d_auc", "brier", "cal_slope",
                                 "log_loss_train", "log_loss_new", "fit_s"],
                          title=f"Next episode, next stage = {m} (d_ll, d_auc: minus hierpool (mean), ± paired SE)")
    if res.get("timing"):
        C.print_table(res["timing"], ["family", "groups", "rows", "sampler", "one_fit", "fit_transform", "ratio",
                                      "one_fit_cpu", "fit_transform_cpu", "peak_gb"],
                      title="5-fold GroupEncoder.fit_transform against one hp.fit (seconds)")


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--members", type=int, default=5000, help="training members of the comparison (0: skip)")
    ap.add_argument("--new-members", type=int, default=2000)
    ap.add_argument("--seed", type=int, default=2026)
    ap.add_argument("--encoders", nargs="*", default=list(ENCODERS))
    ap.add_argument("--sizes", type=int, nargs="*", default=[10_000, 100_000, 1_000_000],
                    help="gaussian groups for the timing")
    ap.add_argument("--bernoulli-sizes", type=int, nargs="*", default=[100_000])
    ap.add_argument("--draws", type=int, default=1000)
    ap.add_argument("--tune", type=int, default=1000)
    ap.add_argument("--chains", type=int, default=4)
    ap.add_argument("--json", help="write the raw results here (after each part)")
    ap.add_argument("--from-json", help="reprint the tables of a saved run")
    a = ap.parse_args(argv)
    if a.from_json:
        print_tables(json.loads(Path(a.from_json).read_text()))
        return
    res = {"machine": C.machine(), "args": vars(a), "timing": []}
    print(res["machine"])

    def save():
        if a.json:
            Path(a.json).write_text(json.dumps(res, indent=1, default=float))

    if a.members:
        res["compare"] = compare(a.members, a.new_members, a.seed,
                                 {"draws": a.draws, "tune": a.tune, "chains": a.chains}, a.encoders)
        save()
        print_tables({"compare": res["compare"]})
    for fam, sizes in (("gaussian", a.sizes), ("bernoulli", a.bernoulli_sizes)):
        for J in sizes:
            r = timing(fam, J, a.draws, a.tune, a.chains)
            res["timing"].append(r)
            save()
            print(json.dumps(r, default=float), flush=True)
    print_tables({"timing": res["timing"]})


if __name__ == "__main__":
    main()
