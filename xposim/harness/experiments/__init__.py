"""Named experiments (THEORY.md section 7), registered on import.

``xposim list`` shows them; :func:`get_experiment` fetches one by name.
"""
from xposim.harness.experiments.base import (
    Experiment,
    all_experiments,
    experiment_names,
    get_experiment,
    register_experiment,
)
# registration order = the order of `xposim list`
from xposim.harness.experiments import identities  # noqa: F401,E402  (E1)
from xposim.harness.experiments import separation  # noqa: F401,E402  (E2)
from xposim.harness.experiments import rate  # noqa: F401,E402  (E3)
from xposim.harness.experiments import coverage  # noqa: F401,E402  (E4)
from xposim.harness.experiments import alpha  # noqa: F401,E402  (E5)
from xposim.harness.experiments import reward_range  # noqa: F401,E402  (E6)
from xposim.harness.experiments import linear  # noqa: F401,E402  (E7)
from xposim.harness.experiments import overoptimization  # noqa: F401,E402  (E8)
from xposim.harness.experiments import practice  # noqa: F401,E402  (E9)
from xposim.harness.experiments import dueling  # noqa: F401,E402  (E10)
from xposim.harness.experiments import selftest  # noqa: F401,E402  (harness self-test)
from xposim.harness.experiments import sweep  # noqa: F401,E402  (user environments and learners)

__all__ = ["Experiment", "all_experiments", "experiment_names", "get_experiment", "register_experiment"]
