"""In-process checks of the reliability modules: the OpenAPI document covers every API route and
loads in schemathesis, and the shutdown helper really stops a listening socket."""

from __future__ import annotations

import socket

import pytest
import schemathesis
from starlette.routing import Route

from service.app import build_app
from service.openapi import openapi_document
from service.settings import Settings
from service.shutdown import listening_sockets, stop_listening


def _document(**env: str) -> dict[str, object]:
    return openapi_document(Settings.from_env(env), ["tiny-a", "tiny-b"], "tiny-a")


def test_every_api_route_is_documented() -> None:
    """A new route must be added to service/openapi.py, or the fuzz run never sees it."""
    app = build_app(Settings(), lambda: None)  # type: ignore[arg-type, return-value]
    routes = {
        (route.path, method.lower())
        for route in app.routes
        # not the web page, nor the document itself, nor /v2: the Open Inference Protocol's
        # routes follow KServe's own specification (docs/open-inference-protocol.md) and are
        # tested with Triton's and KServe's clients
        if isinstance(route, Route) and not route.path.startswith(("/ui", "/openapi.json", "/v2"))
        for method in route.methods or ()
        if method != "HEAD"
    }
    paths = _document()["paths"]
    assert isinstance(paths, dict)
    documented = {(path, method) for path, item in paths.items() for method in item}
    assert routes == documented


def test_document_loads_and_follows_the_settings() -> None:
    document = _document(GAN_N_MAX="16", GAN_MAX_SCORE_IMAGES="3", GAN_API_KEY="k" * 20)
    schema = schemathesis.openapi.from_dict(document)
    assert len(list(schema.get_all_operations())) == 6  # 5 routes, /models as GET and POST
    body = document["paths"]["/generate"]["post"]["requestBody"]  # type: ignore[index]
    assert body["content"]["application/json"]["schema"]["properties"]["n"]["maximum"] == 16
    assert document["security"]
    assert "401" in document["paths"]["/models"]["get"]["responses"]  # type: ignore[index]
    assert "security" not in _document()


def test_stop_listening_refuses_new_connections() -> None:
    server = socket.create_server(("127.0.0.1", 0))
    try:
        port = server.getsockname()[1]
        assert server.fileno() in listening_sockets()
        with socket.create_connection(("127.0.0.1", port), timeout=5):
            pass  # listening: the kernel accepts
        assert stop_listening([server.fileno()]) == 1
        with pytest.raises(ConnectionRefusedError):
            socket.create_connection(("127.0.0.1", port), timeout=5).close()
    finally:
        server.close()
