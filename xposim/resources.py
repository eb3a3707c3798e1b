"""Memory limits: refuse a request before it runs the machine out of memory.

Every entry point that allocates in proportion to its arguments (building a ``TokenMDP``,
``simulate``'s table, a sweep's cells) estimates the bytes it needs and calls
:func:`check_memory`, which compares the estimate with the memory the machine has available and
raises a ``ValueError`` that states both numbers. The estimates count the large arrays a request
allocates, on the high side where the size is uncertain (Python objects and temporaries are not
counted), and a request may plan on :data:`MEMORY_FRACTION` of the available memory.
"""
from __future__ import annotations

import os

#: Share of the available memory one request may plan to use.
MEMORY_FRACTION = 0.8


def available_memory() -> int:
    """Bytes of memory available to new allocations (``MemAvailable`` of ``/proc/meminfo``; else
    the physical memory from ``os.sysconf``; else 4 GiB). ``XPOSIM_MEMORY_LIMIT`` (bytes) caps it."""
    limit = None
    try:
        with open("/proc/meminfo", encoding="ascii") as meminfo:
            for line in meminfo:
                if line.startswith("MemAvailable:"):
                    limit = int(line.split()[1]) * 1024
                    break
    except (OSError, ValueError, IndexError):
        pass
    if limit is None:
        try:
            limit = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
        except (ValueError, OSError, AttributeError):
            limit = 4 << 30
    cap = os.environ.get("XPOSIM_MEMORY_LIMIT")
    if cap:
        try:
            limit = min(limit, int(float(cap)))
        except ValueError:
            raise ValueError(f"XPOSIM_MEMORY_LIMIT must be a number of bytes, got {cap!r}") from None
    return int(limit)


def format_bytes(n: float) -> str:
    """``1536 -> '1.5 KiB'``; any size, including ones beyond float range, without failing."""
    if not isinstance(n, float):
        n = int(n)
        if n.bit_length() > 1000:  # beyond float: give the power of two
            return f"about 2^{n.bit_length() - 1} B"
        n = float(n)
    for unit in ("B", "KiB", "MiB", "GiB", "TiB", "PiB"):
        if abs(n) < 1024.0 or unit == "PiB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024.0
    return f"{n:.1f} PiB"  # pragma: no cover


def check_memory(needed: int | float, what: str, hint: str = "") -> None:
    """``ValueError`` when ``needed`` bytes exceed :data:`MEMORY_FRACTION` of :func:`available_memory`.

    The message names ``what`` (the request), both numbers, and ``hint`` (how to make it smaller).
    """
    available = available_memory()
    if needed > MEMORY_FRACTION * available:
        message = (f"{what} needs about {format_bytes(needed)} of memory, more than this machine can give "
                   f"({format_bytes(available)} available, of which {MEMORY_FRACTION:.0%} may be planned)")
        raise ValueError(message + (f"; {hint}" if hint else ""))
