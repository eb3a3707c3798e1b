"""Contract tests a policy class must pass, for pytest (in the style of dm_env's ``EnvironmentTestMixin``).

Every built-in class's tests inherit :class:`PolicyClassContract`, and so can yours::

    from xposim.testing import PolicyClassContract

    class TestMyClass(PolicyClassContract):
        def make_policy_class(self):
            return MyClass(...)

        def make_env(self):
            return xs.envs.random_token_mdp(2, 3, 2, seed=0)

pytest then runs each ``test_*`` method below on your class. The checks are the interface of
:class:`~xposim.policies.base.PolicyClass` as the runner uses it: the class validates and builds
its state, ``pi^(1) = pi_ref`` (Algorithm 1 starts at the reference), every iterate is a
probability distribution, a run is a function of its seed only (bit for bit), the fused loop of a
built-in class (if it has one) and the generic loop through the interface give the same numbers,
and trl mode is either supported or refused with a clear error.
"""
from __future__ import annotations

import math

import numpy as np

#: KL coefficient of the contract runs.
CONTRACT_BETA = 0.3
#: Rounds of the contract runs (small: the contract checks the interface, not the statistics).
CONTRACT_ROUNDS = 12


class PolicyClassContract:
    """Mixin of contract tests; subclasses define :meth:`make_policy_class` and :meth:`make_env`."""

    def make_policy_class(self):
        """A fresh instance of the class under test."""
        raise NotImplementedError("define make_policy_class() in the test class")

    def make_env(self):
        """A small environment the class accepts."""
        raise NotImplementedError("define make_env() in the test class")

    # ------------------------------------------------------------------ helpers
    def _run(self, learner: str = "xpo", seed: int = 0, policy_class=None):
        from xposim.learners.registry import make_learner
        from xposim.learners.runner import run_learner

        pclass = self.make_policy_class() if policy_class is None else policy_class
        return run_learner(self.make_env(), make_learner(learner), CONTRACT_BETA, CONTRACT_ROUNDS, seed=seed,
                           policy_class=pclass)

    # ------------------------------------------------------------------ the contract
    def test_is_a_policy_class_that_describes_itself(self):
        from xposim.policies.base import PolicyClass

        pclass = self.make_policy_class()
        assert isinstance(pclass, PolicyClass)
        assert isinstance(pclass.name, str) and pclass.name
        description = pclass.describe()
        assert isinstance(description, dict) and description.get("policy_class") == pclass.name

    def test_validate_accepts_its_env_and_refuses_other_objects(self):
        pclass = self.make_policy_class()
        pclass.validate(self.make_env())
        try:
            pclass.validate("not an environment")
        except ValueError as error:
            assert "env" in str(error)
        else:
            raise AssertionError("validate() accepted a string as the environment")

    def test_first_iterate_is_the_reference_policy(self):
        from xposim.policies.arrays import env_arrays
        from xposim.policies.solving import SolverSettings
        from xposim.policies.view import view_leaf_logprobs_into

        env = self.make_env()
        pclass = self.make_policy_class()
        arrays = env_arrays(env)
        state = pclass.create_state(env, arrays, CONTRACT_BETA, SolverSettings(), rng=np.random.default_rng(0))
        view = pclass.initial_view(arrays, state)
        logp = np.empty(arrays.leaf_logref.shape)
        view_leaf_logprobs_into(view, arrays, logp)
        np.testing.assert_allclose(np.exp(logp), np.exp(arrays.leaf_logref), rtol=0, atol=1e-12)

    def test_iterates_are_distributions_and_metrics_finite(self):
        result = self._run("xpo")
        probabilities = np.exp(result.leaf_logprobs())
        np.testing.assert_allclose(probabilities.sum(axis=1), 1.0, rtol=0, atol=1e-10)
        assert np.all(probabilities >= 0.0)
        value_columns = [i for i, c in enumerate(result.columns) if c not in ("max_certified_gap",)]
        assert np.all(np.isfinite(result.metrics[:, value_columns]))
        # a local argmin of a non-convex objective has no bound: an infinite gap, counted as uncertified
        gap = result.metrics[:, result.columns.index("max_certified_gap")]
        uncertified = result.metrics[:, result.columns.index("uncertified_solves")]
        assert np.all((gap >= 0.0) & (np.isfinite(gap) | (uncertified > 0)))
        assert result.counters[0] > 0, "the class never counted a solve (problem.counters[COUNTER_SOLVES])"
        assert math.isfinite(result.final_value) and result.final_value <= result.optimal_value + 1e-9

    def test_same_seed_same_numbers(self):
        first = self._run("xpo", seed=5)
        again = self._run("xpo", seed=5)
        other = self._run("xpo", seed=6)
        assert first.metrics.tobytes() == again.metrics.tobytes()
        assert first.leaf_logprobs().tobytes() == again.leaf_logprobs().tobytes()
        assert other.metrics.tobytes() != first.metrics.tobytes()

    def test_generic_loop_through_the_interface_matches(self):
        """A subclass has no fused loop: the runner drives it through the interface. Same numbers."""
        from xposim.learners.fused import fused_loop_for

        pclass = self.make_policy_class()
        if fused_loop_for(pclass) is None:
            return  # already driven through the interface in every other test
        generic = type(f"Generic{type(pclass).__name__}", (type(pclass),), {})
        twin = object.__new__(generic)
        twin.__dict__.update(pclass.__dict__)
        assert fused_loop_for(twin) is None
        for learner in ("xpo", "selm"):
            fused = self._run(learner, seed=2)
            driven = self._run(learner, seed=2, policy_class=twin)
            assert fused.metrics.tobytes() == driven.metrics.tobytes(), learner

    def test_trl_mode_is_supported_or_refused_clearly(self):
        pclass = self.make_policy_class()
        if pclass.supports_gradient_steps:
            result = self._run("xpo_trl")
            np.testing.assert_allclose(np.exp(result.leaf_logprobs()).sum(axis=1), 1.0, rtol=0, atol=1e-10)
        else:
            try:
                self._run("xpo_trl")
            except ValueError as error:
                assert "trl" in str(error)
            else:
                raise AssertionError("a class without gradient steps ran mode='trl'")


__all__ = ["PolicyClassContract", "CONTRACT_BETA", "CONTRACT_ROUNDS"]
