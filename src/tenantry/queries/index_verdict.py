"""Whether an applied index earned its keep: the monitor's real latencies, before and after.

The rule. Over the statement shapes the recommendation said the index helps, take the
calls made since it was built, and price them twice: at what they cost (their total
time since) and at what the same calls cost per call before (each shape's mean up to
the build, times its calls since). Pricing the recent calls both ways keeps a change
in the mix of statements from passing for a change in speed.

- fewer than `min_calls` calls since (over those shapes): wait, and look again later;
- after <= before x (1 - `min_improvement`): keep;
- otherwise (no faster, or not by enough to pay for the index's writes and space): drop.

Pure: figures in, a verdict out; `index_apply` does the reading and the dropping.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Literal

from tenantry.queries.sketch import LatencySketch

Decision = Literal["keep", "drop", "wait"]


@dataclass(frozen=True, slots=True)
class ShapeFigures:
    """One shape's figures, summed over companies: calls, time and its latency buckets."""

    calls: int
    total_ms: float
    buckets: Mapping[int, int] = field(default_factory=dict)

    @property
    def mean_ms(self) -> float | None:
        return self.total_ms / self.calls if self.calls else None

    @property
    def p95_ms(self) -> float | None:
        seconds = LatencySketch.from_counts(self.buckets).quantile(0.95)
        return None if seconds is None else seconds * 1000

    def since(self, earlier: ShapeFigures) -> ShapeFigures:
        """What was added after `earlier`; everything when the figures were reset since."""
        if self.calls < earlier.calls:
            return self
        buckets = {
            i: n - earlier.buckets.get(i, 0)
            for i, n in self.buckets.items()
            if n > earlier.buckets.get(i, 0)
        }
        return ShapeFigures(self.calls - earlier.calls, self.total_ms - earlier.total_ms, buckets)

    def as_json(self, *, buckets: bool) -> dict[str, Any]:
        mean, p95 = self.mean_ms, self.p95_ms
        shown: dict[str, Any] = {
            "calls": self.calls,
            "totalMs": round(self.total_ms, 3),
            "meanMs": None if mean is None else round(mean, 3),
            "p95Ms": None if p95 is None else round(p95, 3),
        }
        if buckets:  # kept with the "before" so the "after" can be subtracted from it
            shown["buckets"] = {str(i): n for i, n in self.buckets.items()}
        return shown

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> ShapeFigures:
        buckets = {int(i): int(n) for i, n in (data.get("buckets") or {}).items()}
        return cls(int(data["calls"]), float(data["totalMs"]), buckets)


@dataclass(frozen=True, slots=True)
class Verdict:
    decision: Decision
    reason: str
    calls_after: int
    before_ms: float | None = None  # the calls since, priced at the means before
    after_ms: float | None = None  # what they cost
    ratio: float | None = None  # after / before


def judge(
    before: Mapping[str, ShapeFigures],
    after: Mapping[str, ShapeFigures],
    *,
    min_calls: int,
    min_improvement: float,
) -> Verdict:
    """`before`: each helped shape's figures up to the build; `after`: since it."""
    compared = [
        (before[shape], figures)
        for shape, figures in after.items()
        if shape in before and before[shape].calls and figures.calls
    ]
    calls = sum(a.calls for _, a in compared)
    if calls < max(min_calls, 1):
        return Verdict("wait", f"{calls} of the {min_calls} calls needed since the build", calls)
    priced_before = sum(a.calls * (b.total_ms / b.calls) for b, a in compared)
    spent = sum(a.total_ms for _, a in compared)
    ratio = spent / priced_before if priced_before > 0 else 1.0
    numbers = (
        f"{calls} calls took {spent:.1f} ms; at the means before they would have taken "
        f"{priced_before:.1f} ms ({ratio:.0%})"
    )
    if ratio <= 1 - min_improvement:
        return Verdict("keep", f"faster: {numbers}", calls, priced_before, spent, ratio)
    reason = f"not faster by {min_improvement:.0%}: {numbers}"
    return Verdict("drop", reason, calls, priced_before, spent, ratio)
