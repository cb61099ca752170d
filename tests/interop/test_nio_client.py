"""matrix-nio (the real PyPI client library, no crypto) driving a live uzel through everything a
bot or a simple client does: logging in through the current ``v3`` paths and the old ``r0`` paths
older nio builds (and matrix-commander) still use, creating a room and inviting a second user,
exchanging messages through ``/sync``, editing (``m.replace``, bundled in ``unsigned.m.relations``),
reacting (``m.annotation``, listed by ``/relations`` but never bundled), redacting, paginating back
with ``/messages`` to the room's creation, and uploading/downloading media through the
authenticated ``/_matrix/client/v1/media`` endpoints.

Each test builds its own clients and rooms so any one of them can run alone; the server is shared
per module, one per database engine. The E2EE side of nio is in test_nio_e2ee.py."""
from __future__ import annotations

import asyncio
import io
from typing import Any, Callable

import pytest

from tests.integration.harness import api, make_server_fixture, register_user

nio = pytest.importorskip("nio")
from nio.api import RelationshipType  # noqa: E402

PW = "correct horse battery staple"

server = make_server_fixture()


class R0Client(nio.AsyncClient):
    """An AsyncClient that speaks the pre-v1.1 ``/_matrix/client/r0`` prefix, as nio before 0.21
    and matrix-commander do (client-server-api: "r0" kept as an alias of v3 by uzel)."""
    seen_paths: list[str]

    async def send(self, method, path, *args, **kwargs):
        if path.startswith("/_matrix/client/v3/"):
            path = "/_matrix/client/r0/" + path[len("/_matrix/client/v3/"):]
        self.seen_paths = getattr(self, "seen_paths", []) + [path.split("?")[0]]
        return await super().send(method, path, *args, **kwargs)


async def _logged_in(srv, name: str, cls=nio.AsyncClient) -> "nio.AsyncClient":
    """Register ``name`` (harness, /register) and log in through nio's own /login."""
    register_user(srv.base_url, name, PW)
    client = cls(srv.base_url, f"@{name}:{srv.server_name}")
    resp = await client.login(PW, device_name=f"{name} nio")
    assert isinstance(resp, nio.LoginResponse), resp
    return client


async def _sync(client, timeout_ms: int = 0, **kwargs) -> "nio.SyncResponse":
    resp = await client.sync(timeout=timeout_ms, **kwargs)
    assert isinstance(resp, nio.SyncResponse), resp
    return resp


async def _sync_until(client, found: Callable[["nio.SyncResponse"], Any], what: str, attempts: int = 10):
    """Incremental syncs (long-poll 2 s) until ``found(resp)`` is truthy; returns its value."""
    for _ in range(attempts):
        value = found(await _sync(client, 2000))
        if value:
            return value
    pytest.fail(f"{client.user_id} never saw {what} through /sync")


def _timeline(resp, room_id: str) -> list:
    room = resp.rooms.join.get(room_id)
    return list(room.timeline.events) if room else []


def _event_in(room_id: str, event_id: str):
    return lambda resp: next((e for e in _timeline(resp, room_id) if e.event_id == event_id), None)


async def _send(client, room_id: str, content: dict, event_type: str = "m.room.message") -> str:
    resp = await client.room_send(room_id, event_type, content)
    assert isinstance(resp, nio.RoomSendResponse), resp
    return resp.event_id


async def _text(client, room_id: str, body: str) -> str:
    return await _send(client, room_id, {"msgtype": "m.text", "body": body})


async def _room_with_two(srv, alice_name: str, bob_name: str, bob_cls=nio.AsyncClient):
    """alice creates a private room and invites bob; bob sees the invite through /sync and joins."""
    alice = await _logged_in(srv, alice_name)
    bob = await _logged_in(srv, bob_name, bob_cls)
    await _sync(alice)
    await _sync(bob)
    created = await alice.room_create(name=f"{alice_name} and {bob_name}", topic="interop",
                                      invite=[bob.user_id])
    assert isinstance(created, nio.RoomCreateResponse), created
    room_id = created.room_id
    invite = await _sync_until(bob, lambda r: r.rooms.invite.get(room_id), "the invite")
    assert any(getattr(e, "membership", None) == "invite" for e in invite.invite_state)
    assert isinstance(await bob.join(room_id), nio.JoinResponse)
    await _sync_until(alice, lambda r: any(getattr(e, "membership", None) == "join" and e.state_key == bob.user_id
                                           for e in _timeline(r, room_id)), "bob's join")
    await _sync_until(bob, lambda r: room_id in r.rooms.join, "the joined room")
    return alice, bob, room_id


# --- log in -------------------------------------------------------------------------------------

async def _login_paths(srv) -> None:
    register_user(srv.base_url, "niologin", PW)
    for cls, prefix in ((nio.AsyncClient, "/_matrix/client/v3/"), (R0Client, "/_matrix/client/r0/")):
        client = cls(srv.base_url, f"@niologin:{srv.server_name}")
        try:
            info = await client.login_info()
            assert isinstance(info, nio.LoginInfoResponse), info
            assert "m.login.password" in info.flows
            resp = await client.login(PW, device_name=f"login via {prefix}")
            assert isinstance(resp, nio.LoginResponse), resp
            assert resp.user_id == f"@niologin:{srv.server_name}" and resp.device_id and resp.access_token
            who = await client.whoami()
            assert isinstance(who, nio.WhoamiResponse), who
            assert (who.user_id, who.device_id) == (resp.user_id, resp.device_id)
            await _sync(client)
            if cls is R0Client:
                assert client.seen_paths and all(p.startswith("/_matrix/client/r0/") for p in client.seen_paths)
            wrong = cls(srv.base_url, f"@niologin:{srv.server_name}")
            bad = await wrong.login("wrong password")
            await wrong.close()
            assert isinstance(bad, nio.LoginError) and bad.status_code == "M_FORBIDDEN", bad
        finally:
            await client.close()
    status, devices = api(srv.base_url, "GET", "/_matrix/client/v3/devices", resp.access_token)
    assert status == 200
    assert {d.get("display_name") for d in devices["devices"]} >= {"login via /_matrix/client/v3/",
                                                               "login via /_matrix/client/r0/"}


def test_nio_logs_in_through_v3_and_r0_paths(server):
    asyncio.run(_login_paths(server))


# --- rooms and messages through /sync -----------------------------------------------------------

async def _exchange(srv) -> None:
    alice, bob, room_id = await _room_with_two(srv, "nioalice", "niobob", bob_cls=R0Client)
    try:
        assert alice.rooms[room_id].name == "nioalice and niobob"
        first = await _text(alice, room_id, "hello bob")
        got = await _sync_until(bob, _event_in(room_id, first), "alice's message")
        assert isinstance(got, nio.RoomMessageText) and (got.sender, got.body) == (alice.user_id, "hello bob")

        reply = await _text(bob, room_id, "hello alice (sent through r0)")
        got = await _sync_until(alice, _event_in(room_id, reply), "bob's reply")
        assert isinstance(got, nio.RoomMessageText) and got.sender == bob.user_id
        assert bob.rooms[room_id].topic == "interop"
        assert set(bob.rooms[room_id].users) == {alice.user_id, bob.user_id}

        # A long-poll started before the send returns with the new event.
        poll = asyncio.ensure_future(_sync(bob, 20000))
        await asyncio.sleep(0.3)
        third = await _text(alice, room_id, "wake up")
        resp = await asyncio.wait_for(poll, 10)
        if not _event_in(room_id, third)(resp):
            await _sync_until(bob, _event_in(room_id, third), "the message sent during a long-poll")

        joined = await bob.joined_rooms()
        assert isinstance(joined, nio.JoinedRoomsResponse) and room_id in joined.rooms
        members = await alice.joined_members(room_id)
        assert isinstance(members, nio.JoinedMembersResponse)
        assert {m.user_id for m in members.members} == {alice.user_id, bob.user_id}
    finally:
        await alice.close()
        await bob.close()


def test_nio_clients_create_room_invite_join_and_exchange_messages_through_sync(server):
    asyncio.run(_exchange(server))


# --- edits, reactions, redactions ---------------------------------------------------------------

async def _edit_react_redact(srv) -> None:
    alice, bob, room_id = await _room_with_two(srv, "nioeditor", "nioreactor")
    try:
        original = await _text(alice, room_id, "teh original")
        edit = await _send(alice, room_id, {
            "msgtype": "m.text", "body": "* the original",
            "m.new_content": {"msgtype": "m.text", "body": "the original"},
            "m.relates_to": {"rel_type": "m.replace", "event_id": original}})
        reaction = await _send(bob, room_id, {"m.relates_to": {"rel_type": "m.annotation", "event_id": original,
                                                               "key": "👍"}}, "m.reaction")
        got = await _sync_until(bob, _event_in(room_id, edit), "the edit")
        assert got.source["content"]["m.relates_to"] == {"rel_type": "m.replace", "event_id": original}
        got = await _sync_until(alice, _event_in(room_id, reaction), "the reaction")
        assert isinstance(got, nio.ReactionEvent) and (got.reacts_to, got.key) == (original, "👍")

        # The edit is bundled into the original (modules/event_replacements.md, server behaviour).
        fetched = await bob.room_get_event(room_id, original)
        assert isinstance(fetched, nio.RoomGetEventResponse), fetched
        relations = fetched.event.source.get("unsigned", {}).get("m.relations", {})
        assert relations.get("m.replace", {}).get("event_id") == edit, fetched.event.source
        # Annotations are not bundled (modules/event_annotations.md) but /relations lists them.
        assert "m.annotation" not in relations
        children = [e async for e in alice.room_get_event_relations(room_id, original)]
        assert {e.event_id for e in children} == {edit, reaction}
        reactions = [e async for e in alice.room_get_event_relations(
            room_id, original, RelationshipType.annotation, "m.reaction")]
        assert [e.event_id for e in reactions] == [reaction]
        # The same reaction twice is refused (M_DUPLICATE_ANNOTATION).
        dup = await bob.room_send(room_id, "m.reaction", {"m.relates_to": {
            "rel_type": "m.annotation", "event_id": original, "key": "👍"}})
        assert isinstance(dup, nio.RoomSendError) and dup.status_code == "M_DUPLICATE_ANNOTATION", dup

        # Redacting the reaction takes it out of /relations; redacting the message strips it.
        redacted = await bob.room_redact(room_id, reaction, reason="changed my mind")
        assert isinstance(redacted, nio.RoomRedactResponse), redacted
        reactions = [e async for e in alice.room_get_event_relations(
            room_id, original, RelationshipType.annotation, "m.reaction")]
        assert reactions == []
        victim = await _text(alice, room_id, "something regrettable")
        redaction = await alice.room_redact(room_id, victim, reason="oops")
        assert isinstance(redaction, nio.RoomRedactResponse), redaction
        seen = await _sync_until(bob, _event_in(room_id, redaction.event_id), "the redaction")
        assert isinstance(seen, nio.RedactionEvent) and seen.redacts == victim and seen.reason == "oops"
        fetched = await bob.room_get_event(room_id, victim)
        assert isinstance(fetched, nio.RoomGetEventResponse), fetched
        assert isinstance(fetched.event, nio.RedactedEvent), fetched.event.source
        assert fetched.event.source["content"] == {}
        assert fetched.event.source["unsigned"]["redacted_because"]["event_id"] == redaction.event_id
    finally:
        await alice.close()
        await bob.close()


def test_nio_edit_is_bundled_reaction_listed_by_relations_and_redactions_apply(server):
    asyncio.run(_edit_react_redact(server))


# --- history ------------------------------------------------------------------------------------

async def _paginate(srv) -> None:
    alice, bob, room_id = await _room_with_two(srv, "niohistorian", "nioreader")
    try:
        sent = [await _text(alice, room_id, f"message {i}") for i in range(23)]
        # A fresh sync with a small timeline limit: limited, with a prev_batch to page back from.
        small = {"room": {"timeline": {"limit": 4}}}
        bob.next_batch = None
        resp = await _sync(bob, sync_filter=small, full_state=True)
        timeline = resp.rooms.join[room_id].timeline
        assert timeline.limited and timeline.prev_batch
        assert [e.event_id for e in timeline.events] == sent[-4:]

        seen: list = []
        token = timeline.prev_batch
        for _ in range(40):
            page = await bob.room_messages(room_id, start=token, limit=7)
            assert isinstance(page, nio.RoomMessagesResponse), page
            seen.extend(page.chunk)
            if not page.chunk or page.end is None:
                break
            token = page.end
        else:
            pytest.fail("pagination never reached the start of the room")
        ids = [e.event_id for e in seen]
        assert len(ids) == len(set(ids)), "an event came twice"
        assert isinstance(seen[-1], nio.RoomCreateEvent), seen[-1].source
        texts = [e.event_id for e in seen if isinstance(e, nio.RoomMessageText)]
        assert texts == list(reversed(sent[:-4]))

        # And forwards again from the start to the end of what the sync showed.
        forward = await bob.room_messages(room_id, start=page.start, direction=nio.MessageDirection.front,
                                          limit=100)
        assert isinstance(forward, nio.RoomMessagesResponse), forward
        fwd_texts = [e.event_id for e in forward.chunk if isinstance(e, nio.RoomMessageText)]
        assert fwd_texts == sent
    finally:
        await alice.close()
        await bob.close()


def test_nio_paginates_back_with_room_messages_to_the_room_start(server):
    asyncio.run(_paginate(server))


# --- media --------------------------------------------------------------------------------------

def _png(width: int = 64, height: int = 48) -> bytes:
    from PIL import Image
    buf = io.BytesIO()
    Image.new("RGB", (width, height), (200, 30, 60)).save(buf, "PNG")
    return buf.getvalue()


async def _media(srv) -> None:
    alice, bob, room_id = await _room_with_two(srv, "nioupload", "niodownload")
    try:
        data = b"plain text attachment \x00\x01\x02" * 100
        up, keys = await alice.upload(io.BytesIO(data), content_type="text/plain", filename="notes.txt",
                                      filesize=len(data))
        assert isinstance(up, nio.UploadResponse), up
        assert keys is None and up.content_uri.startswith(f"mxc://{srv.server_name}/")
        event_id = await _send(alice, room_id, {"msgtype": "m.file", "body": "notes.txt", "url": up.content_uri,
                                                "info": {"mimetype": "text/plain", "size": len(data)}})
        got = await _sync_until(bob, _event_in(room_id, event_id), "the file message")
        assert isinstance(got, nio.RoomMessageFile) and got.url == up.content_uri

        down = await bob.download(got.url)
        assert isinstance(down, nio.MemoryDownloadResponse), down
        assert down.body == data and down.content_type.startswith("text/plain")
        assert down.filename == "notes.txt"
        renamed = await bob.download(got.url, filename="other.txt")
        assert isinstance(renamed, nio.MemoryDownloadResponse) and renamed.filename == "other.txt", renamed

        png = _png()
        up, _ = await alice.upload(io.BytesIO(png), content_type="image/png", filename="red.png",
                                   filesize=len(png))
        assert isinstance(up, nio.UploadResponse), up
        server_name, media_id = up.content_uri[len("mxc://"):].split("/", 1)
        thumb = await bob.thumbnail(server_name, media_id, 32, 32, nio.ResizingMethod.crop)
        assert isinstance(thumb, nio.ThumbnailResponse), thumb
        assert thumb.content_type.startswith("image/") and thumb.body

        missing = await bob.download(f"mxc://{srv.server_name}/doesnotexist")
        assert isinstance(missing, nio.DownloadError) and missing.status_code == "M_NOT_FOUND", missing
    finally:
        await alice.close()
        await bob.close()


def test_nio_uploads_and_downloads_media_through_authenticated_endpoints(server):
    asyncio.run(_media(server))
