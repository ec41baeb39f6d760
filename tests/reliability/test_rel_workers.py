"""Workers that die or hang under a real ``bentoml serve`` with 2 workers (service/supervisor.py):
a dead worker's gauges vanish, /readyz fails fast while no worker can serve, a SIGSTOPped worker
is replaced, and with BENTOML_CONTAINERIZED=true dead workers are still respawned. With the API
key on and off."""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from integration.server_process import Server, launch, wait_ready
from rel_helpers import AUTH, metric_value, worker_pids

pytestmark = [pytest.mark.integration, pytest.mark.slow]

HANG_S = 2.0  # the smallest GAN_WORKER_HANG_S: replacement tests stay short
RESTART_S = 60.0  # a new worker loading on a loaded 2-core box


@pytest.fixture(scope="module", params=["key", "no key"])
def server(
    request: pytest.FixtureRequest, tiny_models_dir: Path, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[tuple[Server, dict[str, str]]]:
    key = request.param == "key"
    env = {"GAN_WORKERS": "2", "GAN_WORKER_HANG_S": str(HANG_S)}
    if key:
        env["GAN_API_KEY"] = AUTH["Authorization"].removeprefix("Bearer ")
    srv = launch(tiny_models_dir, tmp_path_factory.mktemp("workers_home"), env)
    try:
        wait_ready(srv)
        _wait_workers(srv, 2)
        yield srv, (dict(AUTH) if key else {})
    finally:
        srv.stop()


def _wait_workers(srv: Server, count: int, avoid: frozenset[int] = frozenset()) -> list[int]:
    """Wait until ``count`` workers not in ``avoid`` serve (each answered a request)."""
    deadline = time.monotonic() + RESTART_S
    while time.monotonic() < deadline:
        pids = [p for p in worker_pids(srv.process.pid) if p not in avoid]
        if len(pids) >= count and _heartbeats(srv, pids) >= count:
            return pids
        time.sleep(0.25)
    raise AssertionError(f"{count} new workers not up in {RESTART_S} s:\n{srv.log()[-3000:]}")


def _heartbeats(srv: Server, pids: list[int]) -> int:
    """How many of ``pids`` have started their app: a heartbeat file in the supervisor's
    folder (which the workers have in their environment). Without a supervisor (code older
    than it, to see these tests fail there), a worker started 10 s ago counts."""
    count = 0
    for pid in pids:
        try:
            env = Path(f"/proc/{pid}/environ").read_bytes().split(b"\0")
        except OSError:
            continue
        prefix = b"GAN_SUPERVISOR_DIR="
        folders = [e[len(prefix) :].decode() for e in env if e.startswith(prefix)]
        if folders:
            count += any((Path(f) / str(pid)).exists() for f in folders)
        else:
            count += _age_s(pid) > 10
    return count


def _age_s(pid: int) -> float:
    stat = Path(f"/proc/{pid}/stat").read_text()
    started = int(stat[stat.rindex(")") + 2 :].split()[19]) / os.sysconf("SC_CLK_TCK")
    return float(Path("/proc/uptime").read_text().split()[0]) - started


def _in_progress(srv: Server, headers: dict[str, str]) -> float:
    text = httpx.get(f"{srv.url}/metrics", headers=headers, timeout=30).text
    return metric_value(text, "gan_http_requests_in_progress")


def _held_uploads(srv: Server, headers: dict[str, str], count: int) -> list[socket.socket]:
    """``count`` /generate requests whose body never completes: in progress until killed."""
    host, port = srv.url.removeprefix("http://").split(":")
    auth = b"".join(f"{k}: {v}\r\n".encode() for k, v in headers.items())
    held = []
    for _ in range(count):
        sock = socket.create_connection((host, int(port)), timeout=10)
        sock.sendall(
            b"POST /generate HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
            + auth
            + b'Content-Length: 40\r\n\r\n{"seed": 1, '
        )
        held.append(sock)
    return held


def test_a_killed_workers_gauges_do_not_linger(server: tuple[Server, dict[str, str]]) -> None:
    srv, headers = server
    pids = _wait_workers(srv, 2)
    held = _held_uploads(srv, headers, 6)
    try:
        deadline = time.monotonic() + 20
        while _in_progress(srv, headers) < 6 and time.monotonic() < deadline:
            time.sleep(0.1)
        assert _in_progress(srv, headers) == 6
        counted = metric_value(
            httpx.get(f"{srv.url}/metrics", headers=headers).text, "gan_http_requests_total"
        )
        for pid in pids:
            os.kill(pid, signal.SIGKILL)
        _wait_workers(srv, 2, frozenset(pids))
        deadline = time.monotonic() + 10
        while _in_progress(srv, headers) != 0 and time.monotonic() < deadline:
            time.sleep(0.2)
        assert _in_progress(srv, headers) == 0, "a dead worker's gauge lingers"
        text = httpx.get(f"{srv.url}/metrics", headers=headers).text
        # ... while its counters stay: totals never go backwards
        assert metric_value(text, "gan_http_requests_total") >= counted
    finally:
        for sock in held:
            sock.close()


def test_with_every_worker_dead_readyz_fails_fast(server: tuple[Server, dict[str, str]]) -> None:
    srv, headers = server
    pids = _wait_workers(srv, 2)
    for pid in pids:
        os.kill(pid, signal.SIGKILL)
    slowest, answers = 0.0, set()
    deadline = time.monotonic() + RESTART_S
    while time.monotonic() < deadline:
        t0 = time.monotonic()
        try:
            answer = str(httpx.get(f"{srv.url}/readyz", timeout=5).status_code)
        except httpx.HTTPError as exc:
            answer = type(exc).__name__
        slowest = max(slowest, time.monotonic() - t0)
        answers.add(answer)
        if answer == "200":
            break
        time.sleep(0.1)
    assert "200" in answers, answers
    assert answers <= {"200", "503"}, answers
    assert slowest < 1.5, f"a /readyz probe took {slowest:.1f} s while no worker served"
    r = httpx.post(f"{srv.url}/generate", json={"seed": 1}, headers=headers, timeout=30)
    assert r.status_code == 200


def test_a_hung_worker_is_replaced(server: tuple[Server, dict[str, str]]) -> None:
    srv, headers = server
    pids = _wait_workers(srv, 2)
    os.kill(pids[0], signal.SIGSTOP)
    try:
        # the other one serves meanwhile
        r = httpx.post(f"{srv.url}/generate", json={"seed": 2}, headers=headers, timeout=30)
        assert r.status_code == 200
        _wait_workers(srv, 1, frozenset(pids))
        assert pids[0] not in worker_pids(srv.process.pid), "the hung worker is still there"
        assert "has not beaten for" in srv.log()
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pids[0], signal.SIGCONT)


def test_the_metrics_folder_stays_bounded_across_respawns(
    server: tuple[Server, dict[str, str]],
) -> None:
    srv, headers = server
    folder = next(Path(srv.log_path).parent.rglob("prometheus_multiproc_dir"))
    for _ in range(3):
        pids = _wait_workers(srv, 2)
        r = httpx.post(f"{srv.url}/generate", json={"seed": 3}, headers=headers, timeout=30)
        assert r.status_code == 200, r.text
        for pid in pids:
            os.kill(pid, signal.SIGKILL)
        _wait_workers(srv, 2, frozenset(pids))
    live = {str(p) for p in worker_pids(srv.process.pid)}
    for file in folder.glob("*.db"):
        owner = file.stem.rsplit("_", 1)[-1]
        assert owner in live or owner == "dead", (
            f"{file.name}: a dead worker's file remains (server {srv.process.pid}, live {live})"
        )
    text = httpx.get(f"{srv.url}/metrics", headers=headers).text
    assert metric_value(text, "gan_images_generated_total") >= 3  # the dead ones' counts


@pytest.fixture
def containerized(tiny_models_dir: Path, tmp_path: Path) -> Iterator[Server]:
    """As in images made by ``bentoml containerize``."""
    env = {"GAN_WORKERS": "2", "GAN_WORKER_HANG_S": str(HANG_S), "BENTOML_CONTAINERIZED": "true"}
    srv = launch(tiny_models_dir, tmp_path / "home", env)
    try:
        wait_ready(srv)
        yield srv
    finally:
        srv.stop()


@pytest.mark.parametrize("fault", [signal.SIGKILL, signal.SIGSTOP], ids=["killed", "hung"])
def test_containerized_workers_are_still_replaced(
    containerized: Server, fault: signal.Signals
) -> None:
    pids = _wait_workers(containerized, 2)
    os.kill(pids[0], fault)
    try:
        _wait_workers(containerized, 1, frozenset(pids))
        r = httpx.post(f"{containerized.url}/generate", json={"seed": 4}, timeout=30)
        assert r.status_code == 200
        assert len(worker_pids(containerized.process.pid)) == 2
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pids[0], signal.SIGCONT)
