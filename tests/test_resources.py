"""Bounded resources: requests that cannot fit are refused before they allocate (issue: hardening)."""
from __future__ import annotations

import tracemalloc

import numpy as np
import pytest

import xposim as xs
from xposim.learners import make_learner, run_learner
from xposim.learners.config import AlphaBlocks, ConstantAlpha, DecayingAlpha, TheoryAlpha, alpha_values
from xposim.resources import available_memory, check_memory, format_bytes
from xposim.seeding import child_seed, spawn_seeds


class _Stop(Exception):
    pass


def _stop(*_):
    raise _Stop


@pytest.mark.fast
def test_check_memory_states_both_numbers(monkeypatch):
    monkeypatch.setenv("XPOSIM_MEMORY_LIMIT", str(1 << 30))
    assert available_memory() <= 1 << 30
    check_memory(1 << 20, "a small request")
    with pytest.raises(ValueError, match=r"a big request needs about 2\.0 GiB .*1\.0 GiB available.*try less"):
        check_memory(2 << 30, "a big request", "try less")


@pytest.mark.fast
def test_format_bytes_any_size():
    assert format_bytes(1536) == "1.5 KiB"
    assert format_bytes(10) == "10 B"
    assert "2^20000" in format_bytes(2 ** 20000)  # beyond float range: no OverflowError


@pytest.mark.fast
def test_child_seed_matches_spawn():
    for i in (0, 3, 9):
        assert child_seed(5, i).generate_state(4).tolist() == spawn_seeds(5, 10)[i].generate_state(4).tolist()
    with pytest.raises(ValueError, match="seed index"):
        child_seed(5, -1)


def test_simulate_refuses_a_billion_seeds_before_allocating():
    env = xs.envs.two_arm_lower_bound(0.05)
    tracemalloc.start()
    try:
        with pytest.raises(ValueError, match=r"simulate with 1 learner\(s\) x 1000000000 seed\(s\).*needs about .* available"):
            xs.simulate(env, "xpo", 0.05, 5, seeds=10 ** 9)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert peak < 50e6  # the seed list is never built


@pytest.mark.parametrize("schedule", [ConstantAlpha(0.3), TheoryAlpha(0.7), DecayingAlpha(0.5)])
@pytest.mark.fast
def test_alpha_blocks_equal_the_full_array(schedule):
    full = alpha_values(schedule, 0.1, 1000)
    blocks = AlphaBlocks(schedule, 0.1, 1000)
    got = np.concatenate([blocks.block(first, min(64, 1001 - first)) for first in range(1, 1001, 64)])
    assert np.array_equal(got, full)


@pytest.mark.fast
def test_alpha_blocks_of_a_schedule_without_values_at():
    class Steps:
        def values(self, beta, rounds):
            return np.where(np.arange(rounds) < 5, 1.0, 0.5) * beta

    blocks = AlphaBlocks(Steps(), 0.2, 10)
    assert np.array_equal(blocks.block(4, 3), [0.2, 0.2, 0.1])

    class Bad:
        def values(self, beta, rounds):
            return np.full(rounds, np.nan)

        def values_at(self, beta, rounds, t):
            return np.full(len(t), -1.0)

    with pytest.raises(ValueError, match="finite and >= 0"):
        AlphaBlocks(Bad(), 0.2, 10).block(1, 3)


def test_run_memory_does_not_grow_with_rounds():
    """``rounds = 10**12`` used to allocate a (rounds,) alpha array (numpy allocation error);
    now the run holds one block of rounds at a time: stop it after the first block."""
    env = xs.envs.two_arm_lower_bound(0.05)
    learner = make_learner("xpo", alpha=DecayingAlpha(0.5))
    tracemalloc.start()
    try:
        with pytest.raises(_Stop):
            run_learner(env, learner, 0.05, 10 ** 12, checkpoints=[0, 10 ** 12], on_chunk=_stop, chunk_rounds=64)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert peak < 50e6


@pytest.mark.parametrize("name", ["xpo", "offline_dpo"])
def test_block_size_does_not_change_results(name):
    env = xs.envs.random_token_mdp(3, 2, 2, seed=1)
    learner = make_learner(name, alpha=DecayingAlpha(0.5)) if name == "xpo" else make_learner(name)
    a = run_learner(env, learner, 0.1, 50, seed=3, chunk_rounds=7)
    b = run_learner(env, learner, 0.1, 50, seed=3, chunk_rounds=4096)
    assert np.array_equal(a.metrics, b.metrics, equal_nan=True)


def test_run_learner_refuses_what_cannot_fit(monkeypatch):
    env = xs.envs.two_arm_lower_bound(0.05)
    monkeypatch.setenv("XPOSIM_MEMORY_LIMIT", "1000")
    with pytest.raises(ValueError, match=r"run_learner\('xpo', rounds=10\).*needs about"):
        run_learner(env, make_learner("xpo"), 0.05, 10)


def test_fresh_cache_is_detected_and_announced_once(tmp_path, monkeypatch, capsys):
    """With an empty numba cache the fused kernel needs compiling (checked in a subprocess, no
    compile is run); the announcement is one line, once per process."""
    import os
    import subprocess
    import sys

    from xposim.learners import fused, runner
    from xposim.policies import TabularClass

    if not hasattr(fused.run_rounds_tabular, "signatures"):
        pytest.skip("numba JIT disabled in this process")
    code = ("from xposim.learners.runner import kernels_need_compiling;"
            "from xposim.policies import TabularClass; print(kernels_need_compiling(TabularClass()))")
    environment = {**os.environ, "NUMBA_CACHE_DIR": str(tmp_path / "cache")}
    done = subprocess.run([sys.executable, "-c", code], env=environment, capture_output=True, text=True, timeout=300)
    assert done.stdout.strip() == "True", done.stderr
    run_learner(xs.envs.two_arm_lower_bound(0.1), make_learner("dpo"), 0.1, 2)  # compiled (or loaded) here
    assert runner.kernels_need_compiling(TabularClass()) is False
    monkeypatch.setattr(runner, "_ANNOUNCED", False)
    monkeypatch.setattr(runner, "kernels_need_compiling", lambda pclass: True)
    runner.announce_compilation(TabularClass())
    runner.announce_compilation(TabularClass())
    assert capsys.readouterr().err == "xposim: compiling kernels, first run only (cached for the next runs)\n"


def test_memory_estimate_follows_the_pair_store_of_each_mode(monkeypatch):
    """trl mode keeps one pair; paper mode's store grows with distinct pairs up to C L (L - 1)."""
    from xposim.learners.runner import estimate_run_bytes

    env = xs.envs.hidden_arm_bandit(2 ** 12, 0.01)
    trl = estimate_run_bytes(env, make_learner("xpo_trl"), 10 ** 8, 10)
    paper = estimate_run_bytes(env, make_learner("xpo"), 10 ** 8, 10)
    small = estimate_run_bytes(env, make_learner("xpo"), 10, 10)
    assert trl < 50e6 < paper  # 10^8 rounds: trl ~ the per-leaf arrays, paper ~ 16 words x 1.7e7 pairs
    assert paper == estimate_run_bytes(env, make_learner("xpo"), 10 ** 9, 10)  # capped by C L (L - 1)
    # (a certified run also holds the branch-and-bound's workspace and kept searches: 8 certified_words)
    from xposim.learners.config import SolverSettings
    from xposim.policies.tabular.state import FRONTIER_SLOTS, certified_words
    local = estimate_run_bytes(env, make_learner("xpo", solver=SolverSettings(argmin="local")), 10, 10)
    assert local < trl + 1e6
    assert small == local + 8 * certified_words(env.n_leaves, 10, SolverSettings().max_nodes,
                                                min(env.n_contexts, FRONTIER_SLOTS))
    monkeypatch.setenv("XPOSIM_MEMORY_LIMIT", str(int(4e9)))  # 10^8 trl rounds fit (they used to be refused)
    with pytest.raises(_Stop):
        run_learner(env, make_learner("xpo_trl"), 0.1, 10 ** 8, checkpoints=[0], on_chunk=_stop, chunk_rounds=8)
