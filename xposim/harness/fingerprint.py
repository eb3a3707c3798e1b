"""The fingerprint of the code that computes results: which source produced a stored cell.

A cell id hashes a cell's *settings*; the fingerprint hashes the *code*. It is

    sha256( for each file f in sorted(relative POSIX paths of the package's *.py files):
                len(path_f) || path_f || len(bytes_f) || bytes_f )

(lengths as 8-byte big-endian integers, so no two file sets give the same stream), over every
``*.py`` file below the installed ``xposim`` package directory, caches (``__pycache__``) and
hidden directories excluded. It is computed once per process and cached; :func:`short_fingerprint`
is its first 12 hex digits, the form written into cells, manifests and reports. Any edit of any
source file of the package changes it; an edit elsewhere (tests, docs, results) does not.
"""
from __future__ import annotations

import functools
import hashlib
from pathlib import Path

__all__ = ["code_fingerprint", "short_fingerprint", "package_version", "source_files", "SHORT_LENGTH",
           "UNKNOWN"]

#: Hex digits of the short form.
SHORT_LENGTH = 12
#: What a cell written before fingerprints existed (or without them) reports.
UNKNOWN = "unknown"


def _package_dir() -> Path:
    import xposim

    return Path(xposim.__file__).resolve().parent


def source_files(package_dir: str | Path | None = None) -> list[tuple[str, Path]]:
    """``(relative POSIX path, absolute path)`` of every ``*.py`` file of the package, sorted by
    relative path; ``__pycache__`` and directories whose name starts with ``.`` are skipped."""
    root = Path(package_dir) if package_dir is not None else _package_dir()
    found = []
    for path in root.rglob("*.py"):
        relative = path.relative_to(root)
        if any(part == "__pycache__" or part.startswith(".") for part in relative.parts[:-1]):
            continue
        if path.is_file():
            found.append((relative.as_posix(), path))
    return sorted(found)


def fingerprint_of(package_dir: str | Path) -> str:
    """The full (64 hex digit) fingerprint of the ``*.py`` sources below ``package_dir``
    (formula in the module docstring)."""
    digest = hashlib.sha256()
    for relative, path in source_files(package_dir):
        name = relative.encode("utf-8")
        data = path.read_bytes()
        digest.update(len(name).to_bytes(8, "big"))
        digest.update(name)
        digest.update(len(data).to_bytes(8, "big"))
        digest.update(data)
    return digest.hexdigest()


@functools.lru_cache(maxsize=1)
def code_fingerprint() -> str:
    """The full fingerprint of the installed ``xposim`` package, computed once per process."""
    return fingerprint_of(_package_dir())


def short_fingerprint() -> str:
    """The first :data:`SHORT_LENGTH` hex digits of :func:`code_fingerprint`."""
    return code_fingerprint()[:SHORT_LENGTH]


@functools.lru_cache(maxsize=1)
def package_version() -> str:
    """The installed xposim version (``xposim.__version__``, else the distribution metadata)."""
    import xposim

    version = getattr(xposim, "__version__", None)
    if version:
        return str(version)
    try:
        from importlib.metadata import version as dist_version

        return dist_version("xposim")
    except Exception:  # noqa: BLE001 - not installed as a distribution
        return UNKNOWN
