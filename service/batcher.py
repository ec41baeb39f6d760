"""An in-process asyncio micro-batcher: rows from concurrent requests share one ONNX Runtime call.

Why our own and not ``@bentoml.api(batchable=True)``: BentoML's batching is reached through
``self.to_async``, an internal HTTP proxy whose session is recycled every 100 requests in
1.4.30-1.4.40 (500 "Connector is closed" under load), and it adds a serialisation hop per request.
Here a request's rows go straight into a queue in the same event loop.

Policy (continuous batching): one worker task per (model, kind) takes everything queued, up to
``max_batch_size`` rows, runs it in its own thread (ORT releases the GIL) and, while that runs,
new rows queue up for the next call. So an idle server adds no wait (c=1 latency stays low) and
a busy one batches by itself. ``max_latency_s`` > 0 additionally holds a non-full batch for up to
that long after its first row arrived, trading latency for bigger batches.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections import deque
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor

import numpy as np

from service.core_share import BatchSplitter
from service.limits import heavy_executor

RunBatch = Callable[[np.ndarray], np.ndarray]
OnBatch = Callable[[int, float], None]


class RowsFailed(Exception):
    """Raised by ``run`` when only some rows failed: ``output`` for all rows, ``failed`` a
    boolean mask of the bad ones. Requests whose rows are all good get their results; the
    others get ``error``, so one bad input never fails the requests it shared a batch with."""

    def __init__(self, output: np.ndarray, failed: np.ndarray, error: Exception) -> None:
        super().__init__(str(error))
        self.output = output
        self.failed = failed
        self.error = error


def merged(results: list[tuple[slice, np.ndarray | Exception]]) -> np.ndarray:
    """One batch's output from its slices' (``core_share.BatchSplitter``): a slice that failed
    outright fails the batch, as the unsplit run would have; slices with some bad rows give one
    ``RowsFailed`` over the whole batch, so only the requests owning bad rows fail."""
    for _, result in results:
        if isinstance(result, Exception) and not isinstance(result, RowsFailed):
            raise result
    if len(results) == 1:
        only = results[0][1]
        if isinstance(only, Exception):
            raise only
        return only
    outputs, failed, errors = [], [], []
    for part, result in results:
        if isinstance(result, RowsFailed):
            outputs.append(result.output)
            failed.append(result.failed)
            errors.append(result.error)
        else:
            assert isinstance(result, np.ndarray)
            outputs.append(result)
            failed.append(np.zeros(part.stop - part.start, dtype=bool))
    out = np.concatenate(outputs)
    if errors:
        raise RowsFailed(out, np.concatenate(failed), errors[0])
    return out


class _Item:
    __slots__ = ("arrived", "future", "rows")

    def __init__(self, rows: np.ndarray, future: asyncio.Future[np.ndarray]) -> None:
        self.rows = rows
        self.future = future
        self.arrived = time.perf_counter()


class MicroBatcher:
    """``await submit(rows)`` returns ``run(rows)`` computed as part of a shared batch.

    ``run`` maps ``(B, ...)`` to ``(B, ...)`` row by row (row i of the output belongs to row i of
    the input); the batcher concatenates items along axis 0 and slices the result back.
    """

    def __init__(
        self,
        name: str,
        run: RunBatch,
        *,
        max_batch_size: int,
        max_latency_s: float = 0.0,
        on_batch: OnBatch | None = None,
        low_priority: bool = False,
        splitter: BatchSplitter | None = None,
    ) -> None:
        if max_batch_size < 1:
            raise ValueError(f"max_batch_size must be >= 1, got {max_batch_size}")
        self.name = name
        self._run = run
        self._max_batch_size = max_batch_size
        self._max_latency_s = max_latency_s
        self._on_batch = on_batch
        self._splitter = splitter
        self._queue: deque[_Item] = deque()
        self._queued_rows = 0
        self._wakeup = asyncio.Event()
        self._full = asyncio.Event()
        self._executor = (
            heavy_executor(1, f"ort-{name}")
            if low_priority
            else ThreadPoolExecutor(max_workers=1, thread_name_prefix=f"ort-{name}")
        )
        self._worker: asyncio.Task[None] | None = None
        self._closed = False

    async def submit(self, rows: np.ndarray) -> np.ndarray:
        if self._closed:
            raise RuntimeError(f"batcher {self.name} is closed")
        size = self._max_batch_size
        if rows.shape[0] <= size:
            return await self._enqueue(rows)
        parts = await asyncio.gather(
            *(self._enqueue(rows[i : i + size]) for i in range(0, rows.shape[0], size))
        )
        return np.concatenate(parts)

    async def aclose(self) -> None:
        self._closed = True
        if self._worker is not None:
            self._worker.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._worker
        for item in self._queue:
            if not item.future.done():
                item.future.set_exception(RuntimeError(f"batcher {self.name} closed"))
        self._queue.clear()
        self._executor.shutdown(wait=False, cancel_futures=True)

    def _enqueue(self, rows: np.ndarray) -> asyncio.Future[np.ndarray]:
        loop = asyncio.get_running_loop()
        future: asyncio.Future[np.ndarray] = loop.create_future()
        self._queue.append(_Item(rows, future))
        self._queued_rows += rows.shape[0]
        if self._queued_rows >= self._max_batch_size:
            self._full.set()
        self._wakeup.set()
        if self._worker is None:
            self._worker = loop.create_task(self._work(), name=f"batcher-{self.name}")
        return future

    def _take_batch(self) -> list[_Item]:
        taken: list[_Item] = []
        rows = 0
        while self._queue:
            item = self._queue[0]
            n = item.rows.shape[0]
            if taken and rows + n > self._max_batch_size:
                break
            self._queue.popleft()
            self._queued_rows -= n
            if item.future.done():  # the client went away: don't compute for nobody
                continue
            taken.append(item)
            rows += n
        if self._queued_rows < self._max_batch_size:
            self._full.clear()
        return taken

    async def _hold_for_company(self) -> None:
        deadline = self._queue[0].arrived + self._max_latency_s
        while self._queued_rows < self._max_batch_size:
            remaining = deadline - time.perf_counter()
            if remaining <= 0:
                return
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._full.wait(), remaining)

    def _timed_run(self, batch: np.ndarray) -> tuple[np.ndarray, float, RowsFailed | None]:
        start = time.perf_counter()
        try:
            if self._splitter is None:
                out, partial = self._run(batch), None
            else:
                out, partial = merged(self._splitter.run(self._run, batch)), None
        except RowsFailed as exc:
            out, partial = exc.output, exc
        return out, time.perf_counter() - start, partial

    async def _work(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            if not self._queue:
                self._wakeup.clear()
                await self._wakeup.wait()
                continue
            if self._max_latency_s > 0:
                await self._hold_for_company()
            items = self._take_batch()
            if not items:
                continue
            batch = items[0].rows if len(items) == 1 else np.concatenate([i.rows for i in items])
            try:
                out, seconds, partial = await loop.run_in_executor(
                    self._executor, self._timed_run, batch
                )
                if out.shape[0] != batch.shape[0]:
                    raise RuntimeError(
                        f"batcher {self.name}: {batch.shape[0]} rows in, {out.shape[0]} out"
                    )
            except Exception as exc:
                for item in items:
                    if not item.future.done():
                        item.future.set_exception(exc)
                continue
            if self._on_batch is not None:
                self._on_batch(batch.shape[0], seconds)
            start = 0
            for item in items:
                stop = start + item.rows.shape[0]
                if not item.future.done():
                    if partial is not None and partial.failed[start:stop].any():
                        item.future.set_exception(partial.error)
                    else:
                        item.future.set_result(out[start:stop])
                start = stop
