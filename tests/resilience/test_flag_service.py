"""The flag service over the store stack: validation, failsafe reads, the OpenFeature provider."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
from openfeature import api
from openfeature.evaluation_context import EvaluationContext
from openfeature.exception import ErrorCode
from openfeature.flag_evaluation import Reason as OFReason

from tenantry.errors import InvalidInput, ServiceUnavailable
from tenantry.resilience.constraints import Constraint
from tenantry.resilience.flags import Flag, Target, Variant
from tenantry.resilience.openfeature import TenantryProvider
from tenantry.resilience.service import FlagService
from tenantry.resilience.stores.base import FlagStore
from tenantry.resilience.stores.failsafe import FailsafeStore
from tenantry.resilience.stores.memoized import MemoizedStore
from tenantry.resilience.stores.memory import MemoryFlagStore
from tenantry.resilience.strategies import Strategy


class Flaky:
    """A store that can be switched off, to stand for a database outage."""

    def __init__(self, inner: FlagStore) -> None:
        self.inner = inner
        self.down = False

    def __getattr__(self, name: str) -> Any:
        method = getattr(self.inner, name)

        async def call(*args: Any, **kwargs: Any) -> Any:
            if self.down:
                raise ConnectionError("store unreachable")
            return await method(*args, **kwargs)

        return call


async def service(flaky: Flaky | None = None) -> FlagService:
    store = FailsafeStore(flaky or MemoryFlagStore())  # type: ignore[arg-type]
    flags = FlagService(MemoizedStore(store))
    await flags.refresh()
    await flags.seed()
    return flags


async def test_failsafe_answers_the_last_state_including_recent_changes() -> None:
    flaky = Flaky(MemoryFlagStore())
    flags = await service(flaky)
    await flags.disable("core-api", actor="admin")  # a change after the first full read
    flaky.down = True
    await flags.refresh()
    assert flags.is_enabled("core-api") is False  # not the pre-change copy
    assert len(await flags.all()) == 10
    with pytest.raises(ServiceUnavailable, match="not saved"):
        await flags.enable("core-api", actor="admin")
    flaky.down = False
    await flags.enable("core-api", actor="admin")
    assert flags.is_enabled("core-api") is True


async def test_failsafe_without_any_good_read_says_unavailable() -> None:
    flaky = Flaky(MemoryFlagStore())
    flaky.down = True
    with pytest.raises(ServiceUnavailable):
        await FailsafeStore(flaky).all()  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("flag", "field"),
    [
        (Flag("bad/key"), "key"),
        (Flag("export"), "key"),
        (Flag(" padded"), "key"),
        (Flag("#segment-1"), "key"),
        (Flag("x", rollout=101), "rollout"),
        (Flag("x", rollout=-1), "rollout"),
        (Flag("x", allow=frozenset({""})), "allow"),
        (Flag("x", variants=(Variant("a", 1), Variant("a", 2))), "variants"),
        (Flag("x", variants=(Variant("a", 0),)), "variants"),
    ],
)
async def test_library_callers_get_the_same_validation(flag: Flag, field: str) -> None:
    flags = await service()
    with pytest.raises(InvalidInput) as raised:
        await flags.create(flag, actor="admin")
    assert raised.value.details == {"field": field}


async def test_rollout_changes_are_validated_and_audited() -> None:
    flags = await service()
    with pytest.raises(InvalidInput):
        await flags.set_rollout("vision-analysis", 150, actor="admin")
    await flags.set_rollout("vision-analysis", 20, actor="k1")
    entries = await flags.audit("vision-analysis")
    assert [(e.action, e.actor) for e in entries] == [("rollout", "k1"), ("create", "system")]


async def test_openfeature_provider() -> None:
    flags = await service()
    await flags.create(
        Flag(
            "checkout",
            enabled=True,
            target=Target.USER,
            variants=(
                Variant("small", 1, {"type": "number", "value": "1.5"}),
                Variant("large", 1, {"type": "number", "value": "3"}),
            ),
        ),
        actor="admin",
    )
    await flags.block("core-api", "banned", actor="admin")
    api.set_provider(TenantryProvider(flags))
    try:
        client = api.get_client()
        assert client.get_boolean_value("core-api", False) is True
        details = client.get_boolean_details("core-api", True, EvaluationContext("banned"))
        assert details.value is False
        assert details.reason == OFReason.TARGETING_MATCH
        assert client.get_boolean_value("maintenance-mode", True) is False
        missing = client.get_boolean_details("nope", True)
        assert missing.value is True
        assert missing.error_code == ErrorCode.FLAG_NOT_FOUND

        context = EvaluationContext("user-42")
        name = client.get_string_details("checkout", "none", context)
        assert name.value == flags.variant("checkout", "user-42").name  # type: ignore[union-attr]
        assert name.reason == OFReason.SPLIT
        number = client.get_float_value("checkout", 0.0, context)
        assert number == (1.5 if name.value == "small" else 3.0)
        assert client.get_string_value("core-api", "default") == "default"  # no variants
        mismatch = client.get_object_details("checkout", {"d": 1}, context)
        assert mismatch.value == {"d": 1}
        assert mismatch.error_code == ErrorCode.TYPE_MISMATCH
    finally:
        api.clear_providers()


async def test_openfeature_passes_the_evaluation_context_through() -> None:
    from openfeature import api
    from openfeature.evaluation_context import EvaluationContext

    flags = await service()
    constraints = (
        Constraint("plan", "IN", ("enterprise",)),
        Constraint("companyId", "STR_STARTS_WITH", ("eu-",)),
        Constraint("appVersion", "SEMVER_GTE", value="3.2.0"),
    )
    await flags.create(
        Flag("eu-beta", enabled=True, strategies=(Strategy("default", {}, constraints),)),
        actor="test",
    )
    api.set_provider(TenantryProvider(flags))
    try:
        client = api.get_client()
        inside = {"companyId": "eu-acme", "plan": "enterprise", "appVersion": "3.4.0"}
        assert client.get_boolean_value("eu-beta", False, EvaluationContext("u-1", inside))
        for changed in ({"plan": "free"}, {"companyId": "us-acme"}, {"appVersion": "3.1.9"}):
            context = EvaluationContext("u-1", {**inside, **changed})
            assert client.get_boolean_value("eu-beta", True, context) is False, changed
        assert client.get_boolean_value("eu-beta", True) is False  # no context: no match
    finally:
        api.clear_providers()


async def test_openfeature_hears_flag_changes() -> None:
    from openfeature.event import EventDetails, ProviderEvent

    flags = await service()
    api.set_provider(TenantryProvider(flags))
    changed: list[list[str] | None] = []

    def on_change(details: EventDetails) -> None:
        changed.append(details.flags_changed)

    client = api.get_client()
    client.add_handler(ProviderEvent.PROVIDER_CONFIGURATION_CHANGED, on_change)
    try:
        await flags.disable("core-api", actor="admin")
        await flags.refresh()  # nothing changed: no event
        await flags.create(Flag("fresh"), actor="admin")
        for _ in range(200):  # OpenFeature runs handlers on its own worker threads
            if len(changed) >= 2:
                break
            await asyncio.sleep(0.01)
        assert sorted(map(tuple, changed)) == [("core-api",), ("fresh",)]  # type: ignore[arg-type]
        assert client.get_boolean_value("core-api", True) is False
    finally:
        client.remove_handler(ProviderEvent.PROVIDER_CONFIGURATION_CHANGED, on_change)
        api.clear_providers()
