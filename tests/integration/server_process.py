"""Run the real ``bentoml serve service.service:GanService`` as a subprocess (own home, free port)."""

from __future__ import annotations

import os
import resource
import signal
import socket
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import httpx

REPO = Path(__file__).resolve().parents[2]
BENTOML = Path(sys.executable).with_name("bentoml")

# Small limits so the bad-input tests stay cheap; GAN_N_MAX keeps its default of 64.
TEST_LIMITS = {
    "GAN_MAX_SCORE_IMAGES": "8",
    "GAN_MAX_UPLOAD_BYTES": "2000000",
    "GAN_MAX_IMAGE_PIXELS": "4000000",
}


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


@dataclass
class Server:
    url: str
    process: subprocess.Popen[bytes]
    log_path: Path

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    def stop(self) -> None:
        if self.process.poll() is None:
            os.killpg(self.process.pid, signal.SIGTERM)
            try:
                self.process.wait(timeout=15)
            except subprocess.TimeoutExpired:
                os.killpg(self.process.pid, signal.SIGKILL)
                self.process.wait(timeout=5)


def launch(
    models_dir: Path,
    home: Path,
    extra_env: dict[str, str] | None = None,
    *,
    nofile: int | None = None,
) -> Server:
    """Start ``bentoml serve`` in its own process group, with its own BENTOML_HOME and port;
    ``nofile``: under that file-descriptor limit, soft and hard (as ``ulimit -n`` would)."""
    home.mkdir(parents=True, exist_ok=True)
    port = free_port()
    env = {
        **{k: v for k, v in os.environ.items() if not k.startswith(("GAN_", "BENTOML_"))},
        "BENTOML_HOME": str(home),
        "BENTOML_DO_NOT_TRACK": "true",
        "GAN_MODELS_DIR": str(models_dir),
        "GAN_DEFAULT_MODEL": "tiny-a",
        **TEST_LIMITS,
        **(extra_env or {}),
    }
    log_path = home / "serve.log"
    with log_path.open("wb") as log:
        process = subprocess.Popen(
            [
                str(BENTOML),
                "serve",
                "service.service:GanService",
                "--host",
                "127.0.0.1",
                "--port",
                str(port),
            ],
            cwd=REPO,
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
            preexec_fn=None if nofile is None else lambda: _limit_files(nofile),
        )
    return Server(f"http://127.0.0.1:{port}", process, log_path)


def _limit_files(nofile: int) -> None:
    resource.setrlimit(resource.RLIMIT_NOFILE, (nofile, nofile))


def wait_ready(server: Server, timeout: float = 90.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if server.process.poll() is not None:
            raise RuntimeError(f"bentoml serve exited early:\n{server.log()}")
        try:
            if httpx.get(f"{server.url}/readyz", timeout=1.0).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.25)
    server.stop()
    raise RuntimeError(f"bentoml serve not ready after {timeout} s:\n{server.log()}")
