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

from xposim._kernel_cache import fingerprint_of, source_files

__all__ = ["code_fingerprint", "short_fingerprint", "package_version", "fingerprint_of", "source_files", "SHORT_LENGTH",
           "UNKNOWN"]

#: Hex digits of the short form.
SHORT_LENGTH = 12
#: What a cell written before fingerprints existed (or without them) reports.
UNKNOWN = "unknown"


def code_fingerprint() -> str:
    """The full fingerprint of the installed ``xposim`` package, computed once per process (at import,
    by :mod:`xposim._kernel_cache`, which keys numba's kernel cache by it)."""
    from xposim import _kernel_cache

    return _kernel_cache.FINGERPRINT


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
