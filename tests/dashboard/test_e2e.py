"""The dashboard in a real browser: Debian's headless Chromium driven by Playwright.

The service runs for real in a subprocess (PostgreSQL, Redis, local storage).
Each page is screenshotted; with TENANTRY_UPDATE_SCREENSHOTS=1 the screenshots
are written to docs/screenshots/ (what docs/concepts/dashboard.md shows), otherwise to a
temporary folder.
"""

from __future__ import annotations

import os
import re
import shutil
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import httpx
import pytest
from playwright.sync_api import Browser, Page, expect, sync_playwright

from tests.conftest import ADMIN_TOKEN
from tests.live import LiveServer, live_server

CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
# Offline machine: no background networking, no component updates, no first-run UI.
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
DOCS = Path(__file__).resolve().parents[2] / "docs" / "screenshots"
CSP_WATCH = """
document.addEventListener("securitypolicyviolation", (e) =>
  window.reportViolation(`${e.violatedDirective} blocked ${e.blockedURI} on ${location.pathname}`));
"""


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    with sync_playwright() as playwright:
        chromium = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        yield chromium
        chromium.close()


class Webhook:
    """A loopback webhook receiver that fails (503) until told to accept."""

    def __init__(self) -> None:
        self.accepting = False
        self.received = 0
        outer = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                self.rfile.read(int(self.headers.get("content-length", 0)))
                outer.received += 1
                self.send_response(200 if outer.accepting else 503)
                self.end_headers()

            def log_message(self, *_: object) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_port}/hook"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def webhook() -> Iterator[Webhook]:
    receiver = Webhook()
    yield receiver
    receiver.close()


@pytest.fixture
def server(tmp_path: Path, postgres_url: str, redis_url: str) -> Iterator[LiveServer]:
    """`tenantry serve --demo` on PostgreSQL and Redis, with its job workers in-process."""
    env = {
        "DATABASE_URL": postgres_url,
        "REDIS_URL": redis_url,
        "TENANTRY_ADMIN_TOKEN": ADMIN_TOKEN,
        "TENANTRY_DATA_DIR": str(tmp_path / "data"),
        "UPLOAD_DIR": str(tmp_path / "uploads"),
        "JOB_WORKERS_IN_APP": "true",
        "JOB_ATTEMPTS": "2",
        "JOB_BACKOFF_MS": "100",
        "DASHBOARD_SAMPLE_SECONDS": "1",
    }
    with live_server(tmp_path, env, args=("--demo",)) as running:
        yield running


@pytest.fixture
def page(browser: Browser, server: LiveServer) -> Iterator[Page]:
    context = browser.new_context(base_url=server.base_url, viewport={"width": 1360, "height": 900})
    # Every Content-Security-Policy violation on any page, reported from the page itself
    # (and any console line about one): the strict policy must cost the dashboard nothing.
    violations: list[str] = []
    context.expose_binding("reportViolation", lambda _source, text: violations.append(text))
    context.add_init_script(CSP_WATCH)
    tab = context.new_page()
    tab.on(
        "console",
        lambda m: violations.append(m.text) if "Content Security Policy" in m.text else None,
    )
    offsite: list[str] = []
    tab.on(
        "request", lambda r: None if r.url.startswith(server.base_url) else offsite.append(r.url)
    )
    yield tab
    context.close()
    assert not offsite, f"the dashboard reached off the machine: {offsite}"
    assert not violations, f"the dashboard broke its Content-Security-Policy: {violations}"


def api(server: LiveServer, method: str, path: str, **kwargs: Any) -> httpx.Response:
    headers = {"Authorization": f"Bearer {ADMIN_TOKEN}"}
    return httpx.request(method, server.base_url + path, headers=headers, timeout=30, **kwargs)


def screenshot(page: Page, name: str, tmp_path: Path) -> None:
    folder = DOCS if os.environ.get("TENANTRY_UPDATE_SCREENSHOTS") == "1" else tmp_path
    folder.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(folder / f"{name}.png"), full_page=True)


def log_in(page: Page) -> None:
    page.goto("/admin")
    expect(page).to_have_url(re.compile(r"/admin/login\?next=%2Fadmin$"))
    page.fill("input[name=key]", "not the key")
    page.click("button[type=submit]")
    expect(page.get_by_role("alert")).to_contain_text("not the admin key")
    page.fill("input[name=key]", ADMIN_TOKEN)
    page.click("button[type=submit]")
    expect(page.get_by_role("heading", name="Overview")).to_be_visible()


def test_an_operator_steers_tenantry_from_the_dashboard(
    page: Page, server: LiveServer, webhook: Webhook, tmp_path: Path
) -> None:
    log_in(page)
    expect(page.locator("#live")).to_contain_text("database")
    expect(page.locator("#live")).to_contain_text("redis")
    expect(page.locator("#live")).to_contain_text("external-api")  # the demo's open circuit
    screenshot(page, "overview", tmp_path)

    # Pause a queue and see it paused (in the page and in the API).
    page.click("nav >> text=Queues")
    report = page.locator('tr[data-queue="report"]')
    report.get_by_role("button", name="Pause").click()
    expect(page.locator(".flash")).to_have_text("Queue paused.")
    expect(report.locator(".queue-state")).to_have_text("paused")
    assert api(server, "GET", "/api/queues/stats").json()["report"]["isPaused"] is True
    screenshot(page, "queues", tmp_path)

    # A webhook that fails until its receiver comes back; retry it and see it complete.
    body = {
        "name": "webhook",
        "companyId": "acme",
        "data": {"url": webhook.url, "event": "order.paid", "payload": {}},
    }
    job_id = api(server, "POST", "/api/queues/notification/jobs", json=body).json()["id"]
    page.goto(f"/admin/queues/notification/jobs/{job_id}")
    expect(page.locator(".job-state")).to_have_text("failed", timeout=30_000)
    webhook.accepting = True
    page.get_by_role("button", name="Retry this job").click()
    expect(page.locator(".flash")).to_have_text("Job sent back to the queue.")
    expect(page.locator(".job-state")).to_have_text("completed", timeout=30_000)
    screenshot(page, "job", tmp_path)

    # Toggle a flag and see the change through the API.
    page.click("nav >> text=Flags")
    row = page.locator('tr[data-flag="bulk-operations"]')
    expect(row.locator(".flag-state")).to_have_text("on")
    row.get_by_role("button", name="Turn off").click()
    expect(row.locator(".flag-state")).to_have_text("off")
    flag = api(server, "GET", "/api/degradation/features/bulk-operations").json()
    assert flag["enabled"] is False
    screenshot(page, "flags", tmp_path)
    page.click("text=vision-analysis")
    page.fill("input[name=percentage]", "40")
    page.get_by_role("button", name="Save").click()
    expect(page.locator("#live")).to_contain_text("rollout: 30 → 40")
    assert api(server, "GET", "/api/degradation/features/vision-analysis").json()["rollout"] == 40
    screenshot(page, "flag", tmp_path)

    # Reset the circuit the demo opened.
    page.click("nav >> text=Circuits")
    circuit = page.locator('tr[data-circuit="external-api"]')
    expect(circuit.locator(".circuit-state")).to_have_text("open")
    screenshot(page, "circuits", tmp_path)
    circuit.get_by_role("button", name="Reset").click()
    expect(circuit.locator(".circuit-state")).to_have_text("closed")
    assert api(server, "GET", "/api/degradation/circuits/external-api").json()["state"] == "closed"

    # Find an index recommendation for the demo's workload.
    page.click("nav >> text=Queries")
    expect(page.locator("#live")).to_contain_text("tenantry_demo_orders")
    screenshot(page, "queries", tmp_path)
    page.get_by_role("link", name="Analyse indexes").click()
    recommendation = page.locator("tr.recommendation").first
    expect(recommendation).to_contain_text("tenantry_demo_orders", timeout=60_000)
    expect(recommendation.locator(".create-index")).to_contain_text("CREATE INDEX CONCURRENTLY")
    screenshot(page, "indexes", tmp_path)

    page.click("nav >> text=Storage")
    expect(page.locator('tr[data-company="acme"]')).to_be_visible()
    screenshot(page, "storage", tmp_path)

    # By now the overview has samples to chart.
    page.click("nav >> text=Overview")
    expect(page.locator("svg.chart polyline").first).to_be_attached()
    screenshot(page, "overview", tmp_path)

    page.click("text=Log out")
    expect(page).to_have_url(re.compile(r"/admin/login$"))
