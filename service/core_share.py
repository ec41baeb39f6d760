"""Idle cores for a lone big request: split its batch when the other workers have nothing to do.

On CPU the service runs one worker per core with one ONNX Runtime thread each (settings.py):
right under load, where every core has its own stream of batches. A single client asking for
16 or 64 images at a time leaves all but one core idle, since one connection lives in one worker.
Such a batch is cut into contiguous slices run at once on the worker's split threads (ORT
sessions are safe to run from several threads, and release the GIL); the rows are independent,
so image ``i`` of seed ``s`` is the image of ``s + i`` whichever slice computed it.

Splitting only pays when the other cores are idle: with every worker busy it adds threads to
cores that have none to spare, and the smaller slices use a core less well than one batch
(BENCHMARKS.md). So every worker of one server marks in a shared board (one byte per worker, in
a small file in the server's Prometheus multiprocess folder, which ``bentoml serve`` makes fresh
at each start) whether it has a batch running, and a batch is split only between itself and the
idle ones. The board is read without locks: a stale byte costs one batch split or not split.
"""

from __future__ import annotations

import contextlib
import itertools
import mmap
import os
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np

BOARD_FILE = "gan-busy-workers.bin"
# Below this many rows a slice costs about as much as the whole batch (ONNX Runtime's fixed cost
# per run dominates): 16 rows of the MNIST generator took 4.0 ms in one thread and 3.0 ms as two
# slices of 8 at once; 64 rows 15.7 ms vs 8.7 ms (this module's benchmark in BENCHMARKS.md).
MIN_SLICE_ROWS = 8


class BusyBoard:
    """One byte per worker: 1 while that worker runs a batch. ``slot`` is this worker's byte."""

    def __init__(self, buffer: bytearray | mmap.mmap, slot: int) -> None:
        if not 0 <= slot < len(buffer):
            raise ValueError(f"slot {slot} outside a board of {len(buffer)} workers")
        self._buffer = buffer
        self.slot = slot
        self.size = len(buffer)
        self._running = 0  # batches of this worker running now (one per batcher at most)

    @classmethod
    def private(cls) -> BusyBoard:
        """A board of one worker (tests, one process): it never sees anyone else busy."""
        return cls(bytearray(1), 0)

    @classmethod
    def shared(cls, folder: Path, workers: int, worker_index: int) -> BusyBoard:
        """The board of the server whose workers share ``folder``; ``worker_index`` is 1-based
        (``bentoml.server_context.worker_index``)."""
        path = folder / BOARD_FILE
        fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o600)
        try:
            if os.fstat(fd).st_size < workers:
                os.ftruncate(fd, workers)  # zeros: nobody busy yet
            buffer = mmap.mmap(fd, workers)
        finally:
            os.close(fd)  # the mapping keeps the file
        return cls(buffer, worker_index - 1)

    @classmethod
    def for_this_worker(cls, workers: int) -> BusyBoard | None:
        """A private board for a lone worker, the shared one under ``bentoml serve`` with
        several; None where several workers run but their board cannot be reached (then no
        worker may assume the others idle)."""
        if workers <= 1:
            return cls.private()
        folder = os.environ.get("PROMETHEUS_MULTIPROC_DIR")
        index = _worker_index()
        if not folder or index is None or not 1 <= index <= workers:
            return None
        try:
            return cls.shared(Path(folder), workers, index)
        except OSError:
            return None

    @contextlib.contextmanager
    def running(self) -> Iterator[None]:
        self._running += 1
        self._buffer[self.slot] = 1
        try:
            yield
        finally:
            self._running -= 1
            if self._running == 0:
                self._buffer[self.slot] = 0

    def idle_others(self) -> int:
        """How many other workers have no batch running (a snapshot)."""
        return sum(1 for i in range(self.size) if i != self.slot and self._buffer[i] == 0)


def _worker_index() -> int | None:
    try:
        import bentoml
    except ImportError:
        return None
    index = bentoml.server_context.worker_index
    return int(index) if index is not None else None


def slices(n: int, parts: int) -> list[slice]:
    """``n`` rows as at most ``parts`` contiguous slices of at least ``MIN_SLICE_ROWS`` rows."""
    parts = max(1, min(parts, n // MIN_SLICE_ROWS))
    bounds = [n * k // parts for k in range(parts + 1)]
    return [slice(a, b) for a, b in itertools.pairwise(bounds)]


class BatchSplitter:
    """Runs ``run(batch)`` as slices on idle cores (see the module docstring).

    ``threads``: the most slices one batch is cut into (1 never splits). Called from the
    batcher's thread; the first slice runs there, the others in this splitter's pool.
    """

    def __init__(self, threads: int, board: BusyBoard | None) -> None:
        if threads < 1:
            raise ValueError(f"threads must be >= 1, got {threads}")
        if board is None:  # other workers we cannot see: never take their cores
            threads, board = 1, BusyBoard.private()
        self.threads = threads
        self.board = board
        self._pool = ThreadPoolExecutor(threads - 1, "ort-split") if threads > 1 else None

    def parts_for(self, rows: int) -> int:
        if self._pool is None or rows < 2 * MIN_SLICE_ROWS:
            return 1
        if self.board.size == 1:  # the only worker: every core is its own
            return self.threads
        return min(self.threads, 1 + self.board.idle_others())

    def run(
        self, run: Callable[[np.ndarray], np.ndarray], batch: np.ndarray
    ) -> list[tuple[slice, np.ndarray | Exception]]:
        """Each slice of the batch with ``run``'s output for it, or what ``run`` raised. The
        first slice runs in the calling thread, the others at the same time in the pool; this
        worker counts as busy on the board until all are done."""
        with self.board.running():
            parts = slices(len(batch), self.parts_for(len(batch)))
            futures = (
                []
                if self._pool is None
                else [self._pool.submit(run, batch[part]) for part in parts[1:]]
            )
            results: list[np.ndarray | Exception] = [_outcome(run, batch[parts[0]])]
            for future in futures:
                try:
                    results.append(future.result())
                except Exception as exc:
                    results.append(exc)
        return list(zip(parts, results, strict=True))

    def close(self) -> None:
        if self._pool is not None:
            self._pool.shutdown(wait=False, cancel_futures=True)


def _outcome(run: Callable[[np.ndarray], np.ndarray], rows: np.ndarray) -> np.ndarray | Exception:
    try:
        return run(rows)
    except Exception as exc:
        return exc
