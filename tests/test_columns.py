"""One vocabulary: every table xposim writes uses the same names and dtypes (xposim.columns)."""
from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

import xposim as xs
from xposim.columns import METRIC_COLUMNS, column_dtype, with_dtypes
from xposim.harness.experiments import common
from xposim.harness.runner import make_cells, run_cells
from xposim.harness.store import ResultsStore
from xposim.learners import metrics as engine_metrics


def _harness_cell(point, seed):
    env = common.make_env(point)
    return common.run_one(env, point["learner"], point["beta"], 20, seed, [0, 5, 20])


def _lm_log():
    from xposim.lm.model import Transformer, TransformerConfig
    from xposim.lm.preference import PreferenceConfig, run_preference_learning
    from xposim.lm.task import make_lm_task

    task = make_lm_task()
    config = TransformerConfig(vocab_size=task.vocab_size, max_len=task.sequence_length, d_model=8, n_heads=2,
                               n_layers=1)
    reference = Transformer(config, seed=0)
    run = run_preference_learning(task, reference, PreferenceConfig(learner="online_dpo", rounds=1, pairs_per_round=4,
                                                                    eval_samples=4, scoring="monte_carlo",
                                                                    progress=False), seed=2)
    return run.log


@pytest.fixture(scope="module")
def tables(tmp_path_factory):
    env = xs.envs.two_arm_lower_bound(0.1)
    simulated = xs.simulate(env, ["xpo", "dpo"], 0.1, 20, seeds=2, checkpoints=[0, 5, 20], workers=1)
    cells = make_cells("vocab", [{"env": "two_arm", "beta": 0.1, "learner": "xpo"},
                                 {"env": "two_arm", "beta": 0.1, "learner": "dpo"}], 2)
    store = ResultsStore(tmp_path_factory.mktemp("store"), "vocab")
    stored = run_cells(cells, _harness_cell, store, workers=1, progress=False).results  # read back from Parquet
    return {"simulate": simulated, "results.parquet": stored, "lm log": _lm_log()}


def test_the_metric_columns_have_one_source():
    assert engine_metrics.METRIC_COLUMNS[:len(METRIC_COLUMNS)] == METRIC_COLUMNS
    from xposim.simulation import COLUMNS

    assert COLUMNS == ("learner", "seed") + METRIC_COLUMNS


def test_every_table_uses_the_vocabulary_dtypes(tables):
    seen: dict[str, dict[str, object]] = {}
    for name, table in tables.items():
        assert "seed_index" not in table.columns, name
        for column in ("learner", "seed"):
            assert column in table.columns, (name, column)
        for column in table.columns:
            expected = column_dtype(column)
            if expected is not None:
                assert table[column].dtype == expected, (name, column, table[column].dtype, expected)
            seen.setdefault(column, {})[name] = table[column].dtype
    shared = {c: d for c, d in seen.items() if len(d) > 1}
    assert {"learner", "seed", "round"} <= set(shared)
    for column, dtypes in shared.items():
        assert len(set(map(str, dtypes.values()))) == 1, (column, dtypes)


def test_harness_and_simulate_share_the_metric_columns(tables):
    assert set(METRIC_COLUMNS) <= set(tables["results.parquet"].columns)
    assert list(tables["simulate"].columns) == ["learner", "seed", *METRIC_COLUMNS]


@pytest.mark.fast
def test_with_dtypes_leaves_unknown_columns_alone():
    frame = pd.DataFrame({"seed": [1.0], "solver_failures": [2.0], "arms": [3], "learner": ["x"]})
    out = with_dtypes(frame)
    assert out["seed"].dtype == np.int64 and out["solver_failures"].dtype == np.int64
    assert out["arms"].dtype == np.int64 and out["learner"].dtype == column_dtype("learner")


@pytest.mark.fast
def test_lm_seed_column_is_an_int():
    from xposim.lm.preference import seed_column

    assert seed_column(7) == 7
    assert seed_column(np.random.SeedSequence(5).spawn(3)[2]) == 2
    assert seed_column(np.random.SeedSequence(11)) == 11



def test_alpha_is_the_bonus_weight_and_never_nan(tables):
    stored = tables["results.parquet"]
    assert stored["alpha"].notna().all()
    assert set(stored.loc[stored["learner"] == "dpo", "alpha"]) == {0.0}
    from xposim.learners import make_learner
    from xposim.learners.config import alpha_values

    # XPO's default is Theorem 3.1's c beta / sqrt(T) (beta 0.1, T = 20 rounds in this table)
    assert set(stored.loc[stored["learner"] == "xpo", "alpha"]) == {alpha_values(make_learner("xpo").resolved_alpha(),
                                                                                  0.1, 20)[0]}
    assert (tables["lm log"]["alpha"] == 0.0).all()  # online DPO has no bonus there either
