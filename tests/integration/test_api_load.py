"""Concurrency: batching really happens, and 64 clients x 10 requests see zero errors.

BentoML 1.4.30-1.4.40 recycle an internal proxy session every 100 requests and answer 500
"Connector is closed" under load; the service never goes through that proxy (its batcher is
in-process), and this test is the proof: it counts every non-200, 5xx included.
"""

from __future__ import annotations

import asyncio
import io
import time
from collections.abc import Awaitable, Callable

import httpx
import pytest
from PIL import Image
from prometheus_client.parser import text_string_to_metric_families
from server_process import Server

pytestmark = pytest.mark.integration

CLIENTS = 64
MakeRequest = Callable[[httpx.AsyncClient, int, int], Awaitable[httpx.Response]]
REQUESTS_EACH = 10


def _batch_stats(metrics_text: str, model: str, kind: str) -> tuple[float, float]:
    """(number of ORT calls, number of ORT calls with a single row) so far."""
    calls = single = 0.0
    for family in text_string_to_metric_families(metrics_text):
        if family.name != "gan_batch_size":
            continue
        for sample in family.samples:
            labels = sample.labels
            if labels.get("model") != model or labels.get("kind") != kind:
                continue
            if sample.name == "gan_batch_size_count":
                calls = sample.value
            elif sample.name == "gan_batch_size_bucket" and float(labels["le"]) == 1.0:
                single = sample.value
    return calls, single


async def _hammer(
    url: str, make_request: MakeRequest, clients: int, each: int
) -> tuple[list[int], float]:
    statuses: list[int] = []

    async def worker(index: int) -> None:
        # One client (one connection) per worker: a shared pool collapses at c=64.
        async with httpx.AsyncClient(base_url=url, timeout=60.0) as client:
            for k in range(each):
                try:
                    r = await make_request(client, index, k)
                    statuses.append(r.status_code)
                except httpx.HTTPError:
                    statuses.append(-1)

    start = time.perf_counter()
    await asyncio.gather(*(worker(i) for i in range(clients)))
    return statuses, time.perf_counter() - start


def test_64_clients_x_10_generate_requests_zero_errors_and_real_batches(server: Server) -> None:
    before = _batch_stats(httpx.get(f"{server.url}/metrics").text, "tiny-a", "generate")

    async def generate(client: httpx.AsyncClient, index: int, k: int) -> httpx.Response:
        n = 16 if (index + k) % 8 == 0 else 1  # n=16 and n=1 requests share batches
        return await client.post("/generate", json={"seed": index * 1000 + k, "n": n})

    statuses, seconds = asyncio.run(_hammer(server.url, generate, CLIENTS, REQUESTS_EACH))
    errors = [s for s in statuses if s != 200]
    assert len(statuses) == CLIENTS * REQUESTS_EACH
    assert errors == [], f"{len(errors)} errors: {sorted(set(errors))}"

    after = _batch_stats(httpx.get(f"{server.url}/metrics").text, "tiny-a", "generate")
    calls, single = after[0] - before[0], after[1] - before[1]
    print(
        f"\n{len(statuses)} requests in {seconds:.2f} s; {calls:.0f} ORT calls, {single:.0f} of one row"
    )
    assert calls < CLIENTS * REQUESTS_EACH, "no two requests ever shared an ORT call"
    assert calls - single > 0, "the batch-size histogram shows no batch > 1"


def test_concurrent_score_requests_are_batched_too(server: Server) -> None:
    buffer = io.BytesIO()
    Image.new("L", (28, 28), 50).save(buffer, format="PNG")
    png = buffer.getvalue()
    before = _batch_stats(httpx.get(f"{server.url}/metrics").text, "tiny-a", "score")

    async def score(client: httpx.AsyncClient, index: int, k: int) -> httpx.Response:
        return await client.post("/score", files=[("images", (f"{index}-{k}.png", png))])

    statuses, _ = asyncio.run(_hammer(server.url, score, 32, 4))
    assert set(statuses) == {200}
    after = _batch_stats(httpx.get(f"{server.url}/metrics").text, "tiny-a", "score")
    assert after[0] - before[0] > after[1] - before[1], "no score batch > 1"
