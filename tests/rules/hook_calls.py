"""Rule tests through the HTTP API: the well-managed baseline patient, changed one fact at a time,
and the card one topic produced for it."""

from __future__ import annotations

from cds_service.knowledge import ICD10CM, LOINC, RXNORM, SNOMED
from tests.requests_for_tests import FHIR_BASE, baseline_request

PATIENT_ID = "pat-wm-0001"
PROLIA = {"system": RXNORM, "code": "993456", "display": "1 ML denosumab 60 MG/ML Prefilled Syringe [Prolia]"}
XGEVA = {"system": RXNORM, "code": "1046402", "display": "1.7 ML denosumab 70 MG/ML Injection [Xgeva]"}
DENOSUMAB_INGREDIENT = {"system": RXNORM, "code": "993449", "display": "denosumab"}


def topic_card(client, request: dict, topic: str) -> dict | None:
    """The card of `topic` in the service's answer to `request` (None when it did not fire)."""
    response = client.post(f"/cds-services/{request['hook']}", json=request)
    assert response.status_code == 200, response.get_data(as_text=True)
    return next((c for c in response.get_json()["cards"] if c["source"]["topic"]["code"] == topic), None)


def the_draft(request: dict) -> dict:
    """The baseline's Prolia draft order (MedicationRequest/draft-prolia-1)."""
    return request["context"]["draftOrders"]["entry"][0]["resource"]


def add_draft(request: dict, resource: dict) -> None:
    request["context"]["draftOrders"]["entry"].append({"resource": resource})


def add(request: dict, key: str, resource: dict) -> None:
    """Add a resource to a prefetch searchset (creating it when the EHR sent null)."""
    bundle = request["prefetch"].get(key) or {"resourceType": "Bundle", "type": "searchset", "entry": []}
    bundle["entry"].append({"fullUrl": f"{FHIR_BASE}/{resource['resourceType']}/{resource['id']}", "resource": resource})
    _count(bundle)
    request["prefetch"][key] = bundle


def remove(request: dict, key: str, resource_id: str) -> None:
    bundle = request["prefetch"][key]
    bundle["entry"] = [e for e in bundle["entry"] if e["resource"]["id"] != resource_id]
    _count(bundle)


def _count(bundle: dict) -> None:
    # As an EHR's searchset says it: a total that does not match the entries means some were left out.
    if "total" in bundle:
        bundle["total"] = len(bundle["entry"])


def set_patient(request: dict, *, gender: str | None = None, birth_date: str | None = None) -> None:
    patient = request["prefetch"]["patient"]
    for name, value in (("gender", gender), ("birthDate", birth_date)):
        if value == "":
            patient.pop(name, None)
        elif value is not None:
            patient[name] = value


def make_initiating(request: dict) -> None:
    """No denosumab dose on record: the baseline's earlier Prolia order and injection removed."""
    remove(request, "medicationRequests", "mr-prolia-2026-05")
    request["prefetch"]["medicationAdministrations"] = None


def condition(cond_id: str, codings: list[dict], text: str, *, clinical: str | None = "active",
              verification: str = "confirmed", onset: str | None = "2026-10-01", recorded: str | None = None,
              abatement: str | None = None) -> dict:
    resource = {
        "resourceType": "Condition",
        "id": cond_id,
        "verificationStatus": {"coding": [{"system": "http://terminology.hl7.org/CodeSystem/condition-ver-status", "code": verification}]},
        "category": [{"coding": [{"system": "http://terminology.hl7.org/CodeSystem/condition-category", "code": "problem-list-item"}]}],
        "code": {"coding": codings, "text": text},
        "subject": {"reference": f"Patient/{PATIENT_ID}"},
    }
    if clinical is not None:
        resource["clinicalStatus"] = {"coding": [{"system": "http://terminology.hl7.org/CodeSystem/condition-clinical", "code": clinical}]}
    for name, value in (("onsetDateTime", onset), ("recordedDate", recorded), ("abatementDateTime", abatement)):
        if value is not None:
            resource[name] = value
    return resource


def medication_request(order_id: str, coding: dict, *, status: str = "draft", dose_mg: float | None = None,
                       period: float | None = None, unit: str | None = None, text: str | None = None,
                       authored: str = "2026-11-25T14:55:00Z", name: str | None = None) -> dict:
    resource = {
        "resourceType": "MedicationRequest",
        "id": order_id,
        "status": status,
        "intent": "order",
        "medicationCodeableConcept": {"coding": [coding], **({"text": name} if name else {})},
        "subject": {"reference": f"Patient/{PATIENT_ID}"},
        "authoredOn": authored,
    }
    dosage = {}
    if text:
        dosage["text"] = text
    if period is not None:
        dosage["timing"] = {"repeat": {"frequency": 1, "period": period, "periodUnit": unit}}
    if dose_mg is not None:
        dosage["doseAndRate"] = [{"doseQuantity": {"value": dose_mg, "unit": "mg", "system": "http://unitsofmeasure.org", "code": "mg"}}]
    if dosage:
        resource["dosageInstruction"] = [dosage]
    return resource
