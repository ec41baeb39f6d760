from __future__ import annotations

import json

import pytest

from service.errors import ApiError
from service.request_parsing import GenerateParams, parse_generate
from service.settings import Settings


def _parse(body: object, grid: bool = False) -> GenerateParams:
    raw = body if isinstance(body, bytes) else json.dumps(body).encode()
    return parse_generate(raw, Settings(n_max=64), grid=grid)


def test_defaults() -> None:
    assert _parse({"seed": 5}) == GenerateParams(seed=5, n=1, model=None, truncation=1.0)


def test_all_fields() -> None:
    p = _parse({"seed": 0, "n": 64, "model": "m", "truncation": 0.5, "columns": 8}, grid=True)
    assert p == GenerateParams(0, 64, "m", 0.5, 8)
    assert _parse({"seed": 2**32 - 1}).seed == 2**32 - 1
    assert _parse({"seed": 1, "truncation": 1}).truncation == 1.0


@pytest.mark.parametrize(
    ("body", "field", "reason"),
    [
        (b"{nope", None, "bad_json"),
        (b"\xff\xfe", None, "bad_json"),
        ([1, 2], None, "bad_json"),
        ({}, "seed", "invalid_field"),
        ({"seed": "1"}, "seed", "invalid_field"),
        ({"seed": 1.0}, "seed", "invalid_field"),
        ({"seed": True}, "seed", "invalid_field"),
        ({"seed": -1}, "seed", "invalid_field"),
        ({"seed": 2**32}, "seed", "invalid_field"),
        ({"seed": 1, "n": 0}, "n", "invalid_field"),
        ({"seed": 1, "n": 65}, "n", "invalid_field"),
        ({"seed": 1, "n": 1.5}, "n", "invalid_field"),
        ({"seed": 1, "n": None}, "n", "invalid_field"),
        ({"seed": 2**32 - 1, "n": 2}, "n", "invalid_field"),
        ({"seed": 1, "model": 3}, "model", "invalid_field"),
        ({"seed": 1, "truncation": 0}, "truncation", "invalid_field"),
        ({"seed": 1, "truncation": 1.5}, "truncation", "invalid_field"),
        ({"seed": 1, "truncation": "0.5"}, "truncation", "invalid_field"),
        (b'{"seed": 1, "truncation": NaN}', "truncation", "invalid_field"),
        ({"seed": 1, "sead": 2}, "sead", "invalid_field"),
        ({"seed": 1, "columns": 2}, "columns", "invalid_field"),  # only for the grid
    ],
)
def test_bad_bodies_name_the_field(body: object, field: str | None, reason: str) -> None:
    with pytest.raises(ApiError) as info:
        _parse(body)
    assert info.value.status == 400
    assert (info.value.field, info.value.reason) == (field, reason)
    assert info.value.body()["error"]


def test_grid_columns_validated() -> None:
    with pytest.raises(ApiError) as info:
        _parse({"seed": 1, "columns": 0}, grid=True)
    assert info.value.field == "columns"
