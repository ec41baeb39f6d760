"""Worker supervision inside ``bentoml serve``: hung workers replaced, dead ones respawned and
forgotten, and a fast refusal while no worker can serve.

What BentoML 1.4.40 does by itself (measured, docs/reliability.md): its circus arbiter respawns a
worker that exits, except with ``BENTOML_CONTAINERIZED=true`` (set in every image ``bentoml
containerize`` makes), where a dead worker is never replaced while another lives; nothing notices
a worker that hangs (SIGSTOP, a blocked event loop): ``/readyz`` keeps answering 200 from the
other one; with every worker dead, the listening socket (the arbiter's) keeps accepting into its
backlog, so ``/readyz`` hangs until a new worker is up (10 s); and a dead worker's Prometheus
files stay, its gauges frozen at their last values.

So a thread in the arbiter (``install`` hooks BentoML's ``Arbiter.start``) supervises:

- every worker touches a heartbeat file from its event loop once a second (``start_heartbeat``,
  from the app's lifespan); one whose heartbeat is older than ``GAN_WORKER_HANG_S`` is SIGKILLed
  (a stopped process too), and circus starts a new one;
- respawn is on whatever ``BENTOML_CONTAINERIZED`` says;
- a worker that is gone: its heartbeat file and Prometheus gauges are removed, its counters and
  histograms folded into the archive files (``metrics.forget_dead_worker``);
- while no worker has a fresh heartbeat (all dead, hung, or still starting), the thread accepts
  connections itself and answers ``503`` JSON with ``Retry-After: 1`` at once, instead of leaving
  them in the backlog;
- it touches a heartbeat of its own: a worker's ``/livez`` fails when that one is stale
  (``supervisor_alive``), so Kubernetes' liveness probe restarts a pod whose supervisor hung,
  the one failure this process cannot repair itself.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import select
import shutil
import signal
import socket
import tempfile
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from service import bento_internals
from service.bento_internals import API_SOCKET, SERVICE_WATCHER
from service.errors import ApiError, error_http_bytes
from service.metrics import forget_dead_worker
from service.settings import Settings

log = logging.getLogger("gan.supervisor")

DIR_ENV = "GAN_SUPERVISOR_DIR"
SUPERVISOR_BEAT = "supervisor"
BEAT_EVERY_S = 1.0
TICK_S = 0.25


def _touch(path: Path) -> None:
    try:
        os.utime(path)
    except FileNotFoundError:
        path.touch()


def _state(pid: int) -> str:
    """The process state letter (R, S, T for stopped, Z for a zombie ...), or "" when gone."""
    try:
        raw = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return ""
    return raw[raw.rindex(")") + 2 :].split(" ", 1)[0]


def _age(path: Path, now: float) -> float | None:
    try:
        return now - path.stat().st_mtime
    except OSError:
        return None


# --- the worker's side -------------------------------------------------------------------------


def start_heartbeat() -> Callable[[], None] | None:
    """Touch this worker's heartbeat file every second from the running event loop (so a hung
    loop stops it). Returns the function that stops it; None when not under the supervisor."""
    directory = os.environ.get(DIR_ENV)
    if not directory or not Path(directory).is_dir():
        return None
    path = Path(directory) / str(os.getpid())
    loop = asyncio.get_running_loop()
    handle: asyncio.TimerHandle | None = None

    def beat() -> None:
        nonlocal handle
        with contextlib.suppress(OSError):
            _touch(path)
        handle = loop.call_later(BEAT_EVERY_S, beat)

    beat()

    def stop() -> None:
        if handle is not None:
            handle.cancel()
        path.unlink(missing_ok=True)

    return stop


def supervisor_alive(hang_s: float) -> bool:
    """False when the supervisor's own heartbeat is older than ``hang_s`` (True unsupervised)."""
    directory = os.environ.get(DIR_ENV)
    if not directory:
        return True
    age = _age(Path(directory) / SUPERVISOR_BEAT, time.time())
    return age is not None and age <= hang_s


# --- the arbiter's side ------------------------------------------------------------------------


UNAVAILABLE = ApiError(
    503,
    "unavailable",
    "no worker can serve right now (starting or being replaced); retry shortly",
    headers={"retry-after": "1"},
)


class Supervisor:
    def __init__(self, arbiter: Any, settings: Settings) -> None:
        self.arbiter = arbiter
        self.hang_s = settings.worker_hang_s
        self.directory = Path(tempfile.mkdtemp(prefix="gan-workers-"))
        self.prometheus_dir: Path | None = None
        self.known: set[int] = set()
        self.killed: dict[int, float] = {}
        self.refusing = False
        self._nudged_at = 0.0
        self._listener: socket.socket | None = None
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="gan-supervisor", daemon=True)

    def prepare(self) -> None:
        """Before the arbiter spawns anything: workers learn the heartbeat folder, and are
        respawned whatever BENTOML_CONTAINERIZED says."""
        for watcher in self._watchers():
            watcher.env = {**(watcher.env or {}), DIR_ENV: str(self.directory)}
            prom = watcher.env.get("PROMETHEUS_MULTIPROC_DIR")
            self.prometheus_dir = Path(prom) if prom else None
            if not watcher.respawn:
                log.info("respawning workers that exit (BentoML does not when containerized)")
                watcher.respawn = True
        _touch(self.directory / SUPERVISOR_BEAT)

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread.is_alive() and self._thread is not threading.current_thread():
            self._thread.join(timeout=2)
        if self._listener is not None:
            self._listener.close()
        shutil.rmtree(self.directory, ignore_errors=True)

    def _watchers(self) -> list[Any]:
        return [w for w in getattr(self.arbiter, "watchers", []) if w.name == SERVICE_WATCHER]

    def _worker_pids(self) -> set[int]:
        pids: set[int] = set()
        for watcher in self._watchers():
            with contextlib.suppress(RuntimeError):  # circus may change the dict meanwhile
                pids.update(p.pid for p in list(watcher.processes.values()))
        return pids

    def _stopping(self) -> bool:
        return bool(getattr(self.arbiter, "_stopping", False))

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                self.check()
            except Exception:  # the supervisor must outlive any one surprise
                log.exception("supervisor check failed")
            if self.refusing and not self._stopping():
                self._refuse_for(TICK_S)
            else:
                self._stop.wait(TICK_S)

    def check(self) -> None:
        now = time.time()
        _touch(self.directory / SUPERVISOR_BEAT)
        if self._stopping():
            self.refusing = False
            return
        pids = self._worker_pids()
        fresh = self._serving(pids, now, kill_hung=True)
        for pid in self.known - pids:
            self._forget(pid)
        self.known = pids
        refusing = fresh == 0
        if refusing != self.refusing:
            if refusing:
                log.warning("no worker can serve: answering 503 until one is up")
            else:
                log.info("%d worker(s) serving", fresh)
        self.refusing = refusing

    def _serving(self, pids: set[int], now: float, kill_hung: bool = False) -> int:
        """How many of ``pids`` can serve (alive, running, a fresh heartbeat); with
        ``kill_hung``, SIGKILL those whose heartbeat is stale."""
        fresh = 0
        for pid in pids:
            state = _state(pid)
            if state in ("", "Z", "X"):
                self._nudge()  # dead, and circus would only notice at its next check
                continue
            age = _age(self.directory / str(pid), now)
            if age is None:
                continue  # starting: no heartbeat before its app is up
            if age <= self.hang_s:
                # A stopped one cannot serve now, but may be resumed: judged by its heartbeat.
                fresh += state not in ("T", "t")
            elif kill_hung and pid not in self.killed:
                log.error(
                    "worker %d has not beaten for %.0f s (hung): killing it, a new one starts",
                    pid,
                    age,
                )
                with contextlib.suppress(ProcessLookupError):
                    os.kill(pid, signal.SIGKILL)
                self.killed[pid] = now
                self._nudge()
        return fresh

    def _nudge(self) -> None:
        """Have circus reap and respawn now: BentoML sets its check period to 10 s, so a dead
        worker would wait up to that long for its replacement. (Tornado's ``add_callback`` is
        the one IOLoop method safe to call from another thread.)"""
        now = time.monotonic()
        loop = getattr(self.arbiter, "loop", None)
        if loop is None or now - self._nudged_at < 1.0:
            return
        self._nudged_at = now

        async def manage() -> None:
            # ConflictError when circus is busy with another command: its next check will do
            with contextlib.suppress(Exception):
                await self.arbiter.manage_watchers()

        loop.add_callback(manage)

    def _forget(self, pid: int) -> None:
        log.warning("worker %d is gone; its heartbeat and gauges are removed", pid)
        self.killed.pop(pid, None)
        (self.directory / str(pid)).unlink(missing_ok=True)
        if self.prometheus_dir is not None and self.prometheus_dir.is_dir():
            forget_dead_worker(self.prometheus_dir, pid)

    # --- refusing while no worker serves ---

    def _listening_socket(self) -> socket.socket | None:
        if self._listener is None:
            sockets = getattr(self.arbiter, "sockets", None) or {}
            api = sockets.get(API_SOCKET)
            if api is None or api.fileno() < 0:
                return None
            # A duplicate of the arbiter's descriptor: the same socket, which is non-blocking
            # (circus made it so, and the workers need it so): never change its flags here.
            self._listener = socket.socket(fileno=os.dup(api.fileno()))
        return self._listener

    def _refuse_for(self, seconds: float) -> None:
        listener = self._listening_socket()
        if listener is None:
            self._stop.wait(seconds)
            return
        deadline = time.monotonic() + seconds
        while (left := deadline - time.monotonic()) > 0 and not self._stop.is_set():
            try:
                readable, _, _ = select.select([listener], [], [], left)
            except (OSError, ValueError):
                self._stop.wait(left)
                return
            if not readable:
                return
            serving = self._serving(self._worker_pids(), time.time())
            if serving:
                # A worker just came up: the connection is its. Logged here, since the next
                # tick then sees no change to report.
                self.refusing = False
                log.info("%d worker(s) serving", serving)
                return
            try:
                conn, _ = listener.accept()
            except (BlockingIOError, InterruptedError):
                continue  # a worker took it
            except OSError:  # not listening (draining after SIGTERM)
                self._stop.wait(left)
                return
            _answer_unavailable(conn)


def _answer_unavailable(conn: socket.socket) -> None:
    with conn:
        conn.settimeout(0.05)
        # Read what the client sent, so that closing does not reset the connection under it.
        with contextlib.suppress(OSError):
            conn.recv(65536)
        with contextlib.suppress(OSError):
            conn.sendall(error_http_bytes(UNAVAILABLE))
            conn.shutdown(socket.SHUT_WR)


def install(settings: Settings) -> bool:
    """Have ``bentoml serve`` start a ``Supervisor`` with its arbiter (the hook:
    ``service/bento_internals.py``). Call in the ``bentoml serve`` parent, at import (before the
    arbiter exists)."""

    def on_start(arbiter: Any) -> None:
        supervisor = Supervisor(arbiter, settings)
        supervisor.prepare()
        arbiter.exit_stack.callback(supervisor.stop)
        supervisor.start()

    return bento_internals.hook_arbiter_start(on_start)
