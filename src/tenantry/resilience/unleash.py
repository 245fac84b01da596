"""Unleash client-features documents in and out (`{"version": 2, "features", "segments"}`).

`read_document` validates a whole document before anything is written: the first
problem is a 422 naming the feature and the field, and nothing is imported. It is
as lenient as Unleash's engine where the engine is (an unknown operator or a value
that does not parse is kept, and evaluates as Unleash evaluates it); it is strict
on shape and size, where the engine would refuse the document.

`export_document` writes every flag as Unleash reads it. A simple flag becomes
the standard strategies that decide exactly as its gates do, so an export
imported into Unleash or into another Tenantry keeps every user on the same side:

    allow list   default          + [target IN allow, target NOT_IN block]
    rollout 100  default          + [target NOT_IN block]
    rollout n    flexibleRollout  n %, sticky on the target field, groupId = key
    rollout 0    flexibleRollout  0 % (nothing else: off for everyone)
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, replace
from typing import Annotated, Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from tenantry.errors import InvalidInput
from tenantry.resilience.constraints import Constraint
from tenantry.resilience.flags import Dependency, Flag, Segment, Strategy, Target
from tenantry.resilience.strategies import TENANTRY_ROLLOUTS
from tenantry.resilience.variants import Override, Variant

VERSIONS = (1, 2)
MAX_FEATURES = 10_000
MAX_ITEMS = 1_000  # strategies, constraints, variants, segments per parent
MAX_VALUES = 10_000
Text = Annotated[str, Field(max_length=10_000)]
Name = Annotated[str, Field(min_length=1, max_length=100)]
Scalar = str | int | float | bool


class _Model(BaseModel):
    # Strict: "yes" is not a boolean, 5 is not a name (Unleash's engine refuses them too).
    model_config = ConfigDict(extra="ignore", populate_by_name=True, strict=True)


class ConstraintIn(_Model):
    context_name: Annotated[Text, Field(alias="contextName")]
    operator: Annotated[str, Field(max_length=64)]
    values: Annotated[list[Text], Field(max_length=MAX_VALUES)] | None = None
    value: Text | None = None
    inverted: bool | None = False
    case_insensitive: Annotated[bool | None, Field(alias="caseInsensitive")] = False

    def build(self) -> Constraint:
        return Constraint(
            self.context_name,
            self.operator,
            tuple(self.values) if self.values is not None else None,
            self.value,
            bool(self.inverted),
            bool(self.case_insensitive),
        )


class PayloadIn(_Model):
    type: Annotated[str, Field(max_length=100)]
    value: Text


class OverrideIn(_Model):
    context_name: Annotated[Text, Field(alias="contextName")]
    values: Annotated[list[Text], Field(max_length=MAX_VALUES)] = []


class VariantIn(_Model):
    name: Name
    weight: Annotated[int, Field(ge=0, le=1_000_000)] = 0
    stickiness: Text | None = None
    payload: PayloadIn | None = None
    overrides: Annotated[list[OverrideIn], Field(max_length=MAX_ITEMS)] | None = None

    def build(self) -> Variant:
        return Variant(
            self.name,
            self.weight,
            self.payload.model_dump() if self.payload is not None else None,
            self.stickiness,
            tuple(Override(o.context_name, tuple(o.values)) for o in self.overrides or ()),
        )


class StrategyIn(_Model):
    name: Annotated[str, Field(min_length=1, max_length=100)]
    parameters: Annotated[dict[str, Scalar | None], Field(max_length=MAX_ITEMS)] | None = None
    constraints: Annotated[list[ConstraintIn], Field(max_length=MAX_ITEMS)] | None = None
    segments: Annotated[list[int], Field(max_length=MAX_ITEMS)] | None = None
    variants: Annotated[list[VariantIn], Field(max_length=MAX_ITEMS)] | None = None
    disabled: bool | None = False

    def build(self) -> Strategy:
        return Strategy(
            self.name,
            {k: _text(v) for k, v in (self.parameters or {}).items() if v is not None},
            tuple(c.build() for c in self.constraints or ()),
            tuple(self.segments or ()),
            None if self.variants is None else tuple(v.build() for v in self.variants),
        )


class DependencyIn(_Model):
    feature: Name
    enabled: bool | None = None
    variants: Annotated[list[Name], Field(max_length=MAX_ITEMS)] | None = None

    def build(self) -> Dependency:
        variants = None if self.variants is None else tuple(self.variants)
        return Dependency(self.feature, True if self.enabled is None else self.enabled, variants)


class FeatureIn(_Model):
    name: str
    description: Annotated[str, Field(max_length=1000)] | None = None
    enabled: bool = False
    strategies: Annotated[list[StrategyIn], Field(max_length=MAX_ITEMS)] | None = None
    # Version 1's oldest shape: one strategy named on the feature itself.
    strategy: Annotated[str, Field(max_length=100)] | None = None
    parameters: dict[str, Scalar | None] | None = None
    variants: Annotated[list[VariantIn], Field(max_length=MAX_ITEMS)] | None = None
    dependencies: Annotated[list[DependencyIn], Field(max_length=MAX_ITEMS)] | None = None

    def build(self) -> Flag:
        strategies = self.strategies
        if strategies is None and self.strategy is not None:
            strategies = [StrategyIn(name=self.strategy, parameters=self.parameters)]
        return Flag(
            key=self.name,
            description=self.description or "",
            enabled=self.enabled,
            variants=tuple(v.build() for v in self.variants or ()),
            strategies=tuple(s.build() for s in strategies or () if not s.disabled),
            dependencies=tuple(d.build() for d in self.dependencies or ()),
        )


class SegmentIn(_Model):
    id: int
    name: Annotated[str, Field(max_length=100)] | None = None
    description: Annotated[str, Field(max_length=1000)] | None = None
    constraints: Annotated[list[ConstraintIn], Field(max_length=MAX_ITEMS)] = []

    def build(self) -> Segment:
        return Segment(
            self.id,
            self.name or f"segment-{self.id}",
            tuple(c.build() for c in self.constraints),
            self.description or "",
        )


@dataclass(frozen=True, slots=True)
class Document:
    flags: tuple[Flag, ...]
    segments: tuple[Segment, ...]


def _text(value: Scalar) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)


def _problem(field: str, message: str, feature: str | None = None) -> InvalidInput:
    where = f"feature {feature!r}: " if feature is not None else ""
    details: dict[str, Any] = {"field": field}
    if feature is not None:
        details["feature"] = feature
    return InvalidInput(f"{where}{field}: {message}", details=details)


def _first_error(error: ValidationError, prefix: str) -> tuple[str, str]:
    first = error.errors()[0]
    path = prefix + "".join(
        f"[{part}]" if isinstance(part, int) else f".{part}" for part in first["loc"]
    )
    return path.lstrip("."), first["msg"]


def read_document(data: Any, *, check_key: Any = None) -> Document:
    """The flags and segments of an Unleash document; `InvalidInput` at its first problem.

    `check_key(name)` raises `InvalidInput` for a name Tenantry cannot take as a key.
    """
    if not isinstance(data, Mapping):
        raise _problem("document", "must be a JSON object")
    version = data.get("version")
    if isinstance(version, bool) or version not in VERSIONS:
        raise _problem("version", f"must be one of {', '.join(map(str, VERSIONS))}")
    features = data.get("features")
    if not isinstance(features, list):
        raise _problem("features", "must be a list")
    if len(features) > MAX_FEATURES:
        raise _problem("features", f"at most {MAX_FEATURES} features")
    flags: dict[str, Flag] = {}
    for index, raw in enumerate(features):
        name = raw.get("name") if isinstance(raw, Mapping) else None
        label = name if isinstance(name, str) else f"#{index}"
        try:
            feature = FeatureIn.model_validate(raw)
        except ValidationError as exc:
            field, message = _first_error(exc, "")
            raise _problem(field, message, label) from None
        if check_key is not None:
            try:
                check_key(feature.name)
            except InvalidInput as exc:
                raise _problem("name", str(exc).removeprefix("key: "), label) from None
        if feature.name in flags:
            raise _problem("name", "appears twice in the document", label)
        flags[feature.name] = feature.build()
    segments = _read_segments(data.get("segments"))
    return Document(tuple(flags.values()), segments)


def _read_segments(raw: Any) -> tuple[Segment, ...]:
    if raw is None:
        return ()
    if not isinstance(raw, list) or len(raw) > MAX_FEATURES:
        raise _problem("segments", f"must be a list of at most {MAX_FEATURES} segments")
    segments: dict[int, Segment] = {}
    for index, item in enumerate(raw):
        try:
            segment = SegmentIn.model_validate(item)
        except ValidationError as exc:
            field, message = _first_error(exc, f"segments[{index}]")
            raise _problem(field, message) from None
        if segment.id in segments:
            raise _problem(f"segments[{index}].id", f"segment {segment.id} appears twice")
        segments[segment.id] = segment.build()
    return tuple(segments.values())


# --- export --------------------------------------------------------------------------
def simple_strategies(flag: Flag) -> tuple[Strategy, ...]:
    """Unleash strategies that decide exactly as a simple flag's gates do."""
    field = flag.target.context_field
    block = (Constraint(field, "NOT_IN", tuple(sorted(flag.block))),) if flag.block else ()
    strategies: list[Strategy] = []
    if flag.allow:
        allowed = Constraint(field, "IN", tuple(sorted(flag.allow)))
        strategies.append(Strategy("default", {}, (allowed, *block)))
    if flag.rollout >= 100:
        strategies.append(Strategy("default", {}, block))
    elif flag.rollout > 0 or not strategies:
        parameters = {
            "rollout": str(max(flag.rollout, 0)),
            "stickiness": field,
            "groupId": flag.key,
        }
        strategies.append(Strategy("flexibleRollout", parameters, block))
    return tuple(strategies)


def _unleash_strategy(strategy: Strategy) -> Strategy:
    stickiness = TENANTRY_ROLLOUTS.get(strategy.name)
    if stickiness is None:
        return strategy
    parameters = {**strategy.parameters, "stickiness": stickiness}
    return replace(strategy, name="flexibleRollout", parameters=parameters)


def _variant_out(variant: Variant, stickiness: str | None) -> dict[str, Any]:
    data: dict[str, Any] = {
        "name": variant.name,
        "weight": variant.weight,
        "weightType": "variable",
        "stickiness": variant.stickiness or stickiness or "default",
    }
    payload = variant.unleash_payload()
    if payload is not None:
        data["payload"] = payload
    if variant.overrides:
        data["overrides"] = [override.to_dict() for override in variant.overrides]
    return data


def _strategy_out(strategy: Strategy) -> dict[str, Any]:
    data = _unleash_strategy(strategy).to_dict()
    if strategy.variants is not None:
        data["variants"] = [_variant_out(v, strategy.stickiness) for v in strategy.variants]
    return data


def feature_out(flag: Flag) -> dict[str, Any]:
    simple = flag.simple
    strategies = simple_strategies(flag) if simple else flag.strategies
    # A simple flag's variants stick to its target id, which is this field to Unleash.
    stickiness = "companyId" if simple and flag.target is Target.COMPANY else None
    return {
        "name": flag.key,
        "description": flag.description,
        "type": "release",
        "project": "default",
        "enabled": flag.enabled,
        "stale": False,
        "impressionData": False,
        "strategies": [_strategy_out(strategy) for strategy in strategies],
        "variants": [_variant_out(variant, stickiness) for variant in flag.variants],
        "dependencies": [dependency.to_dict() for dependency in flag.dependencies],
    }


def export_document(flags: Iterable[Flag], segments: Iterable[Segment]) -> dict[str, Any]:
    return {
        "version": 2,
        "features": [feature_out(flag) for flag in flags],
        "segments": [segment.to_dict() for segment in segments],
    }
