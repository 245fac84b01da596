"""Logging for `tenantry serve` and `tenantry worker`: text for people, JSON lines for machines.

JSON lines carry the company a record was logged for (from tenantry.context), so
a log pipeline can filter one tenant's events.
"""

from __future__ import annotations

import logging
import logging.config
import time
from typing import Any

from tenantry.context import current_company


class CompanyFilter(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        record.company_id = current_company.get()
        record.__dict__.pop("color_message", None)  # uvicorn's ANSI copy of the message
        return True


class TextFormatter(logging.Formatter):
    """logging.Formatter, with the date and time of a second formatted once for all of
    that second's records (the access log writes one record per request)."""

    _second: int | None = None
    _formatted = ""

    def formatTime(self, record: logging.LogRecord, datefmt: str | None = None) -> str:
        if datefmt is not None:
            return super().formatTime(record, datefmt)
        second = int(record.created)
        if second != self._second:
            self._formatted = time.strftime(self.default_time_format, self.converter(second))
            self._second = second
        msec_format = self.default_msec_format
        return msec_format % (self._formatted, record.msecs) if msec_format else self._formatted


def lean_records() -> None:
    """Leave out what no Tenantry log line shows, for a process that logs every request.

    The logging HOWTO's own optimisations: no caller lookup (a walk up the stack for
    file and line), no thread or process names. `tenantry serve` calls it: its text and
    JSON formats name neither.
    """
    logging._srcfile = None
    logging.logThreads = False
    logging.logProcesses = False
    logging.logMultiprocessing = False


def logging_config(level: str, fmt: str) -> dict[str, Any]:
    """A dictConfig for Tenantry's and uvicorn's loggers alike."""
    formatter: dict[str, Any] = (
        {
            "()": "pythonjsonlogger.json.JsonFormatter",
            "fmt": "%(asctime)s %(levelname)s %(name)s %(message)s %(company_id)s",
            "rename_fields": {"asctime": "time", "levelname": "level", "name": "logger"},
        }
        if fmt == "json"
        else {
            "()": "tenantry.logs.TextFormatter",
            "format": "%(asctime)s %(levelname)-7s %(name)s: %(message)s",
        }
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
