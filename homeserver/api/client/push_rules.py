"""Push rules (client-server-api/modules/push.md "Push Rules: API", pushrules.yaml)."""
from __future__ import annotations

from homeserver.accounts.auth import AuthService
from homeserver.client.push_service import PushRulesService
from homeserver.http.errors import bad_json, missing_param


def register_routes(hs, router) -> None:
    auth = hs.get(AuthService)
    rules = hs.get(PushRulesService)

    async def get_all(request):
        """GET /_matrix/client/v3/pushrules/: ``{"global": ruleset}``."""
        requester = await auth.get_requester(request)
        return 200, {"global": await rules.get_ruleset(requester.user_id)}

    async def get_global(request):
        """GET /_matrix/client/v3/pushrules/global/: the global ruleset."""
        requester = await auth.get_requester(request)
        return 200, await rules.get_ruleset(requester.user_id)

    async def get_rule(request, kind, ruleId):
        """GET /_matrix/client/v3/pushrules/global/{kind}/{ruleId}: 404 M_NOT_FOUND if absent."""
        requester = await auth.get_requester(request)
        return 200, await rules.get_rule(requester.user_id, kind, ruleId)

    async def put_rule(request, kind, ruleId):
        """PUT /_matrix/client/v3/pushrules/global/{kind}/{ruleId}[?before=|after=]: create or
        replace a user rule; IDs starting with "." (server-default) are refused."""
        requester = await auth.get_requester(request)
        body = request.json()
        await rules.put_rule(requester.user_id, kind, ruleId, body,
                             before=request.arg("before"), after=request.arg("after"))
        return 200, {}

    async def delete_rule(request, kind, ruleId):
        """DELETE /_matrix/client/v3/pushrules/global/{kind}/{ruleId}: 404 if the user has none."""
        requester = await auth.get_requester(request)
        await rules.delete_rule(requester.user_id, kind, ruleId)
        return 200, {}

    async def get_enabled(request, kind, ruleId):
        """GET /_matrix/client/v3/pushrules/global/{kind}/{ruleId}/enabled."""
        requester = await auth.get_requester(request)
        rule = await rules.get_rule(requester.user_id, kind, ruleId)
        return 200, {"enabled": rule["enabled"]}

    async def put_enabled(request, kind, ruleId):
        """PUT /_matrix/client/v3/pushrules/global/{kind}/{ruleId}/enabled: ``{"enabled": bool}``;
        works for server-default rules too."""
        requester = await auth.get_requester(request)
        body = request.json()
        if "enabled" not in body:
            raise missing_param("Missing 'enabled'")
        if not isinstance(body["enabled"], bool):
            raise bad_json("'enabled' must be a boolean")
        await rules.set_enabled(requester.user_id, kind, ruleId, body["enabled"])
        return 200, {}

    async def get_actions(request, kind, ruleId):
        """GET /_matrix/client/v3/pushrules/global/{kind}/{ruleId}/actions."""
        requester = await auth.get_requester(request)
        rule = await rules.get_rule(requester.user_id, kind, ruleId)
        return 200, {"actions": rule["actions"]}

    async def put_actions(request, kind, ruleId):
        """PUT /_matrix/client/v3/pushrules/global/{kind}/{ruleId}/actions: ``{"actions": [...]}``;
        works for server-default rules too."""
        requester = await auth.get_requester(request)
        body = request.json()
        if "actions" not in body:
            raise missing_param("Missing 'actions'")
        await rules.set_actions(requester.user_id, kind, ruleId, body["actions"])
        return 200, {}

    for path in ("/pushrules/", "/pushrules"):
        router.add_client("GET", path, get_all)
    for path in ("/pushrules/global/", "/pushrules/global"):
        router.add_client("GET", path, get_global)
    base = "/pushrules/global/{kind}/{ruleId}"
    router.add_client("GET", base, get_rule)
    router.add_client("PUT", base, put_rule)
    router.add_client("DELETE", base, delete_rule)
    router.add_client("GET", base + "/enabled", get_enabled)
    router.add_client("PUT", base + "/enabled", put_enabled)
    router.add_client("GET", base + "/actions", get_actions)
    router.add_client("PUT", base + "/actions", put_actions)
