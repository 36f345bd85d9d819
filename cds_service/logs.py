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


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        entry = {
            "time": datetime.fromtimestamp(record.created, timezone.utc).isoformat(timespec="milliseconds"),
            "level": record.levelname,
            "logger": record.name,
            "pid": record.process,  # which worker: gunicorn runs several
            "message": record.getMessage(),
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


def log_call(**fields) -> None:
    logging.getLogger(ACCESS_LOGGER).info("hook call", extra={"fields": fields})
