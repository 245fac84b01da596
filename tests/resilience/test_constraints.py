"""Constraints, segments and dependencies at the evaluator: each edge case as Unleash decides it.

Every case is evaluated by Tenantry (`FlagSnapshot`) and, where it is Unleash's
behaviour being matched, by Unleash's own engine too (`yggdrasil-engine`), so the
expected value is not only ours. tests/resilience/test_unleash_differential.py
compares the two on random documents; these are the cases worth naming.
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from tenantry.resilience.constraints import (
    Constraint,
    compile_constraint,
    compile_regex,
    constraint_problem,
    parse_date,
    parse_network,
    parse_version,
    read_quoted,
)
from tenantry.resilience.context import EvaluationContext
from tenantry.resilience.flags import Dependency, Flag, FlagSnapshot, Reason
from tenantry.resilience.unleash import read_document

yggdrasil = pytest.importorskip("yggdrasil_engine.engine")
ENGINE = yggdrasil.UnleashEngine()
FLAG = "f"


def feature(*strategies: dict[str, Any], name: str = FLAG, **extra: Any) -> dict[str, Any]:
    return {"name": name, "enabled": True, "strategies": list(strategies), **extra}


def default(*constraints: dict[str, Any], **extra: Any) -> dict[str, Any]:
    return {"name": "default", "parameters": {}, "constraints": list(constraints), **extra}


def rule(
    name: str,
    operator: str,
    values: list[str] | None = None,
    value: str | None = None,
    **extra: Any,
) -> dict[str, Any]:
    found: dict[str, Any] = {"contextName": name, "operator": operator, **extra}
    if values is not None:
        found["values"] = values
    if value is not None:
        found["value"] = value
    return found


def evaluate(
    features: list[dict[str, Any]],
    context: dict[str, Any],
    segments: list[dict[str, Any]] | None = None,
    name: str = FLAG,
) -> tuple[bool, str | None]:
    """(enabled, variant name) by Tenantry, checked equal to Unleash's engine."""
    document = {"version": 2, "features": features, "segments": segments or []}
    read = read_document(document)
    evaluation = FlagSnapshot.of(read.flags, read.segments).evaluate(
        name, context=EvaluationContext.of(context)
    )
    ours = (evaluation.enabled, evaluation.variant.name if evaluation.variant else None)
    ENGINE.take_state(json.dumps(document))
    variant = ENGINE.check_variant(name, context).variant
    theirs = (
        ENGINE.check_enabled(name, context).is_enabled,
        variant.name if variant.enabled else None,
    )
    assert ours == theirs, f"Tenantry {ours}, Unleash {theirs}"
    return ours


def matches(constraint: dict[str, Any], context: dict[str, Any]) -> bool:
    """Whether a flag whose one strategy has `constraint` is on for `context`."""
    return evaluate([feature(default(constraint))], context)[0]


def breaks(constraint: dict[str, Any], context: dict[str, Any] | None = None) -> bool:
    """Whether `constraint` turns the whole flag off: even a second, plain strategy is off."""
    return not evaluate([feature(default(constraint), default())], context or {})[0]


def props(**values: str) -> dict[str, Any]:
    return {"properties": values}


# --- IN, NOT_IN and the string operators -------------------------------------------------
def test_a_missing_value_is_out_of_in_and_in_not_in_and_inverted_flips_both() -> None:
    assert not matches(rule("plan", "IN", ["pro"]), {})
    assert matches(rule("plan", "NOT_IN", ["pro"]), {})
    assert matches(rule("plan", "IN", ["pro"], inverted=True), {})
    assert not matches(rule("plan", "NOT_IN", ["pro"], inverted=True), {})


def test_in_without_values_matches_nothing_and_not_in_everything() -> None:
    assert not matches(rule("plan", "IN"), props(plan="pro"))
    assert matches(rule("plan", "NOT_IN", []), props(plan="pro"))
    assert matches(rule("plan", "NOT_IN"), {})


def test_string_operators_fold_case_only_when_asked() -> None:
    assert not matches(rule("plan", "STR_STARTS_WITH", ["PRO"]), props(plan="pro-annual"))
    assert matches(
        rule("plan", "STR_STARTS_WITH", ["PRO"], caseInsensitive=True), props(plan="pro-annual")
    )
    assert matches(rule("plan", "STR_ENDS_WITH", ["nual"]), props(plan="pro-annual"))
    assert matches(rule("plan", "STR_CONTAINS", ["o-a"]), props(plan="pro-annual"))
    # IN has no case folding, whatever the flag says.
    assert not matches(rule("plan", "IN", ["PRO"], caseInsensitive=True), props(plan="pro"))


def test_a_string_operator_on_a_missing_value_is_false_and_inverted_true() -> None:
    assert not matches(rule("plan", "STR_CONTAINS", ["p"]), {})
    assert matches(rule("plan", "STR_CONTAINS", ["p"], inverted=True), {})


@pytest.mark.parametrize("values", [None, []])
def test_a_string_operator_without_values_breaks_the_flag(values: list[str] | None) -> None:
    assert breaks(rule("plan", "STR_CONTAINS", values), props(plan="pro"))


def test_a_quote_in_a_value_is_escaped_but_a_trailing_backslash_breaks_the_flag() -> None:
    assert matches(rule("plan", "IN", ['say "hi"']), props(plan='say "hi"'))
    assert breaks(rule("plan", "IN", ["C:\\"]), props(plan="C:\\"))
    assert breaks(rule("plan", "STR_ENDS_WITH", ["x", "a\\"]))


def test_a_property_name_with_a_bare_quote_breaks_the_flag_and_is_read_as_written() -> None:
    assert breaks(rule('odd"name', "IN", ["x"]), props(**{'odd"name': "x"}))
    # An escaped quote compiles, but the name is looked up as written, backslash and all.
    assert not matches(rule('odd\\"name', "IN", ["x"]), props(**{'odd"name': "x"}))
    assert matches(rule('odd\\"name', "IN", ["x"]), props(**{'odd\\"name': "x"}))


def test_company_id_is_tenantrys_own_field_and_an_unleash_property() -> None:
    company = rule("companyId", "IN", ["acme"])
    assert matches(company, props(companyId="acme"))
    read = read_document({"version": 2, "features": [feature(default(company))]})
    snapshot = FlagSnapshot.of(read.flags)
    assert snapshot.evaluate(FLAG, context=EvaluationContext(company_id="acme")).enabled
    assert snapshot.evaluate(FLAG, context=EvaluationContext(company_id="globex")).enabled is False


# --- numbers ---------------------------------------------------------------------------
def test_num_eq_is_equal_within_machine_epsilon() -> None:
    assert matches(rule("n", "NUM_EQ", value="0.3"), props(n="0.30000000000000004"))
    assert not matches(rule("n", "NUM_EQ", value="1"), props(n="1.0000000000000002"))


@pytest.mark.parametrize("number", ["abc", " 5", "1_0", "0x5", "", "\u0665"])
def test_a_context_value_that_is_not_a_rust_float_is_false_and_inverted_true(number: str) -> None:
    assert not matches(rule("n", "NUM_LTE", value="10"), props(n=number))
    assert matches(rule("n", "NUM_LTE", value="10", inverted=True), props(n=number))


@pytest.mark.parametrize("number", ["5.", "+5", "1e0", "infinity", "-inf"])
def test_rust_float_syntax_in_the_context(number: str) -> None:
    expected = number not in ("infinity",)
    assert matches(rule("n", "NUM_LTE", value="5"), props(n=number)) is expected


@pytest.mark.parametrize("value", ["abc", ".5", "", "inf", "5\n", "1_000", "X5", "5X"])
def test_a_rule_value_that_is_no_number_date_or_version_breaks_the_flag(value: str) -> None:
    assert breaks(rule("n", "NUM_GT", value=value), props(n="7"))


def test_a_rule_value_may_have_spaces_and_tabs_around_it() -> None:
    assert matches(rule("n", "NUM_EQ", value=" \t7 "), props(n="7"))


def test_the_value_decides_what_is_compared_not_the_operator() -> None:
    # Unleash writes the value bare into its rule: a version compares as a version...
    assert matches(rule("v", "NUM_GT", value="1.2.3"), props(v="1.10.0"))
    # ...a date as a date (equal instants with different offsets)...
    equal = rule("t", "NUM_EQ", value="2024-06-01T12:00:00Z")
    assert matches(equal, props(t="2024-06-01T14:00:00+02:00"))
    # ...and a number as a number, under a date or version operator.
    assert matches(rule("n", "DATE_AFTER", value="5"), props(n="6"))
    assert matches(rule("n", "SEMVER_GT", value="1.2"), props(n="1.3"))


# --- dates -----------------------------------------------------------------------------
NOON = "2024-06-01T12:00:00Z"


@pytest.mark.parametrize(
    ("moment", "after"),
    [
        ("2024-06-01T14:00:00+02:00", False),  # noon in UTC: not after noon
        ("2024-06-01T14:00:01+02:00", True),
        ("2024-06-01T11:00:01-01:00", True),
        ("2024-06-01T12:00:01z", True),  # chrono reads leniently...
        ("2024-06-01 12:00:01Z", True),
        ("2024-06-01T12:00:01 UTC", True),
        ("2024-6-1T12:0:1Z", True),
        (" 2024-06-01T12:00:01+0000 ", True),
        ("2024-06-01T12:00:00.000000001Z", True),  # to the nanosecond
        ("2024-06-01T12:00:00.0000000001Z", False),  # further digits are dropped
        ("2024-06-01T12:00:01", False),  # ...but an offset it needs
        ("2024-06-01", False),
        ("2024-06-01T12:00:01+24:00", False),
        ("2024-02-30T12:00:01Z", False),
        ("02024-06-01T12:00:01Z", False),
    ],
)
def test_a_context_date_is_read_as_chrono_reads_it(moment: str, after: bool) -> None:
    assert matches(rule("t", "DATE_AFTER", value=NOON), props(t=moment)) is after


def test_a_leap_second_comes_after_the_59th_second_and_before_the_next_minute() -> None:
    leap = "2024-06-01T12:00:60Z"
    assert matches(rule("t", "DATE_AFTER", value="2024-06-01T12:00:59.999Z"), props(t=leap))
    assert matches(rule("t", "DATE_BEFORE", value="2024-06-01T12:01:00Z"), props(t=leap))
    assert matches(rule("t", "DATE_BEFORE", value=leap), props(t="2024-06-01T12:00:59.5Z"))
    second_59 = parse_date("2024-06-01T12:00:59Z")
    assert second_59 is not None
    assert parse_date(leap) == (second_59[0], 1_000_000_000)  # the :59, a second longer


@pytest.mark.parametrize(
    ("value", "broken"),
    [
        ("2024-06-01T12:00:00.123Z", False),  # milliseconds, and nothing finer
        ("2024-06-01T12:00:00.123456Z", True),
        ("2024-06-01T12:00:00", True),
        ("2024-06-01t12:00:00Z", True),
        ("2024-13-01T12:00:00Z", True),
    ],
)
def test_a_rule_date_is_rfc_3339_to_the_millisecond(value: str, broken: bool) -> None:
    assert breaks(rule("t", "DATE_AFTER", value=value), props(t=NOON)) is broken


def test_a_missing_current_time_is_now_for_every_operator() -> None:
    assert matches(rule("currentTime", "DATE_AFTER", value="2020-01-01T00:00:00Z"), {})
    assert not matches(rule("currentTime", "DATE_BEFORE", value="2020-01-01T00:00:00Z"), {})
    assert matches(rule("currentTime", "STR_STARTS_WITH", ["20"]), {})
    assert not matches(rule("currentTime", "DATE_AFTER", value=NOON), {"currentTime": NOON})


@pytest.fixture
def machine_in_tokyo(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """The process's local time zone is UTC+9 (a POSIX TZ: no tz database needed)."""
    monkeypatch.setenv("TZ", "JST-9")
    time.tzset()
    yield
    monkeypatch.undo()
    time.tzset()


@pytest.mark.usefixtures("machine_in_tokyo")
def test_a_missing_current_time_is_now_in_utc_whatever_the_machines_time_zone() -> None:
    # Nine hours either way would put "now" outside the two-hour window.
    now = datetime.now(UTC)
    soon, lately = ((now + timedelta(hours=h)).strftime("%Y-%m-%dT%H:%M:%SZ") for h in (1, -1))
    assert matches(rule("currentTime", "DATE_BEFORE", value=soon), {})
    assert matches(rule("currentTime", "DATE_AFTER", value=lately), {})


# --- versions --------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("lower", "higher"),
    [
        ("1.2.3-alpha", "1.2.3-beta"),
        ("1.2.3-beta.2", "1.2.3-beta.11"),  # numeric identifiers compare as numbers
        ("1.2.3-beta", "1.2.3-beta.1"),  # more identifiers, higher
        ("1.2.3-1", "1.2.3-a"),  # numeric below alphanumeric
        ("1.2.3-rc.1", "1.2.3"),  # a pre-release below its release
        ("1.2.3", "1.10.0"),
    ],
)
def test_semver_orders_pre_releases_below_their_release(lower: str, higher: str) -> None:
    assert matches(rule("v", "SEMVER_LT", value=higher), props(v=lower))
    assert matches(rule("v", "SEMVER_GT", value=lower), props(v=higher))
    assert not matches(rule("v", "SEMVER_LTE", value=lower), props(v=higher))


def test_semver_ignores_build_metadata() -> None:
    assert matches(rule("v", "SEMVER_EQ", value="1.2.3+build.7"), props(v="1.2.3+other"))
    assert not matches(rule("v", "SEMVER_GT", value="1.2.3+a"), props(v="1.2.3+b"))


@pytest.mark.parametrize("operator", ["SEMVER_EQ", "SEMVER_GTE", "SEMVER_LTE"])
def test_a_v_prefixed_rule_version_is_false_even_inverted_and_breaks_nothing(
    operator: str,
) -> None:
    assert not matches(rule("v", operator, value="v1.2.3"), props(v="1.2.3"))
    assert not matches(rule("v", operator, value="v1.2.3", inverted=True), props(v="1.2.3"))
    assert not breaks(rule("v", operator, value="v1.2.3"))


U64 = 2**64  # Rust's semver reads each part as a u64


@pytest.mark.parametrize(
    "version",
    ["v1.2.3", "01.2.3", "1.2.3-beta.01", "1.2", "\u0661.2.3", f"1.{U64}.0", f"1.2.{U64}"],
)
def test_a_context_version_that_is_not_semver_is_false(version: str) -> None:
    assert not matches(rule("v", "SEMVER_LTE", value="9.9.9"), props(v=version))


@pytest.mark.parametrize(
    "value", ["01.2.3", "1.2.3-", "1.2.3.4", f"{U64}.0.0", f"1.{U64}.0", f"1.2.{U64}"]
)
def test_a_rule_version_that_does_not_parse_breaks_the_flag(value: str) -> None:
    assert breaks(rule("v", "SEMVER_EQ", value=value), props(v="1.2.3"))


def test_each_part_of_a_version_is_a_u64() -> None:
    assert parse_version(f"{U64 - 1}.{U64 - 1}.{U64 - 1}") is not None
    for version in (f"{U64}.0.0", f"0.{U64}.0", f"0.0.{U64}"):
        assert parse_version(version) is None, version


# --- REGEX -----------------------------------------------------------------------------
def test_regex_searches_and_folds_case_when_asked() -> None:
    assert matches(rule("plan", "REGEX", value="o-a"), props(plan="pro-annual"))
    assert not matches(rule("plan", "REGEX", value="^PRO"), props(plan="pro"))
    assert matches(rule("plan", "REGEX", value="^PRO", caseInsensitive=True), props(plan="pro"))
    assert matches(rule("plan", "REGEX", value="(?i)^PRO"), props(plan="pro"))


def test_an_invalid_pattern_is_false_and_inverted_true_without_breaking_the_flag() -> None:
    for pattern in ("[", "(?=x)", "(a)\\1"):  # RE2 and Rust's regex refuse all three
        assert not matches(rule("plan", "REGEX", value=pattern), props(plan="a"))
        assert matches(rule("plan", "REGEX", value=pattern, inverted=True), props(plan="a"))
        assert not breaks(rule("plan", "REGEX", value=pattern))
    # A compiled constraint is a test of a context: a bool, false here, whatever it holds.
    invalid = compile_constraint(Constraint("plan", "REGEX", value="["))
    assert invalid(EvaluationContext(properties={"plan": "a"})) is False


def test_an_invalid_pattern_is_refused_without_writing_to_stderr(
    capfd: pytest.CaptureFixture[str],
) -> None:
    # RE2 logs a parse error to the process's stderr unless told not to: a tenant's
    # pattern would write there on every compile.
    assert compile_regex("(", case_insensitive=False) is None
    assert compile_regex("(", case_insensitive=True) is None
    assert capfd.readouterr().err == ""


def test_a_pattern_ending_in_a_backslash_breaks_the_flag() -> None:
    assert breaks(rule("plan", "REGEX", value="a\\\\"), props(plan="a\\"))


def test_regex_reads_value_not_values() -> None:
    # Without a `value` the pattern is empty, which matches anything there is.
    assert matches(rule("plan", "REGEX", ["zzz"]), props(plan="pro"))
    assert not matches(rule("plan", "REGEX", ["pro"], value="zzz"), props(plan="pro"))
    assert not matches(rule("plan", "REGEX"), {})


# --- IN_CIDR ---------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("network", "address", "inside"),
    [
        ("10.0.0.0/8", "10.1.2.3", True),
        ("10.1.2.3/8", "10.9.9.9", True),  # host bits allowed
        ("10.0.0.0/255.0.0.0", "10.1.2.3", True),  # a netmask as prefix
        ("10.0.0.0/+8", "10.1.2.3", True),  # a u8, as Rust reads one
        ("10.0.0.0/0.255.255.255", "10.1.2.3", False),  # a hostmask is not a prefix
        ("127.0.0.1", "127.0.0.1", True),
        ("2001:db8::/32", "2001:DB8::5", True),
        ("::1", "::1", True),
        ("10.0.0.0/8", "::ffff:10.1.2.3", False),  # IPv4-mapped: not in an IPv4 network
        ("::ffff:0:0/96", "::ffff:10.1.2.3", True),
        ("0.0.0.0/0", "::1", False),
        ("fe80::/10", "fe80::1%eth0", False),  # no zone ids
        ("10.0.0.0/33", "10.1.2.3", False),
        ("10.0.0.0/abc", "10.0.0.1", False),  # neither a prefix nor a netmask
        ("::/255.0.0.0", "::1", False),  # a netmask is for IPv4 networks only
        ("10.0.0.0/8", "010.1.2.3", False),
    ],
)
def test_in_cidr(network: str, address: str, inside: bool) -> None:
    assert (
        matches(rule("remoteAddress", "IN_CIDR", [network]), {"remoteAddress": address}) is inside
    )


def test_in_cidr_skips_invalid_entries_and_needs_some() -> None:
    both = rule("remoteAddress", "IN_CIDR", ["junk", "10.0.0.0/8"])
    assert matches(both, {"remoteAddress": "10.1.2.3"})
    assert matches(rule("ip", "IN_CIDR", ["10.0.0.0/8"], inverted=True), props(ip="junk"))
    assert breaks(rule("remoteAddress", "IN_CIDR", []), {"remoteAddress": "10.1.2.3"})
    assert parse_network("10.0.0.0/255.0.0.0") == parse_network("10.0.0.0/8")


# --- operators -------------------------------------------------------------------------
@pytest.mark.parametrize("operator", ["NUM_NEQ", "in", ""])
def test_an_unknown_operator_breaks_the_flag(operator: str) -> None:
    assert breaks(rule("plan", operator, ["pro"], value="pro"), props(plan="pro"))


def test_a_broken_rule_is_reported_as_an_invalid_definition() -> None:
    read = read_document({"version": 2, "features": [feature(default(rule("n", "FOO")))]})
    evaluation = FlagSnapshot.of(read.flags).evaluate(FLAG)
    assert (evaluation.enabled, evaluation.reason) == (False, Reason.INVALID_DEFINITION)


def test_the_strict_check_refuses_what_unleash_would_not_decide_as_written() -> None:
    assert constraint_problem(Constraint("n", "NUM_GT", value="1.2.3")) is not None
    assert constraint_problem(Constraint("n", "DATE_AFTER", value="5")) is not None
    assert constraint_problem(Constraint("n", "STR_CONTAINS", values=())) is not None
    assert constraint_problem(Constraint("n", "IN", values=("a\\",))) is not None
    assert constraint_problem(Constraint('a"b', "IN", values=("a",))) is not None
    assert constraint_problem(Constraint("n", "NUM_GT", value="5")) is None
    assert constraint_problem(Constraint("n", "SEMVER_GT", value="1.2.3-rc.1")) is None


SORTED_OPERATORS = (
    "DATE_AFTER, DATE_BEFORE, IN, IN_CIDR, NOT_IN, NUM_EQ, NUM_GT, NUM_GTE, NUM_LT, NUM_LTE, "
    "REGEX, SEMVER_EQ, SEMVER_GT, SEMVER_GTE, SEMVER_LT, SEMVER_LTE, STR_CONTAINS, "
    "STR_ENDS_WITH, STR_STARTS_WITH"
)


@pytest.mark.parametrize(
    ("constraint", "problem"),
    [
        # The operator, with every operator there is in the message.
        (
            Constraint("n", "NUM_NEQ", value="5"),
            f"operator: 'NUM_NEQ' is not one of {SORTED_OPERATORS}",
        ),
        # Single-value operators need `value`; list operators `values`.
        (Constraint("n", "NUM_GT"), "value: NUM_GT compares with one value"),
        (Constraint("n", "DATE_AFTER"), "value: DATE_AFTER compares with one value"),
        (Constraint("n", "SEMVER_EQ"), "value: SEMVER_EQ compares with one value"),
        (Constraint("n", "REGEX"), "value: REGEX compares with one value"),
        (Constraint("n", "REGEX", values=("a.*",)), "value: REGEX compares with one value"),
        (Constraint("n", "IN"), "values: IN takes a list of values"),
        (Constraint("n", "NOT_IN"), "values: NOT_IN takes a list of values"),
        (Constraint("n", "STR_CONTAINS"), "values: STR_CONTAINS takes a list of values"),
        (Constraint("n", "IN_CIDR"), "values: IN_CIDR takes a list of values"),
        (Constraint("n", "IN", values=("a",)), None),
        (Constraint("n", "STR_CONTAINS", values=("a",)), None),
        # What does not compile, with the compiler's reason.
        (
            Constraint("n", "NUM_GT", value="X5"),
            "value: NUM_GT: 'X5' is not a date, version or number",
        ),
        (
            Constraint("n", "NUM_GT", value="5\n"),
            "value: NUM_GT: '5\\n' is not a date, version or number",
        ),
        # A SemVer version written with a leading 'v' (which Unleash decides as false).
        (
            Constraint("n", "SEMVER_EQ", value="v1.2.3"),
            "value: a SemVer version has no leading 'v'",
        ),
        (Constraint("n", "SEMVER_EQ", value="v"), "value: a SemVer version has no leading 'v'"),
        (Constraint("n", "REGEX", value="v[0-9]+"), None),  # a 'v' is only a SemVer's problem
        # A value that compiles, but as another family than the operator's.
        (Constraint("n", "NUM_GT", value="1.2.3"), "value: '1.2.3' is not a num value"),
        (Constraint("n", "DATE_AFTER", value="5"), "value: '5' is not a date value"),
        (Constraint("n", "SEMVER_EQ", value="5"), "value: '5' is not a semver value"),
        (Constraint("n", "NUM_GT", value=" 5\t"), None),  # spaces and tabs around are skipped
        (Constraint("n", "DATE_AFTER", value="2024-06-01T12:00:00Z"), None),
        (Constraint("n", "SEMVER_GT", value=" 1.2.3-beta.X "), None),
        # REGEX: an invalid RE2 pattern (which Unleash decides as false).
        (Constraint("n", "REGEX", value="("), "value: '(' is not a valid RE2 pattern"),
        (Constraint("n", "REGEX", value="^pro-(annual|monthly)$"), None),
        (Constraint("n", "STR_CONTAINS", values=("(",), value="("), None),  # `value` not read
        # IN_CIDR: an entry that is no network (which Unleash skips).
        (
            Constraint("n", "IN_CIDR", values=("10.0.0.0/8", "junk")),
            "values: 'junk' is not an IP network",
        ),
        (Constraint("n", "IN_CIDR", values=("10.0.0.0/8", "::1", "192.168.0.0/255.255.0.0")), None),
        (Constraint("n", "IN", values=("junk",)), None),  # networks only for IN_CIDR
    ],
)
def test_the_strict_check_says_what_is_wrong(constraint: Constraint, problem: str | None) -> None:
    """Its message is the one a definition made through Tenantry's API is refused with."""
    assert constraint_problem(constraint) == problem


def test_read_quoted() -> None:
    assert read_quoted('a\\"b') == 'a"b'
    assert read_quoted('a"b') is None
    assert read_quoted("a\\") is None
    assert read_quoted("a\\\\b") == "a\\\\b"


# --- strategies ------------------------------------------------------------------------
def rollout(percentage: str, **parameters: str) -> dict[str, Any]:
    return {"name": "flexibleRollout", "parameters": {"rollout": percentage, **parameters}}


def test_a_rollout_over_100_breaks_the_flag() -> None:
    assert not evaluate([feature(rollout("101"), default())], {"userId": "u1"})[0]
    assert evaluate([feature(rollout("100"), default())], {"userId": "u1"})[0]


def test_a_rollout_is_read_as_a_rust_usize_which_may_have_a_plus() -> None:
    assert evaluate([feature(rollout("+5"))], {"userId": "u25"})[0]  # u25 is in the first 5 %
    assert not evaluate([feature(rollout("+5"))], {"userId": "u1"})[0]


def test_a_rollout_past_a_usize_is_no_rollout_and_one_below_breaks_the_flag() -> None:
    # 2**64 does not parse (the strategy is off, the plain one on); 2**64 - 1 is over 100.
    assert evaluate([feature(rollout(str(2**64)), default())], {"userId": "u1"})[0]
    assert not evaluate([feature(rollout(str(2**64 - 1)), default())], {"userId": "u1"})[0]


def test_user_ids_are_trimmed_of_rusts_whitespace_only() -> None:
    # \x1f (unit separator) is whitespace to Python's str.strip, not to Rust's str::trim.
    listed = {"name": "userWithId", "parameters": {"userIds": " a ,\x1fb\x1f"}}
    assert evaluate([feature(listed)], {"userId": "a"})[0]
    assert evaluate([feature(listed)], {"userId": "\x1fb\x1f"})[0]
    assert not evaluate([feature(listed)], {"userId": "b"})[0]


def test_an_empty_group_id_is_a_group_id() -> None:
    ids = [f"user-{n}" for n in range(200)]
    empty = [evaluate([feature(rollout("50", groupId=""))], {"userId": i})[0] for i in ids]
    named = [evaluate([feature(rollout("50"))], {"userId": i})[0] for i in ids]
    assert empty != named  # "" is hashed as itself, not replaced by the flag's name


def test_a_group_id_with_a_bare_quote_breaks_the_flag() -> None:
    assert not evaluate([feature(rollout("100", groupId='a"b'), default())], {"userId": "u"})[0]


def test_a_stickiness_name_that_does_not_compile_breaks_the_flag_even_at_0_percent() -> None:
    broken = rollout("0", stickiness='a"b')
    assert not evaluate([feature(broken, default())], {"userId": "u"})[0]


def test_application_hostname_reads_the_hostname_variable(monkeypatch: pytest.MonkeyPatch) -> None:
    # Tenantry's own: the `yggdrasil-engine` wheel is built without hostname support.
    monkeypatch.setenv("hostname", "Web-1")
    strategy = {"name": "applicationHostname", "parameters": {"hostNames": "db-1, web-1"}}
    read = read_document({"version": 2, "features": [feature(strategy)]})
    assert FlagSnapshot.of(read.flags).evaluate(FLAG).enabled
    monkeypatch.setenv("hostname", "web-2")
    assert not FlagSnapshot.of(read.flags).evaluate(FLAG).enabled


def test_the_first_matching_strategy_decides_the_variant() -> None:
    variants = [{"name": "flag-wide", "weight": 1, "stickiness": "userId"}]
    own = default(variants=[{"name": "strategy's", "weight": 1}])
    # The first strategy to match has no variants of its own: the flag's are chosen.
    assert evaluate([feature(default(), own, variants=variants)], {"userId": "u"}) == (
        True,
        "flag-wide",
    )
    assert evaluate([feature(own, default(), variants=variants)], {"userId": "u"}) == (
        True,
        "strategy's",
    )


# --- segments --------------------------------------------------------------------------
EU = {"id": 1, "constraints": [rule("region", "IN", ["eu"])]}
PRO = {"id": 2, "constraints": [rule("plan", "IN", ["pro"]), rule("seats", "NUM_GTE", value="5")]}


def test_a_missing_segment_turns_the_whole_flag_off() -> None:
    strategies = [default(segments=[9]), default()]
    assert not evaluate([feature(*strategies)], {}, [EU])[0]
    read = read_document({"version": 2, "features": [feature(*strategies)]})
    assert FlagSnapshot.of(read.flags).evaluate(FLAG).reason is Reason.INVALID_DEFINITION


def test_segment_constraints_are_anded_with_each_other_and_the_strategys() -> None:
    strategy = default(rule("userId", "IN", ["u1"]), segments=[1, 2])
    everything: dict[str, Any] = {
        "userId": "u1",
        "properties": {"region": "eu", "plan": "pro", "seats": "5"},
    }
    assert evaluate([feature(strategy)], everything, [EU, PRO])[0]
    for missing in ("region", "plan", "seats"):
        less = {**everything, "properties": dict(everything["properties"])}
        del less["properties"][missing]
        assert not evaluate([feature(strategy)], less, [EU, PRO])[0], missing
    assert not evaluate([feature(strategy)], {**everything, "userId": "u2"}, [EU, PRO])[0]


# --- dependencies ----------------------------------------------------------------------
def parent(*, enabled: bool = True, variants: list[dict[str, Any]] | None = None) -> dict[str, Any]:
    return feature(default(), name="parent", enabled=enabled, variants=variants or [])


def child(**dependency: Any) -> dict[str, Any]:
    return feature(default(), dependencies=[{"feature": "parent", **dependency}])


def test_a_child_is_off_while_its_parent_is_off() -> None:
    assert evaluate([parent(), child()], {})[0]
    assert not evaluate([parent(enabled=False), child()], {})[0]


def test_enabled_false_wants_the_parent_off() -> None:
    assert evaluate([parent(enabled=False), child(enabled=False)], {})[0]
    assert not evaluate([parent(), child(enabled=False)], {})[0]


def test_variants_want_one_of_the_parents_variants() -> None:
    blue = [{"name": "blue", "weight": 1, "stickiness": "userId"}]
    context = {"userId": "u1"}
    assert evaluate([parent(variants=blue), child(variants=["blue", "red"])], context)[0]
    assert not evaluate([parent(variants=blue), child(variants=["red"])], context)[0]
    assert evaluate([parent(variants=blue), child(variants=[])], context)[0]  # [] is any
    # A parent with no variants at all gives none to check: only its state counts.
    assert evaluate([parent(), child(variants=["red"])], context)[0]


def test_a_missing_parent_keeps_the_child_off() -> None:
    assert not evaluate([child()], {})[0]
    assert not evaluate([child(enabled=False)], {})[0]


def test_a_chain_of_two_keeps_the_grandchild_off() -> None:
    grandchild = feature(default(), name="grandchild", dependencies=[{"feature": FLAG}])
    features = [parent(), child(), grandchild]
    assert evaluate(features, {})[0]  # the child itself depends on a plain flag
    assert not evaluate(features, {}, name="grandchild")[0]


def test_dependencies_hold_for_simple_flags_too() -> None:
    flags = [Flag("parent"), Flag("child", enabled=True, dependencies=(Dependency("parent"),))]
    snapshot = FlagSnapshot.of(flags)
    assert snapshot.evaluate("child").reason is Reason.DEPENDENCY_NOT_MET
    assert not snapshot.is_enabled("child")


def test_dates_are_the_proleptic_gregorian_calendar() -> None:
    """Every month's last days over leap and century years, against Python's calendar."""
    import calendar
    from datetime import UTC, datetime

    for year in (1, 4, 99, 100, 400, 1600, 1899, 1900, 1969, 1970, 1971, 2000, 2024, 2100, 9999):
        for month in range(1, 13):
            last = calendar.monthrange(year, month)[1]
            for day in (1, 28, 29, 30, 31):
                parsed = parse_date(f"{year:04d}-{month:02d}-{day:02d}T00:00:00Z")
                if day > last:
                    assert parsed is None, (year, month, day)
                    continue
                expected = datetime(year, month, day, tzinfo=UTC).timestamp()
                assert parsed == (int(expected), 0), (year, month, day)
