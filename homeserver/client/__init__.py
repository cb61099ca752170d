"""Per-user client features: filters, account data and tags, push rules and pushers, profiles,
presence and VoIP (client-server-api modules)."""
