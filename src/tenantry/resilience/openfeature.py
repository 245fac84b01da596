"""An OpenFeature provider, so applications can use the standard OpenFeature API.

```python
from openfeature import api
api.set_provider(TenantryProvider(services.resilience.flags))
client = api.get_client()
client.get_boolean_value("ai-recommendations", False, EvaluationContext("acme"))
```

The targeting key is the flag's target id (a company or user id). Boolean flags
resolve to on/off; string flags to the variant's name; integer, float and object
flags to the variant's payload. Reasons map to OpenFeature's: a rollout decision
is SPLIT, allow/block lists TARGETING_MATCH, a 100 % rollout STATIC, off DISABLED.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any, TypeVar

from openfeature.evaluation_context import EvaluationContext
from openfeature.event import ProviderEventDetails
from openfeature.exception import ErrorCode
from openfeature.flag_evaluation import FlagResolutionDetails, FlagValueType
from openfeature.flag_evaluation import Reason as OFReason
from openfeature.provider import AbstractProvider
from openfeature.provider.metadata import Metadata

from tenantry.resilience.context import EvaluationContext as FlagContext
from tenantry.resilience.flags import Evaluation, Flag, Reason, Segment
from tenantry.resilience.service import FlagService

T = TypeVar("T")


def _reason(evaluation: Evaluation, rollout: int | None) -> str:
    if evaluation.reason is Reason.DISABLED:
        return OFReason.DISABLED
    if evaluation.reason in (Reason.ALLOWED, Reason.BLOCKED):
        return OFReason.TARGETING_MATCH
    if evaluation.variant is not None:
        return OFReason.SPLIT
    if rollout is not None and rollout >= 100:
        return OFReason.STATIC
    return OFReason.SPLIT


def tenantry_context(context: EvaluationContext | None) -> FlagContext | None:
    """OpenFeature's attributes as Tenantry's context: Unleash's field names are fields
    (userId, companyId, sessionId, remoteAddress, environment, appName, currentTime),
    any other attribute a property; the targeting key stays the flag's target id."""
    if context is None or not context.attributes:
        return None
    return FlagContext.of(
        {
            **{name: value for name, value in context.attributes.items() if value is not None},
            "properties": {
                name: value
                for name, value in context.attributes.items()
                if value is not None and name not in FlagContext.FIELD_NAMES
            },
        }
    )


class TenantryProvider(AbstractProvider):
    def __init__(self, flags: FlagService) -> None:
        super().__init__()
        self.flags = flags
        self._known = {key: c.flag for key, c in flags.snapshot.flags.items()}
        flags.store.add_listener(self._on_snapshot)

    def _on_snapshot(self, flags: list[Flag], _segments: list[Segment]) -> None:
        """Tell OpenFeature which flags changed (a change here or in another process)."""
        current = {flag.key: flag for flag in flags}
        changed = sorted(
            key
            for key in current.keys() | self._known.keys()
            if current.get(key) != self._known.get(key)
        )
        self._known = current
        if changed:
            self.emit_provider_configuration_changed(ProviderEventDetails(flags_changed=changed))

    def get_metadata(self) -> Metadata:
        return Metadata(name="tenantry")

    def _evaluate(
        self, flag_key: str, context: EvaluationContext | None
    ) -> tuple[Evaluation, int | None]:
        target_id = context.targeting_key if context is not None else None
        evaluation = self.flags.evaluate(flag_key, target_id, tenantry_context(context))
        compiled = self.flags.snapshot.flags.get(flag_key)
        return evaluation, compiled.flag.rollout if compiled else None

    def _not_found(self, flag_key: str, default: T) -> FlagResolutionDetails[T]:
        return FlagResolutionDetails(
            value=default,
            reason=OFReason.ERROR,
            error_code=ErrorCode.FLAG_NOT_FOUND,
            error_message=f"no feature flag {flag_key!r}",
        )

    def resolve_boolean_details(
        self,
        flag_key: str,
        default_value: bool,
        evaluation_context: EvaluationContext | None = None,
    ) -> FlagResolutionDetails[bool]:
        evaluation, rollout = self._evaluate(flag_key, evaluation_context)
        if evaluation.reason is Reason.FLAG_NOT_FOUND:
            return self._not_found(flag_key, default_value)
        return FlagResolutionDetails(
            value=evaluation.enabled,
            reason=_reason(evaluation, rollout),
            variant="on" if evaluation.enabled else "off",
            flag_metadata={"tenantryReason": evaluation.reason.value},
        )

    def resolve_string_details(
        self,
        flag_key: str,
        default_value: str,
        evaluation_context: EvaluationContext | None = None,
    ) -> FlagResolutionDetails[str]:
        evaluation, rollout = self._evaluate(flag_key, evaluation_context)
        if evaluation.reason is Reason.FLAG_NOT_FOUND:
            return self._not_found(flag_key, default_value)
        if evaluation.variant is None:
            return FlagResolutionDetails(
                value=default_value,
                reason=OFReason.DEFAULT if evaluation.enabled else _reason(evaluation, rollout),
                flag_metadata={"tenantryReason": evaluation.reason.value},
            )
        return FlagResolutionDetails(
            value=evaluation.variant.name,
            reason=_reason(evaluation, rollout),
            variant=evaluation.variant.name,
            flag_metadata={"tenantryReason": evaluation.reason.value},
        )

    def _payload(
        self,
        flag_key: str,
        default_value: Any,
        context: EvaluationContext | None,
        expected: type | tuple[type, ...],
    ) -> FlagResolutionDetails[Any]:
        evaluation, rollout = self._evaluate(flag_key, context)
        if evaluation.reason is Reason.FLAG_NOT_FOUND:
            return self._not_found(flag_key, default_value)
        variant = evaluation.variant
        if variant is None:
            return FlagResolutionDetails(
                value=default_value,
                reason=OFReason.DEFAULT if evaluation.enabled else _reason(evaluation, rollout),
            )
        payload = variant.payload
        if isinstance(payload, Mapping) and "value" in payload and expected is not dict:
            payload = payload["value"]  # Unleash-style {"type": ..., "value": ...}
        value = _coerce(payload, expected)
        if value is None:
            return FlagResolutionDetails(
                value=default_value,
                reason=OFReason.ERROR,
                error_code=ErrorCode.TYPE_MISMATCH,
                error_message=f"variant {variant.name!r} payload is not {expected}",
                variant=variant.name,
            )
        return FlagResolutionDetails(
            value=value, reason=_reason(evaluation, rollout), variant=variant.name
        )

    def resolve_integer_details(
        self,
        flag_key: str,
        default_value: int,
        evaluation_context: EvaluationContext | None = None,
    ) -> FlagResolutionDetails[int]:
        return self._payload(flag_key, default_value, evaluation_context, int)

    def resolve_float_details(
        self,
        flag_key: str,
        default_value: float,
        evaluation_context: EvaluationContext | None = None,
    ) -> FlagResolutionDetails[float]:
        return self._payload(flag_key, default_value, evaluation_context, float)

    def resolve_object_details(
        self,
        flag_key: str,
        default_value: Sequence[FlagValueType] | Mapping[str, FlagValueType],
        evaluation_context: EvaluationContext | None = None,
    ) -> FlagResolutionDetails[Sequence[FlagValueType] | Mapping[str, FlagValueType]]:
        return self._payload(flag_key, default_value, evaluation_context, (dict, list))


def _coerce(value: Any, expected: type | tuple[type, ...]) -> Any:
    """The payload as the expected type (numbers may arrive as strings), or None."""
    if expected is int:
        if isinstance(value, bool):
            return None
        if isinstance(value, int):
            return value
        if isinstance(value, str):
            try:
                return int(value)
            except ValueError:
                return None
        return None
    if expected is float:
        if isinstance(value, bool):
            return None
        if isinstance(value, int | float):
            return float(value)
        if isinstance(value, str):
            try:
                return float(value)
            except ValueError:
                return None
        return None
    return value if isinstance(value, expected) else None
