"""The breaker registry: pre-configured circuits, execute(), metrics, settings overrides."""

from __future__ import annotations

import asyncio
import functools
from typing import Any

import pytest
from prometheus_client import CollectorRegistry, generate_latest

from tenantry.errors import NotFound
from tenantry.resilience.breaker import BreakerConfig, CircuitOpenError, State
from tenantry.resilience.registry import DEFAULT_BREAKERS, BreakerRegistry
from tenantry.resilience.service import breaker_overrides
from tenantry.settings import ConfigError


class Down(Exception):
    pass


def fail() -> None:
    raise Down


async def afail() -> None:
    raise Down


def test_the_four_circuits_of_the_original_exist() -> None:
    registry = BreakerRegistry()
    assert {"database", "external-api", "ai-service", "storage"} <= set(registry.names)
    assert registry["database"].config.failure_threshold == 5
    assert registry["database"].config.success_threshold == 2
    with pytest.raises(NotFound):
        registry.get("nope")


def test_execute_sync_with_fallback_and_new_breakers() -> None:
    registry = BreakerRegistry()
    assert registry.execute("external-api", lambda: 42) == 42
    assert registry.execute("payments", fail, fallback="later", failure_threshold=2) == "later"
    assert registry["payments"].config.failure_threshold == 2
    assert registry.execute("payments", fail, fallback=lambda exc: type(exc).__name__) == "Down"
    assert registry["payments"].state is State.OPEN
    assert registry.execute("payments", lambda: 1, fallback=None) is None
    with pytest.raises(CircuitOpenError):
        registry.execute("payments", lambda: 1)
    with pytest.raises(ValueError, match="unknown breaker option"):
        registry.execute("other", lambda: 1, failure_treshold=2)


async def test_execute_async() -> None:
    registry = BreakerRegistry()

    async def answer() -> int:
        return 7

    assert await registry.execute("ai-service", answer) == 7
    assert await registry.execute("ai-service", functools.partial(asyncio.sleep, 0, 8)) == 8
    for _ in range(3):
        assert await registry.execute("ai-service", afail, fallback=[]) == []
    assert registry["ai-service"].state is State.OPEN
    with pytest.raises(CircuitOpenError):
        await registry.execute_async("ai-service", answer)


def test_answers_from_tenantry_are_not_failures() -> None:
    registry = BreakerRegistry()

    def missing() -> None:
        raise NotFound("no such file")

    for _ in range(10):
        with pytest.raises(NotFound):
            registry.execute("storage", missing)
    assert registry["storage"].state is State.CLOSED


def test_listeners_hear_every_breaker_present_and_future() -> None:
    registry = BreakerRegistry()
    heard: list[tuple[str, str]] = []
    registry.add_listener(lambda e: heard.append((e.breaker, e.to_state.value)))
    registry["database"].force_open()
    registry.create("late", BreakerConfig(failure_threshold=1))
    with pytest.raises(Down):
        registry["late"].call(fail)
    assert heard == [("database", "forced_open"), ("late", "open")]


def test_metrics_in_the_given_prometheus_registry() -> None:
    metrics = CollectorRegistry()
    registry = BreakerRegistry(metrics)
    breaker = registry.create("x", BreakerConfig(failure_threshold=1))
    with pytest.raises(Down):
        breaker.call(fail)
    with pytest.raises(CircuitOpenError):
        breaker.call(fail)
    text = generate_latest(metrics).decode()
    assert (
        'tenantry_circuit_breaker_transitions_total{circuit="x",from_state="closed",'
        'to_state="open"} 1.0' in text
    )
    assert 'tenantry_circuit_breaker_state{circuit="x",state="open"} 1.0' in text
    assert 'tenantry_circuit_breaker_failed_calls_total{circuit="x"} 1.0' in text
    assert 'tenantry_circuit_breaker_not_permitted_calls_total{circuit="x"} 1.0' in text


def test_transitions_are_logged(caplog: pytest.LogCaptureFixture) -> None:
    registry = BreakerRegistry()
    with caplog.at_level("INFO", logger="tenantry.resilience"):
        registry["storage"].force_open("maintenance")
        registry["storage"].reset()
    messages = [record.getMessage() for record in caplog.records]
    assert "circuit storage: closed -> forced_open (maintenance)" in messages
    assert "circuit storage: forced_open -> closed (reset)" in messages


def test_settings_override_and_add_circuits() -> None:
    configs = breaker_overrides(
        {"database": {"timeout": 1000, "callTimeout": 200}, "billing": {"failureThreshold": 2}}
    )
    assert configs["database"].timeout == 1000
    assert configs["database"].call_timeout == 200
    assert configs["database"].failure_threshold == DEFAULT_BREAKERS["database"].failure_threshold
    assert configs["billing"].failure_threshold == 2


@pytest.mark.parametrize(
    ("raw", "message"),
    [
        ({"database": {"timeout": -5}}, "CIRCUIT_BREAKERS: database: timeout"),
        ({"database": {"nonsense": 1}}, "unknown breaker option"),
    ],
)
def test_bad_overrides_name_the_setting(raw: dict[str, Any], message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        breaker_overrides(raw)


async def test_guard_puts_an_objects_listed_methods_behind_a_breaker() -> None:
    from tenantry.resilience.guard import guard

    class Backend:
        name = "disk"

        def __init__(self) -> None:
            self.down = False

        async def put(self, key: str) -> str:
            if self.down:
                raise ConnectionError("disk gone")
            return key

        async def size(self, key: str) -> int:
            raise NotFound(key)

        def public_url(self, key: str) -> str:
            return f"/files/{key}"

    registry = BreakerRegistry()
    backend = Backend()
    guarded = guard(backend, registry["storage"], ("put", "size"))
    assert await guarded.put("a") == "a"
    assert guarded.public_url("a") == "/files/a"  # not listed: passes straight through
    assert guarded.name == "disk"
    for _ in range(3):
        with pytest.raises(NotFound):
            await guarded.size("a")
    backend.down = True
    for _ in range(5):
        with pytest.raises(ConnectionError):
            await guarded.put("a")
    assert registry["storage"].state is State.OPEN
    with pytest.raises(CircuitOpenError):
        await guarded.put("a")
    with pytest.raises(AttributeError, match="nope"):
        guard(backend, registry["storage"], ("nope",))


async def test_guard_defaults_to_every_public_coroutine_method_and_can_answer_503() -> None:
    from tenantry.errors import ServiceUnavailable
    from tenantry.resilience.guard import guard

    class Records:
        def __init__(self) -> None:
            self.calls = 0

        async def find(self, key: str) -> str:
            self.calls += 1
            raise OSError("connection refused")

        async def missing(self, key: str) -> str:
            raise NotFound(key)

        async def _private(self) -> None:
            raise OSError("not guarded")

    registry = BreakerRegistry()
    records = guard(Records(), registry["database"], unavailable="the database")
    with pytest.raises(ServiceUnavailable, match="the database is unavailable") as error:
        await records.find("a")
    assert error.value.headers == {"Retry-After": "1"}
    assert error.value.details == {"cause": "OSError"}
    with pytest.raises(NotFound):  # an answer, passed on as it is
        await records.missing("a")
    with pytest.raises(OSError):  # private: not behind the breaker
        await records._private()
    for _ in range(5):
        with pytest.raises(ServiceUnavailable):
            await records.find("a")
    assert registry["database"].state is State.OPEN
    with pytest.raises(CircuitOpenError):
        await records.find("a")
