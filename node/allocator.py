"""The C allocator's thresholds for a long-running process that talks TLS (glibc only).

uvloop's TLS transport decrypts every record it receives into a fresh 256 KiB buffer (its
``SSLObject.read`` size) and shrinks that to the bytes it got. With glibc's defaults a block
that size is mapped and unmapped for every message, or, once the mmap threshold has moved,
taken from the top of the heap and given back to the kernel with ``brk`` each time: two or
three system calls and fresh zeroed pages per TLS read. Here that doubled the round trip of
a small message over a TLS WebSocket between two uvloop processes (p50 128-194 us against
71-74 us with the thresholds below; raw TLS streams 89-140 against 38-67 us).

Raising the mmap threshold to 1 MiB keeps such buffers on the heap, and raising the trim
threshold to 2 MiB keeps freed memory at the heap top for the next one (strace of 3,000
round trips: 3,130 mmap, 3,000 mremap and 3,013 munmap calls before; 122, none and 7 after,
the same as with a 16 MiB trim threshold, with which the timings above were taken). Both
are fixed values, so glibc stops adjusting them itself. The cost is up to 2 MiB per malloc
arena that the process keeps instead of returning to the kernel.
"""

from __future__ import annotations

import ctypes

M_TRIM_THRESHOLD = -1  # glibc's malloc.h parameter numbers
M_MMAP_THRESHOLD = -3
MMAP_THRESHOLD_BYTES = 1 << 20
TRIM_THRESHOLD_BYTES = 2 << 20


def tune_allocator() -> bool:
    """Set the thresholds above; False where the C library has no ``mallopt`` (not glibc)."""
    try:
        mallopt = ctypes.CDLL(None).mallopt
    except (OSError, AttributeError):
        return False
    mallopt.argtypes = (ctypes.c_int, ctypes.c_int)
    mallopt.restype = ctypes.c_int
    mmap_set = mallopt(M_MMAP_THRESHOLD, MMAP_THRESHOLD_BYTES) == 1
    trim_set = mallopt(M_TRIM_THRESHOLD, TRIM_THRESHOLD_BYTES) == 1
    return mmap_set and trim_set
