"""Variants: weighted A/B arms, chosen by Unleash's variant hash, with overrides.

The hash is MurmurHash3 of "<groupId>:<stickiness value>" with Unleash's seed
86028157, modulo the total weight, plus one; the weights are laid end to end and
the first variant whose running total reaches that point wins. The stickiness is
the first variant's (`default`: userId, then sessionId); without a value to stick
to the choice is random, as in Unleash. Overrides (a context field's values pinned
to a variant) are checked first, in order.
"""

from __future__ import annotations

import json
import random
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import mmh3

from tenantry.resilience.context import EvaluationContext

VARIANT_SEED = 86028157  # Unleash's seed for variant assignment


def normalized_hash(identifier: str, group_id: str, normalizer: int = 100, seed: int = 0) -> int:
    """Unleash's normalizedHash: 1..normalizer for `identifier` within `group_id`."""
    return mmh3.hash(f"{group_id}:{identifier}", seed, signed=False) % normalizer + 1


@dataclass(frozen=True, slots=True)
class Override:
    context_name: str
    values: tuple[str, ...]

    def to_dict(self) -> dict[str, Any]:
        return {"contextName": self.context_name, "values": list(self.values)}


@dataclass(frozen=True, slots=True)
class Variant:
    name: str
    weight: int
    payload: Any = None  # Unleash's {"type": ..., "value": ...}, or any JSON of Tenantry's
    stickiness: str | None = None
    overrides: tuple[Override, ...] = ()

    def to_dict(self) -> dict[str, Any]:
        data: dict[str, Any] = {"name": self.name, "weight": self.weight, "payload": self.payload}
        if self.stickiness is not None:
            data["stickiness"] = self.stickiness
        if self.overrides:
            data["overrides"] = [override.to_dict() for override in self.overrides]
        return data

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Variant:
        return cls(
            name=data["name"],
            weight=int(data["weight"]),
            payload=data.get("payload"),
            stickiness=data.get("stickiness"),
            overrides=tuple(
                Override(o["contextName"], tuple(o.get("values") or ()))
                for o in data.get("overrides") or ()
            ),
        )

    def unleash_payload(self) -> dict[str, str] | None:
        """The payload as Unleash carries it: {"type", "value"}, other JSON as type "json"."""
        payload = self.payload
        if payload is None:
            return None
        if isinstance(payload, Mapping) and set(payload) == {"type", "value"}:
            return {"type": str(payload["type"]), "value": str(payload["value"])}
        return {"type": "json", "value": json.dumps(payload, separators=(",", ":"))}


def stickiness_value(stickiness: str | None, context: EvaluationContext) -> str | None:
    """The value a variant sticks to, as Unleash's engine finds it."""
    if stickiness is None or stickiness == "default":
        return context.user_id if context.user_id is not None else context.session_id
    if stickiness == "currentTime":  # not one of the fields a variant sticks to: a property
        return context.properties.get(stickiness)
    return context.value(stickiness)


def _override(variants: Sequence[Variant], context: EvaluationContext) -> Variant | None:
    for variant in variants:
        for override in variant.overrides:
            value = context.value(override.context_name)
            if value is not None and value in override.values:
                return variant
    return None


def choose_variant(
    variants: Sequence[Variant], group_id: str, context: EvaluationContext
) -> Variant | None:
    """Unleash's variant selection for `context` (None when there are no variants)."""
    if not variants:
        return None
    pinned = _override(variants, context)
    if pinned is not None:
        return pinned
    total = sum(variant.weight for variant in variants)
    if total <= 0:
        return None
    seed = stickiness_value(variants[0].stickiness, context)
    if seed is None:
        # Unleash draws 0..total-1, which can land on a weight-0 first arm; 1..total cannot.
        point = random.randint(1, total)  # noqa: S311  (A/B assignment, not security)
    else:
        point = normalized_hash(seed, group_id, total, VARIANT_SEED)
    counter = 0
    for variant in variants:
        counter += variant.weight
        if counter >= point:
            return variant
    return None  # unreachable: the last counter equals total ≥ point
