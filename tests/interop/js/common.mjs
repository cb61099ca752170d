// Shared plumbing for the matrix-js-sdk scenarios run by tests/interop/test_js_sdk.py.
//
// A scenario script is started as `node <script>.mjs '<json args>'` with at least
// {"baseUrl": "http://127.0.0.1:PORT", "users": [{"user": "name", "password": "pw"}, ...]}.
// It runs named steps in order; the last line it prints on stdout is the JSON result
//   {"ok": true|false, "passed": ["step", ...], "failed": "step"|null, "error": "...", "info": {...}}
// Everything the SDK logs goes to stderr (kept short: warnings and errors only).

import * as sdk from "matrix-js-sdk";
import { logger } from "matrix-js-sdk/lib/logger.js";

export { sdk };

logger.setLevel(process.env.UZEL_JS_LOG_LEVEL || "error");
// The SDK's own log lines go through console.*; keep stdout for the result line only.
for (const level of ["log", "info", "debug", "warn"]) console[level] = (...args) => console.error(...args);

export const args = JSON.parse(process.argv[2] || "{}");
const SCRIPT_TIMEOUT_MS = args.timeoutMs || 50_000;

const result = { ok: false, passed: [], failed: null, error: null, info: {} };
const started = [];

function finish(code) {
    for (const client of started) {
        try { client.stopClient(); } catch { /* already stopped */ }
    }
    process.stdout.write("\n" + JSON.stringify(result) + "\n", () => process.exit(code));
}

/** Run the scenario: `steps` is a list of [name, async fn]; stops at the first failure. */
export async function run(steps) {
    const timer = setTimeout(() => {
        result.error = result.error || `script timed out after ${SCRIPT_TIMEOUT_MS} ms`;
        finish(2);
    }, SCRIPT_TIMEOUT_MS);
    for (const [name, fn] of steps) {
        const t0 = Date.now();
        try {
            await fn();
        } catch (err) {
            result.failed = name;
            result.error = describe(err);
            clearTimeout(timer);
            finish(1);
            return;
        }
        result.passed.push(name);
        result.info[`${name}_ms`] = Date.now() - t0;
    }
    result.ok = true;
    clearTimeout(timer);
    finish(0);
}

export function note(key, value) {
    result.info[key] = value;
}

function describe(err) {
    if (err instanceof sdk.MatrixError) {
        return `MatrixError ${err.httpStatus} ${err.errcode}: ${err.message} (${err.url || ""}) ${JSON.stringify(err.data)}`;
    }
    return err && err.stack ? String(err.stack) : String(err);
}

export function assert(cond, message) {
    if (!cond) throw new Error(`assertion failed: ${message}`);
}

export function assertEqual(actual, expected, message) {
    const a = JSON.stringify(actual), e = JSON.stringify(expected);
    if (a !== e) throw new Error(`assertion failed: ${message}: expected ${e}, got ${a}`);
}

export const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms));

/** Poll `check` (sync or async) every 50 ms until it returns a truthy value. */
export async function waitFor(check, what, timeoutMs = 15_000) {
    const deadline = Date.now() + timeoutMs;
    for (;;) {
        const value = await check();
        if (value) return value;
        if (Date.now() > deadline) throw new Error(`timed out after ${timeoutMs} ms waiting for ${what}`);
        await sleep(50);
    }
}

// Every client's requests go through this fetch, which remembers what is in flight, so a step
// can wait for the SDK's background requests of one kind (say /keys/query) to settle.
const inflight = new Map(); // path -> count
const lastDone = new Map(); // path -> time the last one finished
export async function trackingFetch(input, init) {
    const path = (input instanceof URL ? input : new URL(typeof input === "string" ? input : input.url)).pathname;
    inflight.set(path, (inflight.get(path) || 0) + 1);
    try {
        return await fetch(input, init);
    } finally {
        inflight.set(path, inflight.get(path) - 1);
        lastDone.set(path, Date.now());
    }
}

/** Wait until no request whose path ends with `suffix` is in flight or finished in the last `quietMs`. */
export async function settled(suffix, quietMs = 500, timeoutMs = 10_000) {
    await waitFor(() => {
        const now = Date.now();
        for (const [path, count] of inflight) {
            if (path.endsWith(suffix) && (count > 0 || now - lastDone.get(path) < quietMs)) return false;
        }
        return true;
    }, `requests to ${suffix} to settle`, timeoutMs);
}

/** Log in with a password through POST /login (m.id.user), then build the client for that session. */
export async function login({ user, password }, extra = {}) {
    const anon = sdk.createClient({ baseUrl: args.baseUrl });
    const resp = await anon.loginRequest({
        type: "m.login.password",
        identifier: { type: "m.id.user", user },
        password,
        initial_device_display_name: `js-sdk ${user}`,
    });
    assert(resp.access_token && resp.device_id && resp.user_id, `login response ${JSON.stringify(resp)}`);
    const client = sdk.createClient({
        baseUrl: args.baseUrl,
        fetchFn: trackingFetch,
        userId: resp.user_id,
        deviceId: resp.device_id,
        accessToken: resp.access_token,
        timelineSupport: true,
        ...extra,
    });
    client.password = password;
    return client;
}

/** Start the sync loop and resolve once the first sync has been processed (state PREPARED). */
export async function start(client, opts = {}) {
    started.push(client);
    const prepared = new Promise((resolve, reject) => {
        const onSync = (state, _prev, data) => {
            if (state === "PREPARED" || state === "SYNCING") {
                client.off(sdk.ClientEvent.Sync, onSync);
                resolve();
            } else if (state === "ERROR") {
                client.off(sdk.ClientEvent.Sync, onSync);
                reject(new Error(`initial sync failed: ${describe(data && data.error)}`));
            }
        };
        client.on(sdk.ClientEvent.Sync, onSync);
    });
    await client.startClient({ initialSyncLimit: 20, pollTimeout: 5000, ...opts });
    await prepared;
}

/** The room's live timeline events (after local echo settled), oldest first. */
export function liveEvents(client, roomId) {
    const room = client.getRoom(roomId);
    return room ? room.getLiveTimeline().getEvents() : [];
}

/** Wait until an event with `eventId` is in the room's live timeline as seen by `client` through /sync. */
export async function waitForEvent(client, roomId, eventId, what) {
    return waitFor(() => {
        const room = client.getRoom(roomId);
        return room && room.findEventById(eventId);
    }, `${client.getUserId()} to receive ${what || eventId}`);
}

/** UIA callback answering with m.login.password for `client`'s user (client-server-api, UIA).
 * `log` (optional array) gets "no-auth" when the server took the request without UIA, "password" when
 * it asked for authentication and accepted the password. */
export function passwordAuth(client, log = []) {
    return async (makeRequest) => {
        // First attempt without auth yields the 401 with the session; the SDK passes it back to us.
        try {
            await makeRequest(null);
            log.push("no-auth");
        } catch (err) {
            const session = err && err.data && err.data.session;
            if (!(err && err.httpStatus === 401 && session)) throw err;
            const flows = (err.data.flows || []).map((f) => f.stages.join(","));
            assert(flows.includes("m.login.password"), `UIA flows offer m.login.password: ${JSON.stringify(err.data)}`);
            await makeRequest({
                type: "m.login.password",
                identifier: { type: "m.id.user", user: client.getUserId() },
                password: client.password,
                session,
            });
            log.push("password");
        }
    };
}

/** A raw authenticated request through the SDK's HTTP layer (path below /_matrix/client/v3). */
export function rawRequest(client, method, path, query, body, prefix = "/_matrix/client/v3") {
    return client.http.authedRequest(method, path, query, body, { prefix });
}
