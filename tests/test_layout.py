"""Package layout: the command modules form no import cycle; one name has one meaning."""
from __future__ import annotations

import ast
import importlib
from pathlib import Path

import pytest

import xposim

PACKAGE = Path(xposim.__file__).parent


def _xposim_imports(relative: str) -> set[str]:
    """Every ``xposim...`` module imported anywhere in the file (function-level imports and
    ``importlib.import_module("...")`` included)."""
    found = set()
    for node in ast.walk(ast.parse((PACKAGE / relative).read_text())):
        if isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("xposim"):
            found.add(node.module)
        elif isinstance(node, ast.Import):
            found |= {a.name for a in node.names if a.name.startswith("xposim")}
        elif isinstance(node, ast.Constant) and isinstance(node.value, str) and node.value.startswith("xposim."):
            found.add(node.value)
    return found


@pytest.mark.fast
def test_command_modules_have_no_import_cycle():
    assert _xposim_imports("commands.py") == set()
    for plugin in ("harness/cli.py", "lm/cli.py", "demo.py"):
        imports = _xposim_imports(plugin)
        assert "xposim.cli" not in imports, plugin
        assert "xposim.harness.cli" not in imports, plugin
    assert {"xposim.harness.cli", "xposim.lm.cli"} <= _xposim_imports("cli.py")


@pytest.mark.fast
def test_simulate_is_a_function_and_its_module_is_simulation():
    assert callable(xposim.simulate) and xposim.simulate.__module__ == "xposim.simulation"
    with pytest.raises(ModuleNotFoundError):
        importlib.import_module("xposim.simulate")
