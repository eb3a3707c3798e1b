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
import itertools
import numbers
from functools import cached_property
from typing import Callable, Sequence

import numpy as np

from xposim.envs import tree

#: Tolerance on the normalization of ``rho`` and of every ``pi_ref(.|s)`` row before renormalizing.
NORMALIZATION_TOLERANCE = 1e-9
#: Absolute tolerance (times ``max(1, r_max)``) on ``0 <= r(tau) <= r_max``.
REWARD_TOLERANCE = 1e-12


class _OwnedArray(np.ndarray):
    """Marks a float64 array that a constructor of this module allocated and hands over: the
    dataclass adopts it instead of copying (no one else holds it)."""


def _hand_over(array: np.ndarray) -> np.ndarray:
    return np.ascontiguousarray(array, dtype=np.float64).view(_OwnedArray)


def _real_array(value, argument: str) -> np.ndarray:
    """``value`` as a float64 array (a view when it already is one); ``ValueError`` unless its
    dtype is a real number type: complex (the imaginary part would be dropped), bool and object
    arrays are refused, as is anything that is not numeric."""
    try:
        array = np.asarray(value)
    except (TypeError, ValueError) as error:
        raise ValueError(f"{argument} must be an array of real numbers ({error})") from None
    if array.dtype.kind not in "fiu":
        raise ValueError(
            f"{argument} must be an array of real numbers (float or integer dtype), got dtype {array.dtype}"
            + (" (the imaginary part would be dropped)" if array.dtype.kind == "c" else "")
        )
    return np.asarray(array, dtype=np.float64)


def _frozen_float_array(value, argument: str) -> np.ndarray:
    """A float64 C-contiguous array this TokenMDP owns: ``value`` adopted when a constructor of
    this module handed it over, else a copy (checked by :func:`_real_array`)."""
    if type(value) is _OwnedArray:
        return value.view(np.ndarray)
    return np.array(_real_array(value, argument), dtype=np.float64, order="C", copy=True)


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


def _first_true(mask: np.ndarray) -> tuple[int, ...]:
    """Index of the first ``True`` of ``mask`` (which has one) without an index array of all of them."""
    return tuple(int(i) for i in np.unravel_index(int(np.argmax(mask)), mask.shape))


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

        owned_ref = type(self.ref_probs) is _OwnedArray
        ref = self.ref_probs.view(np.ndarray) if owned_ref else _real_array(self.ref_probs, "ref_probs")
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
        # the arrays exist already: validation adds at most about 3.5 per-token arrays (copies of
        # ref_probs and rewards, trajectory rewards and one temporary of theirs)
        tree.check_enumerable(n_contexts, vocab_size, horizon, per_token_arrays=4, what="validating a TokenMDP")
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

        if not np.isfinite(ref).all():
            raise ValueError("ref_probs must be finite (found NaN or inf)")
        negative = ref < 0
        if negative.any():
            x, s, a = _first_true(negative)
            raise ValueError(
                f"ref_probs must be non-negative, got ref_probs[{x}, {s}, {a}] = {float(ref[x, s, a])!r}"
            )
        del negative
        row_sums = ref.sum(axis=2)
        deviation = np.abs(row_sums - 1.0)
        if np.any(deviation > NORMALIZATION_TOLERANCE):
            x, s = np.unravel_index(np.argmax(deviation), deviation.shape)
            raise ValueError(
                f"every row ref_probs[context, state, :] must sum to 1 (within "
                f"{NORMALIZATION_TOLERANCE:g}); ref_probs[{x}, {s}, :] sums to {float(row_sums[x, s])!r}"
            )
        del deviation
        if owned_ref:  # handed over by a constructor of this module: normalize in place
            np.divide(ref, row_sums[:, :, None], out=ref)
        else:  # the TokenMDP's own copy
            ref = ref / row_sums[:, :, None]
        del row_sums

        rewards = _frozen_float_array(self.rewards, "rewards")
        if rewards.shape != expected:
            raise ValueError(
                f"rewards must have shape (n_contexts, n_states, vocab_size) = {expected} to match "
                f"ref_probs, got {rewards.shape}"
            )
        if not np.isfinite(rewards).all():
            raise ValueError("rewards must be finite (found NaN or inf)")
        n_leaves = tree.n_leaves(vocab_size, horizon)
        trajectory_rewards = tree.path_sums(rewards)
        tolerance = REWARD_TOLERANCE * max(1.0, r_max)
        bad = (trajectory_rewards < -tolerance) | (trajectory_rewards > r_max + tolerance)
        if np.any(bad):
            x, k = _first_true(bad)
            raise ValueError(
                f"every trajectory reward must lie in [0, r_max] = [0, {r_max!r}]; context {x}, "
                f"trajectory {k} (tokens {tree.leaf_tokens_of(k, vocab_size, horizon)}) "
                f"has total reward {float(trajectory_rewards[x, k])!r}"
            )
        del bad

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
        """``r(tau|x) = sum_h r(s_h, a_h)``, ``(n_contexts, n_leaves)`` (:func:`tree.path_sums`)."""
        return _read_only(tree.path_sums(self.rewards))

    @cached_property
    def trajectory_ref_logprobs(self) -> np.ndarray:
        """``log pi_ref(tau|x) = sum_h log pi_ref(a_h|s_h)``, ``(n_contexts, n_leaves)``, ``-inf`` if impossible."""
        return _read_only(tree.path_sums(self.log_ref_probs))

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
        or any array allocated. Each return value must be real numbers (not bool, complex, strings
        or ``None``); otherwise ``ValueError`` naming the callable, the context and the prefix.
        Memory: the two per-token arrays (and the features) filled in place, prefixes generated
        one at a time.
        """
        rho_array = _real_array(rho, "rho")
        if rho_array.ndim != 1 or rho_array.shape[0] < 1:
            raise ValueError(f"rho must be a 1-d array with n_contexts >= 1 entries, got shape {rho_array.shape}")
        n_contexts = rho_array.shape[0]
        tree.check_enumerable(n_contexts, vocab_size, horizon)
        vocab_size, horizon = int(vocab_size), int(horizon)
        n_states = tree.n_states(vocab_size, horizon)
        ref_probs = np.empty((n_contexts, n_states, vocab_size))
        rewards = np.empty((n_contexts, n_states, vocab_size))
        for x in range(n_contexts):
            for s, prefix in enumerate(_prefixes(vocab_size, horizon - 1)):
                ref_probs[x, s] = _returned_reals(
                    ref(x, prefix), (vocab_size,), "ref(context, prefix)", f"context {x}, prefix {prefix}",
                    f"shape (vocab_size,) = ({vocab_size},) real numbers",
                )
                for a in range(vocab_size):
                    rewards[x, s, a] = _returned_reals(
                        reward(x, prefix, a), (), "reward(context, prefix, token)",
                        f"context {x}, prefix {prefix}, token {a}", "a real number",
                    )
        feature_array = None
        if features is not None:
            for x in range(n_contexts):
                for k, tokens in enumerate(_prefixes(vocab_size, horizon, only_depth=True)):
                    row = _returned_reals(
                        features(x, tokens), None, "features(context, tokens)", f"context {x}, tokens {tokens}",
                        "one 1-d shape (d,) of real numbers",
                    )
                    if feature_array is None:
                        feature_array = np.empty((n_contexts, vocab_size**horizon, row.shape[0]))
                    if row.shape != feature_array.shape[2:]:
                        raise ValueError(
                            f"features(context, tokens) must return one 1-d shape (d,) = ({feature_array.shape[2]},) "
                            f"for every trajectory, got {row.shape} for context {x}, tokens {tokens}"
                        )
                    feature_array[x, k] = row
            feature_array = _hand_over(feature_array)
        return cls.from_arrays(
            rho_array, _hand_over(ref_probs), _hand_over(rewards), features=feature_array, r_max=r_max, name=name
        )

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
        ref = ref_probs if type(ref_probs) is _OwnedArray else _real_array(ref_probs, "ref_probs")
        if ref.ndim != 3 or ref.shape[2] < 2 or ref.shape[1] < 1:
            raise ValueError(
                f"ref_probs must have shape (n_contexts, n_states, vocab_size) with vocab_size >= 2, got {ref.shape}"
            )
        n_contexts, n_states, vocab_size = ref.shape
        horizon = _horizon_from_n_states(n_states, vocab_size)
        tree.check_enumerable(n_contexts, vocab_size, horizon, per_token_arrays=3, what="building a TokenMDP")
        leaf = _real_array(leaf_rewards, "leaf_rewards")
        expected = (n_contexts, tree.n_leaves(vocab_size, horizon))
        if leaf.shape != expected:
            raise ValueError(f"leaf_rewards must have shape (n_contexts, n_leaves) = {expected}, got {leaf.shape}")
        rewards = _hand_over(_terminal_rewards_array(leaf, vocab_size, horizon))
        return cls.from_arrays(
            rho, ref, rewards, features=features, r_max=r_max, name=name, reward_parameter=reward_parameter
        )


def _prefixes(vocab_size: int, max_depth: int, only_depth: bool = False):
    """Token prefixes in state order (depth ``0..max_depth``, base-``A`` order within a depth), one
    at a time; with ``only_depth`` just those of depth ``max_depth`` (the leaves when it is ``H``)."""
    for depth in range(max_depth if only_depth else 0, max_depth + 1):
        yield from itertools.product(range(vocab_size), repeat=depth)


def _returned_reals(value, shape, callable_name: str, where: str, expected: str) -> np.ndarray | float:
    """What a user callable returned, as a float (``shape == ()``) or float64 array of ``shape``
    (``None``: any 1-d shape ``(d,)`` with ``d >= 1``); ``ValueError`` naming the callable, what it
    must return (``expected``) and ``where`` otherwise. Real numbers of any type (``int``,
    ``Fraction``, numpy scalars) are accepted; bool, complex, strings, ``None`` and other values
    are refused."""
    if shape == () and isinstance(value, numbers.Real) and not isinstance(value, (bool, np.bool_)):
        return float(value)
    detail = None
    try:
        array = np.asarray(value)
    except (TypeError, ValueError) as error:  # ragged sequences and the like
        detail = str(error)
    else:
        if array.dtype.kind == "O" and all(
            isinstance(item, numbers.Real) and not isinstance(item, (bool, np.bool_)) for item in array.flat
        ):  # a sequence of Fractions and the like
            array = array.astype(np.float64)
        if array.dtype.kind not in "fiu":
            detail = f"dtype {array.dtype}"
        elif (shape is None and (array.ndim != 1 or array.shape[0] < 1)) or (shape is not None and array.shape != shape):
            detail = f"shape {array.shape}"
    if detail is not None:
        raise ValueError(f"{callable_name} must return {expected}, got {value!r} ({detail}) for {where}")
    return float(array) if shape == () else array.astype(np.float64)
