"""Splitting a lone big batch across idle cores (service/core_share.py) and merging it back."""

from __future__ import annotations

import asyncio
import io
import itertools
import threading
import time
from pathlib import Path

import httpx
import numpy as np
import pytest
from fixtures.in_process import serve
from prometheus_client import CollectorRegistry

from service.batcher import MicroBatcher, RowsFailed, merged
from service.core_share import MIN_SLICE_ROWS, BatchSplitter, BusyBoard, slices
from service.settings import Settings


class Recorder:
    def __init__(self, delay: float = 0.0) -> None:
        self.calls: list[tuple[int, str]] = []
        self.delay = delay
        self.lock = threading.Lock()

    def run(self, rows: np.ndarray) -> np.ndarray:
        with self.lock:
            self.calls.append((len(rows), threading.current_thread().name))
        time.sleep(self.delay)
        return rows * 2


def test_slices_are_contiguous_cover_every_row_and_respect_the_minimum() -> None:
    for n in range(1, 70):
        for parts in (1, 2, 3, 4):
            got = slices(n, parts)
            assert got[0].start == 0 and got[-1].stop == n
            assert all(a.stop == b.start for a, b in itertools.pairwise(got))
            if len(got) > 1:
                assert min(s.stop - s.start for s in got) >= MIN_SLICE_ROWS
            assert len(got) <= parts
    assert len(slices(2 * MIN_SLICE_ROWS - 1, 2)) == 1
    assert len(slices(2 * MIN_SLICE_ROWS, 2)) == 2


def test_workers_of_one_server_see_each_other_on_the_shared_board(tmp_path: Path) -> None:
    one = BusyBoard.shared(tmp_path, 3, 1)
    two = BusyBoard.shared(tmp_path, 3, 2)
    assert one.idle_others() == 2 and two.idle_others() == 2
    with one.running():
        assert two.idle_others() == 1
        with one.running():  # two batchers of one worker: busy until both are done
            pass
        assert two.idle_others() == 1
    assert two.idle_others() == 2
    with pytest.raises(ValueError, match="slot 3"):
        BusyBoard.shared(tmp_path, 3, 4)


def test_several_workers_without_a_board_never_split(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("PROMETHEUS_MULTIPROC_DIR", raising=False)
    assert BusyBoard.for_this_worker(2) is None
    splitter = BatchSplitter(4, None)
    assert splitter.threads == 1 and splitter.parts_for(64) == 1
    assert BusyBoard.for_this_worker(1) is not None  # alone: every core is its own


def test_a_lone_worker_splits_big_batches_only() -> None:
    splitter = BatchSplitter(2, BusyBoard.private())
    try:
        rec = Recorder(delay=0.02)
        batch = np.arange(32, dtype=np.float64)[:, None]
        out = merged(splitter.run(rec.run, batch))
        assert (out == batch * 2).all()
        assert sorted(n for n, _ in rec.calls) == [16, 16]
        assert len({name for _, name in rec.calls}) == 2  # at the same time, two threads
        rec.calls.clear()
        merged(splitter.run(rec.run, batch[: 2 * MIN_SLICE_ROWS - 1]))
        assert [n for n, _ in rec.calls] == [2 * MIN_SLICE_ROWS - 1]
    finally:
        splitter.close()


def test_a_busy_neighbour_keeps_the_batch_whole(tmp_path: Path) -> None:
    mine, neighbour = BusyBoard.shared(tmp_path, 2, 1), BusyBoard.shared(tmp_path, 2, 2)
    splitter = BatchSplitter(2, mine)
    try:
        rec = Recorder()
        batch = np.arange(64, dtype=np.float64)[:, None]
        with neighbour.running():
            merged(splitter.run(rec.run, batch))
        assert [n for n, _ in rec.calls] == [64]
        rec.calls.clear()
        merged(splitter.run(rec.run, batch))
        assert sorted(n for n, _ in rec.calls) == [32, 32]
    finally:
        splitter.close()


def test_slices_run_at_the_same_time() -> None:
    splitter = BatchSplitter(2, BusyBoard.private())
    try:
        rec = Recorder(delay=0.2)
        start = time.perf_counter()
        merged(splitter.run(rec.run, np.zeros((32, 1))))
        assert time.perf_counter() - start < 0.35  # two 0.2 s slices, not 0.4 s in a row
    finally:
        splitter.close()


def test_bad_rows_in_one_slice_fail_only_those_rows() -> None:
    def run(rows: np.ndarray) -> np.ndarray:
        bad = rows[:, 0] < 0
        if bad.any():
            raise RowsFailed(rows * 2, bad, ValueError("negative"))
        return rows * 2

    splitter = BatchSplitter(2, BusyBoard.private())
    try:
        batch = np.arange(32, dtype=np.float64)[:, None]
        batch[20] = -1  # in the second slice
        with pytest.raises(RowsFailed) as caught:
            merged(splitter.run(run, batch))
        assert caught.value.failed.tolist() == [i == 20 for i in range(32)]
        assert (caught.value.output == batch * 2).all()
        assert str(caught.value.error) == "negative"
    finally:
        splitter.close()


def test_a_slice_that_fails_outright_fails_the_batch() -> None:
    def run(rows: np.ndarray) -> np.ndarray:
        if rows[0, 0] >= 16:
            raise RuntimeError("device lost")
        return rows

    splitter = BatchSplitter(2, BusyBoard.private())
    try:
        with pytest.raises(RuntimeError, match="device lost"):
            merged(splitter.run(run, np.arange(32, dtype=np.float64)[:, None]))
    finally:
        splitter.close()


def test_the_batcher_answers_each_request_with_its_rows_when_split() -> None:
    splitter = BatchSplitter(2, BusyBoard.private())
    rec = Recorder(delay=0.005)
    sizes: list[int] = []

    async def main() -> list[np.ndarray]:
        batcher = MicroBatcher(
            "t",
            rec.run,
            max_batch_size=64,
            splitter=splitter,
            on_batch=lambda n, s: sizes.append(n),
        )
        try:
            items = [
                np.arange(i * 100, i * 100 + n, dtype=np.float64)[:, None]
                for i, n in enumerate((20, 1, 33, 7))
            ]
            results = await asyncio.gather(*(batcher.submit(x) for x in items))
            for x, got in zip(items, results, strict=True):
                assert (got == x * 2).all()
            return results
        finally:
            await batcher.aclose()

    try:
        asyncio.run(main())
    finally:
        splitter.close()
    assert sum(sizes) == sum(n for n, _ in rec.calls) == 61
    assert len(rec.calls) > len(sizes)  # some batch was cut


@pytest.mark.parametrize("split", [1, 2])
def test_a_split_request_serves_exactly_the_images_of_its_seeds(
    tiny_models_dir: Path, split: int
) -> None:
    """Image i of seed s is the image of seed s + i, whichever slice made it."""
    got: dict[str, np.ndarray] = {}

    async def scenario(client: httpx.AsyncClient, registry: CollectorRegistry) -> None:
        whole = await client.post("/generate", json={"seed": 7, "n": 40, "format": "npy"})
        singles = [
            await client.post("/generate", json={"seed": 7 + i, "n": 1, "format": "npy"})
            for i in (0, 19, 20, 39)
        ]
        assert whole.status_code == 200
        got["whole"] = np.load(io.BytesIO(whole.content))
        got["singles"] = np.concatenate([np.load(io.BytesIO(r.content)) for r in singles])

    serve(tiny_models_dir, scenario, split_threads=split, workers=1)
    assert (got["whole"][[0, 19, 20, 39]] == got["singles"]).all()


def test_settings_give_a_lone_worker_the_idle_cores() -> None:
    cpu = Settings().resolved(cuda=False, cpus=4)
    assert (cpu.workers, cpu.ort_threads, cpu.split_threads) == (4, 1, 4)
    one = Settings(workers=1).resolved(cuda=False, cpus=4)
    assert (one.ort_threads, one.split_threads) == (0, 1)  # ORT already has every core
    assert Settings().resolved(cuda=True, cpus=16).split_threads == 1
    assert Settings.from_env({"GAN_SPLIT_THREADS": "3"}).split_threads == 3
    with pytest.raises(Exception, match="GAN_SPLIT_THREADS"):
        Settings.from_env({"GAN_SPLIT_THREADS": "0"})
