"""The CLI: keys create/list/revoke and db upgrade against a real database."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest


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
    assert plain.startswith("tnt_")
    key_id = plain.split("_")[1]

    listed = run(["keys", "list"], tmp_path, database_url)
    assert key_id in listed.stdout and "acme" in listed.stdout
    assert plain.rsplit("_", 1)[-1] not in listed.stdout

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
