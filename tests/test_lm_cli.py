"""``xposim lm``: end to end (subprocess, --quick --json) and its error lines."""
from __future__ import annotations

import json
import os
import subprocess
import sys

import pandas as pd
import pytest

from xposim.cli import main


def _run(*argv: str, timeout: float = 120.0) -> subprocess.CompletedProcess:
    env = dict(os.environ, OPENBLAS_NUM_THREADS="1")
    return subprocess.run([sys.executable, "-m", "xposim", "lm", *argv], capture_output=True, text=True,
                          timeout=timeout, env=env)


@pytest.fixture(scope="module")
def quick_run(tmp_path_factory):
    out = tmp_path_factory.mktemp("lm")
    result = _run("--quick", "--json", "--progress", "off", "--out", str(out))
    return out, result


def test_quick_json_run_end_to_end(quick_run):
    out, result = quick_run
    assert result.returncode == 0, result.stderr
    lines = result.stdout.strip().splitlines()
    summary = json.loads(lines[-1])
    for key in ("initial_value", "final_value", "optimal_value", "learner", "rounds", "best_value", "log", "figure"):
        assert key in summary
    assert summary["learner"] == "xpo" and summary["mode"] == "paper" and summary["rounds"] == 8
    assert summary["scoring"] == "exact" and summary["reference_reused"] is False
    # exact ground truth: the optimum is above everything the learner reached; XPO improved on pi_ref
    assert summary["initial_value"] < summary["final_value"] <= summary["best_value"] < summary["optimal_value"]
    # the per-round table: a header and rounds 0..8
    assert lines[0].split()[:3] == ["round", "labels", "J_beta"]
    assert [line.split()[0] for line in lines[1:10]] == [str(t) for t in range(9)]
    log = pd.read_parquet(summary["log"])
    assert len(log) == 9 and list(log["round"]) == list(range(9))
    for column in ("loss/dpo", "loss/xpo", "rewards/chosen", "rewards/rejected", "rewards/margins",
                   "rewards/accuracies", "objective/kl", "objective/entropy", "kl_regularized_value", "kl_to_ref",
                   "trl/objective_kl"):
        assert column in log.columns
    assert log["kl_regularized_value"].iloc[-1] == pytest.approx(summary["final_value"], abs=0)
    with open(summary["figure"], "rb") as handle:
        assert handle.read(8) == b"\x89PNG\r\n\x1a\n"
    assert (out / os.path.basename(summary["reference_model"])).exists()


def test_second_run_reuses_the_cached_reference(quick_run, capsys):
    out, first = quick_run
    assert first.returncode == 0, first.stderr
    code = main(["lm", "--quick", "--json", "--progress", "off", "--out", str(out), "--learner", "online_dpo",
                 "--rounds", "2"])
    assert code == 0
    summary = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert summary["reference_reused"] is True and summary["learner"] == "online_dpo" and summary["rounds"] == 2
    assert summary["initial_value"] == pytest.approx(json.loads(first.stdout.strip().splitlines()[-1])["initial_value"],
                                                     abs=0)


@pytest.mark.parametrize(
    "argv, needle",
    [
        (["--rounds", "0"], "--rounds"),
        (["--learner", "ppo"], "--learner"),
        (["--vocab-size", "8", "--horizon", "8"], "--scoring exact"),
        (["--learner", "dpo", "--alpha", "0.1"], "--alpha"),
        (["--beta", "-1"], "--beta"),
        (["--mode", "fast"], "--mode"),
    ],
)
def test_bad_settings_give_one_error_line(argv, needle, capsys, tmp_path):
    code = main(["lm", "--quick", "--out", str(tmp_path / "never"), *argv])
    captured = capsys.readouterr()
    assert code == 2
    lines = captured.err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("xposim: error:") and needle in lines[0]
    assert not (tmp_path / "never").exists()  # failed before any training


def test_error_exit_status_of_the_real_command(tmp_path):
    result = _run("--quick", "--rounds", "0", "--out", str(tmp_path))
    assert result.returncode == 2
    assert result.stderr.strip() == "xposim: error: --rounds must be an integer >= 1, got 0"
