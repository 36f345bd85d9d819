"""Small realistic hook requests for protocol tests (the clinical scenarios live in fixtures/)."""

from __future__ import annotations

import copy
import json
import uuid

from cds_service.knowledge import RXNORM
from tests.conftest import SCENARIOS

FHIR_BASE = "https://ehr.example.org/fhir/r4"
BASELINE = SCENARIOS / "baseline" / "no-cards-well-managed-prolia-order-sign.json"
PREFETCH_KEYS = (
    "patient", "medicationRequests", "medicationAdministrations", "medicationDispenses",
    "medicationStatements", "labResults", "conditions", "procedures",
)


def baseline_request() -> dict:
    """The well-managed Prolia patient's order-sign request (a fresh copy, new hookInstance)."""
    request = json.loads(BASELINE.read_text(encoding="utf-8"))["request"]
    request["hookInstance"] = str(uuid.uuid4())
    return request


def prolia_draft(order_id: str = "request-123", patient_id: str = "pat-wm-0001") -> dict:
    return {
        "resourceType": "MedicationRequest",
        "id": order_id,
        "status": "draft",
        "intent": "order",
        "subject": {"reference": f"Patient/{patient_id}"},
        "medicationCodeableConcept": {
            "coding": [{"system": RXNORM, "code": "993456", "display": "1 ML denosumab 60 MG/ML Prefilled Syringe [Prolia]"}]
        },
    }


def as_order_select(request: dict, selections=("MedicationRequest/draft-prolia-1",)) -> dict:
    request = copy.deepcopy(request)
    request["hook"] = "order-select"
    request["context"]["selections"] = list(selections)
    return request


def searchset(resources: list[dict], next_url: str | None = None) -> dict:
    bundle = {"resourceType": "Bundle", "type": "searchset", "entry": [{"resource": r} for r in resources]}
    if next_url:
        bundle["link"] = [{"relation": "next", "url": next_url}]
    return bundle
