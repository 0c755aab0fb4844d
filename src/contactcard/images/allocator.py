"""Freed picture buffers go back to the system (glibc only).

glibc gives an allocation above its mmap threshold a mapping of its own and unmaps it on
free, but each such free raises the threshold to the freed size: the next picture's
buffers then come from the heap and stay resident once freed. After a few images a
process keeps tens of megabytes it no longer uses (measured: 50-60 MiB after a handful of
12-megapixel PNG or WebP files, against 14 MiB with a fixed threshold). Setting the
threshold explicitly switches that adjustment off (mallopt(3)); 128 KiB is glibc's own
starting value. Elsewhere (musl, macOS) this does nothing.
"""

from __future__ import annotations

import ctypes
import platform

_M_TRIM_THRESHOLD = -1  # from <malloc.h>
_M_MMAP_THRESHOLD = -3
_THRESHOLD = 128 * 1024


def fix_mmap_threshold() -> bool:
    """True when the threshold was fixed."""
    if platform.libc_ver()[0] != "glibc":
        return False
    try:
        libc = ctypes.CDLL("libc.so.6", use_errno=True)
        # The trim threshold too: free memory at the top of the heap is returned from
        # 128 KiB on, rather than from twice the largest mapping freed so far.
        return bool(libc.mallopt(_M_MMAP_THRESHOLD, _THRESHOLD) and libc.mallopt(_M_TRIM_THRESHOLD, _THRESHOLD))
    except (OSError, AttributeError):
        return False
