"""GET /.well-known/matrix/support (client-server-api "Server Discovery", support.yaml)."""
from __future__ import annotations

from homeserver.http.errors import not_found


def support_body(config) -> dict | None:
    """The support.yaml body from ``support_contacts`` / ``support_page``; None when neither is
    configured ("At least one of contacts or support_page is required")."""
    contacts = []
    for c in getattr(config, "support_contacts", ()):
        entry = {"role": c.role}
        if c.matrix_id is not None:
            entry["matrix_id"] = c.matrix_id
        if c.email_address is not None:
            entry["email_address"] = c.email_address
        contacts.append(entry)
    page = getattr(config, "support_page", None)
    if not contacts and page is None:
        return None
    body: dict = {}
    if contacts:
        body["contacts"] = contacts
    if page is not None:
        body["support_page"] = page
    return body


def register_routes(hs, router) -> None:
    body = support_body(hs.config)

    async def support(request):
        """GET /.well-known/matrix/support: the configured contacts and support page; 404
        M_NOT_FOUND when none are configured ("No server support information available")."""
        if body is None:
            raise not_found("No server support information is configured")
        return 200, body

    router.add("GET", "/.well-known/matrix/support", support, "client")
