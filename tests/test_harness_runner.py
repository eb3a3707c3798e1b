"""Runner and results store: stable cell ids and seeds, worker-count independence, resumption
(including after SIGKILL), failure isolation, and a dask.distributed cluster on loopback."""
from __future__ import annotations

import concurrent.futures as cf
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from xposim.harness import run_experiment
from xposim.harness.experiments import get_experiment
from xposim.harness.experiments.selftest import cell as selftest_cell
from xposim.harness.runner import Cell, make_cells, run_cells
from xposim.harness.store import ResultsStore
from xposim.seeding import spawn_seeds

REPO = Path(__file__).resolve().parents[1]
PYTHON = sys.executable


def _selftest_cells(seeds: int = 3, p=(0.2, 0.5), flips: int = 300, fail_p: float = -1.0, sleep: float = 0.0):
    experiment = get_experiment("selftest")
    settings = experiment.settings(True, {"p": list(p), "flips": flips, "seeds": seeds, "fail_p": fail_p,
                                          "sleep": sleep})
    return make_cells("selftest", experiment.points(settings), settings["seeds"], settings["root_seed"])


@pytest.mark.fast
def test_cell_id_is_stable_and_distinguishes_settings_and_seeds():
    a = Cell("exp", {"beta": 0.1, "learner": "xpo"}, 0, 0)
    b = Cell("exp", {"learner": "xpo", "beta": 0.1}, 0, 0)
    assert a.cell_id == b.cell_id and len(a.cell_id) == 16
    others = {Cell("exp", {"beta": 0.1, "learner": "xpo"}, 1, 0).cell_id,
              Cell("exp", {"beta": 0.1, "learner": "xpo"}, 0, 1).cell_id,
              Cell("exp", {"beta": 0.2, "learner": "xpo"}, 0, 0).cell_id,
              Cell("exp2", {"beta": 0.1, "learner": "xpo"}, 0, 0).cell_id}
    assert a.cell_id not in others and len(others) == 4


@pytest.mark.fast
def test_cell_seed_is_child_of_root_seed_for_any_number_of_seeds():
    for n in (3, 5, 9):
        children = spawn_seeds(7, n)
        assert np.array_equal(Cell("e", {}, 2, 7).seed_sequence().generate_state(4), children[2].generate_state(4))
    with pytest.raises(ValueError, match="seed_index"):
        Cell("e", {}, -1, 0)


@pytest.mark.fast
def test_make_cells_rejects_duplicate_points():
    with pytest.raises(ValueError, match="duplicate"):
        make_cells("e", [{"a": 1}, {"a": 1}], 2)


def test_results_identical_for_any_executor_and_worker_count(tmp_path):
    cells = _selftest_cells()
    inline = run_cells(cells, selftest_cell, ResultsStore(tmp_path / "a", "selftest"), workers=1, progress=False)
    pool = run_cells(cells, selftest_cell, ResultsStore(tmp_path / "b", "selftest"), workers=2, progress=False)
    with cf.ThreadPoolExecutor(3) as threads:
        threaded = run_cells(cells, selftest_cell, ResultsStore(tmp_path / "c", "selftest"), executor=threads,
                             progress=False)
    assert len(inline.results) > 0 and inline.n_run == len(cells)
    pd.testing.assert_frame_equal(inline.results, pool.results, check_exact=True)
    pd.testing.assert_frame_equal(inline.results, threaded.results, check_exact=True)
    # sweep order, one block per cell, each labelled with its id and seed index
    assert list(dict.fromkeys(inline.results["cell_id"])) == [c.cell_id for c in cells]
    assert set(inline.results["seed"]) == {0, 1, 2}


@pytest.mark.fast
def test_resume_skips_finished_cells_and_keeps_their_files(tmp_path):
    cells = _selftest_cells(seeds=2)
    store = ResultsStore(tmp_path, "selftest")
    first = run_cells(cells[:3], selftest_cell, store, workers=1, progress=False)
    assert first.n_run == 3
    mtimes = {p.name: p.stat().st_mtime_ns for p in store.cells_dir.iterdir()}
    again = run_cells(cells, selftest_cell, store, workers=1, progress=False)
    assert (again.n_skipped, again.n_run) == (3, len(cells) - 3)
    assert all(store.cells_dir.joinpath(name).stat().st_mtime_ns == t for name, t in mtimes.items())
    fresh = run_cells(cells, selftest_cell, ResultsStore(tmp_path / "fresh", "selftest"), workers=1, progress=False)
    pd.testing.assert_frame_equal(again.results, fresh.results, check_exact=True)


@pytest.mark.fast
def test_failing_cell_is_reported_with_its_id_and_others_are_kept(tmp_path):
    cells = _selftest_cells(seeds=2, p=(0.2, 0.5, 0.8), fail_p=0.5)
    store = ResultsStore(tmp_path, "selftest")
    outcome = run_cells(cells, selftest_cell, store, workers=1, progress=False)
    failing = {c.cell_id for c in cells if c.settings["p"] == 0.5}
    assert {f["cell_id"] for f in outcome.failures} == failing
    assert all("fails on purpose" in f["error"] and "RuntimeError" in f["error"] for f in outcome.failures)
    assert {f["cell_id"] for f in store.failures()} == failing
    assert set(outcome.results["p"]) == {0.2, 0.8}
    assert set(outcome.results["cell_id"]) == {c.cell_id for c in cells} - failing


def test_summary_lists_failed_cells(tmp_path):
    summary = run_experiment("selftest", tmp_path, quick=True, workers=2, progress=False,
                             overrides={"fail_p": 0.3, "seeds": 2, "flips": 200})
    assert len(summary["failed_cells"]) == 2
    assert all(f["settings"]["p"] == 0.3 for f in summary["failed_cells"])
    assert summary["run"]["failed"] == 2
    on_disk = json.loads((tmp_path / "selftest" / "summary.json").read_text())
    assert [f["cell_id"] for f in on_disk["failed_cells"]] == [f["cell_id"] for f in summary["failed_cells"]]
    manifest = json.loads((tmp_path / "selftest" / "manifest.json").read_text())
    assert manifest["status"] == "incomplete" and len(manifest["cell_ids"]) == 6


def test_sigkill_mid_sweep_then_rerun_loses_and_duplicates_nothing(tmp_path):
    config = tmp_path / "slow.toml"
    config.write_text("p = [0.2, 0.5, 0.8]\nflips = 300\nseeds = 4\nsleep = 0.25\n")
    out = tmp_path / "out"
    command = [PYTHON, "-m", "xposim", "run", "selftest", "--quick", "--workers", "1", "--out", str(out),
               "--config", str(config), "--progress", "off"]
    process = subprocess.Popen(command, cwd=REPO, start_new_session=True, stdout=subprocess.DEVNULL,
                               stderr=subprocess.PIPE)
    cells_dir = out / "selftest" / "cells"
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        if cells_dir.exists() and len(list(cells_dir.glob("*.parquet"))) >= 3:
            break
        time.sleep(0.02)
    os.killpg(process.pid, signal.SIGKILL)
    process.wait(timeout=30)
    assert process.returncode == -signal.SIGKILL
    survived = {p.stem for p in cells_dir.glob("*.parquet")}
    assert 3 <= len(survived) < 12
    for path in cells_dir.glob("*.parquet"):  # every persisted cell is complete
        assert len(pd.read_parquet(path)) > 0
    rerun = subprocess.run(command + ["--json"], cwd=REPO, capture_output=True, text=True, timeout=120)
    assert rerun.returncode == 0, rerun.stderr
    summary = json.loads(rerun.stdout.strip().splitlines()[-1])
    assert summary["run"]["skipped_already_done"] == len(survived)
    assert summary["run"]["ran"] == 12 - len(survived)
    assert survived <= {p.stem for p in cells_dir.glob("*.parquet")}
    resumed = pd.read_parquet(out / "selftest" / "results.parquet")
    rows_per_cell = resumed.groupby("cell_id").size()
    assert len(rows_per_cell) == 12 and rows_per_cell.nunique() == 1  # none lost, none duplicated
    uninterrupted = run_experiment("selftest", tmp_path / "clean", quick=True, workers=2, progress=False,
                                   overrides={"p": [0.2, 0.5, 0.8], "flips": 300, "seeds": 4, "sleep": 0.25})
    assert uninterrupted["run"]["ran"] == 12
    pd.testing.assert_frame_equal(resumed, pd.read_parquet(tmp_path / "clean" / "selftest" / "results.parquet"),
                                  check_exact=True)


def test_dask_local_cluster_matches_local_pool(tmp_path):
    distributed = pytest.importorskip("distributed")
    cells = _selftest_cells(seeds=2)
    local = run_cells(cells, selftest_cell, ResultsStore(tmp_path / "local", "selftest"), workers=2, progress=False)
    with distributed.LocalCluster(n_workers=2, threads_per_worker=1, processes=True, host="127.0.0.1",
                                  dashboard_address=None) as cluster:
        with distributed.Client(cluster) as client:
            remote = run_cells(cells, selftest_cell, ResultsStore(tmp_path / "dask", "selftest"),
                               executor=client.get_executor(), progress=False)
        summary = run_experiment("selftest", tmp_path / "addr", quick=True, scheduler=cluster.scheduler_address,
                                 progress=False, overrides={"p": [0.2, 0.5], "flips": 300, "seeds": 2})
    pd.testing.assert_frame_equal(local.results, remote.results, check_exact=True)
    by_address = pd.read_parquet(tmp_path / "addr" / "selftest" / "results.parquet")
    pd.testing.assert_frame_equal(local.results, by_address, check_exact=True)
    assert summary["run"]["ran"] == len(cells)


@pytest.mark.fast
def test_bad_scheduler_addresses_are_one_line_errors():
    from xposim.harness.runner import dask_executor

    with pytest.raises(ValueError, match="tcp://HOST:PORT"):
        with dask_executor("localhost"):
            pass
    pytest.importorskip("distributed")
    with pytest.raises(ValueError, match="cannot connect"):
        with dask_executor("tcp://127.0.0.1:9", timeout=1.0):
            pass
