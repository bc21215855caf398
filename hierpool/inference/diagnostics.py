"""R-hat and bulk/tail ESS of many variables at once, as ArviZ computes them.

``arviz.rhat`` and ``arviz.ess`` loop over variables in Python: about 1.4 ms per variable for 4 x 500
draws, 190 s for 100,000 group effects on the 2-core reference machine. These functions compute the
same numbers (rank-normalized split R-hat, the max of bulk and folded; bulk ESS of the rank-normalized
split chains; tail ESS, the smaller of the quantile-indicator ESS at ``(1 - p)`` and ``p``, with ``p``
ArviZ's ``rcParams["stats.ci_prob"]`` (0.89 by default) as ``arviz.ess(method="tail")`` takes it;
Vehtari et al. 2021) on blocks of variables, in threads, with one sort per variable: the sorted split
draws give the median and the tails' quantiles (numpy's definitions), the rank-normal scores come from a
table (average ranks are multiples of 1/2), and the folded draws' order is merged from the same sort in
O(draws). ESS sums the chain autocovariances lag by lag, only as far as Geyer's truncation needs them (a
few lags when chains mix well; the FFT for variables that mix slowly). 10,000 variables of 4 x 1000
draws: 2.2 s on 2 threads (6.3 s with one FFT per ESS and two sorts). The tests compare them with ArviZ
to 1e-8.

Kept hand-written rather than calling arviz-stats, by measurement (``benchmarks/bench_libraries.py``,
2026-11-27, 2-core machine shared with other jobs, load average 7-8, wall seconds): R-hat, bulk and tail
ESS of (4 chains, 1000 draws, J) AR(1) chains took 21 s here at J = 10,000 (median of 3) and 93 s at
J = 100,000 (float32 draws), against about 260 s and 840 s for arviz-stats' array functions with
``rcParams["stats.module"] = "base"`` (timed on 1,000 variables and scaled: they loop over variables in
Python, one call each) and 780 s and 3,100 s with ``"numba"`` (its numba module replaces quantiles,
histograms and KDE, not R-hat or ESS, and its quantile ufunc made the tail ESS slower): 9-37x. The numbers
agree to 3e-11.
"""

from __future__ import annotations

import math
import warnings

import numpy as np
import xarray as xr
from numba import njit
from scipy import fft, special

from hierpool.core import kernels as K
from hierpool.core import names as N
from hierpool.core.kernels import each_in_threads

__all__ = ["rhat_ess"]


def _split(a: np.ndarray) -> np.ndarray:
    """(V, C, D) -> (V, 2C, D // 2): first and last halves of each chain (the middle draw of an odd D
    is dropped, as ArviZ does)."""
    half = a.shape[2] // 2
    return np.concatenate([a[:, :, :half], a[:, :, a.shape[2] - half:]], axis=1)


@njit(cache=True, nogil=True)
def _z_from_order(row, order, table, out):
    """``out[k]`` = the rank-normal score of ``row[k]``: average ranks over ties, read from ``table``
    (``table[2 r]`` is the score of rank ``r``; average ranks are multiples of 1/2)."""
    n = row.shape[0]
    i = 0
    while i < n:
        j = i + 1
        while j < n and row[order[j]] == row[order[i]]:
            j += 1
        z = table[i + j + 1]  # 2 x the average of ranks i+1 .. j
        for k in range(i, j):
            out[order[k]] = z
        i = j


@njit(cache=True, nogil=True)
def _scores_and_folded(flat, order, med, table, z, zf, folded, forder):
    """Rank-normal scores of each row of ``flat`` (``order``: its ascending argsort) and of the folded
    row ``|flat - med|``, whose order is merged from ``order`` in O(n): values below the median fold in
    descending order, values above it in ascending order."""
    V, n = flat.shape
    for v in range(V):
        row, o, m = flat[v], order[v], med[v]
        _z_from_order(row, o, table, z[v])
        for k in range(n):
            folded[k] = abs(row[k] - m)
        p = 0
        while p < n and row[o[p]] < m:
            p += 1
        lo, hi = p - 1, p
        for k in range(n):
            if hi >= n or (lo >= 0 and folded[o[lo]] <= folded[o[hi]]):
                forder[k] = o[lo]
                lo -= 1
            else:
                forder[k] = o[hi]
                hi += 1
        _z_from_order(folded, forder, table, zf[v])


def _score_table(n: int) -> np.ndarray:
    """Rank-normal scores ``ndtri((r - 3/8) / (n + 1/4))`` (Blom) for ``r = m / 2``, m = 0 .. 2n + 1."""
    r = 0.5 * np.arange(2 * n + 2)
    with np.errstate(invalid="ignore", divide="ignore"):
        return special.ndtri((r - 0.375) / (n - 0.75 + 1.0))


def _rhat(a: np.ndarray) -> np.ndarray:
    """Split-chain R-hat of each variable of (V, chains, draws)."""
    n = a.shape[2]
    chain_mean = a.mean(axis=2)
    within = a.var(axis=2, ddof=1).mean(axis=1)
    between = n * chain_mean.var(axis=1, ddof=1)
    with np.errstate(invalid="ignore", divide="ignore"):  # constant variables: NaN, as in ArviZ
        return np.sqrt((between / within + n - 1) / n)


#: Largest lag the direct autocovariance sums reach before a variable's ESS goes to the FFT.
_MAX_DIRECT_LAG = 32


@njit(cache=True, nogil=True)
def _extend_acov(c, acov, known, k):
    """Chain-averaged autocovariances (sums of lagged products / draws, as the FFT gives them) of the
    centered chains ``c`` (chains, draws), from lag ``known + 1`` up to ``k``; returns the lag now known."""
    C, n = c.shape
    while known < k:
        known += 1
        tot = 0.0
        for ch in range(C):
            s = 0.0
            for i in range(n - known):
                s += c[ch, i] * c[ch, i + known]
            tot += s / n
        acov[known] = tot / C
    return known


@njit(cache=True, nogil=True)
def _geyer_ess(c, acov, known, max_lag, chain_mean_var, n_chain, n_draw, rho):
    """ESS of one variable from its chain-averaged autocovariances ``acov``: Geyer's initial monotone
    sequence, as ArviZ's ``_ess``. Lags beyond ``known`` are summed from the centered chains ``c`` as
    the truncation needs them; returns (ess, True), or (nan, False) if it needs a lag beyond ``max_lag``."""
    known = _extend_acov(c, acov, known, 1)
    mean_var = acov[0] * n_draw / (n_draw - 1.0)
    var_plus = mean_var * (n_draw - 1.0) / n_draw
    if n_chain > 1:
        var_plus += chain_mean_var
    for k in range(n_draw):
        rho[k] = 0.0
    rho_even = 1.0
    rho[0] = rho_even
    rho_odd = 1.0 - (mean_var - acov[1]) / var_plus
    rho[1] = rho_odd
    t = 1
    while t < n_draw - 3 and rho_even + rho_odd > 0.0:
        if t + 2 > max_lag:
            return math.nan, False
        known = _extend_acov(c, acov, known, t + 2)
        rho_even = 1.0 - (mean_var - acov[t + 1]) / var_plus
        rho_odd = 1.0 - (mean_var - acov[t + 2]) / var_plus
        if rho_even + rho_odd >= 0.0:
            rho[t + 1] = rho_even
            rho[t + 2] = rho_odd
        t += 2
    max_t = t - 2
    if rho_even > 0.0:
        rho[max_t + 1] = rho_even
    t = 1
    while t <= max_t - 2:
        if rho[t + 1] + rho[t + 2] > rho[t - 1] + rho[t]:
            rho[t + 1] = (rho[t - 1] + rho[t]) / 2.0
            rho[t + 2] = rho[t + 1]
        t += 2
    total = n_chain * n_draw
    s = 0.0
    bad = False
    for k in range(max_t + 1):
        s += rho[k]
        bad = bad or math.isnan(rho[k])
    s2 = rho[max_t + 1] if max_t + 1 < n_draw else 0.0
    tau_hat = max(-1.0 + 2.0 * s + s2, 1.0 / math.log10(total))
    return (math.nan if bad else total / tau_hat), True


@njit(cache=True)
def _geyer(acov_mean, chain_mean_var, n_chain, n_draw, const, out):
    """ESS from complete chain-averaged autocovariances (V, lags), e.g. from the FFT. Constant variables
    get the number of draws, as in ArviZ."""
    rho = np.empty(n_draw)
    no_chains = np.empty((0, n_draw))
    for v in range(acov_mean.shape[0]):
        if const[v]:
            out[v] = n_chain * n_draw
        else:
            out[v] = _geyer_ess(no_chains, acov_mean[v], n_draw - 1, n_draw, chain_mean_var[v], n_chain, n_draw,
                                rho)[0]


@njit(cache=True, nogil=True)
def _ess_direct(a, max_lag, resolution, out, fallback):
    """ESS of each variable of ``a`` (V, chains, draws) as :func:`_ess` computes it, with the chain
    autocovariances summed directly, lag by lag, only as far as Geyer's truncation needs them (a few lags
    for a chain that mixes well). A variable needing a lag beyond ``max_lag`` is flagged in
    ``fallback`` and left to the FFT."""
    V, C, n = a.shape
    c = np.empty((C, n))
    acov = np.empty(n)
    rho = np.empty(n)
    means = np.empty(C)
    for v in range(V):
        x = a[v]
        fallback[v] = False
        if x.max() - x.min() < resolution:
            out[v] = C * n
            continue
        for ch in range(C):
            means[ch] = x[ch].mean()
            for i in range(n):
                c[ch, i] = x[ch, i] - means[ch]
        chain_mean_var = ((means - means.mean()) ** 2).sum() / (C - 1) if C > 1 else 0.0
        out[v], ok = _geyer_ess(c, acov, -1, max_lag, chain_mean_var, C, n, rho)
        fallback[v] = not ok


def _ess_fast(a: np.ndarray) -> np.ndarray:
    """:func:`_ess`'s numbers: direct autocovariance sums where Geyer's truncation comes within
    ``_MAX_DIRECT_LAG`` lags, the FFT for the other variables."""
    a = np.ascontiguousarray(a, dtype=np.float64)
    out = np.empty(a.shape[0])
    fallback = np.zeros(a.shape[0], dtype=np.bool_)
    _ess_direct(a, _MAX_DIRECT_LAG, np.finfo(float).resolution, out, fallback)
    if fallback.any():
        out[fallback] = _ess(a[fallback])
    return out


def _ess(a: np.ndarray) -> np.ndarray:
    """ESS of each variable of (V, chains, draws) (ArviZ's ``_ess``)."""
    V, C, n = a.shape
    out = np.empty(V)
    const = (a.max(axis=(1, 2)) - a.min(axis=(1, 2))) < np.finfo(float).resolution
    m = fft.next_fast_len(2 * n)
    centred = a - a.mean(axis=2, keepdims=True)
    f = fft.rfft(centred, n=m, axis=2)
    f *= np.conjugate(f)
    acov = fft.irfft(f, n=m, axis=2)[:, :, :n] / n
    _geyer(np.ascontiguousarray(acov.mean(axis=1)), a.mean(axis=2).var(axis=1, ddof=1), C, n, const, out)
    return out


def _block(a: np.ndarray, tail_prob: float) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    a = np.asarray(a, dtype=np.float64)
    V, C, D = a.shape
    split = _split(a)
    rhat = np.full(V, np.nan)
    if D < 4:
        nan = np.full(V, np.nan)
        return rhat, nan, nan
    flat_split = np.ascontiguousarray(split.reshape(V, -1))
    n = flat_split.shape[1]
    order = np.argsort(flat_split, axis=1)
    ends = sorted((tail_prob, 1.0 - tail_prob))
    plan, ks = K._quantile_plan(n, [(0.5, "median"), *((p, "linear") for p in ends)])
    stats = np.take_along_axis(flat_split, order[:, ks], axis=1).T
    med, *qs = K._quantiles_from_stats(stats, ks, plan)
    z, zf = np.empty((V, n)), np.empty((V, n))
    _scores_and_folded(flat_split, order, med, _score_table(n), z, zf, np.empty(n), np.empty(n, np.int64))
    z = z.reshape(split.shape)
    if C >= 2:
        rhat = np.maximum(_rhat(z), _rhat(zf.reshape(split.shape)))
    bulk = _ess_fast(z)
    if D % 2:  # the split chains drop each chain's middle draw: the tails' quantiles use every draw
        flat = a.reshape(V, -1)
        qs = [np.quantile(flat, p, axis=1) for p in ends]
    tails = [_ess_fast(_split((a <= q[:, None, None]).astype(np.float64))) for q in qs]
    return rhat, bulk, np.minimum(*tails)


def rhat_ess(values: np.ndarray, block: int = 256) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(R-hat, bulk ESS, tail ESS) of each variable of ``values`` (chains, draws, variables)."""
    from arviz_base import rcParams

    tail_prob = float(rcParams["stats.ci_prob"])
    values = np.asarray(values)
    C, D, V = values.shape
    out = [np.empty(V) for _ in range(3)]

    def work(v0):
        sl = slice(v0, min(V, v0 + block))
        res = _block(np.moveaxis(values[:, :, sl], 2, 0), tail_prob)
        for o, r in zip(out, res, strict=True):
            o[sl] = r

    each_in_threads(work, range(0, V, block))
    return tuple(out)


class HierpoolSamplingWarning(UserWarning):
    """Divergences, R-hat > 1.01 or low effective sample size in a fit."""


def _fmt_rhat(r: float) -> str:
    """R-hat for a message: three decimals, or '> 100' for chains that never met (not a 309-digit number)."""
    return f"{r:.3f}" if np.isfinite(r) and r < 100 else "> 100 (the chains never mixed)"


def varies(da: xr.DataArray) -> bool:
    """Whether a variable's draws vary (beyond 1e-12 of its size): what :func:`check_sampling` diagnoses;
    a parameter fixed at a value (``priors={"tau": 0.8}``) does not."""
    return float(da.max() - da.min()) > 1e-12 * max(1.0, float(abs(da).max()))


def check_sampling(dt: xr.DataTree, *, warn: bool = True, rhat_max: float = 1.01,
                   ess_min_per_chain: float = 100.0, advice: str | None = None, _stacklevel: int = 2) -> dict:
    """Check divergences, R-hat and ESS of a fit; warn about every problem and return the numbers.

    Returns a dict with ``divergences``, ``max_rhat`` (and the variable it belongs to), ``min_ess_bulk``,
    ``min_ess_tail`` and a list ``problems`` of messages (empty when all is well). Parameters fixed at a
    value are skipped. Thresholds follow Vehtari et al. (2021): R-hat <= 1.01, ESS >= 100 per chain.
    ``advice`` (a sentence), if given, ends every problem's message: what else the user can do for this
    model (``hp.fit`` passes the integrated sampler's name for NUTS fits it could have run).

    A thinned fit (for memory, or to about ``min_ess`` draws: :func:`hierpool.fit`; ``attrs["hierpool_thin"]``
    > 1) keeps every draw of the population-level parameters in ``posterior`` and the group effects at the
    kept draws in ``posterior_group_effects``:
    each is diagnosed on the draws it holds (``draws`` in the report counts the posterior's).
    """
    post = dt["posterior"].to_dataset()
    sources = [post]
    if N.GROUP_EFFECTS_GROUP in dt.children:
        sources.append(dt[N.GROUP_EFFECTS_GROUP].to_dataset())
    n_chains = post.sizes["chain"]
    report: dict = {"divergences": 0, "draws": int(post.sizes["draw"]), "chains": int(n_chains), "problems": []}
    if "sample_stats" in dt.children and "diverging" in dt["sample_stats"]:
        report["divergences"] = int(dt["sample_stats"]["diverging"].sum())
    # parameters fixed at a value (priors={"tau": 0.8}) have no sampling variability to diagnose
    varying = [(ds, v) for ds in sources for v in ds.data_vars if ds.sizes["draw"] >= 4 and varies(ds[v])]
    if varying:
        # ArviZ's rank-normalized R-hat and bulk/tail ESS, vectorized over the elements of each variable
        # (arviz.rhat/ess loop in Python: 190 s for 100,000 group effects; this takes seconds)
        worst = {}
        for ds, v in varying:
            arr = ds[v].transpose("chain", "draw", ...).values
            r, eb, et = rhat_ess(arr.reshape(arr.shape[0], arr.shape[1], -1))
            for name, vals, pick in (("rhat", r, max), ("ess_bulk", eb, min), ("ess_tail", et, min)):
                val = float(pick(np.nan_to_num(vals, nan=np.inf if pick is min else 0)))
                if name not in worst or pick(val, worst[name][1]) != worst[name][1]:
                    worst[name] = (v, val)
        report.update(max_rhat=worst["rhat"][1], max_rhat_var=worst["rhat"][0],
                      min_ess_bulk=worst["ess_bulk"][1], min_ess_bulk_var=worst["ess_bulk"][0],
                      min_ess_tail=worst["ess_tail"][1], min_ess_tail_var=worst["ess_tail"][0])
        if n_chains > 1 and worst["rhat"][1] > rhat_max:
            report["problems"].append(
                f"R-hat up to {_fmt_rhat(worst['rhat'][1])} (> {rhat_max}) for {worst['rhat'][0]!r}: chains disagree; "
                "run longer (tune/draws) or reparameterize."
            )
        ess_floor = ess_min_per_chain * n_chains
        for kind in ("ess_bulk", "ess_tail"):
            if worst[kind][1] < ess_floor:
                report["problems"].append(
                    f"{kind.replace('_', ' ')} as low as {worst[kind][1]:.0f} (< {ess_floor:.0f} = "
                    f"{ess_min_per_chain:.0f} per chain) for {worst[kind][0]!r}: increase draws."
                )
    if report["divergences"]:
        total = n_chains * post.sizes["draw"]
        report["problems"].append(
            f"{report['divergences']} of {total} transitions diverged: the posterior may be biased; raise "
            "target_accept (e.g. hp.fit(..., target_accept=0.95 or 0.99)), or compare the parameterizations "
            "of the group effects (the factories' centered='auto', True or False)."
        )
    if advice:
        report["problems"] = [f"{msg} {advice}" for msg in report["problems"]]
    if warn:
        for msg in report["problems"]:
            warnings.warn(msg, HierpoolSamplingWarning, stacklevel=_stacklevel)
    return report
