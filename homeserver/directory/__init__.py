"""Room aliases, the published room directory, space hierarchies, room summaries and the user
directory (client-server-api "Room aliases", "Published room directory", "Room Summaries",
"User Directory"; modules/spaces.md; modules/mutual_rooms.md)."""
