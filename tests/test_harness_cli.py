"""The harness subcommands through the real ``xposim`` entry point (subprocess): listing, a quick
run with ``--json``, the report, and one clear error line (never a traceback) for bad input."""
from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]


def xposim(*args: str, cwd: Path = REPO) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "xposim", *args], cwd=cwd, capture_output=True, text=True,
                          timeout=300)


def assert_one_line_error(result: subprocess.CompletedProcess, *fragments: str) -> None:
    assert result.returncode == 2, (result.stdout, result.stderr)
    assert "Traceback" not in result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("xposim: error:"), result.stderr
    for fragment in fragments:
        assert fragment in lines[0]


def test_list_names_every_experiment_with_a_description():
    from xposim.harness.experiments import all_experiments

    result = xposim("list")
    assert result.returncode == 0
    lines = result.stdout.strip().splitlines()
    listed = [e for e in all_experiments() if e.listed]
    assert len(lines) == len(listed)
    for line, experiment in zip(lines, listed):
        assert line.split()[0] == experiment.name and experiment.description in line


def test_run_json_last_line_is_the_summary_and_report_links_figures(tmp_path):
    result = xposim("run", "selftest", "--quick", "--seeds", "2", "--workers", "1", "--out", str(tmp_path), "--json")
    assert result.returncode == 0, result.stderr
    summary = json.loads(result.stdout.strip().splitlines()[-1])
    assert summary == json.loads((tmp_path / "selftest" / "summary.json").read_text())
    assert summary["settings"]["seeds"] == 2 and summary["quick"] is True
    assert [p["id"] for p in summary["predictions"]] == ["S1"]
    for figure in summary["figures"]:
        assert (tmp_path / "selftest" / figure).stat().st_size > 0
    manifest = json.loads((tmp_path / "selftest" / "manifest.json").read_text())
    assert manifest["status"] == "complete" and manifest["root_seed"] == 0 and manifest["quick"] is True
    assert len(manifest["cell_ids"]) == 2 * len(manifest["settings"]["p"])

    report = xposim("report", str(tmp_path))
    assert report.returncode == 0
    text = (tmp_path / "report.md").read_text()
    assert report.stdout.strip() == text.strip()
    assert "| S1 |" in text and "](selftest/selftest_error.png)" in text


@pytest.mark.parametrize(
    "config, fragments",
    [
        ("flips = 'many'\n", ("'flips'", "int")),
        ("flip = 10\n", ("unknown setting 'flip'",)),
        ("p = [0.1, 'x']\n", ("'p'", "list of float")),
        ("flips = \n", ("not valid TOML",)),
        ("flips = 1\n", ("'flips'", ">= 2")),
        ("seeds = 0\n", ("'seeds'", "[1, 100000]")),
        ("[other]\nflips = 3\n", ("[other]",)),
    ],
)
def test_bad_config_is_one_clear_error_line(tmp_path, capsys, config, fragments):
    # in-process through the same entry point as the command (the subprocess tests below cover the
    # process boundary); nothing may run and nothing may be written
    from xposim.cli import main

    path = tmp_path / "bad.toml"
    path.write_text(config)
    status = main(["run", "selftest", "--quick", "--config", str(path), "--out", str(tmp_path / "out")])
    captured = capsys.readouterr()
    assert_one_line_error(subprocess.CompletedProcess([], status, captured.out, captured.err), *fragments)
    assert not (tmp_path / "out").exists()


def test_bad_names_paths_and_arguments_are_one_clear_error_line(tmp_path):
    assert_one_line_error(xposim("run", "no_such_experiment"), "unknown experiment 'no_such_experiment'")
    assert_one_line_error(xposim("run", "selftest", "--config", str(tmp_path / "missing.toml")), "does not exist")
    assert_one_line_error(xposim("run", "selftest", "--workers", "0"), "--workers")
    assert_one_line_error(xposim("run", "selftest", "--quick", "--scheduler", "nowhere", "--out", str(tmp_path)),
                          "tcp://HOST:PORT")
    assert_one_line_error(xposim("report", str(tmp_path / "missing")), "does not exist")
    assert_one_line_error(xposim("report", str(tmp_path)), "no experiment results")


@pytest.mark.fast
def test_settings_validation_types_and_table_overrides(tmp_path):
    from xposim.harness.config import load_config, validate_overrides

    defaults = {"rounds": 10, "beta": 0.1, "betas": [0.1, 0.2], "name": "x", "flag": False}
    out = validate_overrides(defaults, {"beta": 1, "betas": [1, 0.5], "rounds": 3}, "e")
    assert out["beta"] == 1.0 and isinstance(out["beta"], float) and out["betas"] == [1.0, 0.5]
    assert defaults["betas"] == [0.1, 0.2]  # defaults untouched
    for bad, fragment in [({"rounds": 2.5}, "'rounds' must be of type int"),
                          ({"rounds": True}, "'rounds' must be of type int"),
                          ({"flag": 1}, "'flag' must be of type bool"),
                          ({"betas": 0.1}, "'betas' must be of type list of float"),
                          ({"name": 3}, "'name' must be of type str"),
                          ({"nme": "y"}, "unknown setting 'nme'")]:
        with pytest.raises(ValueError, match=fragment):
            validate_overrides(defaults, bad, "e")
    path = tmp_path / "c.toml"
    path.write_text("seeds = 3\n[rate]\nseeds = 5\nbeta = 0.5\n[separation]\nrounds = 7\n")
    assert load_config(path, "rate") == {"seeds": 5, "beta": 0.5}
    assert load_config(path, "separation") == {"seeds": 3, "rounds": 7}


def test_a_closed_pipe_ends_quietly(tmp_path):
    """``xposim run ... | head -1``: the reader leaves early; no traceback, the results are written."""
    process = subprocess.Popen([sys.executable, "-m", "xposim", "run", "selftest", "--quick", "--seeds", "2",
                                "--out", str(tmp_path), "--progress", "off"], cwd=REPO, stdout=subprocess.PIPE,
                               stderr=subprocess.PIPE, text=True)
    process.stdout.readline()
    process.stdout.close()
    stderr = process.stderr.read()
    process.wait(timeout=300)
    assert "Traceback" not in stderr, stderr
    assert (tmp_path / "selftest" / "summary.json").exists()
