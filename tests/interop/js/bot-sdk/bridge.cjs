// matrix-bot-sdk's Appservice as a bridge against a live uzel (run by
// tests/interop/test_bot_sdk_appservice.py as `node bridge.cjs '<json args>'`).
//
// args: {homeserverUrl, serverName, port, registration}. The script plays both sides: the bridge
// (the SDK's Appservice on 127.0.0.1:port) and a human user talking to uzel with fetch. It runs
// named steps in order; the last stdout line is {"ok", "passed": [...], "failed", "error"}.
"use strict";

const sdk = require("matrix-bot-sdk");

const args = JSON.parse(process.argv[2] || "{}");
const { homeserverUrl, serverName, port, registration } = args;
sdk.LogService.setLevel(sdk.LogLevel.ERROR);
sdk.LogService.setLogger(new sdk.ConsoleLogger());
for (const level of ["log", "info", "debug", "warn"]) console[level] = (...a) => console.error(...a);

const passed = [];
let current = null;
const seen = { messages: [], ephemeral: [], queries: [] };

function finish(ok, error) {
    process.stdout.write(JSON.stringify({ ok, passed, failed: ok ? null : current, error: error || null }) + "\n");
    process.exit(ok ? 0 : 1);
}
setTimeout(() => finish(false, "timed out"), args.timeoutMs || 60000).unref();

async function step(name, fn) {
    current = name;
    const result = await fn();
    passed.push(name);
    return result;
}

function check(cond, msg) {
    if (!cond) throw new Error(msg);
}

async function http(method, path, token, body, query) {
    const url = new URL(homeserverUrl + path);
    for (const [k, v] of Object.entries(query || {})) url.searchParams.set(k, v);
    const headers = { "Content-Type": "application/json" };
    if (token) headers.Authorization = `Bearer ${token}`;
    const resp = await fetch(url, { method, headers, body: body === undefined ? undefined : JSON.stringify(body) });
    const text = await resp.text();
    let json = null;
    try { json = JSON.parse(text); } catch (_e) { /* not JSON */ }
    return { status: resp.status, json };
}

async function ok(promise) {
    const r = await promise;
    if (r.status !== 200) throw new Error(`HTTP ${r.status}: ${JSON.stringify(r.json)}`);
    return r.json;
}

async function waitFor(what, predicate, timeoutMs = 20000) {
    const deadline = Date.now() + timeoutMs;
    while (Date.now() < deadline) {
        const found = predicate();
        if (found) return found;
        await new Promise((r) => setTimeout(r, 50));
    }
    throw new Error(`never saw ${what}`);
}

const enc = encodeURIComponent;

async function main() {
    const appservice = new sdk.Appservice({
        port, bindAddress: "127.0.0.1", homeserverName: serverName, homeserverUrl, registration,
        storage: new sdk.MemoryStorageProvider(), joinStrategy: new sdk.SimpleRetryJoinStrategy(),
    });
    appservice.on("room.message", (roomId, event) => seen.messages.push(event));
    appservice.on("ephemeral.event", (event) => seen.ephemeral.push(event));
    appservice.on("query.room", (alias, createRoom) => {
        // The SDK creates the room as its bot, with the queried alias, from this content.
        seen.queries.push(alias);
        createRoom({ name: `Bridged ${alias}`, preset: "public_chat", visibility: "private" });
    });
    await step("begin", () => appservice.begin());

    const human = await step("register human", () => ok(http("POST", "/_matrix/client/v3/register", null, {
        username: `human${Date.now()}`, password: "correct horse battery", auth: { type: "m.login.dummy" },
    })));
    const token = human.access_token;

    await step("ping reaches the bridge", async () => {
        // matrix-bot-sdk 0.8 has no /_matrix/app/v1/ping route: uzel must report its 404 as
        // 502 M_BAD_STATUS with the status and body (appservice_ping.yaml), not fail otherwise.
        const r = await http("POST", `/_matrix/client/v1/appservice/${enc(registration.id)}/ping`,
            registration.as_token, { transaction_id: "bot-sdk" });
        const answered = r.status === 200 && typeof r.json.duration_ms === "number";
        const reported = r.status === 502 && r.json.errcode === "M_BAD_STATUS" && r.json.status === 404;
        check(answered || reported, `got ${r.status} ${JSON.stringify(r.json)}`);
    });

    const alias = `#_bs_chan${Date.now()}:${serverName}`;
    const roomId = await step("alias query creates the room", async () => {
        const joined = await ok(http("POST", `/_matrix/client/v3/join/${enc(alias)}`, token, {}));
        check(seen.queries.includes(alias), "the appservice was not asked about the alias");
        return joined.room_id;
    });

    const ghost = appservice.getIntentForSuffix("ghost1");
    await step("ghost registers and joins", async () => {
        await ghost.ensureRegistered();
        await ghost.underlyingClient.setDisplayName("Bot-sdk ghost");
        await ghost.joinRoom(roomId);
        const members = await ok(http("GET", `/_matrix/client/v3/rooms/${enc(roomId)}/joined_members`, token));
        check(ghost.userId in members.joined, "ghost is not joined");
    });

    const sent = await step("user message reaches the bridge", async () => {
        const r = await ok(http("PUT", `/_matrix/client/v3/rooms/${enc(roomId)}/send/m.room.message/t${Date.now()}`,
            token, { msgtype: "m.text", body: "hello bot-sdk" }));
        const event = await waitFor("the message", () => seen.messages.find((e) => e.event_id === r.event_id));
        check(event.content.body === "hello bot-sdk" && event.sender === human.user_id, "wrong event");
        return r.event_id;
    });

    const replyId = await step("ghost replies", async () => {
        const eventId = await ghost.sendText(roomId, "echo: hello bot-sdk");
        const event = await ok(http("GET", `/_matrix/client/v3/rooms/${enc(roomId)}/event/${enc(eventId)}`, token));
        check(event.sender === ghost.userId && event.content.body === "echo: hello bot-sdk", "wrong reply");
        return eventId;
    });

    await step("typing arrives as an ephemeral event", async () => {
        await ok(http("PUT", `/_matrix/client/v3/rooms/${enc(roomId)}/typing/${enc(human.user_id)}`, token,
            { typing: true, timeout: 10000 }));
        await waitFor("m.typing", () => seen.ephemeral.find((e) => e.type === "m.typing" && e.room_id === roomId
            && e.content.user_ids.includes(human.user_id)));
    });

    await step("read receipt arrives as an ephemeral event", async () => {
        await ok(http("POST", `/_matrix/client/v3/rooms/${enc(roomId)}/receipt/m.read/${enc(replyId)}`, token, {}));
        await waitFor("m.receipt", () => seen.ephemeral.find((e) => e.type === "m.receipt" && e.room_id === roomId
            && e.content[replyId]));
    });

    await step("network room directory", async () => {
        await appservice.setRoomDirectoryVisibility("botnet", roomId, "public");
        const listed = await ok(http("POST", "/_matrix/client/v3/publicRooms", token,
            { third_party_instance_id: `${registration.id}|botnet` }));
        check(listed.chunk.some((r) => r.room_id === roomId), "room not in the network's directory");
    });

    await step("outside the namespace is refused", async () => {
        const r = await http("POST", "/_matrix/client/v3/register", registration.as_token,
            { type: "m.login.application_service", username: "not_a_ghost", inhibit_login: true });
        check(r.status === 400 && r.json.errcode === "M_EXCLUSIVE", `got ${r.status} ${JSON.stringify(r.json)}`);
    });

    check(sent, "no message");
    appservice.stop();
    finish(true);
}

main().catch((e) => finish(false, String(e && e.stack || e)));
