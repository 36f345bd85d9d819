"""Apps that issue known cards, stores on both back-ends, and feedback helpers.

The ledger and feedback do not care why a card fired, so most tests here replace the clinical
rules with fixed findings (real cards from the one card builder, with real uuids); the fixture
test (test_fixture_feedback.py) uses the real rules and scenarios."""

from __future__ import annotations

import json
import os
import types
import uuid
from datetime import datetime, timezone

import pytest
from sqlalchemy import text

from cds_service.app import create_app
from cds_service.cards import Finding, Suggestion
from cds_service.config import Settings
from cds_service.evaluate import HookService
from cds_service.rules.engine import Rule
from cds_service.store import create_store_engine
from tests.conftest import DEFAULT_AS_OF, SCENARIOS

POSTGRES_URL_ENV_VAR = "DENOSUMAB_CDS_TEST_POSTGRES_URL"
BASELINE = SCENARIOS / "baseline" / "no-cards-well-managed-prolia-order-sign.json"

FIXED_FINDINGS = (
    Finding(
        topic="calcium-monitoring",
        indicator="warning",
        summary="No serum calcium in the last 30 days before denosumab",
        detail="No calcium result since 2026-10-26.",
        suggestions=(Suggestion("Order serum calcium and albumin", is_recommended=True), Suggestion("Order ionized calcium")),
    ),
    Finding(
        topic="dental-clearance",
        indicator="warning",
        summary="No dental examination in the last 6 months before starting denosumab",
        detail="No dental examination on file since 2026-05-25.",
        suggestions=(Suggestion("Refer for dental evaluation"),),
    ),
)


def fixed_rules(findings=FIXED_FINDINGS) -> tuple[Rule, ...]:
    return tuple(
        Rule(f.topic, frozenset(), types.SimpleNamespace(evaluate=lambda ctx, f=f: f)) for f in findings
    )


def order_sign_request(patient_id: str = "pat-wm-0001", fhir_server: str | None = "https://ehr.example.org/fhir/r4") -> dict:
    """The baseline Prolia order-sign request (denosumab in focus), a new hookInstance each time."""
    # Every resource of the request names its patient (a subject of another patient is never used).
    text = BASELINE.read_text(encoding="utf-8").replace('"Patient/pat-wm-0001"', f'"Patient/{patient_id}"')
    request = json.loads(text)["request"]
    request["hookInstance"] = str(uuid.uuid4())
    request["context"]["patientId"] = patient_id
    if fhir_server is None:
        request.pop("fhirServer", None)
    else:
        request["fhirServer"] = fhir_server
    return request


def make_card_app(settings: Settings | None = None, findings=FIXED_FINDINGS, as_of: datetime = DEFAULT_AS_OF):
    settings = settings or Settings()
    service = HookService(settings, clock=lambda: as_of)
    service.rules = fixed_rules(findings)
    app = create_app(settings, hook_service=service)
    app.testing = True
    return app


@pytest.fixture
def card_app():
    return make_card_app()


@pytest.fixture
def card_client(card_app):
    return card_app.test_client()


def issue_cards(client, service_id: str = "order-sign", **request_args) -> list[dict]:
    request = order_sign_request(**request_args)
    if service_id == "order-select":
        request["hook"] = "order-select"
        request["context"]["selections"] = ["MedicationRequest/draft-prolia-1"]
    response = client.post(f"/cds-services/{service_id}", json=request)
    assert response.status_code == 200, response.get_data(as_text=True)
    return response.get_json()["cards"]


def card_by_topic(cards: list[dict], topic: str) -> dict:
    return next(card for card in cards if card["source"]["topic"]["code"] == topic)


def accepted(card: dict, *suggestion_positions: int, at: str = "2026-11-25T15:01:00Z") -> dict:
    return {
        "card": card["uuid"],
        "outcome": "accepted",
        "acceptedSuggestions": [{"id": card["suggestions"][i]["uuid"]} for i in suggestion_positions or (0,)],
        "outcomeTimestamp": at,
    }


def overridden(card: dict, reason: int | None = None, at: str = "2026-11-25T15:01:00Z", comment: str | None = None) -> dict:
    """Overridden with the card's override reason number `reason` (None: no reason given)."""
    entry = {"card": card["uuid"], "outcome": "overridden", "outcomeTimestamp": at}
    if reason is not None or comment:
        entry["overrideReason"] = {}
        if reason is not None:
            entry["overrideReason"]["reason"] = card["overrideReasons"][reason]
        if comment:
            entry["overrideReason"]["userComment"] = comment
    return entry


# --- back-ends --------------------------------------------------------------------------------


def _postgres_url() -> str:
    url = os.environ.get(POSTGRES_URL_ENV_VAR)
    if not url:
        pytest.skip(f"PostgreSQL tests need ${POSTGRES_URL_ENV_VAR} (set by .ci/run, which starts a server)")
    return url


@pytest.fixture
def postgres_url():
    """A fresh, empty PostgreSQL schema for one test (dropped afterwards)."""
    base = _postgres_url()
    schema = f"test_{uuid.uuid4().hex[:12]}"
    admin = create_store_engine(base).execution_options(isolation_level="AUTOCOMMIT")
    with admin.connect() as connection:
        connection.execute(text(f'CREATE SCHEMA "{schema}"'))
    separator = "&" if "?" in base else "?"
    yield f"{base}{separator}options=-csearch_path%3D{schema}"
    with admin.connect() as connection:
        connection.execute(text(f'DROP SCHEMA "{schema}" CASCADE'))
    admin.dispose()


@pytest.fixture(params=["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)])
def backend_url(request, tmp_path):
    """The store URL of each back-end: a new SQLite file, or a new PostgreSQL schema."""
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'backend.sqlite3'}"
    return request.getfixturevalue("postgres_url")


def utc(text_value: str) -> datetime:
    return datetime.fromisoformat(text_value).astimezone(timezone.utc)
