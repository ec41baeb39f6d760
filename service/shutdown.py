"""Graceful shutdown: on SIGTERM, refuse new connections at once while in-flight requests finish.

What ``bentoml serve`` does by itself on SIGTERM (measured, tests/reliability/
test_rel_shutdown.py): its circus arbiter forwards SIGTERM to the worker and waits for it
(``graceful_timeout`` 86400 s); uvicorn in the worker stops accepting, lets every request in
flight complete (no time limit unless ``--timeout-graceful-shutdown``), runs the lifespan
shutdown (our batchers close), and exits 0. But the listening socket belongs to the arbiter
and stays open until the worker is gone, so a connection that arrives during the drain sits
unanswered in the kernel's backlog and is reset only when the drain ends: the client waits for
nothing and cannot tell whether its request ran.

So the worker chains a SIGTERM handler in front of uvicorn's that first calls
``shutdown(SHUT_RD)`` on the inherited listening socket(s). On Linux that takes the shared socket
out of the LISTEN state for every process holding it: new connections are refused at once
(ECONNREFUSED, which any client or load balancer can safely retry elsewhere), connections
already accepted carry on, and uvicorn's own drain runs unchanged.
"""

from __future__ import annotations

import logging
import os
import signal
import socket
import stat
import threading
from collections.abc import AsyncIterator, Callable, Iterable
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from types import FrameType
from typing import Any

log = logging.getLogger("gan.shutdown")

Lifespan = Callable[[Any], AbstractAsyncContextManager[Any]]


def listening_sockets() -> list[int]:
    """File descriptors of this process's listening TCP sockets."""
    found: list[int] = []
    try:
        fds = [int(name) for name in os.listdir("/proc/self/fd")]
    except OSError:
        return found
    for fd in fds:
        try:
            if not stat.S_ISSOCK(os.fstat(fd).st_mode):
                continue
            probe = socket.socket(fileno=os.dup(fd))
        except OSError:
            continue
        try:
            if (
                probe.family in (socket.AF_INET, socket.AF_INET6)
                and probe.type == socket.SOCK_STREAM
                and probe.getsockopt(socket.SOL_SOCKET, socket.SO_ACCEPTCONN)
            ):
                found.append(fd)
        except OSError:
            pass
        finally:
            probe.close()
    return found


def stop_listening(fds: Iterable[int] | None = None) -> int:
    """``shutdown(SHUT_RD)`` the listening TCP sockets ``fds`` (default: all of this process's);
    returns how many were stopped."""
    stopped = 0
    for fd in listening_sockets() if fds is None else fds:
        try:
            with socket.socket(fileno=os.dup(fd)) as sock:
                sock.shutdown(socket.SHUT_RD)
            stopped += 1
        except OSError as exc:
            log.warning("could not stop listening on fd %d: %s", fd, exc)
    return stopped


def refuse_new_connections_on_sigterm() -> bool:
    """Put ``stop_listening`` in front of the current SIGTERM handler (uvicorn's, when called
    from a lifespan). Main thread only; returns whether it was installed."""
    if threading.current_thread() is not threading.main_thread():
        return False
    previous = signal.getsignal(signal.SIGTERM)

    def handler(signum: int, frame: FrameType | None) -> None:
        stopped = stop_listening()
        log.info("SIGTERM: stopped listening (%d socket(s)); finishing requests in flight", stopped)
        if callable(previous):
            previous(signum, frame)
        elif previous == signal.SIG_DFL:
            signal.signal(signum, signal.SIG_DFL)
            signal.raise_signal(signum)

    signal.signal(signal.SIGTERM, handler)
    return True


def with_refusal_on_sigterm(lifespan: Lifespan) -> Lifespan:
    """Wrap a Starlette lifespan so the handler is installed at start-up, when uvicorn's own
    signal handlers are already in place."""

    @asynccontextmanager
    async def wrapped(app: Any) -> AsyncIterator[Any]:
        refuse_new_connections_on_sigterm()
        async with lifespan(app) as state:
            yield state

    return wrapped
