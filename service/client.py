"""Command-line client of the GAN service: ``python -m service.client --help``.

    python -m service.client generate --seed 42 -n 16 -o grid.png
    python -m service.client generate --seed 42 -n 4 --each -o digits/   # one PNG per seed
    python -m service.client score a.png b.png
    python -m service.client models
    python -m service.client interpolate --seed-a 1 --seed-b 2 --steps 16 -o walk.gif

``--url`` (default ``$GAN_URL`` or http://127.0.0.1:3000) and ``--api-key`` (default
``$GAN_API_KEY``, sent as ``Authorization: Bearer``) go before the command. Any failure is one
line on stderr, ``error: ...`` (the API's JSON error verbatim when the server refused), and exit
status 1; usage mistakes exit with 2. Only needs httpx, which the service's own install brings.

Installed, it is also the ``gan-client`` command. ``GanClient`` is the same thing as a library:
its methods return bytes or parsed JSON and raise ``GanClientError``.
"""

from __future__ import annotations

import argparse
import base64
import json
import os
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import httpx

DEFAULT_URL = "http://127.0.0.1:3000"
DEFAULT_TIMEOUT_S = 60.0
URL_ENV = "GAN_URL"
API_KEY_ENV = "GAN_API_KEY"
IMAGE_FORMATS = ("png", "gif", "webp")


class GanClientError(Exception):
    """One line that says what went wrong; ``status`` is the HTTP status when there was one."""

    def __init__(self, message: str, status: int | None = None, body: Any = None) -> None:
        super().__init__(message)
        self.status = status
        self.body = body


class GanClient:
    """The service's HTTP API (service/README.md) over one keep-alive ``httpx.Client``."""

    def __init__(
        self,
        url: str = DEFAULT_URL,
        api_key: str | None = None,
        timeout: float = DEFAULT_TIMEOUT_S,
        transport: httpx.BaseTransport | None = None,
    ) -> None:
        if not url.startswith(("http://", "https://")):
            raise GanClientError(f"the URL must start with http:// or https://, got {url!r}")
        self.url = url.rstrip("/")
        headers = {"User-Agent": "gan-service-client"}
        if api_key:
            headers["Authorization"] = f"Bearer {api_key}"
        self._timeout = timeout
        try:
            self._http = httpx.Client(
                base_url=self.url, headers=headers, timeout=timeout, transport=transport
            )
        except (httpx.InvalidURL, ValueError) as exc:
            raise GanClientError(f"bad URL {url!r}: {exc}") from None

    def __enter__(self) -> GanClient:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def close(self) -> None:
        self._http.close()

    # --- endpoints ----------------------------------------------------------------------------

    def models(self) -> dict[str, Any]:
        return self._json(self._request("GET", "/models"))

    def generate(
        self,
        seed: int,
        n: int = 1,
        model: str | None = None,
        truncation: float | None = None,
        klass: int | str | None = None,
    ) -> dict[str, Any]:
        """``POST /generate``: JSON with one base64 PNG per seed (see ``decode_images``).
        ``klass``: a class index or name of a class-conditional model."""
        body = _drop_none(
            {"seed": seed, "n": n, "model": model, "truncation": truncation, "class": klass}
        )
        return self._json(self._request("POST", "/generate", json=body))

    def generate_grid(
        self,
        seed: int,
        n: int = 1,
        model: str | None = None,
        truncation: float | None = None,
        columns: int | None = None,
        klass: int | str | None = None,
    ) -> bytes:
        """``POST /generate_grid``: the PNG bytes of one grid of the ``n`` images."""
        body = _drop_none(
            {
                "seed": seed,
                "n": n,
                "model": model,
                "truncation": truncation,
                "columns": columns,
                "class": klass,
            }
        )
        return self._request("POST", "/generate_grid", json=body).content

    def score(
        self,
        paths: Sequence[str | Path],
        model: str | None = None,
        klass: int | str | None = None,
    ) -> dict[str, Any]:
        """``POST /score`` of local image files: ``{"model", "scores": [{filename, realness,
        logit[, ood]}]}``; ``klass`` judges them as that class (conditional models)."""
        files = []
        for path in paths:
            try:
                data = Path(path).read_bytes()
            except OSError as exc:
                raise GanClientError(f"cannot read {path}: {exc.strerror or exc}") from None
            files.append(("images", (Path(path).name, data, "application/octet-stream")))
        data_fields = {
            k: str(v) for k, v in (("model", model), ("class", klass)) if v is not None
        } or None
        return self._json(self._request("POST", "/score", files=files, data=data_fields))

    def interpolate(
        self,
        seed_a: int,
        seed_b: int,
        steps: int | None = None,
        *,
        model: str | None = None,
        truncation: float | None = None,
        format: str = "gif",
        scale: int | None = None,
        frame_ms: int | None = None,
        bounce: bool | None = None,
        klass: int | str | None = None,
    ) -> bytes:
        """``POST /interpolate``: the bytes of a PNG strip or an animated GIF/WebP."""
        body = _drop_none(
            {
                "seed_a": seed_a,
                "seed_b": seed_b,
                "steps": steps,
                "model": model,
                "truncation": truncation,
                "format": format,
                "scale": scale,
                "frame_ms": frame_ms,
                "bounce": bounce,
                "class": klass,
            }
        )
        return self._request("POST", "/interpolate", json=body).content

    # --- plumbing -----------------------------------------------------------------------------

    def _request(self, method: str, path: str, **kwargs: Any) -> httpx.Response:
        where = f"{method} {self.url}{path}"
        try:
            response = self._http.request(method, path, **kwargs)
        except httpx.ConnectError as exc:
            raise GanClientError(
                f"cannot connect to {self.url} ({_reason(exc)}): is the server running? "
                f"(start it with `make serve`, or point --url / ${URL_ENV} at it)"
            ) from None
        except httpx.TimeoutException:
            raise GanClientError(
                f"{where}: no answer within {self._timeout:g} s (raise --timeout?)"
            ) from None
        except httpx.HTTPError as exc:
            raise GanClientError(f"{where}: {_reason(exc)}") from None
        if response.is_success:
            return response
        text = response.text.strip()
        try:
            body = response.json()
        except ValueError:
            body = None
        if isinstance(body, dict) and "error" in body:
            detail = json.dumps(body, separators=(",", ":"))
        else:
            detail = " ".join(text.split())[:300] or response.reason_phrase
        raise GanClientError(
            f"{where}: the server answered {response.status_code}: {detail}",
            response.status_code,
            body,
        )

    def _json(self, response: httpx.Response) -> dict[str, Any]:
        try:
            body = response.json()
        except ValueError:
            raise GanClientError(
                f"{response.request.method} {response.request.url}: the answer is not JSON "
                f"({response.headers.get('content-type', 'no content type')})"
            ) from None
        if not isinstance(body, dict):
            raise GanClientError(f"{response.request.url}: expected a JSON object")
        return body


def decode_images(generated: dict[str, Any]) -> list[tuple[int, bytes]]:
    """``(seed, png bytes)`` of each image of a ``generate()`` answer."""
    return [(int(i["seed"]), base64.b64decode(i["png"])) for i in generated["images"]]


def _drop_none(body: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in body.items() if v is not None}


def _reason(exc: Exception) -> str:
    text = str(exc).strip()
    if "Connection refused" in text or "Errno 111" in text:
        return "connection refused"
    return text or type(exc).__name__


# --- the command line -------------------------------------------------------------------------


def _write(path: str, data: bytes) -> str:
    """Write to ``path`` (``-`` is stdout); returns a name for the message."""
    if path == "-":
        sys.stdout.buffer.write(data)
        sys.stdout.buffer.flush()
        return "stdout"
    target = Path(path)
    try:
        if target.parent != Path():
            target.parent.mkdir(parents=True, exist_ok=True)
        target.write_bytes(data)
    except OSError as exc:
        raise GanClientError(f"cannot write {path}: {exc.strerror or exc}") from None
    return str(target)


def _say(args: argparse.Namespace, message: str) -> None:
    # Messages go to stderr when the data itself goes to stdout.
    stream = sys.stderr if getattr(args, "output", None) == "-" else sys.stdout
    print(message, file=stream)


def _cmd_generate(client: GanClient, args: argparse.Namespace) -> None:
    if args.each:
        folder = args.output or "."
        if folder == "-":
            raise GanClientError("--each writes one file per seed: give a folder with -o")
        result = client.generate(args.seed, args.n, args.model, args.truncation, args.klass)
        for seed, png in decode_images(result):
            _write(str(Path(folder) / f"seed-{seed}.png"), png)
        _say(
            args,
            f"wrote {len(result['images'])} images of {result['width']}x{result['height']} "
            f"(model {result['model']}) to {folder}/seed-<seed>.png",
        )
        return
    if args.n == 1 and args.columns is None:  # one image: the image itself, not a 1x1 grid
        result = client.generate(args.seed, 1, args.model, args.truncation, args.klass)
        ((seed, png),) = decode_images(result)
        name = _write(args.output or f"seed-{seed}.png", png)
        size = f"{result['width']}x{result['height']}"
        _say(args, f"wrote {name}: seed {seed}, {size}, model {result['model']}")
        return
    output = args.output or f"grid-{args.seed}-{args.n}.png"
    png = client.generate_grid(
        args.seed, args.n, args.model, args.truncation, args.columns, args.klass
    )
    name = _write(output, png)
    _say(args, f"wrote {name}: {args.n} images, seeds {args.seed}..{args.seed + args.n - 1}")


def _bar(value: float, width: int = 20) -> str:
    filled = round(max(0.0, min(1.0, value)) * width)
    return "[" + "#" * filled + "-" * (width - filled) + "]"


def _cmd_score(client: GanClient, args: argparse.Namespace) -> None:
    result = client.score(args.images, args.model, args.klass)
    if args.json:
        print(json.dumps(result, indent=2))
        return
    width = max(len(s["filename"]) for s in result["scores"])
    print(f"model {result['model']}")
    for s in result["scores"]:
        print(
            f"{s['filename']:<{width}}  realness {s['realness']:.3f} {_bar(s['realness'])}"
            f"  logit {s['logit']:+.3f}"
        )


def _cmd_models(client: GanClient, args: argparse.Namespace) -> None:
    result = client.models()
    if args.json:
        print(json.dumps(result, indent=2))
        return
    rows = [("NAME", "SIZE", "Z_DIM", "LOSS", "")]
    for m in result.get("models", []):
        size = f"{m['width']}x{m['height']}x{m['channels']}"
        default = "default" if m.get("default") else ""
        rows.append((m["name"], size, str(m["z_dim"]), str(m["loss"]), default))
    widths = [max(len(r[i]) for r in rows) for i in range(5)]
    for row in rows:
        print("  ".join(cell.ljust(w) for cell, w in zip(row, widths, strict=True)).rstrip())
    print(f"provider: {result.get('provider')}")
    for m in result.get("models", []):
        if m.get("classes"):
            listed = ", ".join(f"{i} {c}" for i, c in enumerate(m["classes"]))
            print(f"classes of {m['name']}: {listed}")
    for broken in result.get("broken") or []:
        print(f"broken: {json.dumps(broken)}")


def _cmd_interpolate(client: GanClient, args: argparse.Namespace) -> None:
    output = args.output or f"walk-{args.seed_a}-{args.seed_b}-{args.steps}.{args.format or 'gif'}"
    fmt = args.format
    if fmt is None:
        suffix = Path(output).suffix.lower().lstrip(".")
        fmt = suffix if suffix in IMAGE_FORMATS else "gif"
    data = client.interpolate(
        args.seed_a,
        args.seed_b,
        args.steps,
        model=args.model,
        truncation=args.truncation,
        format=fmt,
        scale=args.scale,
        frame_ms=args.frame_ms,
        bounce=False if args.no_bounce else None,
        klass=args.klass,
    )
    name = _write(output, data)
    kind = "strip" if fmt == "png" else f"animated {fmt.upper()}"
    _say(args, f"wrote {name}: {kind}, {args.steps} steps from seed {args.seed_a} to {args.seed_b}")


def build_parser() -> argparse.ArgumentParser:
    invoked = Path(sys.argv[0]).name if sys.argv and sys.argv[0] else ""
    parser = argparse.ArgumentParser(
        prog="gan-client" if invoked == "gan-client" else "python -m service.client",
        description="Talk to a running GAN service (bentoml serve service.service:GanService).",
    )
    parser.add_argument(
        "--url",
        default=os.environ.get(URL_ENV) or DEFAULT_URL,
        help=f"the server (default: ${URL_ENV} or {DEFAULT_URL})",
    )
    parser.add_argument(
        "--api-key",
        default=os.environ.get(API_KEY_ENV) or None,
        help=f"sent as 'Authorization: Bearer KEY' (default: ${API_KEY_ENV}, better: other "
        "users can read command lines)",
    )
    parser.add_argument(
        "--timeout", type=float, default=DEFAULT_TIMEOUT_S, help="seconds (default: 60)"
    )
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    def with_class(p: argparse.ArgumentParser) -> None:
        p.add_argument(
            "--class",
            dest="klass",
            help="class-conditional models: a class name or index from `models` (a name wins "
            "over an index that reads the same; default: each seed draws its own)",
        )

    def common(p: argparse.ArgumentParser) -> None:
        with_class(p)
        p.add_argument("--model", help="a model name from `models` (default: the server's)")
        p.add_argument("--truncation", type=float, help="in (0, 1]; lower: safer, less varied")

    gen = commands.add_parser("generate", help="seeds to a PNG grid (or one PNG per seed)")
    gen.add_argument("--seed", type=int, required=True, help="image i is seed + i")
    gen.add_argument("-n", type=int, default=1, help="how many images (default: 1)")
    gen.add_argument("--columns", type=int, help="grid columns (default: ceil(sqrt(n)))")
    gen.add_argument("--each", action="store_true", help="one PNG per seed into the -o folder")
    gen.add_argument(
        "-o", "--output", help="file (- for stdout); default grid-SEED-N.png (seed-SEED.png if n=1)"
    )
    common(gen)
    gen.set_defaults(run=_cmd_generate)

    score = commands.add_parser("score", help="realness of image files")
    score.add_argument("images", nargs="+", help="PNG, JPEG, WebP, ... files")
    score.add_argument("--model", help="a model name from `models` (default: the server's)")
    with_class(score)
    score.add_argument("--json", action="store_true", help="print the server's JSON")
    score.set_defaults(run=_cmd_score)

    models = commands.add_parser("models", help="the models the server serves")
    models.add_argument("--json", action="store_true", help="print the server's JSON")
    models.set_defaults(run=_cmd_models)

    walk = commands.add_parser("interpolate", help="a latent walk between two seeds")
    walk.add_argument("--seed-a", type=int, required=True, help="first frame")
    walk.add_argument("--seed-b", type=int, required=True, help="last frame")
    walk.add_argument("--steps", type=int, default=16, help="frames (default: 16)")
    walk.add_argument("--format", choices=IMAGE_FORMATS, help="default: from -o's suffix, else gif")
    walk.add_argument("--scale", type=int, help="pixel scale 1..8 (default: 1)")
    walk.add_argument("--frame-ms", type=int, help="ms per frame (default: 80)")
    walk.add_argument("--no-bounce", action="store_true", help="loop A..B, not A..B..A")
    walk.add_argument("-o", "--output", help="file (- for stdout); default walk-A-B-STEPS.gif")
    common(walk)
    walk.set_defaults(run=_cmd_interpolate)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        with GanClient(args.url, args.api_key, args.timeout) as client:
            args.run(client, args)
    except GanClientError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("error: interrupted", file=sys.stderr)
        return 130
    return 0


if __name__ == "__main__":
    sys.exit(main())
