"""Hand freed heap memory back to the operating system every few seconds (issue 9, server memory).

glibc's ``free`` keeps freed memory inside the process unless it sits at the very top of a heap.
uzel's database threads allocate and free a lot (SQLite page caches are dropped and refilled
as reads and writes alternate; each thread allocates from its own glibc arena), so freed but
unreturned memory piles up: on the full-scale benchmark the resident size grew to ~132 MB while
a server trimming every 5 s peaked at ~100-124 MB. ``malloc_trim(0)`` releases every free page
of every arena; on a ~130 MB heap it takes 0.2-1.5 ms, run here on a thread of its own.

Only on glibc (Linux); elsewhere :func:`start` does nothing.
"""
from __future__ import annotations

import logging
import threading
import time

logger = logging.getLogger(__name__)

DEFAULT_INTERVAL_S = 5.0


def _malloc_trim():
    """glibc's ``malloc_trim`` as a callable, or None when the C library has none."""
    try:
        import ctypes
        libc = ctypes.CDLL("libc.so.6")
        trim = libc.malloc_trim
    except (OSError, AttributeError, ImportError):
        return None
    trim.argtypes = [ctypes.c_size_t]
    trim.restype = ctypes.c_int
    return trim


def start(interval_s: float = DEFAULT_INTERVAL_S) -> threading.Thread | None:
    """Start a daemon thread calling ``malloc_trim(0)`` every ``interval_s`` seconds; returns it,
    or None when the C library cannot trim."""
    trim = _malloc_trim()
    if trim is None:
        logger.debug("heap trimming unavailable (no glibc malloc_trim)")
        return None

    def loop() -> None:
        while True:
            time.sleep(interval_s)
            trim(0)  # the GIL is released during the call

    thread = threading.Thread(target=loop, name="heap-trim", daemon=True)
    thread.start()
    return thread
