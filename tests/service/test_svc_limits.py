"""service/limits.py's admission of expensive requests and cancellation on hang-up."""

from __future__ import annotations

import asyncio
import os
import threading

import pytest

from service.errors import ApiError
from service.limits import HEAVY_NICE, ClientGone, HeavyGate, heavy_executor, until_disconnected


def test_the_gate_admits_up_to_its_limit_then_429s() -> None:
    refused: list[str] = []
    gate = HeavyGate(2, on_refused=refused.append)
    with gate.admit("interpolate"), gate.admit("interpolate"):
        with pytest.raises(ApiError) as exc, gate.admit("score"):
            pass
        assert (exc.value.status, exc.value.reason) == (429, "busy")
        assert exc.value.headers == {"retry-after": "1"}
        with gate.admit("generate_grid", heavy=False):  # light requests are never held up
            pass
    assert refused == ["score"] and gate.running == 0
    with gate.admit("score"):  # the slots came back, an error inside included
        pass


def test_a_request_whose_client_left_is_cancelled() -> None:
    async def main() -> tuple[bool, bool]:
        gone = asyncio.Event()
        cancelled = asyncio.Event()

        async def receive() -> dict[str, str]:
            await gone.wait()
            return {"type": "http.disconnect"}

        async def work() -> str:
            try:
                await asyncio.sleep(10)
            except asyncio.CancelledError:
                cancelled.set()
                raise
            return "done"

        asyncio.get_running_loop().call_later(0.05, gone.set)
        with pytest.raises(ClientGone):
            await until_disconnected(receive, work())
        await asyncio.sleep(0)
        fast = await until_disconnected(receive, asyncio.sleep(0, result="quick"))
        return cancelled.is_set(), fast == "quick"

    assert asyncio.run(main()) == (True, True)


def test_heavy_threads_run_at_a_lower_priority() -> None:
    pool = heavy_executor(1)
    try:
        nice = pool.submit(
            lambda: os.getpriority(os.PRIO_PROCESS, threading.get_native_id())
        ).result()
    finally:
        pool.shutdown()
    assert nice == min(19, os.getpriority(os.PRIO_PROCESS, 0) + HEAVY_NICE)
