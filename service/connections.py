"""The connection guard: bounded request heads, head time, and connections per worker.

uvicorn's httptools protocol, as BentoML runs it, has no limit on the size or number of a
request's header lines and no time limit on receiving them (measured, docs/reliability.md: a
100 MB header was parsed, in quadratic time, for 10 s of a worker's CPU before the API-key check
saw it; connections that sent nothing or dripped a byte a second were never closed, and with
``ulimit -n 1024`` 2,400 of them exhausted the descriptors: every fresh request failed, nothing
was logged). BentoML exposes none of uvicorn's knobs for this, and the key check or any ASGI
middleware runs only after the whole head has been parsed, so the limits live here, in the HTTP
protocol itself (a subclass of uvicorn's, installed for the worker by ``install``):

- a request head over ``GAN_MAX_HEADER_BYTES`` (request line and headers) or with more than
  ``GAN_MAX_HEADERS`` header lines: ``431`` JSON, connection closed, counted before any parsing
  work beyond the limit (the bytes are counted as they arrive);
- a head not complete ``GAN_HEADER_TIMEOUT_S`` after its first byte, or a new connection that
  sends nothing for that long: ``408`` JSON (or a silent close when nothing came), closed. Idle
  keep-alive connections keep uvicorn's own ``timeout_keep_alive`` (5 s under BentoML); slow
  bodies are the request time limit's (``limits.py``, 408);
- at most ``GAN_MAX_CONNECTIONS`` connections per worker (auto: the file-descriptor limit less a
  reserve for the worker's own files): past it, the oldest connection waiting for a request is
  closed to make room, or, when every one is busy, the new one gets ``503`` and is closed. Close
  to the limit (90%) a warning names the counts, once per 10 s.
"""

from __future__ import annotations

import asyncio
import logging
import os
import resource
import time
from dataclasses import dataclass
from typing import Any

from service.errors import ApiError, error_http_bytes, send_error
from service.settings import Settings

log = logging.getLogger("gan.connections")

# Descriptors a worker needs besides its connections: models, Prometheus files, pipes, logs.
FD_RESERVE = 128
MAX_AUTO_CONNECTIONS = 16384
WARN_FRACTION = 0.9
WARN_EVERY_S = 10.0

try:
    from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol
except ImportError:  # no httptools: uvicorn falls back to h11, which caps heads at 16 KiB itself
    HttpToolsProtocol = None  # type: ignore[assignment, misc]


@dataclass(frozen=True)
class ConnectionLimits:
    max_header_bytes: int
    max_headers: int
    header_timeout_s: float
    max_connections: int

    @classmethod
    def from_settings(cls, settings: Settings) -> ConnectionLimits:
        return cls(
            settings.max_header_bytes,
            settings.max_headers,
            settings.header_timeout_s,
            settings.max_connections or auto_max_connections(),
        )


def auto_max_connections() -> int:
    soft, _ = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft == resource.RLIM_INFINITY:
        return MAX_AUTO_CONNECTIONS
    return max(16, min(MAX_AUTO_CONNECTIONS, soft - FD_RESERVE))


def raise_fd_limit() -> tuple[int, int]:
    """Soft RLIMIT_NOFILE up to the hard one (many systems default to 1024 soft): the cheapest
    protection against running out. Returns (soft, hard) afterwards."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    target = hard if hard != resource.RLIM_INFINITY else max(soft, 65536)
    if soft != resource.RLIM_INFINITY and soft < target:
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))
            soft = target
        except (ValueError, OSError) as exc:
            log.warning("could not raise the file-descriptor limit %d -> %d: %s", soft, target, exc)
    return soft, hard


def _open_fds() -> int:
    try:
        return len(os.listdir("/proc/self/fd"))
    except OSError:
        return -1


class _Tracker:
    """The connections of this worker waiting for a request (oldest first): the ones to close
    when a new connection needs room."""

    def __init__(self) -> None:
        self.waiting: dict[Any, None] = {}
        self._warned_at: dict[str, float] = {}

    def wait(self, conn: Any) -> None:
        self.waiting.pop(conn, None)
        self.waiting[conn] = None

    def busy(self, conn: Any) -> None:
        self.waiting.pop(conn, None)

    def warn(self, open_conns: int, limit: int, action: str) -> None:
        """Once per WARN_EVERY_S for each kind of ``action``."""
        now = time.monotonic()
        if now - self._warned_at.get(action, -WARN_EVERY_S) < WARN_EVERY_S:
            return
        self._warned_at[action] = now
        soft, _ = resource.getrlimit(resource.RLIMIT_NOFILE)
        log.warning(
            "connections at %d of %d per worker (file descriptors: %d open, soft limit %s): %s",
            open_conns,
            limit,
            _open_fds(),
            "unlimited" if soft == resource.RLIM_INFINITY else soft,
            action,
        )


_TRACKER = _Tracker()
_LIMITS = ConnectionLimits.from_settings(Settings())


def _head_too_large(limits: ConnectionLimits) -> ApiError:
    return ApiError(
        431,
        "headers_too_large",
        f"request headers over the limit of {limits.max_header_bytes} bytes or "
        f"{limits.max_headers} lines",
        headers={"connection": "close"},
    )


def _refuser(error: ApiError) -> Any:
    async def app(scope: Any, receive: Any, send: Any) -> None:
        await send_error(send, error)

    return app


if HttpToolsProtocol is not None:

    class GuardedHttpToolsProtocol(HttpToolsProtocol):
        """uvicorn's httptools protocol with the limits of this module."""

        def __init__(self, *args: Any, **kwargs: Any) -> None:
            super().__init__(*args, **kwargs)
            self._limits = _LIMITS
            self._in_head = True  # waiting for (the rest of) a request line and headers
            self._head_bytes = 0  # bytes received for the current head
            self._head_size = 0  # request line and header bytes, as parsed
            self._head_lines = 0
            self._head_timer: asyncio.TimerHandle | None = None
            self._head_fresh = False  # the timer running is the idle connection's, not a head's

        # --- connection ---

        def connection_made(self, transport: Any) -> None:
            super().connection_made(transport)
            limit = self._limits.max_connections
            count = len(self.connections)
            if count > limit:
                victim = next(iter(_TRACKER.waiting), None)
                if victim is None:
                    _TRACKER.warn(count, limit, "every connection is busy: refusing new ones")
                    error = ApiError(
                        503,
                        "too_many_connections",
                        "too many connections to this server; retry shortly",
                        headers={"retry-after": "1"},
                    )
                    transport.write(error_http_bytes(error))
                    transport.close()
                    return
                _TRACKER.busy(victim)
                victim.transport.close()
                _TRACKER.warn(count, limit, "closing the oldest idle connections")
            elif count >= WARN_FRACTION * limit:
                _TRACKER.warn(count, limit, "close to the limit")
            _TRACKER.wait(self)
            self._arm_head_timer()
            self._head_fresh = True

        def connection_lost(self, exc: Exception | None) -> None:
            _TRACKER.busy(self)
            self._cancel_head_timer()
            super().connection_lost(exc)

        def data_received(self, data: bytes) -> None:
            if self._in_head:
                self._head_bytes += len(data)
            super().data_received(data)
            if not self._in_head or self._head_bytes == 0 or self.transport.is_closing():
                return
            # Still in the head after this chunk (a whole head in one chunk, the usual case,
            # never arms a timer): past the limit it can only be refused; else the clock runs
            # from its first byte. (A head that completed was counted line by line, in
            # on_headers_complete.)
            if self._head_bytes > self._limits.max_header_bytes:
                self._close_with(_head_too_large(self._limits))
            elif self._head_timer is None or self._head_fresh:
                self._head_fresh = False
                self._arm_head_timer()

        # --- parser callbacks ---

        def on_message_begin(self) -> None:
            super().on_message_begin()
            self._head_size = self._head_lines = 0

        def on_url(self, url: bytes) -> None:
            self._head_size += len(url)
            super().on_url(url)

        def on_header(self, name: bytes, value: bytes) -> None:
            self._head_size += len(name) + len(value) + 4
            self._head_lines += 1
            super().on_header(name, value)

        def on_headers_complete(self) -> None:
            self._in_head = False
            self._cancel_head_timer()
            _TRACKER.busy(self)
            limits = self._limits
            if self._head_size > limits.max_header_bytes or self._head_lines > limits.max_headers:
                app, self.app = self.app, _refuser(_head_too_large(limits))
                try:
                    super().on_headers_complete()
                finally:
                    self.app = app
                return
            super().on_headers_complete()

        def on_message_complete(self) -> None:
            super().on_message_complete()
            self._in_head = True
            self._head_bytes = 0

        def on_response_complete(self) -> None:
            super().on_response_complete()
            if not self.transport.is_closing():
                _TRACKER.wait(self)

        # --- the head's time limit ---

        def _arm_head_timer(self) -> None:
            self._cancel_head_timer()
            self._head_timer = self.loop.call_later(
                self._limits.header_timeout_s, self._head_timed_out
            )

        def _cancel_head_timer(self) -> None:
            if self._head_timer is not None:
                self._head_timer.cancel()
                self._head_timer = None

        def _head_timed_out(self) -> None:
            self._head_timer = None
            if not self._in_head or self.transport.is_closing():
                return
            if self._head_bytes == 0:
                self.transport.close()  # a connection that never sent anything
                return
            self._close_with(
                ApiError(
                    408,
                    "request_timeout",
                    f"the request headers did not arrive within "
                    f"{self._limits.header_timeout_s:g} s",
                    headers={"connection": "close"},
                )
            )

        def _close_with(self, error: ApiError) -> None:
            self._cancel_head_timer()
            self.transport.write(error_http_bytes(error))
            self.transport.close()


def use_limits(limits: ConnectionLimits) -> None:
    """The limits new connections of this process get."""
    global _LIMITS
    _LIMITS = limits


def install(settings: Settings) -> bool:
    """Make uvicorn's default ("auto") HTTP protocol the guarded one, for this process. Call
    before uvicorn loads its config (``bentoml serve``'s worker: at import of service.py)."""
    if HttpToolsProtocol is None:
        log.warning("httptools missing: header size, header time and connection limits are off")
        return False
    from uvicorn import config

    soft, hard = raise_fd_limit()
    limits = ConnectionLimits.from_settings(settings)
    use_limits(limits)
    config.HTTP_PROTOCOLS["auto"] = f"{__name__}:GuardedHttpToolsProtocol"
    log.debug("connection guard: %s; file descriptors: soft %s, hard %s", limits, soft, hard)
    return True
