"""The OpenAPI 3.1 description of the service, served at GET /openapi.json.

The document is a reviewed static file (`openapi.json` beside this module); only the list of
service ids is filled in from the service definitions, so it can never name a service that the
running service does not offer. Tests keep the file true to the routes and to the answers."""

from __future__ import annotations

import copy
import json
from collections.abc import Iterable
from functools import cache
from pathlib import Path

OPENAPI_FILE = Path(__file__).with_name("openapi.json")


@cache
def _static_document() -> dict:
    return json.loads(OPENAPI_FILE.read_text(encoding="utf-8"))


def openapi_document(service_ids: Iterable[str]) -> dict:
    document = copy.deepcopy(_static_document())
    document["components"]["parameters"]["ServiceId"]["schema"]["enum"] = sorted(service_ids)
    return document
