"""The experiment harness: named experiments, the runner, the results store, statistics, plots.

* :func:`run_experiment` — run a named experiment into ``OUT/NAME`` (resumable) and analyse it.
* :mod:`xposim.harness.runner` — cells, stable ids and seeds, execution on any executor.
* :mod:`xposim.harness.store` — the on-disk layout of a run.
* :mod:`xposim.harness.stats`, :mod:`xposim.harness.plots` — statistics and figures.
* :mod:`xposim.harness.report` — a Markdown report of a results directory.
"""
from xposim.harness.api import DEFAULT_OUT, run_experiment
from xposim.harness.experiments import Experiment, all_experiments, experiment_names, get_experiment
from xposim.harness.runner import Cell, dask_executor, make_cells, run_cells
from xposim.harness.store import ResultsStore

__all__ = [
    "run_experiment",
    "DEFAULT_OUT",
    "Experiment",
    "all_experiments",
    "experiment_names",
    "get_experiment",
    "Cell",
    "make_cells",
    "run_cells",
    "dask_executor",
    "ResultsStore",
]
