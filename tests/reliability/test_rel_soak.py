"""The CI variant of the soak (bench/soak.py; the full one is ``python bench/soak.py
--duration 180 --concurrency 64``, figures in docs/reliability.md): 64 clients mixing /generate,
/generate_grid, /score and deliberately bad requests for ~15 s against the shared server (API
key on). Zero failed requests; the server's RSS after a short warm-up grows by less than 10%."""

from __future__ import annotations

import asyncio
import importlib.util
import os
import sys
from pathlib import Path
from types import ModuleType

import pytest
from integration.server_process import Server
from rel_helpers import AUTH

pytestmark = [pytest.mark.integration, pytest.mark.slow]

SOAK = Path(__file__).resolve().parents[2] / "bench" / "soak.py"
DURATION_S = float(os.environ.get("GAN_SOAK_CI_SECONDS", "15"))


def _soak_module() -> ModuleType:
    spec = importlib.util.spec_from_file_location("gan_bench_soak", SOAK)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up by name
    spec.loader.exec_module(module)
    return module


def test_short_soak_has_no_failures_and_flat_memory(rel_server: Server) -> None:
    soak = _soak_module()
    result = asyncio.run(
        soak.soak(
            rel_server.url,
            rel_server.process.pid,
            duration_s=DURATION_S,
            concurrency=64,
            warmup_s=DURATION_S / 3,
            headers=AUTH,
            max_requests=200_000,
        )
    )
    print(
        f"\nsoak {DURATION_S:.0f} s x 64 clients: {result.requests} requests "
        f"({result.requests_per_s}/s), {result.failures} failures, RSS {result.rss_mb} "
        f"({result.rss_growth_pct:+.2f}%), latency {result.latency_ms}, "
        f"load {result.machine['load_average_after']}"
    )
    assert result.failures == 0, result.failure_samples
    assert result.requests >= 300, result
    assert set(result.by_route) >= {"generate", "score", "generate_grid"}
    assert result.rss_growth_pct < 10.0, result.rss_mb
