"""Shapes and signatures of end-to-end encryption keys: pure checks, no I/O.

Sources: client-server-api/modules/end_to_end_encryption.md "Key algorithms", "Device keys",
"Uploading keys", "Cross-signing"; data/api/client-server/definitions/device_keys.yaml,
one_time_keys.yaml, cross_signing_key.yaml; appendices.md "Signing JSON". Every check raises a
400 :class:`MatrixError` (M_BAD_JSON for a malformed object, M_INVALID_PARAM for a key that is not
the requester's, M_INVALID_SIGNATURE for a missing or wrong signature).
"""
from __future__ import annotations

import binascii

from unpaddedbase64 import decode_base64

from homeserver.http.errors import MatrixError, bad_json, invalid_param
from homeserver.protocol import signing

ED25519 = "ed25519"
CROSS_SIGNING_USAGES = ("master", "self_signing", "user_signing")
MAX_KEY_ID_LENGTH = 255


def invalid_signature(msg: str) -> MatrixError:
    return MatrixError(400, "M_INVALID_SIGNATURE", msg)


def decode_ed25519(key_b64: object) -> signing.VerifyKey:
    """An ed25519 public key from unpadded base64 ("Key algorithms": 32 bytes)."""
    if not isinstance(key_b64, str):
        raise bad_json("ed25519 keys must be strings")
    try:
        raw = decode_base64(key_b64)
    except (binascii.Error, ValueError):
        raise bad_json(f"ed25519 key {key_b64!r} is not unpadded base64") from None
    if len(raw) != 32:
        raise bad_json(f"ed25519 key {key_b64!r} is not 32 bytes")
    return signing.VerifyKey(raw)


def verify_signature(obj: dict, user_id: str, key_id: str, public_key: str | signing.VerifyKey) -> None:
    """``obj`` carries a valid signature by ``user_id`` with ``key_id`` ("ed25519:<id>");
    appendices.md "Checking for a Signature"."""
    vk = decode_ed25519(public_key) if isinstance(public_key, str) else public_key
    try:
        signing.verify_json(obj, user_id, key_id, vk)
    except signing.SignatureError as e:
        raise invalid_signature(str(e)) from None


def _check_signatures_shape(obj: dict, what: str, required: bool = True) -> None:
    sigs = obj.get("signatures")
    if sigs is None and not required:
        return
    if not isinstance(sigs, dict) or not all(isinstance(u, str) and isinstance(m, dict)
                                             and all(isinstance(k, str) and isinstance(v, str) for k, v in m.items())
                                             for u, m in sigs.items()):
        raise bad_json(f"{what}: 'signatures' must map user IDs to objects of key ID to signature")


def validate_device_keys(obj: object, user_id: str, device_id: str) -> dict:
    """The device keys of /keys/upload (definitions/device_keys.yaml), checked to belong to this
    user and device and to be signed by the device's own ed25519 key ("Uploading keys": "must be
    signed by that key"). Returns them without ``unsigned``."""
    if not isinstance(obj, dict):
        raise bad_json("'device_keys' must be an object")
    if obj.get("user_id") != user_id:
        raise invalid_param("'device_keys.user_id' does not match the requesting user")
    if obj.get("device_id") != device_id:
        raise invalid_param("'device_keys.device_id' does not match the requesting device")
    algorithms = obj.get("algorithms")
    if not isinstance(algorithms, list) or not all(isinstance(a, str) for a in algorithms):
        raise bad_json("'device_keys.algorithms' must be a list of strings")
    keys = obj.get("keys")
    if not isinstance(keys, dict) or not all(isinstance(k, str) and isinstance(v, str) for k, v in keys.items()):
        raise bad_json("'device_keys.keys' must map key IDs to strings")
    for name in keys:
        alg, sep, key_device = name.partition(":")
        if not sep or not alg or key_device != device_id:
            raise bad_json(f"device key name {name!r} must be '<algorithm>:{device_id}'")
    ed_key = keys.get(f"{ED25519}:{device_id}")
    if ed_key is None:
        raise bad_json(f"'device_keys.keys' must contain 'ed25519:{device_id}'")
    vk = decode_ed25519(ed_key)
    _check_signatures_shape(obj, "device_keys")
    verify_signature(obj, user_id, f"{ED25519}:{device_id}", vk)
    return {k: v for k, v in obj.items() if k != "unsigned"}


def device_signing_key(device_keys: dict | None, device_id: str) -> signing.VerifyKey | None:
    """The device's ed25519 key from its stored device keys."""
    if not device_keys:
        return None
    key = (device_keys.get("keys") or {}).get(f"{ED25519}:{device_id}")
    return decode_ed25519(key) if key is not None else None


def validate_one_time_keys(obj: object, field: str, user_id: str, device_id: str,
                           device_key: signing.VerifyKey | None, *, fallback: bool = False) -> list[tuple[str, str, object]]:
    """One-time or fallback keys of /keys/upload (definitions/one_time_keys.yaml) as
    (algorithm, key_id, key). Object keys ("KeyObject", e.g. ``signed_curve25519``) must be
    signed by the device's ed25519 key; plain string keys are only accepted for algorithms not
    named ``signed_*``. Fallback keys: at most one per algorithm (keys.yaml ``fallback_keys``)."""
    if not isinstance(obj, dict):
        raise bad_json(f"'{field}' must be an object")
    out: list[tuple[str, str, object]] = []
    seen_algs: set[str] = set()
    for name, key in obj.items():
        alg, sep, key_id = name.partition(":")
        if not sep or not alg or not key_id or len(name) > MAX_KEY_ID_LENGTH:
            raise bad_json(f"{field}: key name {name!r} must be '<algorithm>:<key_id>'")
        if fallback:
            if alg in seen_algs:
                raise bad_json(f"{field}: at most one key per algorithm")
            seen_algs.add(alg)
        if isinstance(key, str):
            if alg.startswith("signed_"):
                raise bad_json(f"{field}: {name} must be a signed key object")
        elif isinstance(key, dict):
            if not isinstance(key.get("key"), str):
                raise bad_json(f"{field}: {name} needs a string 'key'")
            _check_signatures_shape(key, f"{field}: {name}")
            if device_key is None:
                raise invalid_signature(f"{field}: no device keys to check the signature of {name} with; "
                                        "upload device_keys first")
            verify_signature(key, user_id, f"{ED25519}:{device_id}", device_key)
        else:
            raise bad_json(f"{field}: {name} must be a string or a key object")
        out.append((alg, key_id, key))
    return out


def validate_cross_signing_key(obj: object, user_id: str, usage: str) -> str:
    """A cross-signing key of /keys/device_signing/upload (definitions/cross_signing_key.yaml):
    this user's, with ``usage`` listed and exactly one ``ed25519:<public key>`` entry whose value
    is that public key. Returns the public key (unpadded base64)."""
    field = f"{usage}_key" if usage != "master" else "master_key"
    if not isinstance(obj, dict):
        raise bad_json(f"'{field}' must be an object")
    if obj.get("user_id") != user_id:
        raise invalid_param(f"'{field}.user_id' does not match the requesting user")
    usages = obj.get("usage")
    if not isinstance(usages, list) or not all(isinstance(u, str) for u in usages) or usage not in usages:
        raise bad_json(f"'{field}.usage' must be a list containing {usage!r}")
    keys = obj.get("keys")
    if not isinstance(keys, dict) or len(keys) != 1:
        raise bad_json(f"'{field}.keys' must hold exactly one key")
    ((name, value),) = keys.items()
    alg, sep, public = name.partition(":")
    if alg != ED25519 or not sep or value != public:
        raise bad_json(f"'{field}.keys' must be {{'ed25519:<public key>': '<public key>'}}")
    decode_ed25519(public)
    _check_signatures_shape(obj, field, required=False)
    return public


def cross_signing_public_key(key: dict) -> str:
    """The public key of a stored (already validated) cross-signing key."""
    ((name, _),) = key["keys"].items()
    return name.partition(":")[2]


def strip_for_compare(obj: dict) -> dict:
    """A key object without ``signatures`` and ``unsigned``: what signatures cover."""
    return {k: v for k, v in obj.items() if k not in ("signatures", "unsigned")}
