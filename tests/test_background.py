"""Run-forever work: a failing round never ends the loop; stopping is bounded."""

from __future__ import annotations

import asyncio
import itertools
import time

from tenantry.background import Background, every, until_done


async def test_every_survives_failing_rounds_and_waits_one_interval_first() -> None:
    rounds: list[float] = []
    four = asyncio.Event()
    started = time.monotonic()

    async def step() -> None:
        rounds.append(time.monotonic() - started)
        if len(rounds) >= 4:
            four.set()
        if len(rounds) % 2:
            raise RuntimeError("this round fails")

    background = Background()
    background.start(every(0.05, step, name="test step"), "test")
    # Every other round fails; the loop goes on (waited for, with a loaded machine's room).
    await asyncio.wait_for(four.wait(), timeout=30)
    await background.stop()
    assert rounds[0] >= 0.05  # the first after one interval
    assert all(b - a >= 0.05 * 0.9 for a, b in itertools.pairwise(rounds)), rounds
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
    await asyncio.wait_for(background.stop(), timeout=30)  # not held until released
    assert not task.done()
    release.set()
    await asyncio.wait([task])
    assert task.cancelled()  # it did stop, once its clean-up could finish
