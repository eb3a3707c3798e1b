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
"""
from __future__ import annotations

import concurrent.futures as cf
import hashlib
import os
import sys
import time
import traceback
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd

from xposim.harness.config import canonical_json
from xposim.harness.store import ResultsStore
from xposim.seeding import spawn_seeds

__all__ = [
    "Cell",
    "CellOutcome",
    "SweepOutcome",
    "make_cells",
    "execute_cell",
    "run_cells",
    "dask_executor",
    "default_workers",
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
        return spawn_seeds(int(self.root_seed), int(self.seed_index) + 1)[int(self.seed_index)]


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
    """What a worker sends back: the labelled frame, or a failure record."""

    cell_id: str
    frame: pd.DataFrame | None
    failure: dict[str, Any] | None
    seconds: float


@dataclass
class SweepOutcome:
    """Result of :func:`run_cells`: the concatenated results (sweep order) and the failures."""

    results: pd.DataFrame
    failures: list[dict[str, Any]]
    n_cells: int
    n_skipped: int
    n_run: int
    seconds: float


def _scalar(value: Any) -> bool:
    return isinstance(value, (bool, int, float, str, np.generic))


def _label(frame: pd.DataFrame, cell: Cell) -> pd.DataFrame:
    """Prefix the cell's id, seed index and scalar settings as columns (settings that the frame
    already has as columns are left as they are)."""
    frame = frame.reset_index(drop=True).copy()
    labels: dict[str, Any] = {"cell_id": cell.cell_id, "seed_index": int(cell.seed_index)}
    for key, value in cell.settings.items():
        if _scalar(value) and key not in frame.columns and key not in labels:
            labels[key] = value
    for position, (key, value) in enumerate(labels.items()):
        if key in frame.columns:
            frame = frame.drop(columns=key)
        frame.insert(position, key, value)
    return frame


def _failure_record(cell: Cell, error: BaseException, trace: str) -> dict[str, Any]:
    return {
        "cell_id": cell.cell_id,
        "experiment": cell.experiment,
        "settings": dict(cell.settings),
        "seed_index": int(cell.seed_index),
        "error": f"{type(error).__name__}: {error}",
        "traceback": trace,
    }


def execute_cell(cell_fn: CellFunction, cell: Cell) -> CellOutcome:
    """Run one cell (in whatever process the executor chose); never raises for a failing cell."""
    start = time.perf_counter()
    try:
        frame = cell_fn(dict(cell.settings), cell.seed_sequence())
        if not isinstance(frame, pd.DataFrame):
            raise TypeError(f"cell function returned {type(frame).__name__}, expected a pandas DataFrame")
        return CellOutcome(cell.cell_id, _label(frame, cell), None, time.perf_counter() - start)
    except Exception as exc:  # noqa: BLE001 - a failing cell is data, reported with its id
        return CellOutcome(cell.cell_id, None, _failure_record(cell, exc, traceback.format_exc()),
                           time.perf_counter() - start)


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
) -> SweepOutcome:
    """Run the cells not yet in ``store`` and return every cell's results in sweep order.

    * ``executor`` (any ``concurrent.futures``-style executor) takes precedence; otherwise
      ``workers=1`` runs in this process and ``workers=n > 1`` (default: the CPU count) in a local
      ``ProcessPoolExecutor``.
    * Each finished cell is written to the store on completion; a failing cell is recorded with
      its id (``store.failures``) and listed in the outcome, the others continue.
    * A tqdm bar on stderr shows cells done, the ETA and the last finished cell id.
    """
    if workers is not None and (int(workers) != workers or workers < 1):
        raise ValueError(f"workers must be an integer >= 1, got {workers!r}")
    from tqdm.auto import tqdm

    start = time.perf_counter()
    store.prepare()
    unique: dict[str, Cell] = {}
    for cell in cells:
        unique.setdefault(cell.cell_id, cell)
    finished = store.finished_ids()
    todo = [c for c in unique.values() if c.cell_id not in finished]
    failures: list[dict[str, Any]] = []
    n_workers = int(workers or default_workers())
    pool: cf.ProcessPoolExecutor | None = None
    futures: dict[cf.Future, Cell] = {}
    # Submit before the progress bar exists: a local pool forks its workers on the first submit,
    # and forking while tqdm's monitor thread runs is best avoided.
    if executor is None and n_workers > 1 and len(todo) > 1:
        pool = cf.ProcessPoolExecutor(max_workers=min(n_workers, len(todo)))
        executor = pool
    if executor is not None:
        futures = {executor.submit(execute_cell, cell_fn, cell): cell for cell in todo}
    bar = tqdm(
        total=len(unique), initial=len(unique) - len(todo), disable=not progress, file=sys.stderr,
        unit="cell", desc=description or (cells[0].experiment if cells else "sweep"), dynamic_ncols=True,
    )

    def handle(outcome: CellOutcome) -> None:
        if outcome.frame is not None:
            store.write_cell(outcome.cell_id, outcome.frame)
        else:
            assert outcome.failure is not None
            store.write_failure(outcome.cell_id, outcome.failure)
            failures.append(outcome.failure)
            if len(failures) <= MAX_LIVE_FAILURES:
                bar.write(f"xposim: cell {outcome.cell_id} failed: {outcome.failure['error']}", file=sys.stderr)
        bar.update(1)
        bar.set_postfix_str(f"last {outcome.cell_id}", refresh=False)

    try:
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
    results = store.read_cells(unique)
    return SweepOutcome(results, failures, len(unique), len(unique) - len(todo), len(todo),
                        time.perf_counter() - start)


def _drain(futures: dict[cf.Future, Cell], handle: Callable[[CellOutcome], None]) -> None:
    """Hand every future's outcome to ``handle`` as it completes (a lost or crashed worker becomes
    a failure record of its cell); on interruption cancel what has not started."""
    try:
        for future in cf.as_completed(futures):
            cell = futures[future]
            try:
                outcome = future.result()
            except BaseException as exc:  # noqa: BLE001 - worker died, cancelled, lost by the cluster
                if isinstance(exc, KeyboardInterrupt):
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
    (e.g. ``tcp://127.0.0.1:8786``); closes the client on exit. Errors are one-line ``ValueError``s."""
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
