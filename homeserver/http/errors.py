"""Matrix error responses: ``{"errcode": ..., "error": ...}`` with the spec's HTTP status."""
from __future__ import annotations

from typing import Any


class MatrixError(Exception):
    def __init__(self, code: int, errcode: str, msg: str, **extra: Any):
        super().__init__(msg)
        self.code = code
        self.errcode = errcode
        self.msg = msg
        self.extra = extra
        self.headers: dict[str, str] = {}

    def to_json(self) -> dict:
        body = {"errcode": self.errcode, "error": self.msg}
        body.update(self.extra)
        return body


def bad_json(msg: str = "Content not JSON object of the expected shape") -> MatrixError:
    return MatrixError(400, "M_BAD_JSON", msg)


def not_json(msg: str = "Content not JSON.") -> MatrixError:
    return MatrixError(400, "M_NOT_JSON", msg)


def missing_param(msg: str) -> MatrixError:
    return MatrixError(400, "M_MISSING_PARAM", msg)


def invalid_param(msg: str) -> MatrixError:
    return MatrixError(400, "M_INVALID_PARAM", msg)


def forbidden(msg: str) -> MatrixError:
    return MatrixError(403, "M_FORBIDDEN", msg)


def not_found(msg: str = "Not found") -> MatrixError:
    return MatrixError(404, "M_NOT_FOUND", msg)


def unrecognized(code: int = 404, msg: str = "Unrecognized request") -> MatrixError:
    return MatrixError(code, "M_UNRECOGNIZED", msg)


def too_large(msg: str = "Request too large") -> MatrixError:
    return MatrixError(413, "M_TOO_LARGE", msg)


def limit_exceeded(retry_after_ms: int) -> MatrixError:
    err = MatrixError(429, "M_LIMIT_EXCEEDED", "Too Many Requests", retry_after_ms=retry_after_ms)
    err.headers["Retry-After"] = str(max(1, (retry_after_ms + 999) // 1000))
    return err


def missing_token(msg: str = "Missing access token") -> MatrixError:
    return MatrixError(401, "M_MISSING_TOKEN", msg)


def unknown_token(msg: str = "Unknown access token", soft_logout: bool = False) -> MatrixError:
    return MatrixError(401, "M_UNKNOWN_TOKEN", msg, soft_logout=soft_logout)


def unauthorized(msg: str) -> MatrixError:
    return MatrixError(401, "M_UNAUTHORIZED", msg)
