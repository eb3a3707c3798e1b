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
    from xposim.harness.fingerprint import code_fingerprint

    assert numba.config.CACHE_DIR == str(kc.CACHE_DIRECTORY)
    assert kc.CACHE_DIRECTORY.name.endswith(code_fingerprint()[:16])


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
