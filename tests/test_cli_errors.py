"""Every way a command line can go wrong ends in ONE ``xposim: error:`` line naming the argument, a
non-zero exit status and no traceback, and (for bad arguments) before any computation starts.

The cases are chosen so that each fails during argument or settings validation: no cell, no
training and no numba compilation runs in this file. The subprocess tests (the real command) are
not marked ``fast``: numba plays no part in them, so the ``NUMBA_DISABLE_JIT=1`` rerun would only
repeat them; the in-process ones are.
"""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from xposim.cli import main

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture(autouse=True)
def _no_debug(monkeypatch):
    monkeypatch.delenv("XPOSIM_DEBUG", raising=False)  # in-process main(): tracebacks off, as for a user


def xposim(*args: str, cwd: Path = REPO, **env: str) -> subprocess.CompletedProcess:
    environment = {k: v for k, v in os.environ.items() if k != "XPOSIM_DEBUG"}
    environment.update(OPENBLAS_NUM_THREADS="1", **env)
    return subprocess.run([sys.executable, "-m", "xposim", *args], cwd=cwd, capture_output=True, text=True,
                          timeout=300, env=environment)


def assert_one_error_line(result, *fragments: str, status: int = 2) -> str:
    assert result.returncode == status, (result.returncode, result.stdout, result.stderr)
    assert "Traceback" not in result.stderr, result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("xposim: error:"), result.stderr
    for fragment in fragments:
        assert fragment in lines[0], (fragment, lines[0])
    return lines[0]


def in_process(capsys, *argv: str) -> subprocess.CompletedProcess:
    status = main(list(argv))
    captured = capsys.readouterr()
    return subprocess.CompletedProcess(list(argv), status, captured.out, captured.err)


# ------------------------------------------------------------------------------------ --out
@pytest.mark.parametrize("command", [["demo"], ["lm", "--quick"], ["run", "selftest", "--quick"]])
def test_out_that_is_an_existing_file_is_refused(tmp_path, command):
    existing = tmp_path / "results.txt"
    existing.write_text("keep me\n")
    line = assert_one_error_line(xposim(*command, "--out", str(existing)), "--out", "existing file")
    assert str(existing) in line
    assert existing.read_text() == "keep me\n"


@pytest.mark.parametrize("command", [["demo"], ["lm", "--quick"], ["run", "selftest", "--quick"]])
def test_empty_out_is_refused(tmp_path, command):
    assert_one_error_line(xposim(*command, "--out", "", cwd=tmp_path), "--out must be a directory path, got ''")
    assert list(tmp_path.iterdir()) == []  # nothing written into the working directory


@pytest.mark.parametrize("command", [["demo"], ["lm", "--quick"], ["run", "selftest", "--quick"]])
def test_out_below_a_file_is_refused_before_the_run(tmp_path, command):
    blocker = tmp_path / "blocker"
    blocker.write_text("")
    assert_one_error_line(xposim(*command, "--out", str(blocker / "sub" / "dir")), "--out", "cannot be created",
                          "is a file, not a directory")


def test_unwritable_out_is_refused_before_the_run(tmp_path):
    locked = tmp_path / "locked"
    locked.mkdir()
    locked.chmod(0o555)
    try:
        if os.access(locked, os.W_OK):
            pytest.skip("this user (root) may write into a read-only directory")
        for command in (["demo"], ["lm", "--quick"], ["run", "selftest", "--quick"]):
            assert_one_error_line(xposim(*command, "--out", str(locked / "out")), "--out", "is not writable")
        assert list(locked.iterdir()) == []
    finally:
        locked.chmod(0o755)


@pytest.mark.fast
def test_unwritable_out_detected_by_access_check(tmp_path, capsys, monkeypatch):
    """The same check where the file system says no (a read-only mount, or the permission bits for
    a non-root user), simulated here so that it also runs as root."""
    target = tmp_path / "ro"
    target.mkdir()
    real_access = os.access
    monkeypatch.setattr(os, "access", lambda path, mode, **kw: False if Path(path) == target else
                        real_access(path, mode, **kw))
    for command in (["demo"], ["lm", "--quick"], ["run", "selftest", "--quick"]):
        assert_one_error_line(in_process(capsys, *command, "--out", str(target / "new")), "--out", "is not writable")
        assert_one_error_line(in_process(capsys, *command, "--out", str(target)), "--out", "is not writable")
    assert list(target.iterdir()) == []


# ------------------------------------------------------------------------------------ lm
def test_lm_eval_samples_zero_with_monte_carlo_scoring_is_refused_at_parse_time(tmp_path):
    out = tmp_path / "never"
    assert_one_error_line(xposim("lm", "--quick", "--eval-samples", "0", "--scoring", "monte_carlo", "--out", str(out)),
                          "--eval-samples", ">= 1", "monte_carlo")
    # auto on a tree too large to enumerate is Monte Carlo too
    assert_one_error_line(xposim("lm", "--quick", "--eval-samples", "0", "--scoring", "auto", "--vocab-size", "8",
                                 "--horizon", "8", "--out", str(out)), "--eval-samples", "auto")
    assert not out.exists()


@pytest.mark.fast
def test_lm_api_refuses_eval_samples_zero_with_monte_carlo_before_training(tmp_path):
    from xposim.lm.cli import LMExperiment, run_lm_experiment

    with pytest.raises(ValueError, match="eval_samples must be an integer >= 1"):
        run_lm_experiment(LMExperiment(quick=True, scoring="monte_carlo", eval_samples=0), tmp_path / "never")
    assert not (tmp_path / "never").exists()


@pytest.mark.fast
def test_lm_summary_line_prints_unmeasured_values(monkeypatch, capsys, tmp_path):
    """A summary whose values are ``None`` (NaN in the log: nothing measured) prints ``n/a`` instead of
    failing with a TypeError after the run (the files are written by then)."""
    import pandas as pd

    import xposim.lm.cli as lm_cli

    nan = float("nan")
    log = pd.DataFrame([{"round": 0, "labels": 0, "scoring": "monte_carlo", "mc/kl_regularized_value": nan,
                         "mc/kl_regularized_value_ci95": nan, "mc/kl_to_ref": nan, "mc/pattern_probability": nan,
                         "loss/dpo": nan, "loss/xpo": nan, "rewards/margins": nan, "rewards/accuracies": nan}])
    summary = {"learner": "xpo", "mode": "paper", "initial_value": None, "final_value": None, "optimal_value": None,
               "reference_reused": True, "reference_model": "m.npz", "log": "l.parquet", "figure": "f.png"}
    monkeypatch.setattr(lm_cli, "run_lm_experiment", lambda experiment, out: (summary, log))
    result = in_process(capsys, "lm", "--quick", "--scoring", "monte_carlo", "--progress", "off",
                        "--out", str(tmp_path))
    assert result.returncode == 0, result.stderr
    assert "J_beta n/a -> n/a (Monte Carlo estimates)" in result.stdout


# ------------------------------------------------------------------------------------ run: sizes, TOML
def test_seed_count_beyond_the_limit_is_refused(tmp_path):
    assert_one_error_line(xposim("run", "selftest", "--seeds", "1000000000", "--out", str(tmp_path / "o")),
                          "--seeds", "100000")
    config = tmp_path / "seeds.toml"
    config.write_text("seeds = 10000000000000000000000\n")
    assert_one_error_line(xposim("run", "selftest", "--config", str(config), "--out", str(tmp_path / "o")),
                          "'seeds'", "100000")
    assert not (tmp_path / "o").exists()


def test_cell_count_beyond_the_limit_is_refused(tmp_path):
    config = tmp_path / "cells.toml"
    config.write_text("seeds = 100000\np = [" + ", ".join(f"{k / 100:g}" for k in range(1, 12)) + "]\n")
    assert_one_error_line(xposim("run", "selftest", "--quick", "--config", str(config), "--out", str(tmp_path / "o")),
                          "11 points x 100000 seeds = 1100000 cells", "limit of 1000000 cells")
    assert not (tmp_path / "o").exists()


@pytest.mark.parametrize(
    "text, fragments",
    [
        ("fail_p = nan\n", ("'fail_p'", "finite")),
        ("sleep = inf\n", ("'sleep'", "finite")),
        ("fail_p = -inf\n", ("'fail_p'", "finite")),
        ("p = [0.3, nan]\n", ("'p'", "finite entries")),
    ],
)
def test_toml_nan_and_inf_name_the_setting(tmp_path, text, fragments):
    config = tmp_path / "c.toml"
    config.write_text(text)
    line = assert_one_error_line(
        xposim("run", "selftest", "--quick", "--config", str(config), "--out", str(tmp_path / "o")), *fragments)
    assert "JSON" not in line
    assert not (tmp_path / "o").exists()


@pytest.mark.fast
def test_sweep_limits_in_the_python_api():
    from xposim.harness.config import MAX_CELLS, MAX_SEEDS, check_seeds, check_sweep_size
    from xposim.harness.experiments import get_experiment

    assert (MAX_SEEDS, MAX_CELLS) == (10**5, 10**6)
    assert check_seeds(MAX_SEEDS) == MAX_SEEDS and check_sweep_size(10, MAX_SEEDS) == MAX_CELLS
    for bad in (0, MAX_SEEDS + 1, 10**22, True, 2.0):
        with pytest.raises(ValueError, match=r"'seeds' must be an integer in \[1, 100000\]"):
            check_seeds(bad)
    with pytest.raises(ValueError, match="limit of 1000000 cells"):
        check_sweep_size(11, MAX_SEEDS)
    with pytest.raises(ValueError, match=r"'seeds' must be an integer in \[1, 100000\]"):
        get_experiment("selftest").settings(quick=True, overrides={"seeds": 10**22})


# ------------------------------------------------------------------------------------ report
def _summary_dir(tmp_path: Path, summary) -> Path:
    run = tmp_path / "results" / "selftest"
    run.mkdir(parents=True)
    (run / "summary.json").write_text(json.dumps(summary))
    return tmp_path / "results"


@pytest.mark.parametrize(
    "summary",
    [[], {"experiment": "selftest", "predictions": [{"id": "S1", "prediction": "x", "measured": {"value": 1.0}}]}],
    ids=["list", "no-verdict"],
)
def test_report_over_a_malformed_summary_is_one_line(tmp_path, summary):
    directory = _summary_dir(tmp_path, summary)
    assert_one_error_line(xposim("report", str(directory)), "summary.json")
    assert not (directory / "report.md").exists()


def test_report_into_an_unwritable_directory_is_one_line(tmp_path):
    directory = _summary_dir(tmp_path, {"experiment": "selftest", "predictions": []})
    (directory / "report.md").mkdir()  # report.md cannot be written (works as root too)
    assert_one_error_line(xposim("report", str(directory)), "report")


@pytest.mark.fast
def test_report_turns_any_failure_of_report_into_one_line(tmp_path, capsys, monkeypatch):
    import xposim.harness.report as report

    def broken(directory):
        raise KeyError("verdict")

    monkeypatch.setattr(report, "write_report", broken)
    assert_one_error_line(in_process(capsys, "report", str(tmp_path)), "report of", str(tmp_path), "KeyError")

    def unwritable(directory):
        raise PermissionError(13, "Permission denied", str(Path(directory) / "report.md"))

    monkeypatch.setattr(report, "write_report", unwritable)
    assert_one_error_line(in_process(capsys, "report", str(tmp_path)), "Permission denied", "report.md")


# ------------------------------------------------------------------------------------ main()
@pytest.mark.fast
def test_unexpected_errors_are_one_line_with_a_debug_hint(capsys, monkeypatch):
    import xposim.cli as cli

    def boom(args):
        raise TypeError("an internal bug")

    monkeypatch.setitem(cli.SUBCOMMANDS, "demo", (cli.SUBCOMMANDS["demo"][0], cli.SUBCOMMANDS["demo"][1], boom))
    assert_one_error_line(in_process(capsys, "demo"), "internal error: TypeError: an internal bug",
                          "XPOSIM_DEBUG=1", status=1)
    monkeypatch.setenv("XPOSIM_DEBUG", "1")
    result = in_process(capsys, "demo")
    assert result.returncode == 1
    assert "Traceback" in result.stderr and "an internal bug" in result.stderr
    assert result.stderr.strip().splitlines()[-1] == "xposim: error: internal error: TypeError: an internal bug"


@pytest.mark.fast
@pytest.mark.parametrize(
    "exc, status, fragment",
    [
        (KeyboardInterrupt(), 130, "interrupted"),
        (PermissionError(13, "Permission denied", "/x/y"), 2, "Permission denied: '/x/y'"),
        (IsADirectoryError(21, "Is a directory", "/x/report.md"), 2, "Is a directory: '/x/report.md'"),
        (NotADirectoryError(20, "Not a directory", "/x/file/sub"), 2, "Not a directory"),
        (FileExistsError(17, "File exists", "/x"), 2, "File exists"),
        (ValueError("setting 'x' must be\nmultiline"), 2, "setting 'x' must be multiline"),
    ],
)
def test_expected_errors_are_one_line(capsys, monkeypatch, exc, status, fragment):
    import xposim.cli as cli

    def fail(args):
        raise exc

    monkeypatch.setitem(cli.SUBCOMMANDS, "demo", (cli.SUBCOMMANDS["demo"][0], cli.SUBCOMMANDS["demo"][1], fail))
    assert_one_error_line(in_process(capsys, "demo"), fragment, status=status)


# ------------------------------------------------------------------------------------ --progress
@pytest.mark.fast
def test_progress_is_one_option_on_run_lm_and_demo():
    from xposim.cli import build_parser, resolve_progress

    parser = build_parser()
    for argv in (["run", "selftest"], ["lm"], ["demo"]):
        assert parser.parse_args(argv).progress == "auto"
        assert parser.parse_args([*argv, "--progress", "off"]).progress == "off"
        with pytest.raises(Exception, match="--progress"):
            parser.parse_args([*argv, "--progress", "sometimes"])
    assert resolve_progress("on") is True and resolve_progress("off") is False
    assert parser.parse_args(["lm", "--no-progress"]).no_progress is True  # deprecated alias, still accepted


def test_deprecated_no_progress_contradicting_progress_on_is_one_line():
    assert_one_error_line(xposim("lm", "--quick", "--no-progress", "--progress", "on"),
                          "--no-progress", "--progress on")
