"""SQL for server-side search (modules/search.md) over both engines; no policy.

Schema 0017_search: SQLite keeps an FTS5 table (porter + unicode61 tokenizer) beside the
``event_search`` rows; PostgreSQL a ``tsvector`` column ('english' configuration) with a GIN index.
Index changes (a row per searchable event, its removal when the event is redacted) come from
homeserver/history/indexer.py after the event's persist transaction has committed. They wait in
memory for :data:`FLUSH_DELAY` and are then written together in one transaction, with the events
stream position up to which the index is complete (``server_meta`` ``search_indexed_to``): an FTS5
or GIN insert costs about as much for one row as for a hundred, and a message's own commit stays
small. :meth:`SearchStore.search` writes what is queued first, so a search sees every event that
was sent before it; after a crash the indexer re-reads the events past the recorded position.

Queries are built from the search term's words only (:func:`query_words`): every word must match,
as a prefix, so no user text ever reaches the FTS query syntax.
"""
from __future__ import annotations

import logging
import re
from dataclasses import dataclass
from typing import Callable, Sequence, Union

from twisted.internet import defer

from .database import Txn

logger = logging.getLogger(__name__)

#: Seconds an index change waits in memory before it is written (with every other one queued).
FLUSH_DELAY = 0.05
#: Queued changes that trigger a write at once.
FLUSH_AT = 500
POSITION_KEY = "search_indexed_to"

#: Search keys (search.yaml ``keys``) and the event type each one is read from.
KEY_TYPES = {"content.body": "m.room.message", "content.name": "m.room.name", "content.topic": "m.room.topic"}

_WORD = re.compile(r"[^\W_]+", re.UNICODE)
MAX_WORDS = 16


def query_words(term: str) -> list[str]:
    """The distinct lower-cased words of a search term (at most :data:`MAX_WORDS`)."""
    return list(dict.fromkeys(w.lower() for w in _WORD.findall(term)))[:MAX_WORDS]


def clean_text(text: str) -> str:
    """Text safe for both engines: no NUL (PostgreSQL refuses it), no lone surrogates."""
    return text.encode("utf-8", "replace").decode("utf-8").replace("\x00", " ")


@dataclass(frozen=True)
class SearchRow:
    event_nid: int
    event_id: str
    room_id: str
    sender: str
    key: str
    value: str
    stream_ordering: int
    origin_server_ts: int


#: A queued index change: a row to add, or the event ID of a row to remove.
IndexChange = Union[SearchRow, str]


@dataclass(frozen=True)
class SearchHit:
    event_id: str
    room_id: str
    sender: str
    rank: float
    stream_ordering: int


def _marks(n: int) -> str:
    return ",".join("?" * n)


class SearchStore:
    def __init__(self, hs):
        self.hs = hs
        self.db = hs.db
        self._queued: list[IndexChange] = []
        self._flush_call = None
        self._writing = False
        self._waiters: list[defer.Deferred] = []
        #: The events stream position below which every event has been queued (set by the indexer).
        self.complete_to: Callable[[], int] | None = None

    # --- the write queue ----------------------------------------------------------------------------
    def queue(self, changes: Sequence[IndexChange]) -> None:
        """Index changes of committed events, in stream order; written within :data:`FLUSH_DELAY`."""
        self._queued.extend(changes)
        if len(self._queued) >= FLUSH_AT:
            self._start_write()
        elif self._flush_call is None and not self._writing:
            self._flush_call = self.hs.reactor.callLater(FLUSH_DELAY, self._start_write)

    async def flush(self) -> None:
        """Return once every change queued before the call is written."""
        while self._queued or self._writing:
            if not self._writing:
                self._start_write()
            d: defer.Deferred = defer.Deferred()
            self._waiters.append(d)
            await d

    def _start_write(self) -> None:
        if self._flush_call is not None:
            if self._flush_call.active():
                self._flush_call.cancel()
            self._flush_call = None
        if self._writing or not self._queued:
            return
        changes, self._queued = self._queued, []
        position = self.complete_to() if self.complete_to is not None else None
        self._writing = True
        d = defer.ensureDeferred(self._write(changes, position))
        d.addErrback(lambda f: logger.error("search index write failed: %s", f.getErrorMessage()))
        d.addBoth(self._written)

    async def _write(self, changes: list[IndexChange], position: int | None) -> None:
        try:
            await self.db.run("index_search", self._write_txn, changes, position)
            return
        except Exception as e:
            logger.warning("writing %d search index changes failed (%s); writing them one by one",
                           len(changes), e)
        for change in changes:  # one bad row must not keep the others out
            try:
                await self.db.run("index_search_one", self._write_txn, [change], None)
            except Exception:
                logger.exception("search index change for %s dropped",
                                 change if isinstance(change, str) else change.event_id)
        if position is not None:
            await self.db.run("index_search_position", self._write_txn, [], position)

    def _written(self, _result) -> None:
        self._writing = False
        waiters, self._waiters = self._waiters, []
        if self._queued and self._flush_call is None:
            self._flush_call = self.hs.reactor.callLater(FLUSH_DELAY, self._start_write)
        for d in waiters:
            d.callback(None)

    @classmethod
    def _write_txn(cls, txn: Txn, changes: Sequence[IndexChange], position: int | None) -> None:
        txn.batch_writes()
        for change in changes:
            if isinstance(change, SearchRow):
                cls.add_txn(txn, change)
            else:
                cls.remove_txn(txn, change)
        if position is not None:
            txn.execute("INSERT INTO server_meta (key, value) VALUES (?, ?)"
                        " ON CONFLICT (key) DO UPDATE SET value = excluded.value", (POSITION_KEY, str(position)))

    async def indexed_to(self) -> int | None:
        """The recorded position (None: never recorded, the index was written with the events)."""
        value = await self.db.run("search_indexed_to", lambda txn: txn.scalar(
            "SELECT value FROM server_meta WHERE key = ?", (POSITION_KEY,)), readonly=True)
        return int(value) if value is not None else None

    async def record_indexed_to(self, position: int) -> None:
        await self.db.run("index_search_position", self._write_txn, [], position)

    async def timeline_events_after(self, position: int) -> list[tuple[int, str, int]]:
        """(event_nid, event_id, stream_ordering) of the timeline events past ``position``, in order."""
        return await self.db.run("events_to_index", lambda txn: [tuple(r) for r in txn.execute(
            "SELECT event_nid, event_id, stream_ordering FROM events WHERE stream_ordering > ?"
            " AND outlier = ? AND rejected_reason IS NULL AND soft_failed = ? ORDER BY stream_ordering",
            (position, False, False)).fetchall()], readonly=True)

    # --- writes -----------------------------------------------------------------------------------
    @staticmethod
    def add_txn(txn: Txn, row: SearchRow) -> None:
        value = clean_text(row.value)
        args = (row.event_nid, row.event_id, row.room_id, row.sender, row.key, value, row.stream_ordering,
                row.origin_server_ts)
        if txn.engine_name == "postgres":
            txn.execute(
                "INSERT INTO event_search (event_nid, event_id, room_id, sender, key, value, stream_ordering,"
                " origin_server_ts, vector) VALUES (?, ?, ?, ?, ?, ?, ?, ?, to_tsvector('english', ?))"
                " ON CONFLICT DO NOTHING", (*args, value))
            return
        txn.execute(
            "INSERT INTO event_search (event_nid, event_id, room_id, sender, key, value, stream_ordering,"
            " origin_server_ts) VALUES (?, ?, ?, ?, ?, ?, ?, ?) ON CONFLICT DO NOTHING", args)
        if txn.rowcount:
            txn.execute("INSERT INTO event_search_fts (rowid, value) VALUES (?, ?)", (row.event_nid, value))

    @staticmethod
    def remove_txn(txn: Txn, event_id: str) -> bool:
        """Drop a (redacted) event from the index; returns whether it was indexed."""
        row = txn.execute("SELECT event_nid, value FROM event_search WHERE event_id = ?", (event_id,)).fetchone()
        if row is None:
            return False
        if txn.engine_name != "postgres":
            txn.execute("INSERT INTO event_search_fts (event_search_fts, rowid, value) VALUES ('delete', ?, ?)",
                        (row[0], row[1]))
        txn.execute("DELETE FROM event_search WHERE event_nid = ?", (row[0],))
        return True

    # --- search -----------------------------------------------------------------------------------
    async def search(self, words: Sequence[str], room_ids: Sequence[str], *, keys: Sequence[str] | None = None,
                     senders: Sequence[str] | None = None, not_senders: Sequence[str] = (),
                     order_by: str = "rank", limit: int = 10, offset: int = 0,
                     before_stream: int | None = None) -> tuple[list[SearchHit], int]:
        """Events of ``room_ids`` whose text has every one of ``words`` (as word prefixes), and an
        estimate of how many there are in all.

        ``order_by`` "rank" (most relevant first, then newest; page with ``offset``) or "recent"
        (newest first; page with ``before_stream``, exclusive)."""
        await self.flush()
        if not words or not room_ids or limit <= 0 or (keys is not None and not keys) or \
                (senders is not None and not senders):
            return [], 0
        pg = self.db.engine_name == "postgres"
        where: list[str] = []
        args: list = []
        where.append(f"s.room_id IN ({_marks(len(room_ids))})")
        args += list(room_ids)
        if keys is not None:
            where.append(f"s.key IN ({_marks(len(keys))})")
            args += list(keys)
        if senders is not None:
            where.append(f"s.sender IN ({_marks(len(senders))})")
            args += list(senders)
        if not_senders:
            where.append(f"s.sender NOT IN ({_marks(len(not_senders))})")
            args += list(not_senders)
        if pg:
            query = " & ".join(f"{w}:*" for w in words)
            source = "event_search s, to_tsquery('english', ?) q"
            match = "s.vector @@ q"
            rank = "ts_rank_cd(s.vector, q)"
        else:
            query = " ".join(f'"{w}"*' for w in words)
            source = "event_search_fts f JOIN event_search s ON s.event_nid = f.rowid"
            match = "event_search_fts MATCH ?"
            rank = "-bm25(event_search_fts)"
        base_where = " AND ".join([match] + where)
        page_where = base_where
        page_args = [query, *args]
        if order_by == "recent":
            if before_stream is not None:
                page_where += " AND s.stream_ordering < ?"
                page_args.append(before_stream)
            order = "s.stream_ordering DESC"
            tail, tail_args = " LIMIT ?", [limit]
        else:
            order = "rank DESC, s.stream_ordering DESC"
            tail, tail_args = " LIMIT ? OFFSET ?", [limit, offset]
        sql = (f"SELECT s.event_id, s.room_id, s.sender, {rank} AS rank, s.stream_ordering FROM {source}"
               f" WHERE {page_where} ORDER BY {order}{tail}")
        count_sql = f"SELECT COUNT(*) FROM {source} WHERE {base_where}"

        def txn_fn(txn: Txn):
            txn.execute(sql, [*page_args, *tail_args])
            hits = [SearchHit(r[0], r[1], r[2], float(r[3] or 0.0), r[4]) for r in txn.fetchall()]
            count = txn.scalar(count_sql, [query, *args]) or 0
            return hits, int(count)
        return await self.db.run("search_events", txn_fn, readonly=True)
