"""User-Interactive Authentication (client-server-api "User-Interactive Authentication API").

An endpoint calls :meth:`UiaService.check` with its flows. Without a finished flow the call
raises :class:`UiaRequired`, a 401 whose body is ``{flows, params, session, completed}`` (plus
``errcode``/``error`` when the last stage attempt failed — "If the homeserver decides that an
attempt on a stage was unsuccessful…"). With a finished flow it returns the session, whose
``clientdict`` merges the request bodies seen in the session (so a client may send ``password``
or ``new_password`` only on its first request).

Sessions live in memory (a restart only costs the client one more round trip); each is bound to
the method and path that created it and to the authenticated user, if any, and expires after
:data:`SESSION_LIFETIME_MS`.

Stage checkers are registered by name in ``UiaService.checkers``: ``async fn(session, auth_dict,
requester) -> None``, raising :class:`StageFailed` on a bad attempt. Built in: ``m.login.dummy``
and ``m.login.password``; the registration service adds ``m.login.registration_token``.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Awaitable, Callable

from homeserver.http.errors import MatrixError, bad_json

from . import tokens

SESSION_LIFETIME_MS = 60 * 60 * 1000

DUMMY = "m.login.dummy"
PASSWORD = "m.login.password"
REGISTRATION_TOKEN = "m.login.registration_token"


class StageFailed(Exception):
    """A stage attempt failed; the client may try again. Becomes errcode/error in the 401 body."""

    def __init__(self, errcode: str, msg: str):
        super().__init__(msg)
        self.errcode = errcode
        self.msg = msg


class UiaRequired(MatrixError):
    """The 401 of the UIA protocol; its body carries no errcode unless a stage just failed."""

    def __init__(self, body: dict, failure: StageFailed | None = None):
        super().__init__(401, failure.errcode if failure else "", failure.msg if failure else "")
        self.body = body
        self.failure = failure

    def to_json(self) -> dict:
        body = dict(self.body)
        if self.failure is not None:
            body["errcode"] = self.failure.errcode
            body["error"] = self.failure.msg
        return body


@dataclass
class UiaSession:
    session_id: str
    method: str
    path: str
    user_id: str | None
    created_ms: int
    completed: list[str] = field(default_factory=list)
    clientdict: dict = field(default_factory=dict)
    # Stage results for the endpoint (e.g. "registration_token"); and callbacks run if the
    # session expires unused (e.g. giving a reserved registration token back).
    data: dict = field(default_factory=dict)
    on_expire: list[Callable[[], Any]] = field(default_factory=list)


StageChecker = Callable[[UiaSession, dict, Any], Awaitable[None]]


class UiaService:
    def __init__(self, hs):
        self.hs = hs
        self._sessions: dict[str, UiaSession] = {}
        self.checkers: dict[str, StageChecker] = {DUMMY: self._check_dummy, PASSWORD: self._check_password}

    async def check(self, request, body: dict, flows: list[list[str]], *, requester=None,
                    params: dict | None = None) -> UiaSession:
        """Run one UIA round for ``request``; returns the session once a flow is complete."""
        self._expire_old()
        auth = body.get("auth")
        if auth is not None and not isinstance(auth, dict):
            raise bad_json("'auth' must be an object")
        clientdict = {k: v for k, v in body.items() if k != "auth"}
        user_id = requester.user_id if requester is not None else None
        session_id = auth.get("session") if auth else None
        if session_id is not None:
            if not isinstance(session_id, str):
                raise bad_json("'auth.session' must be a string")
            session = self._sessions.get(session_id)
            if session is None:
                raise MatrixError(400, "M_UNKNOWN", f"Unknown session ID: {session_id}")
            if (session.method, session.path) != (request.method, request.path) or session.user_id != user_id:
                raise MatrixError(403, "M_FORBIDDEN",
                                  "Requested operation has changed during the UI authentication session.")
            session.clientdict.update(clientdict)
        else:
            session = UiaSession(tokens.random_string(24), request.method, request.path, user_id,
                                 self.hs.clock_ms(), clientdict=clientdict)
            self._sessions[session.session_id] = session

        failure = None
        stage = auth.get("type") if auth else None
        if stage is not None and stage not in session.completed:
            if not isinstance(stage, str) or not any(stage in flow for flow in flows) \
                    or stage not in self.checkers:
                failure = StageFailed("M_UNRECOGNIZED", f"Authentication type {stage!r} is not offered here")
            else:
                try:
                    await self.checkers[stage](session, auth, requester)
                    session.completed.append(stage)
                except StageFailed as e:
                    failure = e
        if failure is None and any(all(s in session.completed for s in flow) for flow in flows):
            return session
        raise UiaRequired({"flows": [{"stages": list(flow)} for flow in flows], "params": params or {},
                           "session": session.session_id, "completed": list(session.completed)}, failure)

    def finish(self, session: UiaSession) -> None:
        """The endpoint acted: the session cannot be replayed."""
        self._sessions.pop(session.session_id, None)

    def _expire_old(self) -> None:
        cutoff = self.hs.clock_ms() - SESSION_LIFETIME_MS
        for sid in [s.session_id for s in self._sessions.values() if s.created_ms < cutoff]:
            session = self._sessions.pop(sid)
            for fn in session.on_expire:
                try:
                    fn()
                except Exception:  # a failing cleanup must not fail the request that triggered it
                    pass

    # --- built-in stages ---------------------------------------------------------------------
    async def _check_dummy(self, session: UiaSession, auth: dict, requester) -> None:
        """client-server-api "Dummy Auth": always succeeds."""

    async def _check_password(self, session: UiaSession, auth: dict, requester) -> None:
        """client-server-api "Password-based": the identified user must be the requester and
        the password theirs; a wrong one fails with M_FORBIDDEN."""
        from .login import LoginService
        login = self.hs.get(LoginService)
        try:
            user_id = await login.check_password_auth(auth)
        except MatrixError as e:
            if e.code != 403:  # malformed dicts (400) and rate limits (429) are not stage failures
                raise
            raise StageFailed(e.errcode, e.msg)
        if requester is None or user_id != requester.user_id:
            raise StageFailed("M_FORBIDDEN", "Invalid password")
