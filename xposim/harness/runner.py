"""Sweeps: cells, their stable ids and seeds, and their execution on any executor.

A *cell* is ``(experiment name, settings dict, seed index)`` plus the root seed. Its id is a hash
of the canonical JSON of those four things, and its random stream is child ``seed_index`` of
``SeedSequence(root_seed)`` (:func:`xposim.seeding.spawn_seeds`), so a cell's result depends on
nothing but the cell: identical bit for bit whatever executor, worker count or completion order.
Adding seeds keeps the existing cells' ids and results (spawned children are stable).

Execution goes through any ``concurrent.futures``-style executor (``submit`` returning futures
that :func:`concurrent.futures.as_completed` accepts): a local ``ProcessPoolExecutor`` by default,
the calling process for ``workers=1``, or a dask.distributed cluster
(:func:`dask_executor`). Each finished cell is persisted by the calling process as soon as it
completes (:class:`~xposim.harness.store.ResultsStore`); a cell that raises is recorded with its
id and traceback while the other cells' results are kept.

Each stored cell carries the fingerprint of the code that computed it
(:mod:`xposim.harness.fingerprint`). A rerun reuses a stored cell only when its fingerprint is this
process's; a *stale* cell (other or unknown fingerprint) is moved to ``cells/stale/`` and
recomputed, unless ``accept_stale=True`` (then it is reused and the outcome says the results mix
fingerprints). A cell file that cannot be read is moved to ``cells/corrupt/`` and recomputed. A run
holds the directory's lock throughout (a second run on it fails at once), and local pool workers
end with the process that started them, even when it is killed with SIGKILL.
"""
from __future__ import annotations

import concurrent.futures as cf
import hashlib
import os
import signal
import sys
import threading
import time
import traceback
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd

from xposim.harness.config import canonical_json
from xposim.harness.fingerprint import SHORT_LENGTH, code_fingerprint, package_version
from xposim.harness.store import ResultsStore, process_gone
from xposim.columns import with_dtypes
from xposim.seeding import child_seed

__all__ = [
    "Cell",
    "CellOutcome",
    "SweepOutcome",
    "make_cells",
    "execute_cell",
    "run_cells",
    "dask_executor",
    "default_workers",
    "error_text",
    "sigterm_raises",
]

CellFunction = Callable[[dict[str, Any], np.random.SeedSequence], pd.DataFrame]

#: Failures printed as they happen (all of them are recorded in the store and the outcome).
MAX_LIVE_FAILURES = 3


@dataclass(frozen=True)
class Cell:
    """One unit of work: ``settings`` of experiment ``experiment`` under seed ``seed_index``."""

    experiment: str
    settings: Mapping[str, Any]
    seed_index: int
    root_seed: int = 0
    cell_id: str = field(init=False, compare=False)

    def __post_init__(self) -> None:
        if int(self.seed_index) != self.seed_index or self.seed_index < 0:
            raise ValueError(f"seed_index must be an integer >= 0, got {self.seed_index!r}")
        if int(self.root_seed) != self.root_seed or self.root_seed < 0:
            raise ValueError(f"root_seed must be an integer >= 0, got {self.root_seed!r}")
        object.__setattr__(self, "settings", dict(self.settings))
        text = canonical_json(
            {"experiment": self.experiment, "settings": self.settings, "seed_index": int(self.seed_index),
             "root_seed": int(self.root_seed)}
        )
        object.__setattr__(self, "cell_id", hashlib.sha256(text.encode("utf-8")).hexdigest()[:16])

    def seed_sequence(self) -> np.random.SeedSequence:
        """Child ``seed_index`` of ``SeedSequence(root_seed)``."""
        return child_seed(int(self.root_seed), int(self.seed_index))


def make_cells(experiment: str, points: Sequence[Mapping[str, Any]], n_seeds: int, root_seed: int = 0) -> list[Cell]:
    """The sweep: every point under seed indices ``0..n_seeds-1`` (point-major order)."""
    if int(n_seeds) != n_seeds or n_seeds < 1:
        raise ValueError(f"n_seeds must be an integer >= 1, got {n_seeds!r}")
    cells = [Cell(experiment, point, k, root_seed) for point in points for k in range(int(n_seeds))]
    ids = [c.cell_id for c in cells]
    if len(set(ids)) != len(ids):
        raise ValueError("the sweep lists the same settings twice (duplicate cell ids)")
    return cells


@dataclass
class CellOutcome:
    """What a worker sends back: the labelled frame, or a failure record, and the fingerprint and
    version of the code that ran it (the worker's own: a dask worker may run other code)."""

    cell_id: str
    frame: pd.DataFrame | None
    failure: dict[str, Any] | None
    seconds: float
    fingerprint: str = ""
    version: str = ""


@dataclass
class SweepOutcome:
    """Result of :func:`run_cells`: the concatenated results (sweep order) and the failures.

    ``n_run`` cells were attempted in this call and ``n_succeeded`` of them were computed and
    stored; ``n_skipped`` were reused from the store; ``n_failed`` cells have no result (failed in
    this call, or their file proved unreadable at the final read). ``provenance``
    maps the id of every cell in ``results`` to the fingerprint (full) and version of the code that
    computed it; ``n_stale_recomputed`` / ``n_stale_reused`` count stored cells of other code
    recomputed / reused (``accept_stale``), ``n_corrupt`` unreadable cell files moved aside.
    """

    results: pd.DataFrame
    failures: list[dict[str, Any]]
    n_cells: int
    n_skipped: int
    n_run: int
    seconds: float
    provenance: dict[str, dict[str, str]] = field(default_factory=dict)
    n_succeeded: int = 0
    n_stale_recomputed: int = 0
    n_stale_reused: int = 0
    n_corrupt: int = 0

    @property
    def n_failed(self) -> int:
        """Cells of the sweep without a result (failed in this call, or unreadable at the end)."""
        return len(self.failures)

    def fingerprints(self) -> dict[str, dict[str, Any]]:
        """``{short fingerprint: {"xposim_version": ..., "cells": count}}`` over the results' cells."""
        table: dict[str, dict[str, Any]] = {}
        for record in self.provenance.values():
            entry = table.setdefault(record["fingerprint"][:SHORT_LENGTH],
                                     {"xposim_version": record["version"], "cells": 0})
            entry["cells"] += 1
        return table


def _scalar(value: Any) -> bool:
    return isinstance(value, (bool, int, float, str, np.generic))


def _label(frame: pd.DataFrame, cell: Cell) -> pd.DataFrame:
    """Prefix the cell's id, seed (the seed index) and scalar settings as columns (settings that the
    frame already has as columns are left as they are), in the dtypes of :mod:`xposim.columns`."""
    frame = frame.reset_index(drop=True).copy()
    labels: dict[str, Any] = {"cell_id": cell.cell_id, "seed": int(cell.seed_index)}
    for key, value in cell.settings.items():
        if _scalar(value) and key not in frame.columns and key not in labels:
            labels[key] = value
    for position, (key, value) in enumerate(labels.items()):
        if key in frame.columns:
            frame = frame.drop(columns=key)
        frame.insert(position, key, value)
    return with_dtypes(frame)


def error_text(error: BaseException) -> str:
    """``"Type: message"``, never with an empty message: an exception without text (a future
    cancelled by a lost dask scheduler, ``RuntimeError()``) says so, and names its cause if chained."""
    message = str(error).strip()
    if not message:
        cause = error.__cause__ or error.__context__
        if isinstance(error, cf.CancelledError):
            message = "the executor cancelled the cell (its scheduler or worker went away?)"
        elif cause is not None and str(cause).strip():
            message = f"(no message; caused by {type(cause).__name__}: {str(cause).strip()})"
        else:
            message = "(no message)"
    return f"{type(error).__name__}: {message}"


def _failure_record(cell: Cell, error: BaseException, trace: str) -> dict[str, Any]:
    return {
        "cell_id": cell.cell_id,
        "experiment": cell.experiment,
        "settings": dict(cell.settings),
        "seed_index": int(cell.seed_index),
        "error": error_text(error),
        "traceback": trace,
    }


def execute_cell(cell_fn: CellFunction, cell: Cell) -> CellOutcome:
    """Run one cell (in whatever process the executor chose); never raises for a failing cell."""
    start = time.perf_counter()
    fingerprint, version = code_fingerprint(), package_version()
    try:
        frame = cell_fn(dict(cell.settings), cell.seed_sequence())
        if not isinstance(frame, pd.DataFrame):
            raise TypeError(f"cell function returned {type(frame).__name__}, expected a pandas DataFrame")
        return CellOutcome(cell.cell_id, _label(frame, cell), None, time.perf_counter() - start, fingerprint,
                           version)
    except Exception as exc:  # noqa: BLE001 - a failing cell is data, reported with its id
        return CellOutcome(cell.cell_id, None, _failure_record(cell, exc, traceback.format_exc()),
                           time.perf_counter() - start, fingerprint, version)


# ----------------------------------------------------------------------------- pool workers
#: Seconds between two checks of the worker's parent-watchdog thread.
WATCHDOG_INTERVAL = 0.5


def _set_parent_death_signal() -> bool:
    """Linux: ``prctl(PR_SET_PDEATHSIG, SIGKILL)`` (the kernel kills this process when the thread
    that created it ends). Returns whether it took effect; never raises."""
    if not sys.platform.startswith("linux"):
        return False
    try:
        import ctypes

        libc = ctypes.CDLL(None, use_errno=True)
        pr_set_pdeathsig = 1
        return libc.prctl(ctypes.c_int(pr_set_pdeathsig), ctypes.c_ulong(int(signal.SIGKILL)), ctypes.c_ulong(0),
                          ctypes.c_ulong(0), ctypes.c_ulong(0)) == 0
    except Exception:  # noqa: BLE001 - the watchdog of _worker_init still works
        return False


def _worker_init(parent_pid: int) -> None:
    """Initializer of local pool workers: end this worker when process ``parent_pid`` ends.

    On Linux ``prctl(PR_SET_PDEATHSIG, SIGKILL)`` has the kernel kill the worker when its parent
    dies (SIGKILL of the parent included); a daemon thread also checks every
    :data:`WATCHDOG_INTERVAL` seconds whether the worker was re-parented or ``parent_pid`` ended
    (other systems, other start methods) and exits the worker then. SIGTERM gets its default
    action back (a forked worker inherits the parent's :func:`sigterm_raises` handler). Never raises.
    """
    try:
        signal.signal(signal.SIGTERM, signal.SIG_DFL)
    except (ValueError, OSError):  # not the main thread of the worker
        pass
    _set_parent_death_signal()
    initial_ppid = os.getppid()
    if process_gone(parent_pid):  # died before prctl took effect
        os._exit(1)

    def watch() -> None:
        while True:
            time.sleep(WATCHDOG_INTERVAL)
            if os.getppid() != initial_ppid or process_gone(parent_pid):
                os._exit(1)

    threading.Thread(target=watch, name="xposim-parent-watchdog", daemon=True).start()


@contextmanager
def sigterm_raises() -> Iterator[None]:
    """Within the block, SIGTERM raises ``SystemExit(143)`` in the main thread (so ``finally``
    blocks run and a manifest can record "interrupted") instead of ending the process on the spot.
    Does nothing outside the main thread or when a SIGTERM handler is already installed."""
    if threading.current_thread() is not threading.main_thread() or \
            signal.getsignal(signal.SIGTERM) is not signal.SIG_DFL:
        yield
        return

    def handler(signum, frame):  # noqa: ARG001
        raise SystemExit(128 + signal.SIGTERM)

    signal.signal(signal.SIGTERM, handler)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, signal.SIG_DFL)


def default_workers() -> int:
    """Number of usable CPUs (affinity-aware), at least 1."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # pragma: no cover - non-Linux
        return max(1, os.cpu_count() or 1)


def run_cells(
    cells: Sequence[Cell],
    cell_fn: CellFunction,
    store: ResultsStore,
    *,
    workers: int | None = None,
    executor: cf.Executor | None = None,
    progress: bool = True,
    description: str | None = None,
    accept_stale: bool = False,
) -> SweepOutcome:
    """Run the cells not yet in ``store`` and return every cell's results in sweep order.

    * ``executor`` (any ``concurrent.futures``-style executor) takes precedence; otherwise
      ``workers=1`` runs in this process and ``workers=n > 1`` (default: the CPU count) in a local
      ``ProcessPoolExecutor`` whose workers end with this process.
    * The store's directory lock is held throughout (:class:`~xposim.harness.store.StoreLockedError`
      if another run holds it).
    * A stored cell computed by other code (fingerprint not this process's, or unknown) is moved to
      ``cells/stale/`` and recomputed; with ``accept_stale=True`` it is reused instead. A stored
      cell file that cannot be read is moved to ``cells/corrupt/`` and recomputed. Each case prints
      one warning line with its count on stderr.
    * Each finished cell is written to the store on completion; a failing cell is recorded with
      its id (``store.failures``) and listed in the outcome, the others continue.
    * A tqdm bar on stderr shows cells done, the ETA and the last finished cell id.
    """
    if workers is not None and (int(workers) != workers or workers < 1):
        raise ValueError(f"workers must be an integer >= 1, got {workers!r}")
    with store.lock():
        return _run_locked(cells, cell_fn, store, workers, executor, progress, description, bool(accept_stale))


def _warn(message: str) -> None:
    print(f"xposim: {message}", file=sys.stderr, flush=True)


def _fingerprint_counts(records: Sequence[dict[str, str]]) -> str:
    counts: dict[str, int] = {}
    for record in records:
        key = record["fingerprint"][:SHORT_LENGTH]
        counts[key] = counts.get(key, 0) + 1
    return ", ".join(f"{key} ({n})" for key, n in sorted(counts.items()))


def _sort_stored(store: ResultsStore, unique: dict[str, Cell], accept_stale: bool,
                 current: str) -> tuple[dict[str, dict[str, str]], int, int, int]:
    """Check the stored cells of the sweep: keep the readable ones of this code (and, with
    ``accept_stale``, of other code); move stale and unreadable ones aside. Returns the provenance
    of the kept cells and the counts (stale recomputed, stale reused, corrupt)."""
    kept: dict[str, dict[str, str]] = {}
    stale: list[tuple[str, dict[str, str]]] = []
    corrupt: list[tuple[str, str]] = []
    finished = store.finished_ids()
    for cell_id in unique:
        if cell_id not in finished:
            continue
        try:
            record = store.cell_provenance(cell_id)
        except Exception as exc:  # noqa: BLE001 - truncated / not Parquet: recompute it
            corrupt.append((cell_id, error_text(exc)))
            continue
        if record["fingerprint"] == current:
            kept[cell_id] = record
        else:
            stale.append((cell_id, record))
    if corrupt:
        stamp = time.strftime("%Y%m%dT%H%M%S")
        for cell_id, _ in corrupt:
            store.move_aside(cell_id, "corrupt", stamp)
        _warn(f"{len(corrupt)} unreadable cell file(s) moved to {store.corrupt_dir} and recomputed "
              f"(first: {corrupt[0][0]}: {corrupt[0][1]})")
    n_recomputed = n_reused = 0
    if stale:
        described = _fingerprint_counts([r for _, r in stale])
        if accept_stale:
            kept.update(stale)
            n_reused = len(stale)
            _warn(f"reusing {n_reused} cell(s) computed by other code (fingerprints {described}; this code is "
                  f"{current[:SHORT_LENGTH]}): the results mix code fingerprints")
        else:
            for cell_id, record in stale:
                store.move_aside(cell_id, "stale", record["fingerprint"][:SHORT_LENGTH])
            n_recomputed = len(stale)
            _warn(f"{n_recomputed} cell(s) computed by other code (fingerprints {described}; this code is "
                  f"{current[:SHORT_LENGTH]}) are recomputed; old files moved to {store.stale_dir} "
                  "(accept_stale=True, `--accept-stale`, reuses them)")
    return kept, n_recomputed, n_reused, len(corrupt)


def _kernels_need_compiling() -> bool:
    """Whether the learners' fused round loop is neither compiled here nor in numba's cache."""
    from xposim.learners.runner import kernels_need_compiling
    from xposim.policies.tabular import TabularClass

    return kernels_need_compiling(TabularClass())


def _run_locked(cells: Sequence[Cell], cell_fn: CellFunction, store: ResultsStore, workers: int | None,
                executor: cf.Executor | None, progress: bool, description: str | None,
                accept_stale: bool) -> SweepOutcome:
    from tqdm.auto import tqdm

    start = time.perf_counter()
    store.prepare()
    unique: dict[str, Cell] = {}
    for cell in cells:
        unique.setdefault(cell.cell_id, cell)
    current = code_fingerprint()
    provenance, n_stale_recomputed, n_stale_reused, n_corrupt = _sort_stored(store, unique, accept_stale, current)
    todo = [c for c in unique.values() if c.cell_id not in provenance]
    failures: list[dict[str, Any]] = []
    n_succeeded = 0
    foreign: dict[str, int] = {}  # cells computed here by workers running other code
    n_workers = int(workers or default_workers())
    pool: cf.ProcessPoolExecutor | None = None
    futures: dict[cf.Future, Cell] = {}
    warm: list[CellOutcome] = []
    if executor is None and n_workers > 1 and len(todo) > 1 and _kernels_need_compiling():
        # a fresh numba cache: run the first cell here so that the kernels are compiled once and
        # cached, instead of once in every pool worker at the same time
        _warn("compiling kernels in this process first (first run only; cached for the next runs)")
        warm.append(execute_cell(cell_fn, todo[0]))
        todo = todo[1:]
    # Submit before the progress bar exists: a local pool forks its workers on the first submit,
    # and forking while tqdm's monitor thread runs is best avoided.
    if executor is None and n_workers > 1 and len(todo) > 1:
        pool = cf.ProcessPoolExecutor(max_workers=min(n_workers, len(todo)), initializer=_worker_init,
                                      initargs=(os.getpid(),))
        executor = pool
    if executor is not None:
        futures = {executor.submit(execute_cell, cell_fn, cell): cell for cell in todo}
    bar = tqdm(
        total=len(unique), initial=len(unique) - len(todo) - len(warm), disable=not progress, file=sys.stderr,
        unit="cell", desc=description or (cells[0].experiment if cells else "sweep"), dynamic_ncols=True,
    )

    def handle(outcome: CellOutcome) -> None:
        nonlocal n_succeeded
        if outcome.frame is not None:
            record = {"fingerprint": outcome.fingerprint or current, "version": outcome.version or package_version()}
            if record["fingerprint"] != current:
                key = record["fingerprint"][:SHORT_LENGTH]
                foreign[key] = foreign.get(key, 0) + 1
            store.write_cell(outcome.cell_id, outcome.frame, fingerprint=record["fingerprint"],
                             version=record["version"])
            provenance[outcome.cell_id] = record
            n_succeeded += 1
        else:
            assert outcome.failure is not None
            store.write_failure(outcome.cell_id, outcome.failure)
            failures.append(outcome.failure)
            if len(failures) <= MAX_LIVE_FAILURES:
                bar.write(f"xposim: cell {outcome.cell_id} failed: {outcome.failure['error']}", file=sys.stderr)
        bar.update(1)
        bar.set_postfix_str(f"last {outcome.cell_id}", refresh=False)

    try:
        for outcome in warm:
            handle(outcome)
        if executor is None:
            for cell in todo:
                handle(execute_cell(cell_fn, cell))
        else:
            _drain(futures, handle)
    except BaseException:
        if pool is not None:
            pool.shutdown(wait=False, cancel_futures=True)
        raise
    finally:
        bar.close()
    if pool is not None:
        pool.shutdown(wait=True)
    if foreign:
        _warn(f"{sum(foreign.values())} cell(s) were computed by workers running other code (fingerprints "
              f"{', '.join(f'{k} ({n})' for k, n in sorted(foreign.items()))}; this process: "
              f"{current[:SHORT_LENGTH]}): the next run counts them as stale")
    results = _read_results(store, unique, provenance, failures)
    n_computed = len(todo) + len(warm)
    return SweepOutcome(results, failures, len(unique), len(unique) - n_computed, n_computed,
                        time.perf_counter() - start, provenance={c: provenance[c] for c in unique if c in provenance},
                        n_succeeded=n_succeeded, n_stale_recomputed=n_stale_recomputed,
                        n_stale_reused=n_stale_reused, n_corrupt=n_corrupt)


def _read_results(store: ResultsStore, unique: dict[str, Cell], provenance: dict[str, dict[str, str]],
                  failures: list[dict[str, Any]]) -> pd.DataFrame:
    """The stored cells of the sweep, in sweep order. A file that cannot be read (its footer was
    fine but its data is damaged) is moved to ``cells/corrupt/`` and becomes a failure of its cell."""
    frames = []
    unreadable = []
    for cell_id, cell in unique.items():
        if cell_id not in provenance or not store.cell_path(cell_id).exists():
            continue
        try:
            frames.append(store.read_cell(cell_id))
        except Exception as exc:  # noqa: BLE001 - damaged file: keep the run going, recompute next time
            store.move_aside(cell_id, "corrupt", time.strftime("%Y%m%dT%H%M%S"))
            del provenance[cell_id]
            record = _failure_record(cell, exc, traceback.format_exc())
            record["error"] = ("unreadable result file (moved to cells/corrupt/; a rerun recomputes it): "
                               f"{record['error']}")
            store.write_failure(cell_id, record)
            failures.append(record)
            unreadable.append(cell_id)
    if unreadable:
        _warn(f"{len(unreadable)} cell file(s) could not be read and were moved to {store.corrupt_dir} "
              f"(first: {unreadable[0]}); rerun to recompute them")
    if not frames:
        return pd.DataFrame()
    return pd.concat(frames, ignore_index=True)


def _drain(futures: dict[cf.Future, Cell], handle: Callable[[CellOutcome], None]) -> None:
    """Hand every future's outcome to ``handle`` as it completes (a lost or crashed worker becomes
    a failure record of its cell); on interruption cancel what has not started."""
    try:
        for future in cf.as_completed(futures):
            cell = futures[future]
            try:
                outcome = future.result()
            except BaseException as exc:  # noqa: BLE001 - worker died, cancelled, lost by the cluster
                if isinstance(exc, (KeyboardInterrupt, SystemExit)):
                    raise
                outcome = CellOutcome(cell.cell_id, None, _failure_record(cell, exc, "".join(
                    traceback.format_exception(exc))), 0.0)
            handle(outcome)
    except BaseException:
        for future in futures:
            future.cancel()
        raise


@contextmanager
def dask_executor(address: str, timeout: float = 10.0) -> Iterator[cf.Executor]:
    """A ``concurrent.futures`` executor on the dask.distributed scheduler at ``address``
    (e.g. ``tcp://127.0.0.1:8786``); closes the client on exit. Errors are one-line ``ValueError`` exceptions."""
    if "://" not in address:
        raise ValueError(f"scheduler address must look like tcp://HOST:PORT, got {address!r}")
    try:
        import distributed
    except ImportError:
        raise ValueError("--scheduler needs dask.distributed: pip install 'xposim[distributed]'") from None
    try:
        client = distributed.Client(address, timeout=timeout)
    except (OSError, TimeoutError) as exc:
        raise ValueError(f"cannot connect to the dask scheduler at {address}: {exc}") from None
    try:
        yield client.get_executor()
    finally:
        client.close()
