"""homeserver/process_memory.py: the memory policy of ``uzel run`` (issue 9)."""
import sqlite3
import sys

import pytest

from homeserver import process_memory


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="glibc only")
def test_malloc_trim_is_found_and_the_trim_thread_keeps_running():
    trim = process_memory._malloc_trim()
    assert trim is not None
    assert trim(0) in (0, 1)  # 1: memory was released, 0: nothing to release
    thread = process_memory.start_heap_trim(interval_s=0.01)
    assert thread is not None and thread.daemon and thread.name == "heap-trim"
    thread.join(timeout=0.1)  # it loops forever: still alive after several rounds
    assert thread.is_alive()


def test_sqlite_soft_heap_limit_is_process_wide():
    before = sqlite3.connect(":memory:")
    old = before.execute("PRAGMA soft_heap_limit").fetchone()[0]
    try:
        assert process_memory.limit_sqlite_heap(16 * 1024 * 1024) == 16 * 1024 * 1024
        other = sqlite3.connect(":memory:")  # another connection sees the same limit
        assert other.execute("PRAGMA soft_heap_limit").fetchone()[0] == 16 * 1024 * 1024
        other.close()
    finally:
        before.execute(f"PRAGMA soft_heap_limit={old}")
        before.close()
