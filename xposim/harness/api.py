"""``run_experiment``: settings -> sweep -> store -> analysis -> summary.json (what ``xposim run`` does)."""
from __future__ import annotations

import datetime as _dt
import platform
import sys
import time
import traceback
from collections.abc import Mapping
from contextlib import nullcontext
from pathlib import Path
from typing import Any

import pandas as pd

from xposim.harness.experiments import get_experiment
from xposim.harness.runner import SweepOutcome, dask_executor, make_cells, run_cells
from xposim.harness.store import ResultsStore

__all__ = ["run_experiment", "analyze_stored", "DEFAULT_OUT"]

#: Default output directory of ``xposim run``.
DEFAULT_OUT = "xposim-results"


def package_version() -> str:
    """The installed xposim version (``xposim.__version__``, else the distribution metadata)."""
    import xposim

    version = getattr(xposim, "__version__", None)
    if version:
        return str(version)
    try:
        from importlib.metadata import version as dist_version

        return dist_version("xposim")
    except Exception:  # noqa: BLE001 - not installed as a distribution
        return "unknown"


def _manifest(experiment, settings: dict[str, Any], quick: bool, cells, status: str, outcome: SweepOutcome | None,
              scheduler: str | None, workers: int | None) -> dict[str, Any]:
    return {
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
        "cells": [{"cell_id": c.cell_id, "settings": c.settings, "seed_index": c.seed_index} for c in cells],
        "status": status,
        "n_failed": None if outcome is None else len(outcome.failures),
        "scheduler": scheduler,
        "workers": workers,
        "written": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
    }


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
) -> dict[str, Any]:
    """Run experiment ``name`` into ``out/name`` (resuming finished cells) and return its summary.

    ``overrides`` are validated against the experiment's settings (``ValueError`` for unknown
    keys, wrong types or impossible values). ``executor`` (any concurrent.futures-style executor)
    or ``scheduler`` (a dask.distributed address) choose where cells run; otherwise a local
    process pool of ``workers`` processes (1: this process). Writes ``manifest.json``,
    ``cells/``, ``results.parquet``, the figures and ``summary.json``.
    """
    experiment = get_experiment(name)
    settings = experiment.settings(quick=quick, overrides=overrides)
    points = experiment.points(settings)
    cells = make_cells(experiment.name, points, settings["seeds"], settings["root_seed"])
    store = ResultsStore(out, experiment.name)
    store.prepare()
    store.write_json("manifest.json", _manifest(experiment, settings, quick, cells, "running", None, scheduler, workers))
    context = dask_executor(scheduler) if scheduler is not None and executor is None else nullcontext(executor)
    start = time.perf_counter()
    with context as chosen:
        outcome = run_cells(cells, experiment.cell, store, workers=workers, executor=chosen, progress=progress,
                            description=experiment.name)
    store.write_results(outcome.results)
    summary = analyze_stored(store, experiment, settings, quick, outcome.results, outcome.failures)
    summary["run"] = {
        "cells": outcome.n_cells, "skipped_already_done": outcome.n_skipped, "ran": outcome.n_run,
        "failed": len(outcome.failures), "seconds": round(time.perf_counter() - start, 3),
    }
    store.write_json("summary.json", summary)
    status = "complete" if not outcome.failures else "incomplete"
    store.write_json("manifest.json", _manifest(experiment, settings, quick, cells, status, outcome, scheduler, workers))
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
        summary["analysis_error"] = f"{type(exc).__name__}: {exc}"
        summary["analysis_traceback"] = traceback.format_exc()
        print(f"xposim: analysis of {experiment.name} failed: {type(exc).__name__}: {exc}", file=sys.stderr)
        return summary
    summary.update(analysis)
    return summary
