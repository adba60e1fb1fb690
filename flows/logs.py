"""The log's two formats (``--log-format``): text for a person at a terminal, JSON lines for a
log pipeline.

In JSON every line is one object: ``time`` (RFC 3339, UTC, milliseconds), ``level``,
``logger``, ``message`` (the same words as the text line), and the structured fields a line
was logged with (``extra=``): counts as numbers, names as strings, so a pipeline can
aggregate them without parsing the message. The line a failed run ends with is one of them
(level ``error``); only a usage error found before the run starts (exit 2) is a plain line,
as for every command. No line carries an identifier or a record's content: what is logged
is counts, topics, settings and errors.
"""

from __future__ import annotations

import logging
import sys
from datetime import UTC, datetime
from typing import Any

import orjson

FORMATS = ("text", "json")
TEXT_FORMAT = "%(asctime)s %(name)s %(message)s"

_STANDARD = frozenset(vars(logging.LogRecord("", 0, "", 0, "", None, None))) | {
    "message",
    "asctime",
}
"""A log record's own attributes: anything else on it came as a structured field."""


class JsonFormatter(logging.Formatter):
    """One JSON object per record."""

    def format(self, record: logging.LogRecord) -> str:
        line: dict[str, Any] = {
            "time": _rfc3339(record.created),
            "level": record.levelname.lower(),
            "logger": record.name,
            "message": record.getMessage(),
        }
        for key, value in vars(record).items():
            if key not in _STANDARD and not key.startswith("_"):
                line[key] = value
        if record.exc_info:
            line["exception"] = self.formatException(record.exc_info)
        return orjson.dumps(line, default=str).decode()


def configure(log_format: str = "text") -> None:
    """Send the log to stderr in ``log_format``, from INFO up; in JSON, Python's warnings too."""
    handler = logging.StreamHandler(sys.stderr)
    if log_format == "json":
        handler.setFormatter(JsonFormatter())
        logging.captureWarnings(True)
    else:
        handler.setFormatter(logging.Formatter(TEXT_FORMAT))
    logging.basicConfig(level=logging.INFO, handlers=[handler])


def _rfc3339(created: float) -> str:
    return datetime.fromtimestamp(created, UTC).isoformat(timespec="milliseconds")[:-6] + "Z"
