"""The in-memory window of recent timeline events (EventsStore.recent_window) answers exactly
what SyncStore.get_room_windows reads from the database, whenever it answers. Both engines."""
from __future__ import annotations

import pytest
import pytest_twisted

from homeserver.rooms.creation import RoomCreationService
from homeserver.rooms.pipeline import RoomEventService
from homeserver.storage import events_store as events_store_module
from homeserver.storage.events_store import EventsStore
from homeserver.storage.sync_store import SyncStore

from .test_pipeline import SERVER, make_hs

ALICE = f"@alice:{SERVER}"


@pytest.fixture
def hs(database, tmp_path):
    return make_hs(database, tmp_path)


@pytest_twisted.ensureDeferred
async def test_recent_window_equals_the_database_window_when_it_answers(hs, monkeypatch):
    monkeypatch.setattr(events_store_module, "RECENT_PER_ROOM", 8)
    store, sync_store = hs.get(EventsStore), hs.get(SyncStore)
    svc = hs.get(RoomEventService)
    rooms = [await hs.get(RoomCreationService).create_room(ALICE) for _ in range(2)]
    start = store.stream_ids.current_token()
    for i in range(20):
        await svc.create_and_send_event(rooms[i % 2], "m.room.message", {"msgtype": "m.text", "body": str(i)}, ALICE)
    end = store.stream_ids.current_token()
    answered = 0
    for room in rooms:
        for lower in range(start - 3, end + 1):
            for upper in (lower, lower + 2, end):
                for limit in (1, 3, 50):
                    mem = store.recent_window(room, lower, upper, limit)
                    if mem is None:
                        continue
                    answered += 1
                    db = (await sync_store.get_room_windows([(room, lower, upper, limit)]))[room]
                    assert mem == db, (room, lower, upper, limit)
    assert answered > 50
    # Older windows than the memory holds go to the database.
    assert store.recent_window(rooms[0], start - 3, end, 50) is None
