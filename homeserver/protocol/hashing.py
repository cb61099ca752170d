"""Content hashes, reference hashes, and the event and room IDs derived from them.

Sources: server-server-api.md "Calculating the content hash for an event", "Calculating the
reference hash for an event"; rooms/fragments/v4-event-ids.md (URL-safe event IDs), rooms/v3.md
(standard base64 event IDs), rooms/v12.md and appendices.md "Room IDs" (room ID = create event's ID
with "!" as sigil). Pure functions, no I/O.
"""
from __future__ import annotations

import binascii
import hashlib

from unpaddedbase64 import decode_base64, encode_base64

from .canonical_json import encode_canonical_json
from .redaction import redact
from .room_versions import EventFormat, RoomVersion

# server-server-api.md, "Calculating the content hash": these keys are not covered.
_NOT_IN_CONTENT_HASH = ("unsigned", "signatures", "hashes")


def compute_content_hash(pdu: dict) -> bytes:
    """SHA-256 over the canonical JSON of ``pdu`` without ``unsigned``, ``signatures`` and ``hashes``.

    server-server-api.md, "Calculating the content hash for an event". (Synapse additionally drops
    the never-sent internal keys ``age_ts``, ``outlier`` and ``destinations``; the spec does not,
    so neither do we.)
    """
    stripped = {k: v for k, v in pdu.items() if k not in _NOT_IN_CONTENT_HASH}
    return hashlib.sha256(encode_canonical_json(stripped)).digest()


def add_hashes(pdu: dict) -> dict:
    """A copy of ``pdu`` whose ``hashes.sha256`` is its content hash in unpadded base64."""
    out = dict(pdu)
    hashes = dict(pdu.get("hashes") or {})
    hashes["sha256"] = encode_base64(compute_content_hash(pdu))
    out["hashes"] = hashes
    return out


def check_content_hash(pdu: dict) -> bool:
    """Whether ``hashes.sha256`` matches the event's content hash.

    server-server-api.md, "Validating hashes and signatures on received events": a failure means
    the event must be processed in its redacted form. Missing or malformed hashes count as failure.
    """
    hashes = pdu.get("hashes")
    if not isinstance(hashes, dict):
        return False
    expected = hashes.get("sha256")
    if not isinstance(expected, str):
        return False
    try:
        expected_bytes = decode_base64(expected)
    except (binascii.Error, ValueError):
        return False
    return expected_bytes == compute_content_hash(pdu)


def compute_reference_hash(pdu: dict, room_version: RoomVersion) -> bytes:
    """SHA-256 of the redacted event without ``signatures`` and ``unsigned``.

    server-server-api.md, "Calculating the reference hash for an event".
    """
    redacted = redact(pdu, room_version, share_values=True)  # only encoded
    redacted.pop("signatures", None)
    redacted.pop("unsigned", None)
    return hashlib.sha256(encode_canonical_json(redacted)).digest()


def compute_event_id(pdu: dict, room_version: RoomVersion) -> str:
    """The event's ID as its room version defines it.

    * V1 (rooms v1–v2, rooms/fragments/v1-event-ids.md): carried in the event as ``event_id``.
    * V2 (room v3): "$" + standard unpadded base64 of the reference hash.
    * V3/V4 (v4+, rooms/fragments/v4-event-ids.md): "$" + URL-safe unpadded base64 of it.
    """
    fmt = room_version.event_format
    if fmt == EventFormat.V1:
        return pdu["event_id"]
    digest = compute_reference_hash(pdu, room_version)
    if fmt == EventFormat.V2:
        return "$" + encode_base64(digest)
    return "$" + encode_base64(digest, urlsafe=True)


def room_id_for_create_event(pdu: dict, room_version: RoomVersion) -> str:
    """The room ID a ``m.room.create`` event establishes.

    With ``room_id_from_create_event`` (v12; appendices.md "Room IDs") it is the create event's
    ID with "!" as the sigil: "!" + URL-safe unpadded base64 of the reference hash. Earlier versions
    carry it in the event's ``room_id``.
    """
    if room_version.room_id_from_create_event:
        return "!" + encode_base64(compute_reference_hash(pdu, room_version), urlsafe=True)
    return pdu["room_id"]
