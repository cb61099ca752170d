// matrix-js-sdk with its Rust crypto (@matrix-org/matrix-sdk-crypto-wasm), two users on one uzel:
// alice bootstraps cross-signing, replacing a master key left by a lost device (so POST
// /keys/device_signing/upload goes through UIA with m.login.password),
// sets up secret storage (account data) and a key backup (/room_keys/version); both chat in an
// encrypted room and each decrypts what the other sent; alice's Megolm keys reach the backup
// (/room_keys/keys) and a new device of alice restores them from it and decrypts the history.
// Args: {"baseUrl", "users": [alice, bob]} (both already registered). See common.mjs.

import { generateKeyPairSync, sign as cryptoSign } from "node:crypto";

import { RustBackupManager } from "matrix-js-sdk/lib/rust-crypto/backup.js";

import {
    args, assert, assertEqual, login, note, passwordAuth, rawRequest, run, sdk, settled, start, waitFor, waitForEvent,
} from "./common.mjs";

// Upload room keys to the backup at once instead of after a random delay of up to 10 s.
RustBackupManager.maxBackupLoopStartDelayMillis = 0;

const [aliceCreds, bobCreds] = args.users;
const secretStorageKeys = {}; // key id -> private key, what a user would type in as a recovery key
let alice, bob, alice2, roomId, backupVersion, firstMessage, lostMasterKeyId;

const cryptoCallbacks = {
    getSecretStorageKey: async ({ keys }) => {
        const keyId = Object.keys(keys).find((id) => secretStorageKeys[id]);
        return keyId ? [keyId, secretStorageKeys[keyId]] : null;
    },
    cacheSecretStorageKey: (keyId, _info, key) => {
        secretStorageKeys[keyId] = key;
    },
};

async function cryptoClient(creds) {
    const client = await login(creds, { cryptoCallbacks });
    await client.initRustCrypto({ useIndexedDB: false });
    await start(client);
    return client;
}

async function logInWithCrypto() {
    await uploadLostCrossSigningKeys(aliceCreds);
    alice = await cryptoClient(aliceCreds);
    bob = await cryptoClient(bobCreds);
    // The Rust crypto uploads device keys and one-time keys (/keys/upload) as the sync loop runs;
    // then the server lists them.
    await waitFor(async () => {
        const query = await rawRequest(bob, "POST", "/keys/query", undefined, { device_keys: { [alice.getUserId()]: [] } });
        const device = query.device_keys?.[alice.getUserId()]?.[alice.getDeviceId()];
        return device && device.keys[`ed25519:${alice.getDeviceId()}`];
    }, "alice's device keys in /keys/query");
    const counts = await rawRequest(alice, "POST", "/keys/upload", undefined, {});
    assert(counts.one_time_key_counts?.signed_curve25519 > 0, `one-time keys uploaded: ${JSON.stringify(counts)}`);
}

/** Canonical JSON (appendices.md, "Canonical JSON") for the plain objects signed here. */
function canonicalJson(value) {
    if (Array.isArray(value)) return `[${value.map(canonicalJson).join(",")}]`;
    if (value && typeof value === "object") {
        return `{${Object.keys(value).sort().map((k) => `${JSON.stringify(k)}:${canonicalJson(value[k])}`).join(",")}}`;
    }
    return JSON.stringify(value);
}

const unpadded = (buf) => buf.toString("base64").replace(/=+$/, "");

function ed25519Key() {
    const { publicKey, privateKey } = generateKeyPairSync("ed25519");
    const pub = unpadded(publicKey.export({ format: "der", type: "spki" }).subarray(-32));
    return { id: `ed25519:${pub}`, pub, privateKey };
}

function crossSigningKey(userId, usage, key, signer) {
    const body = { user_id: userId, usage: [usage], keys: { [key.id]: key.pub } };
    if (signer) {
        const sig = unpadded(cryptoSign(null, Buffer.from(canonicalJson(body)), signer.privateKey));
        body.signatures = { [userId]: { [signer.id]: sig } };
    }
    return body;
}

/** Cross-signing keys from "an earlier, lost device" of alice, uploaded over plain HTTP before her
 * crypto client starts: her new identity then replaces existing keys, which needs UIA
 * (keys/device_signing/upload: no UIA only when there is no master key yet, or the same one). */
async function uploadLostCrossSigningKeys(creds) {
    const session = await login(creds);
    const userId = session.getUserId();
    const master = ed25519Key();
    lostMasterKeyId = master.id;
    await rawRequest(session, "POST", "/keys/device_signing/upload", undefined, {
        master_key: crossSigningKey(userId, "master", master),
        self_signing_key: crossSigningKey(userId, "self_signing", ed25519Key(), master),
        user_signing_key: crossSigningKey(userId, "user_signing", ed25519Key(), master),
    });
}

async function bootstrapCrossSigning() {
    const crypto = alice.getCrypto();
    await waitFor(async () => (await crypto.getCrossSigningStatus()).publicKeysOnDevice,
        "alice's client to know her existing (lost) cross-signing keys");
    // A /keys/query answered with the lost keys but handled after the new identity is made would
    // make the SDK drop the new private keys (a client-side race): let those queries finish first.
    await settled("/keys/upload");
    await settled("/keys/query");
    const uia = [];
    await crypto.bootstrapCrossSigning({ authUploadDeviceSigningKeys: passwordAuth(alice, uia) });
    note("crossSigningUia", uia);
    assertEqual(uia, ["password"], "replacing the master key went through UIA with the password");
    const masterKeyId = await crypto.getCrossSigningKeyId();
    assert(masterKeyId && `ed25519:${masterKeyId}` !== lostMasterKeyId, "a new master key");
    // The new public keys reach alice's crypto through /sync (device_lists.changed has her own id)
    // then /keys/query, matching the new private keys.
    let status;
    await waitFor(async () => {
        status = await crypto.getCrossSigningStatus();
        return status.publicKeysOnDevice && status.privateKeysCachedLocally.masterKey
            && status.privateKeysCachedLocally.selfSigningKey && status.privateKeysCachedLocally.userSigningKey;
    }, "alice's cross-signing status to show the new keys", 10_000).catch((err) => {
        throw new Error(`${err.message}: ${JSON.stringify(status)}`);
    });
    assert(await crypto.isCrossSigningReady(), "alice's cross-signing is ready");
    // Another user sees the keys and alice's device signed by her self-signing key.
    const query = await rawRequest(bob, "POST", "/keys/query", undefined, { device_keys: { [alice.getUserId()]: [] } });
    const master = query.master_keys?.[alice.getUserId()];
    const selfSigning = query.self_signing_keys?.[alice.getUserId()];
    assert(master && selfSigning, `master and self-signing keys in /keys/query: ${JSON.stringify(query)}`);
    assert(!query.user_signing_keys?.[alice.getUserId()], "user-signing key is only shown to its owner");
    const ssKeyId = Object.keys(selfSigning.keys)[0];
    const sigs = query.device_keys[alice.getUserId()][alice.getDeviceId()].signatures[alice.getUserId()];
    assert(sigs[ssKeyId], `alice's device is signed by her self-signing key: ${JSON.stringify(sigs)}`);
    const own = await rawRequest(alice, "POST", "/keys/query", undefined, { device_keys: { [alice.getUserId()]: [] } });
    assert(own.user_signing_keys?.[alice.getUserId()], "the owner sees her user-signing key");
    const verified = await waitFor(async () => {
        const s = await alice.getCrypto().getDeviceVerificationStatus(alice.getUserId(), alice.getDeviceId());
        return s && s.crossSigningVerified;
    }, "alice's own device to be cross-signing verified");
    assert(verified, "own device verified");
}

async function setUpSecretStorageAndBackup() {
    const crypto = alice.getCrypto();
    await crypto.bootstrapSecretStorage({
        createSecretStorageKey: () => crypto.createRecoveryKeyFromPassphrase(),
        setupNewKeyBackup: true,
    });
    assert(await crypto.isSecretStorageReady(), "secret storage ready (cross-signing and backup keys stored)");
    const defaultKey = await rawRequest(alice, "GET",
        `/user/${encodeURIComponent(alice.getUserId())}/account_data/m.secret_storage.default_key`);
    assert(defaultKey.key, `default secret storage key in account data: ${JSON.stringify(defaultKey)}`);
    backupVersion = await waitFor(() => crypto.getActiveSessionBackupVersion(), "an active key backup");
    const info = await rawRequest(alice, "GET", "/room_keys/version");
    assertEqual(info.version, backupVersion, "GET /room_keys/version returns the new backup");
    assertEqual(info.algorithm, "m.megolm_backup.v1.curve25519-aes-sha2", "backup algorithm");
    assert(info.auth_data.signatures?.[alice.getUserId()], "backup auth_data is signed");
    const check = await crypto.checkKeyBackupAndEnable();
    assert(check && check.trustInfo.trusted, `backup trusted: ${JSON.stringify(check && check.trustInfo)}`);
    note("backupVersion", backupVersion);
}

async function createEncryptedRoom() {
    ({ room_id: roomId } = await alice.createRoom({
        name: "secret js room", preset: sdk.Preset.PrivateChat, invite: [bob.getUserId()],
        initial_state: [{ type: "m.room.encryption", state_key: "", content: { algorithm: "m.megolm.v1.aes-sha2" } }],
    }));
    await waitFor(() => bob.getRoom(roomId)?.getMyMembership() === "invite", "bob's invite");
    await bob.joinRoom(roomId);
    await waitFor(() => alice.getRoom(roomId)?.getMember(bob.getUserId())?.membership === "join", "alice to see bob join");
    assert(await alice.getCrypto().isEncryptionEnabledInRoom(roomId), "alice sees the room as encrypted");
    await waitFor(() => bob.getCrypto().isEncryptionEnabledInRoom(roomId), "bob to see the room as encrypted");
}

async function sendAndDecrypt(sender, receiver, body) {
    const { event_id: eventId } = await sender.sendEvent(roomId, "m.room.message", { msgtype: "m.text", body });
    const event = await waitForEvent(receiver, roomId, eventId, `the encrypted "${body}"`);
    await waitFor(() => !event.isBeingDecrypted() && !event.shouldAttemptDecryption(), "decryption to finish");
    assertEqual(event.getWireType(), "m.room.encrypted", "the event travelled encrypted");
    assert(!event.isDecryptionFailure(), `${receiver.getUserId()} failed to decrypt: ${event.decryptionFailureReason}`);
    assertEqual([event.getType(), event.getContent().body], ["m.room.message", body], "decrypted content");
    assertEqual(event.getSender(), sender.getUserId(), "sender");
    // The server holds only ciphertext.
    const raw = await receiver.fetchRoomEvent(roomId, eventId);
    assertEqual(raw.type, "m.room.encrypted", "server-side event type");
    assert(!JSON.stringify(raw).includes(body), "plaintext not on the server");
    return eventId;
}

async function exchangeEncrypted() {
    firstMessage = await sendAndDecrypt(alice, bob, "hello bob, this is secret");
    await sendAndDecrypt(bob, alice, "hello alice, also secret");
}

async function keysReachBackup() {
    const keys = await waitFor(async () => {
        const resp = await rawRequest(alice, "GET", "/room_keys/keys", { version: backupVersion });
        const sessions = resp.rooms?.[roomId]?.sessions || {};
        return Object.keys(sessions).length >= 1 ? resp : null;
    }, "alice's Megolm session in /room_keys/keys", 20_000);
    const info = await rawRequest(alice, "GET", `/room_keys/version/${backupVersion}`);
    assert(info.count >= 1 && typeof info.etag === "string", `count and etag: ${JSON.stringify(info)}`);
    note("backedUpSessions", Object.keys(keys.rooms[roomId].sessions).length);
}

async function restoreOnNewDevice() {
    alice2 = await cryptoClient(aliceCreds);
    const crypto = alice2.getCrypto();
    // The recovery key (held in secretStorageKeys, as a user would type it) unlocks the backup key.
    await crypto.loadSessionBackupPrivateKeyFromSecretStorage();
    const check = await crypto.checkKeyBackupAndEnable();
    assert(check && check.backupInfo.version === backupVersion, `new device finds backup ${backupVersion}`);
    const restored = await crypto.restoreKeyBackup();
    assert(restored.imported >= 1, `keys imported from the backup: ${JSON.stringify(restored)}`);
    const room = await waitFor(() => alice2.getRoom(roomId), "the room on alice's new device");
    const event = await waitFor(async () => {
        const found = room.findEventById(firstMessage);
        if (found) return found;
        await alice2.scrollback(room, 20);
        return null;
    }, "the first message on alice's new device");
    await waitFor(() => !event.isDecryptionFailure() && event.getContent().body === "hello bob, this is secret",
        "alice's new device to decrypt history with the restored key");
}

await run([
    ["login_with_rust_crypto", logInWithCrypto],
    ["bootstrap_cross_signing_with_uia", bootstrapCrossSigning],
    ["secret_storage_and_key_backup", setUpSecretStorageAndBackup],
    ["encrypted_room", createEncryptedRoom],
    ["send_and_decrypt_both_ways", exchangeEncrypted],
    ["room_keys_uploaded_to_backup", keysReachBackup],
    ["new_device_restores_backup", restoreOnNewDevice],
]);
