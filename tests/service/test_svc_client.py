"""``python -m service.client`` against the real app on a real socket (uvicorn in a thread, no
``bentoml serve``), plus the cases where there is no server at all."""

from __future__ import annotations

import base64
import io
import json
import os
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
import uvicorn
from PIL import Image
from prometheus_client import CollectorRegistry

from service import client as cli
from service.app import build_app
from service.model_store import ModelStore
from service.settings import Settings

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def url(conditional_models_dir: Path) -> Iterator[str]:
    settings = Settings(
        models_dir=conditional_models_dir, default_model="tiny-a", max_score_images=8
    )
    store = ModelStore.load(settings)
    app = build_app(settings, store, registry=CollectorRegistry())
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    server = uvicorn.Server(uvicorn.Config(app, log_level="warning", lifespan="on"))
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    deadline = time.monotonic() + 30
    while not server.started:
        assert thread.is_alive() and time.monotonic() < deadline, "uvicorn did not start"
        time.sleep(0.02)
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(timeout=10)
        sock.close()


@pytest.fixture
def down_url() -> str:
    """A port on which nothing listens (bound, then released)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return f"http://127.0.0.1:{s.getsockname()[1]}"


def _run(capsys: pytest.CaptureFixture[str], url: str, *args: str) -> tuple[int, str, str]:
    code = cli.main(["--url", url, *args])
    out, err = capsys.readouterr()
    return code, out, err


def _png(path: Path, seed: int, url: str) -> bytes:
    body = httpx.post(f"{url}/generate", json={"seed": seed}).json()
    data = base64.b64decode(body["images"][0]["png"])
    path.write_bytes(data)
    return data


def test_generate_grid(url: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out_file = tmp_path / "grid.png"
    code, out, err = _run(capsys, url, "generate", "--seed", "42", "-n", "16", "-o", str(out_file))
    assert (code, err) == (0, "")
    assert out == f"wrote {out_file}: 16 images, seeds 42..57\n"
    expected = httpx.post(f"{url}/generate_grid", json={"seed": 42, "n": 16}).content
    assert out_file.read_bytes() == expected
    assert Image.open(out_file).size == (4 * 30 + 2, 4 * 30 + 2)


def test_generate_options_and_each(
    url: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code, out, _ = _run(
        capsys,
        url,
        "generate",
        "--seed",
        "7",
        "-n",
        "3",
        "--model",
        "tiny-b",
        "--truncation",
        "0.5",
        "--each",
        "-o",
        str(tmp_path / "each"),
    )
    assert code == 0, out
    assert "3 images of 32x32 (model tiny-b)" in out
    api = httpx.post(
        f"{url}/generate", json={"seed": 7, "n": 3, "model": "tiny-b", "truncation": 0.5}
    ).json()
    for image in api["images"]:
        saved = tmp_path / "each" / f"seed-{image['seed']}.png"
        assert saved.read_bytes() == base64.b64decode(image["png"])

    code, _, _ = _run(
        capsys,
        url,
        "generate",
        "--seed",
        "1",
        "-n",
        "6",
        "--columns",
        "6",
        "-o",
        str(tmp_path / "row.png"),
    )
    assert code == 0
    assert Image.open(tmp_path / "row.png").size == (6 * 30 + 2, 32)


def test_score(url: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    a, b = tmp_path / "a.png", tmp_path / "b.png"
    _png(a, 1, url)
    _png(b, 2, url)
    files = [("images", (p.name, p.read_bytes(), "image/png")) for p in (a, b)]
    expected = httpx.post(f"{url}/score", files=files).json()

    code, out, err = _run(capsys, url, "score", str(a), str(b))
    assert (code, err) == (0, "")
    lines = out.splitlines()
    assert lines[0] == "model tiny-a"
    for line, s in zip(lines[1:], expected["scores"], strict=True):
        assert line.startswith(f"{s['filename']}  realness {s['realness']:.3f} [")
        assert line.endswith(f"logit {s['logit']:+.3f}")

    code, out, _ = _run(capsys, url, "score", "--json", "--model", "tiny-a", str(a), str(b))
    assert code == 0
    assert json.loads(out) == expected


def test_models(url: str, capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = _run(capsys, url, "models")
    assert code == 0
    lines = out.splitlines()
    assert lines[0].split() == ["NAME", "SIZE", "Z_DIM", "LOSS"]
    assert lines[1].split() == ["tiny-a", "28x28x1", "8", "ns", "default"]
    assert lines[2].split() == ["tiny-b", "32x32x3", "16", "wgan-gp"]
    assert lines[3].split() == ["tiny-c", "16x16x1", "8", "ns"]
    assert lines[4] == "provider: CPUExecutionProvider"
    assert lines[5] == "classes of tiny-c: 0 circle, 1 square, 2 7"
    code, out, _ = _run(capsys, url, "models", "--json")
    assert json.loads(out)["default"] == "tiny-a"


def test_interpolate_formats(url: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    walk = tmp_path / "walk.gif"
    code, out, err = _run(
        capsys,
        url,
        "interpolate",
        "--seed-a",
        "1",
        "--seed-b",
        "2",
        "--steps",
        "16",
        "-o",
        str(walk),
    )
    assert (code, err) == (0, "")
    assert out == f"wrote {walk}: animated GIF, 16 steps from seed 1 to 2\n"
    image = Image.open(walk)
    assert (image.format, image.size, image.n_frames) == ("GIF", (28, 28), 30)  # A..B..A

    webp = tmp_path / "walk.webp"
    code, _, _ = _run(
        capsys,
        url,
        "interpolate",
        "--seed-a",
        "1",
        "--seed-b",
        "2",
        "--steps",
        "4",
        "--no-bounce",
        "--scale",
        "2",
        "--model",
        "tiny-b",
        "-o",
        str(webp),
    )
    assert code == 0
    image = Image.open(webp)
    assert (image.format, image.size, image.n_frames) == ("WEBP", (64, 64), 4)

    strip = tmp_path / "strip.png"
    code, _, _ = _run(
        capsys,
        url,
        "interpolate",
        "--seed-a",
        "3",
        "--seed-b",
        "9",
        "--steps",
        "5",
        "-o",
        str(strip),
    )
    assert code == 0
    assert Image.open(strip).size == (5 * 30 + 2, 32)


def test_stdout_output(url: str, capsysbinary: pytest.CaptureFixture[bytes]) -> None:
    assert cli.main(["--url", url, "generate", "--seed", "5", "-o", "-"]) == 0
    out, err = capsysbinary.readouterr()
    assert Image.open(io.BytesIO(out)).size == (28, 28)  # n=1: the image, not a grid
    assert err == b"wrote stdout: seed 5, 28x28, model tiny-a\n"


@pytest.mark.parametrize(
    ("args", "status", "body"),
    [
        (
            ["generate", "--seed", "1", "-n", "1000"],
            400,
            {"error": "n must be in [1, 64], got 1000", "reason": "invalid_field", "field": "n"},
        ),
        (
            ["interpolate", "--seed-a", "1", "--seed-b", "2", "--steps", "1"],
            400,
            {
                "error": "steps must be in [2, 64], got 1",
                "reason": "invalid_field",
                "field": "steps",
            },
        ),
        (
            ["generate", "--seed", "1", "--model", "nope"],
            404,
            {
                "error": "unknown model 'nope'; served: tiny-a, tiny-b, tiny-c",
                "reason": "unknown_model",
                "field": "model",
            },
        ),
    ],
)
def test_api_errors_are_one_line_with_the_json(
    url: str,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    args: list[str],
    status: int,
    body: dict[str, object],
) -> None:
    output = tmp_path / "never.png"
    code, out, err = _run(capsys, url, *args, "-o", str(output))
    assert (code, out) == (1, "")
    assert err.count("\n") == 1 and err.startswith("error: POST ")
    assert f"the server answered {status}: {json.dumps(body, separators=(',', ':'))}" in err
    assert not output.exists()


def test_score_errors(url: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code, _, err = _run(capsys, url, "score", str(tmp_path / "missing.png"))
    assert code == 1
    assert err == f"error: cannot read {tmp_path / 'missing.png'}: No such file or directory\n"
    junk = tmp_path / "junk.png"
    junk.write_bytes(b"no image here")
    code, _, err = _run(capsys, url, "score", str(junk))
    assert code == 1
    assert '"reason":"not_an_image","field":"images"' in err
    assert "images[0] (junk.png)" in err


@pytest.mark.parametrize("command", [["models"], ["generate", "--seed", "1"], ["score", __file__]])
def test_server_down(
    down_url: str, tmp_path: Path, capsys: pytest.CaptureFixture[str], command: list[str]
) -> None:
    code, out, err = _run(
        capsys,
        down_url,
        *command,
        *(["-o", str(tmp_path / "x.png")] if command[0] == "generate" else []),
    )
    assert (code, out) == (1, "")
    assert err == (
        f"error: cannot connect to {down_url} (connection refused): is the server running? "
        "(start it with `make serve`, or point --url / $GAN_URL at it)\n"
    )


def test_entry_point_server_down_and_bad_url(down_url: str) -> None:
    env = {k: v for k, v in os.environ.items() if k not in ("GAN_URL", "GAN_API_KEY")}
    run = subprocess.run(
        [sys.executable, "-m", "service.client", "--url", down_url, "models"],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert run.returncode == 1
    assert run.stdout == ""
    assert run.stderr.startswith(f"error: cannot connect to {down_url} (connection refused)")
    assert run.stderr.count("\n") == 1
    run = subprocess.run(
        [sys.executable, "-m", "service.client", "--url", "localhost:3000", "models"],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert (run.returncode, run.stderr) == (
        1,
        "error: the URL must start with http:// or https://, got 'localhost:3000'\n",
    )


def test_usage_errors_exit_2(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exc:
        cli.main(["generate"])
    assert exc.value.code == 2
    assert "--seed" in capsys.readouterr().err


def test_api_key_is_sent_as_bearer(monkeypatch: pytest.MonkeyPatch) -> None:
    seen: list[str | None] = []

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(request.headers.get("authorization"))
        return httpx.Response(
            401, json={"error": "invalid API key", "reason": "unauthorized", "field": None}
        )

    transport = httpx.MockTransport(handler)
    client = cli.GanClient("http://gan.test", api_key="k" * 20, transport=transport)
    with client, pytest.raises(cli.GanClientError) as exc:
        client.models()
    assert seen == ["Bearer " + "k" * 20]
    assert exc.value.status == 401
    assert str(exc.value) == (
        "GET http://gan.test/models: the server answered 401: "
        '{"error":"invalid API key","reason":"unauthorized","field":null}'
    )
    monkeypatch.setenv("GAN_API_KEY", "from-the-environment")
    monkeypatch.setenv("GAN_URL", "http://elsewhere:1234")
    args = cli.build_parser().parse_args(["models"])
    assert (args.api_key, args.url) == ("from-the-environment", "http://elsewhere:1234")


def test_non_json_error_body() -> None:
    transport = httpx.MockTransport(lambda r: httpx.Response(502, text="<html>Bad gateway</html>"))
    client = cli.GanClient("http://gan.test", transport=transport)
    with (
        client,
        pytest.raises(cli.GanClientError, match=r"answered 502: <html>Bad gateway</html>$"),
    ):
        client.generate_grid(1)


def test_class_option(url: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """``--class`` by name or index, on every command that makes or judges images."""
    files = {}
    for value in ("square", "1", "circle"):
        out = tmp_path / f"{value}.png"
        code, _, err = _run(
            capsys,
            url,
            "generate",
            "--model",
            "tiny-c",
            "--seed",
            "3",
            "--class",
            value,
            "-o",
            str(out),
        )
        assert (code, err) == (0, "")
        files[value] = out.read_bytes()
    assert files["square"] == files["1"] != files["circle"]
    code, out, _ = _run(
        capsys, url, "score", "--model", "tiny-c", "--class", "7", str(tmp_path / "1.png")
    )
    assert code == 0 and "realness" in out
    code, _, err = _run(
        capsys, url, "generate", "--model", "tiny-c", "--seed", "3", "--class", "owl"
    )
    assert code == 1 and "has no class 'owl'" in err and "0 'circle'" in err
    walk = tmp_path / "walk.png"
    code, _, err = _run(
        capsys, url, "interpolate", "--model", "tiny-c", "--seed-a", "1", "--seed-b", "2",
        "--steps", "2", "--class", "square", "-o", str(walk),
    )  # fmt: skip
    assert (code, err) == (0, "") and walk.read_bytes()[:4] == b"\x89PNG"
