"""Structured logs: one JSON object per line on stderr.

`configure_logging` puts the JSON handler on the `ltr_serving` loggers (what `create_app` does:
in a host process, such as the tests', it leaves the root logger to its owner).
`configure_process_logging` is for the processes the service owns, the server (`ltr-serve`,
`ltr serve`: `ltr_serving.server.serve`) and its event log's writer process: every logger
there, third-party ones (aiokafka, asyncio, uvicorn's) and the root logger included, writes
through the same formatter, so a library's warning or a traceback is one JSON object too (the
traceback in its `exception` field), never lines of text.

Fields passed with `extra=` become top-level keys. No code path of the service logs the reload
token or the Authorization header; since libraries log what they like, the formatter also
replaces the values of the secret variables (`ltr_core.settings.SECRETS`: tokens, passwords)
with `***` wherever they appear in a line.
"""

from __future__ import annotations

import json
import logging
import os
import sys
from collections.abc import Iterable
from datetime import UTC, datetime
from typing import Any, TextIO

from ltr_core.settings import SECRETS

_STANDARD = set(vars(logging.makeLogRecord({}))) | {"message", "asctime", "taskName"}
REDACTED = "***"
_MIN_SECRET = 4  # shorter values are not looked for (they would match ordinary text)


def secret_values(names: Iterable[str] = SECRETS) -> list[str]:
    """The values of the secret variables set in the environment (a token variable may hold
    `new,old`: each one too), longest first."""
    found: set[str] = set()
    for name in names:
        value = os.environ.get(name, "").strip()
        for part in [value, *value.split(",")]:
            if len(part.strip()) >= _MIN_SECRET:
                found.add(part.strip())
    return sorted(found, key=len, reverse=True)


class JsonFormatter(logging.Formatter):
    """A record as one JSON object (a traceback in `exception`), with the secrets of
    `secrets` (default: the environment's, `secret_values`) replaced by `***`."""

    def __init__(self, secrets: Iterable[str] | None = None) -> None:
        super().__init__()
        values = secret_values() if secrets is None else list(secrets)
        # each as written and as JSON escapes it (a quote or backslash in it)
        self._secrets = [
            form for value in values for form in {value, json.dumps(value)[1:-1]} if form
        ]

    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, object] = {
            "ts": datetime.fromtimestamp(record.created, UTC).isoformat(),
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
        }
        entry.update({k: v for k, v in vars(record).items() if k not in _STANDARD})
        if record.exc_info:
            entry["exception"] = self.formatException(record.exc_info)
        elif record.exc_text:
            entry["exception"] = record.exc_text
        if record.stack_info:
            entry["stack"] = record.stack_info
        text = json.dumps(entry, default=str)
        for secret in self._secrets:
            text = text.replace(secret, REDACTED)
        return text


class StderrHandler(logging.StreamHandler[TextIO]):
    """Writes to whatever sys.stderr is at emit time (not at creation), like logging's own
    last-resort handler, so a replaced stderr (test capture, a supervisor) is always honoured."""

    def __init__(self) -> None:
        super().__init__()

    @property
    def stream(self) -> TextIO:
        return sys.stderr

    @stream.setter
    def stream(self, value: TextIO) -> None:
        pass


def _json_handler() -> logging.Handler:
    handler = StderrHandler()
    handler.setFormatter(JsonFormatter())
    return handler


def configure_logging(level: int = logging.INFO) -> None:
    """Idempotent: one JSON handler on the package logger, not on root (in a host process the
    host owns root; `configure_process_logging` takes it where the service owns the process)."""
    logger = logging.getLogger("ltr_serving")
    logger.setLevel(level)
    if not any(isinstance(h.formatter, JsonFormatter) for h in logger.handlers):
        logger.addHandler(_json_handler())
    logger.propagate = False


def configure_process_logging(level: int = logging.INFO) -> None:
    """For a process the service owns (the server, its writer process): `configure_logging`,
    and the root logger's handlers replaced by the JSON one, so every other logger (aiokafka,
    asyncio's "exception was never retrieved", warnings) writes JSON lines too."""
    configure_logging(level)
    logging.captureWarnings(True)  # `warnings.warn` through the `py.warnings` logger
    root = logging.getLogger()
    root.setLevel(level)
    for handler in list(root.handlers):
        root.removeHandler(handler)
    root.addHandler(_json_handler())


def uvicorn_log_config(level: str = "info") -> dict[str, Any]:
    """uvicorn's loggers (start-up, errors, access) through the JSON formatter: the `log_config`
    `ltr_serving.server.serve` gives uvicorn instead of its text format."""
    return {
        "version": 1,
        "disable_existing_loggers": False,
        "formatters": {"json": {"()": JsonFormatter}},
        "handlers": {"json": {"()": StderrHandler, "formatter": "json"}},
        "loggers": {
            name: {"handlers": ["json"], "level": level.upper(), "propagate": False}
            for name in ("uvicorn", "uvicorn.error", "uvicorn.access")
        },
    }
