"""The resilience capability: the breaker registry and the feature-flag service.

`ResilienceService` is the one object the rest of Tenantry talks to
(`services.resilience.breakers`, `services.resilience.flags`).
"""

from __future__ import annotations

import logging
import re
from collections.abc import Awaitable, Callable, Iterable, Mapping
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING, Any

from prometheus_client import CollectorRegistry, Counter
from pydantic.alias_generators import to_snake

from tenantry.errors import (
    Conflict,
    InvalidInput,
    NotFound,
)
from tenantry.resilience import flag_events
from tenantry.resilience.constraints import constraint_problem
from tenantry.resilience.context import EvaluationContext
from tenantry.resilience.flags import (
    DEFAULT_FLAGS,
    Evaluation,
    Flag,
    FlagSnapshot,
    Segment,
    Strategy,
    Target,
    Variant,
)
from tenantry.resilience.registry import DEFAULT_BREAKERS, BreakerRegistry, config_with
from tenantry.resilience.stale import StaleReport
from tenantry.resilience.stores.base import (
    AuditEntry,
    FlagStore,
    flag_not_found,
    segment_key,
    segment_not_found,
)
from tenantry.resilience.stores.failsafe import FailsafeStore
from tenantry.resilience.stores.memoized import MemoizedStore
from tenantry.resilience.strategies import STRATEGIES, TENANTRY_ROLLOUTS
from tenantry.resilience.sync import RedisSync
from tenantry.resilience.unleash import export_document, read_document
from tenantry.resilience.usage import EvaluationCounts, FlagUsage, FlagUsageReport, not_recorded
from tenantry.settings import ConfigError

if TYPE_CHECKING:
    from tenantry.tracing.tracer import Tracing

log = logging.getLogger("tenantry.resilience")

# Unleash allows any name a URL can carry: UTF-8, dots, and so on. Not '/' (a path
# cannot carry it), no control characters, no space at either end, not '#' first
# (segments' audit keys), and not the names of the routes beside /features/{key}.
KEY_PATTERN = re.compile(r"^(?![\s#])[^/\x00-\x1f\x7f]{1,100}(?<!\s)$")
RESERVED_KEYS = frozenset({"import", "export", ".", ".."})
TARGET_ID_PATTERN = re.compile(r"^[^\s/]{1,128}$")
MAX_LIST = 10_000
SYSTEM = "system"
ROLLOUT_STRATEGIES = frozenset({"flexibleRollout", *TENANTRY_ROLLOUTS})


def validate_key(key: str) -> str:
    if not KEY_PATTERN.fullmatch(key) or key in RESERVED_KEYS:
        _invalid(
            "key",
            "1-100 characters, no '/', no control characters, no space at either end, "
            "not '#' first, and not 'import' or 'export'",
        )
    return key


def validate_flag(flag: Flag) -> Flag:
    """`InvalidInput` naming the field and rule, for flags built in code as well as over HTTP."""
    validate_key(flag.key)
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
    for index, strategy in enumerate(flag.strategies):
        _validate_strategy(strategy, f"strategies[{index}]")
    for index, dependency in enumerate(flag.dependencies):
        if dependency.feature == flag.key:
            _invalid(f"dependencies[{index}].feature", "a flag cannot depend on itself")
    return flag


def _validate_strategy(strategy: Strategy, where: str) -> None:
    """Strict: what Tenantry cannot run, or what Unleash would silently evaluate as off."""
    if strategy.name not in STRATEGIES:
        _invalid(f"{where}.name", f"one of {', '.join(sorted(STRATEGIES))}")
    rollout = strategy.parameters.get("rollout")
    if strategy.name in ROLLOUT_STRATEGIES and not (
        rollout is not None and rollout.isdigit() and int(rollout) <= 100
    ):
        _invalid(f"{where}.parameters.rollout", "a whole percentage, 0-100")
    validate_constraints(strategy.constraints, f"{where}.constraints")


def validate_constraints(constraints: Iterable[Any], where: str) -> None:
    for index, constraint in enumerate(constraints):
        problem = constraint_problem(constraint)
        if problem is not None:
            field, _, rule = problem.partition(": ")
            _invalid(f"{where}[{index}].{field}", rule)


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
        self.counts = EvaluationCounts()  # evaluations per flag, counted inside the checks
        self.usage: FlagUsage | None = None  # stores and reads them (set by the wiring)
        # Each evaluation an event on the current span, when set (by the wiring).
        self.tracing: Tracing | None = None
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
        if self.tracing is not None:  # the compiled checks know no reason: evaluate
            return self.evaluate(key, target_id).enabled
        check = self._checks.get(key)
        return check(target_id) if check is not None else False

    def evaluate(
        self, key: str, target_id: str | None = None, context: EvaluationContext | None = None
    ) -> Evaluation:
        """How `key` decides for `target_id` (its target's id) and/or a whole `context`."""
        evaluation = self._snapshot.evaluate(key, target_id, context)
        self.counts.count(key, evaluation.enabled)
        if self.tracing is not None:
            compiled = self._snapshot.flags.get(key)
            rollout = compiled.flag.rollout if compiled else None
            self.tracing.event(flag_events.EVENT, flag_events.attributes(evaluation, rollout))
        return evaluation

    def variant(
        self, key: str, target_id: str | None = None, context: EvaluationContext | None = None
    ) -> Variant | None:
        return self.evaluate(key, target_id, context).variant  # counted, as an evaluation

    @property
    def snapshot(self) -> FlagSnapshot:
        return self._snapshot

    def _install(self, flags: list[Flag], segments: list[Segment]) -> None:
        snapshot = FlagSnapshot.of(flags, segments)
        self._snapshot, self._checks = snapshot, self.counts.wrap(snapshot.checks)

    # --- loading -------------------------------------------------------------------
    async def refresh(self) -> None:
        """Reload every flag from the store (a failed reload keeps the last snapshot)."""
        await self.store.refresh()

    async def seed(self, defaults: Iterable[Flag] = DEFAULT_FLAGS) -> list[str]:
        """Create the default flags that were never created (a deleted default stays deleted)."""
        created = await seed_defaults(self.store.inner, defaults)
        if created:
            await self.refresh()
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
        self._check_references(validate_flag(flag))
        created = await self.store.create(flag, actor=actor)
        await self._changed(created.key, "create")
        return created

    async def update(self, key: str, *, actor: str, action: str = "update", **changes: Any) -> Flag:
        def change(flag: Flag) -> Flag:
            changed = validate_flag(replace(flag, **changes))
            if "strategies" in changes or "dependencies" in changes:
                self._check_references(changed)
            return changed

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
        """The simple form's rollout; a strategy flag's rollout strategies, every one."""
        flag = await self.get(key)
        if flag.simple:
            return await self.update(key, actor=actor, action="rollout", rollout=percentage)
        if not any(strategy.name in ROLLOUT_STRATEGIES for strategy in flag.strategies):
            raise Conflict(
                f"{key!r} has no rollout strategy to set; change its strategies instead",
                details={"key": key},
                code="NO_ROLLOUT_STRATEGY",
            )

        def rolled(strategy: Strategy) -> Strategy:
            if strategy.name not in ROLLOUT_STRATEGIES:
                return strategy
            return replace(strategy, parameters={**strategy.parameters, "rollout": str(percentage)})

        strategies = tuple(rolled(strategy) for strategy in flag.strategies)
        return await self.update(key, actor=actor, action="rollout", strategies=strategies)

    # --- segments and Unleash documents ---------------------------------------------
    def segments(self) -> list[Segment]:
        return [self._snapshot.segments[key] for key in sorted(self._snapshot.segments)]

    def segment(self, segment_id: int) -> Segment:
        segment = self._snapshot.segments.get(segment_id)
        if segment is None:
            raise segment_not_found(segment_id)
        return segment

    async def put_segment(self, segment: Segment, *, actor: str) -> Segment:
        validate_segment(segment)
        stored = await self.store.put_segment(segment, actor=actor)
        await self._changed(segment_key(segment.id), "segment")
        return stored

    async def delete_segment(self, segment_id: int, *, actor: str) -> Segment:
        users = sorted(
            item.flag.key
            for item in self._snapshot.flags.values()
            if any(segment_id in strategy.segments for strategy in item.flag.strategies)
        )
        if users:
            raise Conflict(
                f"segment {segment_id} is used by {', '.join(map(repr, users))}",
                details={"segment": segment_id, "flags": users},
                code="SEGMENT_IN_USE",
            )
        deleted = await self.store.delete_segment(segment_id, actor=actor)
        await self._changed(segment_key(segment_id), "segment-delete")
        return deleted

    async def import_document(self, data: Any, *, actor: str) -> int:
        """An Unleash document's features and segments, all or nothing; the count imported."""
        document = read_document(data, check_key=validate_key)
        current = self._snapshot.flags
        flags = [
            replace(flag, target=current[flag.key].flag.target) if flag.key in current else flag
            for flag in document.flags
        ]  # `target` is Tenantry's (which id a plain is_enabled names): an import keeps it
        await self.store.replace_many(flags, document.segments, actor=actor, action="import")
        if self._changes is not None:
            self._changes.labels("import").inc(len(flags))
        if self.publish is not None:
            await self.publish("import")  # one reload in every process, whatever the size
        return len(flags)

    def export_document(self) -> dict[str, Any]:
        """Every flag and segment as an Unleash client-features document."""
        flags = [self._snapshot.flags[key].flag for key in sorted(self._snapshot.flags)]
        return export_document(flags, self.segments())

    def _check_references(self, flag: Flag) -> None:
        segments = self._snapshot.segments
        for index, strategy in enumerate(flag.strategies):
            for segment_id in strategy.segments:
                if segment_id not in segments:
                    _invalid(f"strategies[{index}].segments", f"no segment {segment_id}")
        for index, dependency in enumerate(flag.dependencies):
            parent = self._snapshot.flags.get(dependency.feature)
            if parent is None:
                _invalid(f"dependencies[{index}].feature", f"no flag {dependency.feature!r}")
            elif parent.flag.dependencies:
                _invalid(
                    f"dependencies[{index}].feature",
                    f"{dependency.feature!r} has parents itself; one level only, as in Unleash",
                )

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
            if not flag.simple:
                raise Conflict(
                    f"{key!r} is decided by strategies: use a constraint, not the {field} list",
                    details={"key": key, "field": field},
                    code="FLAG_HAS_STRATEGIES",
                )
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

    # --- usage and stale flags (tenantry.resilience.usage and .stale) ----------------
    async def usage_of(self, key: str, hours: int = 24) -> FlagUsageReport:
        """`key`'s evaluations per hour over the last `hours` hours, and when last evaluated."""
        await self.get(key)  # 404 for an unknown flag
        return await self._usage().report(key, hours)

    async def stale_flags(self, days: int | None = None) -> StaleReport:
        """Flags with no change and no evaluation, or 100 % on, for `days` days."""
        return await self._usage().stale(await self.all(), days)

    def _usage(self) -> FlagUsage:
        if self.usage is None:
            raise not_recorded()
        return self.usage


def validate_segment(segment: Segment) -> Segment:
    if not 0 <= segment.id <= 2**31 - 1:
        _invalid("id", "a segment id is between 0 and 2147483647")
    if not 1 <= len(segment.name) <= 100:
        _invalid("name", "1-100 characters")
    validate_constraints(segment.constraints, "constraints")
    return segment


async def seed_defaults(store: FlagStore, defaults: Iterable[Flag] = DEFAULT_FLAGS) -> list[str]:
    """Create the default flags never created in `store` (a deleted default stays deleted).

    Start-up runs it on the database store itself, unguarded, like a migration: a
    loaded machine's slow first write must not stop the service from starting.
    """
    created = []
    existing = {flag.key for flag in await store.all()}  # one read, not one a default
    for flag in defaults:
        if flag.key in existing:
            continue
        if await store.audit(flag.key, 1):
            continue  # it existed once and was deleted on purpose
        try:
            await store.create(flag, actor=SYSTEM)
        except Conflict:
            continue  # another process seeded it first
        created.append(flag.key)
    return created


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
