"""The public API as data, each part written once: the routes, and the rules of every request field.

Everything that needs to know the API reads it from here: the Starlette routes
(``http_app.py``), the paths the front door sends to our app (``fast_path.py``), the metrics'
``endpoint`` label, the untraced URLs (``service.py``), the OpenAPI document (``openapi.py``) and
the request parsers. A new optional request field (``class`` for class-conditional models, say) is
one more ``Field`` in ``FIELDS``, with the routes it belongs to: it is then validated, refused
when wrong (400 naming it), documented in ``GET /openapi.json`` and handed to the route in
``Values``.

Hand-written rather than pydantic: the rules are few, the messages are ours, and the per-request
cost of the hot ``/generate`` path stays a ``json.loads`` and a handful of checks.
"""

from __future__ import annotations

import dataclasses
import json
import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from contract.latents import SEED_MAX
from service.errors import bad_request, invalid_field
from service.settings import Settings

# A JSON request is ~100 bytes; anything near this is not one of ours.
MAX_JSON_BYTES = 64 * 1024


@dataclass(frozen=True)
class Route:
    """One API route. Its URL is ``/name``; ``name`` is also the ``endpoint`` label of metrics."""

    name: str
    method: str
    summary: str
    body: str | None = None  # "json", "multipart" or None
    example: str = ""  # a valid JSON body, quoted when a body is not a JSON object

    @property
    def path(self) -> str:
        return f"/{self.name}"

    @property
    def methods(self) -> tuple[str, ...]:
        # BentoML's clients call every declared API with POST (service/bento_api.py).
        return (self.method,) if self.method == "POST" else (self.method, "POST")


ROUTES: tuple[Route, ...] = (
    Route(
        "generate",
        "POST",
        "n images from seeds seed .. seed + n - 1, as base64 PNGs",
        "json",
        '{"seed": 1, "n": 4}',
    ),
    Route(
        "generate_grid", "POST", "the same images tiled into one PNG", "json", '{"seed": 1, "n": 4}'
    ),
    Route(
        "score", "POST", "realness of uploaded images under a model's discriminator", "multipart"
    ),
    Route(
        "interpolate",
        "POST",
        "a latent walk between two seeds: PNG strip, GIF or WebP",
        "json",
        '{"seed_a": 1, "seed_b": 2, "steps": 16}',
    ),
    Route("models", "GET", "models served, broken models, settings"),
)
ROUTES_BY_NAME: dict[str, Route] = {r.name: r for r in ROUTES}
ROUTE_PATHS: frozenset[str] = frozenset(r.path for r in ROUTES)


def route_for_path(path: str) -> str | None:
    """The route name of a URL path, or None: the bounded ``endpoint`` label of metrics."""
    name = path[1:]
    return name if name in ROUTES_BY_NAME and path[:1] == "/" else None


# --- field kinds -------------------------------------------------------------------------------

Bound = int | float | Callable[[Settings], int]


def _bound(value: Bound, settings: Settings) -> Any:
    return value(settings) if callable(value) else value


def type_name(value: object) -> str:
    return "null" if value is None else type(value).__name__


class Kind:
    """How one field's JSON value is checked and described. ``parse`` returns the value to use
    or raises ``ApiError`` (400 ``invalid_field`` naming the field)."""

    def parse(self, name: str, value: Any, settings: Settings) -> Any:
        raise NotImplementedError

    def schema(self, settings: Settings, context: SchemaContext) -> dict[str, Any] | None:
        """The field's OpenAPI schema; None: this server does not offer the field."""
        raise NotImplementedError

    def wanted(self, settings: Settings) -> str:
        """What a missing required field should have been, for the error message."""
        raise NotImplementedError


@dataclass(frozen=True)
class Integer(Kind):
    lo: Bound
    hi: Bound

    def parse(self, name: str, value: Any, settings: Settings) -> int:
        lo, hi = _bound(self.lo, settings), _bound(self.hi, settings)
        if not isinstance(value, int) or isinstance(value, bool):
            raise invalid_field(
                name, f"{name} must be an integer in [{lo}, {hi}], got {type_name(value)}"
            )
        if not lo <= value <= hi:
            raise invalid_field(name, f"{name} must be in [{lo}, {hi}], got {value}")
        return value

    def schema(self, settings: Settings, context: SchemaContext) -> dict[str, Any]:
        lo, hi = _bound(self.lo, settings), _bound(self.hi, settings)
        return {"type": "integer", "minimum": lo, "maximum": hi}

    def wanted(self, settings: Settings) -> str:
        return f"an integer in [{_bound(self.lo, settings)}, {_bound(self.hi, settings)}]"


@dataclass(frozen=True)
class Number(Kind):
    """A finite number in ``(lo, hi]`` (``lo`` excluded: the only interval the API uses)."""

    lo: float
    hi: float

    def parse(self, name: str, value: Any, settings: Settings) -> float:
        if not isinstance(value, int | float) or isinstance(value, bool):
            raise invalid_field(name, f"{name} must be a number, got {type_name(value)}")
        number = float(value)
        if not (math.isfinite(number) and self.lo < number <= self.hi):
            raise invalid_field(name, f"{name} must be in ({self.lo:g}, {self.hi:g}], got {number}")
        return number

    def schema(self, settings: Settings, context: SchemaContext) -> dict[str, Any]:
        return {"type": "number", "minimum": self.lo, "exclusiveMinimum": True, "maximum": self.hi}

    def wanted(self, settings: Settings) -> str:
        return f"a number in ({self.lo:g}, {self.hi:g}]"


@dataclass(frozen=True)
class Choice(Kind):
    options: tuple[str, ...]

    def parse(self, name: str, value: Any, settings: Settings) -> str:
        if not isinstance(value, str) or value not in self.options:
            raise invalid_field(
                name, f"{name} must be one of {', '.join(self.options)}, got {json.dumps(value)}"
            )
        return value

    def schema(self, settings: Settings, context: SchemaContext) -> dict[str, Any]:
        return {"type": "string", "enum": list(self.options)}

    def wanted(self, settings: Settings) -> str:
        return f"one of {', '.join(self.options)}"


@dataclass(frozen=True)
class Boolean(Kind):
    def parse(self, name: str, value: Any, settings: Settings) -> bool:
        if not isinstance(value, bool):
            raise invalid_field(name, f"{name} must be true or false, got {type_name(value)}")
        return value

    def schema(self, settings: Settings, context: SchemaContext) -> dict[str, Any]:
        return {"type": "boolean"}

    def wanted(self, settings: Settings) -> str:
        return "true or false"


@dataclass(frozen=True)
class ModelName(Kind):
    """A served model's name; null (or, in a form, an empty text field) means the default one.
    Whether it is served is the store's business (404 ``unknown_model``)."""

    def parse(self, name: str, value: Any, settings: Settings) -> str | None:
        if value is not None and not isinstance(value, str):
            raise invalid_field(name, f"{name} must be a string, got {type_name(value)}")
        return value

    def schema(self, settings: Settings, context: SchemaContext) -> dict[str, Any]:
        names: list[Any] = sorted(context.models)
        if context.form:
            return {
                "type": "string",
                "enum": [*names, ""],
                "description": f"a served model (GET /models); empty or absent: {context.default!r}",
            }
        return {
            "type": "string",
            "nullable": True,
            "enum": [*names, None],
            "description": f"a served model (GET /models); null or absent: {context.default!r}",
        }

    def wanted(self, settings: Settings) -> str:
        return "a model name"


MAX_CLASS_NAME = 200


@dataclass(frozen=True)
class ClassLabel(Kind):
    """A class of a class-conditional model: its index (an integer) or its name (a string).
    Which classes exist is the model's business (service/conditioning.py: 400 naming them)."""

    def parse(self, name: str, value: Any, settings: Settings) -> int | str:
        if isinstance(value, int) and not isinstance(value, bool):
            if value < 0:
                raise invalid_field(name, f"{name} must be >= 0 (a class index), got {value}")
            return value
        if isinstance(value, str) and 0 < len(value) <= MAX_CLASS_NAME:
            return value
        raise invalid_field(
            name,
            f"{name} must be a class index (integer) or a class name (string of 1 to "
            f"{MAX_CLASS_NAME} characters), got {type_name(value)}",
        )

    def schema(self, settings: Settings, context: SchemaContext) -> dict[str, Any] | None:
        if not context.classes:
            # No served model takes a class: the field is not offered (a request with one is a
            # 400), so a client reading the document never sends what can only be refused.
            return None
        described = "; ".join(
            f"{model}: {', '.join(names)}" for model, names in sorted(context.classes.items())
        )
        if context.form:
            return {"type": "string", "minLength": 1, "maxLength": MAX_CLASS_NAME}
        return {
            "oneOf": [
                {"type": "integer", "minimum": 0},
                {"type": "string", "minLength": 1, "maxLength": MAX_CLASS_NAME},
            ],
            "description": f"classes of the class-conditional models served: {described}",
        }

    def wanted(self, settings: Settings) -> str:
        return "a class index or name"


@dataclass(frozen=True)
class Files(Kind):
    """Uploaded files of a multipart form (parsed by ``request_parsing.read_score_form``)."""

    def parse(self, name: str, value: Any, settings: Settings) -> Any:
        return value

    def schema(self, settings: Settings, context: SchemaContext) -> dict[str, Any]:
        return {
            "type": "array",
            "minItems": 1,
            "maxItems": settings.max_score_images,
            "items": {"type": "string", "format": "binary"},
            "description": (
                "image files (PNG, JPEG, WebP, BMP, GIF, TIFF, PPM, ICO), at most "
                f"{settings.max_image_pixels} pixels each, {settings.max_upload_bytes} "
                "bytes in all"
            ),
        }

    def wanted(self, settings: Settings) -> str:
        return "one or more files"


@dataclass(frozen=True)
class SchemaContext:
    """What the OpenAPI document knows that the rules do not: the served models."""

    models: tuple[str, ...]
    default: str
    form: bool = False
    # The classes of each class-conditional model (index order).
    classes: Mapping[str, tuple[str, ...]] = dataclasses.field(default_factory=dict)


# --- the fields --------------------------------------------------------------------------------

Values = Mapping[str, Any]
# Runs after the field's own check, with the fields validated before it (table order).
CrossCheck = Callable[[Values, Any], None]
Default = Any  # a value, or a callable of the settings


def _seed_plus_n(values: Values, n: int) -> None:
    seed = values["seed"]
    if seed + n - 1 > SEED_MAX:
        raise invalid_field(
            "n", f"seed + n - 1 = {seed + n - 1} is over the largest seed {SEED_MAX}"
        )


@dataclass(frozen=True)
class Field:
    name: str
    routes: frozenset[str]
    kind: Kind
    required: bool = False
    # The value when absent; ``NO_DEFAULT``: absent stays absent (``values.get`` gives None).
    default: Default = None
    description: str = ""
    check: CrossCheck | None = None
    # Documented default, when it differs from ``default`` (a rule in words, say).
    doc_default: bool = True

    def default_value(self, settings: Settings) -> Any:
        return self.default(settings) if callable(self.default) else self.default


NO_DEFAULT = object()

STEPS_MIN = 2
STEPS_DEFAULT = 16
FRAME_MS_RANGE = (20, 2000)
FRAME_MS_DEFAULT = 80
SCALE_MAX = 8
FORMATS = {"png": "image/png", "gif": "image/gif", "webp": "image/webp"}
# /generate's and /generate_grid's (service/encoding.py says what each gives).
GENERATE_FORMATS = ("png", "webp", "jpeg", "npy")
GRID_FORMATS = ("png", "webp", "jpeg")
LOSSY_FORMATS = ("webp", "jpeg")
QUALITY_RANGE = (1, 100)
JPEG_QUALITY_DEFAULT = 90


def steps_max(settings: Settings) -> int:
    return max(STEPS_MIN, settings.n_max)


def _n_max(settings: Settings) -> int:
    return settings.n_max


GENERATE_ROUTES = frozenset({"generate", "generate_grid"})
INTERPOLATE = frozenset({"interpolate"})
IMAGE_ROUTES = GENERATE_ROUTES | INTERPOLATE

# Table order is validation order (and the order of the first error reported).
FIELDS: tuple[Field, ...] = (
    Field(
        "seed",
        GENERATE_ROUTES,
        Integer(0, SEED_MAX),
        required=True,
        description=f"image i is the image of seed + i; seed + n - 1 <= {SEED_MAX}",
    ),
    Field("n", GENERATE_ROUTES, Integer(1, _n_max), default=1, check=_seed_plus_n),
    Field(
        "seed_a",
        INTERPOLATE,
        Integer(0, SEED_MAX),
        required=True,
        description="the first frame is this seed's image",
    ),
    Field(
        "seed_b",
        INTERPOLATE,
        Integer(0, SEED_MAX),
        required=True,
        description="the last frame is this seed's image",
    ),
    Field(
        "steps",
        INTERPOLATE,
        Integer(STEPS_MIN, steps_max),
        default=lambda s: min(STEPS_DEFAULT, steps_max(s)),
    ),
    Field("images", frozenset({"score"}), Files(), required=True),
    Field("model", IMAGE_ROUTES | {"score"}, ModelName(), doc_default=False),
    Field(
        "class",
        IMAGE_ROUTES | {"score"},
        ClassLabel(),
        default=NO_DEFAULT,
        description=(
            "class-conditional models only: the class index or name (GET /models lists them). "
            "Absent: image i gets the class its seed draws (contract/latents.py "
            "classes_for_seeds), so a seed always gives the same image; /interpolate keeps "
            "seed_a's class for the whole walk; /score judges each image against the class it "
            "fits best on average (logsumexp over classes)"
        ),
    ),
    Field(
        "truncation",
        IMAGE_ROUTES,
        Number(0, 1),
        default=1.0,
        description="the latent is scaled by it (truncation trick)",
    ),
    Field(
        "columns",
        frozenset({"generate_grid"}),
        Integer(1, _n_max),
        default=NO_DEFAULT,
        description="default ceil(sqrt(n)), capped at n",
    ),
    Field(
        "format",
        frozenset({"generate"}),
        Choice(GENERATE_FORMATS),
        default="png",
        description=(
            "png: base64 PNGs in JSON (lossless); webp: base64 WebPs in JSON, lossless unless "
            "quality is given; jpeg: base64 JPEGs in JSON; npy: no JSON, the body is one .npy "
            "file of the (n, H, W, C) uint8 pixels (application/x-npy), seeds in the X-Seed "
            "(first) and X-Count headers"
        ),
    ),
    Field(
        "format",
        frozenset({"generate_grid"}),
        Choice(GRID_FORMATS),
        default="png",
        description="the grid's file format; webp is lossless unless quality is given",
    ),
    Field(
        "quality",
        GENERATE_ROUTES,
        Integer(*QUALITY_RANGE),
        default=NO_DEFAULT,
        # Not refused with png or npy, which have none: the OpenAPI schema cannot say "only
        # with", and a request the schema calls valid must be accepted (the fuzz test checks).
        description=(
            f"the encoder's quality for webp (lossy; absent: lossless) and jpeg (absent: "
            f"{JPEG_QUALITY_DEFAULT}); png and npy have none and ignore it"
        ),
    ),
    Field("format", INTERPOLATE, Choice(tuple(FORMATS)), default="png"),
    Field("frame_ms", INTERPOLATE, Integer(*FRAME_MS_RANGE), default=FRAME_MS_DEFAULT),
    Field("scale", INTERPOLATE, Integer(1, SCALE_MAX), default=1),
    Field("bounce", INTERPOLATE, Boolean(), default=True),
)


@dataclass(frozen=True)
class _RouteRules:
    fields: tuple[Field, ...]
    required: tuple[Field, ...]
    names: frozenset[str]
    accepted: str  # for the unknown-field message


_RULES: dict[tuple[str, int], _RouteRules] = {}


def _rules(route: str) -> _RouteRules:
    # Keyed by the table's identity too, so a test (or a later change) that replaces FIELDS is
    # seen at once; the hot path pays one dict lookup.
    key = (route, id(FIELDS))
    rules = _RULES.get(key)
    if rules is None:
        own = tuple(f for f in FIELDS if route in f.routes)
        names = frozenset(f.name for f in own)
        rules = _RULES[key] = _RouteRules(
            own, tuple(f for f in own if f.required), names, ", ".join(sorted(names))
        )
    return rules


def route_fields(route: str) -> tuple[Field, ...]:
    """The fields of ``route``, in table order (from the current ``FIELDS``)."""
    return _rules(route).fields


def field_names(route: str) -> frozenset[str]:
    return _rules(route).names


# --- parsing -----------------------------------------------------------------------------------


def parse_json_object(body: bytes, route: str) -> dict[str, Any]:
    """THE JSON reader of every route: bad JSON, absurd nesting or numbers are a 400 ``bad_json``
    (never a 500), and the body must be an object."""
    try:
        data = json.loads(body)
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise bad_request("bad_json", f"body is not valid JSON ({exc})") from None
    except RecursionError:  # [[[[... a few thousand deep: json's C scanner recurses
        raise bad_request("bad_json", "body is nested too deeply") from None
    except ValueError as exc:  # an integer of more than 4300 digits (int_max_str_digits)
        raise bad_request("bad_json", f"body holds an unreadable number ({exc})") from None
    if not isinstance(data, dict):
        example = ROUTES_BY_NAME[route].example
        raise bad_request("bad_json", f"body must be a JSON object like {example}")
    return data


def check_fields(route: str, data: Mapping[str, Any], settings: Settings) -> dict[str, Any]:
    """Validate the fields of one request (JSON object or form) against ``route``'s rules; the
    result has every field's value (defaults filled in) except absent ones without a default."""
    rules = _rules(route)
    unknown = sorted(k for k in data if k not in rules.names)
    if unknown:
        raise invalid_field(unknown[0], f"unknown field {unknown[0]!r}; accepted: {rules.accepted}")
    for f in rules.required:
        if f.name not in data:
            raise invalid_field(f.name, f"{f.name} is required: {f.kind.wanted(settings)}")
    values: dict[str, Any] = {}
    for f in rules.fields:
        if f.name in data:
            value = f.kind.parse(f.name, data[f.name], settings)
        else:
            value = f.default_value(settings)
            if value is NO_DEFAULT:
                continue
        if f.check is not None:
            f.check(values, value)
        values[f.name] = value
    return values


def parse_json_fields(route: str, body: bytes, settings: Settings) -> dict[str, Any]:
    return check_fields(route, parse_json_object(body, route), settings)


# --- OpenAPI -----------------------------------------------------------------------------------


def request_schema(route: str, settings: Settings, context: SchemaContext) -> dict[str, Any]:
    """The body of ``route`` as an OpenAPI 3.0 schema, from the same rules ``check_fields``
    enforces (so a fuzzer's "valid" requests really are valid)."""
    properties: dict[str, Any] = {}
    for f in route_fields(route):
        prop = f.kind.schema(settings, context)
        if prop is None:
            continue
        default = f.default_value(settings)
        if f.doc_default and not f.required and default not in (NO_DEFAULT, None):
            prop["default"] = default
        if f.description:
            # The kind's own description (what this server's models accept) comes after.
            own = prop.get("description")
            prop["description"] = f"{f.description}. {own}" if own else f.description
        properties[f.name] = prop
    return {
        "type": "object",
        "required": [f.name for f in route_fields(route) if f.required],
        "additionalProperties": False,
        "properties": properties,
    }
