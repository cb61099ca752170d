"""Application service endpoints (found automatically: each module defines register_routes)."""
