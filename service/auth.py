"""Optional API key: with ``GAN_API_KEY`` (or ``GAN_API_KEY_FILE``) set, every request needs it.

An ASGI middleware on the whole BentoML app (``GanService.add_asgi_middleware`` in service.py),
so it also covers BentoML's own routes (``/metrics``, ``/docs.json``, ``/``), not only ours.

- Open without a key: the health probes ``/livez``, ``/healthz``, ``/readyz``,
  ``/v2/health/live``, ``/v2/health/ready`` (kubelet and the
  Docker HEALTHCHECK cannot send one), and ``/metrics`` only when ``GAN_METRICS_PUBLIC=true``.
  Paths are compared exactly: ``/readyz/x`` or ``//generate`` need the key (fail closed).
- The key travels as ``Authorization: Bearer KEY`` or ``X-API-Key: KEY``.
- Comparison in constant time: both sides are hashed with SHA-256 and the digests compared with
  ``hmac.compare_digest``, against every configured key (no early exit), so neither the
  content, the length nor which key matched shows in the timing.
- A refusal is ``401`` JSON ``{"error", "reason": "unauthorized", "field": null}`` with
  ``WWW-Authenticate: Bearer``; it never echoes what was sent, and keys are never logged.
"""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Callable, Iterable

from service.asgi import ASGIApp, Receive, Scope, Send
from service.errors import ApiError, send_error

# BentoML's probes, and the Open Inference Protocol's (service/oip.py: KServe's probes).
HEALTH_PATHS = frozenset({"/livez", "/healthz", "/readyz", "/v2/health/live", "/v2/health/ready"})
METRICS_PATH = "/metrics"


def _digest(key: bytes) -> bytes:
    return hashlib.sha256(key).digest()


class ApiKeyChecker:
    """Holds only the SHA-256 digests of the keys; ``matches`` runs in constant time."""

    def __init__(self, keys: Iterable[str]) -> None:
        self._digests = tuple(_digest(k.encode("utf-8")) for k in keys)
        if not self._digests:
            raise ValueError("ApiKeyChecker needs at least one key")

    def matches(self, candidate: bytes | None) -> bool:
        # A missing key is compared too (as b""), so "no key" and "wrong key" cost the same.
        digest = _digest(candidate or b"")
        found = False
        for stored in self._digests:
            found |= hmac.compare_digest(digest, stored)
        return found and candidate is not None


def presented_key(headers: Iterable[tuple[bytes, bytes]]) -> bytes | None:
    """The key from ``Authorization: Bearer KEY`` or ``X-API-Key: KEY`` (raw ASGI headers)."""
    for name, value in headers:
        lowered = name.lower()
        if lowered == b"authorization":
            scheme, _, token = value.strip().partition(b" ")
            if scheme.lower() == b"bearer" and token.strip():
                return token.strip()
        elif lowered == b"x-api-key" and value.strip():
            return value.strip()
    return None


class ApiKeyMiddleware:
    """Pure ASGI (no body buffering, nothing per request beyond one header scan and a hash)."""

    def __init__(
        self,
        app: ASGIApp,
        keys: Iterable[str],
        open_paths: Iterable[str] = HEALTH_PATHS,
        on_refused: Callable[[str], None] | None = None,
    ) -> None:
        self.app = app
        self.checker = ApiKeyChecker(keys)
        self.open_paths = frozenset(open_paths)
        self.on_refused = on_refused

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] not in ("http", "websocket") or scope.get("path") in self.open_paths:
            await self.app(scope, receive, send)
            return
        key = presented_key(scope.get("headers") or ())
        if self.checker.matches(key):
            await self.app(scope, receive, send)
            return
        reason = "missing" if key is None else "invalid"
        if self.on_refused is not None:
            self.on_refused(reason)
        if scope["type"] == "websocket":
            await send({"type": "websocket.close", "code": 1008})
            return
        await _send_401(send, reason)


def open_paths(metrics_public: bool) -> frozenset[str]:
    return HEALTH_PATHS | {METRICS_PATH} if metrics_public else HEALTH_PATHS


async def _send_401(send: Send, reason: str) -> None:
    message = (
        "missing API key: send it as 'Authorization: Bearer KEY' or 'X-API-Key: KEY'"
        if reason == "missing"
        else "invalid API key"
    )
    error = ApiError(
        401, "unauthorized", message, headers={"www-authenticate": 'Bearer realm="gan-service"'}
    )
    await send_error(send, error)
