"""``sweep``: any environment, any learners, the exact metrics — the user's own code in a sweep.

Not a prediction of the theory: a measurement bench. Settings name an environment (``env``: a
name of :func:`xposim.envs.env_names` or a reference ``"package.module:function"``, built with the
keyword parameters ``env_params``, plus ``beta=`` the sweep's ``beta`` when the factory takes a
``beta`` that ``env_params`` does not set) and learners (``learners``: registry names, harness labels or
references ``"package.module:function"`` to a factory returning a ``LearnerConfig``). Every
(learner, seed) is one cell, run by :func:`xposim.learners.run_learner` on ``policy_class`` with
the exact metrics of ``xposim.simulate`` at log-spaced checkpoints, so the local pool, dask
workers and resumption work as for the named experiments (workers import the referenced modules
themselves: the modules must be importable there, e.g. on ``PYTHONPATH``). xposim's code
fingerprint does not cover the user's modules; instead the sha256 of each referenced module's source
file is part of the cell's settings, so editing it gives new cells rather than reusing old ones.

The analysis draws the mean suboptimality ``J(pi*) - J(pi_t)`` against queries with 95%
t-bands, one curve per learner, and tabulates the final metrics; it makes no verdict.

Example (``my_config.toml``)::

    [sweep]
    env = "mypackage.instances:hard_bandit"
    env_params = {arms = 16}
    learners = ["xpo", "online_dpo", "mypackage.learners:my_xpo"]
    beta = 0.05
    rounds = 2000
    seeds = 16

and ``xposim run sweep --config my_config.toml --workers 2``.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from xposim.harness.experiments import common
from xposim.harness.experiments.base import Experiment, register_experiment

#: Metrics tabulated at the last checkpoint.
FINAL_METRICS = ("suboptimality", "best_iterate_suboptimality", "average_iterate_suboptimality", "kl_to_ref",
                 "expected_reward", "argmax_regret")


def points(settings: dict[str, Any]) -> list[dict[str, Any]]:
    from xposim.plugins import is_reference, reference_source_hash

    grid = [int(t) for t in common.checkpoint_grid(settings["rounds"], settings["checkpoints_per_decade"])]
    env_params = environment_parameters(settings)
    out = []
    for learner in settings["learners"]:
        point = {"env": settings["env"], "env_params": env_params, "beta": settings["beta"],
                 "learner": learner, "rounds": settings["rounds"], "grid": grid,
                 "policy_class": settings["policy_class"]}
        # the user's code is not in xposim's fingerprint: its source hash goes into the cell's id, so
        # an edited module gives new cells instead of reusing the old ones
        references = [r for r in (settings["env"], learner) if is_reference(r)]
        if references:
            point["user_code"] = {r: reference_source_hash(r) for r in references}
        out.append(point)
    return out


def environment_parameters(settings: dict[str, Any]) -> dict[str, Any]:
    """``env_params``, plus the sweep's ``beta`` when the factory takes a ``beta`` argument that
    ``env_params`` does not set (the library's instances depend on beta: Proposition 2.1's arm)."""
    import inspect

    from xposim import envs

    params = dict(settings["env_params"])
    try:
        accepts_beta = "beta" in inspect.signature(envs.env_factory(settings["env"])).parameters
    except (TypeError, ValueError):
        accepts_beta = False
    if accepts_beta and "beta" not in params:
        params["beta"] = settings["beta"]
    return params


def cell(point: dict[str, Any], seed: np.random.SeedSequence) -> pd.DataFrame:
    env = common.make_env(point)
    return common.run_one(env, point["learner"], point["beta"], point["rounds"], seed, point["grid"],
                          policy_class=point["policy_class"])


def analyze(results: pd.DataFrame, settings: dict[str, Any], directory: Path) -> dict[str, Any]:
    from xposim.harness import plots, stats

    last_round = int(results["round"].max())
    table = []
    for learner, group in results[results["round"] == last_round].groupby("learner", sort=False):
        row: dict[str, Any] = {"learner": learner, "T": last_round, "seeds": int(group["seed"].nunique())}
        for metric in FINAL_METRICS:
            interval = stats.mean_interval(group[metric].to_numpy())
            row[metric] = interval.estimate
            row[metric + "_half_width"] = (interval.high - interval.low) / 2
        table.append(row)
    band = stats.mean_band(results[results["round"] > 0], ["learner"], "queries", "suboptimality")
    curves = [plots.Curve(label, g["queries"], g["mean"], g["low"], g["high"])
              for label, g in band.groupby("learner", sort=False)]
    figures = plots.curve_plot(directory, "sweep", f"sweep on {settings['env']} (beta = {settings['beta']:g})",
                               "queries (preference labels)", "J(π*) − J(π_t) (mean, 95% t-band)", curves,
                               logx=True, logy=True, note=f"policy class: {settings['policy_class']}")
    return {"predictions": [], "figures": figures, "tables": {"final": table}}


def check(settings: dict[str, Any]) -> None:
    from xposim import envs
    from xposim.learners.runner import POLICY_CLASS_NAMES
    from xposim.plugins import is_reference

    if not isinstance(settings["env"], str) or not (settings["env"] in envs.env_names() or is_reference(settings["env"])):
        raise ValueError(f"setting 'env' must be one of {', '.join(envs.env_names())} or a reference "
                         f"'package.module:function', got {settings['env']!r}")
    if settings["beta"] <= 0:
        raise ValueError(f"setting 'beta' must be > 0, got {settings['beta']}")
    if settings["rounds"] < 1 or settings["checkpoints_per_decade"] < 1:
        raise ValueError("settings need rounds >= 1 and checkpoints_per_decade >= 1")
    if not settings["learners"]:
        raise ValueError("setting 'learners' must name at least one learner")
    common.learner_label_check(settings["learners"])
    if settings["policy_class"] not in POLICY_CLASS_NAMES or settings["policy_class"] == "finite":
        names = [n for n in POLICY_CLASS_NAMES if n != "finite"]
        raise ValueError(f"setting 'policy_class' must be one of {names}, got {settings['policy_class']!r}")
    common.make_env({"env": settings["env"], "env_params": environment_parameters(settings)})  # fails here


_COMMON = {"env": "two_arm_lower_bound", "env_params": {}, "beta": 0.05,
           "learners": ["xpo", "online_dpo"], "checkpoints_per_decade": 8, "policy_class": "tabular"}
SWEEP = register_experiment(Experiment(
    name="sweep",
    predictions=(),
    description="any environment and learners (yours too: 'package.module:function'), exact metrics, no verdict",
    quick={**_COMMON, "rounds": 200, "seeds": 4},
    full={**_COMMON, "rounds": 10000, "seeds": 32},
    points=points, cell=cell, analyze=analyze, check=check,
))
