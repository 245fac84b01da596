"""Every breaker transition, for sync and async code alike."""

from __future__ import annotations

import asyncio
import threading
import time
from typing import Any

import pytest

from tenantry.resilience.breaker import (
    Breaker,
    BreakerConfig,
    CallTimeoutError,
    CircuitOpenError,
    State,
    Transition,
)


class Boom(Exception):
    pass


class Driver:
    """Calls a breaker the sync way (`call`) or the async way (`call_async`)."""

    def __init__(self, mode: str) -> None:
        self.mode = mode
        self.calls = 0
        self.finished = 0  # calls that got to their end (past their sleep)

    async def run(self, breaker: Breaker, outcome: Any = "ok", sleep: float = 0.0) -> Any:
        def sync_fn() -> Any:
            self.calls += 1
            if sleep:
                time.sleep(sleep)
            self.finished += 1
            if isinstance(outcome, BaseException):
                raise outcome
            return outcome

        async def async_fn() -> Any:
            self.calls += 1
            if sleep:
                await asyncio.sleep(sleep)
            self.finished += 1
            if isinstance(outcome, BaseException):
                raise outcome
            return outcome

        if self.mode == "sync":
            return breaker.call(sync_fn)
        return await breaker.call_async(async_fn)

    async def fail(
        self, breaker: Breaker, times: int = 1, exc: BaseException | None = None
    ) -> None:
        for _ in range(times):
            with pytest.raises(type(exc) if exc else Boom):
                await self.run(breaker, exc or Boom())


@pytest.fixture(params=["sync", "async"])
def driver(request: pytest.FixtureRequest) -> Driver:
    return Driver(request.param)


def events(breaker: Breaker) -> list[Transition]:
    seen: list[Transition] = []
    breaker.add_listener(seen.append)
    return seen


async def test_closed_opens_after_consecutive_failures(driver: Driver) -> None:
    breaker = Breaker("b", BreakerConfig(failure_threshold=3))
    seen = events(breaker)
    await driver.fail(breaker, 2)
    assert await driver.run(breaker) == "ok"  # a success resets the streak
    await driver.fail(breaker, 2)
    assert breaker.state is State.CLOSED
    await driver.fail(breaker)
    assert breaker.state is State.OPEN
    assert [(e.from_state, e.to_state) for e in seen] == [(State.CLOSED, State.OPEN)]
    assert "3 consecutive failures" in seen[0].reason


async def test_open_rejects_without_calling(driver: Driver) -> None:
    breaker = Breaker("db", BreakerConfig(failure_threshold=1, timeout=60_000))
    await driver.fail(breaker)
    calls = driver.calls
    with pytest.raises(CircuitOpenError) as raised:
        await driver.run(breaker)
    assert driver.calls == calls
    error = raised.value
    assert error.status_code == 503
    assert error.code == "CIRCUIT_OPEN"
    assert 59 <= int(error.headers["Retry-After"]) <= 60
    assert breaker.rejected_total == 1


@pytest.mark.parametrize(
    "fallback",
    [
        {"items": []},
        lambda: {"items": []},
        lambda exc: {"items": [], "why": type(exc).__name__},
    ],
)
async def test_fallback_answers_when_open_and_on_failure(driver: Driver, fallback: Any) -> None:
    breaker = Breaker("ai", BreakerConfig(failure_threshold=2), fallback=fallback)
    first = await driver.run(breaker, Boom())  # a failure answers the fallback too
    assert first["items"] == []
    await driver.run(breaker, Boom())
    assert breaker.state is State.OPEN
    rejected = await driver.run(breaker)
    assert rejected["items"] == []
    if "why" in rejected:
        assert first["why"] == "Boom"
        assert rejected["why"] == "CircuitOpenError"


async def test_async_fallback_callable_is_awaited() -> None:
    async def fallback() -> str:
        return "cached"

    async def failing() -> str:
        raise Boom

    breaker = Breaker("x", BreakerConfig(failure_threshold=1), fallback=fallback)
    assert await breaker.call_async(failing) == "cached"
    assert await breaker.call_async(failing) == "cached"  # open now
    assert breaker.state is State.OPEN


async def test_half_open_after_timeout_then_closed_after_successes(driver: Driver) -> None:
    breaker = Breaker("b", BreakerConfig(failure_threshold=1, success_threshold=2, timeout=150))
    seen = events(breaker)
    await driver.fail(breaker)
    with pytest.raises(CircuitOpenError):
        await driver.run(breaker)
    await asyncio.sleep(0.2)
    assert await driver.run(breaker) == "ok"
    assert breaker.state is State.HALF_OPEN
    assert await driver.run(breaker) == "ok"
    assert breaker.state is State.CLOSED
    assert [e.to_state for e in seen] == [State.OPEN, State.HALF_OPEN, State.CLOSED]


async def test_half_open_failure_opens_again(driver: Driver) -> None:
    breaker = Breaker("b", BreakerConfig(failure_threshold=1, timeout=150))
    await driver.fail(breaker)
    await asyncio.sleep(0.2)
    await driver.fail(breaker)
    assert breaker.state is State.OPEN
    with pytest.raises(CircuitOpenError):
        await driver.run(breaker)


async def test_half_open_trial_limit_rejects_extra_callers_at_once() -> None:
    breaker = Breaker(
        "b", BreakerConfig(failure_threshold=1, timeout=10, permitted_calls_in_half_open=1)
    )
    with pytest.raises(Boom):
        breaker.call(lambda: (_ for _ in ()).throw(Boom()))
    await asyncio.sleep(0.03)
    release = asyncio.Event()

    async def slow_trial() -> str:
        await release.wait()
        return "trial"

    trial = asyncio.create_task(breaker.call_async(slow_trial))
    await asyncio.sleep(0.01)
    assert breaker.state is State.HALF_OPEN
    with pytest.raises(CircuitOpenError) as raised:
        # Rejected while the trial still holds its permit: not queued behind it.
        await asyncio.wait_for(breaker.call_async(slow_trial), 1)
    assert not trial.done()
    assert raised.value.state is State.HALF_OPEN
    release.set()
    assert await trial == "trial"


def test_half_open_trial_limit_in_threads() -> None:
    breaker = Breaker(
        "b", BreakerConfig(failure_threshold=1, timeout=10, permitted_calls_in_half_open=1)
    )
    with pytest.raises(Boom):
        breaker.call(lambda: (_ for _ in ()).throw(Boom()))
    time.sleep(0.03)
    inside, release = threading.Event(), threading.Event()

    def trial() -> str:
        inside.set()
        release.wait(5)
        return "trial"

    results: list[Any] = []
    worker = threading.Thread(target=lambda: results.append(breaker.call(trial)))
    worker.start()
    assert inside.wait(5)
    with pytest.raises(CircuitOpenError):
        breaker.call(trial)
    release.set()
    worker.join(5)
    assert results == ["trial"]


async def test_sliding_window_failure_rate(driver: Driver) -> None:
    config = BreakerConfig(
        failure_threshold=None,
        sliding_window_size=10,
        minimum_calls=6,
        failure_rate_threshold=50,
    )
    breaker = Breaker("w", config)
    await driver.fail(breaker, 4)
    assert breaker.state is State.CLOSED  # fewer than minimum_calls recorded
    await driver.run(breaker)
    assert breaker.state is State.CLOSED
    assert breaker.window_stats()["numberOfCalls"] == 5
    await driver.run(breaker)  # 4 of 6 failed: 66 %
    assert breaker.state is State.OPEN


async def test_sliding_window_forgets_old_calls(driver: Driver) -> None:
    config = BreakerConfig(
        failure_threshold=None, sliding_window_size=4, minimum_calls=4, failure_rate_threshold=75
    )
    breaker = Breaker("w", config)
    await driver.fail(breaker, 2)
    for _ in range(4):
        await driver.run(breaker)  # the failures slide out of the window
    assert breaker.window_stats()["failedCalls"] == 0
    await driver.fail(breaker, 2)
    assert breaker.state is State.CLOSED  # 2 of 4 = 50 % < 75 %
    await driver.fail(breaker)
    assert breaker.state is State.OPEN


async def test_slow_call_rate_opens(driver: Driver) -> None:
    config = BreakerConfig(
        failure_threshold=None,
        sliding_window_size=4,
        minimum_calls=4,
        slow_call_duration=60,
        slow_call_rate_threshold=50,
    )
    breaker = Breaker("s", config)
    await driver.run(breaker)
    await driver.run(breaker)
    await driver.run(breaker, sleep=0.08)
    assert breaker.state is State.CLOSED
    await driver.run(breaker, sleep=0.08)  # 2 of 4 slow
    assert breaker.state is State.OPEN
    assert breaker.slow_total == 2


async def test_slow_calls_count_as_failures_without_a_window(driver: Driver) -> None:
    breaker = Breaker("s", BreakerConfig(failure_threshold=2, slow_call_duration=20))
    assert await driver.run(breaker, sleep=0.04) == "ok"  # the caller still gets its answer
    assert breaker.consecutive_failures == 1
    await driver.run(breaker, sleep=0.04)
    assert breaker.state is State.OPEN


async def test_call_timeout_is_a_failure(driver: Driver) -> None:
    breaker = Breaker("t", BreakerConfig(failure_threshold=2, call_timeout=50))
    with pytest.raises(CallTimeoutError):
        await driver.run(breaker, sleep=1.5)
    assert driver.finished == 0  # answered at the timeout, not after the call's 1.5 s
    assert breaker.consecutive_failures == 1
    with pytest.raises(CallTimeoutError):
        await driver.run(breaker, sleep=1.5)
    assert breaker.state is State.OPEN


async def test_fast_calls_pass_under_a_call_timeout(driver: Driver) -> None:
    breaker = Breaker("t", BreakerConfig(call_timeout=1000))
    assert await driver.run(breaker, "value") == "value"
    assert breaker.failures_total == 0


async def test_ignored_exceptions_are_not_failures(driver: Driver) -> None:
    config = BreakerConfig(failure_threshold=1, ignore_exceptions=(KeyError,))
    breaker = Breaker("i", config)
    await driver.fail(breaker, 3, KeyError("missing"))
    assert breaker.state is State.CLOSED
    assert breaker.failures_total == 0
    await driver.fail(breaker)
    assert breaker.state is State.OPEN


async def test_only_recorded_exceptions_are_failures(driver: Driver) -> None:
    config = BreakerConfig(failure_threshold=1, record_exceptions=(ConnectionError,))
    breaker = Breaker("r", config)
    await driver.fail(breaker, 2, ValueError("bad input"))
    assert breaker.state is State.CLOSED
    await driver.fail(breaker, 1, ConnectionError("down"))
    assert breaker.state is State.OPEN


async def test_ignored_exception_in_half_open_frees_its_permit(driver: Driver) -> None:
    config = BreakerConfig(
        failure_threshold=1,
        timeout=10,
        permitted_calls_in_half_open=1,
        success_threshold=1,
        ignore_exceptions=(KeyError,),
    )
    breaker = Breaker("h", config)
    await driver.fail(breaker)
    await asyncio.sleep(0.03)
    await driver.fail(breaker, 1, KeyError("x"))
    assert breaker.state is State.HALF_OPEN
    assert await driver.run(breaker) == "ok"  # the permit came back
    assert breaker.state is State.CLOSED


async def test_forced_open_and_disabled(driver: Driver) -> None:
    breaker = Breaker("f", BreakerConfig(failure_threshold=1, timeout=10))
    breaker.force_open()
    await asyncio.sleep(0.03)
    with pytest.raises(CircuitOpenError) as raised:
        await driver.run(breaker)  # forced open never times out into half-open
    assert raised.value.state is State.FORCED_OPEN
    breaker.disable()
    await driver.fail(breaker, 5)
    assert breaker.state is State.DISABLED
    assert await driver.run(breaker) == "ok"
    breaker.close()
    assert breaker.state is State.CLOSED
    await driver.fail(breaker)
    assert breaker.state is State.OPEN


async def test_reset_clears_counters(driver: Driver) -> None:
    breaker = Breaker("r", BreakerConfig(failure_threshold=2))
    await driver.fail(breaker)
    assert breaker.consecutive_failures == 1
    breaker.reset()
    assert breaker.consecutive_failures == 0
    assert breaker.failures_total == 0
    await driver.fail(breaker)
    assert breaker.state is State.CLOSED
    await driver.fail(breaker)
    breaker.reset()
    assert breaker.state is State.CLOSED
    assert await driver.run(breaker) == "ok"


async def test_decorator_sync_and_async() -> None:
    breaker = Breaker("d", BreakerConfig(failure_threshold=2), fallback="fallback")
    calls = []

    @breaker
    def sync_fn(x: int, *, fail: bool = False) -> int:
        calls.append(x)
        if fail:
            raise Boom
        return x * 2

    @breaker
    async def async_fn(x: int, *, fail: bool = False) -> int:
        calls.append(x)
        if fail:
            raise Boom
        return x * 3

    assert sync_fn(2) == 4
    assert await async_fn(2) == 6
    assert sync_fn.__name__ == "sync_fn"
    assert sync_fn(1, fail=True) == "fallback"
    assert await async_fn(1, fail=True) == "fallback"
    assert breaker.state is State.OPEN
    assert sync_fn(5) == "fallback"
    assert await async_fn(5) == "fallback"
    assert calls == [2, 2, 1, 1]


async def test_guard_context_manager_sync_and_async() -> None:
    breaker = Breaker("g", BreakerConfig(failure_threshold=2))
    with breaker.guard():
        pass
    with pytest.raises(Boom), breaker.guard():
        raise Boom
    with pytest.raises(Boom):
        async with breaker.guard():
            raise Boom
    assert breaker.state is State.OPEN
    with pytest.raises(CircuitOpenError), breaker.guard():
        pytest.fail("the body must not run while open")
    with pytest.raises(CircuitOpenError):
        async with breaker.guard():
            pytest.fail("the body must not run while open")
    assert breaker.rejected_total == 2


async def test_cancellation_is_not_a_failure() -> None:
    breaker = Breaker("c", BreakerConfig(failure_threshold=1))
    task = asyncio.create_task(breaker.call_async(asyncio.sleep, 10))
    await asyncio.sleep(0.01)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert breaker.state is State.CLOSED


async def test_outcome_of_a_call_from_an_earlier_state_is_ignored() -> None:
    breaker = Breaker("o", BreakerConfig(failure_threshold=1, sliding_window_size=5))
    release = asyncio.Event()

    async def slow() -> None:
        await release.wait()
        raise Boom

    task = asyncio.create_task(breaker.call_async(slow))
    await asyncio.sleep(0.01)
    breaker.disable()
    breaker.close()  # a new closed period: the old call's failure is stale
    release.set()
    with pytest.raises(Boom):
        await task
    assert breaker.state is State.CLOSED


def test_a_broken_listener_does_not_break_calls() -> None:
    breaker = Breaker("l", BreakerConfig(failure_threshold=1))
    breaker.add_listener(lambda event: 1 / 0)
    with pytest.raises(Boom):
        breaker.call(lambda: (_ for _ in ()).throw(Boom()))
    assert breaker.state is State.OPEN


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"failure_threshold": 0}, "failure_threshold"),
        ({"timeout": -1}, "timeout"),
        ({"failure_rate_threshold": 0}, "failure_rate_threshold"),
        ({"sliding_window_size": 2.5}, "sliding_window_size"),
        ({"slow_call_rate_threshold": 101}, "slow_call_rate_threshold"),
    ],
)
def test_bad_config_names_the_option(options: dict[str, Any], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        BreakerConfig(**options)


def test_a_timeout_raised_by_the_call_itself_is_its_own_error() -> None:
    breaker = Breaker("t", BreakerConfig(call_timeout=1000, failure_threshold=1))

    def raises_timeout() -> None:
        raise TimeoutError("socket timed out")

    with pytest.raises(TimeoutError, match="socket timed out") as raised:
        breaker.call(raises_timeout)
    assert not isinstance(raised.value, CallTimeoutError)
    assert breaker.state is State.OPEN


def test_sync_call_timeout_keeps_context_variables() -> None:
    import contextvars

    company: contextvars.ContextVar[str] = contextvars.ContextVar("company", default="none")
    company.set("acme")
    breaker = Breaker("t", BreakerConfig(call_timeout=1000))
    assert breaker.call(company.get) == "acme"  # runs in a worker thread, same context


def test_reopening_extends_the_wait_without_a_new_transition() -> None:
    breaker = Breaker("x", BreakerConfig(timeout=1000))
    seen = events(breaker)
    breaker.transition(State.OPEN, "here")
    breaker.transition(State.OPEN, "elsewhere", remote=True, open_for_ms=5000)
    assert len(seen) == 1
    assert 4 < breaker.retry_after <= 5


async def test_guard_records_slow_blocks() -> None:
    breaker = Breaker("g", BreakerConfig(failure_threshold=1, slow_call_duration=10))
    async with breaker.guard():
        await asyncio.sleep(0.02)
    assert breaker.state is State.OPEN
    assert breaker.slow_total == 1


async def test_an_async_timeout_raised_by_the_call_itself_is_its_own_error() -> None:
    breaker = Breaker("t", BreakerConfig(call_timeout=1000))

    async def raises_timeout() -> None:
        raise TimeoutError("upstream timed out")

    with pytest.raises(TimeoutError, match="upstream") as raised:
        await breaker.call_async(raises_timeout)
    assert not isinstance(raised.value, CallTimeoutError)
    assert breaker.failures_total == 1


def test_reconfigure_switches_between_fast_and_windowed_paths() -> None:
    breaker = Breaker("r", BreakerConfig(failure_threshold=10))
    breaker.reconfigure(
        BreakerConfig(failure_threshold=None, sliding_window_size=2, minimum_calls=2)
    )
    for _ in range(2):
        with pytest.raises(Boom):
            breaker.call(lambda: (_ for _ in ()).throw(Boom()))
    assert breaker.state is State.OPEN  # the window decided, not the old threshold of 10


async def test_half_open_lets_exactly_the_permitted_trials_through() -> None:
    config = BreakerConfig(
        failure_threshold=1, timeout=10, permitted_calls_in_half_open=2, success_threshold=2
    )
    breaker = Breaker("p", config)
    with pytest.raises(Boom):
        breaker.call(lambda: (_ for _ in ()).throw(Boom()))
    await asyncio.sleep(0.03)
    release = asyncio.Event()

    async def trial() -> str:
        await release.wait()
        return "ok"

    calls = [asyncio.create_task(breaker.call_async(trial)) for _ in range(10)]
    await asyncio.sleep(0.02)
    release.set()
    results = await asyncio.gather(*calls, return_exceptions=True)
    assert results.count("ok") == 2
    assert sum(isinstance(r, CircuitOpenError) for r in results) == 8
    assert breaker.state is State.CLOSED  # the two trials succeeded


def past(milliseconds: float) -> None:
    """Return once the monotonic clock has moved on by `milliseconds` (a slow call)."""
    start = time.monotonic()
    while (time.monotonic() - start) * 1000 < milliseconds:
        pass


def test_window_stats_count_calls_failures_and_slow_calls() -> None:
    config = BreakerConfig(failure_threshold=None, sliding_window_size=10, slow_call_duration=1)
    breaker = Breaker("w", config)
    assert breaker.window_stats() == {
        "numberOfCalls": 0,
        "failedCalls": 0,
        "slowCalls": 0,
        "failureRate": None,
        "slowCallRate": None,
    }
    for _ in range(2):
        with breaker.guard():
            pass
    with breaker.guard():
        past(2)
    with pytest.raises(Boom), breaker.guard():
        raise Boom
    assert breaker.window_stats() == {
        "numberOfCalls": 4,
        "failedCalls": 1,
        "slowCalls": 1,
        "failureRate": 25.0,
        "slowCallRate": 25.0,
    }


def test_a_slow_failure_counts_as_slow_too() -> None:
    config = BreakerConfig(failure_threshold=None, sliding_window_size=4, slow_call_duration=1)
    breaker = Breaker("w", config)
    with pytest.raises(Boom), breaker.guard():
        past(2)
        raise Boom
    assert breaker.window_stats()["slowCalls"] == breaker.slow_total == 1
    assert breaker.failures_total == 1


def test_rates_just_under_their_threshold_keep_the_circuit_closed() -> None:
    """3 of 7 calls is 42.9 %: under a 43 % threshold, for failures and slow calls alike."""
    failing = Breaker(
        "f",
        BreakerConfig(
            failure_threshold=None, sliding_window_size=7, minimum_calls=7,
            failure_rate_threshold=43,
        ),
    )  # fmt: skip
    slow = Breaker(
        "s",
        BreakerConfig(
            failure_threshold=None, sliding_window_size=7, minimum_calls=7,
            slow_call_duration=1, slow_call_rate_threshold=43,
        ),
    )  # fmt: skip
    for _ in range(4):
        for breaker in (failing, slow):
            with breaker.guard():
                pass
    for _ in range(3):
        with pytest.raises(Boom), failing.guard():
            raise Boom
        with slow.guard():
            past(2)
    assert failing.window_stats()["numberOfCalls"] == slow.window_stats()["numberOfCalls"] == 7
    assert failing.state is slow.state is State.CLOSED


def test_guarded_failures_are_counted_one_by_one() -> None:
    breaker = Breaker("g", BreakerConfig(failure_threshold=None))
    for _ in range(3):
        with pytest.raises(Boom), breaker.guard():
            raise Boom
    assert breaker.failures_total == 3


def test_an_ignored_exception_in_a_guard_frees_exactly_its_half_open_permit() -> None:
    config = BreakerConfig(
        failure_threshold=1, timeout=0, permitted_calls_in_half_open=1,
        ignore_exceptions=(KeyError,),
    )  # fmt: skip
    breaker = Breaker("h", config)
    with pytest.raises(Boom), breaker.guard():
        raise Boom
    assert breaker.state is State.OPEN
    with pytest.raises(KeyError), breaker.guard():  # the wait (0 ms) is over: a trial
        raise KeyError("x")
    assert breaker.state is State.HALF_OPEN
    # The permit came back: one trial, and only one.
    with breaker.guard(), pytest.raises(CircuitOpenError), breaker.guard():
        pytest.fail("a second trial must not run")


def test_manual_transitions_say_why() -> None:
    breaker = Breaker("m")
    seen = events(breaker)
    breaker.force_open()
    breaker.disable()
    breaker.close()
    breaker.force_open("maintenance")
    breaker.reset()
    assert [event.reason for event in seen] == [
        "forced open",
        "disabled",
        "closed by request",
        "maintenance",
        "reset",
    ]


async def test_arguments_reach_the_call_on_every_path() -> None:
    async def echo(*args: Any, **kwargs: Any) -> Any:
        return args, kwargs

    for config in (BreakerConfig(), BreakerConfig(call_timeout=1_000), BreakerConfig(
        failure_threshold=None, sliding_window_size=4, slow_call_duration=1_000
    )):  # fmt: skip
        breaker = Breaker("a", config)
        assert await breaker.call_async(echo, 1, b=2) == ((1,), {"b": 2})
        assert breaker.call(lambda *a, **k: (a, k), 1, b=2) == ((1,), {"b": 2})


async def test_a_slow_async_failure_counts_as_slow_too() -> None:
    async def slow_failure() -> None:
        past(2)
        raise Boom

    config = BreakerConfig(failure_threshold=None, sliding_window_size=4, slow_call_duration=1)
    breaker = Breaker("s", config)
    with pytest.raises(Boom):
        await breaker.call_async(slow_failure)
    assert breaker.window_stats()["slowCalls"] == breaker.slow_total == 1


async def test_calls_count_their_failures_and_rejections(driver: Driver) -> None:
    breaker = Breaker("c", BreakerConfig(failure_threshold=3, timeout=60_000))
    await driver.fail(breaker, 3)
    assert breaker.failures_total == 3 and breaker.state is State.OPEN
    for _ in range(2):
        with pytest.raises(CircuitOpenError) as raised:
            await driver.run(breaker)
    assert breaker.rejected_total == 2
    assert raised.value.details == {"circuit": "c", "state": "open", "retryAfterSeconds": 60}
    assert (raised.value.circuit, raised.value.retry_after) == ("c", 60)


def test_an_open_circuit_says_retry_after_at_least_one_second() -> None:
    breaker = Breaker("o", BreakerConfig(failure_threshold=1, timeout=100))
    with pytest.raises(Boom):
        breaker.call(lambda: (_ for _ in ()).throw(Boom()))
    with pytest.raises(CircuitOpenError) as raised:
        breaker.call(lambda: None)
    assert raised.value.details["retryAfterSeconds"] == 1


@pytest.mark.parametrize("operator_action", ["force_open", "disable"])
def test_a_failure_does_not_undo_what_an_operator_did_during_the_call(
    operator_action: str,
) -> None:
    breaker = Breaker("r", BreakerConfig(failure_threshold=1))

    def call() -> None:
        getattr(breaker, operator_action)()  # meanwhile, from the API
        raise Boom

    with pytest.raises(Boom):
        breaker.call(call)
    assert (
        breaker.state
        is {"force_open": State.FORCED_OPEN, "disable": State.DISABLED}[operator_action]
    )
