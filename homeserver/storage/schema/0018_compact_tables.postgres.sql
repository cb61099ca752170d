-- The SQLite variant also rebuilds tables without their extra rowid b-trees; PostgreSQL only
-- drops the index that is a prefix of events_room_topological.
DROP INDEX events_room_depth;
