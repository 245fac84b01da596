"""The CLI: keys create/list/revoke and db upgrade against a real database; its exit."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from tenantry import cli


def run(args: list[str], cwd: Path, database_url: str) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("TENANTRY_")}
    env.update({"DATABASE_URL": database_url, "COLUMNS": "200"})
    return subprocess.run(
        [sys.executable, "-m", "tenantry", *args],
        cwd=cwd,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )


def test_keys_create_list_revoke(tmp_path: Path, database_url: str) -> None:
    assert run(["db", "upgrade"], tmp_path, database_url).returncode == 0

    created = run(["keys", "create", "--company", "acme", "--name", "ci"], tmp_path, database_url)
    assert created.returncode == 0, created.stderr
    plain = created.stdout.strip().splitlines()[-1]
    key = re.fullmatch(r"tnt_([0-9a-f]{12})_([A-Za-z0-9_-]{43})", plain)
    assert key, plain
    key_id, secret = key.groups()  # the secret may itself hold "_"

    listed = run(["keys", "list"], tmp_path, database_url)
    (row,) = [line for line in listed.stdout.splitlines() if key_id in line]
    assert "acme" in row and "ci" in row
    # No part of the secret is shown, not even wrapped or cut by the table: 8 of its
    # random characters would be in the listing by chance about never.
    parts = {secret[i : i + 8] for i in range(len(secret) - 7)}
    assert not [part for part in parts if part in listed.stdout]

    revoked = run(["keys", "revoke", key_id], tmp_path, database_url)
    assert revoked.returncode == 0
    assert "revoked" in revoked.stdout

    unknown = run(["keys", "revoke", "nosuchkey"], tmp_path, database_url)
    assert unknown.returncode == 1
    assert "no key with id" in unknown.stderr


@pytest.mark.parametrize("command", [[], ["serve"], ["db", "upgrade"], ["keys", "create"]])
def test_every_command_has_help(tmp_path: Path, command: list[str]) -> None:
    result = run([*command, "--help"], tmp_path, "sqlite:///unused.db")
    assert result.returncode == 0
    assert "Usage" in result.stdout


def test_bad_company_id_is_refused(tmp_path: Path, database_url: str) -> None:
    result = run(["keys", "create", "--company", "../../etc"], tmp_path, database_url)
    assert result.returncode == 1
    assert "companyId must be" in result.stderr


# The store under the CLI runs its contract on both databases (test_flag_store_contract).
@pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)
def test_flags_import_then_export(tmp_path: Path, database_url: str) -> None:
    document = {
        "version": 2,
        "features": [
            {"name": "eu.checkout", "enabled": True, "strategies": [
                {"name": "flexibleRollout", "parameters": {"rollout": "40", "stickiness": "userId"},
                 "segments": [1]}]},
        ],
        "segments": [{"id": 1, "name": "eu", "constraints": [
            {"contextName": "region", "operator": "IN", "values": ["eu"]}]}],
    }  # fmt: skip
    path = tmp_path / "flags.json"
    path.write_text(json.dumps(document))
    imported = run(["flags", "import", str(path)], tmp_path, database_url)
    assert imported.returncode == 0, imported.stderr
    assert "Imported 1 feature flag(s)." in imported.stdout

    exported = json.loads(run(["flags", "export"], tmp_path, database_url).stdout)
    features = {feature["name"]: feature for feature in exported["features"]}
    assert features["eu.checkout"]["strategies"][0]["parameters"]["rollout"] == "40"
    assert features["eu.checkout"]["strategies"][0]["segments"] == [1]
    assert "core-api" not in features  # the CLI does not seed the defaults: the service does
    region = {"contextName": "region", "operator": "IN", "values": ["eu"]}
    assert exported["segments"] == [
        {"id": 1, "name": "eu", "description": "", "constraints": [
            {**region, "inverted": False, "caseInsensitive": False}]}
    ]  # fmt: skip

    path.write_text('{"version": 2, "features": [{"name": "x", "enabled": "maybe"}]}')
    refused = run(["flags", "import", str(path)], tmp_path, database_url)
    assert refused.returncode == 1
    assert "feature 'x': enabled" in refused.stderr
    path.write_text("{not json")
    assert run(["flags", "import", str(path)], tmp_path, database_url).returncode == 1


# --- exiting after obstore ----------------------------------------------------------------
# Drops obstore futures in flight, then leaves as the CLI does: without the CLI's exit,
# about one run in ten aborts (SIGABRT) in interpreter finalization.
DROPPED_FUTURES = """
import asyncio, os, sys
import obstore
from obstore.store import LocalStore
from tenantry.cli import exit_before_finalizing

store = LocalStore(sys.argv[1])

async def main():
    for n in range(20):
        await obstore.put_async(store, f"f{n}", os.urandom(65536))
    reads = [asyncio.ensure_future(obstore.get_async(store, f"f{n % 20}")) for n in range(200)]
    await asyncio.sleep(0)
    for read in reads[100:]:
        read.cancel()
    for result in await asyncio.gather(*reads[:100]):
        async for _ in result.stream():
            break

asyncio.run(main())
exit_before_finalizing(0)
"""


def test_a_command_that_dropped_obstore_futures_exits_cleanly(tmp_path: Path) -> None:
    runs = 40  # 0.9 ** 40: the race shows in 98.5 % of suites without the fix
    codes: list[int] = []
    for batch in range(runs // 8):
        started = []
        for n in range(8):
            (data := tmp_path / f"{batch}-{n}").mkdir()
            started.append(subprocess.Popen([sys.executable, "-c", DROPPED_FUTURES, str(data)]))
        codes += [process.wait(timeout=60) for process in started]
    assert codes == [0] * runs


def test_the_cli_exit_after_obstore_keeps_the_code_and_runs_atexit(tmp_path: Path) -> None:
    script = (
        "import atexit, sys, obstore\n"
        "atexit.register(print, 'atexit ran')\n"
        "sys.argv = ['tenantry', 'no-such-command']\n"
        "from tenantry.cli import main\n"
        "main()\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", script], cwd=tmp_path, capture_output=True, text=True, timeout=60
    )
    assert done.returncode == 2  # click's usage error
    assert "No such command" in done.stderr
    assert done.stdout == "atexit ran\n"


def test_the_cli_leaves_through_that_exit_once_obstore_is_loaded(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    import obstore  # noqa: F401  (what a command on S3 or R2 loads)

    codes: list[str | int | None] = []
    monkeypatch.setattr(cli, "exit_before_finalizing", codes.append)
    monkeypatch.setattr(sys, "argv", ["tenantry", "--help"])
    cli.main()
    assert codes == [0]
    monkeypatch.delitem(sys.modules, "obstore")  # a command that never loaded it
    with pytest.raises(SystemExit) as normal:
        cli.main()
    assert normal.value.code == 0 and codes == [0]
