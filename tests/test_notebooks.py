"""Every notebook's code cells run top to bottom (with smaller settings) and finish without error,
and every notebook is stored without outputs."""
import json
import pathlib
import re

import matplotlib
import pytest

matplotlib.use("Agg")

NOTEBOOKS = sorted((pathlib.Path(__file__).resolve().parents[1] / "notebooks").glob("*.ipynb"))

#: A notebook's learner budget line, e.g. ``ROUNDS, SEEDS = 300, 8   # comment`` (at the start of a line).
BUDGET_LINE = re.compile(r"^(\s*)ROUNDS, SEEDS = \d+, \d+", flags=re.MULTILINE)
#: The budgets the test runs with; the notebooks' own values are for readers.
TEST_BUDGET = "ROUNDS, SEEDS = 60, 4"


def shrink_budgets(source: str) -> str:
    """``source`` with every budget line's numbers replaced by :data:`TEST_BUDGET` (comments kept)."""
    return BUDGET_LINE.sub(lambda match: match.group(1) + TEST_BUDGET, source)


def test_shrink_budgets_rewrites_any_budget_line():
    source = "x = 1\nROUNDS, SEEDS = 300, 16   # raise for smoother curves\n    ROUNDS, SEEDS = 5000, 64\n"
    assert shrink_budgets(source) == (
        "x = 1\nROUNDS, SEEDS = 60, 4   # raise for smoother curves\n    ROUNDS, SEEDS = 60, 4\n"
    )
    assert shrink_budgets("print('ROUNDS, SEEDS = 300, 8')") == "print('ROUNDS, SEEDS = 300, 8')"


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.name)
def test_notebook_code_cells_run(path, monkeypatch, tmp_path):
    monkeypatch.chdir(tmp_path)
    notebook = json.loads(path.read_text())
    namespace: dict = {}
    for cell in notebook["cells"]:
        if cell["cell_type"] != "code":
            continue
        source = shrink_budgets("".join(cell["source"]))
        exec(compile(source, f"{path.name}", "exec"), namespace)
    import matplotlib.pyplot as plt

    plt.close("all")


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.name)
def test_notebook_is_stored_without_outputs(path):
    notebook = json.loads(path.read_text())
    dirty = [
        index
        for index, cell in enumerate(notebook["cells"])
        if cell.get("outputs") or cell.get("execution_count") is not None
    ]
    assert not dirty, f"{path.name}: cells {dirty} have outputs or an execution_count; clear them before committing"


def test_there_is_a_notebook():
    assert NOTEBOOKS, "notebooks/ holds no .ipynb"
