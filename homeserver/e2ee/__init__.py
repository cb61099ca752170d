"""End-to-end encryption support: the server stores and relays keys, it never sees plaintext
(client-server-api/modules/end_to_end_encryption.md, send_to_device.md).

Services, each built once with ``hs.get(Class)``:

* :class:`homeserver.e2ee.device_lists.DeviceListService` — the device-list stream, "who shares a
  room with whom", ``device_lists.changed/left`` for /sync and /keys/changes; follows device
  creation, renaming and deletion through DeviceService hooks.
* :class:`homeserver.e2ee.remote_device_lists.RemoteDeviceListService` — cached device lists of
  remote users sharing a room with a local user, kept current from m.device_list_update and
  m.signing_key_update EDUs (resync with GET /user/devices on a gap).
* :class:`homeserver.e2ee.device_keys.DeviceKeysService` — /keys/upload, /keys/query,
  /keys/claim, one-time key counts and unused fallback key types for /sync.
* :class:`homeserver.e2ee.cross_signing.CrossSigningService` — /keys/device_signing/upload and
  /keys/signatures/upload, and the signatures each viewer may see.
* :class:`homeserver.e2ee.key_backup.KeyBackupService` — /room_keys/version and /room_keys/keys.
* :class:`homeserver.e2ee.to_device.ToDeviceService` — /sendToDevice and the per-device inbox.

Pure checks of key shapes and signatures are in :mod:`homeserver.e2ee.keys_format`.
"""
