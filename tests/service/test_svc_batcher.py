from __future__ import annotations

import asyncio
import threading
import time

import numpy as np
import pytest

from service.batcher import MicroBatcher, RowsFailed


class Recorder:
    def __init__(self, delay: float = 0.0) -> None:
        self.sizes: list[int] = []
        self.delay = delay
        self.threads: set[str] = set()

    def run(self, batch: np.ndarray) -> np.ndarray:
        self.threads.add(threading.current_thread().name)
        time.sleep(self.delay)
        return batch * 2

    def observe(self, rows: int, seconds: float) -> None:
        self.sizes.append(rows)


def _rows(start: int, n: int) -> np.ndarray:
    return np.arange(start, start + n, dtype=np.float64)[:, None]


async def _submit_all(batcher: MicroBatcher, items: list[np.ndarray]) -> list[np.ndarray]:
    return list(await asyncio.gather(*(batcher.submit(x) for x in items)))


def test_concurrent_requests_share_batches_and_get_their_own_rows() -> None:
    rec = Recorder(delay=0.01)

    async def main() -> list[np.ndarray]:
        batcher = MicroBatcher("t", rec.run, max_batch_size=64, on_batch=rec.observe)
        items = [_rows(100 * i, n) for i, n in enumerate([16, 1, 3, 1, 7, 1, 1, 2] * 4)]
        outs = await _submit_all(batcher, items)
        await batcher.aclose()
        for item, out in zip(items, outs, strict=True):
            assert (out == item * 2).all()
        return outs

    asyncio.run(main())
    assert sum(rec.sizes) == 32 * 4
    assert max(rec.sizes) > 1 and len(rec.sizes) < 32
    assert all(size <= 64 for size in rec.sizes)
    assert all(name.startswith("ort-t") for name in rec.threads)  # off the event loop


def test_max_batch_size_is_respected_and_large_items_are_split() -> None:
    rec = Recorder()

    async def main() -> np.ndarray:
        batcher = MicroBatcher("t", rec.run, max_batch_size=4, on_batch=rec.observe)
        out = await batcher.submit(_rows(0, 10))
        await batcher.aclose()
        return out

    out = asyncio.run(main())
    assert (out[:, 0] == np.arange(10) * 2).all()
    assert max(rec.sizes) <= 4 and sum(rec.sizes) == 10


def test_idle_batcher_does_not_wait() -> None:
    rec = Recorder()

    async def main() -> float:
        batcher = MicroBatcher("t", rec.run, max_batch_size=64, max_latency_s=0.0)
        await batcher.submit(_rows(0, 1))
        start = time.perf_counter()
        await batcher.submit(_rows(0, 1))
        elapsed = time.perf_counter() - start
        await batcher.aclose()
        return elapsed

    assert asyncio.run(main()) < 0.05


def test_max_latency_holds_a_batch_for_company() -> None:
    rec = Recorder()

    async def main() -> None:
        batcher = MicroBatcher(
            "t", rec.run, max_batch_size=64, max_latency_s=0.05, on_batch=rec.observe
        )

        async def late(delay: float) -> np.ndarray:
            await asyncio.sleep(delay)
            return await batcher.submit(_rows(0, 1))

        await asyncio.gather(late(0.0), late(0.01), late(0.02))
        await batcher.aclose()

    asyncio.run(main())
    assert rec.sizes == [3]


def test_errors_reach_every_caller_of_the_batch_and_the_batcher_survives() -> None:
    calls = {"n": 0}

    def flaky(batch: np.ndarray) -> np.ndarray:
        calls["n"] += 1
        if calls["n"] == 1:
            raise RuntimeError("boom")
        return batch

    async def main() -> None:
        batcher = MicroBatcher("t", flaky, max_batch_size=8)
        with pytest.raises(RuntimeError, match="boom"):
            await batcher.submit(_rows(0, 2))
        assert (await batcher.submit(_rows(5, 1)) == 5).all()
        await batcher.aclose()
        with pytest.raises(RuntimeError, match="closed"):
            await batcher.submit(_rows(0, 1))

    asyncio.run(main())


def test_cancelled_requests_are_not_computed() -> None:
    rec = Recorder(delay=0.05)

    async def main() -> None:
        batcher = MicroBatcher("t", rec.run, max_batch_size=8, on_batch=rec.observe)
        first = asyncio.ensure_future(batcher.submit(_rows(0, 1)))
        await asyncio.sleep(0.01)  # first is running; the next two wait in the queue
        doomed = asyncio.ensure_future(batcher.submit(_rows(1, 1)))
        kept = asyncio.ensure_future(batcher.submit(_rows(2, 1)))
        await asyncio.sleep(0)
        doomed.cancel()
        await first
        assert (await kept == 4).all()
        await batcher.aclose()

    asyncio.run(main())
    assert rec.sizes == [1, 1]


def test_rows_that_fail_fail_only_their_own_request() -> None:
    """A run that flags some rows (RowsFailed) fails the requests owning them; the requests that
    shared the batch get their results."""

    def run(batch: np.ndarray) -> np.ndarray:
        time.sleep(0.02)
        out = batch * 2
        bad = batch[:, 0] < 0
        if bad.any():
            raise RowsFailed(out, bad, ValueError("negative row"))
        return out

    sizes: list[int] = []

    async def main() -> list[object]:
        batcher = MicroBatcher(
            "t", run, max_batch_size=64, on_batch=lambda rows, s: sizes.append(rows)
        )
        first = asyncio.ensure_future(batcher.submit(_rows(0, 1)))
        await asyncio.sleep(0.005)  # the first batch runs; the rest queue into one batch
        items = [_rows(10, 3), np.array([[1.0], [-1.0]]), _rows(20, 2)]
        outs = await asyncio.gather(*(batcher.submit(x) for x in items), return_exceptions=True)
        await first
        await batcher.aclose()
        return outs

    good, bad, other = asyncio.run(main())
    assert sizes == [1, 7]  # the three shared one batch
    assert isinstance(bad, ValueError)
    assert isinstance(good, np.ndarray) and (good == _rows(10, 3) * 2).all()
    assert isinstance(other, np.ndarray) and (other == _rows(20, 2) * 2).all()
