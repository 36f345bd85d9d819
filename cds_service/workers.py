"""gunicorn workers that answer malformed HTTP like the rest of the service does.

gunicorn rejects a request it cannot parse (an over-long header, a header line without a colon, a
bad request line) before Flask sees it, with a small HTML page, and logs the offending text: a
header line it quotes can be an Authorization header with its token. These workers answer with a
FHIR OperationOutcome instead and log only the kind of error.
"""

from __future__ import annotations

import json
import logging

from gunicorn.glogging import Logger
from gunicorn.http import errors as http_errors
from gunicorn.workers.gthread import ThreadWorker
from gunicorn.workers.sync import SyncWorker

from cds_service.errors import Issue, operation_outcome

logger = logging.getLogger(__name__)

# Parse errors that are the server's or the application's fault: gunicorn answers those itself (500).
_NOT_THE_CLIENTS_FAULT = (
    http_errors.InvalidResponseHeader, http_errors.InvalidResponseHeaderName, http_errors.ConfigurationProblem,
)
# (error, status, reason phrase, what the client is told), first match wins; the statuses are
# gunicorn's own; any other parse error is a 400.
_ANSWERS = (
    (http_errors.LimitRequestLine, 414, "URI Too Long", "The request line is too long."),
    (http_errors.LimitRequestHeaders, 431, "Request Header Fields Too Large",
     "A request header, or all of them together, is too large."),
    (http_errors.UnsupportedTransferCoding, 501, "Not Implemented", "The Transfer-Encoding is not supported."),
    (http_errors.ExpectationFailed, 417, "Expectation Failed", "The Expect header cannot be met."),
    (http_errors.ForbiddenProxyRequest, 403, "Forbidden", "The proxy is not allowed to forward requests."),
)


def malformed_request_answer(error: Exception) -> tuple[int, str, bytes] | None:
    """(status, reason phrase, OperationOutcome body) for a request gunicorn could not parse;
    None for any other error, which gunicorn answers itself."""
    if not isinstance(error, http_errors.ParseException) or isinstance(error, _NOT_THE_CLIENTS_FAULT):
        return None
    status, reason, message = next(
        ((status, reason, message) for kind, status, reason, message in _ANSWERS if isinstance(error, kind)),
        (400, "Bad Request", "The HTTP request is malformed (request line or headers)."),
    )
    code = "too-costly" if status in (414, 431) else "structure"
    body = json.dumps(operation_outcome([Issue(message, code=code)]), separators=(",", ":")).encode()
    return status, reason, body


class _OperationOutcomeErrors:
    def handle_error(self, req, client, addr, exc):
        answer = malformed_request_answer(exc)
        if answer is None:
            return super().handle_error(req, client, addr, exc)
        status, reason, body = answer
        # The kind only: gunicorn's message quotes the header line, which may carry a token.
        logger.warning("malformed HTTP request answered %d: %s", status, type(exc).__name__)
        head = (
            f"HTTP/1.1 {status} {reason}\r\nConnection: close\r\nContent-Type: application/json\r\n"
            f"Content-Length: {len(body)}\r\n\r\n"
        ).encode("ascii")
        try:
            client.sendall(head + body)
        except OSError:
            pass  # the client has gone; nothing to tell it


class OutcomeSyncWorker(_OperationOutcomeErrors, SyncWorker):
    """gunicorn's `sync` worker (one call at a time), with OperationOutcome answers to malformed HTTP."""


class OutcomeThreadWorker(_OperationOutcomeErrors, ThreadWorker):
    """gunicorn's `gthread` worker, with OperationOutcome answers to malformed HTTP."""


class ServiceLogger(Logger):
    """gunicorn's logger without its access line: the service writes its own JSON line per call
    (cds_service.logs), without query strings; gunicorn's would quote the request line."""

    def access(self, resp, req, environ, request_time):
        pass


# gunicorn's name of each kind of worker -> ours (a gunicorn `worker_class` setting)
WORKER_CLASSES = {"sync": f"{__name__}.OutcomeSyncWorker", "gthread": f"{__name__}.OutcomeThreadWorker"}
