"""Structured logs: one JSON line per request and per notable event, readable text on a terminal.

The edge opens a context for each request (`request_context`); the use cases add what
only they know (`note(partner=..., line=..., outcome=...)`), and the edge writes the line
when the answer is sent. Every line goes through `redact`, a last guard against bearer
keys and URL credentials that reached a message by accident.
"""

from __future__ import annotations

import logging
import re
import sys
import time
from contextvars import ContextVar
from typing import Any

import orjson

# The fields a line may carry beside its message, in the order a reader wants them.
FIELDS = (
    "trace_id",
    "method",
    "route",
    "status",
    "code",
    "duration_ms",
    "partner",
    "line",
    "outcome",
    "event",
    "reason",
)
_CONTEXT: ContextVar[dict[str, Any] | None] = ContextVar("contactcard_request", default=None)

_BEARER = re.compile(r"(?i)\b(bearer)\s+[^\s\"',;]+")
_USERINFO = re.compile(r"(?i)\b([a-z][a-z0-9+.-]*://)[^/@\s\"']+@")


def redact(text: str) -> str:
    """Hide bearer keys and the userinfo of URLs."""
    if "earer" in text or "EARER" in text:
        text = _BEARER.sub(r"\1 [redacted]", text)
    if "@" in text:
        text = _USERINFO.sub(r"\1[redacted]@", text)
    return text


def open_request(trace_id: str) -> dict[str, Any]:
    """A fresh context for the request running in this task; returned for the edge to read.
    Any line logged while it runs (worker threads included: they copy the context)
    carries its trace id."""
    fields: dict[str, Any] = {"trace_id": trace_id}
    _CONTEXT.set(fields)
    return fields


def note(**fields: Any) -> None:
    """Add fields to the current request's log line (nothing outside a request)."""
    current = _CONTEXT.get()
    if current is not None:
        current.update(fields)


class _ServerFormatter(logging.Formatter):
    """Made by the server's logging config, in every worker process.

    Neither formatter prints where a call was made, nor which thread or process made it;
    not collecting those spares every log call (one per write) a walk up the stack and a
    few lookups, the logging HOWTO's "Optimization" advice. Only a process that builds
    one (the server's, through `config`) is changed: importing this package changes nothing."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        logging._srcfile = None
        logging.logThreads = False
        logging.logProcesses = False
        logging.logMultiprocessing = False


class JsonFormatter(_ServerFormatter):
    def format(self, record: logging.LogRecord) -> str:
        line: dict[str, Any] = {
            "time": time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(record.created)) + f".{int(record.msecs):03d}Z",
            "level": record.levelname.lower(),
            "logger": record.name,
            "message": redact(record.getMessage()),
        }
        current = _CONTEXT.get()
        if current is not None and "trace_id" not in record.__dict__:
            line["trace_id"] = current.get("trace_id")
        for name in FIELDS:
            value = record.__dict__.get(name)
            if value is not None:
                line[name] = redact(value) if isinstance(value, str) else value
        if record.exc_info:
            line["exception"] = redact(self.formatException(record.exc_info))
        return orjson.dumps(line).decode()


class TextFormatter(_ServerFormatter):
    """For a person at a terminal: time, level, message, then the fields as key=value."""

    def format(self, record: logging.LogRecord) -> str:
        stamp = time.strftime("%H:%M:%S", time.localtime(record.created))
        extras = " ".join(f"{name}={record.__dict__[name]}" for name in FIELDS if record.__dict__.get(name) is not None)
        text = f"{stamp} {record.levelname:<7} {record.getMessage()}" + (f"  {extras}" if extras else "")
        if record.exc_info:
            text += "\n" + self.formatException(record.exc_info)
        return redact(text)


def use_json(log_format: str, stream: Any = None) -> bool:
    if log_format != "auto":
        return log_format == "json"
    stream = stream if stream is not None else sys.stderr
    return not (hasattr(stream, "isatty") and stream.isatty())


def config(log_format: str, level: str) -> dict[str, Any]:
    """A `logging.config.dictConfig` for uvicorn (applied in every worker): our lines and
    uvicorn's own, all through one formatter on stderr."""
    formatter = "contactcard.logs.JsonFormatter" if use_json(log_format) else "contactcard.logs.TextFormatter"
    handler = {"class": "logging.StreamHandler", "formatter": "main", "stream": "ext://sys.stderr"}
    level = level.upper()
    return {
        "version": 1,
        "disable_existing_loggers": False,
        "formatters": {"main": {"()": formatter}},
        "handlers": {"main": handler},
        "loggers": {
            "contactcard": {"handlers": ["main"], "level": level, "propagate": False},
            "uvicorn": {"handlers": ["main"], "level": level, "propagate": False},
            "uvicorn.error": {"level": level},
            "uvicorn.access": {"handlers": [], "level": "WARNING", "propagate": False},
        },
        "root": {"handlers": ["main"], "level": "WARNING"},
    }
