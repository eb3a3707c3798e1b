"""The resumable results store of one experiment run: ``OUT/NAME/``.

Layout::

    OUT/NAME/manifest.json      exact settings, package version and code fingerprint(s), root seed,
                                cell ids (and each result's fingerprint), quick/full, final status
    OUT/NAME/cells/ID.parquet   one file per finished cell (written to a temporary name, then
                                ``os.replace``-d: a reader never sees a half-written file); its
                                Parquet key-value metadata holds the fingerprint of the code that
                                computed it and the xposim version (:data:`FINGERPRINT_KEY`,
                                :data:`VERSION_KEY`)
    OUT/NAME/cells/stale/       cells computed by other code, moved aside when recomputed
    OUT/NAME/cells/corrupt/     cell files that could not be read, moved aside when recomputed
    OUT/NAME/failures/ID.json   the error of a cell that raised (removed when it later succeeds)
    OUT/NAME/results.parquet    the concatenation of the sweep's cell files, in sweep order
    OUT/NAME/summary.json       every prediction: measured value and interval, predicted, verdict
    OUT/NAME/*.png, *.svg       figures
    OUT/NAME/.xposim-run.lock   ``flock``-ed by the run writing the directory (holds its pid)

Rerunning a sweep with the same ``OUT`` skips the cells whose files exist (and were computed by
the same code, see :mod:`xposim.harness.runner`). Every file is created with the permissions of a
plain ``open()`` (``0o666 & ~umask``: 0644 under the usual umask 022), like the figures.

Temporary files are named ``.FILE.pidPID.XXXXXXXX.tmp`` after the writing process: ``prepare``
removes only those whose writer is dead (another process's file mid-write is never touched).
"""
from __future__ import annotations

import errno
import json
import os
import re
import tempfile
import time
import weakref
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pandas as pd

__all__ = ["ResultsStore", "StoreLockedError", "atomic_write_bytes", "atomic_write_json", "FINGERPRINT_KEY",
           "VERSION_KEY", "LOCK_NAME"]

#: Parquet key-value metadata of a cell file: the full fingerprint of the code that computed it.
FINGERPRINT_KEY = b"xposim.code_fingerprint"
#: Parquet key-value metadata of a cell file: ``xposim.__version__`` of the computing process.
VERSION_KEY = b"xposim.version"
#: The lock file of a run directory.
LOCK_NAME = ".xposim-run.lock"
#: A temporary file without a writer pid (written by an older xposim) is removed by ``prepare``
#: only when it is older than this many seconds.
UNTAGGED_TMP_SECONDS = 3600.0

_TMP_PID = re.compile(r"\.pid(\d+)\.[^.]+\.tmp$")


class StoreLockedError(OSError):
    """Another live process holds the lock of a run directory."""


def _umask() -> int:
    """The process umask (read from ``/proc`` on Linux: setting it to probe is not thread-safe)."""
    try:
        with open("/proc/self/status", encoding="ascii") as handle:
            for line in handle:
                if line.startswith("Umask:"):
                    return int(line.split()[1], 8)
    except (OSError, ValueError):
        pass
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def process_gone(pid: int) -> bool:
    """Whether process ``pid`` has ended (a zombie, killed but not yet reaped, counts as ended)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    except OSError:  # exists, owned by someone else
        return False
    try:
        with open(f"/proc/{pid}/stat", "rb") as handle:
            state = handle.read().rsplit(b")", 1)[1].split()[0]
        return state in (b"Z", b"X")
    except (OSError, IndexError):
        return False


def tmp_writer_pid(path: str | Path) -> int | None:
    """The pid encoded in a temporary file's name by :func:`atomic_write_bytes` (``None`` if absent)."""
    match = _TMP_PID.search(Path(path).name)
    return int(match.group(1)) if match else None


def atomic_write_bytes(path: Path, data: bytes) -> None:
    """Write ``data`` to ``path`` atomically: a temporary file ``.NAME.pidPID.XXXXXXXX.tmp`` in the
    same directory, fsync, permissions ``0o666 & ~umask`` (``mkstemp`` creates 0600), rename."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.pid{os.getpid()}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
            handle.flush()
            os.fchmod(handle.fileno(), 0o666 & ~_umask())
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


# Stores holding a directory lock in this process. A forked child (a process-pool worker) inherits
# the lock's open file description, which would keep the directory locked for as long as the child
# lives; the child closes its copy right after the fork (the parent keeps the lock).
_LOCKED_STORES: weakref.WeakSet[ResultsStore] = weakref.WeakSet()


def _release_inherited_locks() -> None:
    for store in list(_LOCKED_STORES):
        fd = store._lock_fd
        store._lock_fd = None
        if fd is not None:
            try:
                os.close(fd)
            except OSError:
                pass
    _LOCKED_STORES.clear()


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_release_inherited_locks)


class ResultsStore:
    """Files of one experiment run under ``root / name`` (see the module docstring)."""

    def __init__(self, root: str | Path, name: str) -> None:
        self.root = Path(root)
        self.name = name
        self.directory = self.root / name
        self.cells_dir = self.directory / "cells"
        self.failures_dir = self.directory / "failures"
        self.stale_dir = self.cells_dir / "stale"
        self.corrupt_dir = self.cells_dir / "corrupt"
        self._lock_fd: int | None = None

    # ------------------------------------------------------------------ setup
    def prepare(self) -> None:
        """Create the directories and remove temporary files left by dead writers: a file tagged
        with a pid is removed only when that process no longer exists; an untagged one (older
        xposim) only when older than :data:`UNTAGGED_TMP_SECONDS`."""
        for directory in (self.directory, self.cells_dir, self.failures_dir):
            directory.mkdir(parents=True, exist_ok=True)
        now = time.time()
        for directory in (self.directory, self.cells_dir, self.failures_dir):
            for leftover in directory.glob(".*.tmp"):
                pid = tmp_writer_pid(leftover)
                try:
                    if pid is not None:
                        remove = pid != os.getpid() and process_gone(pid)
                    else:
                        remove = now - leftover.stat().st_mtime > UNTAGGED_TMP_SECONDS
                    if remove:
                        leftover.unlink(missing_ok=True)
                except FileNotFoundError:  # its writer renamed it meanwhile
                    pass

    # ------------------------------------------------------------------ lock
    @property
    def lock_path(self) -> Path:
        return self.directory / LOCK_NAME

    @property
    def locked(self) -> bool:
        """Whether this store object holds the directory's lock."""
        return self._lock_fd is not None

    @contextmanager
    def lock(self) -> Iterator[ResultsStore]:
        """Hold the run directory's lock (``fcntl.flock``, exclusive, non-blocking) for the block.

        A second run on the same directory (another process, or another store object) gets a
        :class:`StoreLockedError` (an ``OSError``) naming the holder's pid. Re-entrant on the same
        object. The kernel releases the lock when the holder exits, however it exits.
        """
        if self._lock_fd is not None:
            yield self
            return
        try:
            import fcntl
        except ImportError:  # pragma: no cover - not POSIX: no locking
            yield self
            return
        self.directory.mkdir(parents=True, exist_ok=True)
        fd = os.open(self.lock_path, os.O_RDWR | os.O_CREAT, 0o666)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError as error:
            if error.errno not in (errno.EWOULDBLOCK, errno.EAGAIN, errno.EACCES):  # not contention
                os.close(fd)
                raise OSError(error.errno, f"cannot lock {self.lock_path} ({error.strerror}); the file system "
                                           "may not support locks: use another output directory") from None
            try:
                holder = os.pread(fd, 64, 0).decode("ascii", "replace").strip() or "?"
            finally:
                os.close(fd)
            raise StoreLockedError(
                f"another xposim run (pid {holder}) holds {self.directory}: wait for it to finish or use "
                "another output directory") from None
        try:
            os.ftruncate(fd, 0)
            os.pwrite(fd, f"{os.getpid()}\n".encode("ascii"), 0)
        except OSError:
            os.close(fd)
            raise
        self._lock_fd = fd
        _LOCKED_STORES.add(self)
        try:
            yield self
        finally:
            _LOCKED_STORES.discard(self)
            self._lock_fd = None
            os.close(fd)  # releases the flock

    # ------------------------------------------------------------------ cells
    def cell_path(self, cell_id: str) -> Path:
        return self.cells_dir / f"{cell_id}.parquet"

    def finished_ids(self) -> set[str]:
        """Ids of the cells whose result file exists (whatever code computed it)."""
        if not self.cells_dir.exists():
            return set()
        return {p.stem for p in self.cells_dir.glob("*.parquet")}

    def write_cell(self, cell_id: str, frame: pd.DataFrame, *, fingerprint: str | None = None,
                   version: str | None = None) -> Path:
        """Persist one finished cell atomically, with the computing code's ``fingerprint`` and
        ``version`` in its Parquet metadata (default: this process's), and clear a failure
        recorded for it earlier."""
        import pyarrow as pa
        import pyarrow.parquet as pq

        from xposim.harness.fingerprint import code_fingerprint, package_version

        table = pa.Table.from_pandas(frame, preserve_index=False)
        metadata = dict(table.schema.metadata or {})
        metadata[FINGERPRINT_KEY] = (fingerprint or code_fingerprint()).encode("utf-8")
        metadata[VERSION_KEY] = (version or package_version()).encode("utf-8")
        sink = pa.BufferOutputStream()
        pq.write_table(table.replace_schema_metadata(metadata), sink)
        path = self.cell_path(cell_id)
        atomic_write_bytes(path, sink.getvalue().to_pybytes())
        (self.failures_dir / f"{cell_id}.json").unlink(missing_ok=True)
        return path

    def cell_provenance(self, cell_id: str) -> dict[str, str]:
        """``{"fingerprint": ..., "version": ...}`` of a stored cell, read from its Parquet footer
        (``"unknown"`` for a cell written without them). Raises (``OSError``, ``ValueError``) when
        the file cannot be read as Parquet, e.g. truncated."""
        import pyarrow.parquet as pq

        from xposim.harness.fingerprint import UNKNOWN

        metadata = pq.read_metadata(self.cell_path(cell_id)).metadata or {}
        return {
            "fingerprint": metadata.get(FINGERPRINT_KEY, UNKNOWN.encode()).decode("utf-8", "replace"),
            "version": metadata.get(VERSION_KEY, UNKNOWN.encode()).decode("utf-8", "replace"),
        }

    def move_aside(self, cell_id: str, kind: str, tag: str) -> Path:
        """Move a cell file into ``cells/KIND/ID.TAG.parquet`` (``kind``: ``"stale"`` or
        ``"corrupt"``; a numeric suffix keeps earlier files of the same name) and return the new path."""
        if kind not in ("stale", "corrupt"):
            raise ValueError(f"kind must be 'stale' or 'corrupt', got {kind!r}")
        folder = self.cells_dir / kind
        folder.mkdir(parents=True, exist_ok=True)
        target = folder / f"{cell_id}.{tag}.parquet"
        counter = 1
        while target.exists():
            target = folder / f"{cell_id}.{tag}.{counter}.parquet"
            counter += 1
        os.replace(self.cell_path(cell_id), target)
        return target

    def read_cell(self, cell_id: str) -> pd.DataFrame:
        return pd.read_parquet(self.cell_path(cell_id))

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
