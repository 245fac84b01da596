"""Activation strategies and segments, compiled to tests of an `EvaluationContext`.

A flag with strategies is on when any strategy matches (none at all: on for
everyone). A strategy matches when its own rule holds and every constraint of
its own and of its segments does. Unleash's built-in strategies:

    default                  everyone
    userWithId               userIds: "a, b, c"
    flexibleRollout          rollout %, stickiness (default | random | any field), groupId
    gradualRolloutUserId     percentage, groupId (by userId)
    gradualRolloutSessionId  percentage, groupId (by sessionId)
    gradualRolloutRandom     percentage
    remoteAddress            IPs: addresses and CIDR networks
    applicationHostname      hostNames (this machine's name)

plus Tenantry's own `companyRollout` and `userRollout` (rollout %, groupId), which
are `flexibleRollout` sticky on `companyId` or `userId`; Unleash reads them as
custom strategies (off), so an export writes them as `flexibleRollout`.

A strategy naming a segment that does not exist never matches; a rule that cannot
be compiled (see `constraints`) turns the whole flag off, as in Unleash.
"""

from __future__ import annotations

import os
import random
import socket
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from tenantry.resilience.constraints import (
    BrokenRule,
    Constraint,
    Test,
    compile_constraints,
    parse_address,
    parse_network,
)
from tenantry.resilience.context import EvaluationContext
from tenantry.resilience.variants import Variant, normalized_hash

UNLEASH_STRATEGIES = frozenset(
    {
        "default",
        "userWithId",
        "flexibleRollout",
        "gradualRolloutUserId",
        "gradualRolloutSessionId",
        "gradualRolloutRandom",
        "remoteAddress",
        "applicationHostname",
    }
)
TENANTRY_ROLLOUTS = {"companyRollout": "companyId", "userRollout": "userId"}
STRATEGIES = UNLEASH_STRATEGIES | frozenset(TENANTRY_ROLLOUTS)
MAX_PERCENTAGE = 255  # a rollout above this does not compile in Unleash's engine


@dataclass(frozen=True, slots=True)
class Segment:
    """A named, reusable set of constraints that strategies refer to by id."""

    id: int
    name: str
    constraints: tuple[Constraint, ...] = ()
    description: str = ""

    def to_dict(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "name": self.name,
            "description": self.description,
            "constraints": [constraint.to_dict() for constraint in self.constraints],
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Segment:
        return cls(
            id=int(data["id"]),
            name=data.get("name") or f"segment-{data['id']}",
            constraints=tuple(Constraint.from_dict(c) for c in data.get("constraints") or ()),
            description=data.get("description") or "",
        )


@dataclass(frozen=True, slots=True)
class Strategy:
    name: str
    parameters: Mapping[str, str] = field(default_factory=dict)
    constraints: tuple[Constraint, ...] = ()
    segments: tuple[int, ...] = ()
    variants: tuple[Variant, ...] | None = None  # None and () differ, as in Unleash

    def __hash__(self) -> int:
        return hash((self.name, tuple(sorted(self.parameters.items())), self.constraints))

    def to_dict(self) -> dict[str, Any]:
        data: dict[str, Any] = {
            "name": self.name,
            "parameters": dict(self.parameters),
            "constraints": [constraint.to_dict() for constraint in self.constraints],
            "segments": list(self.segments),
        }
        if self.variants is not None:
            data["variants"] = [variant.to_dict() for variant in self.variants]
        return data

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Strategy:
        variants = data.get("variants")
        return cls(
            name=data["name"],
            parameters={k: str(v) for k, v in (data.get("parameters") or {}).items()},
            constraints=tuple(Constraint.from_dict(c) for c in data.get("constraints") or ()),
            segments=tuple(int(s) for s in data.get("segments") or ()),
            variants=None if variants is None else tuple(Variant.from_dict(v) for v in variants),
        )

    @property
    def group_id(self) -> str | None:
        return self.parameters.get("groupId")

    @property
    def stickiness(self) -> str:
        return self.parameters.get("stickiness") or "default"


# --- compiling ----------------------------------------------------------------------
def _always(_context: EvaluationContext) -> bool:
    return True


def _never(_context: EvaluationContext) -> bool:
    return False


def _percentage(raw: str | None) -> int | None:
    """A whole percentage as Unleash reads one; `BrokenRule` above what it compiles."""
    digits = raw.removeprefix("+") if raw is not None else ""
    if not digits.isascii() or not digits.isdigit():
        return None
    value = int(digits)
    if value > MAX_PERCENTAGE:
        raise BrokenRule(f"a rollout of {value} % does not compile")
    return value


def _sticky_rollout(percentage: int, stickiness: str, group_id: str) -> Test:
    def resolve(context: EvaluationContext) -> str | None:
        if stickiness == "random":
            return str(random.randint(1, 99))  # noqa: S311  (Unleash's random stickiness)
        if stickiness == "default":
            for value in (context.user_id, context.session_id):
                if value is not None:
                    return value
            return str(random.randint(1, 99))  # noqa: S311
        return context.value(stickiness)

    def test(context: EvaluationContext) -> bool:
        value = resolve(context)
        return value is not None and normalized_hash(value, group_id) <= percentage

    return test


def _listed(raw: str | None) -> list[str]:
    return [item.strip() for item in raw.split(",")] if raw is not None else []


def _user_with_id(strategy: Strategy, _flag: str) -> Test:
    if "userIds" not in strategy.parameters:
        return _never
    ids = frozenset(_listed(strategy.parameters["userIds"]))
    return lambda context: context.user_id is not None and context.user_id in ids


def _flexible(strategy: Strategy, flag: str) -> Test:
    rollout = _percentage(strategy.parameters.get("rollout"))
    if rollout is None:
        return _never
    return _sticky_rollout(rollout, strategy.stickiness, strategy.group_id or flag)


def _tenantry_rollout(strategy: Strategy, flag: str) -> Test:
    rollout = _percentage(strategy.parameters.get("rollout"))
    if rollout is None:
        return _never
    return _sticky_rollout(rollout, TENANTRY_ROLLOUTS[strategy.name], strategy.group_id or flag)


def _gradual(field_name: str) -> Callable[[Strategy, str], Test]:
    def build(strategy: Strategy, _flag: str) -> Test:
        percentage = _percentage(strategy.parameters.get("percentage"))
        group_id = strategy.group_id
        if percentage is None or group_id is None:
            return _never
        return _sticky_rollout(percentage, field_name, group_id)

    return build


def _random(strategy: Strategy, _flag: str) -> Test:
    digits = strategy.parameters.get("percentage", "").removeprefix("+")
    if not digits.isascii() or not digits.isdigit():
        return _never
    percentage = int(digits)
    return lambda _context: random.randint(1, 99) < percentage  # noqa: S311


def _remote_address(strategy: Strategy, _flag: str) -> Test:
    if "IPs" not in strategy.parameters:
        return _never
    parsed = [parse_network(entry) for entry in _listed(strategy.parameters["IPs"])]
    networks = [network for network in parsed if network is not None]

    def test(context: EvaluationContext) -> bool:
        address = parse_address(context.remote_address) if context.remote_address else None
        return address is not None and any(
            address.version == network.version and address in network for network in networks
        )

    return test


def hostname() -> str:
    """This machine's name (the `hostname` variable first, as Unleash's engine reads it)."""
    return os.environ.get("hostname") or socket.gethostname()  # noqa: SIM112  (Unleash's name)


def _application_hostname(strategy: Strategy, _flag: str) -> Test:
    names = {name.lower() for name in _listed(strategy.parameters.get("hostNames", ""))}
    return lambda _context: hostname().lower() in names


_RULES: dict[str, Callable[[Strategy, str], Test]] = {
    "default": lambda _strategy, _flag: _always,
    "userWithId": _user_with_id,
    "flexibleRollout": _flexible,
    "gradualRolloutUserId": _gradual("userId"),
    "gradualRolloutSessionId": _gradual("sessionId"),
    "gradualRolloutRandom": _random,
    "remoteAddress": _remote_address,
    "applicationHostname": _application_hostname,
    "companyRollout": _tenantry_rollout,
    "userRollout": _tenantry_rollout,
}


def compile_strategy(strategy: Strategy, flag: str, segments: Mapping[int, Segment]) -> Test:
    """The strategy as one test; `BrokenRule` when Unleash could not compile it."""
    build = _RULES.get(strategy.name)
    rule = build(strategy, flag) if build is not None else _never  # custom: not ours to run
    constraints = list(strategy.constraints)
    for segment_id in strategy.segments:
        segment = segments.get(segment_id)
        if segment is None:
            return _never
        constraints.extend(segment.constraints)
    tested = compile_constraints(constraints)
    if tested is None:
        return rule
    if rule is _always:
        return tested
    if rule is _never:
        return _never
    return lambda context: tested(context) and rule(context)


def compile_strategies(
    strategies: Iterable[Strategy], flag: str, segments: Mapping[int, Segment]
) -> list[Test]:
    return [compile_strategy(strategy, flag, segments) for strategy in strategies]
