"""gunicorn's own log lines through the project's JSON formatter: its server-side messages in
full, any other only as its template (its arguments can quote a request line or a header)."""

from __future__ import annotations

import json
import logging
import socket
import subprocess
import sys

import pytest

from cds_service.cli import gunicorn_options
from cds_service.config import Settings
from cds_service.logs import JsonFormatter

TOKEN = "eyJhbGciOiJFUzM4NCJ9.c2VjcmV0.c2ln"


def formatted(logger: str, message: str, *args, exc_info=None) -> dict:
    record = logging.LogRecord(logger, logging.ERROR, __file__, 1, message, args, exc_info)
    return json.loads(JsonFormatter().format(record))


def test_gunicorn_server_messages_keep_their_arguments():
    assert formatted("gunicorn.error", "Booting worker with pid: %s", 4242)["message"] == "Booting worker with pid: 4242"
    assert formatted("gunicorn.error", "Worker (pid:%s) was sent %s!", 4242, "SIGKILL")["message"] == "Worker (pid:4242) was sent SIGKILL!"


def test_gunicorn_messages_about_a_request_are_logged_without_their_arguments():
    try:
        raise ValueError(f"bad header Authorization: Bearer {TOKEN}")
    except ValueError:
        entry = formatted("gunicorn.error", "Error handling request %s", f"/cds-services/order-sign?access_token={TOKEN}",
                          exc_info=sys.exc_info())
    assert entry["message"] == "Error handling request %s"
    assert entry["exception"] == "ValueError" and entry["where"]
    assert TOKEN not in json.dumps(entry)
    # The service's own messages are its own: formatted as they are.
    assert formatted("cds_service.app", "unhandled error in %s", "/cds-services/x")["message"] == "unhandled error in /cds-services/x"


def test_serve_configures_gunicorn_logging_through_the_formatter_and_without_its_access_line():
    options = gunicorn_options(Settings())
    assert options["logconfig_dict"]["formatters"]["json"]["()"] == "cds_service.logs.JsonFormatter"
    assert options["logger_class"] == "cds_service.workers.ServiceLogger"


@pytest.mark.slow
def test_a_port_in_use_is_reported_in_json_lines(monkeypatch):
    monkeypatch.delenv("DENOSUMAB_CDS_CONFIG", raising=False)
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        result = subprocess.run(
            [sys.executable, "-m", "cds_service.cli", "serve", "--port", str(port), "--workers", "1"],
            capture_output=True, text=True, timeout=60,
        )
    assert result.returncode != 0
    entries = [json.loads(line) for line in result.stderr.splitlines()]
    assert any(e["logger"] == "gunicorn.error" and e["message"] == f"Connection in use: ('127.0.0.1', {port})" for e in entries)
