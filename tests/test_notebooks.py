"""Every notebook's code cells run top to bottom (with smaller settings) and finish without error,
every notebook is stored without outputs, and every notebook has the parts of a course notebook."""
import json
import pathlib
import re

import matplotlib
import pytest

matplotlib.use("Agg")

NOTEBOOKS = sorted((pathlib.Path(__file__).resolve().parents[1] / "notebooks").glob("*.ipynb"))

#: A notebook's learner budget line, e.g. ``ROUNDS, SEEDS = 300, 8   # comment`` (at the start of a line).
BUDGET_LINE = re.compile(r"^(\s*)ROUNDS, SEEDS = (\d+), (\d+)", flags=re.MULTILINE)
#: The largest budgets the test runs with; the notebooks' own values are for readers.
TEST_ROUNDS, TEST_SEEDS = 60, 4
#: Course notebooks are numbered: ``NN_name.ipynb``.
NOTEBOOK_NAME = re.compile(r"^(\d\d)_[a-z0-9_]+\.ipynb$")


def shrink_budgets(source: str) -> str:
    """``source`` with every budget line's numbers capped at :data:`TEST_ROUNDS`, :data:`TEST_SEEDS`
    (comments kept; a budget already below the cap is left as it is, never raised)."""
    def cap(match: re.Match) -> str:
        rounds, seeds = min(int(match.group(2)), TEST_ROUNDS), min(int(match.group(3)), TEST_SEEDS)
        return f"{match.group(1)}ROUNDS, SEEDS = {rounds}, {seeds}"

    return BUDGET_LINE.sub(cap, source)


def test_shrink_budgets_rewrites_any_budget_line():
    source = "x = 1\nROUNDS, SEEDS = 300, 16   # raise for smoother curves\n    ROUNDS, SEEDS = 5000, 64\n"
    assert shrink_budgets(source) == (
        "x = 1\nROUNDS, SEEDS = 60, 4   # raise for smoother curves\n    ROUNDS, SEEDS = 60, 4\n"
    )
    assert shrink_budgets("print('ROUNDS, SEEDS = 300, 8')") == "print('ROUNDS, SEEDS = 300, 8')"


def test_shrink_budgets_never_raises_a_budget():
    assert shrink_budgets("ROUNDS, SEEDS = 16, 2  # LM rounds") == "ROUNDS, SEEDS = 16, 2  # LM rounds"
    assert shrink_budgets("ROUNDS, SEEDS = 4096, 2") == "ROUNDS, SEEDS = 60, 2"


def _cells(path: pathlib.Path) -> list[dict]:
    return json.loads(path.read_text())["cells"]


def _source(cell: dict) -> str:
    return "".join(cell["source"])


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.name)
def test_notebook_code_cells_run(path, monkeypatch, tmp_path):
    monkeypatch.chdir(tmp_path)
    namespace: dict = {}
    for cell in _cells(path):
        if cell["cell_type"] != "code":
            continue
        source = shrink_budgets(_source(cell))
        exec(compile(source, f"{path.name}", "exec"), namespace)
    import matplotlib.pyplot as plt

    plt.close("all")


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.name)
def test_notebook_is_stored_without_outputs(path):
    dirty = [
        index
        for index, cell in enumerate(_cells(path))
        if cell.get("outputs") or cell.get("execution_count") is not None
    ]
    assert not dirty, (f"{path.name}: cells {dirty} have outputs or an execution_count; clear them before committing "
                       "(jupyter nbconvert --clear-output --inplace, or nbstripout)")


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.name)
def test_notebook_has_the_parts_of_a_course_notebook(path):
    """A title and learning goals first, two or more exercises whose solutions are hidden cells
    tagged ``solution``, and a closing "What to try next"."""
    cells = _cells(path)
    first = _source(cells[0])
    assert cells[0]["cell_type"] == "markdown" and first.startswith("# "), f"{path.name}: the first cell is not a title"
    assert "**Learning goals.**" in first, f"{path.name}: the first cell states no learning goals"
    headings = [line for cell in cells if cell["cell_type"] == "markdown" for line in _source(cell).splitlines()
                if line.startswith("#")]
    exercises = [h for h in headings if h.startswith("### Exercise")]
    assert len(exercises) >= 2, f"{path.name}: {len(exercises)} exercise(s), expected at least 2"
    assert headings[-1] == "## What to try next", f"{path.name}: the last heading is {headings[-1]!r}"
    tagged = [c for c in cells if "solution" in c.get("metadata", {}).get("tags", [])]
    unhidden = [c.get("id") for c in tagged if not c["metadata"].get("jupyter", {}).get("source_hidden")]
    assert not unhidden, f"{path.name}: solution cells {unhidden} are not hidden (metadata jupyter.source_hidden)"
    solved = sum(1 for i, c in enumerate(cells) if c in tagged and (i == 0 or cells[i - 1] not in tagged))
    assert solved >= len(exercises), f"{path.name}: {len(exercises)} exercises but {solved} solution(s)"


def test_notebooks_are_numbered_once():
    names = [path.name for path in NOTEBOOKS]
    assert all(NOTEBOOK_NAME.match(name) for name in names), f"notebook names must be NN_name.ipynb: {names}"
    numbers = [NOTEBOOK_NAME.match(name).group(1) for name in names]
    assert len(set(numbers)) == len(numbers), f"two notebooks share a number: {names}"


def test_there_is_a_notebook():
    assert NOTEBOOKS, "notebooks/ holds no .ipynb"
