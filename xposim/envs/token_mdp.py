"""The deterministic contextual token MDP of THEORY 1.1 (immutable).

A context (prompt) ``x ~ rho`` is the only randomness. A response is a token sequence
``tau = (a_1..a_H)`` over a vocabulary of ``A`` tokens, i.e. a leaf of the full ``A``-ary tree of
depth ``H`` rooted at ``x``; states and leaves are numbered as in :mod:`xposim.envs.tree`.
The reference policy gives ``pi_ref(a | s)`` at every state, the reward is a sum of per-token
rewards ``r(tau) = sum_h r(s_h, a_h)`` with every trajectory total in ``[0, r_max]``
(terminal-only reward: only depth ``H-1`` states carry reward). Optional trajectory features
``phi(x, tau) in R^d`` serve linear bandits and log-linear policy classes.

Array conventions (``docs/architecture.md``): per-token arrays ``(n_contexts, n_states, A)``,
per-trajectory arrays ``(n_contexts, n_leaves)``, features ``(n_contexts, n_leaves, d)``;
float64, C-contiguous, read-only.
"""
from __future__ import annotations

import dataclasses
from functools import cached_property
from typing import Callable, Sequence

import numpy as np

from xposim.envs import tree

#: Tolerance on the normalization of ``rho`` and of every ``pi_ref(.|s)`` row before renormalizing.
NORMALIZATION_TOLERANCE = 1e-9
#: Absolute tolerance (times ``max(1, r_max)``) on ``0 <= r(tau) <= r_max``.
REWARD_TOLERANCE = 1e-12


def _frozen_float_array(value, argument: str) -> np.ndarray:
    try:
        array = np.array(value, dtype=np.float64, order="C", copy=True)
    except (TypeError, ValueError) as error:
        raise ValueError(f"{argument} must be an array of real numbers ({error})") from None
    return array


def _read_only(array: np.ndarray) -> np.ndarray:
    array = np.ascontiguousarray(array, dtype=np.float64)
    array.flags.writeable = False
    return array


def _horizon_from_n_states(n_states: int, vocab_size: int) -> int:
    """The ``H`` with ``(A^H - 1)/(A - 1) == n_states``; ``ValueError`` if there is none."""
    horizon, count = 1, 1
    while count < n_states:
        horizon += 1
        count = tree.n_states(vocab_size, horizon)
    if count != n_states:
        raise ValueError(
            f"ref_probs has {n_states} states per context, which is not (A^H - 1)/(A - 1) for "
            f"vocab_size A={vocab_size} and any integer horizon H >= 1 "
            f"(nearest: H={horizon - 1} -> {tree.n_states(vocab_size, max(horizon - 1, 1))}, "
            f"H={horizon} -> {count})"
        )
    return horizon


def _log_or_neg_inf(p: np.ndarray) -> np.ndarray:
    """``log p`` with ``-inf`` exactly where ``p == 0`` and no floating-point warnings."""
    out = np.full(p.shape, -np.inf)
    np.log(p, out=out, where=p > 0)
    return out


def _terminal_rewards_array(leaf_rewards: np.ndarray, vocab_size: int, horizon: int) -> np.ndarray:
    """Per-token reward array carrying ``leaf_rewards`` on the last token of every trajectory.

    The depth ``H-1`` block ``[level_start(H-1), n_states)`` has ``A^(H-1)`` states; token ``a``
    in its ``j``-th state reaches leaf ``A*j + a``, so the block reshapes directly.
    """
    n_contexts, n_leaves = leaf_rewards.shape
    n_states = tree.n_states(vocab_size, horizon)
    rewards = np.zeros((n_contexts, n_states, vocab_size))
    last = tree.level_start(vocab_size, horizon - 1)
    rewards[:, last:, :] = leaf_rewards.reshape(n_contexts, n_leaves // vocab_size, vocab_size)
    return rewards


@dataclasses.dataclass(frozen=True, eq=False, repr=False)
class TokenMDP:
    """Deterministic contextual token MDP (THEORY 1.1), validated and immutable.

    Parameters
    ----------
    rho : (n_contexts,) context distribution; non-negative, sums to 1 within 1e-9 (renormalized).
    ref_probs : (n_contexts, n_states, A) reference policy ``pi_ref(a | s)``; every row
        non-negative and summing to 1 within 1e-9 (renormalized exactly).
    rewards : (n_contexts, n_states, A) per-token reward ``r(s, a)``; finite, and every
        trajectory total ``r(tau) = sum_h r(s_h, a_h)`` lies in ``[0, r_max]``.
    features : optional (n_contexts, n_leaves, d) trajectory features ``phi(x, tau)``.
    r_max : reward bound ``R_max > 0``.
    name : label used in reprs and result tables.
    reward_parameter : optional ``theta* in R^d`` with ``r(tau) = <theta*, phi(x, tau)>``
        (linear instances); checked against the rewards when given.

    Construction always validates (also through :func:`dataclasses.replace`); the arrays are
    copied to float64, C-contiguous, read-only arrays. Use :meth:`from_arrays`,
    :meth:`from_functions` or :meth:`terminal_only`.
    """

    rho: np.ndarray
    ref_probs: np.ndarray
    rewards: np.ndarray
    features: np.ndarray | None = None
    r_max: float = 1.0
    name: str = "token_mdp"
    reward_parameter: np.ndarray | None = None

    # ------------------------------------------------------------------ validation
    def __post_init__(self) -> None:
        r_max = self.r_max
        if isinstance(r_max, (bool, np.bool_)) or not isinstance(r_max, (int, float, np.integer, np.floating)):
            raise ValueError(f"r_max must be a finite real number > 0, got {r_max!r}")
        r_max = float(r_max)
        if not np.isfinite(r_max) or r_max <= 0.0:
            raise ValueError(f"r_max must be a finite real number > 0, got {r_max!r}")
        if not isinstance(self.name, str):
            raise ValueError(f"name must be a string, got {self.name!r}")

        ref = _frozen_float_array(self.ref_probs, "ref_probs")
        if ref.ndim != 3:
            raise ValueError(
                f"ref_probs must have shape (n_contexts, n_states, vocab_size), got shape {ref.shape}"
            )
        n_contexts, n_states, vocab_size = ref.shape
        if n_contexts < 1:
            raise ValueError(f"ref_probs must have n_contexts >= 1, got shape {ref.shape}")
        if vocab_size < 2:
            raise ValueError(f"vocab_size (last axis of ref_probs) must be an integer >= 2, got {vocab_size}")
        if n_states < 1:
            raise ValueError(
                f"ref_probs must have n_states >= 1 (horizon >= 1), got shape {ref.shape}"
            )
        horizon = _horizon_from_n_states(n_states, vocab_size)
        tree.check_enumerable(n_contexts, vocab_size, horizon)
        expected = (n_contexts, n_states, vocab_size)

        rho = _frozen_float_array(self.rho, "rho")
        if rho.shape != (n_contexts,):
            raise ValueError(f"rho must have shape (n_contexts,) = ({n_contexts},) to match ref_probs, got {rho.shape}")
        if not np.all(np.isfinite(rho)) or np.any(rho < 0):
            raise ValueError(f"rho must be finite and non-negative, got {rho}")
        total = rho.sum()
        if abs(total - 1.0) > NORMALIZATION_TOLERANCE:
            raise ValueError(f"rho must sum to 1 (within {NORMALIZATION_TOLERANCE:g}), sums to {float(total)!r}")
        rho = rho / total

        if not np.all(np.isfinite(ref)):
            raise ValueError("ref_probs must be finite (found NaN or inf)")
        if np.any(ref < 0):
            x, s, a = np.argwhere(ref < 0)[0]
            raise ValueError(
                f"ref_probs must be non-negative, got ref_probs[{x}, {s}, {a}] = {float(ref[x, s, a])!r}"
            )
        row_sums = ref.sum(axis=2)
        deviation = np.abs(row_sums - 1.0)
        if np.any(deviation > NORMALIZATION_TOLERANCE):
            x, s = np.unravel_index(np.argmax(deviation), deviation.shape)
            raise ValueError(
                f"every row ref_probs[context, state, :] must sum to 1 (within "
                f"{NORMALIZATION_TOLERANCE:g}); ref_probs[{x}, {s}, :] sums to {float(row_sums[x, s])!r}"
            )
        ref = ref / row_sums[:, :, None]

        rewards = _frozen_float_array(self.rewards, "rewards")
        if rewards.shape != expected:
            raise ValueError(
                f"rewards must have shape (n_contexts, n_states, vocab_size) = {expected} to match "
                f"ref_probs, got {rewards.shape}"
            )
        if not np.all(np.isfinite(rewards)):
            raise ValueError("rewards must be finite (found NaN or inf)")
        n_leaves = tree.n_leaves(vocab_size, horizon)
        trajectory_rewards = rewards[
            :, tree.leaf_path_states(vocab_size, horizon), tree.leaf_tokens(vocab_size, horizon)
        ].sum(axis=2)
        tolerance = REWARD_TOLERANCE * max(1.0, r_max)
        bad = (trajectory_rewards < -tolerance) | (trajectory_rewards > r_max + tolerance)
        if np.any(bad):
            x, k = np.argwhere(bad)[0]
            raise ValueError(
                f"every trajectory reward must lie in [0, r_max] = [0, {r_max!r}]; context {x}, "
                f"trajectory {k} (tokens {tuple(int(t) for t in tree.leaf_tokens(vocab_size, horizon)[k])}) "
                f"has total reward {float(trajectory_rewards[x, k])!r}"
            )

        features = self.features
        if features is not None:
            features = _frozen_float_array(features, "features")
            if features.ndim != 3 or features.shape[:2] != (n_contexts, n_leaves) or features.shape[2] < 1:
                raise ValueError(
                    f"features must have shape (n_contexts, n_leaves, d) = ({n_contexts}, {n_leaves}, d) "
                    f"with d >= 1, got {features.shape}"
                )
            if not np.all(np.isfinite(features)):
                raise ValueError("features must be finite (found NaN or inf)")
            features = _read_only(features)

        theta = self.reward_parameter
        if theta is not None:
            if features is None:
                raise ValueError("reward_parameter needs features (r(tau) = <theta*, phi(tau)>)")
            theta = _frozen_float_array(theta, "reward_parameter")
            if theta.shape != (features.shape[2],):
                raise ValueError(
                    f"reward_parameter must have shape (d,) = ({features.shape[2]},), got {theta.shape}"
                )
            if not np.all(np.isfinite(theta)):
                raise ValueError("reward_parameter must be finite")
            linear = features @ theta
            error = np.max(np.abs(linear - trajectory_rewards))
            if error > 1e-9 * max(1.0, r_max):
                raise ValueError(
                    f"reward_parameter does not reproduce the rewards: max |<theta*, phi> - r| = {error:.3g} "
                    f"(allowed {1e-9 * max(1.0, r_max):.1g})"
                )
            theta = _read_only(theta)

        set_field = object.__setattr__
        set_field(self, "r_max", r_max)
        set_field(self, "rho", _read_only(rho))
        set_field(self, "ref_probs", _read_only(ref))
        set_field(self, "rewards", _read_only(rewards))
        set_field(self, "features", features)
        set_field(self, "reward_parameter", theta)
        # seed the caches computed during validation
        self.__dict__["trajectory_rewards"] = _read_only(trajectory_rewards)

    def __reduce__(self):
        # pickling re-runs validation, so unpickled arrays are read-only again
        return (
            TokenMDP,
            (self.rho, self.ref_probs, self.rewards, self.features, self.r_max, self.name, self.reward_parameter),
        )

    def __repr__(self) -> str:
        features = "" if self.features is None else f", feature_dim={self.feature_dim}"
        return (
            f"TokenMDP(name={self.name!r}, n_contexts={self.n_contexts}, vocab_size={self.vocab_size}, "
            f"horizon={self.horizon}, r_max={self.r_max!r}{features})"
        )

    # ------------------------------------------------------------------ derived sizes
    @cached_property
    def n_contexts(self) -> int:
        """Number of contexts (prompts)."""
        return int(self.ref_probs.shape[0])

    @cached_property
    def vocab_size(self) -> int:
        """``A``, the number of tokens."""
        return int(self.ref_probs.shape[2])

    @cached_property
    def n_states(self) -> int:
        """``(A^H - 1)/(A - 1)`` internal states per context."""
        return int(self.ref_probs.shape[1])

    @cached_property
    def horizon(self) -> int:
        """``H``, the response length."""
        return _horizon_from_n_states(self.n_states, self.vocab_size)

    @cached_property
    def n_leaves(self) -> int:
        """``A^H`` trajectories per context."""
        return tree.n_leaves(self.vocab_size, self.horizon)

    @cached_property
    def feature_dim(self) -> int | None:
        """``d`` of the trajectory features, ``None`` when the instance has none."""
        return None if self.features is None else int(self.features.shape[2])

    # ------------------------------------------------------------------ derived arrays
    @cached_property
    def log_ref_probs(self) -> np.ndarray:
        """``log pi_ref(a | s)``, ``(n_contexts, n_states, A)``, ``-inf`` where ``pi_ref = 0``."""
        return _read_only(_log_or_neg_inf(self.ref_probs))

    @cached_property
    def leaf_path_states(self) -> np.ndarray:
        """``(n_leaves, H)`` state visited at each depth along every trajectory (:func:`tree.leaf_path_states`)."""
        out = tree.leaf_path_states(self.vocab_size, self.horizon)
        out.flags.writeable = False
        return out

    @cached_property
    def _leaf_tokens(self) -> np.ndarray:
        out = tree.leaf_tokens(self.vocab_size, self.horizon)
        out.flags.writeable = False
        return out

    @cached_property
    def trajectory_rewards(self) -> np.ndarray:
        """``r(tau|x) = sum_h r(s_h, a_h)``, ``(n_contexts, n_leaves)``."""
        return _read_only(self.rewards[:, self.leaf_path_states, self._leaf_tokens].sum(axis=2))

    @cached_property
    def trajectory_ref_logprobs(self) -> np.ndarray:
        """``log pi_ref(tau|x) = sum_h log pi_ref(a_h|s_h)``, ``(n_contexts, n_leaves)``, ``-inf`` if impossible."""
        return _read_only(self.log_ref_probs[:, self.leaf_path_states, self._leaf_tokens].sum(axis=2))

    def trajectories(self) -> np.ndarray:
        """All trajectories as a read-only ``(n_leaves, H)`` int array; row ``k`` is leaf ``k``."""
        return self._leaf_tokens

    # ------------------------------------------------------------------ constructors
    @classmethod
    def from_arrays(
        cls,
        rho,
        ref_probs,
        rewards,
        features=None,
        r_max: float = 1.0,
        name: str = "token_mdp",
        reward_parameter=None,
    ) -> "TokenMDP":
        """Build from arrays; ``A`` is the last axis of ``ref_probs`` and ``H`` follows from ``n_states``.

        Validation (ValueError naming the argument): see the class docstring.
        """
        return cls(
            rho=rho,
            ref_probs=ref_probs,
            rewards=rewards,
            features=features,
            r_max=r_max,
            name=name,
            reward_parameter=reward_parameter,
        )

    @classmethod
    def from_functions(
        cls,
        rho,
        vocab_size: int,
        horizon: int,
        ref: Callable[[int, tuple[int, ...]], Sequence[float]],
        reward: Callable[[int, tuple[int, ...], int], float],
        features: Callable[[int, tuple[int, ...]], Sequence[float]] | None = None,
        r_max: float = 1.0,
        name: str = "token_mdp",
    ) -> "TokenMDP":
        """Build by calling ``ref(context, prefix) -> (A,)``, ``reward(context, prefix, token)`` and
        optionally ``features(context, tokens) -> (d,)`` on every state / trajectory.

        The tree size is checked (:func:`tree.check_enumerable`) before any function is called
        or any array allocated.
        """
        rho_array = np.asarray(rho, dtype=np.float64)
        if rho_array.ndim != 1 or rho_array.shape[0] < 1:
            raise ValueError(f"rho must be a 1-d array with n_contexts >= 1 entries, got shape {rho_array.shape}")
        n_contexts = rho_array.shape[0]
        tree.check_enumerable(n_contexts, vocab_size, horizon)
        vocab_size, horizon = int(vocab_size), int(horizon)
        n_states = tree.n_states(vocab_size, horizon)
        ref_probs = np.empty((n_contexts, n_states, vocab_size))
        rewards = np.empty((n_contexts, n_states, vocab_size))
        prefixes = [tree.state_prefix(s, vocab_size) for s in range(n_states)]
        for x in range(n_contexts):
            for s, prefix in enumerate(prefixes):
                probs = np.asarray(ref(x, prefix), dtype=np.float64)
                if probs.shape != (vocab_size,):
                    raise ValueError(
                        f"ref(context, prefix) must return shape (vocab_size,) = ({vocab_size},), "
                        f"got {probs.shape} for context {x}, prefix {prefix}"
                    )
                ref_probs[x, s] = probs
                for a in range(vocab_size):
                    rewards[x, s, a] = float(reward(x, prefix, a))
        feature_array = None
        if features is not None:
            tokens = tree.leaf_tokens(vocab_size, horizon)
            rows = [
                [np.asarray(features(x, tuple(int(t) for t in tokens[k])), dtype=np.float64) for k in range(len(tokens))]
                for x in range(n_contexts)
            ]
            shapes = {row.shape for ctx in rows for row in ctx}
            if len(shapes) != 1 or len(next(iter(shapes))) != 1:
                raise ValueError(f"features(context, tokens) must return one 1-d shape (d,), got shapes {sorted(shapes)}")
            feature_array = np.array(rows)
        return cls.from_arrays(rho_array, ref_probs, rewards, features=feature_array, r_max=r_max, name=name)

    @classmethod
    def terminal_only(
        cls,
        rho,
        ref_probs,
        leaf_rewards,
        features=None,
        r_max: float = 1.0,
        name: str = "token_mdp",
        reward_parameter=None,
    ) -> "TokenMDP":
        """Build from trajectory rewards ``leaf_rewards (n_contexts, n_leaves)``, placed on the last token.

        ``r(s_{H}, a_H) = leaf_rewards[x, leaf]`` and zero elsewhere, so ``trajectory_rewards``
        equals ``leaf_rewards`` exactly.
        """
        ref = np.asarray(ref_probs, dtype=np.float64)
        if ref.ndim != 3 or ref.shape[2] < 2 or ref.shape[1] < 1:
            raise ValueError(
                f"ref_probs must have shape (n_contexts, n_states, vocab_size) with vocab_size >= 2, got {ref.shape}"
            )
        n_contexts, n_states, vocab_size = ref.shape
        horizon = _horizon_from_n_states(n_states, vocab_size)
        tree.check_enumerable(n_contexts, vocab_size, horizon)
        leaf = np.asarray(leaf_rewards, dtype=np.float64)
        expected = (n_contexts, tree.n_leaves(vocab_size, horizon))
        if leaf.shape != expected:
            raise ValueError(f"leaf_rewards must have shape (n_contexts, n_leaves) = {expected}, got {leaf.shape}")
        rewards = _terminal_rewards_array(leaf, vocab_size, horizon)
        return cls.from_arrays(
            rho, ref, rewards, features=features, r_max=r_max, name=name, reward_parameter=reward_parameter
        )
