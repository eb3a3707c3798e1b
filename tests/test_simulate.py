"""xs.simulate: tidy table, seeds, determinism across workers, argument errors."""
from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from xposim import exact
from xposim.envs import random_token_mdp, two_arm_lower_bound
from xposim.learners import make_learner, run_learner
from xposim.seeding import spawn_seeds
from xposim.columns import STR_DTYPE
from xposim.simulation import COLUMNS, simulate

ENV = random_token_mdp(2, 3, 2, seed=0)


def test_table_shape_columns_and_values():
    table = simulate(ENV, ["xpo", "online_dpo", "dpo"], beta=0.2, rounds=30, seeds=3, checkpoints=[0, 10, 30], workers=1)
    assert list(table.columns) == list(COLUMNS)
    assert len(table) == 3 * 3 * 3
    assert table["round"].dtype == np.int64 and table["queries"].dtype == np.int64
    assert set(table["seed"]) == {0, 1, 2}
    assert table["learner"].dtype == STR_DTYPE  # str, as in every table (xposim.columns)
    assert list(dict.fromkeys(table["learner"])) == ["xpo", "online_dpo", "dpo"]  # rows in the order given
    online = table[table["learner"] != "dpo"]
    j_star = exact.solve(ENV, 0.2).value
    np.testing.assert_allclose(online["suboptimality"], j_star - online["kl_regularized_value"], atol=1e-12)
    assert np.all(online["best_iterate_suboptimality"] <= online["suboptimality"] + 1e-15)
    start = online[online["round"] == 0]
    assert np.all(start["cumulative_regret"] == 0) and np.all(start["kl_to_ref"] < 1e-12)
    offline = table[table["learner"] == "dpo"]
    assert offline["cumulative_regret"].isna().all() and np.all(offline["queries"] == 30)


def test_workers_and_executor_do_not_change_numbers():
    kwargs = dict(beta=0.2, rounds=40, seeds=[0, 3, 5], checkpoints=[0, 5, 40])
    learners = ["xpo", "online_dpo_greedy", "copo"]
    one = simulate(ENV, learners, workers=1, **kwargs)
    two = simulate(ENV, learners, workers=2, **kwargs)
    pd.testing.assert_frame_equal(one, two, check_exact=True)
    procs = simulate(ENV, ["xpo"], workers=2, executor="processes", **kwargs)
    mine = one[one["learner"] == "xpo"].reset_index(drop=True).astype({"learner": str})
    pd.testing.assert_frame_equal(mine, procs.astype({"learner": str}), check_exact=True)


def test_seeds_are_children_of_the_root_seed():
    table = simulate(ENV, "xpo", beta=0.2, rounds=20, seeds=[2], checkpoints=[20], root_seed=17, workers=1)
    child = spawn_seeds(17, 3)[2]
    direct = run_learner(ENV, make_learner("xpo"), 0.2, 20, checkpoints=[20], seed=child)
    assert table["kl_regularized_value"].iloc[0] == direct.metrics[0, 2]
    other = simulate(ENV, "xpo", beta=0.2, rounds=20, seeds=[2], checkpoints=[20], root_seed=18, workers=1)
    assert other["cumulative_regret"].iloc[0] != table["cumulative_regret"].iloc[0]
    # seed index i gives the same row whatever the other seeds are
    many = simulate(ENV, "xpo", beta=0.2, rounds=20, seeds=4, checkpoints=[20], root_seed=17, workers=2)
    assert many[many["seed"] == 2]["cumulative_regret"].iloc[0] == table["cumulative_regret"].iloc[0]


def test_default_checkpoints_are_log_spaced_with_zero_and_end():
    table = simulate(two_arm_lower_bound(0.05), "xpo", beta=0.05, rounds=1000, seeds=1, workers=1)
    rounds = table["round"].to_numpy()
    assert rounds[0] == 0 and rounds[1] == 1 and rounds[-1] == 1000
    assert np.all(np.diff(rounds) > 0) and 15 <= len(rounds) <= 40
    ratios = rounds[2:] / rounds[1:-1]
    assert ratios.max() <= 2.0


@pytest.mark.fast
def test_argument_errors():
    with pytest.raises(ValueError, match="unknown learner"):
        simulate(ENV, ["xpo", "nope"], beta=0.2, rounds=5)
    with pytest.raises(ValueError, match="unique"):
        simulate(ENV, ["xpo", make_learner("xpo", alpha=0.5)], beta=0.2, rounds=5)
    with pytest.raises(ValueError, match="beta"):
        simulate(ENV, "xpo", beta=-1.0, rounds=5)
    with pytest.raises(ValueError, match="rounds"):
        simulate(ENV, "xpo", beta=0.2, rounds=0)
    with pytest.raises(ValueError, match="seeds"):
        simulate(ENV, "xpo", beta=0.2, rounds=5, seeds=0)
    with pytest.raises(ValueError, match="seeds"):
        simulate(ENV, "xpo", beta=0.2, rounds=5, seeds=[1, 1])
    with pytest.raises(ValueError, match="workers"):
        simulate(ENV, "xpo", beta=0.2, rounds=5, workers=0)
    with pytest.raises(ValueError, match="checkpoints"):
        simulate(ENV, "xpo", beta=0.2, rounds=5, checkpoints=[-1, 2])
    with pytest.raises(ValueError, match="env"):
        simulate("env", "xpo", beta=0.2, rounds=5)
    with pytest.raises(ValueError, match="executor"):
        simulate(ENV, "xpo", beta=0.2, rounds=5, executor="gpu")
