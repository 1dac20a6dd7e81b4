"""How much memory this machine can still give us, so that work too large for it is refused before it starts.

Used before reading an image (a header may declare sizes that no machine could hold) and, later, before inference.
Without a way to tell (an unknown platform) the answer is None and callers skip their check rather than guess.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Optional

MEMINFO = Path("/proc/meminfo")


def available_memory_bytes() -> Optional[int]:
    """Linux: ``MemAvailable`` (free plus reclaimable cache); other POSIX: physical memory; else None."""
    try:
        for line in MEMINFO.read_text(encoding="ascii").splitlines():
            if line.startswith("MemAvailable:"):
                return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        pass
    try:
        return os.sysconf("SC_PHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
    except (AttributeError, ValueError, OSError):
        return None


def describe_bytes(count: float) -> str:
    for unit, scale in (("TB", 1e12), ("GB", 1e9), ("MB", 1e6)):
        if count >= scale:
            return f"{count / scale:.1f} {unit}"
    return f"{count / 1e3:.1f} kB"
