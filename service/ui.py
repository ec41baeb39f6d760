"""The web page at ``/ui``: plain HTML, CSS and JavaScript from ``service/static/``.

No build step and nothing from a CDN: the browser only talks to this server (``/models``,
``/generate``, ``/interpolate``, ``/score``). ``/ui`` redirects to ``/ui/`` so that the page's
relative links (``app.js``, ``style.css``) resolve under the mount.
"""

from __future__ import annotations

from pathlib import Path

from starlette.requests import Request
from starlette.responses import RedirectResponse, Response
from starlette.routing import BaseRoute, Mount, Route
from starlette.staticfiles import StaticFiles
from starlette.types import Scope

STATIC_DIR = Path(__file__).resolve().parent / "static"
UI_PATH = "/ui"


class _UiFiles(StaticFiles):
    """StaticFiles that asks browsers to revalidate (ETag) so a redeploy shows up at once."""

    async def get_response(self, path: str, scope: Scope) -> Response:
        response = await super().get_response(path, scope)
        response.headers.setdefault("Cache-Control", "no-cache")
        response.headers.setdefault("X-Content-Type-Options", "nosniff")
        return response


async def _to_slash(request: Request) -> Response:
    return RedirectResponse(f"{UI_PATH}/", status_code=307)


def ui_routes() -> list[BaseRoute]:
    """Routes to add to the app: ``GET /ui`` (redirect) and the files under ``/ui/``."""
    return [
        Route(UI_PATH, _to_slash, methods=["GET", "HEAD"]),
        Mount(UI_PATH, app=_UiFiles(directory=STATIC_DIR, html=True), name="ui"),
    ]


def public_paths() -> frozenset[str]:
    """The page's own paths: static files with no data in them, safe to serve without an API key
    (the page then asks for the key when ``/models`` answers 401). Exact paths, for
    ``ApiKeyMiddleware``'s ``open_paths``."""
    files = {f"{UI_PATH}/{p.name}" for p in STATIC_DIR.iterdir() if p.is_file()}
    return frozenset({UI_PATH, f"{UI_PATH}/", *files})
