"""Shared helpers of the benchmark scripts: data, child processes with their own peak memory, tables.

Nothing here asserts a time: the scripts print tables and the reader judges them.
"""

from __future__ import annotations

import json
import os
import platform
import resource
import shutil
import subprocess
import sys
import time
from contextlib import contextmanager
from pathlib import Path

import numpy as np
import pandas as pd

HERE = Path(__file__).resolve().parent
REPO = HERE.parent

#: Rows per group: 1..8 with these probabilities (93% of groups have 1-5 rows; mean 2.64 rows).
SIZE_PROBS = np.array([0.30, 0.25, 0.20, 0.12, 0.06, 0.04, 0.02, 0.01])
TRUTH = {"intercept": 0.0, "beta": [0.5, -0.3, 0.2], "tau": 1.0, "sigma": 1.0}


def simulate(n_groups: int, family: str = "gaussian", n_predictors: int = 3, seed: int = 1) -> pd.DataFrame:
    """Random intercepts with most groups of 1-5 rows (N ~ 2.6 J); integer group ids 0..J-1.

    Vectorized (hierpool.datasets.simulate builds string labels row by row, slow at a million groups).
    Bernoulli uses intercept -1 (a rate near 0.3).
    """
    rng = np.random.default_rng(seed)
    sizes = rng.choice(np.arange(1, SIZE_PROBS.size + 1), size=n_groups, p=SIZE_PROBS)
    gidx = np.repeat(np.arange(n_groups, dtype=np.int64), sizes)
    n = gidx.size
    X = rng.normal(size=(n, n_predictors))
    u = rng.normal(0.0, TRUTH["tau"], size=n_groups)
    a = TRUTH["intercept"] if family == "gaussian" else -1.0
    eta = a + X @ np.asarray(TRUTH["beta"][:n_predictors]) + u[gidx]
    if family == "gaussian":
        y = eta + rng.normal(0.0, TRUTH["sigma"], size=n)
    else:
        y = (rng.random(n) < 1.0 / (1.0 + np.exp(-eta))).astype(np.int64)
    df = pd.DataFrame({"y": y, "group": gidx})
    for k in range(n_predictors):
        df[f"x{k + 1}"] = X[:, k]
    return df


def write_data(df: pd.DataFrame, folder: Path, name: str) -> tuple[Path, Path]:
    """The same rows as CSV (for R) and Parquet (for Python)."""
    folder.mkdir(parents=True, exist_ok=True)
    csv, pq = folder / f"{name}.csv", folder / f"{name}.parquet"
    df.to_csv(csv, index=False, float_format="%.10g")
    df.to_parquet(pq, index=False)
    return csv, pq


def peak_rss_gb() -> float:
    """Peak resident memory of this process so far, GB (ru_maxrss is in KiB on Linux)."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024**2


def rss_gb() -> float:
    import psutil

    return psutil.Process().memory_info().rss / 1024**3


@contextmanager
def timer(store: dict, key: str):
    """Wall seconds in ``store[key]`` and CPU seconds (:func:`cpu_seconds`) in ``store[key + "_cpu"]``
    (on a shared machine the CPU time is the steadier number)."""
    t0, c0 = time.perf_counter(), cpu_seconds()
    try:
        yield
    finally:
        store[key] = time.perf_counter() - t0
        store[key + "_cpu"] = cpu_seconds() - c0


def time_calls(store: dict, owner, name: str, key: str) -> None:
    """Replace ``owner.<name>`` by a wrapper timing each call into ``store[key]`` (see :func:`timer`)."""
    orig = getattr(owner, name)

    def timed(*a, **k):
        with timer(store, key):
            return orig(*a, **k)

    setattr(owner, name, timed)


def cpu_seconds() -> float:
    """User + system CPU seconds of this process (all threads) and of its finished children (PyMC's
    sampling processes are joined before pm.sample returns)."""
    tot = 0.0
    for who in (resource.RUSAGE_SELF, resource.RUSAGE_CHILDREN):
        r = resource.getrusage(who)
        tot += r.ru_utime + r.ru_stime
    return tot


def run_child(cmd: list[str], timeout: float | None = None, env: dict | None = None) -> dict:
    """Run a command; return its stdout, stderr, exit code, wall time and its OWN peak RSS (os.wait4)."""
    t0 = time.perf_counter()
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            env={**os.environ, **(env or {})})
    try:
        out, err = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        proc.kill()
        out, err = proc.communicate()
        return {"rc": "timeout", "stdout": out, "stderr": err, "wall": time.perf_counter() - t0,
                "peak_gb": float("nan")}
    # communicate() already reaped the child; its rusage is gone, so callers that need the exact peak
    # use the child's own report (the worker prints ru_maxrss) or /usr/bin/time -v (R).
    return {"rc": proc.returncode, "stdout": out, "stderr": err, "wall": time.perf_counter() - t0}


def last_json(text: str) -> dict | None:
    """The last line of ``text`` that parses as a JSON object."""
    for line in reversed(text.strip().splitlines()):
        line = line.strip()
        if line.startswith("{"):
            try:
                return json.loads(line)
            except json.JSONDecodeError:
                continue
    return None


def time_v_peak_gb(stderr: str) -> float:
    """'Maximum resident set size (kbytes)' from /usr/bin/time -v, in GB."""
    for line in stderr.splitlines():
        if "Maximum resident set size" in line:
            return int(line.split(":")[-1]) / 1024**2
    return float("nan")


def machine() -> str:
    cpu = "?"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    mem = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 1024**3
    try:
        commit = subprocess.run(["git", "-C", str(REPO), "rev-parse", "--short", "HEAD"], capture_output=True,
                                text=True).stdout.strip()
        dirty = subprocess.run(["git", "-C", str(REPO), "status", "--porcelain", "hierpool"],
                               capture_output=True, text=True).stdout.strip()
        commit += " (+ uncommitted changes in hierpool/)" if dirty else ""
    except OSError:
        commit = "?"
    load = os.getloadavg()
    return (f"{time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())} | CPU {cpu}, nproc {os.cpu_count()}, "
            f"{mem:.0f} GB RAM | load avg {load[0]:.1f} {load[1]:.1f} {load[2]:.1f} | "
            f"Python {platform.python_version()} | hierpool {commit}")


def rscript() -> str | None:
    return shutil.which("Rscript")


def f4(x) -> str | None:
    """R-hat and similar numbers near 1: four decimals."""
    return None if x is None else f"{x:.4f}"


def f3(x) -> str | None:
    return None if x is None else f"{x:.3f}"


def fmt(x, digits: int = 3) -> str:
    if x is None:
        return "-"
    if isinstance(x, str):
        return x
    try:
        if np.isnan(x):
            return "-"
    except TypeError:
        return str(x)
    if isinstance(x, (int, np.integer)):
        return f"{x:,}"
    ax = abs(x)
    if ax >= 100:
        return f"{x:,.0f}"
    if ax >= 10:
        return f"{x:.1f}"
    return f"{x:.{digits}g}"


def print_table(rows: list[dict], columns: list[str], title: str = "") -> None:
    """A GitHub-markdown table (copied verbatim into README.md)."""
    if title:
        print(f"\n### {title}\n")
    print("| " + " | ".join(columns) + " |")
    print("|" + "|".join("---" for _ in columns) + "|")
    for r in rows:
        print("| " + " | ".join(fmt(r.get(c)) for c in columns) + " |")
    sys.stdout.flush()


def save_json(results: dict, path) -> None:
    """The raw results to ``path`` (nothing when ``path`` is empty or None)."""
    if path:
        Path(path).write_text(json.dumps(results, indent=1))


def finish(results: dict, tmp: Path | None, path, report) -> None:
    """The end of a run, also after an error: the simulated data removed (``tmp``; None keeps it), the
    machine stamped again (``machine_end``), the raw results saved, the tables printed by ``report``."""
    if tmp is not None:
        shutil.rmtree(tmp, ignore_errors=True)
    results["machine_end"] = machine()
    save_json(results, path)
    report(results)
