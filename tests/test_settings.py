"""Configuration: defaults, derived URLs, and invalid values that stop start-up."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from tenantry.settings import ConfigError, Settings, async_database_url, load_settings


@pytest.fixture
def clean_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.chdir(tmp_path)
    for name in list(os.environ):
        if name.startswith(("TENANTRY_", "REDIS_", "AWS_", "CLOUDFLARE_", "STORAGE_")) or name in (
            "DATABASE_URL",
            "UPLOAD_DIR",
        ):
            monkeypatch.delenv(name)


def test_embedded_defaults(clean_env: None) -> None:
    settings = load_settings()
    assert settings.effective_database_url.startswith("sqlite+aiosqlite:///")
    assert settings.effective_database_url.endswith("data/tenantry.db")
    assert settings.effective_redis_url is None
    assert settings.storage_provider == "local"
    assert settings.upload_dir == Path("uploads")


def test_environment_switches_to_postgres_and_redis(
    clean_env: None, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("DATABASE_URL", "postgres://u@db:5432/app")
    monkeypatch.setenv("REDIS_HOST", "cache")
    monkeypatch.setenv("REDIS_PORT", "6380")
    monkeypatch.setenv("REDIS_PASSWORD", "p@ss word")
    settings = load_settings()
    assert settings.effective_database_url == "postgresql+psycopg://u@db:5432/app"
    assert settings.effective_redis_url == "redis://:p%40ss%20word@cache:6380/0"
    assert not settings.uses_embedded_database


def test_redis_url_wins_over_host(clean_env: None, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("REDIS_URL", "redis://primary:6379/2")
    monkeypatch.setenv("REDIS_HOST", "ignored")
    assert load_settings().effective_redis_url == "redis://primary:6379/2"


def test_a_redis_cluster_by_url_or_by_its_nodes(
    clean_env: None, monkeypatch: pytest.MonkeyPatch
) -> None:
    url = "redis+cluster://:secret@10.0.0.1:7000,10.0.0.2:7001/0"
    monkeypatch.setenv("REDIS_URL", url)
    assert load_settings().effective_redis_url == url
    monkeypatch.setenv("REDIS_CLUSTER_NODES", "10.0.0.2:7001, 10.0.0.1:7000")  # the same nodes
    assert load_settings().effective_redis_url == url
    monkeypatch.delenv("REDIS_URL")
    monkeypatch.setenv("REDIS_CLUSTER_NODES", "10.0.0.1:7000,[::1]:7001")
    monkeypatch.setenv("REDIS_PASSWORD", "p@ss")
    assert load_settings().effective_redis_url == "redis+cluster://:p%40ss@10.0.0.1:7000,[::1]:7001"


@pytest.mark.parametrize(
    ("env", "says"),
    [
        ({"REDIS_URL": "redis+cluster://a:7000/2"}, "REDIS_URL: Redis Cluster has database 0"),
        ({"REDIS_URL": "redis+cluster://a:7000,b"}, "REDIS_URL: 'b' is not a host:port"),
        ({"REDIS_URL": "redis+cluster://a:7000?timeout=1"}, "REDIS_URL: a cluster URL takes no"),
        ({"REDIS_URL": "http://cache:6379"}, "REDIS_URL: a Redis URL starts with"),
        ({"REDIS_CLUSTER_NODES": "a:7000,b:99999"}, "REDIS_CLUSTER_NODES: 'b:99999' is not"),
        ({"REDIS_CLUSTER_NODES": "a:7000", "REDIS_HOST": "cache"}, "and REDIS_HOST are both"),
        (
            {"REDIS_CLUSTER_NODES": "a:7000", "REDIS_URL": "redis://cache:6379/0"},
            "REDIS_URL names one server",
        ),
        (
            {"REDIS_CLUSTER_NODES": "a:7000", "REDIS_URL": "redis+cluster://b:7000"},
            "name different cluster nodes",
        ),
    ],
)
def test_a_wrong_redis_mix_is_one_clear_error(
    clean_env: None, monkeypatch: pytest.MonkeyPatch, env: dict[str, str], says: str
) -> None:
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    with pytest.raises(ConfigError) as caught:
        load_settings()
    assert says in str(caught.value)
    assert ";" not in str(caught.value)  # one error, not one per variable


def test_dotenv_file_is_read(clean_env: None, tmp_path: Path) -> None:
    (tmp_path / ".env").write_text("STORAGE_PROVIDER=local\nUPLOAD_DIR=/srv/files\n")
    assert load_settings().upload_dir == Path("/srv/files")


@pytest.mark.parametrize(
    ("env", "variable", "allowed"),
    [
        ({"STORAGE_PROVIDER": "ftp"}, "STORAGE_PROVIDER", "'local', 's3' or 'cloudflare-r2'"),
        ({"REDIS_PORT": "abc"}, "REDIS_PORT", "valid integer"),
        ({"REDIS_PORT": "70000"}, "REDIS_PORT", "less than or equal to 65535"),
        ({"ENABLE_JOB_QUEUES": "maybe"}, "ENABLE_JOB_QUEUES", "valid boolean"),
        (
            {"STORAGE_PROVIDER": "s3", "AWS_S3_BUCKET": "b"},
            "AWS_ACCESS_KEY_ID",
            "STORAGE_PROVIDER=s3 needs",
        ),
        (
            {"STORAGE_PROVIDER": "cloudflare-r2", "CLOUDFLARE_ACCOUNT_ID": "a"},
            "CLOUDFLARE_R2_BUCKET",
            "STORAGE_PROVIDER=cloudflare-r2 needs",
        ),
    ],
)
def test_invalid_configuration_names_the_variable(
    clean_env: None,
    monkeypatch: pytest.MonkeyPatch,
    env: dict[str, str],
    variable: str,
    allowed: str,
) -> None:
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    with pytest.raises(ConfigError) as caught:
        load_settings()
    assert variable in str(caught.value)
    assert allowed in str(caught.value)


@pytest.mark.parametrize(
    ("env", "variable"),
    [
        ({"STORAGE_PROVIDER": "ftp"}, "STORAGE_PROVIDER"),
        ({"REDIS_PORT": "abc"}, "REDIS_PORT"),
        ({"STORAGE_PROVIDER": "s3"}, "AWS_S3_BUCKET"),
        ({"REDIS_CLUSTER_NODES": "a:7000", "REDIS_HOST": "cache"}, "REDIS_CLUSTER_NODES"),
    ],
)
def test_serve_refuses_to_start_with_one_clear_line(
    tmp_path: Path, env: dict[str, str], variable: str
) -> None:
    clean = {k: v for k, v in os.environ.items() if not k.startswith(("STORAGE_", "REDIS_"))}
    result = subprocess.run(
        [sys.executable, "-m", "tenantry", "serve", "--port", "1"],
        env={**clean, **env, "COLUMNS": "200"},
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 2
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("Configuration error:")
    assert variable in lines[0]


def test_async_database_url_maps_common_forms() -> None:
    assert async_database_url("sqlite:///x.db") == "sqlite+aiosqlite:///x.db"
    assert async_database_url("postgresql://h/d") == "postgresql+psycopg://h/d"
    assert async_database_url("postgresql+psycopg://h/d") == "postgresql+psycopg://h/d"


def test_every_variable_is_documented_in_an_example_file() -> None:
    root = Path(__file__).resolve().parents[1]
    documented = "".join(
        (root / name).read_text()
        for name in (".env.example", ".env.storage.example", ".env.queues.example")
    )
    for field in Settings.model_fields.values():
        alias = field.validation_alias
        assert isinstance(alias, str)
        assert f"{alias}=" in documented, f"{alias} is missing from the .env examples"
