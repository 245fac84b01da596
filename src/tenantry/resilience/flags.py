"""Feature flags: the model, its gates, strategies, dependencies, and evaluation.

A flag has two forms. The *simple* form (no strategies) is decided by small gate
objects, walked in order (as Flipper does): disabled → off; target id on the
block list → off; on the allow list → on; otherwise the percentage-of-actors gate
puts the id in or out of the rollout. The *strategy* form is Unleash's: an
ordered list of strategies with constraints and segments (`strategies`), on when
any matches. Either form may depend on parent flags (`Dependency`), as Unleash's
dependent features do: a parent must exist, have no parents itself, be on (or
off, if so asked) and, if variants are named, give one of them (a parent that
gives no variant at all passes; an empty list names any).

Bucketing is Unleash's normalized hash (see `variants`) with the flag key as
group id, so a simple flag's rollout is `flexibleRollout` sticky on its target's
field, and `unleash.export_document` writes it as exactly that.

`FlagSnapshot` is what request paths read: an immutable dict of compiled flags,
swapped whole when a flag changes, so evaluation takes no lock and does no I/O.
A simple flag without parents is also compiled into one closure (`check`), the
gates' logic inlined, for `is_enabled`'s speed; a test holds it equal to the
gate walk on random flags and ids.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field, replace
from enum import StrEnum
from typing import Any

import mmh3

from tenantry.resilience.constraints import BrokenRule, Test
from tenantry.resilience.context import EMPTY_CONTEXT, EvaluationContext
from tenantry.resilience.strategies import Segment, Strategy, compile_strategy
from tenantry.resilience.variants import (
    VARIANT_SEED,
    Variant,
    choose_variant,
    normalized_hash,
)


class Target(StrEnum):
    """Which id a flag buckets by (the id `feature_gate` passes by default)."""

    GLOBAL = "global"
    COMPANY = "company"
    USER = "user"

    @property
    def context_field(self) -> str:
        """The evaluation-context field a target id stands for."""
        return "companyId" if self is Target.COMPANY else "userId"


class Reason(StrEnum):
    DISABLED = "disabled"
    BLOCKED = "blocked"
    ALLOWED = "allowed"
    ROLLOUT_MATCH = "rollout_match"
    ROLLOUT_MISS = "rollout_miss"
    STRATEGY_MATCH = "strategy_match"
    NO_STRATEGY_MATCH = "no_strategy_match"
    DEPENDENCY_NOT_MET = "dependency_not_met"
    INVALID_DEFINITION = "invalid_definition"
    FLAG_NOT_FOUND = "flag_not_found"


ON_REASONS = frozenset({Reason.ALLOWED, Reason.ROLLOUT_MATCH, Reason.STRATEGY_MATCH})


@dataclass(frozen=True, slots=True)
class Dependency:
    """This flag is on only if `feature` is on (or off, with enabled=False)."""

    feature: str
    enabled: bool = True
    variants: tuple[str, ...] | None = None  # when given, the parent's variant is one of them

    def to_dict(self) -> dict[str, Any]:
        data: dict[str, Any] = {"feature": self.feature, "enabled": self.enabled}
        if self.variants is not None:
            data["variants"] = list(self.variants)
        return data

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Dependency:
        variants = data.get("variants")
        enabled = data.get("enabled")
        return cls(
            feature=data["feature"],
            enabled=True if enabled is None else bool(enabled),
            variants=None if variants is None else tuple(variants),
        )


@dataclass(frozen=True, slots=True)
class Flag:
    """A feature flag's definition. Immutable: a change makes a new one."""

    key: str
    description: str = ""
    enabled: bool = False
    target: Target = Target.GLOBAL
    rollout: int = 100
    allow: frozenset[str] = frozenset()
    block: frozenset[str] = frozenset()
    variants: tuple[Variant, ...] = ()
    version: int = 1
    strategies: tuple[Strategy, ...] = ()
    dependencies: tuple[Dependency, ...] = ()

    @property
    def simple(self) -> bool:
        """Decided by target, rollout, allow and block (no strategies)."""
        return not self.strategies

    def to_dict(self) -> dict[str, Any]:
        """The JSON-able form kept in the store and the audit log."""
        return {
            "key": self.key,
            "description": self.description,
            "enabled": self.enabled,
            "target": self.target.value,
            "rollout": self.rollout,
            "allow": sorted(self.allow),
            "block": sorted(self.block),
            "variants": [variant.to_dict() for variant in self.variants],
            "strategies": [strategy.to_dict() for strategy in self.strategies],
            "dependencies": [dependency.to_dict() for dependency in self.dependencies],
            "version": self.version,
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Flag:
        return cls(
            key=data["key"],
            description=data.get("description", ""),
            enabled=bool(data.get("enabled", False)),
            target=Target(data.get("target", "global")),
            rollout=int(data.get("rollout", 100)),
            allow=frozenset(data.get("allow", ())),
            block=frozenset(data.get("block", ())),
            variants=tuple(Variant.from_dict(v) for v in data.get("variants", ())),
            strategies=tuple(Strategy.from_dict(s) for s in data.get("strategies") or ()),
            dependencies=tuple(Dependency.from_dict(d) for d in data.get("dependencies") or ()),
            version=int(data.get("version", 1)),
        )

    def changed(self, **changes: Any) -> Flag:
        """A copy with `changes`, one version later."""
        return replace(self, **changes, version=self.version + 1)

    def same_definition(self, other: Flag) -> bool:
        return replace(self, version=0) == replace(other, version=0)


@dataclass(frozen=True, slots=True)
class Evaluation:
    key: str
    enabled: bool
    reason: Reason
    variant: Variant | None = None
    target_id: str | None = None


# --- gates (the simple form) ---------------------------------------------------------
@dataclass(frozen=True, slots=True)
class BooleanGate:
    """The flag's on/off switch: off short-circuits everything else."""

    enabled: bool

    def decide(self, target_id: str | None) -> Reason | None:
        return None if self.enabled else Reason.DISABLED


@dataclass(frozen=True, slots=True)
class BlockGate:
    ids: frozenset[str]

    def decide(self, target_id: str | None) -> Reason | None:
        return Reason.BLOCKED if target_id is not None and target_id in self.ids else None


@dataclass(frozen=True, slots=True)
class AllowGate:
    ids: frozenset[str]

    def decide(self, target_id: str | None) -> Reason | None:
        return Reason.ALLOWED if target_id is not None and target_id in self.ids else None


@dataclass(frozen=True, slots=True)
class PercentageOfActorsGate:
    """In when the id's bucket (1..100) is within the percentage; 100 % is everyone.

    Below 100 % an anonymous caller (no id) is out: there is nothing to keep sticky.
    """

    percentage: int
    group_id: str

    def decide(self, target_id: str | None) -> Reason:
        if self.percentage >= 100:
            return Reason.ROLLOUT_MATCH
        if target_id is None or self.percentage <= 0:
            return Reason.ROLLOUT_MISS
        bucket = normalized_hash(target_id, self.group_id)
        return Reason.ROLLOUT_MATCH if bucket <= self.percentage else Reason.ROLLOUT_MISS


Gate = BooleanGate | BlockGate | AllowGate | PercentageOfActorsGate


def gates_of(flag: Flag) -> tuple[Gate, ...]:
    return (
        BooleanGate(flag.enabled),
        BlockGate(flag.block),
        AllowGate(flag.allow),
        PercentageOfActorsGate(flag.rollout, flag.key),
    )


# --- evaluation ----------------------------------------------------------------------
Check = Callable[[str | None], bool]


def _off(_target_id: str | None) -> bool:
    return False


def _on(_target_id: str | None) -> bool:
    return True


def _any(tests: tuple[Test, ...], context: EvaluationContext) -> bool:
    for test in tests:  # noqa: SIM110  (a loop: no generator made per evaluation)
        if test(context):
            return True
    return False


def compile_check(flag: Flag) -> Check:
    """The gates of a simple `flag` as one closure: the hot path of `is_enabled`."""
    if not flag.enabled:
        return _off
    block, allow, rollout, key = flag.block, flag.allow, flag.rollout, flag.key
    if not block and (rollout >= 100 or (rollout <= 0 and not allow)):
        return _on if rollout >= 100 else _off
    murmur = mmh3.hash

    def check(target_id: str | None) -> bool:
        if target_id is None:
            return rollout >= 100
        if target_id in block:
            return False
        if target_id in allow or rollout >= 100:
            return True
        return rollout > 0 and murmur(f"{key}:{target_id}", 0, False) % 100 < rollout

    return check


@dataclass(frozen=True, slots=True)
class VariantRule:
    """A strategy, for choosing a variant: the first that matches decides, with its own
    variants if it has some, else with the flag's (as Unleash's engine does)."""

    test: Test
    variants: tuple[Variant, ...]
    group_id: str


def _variant_rules(flag: Flag, tests: tuple[Test, ...]) -> tuple[VariantRule, ...]:
    """One rule per strategy, or none at all when no strategy has variants of its own."""
    if not any(strategy.variants for strategy in flag.strategies):
        return ()
    rules = []
    for strategy, test in zip(flag.strategies, tests, strict=True):
        # Unleash's engine sticks them to the strategy's own stickiness, as written.
        stickiness = strategy.parameters.get("stickiness", "default")
        variants = tuple(
            replace(variant, stickiness=stickiness, overrides=())
            for variant in strategy.variants or ()
        )
        group_id = strategy.group_id
        rules.append(VariantRule(test, variants, flag.key if group_id is None else group_id))
    return tuple(rules)


@dataclass(frozen=True, slots=True)
class CompiledFlag:
    flag: Flag
    gates: tuple[Gate, ...] = ()  # a simple flag's; a strategy flag has none to walk
    tests: tuple[Test, ...] = ()
    variant_rules: tuple[VariantRule, ...] = ()
    broken: bool = False

    @classmethod
    def of(cls, flag: Flag, segments: Mapping[int, Segment] | None = None) -> CompiledFlag:
        if flag.simple:
            return cls(flag, gates_of(flag))
        segments = segments or {}
        try:
            tests = tuple(compile_strategy(s, flag.key, segments) for s in flag.strategies)
        except BrokenRule:
            return cls(flag, broken=True)
        return cls(flag, tests=tests, variant_rules=_variant_rules(flag, tests))

    @property
    def check(self) -> Check:
        """`is_enabled` for a flag with no parents (see `FlagSnapshot` for the rest)."""
        if self.flag.simple:
            return compile_check(self.flag)
        if not self.flag.enabled or self.broken:
            return _off
        tests = self.tests
        if not tests:
            return _on
        # A context with just the target's field, built directly (the fastest way).
        attribute = "company_id" if self.flag.target is Target.COMPANY else "user_id"
        properties = EMPTY_CONTEXT.properties

        def check(target_id: str | None) -> bool:
            context = EvaluationContext(**{attribute: target_id}, properties=properties)
            return _any(tests, context)

        return check

    def target_of(self, context: EvaluationContext, target_id: str | None) -> str | None:
        if target_id is not None:
            return target_id
        return context.value(self.flag.target.context_field)

    def decide(self, context: EvaluationContext, target_id: str | None) -> Reason:
        """The flag's own decision (its parents aside)."""
        if not self.flag.enabled:
            return Reason.DISABLED
        if self.flag.simple:
            return self.walk(self.target_of(context, target_id))
        if self.broken:
            return Reason.INVALID_DEFINITION
        if not self.tests or _any(self.tests, context):
            return Reason.STRATEGY_MATCH
        return Reason.NO_STRATEGY_MATCH

    def walk(self, subject: str | None) -> Reason:
        """A simple flag's gates, in order, for its target id."""
        for gate in self.gates:
            decision = gate.decide(subject)
            if decision is not None:
                return decision
        return Reason.ROLLOUT_MISS  # unreachable: the percentage gate always decides

    def variant(self, context: EvaluationContext, target_id: str | None) -> Variant | None:
        """The variant for `context`, whether or not the flag is on (parents ask it so)."""
        if self.flag.simple:
            subject = self.target_of(context, target_id)
            if subject is not None:
                context = context.with_value("userId", subject)
            return choose_variant(self.flag.variants, self.flag.key, context)
        for rule in self.variant_rules:
            if rule.test(context):
                if rule.variants:
                    return choose_variant(rule.variants, rule.group_id, context)
                break  # the first strategy that matches has none: the flag's variants
        return choose_variant(self.flag.variants, self.flag.key, context)


@dataclass(frozen=True)
class FlagSnapshot:
    """Every flag and segment at one moment, compiled. Replaced whole, never mutated."""

    flags: Mapping[str, CompiledFlag] = field(default_factory=dict)
    checks: Mapping[str, Check] = field(default_factory=dict)
    segments: Mapping[int, Segment] = field(default_factory=dict)

    @classmethod
    def of(cls, flags: Iterable[Flag], segments: Iterable[Segment] = ()) -> FlagSnapshot:
        by_id = {segment.id: segment for segment in segments}
        compiled = {flag.key: CompiledFlag.of(flag, by_id) for flag in flags}
        checks: dict[str, Check] = {}
        snapshot = cls(compiled, checks, by_id)
        for key, item in compiled.items():
            if item.flag.dependencies:
                checks[key] = snapshot._dependent_check(key)
            else:
                checks[key] = item.check
        return snapshot

    def _dependent_check(self, key: str) -> Check:
        return lambda target_id: self.evaluate(key, target_id).enabled

    def is_enabled(self, key: str, target_id: str | None = None) -> bool:
        check = self.checks.get(key)
        return check(target_id) if check is not None else False

    def evaluate(
        self,
        key: str,
        target_id: str | None = None,
        context: EvaluationContext | None = None,
    ) -> Evaluation:
        """How `key` decides for `target_id` (the flag's target field) and `context`."""
        compiled = self.flags.get(key)
        if compiled is None:
            return Evaluation(key, False, Reason.FLAG_NOT_FOUND, None, target_id)
        flag = compiled.flag
        if flag.simple and not flag.dependencies and not flag.variants:
            # The common case, without building a context: the gates need one id.
            subject = target_id
            if subject is None and context is not None:
                subject = context.value(flag.target.context_field)
            reason = compiled.walk(subject)
            return Evaluation(key, reason in ON_REASONS, reason, None, subject)
        context = context or EMPTY_CONTEXT
        field_name = flag.target.context_field
        if target_id is not None and context.value(field_name) is None:
            context = context.with_value(field_name, target_id)
        reason = self._reason(compiled, context, target_id)
        enabled = reason in ON_REASONS
        variant = compiled.variant(context, target_id) if enabled else None
        return Evaluation(key, enabled, reason, variant, compiled.target_of(context, target_id))

    def _reason(
        self, compiled: CompiledFlag, context: EvaluationContext, target_id: str | None
    ) -> Reason:
        if not compiled.flag.enabled:
            return Reason.DISABLED
        for dependency in compiled.flag.dependencies:
            if not self._satisfied(dependency, context):
                return Reason.DEPENDENCY_NOT_MET
        return compiled.decide(context, target_id)

    def _satisfied(self, dependency: Dependency, context: EvaluationContext) -> bool:
        parent = self.flags.get(dependency.feature)
        if parent is None or parent.flag.dependencies:
            return False  # a missing parent, or a chain: Unleash allows one level only
        if dependency.variants is not None:
            variant = parent.variant(context, None)
            if (
                variant is not None
                and dependency.variants
                and variant.name not in dependency.variants
            ):
                return False
        return (parent.decide(context, None) in ON_REASONS) is dependency.enabled


__all__ = [
    "VARIANT_SEED",
    "CompiledFlag",
    "Dependency",
    "Evaluation",
    "Flag",
    "FlagSnapshot",
    "Reason",
    "Segment",
    "Strategy",
    "Target",
    "Variant",
    "choose_variant",
    "normalized_hash",
]


# --- the defaults of the original ---------------------------------------------
DEFAULT_FLAGS: tuple[Flag, ...] = (
    Flag("core-api", "The core API.", enabled=True),
    Flag("authentication", "API key authentication.", enabled=True),
    Flag(
        "ai-recommendations",
        "AI-generated recommendations.",
        enabled=True,
        target=Target.COMPANY,
    ),
    Flag(
        "advanced-analytics",
        "Advanced analytics dashboards.",
        enabled=True,
        target=Target.COMPANY,
    ),
    Flag("bulk-operations", "Bulk import and export.", enabled=True, target=Target.COMPANY),
    Flag(
        "vision-analysis",
        "Image analysis, rolled out to 10 % of companies.",
        enabled=True,
        target=Target.COMPANY,
        rollout=10,
    ),
    Flag(
        "mobile-app",
        "The mobile app, rolled out to 5 % of users.",
        enabled=True,
        target=Target.USER,
        rollout=5,
    ),
    Flag("use-read-replicas", "Send read queries to replicas.", enabled=False),
    Flag("enable-caching", "Tenant-scoped read caching.", enabled=True),
    Flag(
        "maintenance-mode",
        "Every non-admin route answers 503 while on.",
        enabled=False,
    ),
)
