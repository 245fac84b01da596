"""Bugs that once went unnoticed: each is planted in a copy of the package, and the tests
named beside it must fail on that copy (tests/test_mutants.py runs them).

A mutant is a list of exact replacements in one file under src/tenantry. When the code
it patches changes, the replacement no longer matches and the suite says so: update the
mutant with the code, so that the guarantee stays pinned.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Mutant:
    name: str
    path: str  # under src/tenantry
    replacements: tuple[tuple[str, str], ...]
    tests: tuple[str, ...]  # pytest arguments: files, node ids, -k expressions


MUTANTS = (
    Mutant(
        "the read cache keeps its claim when the loading caller is cancelled",
        "queries/cache.py",
        (
            (
                """            return await self._load(company, name, loader, ttl, epoch)
        finally:
            if token is not None:""",
                """            return await self._load(company, name, loader, ttl, epoch)
        except Exception:
            if token is not None:
                await self._guard(self.backend.release(company, name, token))
            raise
        else:
            if token is not None:""",
            ),
        ),
        ("tests/queries/test_cache.py", "-k", "strand"),
    ),
    Mutant(
        "merging figures keeps the last series instead of adding",
        "queries/monitor.py",
        (("merged.setdefault(key, Series()).merge(series)", "merged[key] = series"),),
        ("tests/queries/test_monitor.py::test_merge_series_adds",),
    ),
    Mutant(
        "the webhook signature joins timestamp and body with ':' instead of '.'",
        "jobs/types/notification.py",
        (('timestamp.encode() + b"." + body', 'timestamp.encode() + b":" + body'),),
        ("tests/jobs/test_handlers.py", "-k", "tampered"),
    ),
    Mutant(
        "webhook 408 and 429 fail at once instead of being retried",
        "jobs/types/notification.py",
        (("not in (408, 429)", "not in ()"),),
        ("tests/jobs/test_handlers.py", "-k", "408"),
    ),
    Mutant(
        "failed authentications never leave the window (per process)",
        "auth.py",
        (("while failures and failures[0] < cutoff:", "while False:"),),
        ("tests/test_auth_limiter.py", "-k", "leave_the_window and per-process"),
    ),
    Mutant(
        "failed authentications never leave the window (on Redis)",
        "auth.py",
        (
            ("redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', '(' .. (now - window))\n", ""),
            ("redis.call('PEXPIRE', KEYS[1], window)\n", ""),
        ),
        ("tests/test_auth_limiter.py", "-k", "leave_the_window and redis"),
    ),
    Mutant(
        "a dashboard session outlives the admin key it was made with",
        "sessions.py",
        (
            (
                'if not isinstance(data, dict) or data.get("key") != self._fingerprint:',
                "if not isinstance(data, dict):",
            ),
        ),
        ("tests/dashboard/test_session.py", "-k", "rotating and sqlite"),
    ),
    Mutant(
        "finished jobs are kept forever",
        "jobs/queues.py",
        (
            (
                """            "removeOnComplete": {
                "count": self.keep_completed,
                "age": self.keep_completed_seconds,
            },
            "removeOnFail": {"count": self.keep_failed, "age": self.keep_failed_seconds},
""",
                "",
            ),
        ),
        ("tests/jobs/test_service.py", "-k", "trimmed"),
    ),
    Mutant(
        "a company's query export holds every company's figures",
        "jobs/types/company_data.py",
        (("await self.queries.metrics(company_id)", "await self.queries.metrics(None)"),),
        ("tests/jobs/test_export.py", "-k", "statistics and sqlite"),
    ),
    Mutant(
        "retry-failed answers the count but retries nothing",
        "jobs/service.py",
        (
            (
                "return await self.backend.retry_failed(q.check_queue(queue))",
                "return (await self.queue_stats(queue)).failed",
            ),
        ),
        ("tests/jobs/test_routes.py", "-k", "retry_failed and in-process"),
    ),
    Mutant(
        "a job dispatched while it is looked up is reported missing",
        "jobs/backends/bullmq.py",
        (
            (
                """                state = await self._state(queue, job_id)
                if state == "unknown":
                    return None""",
                "                return None",
            ),
        ),
        ("tests/jobs/test_fairness.py", "-k", "dispatched_while"),
    ),
)
