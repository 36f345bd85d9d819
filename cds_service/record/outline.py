"""The Observation of a hook body's lab history, read in outline (cds_service/protocol/hook_body.py).

A history holds hundreds of Observations, and most are of tests no rule reads. Of each, the record
decodes only what its first pass reads (the subject: whose; the dates: when; status and id), typed
so that a malformed one does not fit and its Bundle is read whole instead (then the record's own
checks report it). The code (which test) stays JSON text: the Observations of one test carry the
same code, byte for byte, so the record decodes each distinct code text once per call. The rest of
what `_Builder.lab` reads stays JSON text until a rule reads that result; every other element is
skipped, unread. `ObservationOutline.resource()`
gives the elements as the JSON object the R4B model validates. tests/record/test_outline.py holds
that these are exactly the elements the record reads."""

from __future__ import annotations

from typing import Any

import msgspec
from msgspec import UNSET, UnsetType, field

from cds_service.json_parse import Deferred, ResourceOutline


class Reference(msgspec.Struct, gc=False, omit_defaults=True):
    reference: str | None = None  # all the patient match reads


class Period(msgspec.Struct, gc=False, omit_defaults=True):
    start: str | None = None
    end: str | None = None


class ObservationOutline(ResourceOutline, tag="Observation"):
    # decoded: read of every Observation
    id: Any = UNSET
    status: Any = UNSET
    subject: Reference | UnsetType = UNSET
    patient: Reference | UnsetType = UNSET  # not R4's name, but read as the subject when sent
    effectiveDateTime: str | UnsetType = UNSET
    effectivePeriod: Period | UnsetType = UNSET
    effectiveInstant: str | UnsetType = UNSET
    issued: str | UnsetType = UNSET
    # kept as text: the code read once per distinct text (build._Builder.lab_analyte), the rest
    # when a rule reads the result
    code: Deferred | UnsetType = UNSET
    valueQuantity: Deferred | UnsetType = UNSET
    valueCodeableConcept: Deferred | UnsetType = UNSET
    valueString: Deferred | UnsetType = UNSET
    referenceRange: Deferred | UnsetType = UNSET
    interpretation: Deferred | UnsetType = UNSET
    # the primitive elements' extensions (FHIR JSON's `_status`), validated with their elements
    status_extension: Deferred | UnsetType = field(default=UNSET, name="_status")
    effective_date_time_extension: Deferred | UnsetType = field(default=UNSET, name="_effectiveDateTime")
    effective_instant_extension: Deferred | UnsetType = field(default=UNSET, name="_effectiveInstant")
    issued_extension: Deferred | UnsetType = field(default=UNSET, name="_issued")
    value_string_extension: Deferred | UnsetType = field(default=UNSET, name="_valueString")

