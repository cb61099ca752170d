"""Relations, threads, search and history paging stores, fed by the real pipeline through the
history indexer's persist hook — on SQLite and PostgreSQL."""
from __future__ import annotations

import pytest
import pytest_twisted

from homeserver.history.indexer import HistoryIndexer
from homeserver.rooms.creation import RoomCreationService
from homeserver.rooms.pipeline import RoomEventService
from homeserver.storage.history_store import HistoryStore
from homeserver.storage.relations_store import RelationsStore
from homeserver.storage.search_store import SearchStore, query_words
from homeserver.sync.tokens import RoomPosition
from tests.storage.test_pipeline import ALICE, BOB, make_hs


@pytest.fixture
def hs(database, tmp_path):
    hs = make_hs(database, tmp_path)
    hs.get(HistoryIndexer)
    return hs


async def send(hs, room_id, content, sender=ALICE, event_type="m.room.message", state_key=None):
    return await hs.get(RoomEventService).create_and_send_event(room_id, event_type, content, sender,
                                                                state_key=state_key)


def text(body):
    return {"msgtype": "m.text", "body": body}


def rel(rel_type, parent, **extra):
    return {"m.relates_to": {"rel_type": rel_type, "event_id": parent, **extra}}


async def new_room(hs, **kw):
    return await hs.get(RoomCreationService).create_room(ALICE, **kw)


@pytest_twisted.ensureDeferred
async def test_relations_are_recorded_at_persist_and_paged_in_timeline_order(hs):
    room = await new_room(hs)
    root = await send(hs, room, text("root"))
    children = [await send(hs, room, {**text(f"reply {i}"), **rel("m.thread", root.event_id)}) for i in range(5)]
    react = await send(hs, room, rel("m.annotation", root.event_id, key="👍"), event_type="m.reaction")
    await send(hs, room, text("unrelated"))
    store = hs.get(RelationsStore)

    rows = await store.get_children(root.event_id, limit=50)
    assert [r.event_id for r in rows] == [react.event_id] + [c.event_id for c in reversed(children)]
    fwd = await store.get_children(root.event_id, rel_type="m.thread", backwards=False, limit=2)
    assert [r.event_id for r in fwd] == [c.event_id for c in children[:2]]
    nxt = await store.get_children(root.event_id, rel_type="m.thread", backwards=False, limit=10,
                                   from_pos=RoomPosition(fwd[-1].depth, fwd[-1].stream_ordering))
    assert [r.event_id for r in nxt] == [c.event_id for c in children[2:]]
    only_reactions = await store.get_children(root.event_id, event_type="m.reaction")
    assert [r.aggregation_key for r in only_reactions] == ["👍"]
    assert await store.has_annotation(root.event_id, ALICE, "m.reaction", "👍")
    assert not await store.has_annotation(root.event_id, ALICE, "m.reaction", "👎")


@pytest_twisted.ensureDeferred
async def test_recursive_children_follow_relations_of_relations(hs):
    room = await new_room(hs)
    root = await send(hs, room, text("root"))
    child = await send(hs, room, {**text("in thread"), **rel("m.thread", root.event_id)})
    grandchild = await send(hs, room, rel("m.annotation", child.event_id, key="x"), event_type="m.reaction")
    store = hs.get(RelationsStore)
    assert [r.event_id for r in await store.get_children(root.event_id)] == [child.event_id]
    deep = await store.get_children(root.event_id, recurse=True)
    assert [r.event_id for r in deep] == [grandchild.event_id, child.event_id]
    assert [r.event_id for r in await store.get_children(root.event_id, rel_type="m.annotation", recurse=True)] \
        == [grandchild.event_id]


@pytest_twisted.ensureDeferred
async def test_thread_summaries_edits_and_references_are_aggregated_in_one_read(hs):
    room = await new_room(hs, preset="public_chat")
    await hs.get(RoomEventService).create_and_send_event(room, "m.room.member", {"membership": "join"}, BOB,
                                                         state_key=BOB)
    root = await send(hs, room, text("root"))
    await send(hs, room, {**text("a"), **rel("m.thread", root.event_id)}, sender=BOB)
    last = await send(hs, room, {**text("b"), **rel("m.thread", root.event_id)}, sender=BOB)
    edit = await send(hs, room, {**text("* fixed"), "m.new_content": text("fixed"), **rel("m.replace", root.event_id)})
    ref = await send(hs, room, rel("m.reference", root.event_id), event_type="m.key.verification.done")
    elsewhere = await new_room(hs)  # children in another room never count
    await send(hs, elsewhere, {**text("c"), **rel("m.thread", root.event_id)})
    await send(hs, elsewhere, rel("m.reference", root.event_id), event_type="m.key.verification.done")
    assert await hs.get(RelationsStore).get_threads(elsewhere) == []
    rows = await hs.get(RelationsStore).get_aggregation_rows({root.event_id: room}, ALICE)
    summary = rows.threads[root.event_id]
    assert (summary.count, summary.latest_event_id, summary.participated) == (2, last.event_id, False)
    assert [e[0] for e in rows.edits[root.event_id]] == [edit.event_id]
    assert rows.references[root.event_id] == [ref.event_id]
    as_bob = await hs.get(RelationsStore).get_aggregation_rows({root.event_id: room}, BOB)
    assert as_bob.threads[root.event_id].participated
    ignoring_bob = await hs.get(RelationsStore).get_aggregation_rows({root.event_id: room}, ALICE,
                                                                     ignored_users=[BOB])
    assert root.event_id not in ignoring_bob.threads


@pytest_twisted.ensureDeferred
async def test_threads_list_by_latest_activity_and_participation(hs):
    room = await new_room(hs, preset="public_chat")
    await hs.get(RoomEventService).create_and_send_event(room, "m.room.member", {"membership": "join"}, BOB,
                                                         state_key=BOB)
    t1 = await send(hs, room, text("t1"))
    t2 = await send(hs, room, text("t2"), sender=BOB)
    await send(hs, room, {**text("r"), **rel("m.thread", t1.event_id)}, sender=BOB)
    await send(hs, room, {**text("r"), **rel("m.thread", t2.event_id)}, sender=BOB)
    newest = await send(hs, room, {**text("r"), **rel("m.thread", t1.event_id)}, sender=BOB)
    store = hs.get(RelationsStore)
    threads = await store.get_threads(room)
    assert [t for t, _ in threads] == [t1.event_id, t2.event_id]
    assert threads[0][1] == (await hs.get(RoomEventService).store.get_event_metas([newest.event_id]))[
        newest.event_id].stream_ordering
    assert [t for t, _ in await store.get_threads(room, participant=ALICE)] == [t1.event_id]
    assert [t for t, _ in await store.get_threads(room, participant=BOB)] == [t1.event_id, t2.event_id]
    page2 = await store.get_threads(room, before_stream=threads[0][1] - 1)
    assert [t for t, _ in page2] == [t2.event_id]


@pytest_twisted.ensureDeferred
async def test_redacting_a_child_breaks_the_relation_and_moves_the_thread_back(hs):
    room = await new_room(hs)
    root = await send(hs, room, text("root"))
    first = await send(hs, room, {**text("one"), **rel("m.thread", root.event_id)})
    second = await send(hs, room, {**text("two"), **rel("m.thread", root.event_id)})
    await send(hs, room, {"redacts": second.event_id}, event_type="m.room.redaction")
    store = hs.get(RelationsStore)
    assert [r.event_id for r in await store.get_children(root.event_id)] == [first.event_id]
    rows = await store.get_aggregation_rows({root.event_id: room}, ALICE)
    assert rows.threads[root.event_id].latest_event_id == first.event_id
    await send(hs, room, {"redacts": first.event_id}, event_type="m.room.redaction")
    assert await store.get_threads(room) == []


@pytest_twisted.ensureDeferred
async def test_search_matches_words_as_prefixes_in_body_name_and_topic(hs):
    room = await new_room(hs, name="Gardening club", topic="Tomatoes and cucumbers")
    other = await new_room(hs)
    hit = await send(hs, room, text("Planting tomatoes tomorrow morning"))
    await send(hs, room, text("nothing relevant"))
    await send(hs, other, text("tomatoes elsewhere"))
    store = hs.get(SearchStore)
    hits, count = await store.search(query_words("tomato"), [room])
    assert count == 2 and {h.event_id for h in hits} >= {hit.event_id}
    hits, _ = await store.search(query_words("tomato"), [room], keys=["content.body"])
    assert [h.event_id for h in hits] == [hit.event_id]
    hits, _ = await store.search(query_words("garden"), [room], keys=["content.name"])
    assert len(hits) == 1
    hits, count = await store.search(query_words("tomatoes morning"), [room, other])
    assert [h.event_id for h in hits] == [hit.event_id] and count == 1
    hits, _ = await store.search(query_words("Tomatoes"), [room, other], keys=["content.body"], senders=[BOB])
    assert hits == []


@pytest_twisted.ensureDeferred
async def test_search_pages_by_rank_offset_and_by_recent_stream(hs):
    room = await new_room(hs)
    sent = [await send(hs, room, text(f"kiwi number {i}" + " kiwi" * (i % 3))) for i in range(7)]
    store = hs.get(SearchStore)
    recent, count = await store.search(["kiwi"], [room], order_by="recent", limit=3)
    assert count == 7 and [h.event_id for h in recent] == [e.event_id for e in reversed(sent[-3:])]
    more, _ = await store.search(["kiwi"], [room], order_by="recent", limit=10,
                                 before_stream=recent[-1].stream_ordering)
    assert [h.event_id for h in more] == [e.event_id for e in reversed(sent[:4])]
    by_rank = []
    for offset in range(0, 7, 3):
        page, _ = await store.search(["kiwi"], [room], limit=3, offset=offset)
        by_rank += page
    assert sorted(h.event_id for h in by_rank) == sorted(e.event_id for e in sent)
    ranks = [h.rank for h in by_rank]
    assert ranks == sorted(ranks, reverse=True)


@pytest_twisted.ensureDeferred
async def test_search_text_is_sanitised_and_queries_cannot_inject_syntax(hs):
    room = await new_room(hs)
    await send(hs, room, text("nul\x00byte and \"quotes\" OR NEAR(x) * stuff"))
    store = hs.get(SearchStore)
    assert query_words('"quotes" OR NEAR(x) *') == ["quotes", "or", "near", "x"]
    hits, _ = await store.search(query_words('"quotes" NEAR('), [room])
    assert len(hits) == 1
    assert (await store.search(query_words("*&|!():"), [room])) == ([], 0)


@pytest_twisted.ensureDeferred
async def test_redacted_events_leave_the_search_index(hs):
    room = await new_room(hs)
    ev = await send(hs, room, text("secret pineapple"))
    store = hs.get(SearchStore)
    assert (await store.search(["pineapple"], [room]))[1] == 1
    await send(hs, room, {"redacts": ev.event_id}, event_type="m.room.redaction")
    assert await store.search(["pineapple"], [room]) == ([], 0)


@pytest_twisted.ensureDeferred
async def test_history_pages_in_depth_stream_order_with_exclusive_tokens(hs):
    room = await new_room(hs)
    sent = [await send(hs, room, text(f"m{i}")) for i in range(12)]
    store = hs.get(HistoryStore)
    end = await store.end_position(room)
    page = await store.paginate(room, end, None, backwards=True, limit=5)
    assert [r.event_id for r in page] == [e.event_id for e in reversed(sent[-5:])]
    page2 = await store.paginate(room, page[-1].before, None, backwards=True, limit=5)
    assert [r.event_id for r in page2] == [e.event_id for e in reversed(sent[2:7])]
    fwd = await store.paginate(room, page2[-1].before, page[0].after, backwards=False, limit=100)
    assert [r.event_id for r in fwd] == [e.event_id for e in sent[2:]]
    stream_only = await store.topological_position(room, page[0].stream_ordering)
    assert stream_only == page[0].after
    assert await store.end_position("!nope:test.local") == RoomPosition(0, 0)


@pytest_twisted.ensureDeferred
async def test_search_rows_still_in_memory_at_a_crash_are_indexed_at_the_next_start(database, tmp_path):
    first = make_hs(database, tmp_path)
    await first.get(HistoryIndexer).catch_up_search()  # start-up: records the position
    room = await new_room(first)
    kept = await send(first, room, text("durable walnut"))
    gone = await send(first, room, text("redacted walnut"))
    await send(first, room, {"redacts": gone.event_id}, event_type="m.room.redaction")
    await first.get(SearchStore).flush()
    # The crash: three more events commit, their search rows never leave memory.
    store = first.get(SearchStore)
    store._start_write = lambda: None
    late = await send(first, room, text("late walnut"))
    late_gone = await send(first, room, text("late redacted walnut"))
    await send(first, room, {"redacts": late_gone.event_id}, event_type="m.room.redaction")
    if store._flush_call is not None and store._flush_call.active():
        store._flush_call.cancel()

    second = make_hs(database, tmp_path)
    await second.get(HistoryIndexer).catch_up_search()
    hits, count = await second.get(SearchStore).search(["walnut"], [room], order_by="recent")
    assert [h.event_id for h in hits] == [late.event_id, kept.event_id] and count == 2
