"""Process-wide memory policy of ``uzel run`` (issue 9, server memory): freed heap memory back to
the operating system every few seconds, and one budget for SQLite's page caches.

**Heap trimming.** glibc's ``free`` keeps freed memory inside the process unless it sits at the
very top of a heap. uzel's database threads allocate and free a lot (SQLite page caches are
dropped and refilled as reads and writes alternate; each thread allocates from its own glibc
arena), so freed but unreturned memory piles up: on the full-scale benchmark the resident size
grew to ~132 MB, and to ~124 MB with a trim every 5 s. ``malloc_trim(0)`` releases every free
page of every arena; on a ~130 MB heap it takes 0.2-1.5 ms, run on a thread of its own. Only on
glibc (Linux); elsewhere :func:`start_heap_trim` does nothing.

**SQLite heap limit.** Each SQLite connection may cache up to its ``cache_size`` of pages, and the
server holds several (writer, readers, checkpointer); on the benchmark's 36 MB database their
caches made up ~26 MB of the peak. ``PRAGMA soft_heap_limit`` is process-wide: above it SQLite
reuses its least recently used cache pages instead of allocating more, across all connections.
:data:`SQLITE_SOFT_HEAP_LIMIT` (24 MiB) took the full-scale peak from ~124 to ~112 MB with
latencies unchanged (pages beyond it are read again from the OS page cache).
"""
from __future__ import annotations

import logging
import threading
import time

logger = logging.getLogger(__name__)

DEFAULT_INTERVAL_S = 5.0
SQLITE_SOFT_HEAP_LIMIT = 24 * 1024 * 1024


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


def start_heap_trim(interval_s: float = DEFAULT_INTERVAL_S) -> threading.Thread | None:
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


def limit_sqlite_heap(limit_bytes: int = SQLITE_SOFT_HEAP_LIMIT) -> int:
    """Set SQLite's process-wide soft heap limit (all connections, present and future); returns
    the limit SQLite reports afterwards."""
    import sqlite3
    conn = sqlite3.connect(":memory:")
    try:
        conn.execute(f"PRAGMA soft_heap_limit={int(limit_bytes)}")
        return int(conn.execute("PRAGMA soft_heap_limit").fetchone()[0])
    finally:
        conn.close()
