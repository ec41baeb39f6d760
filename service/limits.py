"""Per-request time limit (``GAN_REQUEST_TIMEOUT_S``) for the service's own routes.

An ASGI middleware around the Starlette app (``app.add_middleware`` in service.py): the whole
request, body upload included, runs under ``asyncio.timeout``. When the time is up the handler
is cancelled (its rows still queued in a micro-batcher are skipped, a running ONNX Runtime call
finishes and its result is dropped) and the client gets JSON like every other refusal:

- ``503`` ``{"reason": "timeout"}`` with ``Retry-After: 1`` when the server was the slow party
  (queueing or computing): the server is overloaded, retrying later or elsewhere is right;
- ``408`` ``{"reason": "request_timeout"}`` when the server was still waiting for the client
  to send its body (a slow or stalled upload), so a slow client cannot hold a request forever.

BentoML's own ``traffic.timeout`` (service.py keeps it above this one) answers 504 with its own
body format; it only fires if this one did not.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable

from service.asgi import ASGIApp, Message, Receive, Scope, Send
from service.errors import ApiError, send_error

log = logging.getLogger("gan.limits")

OnTimeout = Callable[[Scope, str], None]


class RequestTimeoutMiddleware:
    def __init__(self, app: ASGIApp, timeout_s: float, on_timeout: OnTimeout | None = None) -> None:
        if not timeout_s > 0:
            raise ValueError(f"timeout_s must be > 0, got {timeout_s}")
        self.app = app
        self.timeout_s = timeout_s
        self.on_timeout = on_timeout

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        receiving = False  # the app has started reading the body ...
        body_complete = False  # ... and has (or has not) got all of it
        response_started = False

        async def receive_tracked() -> Message:
            nonlocal receiving, body_complete
            receiving = True
            message = await receive()
            if message["type"] == "http.request" and not message.get("more_body", False):
                body_complete = True
            return message

        async def send_tracked(message: Message) -> None:
            nonlocal response_started
            if message["type"] == "http.response.start":
                response_started = True
            await send(message)

        try:
            # asyncio.timeout, not wait_for: no extra task per request (the hot path's CPU)
            async with asyncio.timeout(self.timeout_s):
                await self.app(scope, receive_tracked, send_tracked)
        except TimeoutError:
            # The client's fault only if the app was reading the body and it never all came.
            reason = "request_timeout" if receiving and not body_complete else "timeout"
            if self.on_timeout is not None:
                self.on_timeout(scope, reason)
            if response_started:
                # Half an answer went out; nothing valid can follow. Closing the connection
                # (by returning) is the only honest signal left.
                log.warning(
                    "%s timed out mid-response after %g s", scope.get("path"), self.timeout_s
                )
                return
            await _send_timeout(send, reason, self.timeout_s)


async def _send_timeout(send: Send, reason: str, timeout_s: float) -> None:
    if reason == "request_timeout":
        error = ApiError(
            408,
            reason,
            f"the request body did not arrive within {timeout_s:g} s",
            headers={"connection": "close"},
        )
    else:
        error = ApiError(
            503,
            reason,
            f"not answered within {timeout_s:g} s (server busy); retry later",
            headers={"retry-after": "1"},
        )
    await send_error(send, error)
