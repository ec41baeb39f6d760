"""Client-facing errors: every refusal is JSON ``{"error", "reason", "field"}`` with a 4xx status.

``reason`` is a short stable tag (also the ``reason`` label of ``gan_request_errors_total``);
``field`` names the offending request field, or is null when the whole body is at fault.
"""

from __future__ import annotations

import json

from starlette.responses import Response


class ApiError(Exception):
    def __init__(self, status: int, reason: str, message: str, field: str | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.reason = reason
        self.message = message
        self.field = field

    def body(self) -> dict[str, object]:
        return {"error": self.message, "reason": self.reason, "field": self.field}


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


def json_response(body: object, status: int = 200) -> Response:
    return Response(
        json.dumps(body, separators=(",", ":")), status_code=status, media_type="application/json"
    )


def error_response(error: ApiError) -> Response:
    return json_response(error.body(), error.status)


INTERNAL_ERROR_BODY = {
    "error": "internal error; the server log has the details",
    "reason": "internal",
    "field": None,
}
