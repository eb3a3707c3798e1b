"""``run_experiment``: settings -> sweep -> store -> analysis -> summary.json (what ``xposim run`` does)."""
from __future__ import annotations

import datetime as _dt
import json
import platform
import sys
import time
import traceback
from collections.abc import Mapping
from contextlib import nullcontext
from pathlib import Path
from typing import Any

import pandas as pd

from xposim.harness.config import check_sweep_size
from xposim.harness.experiments import get_experiment
from xposim.harness.fingerprint import SHORT_LENGTH, package_version, short_fingerprint
from xposim.harness.runner import SweepOutcome, dask_executor, error_text, make_cells, run_cells, sigterm_raises
from xposim.harness.store import ResultsStore

__all__ = ["run_experiment", "analyze_stored", "DEFAULT_OUT"]

#: Default output directory of ``xposim run``.
DEFAULT_OUT = "xposim-results"


def _short(record: dict[str, str] | None) -> str | None:
    return None if record is None else record["fingerprint"][:SHORT_LENGTH]


def _manifest(experiment, settings: dict[str, Any], quick: bool, cells, status: str, outcome: SweepOutcome | None,
              scheduler: str | None, workers: int | None, error: str | None = None) -> dict[str, Any]:
    """The manifest. ``code_fingerprint``: this process's code; ``fingerprints``: the code of the
    results (short fingerprint -> version and cell count) and each cell entry's ``code_fingerprint``
    (``None`` without a result), both once the sweep has run. ``points`` lists each distinct cell
    setting once; a cell entry names its setting by index (``point``), so the manifest grows with
    the number of cells, not with cells times the size of their settings."""
    provenance = {} if outcome is None else outcome.provenance
    fingerprints = None if outcome is None else outcome.fingerprints()
    keys = [json.dumps(c.settings, sort_keys=True, default=str) for c in cells]
    point_index: dict[str, int] = {}
    points: list[dict[str, Any]] = []
    for key, c in zip(keys, cells):
        if key not in point_index:
            point_index[key] = len(points)
            points.append(c.settings)
    manifest = {
        "experiment": experiment.name,
        "predictions": list(experiment.predictions),
        "description": experiment.description,
        "quick": quick,
        "settings": settings,
        "root_seed": settings["root_seed"],
        "seeds": settings["seeds"],
        "xposim_version": package_version(),
        "python": platform.python_version(),
        "numpy": __import__("numpy").__version__,
        "cell_ids": [c.cell_id for c in cells],
        "code_fingerprint": short_fingerprint(),
        "fingerprints": fingerprints,
        "mixed_fingerprints": None if fingerprints is None else len(fingerprints) > 1,
        "points": points,
        "cells": [{"cell_id": c.cell_id, "point": point_index[key], "seed_index": c.seed_index,
                   "code_fingerprint": _short(provenance.get(c.cell_id))} for key, c in zip(keys, cells)],
        "status": status,
        "n_failed": None if outcome is None else outcome.n_failed,
        "scheduler": scheduler,
        "workers": workers,
        "written": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
    }
    if error is not None:
        manifest["error"] = error
    return manifest


def run_experiment(
    name: str,
    out: str | Path = DEFAULT_OUT,
    *,
    quick: bool = True,
    overrides: Mapping[str, Any] | None = None,
    workers: int | None = None,
    scheduler: str | None = None,
    executor=None,
    progress: bool = True,
    accept_stale: bool = False,
) -> dict[str, Any]:
    """Run experiment ``name`` into ``out/name`` (resuming finished cells) and return its summary.

    ``overrides`` are validated against the experiment's settings (``ValueError`` for unknown
    keys, wrong types or impossible values; more than ``MAX_SEEDS`` seeds or ``MAX_CELLS`` cells,
    see :mod:`xposim.harness.config`). ``executor`` (any concurrent.futures-style executor)
    or ``scheduler`` (a dask.distributed address) choose where cells run; otherwise a local
    process pool of ``workers`` processes (1: this process). Writes ``manifest.json``,
    ``cells/``, ``results.parquet``, the figures and ``summary.json``.

    The run holds the directory's lock (``StoreLockedError``, an ``OSError``, when another run
    holds it). Stored cells computed by other code are recomputed, or reused with
    ``accept_stale=True`` (see :func:`~xposim.harness.runner.run_cells`). The manifest ends
    ``complete`` / ``incomplete`` (some cells failed), ``interrupted`` (KeyboardInterrupt, SIGTERM)
    or ``failed`` (any other exception, its text under ``error``).
    """
    experiment = get_experiment(name)
    settings = experiment.settings(quick=quick, overrides=overrides)
    points = experiment.points(settings)
    check_sweep_size(len(points), settings["seeds"], experiment.name)  # at most MAX_CELLS, before any allocation
    cells = make_cells(experiment.name, points, settings["seeds"], settings["root_seed"])
    store = ResultsStore(out, experiment.name)
    with store.lock(), sigterm_raises():
        try:
            store.prepare()
            store.write_json("manifest.json",
                             _manifest(experiment, settings, quick, cells, "running", None, scheduler, workers))
            context = dask_executor(scheduler) if scheduler is not None and executor is None else nullcontext(executor)
            start = time.perf_counter()
            with context as chosen:
                outcome = run_cells(cells, experiment.cell, store, workers=workers, executor=chosen,
                                    progress=progress, description=experiment.name, accept_stale=accept_stale)
            store.write_results(outcome.results)
            summary = analyze_stored(store, experiment, settings, quick, outcome.results, outcome.failures)
            fingerprints = outcome.fingerprints()
            summary["run"] = {
                "cells": outcome.n_cells, "skipped_already_done": outcome.n_skipped, "ran": outcome.n_succeeded,
                "attempted": outcome.n_run, "failed": outcome.n_failed,
                "stale_recomputed": outcome.n_stale_recomputed, "stale_reused": outcome.n_stale_reused,
                "corrupt_recomputed": outcome.n_corrupt, "code_fingerprint": short_fingerprint(),
                "fingerprints": fingerprints, "mixed_fingerprints": len(fingerprints) > 1,
                "seconds": round(time.perf_counter() - start, 3),
            }
            store.write_json("summary.json", summary)
            status = "complete" if not outcome.failures else "incomplete"
            store.write_json("manifest.json",
                             _manifest(experiment, settings, quick, cells, status, outcome, scheduler, workers))
        except BaseException as exc:
            status = "interrupted" if isinstance(exc, (KeyboardInterrupt, SystemExit)) else "failed"
            try:
                store.write_json("manifest.json", _manifest(experiment, settings, quick, cells, status, None,
                                                            scheduler, workers, error=error_text(exc)))
            except Exception:  # noqa: BLE001 - the original error matters more
                pass
            raise
    return summary


def analyze_stored(store: ResultsStore, experiment, settings: dict[str, Any], quick: bool,
                   results: pd.DataFrame, failures: list[dict[str, Any]]) -> dict[str, Any]:
    """Run the experiment's analysis on ``results`` and assemble the summary dict."""
    summary: dict[str, Any] = {
        "experiment": experiment.name,
        "predictions_tested": list(experiment.predictions),
        "description": experiment.description,
        "quick": quick,
        "settings": settings,
        "n_rows": int(len(results)),
        "failed_cells": [{k: f[k] for k in ("cell_id", "settings", "seed_index", "error")} for f in failures],
        "predictions": [],
        "figures": [],
        "tables": {},
        "notes": experiment.notes,
    }
    if results.empty:
        summary["analysis_error"] = "no cell finished: nothing to analyse"
        return summary
    try:
        analysis = experiment.analyze(results, settings, store.directory)
    except Exception as exc:  # noqa: BLE001 - keep the results; report the analysis failure
        summary["analysis_error"] = error_text(exc)
        summary["analysis_traceback"] = traceback.format_exc()
        print(f"xposim: analysis of {experiment.name} failed: {error_text(exc)}", file=sys.stderr)
        return summary
    summary.update(analysis)
    return summary
