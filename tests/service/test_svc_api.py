"""service/api.py: the route list and the field rules, each defined once and read by everyone."""

from __future__ import annotations

import json

import pytest
from starlette.routing import Route

from service import api
from service.app import build_app
from service.errors import ApiError
from service.openapi import openapi_document
from service.settings import Settings


def test_routes_are_unique_and_every_field_belongs_to_known_routes() -> None:
    assert len({r.name for r in api.ROUTES}) == len(api.ROUTES)
    names = set(api.ROUTES_BY_NAME)
    for f in api.FIELDS:
        assert f.routes <= names, f.name
    assert api.route_for_path("/generate") == "generate"
    assert api.route_for_path("/generate/") is None and api.route_for_path("generate") is None


@pytest.mark.parametrize(
    ("body", "message"),
    [
        (b"[" * 50_000, "nested too deeply"),
        (b'{"seed_a": 1' + b"0" * 5000 + b"}", "unreadable number"),
        (b"\xff", "not valid JSON"),
        (b"[1]", 'like {"seed_a": 1, "seed_b": 2, "steps": 16}'),
    ],
)
def test_one_json_reader_for_every_route(body: bytes, message: str) -> None:
    for route in ("generate", "generate_grid", "interpolate"):
        with pytest.raises(ApiError) as exc:
            api.parse_json_fields(route, body, Settings())
        assert (exc.value.status, exc.value.reason, exc.value.field) == (400, "bad_json", None)
        if route == "interpolate" or "like" not in message:
            assert message in exc.value.message


def test_defaults_and_settings_bounds_come_from_the_table() -> None:
    values = api.check_fields("interpolate", {"seed_a": 1, "seed_b": 2}, Settings(n_max=8))
    assert values == {
        "seed_a": 1,
        "seed_b": 2,
        "steps": 8,
        "model": None,
        "truncation": 1.0,
        "format": "png",
        "frame_ms": 80,
        "scale": 1,
        "bounce": True,
    }
    with pytest.raises(ApiError, match=r"n must be in \[1, 8\], got 9"):
        api.check_fields("generate", {"seed": 1, "n": 9}, Settings(n_max=8))
    assert "columns" not in api.check_fields("generate_grid", {"seed": 1}, Settings())


def test_every_route_has_a_handler_and_an_openapi_operation() -> None:
    app = build_app(Settings(), lambda: None)  # type: ignore[arg-type, return-value]
    served = {
        (route.path, method)
        for route in app.routes
        if isinstance(route, Route)
        for method in route.methods or ()
        if method != "HEAD"
    }
    assert {(r.path, r.method) for r in api.ROUTES} <= served
    document = openapi_document(Settings(), ["tiny-a"], "tiny-a")
    assert set(document["paths"]) == {r.path for r in api.ROUTES}
    assert json.dumps(document)  # plain JSON, no NaN
