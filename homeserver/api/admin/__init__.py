"""Synapse-compatible admin endpoints under ``/_synapse/admin`` (served with the client resource)."""
