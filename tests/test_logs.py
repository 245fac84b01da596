"""Logs: JSON lines carry the company; text stays readable."""

from __future__ import annotations

import json
import logging
from collections.abc import Iterator

import pytest

from tenantry.context import company_scope
from tenantry.logs import configure_logging

NAMES = ("tenantry", "uvicorn", "uvicorn.error", "uvicorn.access")


@pytest.fixture(autouse=True)
def restore_logging() -> Iterator[None]:
    """configure_logging changes global state; give later tests the loggers they had."""
    saved = {
        name: (logger.handlers[:], logger.propagate, logger.level)
        for name in NAMES
        for logger in [logging.getLogger(name)]
    }
    yield
    for name, (handlers, propagate, level) in saved.items():
        logger = logging.getLogger(name)
        logger.handlers[:] = handlers
        logger.propagate, logger.level = propagate, level


def test_json_lines_carry_the_company(capsys: pytest.CaptureFixture[str]) -> None:
    configure_logging("info", "json")
    with company_scope("acme"):
        logging.getLogger("tenantry.test").info("uploaded %s", "report.csv")
    logging.getLogger("tenantry.test").debug("not at info level")
    lines = [json.loads(line) for line in capsys.readouterr().err.splitlines()]
    assert len(lines) == 1
    assert lines[0]["message"] == "uploaded report.csv"
    assert lines[0]["company_id"] == "acme"
    assert lines[0]["level"] == "INFO"
    assert lines[0]["logger"] == "tenantry.test"


def test_text_format_is_one_readable_line(capsys: pytest.CaptureFixture[str]) -> None:
    configure_logging("debug", "text")
    logging.getLogger("tenantry.test").warning("circuit %s opened", "database")
    (line,) = capsys.readouterr().err.splitlines()
    assert "WARNING" in line and "tenantry.test: circuit database opened" in line
