"""`FlagSnapshot` as the request paths call it: `is_enabled`, `evaluate` with a target
id, a context or both, parents, variants and what an `Evaluation` reports.

test_bucketing.py holds the buckets themselves; these pin which id is bucketed, which
flag answers, and what comes back, on the engine alone (no app), so `make mutate`
runs them for flag evaluation.
"""

from __future__ import annotations

from tenantry.resilience.constraints import Constraint
from tenantry.resilience.context import EvaluationContext
from tenantry.resilience.flags import (
    ON_REASONS,
    Dependency,
    Evaluation,
    Flag,
    FlagSnapshot,
    Reason,
    Target,
)
from tenantry.resilience.strategies import Segment, Strategy
from tenantry.resilience.variants import Override, Variant, choose_variant

VARIANTS = (Variant("red", 1), Variant("green", 1), Variant("blue", 1))
COMPANIES = [f"company-{n}" for n in range(60)]


def _company_flag(**changes: object) -> Flag:
    return Flag("checkout", enabled=True, target=Target.COMPANY, **changes)  # type: ignore[arg-type]


def _two_with_other_variants(flag: Flag) -> tuple[str, str]:
    """Two companies that get different variants of `flag` (sticky on the target id)."""
    first = COMPANIES[0]
    chosen = choose_variant(flag.variants, flag.key, EvaluationContext(user_id=first))
    for other in COMPANIES[1:]:
        if choose_variant(flag.variants, flag.key, EvaluationContext(user_id=other)) != chosen:
            return first, other
    raise AssertionError("every company got the same variant")


def test_is_enabled_answers_each_flag_by_its_own_check() -> None:
    snapshot = FlagSnapshot.of(
        [
            Flag("on", enabled=True),
            Flag("off"),
            _company_flag(rollout=0, allow=frozenset({"vip"})),
        ]
    )
    assert snapshot.is_enabled("on") is True
    assert snapshot.is_enabled("off") is False
    assert snapshot.is_enabled("checkout", "vip") is True
    assert snapshot.is_enabled("checkout", "other") is False
    assert snapshot.is_enabled("checkout") is False  # no id: not on the allow list
    assert snapshot.is_enabled("missing") is False  # an unknown flag is off


def test_an_unknown_flag_reports_its_key_and_target() -> None:
    snapshot = FlagSnapshot.of([Flag("on", enabled=True)])
    assert snapshot.evaluate("missing", "acme") == Evaluation(
        "missing", False, Reason.FLAG_NOT_FOUND, None, "acme"
    )


def test_a_simple_flag_reads_its_target_from_the_id_else_from_the_context() -> None:
    snapshot = FlagSnapshot.of([_company_flag(rollout=0, allow=frozenset({"vip"}))])
    from_context = snapshot.evaluate("checkout", context=EvaluationContext(company_id="vip"))
    assert from_context == Evaluation("checkout", True, Reason.ALLOWED, None, "vip")
    # The id given wins over the context's: the gates bucket the id the caller named.
    from_id = snapshot.evaluate("checkout", "other", EvaluationContext(company_id="vip"))
    assert from_id == Evaluation("checkout", False, Reason.ROLLOUT_MISS, None, "other")
    # A user-target flag reads userId, not companyId.
    users = FlagSnapshot.of([Flag("beta", enabled=True, rollout=0, allow=frozenset({"u1"}))])
    context = EvaluationContext(user_id="u1", company_id="c1")
    assert users.evaluate("beta", context=context).target_id == "u1"
    assert users.evaluate("beta", context=context).enabled is True


def test_a_flag_with_variants_buckets_and_reports_the_id_given() -> None:
    flag = _company_flag(allow=frozenset({"vip"}), rollout=0, variants=VARIANTS)
    snapshot = FlagSnapshot.of([flag.changed(allow=frozenset(COMPANIES))])
    first, other = _two_with_other_variants(flag)
    context = EvaluationContext(company_id=other)
    evaluation = snapshot.evaluate("checkout", first, context)
    # The variant, the decision and the reported target all follow the id given.
    assert (evaluation.key, evaluation.enabled, evaluation.target_id) == ("checkout", True, first)
    # Sticky: the variant of that id, every time (a lost id would draw at random).
    expected = choose_variant(VARIANTS, "checkout", EvaluationContext(user_id=first))
    for _ in range(20):
        assert snapshot.evaluate("checkout", first, context).variant == expected
    assert evaluation.variant == snapshot.evaluate("checkout", first).variant
    assert evaluation.variant != snapshot.evaluate("checkout", other).variant
    # Given only in the context, the id is bucketed the same way.
    by_context = snapshot.evaluate("checkout", context=EvaluationContext(company_id=first))
    assert by_context.variant == evaluation.variant
    assert by_context.target_id == first
    # Blocked by id even when the context names an allowed company.
    blocked = FlagSnapshot.of([flag.changed(block=frozenset({first}))])
    assert blocked.evaluate("checkout", first, context).reason is Reason.BLOCKED


def test_a_strategy_flag_sees_the_target_id_as_its_context_field() -> None:
    only_acme = Strategy("default", constraints=(Constraint("companyId", "IN", values=("acme",)),))
    snapshot = FlagSnapshot.of([_company_flag(strategies=(only_acme,))])
    assert snapshot.evaluate("checkout", "acme") == Evaluation(
        "checkout", True, Reason.STRATEGY_MATCH, None, "acme"
    )
    assert snapshot.evaluate("checkout", "globex").reason is Reason.NO_STRATEGY_MATCH
    # A context that names its company keeps it; the id only fills a missing field.
    globex = EvaluationContext(company_id="globex")
    assert snapshot.evaluate("checkout", "acme", globex).reason is Reason.NO_STRATEGY_MATCH
    assert snapshot.evaluate("checkout", "acme", globex).target_id == "acme"
    acme = EvaluationContext(company_id="acme")
    assert snapshot.evaluate("checkout", "globex", acme).enabled is True
    assert snapshot.evaluate("checkout").enabled is False  # no company at all
    assert snapshot.is_enabled("checkout", "acme") is True
    assert snapshot.is_enabled("checkout", "globex") is False


def test_a_child_flag_is_on_only_with_its_parent_and_for_its_own_targets() -> None:
    parent = Flag("parent", enabled=True)
    child = _company_flag(rollout=0, allow=frozenset({"vip"}), dependencies=(Dependency("parent"),))
    on = FlagSnapshot.of([parent, child])
    assert on.is_enabled("checkout", "vip") is True
    assert on.is_enabled("checkout", "other") is False
    off = FlagSnapshot.of([parent.changed(enabled=False), child])
    assert off.is_enabled("checkout", "vip") is False
    assert off.evaluate("checkout", "vip").reason is Reason.DEPENDENCY_NOT_MET


def test_the_snapshot_keeps_its_segments() -> None:
    segment = Segment(7, "acme only", (Constraint("companyId", "IN", values=("acme",)),))
    snapshot = FlagSnapshot.of([Flag("on", enabled=True)], [segment])
    assert snapshot.segments == {7: segment}
    assert snapshot.is_enabled("on") is True


def test_a_change_makes_the_next_version() -> None:
    flag = Flag("checkout", version=4)
    changed = flag.changed(enabled=True, rollout=30)
    assert (changed.version, changed.enabled, changed.rollout) == (5, True, 30)
    assert (flag.version, flag.enabled) == (4, False)  # the original is untouched
    assert changed.changed().version == 6


def test_the_compiled_check_of_the_edge_rollouts_agrees_with_the_gate_walk() -> None:
    """0 %, 1 %, 99 % and 100 %, with and without lists: the fast check and the walk
    (test_bucketing draws flags at random; these are the edges it may not draw)."""
    ids = [None, "vip", "banned", *(f"id-{n}" for n in range(1500))]
    for rollout in (0, 1, 2, 99, 100):
        for allow in (frozenset(), frozenset({"vip"})):
            for block in (frozenset(), frozenset({"banned"})):
                flag = Flag("edge", enabled=True, rollout=rollout, allow=allow, block=block)
                snapshot = FlagSnapshot.of([flag])
                compiled = snapshot.flags["edge"]
                answers = [snapshot.is_enabled("edge", target_id) for target_id in ids]
                walked = [compiled.walk(target_id) in ON_REASONS for target_id in ids]
                assert answers == walked, (rollout, allow, block)
                share = sum(answers[3:]) / len(ids[3:])
                assert abs(share - rollout / 100) < 0.03, (rollout, share)


def test_a_strategys_variants_ignore_overrides_as_unleashs_engine_does() -> None:
    """Unleash's strategy variants have no overrides (Yggdrasil 0.x ignores any given):
    only a feature's variants are pinned by them."""
    pinned_b = Variant("b", 0, overrides=(Override("userId", ("u1",)),))
    strategy = Strategy("default", variants=(Variant("a", 1000), pinned_b))
    snapshot = FlagSnapshot.of([Flag("f", enabled=True, strategies=(strategy,))])
    chosen = snapshot.evaluate("f", context=EvaluationContext(user_id="u1")).variant
    assert chosen is not None and chosen.name == "a"
    # The same variants on the feature: the override pins u1 to b.
    feature = FlagSnapshot.of([Flag("f", enabled=True, variants=(Variant("a", 1000), pinned_b))])
    pinned = feature.evaluate("f", context=EvaluationContext(user_id="u1")).variant
    assert pinned is not None and pinned.name == "b"


def test_a_strategys_variants_stick_to_the_strategys_own_stickiness() -> None:
    """Unleash's engine chooses a strategy's variants by the strategy's `stickiness`,
    whatever stickiness the variants themselves name."""
    variants = (Variant("a", 500, stickiness="userId"), Variant("b", 500, stickiness="userId"))
    strategy = Strategy(
        "flexibleRollout", {"rollout": "100", "stickiness": "sessionId"}, variants=variants
    )
    snapshot = FlagSnapshot.of([Flag("f", enabled=True, strategies=(strategy,))])
    by_session = (
        Variant("a", 500, stickiness="sessionId"),
        Variant("b", 500, stickiness="sessionId"),
    )
    chosen = []
    for session in (f"s{n}" for n in range(40)):
        context = EvaluationContext(user_id="u1", session_id=session)
        variant = snapshot.evaluate("f", context=context).variant
        assert variant is not None
        expected = choose_variant(by_session, "f", context)
        assert expected is not None and variant.name == expected.name
        chosen.append(variant.name)
    assert set(chosen) == {"a", "b"}  # one user, many sessions: the session decides
