"""The resumable results store of one experiment run: ``OUT/NAME/``.

Layout::

    OUT/NAME/manifest.json      exact settings, package version, root seed, cell ids, quick/full
    OUT/NAME/cells/ID.parquet   one file per finished cell (written to a temporary name, then
                                ``os.replace``-d: a reader never sees a half-written file)
    OUT/NAME/failures/ID.json   the error of a cell that raised (removed when it later succeeds)
    OUT/NAME/results.parquet    the concatenation of the sweep's cell files, in sweep order
    OUT/NAME/summary.json       every prediction: measured value and interval, predicted, verdict
    OUT/NAME/*.png, *.svg       figures

Rerunning a sweep with the same ``OUT`` skips the cells whose files exist.
"""
from __future__ import annotations

import json
import os
import tempfile
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import pandas as pd

__all__ = ["ResultsStore", "atomic_write_bytes", "atomic_write_json"]


def atomic_write_bytes(path: Path, data: bytes) -> None:
    """Write ``data`` to ``path`` atomically (temporary file in the same directory, fsync, rename)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, path)
    except BaseException:
        try:
            os.unlink(tmp)
        except FileNotFoundError:
            pass
        raise


def _json_default(value: Any) -> Any:
    import numpy as np

    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, np.ndarray):
        return value.tolist()
    if isinstance(value, Path):
        return str(value)
    raise TypeError(f"not JSON serializable: {type(value).__name__}")


def atomic_write_json(path: Path, obj: Any) -> None:
    """Atomically write ``obj`` as indented JSON (numpy scalars converted; NaN written as null,
    infinities as the strings ``"inf"`` / ``"-inf"``)."""
    text = json.dumps(_nan_to_none(obj), indent=2, default=_json_default, allow_nan=False)
    atomic_write_bytes(Path(path), (text + "\n").encode("utf-8"))


def _nan_to_none(obj: Any) -> Any:
    import math

    import numpy as np

    if isinstance(obj, dict):
        return {str(k): _nan_to_none(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_nan_to_none(v) for v in obj]
    if isinstance(obj, np.ndarray):
        return _nan_to_none(obj.tolist())
    if isinstance(obj, (float, np.floating)):
        value = float(obj)
        if math.isnan(value):
            return None
        return value if math.isfinite(value) else ("inf" if value > 0 else "-inf")
    return obj


class ResultsStore:
    """Files of one experiment run under ``root / name`` (see the module docstring)."""

    def __init__(self, root: str | Path, name: str) -> None:
        self.root = Path(root)
        self.name = name
        self.directory = self.root / name
        self.cells_dir = self.directory / "cells"
        self.failures_dir = self.directory / "failures"

    # ------------------------------------------------------------------ setup
    def prepare(self) -> None:
        """Create the directories and remove temporary files left by an interrupted run."""
        for directory in (self.directory, self.cells_dir, self.failures_dir):
            directory.mkdir(parents=True, exist_ok=True)
        for directory in (self.directory, self.cells_dir, self.failures_dir):
            for leftover in directory.glob(".*.tmp"):
                leftover.unlink(missing_ok=True)

    # ------------------------------------------------------------------ cells
    def cell_path(self, cell_id: str) -> Path:
        return self.cells_dir / f"{cell_id}.parquet"

    def finished_ids(self) -> set[str]:
        """Ids of the cells whose result file exists."""
        if not self.cells_dir.exists():
            return set()
        return {p.stem for p in self.cells_dir.glob("*.parquet")}

    def write_cell(self, cell_id: str, frame: pd.DataFrame) -> Path:
        """Persist one finished cell atomically and clear a failure recorded for it earlier."""
        path = self.cell_path(cell_id)
        atomic_write_bytes(path, frame.to_parquet(index=False))
        (self.failures_dir / f"{cell_id}.json").unlink(missing_ok=True)
        return path

    def read_cell(self, cell_id: str) -> pd.DataFrame:
        return pd.read_parquet(self.cell_path(cell_id))

    def read_cells(self, cell_ids: Iterable[str]) -> pd.DataFrame:
        """The concatenation of the finished cells among ``cell_ids``, in the given order."""
        frames = [self.read_cell(c) for c in cell_ids if self.cell_path(c).exists()]
        if not frames:
            return pd.DataFrame()
        return pd.concat(frames, ignore_index=True)

    # ------------------------------------------------------------------ failures
    def write_failure(self, cell_id: str, record: dict[str, Any]) -> None:
        atomic_write_json(self.failures_dir / f"{cell_id}.json", record)

    def failures(self, cell_ids: Iterable[str] | None = None) -> list[dict[str, Any]]:
        """Recorded failures (all, or those among ``cell_ids``, in that order)."""
        if not self.failures_dir.exists():
            return []
        if cell_ids is None:
            paths = sorted(self.failures_dir.glob("*.json"))
        else:
            paths = [self.failures_dir / f"{c}.json" for c in cell_ids]
        return [json.loads(p.read_text()) for p in paths if p.exists()]

    # ------------------------------------------------------------------ outputs
    @property
    def results_path(self) -> Path:
        return self.directory / "results.parquet"

    def write_results(self, frame: pd.DataFrame) -> Path:
        atomic_write_bytes(self.results_path, frame.to_parquet(index=False))
        return self.results_path

    def read_results(self) -> pd.DataFrame:
        return pd.read_parquet(self.results_path)

    def write_json(self, name: str, obj: Any) -> Path:
        path = self.directory / name
        atomic_write_json(path, obj)
        return path

    def read_json(self, name: str) -> Any:
        return json.loads((self.directory / name).read_text())
