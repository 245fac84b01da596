"""Activation strategies and variant choice at the engine: each strategy's rule as Unleash's.

The strategies the Unleash specification and tests/resilience/test_constraints.py do not
reach: Tenantry's own rollouts, the random ones (which Unleash's engine cannot be
compared with draw for draw), and the boundaries of the sticky rollouts. A rollout is
in when Unleash's normalized hash of "<groupId>:<stickiness value>" (1..100) is within
its percentage; the group id is the flag's key unless the strategy names one.

Random outcomes are counted over enough draws that a false failure is below 1e-9.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping

import pytest

from tenantry.resilience.constraints import Constraint, Test
from tenantry.resilience.context import EvaluationContext
from tenantry.resilience.flags import Flag, FlagSnapshot, Target
from tenantry.resilience.strategies import Segment, Strategy, compile_strategies, compile_strategy
from tenantry.resilience.variants import Variant, choose_variant, normalized_hash, stickiness_value

FLAG = "checkout"
IDS = [f"id-{n}" for n in range(1000)]
ANONYMOUS = EvaluationContext()
DRAWS = 3000  # (98/99) ** 3000 < 1e-13: a 1-in-99 outcome is seen, or a bug


def compiled(name: str, flag: str = FLAG, **parameters: str) -> Test:
    return compile_strategy(Strategy(name, parameters), flag, {})


def on_for(test: Test, context_of: Callable[[str], EvaluationContext]) -> set[str]:
    return {target_id for target_id in IDS if test(context_of(target_id))}


def bucketed(percentage: int, group_id: str) -> set[str]:
    """The ids Unleash's rollout of `percentage` lets in within `group_id`."""
    return {target_id for target_id in IDS if normalized_hash(target_id, group_id) <= percentage}


def company(target_id: str) -> EvaluationContext:
    return EvaluationContext(company_id=target_id)


def user(target_id: str) -> EvaluationContext:
    return EvaluationContext(user_id=target_id)


def session(target_id: str) -> EvaluationContext:
    return EvaluationContext(session_id=target_id)


def draws(test: Test, context: EvaluationContext = ANONYMOUS) -> int:
    """How many of `DRAWS` evaluations of `test` are on."""
    return sum(test(context) for _ in range(DRAWS))


# --- Tenantry's companyRollout and userRollout -------------------------------------------
def test_a_company_rollout_buckets_by_company_like_the_simple_flag() -> None:
    test = compiled("companyRollout", rollout="30")
    simple = FlagSnapshot.of([Flag(FLAG, enabled=True, target=Target.COMPANY, rollout=30)])
    expected = {target_id for target_id in IDS if simple.is_enabled(FLAG, target_id)}
    assert on_for(test, company) == expected == bucketed(30, FLAG)
    assert not on_for(test, user)  # a user id is not a company id


def test_a_user_rollout_buckets_by_user_like_the_simple_flag() -> None:
    test = compiled("userRollout", rollout="30")
    simple = FlagSnapshot.of([Flag(FLAG, enabled=True, target=Target.USER, rollout=30)])
    expected = {target_id for target_id in IDS if simple.is_enabled(FLAG, target_id)}
    assert on_for(test, user) == expected == bucketed(30, FLAG)
    assert not on_for(test, company)


@pytest.mark.parametrize(
    ("name", "context_of"), [("companyRollout", company), ("userRollout", user)]
)
def test_a_tenantry_rollout_with_a_group_id_buckets_within_that_group(
    name: str, context_of: Callable[[str], EvaluationContext]
) -> None:
    # Two flags in one group let the same ids in: that is what a group id is for.
    first = on_for(compiled(name, flag="a", rollout="30", groupId="launch"), context_of)
    second = on_for(compiled(name, flag="b", rollout="30", groupId="launch"), context_of)
    assert first == second == bucketed(30, "launch") != bucketed(30, "a")


@pytest.mark.parametrize("name", ["companyRollout", "userRollout"])
@pytest.mark.parametrize(
    "parameters",
    [{}, {"rollout": ""}, {"rollout": "half"}, {"rollout": "-5"}, {"rollout": str(2**64)}],
)
def test_a_tenantry_rollout_without_a_valid_rollout_is_never_on(
    name: str, parameters: Mapping[str, str]
) -> None:
    test = compile_strategy(Strategy(name, parameters), FLAG, {})
    everyone = EvaluationContext(user_id="u", company_id="c")
    assert not test(everyone)
    assert compiled(name, rollout="100")(everyone)  # the same, with a rollout: on


# --- gradualRolloutUserId and gradualRolloutSessionId --------------------------------------
GRADUAL = [("gradualRolloutUserId", user), ("gradualRolloutSessionId", session)]


@pytest.mark.parametrize(("name", "context_of"), GRADUAL)
def test_a_gradual_rollout_buckets_by_its_field_within_its_group_id(
    name: str, context_of: Callable[[str], EvaluationContext]
) -> None:
    test = compiled(name, percentage="30", groupId="launch")
    assert on_for(test, context_of) == bucketed(30, "launch")
    other = session if context_of is user else user
    assert not on_for(test, other)  # only its own field is read


@pytest.mark.parametrize(("name", "context_of"), GRADUAL)
def test_a_gradual_rollout_without_a_group_id_is_never_on_even_at_100(
    name: str, context_of: Callable[[str], EvaluationContext]
) -> None:
    assert not on_for(compiled(name, percentage="100"), context_of)


@pytest.mark.parametrize(("name", "context_of"), GRADUAL)
@pytest.mark.parametrize("parameters", [{}, {"percentage": "half"}, {"rollout": "100"}])
def test_a_gradual_rollout_without_a_valid_percentage_is_never_on(
    name: str, context_of: Callable[[str], EvaluationContext], parameters: Mapping[str, str]
) -> None:
    strategy = Strategy(name, {"groupId": "launch", **parameters})
    assert not on_for(compile_strategy(strategy, FLAG, {}), context_of)


# --- gradualRolloutRandom ---------------------------------------------------------------
# Unleash's engine draws 1..99 and is on when the draw is below the percentage.
@pytest.mark.parametrize("percentage", ["100", "+100"])
def test_a_random_rollout_of_100_is_always_on(percentage: str) -> None:
    assert draws(compiled("gradualRolloutRandom", percentage=percentage)) == DRAWS


@pytest.mark.parametrize(
    "parameters",
    [
        {"percentage": "1"},
        {"percentage": "0"},
        {},
        {"percentage": "half"},
        {"percentage": str(2**64)},
    ],
)
def test_a_random_rollout_of_1_or_without_a_valid_percentage_is_never_on(
    parameters: Mapping[str, str],
) -> None:
    assert draws(compile_strategy(Strategy("gradualRolloutRandom", parameters), FLAG, {})) == 0


def test_a_random_rollout_of_2_is_on_for_one_draw_in_99() -> None:
    on = draws(compiled("gradualRolloutRandom", percentage="2"))
    assert 0 < on < DRAWS * 3 // 100  # about 30 of 3000; over 90 is as unlikely as none


def test_a_random_rollout_is_on_for_about_its_share_of_anyone() -> None:
    on = draws(compiled("gradualRolloutRandom", percentage="50"), EvaluationContext(user_id="u"))
    assert abs(on - DRAWS * 49 / 99) < DRAWS * 0.1  # 10 %: over 11 standard deviations


# --- random and default stickiness --------------------------------------------------------
@pytest.mark.parametrize("stickiness", ["random", "default", None])
def test_a_rollout_sticky_on_nothing_draws_at_random(stickiness: str | None) -> None:
    """`random`, and `default` with neither a userId nor a sessionId, draw per evaluation."""
    parameters = {"rollout": "50"} | ({} if stickiness is None else {"stickiness": stickiness})
    test = compile_strategy(Strategy("flexibleRollout", parameters), FLAG, {})
    on = draws(test)
    assert 0 < on < DRAWS  # some draws in, some out (each about half)


def test_default_stickiness_prefers_the_user_then_the_session() -> None:
    test = compiled("flexibleRollout", rollout="30")
    assert on_for(test, user) == on_for(test, session) == bucketed(30, FLAG)
    # With both, the user decides.
    assert on_for(test, lambda i: EvaluationContext(user_id=i, session_id="s")) == bucketed(
        30, FLAG
    )


def test_random_stickiness_draws_1_to_99_as_unleash_does() -> None:
    # At 1 %, the only draw whose bucket is in is "1" in group-290, and "100" in group-822.
    only_1, only_100 = "group-290", "group-822"
    assert [d for d in range(1, 101) if normalized_hash(str(d), only_1) <= 1] == [1]
    assert [d for d in range(1, 101) if normalized_hash(str(d), only_100) <= 1] == [100]
    assert draws(compiled("flexibleRollout", rollout="1", stickiness="random", groupId=only_1))
    assert not draws(
        compiled("flexibleRollout", rollout="1", stickiness="random", groupId=only_100)
    )


# --- the boundaries of a sticky rollout -----------------------------------------------------
@pytest.mark.parametrize("stickiness", ["default", "random", "userId", "plan"])
def test_a_rollout_of_0_is_never_on(stickiness: str) -> None:
    test = compiled("flexibleRollout", rollout="0", stickiness=stickiness)
    everyone = EvaluationContext(user_id="u", properties={"plan": "pro"})
    assert not test(everyone)
    assert not test(ANONYMOUS)


@pytest.mark.parametrize("stickiness", ["default", "random"])
def test_a_rollout_of_100_is_on_for_everyone_even_anonymous(stickiness: str) -> None:
    test = compiled("flexibleRollout", rollout="100", stickiness=stickiness)
    assert test(ANONYMOUS)
    assert on_for(test, user) == set(IDS)


def test_a_rollout_of_100_sticky_on_a_field_needs_that_field() -> None:
    test = compiled("flexibleRollout", rollout="100", stickiness="companyId")
    assert on_for(test, company) == set(IDS)
    assert not test(EvaluationContext(user_id="u"))


# --- remoteAddress and applicationHostname ------------------------------------------------
def test_remote_address_matches_its_listed_addresses_and_networks() -> None:
    test = compiled("remoteAddress", IPs="10.0.0.0/8, 192.168.1.1")
    for address, inside in [("10.2.3.4", True), ("192.168.1.1", True), ("192.168.1.2", False)]:
        assert test(EvaluationContext(remote_address=address)) is inside, address
    assert not test(ANONYMOUS)


def test_remote_address_without_ips_is_never_on() -> None:
    assert not compiled("remoteAddress")(EvaluationContext(remote_address="10.2.3.4"))
    assert not compiled("remoteAddress", ips="10.0.0.0/8")(
        EvaluationContext(remote_address="10.2.3.4")
    )


@pytest.mark.parametrize("machine", ["web-1", "XXXX"])  # whatever the machine is called
def test_application_hostname_without_host_names_is_never_on(
    machine: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("hostname", machine)
    assert not compiled("applicationHostname")(ANONYMOUS)
    assert compiled("applicationHostname", hostNames=f"db-1, {machine}")(ANONYMOUS)


# --- compile_strategies ----------------------------------------------------------------------
def test_compile_strategies_compiles_each_strategy_for_the_flag_with_its_segments() -> None:
    pro = Segment(1, "pro", (Constraint("plan", "IN", ("pro",)),))
    strategies = [
        Strategy("flexibleRollout", {"rollout": "30"}),  # grouped by the flag's key
        Strategy("default", segments=(1,)),
    ]
    rollout, on_pro = compile_strategies(strategies, FLAG, {1: pro})
    assert on_for(rollout, user) == bucketed(30, FLAG)
    assert on_pro(EvaluationContext(properties={"plan": "pro"}))
    assert not on_pro(EvaluationContext(properties={"plan": "free"}))
    assert compile_strategies([], FLAG, {}) == []


# --- variants ----------------------------------------------------------------------------
@pytest.mark.parametrize("context", [ANONYMOUS, EvaluationContext(user_id="u")])
def test_no_variant_when_every_weight_is_0(context: EvaluationContext) -> None:
    assert choose_variant([Variant("a", 0), Variant("b", 0)], FLAG, context) is None


@pytest.mark.parametrize("stickiness", [None, "default"])
def test_default_variant_stickiness_is_the_user_then_the_session(stickiness: str | None) -> None:
    assert stickiness_value(stickiness, EvaluationContext(user_id="u", session_id="s")) == "u"
    assert stickiness_value(stickiness, EvaluationContext(session_id="s")) == "s"
    assert stickiness_value(stickiness, ANONYMOUS) is None  # then the choice is random


def test_current_time_variant_stickiness_is_the_property_of_that_name() -> None:
    # Not one of the fields a variant sticks to in Unleash's engine: read as a property.
    timed = EvaluationContext(current_time="2024-06-01T12:00:00Z")
    assert stickiness_value("currentTime", timed) is None
    property_ = EvaluationContext(properties={"currentTime": "morning"})
    assert stickiness_value("currentTime", property_) == "morning"
    assert stickiness_value("companyId", EvaluationContext(company_id="c")) == "c"
