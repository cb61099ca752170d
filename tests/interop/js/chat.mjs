// matrix-js-sdk, two users on one uzel, no encryption: log in, create a room and invite, join,
// exchange messages through the sync loop, edit (m.replace), react (m.annotation), redact,
// scroll back to the start of the room from a fresh device, upload and download media through
// the authenticated /_matrix/client/v1/media endpoints.
// Args: {"baseUrl", "users": [alice, bob]} (both already registered). See common.mjs.

import {
    args, assert, assertEqual, liveEvents, login, note, run, sdk, start, waitFor, waitForEvent,
} from "./common.mjs";

const [aliceCreds, bobCreds] = args.users;
let alice, bob, roomId, original, edit, reaction;

const text = (client, body) => client.sendEvent(roomId, "m.room.message", { msgtype: "m.text", body });

async function logIn() {
    alice = await login(aliceCreds);
    bob = await login(bobCreds);
    const who = await alice.whoami();
    assertEqual(who.user_id, alice.getUserId(), "whoami user_id");
    assertEqual(who.device_id, alice.getDeviceId(), "whoami device_id");
}

async function startSyncing() {
    await start(alice);
    await start(bob);
}

async function createRoom() {
    const resp = await alice.createRoom({
        name: "js-sdk room", topic: "interop", preset: sdk.Preset.PrivateChat, invite: [bob.getUserId()],
    });
    roomId = resp.room_id;
    note("roomId", roomId);
    const room = await waitFor(() => alice.getRoom(roomId), "alice's sync to show the new room");
    await waitFor(() => room.name === "js-sdk room", "the room name from m.room.name");
    assertEqual(room.getMyMembership(), "join", "creator's membership");
}

async function join() {
    await waitFor(() => bob.getRoom(roomId)?.getMyMembership() === "invite", "bob's invite through /sync");
    assertEqual(bob.getRoom(roomId).getDMInviter(), undefined, "not a DM invite");
    await bob.joinRoom(roomId);
    await waitFor(() => bob.getRoom(roomId)?.getMyMembership() === "join", "bob's own join through /sync");
    await waitFor(() => alice.getRoom(roomId).getMember(bob.getUserId())?.membership === "join",
        "alice to see bob join");
    assertEqual(bob.getRoom(roomId).currentState.getStateEvents("m.room.topic", "")?.getContent().topic,
        "interop", "topic state delivered to the joiner");
}

async function exchange() {
    const { event_id: hello } = await text(alice, "hello bob");
    const got = await waitForEvent(bob, roomId, hello, "alice's message");
    assertEqual([got.getSender(), got.getContent().body], [alice.getUserId(), "hello bob"], "message seen by bob");
    const { event_id: reply } = await text(bob, "hello alice");
    const back = await waitForEvent(alice, roomId, reply, "bob's reply");
    assertEqual(back.getContent().body, "hello alice", "reply seen by alice");
    // Typing notifications through the ephemeral section.
    await bob.sendTyping(roomId, true, 10_000);
    await waitFor(() => alice.getRoom(roomId).getMember(bob.getUserId())?.typing, "bob typing, seen by alice");
}

async function editAndReact() {
    ({ event_id: original } = await text(alice, "teh original"));
    ({ event_id: edit } = await alice.sendEvent(roomId, "m.room.message", {
        msgtype: "m.text", body: "* the original",
        "m.new_content": { msgtype: "m.text", body: "the original" },
        "m.relates_to": { rel_type: "m.replace", event_id: original },
    }));
    ({ event_id: reaction } = await bob.sendEvent(roomId, "m.reaction", {
        "m.relates_to": { rel_type: "m.annotation", event_id: original, key: "👍" },
    }));
    // Both clients apply the edit from /sync; alice counts bob's reaction.
    await waitFor(() => bob.getRoom(roomId).findEventById(original)?.getContent().body === "the original",
        "bob to apply the edit");
    await waitFor(() => {
        const rel = alice.getRoom(roomId).relations.getChildEventsForEvent(original, "m.annotation", "m.reaction");
        return rel && rel.getSortedAnnotationsByKey()?.some(([key, events]) => key === "👍" && events.size === 1);
    }, "alice to count bob's reaction");
    // Server side: the edit is bundled, the annotation is not (event_replacements.md, event_annotations.md).
    const fetched = await bob.fetchRoomEvent(roomId, original);
    const bundled = fetched.unsigned?.["m.relations"] || {};
    assertEqual(bundled["m.replace"]?.event_id, edit, "m.replace bundled in unsigned.m.relations");
    assert(!("m.annotation" in bundled), "m.annotation must not be bundled");
    const rels = await alice.relations(roomId, original, "m.annotation", "m.reaction");
    assertEqual(rels.events.map((e) => e.getId()), [reaction], "/relations lists the reaction");
    // A second identical reaction is refused.
    try {
        await bob.sendEvent(roomId, "m.reaction", {
            "m.relates_to": { rel_type: "m.annotation", event_id: original, key: "👍" },
        });
        throw new Error("duplicate annotation was accepted");
    } catch (err) {
        assertEqual(err.errcode, "M_DUPLICATE_ANNOTATION", `duplicate reaction error (${err.message})`);
    }
}

async function redact() {
    const { event_id: victim } = await text(alice, "something regrettable");
    await waitForEvent(bob, roomId, victim, "the message to be redacted");
    await alice.redactEvent(roomId, victim, undefined, { reason: "oops" });
    await waitFor(() => bob.getRoom(roomId).findEventById(victim)?.isRedacted(), "bob to see the redaction");
    const fetched = await bob.fetchRoomEvent(roomId, victim);
    assertEqual(fetched.content, {}, "redacted content from /event");
    assertEqual(fetched.unsigned?.redacted_because?.content?.reason, "oops", "redacted_because reason");
    // Redacting the reaction takes it out of the counts and out of /relations.
    await bob.redactEvent(roomId, reaction);
    await waitFor(() => {
        const rel = alice.getRoom(roomId).relations.getChildEventsForEvent(original, "m.annotation", "m.reaction");
        return !rel || !rel.getSortedAnnotationsByKey()?.some(([, events]) => events.size > 0);
    }, "alice to drop the redacted reaction");
    const rels = await alice.relations(roomId, original, "m.annotation", "m.reaction");
    assertEqual(rels.events.length, 0, "/relations after redacting the reaction");
}

async function scrollback() {
    const bodies = [];
    for (let i = 0; i < 30; i++) {
        bodies.push(`history ${i}`);
        await text(alice, `history ${i}`);
    }
    // A new device of bob: the initial sync shows only the last few events.
    const fresh = await login(bobCreds);
    await start(fresh, { initialSyncLimit: 5 });
    const room = await waitFor(() => fresh.getRoom(roomId), "the room on bob's new device");
    for (let i = 0; i < 40 && room.oldState.paginationToken !== null; i++) {
        await fresh.scrollback(room, 8);
    }
    const events = liveEvents(fresh, roomId);
    assertEqual(room.oldState.paginationToken, null, "scrollback reached the start of the room");
    assertEqual(events[0].getType(), "m.room.create", "first event after full scrollback");
    const ids = events.map((e) => e.getId());
    assertEqual(new Set(ids).size, ids.length, "no event repeated by pagination");
    const history = events.filter((e) => e.getContent().body?.startsWith("history "))
        .map((e) => e.getContent().body);
    assertEqual(history, bodies, "the 30 messages in order");
    assert(events.some((e) => e.getId() === original && e.getContent().body === "the original"),
        "the edited message shows its replacement after scrollback");
    note("scrollbackEvents", events.length);
    fresh.stopClient();
}

async function media() {
    const data = Buffer.from("js-sdk attachment ".repeat(200) + "\u00e9\u0000\u0001", "utf-8");
    const upload = await alice.uploadContent(data, { name: "notes.txt", type: "text/plain" });
    assert(upload.content_uri?.startsWith("mxc://"), `content_uri ${JSON.stringify(upload)}`);
    const { event_id: fileEvent } = await alice.sendEvent(roomId, "m.room.message", {
        msgtype: "m.file", body: "notes.txt", url: upload.content_uri, info: { mimetype: "text/plain", size: data.length },
    });
    const got = await waitForEvent(bob, roomId, fileEvent, "the file message");
    const url = bob.mxcUrlToHttp(got.getContent().url, undefined, undefined, undefined, false, true, true);
    assert(url.includes("/_matrix/client/v1/media/download/"), `authenticated download URL ${url}`);
    const headers = { Authorization: `Bearer ${bob.getAccessToken()}` };
    const resp = await fetch(url, { headers });
    assertEqual(resp.status, 200, "download status");
    assert(resp.headers.get("content-type").startsWith("text/plain"), `content-type ${resp.headers.get("content-type")}`);
    assert(/notes\.txt/.test(resp.headers.get("content-disposition") || ""), "content-disposition has the name");
    assert(Buffer.from(await resp.arrayBuffer()).equals(data), "downloaded bytes equal uploaded bytes");
    const anonymous = await fetch(url);
    assertEqual(anonymous.status, 401, "authenticated media without a token");
    const cfg = await fetch(`${args.baseUrl}/_matrix/client/v1/media/config`, { headers });
    assertEqual(cfg.status, 200, "media config");
    assert((await cfg.json())["m.upload.size"] > 0, "m.upload.size");
}

await run([
    ["login", logIn],
    ["start_sync", startSyncing],
    ["create_room", createRoom],
    ["join", join],
    ["messages_through_sync", exchange],
    ["edit_and_react", editAndReact],
    ["redact", redact],
    ["scrollback", scrollback],
    ["media", media],
]);
