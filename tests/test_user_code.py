"""User code in sweeps: registered and referenced environments and learners, through `xposim run`."""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest

import xposim as xs
from xposim.harness import run_experiment
from xposim.learners import XPO, make_learner
from xposim.plugins import is_reference, load_reference

USER_CODE = Path(__file__).parent / "user_code"


@pytest.fixture
def user_path(monkeypatch):
    monkeypatch.syspath_prepend(str(USER_CODE))
    yield "my_xposim_plugins"


@pytest.mark.fast
def test_references_resolve_and_bad_ones_name_the_problem(user_path):
    assert is_reference("a.b:c") and not is_reference("xpo") and not is_reference("a:b:c")
    assert callable(load_reference(f"{user_path}:three_arm_bandit"))
    with pytest.raises(ValueError, match="cannot import module 'no_such_module_xyz'"):
        load_reference("no_such_module_xyz:f", "learner factory")
    with pytest.raises(ValueError, match="has no attribute 'missing'"):
        load_reference(f"{user_path}:missing")


@pytest.mark.fast
def test_make_env_and_make_learner_accept_references(user_path):
    env = xs.make_env(f"{user_path}:three_arm_bandit", gap=0.25)
    assert env.name == "user_three_arm(gap=0.25)" and env.n_leaves == 3
    learner = make_learner(f"{user_path}:strong_xpo", batch_size=2)
    assert isinstance(learner, XPO) and learner.alpha == 0.5 and learner.batch_size == 2
    assert learner.label == f"{user_path}:strong_xpo"
    with pytest.raises(ValueError, match="returned int, not a LearnerConfig"):
        make_learner(f"{user_path}:not_a_learner")
    with pytest.raises(ValueError, match="bad parameters"):
        xs.make_env(f"{user_path}:three_arm_bandit", arms=3)
    with pytest.raises(ValueError, match="unknown environment 'nope'"):
        xs.make_env("nope")


@pytest.mark.fast
def test_register_env_and_learner(user_path):
    from my_xposim_plugins import strong_xpo, three_arm_bandit

    from xposim.envs.registry import ENVIRONMENTS
    from xposim.learners import registry

    try:
        xs.register_env("user_three_arm", three_arm_bandit)
        xs.register_learner("user_xpo", strong_xpo)
        xs.register_learner("user_xpo_b4", XPO, batch_size=4)
        assert "user_three_arm" in xs.envs.env_names() and "user_xpo" in xs.learners.learner_names()
        assert xs.make_env("user_three_arm").n_leaves == 3
        assert make_learner("user_xpo").alpha == 0.5 and make_learner("user_xpo").label == "user_xpo"
        assert make_learner("user_xpo_b4").batch_size == 4
        with pytest.raises(ValueError, match="already registered"):
            xs.register_learner("user_xpo", strong_xpo)
        with pytest.raises(ValueError, match="already registered"):
            xs.register_env("needle", three_arm_bandit)
        with pytest.raises(ValueError, match="must be a lower-case identifier"):
            xs.register_learner("a:b", strong_xpo)
        # a registered learner runs in simulate like a built-in one
        table = xs.simulate(xs.make_env("user_three_arm"), ["user_xpo", "xpo"], 0.1, 20, seeds=2, workers=1)
        assert list(dict.fromkeys(table["learner"])) == ["user_xpo", "xpo"]
    finally:
        ENVIRONMENTS.pop("user_three_arm", None)
        registry._FACTORIES.pop("user_xpo", None)
        registry.LEARNERS.pop("user_xpo_b4", None)


def test_sweep_runs_user_code_like_simulate(user_path, tmp_path):
    overrides = {"env": f"{user_path}:three_arm_bandit", "env_params": {"gap": 0.5},
                 "learners": ["xpo", f"{user_path}:strong_xpo"], "rounds": 30, "seeds": 2, "beta": 0.1}
    summary = run_experiment("sweep", tmp_path, quick=True, workers=1, progress=False, overrides=overrides)
    assert summary["run"]["ran"] == 4 and summary["run"]["failed"] == 0 and summary["predictions"] == []
    results = pd.read_parquet(tmp_path / "sweep" / "results.parquet")
    env = xs.make_env(f"{user_path}:three_arm_bandit", gap=0.5)
    for label in overrides["learners"]:
        # the same numbers as simulate with the same seed tree (cells use child i of SeedSequence(0))
        expected = xs.simulate(env, make_learner(label), 0.1, 30, seeds=2, workers=1,
                               checkpoints=sorted(set(results["round"])))
        got = results[results["learner"] == label].sort_values(["seed", "round"]).reset_index(drop=True)
        pd.testing.assert_series_equal(got["suboptimality"], expected["suboptimality"], check_names=False,
                                       check_exact=True)
    assert any(f.endswith("sweep.png") for f in summary["figures"])


def test_sweep_through_the_cli_with_a_toml_of_references(tmp_path):
    config = tmp_path / "mine.toml"
    config.write_text('[sweep]\nenv = "my_xposim_plugins:three_arm_bandit"\nenv_params = {gap = 0.25, rare = 0.1}\n'
                      'learners = ["online_dpo", "my_xposim_plugins:strong_xpo"]\nrounds = 20\nseeds = 2\n')
    environment = {**os.environ, "PYTHONPATH": os.pathsep.join([str(USER_CODE), os.environ.get("PYTHONPATH", "")])}
    done = subprocess.run([sys.executable, "-m", "xposim", "run", "sweep", "--config", str(config), "--workers", "2",
                           "--out", str(tmp_path / "out"), "--progress", "off", "--json"],
                          capture_output=True, text=True, env=environment, timeout=600)
    assert done.returncode == 0, done.stderr
    summary = json.loads(done.stdout.strip().splitlines()[-1])
    assert summary["run"]["ran"] == 4 and summary["run"]["failed"] == 0
    learners = set(pd.read_parquet(tmp_path / "out" / "sweep" / "results.parquet")["learner"])
    assert learners == {"online_dpo", "my_xposim_plugins:strong_xpo"}
    # a reference that does not load is one error line before any cell runs
    config.write_text('[sweep]\nlearners = ["my_xposim_plugins:missing"]\n')
    done = subprocess.run([sys.executable, "-m", "xposim", "run", "sweep", "--config", str(config),
                           "--out", str(tmp_path / "out2")], capture_output=True, text=True, env=environment,
                          timeout=300)
    assert done.returncode == 2 and "Traceback" not in done.stderr
    assert "has no attribute 'missing'" in done.stderr and not (tmp_path / "out2" / "sweep" / "cells").exists()


@pytest.mark.fast
def test_learner_names_must_be_lower_case_since_lookups_are():
    with pytest.raises(ValueError, match="lower-case identifier"):
        xs.register_learner("MyXPO", XPO)


def test_sweep_on_a_library_name_uses_its_env_params(tmp_path):
    overrides = {"env": "needle", "env_params": {"vocab_size": 3, "horizon": 2, "beta": 0.1},
                 "learners": ["xpo"], "rounds": 10, "seeds": 1, "beta": 0.1}
    summary = run_experiment("sweep", tmp_path, quick=True, workers=1, progress=False, overrides=overrides)
    assert summary["run"]["ran"] == 1 and summary["run"]["failed"] == 0
    results = pd.read_parquet(tmp_path / "sweep" / "results.parquet")
    env = xs.make_env("needle", vocab_size=3, horizon=2, beta=0.1)
    expected = xs.simulate(env, "xpo", 0.1, 10, seeds=1, workers=1, checkpoints=sorted(set(results["round"])))
    pd.testing.assert_series_equal(results.sort_values("round")["suboptimality"].reset_index(drop=True),
                                   expected["suboptimality"], check_names=False, check_exact=True)


@pytest.mark.fast
def test_sweep_cells_change_when_the_users_module_changes(tmp_path, monkeypatch):
    from xposim.harness.experiments import get_experiment

    module = tmp_path / "edited_plugin.py"
    module.write_text("from xposim.learners import XPO\n\ndef mine(**kw):\n    return XPO(alpha=0.1, **kw)\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    experiment = get_experiment("sweep")
    settings = experiment.settings(True, {"learners": ["edited_plugin:mine"]})
    before = experiment.points(settings)[0]["user_code"]
    module.write_text("from xposim.learners import XPO\n\ndef mine(**kw):\n    return XPO(alpha=0.2, **kw)\n")
    after = experiment.points(settings)[0]["user_code"]
    assert set(before) == {"edited_plugin:mine"} and before != after


@pytest.mark.fast
def test_a_user_module_that_fails_to_import_is_a_one_line_error(tmp_path, monkeypatch):
    (tmp_path / "broken_plugin.py").write_text("raise RuntimeError('boom')\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    with pytest.raises(ValueError, match="importing module 'broken_plugin' raised RuntimeError: boom"):
        make_learner("broken_plugin:anything")


@pytest.mark.fast
def test_an_experiment_without_predictions_says_so():
    from xposim.harness.report import format_predictions

    assert format_predictions({"predictions": []}).startswith("no predictions: this experiment measures")


@pytest.mark.fast
def test_sweep_passes_its_beta_only_to_factories_that_take_one(user_path):
    from xposim.harness.experiments import get_experiment
    from xposim.harness.experiments.sweep import environment_parameters

    experiment = get_experiment("sweep")
    library = experiment.settings(True, {"env": "two_arm_lower_bound", "beta": 0.02})
    assert environment_parameters(library) == {"beta": 0.02}
    explicit = experiment.settings(True, {"env": "needle", "env_params": {"vocab_size": 2, "horizon": 2, "beta": 0.3}})
    assert environment_parameters(explicit)["beta"] == 0.3  # env_params win
    user = experiment.settings(True, {"env": f"{user_path}:three_arm_bandit"})  # no beta argument
    assert environment_parameters(user) == {}
