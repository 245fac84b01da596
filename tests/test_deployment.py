"""The deployment examples (deploy/, docs/deployment.md) are valid and say what runs.

The Compose file is checked by Compose itself (`docker compose config`, or the
`docker-compose` scripts/services.sh installs), the Kubernetes manifests against
Kubernetes' own API schemas (kubernetes-validate, offline); then both are read for
what the deployment guide promises: serve and worker from one image, readiness on
/ready, a grace period longer than the drain, and settings that Tenantry accepts.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
from pathlib import Path
from typing import Any

import kubernetes_validate
import pytest
import yaml

from tenantry.settings import Settings, load_settings

ROOT = Path(__file__).resolve().parents[1]
COMPOSE = ROOT / "deploy" / "docker-compose.yml"
KUBERNETES = ROOT / "deploy" / "kubernetes" / "tenantry.yaml"
GUIDE = ROOT / "docs" / "deployment.md"
SETTINGS = {str(field.validation_alias) for field in Settings.model_fields.values()}
# What the Compose file asks its user for (`${NAME:?...}`), with stand-in values.
COMPOSE_SECRETS = {
    "POSTGRES_PASSWORD": "pg-secret",
    "TENANTRY_ADMIN_TOKEN": "admin-token-0123456789abcdef0123",
    "TENANTRY_SECRET_KEY": "secret-key-0123456789abcdef012345",
    "AWS_ACCESS_KEY_ID": "access-key",
    "AWS_SECRET_ACCESS_KEY": "secret-access-key",
}
# Names the guide and the examples use that are not Tenantry settings.
OTHER_VARIABLES = {"POSTGRES_PASSWORD", "POSTGRES_USER", "POSTGRES_DB", "PGPASSWORD", "PGDATA"}
OTHER_VARIABLES |= {"MINIO_ROOT_USER", "MINIO_ROOT_PASSWORD", "MC_HOST_s3"}


def compose_command() -> list[str]:
    if shutil.which("docker") and _runs(["docker", "compose", "version"]):
        return ["docker", "compose"]
    if shutil.which("docker-compose"):
        return ["docker-compose"]
    raise RuntimeError("neither `docker compose` nor `docker-compose`: run scripts/services.sh")


def _runs(command: list[str]) -> bool:
    return subprocess.run(command, capture_output=True).returncode == 0


def compose_config(env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [*compose_command(), "-f", str(COMPOSE), "config"],
        capture_output=True,
        text=True,
        env={"PATH": os.environ["PATH"], **env},
        cwd=COMPOSE.parent,
        timeout=60,
    )


@pytest.fixture(scope="module")
def compose() -> dict[str, Any]:
    result = compose_config(COMPOSE_SECRETS)
    assert result.returncode == 0, result.stderr
    config: dict[str, Any] = yaml.safe_load(result.stdout)
    return config


@pytest.fixture(scope="module")
def manifests() -> list[dict[str, Any]]:
    return [doc for doc in yaml.safe_load_all(KUBERNETES.read_text()) if doc]


def tenantry_settings(env: dict[str, Any]) -> Settings:
    """The settings a container with `env` would start with (secrets stood in)."""
    unknown = set(env) - SETTINGS - OTHER_VARIABLES
    assert not unknown, f"not Tenantry settings: {unknown}"
    by_field = {
        field: str(env[str(info.validation_alias)])
        for field, info in Settings.model_fields.items()
        if str(info.validation_alias) in env
    }
    return load_settings(**by_field)


def command_of(container: dict[str, Any]) -> list[str]:
    command = container["command"]
    return command.split() if isinstance(command, str) else list(command)


def test_compose_is_valid_and_refuses_missing_secrets() -> None:
    result = compose_config({k: v for k, v in COMPOSE_SECRETS.items() if k != "POSTGRES_PASSWORD"})
    assert result.returncode != 0
    assert "POSTGRES_PASSWORD" in result.stderr


def test_compose_runs_serve_and_worker_from_one_image_with_valid_settings(
    compose: dict[str, Any],
) -> None:
    services = compose["services"]
    api, worker, migrate = services["api"], services["worker"], services["migrate"]
    assert command_of(api)[:2] == ["tenantry", "serve"]
    assert command_of(worker)[:2] == ["tenantry", "worker"]
    assert command_of(migrate) == ["tenantry", "db", "upgrade"]
    assert api["image"] == worker["image"] == migrate["image"]
    assert "/ready" in " ".join(api["healthcheck"]["test"])
    for service in (api, worker):
        settings = tenantry_settings(service["environment"])
        assert not settings.auto_migrate  # the migrate service does it, once
        assert settings.replica_urls and settings.effective_redis_url
        grace = _seconds(service["stop_grace_period"])
        assert grace > settings.shutdown_timeout_seconds
        assert grace > settings.job_shutdown_timeout_seconds
        assert service["depends_on"]["migrate"]["condition"] == "service_completed_successfully"
    # An evicted BullMQ key is a lost job: Redis must never evict.
    assert "noeviction" in command_of(services["redis"])


def _seconds(duration: str | int) -> float:
    """Compose durations as this file writes them ("40s"), or plain seconds."""
    if isinstance(duration, int):
        return float(duration)
    match = re.fullmatch(r"(\d+)s", duration)
    assert match, f"unexpected duration {duration!r}"
    return float(match.group(1))


def test_kubernetes_manifests_match_the_api_schemas(manifests: list[dict[str, Any]]) -> None:
    kinds = sorted(doc["kind"] for doc in manifests)
    assert kinds.count("Deployment") == 2 and "Service" in kinds and "Job" in kinds
    for doc in manifests:
        kubernetes_validate.validate(doc, "1.30.0", strict=True)


def test_kubernetes_schema_check_can_fail(manifests: list[dict[str, Any]]) -> None:
    deployment = next(doc for doc in manifests if doc["kind"] == "Deployment")
    broken = {**deployment, "spec": {**deployment["spec"], "replicas": "three"}}
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(broken, "1.30.0", strict=True)


def _deployment(manifests: list[dict[str, Any]], name: str) -> dict[str, Any]:
    return next(d for d in manifests if d["kind"] == "Deployment" and d["metadata"]["name"] == name)


def _container_env(manifests: list[dict[str, Any]], container: dict[str, Any]) -> dict[str, str]:
    env: dict[str, str] = dict(COMPOSE_SECRETS)
    env["DATABASE_URL"] = "postgresql://tenantry:secret@primary:5432/tenantry"
    env["DATABASE_REPLICA_URLS"] = "postgresql://tenantry:secret@replica:5432/tenantry"
    for source in container.get("envFrom", []):
        if "configMapRef" in source:
            name = source["configMapRef"]["name"]
            config = next(
                d for d in manifests if d["kind"] == "ConfigMap" and d["metadata"]["name"] == name
            )
            env.update(config["data"])
    return env


def test_kubernetes_pods_are_ready_on_ready_and_drain_within_their_grace(
    manifests: list[dict[str, Any]],
) -> None:
    api = _deployment(manifests, "tenantry-api")["spec"]["template"]["spec"]
    (serve,) = api["containers"]
    assert command_of(serve)[:2] == ["tenantry", "serve"]
    assert serve["readinessProbe"]["httpGet"]["path"] == "/ready"
    assert serve["livenessProbe"]["httpGet"]["path"] == "/health"
    settings = tenantry_settings(_container_env(manifests, serve))
    assert not settings.auto_migrate
    pre_stop = float(serve["lifecycle"]["preStop"]["exec"]["command"][-1])
    assert api["terminationGracePeriodSeconds"] > pre_stop + settings.shutdown_timeout_seconds

    worker = _deployment(manifests, "tenantry-worker")["spec"]["template"]["spec"]
    (work,) = worker["containers"]
    assert command_of(work)[:2] == ["tenantry", "worker"]
    assert work["image"] == serve["image"]
    settings = tenantry_settings(_container_env(manifests, work))
    assert worker["terminationGracePeriodSeconds"] > settings.job_shutdown_timeout_seconds
    # Jobs run in the worker pods only, never in the API pods.
    assert tenantry_settings(_container_env(manifests, serve)).job_workers_in_app is False


def test_the_guide_names_only_real_settings() -> None:
    text = GUIDE.read_text()
    named = set(re.findall(r"`([A-Z][A-Z0-9_]{3,})(?:=[^`]*)?`", text))
    unknown = named - SETTINGS - OTHER_VARIABLES
    assert not unknown, f"docs/deployment.md names settings Tenantry does not have: {unknown}"
    for layout in ("1,000", "10,000", "100,000"):
        assert f"{layout} companies" in text
    assert "deploy/docker-compose.yml" in text and "deploy/kubernetes/tenantry.yaml" in text
