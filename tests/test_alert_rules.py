"""The Prometheus alert rules and the Grafana dashboard (deploy/): promtool checks the
rules and runs their unit tests, every expression parses, and every metric they name
is in Tenantry's real /metrics output, so neither can drift from the code."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml
from httpx import AsyncClient
from prometheus_client.parser import text_string_to_metric_families

from tests.conftest import ADMIN

ROOT = Path(__file__).resolve().parents[1]
RULES = ROOT / "deploy" / "prometheus" / "tenantry-rules.yml"
RULE_TESTS = ROOT / "deploy" / "prometheus" / "tenantry-rules.test.yml"
DASHBOARD = ROOT / "deploy" / "grafana" / "tenantry.json"
ROWS = {"Storage", "Jobs", "Queries", "Resilience", "Isolation / companies", "Replicas"}
METRIC = re.compile(r"\btenantry_[a-z0-9_]+")
# Named only once a read replica is configured (the fault tests start one): here their
# families are declared (HELP and TYPE) without a series.
NEED_A_REPLICA = {"tenantry_replica_lag_seconds", "tenantry_replica_up"}


def promtool(*args: str, cwd: Path = ROOT) -> subprocess.CompletedProcess[str]:
    installed = Path(os.environ.get("PROMTOOL_DIR", "/opt/tenantry-promtool")) / "usr/bin/promtool"
    found = shutil.which("promtool") or (str(installed) if installed.exists() else None)
    if found is None:
        pytest.fail("promtool is not installed: run scripts/services.sh (ensure_promtool)")
    return subprocess.run(
        [found, *args], cwd=cwd, capture_output=True, text=True, timeout=60, check=False
    )


def alert_rules() -> list[dict[str, Any]]:
    groups = yaml.safe_load(RULES.read_text())["groups"]
    return [rule for group in groups for rule in group["rules"] if "alert" in rule]


def dashboard_panels() -> list[dict[str, Any]]:
    panels: list[dict[str, Any]] = json.loads(DASHBOARD.read_text())["panels"]
    return panels


def test_the_rules_pass_promtool_check_and_their_unit_tests() -> None:
    checked = promtool("check", "rules", str(RULES))
    assert checked.returncode == 0, checked.stdout + checked.stderr
    tested = promtool("test", "rules", RULE_TESTS.name, cwd=RULE_TESTS.parent)
    assert tested.returncode == 0, tested.stdout + tested.stderr
    assert "SUCCESS" in tested.stdout


def test_each_alert_is_tested_firing_and_resolved_and_says_what_and_where() -> None:
    cases = [
        case
        for test in yaml.safe_load(RULE_TESTS.read_text())["tests"]
        for case in test["alert_rule_test"]
    ]
    for rule in alert_rules():
        name = rule["alert"]
        assert rule["labels"]["severity"] in ("critical", "warning", "info"), name
        assert {"summary", "description", "runbook"} <= set(rule["annotations"]), name
        mine = sorted((c for c in cases if c["alertname"] == name), key=_eval_seconds)
        fired = [i for i, case in enumerate(mine) if case["exp_alerts"]]
        assert fired, f"{name}: no test where it fires"
        assert not mine[0]["exp_alerts"], f"{name}: no test before it fires"
        assert any(not case["exp_alerts"] for case in mine[fired[-1] :]), f"{name}: never resolves"
        anchor = name.lower()
        assert f"#{anchor}" in rule["annotations"]["runbook"]
        assert f"## {name}" in (ROOT / "docs" / "alerts.md").read_text(), name


def _eval_seconds(case: dict[str, Any]) -> int:
    value = str(case["eval_time"])
    return int(value[:-1]) * {"s": 1, "m": 60, "h": 3600}[value[-1]]


def test_the_dashboard_is_well_formed() -> None:
    board = json.loads(DASHBOARD.read_text())
    assert board["schemaVersion"] >= 39 and board["uid"] == "tenantry"
    variables = {v["name"]: v for v in board["templating"]["list"]}
    assert variables["datasource"]["type"] == "datasource"
    assert variables["datasource"]["query"] == "prometheus"
    assert {"job", "instance"} <= set(variables)
    panels = dashboard_panels()
    ids = [panel["id"] for panel in panels]
    assert len(ids) == len(set(ids)), "panel ids are unique"
    rows = [panel["title"] for panel in panels if panel["type"] == "row"]
    assert set(rows) == ROWS and len(rows) == len(ROWS)
    assert panels[0]["type"] == "row", "every panel sits in a row"
    for panel in panels:
        grid = panel["gridPos"]
        assert {"h", "w", "x", "y"} <= set(grid) and grid["x"] + grid["w"] <= 24, panel["title"]
        if panel["type"] == "row":
            continue
        assert panel["datasource"] == {"type": "prometheus", "uid": "${datasource}"}
        assert panel["targets"], panel["title"]
        for target in panel["targets"]:
            assert target["expr"] and target["datasource"]["uid"] == "${datasource}"
            assert "$job" in target["expr"] and "$instance" in target["expr"], panel["title"]


def test_every_dashboard_expression_parses(tmp_path: Path) -> None:
    """promtool parses expressions only within rules: each target as a recording rule."""
    exprs = [t["expr"] for p in dashboard_panels() if p["type"] != "row" for t in p["targets"]]
    rules = [
        {"record": f"tenantry:dashboard:{n}", "expr": _without_grafana_variables(expr)}
        for n, expr in enumerate(exprs)
    ]
    file = tmp_path / "dashboard-rules.yml"
    file.write_text(yaml.safe_dump({"groups": [{"name": "dashboard", "rules": rules}]}))
    checked = promtool("check", "rules", str(file))
    assert checked.returncode == 0, checked.stdout + checked.stderr
    assert f"{len(rules)} rules found" in checked.stdout


def _without_grafana_variables(expr: str) -> str:
    for variable, value in {"$__rate_interval": "5m", "$__interval": "1m"}.items():
        expr = expr.replace(variable, value)
    return expr.replace("${datasource}", "prometheus")  # `$job` is valid in a regex


@pytest.fixture
def settings(settings_factory: Any) -> Any:
    return settings_factory(slow_query_ms=0)  # every statement is slow: a series to see


@pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)
async def test_every_metric_the_rules_and_dashboard_name_is_exposed(
    app: Any, client: AsyncClient, company_keys: dict[str, dict[str, str]]
) -> None:
    from tenantry.resilience.rollouts import Step

    services = app.state.services
    upload = await client.post(
        "/api/storage/files",
        files={"file": ("a.txt", b"hello", "text/plain")},
        data={"category": "documents"},
        headers=company_keys["acme"],
    )
    assert upload.status_code == 201, upload.text
    await services.rollouts.put_plan("vision-analysis", [Step(10, 3600), Step(100)], actor="t")
    await services.rollouts.pause("vision-analysis", actor="t")
    services.resilience.breakers["external-api"].force_open("test")  # a transition
    await client.get("/api/queues/stats", headers=ADMIN)

    scraped = await client.get("/metrics", headers=ADMIN)
    assert scraped.status_code == 200
    families = list(text_string_to_metric_families(scraped.text))
    declared = {family.name for family in families}
    series = {sample.name for family in families for sample in family.samples}
    samples = {s.name: s for family in families for s in family.samples}

    named = set(METRIC.findall(DASHBOARD.read_text()))
    named |= {m for rule in alert_rules() for m in METRIC.findall(rule["expr"])}
    assert named - (declared | series) == set(), "named but not exposed"
    assert named - series - NEED_A_REPLICA == set(), "exposed without a series"
    assert declared >= NEED_A_REPLICA
    quota = [s for f in families for s in f.samples if s.name.endswith("storage_quota_ratio")]
    assert any(s.labels == {"company": "acme"} and s.value > 0 for s in quota)
    assert samples["tenantry_flag_rollout_paused"].labels == {"flag": "vision-analysis"}
    assert samples["tenantry_flag_rollout_paused"].value == 1
    assert samples["tenantry_slow_queries_total"].value > 0
