"""Rollouts: accurate, sticky, independent; variants by weight; allow/block precedence."""

from __future__ import annotations

import random
from collections import Counter
from dataclasses import replace

import pytest

from tenantry.resilience.context import EMPTY_CONTEXT, EvaluationContext
from tenantry.resilience.flags import (
    DEFAULT_FLAGS,
    ON_REASONS,
    CompiledFlag,
    Flag,
    FlagSnapshot,
    Reason,
    Target,
    Variant,
    choose_variant,
    normalized_hash,
)
from tenantry.resilience.unleash import simple_strategies

IDS = [f"company-{n}" for n in range(100_000)]


def enabled_ids(flag: Flag) -> set[str]:
    check = CompiledFlag.of(flag).check
    return {target_id for target_id in IDS if check(target_id)}


@pytest.mark.parametrize("percentage", [1, 5, 10, 25, 50, 90])
def test_rollout_share_is_within_one_percent(percentage: int) -> None:
    flag = Flag("vision-analysis", enabled=True, target=Target.COMPANY, rollout=percentage)
    share = len(enabled_ids(flag)) / len(IDS) * 100
    assert abs(share - percentage) <= 1, share


def test_raising_the_rollout_keeps_everyone_already_in() -> None:
    flag = Flag("vision-analysis", enabled=True, rollout=10)
    at_10 = enabled_ids(flag)
    at_20 = enabled_ids(flag.changed(rollout=20))
    at_50 = enabled_ids(flag.changed(rollout=50))
    assert at_10 < at_20 < at_50
    assert abs(len(at_20) / len(IDS) * 100 - 20) <= 1
    assert enabled_ids(flag.changed(rollout=10)) == at_10  # and lowering it again is exact


def test_rollouts_of_different_flags_are_independent() -> None:
    first = enabled_ids(Flag("feature-a", enabled=True, rollout=50))
    second = enabled_ids(Flag("feature-b", enabled=True, rollout=50))
    both = len(first & second) / len(IDS) * 100
    assert abs(both - 25) <= 1, both  # independent halves overlap on a quarter


def test_bucketing_is_deterministic_across_snapshots() -> None:
    flag = Flag("mobile-app", enabled=True, target=Target.USER, rollout=5)
    one = FlagSnapshot.of([flag])
    two = FlagSnapshot.of([Flag.from_dict(flag.to_dict())])
    sample = IDS[:5000]
    assert [one.is_enabled("mobile-app", i) for i in sample] == [
        two.is_enabled("mobile-app", i) for i in sample
    ]


def test_normalized_hash_matches_unleash_reference_values() -> None:
    # Values from Unleash's client implementations' own tests.
    assert normalized_hash("123", "gr1") == 73
    assert normalized_hash("999", "groupX") == 25


def test_variant_weights_are_honoured_within_one_percent() -> None:
    variants = (Variant("control", 50), Variant("blue", 30), Variant("green", 20))
    counts = Counter(
        variant.name
        for target_id in IDS
        if (
            variant := choose_variant(
                variants, "checkout-test", EvaluationContext(user_id=target_id)
            )
        )
        is not None
    )
    assert sum(counts.values()) == len(IDS)
    for variant in variants:
        share = counts[variant.name] / len(IDS) * 100
        assert abs(share - variant.weight) <= 1, (variant.name, share)


def test_variant_is_sticky_and_zero_weight_never_chosen() -> None:
    variants = (Variant("a", 1), Variant("never", 0), Variant("b", 1))
    picks = {choose_variant(variants, "exp", EvaluationContext(user_id=i)) for i in IDS[:2000]}
    assert {v.name for v in picks if v} == {"a", "b"}
    assert all(
        choose_variant(variants, "exp", EvaluationContext(user_id=i))
        == choose_variant(variants, "exp", EvaluationContext(user_id=i))
        for i in IDS[:200]
    )


def test_evaluation_order_and_reasons() -> None:
    flag = Flag(
        "f",
        enabled=True,
        target=Target.COMPANY,
        rollout=0,
        allow=frozenset({"vip", "both"}),
        block=frozenset({"banned", "both"}),
    )
    snapshot = FlagSnapshot.of([flag])
    assert snapshot.evaluate("f", "vip").reason is Reason.ALLOWED
    assert snapshot.evaluate("f", "both").reason is Reason.BLOCKED  # block wins over allow
    assert snapshot.evaluate("f", "banned").reason is Reason.BLOCKED
    assert snapshot.evaluate("f", "someone").reason is Reason.ROLLOUT_MISS
    assert snapshot.evaluate("missing", "vip").reason is Reason.FLAG_NOT_FOUND

    full = FlagSnapshot.of([flag.changed(rollout=100)])
    assert full.evaluate("f", "someone").reason is Reason.ROLLOUT_MATCH
    assert full.evaluate("f", "banned").enabled is False  # blocked even at 100 %

    off = FlagSnapshot.of([flag.changed(enabled=False)])
    assert off.evaluate("f", "vip").reason is Reason.DISABLED  # disabled beats the allow list
    assert off.is_enabled("f", "vip") is False


def test_anonymous_callers_get_only_full_rollouts() -> None:
    snapshot = FlagSnapshot.of([Flag("all", enabled=True), Flag("some", enabled=True, rollout=99)])
    assert snapshot.evaluate("all").enabled is True
    assert snapshot.evaluate("some").reason is Reason.ROLLOUT_MISS


def test_variants_only_when_enabled() -> None:
    flag = Flag("ab", enabled=True, rollout=50, variants=(Variant("x", 1, {"v": 1}),))
    snapshot = FlagSnapshot.of([flag])
    results = [snapshot.evaluate("ab", i) for i in IDS[:2000]]
    assert {r.variant.name for r in results if r.enabled and r.variant} == {"x"}
    assert all(r.variant is None for r in results if not r.enabled)


def test_compiled_check_agrees_with_the_gate_walk() -> None:
    rng = random.Random(7)
    population = [f"id-{n}" for n in range(300)]
    for n in range(300):
        flag = Flag(
            f"flag-{n}",
            enabled=rng.random() < 0.8,
            rollout=rng.choice([0, 1, 10, 33, 50, 99, 100]),
            allow=frozenset(rng.sample(population, rng.randint(0, 5))),
            block=frozenset(rng.sample(population, rng.randint(0, 5))),
        )
        compiled = CompiledFlag.of(flag)
        # The same flag in its exported form: the Unleash strategies `export` writes.
        as_strategies = CompiledFlag.of(replace(flag, strategies=simple_strategies(flag)))
        for target_id in [None, *rng.sample(population, 40)]:
            walked = compiled.decide(EMPTY_CONTEXT, target_id) in ON_REASONS
            context = EvaluationContext(user_id=target_id)
            exported = as_strategies.decide(context, None) in ON_REASONS
            assert compiled.check(target_id) == walked == exported, (flag, target_id)


def test_the_ten_default_flags() -> None:
    by_key = {flag.key: flag for flag in DEFAULT_FLAGS}
    assert sorted(by_key) == sorted(
        [
            "core-api",
            "authentication",
            "ai-recommendations",
            "advanced-analytics",
            "bulk-operations",
            "vision-analysis",
            "mobile-app",
            "use-read-replicas",
            "enable-caching",
            "maintenance-mode",
        ]
    )
    assert by_key["vision-analysis"].rollout == 10
    assert (by_key["mobile-app"].rollout, by_key["mobile-app"].target) == (5, Target.USER)
    assert by_key["maintenance-mode"].enabled is False
