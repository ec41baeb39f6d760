"""The service's own Starlette app (service/http_app.py) under plain uvicorn, without BentoML.

Only a measuring instrument: the difference between this and ``bentoml serve`` at the same load
is what BentoML's server stack (its middlewares: Prometheus request metrics, OpenTelemetry,
context, timeout; its circus arbiter) costs per request. Same settings (GAN_* variables), same
models, same engine and batcher, uvicorn with httptools + uvloop as under BentoML.

usage: GAN_MODELS_DIR=/tmp/bench/models python bench/bare_server.py --port 3200
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import uvicorn

from service.app import build_app
from service.model_store import ModelStore
from service.settings import Settings


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--port", type=int, default=3200)
    args = ap.parse_args()
    settings = Settings.from_env()
    store = ModelStore.load(settings)
    app = build_app(settings, store)
    uvicorn.run(
        app,
        host="127.0.0.1",
        port=args.port,
        loop="uvloop",
        http="httptools",
        access_log=False,
        log_level="warning",
        lifespan="on",
    )


if __name__ == "__main__":
    main()
