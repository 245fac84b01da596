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

A strategy naming a segment that does not exist, like a rule that cannot be
compiled (see `constraints`), turns the whole flag off, as Unleash's engine does.
Its parameters are read as that engine writes them into its rule text: a
percentage is a Rust usize (over 100: the flag is off), a `groupId`, an IP, a
host name or a stickiness name it cannot quote breaks the flag, and `userIds` are
escaped as constraint values are. An empty `groupId` is a group id like another.
"""

from __future__ import annotations

import os
import random
import socket
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from functools import partial
from typing import Any

import mmh3

from tenantry.resilience.constraints import (
    RUST_WHITESPACE,
    BrokenRule,
    Constraint,
    Lookup,
    Test,
    compile_constraints,
    context_lookup,
    network_test,
    parse_network,
    quoted_value,
    read_quoted,
)
from tenantry.resilience.context import EvaluationContext
from tenantry.resilience.variants import Variant

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
MAX_PERCENTAGE = 100  # a rollout above this does not compile in Unleash's engine
USIZE = 2**64  # Rust's usize, which Unleash's engine reads a percentage as


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


def _whole_number(raw: str | None) -> int | None:
    """A number as Rust parses a usize (ASCII digits, an optional '+'), or None."""
    digits = raw.removeprefix("+") if raw is not None else ""
    if not digits.isascii() or not digits.isdigit() or int(digits) >= USIZE:
        return None
    return int(digits)


def _percentage(raw: str | None) -> int | None:
    """A rollout percentage, or None (the strategy never matches); `BrokenRule` over 100,
    which Yggdrasil's grammar has no percentage for."""
    value = _whole_number(raw)
    if value is not None and value > MAX_PERCENTAGE:
        raise BrokenRule(f"a rollout of {value} % does not compile")
    return value


def _group_id(raw: str) -> str:
    """A groupId as Yggdrasil reads it back from its rule text (see `read_quoted`)."""
    group_id = read_quoted(raw)
    if group_id is None:
        raise BrokenRule(f"groupId {raw!r} does not compile")
    return group_id


def _random_draw(_context: EvaluationContext) -> str:
    return str(random.randint(1, 99))  # noqa: S311  (Unleash's random stickiness)


def _default_stickiness(context: EvaluationContext) -> str:
    """Unleash's `default`: userId, else sessionId, else a random draw."""
    if context.user_id is not None:
        return context.user_id
    if context.session_id is not None:
        return context.session_id
    return _random_draw(context)


def _stickiness_lookup(stickiness: str) -> Lookup:
    if stickiness == "default":
        return _default_stickiness
    if stickiness == "random":
        return _random_draw
    return context_lookup(stickiness)


def _sticky_rollout(percentage: int, stickiness: str, group_id: str) -> Test:
    """In when the stickiness value's bucket (1..100, Unleash's normalized hash) is within
    `percentage`; out without a value."""
    look = _stickiness_lookup(stickiness)  # first: a name that breaks the rule breaks it at 0 %
    if percentage <= 0:
        return _never
    if percentage >= 100:  # every bucket (1..100) is in, given a value to bucket
        if stickiness in ("default", "random"):
            return _always
        return lambda context: look(context) is not None
    murmur, prefix = mmh3.hash, f"{group_id}:"

    def test(context: EvaluationContext) -> bool:
        value = look(context)
        # normalized_hash(value, group_id) <= percentage, inlined: this is the hot path
        return value is not None and murmur(prefix + value, 0, False) % 100 < percentage

    return test


def _split(raw: str) -> list[str]:
    """A comma-separated parameter, each item trimmed, as Unleash's engine splits it."""
    return [item.strip(RUST_WHITESPACE) for item in raw.split(",")]


def _listed(raw: str) -> list[str]:
    """A list parameter that Unleash's engine writes into its rule text as it is."""
    items = [read_quoted(item) for item in _split(raw)]
    if None in items:
        raise BrokenRule(f"{raw!r} does not compile")
    return [item for item in items if item is not None]


def _user_with_id(strategy: Strategy, _flag: str) -> Test:
    if "userIds" not in strategy.parameters:
        return _never
    # The ids are escaped into the rule text, as a constraint's values are.
    ids = frozenset(quoted_value(item) for item in _split(strategy.parameters["userIds"]))
    return lambda context: context.user_id is not None and context.user_id in ids


def _flexible(strategy: Strategy, flag: str) -> Test:
    rollout = _percentage(strategy.parameters.get("rollout"))
    if rollout is None:
        return _never
    group_id = strategy.group_id
    stickiness = strategy.parameters.get("stickiness", "default")
    return _sticky_rollout(rollout, stickiness, flag if group_id is None else _group_id(group_id))


def _tenantry_rollout(strategy: Strategy, flag: str) -> Test:
    rollout = _percentage(strategy.parameters.get("rollout"))
    if rollout is None:
        return _never
    group_id = strategy.group_id
    stickiness = TENANTRY_ROLLOUTS[strategy.name]
    return _sticky_rollout(rollout, stickiness, flag if group_id is None else _group_id(group_id))


def _gradual(field_name: str, strategy: Strategy, _flag: str) -> Test:
    group_id = strategy.group_id
    if group_id is None:  # checked first: Yggdrasil then never reads the percentage
        return _never
    percentage = _percentage(strategy.parameters.get("percentage"))
    if percentage is None:
        return _never
    return _sticky_rollout(percentage, field_name, _group_id(group_id))


def _random(strategy: Strategy, _flag: str) -> Test:
    percentage = _whole_number(strategy.parameters.get("percentage"))
    if percentage is None:
        return _never
    return lambda _context: random.randint(1, 99) < percentage  # noqa: S311


def _remote_address(strategy: Strategy, _flag: str) -> Test:
    if "IPs" not in strategy.parameters:
        return _never
    parsed = [parse_network(entry) for entry in _listed(strategy.parameters["IPs"])]
    return network_test([network for network in parsed if network is not None], _remote)


def _remote(context: EvaluationContext) -> str | None:
    return context.remote_address


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
    # partial, not a closure made here: the rule is then built when a flag compiles
    # (where `make mutate` can reach it), not when this module is imported.
    "gradualRolloutUserId": partial(_gradual, "userId"),
    "gradualRolloutSessionId": partial(_gradual, "sessionId"),
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
        if segment is None:  # Yggdrasil turns the whole flag off, not just this strategy
            raise BrokenRule(f"segment {segment_id} does not exist")
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
