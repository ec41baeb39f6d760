"""The optional API key (service/auth.py): settings, constant-time comparison, the middleware
in-process, and the real server (key on) refusing every route but the health probes."""

from __future__ import annotations

import asyncio
import hmac
from pathlib import Path

import httpx
import pytest
from integration.server_process import Server
from rel_helpers import API_KEY, metric_value
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import PlainTextResponse
from starlette.routing import Route

from service import auth
from service.auth import ApiKeyChecker, ApiKeyMiddleware, open_paths, presented_key
from service.settings import Settings, SettingsError

OTHER_KEY = "second-key-for-rotation-0000000000"

# --- settings --------------------------------------------------------------------------------


def test_no_key_by_default() -> None:
    assert Settings.from_env({}).api_keys == ()


def test_keys_from_env_and_file(tmp_path: Path) -> None:
    assert Settings.from_env({"GAN_API_KEY": f" {API_KEY} , {OTHER_KEY} "}).api_keys == (
        API_KEY,
        OTHER_KEY,
    )
    secret = tmp_path / "key"
    secret.write_text(f"{API_KEY}\n{OTHER_KEY}\n")
    assert Settings.from_env({"GAN_API_KEY_FILE": str(secret)}).api_keys == (API_KEY, OTHER_KEY)


@pytest.mark.parametrize(
    ("env", "message"),
    [
        ({"GAN_API_KEY": "short-secret"}, "fewer than 16"),
        ({"GAN_API_KEY": "a key with spaces in it, ok?"}, "printable ASCII"),
        ({"GAN_API_KEY": " , "}, "no key"),
        ({"GAN_API_KEY": API_KEY, "GAN_API_KEY_FILE": "/x"}, "both set"),
        ({"GAN_API_KEY_FILE": "/nonexistent/key"}, "cannot read"),
    ],
)
def test_bad_keys_stop_start_up_without_showing_the_key(env: dict[str, str], message: str) -> None:
    with pytest.raises(SettingsError, match=message) as caught:
        Settings.from_env(env)
    for value in env.values():
        if value.strip(" ,") and not value.startswith("/"):
            assert value.strip() not in str(caught.value)


def test_keys_are_redacted_everywhere_settings_are_shown() -> None:
    settings = Settings.from_env({"GAN_API_KEY": API_KEY})
    assert API_KEY not in repr(settings)
    assert API_KEY not in str(settings.describe())
    assert settings.describe()["api_keys"] == "1 set (redacted)"


def test_request_timeout_setting() -> None:
    assert Settings.from_env({}).request_timeout_s == 30.0
    assert Settings.from_env({"GAN_REQUEST_TIMEOUT_S": "2.5"}).request_timeout_s == 2.5
    for bad in ("0", "-1", "nan", "4000", "soon"):
        with pytest.raises(SettingsError, match="GAN_REQUEST_TIMEOUT_S"):
            Settings.from_env({"GAN_REQUEST_TIMEOUT_S": bad})


# --- comparison ------------------------------------------------------------------------------


def test_checker_accepts_only_the_keys() -> None:
    checker = ApiKeyChecker([API_KEY, OTHER_KEY])
    assert checker.matches(API_KEY.encode()) and checker.matches(OTHER_KEY.encode())
    for wrong in (None, b"", API_KEY[:-1].encode(), (API_KEY + "x").encode(), b"\0" * 32):
        assert not checker.matches(wrong)


def test_every_key_is_compared_in_constant_time(monkeypatch: pytest.MonkeyPatch) -> None:
    """hmac.compare_digest on fixed-size digests, against every key, whatever matches: the
    time taken says nothing about the content, length or position of the key."""
    calls: list[tuple[int, int]] = []
    real = hmac.compare_digest

    def spy(a: bytes, b: bytes) -> bool:
        calls.append((len(a), len(b)))
        return real(a, b)

    monkeypatch.setattr(auth.hmac, "compare_digest", spy)
    checker = ApiKeyChecker([API_KEY, OTHER_KEY, "third-key-000000000000000000"])
    for candidate in (API_KEY.encode(), b"wrong", None, b"x" * 10_000):
        calls.clear()
        checker.matches(candidate)
        assert calls == [(32, 32)] * 3


@pytest.mark.parametrize(
    ("headers", "expected"),
    [
        ([(b"authorization", b"Bearer abc")], b"abc"),
        ([(b"authorization", b"bearer   abc  ")], b"abc"),
        ([(b"x-api-key", b"abc")], b"abc"),
        ([(b"authorization", b"Basic YWJjOmRlZg==")], None),
        ([(b"authorization", b"Bearer ")], None),
        ([], None),
    ],
)
def test_presented_key(headers: list[tuple[bytes, bytes]], expected: bytes | None) -> None:
    assert presented_key(headers) == expected


# --- middleware, in-process ------------------------------------------------------------------


def _app(metrics_public: bool = False) -> tuple[ApiKeyMiddleware, list[str]]:
    async def ok(request: Request) -> PlainTextResponse:
        return PlainTextResponse("ok")

    inner = Starlette(routes=[Route(p, ok) for p in ("/generate", "/livez", "/readyz", "/metrics")])
    refused: list[str] = []
    return (
        ApiKeyMiddleware(inner, [API_KEY], open_paths(metrics_public), on_refused=refused.append),
        refused,
    )


async def _get(app: ApiKeyMiddleware, path: str, headers: dict[str, str]) -> httpx.Response:
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://test") as client:
        return await client.get(path, headers=headers)


def test_middleware_in_process() -> None:
    app, refused = _app()
    r = asyncio.run(_get(app, "/generate", {}))
    assert r.status_code == 401
    assert r.json() == {
        "error": "missing API key: send it as 'Authorization: Bearer KEY' or 'X-API-Key: KEY'",
        "reason": "unauthorized",
        "field": None,
    }
    assert r.headers["www-authenticate"].startswith("Bearer")
    r = asyncio.run(_get(app, "/generate", {"X-API-Key": "guess-guess-guess-guess"}))
    assert r.status_code == 401 and "guess" not in r.text and r.json()["error"] == "invalid API key"
    assert asyncio.run(_get(app, "/generate", {"X-API-Key": API_KEY})).text == "ok"
    assert asyncio.run(_get(app, "/livez", {})).text == "ok"
    assert asyncio.run(_get(app, "/metrics", {})).status_code == 401
    assert refused == ["missing", "invalid", "missing"]
    public, _ = _app(metrics_public=True)
    assert asyncio.run(_get(public, "/metrics", {})).text == "ok"


# --- the real server (GAN_API_KEY set) -------------------------------------------------------

PROTECTED = [
    ("POST", "/generate"),
    ("POST", "/generate_grid"),
    ("POST", "/score"),
    ("POST", "/interpolate"),
    ("GET", "/models"),
    ("GET", "/openapi.json"),
    ("GET", "/metrics"),
    ("GET", "/docs.json"),
    ("GET", "/"),
    ("GET", "/no-such-page"),
    ("GET", "/readyz/"),
    ("GET", "//generate"),
    ("GET", "/ui/../models"),
    ("GET", "/ui/not-a-page.html"),
]

pytest_integration = pytest.mark.integration  # the unit tests above need no server


@pytest_integration
@pytest.mark.parametrize("key", [None, "wrong-key-wrong-key-wrong-key", API_KEY[:-1]])
@pytest.mark.parametrize(("method", "path"), PROTECTED, ids=[f"{m} {p}" for m, p in PROTECTED])
def test_every_route_but_the_probes_needs_the_key(
    rel_server: Server, method: str, path: str, key: str | None
) -> None:
    headers = {} if key is None else {"Authorization": f"Bearer {key}"}
    r = httpx.request(method, rel_server.url + path, headers=headers, json={"seed": 1}, timeout=30)
    assert r.status_code == 401, (path, r.status_code, r.text[:200])
    assert r.json()["reason"] == "unauthorized"


@pytest_integration
@pytest.mark.parametrize("path", ["/livez", "/readyz", "/healthz"])
def test_health_probes_need_no_key(rel_server: Server, path: str) -> None:
    assert httpx.get(rel_server.url + path, timeout=30).status_code == 200


@pytest_integration
@pytest.mark.parametrize("path", ["/ui", "/ui/", "/ui/app.js", "/ui/style.css"])
def test_the_web_page_files_need_no_key(rel_server: Server, path: str) -> None:
    """Static files with no data in them; the page asks for the key and sends it itself."""
    r = httpx.get(rel_server.url + path, timeout=30)
    assert r.status_code in (200, 307), (path, r.status_code)


@pytest_integration
def test_the_key_opens_everything_both_ways(rel_server: Server) -> None:
    for headers in ({"Authorization": f"Bearer {API_KEY}"}, {"X-API-Key": API_KEY}):
        with httpx.Client(base_url=rel_server.url, headers=headers, timeout=30) as client:
            assert client.post("/generate", json={"seed": 1}).status_code == 200
            assert client.get("/models").status_code == 200
            assert client.get("/metrics").status_code == 200
            assert client.get("/openapi.json").json()["security"]


@pytest_integration
def test_the_key_is_never_shown_and_refusals_are_counted(
    rel_server: Server, rel_client: httpx.Client
) -> None:
    httpx.get(rel_server.url + "/models", headers={"X-API-Key": "nope-nope-nope-nope"}, timeout=30)
    models = rel_client.get("/models")
    metrics = rel_client.get("/metrics").text
    for text in (models.text, metrics, rel_client.get("/openapi.json").text, rel_server.log()):
        assert API_KEY not in text
    assert models.json()["settings"]["api_keys"] == "1 set (redacted)"
    assert metric_value(metrics, "gan_request_errors_total", reason="unauthorized") >= 1
    assert "API key required on every route except /healthz, /livez, /readyz" in rel_server.log()
