"""Figures sampled every few seconds, so the dashboard can chart them over time.

Each sample is kept in a bounded ring (an hour at the default interval); the
sampler runs in the app's lifespan and asks the services, like any page does.
"""

from __future__ import annotations

import itertools
import time
from collections import deque
from dataclasses import dataclass, field


@dataclass
class History:
    interval_seconds: float = 10.0
    capacity: int = 360
    times: deque[float] = field(default_factory=deque)
    values: dict[str, deque[float]] = field(default_factory=dict)

    def record(self, sample: dict[str, float], at: float | None = None) -> None:
        self.times.append(at if at is not None else time.time())
        for name, value in sample.items():
            ring = self.values.setdefault(name, deque([0.0] * (len(self.times) - 1)))
            ring.append(value)
        for name, ring in self.values.items():
            if name not in sample:
                ring.append(ring[-1] if ring else 0.0)
        while len(self.times) > self.capacity:
            self.times.popleft()
            for ring in self.values.values():
                ring.popleft()

    def series(self, *names: str) -> dict[str, list[float]]:
        return {name: list(self.values.get(name, ())) for name in names}

    def rates(self, *names: str) -> dict[str, list[float]]:
        """Per-interval increases of counters (what happened between samples)."""
        result = {}
        for name in names:
            values = list(self.values.get(name, ()))
            result[name] = [max(b - a, 0.0) for a, b in itertools.pairwise(values)]
        return result

    def labels(self) -> list[str]:
        return [time.strftime("%H:%M:%S", time.localtime(t)) for t in self.times]
