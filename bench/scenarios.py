"""The benchmark scenarios of issue 9, each run the same way against every server.

A scenario is a ``Scenario`` subclass: ``rows(scale)`` names the table rows it produces (with the
metric each row's ratio compares), and ``run(ctx)`` sets up what it needs (not timed), measures,
and returns ``{row name: Stats summary}``. Set-up and measurement go through bench/load.py, so a
failed request is an error in the row (never a success), and a route the server lacks ends the
scenario with ``EndpointMissing`` (the runner reports "n/a (404)").

Rows and their metric (ratio = how many times better uzel is):
  ops_s   throughput, higher is better: ratio = uzel / synapse
  p50_ms  latency, lower is better:     ratio = synapse / uzel
  mb      memory, lower is better:      ratio = synapse / uzel
"""
from __future__ import annotations

import asyncio
import itertools
import time
from dataclasses import dataclass
from typing import Any

from bench.load import ApiError, Matrix, Stats, User, gather_limited, run_load

USERS_CONCURRENT = 16
SETUP_CONCURRENCY = 8


@dataclass(frozen=True)
class Scale:
    name: str
    time_limit: float  # seconds per measured phase (no new operation starts after it)
    create_rooms: int
    seq_sends: int
    concurrent_sends_per_user: int  # x 16 users
    sync_samples: int
    sync_rooms: int  # initial sync: rooms the user is in
    sync_messages: int  # messages per room
    sync_members: int  # members per room (the user and others, who send the messages)
    sync_repeats: int  # measured initial syncs per mode (after one cold one)
    paging_events: int
    paging_limit: int
    paging_passes: int
    join_members: int
    join_marks: tuple[int, ...]  # member counts at which join latency is reported
    join_window: int  # joins before each mark that make up its sample


SCALES = {
    "small": Scale("small", time_limit=20, create_rooms=20, seq_sends=150, concurrent_sends_per_user=10,
                   sync_samples=15, sync_rooms=20, sync_messages=20, sync_members=3, sync_repeats=5,
                   paging_events=500, paging_limit=50, paging_passes=3,
                   join_members=200, join_marks=(50, 100, 200), join_window=10),
    "full": Scale("full", time_limit=120, create_rooms=100, seq_sends=1000, concurrent_sends_per_user=50,
                  sync_samples=50, sync_rooms=100, sync_messages=20, sync_members=5, sync_repeats=10,
                  paging_events=2000, paging_limit=100, paging_passes=3,
                  join_members=1000, join_marks=(100, 500, 1000), join_window=20),
}


class Ctx:
    """What a scenario gets for one server: its Matrix client, the scale, unique user names."""

    _ids = itertools.count()

    def __init__(self, matrix: Matrix, scale: Scale, server_name: str, run_tag: str):
        self.matrix = matrix
        self.scale = scale
        self.server_name = server_name
        self.run_tag = run_tag

    async def users(self, n: int, label: str) -> list[User]:
        """Register n fresh users (set-up; not timed)."""
        base = f"{label}{self.run_tag}x{next(self._ids)}u"
        return await gather_limited([lambda i=i: self.matrix.register(f"{base}{i}") for i in range(n)],
                                    SETUP_CONCURRENCY)

    async def public_room(self, creator: User, members: list[User]) -> str:
        """A public room created by ``creator`` that ``members`` have joined (set-up)."""
        room_id = await self.matrix.create_room(creator, preset="public_chat")
        await gather_limited([lambda u=u: self.matrix.join(u, room_id) for u in members], SETUP_CONCURRENCY)
        return room_id


@dataclass(frozen=True)
class Row:
    name: str
    metric: str  # "ops_s" | "p50_ms" | "mb"


class Scenario:
    key = ""
    title = ""

    def rows(self, scale: Scale) -> list[Row]:
        return [Row(self.title, "ops_s")]

    async def run(self, ctx: Ctx) -> dict[str, dict]:
        raise NotImplementedError


class RoomCreation(Scenario):
    """POST /createRoom, one user, one after another."""

    key = "create_room"
    title = "room creation (1 user, sequential)"

    async def run(self, ctx):
        (user,) = await ctx.users(1, "create")
        m = ctx.matrix
        await m.create_room(user)  # warm-up
        stats = await run_load(lambda i: m.create_room(user), count=ctx.scale.create_rooms, concurrency=1,
                               time_limit=ctx.scale.time_limit)
        return {self.title: stats.summary()}


class SequentialSends(Scenario):
    """PUT /rooms/{roomId}/send: one user, one room, each send after the previous one returned."""

    key = "send_sequential"
    title = "sends, sequential (1 user, 1 room)"

    async def run(self, ctx):
        (user,) = await ctx.users(1, "seq")
        m = ctx.matrix
        room = await m.create_room(user)
        for n in range(3):  # warm-up
            await m.send_message(user, room, f"warm-up {n}")
        stats = await run_load(lambda i: m.send_message(user, room, f"message {i}"), count=ctx.scale.seq_sends,
                               concurrency=1, time_limit=ctx.scale.time_limit)
        return {self.title: stats.summary()}


class ConcurrentSendsOneRoom(Scenario):
    """16 users, each sending its next message as soon as its previous one returned, all into one room."""

    key = "send_concurrent_1room"
    title = "sends, 16 users -> 1 room"

    async def run(self, ctx):
        users = await ctx.users(USERS_CONCURRENT, "conc")
        m = ctx.matrix
        room = await ctx.public_room(users[0], users[1:])
        await m.send_message(users[0], room, "warm-up")
        stats = await run_load(lambda i: m.send_message(users[i % USERS_CONCURRENT], room, f"message {i}"),
                               count=USERS_CONCURRENT * ctx.scale.concurrent_sends_per_user,
                               concurrency=USERS_CONCURRENT, time_limit=ctx.scale.time_limit)
        return {self.title: stats.summary()}


class ConcurrentSendsManyRooms(Scenario):
    """16 users sending concurrently, each into its own room."""

    key = "send_concurrent_16rooms"
    title = "sends, 16 users -> 16 rooms"

    async def run(self, ctx):
        users = await ctx.users(USERS_CONCURRENT, "many")
        m = ctx.matrix
        rooms = await gather_limited([lambda u=u: m.create_room(u) for u in users], SETUP_CONCURRENCY)
        await m.send_message(users[0], rooms[0], "warm-up")
        stats = await run_load(
            lambda i: m.send_message(users[i % USERS_CONCURRENT], rooms[i % USERS_CONCURRENT], f"message {i}"),
            count=USERS_CONCURRENT * ctx.scale.concurrent_sends_per_user,
            concurrency=USERS_CONCURRENT, time_limit=ctx.scale.time_limit)
        return {self.title: stats.summary()}


def _timeline_event_ids(sync_body: dict, room_id: str) -> list[str]:
    room = ((sync_body.get("rooms") or {}).get("join") or {}).get(room_id) or {}
    return [e.get("event_id") for e in (room.get("timeline") or {}).get("events") or [] if isinstance(e, dict)]


class SyncDelivery(Scenario):
    """A sends into a room; B's long-polling GET /sync (already waiting) returns the event.
    Latency runs from the start of A's send to the arrival of B's sync response holding it."""

    key = "sync_delivery"
    title = "sync delivery latency (A sends -> B's /sync)"

    def rows(self, scale):
        return [Row(self.title, "p50_ms")]

    async def run(self, ctx):
        a, b = await ctx.users(2, "sync")
        m = ctx.matrix
        room = await ctx.public_room(a, [b])
        since = (await m.sync(b))["next_batch"]
        stats = Stats()
        stats.begin()
        deadline = time.perf_counter() + ctx.scale.time_limit
        for n in range(ctx.scale.sync_samples):
            if time.perf_counter() >= deadline:
                break
            since = (await m.sync(b, since=since))["next_batch"]  # drain anything pending
            try:
                latency, since = await self._one_sample(m, a, b, room, since, n)
            except (ApiError, asyncio.TimeoutError) as e:
                stats.error(e if isinstance(e, ApiError) else ApiError("timeout: event never reached /sync"))
                since = (await m.sync(b, since=since))["next_batch"]
            else:
                stats.ok(latency)
        stats.end()
        return {self.title: stats.summary()}

    @staticmethod
    async def _one_sample(m: Matrix, a: User, b: User, room: str, since: str, n: int) -> tuple[float, str]:
        async def long_poll(token: str) -> tuple[dict, float]:
            body = await m.sync(b, since=token, timeout_ms=30_000, request_timeout=45)
            return body, time.perf_counter()

        poll = asyncio.ensure_future(long_poll(since))
        await asyncio.sleep(0.15)  # let the request reach the server and park
        if poll.done():  # returned early with something else; wait again from its position
            since = poll.result()[0]["next_batch"]
            poll = asyncio.ensure_future(long_poll(since))
            await asyncio.sleep(0.15)
        t0 = time.perf_counter()
        try:
            event_id = await m.send_message(a, room, f"ping {n}")
        except BaseException:
            poll.cancel()
            raise
        give_up = t0 + 15
        while True:
            body, arrived = await asyncio.wait_for(poll, timeout=max(0.1, give_up - time.perf_counter()))
            since = body["next_batch"]
            if event_id in _timeline_event_ids(body, room):
                return arrived - t0, since
            poll = asyncio.ensure_future(long_poll(since))


class InitialSync(Scenario):
    """GET /sync without ``since`` for a user in many rooms with messages: all members' state, and
    with ``lazy_load_members``. One cold sync first (reported as cold_ms), then the measured ones."""

    key = "initial_sync"

    def _titles(self, scale):
        base = f"initial /sync, {scale.sync_rooms} rooms x {scale.sync_messages} msgs"
        return base + " (full members)", base + " (lazy members)"

    def rows(self, scale):
        return [Row(t, "p50_ms") for t in self._titles(scale)]

    async def run(self, ctx):
        s = ctx.scale
        m = ctx.matrix
        users = await ctx.users(s.sync_members, "isync")
        me, others = users[0], users[1:]
        # One client creating its rooms one after another (joins and messages then go concurrently).
        rooms = [await ctx.public_room(me, others) for _ in range(s.sync_rooms)]
        sends = [lambda r=r, k=k: m.send_message(users[k % len(users)], r, f"history {k}")
                 for r in rooms for k in range(s.sync_messages)]
        await gather_limited(sends, USERS_CONCURRENT)

        results = {}
        modes = (None, {"room": {"state": {"lazy_load_members": True}}})
        for title, filt in zip(self._titles(s), modes):
            async def one(i, filt=filt, first=[True]):
                # Synapse answers a repeated identical /sync from a response cache (2 minutes by
                # default); the key includes ``timeout``, which an initial sync (no ``since``) does
                # not wait on, so each request gets its own: 0 for the cold one, then 1, 2, ... ms.
                timeout_ms = 0 if first[0] else i + 1
                first[0] = False
                body = await m.sync(me, filter=filt, timeout_ms=timeout_ms, request_timeout=120)
                joined = (body.get("rooms") or {}).get("join") or {}
                if len(joined) < s.sync_rooms:
                    raise ApiError(f"bad body: initial sync lists {len(joined)} of {s.sync_rooms} rooms")
            cold = Stats()
            await run_load(one, count=1, concurrency=1, time_limit=s.time_limit, stats=cold)
            stats = await run_load(one, count=s.sync_repeats, concurrency=1, time_limit=s.time_limit)
            summary = stats.summary()
            summary["cold_ms"] = cold.summary()["p50_ms"]
            summary["errors"] += cold.errors
            results[title] = summary
        return results


class MessagesPaging(Scenario):
    """GET /rooms/{roomId}/messages?dir=b from the newest event back to the room's start, page by
    page (each page an operation), ``paging_passes`` times over a room of ``paging_events`` messages."""

    key = "messages_paging"

    def _title(self, scale):
        return f"/messages back through {scale.paging_events} events ({scale.paging_limit}/page)"

    def rows(self, scale):
        return [Row(self._title(scale), "p50_ms")]

    async def run(self, ctx):
        s = ctx.scale
        m = ctx.matrix
        (user,) = await ctx.users(1, "page")
        room = await m.create_room(user)
        await gather_limited([lambda k=k: m.send_message(user, room, f"history {k}")
                              for k in range(s.paging_events)], USERS_CONCURRENT)
        stats = Stats()
        stats.begin()
        deadline = time.perf_counter() + s.time_limit
        passes = []
        for _ in range(s.paging_passes):
            token, seen, pages = None, 0, 0
            while time.perf_counter() < deadline and pages < s.paging_events:  # bounded walk
                start = time.perf_counter()
                try:
                    body = await m.messages(user, room, from_token=token, limit=s.paging_limit)
                except ApiError as e:
                    stats.error(e)
                    break
                stats.ok(time.perf_counter() - start)
                pages += 1
                chunk = body.get("chunk") or []
                seen += sum(1 for e in chunk if isinstance(e, dict) and e.get("type") == "m.room.message")
                token = body.get("end")
                if not chunk or not token:
                    break
            if seen < s.paging_events and time.perf_counter() < deadline:
                stats.error(ApiError(f"bad body: paging returned {seen} of {s.paging_events} messages"))
            passes.append({"pages": pages, "messages": seen})
        stats.end()
        summary = stats.summary()
        summary["passes"] = passes
        return {self._title(s): summary}


class Joins(Scenario):
    """POST /join/{roomId} into one public room, one user after another, until it has
    ``join_members`` members. Rows: all joins (ops/s) and the p50 of the ``join_window`` joins
    ending at each mark, to show whether a join costs more as the room grows."""

    key = "joins"

    def _all_title(self, scale):
        return f"joins, room growing to {scale.join_members} members"

    def _mark_title(self, mark):
        return f"join latency at {mark} members"

    def rows(self, scale):
        return [Row(self._all_title(scale), "ops_s")] + [Row(self._mark_title(k), "p50_ms") for k in scale.join_marks]

    async def run(self, ctx):
        s = ctx.scale
        m = ctx.matrix
        users = await ctx.users(s.join_members, "join")
        room = await m.create_room(users[0], preset="public_chat")
        joiners = users[1:]
        by_size: dict[int, float] = {}  # member count after the join -> latency

        async def one(i):
            start = time.perf_counter()
            await m.join(joiners[i], room)
            by_size[i + 2] = time.perf_counter() - start

        stats = await run_load(one, count=len(joiners), concurrency=1, time_limit=s.time_limit * 2)
        results = {self._all_title(s): stats.summary()}
        for mark in s.join_marks:
            window = Stats()
            window.begin()
            for size in range(mark - s.join_window + 1, mark + 1):
                if size in by_size:
                    window.ok(by_size[size])
            window.end()
            summary = window.summary()
            summary["ops_s"] = None  # a window of a sequential run has no throughput of its own
            if not window.latencies:
                summary["errors"] = 1
                summary["first_error"] = f"the room never reached {mark} members"
            results[self._mark_title(mark)] = summary
        return results


ALL_SCENARIOS: list[Scenario] = [
    RoomCreation(), SequentialSends(), ConcurrentSendsOneRoom(), ConcurrentSendsManyRooms(), SyncDelivery(),
    InitialSync(), MessagesPaging(), Joins(),
]

MEMORY_ROWS = [Row("server RSS idle (MB)", "mb"), Row("server RSS peak (MB)", "mb"), Row("server RSS at end (MB)", "mb")]
