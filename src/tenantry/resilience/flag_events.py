"""A flag evaluation as the OpenTelemetry feature-flag conventions record it (pure:
the flag service hands these attributes to tracing, which adds the span event).

Attributes of the `feature_flag.evaluation` event (semantic conventions, feature
flags): the key, the variant, the reason from the conventions' enum, and the
provider, "tenantry". Reasons are mapped as the OpenFeature provider maps them
(resilience/openfeature.py), since OpenFeature's reasons are where the enum comes from.
"""

from __future__ import annotations

from tenantry.resilience.flags import Evaluation, Reason

EVENT = "feature_flag.evaluation"
PROVIDER = "tenantry"

_TARGETED = frozenset({Reason.ALLOWED, Reason.BLOCKED, Reason.STRATEGY_MATCH})
_ERRORS = {Reason.FLAG_NOT_FOUND: "flag_not_found", Reason.INVALID_DEFINITION: "general"}


def reason(evaluation: Evaluation, rollout: int | None) -> str:
    """The convention's `feature_flag.result.reason` for one of Tenantry's reasons."""
    found = evaluation.reason
    if found in _ERRORS:
        return "error"
    if found is Reason.DISABLED:
        return "disabled"
    if found in _TARGETED:
        return "targeting_match"
    if found in (Reason.NO_STRATEGY_MATCH, Reason.DEPENDENCY_NOT_MET):
        return "default"  # no rule gave a value: the flag's off
    if evaluation.variant is None and rollout is not None and rollout >= 100:
        return "static"
    return "split"  # a percentage rollout decided, or a variant was drawn


def attributes(evaluation: Evaluation, rollout: int | None) -> dict[str, str | bool]:
    """The event's attributes; `tenantry.flag.reason` keeps Tenantry's own finer reason."""
    variant = evaluation.variant.name if evaluation.variant is not None else None
    found: dict[str, str | bool] = {
        "feature_flag.key": evaluation.key,
        "feature_flag.provider.name": PROVIDER,
        "feature_flag.result.reason": reason(evaluation, rollout),
        "feature_flag.result.variant": variant or ("on" if evaluation.enabled else "off"),
        "feature_flag.result.value": evaluation.enabled,
        "tenantry.flag.reason": evaluation.reason.value,
    }
    error = _ERRORS.get(evaluation.reason)
    if error is not None:
        found["error.type"] = error
    return found
