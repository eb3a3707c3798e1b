"""One vocabulary for every table xposim writes: column names, their order and their dtypes.

``simulate``'s table, the harness's ``results.parquet`` and the LM path's log all use these names
with these dtypes (tested in ``tests/test_columns.py``). A run is identified by ``learner`` (str)
and ``seed`` (int64: the index of the run's ``SeedSequence`` child of the root seed); a checkpoint
by ``round`` (int64) and ``queries`` (int64, preference labels so far).
"""
from __future__ import annotations

import numpy as np
import pandas as pd

#: The run identifiers, first in every table.
RUN_COLUMNS = ("learner", "seed")

#: Exact metrics recorded at each checkpoint of a learner run (definitions: ``xposim.simulate``).
METRIC_COLUMNS = (
    "round",
    "queries",
    "kl_regularized_value",
    "suboptimality",
    "best_iterate_suboptimality",
    "average_iterate_suboptimality",
    "cumulative_regret",
    "kl_to_ref",
    "expected_reward",
    "argmax_regret",
    "bai_regret",
    "dueling_regret",
    "weak_regret",
    "strong_regret",
    "solver_failures",
    "solver_disagreements",
    "uncertified_solves",
    "max_certified_gap",
)

#: Integer columns (counts and indices); every other numeric column is float64.
INT_COLUMNS = frozenset({"seed", "round", "queries", "labels", "solver_failures", "solver_disagreements",
                         "uncertified_solves", "gradient_steps"})
#: String columns.
STR_COLUMNS = frozenset({"learner", "mode", "scoring", "cell_id"})


#: Float columns of the vocabulary (the metrics, and the settings every table shares).
FLOAT_COLUMNS = frozenset(set(METRIC_COLUMNS) - INT_COLUMNS) | {"beta", "alpha", "temperature"}


#: pandas' string dtype (what ``Series.astype(str)`` gives: ``str`` in pandas 3, ``object`` before).
STR_DTYPE = pd.Series(["x"]).astype(str).dtype


def column_dtype(name: str):
    """The dtype of column ``name`` in every table: int64, :data:`STR_DTYPE` or float64; ``None`` for
    a column outside the vocabulary (an experiment's own setting keeps the dtype it has)."""
    if name in INT_COLUMNS:
        return np.dtype(np.int64)
    if name in STR_COLUMNS:
        return STR_DTYPE
    if name in FLOAT_COLUMNS:
        return np.dtype(np.float64)
    return None


def metrics_table(metrics: np.ndarray, learner: str, seed: int, columns=METRIC_COLUMNS) -> pd.DataFrame:
    """The tidy rows of one run: ``learner``, ``seed`` and the metric ``columns`` (the first
    ``len(columns)`` columns of ``metrics``, one row per checkpoint), with the vocabulary's dtypes."""
    frame = pd.DataFrame(np.asarray(metrics)[:, :len(columns)], columns=list(columns))
    frame.insert(0, "seed", int(seed))
    frame.insert(0, "learner", str(learner))
    return with_dtypes(frame)


def with_dtypes(frame: pd.DataFrame) -> pd.DataFrame:
    """``frame`` with every column of the vocabulary cast to its dtype (others left as they are)."""
    casts = {name: column_dtype(name) for name in frame.columns}
    casts = {name: dtype for name, dtype in casts.items() if dtype is not None and frame[name].dtype != dtype}
    return frame.astype(casts) if casts else frame
