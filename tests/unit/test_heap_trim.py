"""homeserver/heap_trim.py: the periodic malloc_trim thread of ``uzel run`` (issue 9)."""
import sys

import pytest

from homeserver import heap_trim


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="glibc only")
def test_malloc_trim_is_found_and_the_trim_thread_keeps_running():
    trim = heap_trim._malloc_trim()
    assert trim is not None
    assert trim(0) in (0, 1)  # 1: memory was released, 0: nothing to release
    thread = heap_trim.start(interval_s=0.01)
    assert thread is not None and thread.daemon and thread.name == "heap-trim"
    thread.join(timeout=0.1)  # it loops forever: still alive after several rounds
    assert thread.is_alive()
