"""Structured logs: one JSON line per call, ids and timings only.

Never tokens, JWTs, names, birth dates or resource bodies: what is logged is built field by field
from values that cannot carry them (ids we generated or validated, counts, topic codes)."""

from __future__ import annotations

import json
import logging
import sys
import traceback
from datetime import datetime, timezone
from pathlib import Path

ACCESS_LOGGER = "cds_service.access"
# gunicorn's own lines whose arguments are the server's (pids, signals, its version, the bound
# address), never a request's. Any other gunicorn line is logged as its template alone: its
# arguments can quote a request line or header, e.g. "Error handling request %s" with the URI.
GUNICORN_MESSAGES_WITH_SAFE_ARGUMENTS = frozenset({
    "Starting gunicorn %s",
    "Listening at: %s (%s)",
    "Listening at: %s",
    "Using worker: %s",
    "Booting worker with pid: %s",
    "Worker exiting (pid: %s)",
    "Handling signal: %s",
    "Hang up: %s",
    "Shutting down: %s",
    "Reason: %s",
    "Worker (pid:%s) exited with code %s.",
    "Worker (pid:%s) was sent %s!",
    "Worker (pid:%s) was sent %s! Perhaps out of memory?",
    "WORKER TIMEOUT (pid:%s)",
    "Connection in use: %s",
    "Can't connect to %s",
    "Unhandled signal: %s",
    "Ignoring unknown signal: %s",
    "Control socket listening at %s",
})


def _message(record: logging.LogRecord) -> str:
    from_gunicorn = record.name.startswith("gunicorn.")
    if from_gunicorn and record.args and record.msg not in GUNICORN_MESSAGES_WITH_SAFE_ARGUMENTS:
        return str(record.msg)  # the template, without the arguments
    return record.getMessage()


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        entry = {
            "time": datetime.fromtimestamp(record.created, timezone.utc).isoformat(timespec="milliseconds"),
            "level": record.levelname,
            "logger": record.name,
            "pid": record.process,  # which worker: gunicorn runs several
            "message": _message(record),
        }
        fields = getattr(record, "fields", None)
        if isinstance(fields, dict):
            entry.update(fields)
        if record.exc_info and record.exc_info[0] is not None:
            entry["exception"] = record.exc_info[0].__name__  # the type only: messages may quote input
            if record.exc_info[2] is not None:  # where it happened (file, line, function), never values
                frames = traceback.extract_tb(record.exc_info[2])[-6:]
                entry["where"] = [f"{Path(f.filename).name}:{f.lineno} {f.name}" for f in frames]
        return json.dumps(entry, separators=(",", ":"), default=str)


def configure_logging(level: str = "INFO") -> None:
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(JsonFormatter())
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level)
    # urllib3 logs full request URLs at DEBUG, which carry patient ids in query strings.
    logging.getLogger("urllib3").setLevel(logging.WARNING)
    logging.captureWarnings(True)  # a Python warning is a log line too, not free text on stderr


def gunicorn_logconfig(level: str = "INFO") -> dict:
    """gunicorn's `logconfig_dict`: its own loggers (start, signals, worker exits, tracebacks) write
    through JsonFormatter too, so that every line on stderr is one JSON object."""
    return {
        "version": 1,
        "disable_existing_loggers": False,  # the service's loggers were made before gunicorn configures
        "formatters": {"json": {"()": f"{__name__}.JsonFormatter"}},
        "handlers": {
            "stderr": {"class": "logging.StreamHandler", "formatter": "json", "stream": "ext://sys.stderr"},
        },
        "root": {"level": level, "handlers": ["stderr"]},
        "loggers": {
            "gunicorn.error": {"level": level, "handlers": [], "propagate": True},
            "gunicorn.access": {"level": level, "handlers": [], "propagate": True},
        },
    }


def log_call(**fields) -> None:
    logging.getLogger(ACCESS_LOGGER).info("hook call", extra={"fields": fields})
