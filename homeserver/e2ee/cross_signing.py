"""Cross-signing keys and signatures (end_to_end_encryption.md "Cross-signing";
cross_signing.yaml ``/keys/device_signing/upload`` and ``/keys/signatures/upload``).

Who sees which signature ("Key and signature security"): everyone sees a user's signatures on
their own devices and master key (by their self-signing key, master key or devices); only the
signer sees signatures by their user-signing key on other users' master keys.
"""
from __future__ import annotations

import copy
from typing import Iterable

from homeserver.http.errors import MatrixError, bad_json, forbidden, not_found
from homeserver.protocol.ids import is_valid_user_id
from homeserver.storage.accounts_store import AccountsStore
from homeserver.storage.e2ee_store import E2eeStore, SignatureRow

from . import keys_format as kf
from .device_lists import DeviceListService

# (body field, usage / key_type)
KEY_FIELDS = (("master_key", "master"), ("self_signing_key", "self_signing"), ("user_signing_key", "user_signing"))


class CrossSigningService:
    def __init__(self, hs):
        self.hs = hs
        self.store = hs.get(E2eeStore)
        self.device_lists = hs.get(DeviceListService)

    async def get_own_keys(self, user_id: str) -> dict[str, dict]:
        """{key_type: key} of a user's current cross-signing keys."""
        return (await self.store.get_cross_signing_keys([user_id])).get(user_id, {})

    # --- /keys/device_signing/upload ------------------------------------------------------------
    def _parse_upload(self, user_id: str, body: dict) -> dict[str, tuple[str, dict]]:
        new: dict[str, tuple[str, dict]] = {}
        for field, usage in KEY_FIELDS:
            if body.get(field) is not None:
                public = kf.validate_cross_signing_key(body[field], user_id, usage)
                new[usage] = (public, {k: v for k, v in body[field].items() if k != "unsigned"})
        return new

    async def upload_requires_uia(self, requester, body: dict) -> bool:
        """cross_signing.yaml: UIA unless the requester is an application service, the user has
        no master key yet, or the request repeats the master key (and any other keys) exactly."""
        if requester.app_service is not None:
            return False
        existing = await self.get_own_keys(requester.user_id)
        if "master" not in existing:
            return False
        new = self._parse_upload(requester.user_id, body)
        if "master" not in new:
            return True
        return any(existing.get(usage) != key for usage, (_, key) in new.items())

    async def upload_signing_keys(self, requester, body: dict) -> None:
        """Validate and store the master, self-signing and user-signing keys of the body.

        Self-signing and user-signing keys must be signed by the accompanying master key or the
        stored one (M_MISSING_PARAM without either, M_INVALID_SIGNATURE for a bad signature);
        a public key equal to one of the user's device IDs is refused (403, "Cross-signing":
        "Servers therefore must ensure that device IDs will not collide with cross-signing
        public keys")."""
        user_id = requester.user_id
        new = self._parse_upload(user_id, body)
        if not new:
            return
        existing = await self.get_own_keys(user_id)
        master = new.get("master")
        if master is None and "master" in existing:
            master = (kf.cross_signing_public_key(existing["master"]), existing["master"])
        for usage in ("self_signing", "user_signing"):
            if usage in new:
                if master is None:
                    raise MatrixError(400, "M_MISSING_PARAM", "No master signing key is available")
                kf.verify_signature(new[usage][1], user_id, f"ed25519:{master[0]}", master[0])
        device_ids = {d.device_id for d in await self.hs.get(AccountsStore).get_devices(user_id)}
        for public, _ in new.values():
            if public in device_ids:
                raise forbidden("Key ID in use")
        changed = {usage: v for usage, v in new.items() if existing.get(usage) != v[1]}
        if not changed:
            return
        with self.store.device_list_ids.get_next() as stream_id:
            await self.store.set_cross_signing_keys(user_id, changed, self.hs.clock_ms(), stream_id)
        await self.device_lists.changes_committed(stream_id, [(user_id, None, None)])

    # --- /keys/signatures/upload -------------------------------------------------------------------
    async def upload_signatures(self, requester, body: dict) -> dict:
        """Store the new signatures of ``{user_id: {key_id: signed object}}``; returns the
        ``failures`` map (cross_signing.yaml) of ``{user_id: {key_id: {errcode, error}}}``."""
        signer = requester.user_id
        for target_user, objects in body.items():
            if not isinstance(objects, dict) or not all(isinstance(o, dict) for o in objects.values()):
                raise bad_json("Each user must map key IDs to signed key objects")
        own = await self.get_own_keys(signer)
        failures: dict[str, dict[str, dict]] = {}
        rows: list[SignatureRow] = []
        changes: list[tuple[str, str | None, str | None]] = []
        for target_user, objects in body.items():
            for key_id, obj in objects.items():
                try:
                    if not is_valid_user_id(target_user):
                        raise bad_json(f"{target_user!r} is not a user ID")
                    if target_user == signer:
                        new_rows, change = await self._own_key_signatures(signer, own, key_id, obj)
                    else:
                        new_rows, change = await self._other_master_signature(signer, own, target_user, key_id, obj)
                    rows += new_rows
                    changes.append(change)
                except MatrixError as e:
                    failures.setdefault(target_user, {})[key_id] = {"errcode": e.errcode, "error": e.msg}
        if rows:
            with self.store.device_list_ids.get_next() as stream_id:
                await self.store.add_signatures(rows, changes, stream_id)
            await self.device_lists.changes_committed(stream_id, changes)
        return failures

    async def _own_key_signatures(self, user_id: str, own: dict[str, dict], key_id: str, obj: dict):
        """The user signs their own device (with their self-signing key) or their master key
        (with one of their devices)."""
        master = own.get("master")
        if master is not None and key_id == kf.cross_signing_public_key(master):
            _check_same_key(obj, master)
            new_sigs = _new_signatures(obj, master, user_id)
            rows = []
            for sig_key_id, sig in new_sigs.items():
                device_id = sig_key_id.partition(":")[2]
                device_keys = await self.store.get_device_keys(user_id, device_id)
                device_key = kf.device_signing_key(device_keys, device_id)
                if not sig_key_id.startswith("ed25519:") or device_key is None:
                    raise kf.invalid_signature(f"Unknown signing key {sig_key_id}")
                kf.verify_signature(_with_signature(master, user_id, sig_key_id, sig), user_id, sig_key_id,
                                    device_key)
                rows.append(SignatureRow(user_id, sig_key_id, user_id, key_id, sig))
            return rows, (user_id, None, None)
        device_keys = await self.store.get_device_keys(user_id, key_id)
        if device_keys is None:
            raise not_found(f"Unknown device or key {key_id}")
        ssk = own.get("self_signing")
        if ssk is None:
            raise kf.invalid_signature("No self-signing key to sign devices with")
        ssk_public = kf.cross_signing_public_key(ssk)
        _check_same_key(obj, device_keys)
        sig_key_id = f"ed25519:{ssk_public}"
        sig = ((obj.get("signatures") or {}).get(user_id) or {}).get(sig_key_id)
        if not isinstance(sig, str):
            raise kf.invalid_signature(f"Missing signature by the self-signing key {sig_key_id}")
        kf.verify_signature(_with_signature(device_keys, user_id, sig_key_id, sig), user_id, sig_key_id, ssk_public)
        return [SignatureRow(user_id, sig_key_id, user_id, key_id, sig)], (user_id, key_id, None)

    async def _other_master_signature(self, signer: str, own: dict[str, dict], target_user: str, key_id: str,
                                      obj: dict):
        """The user signs another user's master key with their user-signing key."""
        usk = own.get("user_signing")
        if usk is None:
            raise kf.invalid_signature("No user-signing key to sign other users' keys with")
        target = (await self.store.get_cross_signing_keys([target_user])).get(target_user, {}).get("master")
        if target is None or kf.cross_signing_public_key(target) != key_id:
            raise not_found(f"{target_user} has no master key {key_id}")
        _check_same_key(obj, target)
        usk_public = kf.cross_signing_public_key(usk)
        sig_key_id = f"ed25519:{usk_public}"
        sig = ((obj.get("signatures") or {}).get(signer) or {}).get(sig_key_id)
        if not isinstance(sig, str):
            raise kf.invalid_signature(f"Missing signature by the user-signing key {sig_key_id}")
        kf.verify_signature(_with_signature(target, signer, sig_key_id, sig), signer, sig_key_id, usk_public)
        return [SignatureRow(signer, sig_key_id, target_user, key_id, sig)], (target_user, None, signer)

    # --- what /keys/query shows ------------------------------------------------------------------
    async def keys_for_query(self, viewer: str, user_ids: Iterable[str]) -> tuple[dict, dict, dict]:
        """(master_keys, self_signing_keys, user_signing_keys) of these users as ``viewer`` may see
        them: uploaded signatures merged in, the user-signing key only for the viewer."""
        user_ids = list(user_ids)
        keys = await self.store.get_cross_signing_keys(user_ids)
        sigs = await self.store.get_signatures(keys.keys())
        masters, ssks, usks = {}, {}, {}
        for user_id, by_type in keys.items():
            if "master" in by_type:
                master = by_type["master"]
                public = kf.cross_signing_public_key(master)
                visible = [s for s in sigs if s.target_user_id == user_id and s.target_key_id == public
                           and s.signer_user_id in (user_id, viewer)]
                masters[user_id] = merge_signatures(master, visible)
            if "self_signing" in by_type:
                ssks[user_id] = by_type["self_signing"]
            if user_id == viewer and "user_signing" in by_type:
                usks[user_id] = by_type["user_signing"]
        return masters, ssks, usks

    async def device_signatures(self, user_ids: Iterable[str]) -> dict[tuple[str, str], list[SignatureRow]]:
        """Uploaded signatures on devices, by (user, device), that everyone may see: those the
        device's owner made."""
        out: dict[tuple[str, str], list[SignatureRow]] = {}
        for s in await self.store.get_signatures(user_ids):
            if s.signer_user_id == s.target_user_id:
                out.setdefault((s.target_user_id, s.target_key_id), []).append(s)
        return out


def merge_signatures(obj: dict, rows: Iterable[SignatureRow]) -> dict:
    """A copy of a key object with uploaded signatures added to its own."""
    rows = list(rows)
    if not rows:
        return obj
    out = copy.deepcopy(obj)
    sigs = out.setdefault("signatures", {})
    for r in rows:
        sigs.setdefault(r.signer_user_id, {})[r.signer_key_id] = r.signature
    return out


def _check_same_key(uploaded: dict, stored: dict) -> None:
    """cross_signing.yaml: "The signed JSON object must match the key previously uploaded or
    retrieved for the given key ID, with the exception of the signatures property"."""
    if kf.strip_for_compare(uploaded) != kf.strip_for_compare(stored):
        raise kf.invalid_signature("The signed object does not match the stored key")


def _new_signatures(uploaded: dict, stored: dict, user_id: str) -> dict[str, str]:
    up = (uploaded.get("signatures") or {}).get(user_id) or {}
    old = (stored.get("signatures") or {}).get(user_id) or {}
    new = {k: v for k, v in up.items() if old.get(k) != v}
    if not new or not all(isinstance(v, str) for v in new.values()):
        raise kf.invalid_signature("No new signature by the user")
    return new


def _with_signature(stored: dict, user_id: str, key_id: str, sig: str) -> dict:
    """The stored object carrying exactly the one signature to check."""
    return {**kf.strip_for_compare(stored), "signatures": {user_id: {key_id: sig}}}
