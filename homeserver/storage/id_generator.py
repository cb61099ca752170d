"""Stream ID allocation for one writer process.

IDs are handed out in increasing order, but transactions may commit out of order; the
*current token* is the highest ID below which every allocated ID has finished, so a reader
that has seen the current token has seen everything before it.
"""
from __future__ import annotations

import contextlib
from typing import Iterator

from .database import Txn


class StreamIdGenerator:
    def __init__(self, start: int):
        self._last = start
        self._unfinished: set[int] = set()
        self._current = start

    @classmethod
    def from_table(cls, txn: Txn, table: str, column: str) -> "StreamIdGenerator":
        return cls(txn.scalar(f"SELECT COALESCE(MAX({column}), 0) FROM {table}") or 0)

    def allocate(self, n: int = 1) -> list[int]:
        """Reserve n IDs; each must be passed to finish() once its write committed or failed."""
        ids = list(range(self._last + 1, self._last + 1 + n))
        self._last += n
        self._unfinished.update(ids)
        return ids

    def finish(self, ids) -> None:
        self._unfinished.difference_update(ids)
        self._current = (min(self._unfinished) - 1) if self._unfinished else self._last

    @contextlib.contextmanager
    def get_next(self) -> Iterator[int]:
        (sid,) = self.allocate(1)
        try:
            yield sid
        finally:
            self.finish([sid])

    def current_token(self) -> int:
        return self._current

    def last_allocated(self) -> int:
        """The highest id allocated so far (finished or not)."""
        return self._last
