"""Rooms: the one event pipeline and the state of rooms.

* ``pipeline.RoomEventService`` — local sends (``create_and_send_event``) and remote events
  (``handle_remote_event``, ``handle_remote_outliers``) go through the same steps under a per-room
  lock (``locks.RoomLocks``): prev_events from the forward extremities, auth events from the state
  before the event, hash + signature, auth against the auth events and the state before (rejection)
  and the current state (403 for local events, soft failure for remote ones), state after, current
  state and extremities, one persist queue with group commit, then the notifier.
* ``state.RoomStateService`` — the in-memory current state of hot rooms (``RoomSnapshot``), the state
  at events and state resolution in a worker thread.
* ``creation.RoomCreationService`` — ``createRoom`` for room versions 1–12.

State storage (homeserver/storage/state_store.py): every event records the state group *before* it
and the one *after* it (the same group for messages and rejected events); groups are deltas over a
previous group with a full snapshot every 100 deltas. The current state is also kept as rows
(``current_state``, ``room_memberships``) for indexed queries.
"""
