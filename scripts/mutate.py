"""Mutation testing of the modules that carry guarantees (`make mutate`; docs/mutation.md).

mutmut changes the code one small way at a time (a mutant: `<` for `<=`, a dropped
`not`, another constant) and runs the tests that reach the changed function; a mutant
the tests still pass on is a change nobody would notice. Each module below runs on its
own, with only its files mutated and only its targeted tests run, so a module takes
minutes rather than the whole suite's time per mutant:

    scripts/mutate.py                 # every module, 2 workers
    scripts/mutate.py auth breaker    # some of them
    scripts/mutate.py --jobs 1 --keep # one worker; keep .mutmut/ to inspect survivors

How the mutated code reaches the tests: mutmut works in its current directory (it
reads pyproject.toml there and writes mutants/ there), so each module gets one of its
own, .mutmut/<module>/, holding links to src/ and tests/ and a copy of pyproject.toml
with that module's [tool.mutmut] table. mutmut copies src/ and tests/ into
.mutmut/<module>/mutants/, mutates the copy, puts mutants/src first on sys.path and
removes src/ (where the editable install points) from it. tests/conftest.py then
checks that the copy is what `import tenantry` found (TENANTRY_MUTANT_SRC). mutmut
itself runs the tests once with every mutant forced to fail and stops if they pass.

Only in-process tests: mutants are switched on inside the test process, so a
`tenantry serve` or worker subprocess would run the unmutated code.
"""

from __future__ import annotations

import argparse
import fnmatch
import json
import os
import shutil
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import cast

ROOT = Path(__file__).resolve().parents[1]
WORK = ROOT / ".mutmut"  # the working copies (.gitignore'd); removed unless --keep
REPORT = ROOT / "docs" / "mutation.json"


@dataclass(frozen=True)
class Module:
    name: str
    files: tuple[str, ...]  # mutated, under src/tenantry/
    tests: tuple[str, ...]  # pytest arguments: the tests that exercise them
    # Mutant-name globs (module.x_function / module.xǁClassǁmethod): caps a module at its
    # guarantee-carrying functions. Empty: every function of the files.
    functions: tuple[str, ...] = ()
    # Mutant-name globs left out of the counts: functions of these files that are not
    # the guarantee (a flag's serialisation beside its evaluation). Untested mutants cost
    # no time, so they are only filtered here.
    ignore: tuple[str, ...] = ()


MODULES = (
    Module(
        "auth",
        ("auth.py",),
        ("tests/test_auth.py", "tests/test_auth_limiter.py"),
    ),
    Module(
        "dashboard session",
        ("sessions.py", "dashboard/auth.py"),
        ("tests/dashboard/test_session.py",),
    ),
    Module(
        "storage keys and signing",
        ("storage/keys.py", "storage/signing.py"),
        ("tests/storage/test_keys.py", "tests/storage/test_signing.py"),
    ),
    Module(
        "EXPLAIN read-only check",
        ("queries/explain.py", "queries/explain_calls.py"),
        ("tests/queries/test_explain.py", "tests/queries/test_explain_attacks.py"),
        # The decisions: the parse-tree allow-list (layer 1) and the verdict on each
        # function PostgreSQL resolved (layer 2). Not the SQL that fetches those functions
        # nor the session setup (every mutant there needs PostgreSQL: too slow for a
        # run), nor the plan reading.
        (
            "tenantry.queries.explain.x_walk*",
            "tenantry.queries.explain.x_function_name*",
            "tenantry.queries.explain.x_check_read_only*",
            "tenantry.queries.explain.x__statement_text*",
            "tenantry.queries.explain.x__check_function_name*",
            "tenantry.queries.explain.x__check_calls*",
            "tenantry.queries.explain_calls.x_refusal*",
            "tenantry.queries.explain_calls.x_scan*",
            "tenantry.queries.explain_calls.x__ints*",
            "tenantry.queries.explain_calls.x__lists*",
        ),
    ),
    Module(
        "quotas and limits",
        # The checks; not plans.py (parsing plan documents), for the run's time.
        ("tenants/quota.py", "tenants/rate.py", "tenants/limits.py"),
        (
            "tests/tenants/test_quotas.py",
            "tests/tenants/test_rate.py",
            "tests/tenants/test_job_limits.py",
            "-k",
            "not s3",  # the quota is the same on every backend; S3 needs its server
        ),
    ),
    Module(
        "circuit breaker",
        ("resilience/breaker.py",),
        ("tests/resilience/test_breaker.py", "tests/storage/test_breaker.py"),
    ),
    Module(
        "flag evaluation",
        (
            "resilience/flags.py",
            "resilience/strategies.py",
            "resilience/constraints.py",
            "resilience/variants.py",
        ),
        # The evaluation tests that need no app: constraints, bucketing, strategies, the
        # snapshot's evaluation, the Unleash specification run on the engine itself, the
        # differential test against Unleash's engine (fixed examples). Not the flag
        # service (an app per test: minutes per mutant) nor the specification through
        # HTTP (the same cases).
        (
            "tests/resilience/test_constraints.py",
            "tests/resilience/test_bucketing.py",
            "tests/resilience/test_evaluation.py",
            "tests/resilience/test_strategies.py",
            "tests/resilience/test_unleash_differential.py",
            "tests/resilience/test_unleash_spec.py::test_every_case_of_every_specification_file_in_the_engine",
        ),
        ignore=(  # reading and writing flag documents (tests/resilience/test_unleash_*.py)
            "*to_dict__mutmut_*",
            "*from_dict__mutmut_*",
            "*unleash_payload__mutmut_*",
            "*same_definition__mutmut_*",
            "*__hash____mutmut_*",
        ),
    ),
    Module(
        "job retention",
        ("jobs/queues.py", "jobs/backends/memory.py"),
        ("tests/jobs/test_service.py", "-k", "retention"),
        (
            "tenantry.jobs.queues.xǁQueueDefinitionǁjob_options*",
            "tenantry.jobs.backends.memory.xǁ*ǁ_apply_retention*",
        ),
    ),
)

# Every module's [tool.mutmut] table has these; see the comments.
BASE_CONFIG = {
    "source_paths": ["src"],
    # No pytest cache in the copies; -x is mutmut's own.
    "pytest_add_cli_args": ["-p", "no:cacheprovider"],
    # Each run starts afresh (mutmut keeps a survivor's verdict until asked to re-test
    # it, so a stale cache would hide what a new test kills).
    "use_git_change_detection": False,
    # Each mutant's tests run in a process forked from one that has only collected the
    # tests. mutmut's default forks from the process that ran the clean tests, and
    # whatever they cached (parse_date's lru_cache) then hides the mutants beneath it.
    "process_isolation": "forkserver",
    # Not mutated: the text of errors and log lines (a raise statement, whole; the error
    # factories refuse() and _exceeded(); a log call; keys.py's `problem` texts). A
    # changed message fails no behaviour test and guarantees nothing; what is mutated is
    # the decision to raise, and what is computed before it (a Retry-After, a limit).
    "do_not_mutate_patterns": [
        r"^\s*raise ",
        r"^\s*return (InvalidInput|QuotaExceeded)\(",
        r"^\s*log\.\w+\(",
        r"^\s*problem = ",
    ],
}
KILLED = ("killed",)
TIMEOUT = ("timeout",)


def slug(name: str) -> str:
    return name.lower().replace(" ", "-").replace("/", "-")


def toml_table(config: dict[str, object]) -> str:
    # JSON strings, lists and booleans are TOML too.
    lines = ["", "[tool.mutmut]"]
    lines += [f"{key} = {json.dumps(value, ensure_ascii=False)}" for key, value in config.items()]
    return "\n".join(lines) + "\n"


def prepare(module: Module) -> Path:
    """A fresh working directory for `module`: links to src/ and tests/, its pyproject."""
    work = WORK / slug(module.name)
    shutil.rmtree(work, ignore_errors=True)
    work.mkdir(parents=True)
    (work / "src").symlink_to(ROOT / "src")
    (work / "tests").symlink_to(ROOT / "tests")
    write_config(module, work)
    return work


def write_config(module: Module, work: Path) -> None:
    config = {
        **BASE_CONFIG,
        "only_mutate": [f"src/tenantry/{file}" for file in module.files],
        "pytest_add_cli_args_test_selection": list(module.tests),
    }
    pyproject = (ROOT / "pyproject.toml").read_text()
    assert "[tool.mutmut]" not in pyproject, "scripts/mutate.py writes [tool.mutmut] itself"
    (work / "pyproject.toml").write_text(pyproject + toml_table(config))


def run(module: Module, jobs: int, survivors: bool) -> dict[str, object]:
    """Mutate `module` and run its tests; with `survivors`, re-test only the mutants that
    survived the last (kept) run, against the tests as they are now."""
    work = WORK / slug(module.name)
    if survivors:
        kept = cast("list[dict[str, str]]", results(module, work)["survivors"])
        names = [survivor["name"] for survivor in kept]
        if not names:
            return {"module": module.name, "seconds": 0, **results(module, work)}
        write_config(module, work)
    else:
        work, names = prepare(module), list(module.functions)
    mutmut = Path(sys.executable).with_name("mutmut")
    env = {**os.environ, "TENANTRY_MUTANT_SRC": str(work / "mutants" / "src")}
    started = time.monotonic()
    with (work / "mutmut.log").open("a" if survivors else "w") as log:
        done = subprocess.run(  # noqa: S603 (our own venv's mutmut, our own arguments)
            [str(mutmut), "run", "--max-children", str(jobs), *names],
            cwd=work,
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
            check=False,
        )
    seconds = time.monotonic() - started
    if done.returncode != 0:
        tail = (work / "mutmut.log").read_text(errors="replace")[-4000:]
        raise SystemExit(f"mutmut failed on {module.name} (exit {done.returncode}):\n{tail}")
    return {"module": module.name, "seconds": round(seconds), **results(module, work)}


def results(module: Module, work: Path) -> dict[str, object]:
    """Counts by verdict, and each survivor with its diff, from mutmut's .meta files."""
    from mutmut.stats import status_by_exit_code

    verdicts: dict[str, str] = {}
    for file in module.files:
        meta = json.loads((work / "mutants" / "src" / "tenantry" / (file + ".meta")).read_text())
        for name, exit_code in meta["exit_code_by_key"].items():
            wanted = not module.functions or any(fnmatch.fnmatch(name, f) for f in module.functions)
            ignored = any(fnmatch.fnmatch(name, f) for f in module.ignore)
            if wanted and not ignored and exit_code is not None:  # None: not checked
                verdicts[name] = status_by_exit_code[exit_code]
    survivors = sorted(
        name for name, verdict in verdicts.items() if verdict not in KILLED + TIMEOUT
    )
    killed = sum(verdict in KILLED for verdict in verdicts.values())
    timeout = sum(verdict in TIMEOUT for verdict in verdicts.values())
    return {
        "mutants": len(verdicts),
        "killed": killed,
        "survived": len(survivors),
        "timeout": timeout,
        # Detected: killed, or made the tests hang (mutmut's own score counts both).
        "kill_rate": round(100 * (killed + timeout) / len(verdicts), 1) if verdicts else None,
        # `mutmut show NAME` in .mutmut/<module>/ (kept with --keep) prints one's change.
        "survivors": [{"name": n, "verdict": verdicts[n]} for n in survivors],
    }


def table(rows: list[dict[str, object]]) -> str:
    lines = [
        "| module | mutants | killed | survived | timeout | kill rate |",
        "| --- | ---: | ---: | ---: | ---: | ---: |",
    ]
    for row in rows:
        lines.append(
            f"| {row['module']} | {row['mutants']} | {row['killed']} | {row['survived']} "
            f"| {row['timeout']} | {row['kill_rate']} % |"
        )
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("modules", nargs="*", help="module names (default: all); see MODULES")
    parser.add_argument("--jobs", type=int, default=2, help="mutants tested at once")
    parser.add_argument("--keep", action="store_true", help="keep .mutmut/ (mutmut show ...)")
    parser.add_argument(
        "--survivors",
        action="store_true",
        help="re-test only the survivors of the last --keep run (after adding tests)",
    )
    parser.add_argument(
        "--report", action="store_true", help="only read the results of the last --keep run"
    )
    args = parser.parse_args()
    chosen = [
        m
        for m in MODULES
        if not args.modules or m.name in args.modules or slug(m.name) in args.modules
    ]
    if not chosen:
        parser.error(f"no such module; the modules: {', '.join(slug(m.name) for m in MODULES)}")
    rows = []
    try:
        for module in chosen:
            print(f"{module.name}: mutating {', '.join(module.files)} …", flush=True)
            if args.report:
                row = {
                    "module": module.name,
                    "seconds": 0,
                    **results(module, WORK / slug(module.name)),
                }
            else:
                row = run(module, args.jobs, args.survivors)
            print(f"    {row['mutants']} mutants, {row['survived']} survived, {row['seconds']} s")
            for survivor in row["survivors"]:  # type: ignore[attr-defined]
                print(f"    survived: {survivor['name']}")
            rows.append(row)
    finally:
        if not args.keep and not args.report:
            shutil.rmtree(WORK, ignore_errors=True)
    print()
    print(table(rows))
    record(rows)
    print(f"\nwritten to {REPORT.relative_to(ROOT)}")


def record(rows: list[dict[str, object]]) -> None:
    """The run's modules replace their rows in docs/mutation.json; the others stay as
    their last run left them (a module runs for minutes, all of them for an hour)."""
    recorded = json.loads(REPORT.read_text()) if REPORT.exists() else []
    by_name = {row["module"]: row for row in recorded} | {row["module"]: row for row in rows}
    ordered = [by_name[m.name] for m in MODULES if m.name in by_name]
    REPORT.write_text(json.dumps(ordered, indent=2, ensure_ascii=False) + "\n")


if __name__ == "__main__":
    main()
