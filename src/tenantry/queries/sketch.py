"""A bounded-memory streaming histogram for latencies: log-bucketed, DDSketch style.

Why this one: a value x lands in bucket ceil(log_gamma(x)), so every quantile comes
back within 1 % relative error whatever the distribution (HDR-style precision
without choosing a value range up front), recording is one log and one dict
increment (a few hundred nanoseconds in CPython), and two sketches merge exactly by
adding bucket counts, which is what lets every process push its buckets into one
Redis hash with HINCRBY. Values are clamped to [1 µs, 1 h], so a sketch never holds
more than ~1 200 buckets however many statements it sees. The `ddsketch` package
implements the same idea but its store layout is not addressable as hash fields and
its add() is several times slower, which matters on a per-statement hot path.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping

RELATIVE_ACCURACY = 0.01
GAMMA = (1 + RELATIVE_ACCURACY) / (1 - RELATIVE_ACCURACY)
INV_LOG_GAMMA = 1.0 / math.log(GAMMA)
MIN_SECONDS = 1e-6
MAX_SECONDS = 3600.0
MIN_INDEX = math.ceil(math.log(MIN_SECONDS) * INV_LOG_GAMMA)
MAX_INDEX = math.ceil(math.log(MAX_SECONDS) * INV_LOG_GAMMA)


def bucket_index(seconds: float) -> int:
    if seconds <= MIN_SECONDS:
        return MIN_INDEX
    if seconds >= MAX_SECONDS:
        return MAX_INDEX
    return math.ceil(math.log(seconds) * INV_LOG_GAMMA)


def bucket_value(index: int) -> float:
    """The representative value of a bucket: within RELATIVE_ACCURACY of every value in it."""
    return 2.0 * GAMMA**index / (GAMMA + 1.0)


class LatencySketch:
    """Counts per log bucket. `add` is the hot path; everything else is for readers."""

    __slots__ = ("buckets", "count")

    def __init__(self) -> None:
        self.buckets: dict[int, int] = {}
        self.count = 0

    def add(self, seconds: float) -> None:
        index = bucket_index(seconds)
        buckets = self.buckets
        buckets[index] = buckets.get(index, 0) + 1
        self.count += 1

    def merge(self, other: LatencySketch) -> None:
        self.merge_counts(other.buckets.items())

    def merge_counts(self, counts: Iterable[tuple[int, int]]) -> None:
        buckets = self.buckets
        for index, count in counts:
            buckets[index] = buckets.get(index, 0) + count
            self.count += count

    def quantile(self, q: float) -> float | None:
        """The q-quantile in seconds (None when empty), nearest-rank over the buckets."""
        if self.count == 0:
            return None
        rank = q * (self.count - 1)
        seen = 0
        for index in sorted(self.buckets):
            seen += self.buckets[index]
            if seen > rank:
                return bucket_value(index)
        return bucket_value(max(self.buckets))

    @classmethod
    def from_counts(cls, counts: Mapping[int, int]) -> LatencySketch:
        sketch = cls()
        sketch.merge_counts(counts.items())
        return sketch
