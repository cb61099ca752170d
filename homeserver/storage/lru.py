"""A small thread-safe LRU cache with an optional weight per entry (e.g. the size of a state map).

Used by the stores for caches that database worker threads may read while the reactor thread
writes them; a lock makes every operation atomic.
"""
from __future__ import annotations

import threading
from collections import OrderedDict
from typing import Callable, Generic, Hashable, TypeVar

K = TypeVar("K", bound=Hashable)
V = TypeVar("V")

_MISSING = object()


class LruCache(Generic[K, V]):
    """At most ``max_weight`` total weight (``weigher(value)``, 1 per entry by default)."""

    def __init__(self, max_weight: int, weigher: Callable[[V], int] | None = None):
        self.max_weight = max_weight
        self._weigher = weigher
        self._data: OrderedDict[K, tuple[V, int]] = OrderedDict()
        self._weight = 0
        self._lock = threading.Lock()
        self.hits = 0
        self.misses = 0

    def get(self, key: K, default=None):
        with self._lock:
            item = self._data.get(key, _MISSING)
            if item is _MISSING:
                self.misses += 1
                return default
            self._data.move_to_end(key)
            self.hits += 1
            return item[0]

    def __contains__(self, key: K) -> bool:
        with self._lock:
            return key in self._data

    def __len__(self) -> int:
        return len(self._data)

    def set(self, key: K, value: V) -> None:
        weight = self._weigher(value) if self._weigher else 1
        with self._lock:
            old = self._data.pop(key, None)
            if old is not None:
                self._weight -= old[1]
            if weight > self.max_weight:
                return
            self._data[key] = (value, weight)
            self._weight += weight
            while self._weight > self.max_weight and self._data:
                _, (_, w) = self._data.popitem(last=False)
                self._weight -= w

    def pop(self, key: K, default=None):
        with self._lock:
            item = self._data.pop(key, None)
            if item is None:
                return default
            self._weight -= item[1]
            return item[0]

    def clear(self) -> None:
        with self._lock:
            self._data.clear()
            self._weight = 0

    @property
    def weight(self) -> int:
        return self._weight
