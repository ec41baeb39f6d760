"""service/api.py: the route list and the field rules, each defined once and read by everyone."""

from __future__ import annotations

import json
from pathlib import Path

import httpx
import pytest
from fixtures.in_process import serve
from prometheus_client import CollectorRegistry
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


# A hypothetical field for class-conditional models, added in one place: the table.
CLASS_FIELD = api.Field(
    "class",
    frozenset({"generate", "generate_grid", "interpolate"}),
    api.Integer(0, 9),
    default=None,
    description="the class to generate (class-conditional models)",
)


@pytest.fixture
def with_class_field(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(api, "FIELDS", (*api.FIELDS, CLASS_FIELD))


@pytest.mark.usefixtures("with_class_field")
def test_a_new_field_in_the_table_is_validated_documented_and_accepted(
    tiny_models_dir: Path,
) -> None:
    async def scenario(client: httpx.AsyncClient, registry: CollectorRegistry) -> None:
        bodies = {
            "/generate": {"seed": 1},
            "/generate_grid": {"seed": 1, "n": 2},
            "/interpolate": {"seed_a": 1, "seed_b": 2, "steps": 2},
        }
        for path, body in bodies.items():
            ok = await client.post(path, json={**body, "class": 3})
            assert ok.status_code == 200, (path, ok.text)
            bad = await client.post(path, json={**body, "class": 10})
            assert bad.status_code == 400, path
            assert bad.json() == {
                "error": "class must be in [0, 9], got 10",
                "reason": "invalid_field",
                "field": "class",
            }
        form = await client.post("/score", files=[("images", ("a.png", b"x"))], data={"class": "3"})
        assert form.json()["field"] == "class"  # not one of /score's fields
        document = (await client.get("/openapi.json")).json()
        for path in bodies:
            schema = document["paths"][path]["post"]["requestBody"]["content"]["application/json"][
                "schema"
            ]
            assert schema["properties"]["class"] == {
                "type": "integer",
                "minimum": 0,
                "maximum": 9,
                "description": "the class to generate (class-conditional models)",
            }

    serve(tiny_models_dir, scenario)
    values = api.check_fields("generate", {"seed": 1, "class": 2}, Settings())
    assert values["class"] == 2


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
