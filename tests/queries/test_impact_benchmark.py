"""benchmarks/queries/impact.py in its --quick mode: the table it prints is whole, and
what must hold whatever the speed does (never a timing: speed belongs to the benchmark)."""

from __future__ import annotations

from benchmarks.queries.impact import QUICK, benchmark, report


async def test_the_quick_impact_run_keeps_its_invariants() -> None:
    outcome = await benchmark(QUICK, max_indexes=2, verbose=False)
    runs = outcome["runs"]
    assert [r.label for r in runs[:2]] == ["1 bare", "2 cache"]
    for run in runs:
        assert run.errors == 0, run.label
        assert run.reads > 0 and run.writes > 0, run.label
        # every read shape was checked, and invalidation kept every one of them right
        assert set(run.checked) == {"recent", "order", "report", "activity"}, run.label
        assert run.stale_reads == 0, (run.label, run.stale)
        statistics = run.statistics
        assert statistics["calls"] > 0 and statistics["avgMs"] > 0, run.label
        assert statistics["p95Ms"] >= statistics["p50Ms"], run.label
        assert run.slow_per_minute >= 0
    bare, cached = runs[0], runs[1]
    assert (bare.statistics["cacheHitRate"] or 0.0) == 0.0  # every read ran its statement
    assert cached.statistics["cacheHitRate"] > 0
    assert outcome["slow_ms"] == QUICK.slow_ms  # the monitor's own threshold, as set
    printed = report(outcome)
    for row in ("average query time", "p95 query time", "cache hit rate", "slow queries per"):
        assert row in printed
    assert len(runs) == 3 and runs[2].label == "3 cache+indexes"
    assert outcome["advice"]["recommendations"], "the advisor recommended nothing"
    assert outcome["applied"], "no index was applied"
    assert runs[2].statistics["cacheHitRate"] > 0
