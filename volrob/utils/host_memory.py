"""Keep freed host memory in the process for reuse, instead of handing it back to the kernel after every step.

With glibc's default settings, a block larger than the mmap threshold (dynamic, at most 32 MB) is mapped fresh on
every allocation and unmapped on free, and the top of the heap is trimmed back to the kernel once enough of it is
free. An attack step allocates and frees the same gigabytes every iteration (window graphs, full-volume buffers),
so every step touches them as new pages again: on the two-core machine of ``docs/bench_attack.md`` the exact step
took about 11 GB of page faults per call, about a quarter of its time, and naive autograd about 8 GB.

:func:`retain_freed_memory` raises both thresholds (``mallopt``), so freed blocks stay in the heap and the next
allocation of the same size reuses them. What is computed does not change; the process keeps its peak footprint
after a peak instead of returning it, and the peak grows (a freed block is reused only by an allocation that fits
in it; by 4-38 % in the benchmark). On anything but glibc it does nothing and returns ``False``.

The ``volrob`` command calls it at start-up unless the environment sets ``VOLROB_RETAIN_HOST_MEMORY=0``; library
users call it themselves. :func:`host_memory_policy` says which policy the process runs under (recorded with
every result's environment).
"""

from __future__ import annotations

import ctypes
import os
from collections.abc import Callable

ENV_VAR = "VOLROB_RETAIN_HOST_MEMORY"
# mallopt parameter codes (glibc malloc.h)
_M_TRIM_THRESHOLD, _M_TOP_PAD, _M_MMAP_THRESHOLD = -1, -2, -3
_INT_MAX = 2**31 - 1
MMAP_THRESHOLD = 1 << 30
"""Blocks up to 1 GiB come from the heap (reused after free); larger ones are still mapped on demand."""
TOP_PAD = 64 << 20
"""Extra address space reserved when the heap grows (not touched, so not resident until used)."""

_retained = False


def _libc_mallopt() -> Callable[[int, int], int] | None:
    """``mallopt`` of the C library this process runs on (its global symbols: no library search), or ``None``."""
    try:
        fn = ctypes.CDLL(None).mallopt
    except (OSError, AttributeError, TypeError):  # TypeError: platforms where CDLL needs a library name
        return None
    fn.argtypes, fn.restype = [ctypes.c_int, ctypes.c_int], ctypes.c_int
    return fn  # type: ignore[no-any-return]


def retain_freed_memory() -> bool:
    """Make glibc keep freed memory for reuse (see the module docstring); ``True`` when the policy is active.

    Idempotent. Returns ``False`` where ``mallopt`` is unavailable (not glibc: nothing changes) or refuses one of
    the settings (those it accepted stay).
    """
    global _retained
    if _retained:
        return True
    mallopt = _libc_mallopt()
    if mallopt is None:
        return False
    settings = ((_M_MMAP_THRESHOLD, MMAP_THRESHOLD), (_M_TRIM_THRESHOLD, _INT_MAX), (_M_TOP_PAD, TOP_PAD))
    _retained = all(mallopt(param, value) == 1 for param, value in settings)
    return _retained


def retain_unless_disabled() -> bool:
    """:func:`retain_freed_memory` unless ``VOLROB_RETAIN_HOST_MEMORY`` is ``0`` (or ``false``/``no``/``off``)."""
    if os.environ.get(ENV_VAR, "1").strip().lower() in ("0", "false", "no", "off"):
        return False
    return retain_freed_memory()


def host_memory_policy() -> str:
    """``retain`` once :func:`retain_freed_memory` has taken effect in this process, else ``system``."""
    return "retain" if _retained else "system"
