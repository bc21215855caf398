"""Predictions for rows of known and of new groups, from a fit's DataTree alone.

A row of a group seen in training uses that group's posterior ``group_effect``. A row of a group the fit
has never seen ("new group") gets, for every posterior draw ``s``, an effect drawn from the population
distribution ``Normal(0, tau_s)``; rows of one new group share that draw, so their joint predictive
distribution carries the correlation a shared effect implies. The ridge variant has no ``tau``: its prior
on a group effect is ``Normal(0, 1/sqrt(lam))`` with ``lam`` fixed by the user, which is what that model
assumes about a group it has not seen, and :func:`predict` says so with a ``UserWarning``.

Random slopes (``(1 + x | g)``): a known group's row adds ``x * group_slope`` (its posterior slope
deviations); a new group's intercept and slope deviations are drawn jointly from the population,
``MVN(0, Sigma_s)`` per draw (``Sigma = diag(tau, tau_slope) R diag(tau, tau_slope)``, or ``I / lam``
for the ridge variant), shared by its rows.

Memory: the linear predictor is computed for blocks of rows of at most :func:`hierpool.core.config.chunk_values` (draws x rows)
values at a time; ``kind="draws"`` returns all draws of all rows and so holds draws x rows values.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass
from numbers import Integral

import numpy as np
import pandas as pd
import xarray as xr

from hierpool.analysis.fitview import FitView, as_fit
from hierpool.core import config
from hierpool.core import names as N
from hierpool.core.validate import generator, one_of, probability
from hierpool.data.terms import design_matrix, term_columns

__all__ = ["predict"]

#: Largest number of (draw, row) values of the linear predictor held at once when summarizing.


# ------------------------------------------------------------------------------------------------------
# the rows to predict: design, groups, trials/exposure
@dataclass
class NewRows:
    """Rows of a new frame coded like the training data (internal)."""

    X: np.ndarray  # (n, P) user's scale
    labels: np.ndarray  # (n,) group label of each row (object)
    known_idx: np.ndarray  # (n,) position of the row's group in the fit, -1 for a new group
    new_code: np.ndarray  # (n,) code of the row's new group in 0..K-1, -1 for a known group
    new_labels: list  # the K new group labels, in first-seen order
    offset: np.ndarray | None  # log(exposure)
    trials: np.ndarray | None
    se: np.ndarray | None = None  # summary-level fits: the known standard error of each row's response

    @property
    def n(self) -> int:
        return int(self.labels.shape[0])

    @property
    def is_new(self) -> np.ndarray:
        return self.known_idx < 0


def _data_spec(fv: FitView) -> dict:
    spec = fv.settings.get("data")
    if not spec or "group" not in spec:
        raise ValueError(
            "dt.attrs['hierpool_settings'] has no 'data' recipe (group, predictor terms): predictions need a "
            "fit made by hp.fit from a hierpool model."
        )
    return spec


def _positive_column(df: pd.DataFrame, col: str, arg: str, *, integer: bool, what: str = "exposure") -> np.ndarray:
    s = df[col]
    if not pd.api.types.is_numeric_dtype(s) or pd.api.types.is_bool_dtype(s):
        raise TypeError(f"{arg}: column {col!r} must be numeric; got dtype {s.dtype}.")
    v = s.to_numpy(dtype=float)
    bad = ~np.isfinite(v)
    if bad.any():
        raise ValueError(
            f"{arg}: column {col!r} has {int(bad.sum())} NaN or infinite values (first rows: "
            f"{df.index[bad][:5].tolist()})."
        )
    if integer and ((v < 1).any() or (np.mod(v, 1) != 0).any()):
        raise ValueError(f"{arg}: column {col!r} (trials) must hold integers >= 1.")
    if not integer and (v <= 0).any():
        raise ValueError(f"{arg}: column {col!r} ({what}) must be positive; {int((v <= 0).sum())} rows are <= 0.")
    return v


def _cbind_trials(df: pd.DataFrame, cols: list[str], arg: str) -> np.ndarray:
    """Trials of a fit prepared from ``cbind(successes, failures)``: the sum of the two columns."""
    parts = []
    for col in cols:
        s = df[col]
        if not pd.api.types.is_numeric_dtype(s) or pd.api.types.is_bool_dtype(s):
            raise TypeError(f"{arg}: column {col!r} (of cbind) must be numeric; got dtype {s.dtype}.")
        parts.append(s.to_numpy(dtype=float))
    v = parts[0] + parts[1]
    bad = ~np.isfinite(v) | (v < 1) | (np.mod(v, 1) != 0)
    if bad.any():
        raise ValueError(f"{arg}: columns {cols} of cbind must add up to integer trials >= 1; "
                         f"{int(bad.sum())} rows do not (first rows: {df.index[bad][:5].tolist()}).")
    return v


#: ``hp.predict`` warns when more than this share of the rows belongs to groups the fit has not seen.
NEW_GROUP_WARN_SHARE = 0.5


def _label_kind(v) -> str:
    if isinstance(v, (bool, np.bool_)):
        return "bool"
    if isinstance(v, (Integral, float, np.floating)):
        return "number"
    return type(v).__name__


def check_label_kinds(known: pd.Index, labels: np.ndarray, arg: str, group: str) -> None:
    """Refuse group labels of another kind than the fit's (str ids against int ids would match nothing,
    and every row would silently become a new group). Numbers match numbers by value (3 == 3.0)."""
    fit_kinds = {_label_kind(v) for v in known[:1000]}
    new_kinds = {_label_kind(v) for v in pd.unique(labels)[:1000]}
    if not new_kinds <= fit_kinds:
        odd = next(v for v in labels if _label_kind(v) not in fit_kinds)
        raise TypeError(
            f"{arg}: group column {group!r} holds {type(odd).__name__} labels (e.g. {odd!r}) but the fit's groups "
            f"are {', '.join(sorted(fit_kinds))} (e.g. {known[0]!r}); no row would match a known group. Convert "
            f"the column to the fit's type first (e.g. {arg}[{group!r}].astype({type(known[0]).__name__}))."
        )


def new_rows(fv: FitView, new_df, arg: str = "new_df", warn_new: bool = True) -> NewRows:
    """Check ``new_df`` against the fit's data recipe and code it like the training data.

    ``warn_new``: warn when most rows belong to groups the fit has not seen (off where that is the design,
    as in cross-validation over groups).
    """
    if not isinstance(new_df, pd.DataFrame):
        raise TypeError(f"{arg} must be a pandas DataFrame; got {type(new_df).__name__}.")
    spec = _data_spec(fv)
    group = spec["group"]
    terms = spec.get("terms") or []
    needed = list(dict.fromkeys([group] + [c for t in terms for c in term_columns(t)]))
    if isinstance(spec.get("trials"), str):
        needed.append(spec["trials"])
    elif isinstance(spec.get("trials"), list):  # cbind(successes, failures): trials are their sum
        needed += [c for c in spec["trials"] if c not in needed]
    if spec.get("exposure"):
        needed.append(spec["exposure"])
    if spec.get("se"):
        needed.append(spec["se"])
    missing = [c for c in needed if c not in new_df.columns]
    if missing:
        raise ValueError(
            f"{arg} lacks column {missing[0]!r}; the fit needs columns {needed} (group, predictors"
            f"{', trials' if isinstance(spec.get('trials'), (str, list)) else ''}"
            f"{', exposure' if spec.get('exposure') else ''}"
            f"{', se: the standard error of each new estimate (summary-level fit)' if spec.get('se') else ''}"
            f"). Columns of {arg}: {list(new_df.columns)[:20]}."
        )
    if len(new_df) == 0:
        raise ValueError(f"{arg} has no rows.")
    gs = new_df[group]
    if gs.isna().any():
        bad = gs.isna().to_numpy()
        raise ValueError(
            f"{arg}: group column {group!r} has {int(bad.sum())} missing labels (first rows: "
            f"{new_df.index[bad][:5].tolist()}); every row needs a group (a label not in the fit is a new group)."
        )
    X = design_matrix(new_df, terms, context=arg)
    labels = gs.to_numpy(dtype=object)
    known = pd.Index(fv.groups.to_numpy(), dtype=object)
    check_label_kinds(known, labels, arg, group)
    known_idx = known.get_indexer(pd.Index(labels, dtype=object))
    share_new = float((known_idx < 0).mean())
    if warn_new and share_new > NEW_GROUP_WARN_SHARE:
        warnings.warn(
            f"{arg}: {share_new:.0%} of the rows ({int((known_idx < 0).sum())} of {len(labels)}) belong to groups "
            f"the fit has not seen; they are predicted as new groups (the population's effect, sd tau). If "
            f"they are members the fit knows, check that {group!r} holds the same ids as in the training data.",
            UserWarning, stacklevel=3)
    if (known_idx == -1).any() and not known.is_unique:  # pragma: no cover - fits always have unique groups
        raise ValueError("the fit's group labels are not unique.")
    new_code = np.full(len(labels), -1, dtype=np.int64)
    new_labels: list = []
    is_new = known_idx < 0
    if is_new.any():
        codes, uniq = pd.factorize(pd.Index(labels[is_new], dtype=object), sort=False)
        new_code[is_new] = codes
        new_labels = list(uniq)
    trials = offset = None
    t = spec.get("trials")
    if fv.fam.uses_trials:
        if isinstance(t, str):
            trials = _positive_column(new_df, t, arg, integer=True)
        elif isinstance(t, list):  # cbind(successes, failures)
            trials = _cbind_trials(new_df, t, arg)
        elif isinstance(t, Integral):
            trials = np.full(len(new_df), float(t))
        else:
            raise ValueError("the fit is binomial but its settings do not record trials.")
    e = spec.get("exposure")
    if fv.fam.uses_exposure and e:
        offset = np.log(_positive_column(new_df, e, arg, integer=False))
    se = _positive_column(new_df, spec["se"], arg, integer=False, what="se") if spec.get("se") else None
    return NewRows(X=X, labels=labels, known_idx=known_idx.astype(np.int64), new_code=new_code,
                   new_labels=new_labels, offset=offset, trials=trials, se=se)


# ------------------------------------------------------------------------------------------------------
# posterior draws as flat numpy arrays
@dataclass
class Draws:
    """The posterior flattened to ``S = chains x draws`` samples (internal)."""

    intercept: np.ndarray  # (S,)
    beta: np.ndarray | None  # (S, P)
    sigma: np.ndarray | None  # (S,)
    group_effect: xr.DataArray  # (chain, draw, group), read a block of groups at a time
    chain: np.ndarray
    draw: np.ndarray
    group_slope: xr.DataArray | None = None  # (chain, draw, group, slope): random slopes, else None
    slope_cols: np.ndarray | None = None  # the columns of X that carry the slopes

    @property
    def S(self) -> int:
        return int(self.intercept.shape[0])

    def effects(self, idx: np.ndarray) -> np.ndarray:
        """Posterior group effects of the groups at positions ``idx``: (S, len(idx))."""
        ge = self.group_effect.isel({N.GROUP: idx}).values
        return ge.reshape(self.S, len(idx))

    def slopes(self, idx: np.ndarray) -> np.ndarray:
        """Posterior slope deviations of the groups at positions ``idx``: (S, len(idx), slopes)."""
        gs = self.group_slope.isel({N.GROUP: idx}).values
        return gs.reshape(self.S, len(idx), -1)


def flat_draws(fv: FitView) -> Draws:
    post = fv.post
    order = (*N.SAMPLE_DIMS,)
    icpt = post[N.INTERCEPT].transpose(*order).values.reshape(-1)
    beta = None
    if N.BETA in post and N.PREDICTOR in post[N.BETA].dims and post.sizes.get(N.PREDICTOR, 0):
        beta = post[N.BETA].transpose(*order, N.PREDICTOR).values.reshape(icpt.shape[0], -1)
    sigma = post[N.SIGMA].transpose(*order).values.reshape(-1) if N.SIGMA in post else None
    if fv.fam.has_sigma and sigma is None and not fv.summary_level:
        raise ValueError("a gaussian fit needs 'sigma' in its posterior to predict new observations.")
    ge = post[N.GROUP_EFFECT].transpose(*order, N.GROUP)
    gs = cols = None
    if N.GROUP_SLOPE in post:
        gs = post[N.GROUP_SLOPE].transpose(*order, N.GROUP, N.SLOPE)
        preds = [str(p) for p in post[N.PREDICTOR].values]
        cols = np.asarray([preds.index(str(v)) for v in post[N.SLOPE].values], dtype=np.int64)
    return Draws(intercept=icpt, beta=beta, sigma=sigma, group_effect=ge,
                 chain=post["chain"].values, draw=post["draw"].values, group_slope=gs, slope_cols=cols)


def new_group_sd(fv: FitView, *, warn: bool = True, stacklevel: int = 3) -> np.ndarray:
    """Per-draw SD of the effect of a group the fit has not seen: tau, or 1/sqrt(lam) for the ridge."""
    post = fv.post
    if N.TAU in post:
        return post[N.TAU].transpose(*N.SAMPLE_DIMS).values.reshape(-1)
    S = post.sizes["chain"] * post.sizes["draw"]
    if fv.lam is None:
        raise ValueError(
            f"the fit (variant {fv.variant!r}) has neither 'tau' in its posterior nor a ridge 'lam' in its "
            "settings, so nothing says how the effect of a new group is distributed."
        )
    sd = 1.0 / np.sqrt(float(fv.lam))
    if warn:
        warnings.warn(
            f"rows of groups not in the fit: the {fv.variant} model has no tau, so a new group's effect is "
            f"drawn from its fixed ridge prior Normal(0, sd = 1/sqrt(lam) = {sd:.4g}) (lam = {fv.lam:g}); "
            "that is what a ridge with a chosen lam assumes about an unseen group, and it is not learned from "
            "the spread of the groups. Use random_intercepts to let the data set this spread.",
            UserWarning,
            stacklevel=stacklevel,
        )
    return np.full(S, sd)


def row_sigma(d: Draws, rows: NewRows, sel) -> np.ndarray | None:
    """The response SD of the rows selected by ``sel``, broadcasting against (S, rows): sigma per draw, or
    the rows' own standard errors (summary-level fits), or None (other families)."""
    if rows.se is not None:
        return rows.se[sel][None, :]
    return None if d.sigma is None else d.sigma[:, None]


def eta_block(d: Draws, rows: NewRows, sel, new_u: np.ndarray | None,
              include_group_effect: bool = True, new_v: np.ndarray | None = None) -> np.ndarray:
    """Linear predictor (S, rows selected by ``sel``: a slice or an index array) including the offset.

    ``new_u`` holds per-draw effects of the new groups (S, K) indexed by ``rows.new_code``; ``new_v``
    their slope deviations (S, K, slopes) for a random-slopes fit.
    """
    kidx = rows.known_idx[sel]
    eta = np.repeat(d.intercept[:, None], kidx.shape[0], axis=1)
    if d.beta is not None and rows.X.shape[1]:
        eta = eta + d.beta @ rows.X[sel].T
    if include_group_effect:
        known = kidx >= 0
        if known.any():
            uniq, inv = np.unique(kidx[known], return_inverse=True)
            eta[:, known] += d.effects(uniq)[:, inv]
            if d.group_slope is not None:
                xs = rows.X[sel][known][:, d.slope_cols]  # (rows, slopes)
                eta[:, known] += np.einsum("srk,rk->sr", d.slopes(uniq)[:, inv], xs)
        if (~known).any():
            eta[:, ~known] += new_u[:, rows.new_code[sel][~known]]
            if d.group_slope is not None:
                xs = rows.X[sel][~known][:, d.slope_cols]
                eta[:, ~known] += np.einsum("srk,rk->sr", new_v[:, rows.new_code[sel][~known]], xs)
    if rows.offset is not None:
        eta = eta + rows.offset[sel]
    return eta


# ------------------------------------------------------------------------------------------------------
# several grouping factors: the further factors' effects of the new rows
def other_factors_eta(fv: FitView, new_df: pd.DataFrame, S: int, rng: np.random.Generator, arg: str = "new_df"):
    """The further grouping factors' effects of every row of ``new_df``, (S, rows), and for each factor a
    boolean array saying which rows are at a level the fit has not seen; ``(None, {})`` with one factor.

    A known level uses its posterior ``group_effect__f``; a new level gets, per draw, one effect drawn from
    ``Normal(0, tau__f)`` (ridge: ``1/sqrt(lam)``), shared by the rows of that level, as for ``group``.
    """
    from hierpool.data.factors import factor_labels
    from hierpool.inference.predictive import factor_names

    names = factor_names(fv.post, fv.const)
    if not names:
        return None, {}
    total = np.zeros((S, len(new_df)))
    is_new = {}
    for f in names:
        u = fv.post[N.factor_var(N.GROUP_EFFECT, f)]
        dim = N.factor_var(N.GROUP, f)
        labels = factor_labels(new_df, f, arg)
        known = pd.Index(fv.post[dim].to_numpy(), dtype=object)
        check_label_kinds(known, labels, arg, f)
        kidx = known.get_indexer(pd.Index(labels, dtype=object))
        mat = u.transpose(*N.SAMPLE_DIMS, dim).values.reshape(S, -1)
        ok = kidx >= 0
        total[:, ok] += mat[:, kidx[ok]]
        if (~ok).any():
            codes, uniq = pd.factorize(pd.Index(labels[~ok], dtype=object), sort=False)
            tau = N.factor_var(N.TAU, f)
            if tau in fv.post:
                sd = fv.post[tau].transpose(*N.SAMPLE_DIMS).values.reshape(-1)
            elif fv.lam is not None:
                sd = np.full(S, 1.0 / np.sqrt(float(fv.lam)))
            else:
                raise ValueError(f"the fit has no {tau!r} and no ridge 'lam': nothing says how the effect of a new "
                                 f"level of {f!r} is distributed.")
            total[:, ~ok] += (rng.normal(size=(S, len(uniq))) * sd[:, None])[:, codes]
        is_new[f] = ~ok
    return total, is_new


def predict(
    dt: xr.DataTree,
    new_df: pd.DataFrame,
    kind: str = "mean",
    ci_prob: float = 0.9,
    random_seed: int | None = None,
    include_group_effect: bool = True,
) -> pd.DataFrame | xr.DataArray:
    """Predict the response for rows of known and of new groups.

    Parameters
    ----------
    dt : xarray.DataTree
        A fit returned by :func:`hierpool.fit` (any variant, any family).
    new_df : pandas.DataFrame
        Rows to predict. Must hold the group column and the predictor columns used in the fit (categorical
        predictors are coded exactly as in training; a level never seen in training is an error), the
        trials column of a binomial fit (unless training used one constant number of trials), the
        exposure column of a poisson fit with exposure, and the se column of a summary-level fit
        (``hp.prepare(..., se=)``: a new observation there is a new estimate with its own standard error,
        drawn from ``Normal(mean, se)``). The response column is not needed.
    kind : {"mean", "draws"}
        ``"mean"``: a table, one row per row of ``new_df``. ``"draws"``: the posterior predictive draws.
    ci_prob : float
        Probability of the equal-tailed intervals, in (0, 1).
    random_seed : int, optional
        Seeds the draws of new-group effects and of new observations.
    include_group_effect : bool
        With False every row is predicted with a group effect of 0 (a typical group, on the linear
        predictor scale), known group or not, and no new-group warning is raised.

    Returns
    -------
    pandas.DataFrame or xarray.DataArray
        ``kind="mean"``: indexed like ``new_df``, with columns ``group``, ``new_group`` (bool: the label
        is not in the fit), ``estimate`` (posterior mean of E[y]: the mean for gaussian, the probability
        for bernoulli, the expected number of successes ``trials x p`` for binomial, the expected count
        ``rate x exposure`` for poisson), ``std_error`` (its posterior SD), ``conf_low``/``conf_high``
        (its equal-tailed ``ci_prob`` interval) and ``pred_low``/``pred_high`` (the interval of a new
        observation drawn from the likelihood). ``kind="draws"``: DataArray ``y`` with dims
        ``(chain, draw, obs_id)``, ``obs_id`` i being the i-th row of ``new_df``, and coords ``group``
        and ``new_group`` along ``obs_id``.

    Warns
    -----
    UserWarning
        For a ridge fit with rows of new groups: their effect is drawn from the fixed prior
        ``Normal(0, 1/sqrt(lam))``.

    Notes
    -----
    **Several grouping factors** (crossed or nested): ``new_df`` needs every factor's column(s); each row
    uses the posterior effect of each factor's level it belongs to, and for a level the fit has not seen
    (a new member at a known hospital, or both new) an effect drawn per draw from ``Normal(0, tau__f)``
    (``tau`` for the first factor), shared by the rows of that level. The table's ``group``/``new_group``
    refer to the first factor; ``new_group__f`` says whether the row's level of factor ``f`` is new.

    For a new group the effect is drawn, per posterior draw, from ``Normal(0, tau)``; all rows of that
    group share the draw. So a new group's interval is wider than a known group's: for a gaussian model
    its predictive SD is about ``sqrt(tau^2 + sigma^2)`` plus the uncertainty of the fixed part.

    Examples
    --------
    >>> import hierpool as hp
    >>> df = hp.datasets.simulate("gaussian", n_groups=20, seed=1)
    >>> dt = hp.fit(hp.random_intercepts(df, y="y", group="group", predictors=["x1"]),
    ...             draws=300, progressbar=False)                                    # doctest: +SKIP
    >>> new = pd.DataFrame({"group": ["g0", "a new one"], "x1": [0.0, 1.0]})          # doctest: +SKIP
    >>> hp.predict(dt, new)[["group", "new_group", "estimate", "pred_low", "pred_high"]]  # doctest: +SKIP
    """
    fv = as_fit(dt)
    one_of("kind", kind, ("mean", "draws"))
    ci_prob = probability("ci_prob", ci_prob)
    if not isinstance(include_group_effect, bool):
        raise TypeError(f"include_group_effect must be True or False; got {include_group_effect!r}.")
    rows = new_rows(fv, new_df)
    d = flat_draws(fv)
    S = d.S
    rng = generator("random_seed", random_seed)
    new_u = new_v = None
    if include_group_effect and rows.new_labels and d.group_slope is not None:
        from hierpool.inference.slopes import cov_factor

        if fv.lam is not None:
            new_group_sd(fv, stacklevel=3)  # the ridge's warning: a fixed prior, not a learned spread
        C = cov_factor(fv.post, fv.lam, 1 + len(d.slope_cols))
        U = np.einsum("sql,skl->skq", C, rng.normal(size=(S, len(rows.new_labels), C.shape[1])))
        new_u, new_v = U[..., 0], U[..., 1:]
    elif include_group_effect and rows.new_labels:
        sd = new_group_sd(fv, stacklevel=3)
        new_u = rng.normal(size=(S, len(rows.new_labels))) * sd[:, None]
    extra, extra_new = other_factors_eta(fv, new_df, S, rng) if include_group_effect else (None, {})

    if kind == "draws":
        sl = slice(0, rows.n)
        eta = eta_block(d, rows, sl, new_u, include_group_effect, new_v)
        if extra is not None:
            eta = eta + extra
        y = fv.fam.draw(eta, rng, sigma=row_sigma(d, rows, sl), trials=rows.trials)
        C, D = len(d.chain), len(d.draw)
        return xr.DataArray(
            y.reshape(C, D, rows.n),
            dims=(*N.SAMPLE_DIMS, N.OBS),
            coords={"chain": d.chain, "draw": d.draw, N.OBS: np.arange(rows.n),
                    N.GROUP: (N.OBS, rows.labels), "new_group": (N.OBS, rows.is_new)},
            name=N.Y,
            attrs={"description": "posterior predictive draws of new observations for the rows of new_df"},
        )

    q = [(1 - ci_prob) / 2, (1 + ci_prob) / 2]
    out = {k: np.empty(rows.n) for k in ("estimate", "std_error", "conf_low", "conf_high", "pred_low",
                                          "pred_high")}
    for sl in config.slices(rows.n, S):
        eta = eta_block(d, rows, sl, new_u, include_group_effect, new_v)
        if extra is not None:
            eta = eta + extra[:, sl]
        trials = None if rows.trials is None else rows.trials[sl]
        mu = fv.fam.mean(eta, trials)
        out["estimate"][sl] = mu.mean(axis=0)
        out["std_error"][sl] = mu.std(axis=0, ddof=1) if S > 1 else 0.0
        out["conf_low"][sl], out["conf_high"][sl] = np.quantile(mu, q, axis=0)
        y = fv.fam.draw(eta, rng, sigma=row_sigma(d, rows, sl), trials=trials)
        out["pred_low"][sl], out["pred_high"][sl] = np.quantile(y, q, axis=0)
    more = {N.factor_var("new_group", f): v for f, v in extra_new.items()}
    table = pd.DataFrame({"group": rows.labels, "new_group": rows.is_new, **more, **out}, index=new_df.index)
    table.attrs["ci_prob"] = ci_prob
    return table
