"""service/bento_internals.py: every hook into BentoML's private code, checked against the installed
BentoML. This file fails loudly on any BentoML version but the one the module was written for:
read the new version's code for each hook below, update the module, then WRITTEN_FOR."""

from __future__ import annotations

import inspect
from pathlib import Path
from typing import Any

import bentoml
import pytest
from starlette.applications import Starlette
from starlette.routing import Mount, Route

from service import bento_internals
from service.bento_internals import (
    IN_PROGRESS_LABELS,
    REQUEST_DURATION_DOC,
    REQUEST_IN_PROGRESS_DOC,
    REQUEST_LABELS,
    REQUEST_METRICS_NAMESPACE,
    REQUEST_TOTAL_DOC,
)


def test_written_for_the_installed_bentoml() -> None:
    assert bentoml.__version__ == bento_internals.WRITTEN_FOR, (
        f"BentoML {bentoml.__version__} is installed, service/bento_internals.py was written "
        f"for {bento_internals.WRITTEN_FOR}: re-check every hook in it (this file lists them)"
    )
    assert bento_internals.warn_if_unknown_version()


def test_the_worker_app_factory_and_its_routes() -> None:
    from _bentoml_impl.server.app import ServiceAppFactory

    assert callable(ServiceAppFactory.__call__)
    source = inspect.getsource(ServiceAppFactory)
    # declared APIs are routed by name (what unroute_declared_apis looks for), and mounted
    # ASGI apps come after BentoML's own routes (what the fall-through to ours relies on)
    assert 'Route(route_path, api_endpoint, methods=["POST"], name=name)' in source
    assert "app.router.routes.append(PassiveMount(path, mount_app, name=name))" in source
    assert inspect.signature(ServiceAppFactory.__call__).parameters.keys() == {"self"}


def test_unroute_takes_only_the_declared_apis() -> None:
    async def endpoint(request: Any) -> Any:
        raise AssertionError

    app = Starlette(
        routes=[
            Route("/generate", endpoint, methods=["POST"], name="generate"),
            Route("/livez", endpoint, name="livez"),
            Mount("/", app=Starlette(), name="ours"),
        ]
    )
    assert bento_internals.unroute_declared_apis(app, ["generate", "score"]) == ["/generate"]
    assert [getattr(r, "name", None) for r in app.router.routes] == ["livez", "ours"]


def test_the_request_metrics_we_write_are_bentomls() -> None:
    """ServiceRequestMetrics writes BentoML's series by name, help and labels: read them off
    RunnerTrafficMetricsMiddleware itself."""
    from bentoml._internal.configuration.containers import BentoMLContainer
    from bentoml._internal.server.http.instruments import RunnerTrafficMetricsMiddleware

    made: dict[str, dict[str, Any]] = {}

    class Recorder:
        def _make(self, kind: str, **kwargs: Any) -> Any:
            made[kwargs["name"]] = {"kind": kind, **kwargs}

            class Child:
                def labels(self, **labels: Any) -> Any:
                    return self

            return Child()

        def Counter(self, **kwargs: Any) -> Any:
            return self._make("counter", **kwargs)

        def Histogram(self, **kwargs: Any) -> Any:
            return self._make("histogram", **kwargs)

        def Gauge(self, **kwargs: Any) -> Any:
            return self._make("gauge", **kwargs)

        def Summary(self, **kwargs: Any) -> Any:
            return self._make("summary", **kwargs)

    middleware = RunnerTrafficMetricsMiddleware(app=None, namespace=REQUEST_METRICS_NAMESPACE)
    middleware._setup(metrics_client=Recorder(), duration_buckets=(1.0,))
    # (the namespace bentoml serve configures: checked in a real scrape, test_api_bentoml_native)
    assert callable(BentoMLContainer.api_server_config.metrics.namespace.get)
    expected = {
        "request_total": ("counter", REQUEST_TOTAL_DOC, REQUEST_LABELS),
        "request_duration_seconds": ("histogram", REQUEST_DURATION_DOC, REQUEST_LABELS),
        "request_in_progress": ("gauge", REQUEST_IN_PROGRESS_DOC, IN_PROGRESS_LABELS),
    }
    for name, (kind, doc, labels) in expected.items():
        got = made[name]
        assert (got["kind"], got["documentation"], tuple(got["labelnames"])) == (
            kind,
            doc,
            labels,
        ), name
    assert made["request_in_progress"]["multiprocess_mode"] == "livesum"


def test_server_context_has_the_label_values() -> None:
    from bentoml._internal.context import server_context

    for name in ("bento_name", "bento_version", "service_name", "worker_index"):
        assert hasattr(server_context, name), name


def test_the_arbiter_and_its_names() -> None:
    from _bentoml_impl.server import serving
    from bentoml._internal.utils.circus import Arbiter

    assert callable(Arbiter.start)
    assert serving.API_SERVER_NAME == bento_internals.API_SOCKET
    assert f'name="{bento_internals.SERVICE_WATCHER}"' in inspect.getsource(serving)


def test_the_index_pages_files_are_found() -> None:
    static = bento_internals.bento_static_paths()
    assert "/static_content/swagger-initializer.js" in static
    assert all(p.startswith(("/assets/", "/static_content/")) for p in static)


@pytest.mark.parametrize("attribute", ["ServiceAppFactory"])
def test_hook_refuses_quietly_without_the_factory(
    monkeypatch: pytest.MonkeyPatch, attribute: str
) -> None:
    import _bentoml_impl.server.app as module

    monkeypatch.delattr(module, attribute)
    assert not bento_internals.hook_worker_app(object(), lambda app: app)


PROBE = r"""
import asyncio, json, sys
from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.multiprocess import MultiProcessCollector
from service import bento_internals

DELAYS = [0.0, 0.002, 0.02, 0.02, 0.3]
clock = iter(x for d in DELAYS for x in (100.0, 100.0 + d))
bento_internals.time.perf_counter = lambda: next(clock)  # exact, repeatable durations


async def app(scope, receive, send):
    await send({"type": "http.response.start", "status": 200 if scope["path"] != "/bad" else 400})
    await send({"type": "http.response.body", "body": b"x"})


async def main():
    async def ignore(message): pass
    wrapped = bento_internals.ServiceRequestMetrics(
        app, lambda p: p if p != "/made-up" else None, flush_s=0.01
    )
    for path in ["/generate", "/generate", "/bad", "/generate", "/made-up", "/generate"]:
        await wrapped({"type": "http", "path": path}, None, ignore)
    await asyncio.sleep(0.1)  # the scheduled flush

asyncio.run(main())
registry = CollectorRegistry()
MultiProcessCollector(registry)
print(generate_latest(registry).decode())
"""


def test_fast_path_writes_bentomls_series(tmp_path: Path) -> None:
    """Counts, sums and buckets in BentoML's multiprocess series, batched per flush, as
    per-request observe() calls would have left them; an uncounted path leaves nothing."""
    import os
    import subprocess
    import sys

    from prometheus_client.parser import text_string_to_metric_families

    env = {**os.environ, "PROMETHEUS_MULTIPROC_DIR": str(tmp_path)}
    out = subprocess.run(
        [sys.executable, "-c", PROBE], env=env, capture_output=True, text=True, timeout=60
    )
    assert out.returncode == 0, out.stderr[-3000:]
    samples = {
        (
            s.name,
            s.labels.get("endpoint"),
            s.labels.get("http_response_code"),
            s.labels.get("le"),
        ): s.value
        for family in text_string_to_metric_families(out.stdout)
        for s in family.samples
    }
    names = {name for name, *_ in samples}
    prefix = next(n for n in names if n.endswith("request_total")).removesuffix("request_total")
    total = f"{prefix}request_total"
    assert samples[(total, "/generate", "200", None)] == 4
    assert samples[(total, "/bad", "400", None)] == 1
    assert not any(endpoint == "/made-up" for _, endpoint, _, _ in samples)
    duration = f"{prefix}request_duration_seconds"
    # the 4 /generate durations: 0.0, 0.002, 0.02 and 0.3 s (the /bad one took the other 0.02)
    assert samples[(f"{duration}_count", "/generate", "200", None)] == 4
    assert abs(samples[(f"{duration}_sum", "/generate", "200", None)] - 0.322) < 1e-9
    buckets = {
        float(le): v
        for (name, endpoint, code, le), v in samples.items()
        if name == f"{duration}_bucket" and endpoint == "/generate"
    }
    for le, cumulative in buckets.items():
        assert cumulative == sum(1 for d in (0.0, 0.002, 0.02, 0.3) if d <= le), le
    assert samples[(f"{prefix}request_in_progress", "/generate", None, None)] == 0
