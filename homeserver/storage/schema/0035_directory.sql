-- Room aliases, the published room directory and the user directory
-- (client-server-api "Room aliases", "Published room directory", "User Directory";
-- homeserver/storage/directory_store.py). A room's directory visibility is rooms.is_public.

-- Aliases hosted by this server. creator: the user who made the mapping (may delete it).
CREATE TABLE room_aliases (
    room_alias TEXT PRIMARY KEY,
    room_id TEXT NOT NULL,
    creator TEXT NOT NULL,
    created_ts BIGINT NOT NULL
);
CREATE INDEX room_aliases_room ON room_aliases (room_id);

-- Rooms an application service published in the directory of one of its third-party networks
-- (application-service-api "Published room directories"); listed for third_party_instance_id.
CREATE TABLE appservice_room_list (
    appservice_id TEXT NOT NULL,
    network_id TEXT NOT NULL,
    room_id TEXT NOT NULL,
    PRIMARY KEY (appservice_id, network_id, room_id)
);
CREATE INDEX appservice_room_list_room ON appservice_room_list (room_id);

-- What the directory shows of each room, derived from its current state.
--   state_group     the room's current state group when the row was computed: a row whose group
--                   differs from rooms.current_state_group is stale and is recomputed before use
--   allowed_room_ids  JSON list: the m.room_membership rooms of a restricted join rule
--   search_text     lower-cased name, topic and canonical alias for the generic search filter
CREATE TABLE room_stats (
    room_id TEXT PRIMARY KEY,
    state_group BIGINT,
    room_version TEXT,
    name TEXT,
    topic TEXT,
    canonical_alias TEXT,
    avatar_url TEXT,
    join_rule TEXT,
    history_visibility TEXT,
    guest_access TEXT,
    room_type TEXT,
    encryption TEXT,
    allowed_room_ids TEXT,
    joined_members BIGINT NOT NULL,
    search_text TEXT NOT NULL
);
CREATE INDEX room_stats_members ON room_stats (joined_members, room_id);

-- Display name and avatar of every user seen joining a room (from their m.room.member events),
-- searched by POST /user_directory/search. search_text: lower-cased user ID and display name.
CREATE TABLE user_directory (
    user_id TEXT PRIMARY KEY,
    display_name TEXT,
    avatar_url TEXT,
    search_text TEXT NOT NULL
);
