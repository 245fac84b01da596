"""Unleash's client specification as test vectors for Tenantry's bucketing.

Each Unleash toggle is translated into a Tenantry flag — the rollout's group id
becomes the flag key (Tenantry uses the key as group id), `userWithId` becomes
the allow list, `default` and empty strategy lists become a 100 % rollout — and
each case is evaluated by Tenantry's own evaluator with the userId as target id.
Cases that need what Tenantry does not have (constraints, segments, session or
custom stickiness, random rollouts, variant overrides, Unleash's rule that a
userId rollout excludes anonymous callers even at 100 %) are not run; the
summary test prints each with its reason and counts them.

The files are Unleash's (Apache-2.0, LICENSE beside them), byte for byte.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from tenantry.resilience.flags import Flag, FlagSnapshot, Reason, Variant

SPEC_DIR = Path(__file__).parent / "unleash-client-specification"


class Unsupported(Exception):
    pass


@dataclass(frozen=True)
class Case:
    file: str
    description: str
    toggle: str
    feature: dict[str, Any] | None
    context: dict[str, Any]
    expected: Any
    kind: str  # "toggle" or "variant"


def load_cases() -> list[Case]:
    cases = []
    for path in sorted(SPEC_DIR.glob("*.json")):
        spec = json.loads(path.read_text())
        features = {feature["name"]: feature for feature in spec["state"]["features"]}
        segments = spec["state"].get("segments")
        for kind, tests in (
            ("toggle", spec.get("tests", [])),
            ("variant", spec.get("variantTests", [])),
        ):
            for test in tests:
                feature = features.get(test["toggleName"])
                if feature is not None and segments:
                    feature = {**feature, "_segments": True}
                cases.append(
                    Case(
                        path.name,
                        test["description"],
                        test["toggleName"],
                        feature,
                        test["context"],
                        test["expectedResult"],
                        kind,
                    )
                )
    return cases


def translate(case: Case) -> tuple[Flag | None, str, str | None, bool]:
    """(flag or None when missing, key to evaluate, target id, depends on the hash)."""
    context = case.context
    user = context.get("userId")
    if case.feature is None:
        return None, case.toggle, user, False
    feature = case.feature
    strategies = feature.get("strategies") or []
    if feature.get("_segments") or any(s.get("segments") for s in strategies):
        raise Unsupported("segments")
    if any(s.get("constraints") for s in strategies):
        raise Unsupported("strategy constraints")

    rollouts: list[tuple[int, str | None]] = []  # (percentage, group id)
    allow: set[str] = set()
    strategy_variants: list[dict[str, Any]] = []
    strategy_group: str | None = None
    for strategy in strategies:
        name, params = strategy["name"], strategy.get("parameters") or {}
        if strategy.get("variants"):
            strategy_variants = strategy["variants"]
            strategy_group = params.get("groupId", case.toggle)
        if name == "default":
            rollouts.append((100, None))
        elif name == "userWithId":
            allow |= {part.strip() for part in params["userIds"].split(",")}
        elif name == "gradualRolloutUserId":
            percentage = int(params["percentage"])
            if user is None and percentage >= 100:
                raise Unsupported("a userId rollout excludes anonymous callers even at 100 %")
            rollouts.append((percentage, params.get("groupId", case.toggle)))
        elif name == "gradualRolloutRandom":
            percentage = int(params["percentage"])
            if percentage not in (0, 100):
                raise Unsupported("random rollout")
            rollouts.append((percentage, None))
        elif name == "flexibleRollout":
            percentage = int(params["rollout"])
            stickiness = params.get("stickiness", "default")
            if stickiness not in ("default", "userId"):
                raise Unsupported(f"{stickiness} stickiness")
            if stickiness == "default" and user is None and 0 < percentage < 100:
                raise Unsupported("session or random stickiness without a userId")
            if stickiness == "userId" and user is None and percentage >= 100:
                raise Unsupported("a userId rollout excludes anonymous callers even at 100 %")
            rollouts.append((percentage, params.get("groupId", case.toggle)))
        else:
            raise Unsupported(f"the {name} strategy")
    if not strategies:
        rollouts.append((100, None))

    partial = [(p, g) for p, g in rollouts if 0 < p < 100]
    if len({g for _, g in partial}) > 1:
        raise Unsupported("several partial rollouts with different group ids")
    percentage = 100 if any(p >= 100 for p, _ in rollouts) else (partial[0][0] if partial else 0)
    rollout_group = partial[0][1] if partial and percentage < 100 else None

    variants_raw = strategy_variants or feature.get("variants") or []
    variant_group = strategy_group if strategy_variants else case.toggle
    if variants_raw:
        if user is None:
            raise Unsupported("variant stickiness without a userId is random")
        for variant in variants_raw:
            if variant.get("stickiness") not in (None, "default", "userId"):
                raise Unsupported(f"variant stickiness {variant['stickiness']}")
            if variant.get("weightType") == "fix":
                raise Unsupported("fixed variant weights")
            for override in variant.get("overrides", []):
                if override["contextName"] == "userId" and user in override["values"]:
                    raise Unsupported("variant overrides")
    if rollout_group and variants_raw and rollout_group != variant_group:
        raise Unsupported("rollout and variants hashed with different group ids")
    key = rollout_group or (variant_group if variants_raw else case.toggle)
    flag = Flag(
        key=key,
        enabled=bool(feature["enabled"]),
        rollout=percentage,
        allow=frozenset(allow),
        variants=tuple(
            Variant(v["name"], int(v["weight"]), v.get("payload")) for v in variants_raw
        ),
    )
    uses_hash = user is not None and (bool(partial) or bool(variants_raw))
    return flag, key, user, uses_hash


def classify() -> tuple[list[Case], list[tuple[Case, str]]]:
    applicable, skipped = [], []
    for case in load_cases():
        try:
            translate(case)
        except Unsupported as reason:
            skipped.append((case, str(reason)))
        else:
            applicable.append(case)
    return applicable, skipped


APPLICABLE, SKIPPED = classify()


@pytest.mark.parametrize(
    "case", APPLICABLE, ids=[f"{c.file}:{c.toggle}:{c.context}" for c in APPLICABLE]
)
def test_case(case: Case) -> None:
    flag, key, target_id, _ = translate(case)
    snapshot = FlagSnapshot.of([flag] if flag else [])
    evaluation = snapshot.evaluate(key, target_id)
    if case.kind == "toggle":
        assert evaluation.enabled is case.expected, case.description
        return
    expected = case.expected
    if flag is None:
        assert evaluation.reason is Reason.FLAG_NOT_FOUND
    if "feature_enabled" in expected:
        assert evaluation.enabled is expected["feature_enabled"], case.description
    if expected["name"] == "disabled":
        assert evaluation.variant is None, case.description
    else:
        assert evaluation.variant is not None, case.description
        assert evaluation.variant.name == expected["name"], case.description
        assert evaluation.variant.payload == expected.get("payload"), case.description


def test_summary_of_applicable_and_skipped_cases() -> None:
    hashed = [case for case in APPLICABLE if translate(case)[3]]
    print(
        f"\nUnleash spec: {len(APPLICABLE) + len(SKIPPED)} cases, {len(APPLICABLE)} run "
        f"({len(hashed)} of them decided by the normalized hash), {len(SKIPPED)} not applicable:"
    )
    for case, reason in SKIPPED:
        print(f"  skipped {case.file} {case.toggle} {case.context}: {reason}")
    assert len(APPLICABLE) >= 40
    assert len(hashed) >= 15
