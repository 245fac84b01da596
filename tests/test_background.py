"""Run-forever work: a failing round never ends the loop; stopping is bounded."""

from __future__ import annotations

import asyncio
import time

from tenantry.background import Background, every, until_done


async def test_every_survives_failing_rounds_and_waits_one_interval_first() -> None:
    rounds: list[float] = []
    started = time.monotonic()

    async def step() -> None:
        rounds.append(time.monotonic() - started)
        if len(rounds) % 2:
            raise RuntimeError("this round fails")

    background = Background()
    background.start(every(0.05, step, name="test step"), "test")
    await asyncio.sleep(0.32)
    await background.stop()
    assert 4 <= len(rounds) <= 7, rounds  # every other round failed; the loop went on
    assert rounds[0] >= 0.05  # the first after one interval
    count = len(rounds)
    await asyncio.sleep(0.1)
    assert len(rounds) == count  # stopped means stopped


async def test_every_now_runs_at_once() -> None:
    ran = asyncio.Event()

    async def step() -> None:
        ran.set()

    background = Background()
    background.start(every(60, step, name="test step", now=True), "test")
    await asyncio.wait_for(ran.wait(), 1)
    await background.stop()


async def test_until_done_retries_until_the_step_succeeds() -> None:
    attempts = 0

    async def step() -> None:
        nonlocal attempts
        attempts += 1
        if attempts < 3:
            raise ConnectionError("not yet")

    await asyncio.wait_for(until_done(step, name="test", pause=0.01), 1)
    assert attempts == 3


async def test_a_stuck_task_does_not_hold_up_stop() -> None:
    release = asyncio.Event()

    async def stuck() -> None:
        try:
            await asyncio.sleep(60)
        finally:  # its clean-up hangs on a dependency, as a wedged client's might
            await release.wait()

    background = Background(stop_within=0.2)
    task = background.start(stuck(), "stuck")
    await asyncio.sleep(0.01)  # under way
    started = time.monotonic()
    await background.stop()
    assert time.monotonic() - started < 1.0
    assert not task.done()
    release.set()
    await asyncio.wait([task])
    assert task.cancelled()  # it did stop, once its clean-up could finish
