"""Logging for `tenantry serve` and `tenantry worker`: text for people, JSON lines for machines.

JSON lines carry the company a record was logged for (from tenantry.context), so
a log pipeline can filter one tenant's events.
"""

from __future__ import annotations

import logging
import logging.config
from typing import Any

from tenantry.context import current_company


class CompanyFilter(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        record.company_id = current_company.get()
        record.__dict__.pop("color_message", None)  # uvicorn's ANSI copy of the message
        return True


def logging_config(level: str, fmt: str) -> dict[str, Any]:
    """A dictConfig for Tenantry's and uvicorn's loggers alike."""
    formatter: dict[str, Any] = (
        {
            "()": "pythonjsonlogger.json.JsonFormatter",
            "fmt": "%(asctime)s %(levelname)s %(name)s %(message)s %(company_id)s",
            "rename_fields": {"asctime": "time", "levelname": "level", "name": "logger"},
        }
        if fmt == "json"
        else {"format": "%(asctime)s %(levelname)-7s %(name)s: %(message)s"}
    )
    handler = {
        "class": "logging.StreamHandler",
        "formatter": "default",
        "filters": ["company"],
        "stream": "ext://sys.stderr",
    }
    loggers = {
        name: {"handlers": ["default"], "level": level.upper(), "propagate": False}
        for name in ("tenantry", "uvicorn", "uvicorn.error", "uvicorn.access")
    }
    return {
        "version": 1,
        "disable_existing_loggers": False,
        "filters": {"company": {"()": CompanyFilter}},
        "formatters": {"default": formatter},
        "handlers": {"default": handler},
        "loggers": loggers,
    }


def configure_logging(level: str, fmt: str) -> dict[str, Any]:
    config = logging_config(level, fmt)
    logging.config.dictConfig(config)
    return config
