"""Every named experiment end to end on a tiny budget, the analyses on synthetic data with a known
answer (held / not held), and the harness cells against ``xposim.simulate``."""
from __future__ import annotations

import json
import math

import numpy as np
import pandas as pd
import pytest

from xposim.harness import run_experiment
from xposim.harness.experiments import all_experiments, get_experiment
from xposim.harness.verdicts import VERDICTS
from xposim.seeding import make_rng, spawn_seeds

CONTRACT = ["learner", "round", "queries", "kl_regularized_value", "suboptimality", "best_iterate_suboptimality",
            "average_iterate_suboptimality", "cumulative_regret", "kl_to_ref", "expected_reward", "argmax_regret"]

TINY = {
    "identities": {"seeds": 2, "vocab_sizes": [2], "horizons": [1, 2], "betas": [0.1], "rewards": ["terminal"]},
    "separation": {"seeds": 3, "betas": [0.05, 0.03], "rounds": 200, "checkpoints_per_decade": 8},
    "rate": {"seeds": 3, "rounds": [16, 32, 64, 128], "fit_from": 16},
    "coverage": {"seeds": 2, "arms": [2, 4], "good_arm_ref_probs": [0.1, 0.03], "rounds": 100,
                 "checkpoints_per_decade": 6},
    "alpha": {"seeds": 2, "betas": [0.1, 0.2], "alpha_ratios": [0.0, 0.01, 0.1, 1.0], "horizons": [16, 64]},
    "reward_range": {"seeds": 2, "r_maxes": [1.0, 2.0], "rounds": 100, "checkpoints_per_decade": 6},
    "linear": {"seeds": 2, "dims": [2, 3], "arm_counts": [4, 8], "optimal_arm_ref_probs": [0.1, 0.03], "rounds": 60,
               "n_arms": 4, "checkpoints_per_decade": 6},
    "overoptimization": {"seeds": 2, "betas": [0.05, 0.3], "dataset_sizes": [8, 32, 64], "fit_min_size": 8,
                         "n_covered": 4, "rare_exponents": [4, 6], "variants": ["headroom", "no_headroom"]},
    "practice": {"seeds": 2, "rounds": 60, "envs": ["two_arm"], "learners": ["xpo", "xpo_trl"]},
    "dueling": {"seeds": 2, "dims": [2, 3], "linear_arms": 6, "hidden_arms": 4, "rounds": 50, "fit_from": 8,
                "checkpoints_per_decade": 6, "learners": ["xpo", "maxinp"]},
    "selftest": {"seeds": 2, "flips": 200},
    "sweep": {"seeds": 2, "rounds": 40},
}


def test_every_experiment_has_a_tiny_setting_here():
    assert set(TINY) == {e.name for e in all_experiments()}


@pytest.mark.parametrize("name", list(TINY))
def test_experiment_quick_end_to_end(tmp_path, name):
    experiment = get_experiment(name)
    summary = run_experiment(name, tmp_path, quick=True, overrides=TINY[name], workers=1, progress=False)
    assert "analysis_error" not in summary, summary.get("analysis_traceback")
    assert summary["failed_cells"] == []
    settings = experiment.settings(True, TINY[name])
    assert summary["run"]["cells"] == len(experiment.points(settings)) * settings["seeds"]
    # every experiment of THEORY's predictions issues at least one verdict; `sweep` measures only
    assert bool(summary["predictions"]) == bool(experiment.predictions), "one verdict per prediction at least"
    for record in summary["predictions"]:
        assert record["verdict"] in VERDICTS
        assert record["held"] == {"held": True, "not held": False, "inconclusive": None}[record["verdict"]]
        assert record["prediction"] and record["rule"]
    directory = tmp_path / name
    assert json.loads((directory / "summary.json").read_text())["predictions"] == summary["predictions"]
    pngs = [f for f in summary["figures"] if f.endswith(".png")]
    assert pngs and all((directory / f).stat().st_size > 1000 for f in summary["figures"])
    assert {f[:-4] for f in pngs} == {f[:-4] for f in summary["figures"] if f.endswith(".svg")}
    results = pd.read_parquet(directory / "results.parquet")
    assert results["cell_id"].nunique() == summary["run"]["cells"]
    if experiment.needs_learners:
        assert set(CONTRACT) <= set(results.columns)
        assert np.all(np.isfinite(results["suboptimality"])) and results["suboptimality"].min() >= -1e-9


# ------------------------------------------------------------------ analyses on synthetic data
def _synthetic_separation(growth: dict[str, float], seeds: int = 40, budget: int = 100_000) -> pd.DataFrame:
    """Rows of a fake separation sweep: for each learner the gap drops below 1/8 at a geometric time
    with mean ~ exp(growth / (8 beta)) (growth 0: mean 3)."""
    rng = make_rng(1)
    rows = []
    grid = np.unique(np.geomspace(1, budget, 200).astype(int))
    for learner, b in growth.items():
        for beta in (0.05, 0.03, 0.02, 0.015):
            mean = 3.0 * math.exp(b / (8 * beta))
            for seed in range(seeds):
                hit = rng.geometric(min(1.0, 1.0 / mean))
                for q in np.concatenate([[0], grid]):
                    rows.append({"env": "two_arm", "learner": learner, "beta": beta, "seed": seed,
                                 "round": q, "queries": q, "suboptimality": 0.05 if q >= hit else 0.3})
    return pd.DataFrame(rows)


def test_separation_analysis_verdicts_on_synthetic_growth(tmp_path):
    experiment = get_experiment("separation")
    settings = experiment.settings(True, {"learners": ["online_dpo", "xpo"], "betas": [0.05, 0.03, 0.02, 0.015]})
    analysis = experiment.analyze(_synthetic_separation({"online_dpo": 1.0, "xpo": 0.0}), settings, tmp_path)
    verdicts = {p["id"]: p for p in analysis["predictions"]}
    passive, xpo = verdicts["E2:online_dpo@two_arm"], verdicts["E2:xpo@two_arm"]
    assert passive["verdict"] == "held" and abs(passive["measured"]["value"] - 1.0) < 0.25
    assert xpo["verdict"] == "held" and abs(xpo["measured"]["value"]) < 0.25
    # swapped roles: a flat "online DPO" and an exponentially growing "XPO" must both fail
    swapped = experiment.analyze(_synthetic_separation({"online_dpo": 0.0, "xpo": 1.0}), settings, tmp_path)
    verdicts = {p["id"]: p["verdict"] for p in swapped["predictions"]}
    assert verdicts == {"E2:online_dpo@two_arm": "not held", "E2:xpo@two_arm": "not held"}


def _synthetic_rate(slope: float, seeds: int = 12) -> pd.DataFrame:
    rng = make_rng(2)
    rows = []
    for seed in range(seeds):
        scale = math.exp(rng.normal(0, 0.2))
        for T in (16, 32, 64, 128, 256, 512, 1024):
            value = scale * 0.5 * T**slope * math.exp(rng.normal(0, 0.05))
            rows.append({"learner": "xpo", "seed": seed, "round": T, "queries": T,
                         "best_iterate_suboptimality": value})
    return pd.DataFrame(rows)


def _synthetic_overoptimization(rates: dict[str, str], seeds: int = 24) -> pd.DataFrame:
    """Fake E8 rows: per learner the regret tuned over beta follows ``rates`` ('log': 0.5/log n,
    'sqrt': 2/sqrt n), each beta off the tuned one is worse by log(beta/beta_n)^2; DPO's regret at
    the smallest beta rises with n in the headroom variant."""
    rng = make_rng(4)
    betas = [0.01, 0.03, 0.1, 0.3, 1.0]
    rows = []
    for variant in ("headroom", "no_headroom"):
        for learner, rate in rates.items():
            rate = rate if variant == "headroom" else "sqrt"
            for j, n in enumerate([256, 1024, 4096, 16384, 65536]):
                best = 0.5 / math.log(n) if rate == "log" else 2.0 / math.sqrt(n)
                tuned_beta = betas[-1 - j % len(betas)]
                for b in betas:
                    for seed in range(seeds):
                        regret = best * (1 + math.log(b / tuned_beta) ** 2) * (1 + 0.05 * rng.standard_normal())
                        if variant == "headroom" and learner == "dpo" and b == betas[0]:
                            regret = 0.3 + 0.02 * j + 0.01 * rng.standard_normal()
                        rows.append({"variant": variant, "learner": learner, "beta": b, "seed": seed, "queries": n,
                                     "regret": regret})
    return pd.DataFrame(rows)


def test_overoptimization_analysis_verdicts_on_synthetic_rates(tmp_path):
    experiment = get_experiment("overoptimization")
    settings = experiment.settings(False, {"fit_min_size": 256})
    paper = {p["id"]: p for p in experiment.analyze(_synthetic_overoptimization({"dpo": "log", "chipo": "sqrt"}),
                                                    settings, tmp_path)["predictions"]}
    assert paper["E8:dpo-tuned-rate"]["verdict"] == "held"
    assert paper["E8:chipo-tuned-rate"]["verdict"] == "held"
    assert paper["E8:dpo-not-monotone"]["verdict"] == "held"
    assert paper["E8:no-separation-without-headroom"]["verdict"] == "held"
    assert -0.25 < paper["E8:dpo-tuned-rate"]["measured"]["value"] < 0
    assert paper["E8:chipo-tuned-rate"]["measured"]["value"] == pytest.approx(-0.5, abs=0.05)
    swapped = {p["id"]: p for p in experiment.analyze(_synthetic_overoptimization({"dpo": "sqrt", "chipo": "log"}),
                                                      settings, tmp_path)["predictions"]}
    assert swapped["E8:dpo-tuned-rate"]["verdict"] == "not held"
    assert swapped["E8:chipo-tuned-rate"]["verdict"] == "not held"


def test_rate_analysis_verdicts_on_synthetic_power_laws(tmp_path):
    experiment = get_experiment("rate")
    settings = experiment.settings(True, {"fit_from": 16})
    fast = {p["id"]: p for p in experiment.analyze(_synthetic_rate(-1.0), settings, tmp_path)["predictions"]}
    assert fast["E3:xpo"]["verdict"] == "held"
    assert fast["E3:xpo"]["measured"]["low"] < -1.0 < fast["E3:xpo"]["measured"]["high"]
    assert fast["E3-bound:xpo"]["verdict"] == "held"  # 0.5 T^-1 is far below the (loose) bound
    slow = {p["id"]: p for p in experiment.analyze(_synthetic_rate(-0.2), settings, tmp_path)["predictions"]}
    assert slow["E3:xpo"]["verdict"] == "not held"


def test_alpha_best_ratio_refines_an_interior_minimum():
    from xposim.harness.experiments.alpha import best_ratio

    ratios = np.array([0.0, 0.01, 0.1, 1.0, 10.0])
    # a parabola in log ratio with its vertex at ratio 0.3
    means = (np.log(np.where(ratios > 0, ratios, 1e-9)) - math.log(0.3)) ** 2
    value, where = best_ratio(ratios, means)
    assert where == "interior" and value == pytest.approx(0.3, rel=1e-9)
    assert best_ratio(ratios, -ratios)[1] == "high edge"
    assert best_ratio(ratios, ratios)[1] == "low edge"


# ------------------------------------------------------------------ cells agree with xposim.simulate
def test_harness_cell_rows_equal_simulate_rows():
    from xposim.simulation import simulate
    from xposim.envs import two_arm_lower_bound
    from xposim.harness.experiments import common

    env = two_arm_lower_bound(0.05)
    checkpoints = [0, 1, 5, 20, 50]
    ours = common.run_one(env, "xpo", 0.05, 50, spawn_seeds(3, 2)[1], checkpoints)
    theirs = simulate(env, "xpo", 0.05, 50, seeds=[1], checkpoints=checkpoints, root_seed=3, workers=1)
    for column in CONTRACT[1:]:
        np.testing.assert_array_equal(ours[column].to_numpy(), theirs[column].to_numpy(), err_msg=column)


def test_impossible_experiment_settings_are_value_errors():
    with pytest.raises(ValueError, match="'betas'"):
        get_experiment("separation").settings(True, {"betas": [0.05]})
    with pytest.raises(ValueError, match="unknown learner"):
        get_experiment("separation").settings(True, {"learners": ["nope"]})
    with pytest.raises(ValueError, match="'alpha_schedule'"):
        get_experiment("rate").settings(True, {"alpha_schedule": "sometimes"})
    with pytest.raises(ValueError, match="trajectories"):
        get_experiment("identities").settings(True, {"vocab_sizes": [50], "horizons": [5]})


def test_learner_experiment_identical_for_one_and_two_workers(tmp_path):
    overrides = {"seeds": 2, "betas": [0.05, 0.03], "rounds": 100, "checkpoints_per_decade": 6,
                 "learners": ["online_dpo", "xpo"]}
    run_experiment("separation", tmp_path / "one", quick=True, overrides=overrides, workers=1, progress=False)
    run_experiment("separation", tmp_path / "two", quick=True, overrides=overrides, workers=2, progress=False)
    one = pd.read_parquet(tmp_path / "one" / "separation" / "results.parquet")
    two = pd.read_parquet(tmp_path / "two" / "separation" / "results.parquet")
    assert len(one) > 0
    pd.testing.assert_frame_equal(one, two, check_exact=True)


@pytest.mark.parametrize("name", ["separation", "coverage", "reward_range", "practice"])
def test_champion_starts_setting_reaches_bonus_cells_only_and_keeps_default_cell_ids(name):
    from xposim.harness.experiments import common
    from xposim.policies.solving import SolverSettings

    experiment = get_experiment(name)
    default = experiment.points(experiment.settings(False, {}))
    champion = experiment.points(experiment.settings(False, {"xpo_champion_starts": True}))
    assert len(default) == len(champion)
    for plain, marked in zip(default, champion):
        learner = common.make_learner_for(plain["learner"])
        bonus = learner.has_bonus and learner.mode == "paper" and plain["learner"] != "xpo_alpha0"
        assert "champion_starts" not in plain  # the default solver's cells keep their ids
        assert marked.get("champion_starts", False) is bonus
        overrides = common.learner_overrides(marked)
        assert overrides.get("solver") == (SolverSettings(champion_starts=True) if bonus else None)
    with pytest.raises(ValueError, match="'xpo_champion_starts'"):
        experiment.settings(True, {"xpo_champion_starts": 1})


def test_alpha_champion_starts_mark_only_the_runs_with_a_bonus():
    experiment = get_experiment("alpha")
    default = experiment.points(experiment.settings(True, {}))
    champion = experiment.points(experiment.settings(True, {"xpo_champion_starts": True}))
    for plain, marked in zip(default, champion, strict=True):
        assert "champion_starts" not in plain
        assert marked.get("champion_starts", False) is (marked["alpha_ratio"] > 0)
