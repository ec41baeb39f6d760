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
import contextlib
import logging
import os
import threading
from collections.abc import Awaitable, Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import TypeVar

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


# --- expensive requests ------------------------------------------------------------------------
#
# Measured before (docs/reliability.md): 8 clients looping the largest /interpolate (126 WebP
# frames, ~0.4 s of CPU each) took /generate at c=1 from 718 to 86 req/s, and 40 such requests
# whose clients hung up at once still cost 4 CPU-seconds. So per worker at most
# GAN_HEAVY_CONCURRENCY expensive requests run at once (429 ``busy`` with Retry-After beyond:
# refusing is cheap, queueing would only move the wait), their CPU work runs in threads at a
# lower priority than the event loop's (``heavy_executor``), and a client that hangs up cancels
# its request's remaining work (``until_disconnected``).

# What "expensive" means: every latent walk; a grid of more than this many images; uploads of
# more than this many pixels in all (from their headers, before decoding).
GRID_HEAVY_N = 16
SCORE_HEAVY_PIXELS = 1 << 20
HEAVY_NICE = 10


class HeavyGate:
    """Admission of expensive requests, per worker (one event loop: no lock needed)."""

    def __init__(self, limit: int, on_refused: Callable[[str], None] | None = None) -> None:
        if limit < 1:
            raise ValueError(f"limit must be >= 1, got {limit}")
        self.limit = limit
        self.running = 0
        self.on_refused = on_refused

    @contextlib.contextmanager
    def admit(self, route: str, heavy: bool = True) -> Iterator[None]:
        if not heavy:
            yield
            return
        if self.running >= self.limit:
            if self.on_refused is not None:
                self.on_refused(route)
            raise ApiError(
                429,
                "busy",
                f"this server is already running {self.running} expensive request(s) "
                "(latent walks, large grids, large uploads); retry in a second",
                headers={"retry-after": "1"},
            )
        self.running += 1
        try:
            yield
        finally:
            self.running -= 1


def _lower_priority() -> None:
    # Per thread on Linux: the event loop's thread keeps its priority, so cheap requests are
    # served first while a core is busy with an expensive one.
    with contextlib.suppress(OSError, AttributeError):
        tid = threading.get_native_id()
        os.setpriority(
            os.PRIO_PROCESS, tid, min(19, os.getpriority(os.PRIO_PROCESS, tid) + HEAVY_NICE)
        )


def heavy_executor(threads: int, name: str = "heavy") -> ThreadPoolExecutor:
    """Threads for expensive CPU work, at a lower priority than the event loop."""
    return ThreadPoolExecutor(
        max_workers=threads, thread_name_prefix=name, initializer=_lower_priority
    )


T = TypeVar("T")


async def until_disconnected(receive: Receive, work: Awaitable[T]) -> T:
    """``work``, cancelled if the client hangs up first (``ClientGone``). Call once the body has
    been read: from then on the server's ``receive`` only ever answers ``http.disconnect``."""
    task = asyncio.ensure_future(work)

    async def gone() -> None:
        while (await receive())["type"] != "http.disconnect":
            pass

    watcher = asyncio.ensure_future(gone())
    try:
        done, _ = await asyncio.wait({task, watcher}, return_when=asyncio.FIRST_COMPLETED)
    except asyncio.CancelledError:
        task.cancel()
        raise
    finally:
        watcher.cancel()
    if task in done:
        return task.result()
    task.cancel()
    raise ClientGone()


class ClientGone(Exception):
    """The client disconnected before its answer was ready; its work was cancelled."""
