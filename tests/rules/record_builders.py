"""Rule tests at the record level: small realistic FHIR R4 resources, built into the patient
record by the real builder, and one rule evaluated on it at a fixed time."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone
from types import ModuleType

from cds_service.knowledge import CDT_ADA, CPT, ICD10CM, LOINC, NDC, RXNORM, SNOMED, load_knowledge
from cds_service.record.build import RecordInputs, build_record
from cds_service.rules.context import RuleContext

AS_OF = datetime(2026, 11, 25, 15, 0, tzinfo=timezone.utc)
CENTRAL = timezone(timedelta(hours=-6))
PATIENT_ID = "pat-7731"
ENCOUNTER_ID = "enc-9902"
CDT = CDT_ADA
UCUM = "http://unitsofmeasure.org"
PROLIA = {"system": RXNORM, "code": "993456", "display": "1 ML denosumab 60 MG/ML Prefilled Syringe [Prolia]"}
_counter = iter(range(1, 10**6))


def days_ago(days: float) -> str:
    """A FHIR dateTime `days` before the test clock, as an EHR in US Central time writes it."""
    return (AS_OF - timedelta(days=days)).astimezone(CENTRAL).isoformat(timespec="seconds")


def date_ago(days: int) -> str:
    return (AS_OF - timedelta(days=days)).date().isoformat()


def observation(loinc: str, value, unit: str, when: str, *, status: str = "final", low=None, high=None,
                comparator: str | None = None, ucum: bool = True, ucum_code: str | None = None) -> dict:
    quantity = {"value": value, "unit": unit}
    if ucum:
        quantity.update(system=UCUM, code=ucum_code or unit)
    if comparator:
        quantity["comparator"] = comparator
    resource = {
        "resourceType": "Observation",
        "id": f"obs-{next(_counter)}",
        "meta": {"profile": ["http://hl7.org/fhir/us/core/StructureDefinition/us-core-observation-lab"]},
        "status": status,
        "category": [{"coding": [{"system": "http://terminology.hl7.org/CodeSystem/observation-category", "code": "laboratory"}]}],
        "code": {"coding": [{"system": LOINC, "code": loinc}]},
        "subject": {"reference": f"Patient/{PATIENT_ID}"},
        "effectiveDateTime": when,
        "valueQuantity": quantity,
    }
    if low is not None or high is not None:
        resource["referenceRange"] = [{
            **({"low": {"value": low, "unit": unit, "system": UCUM, "code": unit}} if low is not None else {}),
            **({"high": {"value": high, "unit": unit, "system": UCUM, "code": unit}} if high is not None else {}),
        }]
    return resource


def calcium(value, days: float = 10, unit: str = "mg/dL", **kw) -> dict:
    return observation("17861-6" if unit == "mg/dL" else "2000-8", value, unit, days_ago(days), **kw)


def albumin(value, days: float = 10, unit: str = "g/dL", **kw) -> dict:
    return observation("1751-7", value, unit, days_ago(days), **kw)


def egfr(value, days: float = 10, loinc: str = "98979-8") -> dict:
    # As EHRs send it: the printed unit, and the UCUM code beside it.
    return observation(loinc, value, "mL/min/1.73m2", days_ago(days), ucum_code="mL/min/{1.73_m2}")


def condition(code: str, system: str = ICD10CM, *, clinical: str | None = "active", verification: str | None = "confirmed",
              onset: str | None = "2024-03-01", abatement: str | None = None, text: str | None = None,
              category: str = "problem-list-item") -> dict:
    resource = {
        "resourceType": "Condition",
        "id": f"cond-{next(_counter)}",
        "category": [{"coding": [{"system": "http://terminology.hl7.org/CodeSystem/condition-category", "code": category}]}],
        "code": {"coding": [{"system": system, "code": code}], **({"text": text} if text else {})},
        "subject": {"reference": f"Patient/{PATIENT_ID}"},
    }
    if clinical is not None:
        resource["clinicalStatus"] = {"coding": [{"system": "http://terminology.hl7.org/CodeSystem/condition-clinical", "code": clinical}]}
    if verification is not None:
        resource["verificationStatus"] = {"coding": [{"system": "http://terminology.hl7.org/CodeSystem/condition-ver-status", "code": verification}]}
    if onset:
        resource["onsetDateTime"] = onset
    if abatement:
        resource["abatementDateTime"] = abatement
    return resource


def procedure(code: str, system: str, days: float, *, status: str = "completed", text: str | None = None) -> dict:
    return {
        "resourceType": "Procedure",
        "id": f"proc-{next(_counter)}",
        "status": status,
        "code": {"coding": [{"system": system, "code": code}], **({"text": text} if text else {})},
        "subject": {"reference": f"Patient/{PATIENT_ID}"},
        "performedDateTime": days_ago(days),
    }


def prolia_administration(days: float) -> dict:
    return {
        "resourceType": "MedicationAdministration",
        "id": f"madm-{next(_counter)}",
        "status": "completed",
        "medicationCodeableConcept": {"coding": [PROLIA]},
        "subject": {"reference": f"Patient/{PATIENT_ID}"},
        "effectiveDateTime": days_ago(days),
        "dosage": {"dose": {"value": 60, "unit": "mg", "system": UCUM, "code": "mg"}},
    }


def medication_order(coding: dict | None, *, text: str | None = None, status: str = "active", days: float = 60,
                     order_id: str | None = None) -> dict:
    concept = {}
    if coding:
        concept["coding"] = [coding]
    if text:
        concept["text"] = text
    return {
        "resourceType": "MedicationRequest",
        "id": order_id or f"mr-{next(_counter)}",
        "status": status,
        "intent": "order",
        "medicationCodeableConcept": concept,
        "subject": {"reference": f"Patient/{PATIENT_ID}"},
        "authoredOn": days_ago(days),
    }


def prolia_draft(coding: dict | None = PROLIA, *, text: str | None = None, order_id: str | None = "draft-1") -> dict:
    draft = medication_order(coding, text=text, status="draft", days=0)
    if order_id is None:
        del draft["id"]
    else:
        draft["id"] = order_id
    draft["encounter"] = {"reference": f"Encounter/{ENCOUNTER_ID}"}
    draft["dosageInstruction"] = [{"text": "60 mg subcutaneously once every 6 months",
                                   "timing": {"repeat": {"frequency": 1, "period": 6, "periodUnit": "mo"}},
                                   "doseAndRate": [{"doseQuantity": {"value": 60, "unit": "mg", "system": UCUM, "code": "mg"}}]}]
    return draft


def context(resources=(), *, drafts=None, as_of: datetime = AS_OF, overrides: dict | None = None) -> RuleContext:
    """The rule context of an order-sign call for a denosumab draft, through the real builder."""
    kb = load_knowledge(threshold_overrides=overrides)
    record = build_record(
        RecordInputs(
            patient_id=PATIENT_ID,
            encounter_id=ENCOUNTER_ID,
            resource_groups=[("test", list(resources))],
            draft_orders=list(drafts if drafts is not None else [prolia_draft()]),
        ),
        kb,
    )
    return RuleContext(record=record, as_of=as_of, kb=kb, trigger="denosumab-order", orders=record.focus_orders)


def evaluate(rule: ModuleType, resources=(), **kw):
    return rule.evaluate(context(resources, **kw))


def actions(finding) -> list[tuple[str, object]]:
    """('create', resource) / ('delete', resourceId) for every suggested action."""
    return [
        (action.type, action.resource if action.type == "create" else action.resource_id)
        for suggestion in finding.suggestions for action in suggestion.actions
    ]


def created_codes(finding) -> set[str]:
    return {
        coding["code"]
        for kind, resource in actions(finding) if kind == "create"
        for coding in resource["code"].get("coding", [])
    }
