"""The push gateway payload (homeserver/push/http_pusher.py), built without any I/O.

Spec: push-gateway-api.md ("Homeserver behaviour", event_id_only), push_notifier.yaml (the
notification object and the ``rejected`` answer), modules/push.md "Actions" (tweaks)."""
from __future__ import annotations

import pytest
import pytest_twisted

from homeserver.protocol.events import Event
from homeserver.protocol.room_versions import get_room_version
from homeserver.push.http_pusher import (GatewayUnreachable, PushGatewayClient, badge_notification, device_entry,
                                         event_notification, priority_of, rejected_pushkeys, tweaks_of)

PUSHER = {"user_id": "@bob:hs", "app_id": "org.example.app", "pushkey": "KEY", "created_ts": 1_700_000_123_456,
          "data": {"url": "https://push.example/_matrix/push/v1/notify", "brand": "x"}}


def _event(**over) -> Event:
    pdu = {"type": "m.room.message", "room_id": "!r:hs", "sender": "@alice:hs", "origin_server_ts": 1,
           "content": {"msgtype": "m.text", "body": "hi"}, "depth": 3, "prev_events": [], "auth_events": [],
           "hashes": {"sha256": "x"}, "signatures": {}}
    pdu.update(over)
    return Event(pdu, get_room_version("11"))


def test_tweaks_collect_set_tweak_actions_and_highlight_defaults_to_true():
    actions = ["notify", {"set_tweak": "sound", "value": "default"}, {"set_tweak": "highlight"}]
    assert tweaks_of(actions) == {"sound": "default", "highlight": True}
    assert tweaks_of(["notify", {"set_tweak": "highlight", "value": False}]) == {"highlight": False}
    assert tweaks_of(["notify", {"set_tweak": "custom"}, {"other": 1}, "dont_notify"]) == {}


def test_priority_is_high_for_highlights_sounds_and_encrypted_events():
    assert priority_of("m.room.message", {"highlight": True}) == "high"
    assert priority_of("m.room.message", {"sound": "default"}) == "high"
    assert priority_of("m.room.encrypted", {}) == "high"
    assert priority_of("m.room.message", {}) == "low"
    assert priority_of("m.room.message", {"highlight": False}) == "low"


def test_device_entry_has_data_without_url_and_pushkey_ts_in_seconds():
    assert device_entry(PUSHER, {"sound": "bing"}) == {
        "app_id": "org.example.app", "pushkey": "KEY", "pushkey_ts": 1_700_000_123,
        "data": {"brand": "x"}, "tweaks": {"sound": "bing"}}


def test_full_notification_carries_the_event_fields():
    ev = _event()
    body = event_notification(ev, "@bob:hs", ["notify", {"set_tweak": "sound", "value": "default"}], PUSHER, 3,
                              sender_display_name="Alice", room_name="Room", room_alias="#room:hs")
    n = body["notification"]
    assert n == {
        "event_id": ev.event_id, "room_id": "!r:hs", "type": "m.room.message", "sender": "@alice:hs",
        "sender_display_name": "Alice", "room_name": "Room", "room_alias": "#room:hs", "prio": "high",
        "content": {"msgtype": "m.text", "body": "hi"}, "counts": {"unread": 3},
        "devices": [device_entry(PUSHER, {"sound": "default"})]}


def test_optional_fields_are_left_out_when_unknown_and_zero_counts_omitted():
    n = event_notification(_event(content={}), "@bob:hs", ["notify"], PUSHER, 0)["notification"]
    for field in ("sender_display_name", "room_name", "room_alias", "content", "user_is_target"):
        assert field not in n
    assert n["counts"] == {}
    assert n["prio"] == "low"


@pytest.mark.parametrize("target,expected", [("@bob:hs", True), ("@carol:hs", False)])
def test_user_is_target_only_for_member_events(target, expected):
    ev = _event(type="m.room.member", state_key=target, content={"membership": "invite"})
    n = event_notification(ev, "@bob:hs", ["notify"], PUSHER, 1)["notification"]
    assert n["user_is_target"] is expected


def test_event_id_only_format_sends_only_ids_counts_devices_and_prio():
    pusher = dict(PUSHER, data={"url": "https://p/_matrix/push/v1/notify", "format": "event_id_only"})
    ev = _event()
    n = event_notification(ev, "@bob:hs", ["notify"], pusher, 2, sender_display_name="Alice",
                           room_name="Room")["notification"]
    assert set(n) == {"event_id", "room_id", "counts", "devices", "prio"}
    assert n["devices"][0]["data"] == {"format": "event_id_only"}


def test_badge_update_has_counts_and_devices_only_even_at_zero():
    n = badge_notification(PUSHER, 0)["notification"]
    assert n == {"counts": {"unread": 0}, "devices": [device_entry(PUSHER, {})]}


@pytest.mark.parametrize("answer,expected", [
    ({"rejected": ["a", "b"]}, ["a", "b"]), ({"rejected": []}, []), ({}, []), (None, []),
    ({"rejected": "a"}, []), ({"rejected": ["a", 3]}, ["a"]), ([1], []),
])
def test_rejected_pushkeys_tolerate_malformed_answers(answer, expected):
    assert rejected_pushkeys(answer) == expected


@pytest_twisted.ensureDeferred
async def test_gateway_client_refuses_denied_addresses_without_connecting():
    from twisted.internet import reactor
    seen = []

    def deny(address):
        seen.append(address)
        return False
    client = PushGatewayClient(reactor, deny)
    with pytest.raises(GatewayUnreachable, match="denied"):
        await client.post_json("http://127.0.0.1:9/_matrix/push/v1/notify", {"notification": {"devices": []}})
    assert seen == ["127.0.0.1"]
    await client.close()
