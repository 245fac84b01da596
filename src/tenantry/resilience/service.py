"""The resilience capability: the breaker registry and the feature-flag service.

`ResilienceService` is the one object the rest of Tenantry talks to
(`services.resilience.breakers`, `services.resilience.flags`).
"""

from __future__ import annotations

import logging
import re
from collections.abc import Awaitable, Callable, Iterable, Mapping
from dataclasses import dataclass, replace
from typing import Any

from prometheus_client import CollectorRegistry, Counter
from pydantic.alias_generators import to_snake

from tenantry.errors import (
    Conflict,
    InvalidInput,
    NotFound,
)
from tenantry.resilience.flags import (
    DEFAULT_FLAGS,
    Evaluation,
    Flag,
    FlagSnapshot,
    Target,
    Variant,
)
from tenantry.resilience.registry import DEFAULT_BREAKERS, BreakerRegistry, config_with
from tenantry.resilience.stores.base import AuditEntry, flag_not_found
from tenantry.resilience.stores.failsafe import FailsafeStore
from tenantry.resilience.stores.memoized import MemoizedStore
from tenantry.resilience.sync import RedisSync
from tenantry.settings import ConfigError

log = logging.getLogger("tenantry.resilience")

KEY_PATTERN = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._:-]{0,99}$")
TARGET_ID_PATTERN = re.compile(r"^[^\s/]{1,128}$")
MAX_LIST = 10_000
SYSTEM = "system"


def validate_flag(flag: Flag) -> Flag:
    """`InvalidInput` naming the field and rule, for flags built in code as well as over HTTP."""
    if not KEY_PATTERN.fullmatch(flag.key):
        _invalid("key", "1-100 characters: letters, digits, '.', '_', ':', '-'")
    if len(flag.description) > 1000:
        _invalid("description", "at most 1000 characters")
    if not 0 <= flag.rollout <= 100:
        _invalid("rollout", f"must be between 0 and 100 (got {flag.rollout})")
    for name, ids in (("allow", flag.allow), ("block", flag.block)):
        if len(ids) > MAX_LIST:
            _invalid(name, f"at most {MAX_LIST} ids")
        for target_id in ids:
            validate_target_id(target_id, name)
    names = [variant.name for variant in flag.variants]
    if len(set(names)) != len(names):
        _invalid("variants", "variant names must be unique")
    for variant in flag.variants:
        if not 1 <= len(variant.name) <= 100:
            _invalid("variants", "a variant name has 1-100 characters")
        if not 0 <= variant.weight <= 1_000_000:
            _invalid("variants", "a variant weight is between 0 and 1000000")
    if flag.variants and sum(variant.weight for variant in flag.variants) <= 0:
        _invalid("variants", "at least one variant needs a positive weight")
    return flag


def validate_target_id(target_id: str, field: str = "targetId") -> str:
    if not TARGET_ID_PATTERN.fullmatch(target_id):
        _invalid(field, "a target id has 1-128 characters, no spaces or '/'")
    return target_id


def _invalid(field: str, rule: str) -> None:
    raise InvalidInput(f"{field}: {rule}", details={"field": field})


class FlagService:
    """Evaluation from an in-memory snapshot; changes through the store, then to every process."""

    def __init__(self, store: MemoizedStore, metrics: CollectorRegistry | None = None) -> None:
        self.store = store
        self._snapshot = FlagSnapshot()
        self._checks = self._snapshot.checks
        self.publish: Callable[[str], Awaitable[None]] | None = None
        self._changes: Counter | None = None
        if metrics is not None:
            self._changes = Counter(
                "tenantry_feature_flag_changes_total",
                "Feature flag changes made through this process.",
                ["action"],
                registry=metrics,
            )
        store.add_listener(self._install)

    # --- evaluation (hot path: no I/O, no lock) ---------------------------------
    def is_enabled(self, key: str, target_id: str | None = None) -> bool:
        check = self._checks.get(key)
        return check(target_id) if check is not None else False

    def evaluate(self, key: str, target_id: str | None = None) -> Evaluation:
        return self._snapshot.evaluate(key, target_id)

    def variant(self, key: str, target_id: str | None = None) -> Variant | None:
        return self._snapshot.evaluate(key, target_id).variant

    @property
    def snapshot(self) -> FlagSnapshot:
        return self._snapshot

    def _install(self, flags: list[Flag]) -> None:
        snapshot = FlagSnapshot.of(flags)
        self._snapshot, self._checks = snapshot, snapshot.checks

    # --- loading -------------------------------------------------------------------
    async def refresh(self) -> None:
        """Reload every flag from the store (a failed reload keeps the last snapshot)."""
        await self.store.refresh()

    async def seed(self, defaults: Iterable[Flag] = DEFAULT_FLAGS) -> list[str]:
        """Create the default flags that were never created (a deleted default stays deleted)."""
        created = []
        for flag in defaults:
            if await self.store.inner.get(flag.key) is not None:
                continue
            if await self.store.audit(flag.key, 1):
                continue  # it existed once and was deleted on purpose
            try:
                await self.store.create(flag, actor=SYSTEM)
            except Conflict:
                continue  # another process seeded it first
            created.append(flag.key)
        return created

    # --- management ------------------------------------------------------------------
    async def all(self) -> list[Flag]:
        return await self.store.all()

    async def get(self, key: str) -> Flag:
        flag = await self.store.get(key)
        if flag is None:
            raise flag_not_found(key)
        return flag

    async def create(self, flag: Flag, *, actor: str) -> Flag:
        created = await self.store.create(validate_flag(flag), actor=actor)
        await self._changed(created.key, "create")
        return created

    async def update(self, key: str, *, actor: str, action: str = "update", **changes: Any) -> Flag:
        def change(flag: Flag) -> Flag:
            return validate_flag(replace(flag, **changes))

        updated = await self.store.update(key, change, actor=actor, action=action)
        await self._changed(key, action)
        return updated

    async def delete(self, key: str, *, actor: str) -> Flag:
        deleted = await self.store.delete(key, actor=actor)
        await self._changed(key, "delete")
        return deleted

    async def enable(self, key: str, *, actor: str) -> Flag:
        return await self.update(key, actor=actor, action="enable", enabled=True)

    async def disable(self, key: str, *, actor: str) -> Flag:
        return await self.update(key, actor=actor, action="disable", enabled=False)

    async def set_rollout(self, key: str, percentage: int, *, actor: str) -> Flag:
        return await self.update(key, actor=actor, action="rollout", rollout=percentage)

    async def allow(self, key: str, target_id: str, *, actor: str) -> Flag:
        return await self._edit_list(key, "allow", target_id, add=True, actor=actor)

    async def unallow(self, key: str, target_id: str, *, actor: str) -> Flag:
        return await self._edit_list(key, "allow", target_id, add=False, actor=actor)

    async def block(self, key: str, target_id: str, *, actor: str) -> Flag:
        return await self._edit_list(key, "block", target_id, add=True, actor=actor)

    async def unblock(self, key: str, target_id: str, *, actor: str) -> Flag:
        return await self._edit_list(key, "block", target_id, add=False, actor=actor)

    async def audit(self, key: str, limit: int = 100) -> list[AuditEntry]:
        entries = await self.store.audit(key, limit)
        if not entries:
            await self.get(key)  # 404 for a flag that never existed
        return entries

    async def _edit_list(
        self, key: str, field: str, target_id: str, *, add: bool, actor: str
    ) -> Flag:
        validate_target_id(target_id)

        def change(flag: Flag) -> Flag:
            ids: frozenset[str] = getattr(flag, field)
            if not add and target_id not in ids:
                raise NotFound(
                    f"{target_id!r} is not on the {field} list of {key!r}",
                    details={"field": "targetId"},
                    code="NOT_ON_LIST",
                )
            updated = ids | {target_id} if add else ids - {target_id}
            if field == "allow":
                return validate_flag(replace(flag, allow=frozenset(updated)))
            return validate_flag(replace(flag, block=frozenset(updated)))

        action = f"{field}{'' if add else '-remove'}"
        updated = await self.store.update(key, change, actor=actor, action=action)
        await self._changed(key, action)
        return updated

    async def _changed(self, key: str, action: str) -> None:
        if self._changes is not None:
            self._changes.labels(action).inc()
        if self.publish is not None:
            await self.publish(key)


@dataclass
class ResilienceService:
    breakers: BreakerRegistry
    flags: FlagService
    sync: RedisSync | None = None
    failsafe: FailsafeStore | None = None

    def health(self) -> dict[str, Any]:
        return {
            "circuits": {breaker.name: breaker.state.value for breaker in self.breakers},
            "openCircuits": [
                breaker.name
                for breaker in self.breakers
                if breaker.state.value in ("open", "forced_open")
            ],
            "flags": len(self.flags.snapshot.flags),
            "flagStoreDegraded": bool(self.failsafe and self.failsafe.degraded),
            "redisSync": (
                "off"
                if self.sync is None
                else ("connected" if self.sync.connected.is_set() else "disconnected")
            ),
        }


def breaker_overrides(raw: Mapping[str, Mapping[str, Any]]) -> dict[str, Any]:
    """CIRCUIT_BREAKERS ({"name": {"timeout": 30000, ...}}) as configs; ConfigError when bad."""
    configs = dict(DEFAULT_BREAKERS)
    for name, options in raw.items():
        base = configs.get(name, DEFAULT_BREAKERS["external-api"])
        try:
            configs[name] = config_with(base, {to_snake(k): v for k, v in options.items()})
        except (TypeError, ValueError) as exc:
            raise ConfigError(f"CIRCUIT_BREAKERS: {name}: {exc}") from None
    return configs


__all__ = [
    "FlagService",
    "ResilienceService",
    "Target",
    "breaker_overrides",
    "validate_flag",
]
