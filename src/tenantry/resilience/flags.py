"""Feature flags: the model, its gates, Unleash-compatible bucketing, and evaluation.

A flag is decided by small gate objects, walked in order (as Flipper does):
disabled → off; target id on the block list → off; on the allow list → on;
otherwise the percentage-of-actors gate puts the id in or out of the rollout.
Every evaluation can say why (`Reason`) and, for A/B flags, which variant.

Bucketing is Unleash's normalized hash — MurmurHash3 (x86, 32-bit) of
"<groupId>:<id>", modulo 100, plus 1 — with the flag key as group id, and
Unleash's variant hash (seed 86028157, modulo the total weight), so a team moving
between Unleash and Tenantry keeps the same users in each rollout and variant.
It is deterministic, sticky (bucket ≤ 10 stays ≤ 20 when the rollout grows) and
independent between flags (the key is part of the hashed string).

`FlagSnapshot` is what request paths read: an immutable dict of precompiled
checks, swapped whole when a flag changes, so evaluation takes no lock and does
no I/O. The precompiled `check` is the gates' logic inlined into one closure,
for speed; a test holds it equal to the gate walk on random flags and ids.
"""

from __future__ import annotations

import random
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field, replace
from enum import StrEnum
from typing import Any

import mmh3

VARIANT_SEED = 86028157  # Unleash's seed for variant assignment


class Target(StrEnum):
    """Which id a flag buckets by (the id `feature_gate` passes by default)."""

    GLOBAL = "global"
    COMPANY = "company"
    USER = "user"


class Reason(StrEnum):
    DISABLED = "disabled"
    BLOCKED = "blocked"
    ALLOWED = "allowed"
    ROLLOUT_MATCH = "rollout_match"
    ROLLOUT_MISS = "rollout_miss"
    FLAG_NOT_FOUND = "flag_not_found"


ON_REASONS = frozenset({Reason.ALLOWED, Reason.ROLLOUT_MATCH})


@dataclass(frozen=True, slots=True)
class Variant:
    name: str
    weight: int
    payload: Any = None

    def to_dict(self) -> dict[str, Any]:
        return {"name": self.name, "weight": self.weight, "payload": self.payload}


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
            variants=tuple(
                Variant(v["name"], int(v["weight"]), v.get("payload"))
                for v in data.get("variants", ())
            ),
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


# --- bucketing ---------------------------------------------------------------
def normalized_hash(identifier: str, group_id: str, normalizer: int = 100, seed: int = 0) -> int:
    """Unleash's normalizedHash: 1..normalizer for `identifier` within `group_id`."""
    return mmh3.hash(f"{group_id}:{identifier}", seed, signed=False) % normalizer + 1


def choose_variant(
    variants: Iterable[Variant], group_id: str, identifier: str | None
) -> Variant | None:
    """Unleash's variant selection: weights laid end to end, the hash picks a point.

    Without an id there is nothing to stick to; like Unleash, pick at random.
    """
    chosen = [variant for variant in variants if variant.weight > 0]
    total = sum(variant.weight for variant in chosen)
    if total <= 0:
        return None
    if identifier is None:
        point = random.randint(1, total)  # noqa: S311  (not security: A/B assignment)
    else:
        point = normalized_hash(identifier, group_id, total, VARIANT_SEED)
    counter = 0
    for variant in chosen:
        counter += variant.weight
        if counter >= point:
            return variant
    return None  # unreachable: the last counter equals total ≥ point


# --- gates -------------------------------------------------------------------
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


# --- evaluation --------------------------------------------------------------
Check = Callable[[str | None], bool]


def _off(_target_id: str | None) -> bool:
    return False


def _on(_target_id: str | None) -> bool:
    return True


def compile_check(flag: Flag) -> Check:
    """The gates of `flag` as one closure: the hot path of `is_enabled`."""
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
class CompiledFlag:
    flag: Flag
    gates: tuple[Gate, ...]
    check: Check

    @classmethod
    def of(cls, flag: Flag) -> CompiledFlag:
        return cls(flag, gates_of(flag), compile_check(flag))

    def evaluate(self, target_id: str | None = None) -> Evaluation:
        reason = Reason.ROLLOUT_MISS
        for gate in self.gates:
            decision = gate.decide(target_id)
            if decision is not None:
                reason = decision
                break
        enabled = reason in ON_REASONS
        variant = None
        if enabled and self.flag.variants:
            variant = choose_variant(self.flag.variants, self.flag.key, target_id)
        return Evaluation(self.flag.key, enabled, reason, variant, target_id)


@dataclass(frozen=True)
class FlagSnapshot:
    """Every flag at one moment, compiled. Replaced whole, never mutated."""

    flags: Mapping[str, CompiledFlag] = field(default_factory=dict)
    checks: Mapping[str, Check] = field(default_factory=dict)

    @classmethod
    def of(cls, flags: Iterable[Flag]) -> FlagSnapshot:
        compiled = {flag.key: CompiledFlag.of(flag) for flag in flags}
        return cls(compiled, {key: item.check for key, item in compiled.items()})

    def is_enabled(self, key: str, target_id: str | None = None) -> bool:
        check = self.checks.get(key)
        return check(target_id) if check is not None else False

    def evaluate(self, key: str, target_id: str | None = None) -> Evaluation:
        compiled = self.flags.get(key)
        if compiled is None:
            return Evaluation(key, False, Reason.FLAG_NOT_FOUND, None, target_id)
        return compiled.evaluate(target_id)


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
