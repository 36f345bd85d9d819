"""Lenient validation of one FHIR R4 resource with the `fhir.resources.R4B` models.

Real clients send imperfect R4: the CDS Hooks sandbox sends `category` as one object instead of
a list and drafts without `intent`; EHRs add fields of their own and write date-times without a
time zone. Each such slip has one well-defined repair, and an element the record can do without
(an Observation's reference range, or its `issued` beside an effective date) is dropped when it
alone fails; anything else makes the resource invalid, and the caller skips that one resource
(never the whole request).
"""

from __future__ import annotations

import copy
import re
from dataclasses import dataclass

from fhir.resources.R4B import get_fhir_model_class
from pydantic import ValidationError

MAX_REPAIR_ROUNDS = 4
_LOCAL_DATETIME = re.compile(r"^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}(:\d{2}(\.\d+)?)?$")


@dataclass(frozen=True)
class ParseProblem:
    """Why a resource was skipped: its type, id and the failing element paths, never values.

    The id stays out of `describe()`: a Patient's id identifies the patient, and descriptions
    reach the log. `reference` gives it to tools that show a user their own data (`check`)."""

    resource_type: str
    resource_id: str | None
    reason: str

    def describe(self) -> str:
        return f"{self.resource_type} skipped: {self.reason}"

    @property
    def reference(self) -> str | None:
        return f"{self.resource_type}/{self.resource_id}" if self.resource_id else None


class InvalidResource(ValueError):
    def __init__(self, problem: ParseProblem):
        super().__init__(problem.describe())
        self.problem = problem


WARM_RESOURCE_TYPES = (
    "Patient", "MedicationRequest", "MedicationAdministration", "MedicationDispense", "MedicationStatement",
    "Medication", "Observation", "Condition", "Procedure", "Bundle", "OperationOutcome",
)


def warm_models() -> None:
    """Import the R4B models the service validates, so the first hook call does not pay for it."""
    for resource_type in WARM_RESOURCE_TYPES:
        get_fhir_model_class(resource_type)


def is_r4_resource_type(resource_type: str) -> bool:
    """True for a resource type FHIR R4 (R4B models) has; False e.g. for DSTU2's MedicationOrder."""
    try:
        get_fhir_model_class(resource_type)
    except (ValueError, KeyError):
        return False
    return True


# R4 binds each of these `status` elements to a required value set; the R4B models check only that
# it is a code. A status that is a code of it written another way ("Final", "active ", "Entered in
# Error", "on_hold": EHR slips no reader would misread) is read as that code, so a low calcium
# marked "Final" is still a low calcium. Any other status ("taking", "done") is not read as some
# other status: the resource is invalid like any other, so a rule resting on an absence sees a gap.
# Source: the R4 (4.0.1) value sets ObservationStatus, medicationrequest-status,
# medication-admin-status, medicationdispense-status, medication-statement-status, event-status.
R4_STATUS_CODES = {
    "Observation": frozenset({"registered", "preliminary", "final", "amended", "corrected", "cancelled",
                              "entered-in-error", "unknown"}),
    "MedicationRequest": frozenset({"active", "on-hold", "cancelled", "completed", "entered-in-error", "stopped",
                                    "draft", "unknown"}),
    "MedicationAdministration": frozenset({"in-progress", "not-done", "on-hold", "completed", "entered-in-error",
                                           "stopped", "unknown"}),
    "MedicationDispense": frozenset({"preparation", "in-progress", "cancelled", "on-hold", "completed",
                                     "entered-in-error", "stopped", "declined", "unknown"}),
    "MedicationStatement": frozenset({"active", "completed", "entered-in-error", "intended", "stopped", "on-hold",
                                      "unknown", "not-taken"}),
    "Procedure": frozenset({"preparation", "in-progress", "not-done", "on-hold", "stopped", "completed",
                            "entered-in-error", "unknown"}),
}


def r4_status(resource_type: str | None, status):
    """The code of the R4 value set `resource_type`'s status is bound to that `status` is or
    spells; `status` as it is for a type whose status this service does not check; None when it
    is no code of the value set."""
    codes = R4_STATUS_CODES.get(resource_type) if isinstance(resource_type, str) else None
    if codes is None:
        return status
    if not isinstance(status, str):
        return None
    if status in codes:
        return status
    spelled = _as_code(status)
    return spelled if spelled in codes else None


def _as_code(text) -> str | None:
    """`text` as an R4 status code would spell it: lower case, words joined by hyphens."""
    return "-".join(text.replace("_", " ").lower().split()) if isinstance(text, str) else None


# Statuses coded as a CodeableConcept (Condition, bound to the R4 (4.0.1) value sets
# condition-clinical and condition-ver-status) are read from a coding of that code system (its
# system URI canonical, knowledge.canonical_system: "" when it has none) with a code of the value
# set, spelled as for `status`; other codings beside it (a SNOMED "Active") are ignored. Codings
# with none such (SNOMED only, a local code) leave the status unread; the resource is still read,
# so the condition it records is never lost (build.py).
R4_CODED_STATUSES = {
    "Condition": {
        "clinicalStatus": (
            frozenset({"http://terminology.hl7.org/CodeSystem/condition-clinical", ""}),
            frozenset({"active", "recurrence", "relapse", "inactive", "remission", "resolved"}),
        ),
        "verificationStatus": (
            frozenset({"http://terminology.hl7.org/CodeSystem/condition-ver-status", ""}),
            frozenset({"unconfirmed", "provisional", "differential", "confirmed", "refuted", "entered-in-error"}),
        ),
    },
}


class UnknownCodedStatus(ValueError):
    """A coded status with codings, none of them a code of its R4 value set."""


def r4_coded_status(resource_type: str, element: str, codings) -> str | None:
    """The code of `element` (a coded status of `resource_type`) from its R4 value set, given its
    codings as (canonical system, code) pairs; None when no coding has a code (text only, or
    absent). Raises UnknownCodedStatus when codings have codes but none is one of the value set."""
    systems, codes = R4_CODED_STATUSES[resource_type][element]
    coded = [(s, c) for s, c in codings if c]
    for coding_system, code in coded:
        if coding_system in systems and _as_code(code) in codes:
            return _as_code(code)
    if coded:
        raise UnknownCodedStatus(element)
    return None


def _container(data, loc):
    """The dict/list holding the element at `loc`, and the last key; None if the path is gone."""
    if not loc:
        return None, None
    node = data
    for key in loc[:-1]:
        try:
            node = node[key]
        except (KeyError, IndexError, TypeError):
            return None, None
    return node, loc[-1]


# Elements a record is still worth reading without when they alone fail validation, each with
# the elements that must be present for that (none: always). An Observation's reference range
# refines what its value means (seeds/thresholds.toml holds the range the rules fall back on), it
# never makes the value; its `issued` (an instant, often sent as a bare date) is its date only
# when it has no effective[x]. Dropped, not the whole result, so a low calcium with a malformed
# range is still a low calcium (build.py says the range is unread).
_DISPENSABLE_ELEMENTS = {
    "Observation": {
        "referenceRange": (),
        "issued": ("effectiveDateTime", "effectivePeriod", "effectiveInstant"),
    },
}


def _repair(data: dict, error: dict) -> bool:
    """Apply the one known repair for `error` in place; False when there is none."""
    loc = error["loc"]
    needs = _DISPENSABLE_ELEMENTS.get(data.get("resourceType"), {}).get(loc[0]) if loc else None
    dispensable = needs is not None and (not needs or any(name in data for name in needs))
    node, key = _container(data, loc)
    if node is None:
        return dispensable and loc[0] not in data  # inside an element already dropped
    kind = error["type"]
    if kind == "list_type" and isinstance(node, dict) and key in node and isinstance(node[key], dict):
        node[key] = [node[key]]  # single object where R4 has an array (sandbox `category`)
        return True
    if kind == "extra_forbidden" and isinstance(node, dict) and key in node:
        del node[key]  # a vendor's own field: R4 has no place for it, the rest is still good
        return True
    value = error.get("input")
    if kind == "value_error" and isinstance(value, str) and _LOCAL_DATETIME.match(value) and isinstance(node, dict):
        # A date-time without zone: read it as UTC (a few hours cannot move any look-back window
        # by more than a day, and a date is better than dropping the lab).
        node[key] = value + (":00" if value.count(":") == 1 else "") + "+00:00"
        return True
    if dispensable:
        del data[loc[0]]
        return True
    return False


def _defaults_for_drafts(data: dict) -> None:
    # The sandbox's first order-select carries no intent yet; a draft order is an order being written.
    if data.get("resourceType") == "MedicationRequest" and "intent" not in data:
        data["intent"] = "order"


def _short(error: dict) -> str:
    path = ".".join(str(part) for part in error["loc"]) or "(resource)"
    return f"{path}: {error['msg']}"


def _copy(raw: dict, resource_type: str, resource_id: str | None) -> dict:
    try:
        return copy.deepcopy(raw)
    except RecursionError:  # nested deeper than the stack allows: unreadable, like any bad resource
        raise InvalidResource(ParseProblem(resource_type, resource_id, "nested too deeply")) from None


def parse_resource(raw, *, draft: bool = False):
    """Validate `raw` (a dict) as its R4B model; returns the model or raises InvalidResource."""
    if not isinstance(raw, dict):
        raise InvalidResource(ParseProblem("(not an object)", None, "a resource must be a JSON object"))
    resource_type = raw.get("resourceType")
    resource_id = raw.get("id") if isinstance(raw.get("id"), str) else None
    if not isinstance(resource_type, str):
        raise InvalidResource(ParseProblem("(no resourceType)", resource_id, "resourceType is missing"))
    try:
        model_class = get_fhir_model_class(resource_type)
    except (ValueError, KeyError):
        raise InvalidResource(ParseProblem("(unknown type)", resource_id, "unknown resourceType")) from None
    data = raw
    copied = False
    if draft and resource_type == "MedicationRequest" and "intent" not in raw:
        data, copied = _copy(raw, resource_type, resource_id), True
        _defaults_for_drafts(data)
    if not draft and "status" in raw:
        # A draft's status is the EHR's to set while it is written; it is read leniently (build.py).
        status = r4_status(resource_type, raw["status"])
        if status is None:
            raise InvalidResource(ParseProblem(resource_type, resource_id, f"status: not a code of the R4 {resource_type} status value set"))
        if status != raw["status"]:
            data, copied = _copy(raw, resource_type, resource_id), True
            data["status"] = status
    for _ in range(MAX_REPAIR_ROUNDS):
        try:
            return model_class.model_validate(data)
        except ValidationError as exc:
            errors = exc.errors(include_url=False)
        except (ValueError, TypeError, RecursionError) as exc:  # pathological input inside validators
            raise InvalidResource(ParseProblem(resource_type, resource_id, type(exc).__name__)) from None
        if not copied:
            data, copied = _copy(raw, resource_type, resource_id), True
        if not all(_repair(data, error) for error in errors):
            unrepaired = [e for e in errors if e["type"] not in ("list_type", "extra_forbidden")]
            raise InvalidResource(
                ParseProblem(resource_type, resource_id, "; ".join(_short(e) for e in (unrepaired or errors)[:3]))
            )
    raise InvalidResource(ParseProblem(resource_type, resource_id, "too many problems to repair"))
