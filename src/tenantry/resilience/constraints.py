"""Strategy constraints: every Unleash operator, decided as Unleash's engine decides.

The semantics are those of Unleash's Rust engine, Yggdrasil (0.21, the engine of
the `yggdrasil-engine` package), edge cases included, because a team moving flags
between Unleash and Tenantry must not see one user change side. Yggdrasil writes
every flag out as a rule in a small language of its own and parses that, so some
of what it does follows from that rule text rather than from the operator:

- A context value that is missing or does not parse makes the constraint false
  (`inverted` then makes it true); `NOT_IN` is true for a missing value. A missing
  `currentTime` is now (to the second), whatever the operator.
- `NUM_*`, `DATE_*` and `SEMVER_*` compare by what their value is, since it is
  written into the rule bare: a date if it reads as one (RFC 3339 to the second or
  the millisecond), else a SemVer version, else a number. So `NUM_GT "1.2.3"`
  compares versions; the operator only says `EQ`, `GT`, `GTE`, `LT` or `LTE`
  (`DATE_AFTER` is `GT`, `DATE_BEFORE` is `LT`).
- A rule Yggdrasil cannot compile turns the whole flag off, whatever its other
  strategies say (`BrokenRule`): an unknown operator; a single value that is none
  of the three; a string operator or `IN_CIDR` without values; a value ending in a
  backslash (which escapes the quote Yggdrasil closes it with); a context name with
  a bare `"` in it (see `quotable`).
- A `SEMVER_*` value written with a leading `v` is false and not inverted.
- Numbers are 64-bit floats (`NUM_EQ` within machine epsilon). A context's date is
  read as the Rust `chrono` crate reads RFC 3339 (leniently: spaces, `UTC`, one-digit
  fields), to the nanosecond, a leap second after the :59 it follows. Versions are
  SemVer 2.0 (pre-releases order below their release; build metadata is ignored).
- `REGEX` matches anywhere in the value, with RE2, its pattern the constraint's
  `value` (none: the empty pattern, which matches anything; `values` are not read);
  an invalid pattern is false. RE2 is the syntax family of Rust's `regex` crate (no
  look-around, no back-references) but not its twin: `\\d`, `\\w`, `\\s` and `\\b` are
  ASCII in RE2 and Unicode in Rust, and each takes some syntax the other refuses
  (`\\Q...\\E` and `\\C` in RE2; `(?x)`, `[a&&b]`, `\\<` in Rust).
- `IN_CIDR` takes IPv4 and IPv6 networks (host bits allowed; an IPv4 prefix may be
  written as a netmask); invalid entries are skipped; an IPv4-mapped IPv6 address is
  not in an IPv4 network.

`constraint_problem` is the strict check for definitions made in Tenantry itself:
what Unleash would silently evaluate as off, or not as written, is refused there
with a 422.
"""

from __future__ import annotations

import functools
import ipaddress
import re
import sys
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from enum import StrEnum
from operator import attrgetter
from typing import Any

import re2
import semver

from tenantry.resilience.context import COMPANY_ID, EvaluationContext

Test = Callable[[EvaluationContext], bool]
Lookup = Callable[[EvaluationContext], str | None]


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


# --- Yggdrasil's rule text -----------------------------------------------------------
# Rust's char::is_whitespace, which `str::trim` strips (Python's str.strip strips more).
RUST_WHITESPACE = "\t\n\x0b\x0c\r \x85\xa0\u1680\u2028\u2029\u202f\u205f\u3000" + "".join(
    chr(code) for code in range(0x2000, 0x200B)
)
_BARE_QUOTE = re.compile(r'(?<!\\)"')


def quotable(text: str) -> bool:
    """Whether Yggdrasil can write `text` as it is between double quotes in its rule text
    and read it back: a `"` not written `\\"` would end it early, and a trailing
    backslash would escape the closing quote."""
    return not text.endswith("\\") and _BARE_QUOTE.search(text) is None


def read_quoted(text: str) -> str | None:
    """`text` as Yggdrasil reads a string back from its rule text (`\\"` as `"`), or None
    when it cannot (see `quotable`)."""
    return text.replace('\\"', '"') if quotable(text) else None


def quoted_value(value: str) -> str:
    """A listed value, which Yggdrasil quotes with its `"` escaped: only a trailing
    backslash, escaping the closing quote, keeps it from reading back (`BrokenRule`)."""
    if value.endswith("\\"):
        raise BrokenRule(f"{value!r} ends in a backslash")
    return value


# --- reading the context -------------------------------------------------------------
_RULE_FIELDS = {
    "userId": "user_id",
    "sessionId": "session_id",
    "remoteAddress": "remote_address",
    "environment": "environment",
    "appName": "app_name",
}


def _current_time(context: EvaluationContext) -> str:
    """The context's currentTime, or Yggdrasil's stand-in for it: now, to the second."""
    found = context.current_time
    return found if found is not None else datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def context_lookup(name: str) -> Lookup:
    """How a rule reads `name` from a context: an Unleash field, else the property.

    `BrokenRule` for a name Yggdrasil cannot write into its rule (see `read_quoted`).
    """
    if name == "currentTime":
        return _current_time
    attribute = _RULE_FIELDS.get(name)
    if attribute is not None:
        found: Lookup = attrgetter(attribute)
        return found
    if not quotable(name):  # a property's name is read back as written, `\\"` and all
        raise BrokenRule(f"context name {name!r} does not compile")
    if name == COMPANY_ID:  # Tenantry's own field, or else the property
        return lambda context: context.value(COMPANY_ID)
    return lambda context: context.properties.get(name)


# --- compiling -----------------------------------------------------------------------
def compile_constraints(constraints: Iterable[Constraint]) -> Test | None:
    """All of `constraints` as one test (None when there are none); `BrokenRule` if one is."""
    tests = [compile_constraint(constraint) for constraint in constraints]
    if not tests:
        return None
    if len(tests) == 1:
        return tests[0]

    def test_all(context: EvaluationContext) -> bool:
        for test in tests:  # noqa: SIM110  (a loop: no generator made per evaluation)
            if not test(context):
                return False
        return True

    return test_all


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


def _membership(constraint: Constraint) -> Test:
    members = frozenset(quoted_value(value) for value in constraint.values or ())
    look, wanted = context_lookup(constraint.context_name), constraint.operator == Operator.IN

    def test(context: EvaluationContext) -> bool:
        value = look(context)
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
    if not constraint.values:  # Yggdrasil's grammar has no empty list for these
        raise BrokenRule(f"{constraint.operator} needs values")
    items = tuple(quoted_value(value) for value in constraint.values)
    fold = constraint.case_insensitive
    if fold:
        items = tuple(item.lower() for item in items)
    matches, look = _STRING_TESTS[constraint.operator], context_lookup(constraint.context_name)

    def test(context: EvaluationContext) -> bool:
        value = look(context)
        if value is None:
            return False
        if fold:
            value = value.lower()
        return any(matches(value, item) for item in items)

    return test


# --- numbers, dates and versions ---------------------------------------------------------
# A rule's bare value, as Yggdrasil's grammar reads one: a date, a version or a number.
_RULE_DATE = re.compile(
    r"[0-9]{4}-[0-9]{2}-[0-9]{2}T[0-9]{2}:[0-9]{2}:[0-9]{2}(?:\.[0-9]{3})?(?:Z|[+-][0-9]{2}:[0-9]{2})"
)
_FRAGMENT = r"[0-9A-Za-z-]+(?:\.[0-9A-Za-z-]+)*"
_RULE_VERSION = re.compile(rf"[0-9]+\.[0-9]+\.[0-9]+(?:-{_FRAGMENT})?(?:\+{_FRAGMENT})?")
_RULE_NUMBER = re.compile(r"[+-]?[0-9]+(?:\.[0-9]*)?(?:[eE][+-]?[0-9]+)?")
# A context's number as Rust parses an f64 (no spaces, no '_', ASCII digits only).
_RUST_FLOAT = re.compile(
    r"[+-]?(?:(?:[0-9]+\.?[0-9]*|\.[0-9]+)(?:[eE][+-]?[0-9]+)?|inf|infinity|nan)", re.IGNORECASE
)
_EPSILON = sys.float_info.epsilon
_U64 = 2**64


def parse_number(text: str) -> float | None:
    """A context value as Rust parses an f64, or None."""
    return float(text) if _RUST_FLOAT.fullmatch(text) else None


# chrono's relaxed RFC 3339: spaces between the parts, 1-2 digit fields, a 'T', 't' or
# ' ' between date and time, any number of fraction digits (read to the nanosecond),
# and an offset of Z, UTC or ±hh[:]mm.
_S = f"[{RUST_WHITESPACE}]*"
_CHRONO_DATE = re.compile(
    rf"{_S}(?P<year>[+-][0-9]+|[0-9]{{1,4}}){_S}-{_S}(?P<month>[0-9]{{1,2}}){_S}-{_S}"
    rf"(?P<day>[0-9]{{1,2}})[Tt ]{_S}(?P<hour>[0-9]{{1,2}}){_S}:{_S}(?P<minute>[0-9]{{1,2}})"
    rf"{_S}:{_S}(?P<second>[0-9]{{1,2}})(?:\.(?P<fraction>[0-9]+))?{_S}"
    rf"(?:[Uu][Tt][Cc]|[Zz]|(?P<sign>[+\-\u2212])(?P<oh>[0-9]{{2}})[:{RUST_WHITESPACE}]*"
    rf"(?P<om>[0-5][0-9])){_S}"
)
_CHRONO_YEARS = range(-262_144, 262_144)
_MONTH_DAYS = (31, 28, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31)
Moment = tuple[int, int]  # (seconds since the epoch, nanoseconds: 1e9 and over in a leap second)


def _days_from_civil(year: int, month: int, day: int) -> int:
    """Days since 1970-01-01 in the proleptic Gregorian calendar, any year."""
    year -= month <= 2
    era, year_of_era = divmod(year, 400)
    day_of_year = (153 * (month + (-3 if month > 2 else 9)) + 2) // 5 + day - 1
    day_of_era = year_of_era * 365 + year_of_era // 4 - year_of_era // 100 + day_of_year
    return era * 146_097 + day_of_era - 719_468


def _leap_year(year: int) -> bool:
    return year % 4 == 0 and (year % 100 != 0 or year % 400 == 0)


@functools.lru_cache(maxsize=4096)  # the same few times come back (currentTime, a signup)
def parse_date(text: str) -> Moment | None:
    """A time as chrono reads a `DateTime<Utc>` from text, or None."""
    match = _CHRONO_DATE.fullmatch(text)
    if match is None:
        return None
    year, month, day, hour, minute, second = (
        int(match[part]) for part in ("year", "month", "day", "hour", "minute", "second")
    )
    days = _MONTH_DAYS[month - 1] + (month == 2 and _leap_year(year)) if 1 <= month <= 12 else 0
    if year not in _CHRONO_YEARS or not 1 <= day <= days:
        return None
    offset = 0
    if match["sign"] is not None:
        offset = int(match["oh"]) * 3600 + int(match["om"]) * 60
        if offset >= 86_400:
            return None
        offset = offset if match["sign"] == "+" else -offset
    if hour > 23 or minute > 59 or second > 60:
        return None
    nanos = int((match["fraction"] or "0")[:9].ljust(9, "0"))
    if second == 60:  # chrono keeps a leap second as the :59 before it, a second longer
        second, nanos = 59, nanos + 1_000_000_000
    seconds = _days_from_civil(year, month, day) * 86_400 + hour * 3600 + minute * 60 + second
    return seconds - offset, nanos


def parse_version(text: str) -> semver.Version | None:
    """A SemVer 2.0 version as Rust's `semver` reads one (ASCII, u64 parts), or None."""
    if not text.isascii():
        return None
    try:
        version = semver.Version.parse(text)
    except (ValueError, TypeError):
        return None
    if max(version.major, version.minor, version.patch) >= _U64:
        return None
    return version


@functools.lru_cache(maxsize=4096)  # SemVer parsing is slow; versions in use are few
def _version_key(text: str) -> semver.Version | None:
    """`text`'s version for comparing (build metadata dropped), or None."""
    version = parse_version(text)
    return None if version is None else version.replace(build=None)


_ORDER: dict[str, Callable[[Any, Any], bool]] = {
    "EQ": lambda a, b: a == b,
    "GT": lambda a, b: a > b,
    "GTE": lambda a, b: a >= b,
    "LT": lambda a, b: a < b,
    "LTE": lambda a, b: a <= b,
    "AFTER": lambda a, b: a > b,
    "BEFORE": lambda a, b: a < b,
}


def _read_rule_value(text: str) -> tuple[Callable[[str], Any], Any] | None:
    """How a bare value is read and compared: (how to read the context's value, the
    value itself), as date, else version, else number; None if it is none of them."""
    if _RULE_DATE.fullmatch(text):
        moment = parse_date(text)
        return None if moment is None else (parse_date, moment)
    if _RULE_VERSION.fullmatch(text):
        version = _version_key(text)
        return None if version is None else (_version_key, version)
    if _RULE_NUMBER.fullmatch(text):
        return parse_number, float(text)
    return None


def _ordinal(constraint: Constraint) -> Test:
    raw = constraint.value
    if constraint.operator.startswith("SEMVER_") and raw is not None and raw.startswith("v"):
        return _never_inverted
    # Written bare into the rule, where spaces and tabs between tokens are skipped.
    read = _read_rule_value((raw or "").strip(" \t"))
    if read is None:
        raise BrokenRule(f"{constraint.operator}: {raw!r} is not a date, version or number")
    parse, wanted = read
    kind = constraint.operator.partition("_")[2]
    if kind == "EQ" and parse is parse_number:
        compare: Callable[[Any, Any], bool] = lambda a, b: abs(a - b) < _EPSILON  # noqa: E731
    else:
        compare = _ORDER[kind]
    look = context_lookup(constraint.context_name)

    def test(context: EvaluationContext) -> bool:
        value = look(context)
        found = parse(value) if value is not None else None
        return found is not None and compare(found, wanted)

    return test


# --- patterns and networks -------------------------------------------------------------
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
    regex = compile_regex(quoted_value(constraint.value or ""), constraint.case_insensitive)
    look = context_lookup(constraint.context_name)
    if regex is None:
        return lambda _context: False
    search = regex.search

    def test(context: EvaluationContext) -> bool:
        value = look(context)
        return value is not None and search(value) is not None

    return test


Address = ipaddress.IPv4Address | ipaddress.IPv6Address
Network = ipaddress.IPv4Network | ipaddress.IPv6Network


def parse_address(text: str) -> Address | None:
    """An IP address as Rust's `IpAddr` reads one (no `%zone`), or None."""
    if "%" in text:
        return None
    try:
        return ipaddress.ip_address(text)
    except ValueError:
        return None


def _prefix(text: str, address: Address) -> int | None:
    """A network's prefix as the `ipnetwork` crate reads one: a u8, or an IPv4 netmask."""
    digits = text.removeprefix("+")
    if digits.isascii() and digits.isdigit():
        return int(digits)
    netmask = parse_address(text) if address.version == 4 else None
    if netmask is None or netmask.version != 4:
        return None
    mask = int(netmask)
    prefix = 32 - (~mask & 0xFFFF_FFFF).bit_length()
    contiguous = mask == (0xFFFF_FFFF << (32 - prefix)) & 0xFFFF_FFFF
    return prefix if contiguous else None  # leading ones only: a hostmask is no netmask


def parse_network(text: str) -> Network | None:
    """An IP network as the `ipnetwork` crate reads one, or None."""
    address_text, slash, prefix_text = text.partition("/")
    address = parse_address(address_text)
    if address is None:
        return None
    prefix = _prefix(prefix_text, address) if slash else address.max_prefixlen
    if prefix is None or prefix > address.max_prefixlen:
        return None
    return ipaddress.ip_network((address, prefix), strict=False)


def network_test(networks: Iterable[Network], look: Lookup) -> Test:
    """Whether the address `look` finds is in one of `networks` (same IP version)."""
    by_version = [n for n in networks if n.version == 4], [n for n in networks if n.version == 6]

    def test(context: EvaluationContext) -> bool:
        value = look(context)
        address = parse_address(value) if value is not None else None
        if address is None:
            return False
        return any(address in network for network in by_version[address.version == 6])

    return test


def _cidr(constraint: Constraint) -> Test:
    if not constraint.values:  # Yggdrasil's grammar has no empty list for it
        raise BrokenRule("IN_CIDR needs values")
    parsed = [parse_network(quoted_value(entry)) for entry in constraint.values]
    networks = [network for network in parsed if network is not None]
    return network_test(networks, context_lookup(constraint.context_name))


_BUILDERS: dict[str, Callable[[Constraint], Test]] = {
    Operator.IN: _membership,
    Operator.NOT_IN: _membership,
    Operator.STR_CONTAINS: _string,
    Operator.STR_STARTS_WITH: _string,
    Operator.STR_ENDS_WITH: _string,
    **{op: _ordinal for op in OPERATORS if op.startswith(("NUM_", "DATE_", "SEMVER_"))},
    Operator.REGEX: _regex,
    Operator.IN_CIDR: _cidr,
}


# --- strict validation (definitions made in Tenantry) ----------------------------------
_MEANT = {"NUM": _RULE_NUMBER, "DATE": _RULE_DATE, "SEMVER": _RULE_VERSION}


def constraint_problem(constraint: Constraint) -> str | None:
    """Why Tenantry refuses `constraint` (it would never match as meant), or None."""
    operator = constraint.operator
    if operator not in OPERATORS:
        return f"operator: {operator!r} is not one of {', '.join(sorted(OPERATORS))}"
    family = operator.partition("_")[0]
    single = family in _MEANT or operator == Operator.REGEX
    if single and constraint.value is None:
        return f"value: {operator} compares with one value"
    if not single and constraint.values is None:
        return f"values: {operator} takes a list of values"
    try:
        compile_constraint(constraint)
    except BrokenRule as exc:
        return f"value: {exc}"
    if family == "SEMVER" and (constraint.value or "").startswith("v"):
        return "value: a SemVer version has no leading 'v'"
    meant = _MEANT.get(family)
    if meant is not None and not meant.fullmatch((constraint.value or "").strip(" \t")):
        return f"value: {constraint.value!r} is not a {family.lower()} value"
    if operator == Operator.REGEX and compile_regex(constraint.value or "", False) is None:
        return f"value: {constraint.value!r} is not a valid RE2 pattern"
    if operator == Operator.IN_CIDR:
        for entry in constraint.values or ():
            if parse_network(entry) is None:
                return f"values: {entry!r} is not an IP network"
    return None
