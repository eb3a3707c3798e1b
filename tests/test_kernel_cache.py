"""numba's kernel cache is keyed by the fingerprint of xposim's sources (xposim/_kernel_cache.py)."""
from __future__ import annotations

import os
import time

import numba
import pytest

from xposim import _kernel_cache as kc


@pytest.mark.fast
def test_cache_directory_is_named_by_the_code_fingerprint(tmp_path):
    package = tmp_path / "pkg"
    package.mkdir()
    (package / "a.py").write_text("x = 1\n")
    first = kc.fingerprint_of(package)
    assert kc.kernel_cache_dir(first, {"XDG_CACHE_HOME": str(tmp_path)}) == tmp_path / "xposim" / "numba" / first[:16]
    assert kc.kernel_cache_dir(first, {"NUMBA_CACHE_DIR": "/somewhere"}).as_posix() == f"/somewhere/xposim-{first[:16]}"
    (package / "a.py").write_text("x = 2\n")  # any edit: another directory, so no stale kernel can load
    assert kc.fingerprint_of(package) != first


def test_this_process_uses_the_directory_of_its_code():
    if kc.CACHE_DIRECTORY is None:
        pytest.skip("the cache directory could not be created here")
    assert numba.config.CACHE_DIR == str(kc.CACHE_DIRECTORY)
    assert kc.CACHE_DIRECTORY.name.endswith(kc.KERNEL_FINGERPRINT[:16])


@pytest.mark.fast
def test_kernel_fingerprint_leaves_out_only_the_kernel_free_files(tmp_path):
    package = tmp_path / "pkg"
    (package / "harness").mkdir(parents=True)
    (package / "a.py").write_text("x = 1\n")
    (package / "harness" / "plots.py").write_text("y = 1\n")
    kernels, everything = kc.fingerprint_of(package, kernels_only=True), kc.fingerprint_of(package)
    (package / "harness" / "plots.py").write_text("y = 2\n")  # a plot edit: same kernels, new store code
    assert kc.fingerprint_of(package, kernels_only=True) == kernels
    assert kc.fingerprint_of(package) != everything
    (package / "a.py").write_text("x = 2\n")
    assert kc.fingerprint_of(package, kernels_only=True) != kernels


def _module_level_imports(path, name):
    """The xposim modules a module's top-level statements import from (``from a.b import c`` counts
    ``a.b`` and ``a.b.c``; relative imports resolved)."""
    import ast

    tree = ast.parse(open(path, encoding="utf-8").read())
    package = name if path.endswith("__init__.py") else name.rpartition(".")[0]
    found = set()
    for node in tree.body:
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                parts = package.split(".")
                base = ".".join(parts[:len(parts) - node.level + 1] + ([base] if base else []))
            found.add(base)
            found.update(f"{base}.{alias.name}" for alias in node.names)
    return {m for m in found if m == "xposim" or m.startswith("xposim.")}


def test_no_kernel_can_reach_a_kernel_free_module():
    """numba freezes the globals a kernel reads when it compiles: a module left out of the kernel
    fingerprint must define no kernel, and no module a kernel module imports (transitively, at module
    level: where constants come from) may be one of them."""
    import importlib
    import pkgutil
    import sys

    import xposim
    from numba.core.registry import CPUDispatcher

    package_dir = os.path.dirname(xposim.__file__)
    for info in pkgutil.walk_packages([package_dir], "xposim."):
        if info.name != "xposim.__main__":  # (running it is the command line)
            importlib.import_module(info.name)
    files, free, defining = {}, set(), []
    for name, module in list(sys.modules.items()):
        if not (name == "xposim" or name.startswith("xposim.")) or getattr(module, "__file__", None) is None:
            continue
        files[name] = module.__file__
        relative = os.path.relpath(module.__file__, package_dir).replace(os.sep, "/")
        kernels = [v for v in vars(module).values()
                   if isinstance(v, CPUDispatcher) and getattr(v.py_func, "__module__", None) == name]
        if kc.kernel_free(relative):
            free.add(name)
            assert not kernels, f"{relative} defines kernels but is in KERNEL_FREE"
        elif kernels:
            defining.append(name)
    assert free and defining
    reached, todo = set(defining), list(defining)
    while todo:
        name = todo.pop()
        for imported in _module_level_imports(files[name], name):
            if imported in files and imported not in reached:
                assert imported not in free, f"{imported} is in KERNEL_FREE but kernels reach it (via {name})"
                reached.add(imported)
                todo.append(imported)


@pytest.mark.fast
def test_only_the_most_recent_versions_are_kept(tmp_path):
    base = tmp_path / "cache"
    versions = []
    for i in range(5):
        directory = base / f"xposim-{i:016d}"
        directory.mkdir(parents=True)
        stamp = time.time() - 100 * (5 - i)
        os.utime(directory, (stamp, stamp))
        versions.append(directory)
    (base / "not-ours").mkdir()  # a user's NUMBA_CACHE_DIR may hold other things: never touched
    kc._prune(versions[-1])
    left = sorted(p.name for p in base.iterdir())
    assert left == ["not-ours"] + [v.name for v in versions[-kc.KEEP_VERSIONS:]]
