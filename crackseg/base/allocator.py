"""The C allocator's settings for training: freed tensor memory kept for the next step, not given back.

A training step allocates and frees the same activation and gradient buffers again and again. glibc's
``malloc`` serves a buffer from 128 KiB on with a fresh ``mmap`` unless an earlier ``free`` of that size
raised its threshold (it adjusts itself, but only after some histories): every such buffer is then a run
of page faults, each page zeroed by the kernel. In a ``crackseg run`` process (data set, labeler and run
folder handled first) a resnet34 U-Net on 128-px images took 3.4 times the page faults of a bare loop over
the same model, and its forward pass was 8 % slower on the same input (``benchmarks/training_overhead.py``).

:func:`tune_for_training` fixes the thresholds instead: buffers under 32 MiB come from the heap, and up to
256 MiB of free memory at its top is kept for the next step. Training then takes the faults of its first
steps only. The cost is memory that stays with the process after training (at most that much per malloc
arena). A user's own ``MALLOC_MMAP_THRESHOLD_`` or ``MALLOC_TRIM_THRESHOLD_`` wins: then nothing is changed.
Elsewhere than glibc (macOS, Windows, musl) it does nothing.
"""

from __future__ import annotations

import ctypes
import os
import sys

#: ``mallopt`` parameters (glibc's malloc.h)
_M_TRIM_THRESHOLD = -1
_M_MMAP_THRESHOLD = -3
#: buffers below this come from the heap (glibc's largest mmap threshold on 64-bit machines)
MMAP_THRESHOLD = 32 * 1024 * 1024
#: free memory at the top of a heap kept for the next allocation
TRIM_THRESHOLD = 256 * 1024 * 1024
#: the environment variables with which a user sets these thresholds (they are left alone)
USER_SETTINGS = ("MALLOC_MMAP_THRESHOLD_", "MALLOC_TRIM_THRESHOLD_")

_tuned = False


def tune_for_training() -> bool:
    """Set glibc's mmap and trim thresholds for training (see the module docstring), once per process.

    Returns True when they are set (now or by an earlier call); False where this is not glibc or the user
    set them in the environment. Forked loader processes inherit the settings.
    """
    global _tuned
    if _tuned:
        return True
    if not sys.platform.startswith("linux") or any(name in os.environ for name in USER_SETTINGS):
        return False
    try:
        libc = ctypes.CDLL(None)
        libc.gnu_get_libc_version  # noqa: B018 - only glibc has it (musl's mallopt does nothing)
        mallopt = libc.mallopt
    except (OSError, AttributeError):
        return False
    mallopt.argtypes, mallopt.restype = [ctypes.c_int, ctypes.c_int], ctypes.c_int
    _tuned = bool(mallopt(_M_MMAP_THRESHOLD, MMAP_THRESHOLD)) and bool(mallopt(_M_TRIM_THRESHOLD, TRIM_THRESHOLD))
    return _tuned
