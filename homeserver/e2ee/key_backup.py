"""Server-side key backups (end_to_end_encryption.md "Server-side key backups"; key_backup.yaml).

A user has numbered backup versions; keys may only be written to the newest live one
(M_WRONG_ROOM_KEYS_VERSION with ``current_version`` otherwise). The server never decrypts
``session_data``; it only keeps the best copy of each session's key (:func:`should_replace`).
"""
from __future__ import annotations

from homeserver.http.errors import MatrixError, bad_json, invalid_param, missing_param, not_found
from homeserver.storage.e2ee_store import BackupVersion, E2eeStore, RoomKey, RoomKeysWrite

MAX_ETAG_LEN = 64


def should_replace(existing: RoomKey, new: RoomKey) -> bool:
    """"Server-side key backups": keep the verified key; then the lower first_message_index;
    then the lower forwarded_count. Ties keep the existing key."""
    if existing.is_verified != new.is_verified:
        return new.is_verified
    if existing.first_message_index != new.first_message_index:
        return new.first_message_index < existing.first_message_index
    return new.forwarded_count < existing.forwarded_count


def parse_key_data(obj: object, where: str) -> RoomKey:
    """definitions/key_backup_data.yaml: all four fields required."""
    if not isinstance(obj, dict):
        raise bad_json(f"{where} must be an object")
    fmi, fc, verified, data = (obj.get("first_message_index"), obj.get("forwarded_count"), obj.get("is_verified"),
                               obj.get("session_data"))
    for name, value in (("first_message_index", fmi), ("forwarded_count", fc)):
        if not isinstance(value, int) or isinstance(value, bool) or value < 0:
            raise bad_json(f"{where}.{name} must be a non-negative integer")
    if not isinstance(verified, bool):
        raise bad_json(f"{where}.is_verified must be a boolean")
    if not isinstance(data, dict):
        raise bad_json(f"{where}.session_data must be an object")
    return RoomKey(fmi, fc, verified, data)


def parse_room_sessions(obj: object, room_id: str) -> list[tuple[str, str, RoomKey]]:
    """definitions/room_key_backup.yaml: ``{"sessions": {session_id: key data}}``."""
    if not isinstance(obj, dict) or not isinstance(obj.get("sessions"), dict):
        raise bad_json(f"room {room_id}: expected {{'sessions': {{...}}}}")
    return [(room_id, sid, parse_key_data(data, f"sessions.{sid}")) for sid, data in obj["sessions"].items()]


def parse_version(version: str | None) -> int:
    """Backup versions are positive integers here; anything else names no backup (404)."""
    if version is None:
        raise missing_param("Missing 'version'")
    if not version.isdigit() or len(version) > 18 or int(version) < 1:
        raise not_found("Unknown backup version")
    return int(version)


def version_json(v: BackupVersion) -> dict:
    return {"algorithm": v.algorithm, "auth_data": v.auth_data, "count": v.count, "etag": str(v.etag),
            "version": str(v.version)}


class KeyBackupService:
    def __init__(self, hs):
        self.hs = hs
        self.store = hs.get(E2eeStore)

    # --- versions ----------------------------------------------------------------------------
    async def create_version(self, user_id: str, body: dict) -> str:
        algorithm, auth_data = _algorithm_and_auth_data(body)
        return str(await self.store.create_backup_version(user_id, algorithm, auth_data))

    async def get_version(self, user_id: str, version: str | None) -> dict:
        """The newest live version (version None) or the given one; 404 otherwise."""
        v = await self.store.get_backup_version(user_id, None if version is None else parse_version(version))
        if v is None:
            raise not_found("No current backup version" if version is None else "Unknown backup version")
        return version_json(v)

    async def update_version(self, user_id: str, version: str, body: dict) -> None:
        """key_backup.yaml PUT: only auth_data changes; algorithm and a body version must match."""
        number = parse_version(version)
        algorithm, auth_data = _algorithm_and_auth_data(body)
        if "version" in body and body["version"] != version:
            raise invalid_param("'version' in the body does not match the path")
        current = await self.store.get_backup_version(user_id, number)
        if current is None:
            raise not_found("Unknown backup version")
        if algorithm != current.algorithm:
            raise invalid_param("Algorithm does not match")
        if not await self.store.update_backup_auth_data(user_id, number, auth_data):
            raise not_found("Unknown backup version")

    async def delete_version(self, user_id: str, version: str | None) -> None:
        """key_backup.yaml DELETE: also succeeds for a version deleted before; no version: the
        current one."""
        if version is None:
            current = await self.store.get_backup_version(user_id, None)
            if current is None:
                raise not_found("No current backup version")
            number = current.version
        else:
            number = parse_version(version)
        if await self.store.delete_backup_version(user_id, number) == "not_found":
            raise not_found("Unknown backup version")

    # --- keys ------------------------------------------------------------------------------------
    async def put_keys(self, user_id: str, version: str | None, keys: list[tuple[str, str, RoomKey]]) -> dict:
        """Store keys into the current version; ``{"etag", "count"}``."""
        number = parse_version(version)
        result = await self.store.put_room_keys(user_id, number, keys, should_replace)
        return _write_result(result)

    async def get_keys(self, user_id: str, version: str | None, room_id: str | None = None,
                       session_id: str | None = None) -> dict:
        number = parse_version(version)
        found = await self.store.get_room_keys(user_id, number, room_id, session_id)
        if found is None:
            raise not_found("Unknown backup version")
        if session_id is not None:
            key = found.get(room_id, {}).get(session_id)
            if key is None:
                raise not_found("No room_keys found")
            return key.to_json()
        rooms = {r: {"sessions": {s: k.to_json() for s, k in sessions.items()}} for r, sessions in found.items()}
        if room_id is not None:
            return rooms.get(room_id, {"sessions": {}})
        return {"rooms": rooms}

    async def delete_keys(self, user_id: str, version: str | None, room_id: str | None = None,
                          session_id: str | None = None) -> dict:
        number = parse_version(version)
        return _write_result(await self.store.delete_room_keys(user_id, number, room_id, session_id))


def _algorithm_and_auth_data(body: dict) -> tuple[str, dict]:
    algorithm = body.get("algorithm")
    auth_data = body.get("auth_data")
    if algorithm is None or auth_data is None:
        raise missing_param("'algorithm' and 'auth_data' are required")
    if not isinstance(algorithm, str) or not algorithm:
        raise bad_json("'algorithm' must be a string")
    if not isinstance(auth_data, dict):
        raise bad_json("'auth_data' must be an object")
    return algorithm, auth_data


def _write_result(result: RoomKeysWrite) -> dict:
    if result.status == "not_found":
        raise not_found("Unknown backup version")
    if result.status == "wrong_version":
        extra = {"current_version": str(result.current_version)} if result.current_version is not None else {}
        raise MatrixError(403, "M_WRONG_ROOM_KEYS_VERSION", "Wrong backup version.", **extra)
    return {"etag": str(result.etag), "count": result.count}
