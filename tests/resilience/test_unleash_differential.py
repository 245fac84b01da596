"""Tenantry decides random Unleash documents exactly as Unleash's own engine does.

Hypothesis writes Unleash client-features documents (every built-in strategy and
a custom one; every constraint operator and some unknown ones, with valid and
invalid values; segments, present and missing; strategy and feature variants
with stickiness, overrides and payloads; dependencies, chains and missing
parents) and a context, and every feature is evaluated by Tenantry and by
Yggdrasil (`yggdrasil-engine`, Unleash's Rust engine): `enabled` and the variant
(name, enabled, feature_enabled, payload) must agree.

The generator leaves out only what even Yggdrasil cannot repeat, what it cannot
run, and what Tenantry knowingly does not copy:

- outcomes drawn at random: `gradualRolloutRandom` between 1 and 99 %, random
  stickiness (`random`, or `default` without userId and sessionId) below 100 %,
  and variants whose stickiness has no value in the context;
- variants whose weights are all 0 (Yggdrasil panics on a modulus of zero);
- `applicationHostname` naming this machine: the `yggdrasil-engine` wheel is
  built without its hostname support and never matches, so the generated
  `hostNames` never name `HOSTNAME` (tests/resilience/test_constraints.py holds
  Tenantry's match);
- REGEX patterns outside the syntax RE2 and Rust's `regex` share, and `\\d`, `\\w`,
  `\\s`, `\\b` on non-ASCII text (see `constraints`);
- values that would be read as more rule text (a NUM value `5 or true`): Tenantry
  breaks such a rule where Yggdrasil would run what it spells.

Flag-breaking input (unknown operators, missing segments, values Yggdrasil cannot
quote) is drawn seldom, so that most flags still decide and are compared on it.
"""

from __future__ import annotations

import functools
import json
from collections.abc import Callable, Iterator, Sequence
from typing import Any, TypeVar

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tenantry.resilience.context import EvaluationContext
from tenantry.resilience.flags import FlagSnapshot
from tenantry.resilience.unleash import read_document

yggdrasil = pytest.importorskip("yggdrasil_engine.engine")

HOSTNAME = "flags-test-host"
HOSTNAME_VARIABLE = "hostname"  # where Unleash's engine (and Tenantry) read the machine's name

# --- the context -------------------------------------------------------------------
USER_IDS = ["u1", "u2", "U1", "user-42", "42", "7.5", ""]
SESSION_IDS = ["s1", "s2", "abc"]
ADDRESSES = [
    *("127.0.0.1", "10.1.2.3", "192.168.0.1", "::1", "2001:db8::5", "::ffff:10.1.2.3"),
    *("::1.2.3.4", "fe80::1%eth0", "junk", "", " 10.1.2.3", "010.1.2.3"),
]
ENVIRONMENTS = ["production", "Production", "dev"]
APP_NAMES = ["web", "mobile"]
TIMES = [  # RFC 3339 and what chrono reads leniently, or not at all
    *("2024-06-01T12:00:00Z", "2024-06-01T12:00:00+02:00", "2024-06-01T12:00:00.123456Z"),
    *("2024-06-01T12:00:00.5-05:30", "2024-06-01T12:00:00.123456789+00:00"),
    *("2024-06-01T12:00:00.1230001Z", "2024-06-01T12:00:00", "2024-06-01 12:00:00Z"),
    *("2024-06-01t12:00:00z", "2024-06-01T12:00:60Z", "2024-06-01T23:59:60+01:00"),
    *("2024-06-01T12:00:00+0200", "2024-06-01  12:00:01Z", "2024-06-01T12:00:01 UTC"),
    *(" 2024-06-01T12:00:01Z ", "2024 - 06 - 01T12 : 00 : 00Z", "2024-6-1T12:0:1Z"),
    *("24-06-01T12:00:00Z", "+2024-06-01T12:00:00Z", "2024-06-01T12:00:00\u221201:00"),
    *("2024-06-01T12:00:00+01 : 00", "2024-06-01T12:00:00+24:00", "2024-02-29T00:00:00Z"),
    *("2023-02-29T00:00:00Z", "2024-06-01", "junk"),
]
NUMBERS = [
    *("5", "5.0", "-3", "1e3", "1E3", "0.5", ".5", "5.", "+5", " 5", "-inf", "infinity"),
    *("NaN", "1_0", "0x10", "1e400", "\u0665"),
]
VERSIONS = [
    *("1.2.3", "1.2.3-beta.1", "1.2.3-beta.2", "1.2.3-beta.11", "1.2.3-alpha"),
    *("1.2.3+build.5", "1.2.3-rc.1+build.1", "1.2.4", "2.0.0", "v1.2.3", "1.2", "01.2.3"),
    "18446744073709551616.0.0",
]
QUOTED = 'we"ird'  # property names with a quote in them, bare and escaped
ESCAPED = 'we\\"ird'
# Yggdrasil writes a property's name into its rule text between quotes: a bare quote or a
# trailing backslash breaks the rule (the whole flag), so they are drawn seldom.
ODD_NAMES = [QUOTED, ESCAPED, "ends\\"]
POOLS: dict[str, list[str]] = {
    "userId": USER_IDS,
    "sessionId": SESSION_IDS,
    "remoteAddress": ADDRESSES,
    "environment": ENVIRONMENTS,
    "appName": APP_NAMES,
    "currentTime": TIMES,
    "companyId": ["acme", "ACME", "globex", "Initech"],
    "plan": ["free", "pro", "Pro", "pro-annual"],
    "version": VERSIONS,
    "score": NUMBERS,
    "signup": TIMES,
    QUOTED: ["x", "y"],
    ESCAPED: ["x", "y"],
}
STANDARD_FIELDS = ["userId", "sessionId", "remoteAddress", "environment", "appName", "currentTime"]
PROPERTIES = ["companyId", "plan", "version", "score", "signup", QUOTED, ESCAPED]
CONTEXT_NAMES = [name for name in [*POOLS, "missing"] if name not in ODD_NAMES]
EVERY_VALUE = sorted({value for pool in POOLS.values() for value in pool})


# Generation draws indexes into fixed lists through a few cached strategies: building
# strategies per draw would cost more than running both engines.
T = TypeVar("T")
Draw = st.DrawFn


@functools.cache
def _below(count: int) -> st.SearchStrategy[int]:
    return st.integers(0, count - 1)


def pick(draw: Draw, options: Sequence[T]) -> T:
    return options[draw(_below(len(options)))]


def coin(draw: Draw) -> bool:
    return draw(_below(2)) == 1


def maybe(draw: Draw, make: Callable[[], T]) -> T | None:
    """None a quarter of the time (the field left out), else `make()`."""
    return None if draw(_below(4)) == 0 else make()


def some(draw: Draw, make: Callable[[], T], most: int) -> list[T]:
    return [make() for _ in range(draw(_below(most + 1)))]


# The uncommon case is the highest draw, not 0: Hypothesis favours and shrinks to 0.
def rarely(draw: Draw) -> bool:
    return draw(_below(8)) == 7


def seldom(draw: Draw) -> bool:
    """One time in 32: for what breaks a whole flag, so that most flags still decide."""
    return draw(_below(32)) == 31


def pooled(draw: Draw, name: str) -> str:
    """Mostly a value of the field's kind, sometimes any kind (a type mismatch)."""
    return pick(draw, POOLS.get(name, EVERY_VALUE) if draw(_below(4)) else EVERY_VALUE)


def draw_context(draw: Draw) -> dict[str, Any]:
    context: dict[str, Any] = {}
    for name in STANDARD_FIELDS:
        if coin(draw):
            context[name] = pooled(draw, name)
    properties = {name: pooled(draw, name) for name in PROPERTIES if coin(draw)}
    if properties or coin(draw):
        context["properties"] = properties
    return context


def resolves(stickiness: str | None, context: dict[str, Any]) -> bool:
    """Whether a variant's `stickiness` has a value in `context` (else the choice is random)."""
    if stickiness in (None, "default"):
        return "userId" in context or "sessionId" in context
    if stickiness in STANDARD_FIELDS:
        return stickiness in context
    return stickiness in context.get("properties", {})


STICKINESS = [
    *("default", "random", "userId", "sessionId", "companyId", "plan", "remoteAddress"),
    *("environment", "", QUOTED, ESCAPED),
]


# --- constraints -------------------------------------------------------------------
# A rule's single values, each kind as Yggdrasil's grammar reads it and not.
RULE_NUMBERS = ["5", "5.0", "-3", "1e3", "1E3", "0.5", "5.", "+5", " 5", "7", "-0", "1e400", "\t5 "]
BAD_NUMBERS = [".5", "inf", "NaN", "1_0", "0x10", "abc", "", "5\n", "-inf", "\u0665"]
RULE_DATES = [
    *("2024-01-01T00:00:00Z", "2024-06-01T12:00:00Z", "2024-06-01T14:00:00+02:00"),
    *("2024-06-01T12:00:00.000Z", "2024-06-01T12:00:00.123Z", "2024-06-01T12:00:60Z"),
    *("2024-06-01T12:00:60.500Z", "2020-01-01T00:00:00Z", "2030-01-01T00:00:00Z"),
]
BAD_DATES = [
    *("2024-06-01T12:00:00.123456789Z", "2024-06-01T12:00:00", "2024-06-01", "junk", ""),
    *("2024-06-01t12:00:00z", "2024-06-01 12:00:00Z", "2024-02-30T00:00:00Z"),
    "2024-06-01T12:00:00+24:00",
]
RULE_VERSIONS = [v for v in VERSIONS if v[0].isdigit() and v.count(".") >= 2 and v[0] != "0"]
BAD_VERSIONS = ["v1.2.3", "V1.2.3", "1.2", "01.2.3", "junk", "", " 1.2.3", "1.2.3-", "1.2.3.4"]
RULE_VALUES = [*RULE_NUMBERS, *RULE_DATES, *RULE_VERSIONS]
BAD_VALUES = [*BAD_NUMBERS, *BAD_DATES, *BAD_VERSIONS]
PATTERNS = [  # within the syntax RE2 and Rust's regex share
    *("^u\\d$", "U", "acme|globex", "^pro", "[", "(?i)acme", "a{2,}", "(?=x)", "\\p{L}+$"),
    *(".*", "^$", "\\d+\\.\\d+", "(a)\\1", "\\bpro\\b", "", 'a"b', "a\\\\\\\\"),
]
NETWORKS = [
    *("10.0.0.0/8", "127.0.0.1", "127.0.0.1/32", "::1/128", "::1", "2001:db8::/32"),
    *("10.1.2.3/8", "192.168.0.0/16", "::ffff:10.0.0.0/104", "10.0.0.0/33", "0.0.0.0/0"),
    *("::/0", "10.0.0.0/255.0.0.0", "10.0.0.0/+8", "10.0.0.0/0.255.255.255", "::1/0128"),
    *("fe80::/10", "junk", ""),
]
STRING_OPERATORS = ["IN", "NOT_IN", "STR_CONTAINS", "STR_STARTS_WITH", "STR_ENDS_WITH"]
SINGLE_VALUES = {
    **dict.fromkeys(["NUM_EQ", "NUM_GT", "NUM_GTE", "NUM_LT", "NUM_LTE"], RULE_NUMBERS),
    **dict.fromkeys(["DATE_AFTER", "DATE_BEFORE"], RULE_DATES),
    **dict.fromkeys(
        ["SEMVER_EQ", "SEMVER_GT", "SEMVER_GTE", "SEMVER_LT", "SEMVER_LTE"], RULE_VERSIONS
    ),
}
UNKNOWN_OPERATORS = ["NUM_NEQ", "str_contains", "FOO", ""]
KNOWN_OPERATORS = [*STRING_OPERATORS, *SINGLE_VALUES, "REGEX", "IN_CIDR"]
# What a string operator looks for: the field's values, upper-cased, and prefixes.
TEXTS = {
    name: [*pool, *(v.upper() for v in pool), *(v[:2] for v in pool), 'a"b']
    for name, pool in POOLS.items()
}
# What Yggdrasil cannot read back from between quotes: it breaks the whole flag.
BACKSLASHED = ["a\\", "x\\\\\\"]


def draw_values(draw: Draw, options: Sequence[str]) -> list[str] | None:
    """1-3 of `options`; seldom none, no list at all, or one that breaks the rule."""
    if seldom(draw):
        return pick(draw, [None, [], [pick(draw, BACKSLASHED)]])
    return [pick(draw, options) for _ in range(1 + draw(_below(3)))]


def draw_single(draw: Draw, operator: str, value: str | None) -> str | None:
    """A single value: mostly of the operator's kind (often the context's own value),
    now and then of another kind (which Yggdrasil then compares), seldom a broken one."""
    if seldom(draw):
        return pick(draw, [None, *BAD_VALUES, *BACKSLASHED])
    if operator == "REGEX":
        return pick(draw, PATTERNS)
    options = SINGLE_VALUES[operator] if draw(_below(4)) else RULE_VALUES
    return pick(draw, [*options, value, value, value] if value else options)


def value_in(context: dict[str, Any], name: str) -> str | None:
    if name in STANDARD_FIELDS:
        return context.get(name)
    return context.get("properties", {}).get(name)


def near(value: str | None) -> list[str]:
    """Strings a constraint could look for to match `value`: itself and parts of it."""
    if not value:
        return []
    return [value, value.upper(), value.lower(), value[:2], value[-2:]]


def draw_constraint(draw: Draw, context: dict[str, Any]) -> dict[str, Any]:
    """A constraint, mostly on a field the context has, often with values that match it."""
    present = [name for name in CONTEXT_NAMES if value_in(context, name) is not None]
    if seldom(draw):
        name = pick(draw, ODD_NAMES)
    else:
        name = pick(draw, present if present and draw(_below(4)) else CONTEXT_NAMES)
    operator = pick(draw, UNKNOWN_OPERATORS if seldom(draw) else KNOWN_OPERATORS)
    value = value_in(context, name)
    own = POOLS.get(name, EVERY_VALUE)
    listed: list[str] | None = None
    single: str | None = None
    if operator in STRING_OPERATORS:
        listed = draw_values(draw, [*TEXTS.get(name, EVERY_VALUE), *near(value) * 4])
    elif operator in SINGLE_VALUES or operator == "REGEX":
        single = draw_single(draw, operator, value)
    elif operator == "IN_CIDR":
        listed = draw_values(draw, NETWORKS)
    else:
        listed = draw_values(draw, own)
        single = maybe(draw, lambda: pick(draw, own))
    if rarely(draw):  # the other field too, or instead
        listed, single = draw_values(draw, own), maybe(draw, lambda: pick(draw, own))
    constraint: dict[str, Any] = {"contextName": name, "operator": operator}
    if listed is not None:
        constraint["values"] = listed
    if single is not None:
        constraint["value"] = single
    for key in ("inverted", "caseInsensitive"):
        flag = pick(draw, [None, False, False, True])
        if flag is not None:
            constraint[key] = flag
    return constraint


# --- strategies, variants, features ------------------------------------------------
SEGMENT_IDS = [1, 2, 3]
MISSING_SEGMENT = 9
FEATURES = ["f0", "f1", "f2", "f3"]
MISSING_FEATURE = "ghost"
ROLLOUTS = ["0", "1", "33", "50", "99", "100", "+50", "05"]
DETERMINED_ROLLOUTS = ["0", "100"]  # for a random stickiness
ODD_ROLLOUTS = ["101", "255", "256", "-1", "abc", "", " 50", "18446744073709551616"]
GROUP_IDS = ["g1", "f0", "", "with space"]
ODD_GROUP_IDS = ['a"b', 'a\\"b', "ends\\"]  # as Yggdrasil's rule text reads them
PAYLOADS = [
    {"type": "string", "value": "hello"},
    {"type": "json", "value": '{"a": 1}'},
    {"type": "csv", "value": "a,b"},
    {"type": "number", "value": "5"},
]
VARIANT_NAMES = ["red", "blue", "green", "disabled"]
# Lists Yggdrasil splits, trims and quotes into its rule as they are (no escaping).
# The ids are escaped (only a trailing backslash breaks the rule); the others are not.
USER_ID_LISTS = ["u1, u2", "u1,u2,  42", "", "U1", " u1 ", 'u1, a"b', 'u1, a\\"b']
ADDRESS_LISTS = [
    *("127.0.0.1", "10.0.0.0/8, ::1", "2001:db8::/32,junk", "", "10.1.2.3"),
    *("192.168.0.0/16, 10.1.2.3/8", "10.0.0.0/255.0.0.0"),
]
HOST_LISTS = ["other-host", "", "x, y"]  # never HOSTNAME (see the module's doc)
ODD_LISTS = {"userIds": ["u1\\"], "IPs": ['10.1.2.3, a"b', "10.1.2.3\\"], "hostNames": ['x"y']}
# gradualRolloutRandom draws at random unless its percentage is 0-1 or 100 and over.
RANDOM_PERCENTAGES = ["0", "1", "+0", "100", "101", "abc", "18446744073709551616"]


def draw_override(draw: Draw, context: dict[str, Any]) -> dict[str, Any]:
    name = pick(draw, CONTEXT_NAMES)
    options = [*POOLS.get(name, EVERY_VALUE), *near(value_in(context, name))]
    return {"contextName": name, "values": some(draw, lambda: pick(draw, options), 3)}


def draw_variants(draw: Draw, context: dict[str, Any], *, feature: bool) -> list[dict[str, Any]]:
    """1-3 variants, some weight positive (all 0 panics Yggdrasil); a feature's each with a
    stickiness the context has a value for (none: random), and overrides."""
    sticky = [s for s in [None, *STICKINESS] if resolves(s, context)]
    variants = []
    for _ in range(1 + draw(_below(3))):
        variant: dict[str, Any] = {
            "name": pick(draw, VARIANT_NAMES),
            "weight": pick(draw, [0, 1, 50, 100, 1000]),
            "weightType": pick(draw, ["variable", "fix"]),
        }
        payload = maybe(draw, lambda: pick(draw, PAYLOADS))
        if payload is not None:
            variant["payload"] = payload
        if feature:
            stickiness = pick(draw, sticky)
            if stickiness is not None:
                variant["stickiness"] = stickiness
            overrides = some(draw, lambda: draw_override(draw, context), 2)
            if overrides:
                variant["overrides"] = overrides
        variants.append(variant)
    if not any(variant["weight"] for variant in variants):
        variants[-1]["weight"] = 1
    return variants


def draw_group_id(draw: Draw) -> str:
    return pick(draw, ODD_GROUP_IDS if seldom(draw) else GROUP_IDS)


def draw_parameters(draw: Draw, name: str, context: dict[str, Any]) -> dict[str, str]:
    """The strategy's parameters; a rollout is below 100 % only where it is sticky."""
    found: dict[str, str | None] = {}
    if name == "flexibleRollout":
        stickiness = maybe(draw, lambda: pick(draw, STICKINESS))
        random = stickiness in (None, "default", "random") and not resolves(stickiness, context)
        rollouts = ODD_ROLLOUTS if seldom(draw) else DETERMINED_ROLLOUTS if random else ROLLOUTS
        found["rollout"] = maybe(draw, lambda: pick(draw, rollouts))
        found["stickiness"] = stickiness
        found["groupId"] = maybe(draw, lambda: draw_group_id(draw))
    elif name in ("gradualRolloutUserId", "gradualRolloutSessionId"):
        percentages = ODD_ROLLOUTS if seldom(draw) else ROLLOUTS
        found["percentage"] = maybe(draw, lambda: pick(draw, percentages))
        found["groupId"] = maybe(draw, lambda: draw_group_id(draw))
    elif name == "gradualRolloutRandom":
        found["percentage"] = maybe(draw, lambda: pick(draw, RANDOM_PERCENTAGES))
    elif name == "userWithId":
        found["userIds"] = maybe(draw, lambda: draw_list(draw, "userIds", USER_ID_LISTS))
    elif name == "remoteAddress":
        found["IPs"] = maybe(draw, lambda: draw_list(draw, "IPs", ADDRESS_LISTS))
    elif name == "applicationHostname":
        found["hostNames"] = maybe(draw, lambda: draw_list(draw, "hostNames", HOST_LISTS))
    return {key: value for key, value in found.items() if value is not None}


def draw_list(draw: Draw, parameter: str, lists: list[str]) -> str:
    return pick(draw, ODD_LISTS[parameter] if seldom(draw) else lists)


STRATEGY_NAMES = [  # the two most used twice over
    "default",
    "default",
    "flexibleRollout",
    "userWithId",
    "flexibleRollout",
    "gradualRolloutUserId",
    "gradualRolloutSessionId",
    "gradualRolloutRandom",
    "remoteAddress",
    "applicationHostname",
    "myCustom",
]


def draw_segment_id(draw: Draw) -> int:
    return MISSING_SEGMENT if seldom(draw) else pick(draw, SEGMENT_IDS)


def draw_strategy(draw: Draw, context: dict[str, Any]) -> dict[str, Any]:
    name = pick(draw, STRATEGY_NAMES)
    parameters = draw_parameters(draw, name, context)
    strategy: dict[str, Any] = {"name": name, "parameters": parameters}
    constraints = maybe(draw, lambda: some(draw, lambda: draw_constraint(draw, context), 2))
    if constraints is not None:
        strategy["constraints"] = constraints
    segments = maybe(draw, lambda: some(draw, lambda: draw_segment_id(draw), 2))
    if segments is not None:
        strategy["segments"] = segments
    # A strategy's variants stick to its own stickiness: only one with a value.
    if resolves(parameters.get("stickiness"), context):
        choice = pick(draw, ["none", "empty", "some"])
        if choice != "none":
            some_variants = choice == "some"
            strategy["variants"] = (
                draw_variants(draw, context, feature=False) if some_variants else []
            )
    return strategy


def draw_dependency(draw: Draw, name: str) -> dict[str, Any]:
    parents = [feature for feature in FEATURES if feature != name]
    dependency: dict[str, Any] = {"feature": pick(draw, [*parents, MISSING_FEATURE])}
    enabled = pick(draw, [None, True, False])
    if enabled is not None:
        dependency["enabled"] = enabled
    variants = maybe(draw, lambda: some(draw, lambda: pick(draw, VARIANT_NAMES), 2))
    if variants is not None:
        dependency["variants"] = variants
    return dependency


def draw_feature(draw: Draw, name: str, context: dict[str, Any]) -> dict[str, Any]:
    feature: dict[str, Any] = {
        "name": name,
        "enabled": not rarely(draw),
        "strategies": some(draw, lambda: draw_strategy(draw, context), 3),
    }
    if any(resolves(s, context) for s in [None, *STICKINESS]) and coin(draw):
        feature["variants"] = draw_variants(draw, context, feature=True)
    if draw(_below(3)) == 0:
        feature["dependencies"] = some(draw, lambda: draw_dependency(draw, name), 2)
    return feature


@st.composite
def cases(draw: Draw) -> tuple[dict[str, Any], dict[str, Any]]:
    """An Unleash document and a context to evaluate its features in."""
    context = draw_context(draw)
    names = FEATURES[: 1 + draw(_below(len(FEATURES)))]
    segment_ids = [sid for sid in SEGMENT_IDS if not seldom(draw)]
    document = {
        "version": 2,
        "features": [draw_feature(draw, name, context) for name in names],
        "segments": [
            {"id": sid, "constraints": some(draw, lambda: draw_constraint(draw, context), 2)}
            for sid in segment_ids
        ],
    }
    return document, context


# --- the comparison ----------------------------------------------------------------
def tenantry_answers(document: dict[str, Any], context: dict[str, Any]) -> Iterator[Any]:
    read = read_document(document)
    snapshot = FlagSnapshot.of(read.flags, read.segments)
    evaluation_context = EvaluationContext.of(context)
    for name in [*(f["name"] for f in document["features"]), MISSING_FEATURE]:
        evaluation = snapshot.evaluate(name, context=evaluation_context)
        variant = evaluation.variant
        if variant is None:
            shown = ("disabled", False, evaluation.enabled, None)
        else:
            shown = (variant.name, True, evaluation.enabled, variant.unleash_payload())
        yield name, evaluation.enabled, shown


def yggdrasil_answers(
    engine: Any, document: dict[str, Any], context: dict[str, Any]
) -> Iterator[Any]:
    engine.take_state(json.dumps(document))
    for name in [*(f["name"] for f in document["features"]), MISSING_FEATURE]:
        enabled = engine.check_enabled(name, context).is_enabled
        variant = engine.check_variant(name, context).variant
        yield (
            name,
            enabled,
            (variant.name, variant.enabled, variant.feature_enabled, variant.payload),
        )


@pytest.fixture(scope="module")
def engine() -> Iterator[Any]:
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv(HOSTNAME_VARIABLE, HOSTNAME)
        yield yggdrasil.UnleashEngine()


@settings(
    max_examples=800,
    derandomize=True,
    deadline=None,
    database=None,
    suppress_health_check=[HealthCheck.too_slow],
)
@given(case=cases())
def test_tenantry_decides_as_yggdrasil(engine: Any, case: Any) -> None:
    document, context = case
    ours = list(tenantry_answers(document, context))
    theirs = list(yggdrasil_answers(engine, document, context))
    assert ours == theirs, json.dumps({"document": document, "context": context}, indent=1)
