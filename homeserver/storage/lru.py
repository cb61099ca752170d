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
    """At most ``max_weight`` total weight (``weigher(value)``, 1 per entry by default).

    Without a weigher the values are stored as they are (no ``(value, weight)`` pair per entry:
    56 bytes less each, issue 9, memory); with one, a dict beside them holds the weights."""

    def __init__(self, max_weight: int, weigher: Callable[[V], int] | None = None):
        self.max_weight = max_weight
        self._weigher = weigher
        self._data: OrderedDict[K, V] = OrderedDict()
        self._weights: dict[K, int] | None = {} if weigher is not None else None
        self._weight = 0
        self._lock = threading.Lock()
        self.hits = 0
        self.misses = 0

    def get(self, key: K, default=None):
        with self._lock:
            value = self._data.get(key, _MISSING)
            if value is _MISSING:
                self.misses += 1
                return default
            self._data.move_to_end(key)
            self.hits += 1
            return value

    def __contains__(self, key: K) -> bool:
        with self._lock:
            return key in self._data

    def __len__(self) -> int:
        return len(self._data)

    def set(self, key: K, value: V) -> None:
        weights = self._weights
        weight = self._weigher(value) if weights is not None else 1
        with self._lock:
            data = self._data
            if data.pop(key, _MISSING) is not _MISSING:
                self._weight -= weights.pop(key) if weights is not None else 1
            if weight > self.max_weight:
                return
            data[key] = value
            if weights is not None:
                weights[key] = weight
            self._weight += weight
            while self._weight > self.max_weight and data:
                old_key, _ = data.popitem(last=False)
                self._weight -= weights.pop(old_key) if weights is not None else 1

    def pop(self, key: K, default=None):
        with self._lock:
            value = self._data.pop(key, _MISSING)
            if value is _MISSING:
                return default
            self._weight -= self._weights.pop(key) if self._weights is not None else 1
            return value

    def clear(self) -> None:
        with self._lock:
            self._data.clear()
            if self._weights is not None:
                self._weights.clear()
            self._weight = 0

    @property
    def weight(self) -> int:
        return self._weight
