"""The documentation site builds with `mkdocs build --strict`, and its configuration
reference lists every setting.

Strict mode turns every warning into a failure: a link to a page or an anchor that does
not exist, a nav entry without its file, an API reference (`::: tenantry...`) that no
longer resolves. The configuration reference is generated from `Settings` by the hook
docs/hooks/settings_reference.py; the tests below check the built page names every
field's variable, and that the generator refuses a field it cannot describe rather than
skip it.
"""

from __future__ import annotations

import copy
import html
import importlib.util
import os
import re
import subprocess
import sys
from pathlib import Path
from types import ModuleType

import pytest

from tenantry.settings import Settings

ROOT = Path(__file__).resolve().parent.parent
HOOK = ROOT / "docs" / "hooks" / "settings_reference.py"


@pytest.fixture(scope="module")
def site(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The site, built once for this module, into a temporary directory."""
    out = tmp_path_factory.mktemp("site")
    env = {**os.environ, "NO_MKDOCS_2_WARNING": "1"}
    build = subprocess.run(
        [sys.executable, "-m", "mkdocs", "build", "--strict", "--site-dir", str(out)],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=180,
    )
    log = build.stdout + build.stderr
    warnings = [line for line in log.splitlines() if "WARNING" in line or "ERROR" in line]
    assert build.returncode == 0 and not warnings, f"mkdocs build --strict failed:\n{log}"
    return out


def _hook() -> ModuleType:
    spec = importlib.util.spec_from_file_location("settings_reference", HOOK)
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_the_site_builds_strictly_with_every_section(site: Path) -> None:
    for page in (
        "index.html",
        "quickstart/index.html",
        "concepts/isolation/index.html",
        "embedding/index.html",
        "reference/configuration/index.html",
        "benchmarks/index.html",
        "reliability/index.html",
        "deployment/index.html",
        "migrate/pybreaker/index.html",
    ):
        assert (site / page).is_file(), page
    assert not (site / "hooks").exists(), "the hook is code, not a page"


def test_the_api_reference_renders_the_public_services(site: Path) -> None:
    pages = {
        "reference/api/index.html": ["create_app", "load_settings", "Settings"],
        "reference/api/storage/index.html": ["StorageService", "signed_url"],
        "reference/api/jobs/index.html": ["JobService", "send_email_job"],
        "reference/api/queries/index.html": ["QueryOptimizer", "optimized_read"],
        "reference/api/resilience/index.html": ["ResilienceService", "BreakerRegistry"],
        "reference/api/tenants/index.html": ["TenantService"],
        "reference/api/testing/index.html": ["run_storage_contract", "JOB_BACKEND_CHECKS"],
    }
    for page, names in pages.items():
        text = (site / page).read_text(encoding="utf-8")
        missing = [name for name in names if f'id="{name}"' not in text and name not in text]
        assert not missing, f"{page} lacks {missing}"
        assert "doc-signature" in text or "doc-heading" in text, page


def test_the_configuration_reference_lists_every_setting(site: Path) -> None:
    page = (site / "reference/configuration/index.html").read_text(encoding="utf-8")
    assert "settings-reference" not in page, "the marker was not replaced"
    text = re.sub(r"\s+", " ", html.unescape(re.sub(r"<[^>]+>", "", page)))
    missing = []
    for name, field in Settings.model_fields.items():
        variable = field.validation_alias
        assert isinstance(variable, str), f"Settings.{name} has no environment variable"
        assert field.description, f"Settings.{name} ({variable}) has no description"
        if f'id="{variable}"' not in page or field.description.replace("`", "") not in text:
            missing.append(variable)
    assert not missing, f"the configuration reference lacks {missing}"
    # Defaults, types and constraints are there too, e.g. TENANTRY_PORT's.
    row = page[page.index('id="TENANTRY_PORT"') :].split("</tr>", 1)[0]
    assert "5000" in row and "integer" in row and "≤ 65535" in row


def test_the_generator_refuses_a_field_it_cannot_describe(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    hook = _hook()
    fields = dict(Settings.model_fields)
    rendered = hook.render()
    assert all(f'id="{field.validation_alias}"' in rendered for field in fields.values())

    undescribed = copy.copy(fields["port"])
    undescribed.description = None
    monkeypatch.setattr(hook, "settings_fields", lambda: {**fields, "port": undescribed})
    with pytest.raises(hook.ReferenceError_, match="TENANTRY_PORT"):
        hook.render()

    nameless = copy.copy(fields["host"])
    nameless.validation_alias = None
    monkeypatch.setattr(hook, "settings_fields", lambda: {**fields, "host": nameless})
    with pytest.raises(hook.ReferenceError_, match=r"Settings\.host"):
        hook.render()


def test_the_page_without_its_marker_fails_the_build() -> None:
    hook = _hook()

    class File:
        src_uri = "reference/configuration.md"

    class Page:
        file = File()

    with pytest.raises(hook.ReferenceError_, match="marker"):
        hook.on_page_markdown("# Configuration reference\n", Page(), None, None)
    other = type("Other", (), {"file": type("F", (), {"src_uri": "index.md"})()})()
    assert hook.on_page_markdown("# Home\n", other, None, None) == "# Home\n"
