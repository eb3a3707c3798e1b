"""TokenMDP construction, validation, immutability, and the instance library."""
import dataclasses
import itertools
import math
import pickle
import tracemalloc
import warnings

import numpy as np
import pytest

from xposim.envs import (
    TokenMDP,
    linear_bandit,
    linear_token_mdp,
    needle,
    random_token_mdp,
    tree,
    two_arm_lower_bound,
)

pytestmark = pytest.mark.fast

SHAPES = [(2, 1), (2, 2), (3, 2), (2, 4), (3, 3)]


# ----------------------------------------------------------------------------- helpers
def random_arrays(n_contexts, vocab_size, horizon, seed=0):
    rng = np.random.default_rng(seed)
    n_states = tree.n_states(vocab_size, horizon)
    rho = rng.dirichlet(np.ones(n_contexts))
    ref = rng.dirichlet(np.ones(vocab_size), size=(n_contexts, n_states))
    rewards = rng.uniform(0.0, 1.0 / horizon, size=(n_contexts, n_states, vocab_size))
    features = rng.normal(size=(n_contexts, vocab_size**horizon, 2))
    return rho, ref, rewards, features


def brute_force_trajectories(env, per_token):
    """Sum of per_token[x, state(prefix), a] over every token sequence, via itertools.product."""
    out = np.zeros((env.n_contexts, env.n_leaves))
    for x in range(env.n_contexts):
        for tokens in itertools.product(range(env.vocab_size), repeat=env.horizon):
            total = 0.0
            for h, a in enumerate(tokens):
                total += per_token[x, tree.state_index(tokens[:h], env.vocab_size), a]
            out[x, tree.leaf_index(tokens, env.vocab_size)] = total
    return out


# ----------------------------------------------------------------------------- numbering
@pytest.mark.parametrize("vocab_size,horizon", SHAPES)
def test_numbering_round_trips_and_heap_child_rule(vocab_size, horizon):
    n_states = tree.n_states(vocab_size, horizon)
    seen_children = []
    for s in range(n_states):
        prefix = tree.state_prefix(s, vocab_size)
        assert len(prefix) < horizon
        assert tree.state_index(prefix, vocab_size) == s
        for a in range(vocab_size):
            child = vocab_size * s + 1 + a
            extended = prefix + (a,)
            if len(extended) < horizon:
                assert tree.state_index(extended, vocab_size) == child
            else:
                assert child >= n_states
                assert tree.leaf_index(extended, vocab_size) == child - n_states
            seen_children.append(child)
    # every node except the root is the child of exactly one state
    assert sorted(seen_children) == list(range(1, n_states + vocab_size**horizon))
    env = random_token_mdp(1, vocab_size, horizon, seed=0)
    tokens = env.trajectories()
    assert tokens.shape == (vocab_size**horizon, horizon)
    for k, row in enumerate(tokens):
        assert tree.leaf_index(tuple(row), vocab_size) == k
        assert [tree.state_index(tuple(row[:h]), vocab_size) for h in range(horizon)] == list(env.leaf_path_states[k])


# ----------------------------------------------------------------------------- construction
@pytest.mark.parametrize("vocab_size,horizon", SHAPES)
def test_from_arrays_matches_from_functions_and_brute_force(vocab_size, horizon):
    rho, ref, rewards, features = random_arrays(3, vocab_size, horizon, seed=vocab_size * 10 + horizon)
    env = TokenMDP.from_arrays(rho, ref, rewards, features=features, r_max=1.0, name="a")
    assert (env.vocab_size, env.horizon, env.n_contexts) == (vocab_size, horizon, 3)
    assert env.n_states == tree.n_states(vocab_size, horizon) and env.n_leaves == vocab_size**horizon
    assert env.feature_dim == 2
    built = TokenMDP.from_functions(
        rho,
        vocab_size,
        horizon,
        ref=lambda x, prefix: ref[x, tree.state_index(prefix, vocab_size)],
        reward=lambda x, prefix, a: rewards[x, tree.state_index(prefix, vocab_size), a],
        features=lambda x, tokens: features[x, tree.leaf_index(tokens, vocab_size)],
        r_max=1.0,
        name="f",
    )
    for field in ("rho", "ref_probs", "rewards", "features", "log_ref_probs", "trajectory_rewards"):
        assert np.array_equal(getattr(env, field), getattr(built, field)), field
    np.testing.assert_allclose(env.trajectory_rewards, brute_force_trajectories(env, rewards), rtol=0, atol=1e-14)
    with np.errstate(divide="ignore"):
        brute_log_ref = brute_force_trajectories(env, np.log(env.ref_probs))
    np.testing.assert_allclose(env.trajectory_ref_logprobs, brute_log_ref, rtol=1e-13, atol=1e-13)
    for array in (env.rho, env.ref_probs, env.rewards, env.features, env.trajectory_rewards, env.log_ref_probs):
        assert array.dtype == np.float64 and array.flags.c_contiguous and not array.flags.writeable


def test_terminal_only_places_rewards_on_the_last_token():
    rng = np.random.default_rng(3)
    ref = rng.dirichlet(np.ones(3), size=(2, tree.n_states(3, 3)))
    leaf = rng.uniform(0, 2.0, size=(2, 27))
    env = TokenMDP.terminal_only([0.25, 0.75], ref, leaf, r_max=2.0)
    assert np.array_equal(env.trajectory_rewards, leaf)
    assert np.all(env.rewards[:, : tree.level_start(3, 2), :] == 0.0)
    np.testing.assert_array_equal(brute_force_trajectories(env, env.rewards), leaf)


def test_normalization_is_exact_and_log_of_zero_is_silent():
    ref = np.array([[[0.5 + 4e-10, 0.5, 0.0]]])
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        env = TokenMDP.from_arrays([1.0 + 5e-10], ref, np.zeros((1, 1, 3)))
        log_ref = env.log_ref_probs
        assert env.trajectory_ref_logprobs[0, 2] == -np.inf
    assert env.rho[0] == 1.0
    assert env.ref_probs.sum() == pytest.approx(1.0, abs=1e-16)
    assert log_ref[0, 0, 2] == -np.inf and np.isfinite(log_ref[0, 0, :2]).all()


def test_immutability_and_pickle():
    env = random_token_mdp(2, 2, 2, seed=1, feature_dim=3)
    with pytest.raises(dataclasses.FrozenInstanceError):
        env.r_max = 2.0
    with pytest.raises(dataclasses.FrozenInstanceError):
        env.rho = np.ones(2) / 2
    for name in ("rho", "ref_probs", "rewards", "features", "log_ref_probs", "trajectory_rewards",
                 "trajectory_ref_logprobs"):
        with pytest.raises(ValueError, match="read-only"):
            getattr(env, name)[0] = 0.0
    with pytest.raises(ValueError, match="read-only"):
        env.trajectories()[0, 0] = 1
    source = np.array([[[0.3, 0.7]]])
    built = TokenMDP.from_arrays([1.0], source, np.zeros((1, 1, 2)))
    source[0, 0, 0] = 0.9  # the env holds a copy
    assert built.ref_probs[0, 0, 0] == 0.3
    clone = pickle.loads(pickle.dumps(env))
    assert np.array_equal(clone.ref_probs, env.ref_probs) and not clone.ref_probs.flags.writeable
    assert "TokenMDP(" in repr(env) and "vocab_size=2" in repr(env)


# ----------------------------------------------------------------------------- bad inputs
GOOD_RHO = np.array([0.5, 0.5])
GOOD_REF = np.full((2, 3, 2), 0.5)
GOOD_REW = np.zeros((2, 3, 2))


@pytest.mark.parametrize(
    "kwargs,match",
    [
        (dict(rho=[1.5, -0.5]), "rho must be finite and non-negative"),
        (dict(rho=[0.5, 0.6]), "rho must sum to 1"),
        (dict(rho=[np.nan, 1.0]), "rho must be finite"),
        (dict(rho=[1.0]), r"rho must have shape \(n_contexts,\) = \(2,\)"),
        (dict(ref_probs=np.full((2, 3, 2), 0.6)), r"ref_probs\[0, 0, :\] sums to"),
        (dict(ref_probs=np.tile([[1.5, -0.5]], (2, 3, 1))), "ref_probs must be non-negative"),
        (dict(ref_probs=np.where(np.arange(2) == 0, np.nan, 0.5) * np.ones((2, 3, 2))), "ref_probs must be finite"),
        (dict(ref_probs=np.full((2, 4, 2), 0.5)), r"not \(A\^H - 1\)/\(A - 1\)"),
        (dict(ref_probs=np.ones((2, 1, 1))), "vocab_size .* >= 2"),
        (dict(ref_probs=np.full((2, 0, 2), 0.5), rewards=np.zeros((2, 0, 2))), "n_states >= 1"),
        (dict(ref_probs=np.full((3, 2), 0.5)), r"shape \(n_contexts, n_states, vocab_size\)"),
        (dict(rewards=np.zeros((2, 3, 3))), r"rewards must have shape .* = \(2, 3, 2\)"),
        (dict(rewards=np.full((2, 3, 2), np.nan)), "rewards must be finite"),
        (dict(rewards=np.full((2, 3, 2), 0.6)), r"in \[0, r_max\] = \[0, 1.0\]; context 0, trajectory 0"),
        (dict(rewards=np.full((2, 3, 2), -0.1)), r"has total reward -0.2"),
        (dict(r_max=0.0), "r_max must be a finite real number > 0"),
        (dict(r_max=np.inf), "r_max must be a finite real number > 0"),
        (dict(features=np.zeros((2, 3, 1))), r"features must have shape \(n_contexts, n_leaves, d\) = \(2, 4, d\)"),
        (dict(features=np.full((2, 4, 1), np.inf)), "features must be finite"),
        (dict(features=np.ones((2, 4, 2)), reward_parameter=[1.0, 0.0]), "does not reproduce the rewards"),
        (dict(reward_parameter=[1.0]), "reward_parameter needs features"),
    ],
)
def test_bad_inputs_raise_naming_the_argument(kwargs, match):
    arguments = dict(rho=GOOD_RHO, ref_probs=GOOD_REF, rewards=GOOD_REW)
    arguments.update(kwargs)
    with pytest.raises(ValueError, match=match):
        TokenMDP.from_arrays(**arguments)


def test_reward_bound_tolerance():
    rewards = np.zeros((2, 3, 2))
    rewards[:, 1:, :] = 1.0 + 5e-13  # within 1e-12 of r_max: accepted
    TokenMDP.from_arrays(GOOD_RHO, GOOD_REF, rewards)
    rewards[:, 1:, :] = 1.0 + 1e-10
    with pytest.raises(ValueError, match="r_max"):
        TokenMDP.from_arrays(GOOD_RHO, GOOD_REF, rewards)


@pytest.mark.parametrize("vocab_size,horizon,match", [(1, 2, "vocab_size must be an integer >= 2"),
                                                      (2, 0, "horizon must be an integer >= 1")])
def test_from_functions_rejects_degenerate_trees(vocab_size, horizon, match):
    with pytest.raises(ValueError, match=match):
        TokenMDP.from_functions([1.0], vocab_size, horizon, ref=None, reward=None)


def test_too_large_tree_is_refused_before_any_call_or_allocation(monkeypatch):
    def never(*args):
        raise AssertionError("called before the size check")

    monkeypatch.setenv("XPOSIM_MEMORY_LIMIT", str(8 << 30))  # 8 GiB, whatever the machine has
    vocab_size, horizon = 10, 9
    entries = tree.n_states(vocab_size, horizon) * vocab_size * 2
    tracemalloc.start()
    try:
        with pytest.raises(ValueError) as error:
            TokenMDP.from_functions([0.5, 0.5], vocab_size, horizon, ref=never, reward=never)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    message = str(error.value)
    assert f"{entries:,}" in message and "1,000,000,000 leaves per context" in message
    # both numbers: what the request needs (5 arrays of 2.2e9 float64 = 82.8 GiB) and what there is
    assert "needs about 82.8 GiB" in message and "8.0 GiB available" in message
    assert peak < 10_000_000
    for build in (
        lambda: needle(10, 9, 0.1, n_contexts=2),
        lambda: random_token_mdp(2, 10, 9, seed=0),
        lambda: linear_token_mdp(2, 10, 9, 3, seed=0),
    ):
        with pytest.raises(ValueError, match="more than this machine can give"):
            build()
    # an explicit entry cap still works
    with pytest.raises(ValueError, match="the limit is 100,000,000 entries"):
        tree.check_enumerable(2, 10, 8, limit=tree.MAX_TREE_ENTRIES)


def test_from_functions_checks_the_returned_shapes():
    with pytest.raises(ValueError, match=r"ref\(context, prefix\) must return shape \(vocab_size,\) = \(2,\)"):
        TokenMDP.from_functions([1.0], 2, 1, ref=lambda x, p: [1.0], reward=lambda x, p, a: 0.0)


@pytest.mark.parametrize(
    "kwargs,match",
    [
        (dict(ref_probs=GOOD_REF + 0j), r"ref_probs must be an array of real numbers .*complex128 \(the imaginary part"),
        (dict(ref_probs=GOOD_REF > 0), "ref_probs must be an array of real numbers .*dtype bool"),
        (dict(ref_probs=GOOD_REF.astype(object)), "ref_probs must be an array of real numbers .*dtype object"),
        (dict(rho=np.array([0.5, 0.5], dtype=object)), "rho must be an array of real numbers .*dtype object"),
        (dict(rho=[True, False]), "rho must be an array of real numbers .*dtype bool"),
        (dict(rewards=GOOD_REW + 1j), "rewards must be an array of real numbers .*complex"),
        (dict(features=np.ones((2, 4, 1), dtype=complex)), "features must be an array of real numbers .*complex"),
        (dict(rewards=np.full((2, 3, 2), "0")), "rewards must be an array of real numbers .*dtype <U1"),
    ],
)
def test_complex_bool_and_object_arrays_are_refused(kwargs, match):
    """Complex arrays used to lose their imaginary part silently; bool and object arrays were cast."""
    arguments = dict(rho=GOOD_RHO, ref_probs=GOOD_REF, rewards=GOOD_REW)
    arguments.update(kwargs)
    with pytest.raises(ValueError, match=match):
        TokenMDP.from_arrays(**arguments)
    with pytest.raises(ValueError, match="leaf_rewards must be an array of real numbers .*complex"):
        TokenMDP.terminal_only(GOOD_RHO, GOOD_REF, np.zeros((2, 4), dtype=complex))
    # integer arrays stay welcome
    env = TokenMDP.from_arrays([1, 0], np.array([[[1, 0]], [[0, 1]]]), np.zeros((2, 1, 2), dtype=np.int64))
    assert env.ref_probs.dtype == np.float64 and env.rho.tolist() == [1.0, 0.0]


@pytest.mark.parametrize(
    "ref,reward,features,match",
    [
        (None, lambda x, p, a: "abc", None, r"reward\(context, prefix, token\) must return a real number, got 'abc' .*context 0, prefix \(\), token 0"),
        (None, lambda x, p, a: None if p == (1,) else 0.1, None, r"reward\(context, prefix, token\) must return a real number, got None .*prefix \(1,\), token 0"),
        (None, lambda x, p, a: True, None, r"reward\(context, prefix, token\) must return a real number, got True"),
        (None, lambda x, p, a: 0.1 + 1j, None, r"reward\(context, prefix, token\) must return a real number, got \(0.1\+1j\)"),
        (None, lambda x, p, a: [0.1, 0.2], None, r"reward\(context, prefix, token\) must return a real number, got \[0.1, 0.2\] \(shape \(2,\)\)"),
        (lambda x, p: ["a", "b"], None, None, r"ref\(context, prefix\) must return shape \(vocab_size,\) = \(2,\) real numbers, got \['a', 'b'\] .*context 0, prefix \(\)"),
        (lambda x, p: None, None, None, r"ref\(context, prefix\) must return .*got None .*context 0, prefix \(\)"),
        (None, None, lambda x, t: "phi", r"features\(context, tokens\) must return one 1-d shape \(d,\) of real numbers, got 'phi' .*context 0, tokens \(0, 0\)"),
        (None, None, lambda x, t: [1.0] * (1 + t[1]), r"features\(context, tokens\) must return one 1-d shape \(d,\) = \(1,\) .*tokens \(0, 1\)"),
    ],
)
def test_from_functions_names_the_callable_and_prefix_of_a_bad_return(ref, reward, features, match):
    with pytest.raises(ValueError, match=match):
        TokenMDP.from_functions(
            [1.0], 2, 2,
            ref=ref or (lambda x, p: [0.5, 0.5]),
            reward=reward or (lambda x, p, a: 0.1),
            features=features,
        )


def test_from_functions_accepts_real_number_types():
    from fractions import Fraction

    env = TokenMDP.from_functions(
        [1.0], 2, 2, ref=lambda x, p: (Fraction(1, 4), 0.75), reward=lambda x, p, a: Fraction(1, 4) + np.float32(0)
    )
    assert env.trajectory_rewards.tolist() == [[0.5, 0.5, 0.5, 0.5]]


def test_huge_trees_are_described_without_failing():
    """``needle(2, 20000)`` used to fail inside its own message (Python's 4300-digit limit)."""
    with pytest.raises(ValueError, match=r"2\^20000 \(about 4e6020\) leaves per context") as error:
        needle(2, 20000, 0.1)
    assert "available" in str(error.value)
    with pytest.raises(ValueError, match=r"2\^1000000000 \(about 4\.6e301029995\) leaves"):
        random_token_mdp(1, 2, 10**9, seed=0)  # instant: nothing of that size is formed
    assert tree.describe_count(2, 20) == "1,048,576"


def test_limit_is_the_memory_a_request_needs_against_what_is_available(monkeypatch):
    """A = 2, H = 25 (67M entries) was accepted by a fixed entry limit although building H = 23
    peaked at 5.4 GB; now the estimate (5 arrays) is compared with the available memory."""
    monkeypatch.setenv("XPOSIM_MEMORY_LIMIT", str(1 << 30))
    with pytest.raises(ValueError) as error:
        random_token_mdp(1, 2, 25, seed=0)
    message = str(error.value)
    assert "horizon=25" in message and "67,108,862 (context, state, token) entries" in message
    assert "needs about 2.5 GiB" in message and "1.0 GiB available" in message
    tree.check_enumerable(1, 2, 20)  # 5 arrays of 2,097,150 float64 = 80 MiB: fits in the 1 GiB
    monkeypatch.setenv("XPOSIM_MEMORY_LIMIT", str(64 << 20))
    with pytest.raises(ValueError, match=r"needs about 80\.0 MiB .*64\.0 MiB available"):
        tree.check_enumerable(1, 2, 20)


def test_building_costs_a_small_multiple_of_one_array():
    """Peak memory of building (tracemalloc) <= BUILD_PER_TOKEN_ARRAYS per-token arrays; it was
    18 to 56 when the trajectory sums gathered along (n_leaves, H) index arrays (A = 2, H = 16:
    random_token_mdp 36, needle 56)."""
    rho, ref, rewards, _ = random_arrays(1, 2, 16)
    builds = {
        "random_token_mdp": lambda: random_token_mdp(1, 2, 16, seed=0),
        "random_token_mdp dense": lambda: random_token_mdp(2, 4, 8, seed=0, reward="dense"),
        "needle": lambda: needle(2, 16, 0.1, seed=3),
        "from_arrays": lambda: TokenMDP.from_arrays(rho, ref, rewards, r_max=1.0),  # inputs not counted
    }
    for name, build in builds.items():
        tracemalloc.start()
        try:
            env = build()
            _, peak = tracemalloc.get_traced_memory()
            tracemalloc.reset_peak()
            before, _ = tracemalloc.get_traced_memory()
            env.trajectory_ref_logprobs
            _, derived_peak = tracemalloc.get_traced_memory()
        finally:
            tracemalloc.stop()
        array = env.ref_probs.nbytes
        assert array >= 500_000, name  # large enough that fixed overheads do not count
        assert peak <= tree.BUILD_PER_TOKEN_ARRAYS * array, (name, peak / array)
        assert derived_peak - before <= 3 * array, (name, (derived_peak - before) / array)
    tracemalloc.start()
    try:
        env = linear_token_mdp(1, 2, 16, 3, seed=0)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert peak <= (tree.BUILD_PER_TOKEN_ARRAYS + 3 * 3) * env.ref_probs.nbytes


def test_path_sums_match_the_gather_along_paths():
    rng = np.random.default_rng(9)
    for vocab_size, horizon in SHAPES:
        values = rng.normal(size=(2, tree.n_states(vocab_size, horizon), vocab_size, 3))
        gathered = values[:, tree.leaf_path_states(vocab_size, horizon), tree.leaf_tokens(vocab_size, horizon)].sum(axis=2)
        np.testing.assert_allclose(tree.path_sums(values), gathered, rtol=0, atol=1e-13)
        np.testing.assert_allclose(tree.path_sums(values[..., 0]), gathered[..., 0], rtol=0, atol=1e-13)
        for k in range(vocab_size**horizon):
            assert tree.leaf_tokens_of(k, vocab_size, horizon) == tuple(tree.leaf_tokens(vocab_size, horizon)[k])


# ----------------------------------------------------------------------------- library
def check_instance(env):
    assert env.ref_probs.shape == (env.n_contexts, env.n_states, env.vocab_size)
    assert env.rewards.shape == env.ref_probs.shape
    assert env.trajectory_rewards.shape == (env.n_contexts, env.n_leaves)
    tol = 1e-12 * max(1.0, env.r_max)
    assert env.trajectory_rewards.min() >= -tol and env.trajectory_rewards.max() <= env.r_max + tol
    np.testing.assert_allclose(env.ref_probs.sum(axis=2), 1.0, rtol=0, atol=1e-15)
    assert env.rho.sum() == pytest.approx(1.0, abs=1e-15)


@pytest.mark.parametrize("beta", [0.0125, 0.05, 0.1, 1.0])
def test_two_arm_lower_bound_is_proposition_2_1(beta):
    env = two_arm_lower_bound(beta)
    check_instance(env)
    assert (env.n_contexts, env.vocab_size, env.horizon, env.r_max) == (1, 2, 1, 1.0)
    assert env.ref_probs[0, 0, 0] == pytest.approx(math.exp(-1.0 / (8.0 * beta)), rel=1e-15)
    assert env.ref_probs[0, 0, 1] == pytest.approx(1.0 - math.exp(-1.0 / (8.0 * beta)), rel=1e-15)
    assert env.trajectory_rewards.tolist() == [[1.0, 0.5]]
    for bad in (0.0, -1.0, np.nan, 1e-5):
        with pytest.raises(ValueError, match="beta"):
            two_arm_lower_bound(bad)


@pytest.mark.parametrize("vocab_size,horizon,beta", [(2, 1, 0.05), (2, 3, 0.02), (3, 2, 0.1), (4, 3, 0.03)])
def test_needle(vocab_size, horizon, beta):
    env = needle(vocab_size, horizon, beta, n_contexts=3)
    check_instance(env)
    assert np.all(env.trajectory_rewards[:, 0] == 1.0)
    assert np.all(env.trajectory_rewards[:, 1:] == 0.5)
    needle_ref = np.exp(env.trajectory_ref_logprobs[:, 0])
    np.testing.assert_allclose(needle_ref, math.exp(-1.0 / (8.0 * beta)), rtol=1e-12)
    if horizon == 1:
        if vocab_size == 2:
            two_arm = two_arm_lower_bound(beta).ref_probs
            np.testing.assert_allclose(env.ref_probs, np.broadcast_to(two_arm, env.ref_probs.shape), rtol=1e-15)
    # off the needle path pi_ref is uniform
    on_path = set(env.leaf_path_states[0])
    off_path = [s for s in range(env.n_states) if s not in on_path]
    np.testing.assert_allclose(env.ref_probs[:, off_path, :], 1.0 / vocab_size, rtol=1e-15, atol=0)
    # seeded needles: reproducible, one per context, needle probability as set
    seeded = needle(vocab_size, horizon, beta, n_contexts=5, needle_ref_prob=0.3, r_max=2.0, seed=7)
    check_instance(seeded)
    again = needle(vocab_size, horizon, beta, n_contexts=5, needle_ref_prob=0.3, r_max=2.0, seed=7)
    assert np.array_equal(seeded.rewards, again.rewards) and np.array_equal(seeded.ref_probs, again.ref_probs)
    needles = seeded.trajectory_rewards.argmax(axis=1)
    assert np.all((seeded.trajectory_rewards == 2.0).sum(axis=1) == 1)
    np.testing.assert_allclose(np.exp(seeded.trajectory_ref_logprobs[np.arange(5), needles]), 0.3**horizon, rtol=1e-12)
    with pytest.raises(ValueError, match=r"needle_ref_prob must lie in the open interval \(0, 1\)"):
        needle(vocab_size, horizon, beta, needle_ref_prob=1.0)


def test_needle_seeds_differ():
    a = needle(4, 3, 0.05, n_contexts=8, seed=0).trajectory_rewards.argmax(axis=1)
    b = needle(4, 3, 0.05, n_contexts=8, seed=1).trajectory_rewards.argmax(axis=1)
    assert not np.array_equal(a, b)


@pytest.mark.parametrize("reward", ["terminal", "dense"])
def test_random_token_mdp(reward):
    env = random_token_mdp(3, 3, 3, seed=5, r_max=2.5, reward=reward, feature_dim=4, rho_concentration=1.0)
    check_instance(env)
    assert env.r_max == 2.5 and env.features.shape == (3, 27, 4)
    if reward == "terminal":
        assert np.all(env.rewards[:, : tree.level_start(3, 2)] == 0.0)
    else:
        assert env.rewards.max() <= 2.5 / 3 and np.count_nonzero(env.rewards[:, 0]) == 9
    same = random_token_mdp(3, 3, 3, seed=5, r_max=2.5, reward=reward, feature_dim=4, rho_concentration=1.0)
    other = random_token_mdp(3, 3, 3, seed=6, r_max=2.5, reward=reward, feature_dim=4, rho_concentration=1.0)
    for field in ("rho", "ref_probs", "rewards", "features"):
        assert np.array_equal(getattr(env, field), getattr(same, field))
        assert not np.array_equal(getattr(env, field), getattr(other, field))
    with pytest.raises(ValueError, match="reward must be 'terminal' or 'dense'"):
        random_token_mdp(1, 2, 2, seed=0, reward="sparse")
    with pytest.raises(ValueError, match="ref_concentration must be a finite real number > 0"):
        random_token_mdp(1, 2, 2, seed=0, ref_concentration=0.0)
    with pytest.raises(ValueError, match="seed"):
        random_token_mdp(1, 2, 2, seed=-1)


@pytest.mark.parametrize("d,n_arms,n_contexts", [(2, 3, 1), (5, 20, 4)])
def test_linear_bandit(d, n_arms, n_contexts):
    env = linear_bandit(d, n_arms, seed=11, n_contexts=n_contexts, r_max=3.0)
    check_instance(env)
    assert (env.horizon, env.vocab_size, env.feature_dim) == (1, n_arms, d)
    theta = env.reward_parameter
    np.testing.assert_allclose(env.trajectory_rewards, env.features @ theta, rtol=0, atol=1e-14)
    assert np.all(env.features[:, :, 0] == 0.5)  # the bias coordinate
    np.testing.assert_allclose(env.ref_probs, 1.0 / n_arms, rtol=1e-15, atol=0)
    poor = linear_bandit(d, n_arms, seed=11, n_contexts=n_contexts, r_max=3.0, optimal_arm_ref_prob=1e-3)
    assert np.array_equal(poor.rewards, env.rewards)
    best = env.trajectory_rewards.argmax(axis=1)
    np.testing.assert_allclose(poor.ref_probs[np.arange(n_contexts), 0, best], 1e-3, rtol=1e-12)
    check_instance(poor)
    assert np.array_equal(linear_bandit(d, n_arms, seed=11, n_contexts=n_contexts, r_max=3.0).features, env.features)
    assert not np.array_equal(linear_bandit(d, n_arms, seed=12, n_contexts=n_contexts, r_max=3.0).features, env.features)
    with pytest.raises(ValueError, match="d must be an integer >= 2"):
        linear_bandit(1, 3, seed=0)


def test_linear_token_mdp():
    env = linear_token_mdp(2, 3, 3, 4, seed=2, r_max=2.0, ref_concentration=0.5)
    check_instance(env)
    theta = env.reward_parameter
    assert env.features.shape == (2, 27, 4)
    np.testing.assert_allclose(env.trajectory_rewards, env.features @ theta, rtol=0, atol=1e-14)
    assert env.rewards.min() >= 0 and env.rewards.max() <= 2.0 / 3
    # trajectory features are sums along the path: recompute the first coordinate (constant 1/(2H) per token)
    np.testing.assert_allclose(env.features[:, :, 0], 0.5, rtol=1e-15)
    again = linear_token_mdp(2, 3, 3, 4, seed=2, r_max=2.0, ref_concentration=0.5)
    assert np.array_equal(env.features, again.features) and np.array_equal(env.ref_probs, again.ref_probs)
    other = linear_token_mdp(2, 3, 3, 4, seed=3, r_max=2.0, ref_concentration=0.5)
    assert not np.array_equal(env.features, other.features)
    assert np.all(linear_token_mdp(1, 2, 2, 2, seed=0).ref_probs == 0.5)
