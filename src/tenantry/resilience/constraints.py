"""Strategy constraints: every Unleash operator, decided as Unleash's engine decides.

The semantics follow Unleash's client specification as its Rust engine (Yggdrasil)
implements it, edge cases included, because a team moving flags between Unleash
and Tenantry must not see one user change side:

- A context value that is missing or does not parse makes the constraint false
  (`inverted` then makes it true). `NOT_IN` is true for a missing value.
- A constraint *value* that does not parse (a number, a date, a version), an
  unknown operator, or a string operator without `values` breaks the rule: the
  whole flag is off, whatever its other strategies say (`BrokenRule`).
- A `SEMVER_*` value written with a leading `v` is false and not inverted.
- Numbers compare as 64-bit floats (`NUM_EQ` within machine epsilon); dates are
  RFC 3339 with an offset (the constraint's to the second, the context's as
  leniently as Yggdrasil's parser); versions are SemVer 2.0 (pre-releases order
  below their release; build metadata is ignored).
- `REGEX` is RE2 (the Rust `regex` crate's syntax family: no look-around, no
  back-references) and matches anywhere in the value; an invalid pattern is false.
- `IN_CIDR` takes IPv4 and IPv6 networks (host bits allowed); invalid entries are
  skipped; an IPv4-mapped IPv6 address is not in an IPv4 network.

`validate_constraint` is the strict check for definitions made in Tenantry itself:
what Unleash would silently evaluate as off is refused there with a 422.
"""

from __future__ import annotations

import ipaddress
import re
import sys
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta, timezone
from enum import StrEnum
from typing import Any

import re2
import semver

from tenantry.resilience.context import EvaluationContext

Test = Callable[[EvaluationContext], bool]


class Operator(StrEnum):
    IN = "IN"
    NOT_IN = "NOT_IN"
    STR_CONTAINS = "STR_CONTAINS"
    STR_STARTS_WITH = "STR_STARTS_WITH"
    STR_ENDS_WITH = "STR_ENDS_WITH"
    NUM_EQ = "NUM_EQ"
    NUM_GT = "NUM_GT"
    NUM_GTE = "NUM_GTE"
    NUM_LT = "NUM_LT"
    NUM_LTE = "NUM_LTE"
    DATE_AFTER = "DATE_AFTER"
    DATE_BEFORE = "DATE_BEFORE"
    SEMVER_EQ = "SEMVER_EQ"
    SEMVER_GT = "SEMVER_GT"
    SEMVER_GTE = "SEMVER_GTE"
    SEMVER_LT = "SEMVER_LT"
    SEMVER_LTE = "SEMVER_LTE"
    REGEX = "REGEX"
    IN_CIDR = "IN_CIDR"


OPERATORS = frozenset(operator.value for operator in Operator)


class BrokenRule(Exception):
    """A definition Unleash's engine cannot compile: the flag it belongs to is off."""


@dataclass(frozen=True, slots=True)
class Constraint:
    context_name: str
    operator: str  # kept as written: an unknown operator is a broken rule, not a lost one
    values: tuple[str, ...] | None = None
    value: str | None = None
    inverted: bool = False
    case_insensitive: bool = False

    def to_dict(self) -> dict[str, Any]:
        data: dict[str, Any] = {"contextName": self.context_name, "operator": self.operator}
        if self.values is not None:
            data["values"] = list(self.values)
        if self.value is not None:
            data["value"] = self.value
        data["inverted"] = self.inverted
        data["caseInsensitive"] = self.case_insensitive
        return data

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Constraint:
        values = data.get("values")
        return cls(
            context_name=data["contextName"],
            operator=data["operator"],
            values=tuple(values) if values is not None else None,
            value=data.get("value"),
            inverted=bool(data.get("inverted", False)),
            case_insensitive=bool(data.get("caseInsensitive", False)),
        )


# --- compiling ---------------------------------------------------------------------
def compile_constraints(constraints: Iterable[Constraint]) -> Test | None:
    """All of `constraints` as one test (None when there are none); `BrokenRule` if one is."""
    tests = [compile_constraint(constraint) for constraint in constraints]
    if not tests:
        return None
    if len(tests) == 1:
        return tests[0]
    return lambda context: all(test(context) for test in tests)


def compile_constraint(constraint: Constraint) -> Test:
    build = _BUILDERS.get(constraint.operator)
    if build is None:
        raise BrokenRule(f"unknown operator {constraint.operator!r}")
    test = build(constraint)
    if not constraint.inverted or test is _never_inverted:
        return test
    return lambda context: not test(context)


def _never_inverted(_context: EvaluationContext) -> bool:
    """A `SEMVER_*` value with a leading 'v': false, and `inverted` does not apply."""
    return False


def _string_list(constraint: Constraint) -> tuple[str, ...]:
    if constraint.values is None:
        raise BrokenRule(f"{constraint.operator} needs values")
    return constraint.values


def _membership(constraint: Constraint) -> Test:
    members = frozenset(constraint.values or ())
    name, wanted = constraint.context_name, constraint.operator == Operator.IN

    def test(context: EvaluationContext) -> bool:
        value = context.value(name)
        if value is None:
            return not wanted
        return (value in members) is wanted

    return test


_STRING_TESTS: dict[str, Callable[[str, str], bool]] = {
    Operator.STR_CONTAINS: lambda value, item: item in value,
    Operator.STR_STARTS_WITH: str.startswith,
    Operator.STR_ENDS_WITH: str.endswith,
}


def _string(constraint: Constraint) -> Test:
    items = _string_list(constraint)
    fold = constraint.case_insensitive
    if fold:
        items = tuple(item.lower() for item in items)
    matches, name = _STRING_TESTS[constraint.operator], constraint.context_name

    def test(context: EvaluationContext) -> bool:
        value = context.value(name)
        if value is None:
            return False
        if fold:
            value = value.lower()
        return any(matches(value, item) for item in items)

    return test


# The grammar of a constraint's number, and Rust's f64 syntax for a context's number.
_RULE_NUMBER = re.compile(r"[+-]?\d+(?:\.\d*)?(?:[eE][+-]?\d+)?")
_RUST_FLOAT = re.compile(
    r"[+-]?(?:(?:\d+\.?\d*|\.\d+)(?:[eE][+-]?\d+)?|inf|infinity|nan)", re.IGNORECASE
)
_EPSILON = sys.float_info.epsilon
_COMPARE: dict[str, Callable[[Any, Any], bool]] = {
    "EQ": lambda a, b: a == b,
    "GT": lambda a, b: a > b,
    "GTE": lambda a, b: a >= b,
    "LT": lambda a, b: a < b,
    "LTE": lambda a, b: a <= b,
    "AFTER": lambda a, b: a > b,
    "BEFORE": lambda a, b: a < b,
}


def parse_number(text: str) -> float | None:
    """A context value as Rust parses an f64 (no spaces, no '_'), or None."""
    return float(text) if _RUST_FLOAT.fullmatch(text) else None


def _number(constraint: Constraint) -> Test:
    raw = (constraint.value or "").strip()
    if not _RULE_NUMBER.fullmatch(raw):
        raise BrokenRule(f"{constraint.operator}: {constraint.value!r} is not a number")
    wanted, kind = float(raw), constraint.operator.removeprefix("NUM_")
    compare = (lambda a, b: abs(a - b) < _EPSILON) if kind == "EQ" else _COMPARE[kind]
    name = constraint.context_name

    def test(context: EvaluationContext) -> bool:
        value = context.value(name)
        number = parse_number(value) if value is not None else None
        return number is not None and compare(number, wanted)

    return test


_RULE_DATE = re.compile(r"\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(?:Z|[+-]\d{2}:\d{2})")
_CONTEXT_DATE = re.compile(
    r"([+-]?\d{4,})-(\d{2})-(\d{2})[Tt ](\d{2}):(\d{2}):(\d{2})(?:\.(\d+))?"
    r"(?:([Zz])|([+-])(\d{2}):?(\d{2}))"
)


def parse_rule_date(text: str) -> datetime | None:
    if not _RULE_DATE.fullmatch(text):
        return None
    return parse_context_date(text)


def parse_context_date(text: str) -> datetime | None:
    """An RFC 3339 time with an offset, as leniently as Yggdrasil reads a context's."""
    match = _CONTEXT_DATE.fullmatch(text)
    if match is None:
        return None
    year, month, day, hour, minute, second, fraction, zulu, sign, oh, om = match.groups()
    leap = second == "60"  # a leap second is read as the last second of its minute
    try:
        offset = timedelta(hours=int(oh), minutes=int(om)) if not zulu else timedelta()
        if offset >= timedelta(days=1):
            return None
        tz = timezone(-offset if sign == "-" else offset)
        micros = int((fraction or "0")[:6].ljust(6, "0"))
        clock = (int(hour), int(minute), 59 if leap else int(second), micros)
        moment = datetime(int(year), int(month), int(day), *clock, tzinfo=tz)
    except ValueError:
        return None
    return moment.astimezone(UTC)


def _date(constraint: Constraint) -> Test:
    wanted = parse_rule_date((constraint.value or "").strip())
    if wanted is None:
        raise BrokenRule(f"{constraint.operator}: {constraint.value!r} is not an RFC 3339 time")
    compare, name = _COMPARE[constraint.operator.removeprefix("DATE_")], constraint.context_name

    def test(context: EvaluationContext) -> bool:
        value = context.value(name)
        if value is None and name == "currentTime":
            moment: datetime | None = datetime.now(UTC)
        else:
            moment = parse_context_date(value) if value is not None else None
        return moment is not None and compare(moment, wanted)

    return test


def parse_version(text: str) -> semver.Version | None:
    try:
        return semver.Version.parse(text)
    except (ValueError, TypeError):
        return None


def _version(constraint: Constraint) -> Test:
    if constraint.value is not None and constraint.value.startswith("v"):
        return _never_inverted
    wanted = parse_version((constraint.value or "").strip())
    if wanted is None:
        raise BrokenRule(f"{constraint.operator}: {constraint.value!r} is not a SemVer version")
    compare, name = _COMPARE[constraint.operator.removeprefix("SEMVER_")], constraint.context_name

    def test(context: EvaluationContext) -> bool:
        value = context.value(name)
        version = parse_version(value) if value is not None else None
        return version is not None and compare(version.compare(wanted), 0)

    return test


def compile_regex(pattern: str, case_insensitive: bool) -> Any | None:
    """RE2: linear time whatever the pattern, so a flag cannot be made to hang a request."""
    options = re2.Options()
    options.log_errors = False
    options.case_sensitive = not case_insensitive
    try:
        return re2.compile(pattern, options)
    except re2.error:
        return None


def _regex(constraint: Constraint) -> Test:
    if constraint.value is not None:
        patterns: tuple[str, ...] = (constraint.value,)
    else:
        patterns = constraint.values or ("",)
    compiled = [compile_regex(pattern, constraint.case_insensitive) for pattern in patterns]
    valid = [regex for regex in compiled if regex is not None]
    name = constraint.context_name

    def test(context: EvaluationContext) -> bool:
        value = context.value(name)
        return value is not None and any(regex.search(value) for regex in valid)

    return test


def parse_network(text: str) -> ipaddress.IPv4Network | ipaddress.IPv6Network | None:
    try:
        return ipaddress.ip_network(text, strict=False)
    except ValueError:
        return None


def parse_address(text: str) -> ipaddress.IPv4Address | ipaddress.IPv6Address | None:
    try:
        return ipaddress.ip_address(text)
    except ValueError:
        return None


def _cidr(constraint: Constraint) -> Test:
    networks = [parse_network(entry) for entry in _string_list(constraint)]
    valid = [network for network in networks if network is not None]
    name = constraint.context_name

    def test(context: EvaluationContext) -> bool:
        value = context.value(name)
        address = parse_address(value) if value is not None else None
        return address is not None and any(
            address.version == network.version and address in network for network in valid
        )

    return test


_BUILDERS: dict[str, Callable[[Constraint], Test]] = {
    Operator.IN: _membership,
    Operator.NOT_IN: _membership,
    Operator.STR_CONTAINS: _string,
    Operator.STR_STARTS_WITH: _string,
    Operator.STR_ENDS_WITH: _string,
    **{op: _number for op in OPERATORS if op.startswith("NUM_")},
    Operator.DATE_AFTER: _date,
    Operator.DATE_BEFORE: _date,
    **{op: _version for op in OPERATORS if op.startswith("SEMVER_")},
    Operator.REGEX: _regex,
    Operator.IN_CIDR: _cidr,
}


# --- strict validation (definitions made in Tenantry) ----------------------------------
def constraint_problem(constraint: Constraint) -> str | None:
    """Why Tenantry refuses `constraint` (it would never match as meant), or None."""
    operator = constraint.operator
    if operator not in OPERATORS:
        return f"operator: {operator!r} is not one of {', '.join(sorted(OPERATORS))}"
    single = operator.startswith(("NUM_", "DATE_", "SEMVER_")) or (
        operator == Operator.REGEX and not constraint.values
    )
    if single and constraint.value is None:
        return f"value: {operator} compares with one value"
    if not single and constraint.values is None:
        return f"values: {operator} takes a list of values"
    try:
        compile_constraint(constraint)
    except BrokenRule as exc:
        return f"value: {exc}"
    if operator.startswith("SEMVER_") and (constraint.value or "").startswith("v"):
        return "value: a SemVer version has no leading 'v'"
    if operator == Operator.REGEX:
        patterns = (constraint.value,) if constraint.value is not None else constraint.values
        for pattern in patterns or ():
            if compile_regex(pattern, constraint.case_insensitive) is None:
                return f"value: {pattern!r} is not a valid RE2 pattern"
    if operator == Operator.IN_CIDR:
        for entry in constraint.values or ():
            if parse_network(entry) is None:
                return f"values: {entry!r} is not an IP network"
    return None
