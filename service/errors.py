"""Client-facing errors: every refusal is JSON ``{"error", "reason", "field"}``, written here only.

``reason`` is a short stable tag (also the ``reason`` label of ``gan_request_errors_total``);
``field`` names the offending request field, or is null when the whole body is at fault. The same
body leaves through a Starlette response (routes), a raw ASGI send (middlewares: API key, time
limit, admission) or raw HTTP/1.1 bytes (the connection guard and the supervisor, which answer
before or without an ASGI app).
"""

from __future__ import annotations

import http
import json
from collections.abc import Awaitable, Callable, MutableMapping, Sequence
from typing import Any

from starlette.responses import Response

Headers = Sequence[tuple[bytes, bytes]]
Send = Callable[[MutableMapping[str, Any]], Awaitable[None]]


def error_body(message: str, reason: str, field: str | None = None) -> dict[str, object]:
    return {"error": message, "reason": reason, "field": field}


def error_json(message: str, reason: str, field: str | None = None) -> bytes:
    return _dumps(error_body(message, reason, field)).encode()


class ApiError(Exception):
    def __init__(
        self,
        status: int,
        reason: str,
        message: str,
        field: str | None = None,
        headers: dict[str, str] | None = None,
    ) -> None:
        super().__init__(message)
        self.status = status
        self.reason = reason
        self.message = message
        self.field = field
        self.headers = headers or {}

    def body(self) -> dict[str, object]:
        return error_body(self.message, self.reason, self.field)


def bad_request(reason: str, message: str, field: str | None = None) -> ApiError:
    return ApiError(400, reason, message, field)


def invalid_field(field: str, message: str) -> ApiError:
    return ApiError(400, "invalid_field", message, field)


def unknown_model(name: str, served: list[str]) -> ApiError:
    shown = repr(name) if len(name) <= 100 else f"{name[:100]!r}... ({len(name)} characters)"
    return ApiError(
        404, "unknown_model", f"unknown model {shown}; served: {', '.join(served)}", "model"
    )


def too_large(reason: str, message: str, field: str | None = None) -> ApiError:
    return ApiError(413, reason, message, field)


INTERNAL_ERROR = ApiError(500, "internal", "internal error; the server log has the details")


def _dumps(body: object) -> str:
    # allow_nan=False: NaN/Infinity are not JSON; emitting them would break every client, so a
    # non-finite number that slips through is a 500 (internal), never an invalid answer.
    return json.dumps(body, separators=(",", ":"), allow_nan=False)


def json_response(
    body: object, status: int = 200, headers: dict[str, str] | None = None
) -> Response:
    return Response(
        _dumps(body), status_code=status, media_type="application/json", headers=headers
    )


def error_response(error: ApiError) -> Response:
    return json_response(error.body(), error.status, error.headers or None)


async def send_error(send: Send, error: ApiError, extra: Headers = ()) -> None:
    """The error as a complete raw ASGI answer (for middlewares, which have no Response)."""
    body = _dumps(error.body()).encode()
    headers = [
        (b"content-type", b"application/json"),
        (b"content-length", str(len(body)).encode()),
        *((k.lower().encode(), v.encode()) for k, v in error.headers.items()),
        *extra,
    ]
    await send({"type": "http.response.start", "status": error.status, "headers": headers})
    await send({"type": "http.response.body", "body": body})


def error_http_bytes(error: ApiError) -> bytes:
    """The error as a whole HTTP/1.1 answer that closes the connection (no ASGI app involved)."""
    body = _dumps(error.body()).encode()
    phrase = http.HTTPStatus(error.status).phrase
    lines = [
        f"HTTP/1.1 {error.status} {phrase}",
        "content-type: application/json",
        f"content-length: {len(body)}",
        "connection: close",
        *(f"{k.lower()}: {v}" for k, v in error.headers.items()),
    ]
    return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1") + body
