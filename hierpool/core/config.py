"""One memory budget for every chunked computation and every array a fit stores.

``hp.set_options(memory_gb=...)`` sets it (default 2 GB), globally or for a ``with`` block, as
``xarray.set_options`` does. Everything that could grow with draws x groups or draws x rows derives its
size from it:

- **stored arrays** (:func:`stored_values`: ``memory_gb * 1e9 / 8`` float64 values, 2.5e8 at the
  default): the group effects a fit keeps (above it ``hp.fit`` thins the stored draws and keeps
  ``group_effect`` in float32) and the pointwise log-likelihood (above it, not stored unless asked for);
- **working chunks** (:func:`chunk_values`: a twelfth of that, about 2e7 values or 170 MB at the default):
  the blocks of draws x rows or draws x groups that prediction, cross-validation, shrinkage summaries,
  ranks and posterior predictive checks hold at once. :func:`slices` cuts a range into such chunks.
"""

from __future__ import annotations

import math

import numpy as np

__all__ = ["set_options", "get_options", "stored_values", "kept_draws", "thin_ratio", "group_effect_dtype",
           "chunk_values", "slices"]

_OPTIONS = {"memory_gb": 2.0}
_CHUNK_FRACTION = 12  # working chunks: 1/12 of the budget, so several temporaries of a chunk fit in it


class set_options:  # noqa: N801 - lower case, as xarray.set_options: used as a function or a context manager
    """Set hierpool's options, for the session or inside a ``with`` block.

    Parameters
    ----------
    memory_gb : float
        The memory budget in GB (default 2): see :mod:`hierpool.core.config`.

    Examples
    --------
    >>> import hierpool as hp
    >>> with hp.set_options(memory_gb=0.5):
    ...     hp.get_options()["memory_gb"]
    0.5
    """

    def __init__(self, **options):
        unknown = sorted(set(options) - set(_OPTIONS))
        if unknown:
            raise ValueError(f"set_options got unknown option {unknown[0]!r}; valid options: {sorted(_OPTIONS)}.")
        if "memory_gb" in options:
            gb = options["memory_gb"]
            if isinstance(gb, bool) or not isinstance(gb, (int, float)) or not math.isfinite(gb) or gb <= 0:
                raise ValueError(f"memory_gb must be a positive finite number of GB; got {gb!r}.")
            options["memory_gb"] = float(gb)
        self._old = dict(_OPTIONS)
        _OPTIONS.update(options)

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        _OPTIONS.clear()
        _OPTIONS.update(self._old)


def get_options() -> dict:
    """The current options (a copy)."""
    return dict(_OPTIONS)


def stored_values() -> int:
    """How many float64 values one stored array of a fit may hold (group effects, log-likelihood)."""
    return int(_OPTIONS["memory_gb"] * 1e9 / 8)


def kept_draws(draws: int, chains: int, values_per_draw: float, max_values: float,
               min_kept: float | None = None) -> np.ndarray:
    """The positions, in each chain of ``draws`` draws, of the draws whose group effects a fit keeps.

    Every draw (``np.arange(draws)``) unless memory or ``min_kept`` asks for fewer; then ``m`` draws per
    chain, evenly spaced: positions ``floor(i * draws / m)``, i = 0 .. m - 1 (every k-th draw where m
    divides the draws, k = draws / m). ``m`` is at most the number whose ``chains x m x values_per_draw``
    values fit in ``max_values`` (at least 1), and, with ``min_kept`` (``hp.fit(..., min_ess=)``), at most
    ``ceil(min_kept / chains)``: exactly as many draws in all as that asks (rounded up to whole chains),
    unless memory asks for fewer. Before 2026-12-07 the kept draws were every k-th for an integer k, which
    kept far more than asked where the draws were between one and two times ``min_kept`` (issue 17's
    poisson fit at 200,000 groups: 680 draws kept for 400 asked, about 8 s more of group-effect draws).
    """
    draws, chains = int(draws), int(chains)
    if draws == 0:  # nothing to keep (and no m >= 1 to space)
        return np.arange(0, dtype=np.int64)
    per_chain = max_values / (chains * max(values_per_draw, 1))  # inf for an unbounded budget
    m = draws if per_chain >= draws else max(1, int(per_chain))
    if min_kept is not None:
        m = min(m, max(1, math.ceil(min_kept / chains)))
    return (np.arange(m, dtype=np.int64) * draws) // m


def thin_ratio(draws: int, n_kept: int) -> int | float:
    """``attrs["hierpool_thin"]`` of a fit keeping ``n_kept`` of each chain's ``draws`` draws for the group
    effects: draws per kept draw, an int where the kept draws are every k-th (1: every draw), else the
    float ``draws / n_kept`` (e.g. 1.7: 400 of 680 draws kept, evenly spaced)."""
    if n_kept <= 0 or draws % n_kept == 0:
        return max(1, draws // max(n_kept, 1))
    return draws / n_kept


def group_effect_dtype(n_kept: int, draws: int) -> type:
    """The dtype a fit stores its group effects in: float32 when it keeps fewer draws than each chain has
    (thinned for memory or ``min_ess``; the exact draws, computed in float64 or, for gaussian ones, from
    float32 standard normals, to 7 significant digits, far below Monte Carlo error: half the memory and
    bandwidth), float64 when it keeps every draw. The one rule of ``hp.fit``'s finalize, the Gibbs sampler
    and the integrated sampler."""
    return np.float32 if int(n_kept) < int(draws) else np.float64


def chunk_values() -> int:
    """How many values one working chunk (draws x rows, draws x groups) may hold."""
    return max(1, stored_values() // _CHUNK_FRACTION)


def slices(n: int, per_item: int, max_values: int | None = None) -> list[slice]:
    """Cut ``range(n)`` into consecutive slices of items that each hold ``per_item`` values, so that a
    slice holds at most ``max_values`` values (default :func:`chunk_values`; at least one item)."""
    size = max(1, (chunk_values() if max_values is None else int(max_values)) // max(int(per_item), 1))
    return [slice(i, min(i + size, n)) for i in range(0, n, size)]
