"""Stale flags: the flags that have done their job and could leave the code.

Pure functions: given the flags, when each last changed (its newest audit entry),
when each was last evaluated, and since when evaluations have been recorded, the
report names every stale flag with its reasons:

* **unused**: "no change and no evaluation for N days". Its last change and its last
  evaluation are both N days ago or more. Only claimed once evaluations have been
  recorded for N days (`recording_since`): a freshly upgraded install knows nothing of
  the evaluations before it, so it reports none of these until then.
* **fully-on**: "100 % on for N days". The flag is on for everyone (`fully_on`) and
  has not changed for N days.

A flag with no audit entry at all (written to the table by hand, or an audit log
trimmed elsewhere) is taken as unchanged for as long as anyone can tell.

"On for everyone" (`fully_on`), decided strictly, so a flag is never reported as
removable while some caller could still get "off":

* it is enabled and has no parent flags (a dependent flag is only as on as its
  parents), and carries no variants (a variant still decides something, so the code
  still reads the flag);
* a simple flag: rollout 100 and an empty block list. An allow list changes nothing
  at 100 %, so it does not count against it;
* a strategy flag: at least one strategy with no constraints and no segments that is
  either `default`, or a rollout strategy (`flexibleRollout`, `companyRollout`,
  `userRollout`) at rollout 100, and no strategy carrying variants. (Strategies are
  OR-ed: one that matches everyone makes the flag on for everyone. A rollout's
  stickiness aside: at 100 % every caller with the sticky field is in.)
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta
from enum import StrEnum

from tenantry.resilience.flags import Flag, Strategy

ROLLOUTS = frozenset({"flexibleRollout", "companyRollout", "userRollout"})


class StaleCode(StrEnum):
    UNUSED = "unused"
    FULLY_ON = "fully-on"


@dataclass(frozen=True, slots=True)
class StaleReason:
    code: StaleCode
    text: str


@dataclass(frozen=True, slots=True)
class FlagActivity:
    """What the report knows of one flag."""

    key: str
    enabled: bool
    fully_on: bool
    last_changed: datetime | None
    last_evaluated: datetime | None
    yes: int = 0  # evaluations in the report's window (as far as retention keeps them)
    no: int = 0


@dataclass(frozen=True, slots=True)
class StaleFlag:
    activity: FlagActivity
    reasons: tuple[StaleReason, ...]

    @property
    def key(self) -> str:
        return self.activity.key


@dataclass(frozen=True, slots=True)
class StaleReport:
    days: int
    now: datetime
    recording_since: datetime | None
    flags: tuple[FlagActivity, ...]  # every flag, by key
    stale: tuple[StaleFlag, ...]  # the stale ones, by key

    @property
    def usage_known(self) -> bool:
        """Whether evaluations have been recorded for the whole window."""
        return self.recording_since is not None and self.recording_since <= self.window_start

    @property
    def window_start(self) -> datetime:
        return self.now - timedelta(days=self.days)


def _everyone(strategy: Strategy) -> bool:
    if strategy.constraints or strategy.segments:
        return False
    if strategy.name == "default":
        return True
    rollout = strategy.parameters.get("rollout", "")
    return strategy.name in ROLLOUTS and rollout.isdigit() and int(rollout) >= 100


def fully_on(flag: Flag) -> bool:
    """On for everyone (see the module's docstring for the rule)."""
    if not flag.enabled or flag.dependencies or flag.variants:
        return False
    if flag.simple:
        return flag.rollout >= 100 and not flag.block
    if any(strategy.variants for strategy in flag.strategies):
        return False
    return any(_everyone(strategy) for strategy in flag.strategies)


def reasons_for(
    activity: FlagActivity, *, days: int, now: datetime, recording_since: datetime | None
) -> tuple[StaleReason, ...]:
    start = now - timedelta(days=days)
    unchanged = activity.last_changed is None or activity.last_changed <= start
    if not unchanged:
        return ()
    reasons = []
    usage_known = recording_since is not None and recording_since <= start
    not_evaluated = activity.last_evaluated is None or activity.last_evaluated <= start
    if usage_known and not_evaluated:
        reasons.append(
            StaleReason(StaleCode.UNUSED, f"no change and no evaluation for {days} days")
        )
    if activity.fully_on:
        reasons.append(StaleReason(StaleCode.FULLY_ON, f"100 % on for {days} days"))
    return tuple(reasons)


def stale_report(
    flags: Iterable[Flag],
    *,
    last_changes: Mapping[str, datetime],
    last_evaluated: Mapping[str, datetime],
    totals: Mapping[str, tuple[int, int]],
    recording_since: datetime | None,
    days: int,
    now: datetime,
) -> StaleReport:
    """Every flag's activity, and the stale ones with their reasons."""
    if days < 1:
        raise ValueError("days: at least 1")
    activities = []
    stale = []
    for flag in sorted(flags, key=lambda flag: flag.key):
        yes, no = totals.get(flag.key, (0, 0))
        activity = FlagActivity(
            key=flag.key,
            enabled=flag.enabled,
            fully_on=fully_on(flag),
            last_changed=last_changes.get(flag.key),
            last_evaluated=last_evaluated.get(flag.key),
            yes=yes,
            no=no,
        )
        activities.append(activity)
        reasons = reasons_for(activity, days=days, now=now, recording_since=recording_since)
        if reasons:
            stale.append(StaleFlag(activity, reasons))
    return StaleReport(days, now, recording_since, tuple(activities), tuple(stale))
