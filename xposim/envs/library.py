"""Instance library: the environments of the experiments (THEORY 6.2 and 7).

Every function returns an immutable :class:`~xposim.envs.token_mdp.TokenMDP`. Functions with
randomness take ``seed`` and draw from :func:`xposim.seeding.make_rng` only, so the same seed
gives the same arrays bit for bit.
"""
from __future__ import annotations

import math

import numpy as np

from xposim.envs import tree
from xposim.envs.token_mdp import TokenMDP, _hand_over
from xposim.seeding import SeedLike, make_rng
from xposim.validation import check_int, check_open_probability, check_positive


def _uniform_rho(n_contexts: int) -> np.ndarray:
    return np.full(n_contexts, 1.0 / n_contexts)


def _unit_ball(rng: np.random.Generator, size: tuple[int, ...], dim: int) -> np.ndarray:
    """Points drawn uniformly from the closed unit ball of ``R^dim`` (shape ``size + (dim,)``)."""
    direction = rng.standard_normal(size + (dim,))
    norm = np.linalg.norm(direction, axis=-1, keepdims=True)
    norm[norm == 0.0] = 1.0
    radius = rng.random(size + (1,)) ** (1.0 / dim)
    return direction / norm * radius


def _unit_vector(rng: np.random.Generator, dim: int) -> np.ndarray:
    while True:
        w = rng.standard_normal(dim)
        norm = np.linalg.norm(w)
        if norm > 0.0:
            return w / norm


# --------------------------------------------------------------------------------- Prop 2.1
def two_arm_lower_bound(beta: float) -> TokenMDP:
    """Proposition 2.1 of the paper exactly (THEORY 6.2): passive exploration fails.

    One context, ``H = 1``, two arms: arm 0 (``a``) has ``r = 1`` and reference probability
    ``pi_ref(a) = exp(-1/(8 beta))``; arm 1 (``b``) has ``r = 1/2`` and ``pi_ref(b) = 1 - pi_ref(a)``;
    ``r_max = 1``. For ``T <= exp(1/(8 beta))/2`` online DPO fails with constant probability,
    while ``C_cov <= 2`` and ``C_conc ~ e^{1/(8 beta)}``.

    ``beta`` must be > 0 and large enough that ``exp(-1/(8 beta))`` is a positive float64
    (``beta >~ 1.7e-4``).
    """
    beta = check_positive(beta, "beta")
    p_a = math.exp(-1.0 / (8.0 * beta))
    if p_a <= 0.0:
        raise ValueError(f"beta must be > {1.0 / (8.0 * 745.0):.3g} so that pi_ref(a) = exp(-1/(8 beta)) > 0, got {beta!r}")
    ref_probs = np.array([[[p_a, 1.0 - p_a]]])
    rewards = np.array([[[1.0, 0.5]]])
    return TokenMDP.from_arrays([1.0], ref_probs, rewards, r_max=1.0, name=f"two_arm_lower_bound(beta={beta:g})")


# --------------------------------------------------------------------------------- needle
def needle(
    vocab_size: int,
    horizon: int,
    beta: float,
    n_contexts: int = 1,
    needle_ref_prob: float | None = None,
    r_max: float = 1.0,
    seed: SeedLike = None,
) -> TokenMDP:
    """Depth-``H`` generalization of Proposition 2.1: one well-hidden good trajectory per context.

    * Per context one *needle* trajectory has reward ``r_max``; every other trajectory has
      ``r_max / 2`` (terminal-only rewards). ``rho`` is uniform.
    * Needle choice: ``seed=None`` puts the needle at leaf 0 (tokens ``(0, .., 0)``) in every
      context; otherwise leaf ``k_x`` is drawn uniformly per context from ``make_rng(seed)``.
      Recover it as ``env.trajectory_rewards.argmax(axis=1)``.
    * Along the needle path the needle token has per-token reference probability ``p`` and the
      other ``A - 1`` tokens ``(1 - p)/(A - 1)`` each; off the path ``pi_ref`` is uniform.
      Default ``p = exp(-1/(8 beta H))``, so ``pi_ref(needle) = p^H = exp(-1/(8 beta))`` equals
      Proposition 2.1's ``pi_ref(a)`` (with ``r_max = 1``). ``needle_ref_prob`` in ``(0, 1)``
      overrides ``p`` (then ``beta`` only enters the name).
    """
    vocab_size = check_int(vocab_size, "vocab_size", 2)
    horizon = check_int(horizon, "horizon", 1)
    n_contexts = check_int(n_contexts, "n_contexts", 1)
    beta = check_positive(beta, "beta")
    r_max = check_positive(r_max, "r_max")
    tree.check_enumerable(n_contexts, vocab_size, horizon)
    if needle_ref_prob is None:
        p = math.exp(-1.0 / (8.0 * beta * horizon))
        if p <= 0.0:
            raise ValueError(f"beta * horizon is too small: exp(-1/(8 beta H)) underflows to 0 (beta={beta!r})")
    else:
        p = check_open_probability(needle_ref_prob, "needle_ref_prob")
    n_leaves = tree.n_leaves(vocab_size, horizon)
    if seed is None:
        needles = np.zeros(n_contexts, dtype=np.int64)
    else:
        needles = make_rng(seed).integers(0, n_leaves, size=n_contexts)
    n_states = tree.n_states(vocab_size, horizon)
    ref_probs = np.full((n_contexts, n_states, vocab_size), 1.0 / vocab_size)
    leaf_rewards = np.full((n_contexts, n_leaves), r_max / 2.0)
    off = (1.0 - p) / (vocab_size - 1)
    for x, k in enumerate(needles):
        state = 0  # walk the needle's path by the heap rule (no (n_leaves, H) index arrays)
        for token in tree.leaf_tokens_of(int(k), vocab_size, horizon):
            row = np.full(vocab_size, off)
            row[token] = p
            ref_probs[x, state] = row
            state = vocab_size * state + 1 + token
        leaf_rewards[x, k] = r_max
    name = f"needle(A={vocab_size},H={horizon},beta={beta:g})"
    return TokenMDP.terminal_only(_uniform_rho(n_contexts), _hand_over(ref_probs), leaf_rewards, r_max=r_max, name=name)


# --------------------------------------------------------------------------------- random
def random_token_mdp(
    n_contexts: int,
    vocab_size: int,
    horizon: int,
    seed: SeedLike,
    r_max: float = 1.0,
    reward: str = "terminal",
    ref_concentration: float = 1.0,
    feature_dim: int | None = None,
    rho_concentration: float | None = None,
) -> TokenMDP:
    """A random instance for identity checks (THEORY E1).

    * ``pi_ref(.|s) ~ Dirichlet(ref_concentration * 1_A)`` independently per state (small
      concentrations give peaked, possibly exactly-zero reference probabilities).
    * ``reward="terminal"``: trajectory rewards ``~ U[0, r_max]`` on the last token;
      ``reward="dense"``: every per-token reward ``~ U[0, r_max/H]`` (so totals lie in ``[0, r_max]``).
    * ``feature_dim=d``: standard-normal trajectory features ``(n_contexts, n_leaves, d)``
      unrelated to the reward (for misspecified log-linear classes).
    * ``rho`` uniform, or ``Dirichlet(rho_concentration * 1)`` when ``rho_concentration`` is given.
    """
    n_contexts = check_int(n_contexts, "n_contexts", 1)
    vocab_size = check_int(vocab_size, "vocab_size", 2)
    horizon = check_int(horizon, "horizon", 1)
    r_max = check_positive(r_max, "r_max")
    ref_concentration = check_positive(ref_concentration, "ref_concentration")
    if reward not in ("terminal", "dense"):
        raise ValueError(f"reward must be 'terminal' or 'dense', got {reward!r}")
    if feature_dim is not None:
        feature_dim = check_int(feature_dim, "feature_dim", 1)
    tree.check_enumerable(n_contexts, vocab_size, horizon)
    rng = make_rng(seed)
    n_states = tree.n_states(vocab_size, horizon)
    n_leaves = tree.n_leaves(vocab_size, horizon)
    ref_probs = rng.dirichlet(np.full(vocab_size, ref_concentration), size=(n_contexts, n_states))
    if reward == "terminal":
        leaf_rewards = rng.uniform(0.0, r_max, size=(n_contexts, n_leaves))
    else:
        rewards = rng.uniform(0.0, r_max / horizon, size=(n_contexts, n_states, vocab_size))
    features = None if feature_dim is None else rng.standard_normal((n_contexts, n_leaves, feature_dim))
    if rho_concentration is None:
        rho = _uniform_rho(n_contexts)
    else:
        rho = rng.dirichlet(np.full(n_contexts, check_positive(rho_concentration, "rho_concentration")))
    name = f"random(C={n_contexts},A={vocab_size},H={horizon},{reward})"
    if features is not None:
        features = _hand_over(features)
    if reward == "terminal":
        return TokenMDP.terminal_only(rho, _hand_over(ref_probs), leaf_rewards, features=features, r_max=r_max, name=name)
    return TokenMDP.from_arrays(rho, _hand_over(ref_probs), _hand_over(rewards), features=features, r_max=r_max, name=name)


# --------------------------------------------------------------------------------- linear
def linear_bandit(
    d: int,
    n_arms: int,
    seed: SeedLike,
    n_contexts: int = 1,
    r_max: float = 1.0,
    optimal_arm_ref_prob: float | None = None,
) -> TokenMDP:
    """Contextual linear bandit (THEORY 1.1, experiment E7): ``H = 1``, ``r = <theta*, phi(x, y)>`` exactly.

    Design (``d >= 2``): ``phi(x, y) = (1/2, u(x, y)/2)`` with ``u`` uniform in the unit ball of
    ``R^{d-1}`` (coordinate 0 is a constant bias), ``theta* = r_max (1, w)`` with ``w`` a uniform
    unit vector; then ``r(x, y) = (r_max/2)(1 + <w, u>) in [0, r_max]`` by Cauchy–Schwarz,
    ``||phi|| <= 1/sqrt(2)`` and ``||theta*|| = sqrt(2) r_max``. ``theta*`` is stored as
    ``env.reward_parameter``. ``rho`` is uniform.

    ``pi_ref`` is uniform over arms; with ``optimal_arm_ref_prob = p`` in ``(0, 1)`` each context's
    best arm gets ``p`` and the others ``(1 - p)/(n_arms - 1)`` (a poorly covered optimal arm).
    """
    d = check_int(d, "d", 2)
    n_arms = check_int(n_arms, "n_arms", 2)
    n_contexts = check_int(n_contexts, "n_contexts", 1)
    r_max = check_positive(r_max, "r_max")
    tree.check_enumerable(n_contexts, n_arms, 1)
    if optimal_arm_ref_prob is not None:
        optimal_arm_ref_prob = check_open_probability(optimal_arm_ref_prob, "optimal_arm_ref_prob")
    rng = make_rng(seed)
    w = _unit_vector(rng, d - 1)
    u = _unit_ball(rng, (n_contexts, n_arms), d - 1)
    features = np.concatenate([np.full((n_contexts, n_arms, 1), 0.5), u / 2.0], axis=2)
    theta = r_max * np.concatenate([[1.0], w])
    arm_rewards = features @ theta
    ref_probs = np.full((n_contexts, 1, n_arms), 1.0 / n_arms)
    if optimal_arm_ref_prob is not None:
        best = np.argmax(arm_rewards, axis=1)
        ref_probs[:] = (1.0 - optimal_arm_ref_prob) / (n_arms - 1)
        ref_probs[np.arange(n_contexts), 0, best] = optimal_arm_ref_prob
    name = f"linear_bandit(d={d},arms={n_arms})"
    return TokenMDP.terminal_only(
        _uniform_rho(n_contexts), ref_probs, arm_rewards, features=features, r_max=r_max, name=name,
        reward_parameter=theta,
    )


def linear_token_mdp(
    n_contexts: int,
    vocab_size: int,
    horizon: int,
    d: int,
    seed: SeedLike,
    r_max: float = 1.0,
    ref_concentration: float | None = None,
) -> TokenMDP:
    """Linear token MDP (THEORY 1.1): per-token features, trajectory features are their sum.

    Design (``d >= 2``): ``psi(x, s, a) = (1, u(x, s, a)) / (2H)`` with ``u`` uniform in the unit
    ball of ``R^{d-1}``; ``theta* = r_max (1, w)``, ``w`` a uniform unit vector. The per-token reward
    is ``r(s, a) = <theta*, psi(x, s, a)> = r_max (1 + <w, u>)/(2H) in [0, r_max/H]``, the
    trajectory features are ``phi(tau) = sum_h psi(s_h, a_h)`` and hence
    ``r(tau) = <theta*, phi(tau)> in [0, r_max]``. ``theta*`` is ``env.reward_parameter``.
    ``pi_ref`` is uniform, or ``Dirichlet(ref_concentration)`` per state when given. ``rho`` is uniform.
    """
    n_contexts = check_int(n_contexts, "n_contexts", 1)
    vocab_size = check_int(vocab_size, "vocab_size", 2)
    horizon = check_int(horizon, "horizon", 1)
    d = check_int(d, "d", 2)
    r_max = check_positive(r_max, "r_max")
    # per-token features psi (d arrays) and their draws dominate (measured: 2.9 d + 3 per-token arrays)
    tree.check_enumerable(
        n_contexts, vocab_size, horizon, per_token_arrays=tree.BUILD_PER_TOKEN_ARRAYS + 3 * d,
        what=f"building a linear token MDP with d={d}",
    )
    n_states = tree.n_states(vocab_size, horizon)
    rng = make_rng(seed)
    w = _unit_vector(rng, d - 1)
    u = _unit_ball(rng, (n_contexts, n_states, vocab_size), d - 1)
    psi = np.concatenate([np.ones((n_contexts, n_states, vocab_size, 1)), u], axis=3)
    del u
    psi /= 2.0 * horizon
    theta = r_max * np.concatenate([[1.0], w])
    rewards = psi @ theta
    features = tree.path_sums(psi)
    del psi
    if ref_concentration is None:
        ref_probs = np.full((n_contexts, n_states, vocab_size), 1.0 / vocab_size)
    else:
        concentration = check_positive(ref_concentration, "ref_concentration")
        ref_probs = rng.dirichlet(np.full(vocab_size, concentration), size=(n_contexts, n_states))
    name = f"linear_token_mdp(C={n_contexts},A={vocab_size},H={horizon},d={d})"
    return TokenMDP.from_arrays(
        _uniform_rho(n_contexts), _hand_over(ref_probs), _hand_over(rewards), features=_hand_over(features),
        r_max=r_max, name=name, reward_parameter=theta,
    )


def hidden_arm_bandit(n_arms: int, good_arm_ref_prob: float, r_max: float = 1.0) -> TokenMDP:
    """One context, ``n_arms`` arms: arm 0 has reward ``r_max`` and reference probability ``p``;
    the others ``r_max / 2`` and ``(1 - p)/(n_arms - 1)`` each (Proposition 2.1's instance is
    ``n_arms = 2``, ``p = e^{-1/(8 beta)}``). Coverage experiments vary ``n_arms`` (coverability)
    and ``p`` (concentrability ``~ 1/p``) separately."""
    n_arms = check_int(n_arms, "n_arms", 2)
    good_arm_ref_prob = check_open_probability(good_arm_ref_prob, "good_arm_ref_prob")
    ref = np.full((1, 1, n_arms), (1.0 - good_arm_ref_prob) / (n_arms - 1))
    ref[0, 0, 0] = good_arm_ref_prob
    rewards = np.full((1, 1, n_arms), r_max / 2.0)
    rewards[0, 0, 0] = r_max
    return TokenMDP.from_arrays([1.0], ref, rewards, r_max=r_max, name=f"hidden_arm(K={n_arms},p={good_arm_ref_prob:g})")


# ------------------------------------------------------------------------- over-optimization
def headroom_bandit(
    n_covered: int = 8,
    covered_reward_max: float = 0.5,
    rare_exponents=tuple(range(5, 19)),
    rare_per_scale: int = 2,
    r_max: float = 2.0,
) -> TokenMDP:
    """The over-optimization instance of E8 (THEORY 6.3; a reconstruction, not the paper's own instance).

    One context, ``H = 1``. *Covered* arms ``0..n_covered-1`` have rewards evenly spaced in
    ``[0, covered_reward_max]`` (the last is the best arm) and share the reference mass left by the
    rare arms equally. *Rare* arms: ``rare_per_scale`` arms of reward 0 and reference probability
    ``2^-k`` for every ``k`` in ``rare_exponents``, so whatever the number ``n`` of pairs from
    ``pi_ref``, some rare bad arm is seen about once (``k ~ log2(2n)``) and may win its only
    comparison by luck.

    ``r_max`` is the box ``[0, r_max]`` of the reward-induced classes. *Headroom*
    (``r_max > covered_reward_max``) lets such a lucky arm's fitted value exceed the best covered
    arm's, which DPO's link ``e^{f/beta}`` amplifies and chiPO's ``phi^{-1}`` (linear for large
    arguments) does not; ``r_max = covered_reward_max`` is the no-headroom control (a lucky arm can
    at most tie), a large ``r_max`` the nearly-free-logit control.
    """
    n_covered = check_int(n_covered, "n_covered", 2)
    rare_per_scale = check_int(rare_per_scale, "rare_per_scale", 0)
    covered_reward_max = check_positive(covered_reward_max, "covered_reward_max")
    r_max = check_positive(r_max, "r_max")
    if r_max < covered_reward_max:
        raise ValueError(f"r_max must be >= covered_reward_max = {covered_reward_max}, got {r_max!r}")
    try:
        exponents = sorted(int(k) for k in rare_exponents)
    except (TypeError, ValueError):
        raise ValueError(f"rare_exponents must be integers >= 1, got {rare_exponents!r}") from None
    if any(k < 1 or k > 1000 for k in exponents) or len(set(exponents)) != len(exponents):
        raise ValueError(f"rare_exponents must be distinct integers in [1, 1000], got {rare_exponents!r}")
    rare = np.repeat(np.ldexp(1.0, [-k for k in exponents]), rare_per_scale)
    covered_mass = 1.0 - float(rare.sum())
    if covered_mass <= 0.0:
        raise ValueError(f"the rare arms' reference mass {rare.sum():g} leaves nothing for the covered arms: "
                         "use larger rare_exponents or fewer rare_per_scale")
    ref = np.concatenate([np.full(n_covered, covered_mass / n_covered), rare])
    rewards = np.concatenate([np.linspace(0.0, covered_reward_max, n_covered), np.zeros(rare.size)])
    name = (f"headroom_bandit(covered={n_covered}x[0,{covered_reward_max:g}], rare={rare_per_scale}x2^-"
            f"[{exponents[0] if exponents else ''}..{exponents[-1] if exponents else ''}], r_max={r_max:g})")
    return TokenMDP.from_arrays([1.0], ref[None, None, :], rewards[None, None, :], r_max=r_max, name=name)
