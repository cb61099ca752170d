"""HTTP pushers: what is POSTed to a push gateway, how, and one pusher's delivery loop.

Spec: push-gateway-api.md ("Homeserver behaviour": retry with exponential backoff; the
``event_id_only`` format) and data/api/push-gateway/push_notifier.yaml (the ``notification``
object, ``rejected`` pushkeys), client-server-api/modules/push.md ("Actions": tweaks; "Push
Rules": never notify the sender) and pusher.yaml (``data`` minus ``url`` goes to the gateway).

* The payload builders (:func:`tweaks_of`, :func:`priority_of`, :func:`device_entry`,
  :func:`event_notification`, :func:`badge_notification`, :func:`rejected_pushkeys`) are pure.
* :class:`PushGatewayClient` POSTs JSON to gateway URLs, refusing addresses outside
  ``ip_range_blacklist``/``ip_range_whitelist`` as federation does (a pusher URL is chosen by a
  client, so it must not reach internal services; homeserver/http/outbound.py).
* :class:`HttpPusher` delivers one pusher's notifications in stream order, records its progress
  (homeserver/storage/push_store.py), backs off on failure and is removed when the gateway
  rejects its pushkey. :class:`~homeserver.push.pusher_pool.PusherPool` owns and wakes them.
"""
from __future__ import annotations

import json
import logging
from typing import TYPE_CHECKING, Any, Mapping

from twisted.internet import defer

from homeserver.http.outbound import CheckedEndpointFactory
from homeserver.protocol.events import Event
from homeserver.storage.push_store import DeliveryState, PendingPush

if TYPE_CHECKING:
    from .pusher_pool import PusherPool

logger = logging.getLogger(__name__)

EVENT_ID_ONLY = "event_id_only"
REQUEST_TIMEOUT_S = 30.0


# --- the payload (pure) ---------------------------------------------------------------------------

def tweaks_of(actions: list) -> dict:
    """The ``set_tweak`` actions as a dict (push.md "Actions"): a ``highlight`` tweak without a
    value means true; other tweaks without a value are left out."""
    tweaks: dict[str, Any] = {}
    for action in actions:
        if not isinstance(action, dict) or not isinstance(action.get("set_tweak"), str):
            continue
        name = action["set_tweak"]
        if "value" in action:
            tweaks[name] = action["value"]
        elif name == "highlight":
            tweaks[name] = True
    return tweaks


def priority_of(event_type: str, tweaks: Mapping[str, Any]) -> str:
    """push_notifier.yaml ``prio``: "high" for what alerts the user (a highlight or a sound) and
    for encrypted events (the server cannot tell what they say), else "low"."""
    if tweaks.get("highlight") or tweaks.get("sound") or event_type == "m.room.encrypted":
        return "high"
    return "low"


def device_entry(pusher: Mapping[str, Any], tweaks: Mapping[str, Any]) -> dict:
    """One ``devices`` entry: app_id, pushkey, pushkey_ts (seconds), the pusher's ``data`` minus
    ``url`` (pusher.yaml), tweaks."""
    data = pusher.get("data") if isinstance(pusher.get("data"), dict) else {}
    return {
        "app_id": pusher["app_id"],
        "pushkey": pusher["pushkey"],
        "pushkey_ts": int(pusher.get("created_ts") or 0) // 1000,
        "data": {k: v for k, v in data.items() if k != "url"},
        "tweaks": dict(tweaks),
    }


def _format_of(pusher: Mapping[str, Any]) -> str | None:
    data = pusher.get("data")
    return data.get("format") if isinstance(data, dict) else None


def event_notification(event: Event, user_id: str, actions: list, pusher: Mapping[str, Any], unread: int, *,
                       sender_display_name: str | None = None, room_name: str | None = None,
                       room_alias: str | None = None) -> dict:
    """The ``/notify`` body for ``event`` notifying ``user_id`` through ``pusher``.

    push_notifier.yaml: counts of zero are omitted (``missed_calls`` is not tracked);
    ``user_is_target`` only for membership events; with ``format: event_id_only`` only
    event_id, room_id, counts and devices (push-gateway-api.md) — plus ``prio``, which costs
    nothing and lets the gateway pick the delivery class."""
    tweaks = tweaks_of(actions)
    notification: dict[str, Any] = {
        "event_id": event.event_id,
        "room_id": event.room_id,
        "prio": priority_of(event.type, tweaks),
        "counts": {"unread": unread} if unread > 0 else {},
        "devices": [device_entry(pusher, tweaks)],
    }
    if _format_of(pusher) == EVENT_ID_ONLY:
        return {"notification": notification}
    notification["type"] = event.type
    notification["sender"] = event.sender
    if sender_display_name:
        notification["sender_display_name"] = sender_display_name
    if room_name:
        notification["room_name"] = room_name
    if room_alias:
        notification["room_alias"] = room_alias
    if event.type == "m.room.member":
        notification["user_is_target"] = event.state_key == user_id
    if isinstance(event.content, dict) and event.content:
        notification["content"] = event.content
    return {"notification": notification}


def badge_notification(pusher: Mapping[str, Any], unread: int) -> dict:
    """A counts-only ``/notify`` body (push_notifier.yaml: "update the number of unread
    notifications"; no event fields). ``unread`` is sent even when 0: clearing the badge is the
    point of this request."""
    return {"notification": {"counts": {"unread": unread}, "devices": [device_entry(pusher, {})]}}


def rejected_pushkeys(body: Any) -> list[str]:
    """push_notifier.yaml 200 response: the ``rejected`` pushkeys (malformed answers: none)."""
    rejected = body.get("rejected") if isinstance(body, dict) else None
    if not isinstance(rejected, list):
        return []
    return [k for k in rejected if isinstance(k, str)]


# --- the HTTP client ------------------------------------------------------------------------------

class GatewayUnreachable(Exception):
    """No HTTP answer: DNS, refused or blocked connection, TLS failure, timeout."""


class PushGatewayClient:
    def __init__(self, reactor, ip_allowed):
        self.reactor = reactor
        self._ip_allowed = ip_allowed
        self._pool = None
        self._agent = None

    def _get_agent(self):
        """The agent, built on the first push: treq and twisted.web.client import pyOpenSSL, which
        a server without pushers need not load (issue 9, memory)."""
        if self._agent is None:
            from twisted.web.client import Agent, HTTPConnectionPool
            self._pool = HTTPConnectionPool(self.reactor, persistent=True)
            self._pool.maxPersistentPerHost = 10
            self._pool.retryAutomatically = False
            self._agent = Agent.usingEndpointFactory(
                self.reactor, CheckedEndpointFactory(self.reactor, self._ip_allowed), pool=self._pool)
        return self._agent

    async def post_json(self, url: str, body: dict) -> tuple[int, Any]:
        """POST ``body``; returns (status, parsed JSON or None). Raises GatewayUnreachable."""
        import treq
        data = json.dumps(body, ensure_ascii=False).encode("utf-8")
        try:
            response = await treq.request("POST", url, data=data, agent=self._get_agent(), timeout=REQUEST_TIMEOUT_S,
                                          headers={b"Content-Type": [b"application/json"]})
            raw = await treq.content(response)
        except Exception as e:
            raise GatewayUnreachable(f"{type(e).__name__}: {e}") from e
        try:
            parsed = json.loads(raw) if raw else None
        except ValueError:
            parsed = None
        return response.code, parsed

    async def close(self) -> None:
        await self._pool.closeCachedConnections()


# --- one pusher's delivery ------------------------------------------------------------------------

_DELIVERED, _FAILED, _REMOVED = "delivered", "failed", "removed"


class HttpPusher:
    """Delivers one pusher's notifications, oldest first, one request at a time.

    :meth:`kick` says there may be something new (``badge``: the unread count may have changed).
    Progress is stored after every delivered event, so a restart resumes after the last one
    (a crash between the gateway's answer and that write repeats one event, which gateways
    de-duplicate by ``event_id``). A failed request is retried after ``initial_backoff_ms``,
    doubling up to ``max_backoff_ms``; an event still failing after ``give_up_after_ms`` is
    skipped. A 4xx answer (other than 408/429) will not improve on retry: that event is skipped.
    """

    def __init__(self, pool: "PusherPool", pusher: dict):
        self.pool = pool
        self.pusher = pusher
        self.key = (pusher["user_id"], pusher["app_id"], pusher["pushkey"])
        self.stopped = False
        self._state: DeliveryState | None = None
        self._wanted = False
        self._badge_wanted = False
        self._running = False
        self._timer = None
        self._last_badge: int | None = None

    @property
    def user_id(self) -> str:
        return self.key[0]

    def kick(self, badge: bool = False) -> None:
        self._wanted = True
        self._badge_wanted = self._badge_wanted or badge
        if self._running or self._timer is not None or self.stopped:
            return
        self._running = True
        defer.ensureDeferred(self._run()).addErrback(
            lambda f: logger.error("pusher %s failed: %s", self.key, f.getTraceback()))

    def stop(self) -> None:
        self.stopped = True
        if self._timer is not None and self._timer.active():
            self._timer.cancel()
        self._timer = None

    async def _run(self) -> None:
        try:
            while self._wanted and not self.stopped and self._timer is None:
                self._wanted = False
                await self._process()
        finally:
            self._running = False

    async def _process(self) -> None:
        pool = self.pool
        if self._state is None:
            self._state = await pool.store.get_delivery_state(*self.key)
        state = self._state
        now = pool.hs.clock_ms()
        if state.retry_at is not None and state.retry_at > now:
            self._schedule(state.retry_at - now)
            return
        while not self.stopped:
            pending = await pool.store.get_pending_pushes(
                self.user_id, state.last_stream_ordering,
                None if state.stored else int(self.pusher.get("created_ts") or 0), pool.batch_size)
            for push in pending:
                outcome = await self._deliver(push)
                if outcome == _REMOVED or self.stopped:
                    return
                if outcome == _FAILED:
                    if not await self._failed(push.stream_ordering - 1):
                        return
                    logger.warning("pusher %s: giving up on %s", self.key, push.event_id)
                await self._advance(push.stream_ordering)
            if len(pending) < pool.batch_size:
                break
        if self._badge_wanted and not self.stopped:
            outcome = await self._send_badge()
            if outcome == _FAILED and await self._failed(None):
                self._badge_wanted = False  # failing for too long: the next event carries the count

    async def _advance(self, stream_ordering: int) -> None:
        s = self._state
        assert s is not None
        s.last_stream_ordering = max(s.last_stream_ordering, stream_ordering)
        s.last_success_ts = self.pool.hs.clock_ms()
        s.failure_count, s.failing_since, s.retry_at = 0, None, None
        await self.pool.store.set_delivery_state(s)

    async def _failed(self, resume_after: int | None) -> bool:
        """Record a failure and schedule the retry; True when it has failed for too long (skip).
        ``resume_after``: the stream position before the failed event (None for a badge update,
        which is only retried in memory while the pusher has no stored progress)."""
        s = self._state
        assert s is not None
        pool = self.pool
        now = pool.hs.clock_ms()
        s.failing_since = s.failing_since or now
        if now - s.failing_since >= pool.give_up_after_ms:
            return True
        s.failure_count += 1
        delay = min(pool.initial_backoff_ms * 2 ** min(s.failure_count - 1, 30), pool.max_backoff_ms)
        s.retry_at = now + delay
        if resume_after is not None and not s.stored:
            s.last_stream_ordering = max(s.last_stream_ordering, resume_after)
        if s.stored or resume_after is not None:
            await pool.store.set_delivery_state(s)
        logger.info("pusher %s: attempt %d failed, retrying in %d ms", self.key, s.failure_count, delay)
        self._schedule(delay)
        return False

    def _schedule(self, delay_ms: int) -> None:
        if self._timer is not None or self.stopped:
            return

        def fire():
            self._timer = None
            self.kick()
        self._wanted = True
        self._timer = self.pool.hs.reactor.callLater(delay_ms / 1000.0, fire)

    async def _deliver(self, push: PendingPush) -> str:
        pool = self.pool
        event = await pool.events.get_event(push.event_id)
        if event is None or await pool.is_redacted(event):
            return _DELIVERED  # gone or redacted since: nothing worth alerting about
        unread = await pool.store.get_unread_count(self.user_id)
        body = event_notification(event, self.user_id, push.actions, self.pusher, unread,
                                  **await pool.room_details(event))
        outcome = await self._post(body, push.event_id)
        if outcome == _DELIVERED:
            self._last_badge = unread
        return outcome

    async def _send_badge(self) -> str:
        unread = await self.pool.store.get_unread_count(self.user_id)
        if unread == self._last_badge:
            self._badge_wanted = False
            return _DELIVERED
        outcome = await self._post(badge_notification(self.pusher, unread), "badge")
        if outcome == _DELIVERED:
            self._badge_wanted = False
            self._last_badge = unread
            s = self._state
            if s is not None and (s.failure_count or s.retry_at is not None):
                s.failure_count, s.failing_since, s.retry_at = 0, None, None
                if s.stored:
                    await self.pool.store.set_delivery_state(s)
        return outcome

    async def _post(self, body: dict, what: str) -> str:
        url = self.pusher["data"].get("url") if isinstance(self.pusher.get("data"), dict) else None
        if not isinstance(url, str):
            return _DELIVERED
        try:
            code, answer = await self.pool.client.post_json(url, body)
        except GatewayUnreachable as e:
            logger.info("pusher %s: %s unreachable for %s: %s", self.key, url, what, e)
            return _FAILED
        if 200 <= code < 300:
            if self.key[2] in rejected_pushkeys(answer):
                logger.info("pusher %s: pushkey rejected by the gateway; removing the pusher", self.key)
                await self.pool.remove_pusher(self.key)
                return _REMOVED
            return _DELIVERED
        if 400 <= code < 500 and code not in (408, 429):
            logger.warning("pusher %s: gateway refused %s with %d; skipping it", self.key, what, code)
            return _DELIVERED
        logger.info("pusher %s: gateway answered %d for %s", self.key, code, what)
        return _FAILED
