"""Federation behaviour behind the endpoints of federation/api/: inbound PDUs and transactions,
reads of rooms, membership handshakes, queries and EDUs."""
