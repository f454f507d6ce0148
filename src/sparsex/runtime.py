"""Process-wide settings that keep PyTorch fast on a CPU, and polite on a shared one.

:func:`tune` runs once when sparsex is imported (before it imports torch), and leaves alone
whatever the user set: ``SPARSEX_TUNE=0`` turns it off entirely. Measured on a 2-core machine
(docs/cli.md, "Shared machines" has the figures and the commands):

1. **OpenMP spin** (``GOMP_SPINCOUNT=1000`` unless ``GOMP_SPINCOUNT`` or ``OMP_WAIT_POLICY`` is
   set). PyTorch's OpenMP threads busy-wait 300,000 spins (libgomp's default) at every barrier
   before sleeping. Beside other CPU jobs a spinning thread burns the core that the thread it
   waits for needs: with two single-threaded jobs beside it, a head trained on cached features ran
   4-14x slower than on the idle machine. With a short spin the idle speed stays within the noise
   and a loaded machine gives the run its fair share (about 2x its idle time). It acts only if
   torch is not imported yet.
2. **glibc malloc** (``mallopt``: mmap threshold 32 MiB, trim threshold 512 MiB, unless one of
   ``MALLOC_MMAP_THRESHOLD_``, ``MALLOC_TRIM_THRESHOLD_``, ``MALLOC_TOP_PAD_`` is set). glibc
   starts serving every block above 128 KiB with a fresh ``mmap`` and returns it on ``free``, so
   each activation of a CNN is paid for again in page faults: Lite0 spent more time in the kernel
   than in its own arithmetic. Keeping blocks up to 32 MiB in the heap made frozen-backbone
   inference 1.7x faster (160 px, batches of 8) and integrated gradients 1.2-2.5x; a process may
   keep up to 512 MiB of freed heap for reuse. Only on Linux with glibc.
"""

from __future__ import annotations

import ctypes
import os
import platform
import sys

#: glibc's mallopt parameters (malloc.h)
M_TRIM_THRESHOLD, M_MMAP_THRESHOLD = -1, -3
MMAP_THRESHOLD = 32 * 1024 * 1024  # glibc's largest allowed value on 64-bit systems
TRIM_THRESHOLD = 512 * 1024 * 1024
MALLOC_ENV = ("MALLOC_MMAP_THRESHOLD_", "MALLOC_TRIM_THRESHOLD_", "MALLOC_TOP_PAD_")
#: what :func:`tune` applied in this process (benchmarks record it with the machine)
APPLIED: list[str] = []


def tune() -> list[str]:
    """Apply the settings of the module docstring that the user has not chosen; return what was
    applied (also added to :data:`APPLIED`)."""
    if os.environ.get("SPARSEX_TUNE", "1") == "0":
        return []
    applied = []
    if "torch" not in sys.modules and "GOMP_SPINCOUNT" not in os.environ and "OMP_WAIT_POLICY" not in os.environ:
        os.environ["GOMP_SPINCOUNT"] = "1000"
        applied.append("GOMP_SPINCOUNT=1000")
    if sys.platform.startswith("linux") and platform.libc_ver()[0] == "glibc" and not any(v in os.environ for v in MALLOC_ENV):
        mallopt = getattr(ctypes.CDLL(None), "mallopt", None)
        if mallopt is not None and mallopt(M_MMAP_THRESHOLD, MMAP_THRESHOLD) and mallopt(M_TRIM_THRESHOLD, TRIM_THRESHOLD):
            applied.append(f"mallopt(M_MMAP_THRESHOLD={MMAP_THRESHOLD}, M_TRIM_THRESHOLD={TRIM_THRESHOLD})")
    APPLIED.extend(applied)
    return applied
