"""Where numba keeps xposim's compiled kernels: one directory per version of the package's code.

numba's on-disk cache (``cache=True``) checks only the stamp of the file that defines a kernel, not
of the kernels it calls from other files: after an edit (or an in-place upgrade) of a callee, a
caller's cached machine code would run the OLD callee, silently. It also unpickles a cache index
before it checks the stamp, so a type that moved between modules breaks the load. xposim therefore
points numba at a cache directory named by the *kernel fingerprint*: the sha256 of every ``*.py`` file
of the package except those no kernel can reach (:data:`KERNEL_FREE`: the harness, the command line,
the numpy references; numba freezes the globals a kernel reads at compile time, so a module is only
left out when no kernel imports from it, which ``tests/test_kernel_cache.py`` checks). Code that
changed in any other file compiles afresh, code that did not reuses its kernels across processes and
runs; an edit of an experiment's analysis or of a plot does not recompile. The results store records
the fingerprint of *every* file (:data:`FINGERPRINT`): a cell's code includes the harness.

The directory is ``$NUMBA_CACHE_DIR/xposim-<fingerprint[:16]>`` when ``NUMBA_CACHE_DIR`` is set, else
``$XDG_CACHE_HOME/xposim/numba/<fingerprint[:16]>`` (``~/.cache`` by default). The three most
recently used versions are kept; older ones are deleted. This module must run before any kernel is
decorated: ``xposim/__init__.py`` imports it first.
"""
from __future__ import annotations

import hashlib
import os
import shutil
import time
from pathlib import Path

#: Versions of the compiled kernels kept on disk (the most recently used ones).
KEEP_VERSIONS = 3
#: Hex digits of the fingerprint in the directory name.
NAME_LENGTH = 16


#: Package paths (relative POSIX; a trailing ``/`` is a directory) that define no kernel and that no
#: kernel-defining module imports from: left out of :data:`KERNEL_FINGERPRINT`.
KERNEL_FREE = ("harness/", "reference/", "cli.py", "commands.py", "demo.py", "__main__.py", "lm/cli.py")


def kernel_free(relative: str) -> bool:
    """Whether the package file ``relative`` is in :data:`KERNEL_FREE`."""
    return any(relative.startswith(entry) if entry.endswith("/") else relative == entry for entry in KERNEL_FREE)


def source_files(package_dir: str | Path) -> list[tuple[str, Path]]:
    """``(relative POSIX path, absolute path)`` of every ``*.py`` file of the package, sorted by
    relative path; ``__pycache__`` and directories whose name starts with ``.`` are skipped."""
    root = Path(package_dir)
    found = []
    for path in root.rglob("*.py"):
        relative = path.relative_to(root)
        if any(part == "__pycache__" or part.startswith(".") for part in relative.parts[:-1]):
            continue
        if path.is_file():
            found.append((relative.as_posix(), path))
    return sorted(found)


def fingerprint_of(package_dir: str | Path, kernels_only: bool = False) -> str:
    """sha256 over ``len(path) || path || len(bytes) || bytes`` of every source file (lengths as 8-byte
    big-endian integers, so no two file sets give the same stream), in :func:`source_files` order;
    ``kernels_only``: without the :func:`kernel_free` files."""
    digest = hashlib.sha256()
    for relative, path in source_files(package_dir):
        if kernels_only and kernel_free(relative):
            continue
        name = relative.encode("utf-8")
        data = path.read_bytes()
        digest.update(len(name).to_bytes(8, "big"))
        digest.update(name)
        digest.update(len(data).to_bytes(8, "big"))
        digest.update(data)
    return digest.hexdigest()


def kernel_cache_dir(fingerprint: str, environ=os.environ) -> Path:
    """The cache directory of the code with ``fingerprint`` (module docstring)."""
    user = environ.get("NUMBA_CACHE_DIR")
    if user:
        return Path(user) / f"xposim-{fingerprint[:NAME_LENGTH]}"
    base = Path(environ.get("XDG_CACHE_HOME") or Path.home() / ".cache")
    return base / "xposim" / "numba" / fingerprint[:NAME_LENGTH]


def _versions(current: Path) -> list[Path]:
    """The kernel directories of every version of the code beside ``current``, most recent first (only
    xposim's own: ``xposim-*`` under a user's ``NUMBA_CACHE_DIR``)."""
    pattern = "xposim-*" if current.name.startswith("xposim-") else "*"
    versions = [p for p in current.parent.glob(pattern) if p.is_dir()]
    return sorted(versions, key=lambda p: p.stat().st_mtime, reverse=True)


def _prune(current: Path) -> None:
    """Delete all but the :data:`KEEP_VERSIONS` most recently used versions beside ``current``."""
    try:
        for old in _versions(current)[KEEP_VERSIONS:]:
            if old != current:
                shutil.rmtree(old, ignore_errors=True)
    except OSError:
        pass


def clear() -> None:
    """Delete the compiled kernels of every version of the code (``make clean-numba-cache``)."""
    if CACHE_DIRECTORY is not None:
        for version in _versions(CACHE_DIRECTORY):
            shutil.rmtree(version, ignore_errors=True)


def configure(fingerprint: str) -> Path | None:
    """Point numba's cache at the directory of the code with ``fingerprint``; returns it (``None`` if it
    cannot be created: numba then keeps its default, per-source-file cache)."""
    from numba import config

    directory = kernel_cache_dir(fingerprint)
    try:
        directory.mkdir(parents=True, exist_ok=True)
        now = time.time()
        os.utime(directory, (now, now))
    except OSError:
        return None
    config.CACHE_DIR = str(directory)
    _prune(directory)
    return directory


#: The fingerprint of the package's sources as imported by this process (the results store's code
#: fingerprint: :func:`xposim.harness.fingerprint.code_fingerprint`).
FINGERPRINT = fingerprint_of(Path(__file__).resolve().parent)
#: The fingerprint of the sources kernels can reach: names the directory of the compiled kernels.
KERNEL_FINGERPRINT = fingerprint_of(Path(__file__).resolve().parent, kernels_only=True)
CACHE_DIRECTORY = configure(KERNEL_FINGERPRINT)
