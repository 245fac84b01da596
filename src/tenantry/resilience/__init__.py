"""Graceful degradation: circuit breakers and run-time feature flags."""

from tenantry.resilience.breaker import (
    Breaker,
    BreakerConfig,
    CallTimeoutError,
    CircuitOpenError,
    State,
    Transition,
)
from tenantry.resilience.flags import (
    Evaluation,
    Flag,
    Reason,
    Target,
    Variant,
    normalized_hash,
)
from tenantry.resilience.registry import BreakerRegistry

__all__ = [
    "Breaker",
    "BreakerConfig",
    "BreakerRegistry",
    "CallTimeoutError",
    "CircuitOpenError",
    "Evaluation",
    "Flag",
    "Reason",
    "State",
    "Target",
    "Transition",
    "Variant",
    "normalized_hash",
]
