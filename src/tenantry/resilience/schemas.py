"""HTTP models of the degradation API (camelCase on the wire)."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any

from pydantic import AfterValidator, Field, field_validator

from tenantry.errors import InvalidInput
from tenantry.resilience.breaker import Breaker
from tenantry.resilience.context import EvaluationContext
from tenantry.resilience.flags import Evaluation, Flag, Segment, Target
from tenantry.resilience.service import validate_key
from tenantry.resilience.stores.base import AuditEntry
from tenantry.resilience.unleash import (
    MAX_ITEMS,
    ConstraintIn,
    DependencyIn,
    OverrideIn,
    StrategyIn,
)
from tenantry.resilience.variants import Override, Variant
from tenantry.schemas import ApiModel


def _flag_key(key: str) -> str:
    try:
        return validate_key(key)
    except InvalidInput as exc:
        raise ValueError(exc.message.removeprefix("key: ")) from None


FlagKey = Annotated[str, AfterValidator(_flag_key)]
TargetId = Annotated[str, Field(pattern=r"^[^\s/]{1,128}$")]
Percentage = Annotated[int, Field(ge=0, le=100, description="0-100")]
Strategies = Annotated[list[StrategyIn], Field(max_length=MAX_ITEMS)]
Dependencies = Annotated[list[DependencyIn], Field(max_length=MAX_ITEMS)]


class VariantModel(ApiModel):
    name: Annotated[str, Field(min_length=1, max_length=100)]
    weight: Annotated[int, Field(ge=0, le=1_000_000)]
    payload: Any = None
    stickiness: Annotated[str, Field(max_length=100)] | None = None
    overrides: Annotated[list[OverrideIn], Field(max_length=MAX_ITEMS)] = []

    def to_variant(self) -> Variant:
        overrides = tuple(Override(o.context_name, tuple(o.values)) for o in self.overrides)
        return Variant(self.name, self.weight, self.payload, self.stickiness, overrides)


def _check_variants(variants: list[VariantModel] | None) -> list[VariantModel] | None:
    if variants:
        names = [variant.name for variant in variants]
        if len(set(names)) != len(names):
            raise ValueError("variant names must be unique")
        if sum(variant.weight for variant in variants) <= 0:
            raise ValueError("at least one variant needs a positive weight")
    return variants


class FlagCreate(ApiModel):
    key: FlagKey
    description: Annotated[str, Field(max_length=1000)] = ""
    enabled: bool = False
    target: Target = Target.GLOBAL
    rollout: Percentage = 100
    allow: Annotated[list[TargetId], Field(max_length=10_000)] = []
    block: Annotated[list[TargetId], Field(max_length=10_000)] = []
    variants: Annotated[list[VariantModel], Field(max_length=100)] = []
    strategies: Strategies = Field(
        [], description="Unleash strategies; when given, they decide (not rollout/allow/block)."
    )
    dependencies: Dependencies = []

    _variants = field_validator("variants")(_check_variants)

    def to_flag(self) -> Flag:
        return Flag(
            key=self.key,
            description=self.description,
            enabled=self.enabled,
            target=self.target,
            rollout=self.rollout,
            allow=frozenset(self.allow),
            block=frozenset(self.block),
            variants=tuple(variant.to_variant() for variant in self.variants),
            strategies=tuple(strategy.build() for strategy in self.strategies),
            dependencies=tuple(dependency.build() for dependency in self.dependencies),
        )


class FlagPatch(ApiModel):
    """Only the fields given change."""

    description: Annotated[str, Field(max_length=1000)] | None = None
    enabled: bool | None = None
    target: Target | None = None
    rollout: Percentage | None = None
    allow: Annotated[list[TargetId], Field(max_length=10_000)] | None = None
    block: Annotated[list[TargetId], Field(max_length=10_000)] | None = None
    variants: Annotated[list[VariantModel], Field(max_length=100)] | None = None
    strategies: Strategies | None = None
    dependencies: Dependencies | None = None

    _variants = field_validator("variants")(_check_variants)

    def changes(self) -> dict[str, Any]:
        given = self.model_dump(exclude_unset=True)
        changes: dict[str, Any] = {}
        for name, value in given.items():
            if value is None:
                continue
            if name in ("allow", "block"):
                changes[name] = frozenset(value)
            elif name == "variants":
                changes[name] = tuple(variant.to_variant() for variant in self.variants or ())
            elif name == "strategies":
                changes[name] = tuple(strategy.build() for strategy in self.strategies or ())
            elif name == "dependencies":
                changes[name] = tuple(d.build() for d in self.dependencies or ())
            else:
                changes[name] = getattr(self, name)
        return changes


class RolloutBody(ApiModel):
    percentage: Percentage


class TargetBody(ApiModel):
    target_id: TargetId


class CloseBody(ApiModel):
    force: bool = Field(
        False, description="Disable the circuit: always closed, recording nothing, until reset."
    )


class FlagOut(ApiModel):
    key: str
    description: str
    enabled: bool
    target: Target
    rollout: int
    allow: list[str]
    block: list[str]
    variants: list[VariantModel]
    strategies: list[StrategyIn]
    dependencies: list[DependencyIn]
    version: int

    @classmethod
    def of(cls, flag: Flag) -> FlagOut:
        return cls.model_validate(flag.to_dict())


class SegmentBody(ApiModel):
    name: Annotated[str, Field(min_length=1, max_length=100)]
    description: Annotated[str, Field(max_length=1000)] = ""
    constraints: Annotated[list[ConstraintIn], Field(max_length=MAX_ITEMS)] = []

    def to_segment(self, segment_id: int) -> Segment:
        constraints = tuple(constraint.build() for constraint in self.constraints)
        return Segment(segment_id, self.name, constraints, self.description)


class SegmentOut(SegmentBody):
    id: int

    @classmethod
    def of(cls, segment: Segment) -> SegmentOut:
        return cls.model_validate(segment.to_dict())


class ImportOut(ApiModel):
    imported: int


Scalar = str | int | float | bool


class ContextIn(ApiModel):
    """An Unleash context: the standard fields and free `properties` (values as strings)."""

    user_id: Annotated[str, Field(max_length=1000)] | None = None
    company_id: Annotated[str, Field(max_length=1000)] | None = None
    session_id: Annotated[str, Field(max_length=1000)] | None = None
    remote_address: Annotated[str, Field(max_length=1000)] | None = None
    environment: Annotated[str, Field(max_length=1000)] | None = None
    app_name: Annotated[str, Field(max_length=1000)] | None = None
    current_time: Annotated[str, Field(max_length=100)] | None = None
    properties: Annotated[dict[str, Scalar | None], Field(max_length=1000)] = {}

    def to_context(self) -> EvaluationContext:
        return EvaluationContext.of(self.model_dump(by_alias=True))


class EvaluateBody(ApiModel):
    context: ContextIn = ContextIn()


class PayloadOut(ApiModel):
    type: str
    value: str


class VariantResult(ApiModel):
    name: str
    enabled: bool
    payload: PayloadOut | None


class EvaluateOut(ApiModel):
    """Unleash's answer: `enabled`, and the variant (`disabled` when none or off)."""

    enabled: bool
    variant: VariantResult
    reason: str

    @classmethod
    def of(cls, evaluation: Evaluation) -> EvaluateOut:
        variant = evaluation.variant
        if variant is None:
            result = VariantResult(name="disabled", enabled=False, payload=None)
        else:
            payload = variant.unleash_payload()
            result = VariantResult(
                name=variant.name,
                enabled=True,
                payload=PayloadOut(**payload) if payload is not None else None,
            )
        return cls(enabled=evaluation.enabled, variant=result, reason=evaluation.reason.value)


class CheckOut(ApiModel):
    key: str
    target_id: str | None
    enabled: bool
    reason: str
    variant: VariantModel | None

    @classmethod
    def of(cls, evaluation: Evaluation) -> CheckOut:
        variant = evaluation.variant
        return cls(
            key=evaluation.key,
            target_id=evaluation.target_id,
            enabled=evaluation.enabled,
            reason=evaluation.reason.value,
            variant=VariantModel.model_validate(variant.to_dict()) if variant else None,
        )


class AuditOut(ApiModel):
    id: int
    key: str
    action: str
    actor: str
    at: datetime
    before: dict[str, Any] | None
    after: dict[str, Any] | None

    @classmethod
    def of(cls, entry: AuditEntry) -> AuditOut:
        return cls(
            id=entry.id,
            key=entry.key,
            action=entry.action,
            actor=entry.actor,
            at=entry.at,
            before=entry.before,
            after=entry.after,
        )


class CircuitOut(ApiModel):
    name: str
    state: str
    since: datetime
    retry_after_seconds: float
    consecutive_failures: int
    failed_calls: int
    not_permitted_calls: int
    slow_calls: int
    window: dict[str, Any]
    config: dict[str, Any]

    @classmethod
    def of(cls, breaker: Breaker) -> CircuitOut:
        config = breaker.config
        return cls(
            name=breaker.name,
            state=breaker.state.value,
            since=datetime.fromtimestamp(breaker.state_since).astimezone(),
            retry_after_seconds=round(breaker.retry_after, 3),
            consecutive_failures=breaker.consecutive_failures,
            failed_calls=breaker.failures_total,
            not_permitted_calls=breaker.rejected_total,
            slow_calls=breaker.slow_total,
            window=breaker.window_stats(),
            config={
                "failureThreshold": config.failure_threshold,
                "successThreshold": config.success_threshold,
                "timeout": config.timeout,
                "slidingWindowSize": config.sliding_window_size,
                "failureRateThreshold": config.failure_rate_threshold,
                "minimumCalls": config.minimum_calls,
                "slowCallDuration": config.slow_call_duration,
                "slowCallRateThreshold": config.slow_call_rate_threshold,
                "callTimeout": config.call_timeout,
                "permittedCallsInHalfOpen": config.half_open_permits,
                "hasFallback": breaker.has_fallback,
            },
        )
