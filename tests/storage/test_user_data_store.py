"""UserDataStore on SQLite and PostgreSQL: filters, account data and tags, push rules and their
order, pushers, profile fields, presence rows and stream positions."""
from __future__ import annotations

from types import SimpleNamespace

import pytest
import pytest_twisted

from homeserver.storage.user_data_store import PUSH_RULES_TYPE, PushRuleNotFound, UserDataStore

ALICE = "@alice:test"
BOB = "@bob:test"
ROOM = "!room:test"


def make_store(database) -> UserDataStore:
    return UserDataStore(SimpleNamespace(db=database))


def next_id(gen) -> int:
    (sid,) = gen.allocate(1)
    gen.finish([sid])
    return sid


@pytest_twisted.ensureDeferred
async def test_filters_get_per_user_ids_and_round_trip(database):
    store = make_store(database)
    f0 = await store.add_filter(ALICE, {"room": {"timeline": {"limit": 5}}, "name": "é"})
    f1 = await store.add_filter(ALICE, {})
    b0 = await store.add_filter(BOB, {"presence": {"types": []}})
    assert (f0, f1, b0) == (0, 1, 0)
    assert await store.get_filter(ALICE, 0) == {"room": {"timeline": {"limit": 5}}, "name": "é"}
    assert await store.get_filter(BOB, 0) == {"presence": {"types": []}}
    assert await store.get_filter(BOB, 1) is None


@pytest_twisted.ensureDeferred
async def test_account_data_replace_and_changes_between_tokens(database):
    store = make_store(database)
    ids = store.account_data_ids
    s1 = next_id(ids)
    await store.set_account_data(ALICE, "", "org.example.a", {"v": 1}, s1)
    s2 = next_id(ids)
    await store.set_account_data(ALICE, ROOM, "org.example.r", {"r": True}, s2)
    s3 = next_id(ids)
    await store.set_account_data(ALICE, "", "org.example.a", {"v": 2}, s3)
    await store.set_account_data(BOB, "", "org.example.a", {"bob": 1}, next_id(ids))
    assert await store.get_account_data(ALICE, "", "org.example.a") == {"v": 2}
    assert await store.get_account_data(ALICE, ROOM, "org.example.r") == {"r": True}
    assert await store.get_account_data(ALICE, ROOM, "org.example.a") is None  # no inheritance
    all_rows = await store.get_account_data_changes(ALICE, 0, ids.current_token())
    assert [(r.room_id, r.data_type, r.content) for r in all_rows] == [
        (ROOM, "org.example.r", {"r": True}), ("", "org.example.a", {"v": 2})]
    since = await store.get_account_data_changes(ALICE, s2, ids.current_token())
    assert [r.data_type for r in since] == ["org.example.a"]
    assert await store.get_account_data_changes(ALICE, s3, s3) == []


@pytest_twisted.ensureDeferred
async def test_stream_position_survives_restart(database):
    store = make_store(database)
    sid = next_id(store.account_data_ids)
    await store.set_account_data(ALICE, "", "x", {}, sid)
    await store.set_presence(ALICE, "online", None, 5, next_id(store.presence_ids))
    again = make_store(database)
    assert again.account_data_ids.current_token() == sid
    assert again.presence_ids.current_token() == 1


@pytest_twisted.ensureDeferred
async def test_tags_add_replace_remove(database):
    store = make_store(database)
    ids = store.account_data_ids
    await store.change_tags(ALICE, ROOM, next_id(ids), add=("m.favourite", {"order": 0.5}))
    await store.change_tags(ALICE, ROOM, next_id(ids), add=("u.work", {}))
    await store.change_tags(ALICE, ROOM, next_id(ids), add=("m.favourite", {"order": 0.25}))
    assert await store.get_account_data(ALICE, ROOM, "m.tag") == {
        "tags": {"m.favourite": {"order": 0.25}, "u.work": {}}}
    await store.change_tags(ALICE, ROOM, next_id(ids), remove="m.favourite")
    await store.change_tags(ALICE, ROOM, next_id(ids), remove="never-set")
    assert await store.get_account_data(ALICE, ROOM, "m.tag") == {"tags": {"u.work": {}}}


@pytest_twisted.ensureDeferred
async def test_push_rules_order_before_after_and_update_in_place(database):
    store = make_store(database)
    ids = store.account_data_ids

    def rule(rid):
        return {"rule_id": rid, "actions": ["notify"], "conditions": [{"kind": "event_match", "key": "type",
                                                                       "pattern": rid}]}
    await store.add_push_rule(ALICE, "override", rule("a"), next_id(ids))
    await store.add_push_rule(ALICE, "override", rule("b"), next_id(ids))  # new: most important
    await store.add_push_rule(ALICE, "override", rule("c"), next_id(ids), after="b")
    await store.add_push_rule(ALICE, "override", rule("d"), next_id(ids), before="a")
    await store.add_push_rule(ALICE, "override", dict(rule("b"), actions=[]), next_id(ids))  # keeps place
    own, defaults = await store.get_push_rules(ALICE)
    assert [r["rule_id"] for r in own["override"]] == ["b", "c", "d", "a"]
    assert own["override"][0]["actions"] == [] and own["override"][0]["enabled"] is True
    assert defaults == {}
    await store.add_push_rule(ALICE, "override", rule("b"), next_id(ids), after="a")  # move
    own, _ = await store.get_push_rules(ALICE)
    assert [r["rule_id"] for r in own["override"]] == ["c", "d", "a", "b"]
    with pytest.raises(PushRuleNotFound):
        await store.add_push_rule(ALICE, "override", rule("e"), next_id(ids), before="zzz")
    with pytest.raises(PushRuleNotFound):
        await store.add_push_rule(ALICE, "underride", rule("e"), next_id(ids), before="a")  # other kind
    own, _ = await store.get_push_rules(ALICE)
    assert "e" not in [r["rule_id"] for r in own["override"]] and "underride" not in own


@pytest_twisted.ensureDeferred
async def test_push_rule_changes_mark_the_account_data_stream(database):
    store = make_store(database)
    ids = store.account_data_ids
    await store.add_push_rule(ALICE, "content", {"rule_id": "cake", "actions": [], "pattern": "cake"}, next_id(ids))
    assert await store.update_push_rule(ALICE, "content", "cake", next_id(ids), is_default=False, enabled=False)
    assert not await store.update_push_rule(ALICE, "content", "nope", next_id(ids), is_default=False, enabled=False)
    assert await store.update_push_rule(ALICE, "override", ".m.rule.master", next_id(ids), is_default=True,
                                        enabled=True)
    assert await store.update_push_rule(ALICE, "underride", ".m.rule.message", next_id(ids), is_default=True,
                                        actions=[])
    own, defaults = await store.get_push_rules(ALICE)
    assert own["content"] == [{"rule_id": "cake", "actions": [], "enabled": False, "pattern": "cake"}]
    assert defaults == {("override", ".m.rule.master"): {"enabled": True, "actions": None},
                        ("underride", ".m.rule.message"): {"enabled": None, "actions": []}}
    rows = await store.get_account_data_changes(ALICE, 0, ids.current_token())
    assert [(r.data_type, r.content) for r in rows] == [(PUSH_RULES_TYPE, None)]
    assert rows[0].stream_id == ids.current_token()
    assert await store.delete_push_rule(ALICE, "content", "cake", next_id(ids))
    assert not await store.delete_push_rule(ALICE, "content", "cake", next_id(ids))
    own, _ = await store.get_push_rules(ALICE)
    assert own == {}


def pusher(user_id, pushkey="key1", app_id="com.example.app", **kw):
    p = {"user_id": user_id, "app_id": app_id, "pushkey": pushkey, "kind": "http", "app_display_name": "App",
         "device_display_name": "Phone", "profile_tag": None, "lang": "en",
         "data": {"url": "https://push.example/_matrix/push/v1/notify"}, "device_id": "DEV", "created_ts": 1}
    p.update(kw)
    return p


@pytest_twisted.ensureDeferred
async def test_pushers_replace_append_and_delete(database):
    store = make_store(database)
    await store.set_pusher(pusher(ALICE), append=False)
    await store.set_pusher(pusher(ALICE, lang="de"), append=False)  # same key: replaced
    assert [p["lang"] for p in await store.get_pushers(ALICE)] == ["de"]
    await store.set_pusher(pusher(BOB), append=True)  # same app_id/pushkey, other user, append
    assert len(await store.get_pushers()) == 2
    await store.set_pusher(pusher(BOB, created_ts=2), append=False)  # not append: Alice's is removed
    assert await store.get_pushers(ALICE) == []
    got = await store.get_pushers(BOB)
    assert got[0]["data"] == {"url": "https://push.example/_matrix/push/v1/notify"}
    assert await store.delete_pusher(BOB, "com.example.app", "key1")
    assert not await store.delete_pusher(BOB, "com.example.app", "key1")
    await store.set_pusher(pusher(ALICE, pushkey="k2", device_id="D2"), append=False)
    await store.set_pusher(pusher(ALICE, pushkey="k3", device_id="D3"), append=False)
    assert await store.delete_pushers_for_devices(ALICE, ["D2"]) == 1
    assert [p["pushkey"] for p in await store.get_pushers(ALICE)] == ["k3"]


async def _add_profile_row(database, user_id, displayname=None):
    def txn_fn(txn):
        txn.execute("INSERT INTO profiles (user_id, displayname, avatar_url) VALUES (?, ?, NULL)",
                    (user_id, displayname))
    await database.run("add_profile", txn_fn)


@pytest_twisted.ensureDeferred
async def test_profile_fields_span_both_tables(database):
    store = make_store(database)
    await _add_profile_row(database, ALICE, "alice")
    assert await store.get_profile(ALICE) == {"displayname": "alice"}
    assert await store.get_profile(BOB) is None
    assert await store.set_profile_field(ALICE, "avatar_url", "mxc://test/abc")
    assert await store.set_profile_field(ALICE, "m.tz", "Europe/Prague")
    assert await store.set_profile_field(ALICE, "org.example.obj", {"a": [1, None]})
    assert not await store.set_profile_field(BOB, "m.tz", "UTC")
    assert await store.get_profile(ALICE) == {"displayname": "alice", "avatar_url": "mxc://test/abc",
                                              "m.tz": "Europe/Prague", "org.example.obj": {"a": [1, None]}}
    assert await store.delete_profile_field(ALICE, "displayname")
    assert await store.delete_profile_field(ALICE, "m.tz")
    assert await store.get_profile(ALICE) == {"avatar_url": "mxc://test/abc", "org.example.obj": {"a": [1, None]}}
    await _add_profile_row(database, BOB, "bob")
    profiles = await store.get_profiles([ALICE, BOB, "@nobody:test"])
    assert set(profiles) == {ALICE, BOB}


@pytest_twisted.ensureDeferred
async def test_presence_rows_and_changes(database):
    store = make_store(database)
    ids = store.presence_ids
    await store.set_presence(ALICE, "online", "hi", 100, next_id(ids))
    mid = ids.current_token()
    await store.set_presence(BOB, "unavailable", None, 200, next_id(ids))
    await store.set_presence(ALICE, "offline", None, 100, next_id(ids))
    rows = await store.get_presence([ALICE, BOB])
    assert rows[ALICE].state == "offline" and rows[ALICE].status_msg is None
    assert rows[BOB].last_active_ts == 200
    changes = await store.get_presence_changes(mid, ids.current_token())
    assert [r.user_id for r in changes] == [BOB, ALICE]
    only_bob = await store.get_presence_changes(0, ids.current_token(), [BOB])
    assert [r.user_id for r in only_bob] == [BOB]
    assert await store.get_presence_changes(0, ids.current_token(), []) == []


# --- the services' streams (what /sync reads) ------------------------------------------------------

class FakeHS:
    """Just enough of HomeServer for the client-feature services."""

    def __init__(self, db, presence_enabled=True):
        from twisted.internet import reactor
        self.db = db
        self.hostname = "test"
        self.config = SimpleNamespace(presence_enabled=presence_enabled)
        self.reactor = reactor
        self._instances = {}

    def get(self, cls):
        if cls not in self._instances:
            self._instances[cls] = cls(self)
        return self._instances[cls]

    def clock_ms(self):
        import time
        return int(time.time() * 1000)


@pytest_twisted.ensureDeferred
async def test_account_data_stream_changes_and_notifications(database):
    from homeserver.client.account_data import AccountDataService
    from homeserver.client.push_service import PushRulesService
    from homeserver.sync.notifier import Notifier

    hs = FakeHS(database)
    service = hs.get(AccountDataService)
    heard = []
    service.listeners.append(lambda *args: heard.append(args))
    initial = await service.get_changes_since(ALICE, None)
    assert [e["type"] for e in initial.global_events] == [PUSH_RULES_TYPE]  # always on initial sync
    assert initial.global_events[0]["content"]["global"]["override"][0]["rule_id"] == ".m.rule.master"

    await service.set_global(ALICE, "org.example.a", {"a": 1})
    after_first = service.current_token()
    await service.set_room(ALICE, ROOM, "org.example.r", {"r": 1})
    await service.add_tag(ALICE, ROOM, "m.favourite", {"order": 0.1})
    await hs.get(PushRulesService).set_enabled(ALICE, "override", ".m.rule.master", True)
    await service.set_global(BOB, "org.example.b", {})

    changes = await service.get_changes_since(ALICE, after_first)
    assert changes.token == service.current_token()
    assert [e["type"] for e in changes.global_events] == [PUSH_RULES_TYPE]
    assert changes.global_events[0]["content"]["global"]["override"][0]["enabled"] is True
    assert changes.room_events == {ROOM: [{"type": "org.example.r", "content": {"r": 1}},
                                          {"type": "m.tag", "content": {"tags": {"m.favourite": {"order": 0.1}}}}]}
    everything = await service.get_changes_since(ALICE, 0)
    assert {e["type"] for e in everything.global_events} == {"org.example.a", PUSH_RULES_TYPE}
    assert (await service.get_changes_since(ALICE, service.current_token())).global_events == []
    assert heard[-1] == ("account_data", service.current_token(), (), (BOB,))
    assert hs.get(Notifier).current_token("account_data") == service.current_token()


@pytest_twisted.ensureDeferred
async def test_presence_stream_carries_profile_and_respects_visibility(database):
    from homeserver.client.presence import PresenceService

    hs = FakeHS(database)
    await _add_profile_row(database, ALICE, "Alice")
    presence = hs.get(PresenceService)

    async def visible(user_id):
        return {ALICE, BOB} if user_id in (ALICE, BOB) else {user_id}

    async def rooms(user_id):
        return [ROOM]
    presence.visible_users_provider = visible
    presence.joined_rooms_provider = rooms
    heard = []
    presence.listeners.append(lambda *args: heard.append(args))

    await presence.set_state(ALICE, "online", "lunch")
    start = presence.current_token()
    await presence.set_state(BOB, "unavailable")
    events = await presence.get_changes_since(BOB, 0)
    by_sender = {e["sender"]: e for e in events}
    assert by_sender[ALICE]["type"] == "m.presence"
    assert by_sender[ALICE]["content"]["presence"] == "online"
    assert by_sender[ALICE]["content"]["status_msg"] == "lunch"
    assert by_sender[ALICE]["content"]["displayname"] == "Alice"
    assert by_sender[BOB]["content"]["presence"] == "unavailable"
    assert [e["sender"] for e in await presence.get_changes_since(BOB, start)] == [BOB]
    assert await presence.get_changes_since("@carol:test", 0) == []  # sees neither
    assert heard[-1] == ("presence", presence.current_token(), (ROOM,), (BOB,))
    assert await presence.may_see(BOB, ALICE) and not await presence.may_see("@carol:test", ALICE)


@pytest_twisted.ensureDeferred
async def test_presence_disabled_writes_nothing(database):
    from homeserver.client.presence import PresenceService

    presence = FakeHS(database, presence_enabled=False).get(PresenceService)
    await presence.set_state(ALICE, "online")
    await presence.on_user_sync(ALICE)
    assert presence.current_token() == 0
    assert await presence.get_status(ALICE) == {"presence": "offline"}
    assert await presence.get_changes_since(ALICE, 0) == []


@pytest_twisted.ensureDeferred
async def test_profile_change_runs_hooks_and_reannounces_presence(database):
    from homeserver.client.presence import PresenceService
    from homeserver.client.profile import ProfileService

    hs = FakeHS(database)
    await _add_profile_row(database, ALICE, "alice")
    profiles = hs.get(ProfileService)
    presence = hs.get(PresenceService)

    async def no_rooms(user_id):
        return []
    presence.joined_rooms_provider = no_rooms
    calls = []

    async def hook(user_id, old, new):
        calls.append((user_id, old, new))
    profiles.on_profile_changed.append(hook)
    me = SimpleNamespace(user_id=ALICE, is_guest=False)
    await profiles.set_field(me, ALICE, "m.tz", "UTC")  # not a membership-visible field: no hook
    assert calls == [] and presence.current_token() == 0
    await profiles.set_field(me, ALICE, "displayname", "Alice A.")
    assert calls == [(ALICE, {"displayname": "alice", "m.tz": "UTC"}, {"displayname": "Alice A.", "m.tz": "UTC"})]
    events = await presence.get_changes_since(ALICE, 0)
    assert events[0]["content"]["displayname"] == "Alice A."
    await profiles.set_field(me, ALICE, "displayname", "Alice A.")  # unchanged: no hook
    assert len(calls) == 1


@pytest_twisted.ensureDeferred
async def test_cached_profiles_are_copies_and_follow_writes(database):
    store = make_store(database)
    await _add_profile_row(database, ALICE, "alice")
    first = await store.get_profile(ALICE)
    first["displayname"] = "changed by a caller"
    assert await store.get_profile(ALICE) == {"displayname": "alice"}
    assert await store.set_profile_field(ALICE, "displayname", "Alice L.")
    assert await store.get_profile(ALICE) == {"displayname": "Alice L."}
    assert await store.delete_profile_field(ALICE, "displayname")
    assert await store.get_profile(ALICE) == {}
