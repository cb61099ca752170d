"""``GET /_matrix/client/versions`` (client-server-api, "API standards: GET /versions")."""
from __future__ import annotations

# The spec versions whose client API uzel implements. v1.13-v1.19 are checked release by release
# in tests/integration/test_spec_v113_v119.py; the OAuth 2.0 API (v1.15+) is optional and absent
# (GET /auth_metadata answers 404 M_UNRECOGNIZED, as "Authentication API discovery" allows).
SUPPORTED_VERSIONS = ["r0.6.1", "v1.1", "v1.2", "v1.3", "v1.4", "v1.5", "v1.6", "v1.7", "v1.8", "v1.9",
                      "v1.10", "v1.11", "v1.12", "v1.13", "v1.14", "v1.15", "v1.16", "v1.17", "v1.18",
                      "v1.19"]
UNSTABLE_FEATURES: dict[str, bool] = {}


def register_routes(hs, router) -> None:
    async def versions(request):
        return 200, {"versions": SUPPORTED_VERSIONS, "unstable_features": UNSTABLE_FEATURES}

    router.add("GET", "/_matrix/client/versions", versions, "client")
