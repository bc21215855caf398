"""The integrated sampler: count random intercepts, the group effects integrated out.

What ``hp.fit(model, sampler="integrated")`` runs, and ``sampler="auto"`` for every model it can run
(:func:`hierpool.inference.sampling.fit` gives the measurements behind that choice). For bernoulli, binomial and poisson random intercepts (also the ridge and the ridge-penalized
hierarchical variant; with or without predictors: a model collapsed by (successes, trials) patterns,
``collapse="integrated"``, has the same marginal posterior, which this sampler integrates group by group
with its own quadrature) the population-level parameters ``phi = (intercept_c, beta_std[, log tau])`` are a
handful, whatever the number of groups, and their marginal posterior

    p(phi | y)  ∝  prior(phi) * prod_j  integral of  p(y_j | phi, u) Normal(u | 0, tau) du

has every group's effect integrated out, one-dimensional integral by one-dimensional integral, by
adaptive Gauss-Hermite quadrature (:mod:`hierpool.core.integrated_rows`, ``n_nodes`` per group: glmer's
``nAGQ``). The sampler then:

1. finds the posterior mode of ``phi`` (L-BFGS with the quadrature's gradient) and the Hessian there
   (central differences of the gradient);
2. draws ``psi = (intercept_c, beta_std[, tau])`` (tau itself: the left tail of log tau is long when tau
   may be near 0) by *independence Metropolis-Hastings*. Proposals come from a defensive mixture: a
   multivariate Student-t (:data:`T_DF` degrees of freedom) at the mode with the Laplace covariance
   (carried to tau by the delta method) and, with weight :data:`WIDE_SHARE`, a t(:data:`WIDE_DF`)
   :data:`WIDE_SCALE` times wider in ``(theta, log tau)`` (the proposal's location and scale carried to
   log tau by the delta method: the Laplace fit in log tau, unless refitted), whose density in
   tau falls as ``1 / (tau log(tau)^4)``, slower than any power of tau: the importance weights are bounded
   in both tails of tau whatever the prior, also where the tail of tau is the prior's (a half-Cauchy's
   tau^-2: one or two groups, or groups whose outcomes are all equal). Until 2026-12-07 the wider t was in
   tau itself, whose joint density falls as ``tau^-(3 + D)``: bounded only where groups that carry
   information thin the posterior's tail (each adds a factor of about 1 / tau), and with two bernoulli
   groups, all 1 and all 0, under a half-Cauchy(1) prior P(tau > 100) came out 0 in 7 of 10 fits of 4 x
   5,000 draws against 0.028 (a grid of the same marginal; R-hat and ESS need not show such a miss); now
   within Monte Carlo error (a slow test; 16 seeds within 2.9 MCSE). ``min(tune, 50)`` tuning
   draws per chain; then, where the tuning proposals' importance weights (the exact target over the
   proposal) say the proposal fits worse than a refit from them could (:func:`refit_helps`: few groups),
   its location and covariance are re-estimated from those weights; ``draws`` draws per chain follow
   with the proposal fixed. With many groups the marginal posterior is close to normal and the Laplace
   proposal is kept: 89% of proposals accepted at 3,000 to 100,000 groups (issue 17's design), against
   78% with the refit every fit made until 2026-12-07. R-hat
   and ESS are computed and reported as for any sampler (a poor proposal shows as low ESS, never silently).
   Measured at 40 groups against 4 x 3000 NUTS draws (tau's posterior sd 0.36 on a mean of 0.69): with
   log tau and the t alone, tau's sd came out 0.32 and its tail ESS fell to 20; with tau and the mixture
   (defensive share 0.15 then; the slow tests hold the 0.05 in use to NUTS and SBC), sd 0.349-0.350 and
   tail ESS 2,000-3,000 of 6,000 draws;
3. draws every group's effect EXACTLY from its conditional ``p(u_j | y_j, phi)`` at each kept draw
   (:func:`hierpool.core.integrated_rows.block_draws`: rejection from a tangent hull).

The stationary distribution is the model's posterior up to the quadrature's error in ``log p(y_j | phi)``
(:func:`default_nodes`: 12 nodes for the logit families, 20 for poisson; tests compare the value with
``scipy.integrate.quad`` and the whole posterior with row-level NUTS on the same model within Monte Carlo
error; SBC checks it, with a wrong-model control that fails). How much that error varies over the posterior
is checked twice: around the mode before sampling (:func:`check_nodes`, which doubles the default nodes
until it holds) and at each parameter's extreme draws after (:func:`check_nodes_at_draws`, for tails that
reach past the mode's +-2 sds); a failure goes into the report's problems and warns. Every proposal is
independent of the chain's
state, so a whole phase's proposals are evaluated in one batch: each block of groups (its rows kept
together) computes its share of every proposal's log marginal likelihood, in threads here, and only one
number per proposal and block has to be added. That is what lets the same sampler run with the blocks on
Dask workers: scattered there from this process (:func:`sample` with ``client=``), or built there from
cells that never left them (data from ``hp.prepare(..., client=)``; :func:`plan`, :func:`partition_blocks`). The sampling report diagnoses the population parameters
on every draw; the group effects, exact conditional draws given them, are kept at fewer draws, evenly
spaced, when memory or ``min_ess`` asks (as for the other samplers: :func:`hierpool.core.config.kept_draws`).

Priors are those of the factory (read and checked as the Gibbs sampler reads them:
:func:`hierpool.inference.gibbs.population_prior`): Normal on the intercept and coefficients, one of
:data:`hierpool.inference.gibbs.TAU_PRIORS` on tau or tau^2, or tau fixed (the ridge).
"""

from __future__ import annotations

import math
import operator
import time
from concurrent.futures import CancelledError
from dataclasses import dataclass

import numpy as np
import xarray as xr
from scipy import optimize
from scipy.special import gammaln, logsumexp

from hierpool.core import config
from hierpool.core import integrated_rows as R
from hierpool.core.kernels import each_in_threads
from hierpool.inference.gibbs import PopulationPrior, population_dataset, population_prior
from hierpool.models.description import ModelDescription, describe

__all__ = ["plan", "ineligible", "sample", "partition_blocks", "imh_chains", "tau_coordinates", "density_in_tau", "Plan", "Block", "log_marginal", "log_posterior", "posterior_mode",
           "T_DF", "MAX_TUNE", "default_nodes"]

#: The proposal: a mixture of a Student-t with T_DF degrees of freedom (the posterior's shape when groups
#: are many) and, with weight WIDE_SHARE, a defensive t(WIDE_DF) WIDE_SCALE times wider (in log tau where the
#: chains move in tau), whose tails dominate the posterior's so that the importance weights are bounded
#: (the chain is then uniformly ergodic: the module docstring) and a skewed posterior (few groups, tau
#: near 0) is still explored.
T_DF = 30.0
WIDE_SHARE = 0.05
WIDE_DF = 3.0
WIDE_SCALE = 2.0
#: Tuning draws per chain (more cannot improve a proposal fitted from the tuning proposals' moments).
MAX_TUNE = 50
#: Proposals evaluated per call of the blocks (large enough that the calls' overhead does not count)
BATCH = 250
#: Rows (cells) per block of groups: the unit of work of a thread (or of a Dask task).
BLOCK_ROWS = 16_384
#: What a client other than the one holding the data's cells says (here and in :func:`hierpool.fit`).
OTHER_CLIENT = ("client= is not the Dask client whose workers hold the data's cells (hp.prepare(..., client=)); "
                "drop client= or pass that one.")
#: What a fit says when a Dask worker died with some of the data's blocks.
LOST_WORKER = ("a Dask worker holding some of the data (blocks of groups, or the cells they are built from) died, "
               "and that data with it: fit again (blocks scattered from this process go out anew); data prepared "
               "with hp.prepare(..., client=) must be prepared again.")


@dataclass
class Block:
    """Rows of consecutive groups ``g0 .. g0 + J - 1``, sorted by group (``ids``: the groups' global
    indices when the block was built from one partition of cells held by a Dask worker, else None)."""

    g0: int
    starts: np.ndarray
    y: np.ndarray
    b: np.ndarray
    off: np.ndarray
    Xs: np.ndarray
    const: float
    u0: np.ndarray | None = None  # each group's mode at phi0 (the Newton start)
    phi0: np.ndarray | None = None
    du0: np.ndarray | None = None  # d u0 / d phi at phi0: starts at phi are u0 + du0 (phi - phi0)
    ids: np.ndarray | None = None

    @property
    def n_groups(self) -> int:
        return self.starts.shape[0] - 1

    def newton_starts(self, D: int) -> tuple:
        """``(u0, phi0, du0)`` for the kernels (``du0`` of shape (0, D) before the first slopes)."""
        if self.du0 is None:
            return self.u0, np.zeros(D), np.zeros((0, D))
        return self.u0, self.phi0, self.du0


@dataclass
class Plan:
    """Everything the sampler needs, read from a hierpool model."""

    fam: int
    blocks: list
    n_groups: int
    n_predictors: int
    prior: PopulationPrior
    has_tau: bool
    x_center: np.ndarray
    x_scale: np.ndarray
    start: np.ndarray  # a starting phi
    #: the Dask client whose workers hold ``blocks`` (then futures of Blocks) when the data's cells stay on
    #: the workers (``hp.prepare(..., client=)``), each block's global group indices and the address of the
    #: worker that holds it; else None
    client: object = None
    block_groups: list | None = None
    block_workers: list | None = None

    @property
    def dim(self) -> int:
        return 1 + self.n_predictors + int(self.has_tau)


def make_blocks(fam: int, group_idx, y, b, off, Xs, n_groups: int, block_rows: int = BLOCK_ROWS) -> list:
    """Rows cut into :class:`Block` s of whole groups (about ``block_rows`` rows each)."""
    gidx = np.asarray(group_idx, dtype=np.int64)
    order = np.argsort(gidx, kind="stable")
    gs = gidx[order]
    starts = np.searchsorted(gs, np.arange(n_groups + 1))
    y, b, off = (np.asarray(a, dtype=np.float64)[order] for a in (y, b, off))
    Xs = np.ascontiguousarray(np.asarray(Xs, dtype=np.float64)[order])
    if fam == R.LOGIT:
        const = gammaln(b + 1) - gammaln(y + 1) - gammaln(b - y + 1)
    else:
        const = -gammaln(y + 1)
    blocks = []
    g = 0
    while g < n_groups:
        g1 = int(np.searchsorted(starts, starts[g] + block_rows, side="right")) - 1
        g1 = min(max(g1, g + 1), n_groups)
        r0, r1 = starts[g], starts[g1]
        blocks.append(Block(g0=g, starts=np.ascontiguousarray(starts[g:g1 + 1] - r0), y=y[r0:r1], b=b[r0:r1],
                            off=off[r0:r1], Xs=Xs[r0:r1], const=float(const[r0:r1].sum())))
        g = g1
    return blocks


def ineligible(desc: ModelDescription) -> str | None:
    """Why the sampler cannot run the described model (a sentence), or None when it can. Cheap: no block
    is built (what the NUTS path's sampling warnings consult to suggest this sampler)."""
    pp = _prior_or_reason(desc)
    return pp if isinstance(pp, str) else None


def _prior_or_reason(desc: ModelDescription) -> PopulationPrior | str:
    """The model's population prior when the sampler can run it, else why not (a sentence)."""
    gd = desc.data
    if desc.family not in R.FAMILY_CODES:
        return f"family={desc.family!r}: the integrated sampler serves bernoulli, binomial and poisson"
    if desc.slopes:
        return f"random slopes {list(desc.slopes)}: the integrated sampler integrates one effect per group"
    if getattr(gd, "factors", ()):
        return f"the model has several grouping factors ({', '.join(gd.factor_names)})"
    if desc.collapse not in (None, "counts", "integrated"):  # "integrated": the same marginal, by patterns
        return f"collapse={desc.collapse!r} integrates the group effects out already"
    if not hasattr(gd, "cells"):
        return "data reduced to sufficient statistics has no rows to integrate"
    return population_prior(desc)


def plan(model) -> Plan | str:
    """The sampler's inputs for ``model`` (a hierpool model, or its
    :class:`~hierpool.models.description.ModelDescription`), or a sentence saying why it cannot run it."""
    desc = model if isinstance(model, ModelDescription) else describe(model)
    gd = desc.data
    pp = _prior_or_reason(desc)
    if isinstance(pp, str):
        return pp
    fam = R.FAMILY_CODES[desc.family]
    cp = gd.cells
    P = gd.n_predictors
    client = block_groups = block_workers = None
    if cp is None:  # cells held by Dask workers: blocks built there, from each partition's cells
        on = gd.cells_on_workers
        client = on.client
        built, where = map_pinned(client, holders(client, on.parts), on.parts, partition_blocks, common=(fam, P),
                                  keep=True)
        meta, where = map_pinned(client, where, built, _blocks_meta)
        if not all(whole for whole, _ in meta):
            return "trials are not whole numbers"
        part = [i for i, (_, ids) in enumerate(meta) for _ in ids]  # each block's partition, and its index there
        index = [k for _, ids in meta for k in range(len(ids))]
        blocks, block_workers = map_pinned(client, [where[i] for i in part], [built[i] for i in part],
                                           operator.getitem, index, keep=True)
        block_groups = [g for _, ids in meta for g in ids]
        rate = gd.overall_mean  # sum of y over the sum of trials (or of exposure)
    else:
        y, b, off, whole = _cell_arrays(fam, cp)
        if not whole:
            return "trials are not whole numbers"
        rate = cp.y.sum() / (b.sum() if fam == R.LOGIT else np.sum(cp.exposure))
        blocks = make_blocks(fam, cp.group_idx, y, b, off, np.asarray(cp.Xs).reshape(len(cp.y), P), gd.n_groups)
    has_tau = desc.variant != "ridge_fixed_effects" and pp.tau_fixed == 0.0
    a0 = float(gd.fam.link(min(max(rate, 1e-6), 1 - 1e-6) if fam == R.LOGIT else max(rate, 1e-6)))
    start = np.concatenate([[a0], np.zeros(P), [math.log(0.5)] if has_tau else []])
    return Plan(fam=fam, blocks=blocks, n_groups=gd.n_groups, n_predictors=P, prior=pp, has_tau=has_tau,
                x_center=np.asarray(gd.x_center, dtype=np.float64), x_scale=np.asarray(gd.x_scale, dtype=np.float64),
                start=start, client=client, block_groups=block_groups, block_workers=block_workers)


def _cell_arrays(fam: int, cp) -> tuple:
    """``(y, b, offset, whole)`` of count cells as the kernels take them: the logit families' trials ``b``
    (``whole``: all whole numbers) and offset 0; poisson ``b`` 0 and offset log exposure."""
    y = np.asarray(cp.y, dtype=np.float64)
    if fam == R.LOGIT:
        b = np.asarray(cp.trials, dtype=np.float64)
        return y, b, np.zeros_like(b), bool(np.all(b == np.round(b)))
    return y, np.zeros_like(y), np.log(cp.exposure), True


def partition_blocks(cp, fam: int, n_predictors: int, block_rows: int = BLOCK_ROWS) -> list:
    """The :class:`Block` s of one partition's cells (whole groups, ``group_idx`` global), built on the
    Dask worker that holds them: groups numbered locally in the kernels, ``ids`` their global indices."""
    y, b, off, _ = _cell_arrays(fam, cp)
    ids, local = np.unique(np.asarray(cp.group_idx, dtype=np.int64), return_inverse=True)
    blocks = make_blocks(fam, local.reshape(-1), y, b, off, np.asarray(cp.Xs).reshape(y.shape[0], n_predictors),
                         ids.shape[0], block_rows)
    for bl in blocks:
        bl.ids = ids[bl.g0:bl.g0 + bl.n_groups]
    return blocks


def holders(client, futures) -> list:
    """The address of a worker holding each future's data (the first, should Dask hold several copies);
    a RuntimeError (:data:`LOST_WORKER`) when some of the data is gone."""
    try:
        who = client.who_has(futures)
    except CancelledError as err:  # Dask forgot data lost with a worker
        raise RuntimeError(LOST_WORKER) from err
    if not all(who.get(f.key) for f in futures):
        raise RuntimeError(LOST_WORKER)
    return [who[f.key][0] for f in futures]


def pinned(client, worker: str, fn, *args, **kwargs):
    """``client.submit(fn, ...)`` on ``worker`` only: never stolen by, or run on, another worker.

    The blocks carry state that tasks update where the block lives (the Newton starts, see
    :func:`block_logml_task`); a task moved by Dask's work stealing would update a copy on another worker
    and later tasks could read the stale original, moving the sums at the level of Newton's tolerance (a
    way, though not the only conceivable one, for a distributed fit to differ from the threaded one by
    1e-12, as CI once saw). Tasks that read a block therefore run where it is, and stealing never copies
    it (a retired worker's blocks are copied once, by Dask, and followed: :func:`map_pinned`)."""
    return client.submit(fn, *args, workers=[worker], allow_other_workers=False, pure=False, **kwargs)


#: Seconds :func:`map_pinned` waits for its tasks before it checks that the workers they are pinned to are
#: still in the cluster.
WORKER_CHECK_S = 10.0


def map_pinned(client, where: list, data: list, fn, *per_item, common=(), keep: bool = False) -> tuple[list, list]:
    """``fn(data[k], *(a[k] for a in per_item), *common)`` for every k, each on the worker holding
    ``data[k]`` (``where[k]``, :func:`pinned`): the results in order (``keep``: their futures, finished,
    the results left on the workers), and the holders (of ``data``; with ``keep``, of the results too).

    A task pinned to a worker that has left the cluster would wait forever: every :data:`WORKER_CHECK_S`
    seconds without an answer the pinned workers are checked, and tasks of a worker that left follow its
    data to where Dask moved it (``Client.retire_workers`` moves data, and the state it carries, before
    closing a worker); the holders returned are then the new ones. Data lost with a worker that died
    cannot be rebuilt here: a RuntimeError says so (Dask cancels the tasks that need it)."""
    from distributed import wait

    n = len(data)

    def submit(k):
        return pinned(client, where[k], fn, data[k], *(a[k] for a in per_item), *common)

    futs = [submit(k) for k in range(n)]
    while True:
        try:
            with client.as_current():
                wait(futs, timeout=WORKER_CHECK_S)
            if keep:
                if any(f.status != "finished" for f in futs):
                    client.gather(futs)  # raises the task's error, or CancelledError
                return futs, where
            return client.gather(futs), where
        except CancelledError as err:
            if client.status != "running":
                raise RuntimeError(f"the Dask client was closed (status {client.status!r}) while {fn.__name__} "
                                   "ran on its workers.") from err
            raise RuntimeError(LOST_WORKER) from err
        except TimeoutError:
            alive = set(client.nthreads())  # every worker (scheduler_info() lists 5 in some versions)
            stuck = [k for k in range(n) if where[k] not in alive and futs[k].status == "pending"]
            if stuck:
                client.cancel([futs[k] for k in stuck])
                where = holders(client, data)
                for k in stuck:
                    futs[k] = submit(k)


def _blocks_meta(blocks: list) -> tuple:
    """What the client needs of a partition's blocks: whether its trials are whole, each block's groups."""
    return bool(all(np.all(bl.b == np.round(bl.b)) for bl in blocks)), [bl.ids for bl in blocks]


def default_nodes(pl: Plan) -> int:
    """Quadrature nodes per group when ``n_nodes`` is not given: 12 for the logit families, 20 for
    poisson. Measured (20,000 groups of Geometric(0.4) rows, 3 predictors, tau 0.8; the summed log
    marginal likelihood at 20 parameter values around the mode against 40 nodes): bernoulli 1.3e-6 at
    12 nodes (2.8e-6 at 10, 1.3e-10 at 20; 6.4, 5.6 and 9.3 ms per evaluation); poisson 1.8e-5 at 20
    (3.8e-3 at 12). Differences this small between parameter values change no Metropolis-Hastings
    decision that Monte Carlo error would notice (glmer's default is one node, the Laplace approximation).
    Ten logit nodes were not taken: at tau = 2 they were 4e-4 off over 40 groups (``tests/test_integrated.py``).
    Re-measured at 200,000 bernoulli groups (issue-17 data; 27 points: the mode, +-2 posterior sds on each
    axis and 10 draws from twice the Laplace covariance): what Metropolis-Hastings sees is the spread of the
    error over those points (a constant cancels), 2.2e-3 at 8 nodes, 2.5e-4 at 10, 6.9e-6 at 12 and 1.6e-9 at
    20, while an evaluation costs 75, 82, 91 and 128 ms on one core (cold starts; measured before the
    vectorized exponentials of ``integrated_rows``, which cut the nodes' share of it): 12 stays."""
    return 12 if pl.fam == R.LOGIT else 20


# ------------------------------------------------------------------------------------------------------
# the target
def block_logml_task(bl: Block, fam: int, phis, has_tau: bool, tau_fixed: float, xn, lwn, want_grad: bool,
                     update_start: bool):
    """One block's share of the log marginal likelihood at every phi (and its gradient): what a thread or a
    Dask task computes. When ``update_start`` (the mode search) the block keeps its groups' modes at the
    last phi and their slopes in phi (``bl.u0``, ``bl.phi0``, ``bl.du0``): later Newton starts are the modes
    moved along the slopes. State that stays where the block lives."""
    S, D = phis.shape
    val = np.zeros(S)
    grad = np.zeros((S, D))
    um = np.empty(bl.n_groups)
    slopes = np.zeros((bl.n_groups if update_start else 0, D))
    R.block_logml(fam, bl.starts, bl.y, bl.b, bl.off, bl.Xs, bl.const, phis, has_tau, tau_fixed, xn, lwn,
                  *bl.newton_starts(D), want_grad or update_start, val, grad, um, update_start, slopes)
    if update_start and np.isfinite(val[-1]):  # (a phi without a value leaves no modes: starts kept)
        bl.u0, bl.phi0, bl.du0 = um, phis[-1].copy(), slopes
    return val, (grad if want_grad else None)


def block_draws_task(bl: Block, seed: int, fam: int, phis, has_tau: bool, tau_fixed: float, dtype) -> np.ndarray:
    """One exact draw of every group effect of the block at each phi: (S, groups of the block).

    Raises FloatingPointError where a draw failed (:func:`hierpool.core.integrated_rows.block_draws`:
    a NaN phi, tau^2 out of range, a group's conditional density with no finite mode, or a rejection loop
    that did not end), naming phi."""
    out = np.empty((phis.shape[0], bl.n_groups), dtype=dtype)
    failed = R.block_draws(fam, bl.starts, bl.y, bl.b, bl.off, bl.Xs, phis, has_tau, tau_fixed,
                           *bl.newton_starts(phis.shape[1]), seed, out)
    if failed:
        bad = np.flatnonzero(np.isnan(out).any(axis=1))
        raise FloatingPointError(
            f"exact group-effect draws failed for {failed} of {out.size} (group, draw) pairs: the "
            f"conditional density of a group effect could not be drawn from at phi = {phis[bad[0]].tolist()} "
            f"(intercept, betas{', log tau' if has_tau else f'; tau fixed at {tau_fixed!r}'}): a NaN "
            "parameter, tau so large or small that tau^2 or 1 / tau^2 overflows (|log tau| above about "
            "354.9), a density without a finite mode, or a rejection sampler that accepted none of 10,000 "
            "proposals")
    return out


def _reset_start(bl: Block) -> None:
    """Forget a block's Newton starts (a new evaluator starts from 0), where the block lives."""
    bl.u0, bl.phi0, bl.du0 = np.zeros(bl.n_groups), None, None


class _Evaluator:
    """Sums the blocks' log marginal likelihoods for a batch of phis, in threads over blocks or, with a
    Dask ``client``, in tasks on the workers that hold the blocks (scattered once: each call sends the
    batch of phis and receives one value (and gradient) per phi and block)."""

    def __init__(self, pl: Plan, n_nodes: int, client=None):
        self.pl = pl
        self.set_nodes(n_nodes)
        self.evaluations = 0
        self.client = client
        self.tau_fixed = pl.prior.tau_fixed if not pl.has_tau else 0.0
        self.remote = self.where = None
        if pl.client is not None:  # blocks built on the workers, from the cells they hold
            if client is not None and client is not pl.client:
                raise ValueError(OTHER_CLIENT)
            self.client = pl.client
            self.remote, self.where = pl.blocks, pl.block_workers
            self._map(_reset_start)
            return
        for bl in pl.blocks:
            _reset_start(bl)
        if client is not None:
            self.remote = client.scatter(list(pl.blocks), hash=False)  # spread over the workers, kept there
            self.where = holders(client, self.remote)

    def set_nodes(self, n_nodes: int) -> None:
        """Evaluate with ``n_nodes`` quadrature nodes per group from now on."""
        self.n_nodes = int(n_nodes)
        self.xn, self.lwn = R.gh_nodes(self.n_nodes)

    def _map(self, fn, *args_per_block, common=()):
        """``fn(block, *per_block_args, *common)`` for every block, results in block order."""
        n = len(self.pl.blocks)
        if self.client is None:
            out = [None] * n

            def work(k):
                out[k] = fn(self.pl.blocks[k], *(a[k] for a in args_per_block), *common)

            each_in_threads(work, range(n))
            return out
        out, self.where = map_pinned(self.client, self.where, self.remote, fn, *args_per_block, common=common)
        if self.pl.client is not None:  # the plan's blocks: where later evaluators find them
            self.pl.block_workers = self.where
        return out

    def __call__(self, phis, want_grad: bool = False, update_start: bool = False):
        pl = self.pl
        phis = np.ascontiguousarray(np.atleast_2d(phis), dtype=np.float64)
        res = self._map(block_logml_task, common=(pl.fam, phis, pl.has_tau, self.tau_fixed, self.xn, self.lwn,
                                                  want_grad, update_start))
        self.evaluations += phis.shape[0]
        val = np.sum([r[0] for r in res], axis=0)  # fixed block order: the same sums whatever the workers
        return val, (np.sum([r[1] for r in res], axis=0) if want_grad else None)

    def group_effects(self, phis: np.ndarray, seed: np.random.SeedSequence, dtype) -> np.ndarray:
        """Exact conditional draws of every group's effect at each phi (S, D) -> (S, J)."""
        pl = self.pl
        phis = np.ascontiguousarray(phis)
        seeds = [int(s.generate_state(1)[0]) for s in seed.spawn(len(pl.blocks))]
        parts = self._map(block_draws_task, seeds, common=(pl.fam, phis, pl.has_tau, self.tau_fixed, dtype))
        out = np.empty((phis.shape[0], pl.n_groups), dtype=dtype)
        if pl.block_groups is not None:  # blocks built on the workers: their groups' global indices
            for ids, part in zip(pl.block_groups, parts, strict=True):
                out[:, ids] = part
            return out
        for bl, part in zip(pl.blocks, parts, strict=True):
            out[:, bl.g0:bl.g0 + bl.n_groups] = part
        return out


def _log_prior(pl: Plan, phis, want_grad: bool) -> tuple[np.ndarray, np.ndarray | None]:
    """log prior of each phi (Jacobian of log tau included) and (if ``want_grad``) its gradient."""
    phis = np.atleast_2d(phis)
    P1 = 1 + pl.n_predictors
    d = phis[:, :P1] - pl.prior.m0
    lp = -0.5 * np.einsum("si,ij,sj->s", d, pl.prior.prec0, d)
    g = None
    if want_grad:
        g = np.zeros_like(phis)
        g[:, :P1] = -d @ pl.prior.prec0
    if pl.has_tau:
        eps = 1e-6
        for i, s in enumerate(phis[:, P1]):
            lp[i] += pl.prior.log_s(s)
            if want_grad:
                g[i, P1] = (pl.prior.log_s(s + eps) - pl.prior.log_s(s - eps)) / (2 * eps)
    return lp, g


def log_marginal(pl: Plan, phis, n_nodes: int = 20) -> np.ndarray:
    """The log marginal likelihood (every group's effect integrated out) at each row of ``phis``."""
    return _Evaluator(pl, n_nodes)(phis)[0]


def log_posterior(ev: _Evaluator, phis, want_grad: bool = False, update_start: bool = False):
    """Unnormalized log posterior of phi (and its gradient)."""
    v, g = ev(phis, want_grad, update_start)
    lp, lg = _log_prior(ev.pl, phis, want_grad)
    return v + lp, (g + lg if want_grad else None)


def posterior_mode(ev: _Evaluator) -> tuple[np.ndarray, np.ndarray, dict]:
    """The mode of phi's marginal posterior and the covariance ``(-Hessian)^-1`` there."""
    pl = ev.pl

    def obj(phi):
        v, g = log_posterior(ev, phi, want_grad=True, update_start=True)
        return -float(v[0]), -g[0]

    bounds = [(None, None)] * (1 + pl.n_predictors) + ([(math.log(1e-4), math.log(50.0))] if pl.has_tau else [])
    res = optimize.minimize(obj, pl.start, jac=True, method="L-BFGS-B", bounds=bounds,
                            options={"maxiter": 500, "ftol": 1e-13, "gtol": 1e-6})
    mode = res.x
    obj(mode)  # Newton starts at the mode
    # Hessian: central differences of the gradient, steps of a tenth of a rough posterior sd
    D = mode.shape[0]
    try:
        sd0 = np.sqrt(np.clip(np.diag(res.hess_inv.todense()), 1e-12, None))
    except AttributeError:
        sd0 = np.full(D, 1e-2)
    step = np.clip(0.1 * sd0, 1e-6, 0.1)
    pts = np.concatenate([mode + np.diag(step), mode - np.diag(step)])
    _, g = log_posterior(ev, pts, want_grad=True)
    H = (g[:D] - g[D:]) / (2 * step[:, None])
    H = -0.5 * (H + H.T)
    w, V = np.linalg.eigh(H)
    ok = bool(np.all(w > 0))
    w = np.maximum(w, 1e-8 * max(float(w.max()), 1e-8))
    cov = (V / w) @ V.T
    return mode, cov, {"optimizer": str(res.message), "converged": bool(res.success), "hessian_pd": ok,
                       "mode_evaluations": int(res.nfev)}


def _log_target(ev: _Evaluator, psi, bar=None) -> np.ndarray:
    """log posterior density of ``psi = (theta, tau)`` (-inf where tau <= 0), in batches of
    :data:`BATCH` proposals (a progress ``bar`` advances after each)."""
    psi = np.atleast_2d(psi)
    if psi.shape[0] > BATCH:
        return np.concatenate([_log_target(ev, psi[i:i + BATCH], bar) for i in range(0, psi.shape[0], BATCH)])
    out = density_in_tau(lambda phi: log_posterior(ev, phi)[0], psi, ev.pl.has_tau)
    if bar is not None:
        bar.update(psi.shape[0])
    return out


def density_in_tau(log_density, psi, has_tau: bool) -> np.ndarray:
    """``log_density`` (a function of points whose LAST coordinate is log tau, when ``has_tau``) as the log
    density of the points ``psi`` whose last coordinate is tau itself: -inf where tau <= 0, else
    ``log_density`` at log tau minus log tau (the density of tau is that of log tau over tau). A value
    that is not finite becomes -inf (the proposal is rejected). Shared by the count sampler and the
    gaussian one, whose chains move in tau (:func:`tau_coordinates`)."""
    psi = np.atleast_2d(psi)
    out = np.full(psi.shape[0], -np.inf)
    ok = (psi[:, -1] > 0) & np.isfinite(psi[:, -1]) if has_tau else np.ones(psi.shape[0], dtype=bool)
    if ok.any():
        x = psi[ok].copy()
        if has_tau:
            x[:, -1] = np.log(x[:, -1])
        v = np.asarray(log_density(x), dtype=np.float64)
        out[ok] = np.where(np.isfinite(v), v - (x[:, -1] if has_tau else 0.0), -np.inf)
    return out


# ------------------------------------------------------------------------------------------------------
# independence Metropolis-Hastings
def _wide_in_log(mu, L) -> tuple[np.ndarray, np.ndarray]:
    """The defensive component's location and Cholesky factor in ``(theta, log tau)`` from the proposal's
    ``(mu, L)`` in ``(theta, tau)`` (the delta method: the last row of L over tau)."""
    mu_w = mu.copy()
    mu_w[-1] = math.log(mu[-1])
    L_w = L.copy()
    L_w[-1] /= mu[-1]
    return mu_w, L_w


def _t_draws(rng, mu, L, n: int, log_last: bool = False) -> np.ndarray:
    """Draws of the defensive mixture: t(T_DF) with scale L, and with weight WIDE_SHARE a t(WIDE_DF) with
    scale WIDE_SCALE L; with ``log_last`` (the last coordinate is tau > 0) the wide t is drawn in
    ``(theta, log tau)`` (:func:`_wide_in_log`) and its last coordinate exponentiated (the same draws of
    ``rng`` either way)."""
    D = mu.shape[0]
    z = rng.standard_normal((n, D))
    wide = rng.random(n) < WIDE_SHARE
    df = np.where(wide, WIDE_DF, T_DF)[:, None]
    w = np.sqrt(df / rng.chisquare(df, size=(n, 1))) * np.where(wide, WIDE_SCALE, 1.0)[:, None]
    if not log_last:
        return mu + (z * w) @ L.T
    x = mu + (z * w) @ L.T
    mu_w, L_w = _wide_in_log(mu, L)
    xw = mu_w + (z[wide] * w[wide]) @ L_w.T
    with np.errstate(over="ignore"):  # tau = inf: the target is 0 there (density_in_tau)
        xw[:, -1] = np.exp(xw[:, -1])
    x[wide] = xw
    return x


def _t_logpdf(x, mu, L, log_last: bool = False) -> np.ndarray:
    """log density of :func:`_t_draws`' mixture."""
    D = mu.shape[0]

    def t(y, m, LL, df, scale):
        z = np.linalg.solve(LL, (y - m).T).T
        q = np.sum(z * z, axis=1)
        return (gammaln(0.5 * (df + D)) - gammaln(0.5 * df) - 0.5 * D * np.log(df * np.pi) - D * np.log(scale)
                - np.sum(np.log(np.diag(LL))) - 0.5 * (df + D) * np.log1p(q / (df * scale**2)))

    if not log_last:
        wide = t(x, mu, L, WIDE_DF, WIDE_SCALE)
    else:  # the density of (theta, log tau) over tau; 0 where tau <= 0 (or infinite)
        wide = np.full(x.shape[0], -np.inf)
        ok = (x[:, -1] > 0) & np.isfinite(x[:, -1])
        if ok.any():
            y = x[ok].copy()
            y[:, -1] = np.log(y[:, -1])
            mu_w, L_w = _wide_in_log(mu, L)
            wide[ok] = t(y, mu_w, L_w, WIDE_DF, WIDE_SCALE) - y[:, -1]
    return np.logaddexp(np.log1p(-WIDE_SHARE) + t(x, mu, L, T_DF, 1.0), np.log(WIDE_SHARE) + wide)


def _imh(logw, rng, start_logw=None):
    """Independence MH over proposals with log importance weights ``logw`` (n,): the index of the state
    after each step (-1: the chain's start) and the acceptances. Without ``start_logw`` the chain starts at
    its first proposal inside the target's support (weight above 0), repeated over the proposals before it
    (the first proposal was taken even outside the support until 2026-12-07: a draw of tau <= 0 with
    ``tune=0``)."""
    n = logw.shape[0]
    idx = np.empty(n, dtype=np.int64)
    acc = np.zeros(n, dtype=bool)
    lu = np.log(rng.random(n))
    first = 0
    if start_logw is None:
        inside = np.flatnonzero(logw > -np.inf)
        first = int(inside[0]) if inside.shape[0] else 0
        idx[:first + 1] = first
        acc[first] = True
    cur, cur_w = (first, logw[first]) if start_logw is None else (-1, start_logw)
    for i in range(first + 1 if start_logw is None else 0, n):
        if lu[i] <= logw[i] - cur_w:
            cur, cur_w = i, logw[i]
            acc[i] = True
        idx[i] = cur
    return idx, acc


def _log_weights(lp, props, mu, L, log_last: bool) -> np.ndarray:
    """log importance weights: the log target ``lp`` minus the proposal's log density, -inf wherever the
    target is 0 (a tau overflowed to inf has no proposal density either: inf - inf would be NaN, which
    would stop a chain started there and void the tuning's refit)."""
    with np.errstate(invalid="ignore"):
        return np.where(lp > -np.inf, lp - _t_logpdf(props, mu, L, log_last), -np.inf)


def tau_coordinates(mode: np.ndarray, cov: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The mode and covariance of a point whose LAST coordinate is log tau, carried to tau itself by the delta
    method: the chains move in tau rather than log tau, whose left tail (tau near 0, few groups) is long.
    Shared by the count sampler and the gaussian one."""
    jac = np.ones(mode.shape[0])
    mu = mode.copy()
    jac[-1] = mu[-1] = math.exp(mode[-1])
    return mu, cov * np.outer(jac, jac)


def _advance(props, lp, logw, mu, L, state, chain_rngs, n: int, log_last: bool = False):
    """Each chain's next ``n`` states from its own slice of ``props`` (log target ``lp``, log importance
    weights ``logw`` under the proposal (mu, L)), starting from ``state[c]`` (``(psi, log target)``, or
    None: the first proposal); ``state`` is updated in place. Returns ``(psi (chains, n, D), accepted)``."""
    chains = len(state)
    psi = np.empty((chains, n, props.shape[1]))
    accepted = np.empty((chains, n), dtype=bool)
    for c in range(chains):
        sl = slice(c * n, (c + 1) * n)
        if state[c] is None:
            idx, acc = _imh(logw[sl], chain_rngs[c])
            psi[c] = props[sl][idx]
        else:
            s_psi, s_lp = state[c]
            idx, acc = _imh(logw[sl], chain_rngs[c], start_logw=s_lp - _t_logpdf(s_psi[None], mu, L, log_last)[0])
            psi[c] = np.where((idx < 0)[:, None], s_psi, props[sl][np.maximum(idx, 0)])
        accepted[c] = acc
        if idx[-1] >= 0:
            state[c] = (props[sl][idx[-1]], lp[sl][idx[-1]])
    return psi, accepted


def refit_helps(w: np.ndarray, D: int, log_ratio: np.ndarray) -> tuple[bool, float, float, float]:
    """Whether the tuning proposals' moments would make a better proposal than the one that drew them:
    ``(helps, misfit, noise, refit_misfit)`` from their self-normalized importance weights ``w`` in ``D``
    dimensions and ``log_ratio``, each proposal's log density under the proposal that drew it minus under
    the refit.

    ``misfit = N / ESS - 1`` estimates the proposal's chi-square divergence from the target, and
    ``refit_misfit = N sum w_i^2 q_i / r_i - 1`` the refit's, from the same draws (``int p^2 / r`` over
    ``(int p)^2``, importance-sampled by q): both include what neither can fit (the t mixture's own tails,
    a skewed posterior). The refit's moments come from those ``ESS`` weighted draws, which puts it about
    ``noise = (D^2 + 3 D) / (2 ESS)`` further off than that in-sample estimate says (``D / ESS`` from the
    mean, ``(D^2 + D) / (2 ESS)`` from the covariance, for a normal target). ``helps``: ``misfit`` is
    larger than both ``noise`` and ``refit_misfit + noise``. So the refit is taken where the posterior is
    far from the Laplace proposal (few groups, skewed tau) and the Laplace proposal is kept where it
    already fits as well as a refit could.

    Measured on issue 17's design (3 normal predictors, a 3-level factor, tau 0.8, D = 7; 4 x 50 tuning
    proposals, then 1,000 proposals from each candidate, one seed), IMH acceptance of the Laplace proposal
    against the refit's: bernoulli 0.889 / 0.774 at 100,000 groups, 0.888 / 0.776 at 20,000, 0.891 /
    0.775 at 3,000, 0.846 / 0.750 at 300; poisson 0.886 / 0.774, 0.885 / 0.775, 0.857 / 0.777 (all
    kept: at 300 groups bernoulli misfit 0.11 against noise 0.19). At 40 groups bernoulli refits (misfit
    0.66 against 0.29 + 0.29; acceptance 0.569 / 0.571, importance ESS / N 0.53 / 0.61) and poisson keeps
    its proposal (0.21 against 0.13 + 0.21; 0.749 / 0.708). Until 2026-12-07 every fit refitted. Without
    ``refit_misfit`` (the first form of this rule) a Laplace proposal placed exactly on a normal target
    was refitted in 22 of 40 fits at D = 2 (the gaussian sampler's dimension), where the t mixture's own
    misfit (about 0.017) is about the noise (0.025 at N = 200); none now (tests hold both)."""
    ess = 1.0 / float(np.sum(w**2))
    misfit = w.shape[0] / ess - 1.0
    noise = (D * D + 3 * D) / (2.0 * ess)
    refit_misfit = w.shape[0] * float(np.sum(w**2 * np.exp(log_ratio))) - 1.0
    return bool(misfit > noise and misfit > refit_misfit + noise), float(misfit), float(noise), refit_misfit


def imh_chains(log_target, mu, cov, *, draws: int, tune: int, chains: int, rng, chain_rngs, more=None,
               log_last: bool = False):
    """Independence Metropolis-Hastings chains with the defensive t mixture at ``mu`` with covariance ``cov``.

    ``log_target(psi)``: the log target density (up to a constant) of each row of an (n, D) array, -inf
    outside the support. ``min(tune, MAX_TUNE)`` tuning proposals per chain (drawn by ``rng``, all evaluated
    in one call) start the chains; the proposal's location and covariance are then re-estimated from every
    tuning proposal by self-normalized importance weights where that can help (:func:`refit_helps`; and
    their ESS at least 10 D, the covariance positive definite), and ``draws`` proposals per chain follow
    with the proposal fixed. Each chain's accept/reject decisions use its own generator of
    ``chain_rngs``.

    ``log_last``: the last coordinate is tau (> 0), and the defensive component is a t in its log (the
    module docstring); else that component is a t in the same coordinates as the other.

    ``more``: None, or a callable given the draws so far, ``psi`` (chains, n, D), that returns how many
    draws per chain to add (0: stop; ``hp.fit(..., min_ess=)`` asks from the ESS so far). The chains then
    go on from their last states with the same fixed proposal, exactly as if those draws had been asked
    for at the start (an independence sampler's proposals do not depend on the state: only the draws of
    ``rng`` come in another order), for as many calls as ``more`` asks. Returns ``(psi (chains, draws +
    added, D), accepted (chains, draws + added), info)``; shared by the count models' sampler
    (:func:`sample`) and the gaussian one (:mod:`hierpool.inference.integrated_gaussian`)."""
    D = mu.shape[0]
    L = np.linalg.cholesky(cov)
    info = {}
    n_tune = min(int(tune), MAX_TUNE)
    state = [None] * chains  # (psi, log target) of each chain's current state
    if n_tune > 0:
        props = _t_draws(rng, mu, L, chains * n_tune, log_last)
        lp = log_target(props)
        logw = _log_weights(lp, props, mu, L, log_last)
        for c in range(chains):
            sl = slice(c * n_tune, (c + 1) * n_tune)
            idx, _ = _imh(logw[sl], chain_rngs[c])
            state[c] = (props[sl][idx[-1]], lp[sl][idx[-1]])
        # the proposal refitted to the target: importance-weighted moments of every tuning proposal
        w = np.exp(logw - logsumexp(logw))
        mu_new = w @ props
        dev = props - mu_new
        cov_new = (dev * w[:, None]).T @ dev
        ess_w = 1.0 / np.sum(w**2)
        info["tune_importance_ess"] = float(ess_w)
        refit = False
        if ess_w >= 10 * D and np.all(np.linalg.eigvalsh(cov_new) > 0):
            L_new = np.linalg.cholesky(cov_new)
            refit, misfit, noise, refit_misfit = refit_helps(
                w, D, _t_logpdf(props, mu, L, log_last) - _t_logpdf(props, mu_new, L_new, log_last))
            info.update(proposal_misfit=misfit, refit_noise=noise, refit_misfit=refit_misfit)
            if refit:
                mu, L = mu_new, L_new
        info["proposal_refit"] = refit
    psi_parts, acc_parts = [], []
    psi = np.empty((chains, 0, D))
    n = int(draws)
    while n > 0:
        props = _t_draws(rng, mu, L, chains * n, log_last)
        lp = log_target(props)
        logw = _log_weights(lp, props, mu, L, log_last)
        p, a = _advance(props, lp, logw, mu, L, state, chain_rngs, n, log_last)
        psi_parts.append(p)
        acc_parts.append(a)
        psi = p if len(psi_parts) == 1 else np.concatenate(psi_parts, axis=1)
        n = 0 if more is None else int(more(psi))
    info["tuning_draws"] = n_tune
    info["batches"] = len(psi_parts)
    accepted = np.concatenate(acc_parts, axis=1) if acc_parts else np.zeros((chains, 0), dtype=bool)
    return psi, accepted, info


#: :func:`check_nodes`: the most the quadrature error may vary over the posterior (the spread, over the
#: mode and +-2 posterior sds along each axis, of the summed log marginal likelihood at 2n nodes minus at n).
#: A constant error cancels in Metropolis-Hastings; a spread of 0.05 across 4 sds tilts the target by
#: about 0.0125 / sd, moving its mean by about 0.0125 sd.
NODE_TOL = 0.05
#: :func:`check_nodes` doubles the nodes up to this many (checked against twice as many).
MAX_NODES = 160


def _error_spread(ev: _Evaluator, pts: np.ndarray, v_n: np.ndarray) -> tuple[float, np.ndarray]:
    """The spread over ``pts`` of the quadrature's error at ``ev``'s n nodes (``v_n``: the summed log
    marginal likelihood there), estimated against 2n: ``(spread, values at 2n)``, inf where a value is not
    finite. ``ev`` is left at 2n nodes."""
    ev.set_nodes(2 * ev.n_nodes)
    v_2n = ev(pts)[0]
    d = v_2n - v_n
    return (float(np.ptp(d)) if np.all(np.isfinite(d)) else math.inf), v_2n


def _node_problem(n: int, spread: float, where: str, how: str) -> str:
    """What the report and the warning say when the quadrature's error varies by ``spread`` ``where``."""
    return (f"n_nodes={n}: the quadrature's error in the log marginal likelihood varies by {spread:.3g} {where} "
            f"(against {2 * n} nodes; more than {NODE_TOL}), {how}.")


def check_nodes(ev: _Evaluator, mode: np.ndarray, cov: np.ndarray, n_nodes: int, adapt: bool) -> tuple[int, dict]:
    """The nodes to sample with: ``n_nodes`` if the quadrature's error varies little over the posterior,
    else (``adapt``) the first of 2, 4, ... times as many (at most :data:`MAX_NODES`) that does.

    The error of n nodes is estimated by the difference from 2n, at the mode and at +-2 posterior sds
    (``cov``, from the mode search) along each axis; its spread over those points is what would tilt the
    target (:data:`NODE_TOL`). The default nodes (:func:`default_nodes`) were measured at tau = 0.8; at tau
    = 3 with rare events (intercept -3, 5,000 groups of 1-3 rows, mostly of no events: the integrand is a
    normal cut off by a cliff, far from the Gaussian shape the adaptive rule fits) the spread over +-0.15 in
    log tau was 7.3 at 20 poisson nodes and 5.3 at 12 bernoulli ones against 100 nodes (review of
    2026-12-07), which moved the posterior means of the intercept and log tau by 0.4-0.9 sd. The check
    costs 2 x (2 D + 1) evaluations. Returns the nodes and ``{"node_check": [[n, spread], ...]}`` for the
    report. ``ev`` ends set to the nodes returned."""
    sd = np.sqrt(np.clip(np.diag(cov), 0.0, None))
    pts = np.vstack([mode, mode + np.diag(2.0 * sd), mode - np.diag(2.0 * sd)])
    v_n = ev(pts)[0]
    trail = []
    n = int(n_nodes)
    while True:
        spread, v_2n = _error_spread(ev, pts, v_n)
        trail.append([n, spread])
        if spread <= NODE_TOL or not adapt or 2 * n > MAX_NODES:
            break
        n, v_n = 2 * n, v_2n
    ev.set_nodes(n)
    return n, {"node_check": trail}


def check_nodes_at_draws(ev: _Evaluator, mode: np.ndarray, phi: np.ndarray) -> float:
    """The spread of the quadrature's error (the summed log marginal likelihood at 2n nodes minus at n,
    ``ev``'s n) over the mode and each coordinate's smallest and largest draw of ``phi`` (..., D): where the
    posterior reaches far past the +-2 sds :func:`check_nodes` looks at (a heavy tail in tau). Measured on
    two bernoulli groups of three rows, all 1 and all 0, under a half-Cauchy(1) prior on tau (the tail of
    tau is the prior's): the error of 12 nodes at intercept 0 is 0.0003 at tau = 3 and 0.04 at tau = 30
    against scipy's ``quad``, and P(tau > 30) is 0.090 at 12 nodes against 0.106 at 40 and 160; the draws
    reach tau in the thousands and this spread is 0.17-0.32 (3 seeds), against at most 0.013 on simulated
    data of 40 to 20,000 groups (bernoulli and poisson, intercept -0.5 and -3, tau 0.8). Costs 2 x (2 D +
    1) evaluations; ``ev`` ends at n nodes. The extremes of longer chains (``min_ess``) reach further, so
    whether it fails can depend on the number of draws, as the tails it guards are more fully drawn.

    A failure is said (:func:`sample`: the report's problems, a warning), not mended by sampling again with
    more nodes: that far out the adaptive rule converges erratically (the same data at intercept 0 and
    tau = 100: log marginal -1.588, -1.526, -1.441, -1.373, -1.403 at 12, 24, 48, 96, 192 nodes), so NUTS
    on the row-level model is the remedy the message names."""
    flat = phi.reshape(-1, phi.shape[-1])
    pts = np.vstack([mode, flat[np.argmin(flat, axis=0)], flat[np.argmax(flat, axis=0)]])
    n = ev.n_nodes
    spread, _ = _error_spread(ev, pts, ev(pts)[0])
    ev.set_nodes(n)
    return spread


def sample(pl: Plan, *, draws: int, tune: int, chains: int, random_seed, progressbar: bool,
           max_group_effect_values: float, n_nodes: int = 20, client=None, more=None, min_kept=None,
           adapt_nodes: bool = False):
    """Run ``chains`` independence-MH chains; return ``(posterior, group_effect, kept, sample_stats, info)``
    as :func:`hierpool.inference.gibbs.sample` does (``info``: the report's additions).

    ``more``: None, or a callable given the population posterior so far (an ``xr.Dataset`` of intercept,
    beta and tau, as returned) that returns how many draws per chain to add (0: enough), as
    :func:`imh_chains` takes it (``hp.fit(..., min_ess=)``); the group effects are drawn once, at the kept
    draws of the final chains (``kept``: their positions in each chain; ``min_kept``: keep no more of them
    than that many draws in all need, :func:`hierpool.core.config.kept_draws`).

    ``client``: a ``dask.distributed.Client``. The blocks of groups are scattered to its workers once and
    stay there; every evaluation sends a batch of phis and gets back one number per phi and block (and
    the gradient's few numbers during the mode search), and the group-effect draws come back once at the
    end. Every task that reads a block runs on the worker holding it (:func:`pinned`). The draws equal
    those of the threaded run with the same seed up to rounding (same blocks, same order of sums, same
    seeds per block; CI once saw population draws 1.7e-12 apart, so not bit-for-bit). A plan of
    data whose cells stay on the workers (``pl.client``: blocks built there by :func:`partition_blocks`)
    runs the same way without ``client``; its blocks are other blocks than the in-process plan's (cut per
    partition), so its sums run in another order and its draws differ from an in-process fit's by rounding
    (population parameters) and by the seeds of its blocks (group effects): the same posterior."""
    t0 = time.perf_counter()
    ev = _Evaluator(pl, n_nodes, client=client)
    bar = None
    if progressbar:
        from tqdm.auto import tqdm

        bar = tqdm(total=chains * (min(int(tune), MAX_TUNE) + draws), desc="integrated sampler", unit="draw")
    ss = np.random.SeedSequence(random_seed)
    s_prop, s_chain, s_u = ss.spawn(3)
    rng = np.random.default_rng(s_prop)
    mode, cov, info = posterior_mode(ev)
    n_asked = n_nodes
    n_nodes, node_info = check_nodes(ev, mode, cov, n_asked, adapt_nodes)
    info.update(node_info)
    if n_nodes != n_asked:  # the mode and curvature again, with the nodes that hold
        first = info["mode_evaluations"]
        mode, cov, again = posterior_mode(ev)
        info.update(again, mode_evaluations=first + again["mode_evaluations"])
    spread = node_info["node_check"][-1][1]
    if spread > NODE_TOL:  # hp.fit puts it in the report's problems and warns (hierpool.inference.sampling)
        how = ("pass more n_nodes, or leave n_nodes out to let hp.fit choose" if not adapt_nodes else
               f"the most nodes hp.fit chooses ({n_nodes}) did not settle it; pass n_nodes above that")
        info["node_problem"] = _node_problem(n_nodes, spread, "over the posterior", f"enough to bias it: {how}")
    t_mode = time.perf_counter() - t0
    D = pl.dim
    mu, cov = tau_coordinates(mode, cov) if pl.has_tau else (mode, cov)
    t_prop = time.perf_counter()

    def population(psi):
        phi = psi.copy()
        if pl.has_tau:
            phi[..., -1] = np.log(psi[..., -1])
        return phi, population_dataset(phi[..., :1 + pl.n_predictors], psi[..., -1] if pl.has_tau else None,
                                       pl.x_center, pl.x_scale)

    def more_draws(psi):
        n = int(more(population(psi)[1]))
        if bar is not None and n > 0:
            bar.total += chains * n
            bar.refresh()
        return n

    psi, accepted, imh_info = imh_chains(lambda x: _log_target(ev, x, bar), mu, cov, draws=draws, tune=tune,
                                         chains=chains, rng=rng, chain_rngs=[np.random.default_rng(s) for s in
                                                                             s_chain.spawn(chains)],
                                         more=None if more is None else more_draws, log_last=pl.has_tau)
    t_eval = time.perf_counter() - t_prop
    info.update(imh_info)
    if bar is not None:
        bar.close()
    phi, ds = population(psi)
    draws = psi.shape[1]
    tail_spread = check_nodes_at_draws(ev, mode, phi)
    info["node_check_draws"] = [int(n_nodes), tail_spread]
    if tail_spread > NODE_TOL and "node_problem" not in info:
        info["node_problem"] = _node_problem(
            n_nodes, tail_spread, "over the draws, at the mode and each parameter's smallest and largest draw",
            "enough to bias the posterior's tails: sample the model with NUTS (sampler='pymc' or 'nutpie'); more "
            "n_nodes may not settle it that far out (the report's integrated.node_check_draws gives the spread)")
    # group effects at the kept draws (config.kept_draws), exactly from their conditionals
    J = pl.n_groups
    at = config.kept_draws(draws, chains, J, max_group_effect_values, min_kept)
    kept = phi[:, at]
    n_keep = kept.shape[1]
    udtype = config.group_effect_dtype(n_keep, draws)
    t_u = time.perf_counter()
    u = ev.group_effects(kept.reshape(-1, D), s_u, udtype).reshape(chains, n_keep, J)
    t_u = time.perf_counter() - t_u
    stats = xr.Dataset({"accepted": (("chain", "draw"), accepted)}, coords=ds.coords)
    info.update(acceptance_rate=float(accepted.mean()), n_nodes=int(n_nodes),
                marginal_evaluations=int(ev.evaluations), mode_s=float(t_mode), imh_s=float(t_eval),
                group_effects_s=float(t_u),
                sampling_s=float(time.perf_counter() - t0), proposal=f"multivariate t({T_DF:g})")
    return ds, u, at, stats, info
