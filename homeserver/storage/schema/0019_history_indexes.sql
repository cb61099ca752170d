-- A user's member events in a room, in stream order: history visibility's "joined at some point
-- after the event" (RoomExtrasStore.get_member_event_streams, read with every /messages page)
-- read every timeline event of the room through events_room_stream without it. Partial: only
-- member events are indexed, so other sends pay nothing.
CREATE INDEX events_room_members ON events (room_id, state_key, stream_ordering) WHERE type = 'm.room.member';
