"""Reward-model learners (two-stage RLHF with an exploration rule) as :class:`LearnerConfig` subclasses.

Every learner fits a Bradley–Terry reward model by maximum likelihood on the pairs so far —
linear ``r(x, tau) = <theta, phi(x, tau)>`` on environments with ``env.features``, one value per
``(context, response)`` (one-hot features) on the others — asks its oracle about the pair its
rule picks, and outputs ``pi_hat ∝ pi_ref exp(r_hat / beta)``, the KL-regularized optimum of the
fitted reward, so its ``J_beta`` suboptimality is comparable number for number with XPO's.

Constants marked [P] are the papers'; [R] marks a reconstruction where the paper leaves a
choice open (a constant, a confidence level, the ridge standing in for an initial exploration
phase). The papers' ``kappa`` is the smallest slope of the link over the reward range,
``sigma'(R_max) = sigma(R_max)(1 - sigma(R_max))`` (their ``kappa`` / ``gamma`` with reward
differences bounded by ``R_max``), and ``d`` is the dimension of one parameter block: the feature
dimension, or the number of leaves of a context in the one-hot case.
"""
from __future__ import annotations

import dataclasses
import math
from typing import ClassVar

from xposim.learners.config import LearnerConfig
from xposim.learners.plan import Sampler
from xposim.learners.reward_models import rules
from xposim.validation import check_int, check_open_probability, check_positive


def link_slope(r_max: float) -> float:
    """``kappa = sigma'(R_max)``: the smallest slope of the Bradley–Terry link on ``[-R_max, R_max]``."""
    s = 1.0 / (1.0 + math.exp(-r_max))
    return s * (1.0 - s)


def _check_optional_positive(value, argument: str):
    return None if value is None else check_positive(value, argument)


@dataclasses.dataclass(frozen=True)
class RewardModelLearner(LearnerConfig):
    """Base of the reward-model learners (not registered itself; see the subclasses).

    Each round: ``x ~ rho``; the rule picks ``(i, j)``; the oracle labels it; the counts, the
    inverse design matrix (Sherman–Morrison) and the Newton factor are updated by rank one; the
    MLE is refit by warm-started Newton; ``pi_hat`` is recomputed exactly. ``batch_size = B``
    queries ``B`` pairs per round (widths updated between them, the fit once per round). Run by
    :func:`xposim.learners.reward_models.run_reward_model` (``run_learner`` dispatches to it).
    Only ``mode='paper'`` exists; ``alpha`` and ``solver`` do not apply.
    """

    ridge: float = 1.0
    """Ridge ``lambda > 0`` of the MLE, ``F(theta) = NLL + (lambda/2)||theta||^2``, and of the design
    matrix ``V = lambda I + sum z z^T`` [R] (the papers start with a random-exploration phase that
    makes ``V`` invertible instead; the ridge does that from round 1)."""
    newton_tolerance: float = 1e-10
    """The Newton solve stops at a step with ``max |step| <= newton_tolerance`` (reward units), or one
    after which the contraction observed so far puts the next step below it (the step is applied)."""
    newton_max_iterations: int = 100
    """A solve that has taken this many steps stops and counts in ``solver_failures``."""

    registry_name: ClassVar[str] = "reward_model"
    rule: ClassVar[int] = rules.RULE_PASSIVE
    #: whether the rule reads the inverse design matrix (MaxInP, CoLSTIM, pessimism)
    uses_design: ClassVar[bool] = False

    def __post_init__(self) -> None:
        super().__post_init__()
        check_positive(self.ridge, "ridge")
        check_positive(self.newton_tolerance, "newton_tolerance")
        check_int(self.newton_max_iterations, "newton_max_iterations", 1)
        if self.mode != "paper":
            raise ValueError(f"mode must be 'paper' for a reward-model learner (a fit on all pairs each round), "
                             f"got {self.mode!r}")
        if self.reference not in (None, "fixed"):
            raise ValueError(f"reference must be None or 'fixed' for a reward-model learner (its policy is "
                             f"pi_ref exp(r_hat/beta)/Z), got {self.reference!r}")

    # -- LearnerConfig interface -------------------------------------------------
    # the plan is not executed (the reward-model runner has its own round; pairs come from the
    # rule); callers that inspect it see paper mode, reference samplers and no bonus
    first_sampler = Sampler.REFERENCE
    second_sampler = Sampler.REFERENCE

    has_policy_loss: ClassVar[bool] = False

    def describe(self) -> dict:
        out = super().describe()
        out["ridge"] = self.ridge
        return out

    # -- the rule's constants ----------------------------------------------------
    def rule_constants(self, d: int, queries: int, r_max: float) -> dict:
        """Resolved constants of the rule for block dimension ``d``, ``queries`` planned queries and
        the environment's ``R_max`` (keys of :class:`~xposim.learners.reward_models.loop.Constants`)."""
        return {}

    def extra_uniforms(self, n_leaves: int, d: int) -> int:
        return rules.extra_uniforms(self.rule, n_leaves, d, 0)


@dataclasses.dataclass(frozen=True)
class MaxInP(RewardModelLearner):
    """MaxInP, "maximum informative pair" (Saha 2021, *Optimal algorithms for stochastic contextual
    preference bandits*, NeurIPS)::

        C_t = {i : rhat_i - rhat_j + gamma_t ||phi_i - phi_j||_{V^{-1}} >= 0 for every arm j}
        (i, j) = argmax_{i, j in C_t} ||phi_i - phi_j||_{V^{-1}}
        gamma_t = (radius_scale / kappa) sqrt((d/2) log(1 + 2 n_t / d) + log(1 / delta))

    ``n_t`` = queries of the block so far; ``V`` = ``lambda I + sum z z^T`` over them. A single
    surviving arm is paired with itself (no information, zero regret). Cost ``O(K^2 d)`` per query
    on ``K`` arms.
    """

    delta: float = 0.05
    """Confidence level ``delta`` of ``gamma_t`` [R]: the paper's radius holds with probability
    ``1 - delta`` for a ``delta`` the user picks; 0.05 here."""
    radius_scale: float = 1.0
    """Multiplies ``gamma_t``; 1 is the paper's radius [P] (from Li, Lu & Zhou 2017, Thm 1, with the
    sub-Gaussian constant of a {0, 1} label, 1/2, bounded by 1 [R])."""

    registry_name: ClassVar[str] = "maxinp"
    rule: ClassVar[int] = rules.RULE_MAXINP
    uses_design: ClassVar[bool] = True

    def __post_init__(self) -> None:
        super().__post_init__()
        check_open_probability(self.delta, "delta")
        check_positive(self.radius_scale, "radius_scale")

    def rule_constants(self, d: int, queries: int, r_max: float) -> dict:
        return {"kappa": link_slope(r_max), "delta": float(self.delta), "radius_scale": float(self.radius_scale)}


@dataclasses.dataclass(frozen=True)
class CoLSTIM(RewardModelLearner):
    """CoLSTIM (Bengs, Saha & Hüllermeier 2022, *Stochastic contextual dueling bandits under linear
    stochastic transitivity models*, ICML)::

        i = argmax_i rhat_i + clip(eps_i, -C_thresh, C_thresh) ||phi_i||_{V^{-1}},  eps_i ~ Gumbel(0, 1)
        j = argmax_j rhat_j + c_1 ||phi_j - phi_i||_{V^{-1}}

    The first arm imitates the feedback process (a Gumbel perturbation is the logistic link's
    random utility), the second is the optimistic challenger against it.
    """

    width: float | None = None
    """``c_1`` of the challenger's bonus; None: ``sqrt(d log T)`` with ``T`` the run's queries [R]
    (the value of the paper's experiments; its analysis asks for a larger constant with ``kappa``)."""
    threshold: float | None = None
    """``C_thresh``, the clipping of the Gumbel perturbation; None: ``sqrt(d log T)`` [R] (as for
    ``width``)."""

    registry_name: ClassVar[str] = "colstim"
    rule: ClassVar[int] = rules.RULE_COLSTIM
    uses_design: ClassVar[bool] = True

    def __post_init__(self) -> None:
        super().__post_init__()
        _check_optional_positive(self.width, "width")
        _check_optional_positive(self.threshold, "threshold")

    def rule_constants(self, d: int, queries: int, r_max: float) -> dict:
        default = math.sqrt(d * math.log(max(queries, 1)))
        return {"colstim_width": default if self.width is None else float(self.width),
                "colstim_threshold": default if self.threshold is None else float(self.threshold)}


@dataclasses.dataclass(frozen=True)
class ThompsonEE(RewardModelLearner):
    """Thompson sampling, explore–exploit mode of SEA (Liu et al. 2024, *Sample-efficient alignment
    for LLMs*; oat's ``EnnEETS``), from the Laplace posterior ``N(theta_hat, s^2 H^{-1})`` of the
    reward model (``H``: the Newton matrix, the Hessian of the penalized negative log-likelihood)::

        i = argmax r_{theta_1},  theta_1 ~ posterior
        j = argmax r_{theta_k} for the first k = 2..samples whose argmax differs from i (else i)
    """

    posterior_scale: float = 1.0
    """``s``: the posterior's standard deviations are multiplied by it; 1 is the Laplace
    approximation itself [R] (SEA samples an ensemble of networks instead)."""
    samples: int = 20
    """Posterior draws per query at most: oat's default ensemble size (``num_ensemble = 20``) [P]."""

    registry_name: ClassVar[str] = "thompson_ee"
    rule: ClassVar[int] = rules.RULE_THOMPSON_EE

    def __post_init__(self) -> None:
        super().__post_init__()
        check_positive(self.posterior_scale, "posterior_scale")
        check_int(self.samples, "samples", 2)

    def rule_constants(self, d: int, queries: int, r_max: float) -> dict:
        return {"posterior_scale": float(self.posterior_scale), "samples": int(self.samples)}

    def extra_uniforms(self, n_leaves: int, d: int) -> int:
        return rules.extra_uniforms(self.rule, n_leaves, d, self.samples)


@dataclasses.dataclass(frozen=True)
class ThompsonBAI(RewardModelLearner):
    """Thompson sampling, best-arm-identification mode of SEA (Liu et al. 2024; oat's ``EnnBAITS``)::

        i = argmax r_{theta_1},  theta_1 ~ N(theta_hat, s^2 H^{-1})
        j = argmax_j Var[r_j - r_i] = argmax_j s^2 ||phi_j - phi_i||^2_{H^{-1}}

    the challenger whose preference logit against ``i`` is the most uncertain (oat: the variance of
    the logit ``r_j - r_i`` over the ensemble).
    """

    posterior_scale: float = 1.0
    """``s`` as in :class:`ThompsonEE` [R]."""

    registry_name: ClassVar[str] = "thompson_bai"
    rule: ClassVar[int] = rules.RULE_THOMPSON_BAI

    def __post_init__(self) -> None:
        super().__post_init__()
        check_positive(self.posterior_scale, "posterior_scale")

    def rule_constants(self, d: int, queries: int, r_max: float) -> dict:
        return {"posterior_scale": float(self.posterior_scale)}


@dataclasses.dataclass(frozen=True)
class PassiveMLE(RewardModelLearner):
    """The passive baseline: both responses from ``pi_ref`` (at the learner's ``temperature``),
    the MLE refit every round, ``pi_hat ∝ pi_ref exp(r_hat / beta)`` output."""

    registry_name: ClassVar[str] = "passive_mle"
    rule: ClassVar[int] = rules.RULE_PASSIVE


@dataclasses.dataclass(frozen=True)
class PessimisticMLE(RewardModelLearner):
    """Pessimistic MLE (Zhu, Jordan & Jiao 2023, *Principled RLHF from pairwise or K-wise
    comparisons*, ICML), offline::

        D = n pairs (x ~ rho, tau, tau' ~ pi_ref(.|x), one label each)
        r_lcb(x, tau) = r_hat(x, tau) - Gamma ||phi(x, tau)||_{V^{-1}},  V = lambda I + sum_D z z^T
        pi_hat ∝ pi_ref exp(r_lcb / beta)                    # one fit, reported at every checkpoint

    ``Gamma`` default: the paper's ``C sqrt((d + log(1/delta)) / (gamma^2 n) + lambda B^2)`` for the
    covariance ``Sigma_D = V / n``, which in the unnormalized ``V`` reads
    ``C sqrt((d + log(1/delta)) / kappa^2 + lambda B^2)``. The paper states the bound for the
    policy's expected feature with a reference vector ``v``; here the bound is applied per response
    with ``v = 0`` [R] (a per-context constant would cancel in ``pi_hat``). ``rounds`` of
    :func:`xposim.simulate` is the default ``n``; ``cumulative_regret`` is NaN.
    """

    n_pairs: int | None = None
    """Size ``n`` of the offline dataset (None: the ``rounds`` of the run)."""
    gamma: float | None = None
    """``Gamma`` itself (None: the paper's formula with the three fields below)."""
    delta: float = 0.05
    """Confidence level ``delta`` of ``Gamma`` [R] (user-chosen in the paper)."""
    pessimism_scale: float = 1.0
    """``C``, the paper's unspecified absolute constant [R]."""
    norm_bound: float | None = None
    """``B >= ||theta*||``; None: ``R_max sqrt(d)``, the largest norm of a reward vector in
    ``[0, R_max]^d`` (exact for one-hot features) [R]."""

    registry_name: ClassVar[str] = "pessimistic_mle"
    rule: ClassVar[int] = rules.RULE_PESSIMISTIC
    uses_design: ClassVar[bool] = True

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.n_pairs is not None:
            check_int(self.n_pairs, "n_pairs", 1)
        if self.gamma is not None:
            check_positive(self.gamma, "gamma")
        check_open_probability(self.delta, "delta")
        check_positive(self.pessimism_scale, "pessimism_scale")
        _check_optional_positive(self.norm_bound, "norm_bound")

    @property
    def is_offline(self) -> bool:
        return True

    def pessimism_width(self, d: int, r_max: float) -> float:
        """``Gamma`` of the lower confidence bound for block dimension ``d`` (class docstring)."""
        if self.gamma is not None:
            return float(self.gamma)
        kappa = link_slope(r_max)
        bound = r_max * math.sqrt(d) if self.norm_bound is None else float(self.norm_bound)
        return self.pessimism_scale * math.sqrt((d + math.log(1.0 / self.delta)) / kappa**2 + self.ridge * bound**2)


#: registry name -> class (registered in :data:`xposim.learners.registry.LEARNERS`)
REWARD_MODEL_LEARNERS = {
    cls.registry_name: cls for cls in (MaxInP, CoLSTIM, ThompsonEE, ThompsonBAI, PassiveMLE, PessimisticMLE)
}

__all__ = ["RewardModelLearner", "MaxInP", "CoLSTIM", "ThompsonEE", "ThompsonBAI", "PassiveMLE", "PessimisticMLE",
           "REWARD_MODEL_LEARNERS", "link_slope"]
