"""The results store over months: code fingerprints (stale cells), unreadable cells, the run lock,
other processes' temporary files, final manifest states, failure counts and texts, file
permissions, and the report's errors and run names (issue 9, section 4)."""
from __future__ import annotations

import concurrent.futures as cf
import io
import json
import multiprocessing
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd
import pyarrow.parquet as pq
import pytest

import xposim
from xposim.harness import run_experiment
from xposim.harness.experiments import get_experiment
from xposim.harness.experiments.selftest import cell as selftest_cell
from xposim.harness.fingerprint import code_fingerprint, fingerprint_of, short_fingerprint
from xposim.harness.runner import Cell, error_text, execute_cell, make_cells, run_cells
from xposim.harness.store import (
    FINGERPRINT_KEY,
    VERSION_KEY,
    ResultsStore,
    StoreLockedError,
    atomic_write_bytes,
    tmp_writer_pid,
)

REPO = Path(__file__).resolve().parents[1]
PYTHON = sys.executable
OTHER_CODE = "0123456789ab" + "0" * 52  # the fingerprint of some other version of the code


def _cells(seeds: int = 2, p=(0.2, 0.5), flips: int = 200, fail_p: float = -1.0, sleep: float = 0.0):
    experiment = get_experiment("selftest")
    settings = experiment.settings(True, {"p": list(p), "flips": flips, "seeds": seeds, "fail_p": fail_p,
                                          "sleep": sleep})
    return make_cells("selftest", experiment.points(settings), settings["seeds"], settings["root_seed"])


def _run(store: ResultsStore, cells, **kwargs):
    return run_cells(cells, selftest_cell, store, workers=1, progress=False, **kwargs)


# ----------------------------------------------------------------------------- fingerprints
@pytest.mark.fast
def test_fingerprint_hashes_every_source_file_and_ignores_caches(tmp_path):
    package = tmp_path / "pkg"
    (package / "sub").mkdir(parents=True)
    (package / "a.py").write_text("x = 1\n")
    (package / "sub" / "b.py").write_text("y = 2\n")
    first = fingerprint_of(package)
    assert len(first) == 64 and fingerprint_of(package) == first
    (package / "__pycache__").mkdir()
    (package / "__pycache__" / "a.cpython-311.py").write_text("cache")
    (package / "sub" / "notes.txt").write_text("not source")
    assert fingerprint_of(package) == first
    (package / "sub" / "b.py").write_text("y = 3\n")
    assert fingerprint_of(package) != first
    (package / "sub" / "b.py").write_text("y = 2\n")
    assert fingerprint_of(package) == first
    (package / "sub" / "b.py").rename(package / "sub" / "c.py")  # same bytes, other path
    assert fingerprint_of(package) != first
    # the installed package: computed once per process, short form = first 12 hex digits
    assert code_fingerprint() is code_fingerprint() and short_fingerprint() == code_fingerprint()[:12]
    assert code_fingerprint() == fingerprint_of(Path(xposim.__file__).parent)


@pytest.mark.fast
def test_every_cell_records_the_fingerprint_and_version_of_its_code(tmp_path):
    store = ResultsStore(tmp_path, "selftest")
    outcome = _run(store, _cells())
    for cell_id in outcome.provenance:
        metadata = pq.read_metadata(store.cell_path(cell_id)).metadata
        assert metadata[FINGERPRINT_KEY].decode() == code_fingerprint()
        assert metadata[VERSION_KEY].decode() == xposim.__version__
    assert set(outcome.provenance) == {c.cell_id for c in _cells()}
    assert outcome.fingerprints() == {short_fingerprint(): {"xposim_version": xposim.__version__, "cells": 4}}


def _make_stale(store: ResultsStore, cell_ids) -> None:
    """Rewrite cells as other code would have: one with another fingerprint, the others without any
    (written before fingerprints existed)."""
    for k, cell_id in enumerate(cell_ids):
        frame = store.read_cell(cell_id)
        if k == 0:
            store.write_cell(cell_id, frame, fingerprint=OTHER_CODE, version="0.0.9")
        else:
            atomic_write_bytes(store.cell_path(cell_id), frame.to_parquet(index=False))


@pytest.mark.fast
def test_stale_cells_are_recomputed_and_their_old_files_kept_aside(tmp_path, capsys):
    cells = _cells()
    store = ResultsStore(tmp_path, "selftest")
    fresh = _run(store, cells)
    stale_ids = [cells[0].cell_id, cells[3].cell_id]
    _make_stale(store, stale_ids)
    capsys.readouterr()
    again = _run(store, cells)
    warning = [line for line in capsys.readouterr().err.splitlines() if "other code" in line]
    assert len(warning) == 1 and "2 cell(s)" in warning[0] and "0123456789ab (1)" in warning[0]
    assert "unknown (1)" in warning[0]
    assert (again.n_run, again.n_skipped, again.n_stale_recomputed) == (2, 2, 2)
    assert all(again.provenance[c]["fingerprint"] == code_fingerprint() for c in stale_ids)
    pd.testing.assert_frame_equal(again.results, fresh.results, check_exact=True)
    moved = sorted(p.name for p in store.stale_dir.iterdir())
    assert moved == sorted([f"{stale_ids[0]}.0123456789ab.parquet", f"{stale_ids[1]}.unknown.parquet"])
    assert pq.read_metadata(store.stale_dir / moved[0]).num_rows > 0  # nothing lost
    # a third run reuses everything
    third = _run(store, cells)
    assert (third.n_run, third.n_stale_recomputed) == (0, 0)


@pytest.mark.fast
def test_accept_stale_reuses_them_and_the_manifest_and_report_say_the_code_is_mixed(tmp_path, capsys):
    overrides = {"p": [0.2, 0.5], "flips": 200, "seeds": 2}
    run_experiment("selftest", tmp_path, quick=True, workers=1, progress=False, overrides=overrides)
    store = ResultsStore(tmp_path, "selftest")
    ids = json.loads((store.directory / "manifest.json").read_text())["cell_ids"]
    _make_stale(store, ids[:1])
    capsys.readouterr()
    summary = run_experiment("selftest", tmp_path, quick=True, workers=1, progress=False, overrides=overrides,
                             accept_stale=True)
    assert "reusing 1 cell(s) computed by other code" in capsys.readouterr().err
    run = summary["run"]
    assert (run["ran"], run["skipped_already_done"], run["stale_reused"]) == (0, 4, 1)
    assert run["mixed_fingerprints"] is True
    assert run["fingerprints"] == {short_fingerprint(): {"xposim_version": xposim.__version__, "cells": 3},
                                   "0123456789ab": {"xposim_version": "0.0.9", "cells": 1}}
    manifest = json.loads((store.directory / "manifest.json").read_text())
    assert manifest["code_fingerprint"] == short_fingerprint() and manifest["xposim_version"] == xposim.__version__
    assert manifest["fingerprints"] == run["fingerprints"] and manifest["mixed_fingerprints"] is True
    by_cell = {c["cell_id"]: c["code_fingerprint"] for c in manifest["cells"]}
    # each distinct setting once; cells name theirs by index (point-major, seeds inner)
    assert [c["point"] for c in manifest["cells"]] == [0, 0, 1, 1]
    assert [p["p"] for p in manifest["points"]] == [0.2, 0.5]
    assert by_cell[ids[0]] == "0123456789ab" and {by_cell[c] for c in ids[1:]} == {short_fingerprint()}
    assert not store.stale_dir.exists()  # reused, not moved
    from xposim.harness.report import build_report

    text = build_report(tmp_path)
    assert "**mixed code fingerprints**" in text and "0123456789ab (xposim 0.0.9, 1 cells)" in text
    assert "reused from other code" in text
    # without the flag, the next run recomputes the stale cell
    summary = run_experiment("selftest", tmp_path, quick=True, workers=1, progress=False, overrides=overrides)
    assert summary["run"]["stale_recomputed"] == 1 and summary["run"]["mixed_fingerprints"] is False
    assert f"code {short_fingerprint()}" in build_report(tmp_path)


# ----------------------------------------------------------------------------- unreadable cells
@pytest.mark.fast
def test_truncated_cell_is_moved_aside_and_recomputed(tmp_path, capsys):
    cells = _cells()
    overrides = {"p": [0.2, 0.5], "flips": 200, "seeds": 2}
    run_experiment("selftest", tmp_path, quick=True, workers=1, progress=False, overrides=overrides)
    store = ResultsStore(tmp_path, "selftest")
    path = store.cell_path(cells[1].cell_id)
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])  # "Parquet magic bytes not found"
    before = pd.read_parquet(store.results_path)
    capsys.readouterr()
    summary = run_experiment("selftest", tmp_path, quick=True, workers=1, progress=False, overrides=overrides)
    err = capsys.readouterr().err
    assert "1 unreadable cell file(s) moved to" in err and cells[1].cell_id in err
    assert summary["run"]["corrupt_recomputed"] == 1 and summary["run"]["ran"] == 1
    assert [p.read_bytes() for p in store.corrupt_dir.iterdir()] == [data[: len(data) // 2]]
    pd.testing.assert_frame_equal(pd.read_parquet(store.results_path), before, check_exact=True)
    assert json.loads((store.directory / "manifest.json").read_text())["status"] == "complete"


@pytest.mark.fast
def test_cell_unreadable_at_the_final_read_becomes_a_failure_and_is_recomputed_next_time(tmp_path, monkeypatch):
    cells = _cells()
    store = ResultsStore(tmp_path, "selftest")
    fresh = _run(store, cells)
    damaged = cells[2].cell_id
    original = ResultsStore.read_cell

    def read_cell(self, cell_id):
        if cell_id == damaged:
            raise OSError("Corrupt snappy compressed data.")
        return original(self, cell_id)

    monkeypatch.setattr(ResultsStore, "read_cell", read_cell)
    outcome = _run(store, cells)
    assert [f["cell_id"] for f in outcome.failures] == [damaged]
    assert "unreadable result file" in outcome.failures[0]["error"]
    assert "OSError: Corrupt snappy" in outcome.failures[0]["error"]
    assert damaged not in set(outcome.results["cell_id"]) and len(list(store.corrupt_dir.iterdir())) == 1
    monkeypatch.undo()
    again = _run(store, cells)
    assert (again.n_run, again.n_failed) == (1, 0) and store.failures() == []
    pd.testing.assert_frame_equal(again.results, fresh.results, check_exact=True)


# ----------------------------------------------------------------------------- final manifest states
@pytest.mark.fast
@pytest.mark.parametrize("error, status", [(RuntimeError("scheduler lost"), "failed"),
                                           (KeyboardInterrupt(), "interrupted")])
def test_manifest_ends_in_a_final_state_when_the_run_raises(tmp_path, monkeypatch, error, status):
    import xposim.harness.api as api

    def broken(*args, **kwargs):
        raise error

    monkeypatch.setattr(api, "run_cells", broken)
    with pytest.raises(type(error)):
        run_experiment("selftest", tmp_path, quick=True, workers=1, progress=False, overrides={"seeds": 2})
    manifest = json.loads((tmp_path / "selftest" / "manifest.json").read_text())
    assert manifest["status"] == status
    if status == "failed":
        assert manifest["error"] == "RuntimeError: scheduler lost"


def _children(pid: int) -> set[int]:
    try:
        import psutil

        return {c.pid for c in psutil.Process(pid).children(recursive=True)}
    except ImportError:
        found = set()
        for entry in Path("/proc").iterdir():
            if entry.name.isdigit():
                try:
                    stat = (entry / "stat").read_text()
                except OSError:
                    continue
                if int(stat.rsplit(")", 1)[1].split()[1]) == pid:
                    found.add(int(entry.name))
        return found
    except Exception:  # noqa: BLE001 - psutil.NoSuchProcess
        return set()


def _alive(pid: int) -> bool:
    """Running (not ended, not a zombie waiting to be reaped)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    return stat.rsplit(")", 1)[1].split()[0] not in ("Z", "X")


def _start_slow_run(tmp_path: Path, workers: int, sleep: float = 1.0):
    config = tmp_path / "slow.toml"
    config.write_text(f"p = [0.2, 0.5, 0.8]\nflips = 200\nseeds = 4\nsleep = {sleep}\n")
    out = tmp_path / "out"
    command = [PYTHON, "-m", "xposim", "run", "selftest", "--quick", "--workers", str(workers), "--out", str(out),
               "--config", str(config), "--progress", "off"]
    process = subprocess.Popen(command, cwd=REPO, start_new_session=True, stdout=subprocess.DEVNULL,
                               stderr=subprocess.PIPE)
    return process, out / "selftest"


def _wait_for(condition, timeout: float = 60.0) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():
            return True
        time.sleep(0.05)
    return False


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="uses /proc and SIGTERM semantics of Linux")
def test_sigterm_leaves_an_interrupted_manifest(tmp_path):
    process, directory = _start_slow_run(tmp_path, workers=1, sleep=0.5)
    try:
        assert _wait_for(lambda: len(list((directory / "cells").glob("*.parquet"))) >= 1)
        process.send_signal(signal.SIGTERM)
        process.wait(timeout=30)
    finally:
        if process.poll() is None:
            os.killpg(process.pid, signal.SIGKILL)
    err = process.stderr.read().decode()
    assert process.returncode == 143, err
    assert "Traceback" not in err
    assert json.loads((directory / "manifest.json").read_text())["status"] == "interrupted"


# ----------------------------------------------------------------------------- orphans
@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads /proc")
def test_sigkill_of_the_main_process_ends_its_pool_workers(tmp_path):
    process, directory = _start_slow_run(tmp_path, workers=2, sleep=2.0)
    workers: set[int] = set()
    try:
        def two_workers_busy() -> bool:
            workers.update(_children(process.pid))
            return len(workers) >= 2 and (directory / "manifest.json").exists()

        assert _wait_for(two_workers_busy), "the pool's workers did not start"
        time.sleep(0.5)  # inside their 2-second cells
        os.kill(process.pid, signal.SIGKILL)  # the main process only, not its process group
        process.wait(timeout=30)
        assert _wait_for(lambda: not any(_alive(w) for w in workers), timeout=5.0), \
            f"workers {sorted(w for w in workers if _alive(w))} outlived the killed run"
    finally:
        for pid in workers | {process.pid}:
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass


_FORKING_PARENT = """
import os, sys, time
import xposim.harness.runner as runner
if sys.argv[1] == "watchdog-only":
    runner._set_parent_death_signal = lambda: False
parent = os.getpid()
child = os.fork()
if child == 0:
    runner._worker_init(parent)
    time.sleep(60)
    os._exit(0)
print(child, flush=True)
time.sleep(60)
"""


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads /proc")
@pytest.mark.parametrize("mode", ["prctl-and-watchdog", "watchdog-only"])
def test_a_worker_ends_when_its_parent_is_killed(mode):
    from xposim.harness.runner import WATCHDOG_INTERVAL

    parent = subprocess.Popen([PYTHON, "-c", _FORKING_PARENT, mode], cwd=REPO, stdout=subprocess.PIPE, text=True)
    child = int(parent.stdout.readline())
    try:
        time.sleep(0.3)  # the initializer has run
        assert _alive(child)
        os.kill(parent.pid, signal.SIGKILL)
        parent.wait(timeout=30)
        assert _wait_for(lambda: not _alive(child), timeout=3 * WATCHDOG_INTERVAL + 2.0)
    finally:
        for pid in (child, parent.pid):
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass


# ----------------------------------------------------------------------------- concurrency
_HOLDER = """
import sys, time
from xposim.harness.store import ResultsStore
with ResultsStore(sys.argv[1], "selftest").lock():
    print("locked", flush=True)
    time.sleep(60)
"""


def test_a_second_run_on_the_same_directory_is_refused_with_the_holders_pid(tmp_path, capsys):
    holder = subprocess.Popen([PYTHON, "-c", _HOLDER, str(tmp_path)], cwd=REPO, stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "locked"
        store = ResultsStore(tmp_path, "selftest")
        with pytest.raises(StoreLockedError, match=rf"another xposim run \(pid {holder.pid}\) holds .*selftest"):
            _run(store, _cells())
        assert not list(store.cells_dir.glob("*.parquet"))
        with pytest.raises(OSError, match=rf"pid {holder.pid}"):
            run_experiment("selftest", tmp_path, quick=True, workers=1, progress=False, overrides={"seeds": 2})
        assert not (store.directory / "manifest.json").exists()  # the other run's files are not touched
        from xposim.cli import main

        assert main(["run", "selftest", "--quick", "--seeds", "2", "--out", str(tmp_path), "--progress", "off"]) == 2
        err = capsys.readouterr().err.strip().splitlines()
        assert len(err) == 1 and f"another xposim run (pid {holder.pid})" in err[0]
    finally:
        holder.kill()
        holder.wait()
    # the kernel released the dead holder's lock
    assert _run(ResultsStore(tmp_path, "selftest"), _cells()).n_run == 4


def _sleep_in_child(ready, seconds: float) -> None:
    ready.set()  # the fork handlers have run by now
    time.sleep(seconds)


@pytest.mark.fast
@pytest.mark.skipif("fork" not in multiprocessing.get_all_start_methods(), reason="needs fork")
def test_a_forked_child_does_not_keep_the_directory_locked(tmp_path):
    store = ResultsStore(tmp_path, "selftest")
    child = None
    try:
        with store.lock():
            with store.lock():  # re-entrant on the same store
                assert store.locked
            with pytest.raises(StoreLockedError):
                with ResultsStore(tmp_path, "selftest").lock():
                    pass
            context = multiprocessing.get_context("fork")
            ready = context.Event()
            child = context.Process(target=_sleep_in_child, args=(ready, 30))
            child.start()
            assert ready.wait(30)
        assert not store.locked
        with ResultsStore(tmp_path, "selftest").lock():  # while the forked child still lives
            assert child.is_alive()
    finally:
        if child is not None:
            child.kill()
            child.join()


@pytest.mark.fast
def test_prepare_removes_only_temporary_files_of_dead_writers(tmp_path):
    store = ResultsStore(tmp_path, "selftest")
    store.prepare()
    dead = subprocess.run([PYTHON, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    dead_pid = int(dead.stdout)
    mine = store.cells_dir / f".a.parquet.pid{os.getpid()}.abcd1234.tmp"
    theirs = store.cells_dir / f".b.parquet.pid{dead_pid}.abcd1234.tmp"
    untagged = store.cells_dir / ".c.parquet.abcd1234.tmp"
    for path in (mine, theirs, untagged):
        path.write_bytes(b"half a cell")
    store.prepare()
    assert mine.exists() and untagged.exists() and not theirs.exists()
    old = time.time() - 7200
    os.utime(untagged, (old, old))
    store.prepare()
    assert mine.exists() and not untagged.exists()


@pytest.mark.fast
def test_temporary_files_carry_the_writers_pid(tmp_path, monkeypatch):
    import xposim.harness.store as store_module

    seen = []
    real_replace = os.replace

    def spy(src, dst):
        seen.append((Path(src).name, os.stat(src).st_mode & 0o777))
        return real_replace(src, dst)

    monkeypatch.setattr(store_module.os, "replace", spy)
    previous = os.umask(0o022)
    try:
        atomic_write_bytes(tmp_path / "x.json", b"{}")
    finally:
        os.umask(previous)
    assert tmp_writer_pid(seen[0][0]) == os.getpid()
    assert seen[0][1] == 0o644  # readable before it appears under its name (mkstemp creates 0600)


# ----------------------------------------------------------------------------- failures
@pytest.mark.fast
def test_failure_texts_keep_type_and_are_never_empty(tmp_path):
    def silent(point, seed):
        raise RuntimeError()

    outcome = execute_cell(silent, Cell("e", {}, 0))
    kind, _, message = outcome.failure["error"].partition(": ")
    assert kind == "RuntimeError" and message.strip()
    assert error_text(ValueError("bad beta")) == "ValueError: bad beta"

    class LostCluster(cf.Executor):
        """An executor whose scheduler went away: every future ends cancelled, without a message."""

        def submit(self, fn, *args, **kwargs):
            future = cf.Future()
            future.set_exception(cf.CancelledError())
            return future

    outcome = run_cells(_cells(), selftest_cell, ResultsStore(tmp_path, "selftest"), executor=LostCluster(),
                        progress=False)
    assert outcome.n_failed == 4 and outcome.n_succeeded == 0
    for failure in outcome.failures:
        kind, _, message = failure["error"].partition(": ")
        assert kind == "CancelledError" and "cancelled" in message


@pytest.mark.fast
def test_summary_counts_failed_cells_apart_from_cells_run(tmp_path, capsys):
    from xposim.cli import main

    summary = run_experiment("selftest", tmp_path, quick=True, workers=1, progress=False,
                             overrides={"p": [0.2, 0.3, 0.5], "fail_p": 0.3, "seeds": 2, "flips": 200})
    run = summary["run"]
    assert (run["attempted"], run["ran"], run["failed"]) == (6, 4, 2)
    config = tmp_path / "fail.toml"
    config.write_text("p = [0.2, 0.3, 0.5]\nfail_p = 0.3\nseeds = 2\nflips = 200\n")
    capsys.readouterr()
    status = main(["run", "selftest", "--quick", "--workers", "1", "--out", str(tmp_path), "--progress", "off",
                   "--config", str(config)])
    out = capsys.readouterr().out
    assert status == 1 and "0 cells run, 4 resumed, 2 failed" in out, out


# ----------------------------------------------------------------------------- permissions
@pytest.mark.fast
def test_result_files_are_readable_like_figures(tmp_path):
    previous = os.umask(0o022)
    try:
        run_experiment("selftest", tmp_path, quick=True, workers=1, progress=False,
                       overrides={"p": [0.2, 0.5], "fail_p": 0.5, "seeds": 2, "flips": 200})
    finally:
        os.umask(previous)
    directory = tmp_path / "selftest"
    files = [p for p in directory.rglob("*") if p.is_file()]
    kinds = {p.suffix for p in files}
    assert {".parquet", ".json", ".png", ".svg"} <= kinds and list((directory / "failures").iterdir())
    modes = {str(p.relative_to(directory)): oct(p.stat().st_mode & 0o777) for p in files}
    assert set(modes.values()) == {"0o644"}, modes


# ----------------------------------------------------------------------------- report
def _write_run(tmp_path: Path) -> Path:
    run_experiment("selftest", tmp_path, quick=True, workers=1, progress=False,
                   overrides={"p": [0.2, 0.5], "seeds": 2, "flips": 200})
    return tmp_path / "selftest"


@pytest.mark.fast
@pytest.mark.parametrize("summary, fragment", [
    ([], "expected a JSON object, got list"),
    ({"predictions": []}, "no 'experiment' name"),
    ({"experiment": "selftest", "predictions": [{"id": "S1", "prediction": "x", "measured": {}}]},
     "prediction 0 lacks 'verdict'"),
    ({"experiment": "selftest", "predictions": {"S1": "held"}}, "'predictions' is not a list"),
    ({"experiment": "selftest", "tables": {"t": [1, 2]}}, "table 't' is not a list of records"),
])
def test_report_of_a_malformed_summary_is_a_one_line_value_error(tmp_path, capsys, summary, fragment):
    from xposim.cli import main
    from xposim.harness.report import build_report

    (tmp_path / "run").mkdir()
    (tmp_path / "run" / "summary.json").write_text(json.dumps(summary))
    with pytest.raises(ValueError, match="summary.json") as caught:
        build_report(tmp_path)
    assert fragment in str(caught.value) and "\n" not in str(caught.value)
    assert main(["report", str(tmp_path)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("xposim: error:") and fragment in err[0]


@pytest.mark.fast
def test_report_that_cannot_be_written_is_a_one_line_error(tmp_path, capsys):
    from xposim.cli import main
    from xposim.harness.report import write_report

    _write_run(tmp_path)
    (tmp_path / "report.md").mkdir()  # cannot be replaced by a file, whoever runs the test (root too)
    with pytest.raises(ValueError, match="cannot write the report to .*report.md"):
        write_report(tmp_path)
    assert main(["report", str(tmp_path)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "cannot write the report" in err[0]


@pytest.mark.fast
def test_report_names_each_run_by_its_directory_and_its_code(tmp_path):
    from xposim.harness.report import build_report

    first = _write_run(tmp_path)
    shutil.copytree(first, tmp_path / "selftest_champion")
    manifest = json.loads((first / "manifest.json").read_text())
    summary = json.loads((first / "summary.json").read_text())
    for key in ("code_fingerprint", "fingerprints", "mixed_fingerprints"):  # as written before fingerprints
        manifest.pop(key)
        summary["run"].pop(key)
    (first / "manifest.json").write_text(json.dumps(manifest))
    (first / "summary.json").write_text(json.dumps(summary))
    text = build_report(tmp_path)
    assert "| `selftest` | `selftest` |" in text and "| `selftest_champion` | `selftest` |" in text
    assert "## `selftest` — " in text and "## `selftest_champion` (experiment `selftest`) — " in text
    assert "](selftest_champion/selftest_error.png)" in text
    sections = text.split("## ")
    assert "code fingerprint unknown" in sections[1]
    assert f"xposim {xposim.__version__}, code {short_fingerprint()}" in sections[2]


@pytest.mark.fast
def test_report_warns_when_the_last_run_did_not_finish(tmp_path):
    from xposim.harness.report import build_report

    directory = _write_run(tmp_path)
    manifest = json.loads((directory / "manifest.json").read_text())
    manifest.update(status="failed", error="OSError: disk full")
    (directory / "manifest.json").write_text(json.dumps(manifest))
    assert "**Warning:** the last run of this directory failed (OSError: disk full)" in build_report(tmp_path)


@pytest.mark.fast
def test_fingerprint_metadata_does_not_change_the_stored_frame(tmp_path):
    frame = pd.DataFrame({"a": [1, 2], "b": ["x", "y"], "c": [0.5, float("inf")]})
    store = ResultsStore(tmp_path, "e")
    store.prepare()
    store.write_cell("id", frame)
    pd.testing.assert_frame_equal(store.read_cell("id"), pd.read_parquet(io.BytesIO(frame.to_parquet(index=False))),
                                  check_exact=True)


@pytest.mark.fast
def test_cells_computed_by_workers_running_other_code_carry_the_workers_fingerprint(tmp_path, capsys):
    class OtherCodeWorkers(cf.Executor):
        """Runs cells inline but reports them as computed by another version of the code (a dask
        worker with another install)."""

        def submit(self, fn, *args, **kwargs):
            future = cf.Future()
            outcome = fn(*args, **kwargs)
            outcome.fingerprint, outcome.version = OTHER_CODE, "0.0.9"
            future.set_result(outcome)
            return future

    store = ResultsStore(tmp_path, "selftest")
    outcome = run_cells(_cells(), selftest_cell, store, executor=OtherCodeWorkers(), progress=False)
    assert "4 cell(s) were computed by workers running other code (fingerprints 0123456789ab (4)" in \
        capsys.readouterr().err
    assert outcome.fingerprints() == {"0123456789ab": {"xposim_version": "0.0.9", "cells": 4}}
    assert {store.cell_provenance(c)["fingerprint"] for c in outcome.provenance} == {OTHER_CODE}
    assert _run(store, _cells()).n_stale_recomputed == 4


@pytest.mark.fast
def test_cli_accept_stale_flag_and_locked_directory_message(tmp_path, capsys):
    from xposim.cli import main

    args = ["run", "selftest", "--quick", "--workers", "1", "--progress", "off", "--out", str(tmp_path)]
    assert main(args) == 0
    store = ResultsStore(tmp_path, "selftest")
    ids = json.loads((store.directory / "manifest.json").read_text())["cell_ids"]
    _make_stale(store, ids[:1])
    capsys.readouterr()
    assert main(args + ["--accept-stale"]) == 0
    assert "reusing 1 cell(s) computed by other code" in capsys.readouterr().err
    assert json.loads((store.directory / "manifest.json").read_text())["mixed_fingerprints"] is True
    # a directory held by another run: the holder's message alone, one line
    with ResultsStore(tmp_path, "selftest").lock():
        assert main(args) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("xposim: error: another xposim run (pid ")


def test_a_fresh_numba_cache_compiles_once_in_the_main_process_before_the_pool(tmp_path, monkeypatch, capsys):
    """With kernels to compile, the first cell runs in this process (so the pool workers load the
    cache instead of all compiling at once); the results are those of a one-worker run."""
    import xposim.harness.runner as runner

    cells = _cells()
    reference = _run(ResultsStore(tmp_path / "one", "selftest"), cells)
    monkeypatch.setattr(runner, "_kernels_need_compiling", lambda: True)
    capsys.readouterr()
    pooled = run_cells(cells, selftest_cell, ResultsStore(tmp_path / "two", "selftest"), workers=2, progress=False)
    assert "compiling kernels in this process first" in capsys.readouterr().err
    assert (pooled.n_run, pooled.n_skipped, pooled.n_failed) == (4, 0, 0)
    pd.testing.assert_frame_equal(pooled.results, reference.results, check_exact=True)
    # the first cell ran here, the others in the pool's workers
    where = run_cells(cells, _pid_cell, ResultsStore(tmp_path / "three", "selftest"), workers=2, progress=False)
    pids = where.results.groupby("cell_id", sort=False)["pid"].first()
    assert pids.iloc[0] == os.getpid() and (pids.iloc[1:] != os.getpid()).all()


def _pid_cell(point, seed):
    """A cell that records which process ran it."""
    return pd.DataFrame({"pid": [os.getpid()], "p": [point["p"]]})


@pytest.mark.fast
def test_a_file_system_without_locks_is_not_reported_as_another_run(tmp_path, monkeypatch):
    import errno
    import fcntl

    from xposim.harness.store import StoreLockedError

    def no_locks(fd, operation):
        raise OSError(errno.ENOLCK, "No locks available")

    monkeypatch.setattr(fcntl, "flock", no_locks)
    with pytest.raises(OSError, match="cannot lock .*may not support locks") as caught:
        with ResultsStore(tmp_path, "selftest").lock():
            pass
    assert not isinstance(caught.value, StoreLockedError)
