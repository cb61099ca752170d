"""ed25519 signing keys, JSON signatures and event signatures.

Sources: appendices.md "Signing JSON", "Signing Details", "Checking for a Signature";
server-server-api.md "Adding hashes and signatures to outgoing events", "Validating hashes and
signatures on received events". Keys are ``signedjson`` key objects (PyNaCl keys carrying ``alg``
and ``version``). Pure functions; the only I/O is the explicit key-file helpers.
"""
from __future__ import annotations

import binascii
import hashlib
import os
import secrets
import string
import sys

import nacl.exceptions
import nacl.signing
from signedjson.key import (
    decode_signing_key_base64,
    decode_verify_key_base64,
    encode_signing_key_base64,
    encode_verify_key_base64,
)
from signedjson.key import generate_signing_key as _generate
from unpaddedbase64 import decode_base64, encode_base64

from .canonical_json import encode_canonical_json, encode_integral_json, integralise_floats
from .hashing import add_hashes
from .redaction import redact
from .room_versions import EventFormat, RoomVersion

SigningKey = nacl.signing.SigningKey
VerifyKey = nacl.signing.VerifyKey

ED25519 = "ed25519"


class SignatureError(ValueError):
    """A required signature is missing, malformed, or does not verify."""


# --- keys ---------------------------------------------------------------------------------

def generate_signing_key(version: str | None = None) -> SigningKey:
    """A new ed25519 signing key; ``version`` defaults to ``"a_"`` + 4 random letters."""
    if version is None:
        version = "a_" + "".join(secrets.choice(string.ascii_letters) for _ in range(4))
    return _generate(version)


def key_id(key: SigningKey) -> str:
    """The signing key identifier, e.g. ``"ed25519:a_AbCd"`` (appendices.md "Signing Details").

    Interned: it is a key of every event's ``signatures`` the server signs, and one string object
    serves them all (issue 9, memory)."""
    return sys.intern(f"{key.alg}:{key.version}")


def verify_key_base64(key: SigningKey) -> str:
    """The public half of ``key`` as unpadded base64, as published in ``/_matrix/key/v2/server``."""
    return encode_verify_key_base64(key.verify_key)


def decode_verify_key(key_id: str, base64_key: str) -> VerifyKey:
    """A verify key object from ``"ed25519:<version>"`` and its unpadded base64 bytes.

    Raises ValueError for an unsupported algorithm or malformed key.
    """
    alg, sep, version = key_id.partition(":")
    if not sep or not version:
        raise ValueError(f"Malformed key ID {key_id!r}")
    if alg != ED25519:
        raise ValueError(f"Unsupported signing algorithm {alg!r}")
    try:
        return decode_verify_key_base64(alg, version, base64_key)
    except (binascii.Error, ValueError, TypeError, nacl.exceptions.CryptoError) as e:
        raise ValueError(f"Malformed verify key for {key_id}: {e}") from None


def read_signing_keys(path: str | os.PathLike) -> list[SigningKey]:
    """Signing keys from a file of ``"ed25519 <version> <base64 seed>"`` lines (Synapse's format).

    Blank lines are skipped. Raises ValueError for a malformed line.
    """
    keys = []
    with open(path, encoding="utf-8") as f:
        for lineno, line in enumerate(f, 1):
            parts = line.split()
            if not parts:
                continue
            if len(parts) != 3:
                raise ValueError(f"{path}:{lineno}: expected '<alg> <version> <base64 seed>'")
            alg, version, seed = parts
            if alg != ED25519:
                raise ValueError(f"{path}:{lineno}: unsupported algorithm {alg!r}")
            try:
                keys.append(decode_signing_key_base64(alg, version, seed))
            except (binascii.Error, ValueError, nacl.exceptions.CryptoError) as e:
                raise ValueError(f"{path}:{lineno}: malformed key: {e}") from None
    return keys


def write_signing_key(path: str | os.PathLike, key: SigningKey) -> None:
    """Write ``key`` to ``path`` as one ``"ed25519 <version> <base64 seed>"`` line, mode 0600."""
    line = f"{key.alg} {key.version} {encode_signing_key_base64(key)}\n"
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w", encoding="utf-8") as f:
        f.write(line)


# --- JSON signatures ----------------------------------------------------------------------

def _signable_bytes(obj: dict) -> bytes:
    """appendices.md "Signing Details": canonical JSON without ``signatures`` and ``unsigned``."""
    return encode_canonical_json({k: v for k, v in obj.items()
                                  if k not in ("signatures", "unsigned")})


def sign_json(obj: dict, server_name: str, key: SigningKey) -> dict:
    """A copy of ``obj`` with this server's signature added; other signatures are kept."""
    signature = key.sign(_signable_bytes(obj)).signature
    out = dict(obj)
    signatures = {name: dict(sigs) for name, sigs in (obj.get("signatures") or {}).items()}
    signatures.setdefault(server_name, {})[key_id(key)] = encode_base64(signature)
    out["signatures"] = signatures
    return out


def verify_json(obj: dict, server_name: str, key_id: str, verify_key: VerifyKey) -> None:
    """Check ``obj`` carries a valid signature by ``server_name`` with ``key_id``.

    appendices.md "Checking for a Signature". Raises :class:`SignatureError` if the signature is
    missing, not base64, or does not verify.
    """
    signatures = obj.get("signatures")
    if not isinstance(signatures, dict) or not isinstance(signatures.get(server_name), dict):
        raise SignatureError(f"No signatures from {server_name}")
    sig_b64 = signatures[server_name].get(key_id)
    if sig_b64 is None:
        raise SignatureError(f"No signature from {server_name} with key {key_id}")
    if not isinstance(sig_b64, str):
        raise SignatureError(f"Signature from {server_name} {key_id} is not a string")
    try:
        sig = decode_base64(sig_b64)
    except (binascii.Error, ValueError):
        raise SignatureError(f"Signature from {server_name} {key_id} is not base64") from None
    try:
        message = _signable_bytes(obj)
    except ValueError as e:
        raise SignatureError(f"Cannot encode signed object: {e}") from None
    try:
        verify_key.verify(message, sig)
    except (nacl.exceptions.BadSignatureError, nacl.exceptions.ValueError,
            nacl.exceptions.TypeError):
        raise SignatureError(f"Invalid signature from {server_name} with key {key_id}") from None


# --- event signatures ---------------------------------------------------------------------

def sign_event(pdu: dict, room_version: RoomVersion, server_name: str, key: SigningKey) -> dict:
    """The full event with its content hash (added if absent) and this server's signature.

    server-server-api.md "Adding hashes and signatures to outgoing events": the signature covers
    the redacted event, so it stays checkable after redaction. Existing signatures are kept.
    """
    hashes = pdu.get("hashes")
    if not isinstance(hashes, dict) or "sha256" not in hashes:
        pdu = add_hashes(pdu)
    signed_redacted = sign_json(redact(pdu, room_version), server_name, key)
    out = dict(pdu)
    out["signatures"] = signed_redacted["signatures"]
    return out


def sign_new_event(pdu: dict, room_version: RoomVersion, server_name: str,
                   key: SigningKey) -> tuple[dict, str, int]:
    """:func:`sign_event` for a new event of ours, with its event ID and its size, each canonical
    encoding made once: ``(signed pdu, event ID, length of its canonical JSON)``.

    The bytes signed (the redacted event without ``signatures``/``unsigned``, appendices.md
    "Signing Details") are exactly the bytes of the reference hash (server-server-api.md
    "Calculating the reference hash for an event"), so the event ID comes from the same encoding;
    and a key added to a JSON object adds ``,"key":value`` to its length wherever it sorts, so
    the size follows from the encodings already made. ``pdu`` must hold no ``hashes``,
    ``signatures`` or ``unsigned`` yet (otherwise the general functions are used)."""
    from .hashing import compute_event_id

    if any(k in pdu for k in ("hashes", "signatures", "unsigned")) or not pdu:
        signed = sign_event(pdu, room_version, server_name, key)
        return signed, compute_event_id(signed, room_version), len(encode_canonical_json(signed))
    pdu = integralise_floats(pdu)  # once: the encodings below are of this pdu or parts of it
    content_bytes = encode_integral_json(pdu)
    hashes = {"sha256": encode_base64(hashlib.sha256(content_bytes).digest())}
    hashed = dict(pdu, hashes=hashes)
    reference_bytes = encode_integral_json(redact(hashed, room_version, share_values=True))
    signatures = {server_name: {key_id(key): encode_base64(key.sign(reference_bytes).signature)}}
    signed = dict(hashed, signatures=signatures)
    if room_version.event_format == EventFormat.V1:
        event_id = pdu["event_id"]
    else:
        event_id = "$" + encode_base64(hashlib.sha256(reference_bytes).digest(),
                                       urlsafe=room_version.event_format != EventFormat.V2)
    size = (len(content_bytes) + len(',"hashes":') + len(encode_integral_json(hashes))
            + len(',"signatures":') + len(encode_integral_json(signatures)))
    return signed, event_id, size


def verify_event_signature(pdu: dict, room_version: RoomVersion, server_name: str, key_id: str,
                           verify_key: VerifyKey) -> None:
    """Check ``server_name``'s signature on the redacted form of ``pdu``.

    server-server-api.md "Validating hashes and signatures on received events": works for both the
    full and an already-redacted copy. Raises :class:`SignatureError`.
    """
    verify_json(redact(pdu, room_version, share_values=True), server_name, key_id, verify_key)


def signature_key_ids(obj: dict, server_name: str) -> list[str]:
    """The ed25519 key IDs ``server_name`` signed ``obj`` with (unknown algorithms dropped,
    appendices.md "Checking for a Signature", step 2)."""
    sigs = obj.get("signatures")
    if not isinstance(sigs, dict) or not isinstance(sigs.get(server_name), dict):
        return []
    return [k for k in sigs[server_name] if isinstance(k, str) and k.startswith(ED25519 + ":")]


__all__ = [
    "SignatureError", "SigningKey", "VerifyKey", "generate_signing_key", "key_id",
    "verify_key_base64", "decode_verify_key", "read_signing_keys", "write_signing_key",
    "sign_json", "verify_json", "sign_event", "verify_event_signature", "signature_key_ids",
]

