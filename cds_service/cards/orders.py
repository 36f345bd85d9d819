"""FHIR R4 resources that suggestions propose: orders linked to the patient and encounter.

Rules describe *what* to order (codes come from `seeds/`); these builders write the resource."""

from __future__ import annotations

from cds_service.record.model import Coding


def _links(patient_id: str | None, encounter_id: str | None) -> dict:
    links = {}
    if patient_id:
        links["subject"] = {"reference": f"Patient/{patient_id}"}
    if encounter_id:
        links["encounter"] = {"reference": f"Encounter/{encounter_id}"}
    return links


def _codeable(codings: tuple[Coding, ...], text: str) -> dict:
    concept = {"text": text}
    coded = [{k: v for k, v in (("system", c.system), ("code", c.code), ("display", c.display)) if v} for c in codings]
    if coded:
        concept["coding"] = coded
    return concept


def service_request(
    *, codings: tuple[Coding, ...], text: str, reason: str, patient_id: str | None, encounter_id: str | None,
    category: Coding | None = None, note: str | None = None, occurrence: dict | None = None,
) -> dict:
    """A draft ServiceRequest (referral or lab order); `note` says when or how; `occurrence` is
    one FHIR occurrence[x] element ({"occurrenceTiming": ...} or {"occurrencePeriod": ...})."""
    resource = {
        "resourceType": "ServiceRequest",
        "status": "draft",
        "intent": "order",
        "code": _codeable(codings, text),
        "reasonCode": [{"text": reason}],
        **_links(patient_id, encounter_id),
    }
    if category is not None:
        resource["category"] = [_codeable((category,), category.display or category.code or "")]
    if note:
        resource["note"] = [{"text": note}]
    if occurrence:
        resource.update(occurrence)
    return resource


def medication_statement(
    *, codings: tuple[Coding, ...], text: str, patient_id: str | None, note: str | None = None,
    status: str = "active",
) -> dict:
    """A MedicationStatement the patient reports (a supplement bought over the counter; a dose given
    elsewhere, status completed): `informationSource` the patient."""
    resource = {
        "resourceType": "MedicationStatement",
        "status": status,
        "medicationCodeableConcept": _codeable(codings, text),
        **({"subject": {"reference": f"Patient/{patient_id}"},
            "informationSource": {"reference": f"Patient/{patient_id}"}} if patient_id else {}),
    }
    if note:
        resource["note"] = [{"text": note}]
    return resource


def medication_request(
    *, codings: tuple[Coding, ...], text: str, dosage_text: str, patient_id: str | None, encounter_id: str | None,
    reason: str | None = None, timing: dict | None = None,
) -> dict:
    """A draft MedicationRequest coded in RxNorm; `timing` is a FHIR Timing (e.g. once, from a date)."""
    dosage = {"text": dosage_text}
    if timing:
        dosage["timing"] = timing
    resource = {
        "resourceType": "MedicationRequest",
        "status": "draft",
        "intent": "order",
        "medicationCodeableConcept": _codeable(codings, text),
        "dosageInstruction": [dosage],
        **_links(patient_id, encounter_id),
    }
    if reason:
        resource["reasonCode"] = [{"text": reason}]
    return resource
