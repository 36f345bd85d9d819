"""Build the PatientRecord from raw FHIR R4 JSON: the only code that knows FHIR element paths.

Two passes per resource, for speed and safety: first a cheap look at the raw JSON's codes, which
drops everything no rule can use (most of a five-year lab history) without validating it; then
the remaining resources are validated one by one with the R4B models (`fhir_parse`): lab
results, medication records, procedures and conditions only when a rule first reads them
(`LazyHistory`, newest first: the rules read the newest few, a look-back window, or the
conditions of a kind), the patient and the draft orders at once. A resource that fails is
skipped and reported; the rest of the call goes on.
"""

from __future__ import annotations

import dataclasses
import math
import re
from dataclasses import dataclass, field
from datetime import datetime
from functools import partial

from msgspec import UNSET

from cds_service.json_parse import InvalidJson, ResourceOutline, decode_deferred
from cds_service.knowledge import KNOWN_SYSTEMS, Knowledge, canonical_system
from cds_service.record.dates import to_date, to_datetime
from cds_service.record.fhir_parse import (
    InvalidResource,
    UnknownCodedStatus,
    is_r4_resource_type,
    parse_resource,
    r4_coded_status,
    r4_status,
)
from cds_service.record.model import (
    Coding,
    Completeness,
    ConditionEntry,
    Gap,
    LabResult,
    LazyHistory,
    MedicationEntry,
    Patient,
    PatientRecord,
    ProcedureEntry,
    SkippedResource,
    Timing,
    Unread,
    UnreadableOrder,
)
from cds_service.record.outline import ObservationOutline, Reference
from cds_service.record.units import analyte_units, qualitative_vocabulary

DRAFTS = "draftOrders"  # where a draft order's problems are reported
_UNKNOWN = object()  # not worked out yet (None is an answer: no analyte)
MEDICATION_TYPES = ("MedicationRequest", "MedicationAdministration", "MedicationDispense", "MedicationStatement")
QUALITATIVE_ANALYTES = ("hcg-qualitative",)
_DAYS_PER_UNIT = {"s": 1 / 86400, "min": 1 / 1440, "h": 1 / 24, "d": 1.0, "wk": 7.0, "mo": 30.4375, "a": 365.25}
_TIMING_CODE_UNITS = {"H": "h", "D": "d", "W": "wk", "WK": "wk", "M": "mo", "MO": "mo", "Y": "a"}
_NAMED_TIMING_CODES = {"QD": 1.0, "QOD": 2.0, "WK": 7.0, "MO": 30.4375, "BID": 0.5, "TID": 1 / 3, "QID": 0.25}
_MG_UNITS = {"mg", "milligram", "milligrams"}
# The elements this module reads, and those R4 requires, per resource type: only they are
# validated. Validating a whole Observation costs ~140 us, these elements ~65 us (bench/), and a
# malformed element that nothing reads (a vendor's `performer`) no longer costs a calcium result.
_MEDICATION_ELEMENTS = ("status", "subject", "medicationCodeableConcept", "medicationReference", "reasonCode", "reasonReference")
_READ_ELEMENTS = {
    "Observation": ("status", "code", "effectiveDateTime", "effectivePeriod", "effectiveInstant", "issued",
                    "valueQuantity", "valueCodeableConcept", "valueString", "referenceRange", "interpretation"),
    "MedicationRequest": _MEDICATION_ELEMENTS + ("intent", "authoredOn", "dosageInstruction", "dispenseRequest"),
    "MedicationAdministration": _MEDICATION_ELEMENTS + ("effectiveDateTime", "effectivePeriod", "dosage"),
    "MedicationDispense": _MEDICATION_ELEMENTS + ("whenHandedOver", "whenPrepared", "dosageInstruction"),
    "MedicationStatement": _MEDICATION_ELEMENTS + ("effectiveDateTime", "effectivePeriod", "dateAsserted", "dosage"),
    "Condition": ("subject", "code", "clinicalStatus", "verificationStatus", "category", "onsetDateTime", "onsetPeriod",
                  "abatementDateTime", "abatementPeriod", "recordedDate"),
    "Procedure": ("status", "subject", "code", "performedDateTime", "performedPeriod"),
    "Patient": ("birthDate", "gender"),
}
# Inside those, the dosages likewise: what `_dosage` and `medication` read (not route, site, method).
_DOSAGE_ELEMENTS = ("text", "timing", "doseAndRate")
_READ_DOSAGE_ELEMENTS = {
    ("MedicationRequest", "dosageInstruction"): _DOSAGE_ELEMENTS,
    ("MedicationDispense", "dosageInstruction"): _DOSAGE_ELEMENTS,
    ("MedicationStatement", "dosage"): _DOSAGE_ELEMENTS,
    ("MedicationAdministration", "dosage"): ("text", "dose"),
    ("MedicationRequest", "dispenseRequest"): ("validityPeriod",),  # the order's moment, nothing else
}


@dataclass
class RecordInputs:
    """What the protocol layer hands over: raw resources, tagged with where they came from."""

    patient_id: str | None
    encounter_id: str | None = None
    # (prefetch key, the raw resources it gave): per key, as a hook call has them, so that a long
    # history needs no pair per resource (the young garbage collections walk every one of them)
    resource_groups: list[tuple[str, list[object]]] = field(default_factory=list)
    draft_orders: list[object] = field(default_factory=list)
    selections: tuple[str, ...] | None = None  # order-select: references of the selected drafts (None: all)
    skipped: list[SkippedResource] = field(default_factory=list)
    # What did not arrive, per prefetch key (the protocol layer's view: cause and category); the
    # builder works out from the resources of a key asked for newest first how far back they reach.
    gaps: list[Gap] = field(default_factory=list)
    newest_first_keys: frozenset[str] = frozenset()  # prefetch keys whose query asked `_sort` newest first
    fhir_server: str | None = None  # for the patient match: <fhirServer>/Patient/<id>
    # Resources found anywhere in the request (draftOrders and prefetch Bundles) or read from the
    # FHIR server that entries refer to: Medications (by reference) and this patient's Patient
    # (its fullUrl is a valid subject), each with the Bundle entry's fullUrl when it had one.
    referenced: list[tuple[str | None, dict]] = field(default_factory=list)


# --- raw JSON helpers (first pass: no validation, every access guarded) -----------------------

def _raw_codings(codeable) -> tuple[tuple[str, str], ...]:
    codings = codeable.get("coding") if isinstance(codeable, dict) else None
    if not isinstance(codings, list):
        return ()
    found = []
    for coding in codings:
        if isinstance(coding, dict):
            system, code = coding.get("system"), coding.get("code")
            if isinstance(system, str) and isinstance(code, str):
                found.append((system, code))
    return tuple(found)


def _raw_names(codeable) -> tuple[str, ...]:
    """A raw CodeableConcept's text and its codings' displays."""
    if not isinstance(codeable, dict):
        return ()
    names = [codeable.get("text")] + [c.get("display") for c in codeable.get("coding") or () if isinstance(c, dict)]
    return tuple(name for name in names if isinstance(name, str) and name.strip())


_SUBJECT_ELEMENTS = ("subject", "patient")  # R4 names it subject; a few resources (and DSTU2) patient


def _subject_reference(raw) -> str | None:
    """The subject's reference of a resource read whole, or in outline."""
    for key in _SUBJECT_ELEMENTS:
        ref = _element(raw, key)
        if isinstance(ref, dict):
            return ref.get("reference") if isinstance(ref.get("reference"), str) else None
        if isinstance(ref, Reference):
            return ref.reference
    return None


def _element(raw, name: str):
    """An element of a resource read whole (a dict) or in outline (None when absent)."""
    if isinstance(raw, dict):
        return raw.get(name)
    value = getattr(raw, name, None)
    return None if value is UNSET else value


def _kind(raw) -> str | None:
    """The resourceType of a resource read whole, or in outline."""
    return raw.kind() if isinstance(raw, ResourceOutline) else raw.get("resourceType")


# --- model helpers (second pass: validated R4B models) -----------------------------------------

def _codings(codeable) -> tuple[Coding, ...]:
    if codeable is None or not codeable.coding:
        return ()
    return tuple(Coding(c.system, c.code, c.display) for c in codeable.coding)


def _coded_status(element: str, codeable, unread: list[str]) -> str | None:
    """A Condition's coded status; None, with `element` added to `unread`, when it is coded but
    with no code of its R4 value set (read as not recorded: the condition itself still counts)."""
    pairs = [(canonical_system(c.system), c.code) for c in codeable.coding or ()] if codeable is not None else []
    try:
        return r4_coded_status("Condition", element, pairs)
    except UnknownCodedStatus:
        unread.append(element)
        return None


def _first_code(codeable) -> str | None:
    if codeable is None:
        return None
    for coding in codeable.coding or ():
        if coding.code:
            return coding.code
    return None


def _number(value) -> float | None:
    if value is None:
        return None
    try:
        number = float(value)
    except (TypeError, ValueError, OverflowError):
        return None
    return number if math.isfinite(number) else None


class _Builder:
    def __init__(self, inputs: RecordInputs, kb: Knowledge):
        self.inputs = inputs
        self.kb = kb
        self.units = analyte_units()
        self.qualitative = qualitative_vocabulary()
        self.skipped: list[SkippedResource] = list(inputs.skipped)
        self.medication_index: dict[str, dict] = {}  # reference ("Medication/<id>", fullUrl) -> raw Medication
        self.lab_analytes: dict[frozenset[str], str | None] = {}  # an Observation's concepts -> its analyte
        self.outline_analytes: dict[bytes, tuple[frozenset[str], str | None]] = {}  # an outline's code text -> the same
        self.noted_labs: list[LabResult] = []  # labs read so far whose value is a bound, unitless or unusable
        self.unreadable: list[Gap] = []  # history entries of a value set that could not be read (PatientRecord._unreadable)
        # The subject references that name this patient (card catalog, "Patient match").
        patient_id = inputs.patient_id
        self.patient_references = {f"Patient/{patient_id}"} if patient_id else set()
        if patient_id and inputs.fhir_server:
            self.patient_references.add(f"{inputs.fhir_server.rstrip('/')}/Patient/{patient_id}")
        for full_url, raw in inputs.referenced:
            self.index_referenced(full_url, raw)

    def index_referenced(self, full_url: str | None, raw) -> None:
        if not isinstance(raw, dict):
            return
        if raw.get("resourceType") == "Medication":
            if isinstance(raw.get("id"), str):
                self.medication_index.setdefault(f"Medication/{raw['id']}", raw)
                if self.inputs.fhir_server:
                    self.medication_index.setdefault(f"{self.inputs.fhir_server.rstrip('/')}/Medication/{raw['id']}", raw)
            if isinstance(full_url, str):
                self.medication_index.setdefault(full_url, raw)
        elif raw.get("resourceType") == "Patient" and isinstance(full_url, str) and full_url.startswith("urn:uuid:"):
            if self.inputs.patient_id and raw.get("id") == self.inputs.patient_id:
                self.patient_references.add(full_url)

    def skip(self, where: str, description: str, reference: str | None = None) -> None:
        self.skipped.append(SkippedResource(where, description, reference))

    def of_another_patient(self, where: str, raw) -> bool:
        """True, and reported, unless the resource's subject is exactly this patient: Patient/<id>,
        <fhirServer>/Patient/<id> or the urn:uuid fullUrl of this patient's Patient in the request.
        Anything else (another id or server, Group, lower case, display only, #contained, none)
        is never used. Asked only of resources a rule could read (past the code filter). `raw`:
        a resource read whole, or in outline."""
        reference = _subject_reference(raw)
        if reference is not None and reference in self.patient_references:
            return False
        why = "it has no subject reference" if reference is None else "its subject is not this patient"
        self.skip(where, f"{_kind(raw)} skipped: {why}", _raw_reference(raw))
        return True

    def parse(self, where: str, raw: dict, *, draft: bool = False):
        try:
            return parse_resource(_read_elements(raw), draft=draft)
        except InvalidResource as exc:
            self.skip(where, exc.problem.describe(), exc.problem.reference)
            return None

    # medications ------------------------------------------------------------------------------
    def medication_concept(self, raw: dict) -> tuple[object, frozenset[str]]:
        """The medication's CodeableConcept (raw) and its concepts, following references."""
        concept = raw.get("medicationCodeableConcept")
        if concept is None:
            reference = raw.get("medicationReference")
            ref = reference.get("reference") if isinstance(reference, dict) else None
            medication = None
            if isinstance(ref, str) and ref.startswith("#"):
                contained = raw.get("contained")
                for item in contained if isinstance(contained, list) else ():
                    if isinstance(item, dict) and item.get("id") == ref[1:]:
                        medication = item
            elif isinstance(ref, str):
                medication = self.medication_index.get(ref.split("/_history")[0])
            concept = medication.get("code") if isinstance(medication, dict) else None
            if concept is None and isinstance(reference, dict):
                concept = {"text": reference.get("display")} if isinstance(reference.get("display"), str) else None
        codings = _raw_codings(concept)
        concepts = self.kb.concepts_for_codings(codings)
        if not concepts:
            # A medication in no value set is recognised by its text and its codings' displays:
            # uncoded, coded only locally (an Epic ERX id), or coded in RxNorm with a code newer
            # than the extract the value sets come from (`MedicationEntry.matched_by_name` tells the card).
            concepts = frozenset().union(*(self.kb.concepts_for_text(name) for name in _raw_names(concept)))
        return concept, concepts

    def missing_medication(self, raw: dict) -> str | None:
        """The reference of a Medication that `raw` names and nobody has (not contained, not in
        the request, not read from the FHIR server); None when there is none missing."""
        reference = raw.get("medicationReference") if raw.get("medicationCodeableConcept") is None else None
        ref = reference.get("reference") if isinstance(reference, dict) else None
        if not isinstance(ref, str) or ref.startswith("#") or ref.split("/_history")[0] in self.medication_index:
            return None
        return ref.split("/_history")[0]

    def draft_orders(self, raws: list) -> tuple[list[MedicationEntry], list[UnreadableOrder]]:
        """The draft orders, and those that are or may be denosumab / follow-on orders but could
        not be fully read (never dropped in silence: named on the data-unavailable card)."""
        drafts: list[MedicationEntry] = []
        unreadable: list[UnreadableOrder] = []
        for raw in raws:
            if not isinstance(raw, dict) or raw.get("resourceType") in ("Medication", "Patient"):
                continue  # a Medication a draft refers to (indexed), or the patient
            kind = raw.get("resourceType")
            reference = _raw_reference(raw)
            if kind != "MedicationRequest":
                if not isinstance(kind, str) or not is_r4_resource_type(kind):
                    why = f"{kind if isinstance(kind, str) else 'an order'} is not a FHIR R4 resource type (e.g. a DSTU2 order)"
                    self.skip(DRAFTS, f"{why}: not read")
                    concepts = self.recognisable_concepts(raw)
                    if concepts:
                        unreadable.append(UnreadableOrder(reference, concepts, why))
                continue  # another kind of order (a lab, a referral): no rule reads it
            concept_raw, concepts = self.medication_concept(raw)
            missing = self.missing_medication(raw)
            if missing is not None and not concepts:
                self.skip(DRAFTS, "MedicationRequest: its Medication could not be found", reference)
                unreadable.append(UnreadableOrder(
                    reference, frozenset(), f"its medication ({_shown_reference(missing)}) could not be found", medication_reference=missing
                ))
                continue
            if self.of_another_patient(DRAFTS, raw):
                seen = concepts or self.recognisable_concepts(raw)
                if seen:
                    unreadable.append(UnreadableOrder(reference, seen, "its subject is not this patient"))
                continue
            try:
                model = parse_resource(_read_elements(raw), draft=True)
            except InvalidResource as exc:
                why = exc.problem.reason
                if why.startswith("id:") and (entry := self.draft_without_its_id(raw, concept_raw, concepts)):
                    # Only the id breaks the FHIR id pattern (the specification's own example has a
                    # non-ASCII hyphen): everything else is read; the id is kept as sent.
                    self.skip(DRAFTS, "MedicationRequest: its id is not a valid FHIR id; read without it", reference)
                    drafts.append(entry)
                    continue
                self.skip(DRAFTS, exc.problem.describe(), exc.problem.reference)
                if concepts:  # the medication is known: check the order by it, whatever else is wrong
                    drafts.append(self.lenient_draft(raw, concept_raw, concepts))
                    unreadable.append(UnreadableOrder(reference, concepts, why, evaluated=True))
                elif seen := self.recognisable_concepts(raw):
                    unreadable.append(UnreadableOrder(reference, seen, why))
                continue
            entry = self.medication(DRAFTS, raw, concept_raw, concepts, draft=True, model=model)
            if entry is not None:
                drafts.append(entry)
        return drafts, unreadable

    def draft_without_its_id(self, raw: dict, concept_raw, concepts: frozenset[str]) -> MedicationEntry | None:
        try:
            model = parse_resource(_read_elements({k: v for k, v in raw.items() if k != "id"}), draft=True)
        except InvalidResource:
            return None
        entry = self.medication(DRAFTS, raw, concept_raw, concepts, draft=True, model=model)
        return dataclasses.replace(entry, id=raw["id"] if isinstance(raw.get("id"), str) else None)

    def recognisable_concepts(self, raw: dict) -> frozenset[str]:
        """Value sets that any code or text anywhere in a raw resource names (for resources that
        cannot be read as they should: is this recognisably a denosumab order?)."""
        codings, texts = _codes_and_texts(raw)
        concepts = self.kb.concepts_for_codings(tuple(codings))
        for text in texts:
            concepts |= self.kb.concepts_for_text(text)
        return concepts

    def lenient_draft(self, raw: dict, concept_raw, concepts: frozenset[str]) -> MedicationEntry:
        """A draft that failed validation, as far as its raw JSON can be trusted: its medication,
        id and status (no dose or timing: those are what failed, or may have)."""
        def text(name):
            return raw[name] if isinstance(raw.get(name), str) else None

        name = _raw_name(concept_raw, "(unnamed medication)")
        return MedicationEntry(
            source="MedicationRequest", id=text("id"), concepts=concepts, name=name,
            name_concepts=self.kb.concepts_for_text(name), status=text("status"), intent=text("intent") or "order",
            is_draft_order=True, codings=tuple(Coding(s, c) for s, c in _raw_codings(concept_raw)),
        )

    def medication(
        self, where: str, raw: dict, concept_raw, concepts: frozenset[str], *, draft: bool = False, model=None
    ) -> MedicationEntry | None:
        model = model or self.parse(where, raw, draft=draft)
        if model is None:
            return None
        source = model.get_resource_type()
        name = _raw_name(concept_raw, "(unnamed medication)")
        date, end_date, dose_mg, timing, dosage_text = _when(model), None, None, None, None
        dose_date, scheduled = date, None
        if source == "MedicationRequest":
            dose_mg, timing, dosage_text = _dosage(model.dosageInstruction)
            scheduled = _scheduled(model)
            dose_date = scheduled or date
        elif source == "MedicationAdministration":
            end_date = to_datetime(model.effectivePeriod and model.effectivePeriod.end)
            if model.dosage is not None:
                dose_mg = _dose_mg(model.dosage.dose)
                dosage_text = model.dosage.text
        elif source == "MedicationDispense":
            dose_mg, timing, dosage_text = _dosage(model.dosageInstruction)
        elif source == "MedicationStatement":
            end_date = to_datetime(model.effectivePeriod and model.effectivePeriod.end)
            dose_date = to_datetime(model.effectiveDateTime) or end_date
            dose_mg, timing, dosage_text = _dosage(model.dosage)
        reasons: tuple[Coding, ...] = ()
        reason_refs: tuple[str, ...] = ()
        for reason in getattr(model, "reasonCode", None) or ():
            reasons += _codings(reason)
        for ref in getattr(model, "reasonReference", None) or ():
            if ref.reference:
                reason_refs += (ref.reference,)
        return MedicationEntry(
            source=source,
            id=model.id,
            concepts=concepts,
            name=name,
            name_concepts=self.kb.concepts_for_text(name),
            matched_by_name=bool(concepts) and _has_standard_code(concept_raw) and not self.kb.concepts_for_codings(
                _raw_codings(concept_raw)
            ),
            status=model.status,
            intent=getattr(model, "intent", None),
            is_draft_order=draft,
            date=date,
            end_date=end_date,
            dose_date=dose_date,
            scheduled=scheduled,
            dose_mg=dose_mg,
            timing=timing,
            dosage_text=dosage_text,
            reason_codes=reasons,
            reason_concepts=self.kb.concepts_for_codings(tuple((c.system, c.code) for c in reasons if c.system and c.code)),
            reason_references=reason_refs,
            codings=tuple(Coding(s, c) for s, c in _raw_codings(concept_raw)),
        )

    # labs ---------------------------------------------------------------------------------------
    def lab_analyte(self, where: str, raw) -> tuple[frozenset[str], str | None]:
        """The Observation's concepts (read whole, or in outline) and the analyte they make it
        (None: no rule reads it)."""
        if type(raw) is not ObservationOutline:
            return self.analyte_of(_raw_codings(raw.get("code")))
        code = bytes(raw.code) if raw.code is not UNSET else b""
        found = self.outline_analytes.get(code)
        if found is None:  # a handful of code texts per call, each decoded once
            try:
                codings = _raw_codings(decode_deferred(raw.code)) if code else ()
            except InvalidJson as exc:  # a number out of range, say: that one result is skipped, said
                self.skip(where, f"Observation skipped: {exc}", _raw_reference(raw))
                return frozenset(), None
            found = self.outline_analytes[code] = self.analyte_of(codings)
        return found

    def analyte_of(self, codings: tuple[tuple[str, str], ...]) -> tuple[frozenset[str], str | None]:
        concepts = self.kb.concepts_for_codings(codings)
        analyte = self.lab_analytes.get(concepts, _UNKNOWN)
        if analyte is _UNKNOWN:  # a handful of concept sets per call: work each out once
            analyte = self.lab_analytes[concepts] = next(
                (a for a in sorted(concepts) if a in self.units or a in QUALITATIVE_ANALYTES), None
            )
        return concepts, analyte

    def lab_of_outline(self, where: str, outline: ObservationOutline, concepts: frozenset[str], analyte: str) -> LabResult | None:
        """`lab` of an Observation read in outline (record/outline.py), once a rule reads it."""
        try:
            raw = outline.resource()
        except InvalidJson as exc:  # one result whose text cannot be decoded: skipped, said
            self.skip(where, f"Observation skipped: {exc}", _raw_reference(outline))
            return None
        return self.lab(where, raw, concepts, analyte)

    def lab(self, where: str, raw: dict, concepts: frozenset[str], analyte: str) -> LabResult | None:
        model = self.parse(where, raw)
        if model is None:
            return None
        effective = _when(model)
        units = self.units.get(analyte)
        value, unit, comparator, original_text, assumed, unusable = None, None, None, None, None, None
        quantity = model.valueQuantity
        number, unit_code, unit_text = None, None, None
        if quantity is not None and quantity.value is not None:
            number = _number(quantity.value)
            original_text = f"{quantity.comparator or ''}{quantity.value} {quantity.unit or quantity.code or ''}".strip()
            comparator, unit_code, unit_text = quantity.comparator, quantity.code, quantity.unit
        elif model.valueString is not None and units is not None and (bound := _NUMBER_IN_STRING.match(model.valueString)):
            # "<15", ">60", "7.2 mg/dL": a number (or a bound) written as text
            comparator = _COMPARATORS.get(bound.group(1) or "")
            number, unit_text = _number(bound.group(2)), (bound.group(3) or "").strip() or None
            original_text = model.valueString.strip()[:80]
        if number is not None and units is not None:
            value, assumed, unusable = units.read(number, unit_code, unit_text)
            unit = units.canonical if value is not None else None
            if assumed is not None:  # every card showing the value as reported says how it was read
                original_text = f"{original_text} (unit not reported, read as {assumed})"
        low = high = None
        if units is not None and model.referenceRange:
            ref = model.referenceRange[0]
            fallback_unit = (quantity.code, quantity.unit) if quantity is not None else (None, None)
            low = _range_bound(units, ref.low, fallback_unit)
            high = _range_bound(units, ref.high, fallback_unit)
        interpretation = frozenset(
            coding.code for concept in (model.interpretation or ()) for coding in (concept.coding or ()) if coding.code
        )
        qualitative = None
        if model.valueCodeableConcept is not None:
            for coding in model.valueCodeableConcept.coding or ():
                qualitative = qualitative or self.qualitative.read_coding(coding.system, coding.code)
            qualitative = qualitative or self.qualitative.read_text(model.valueCodeableConcept.text)
            original_text = original_text or _raw_name(raw.get("valueCodeableConcept"), "")
        if model.valueString is not None:
            qualitative = qualitative or self.qualitative.read_text(model.valueString)
            original_text = original_text or model.valueString[:80]
        if qualitative is None and analyte in QUALITATIVE_ANALYTES:
            for concept in model.interpretation or ():
                for coding in concept.coding or ():
                    qualitative = qualitative or self.qualitative.read_coding(coding.system, coding.code)
        if units is not None and value is None and unusable is None and qualitative is None and original_text:
            unusable = "the result is not a number this service can read"
        lab = LabResult(
            id=model.id,
            analyte=analyte,
            concepts=concepts,
            status=model.status,
            effective=effective,
            value=value,
            unit=unit,
            comparator=comparator,
            original_text=original_text,
            reference_low=low,
            reference_high=high,
            reference_range_unread=model.referenceRange is None and raw.get("referenceRange") is not None,
            interpretation=interpretation,
            qualitative=qualitative,
            codings=_codings(model.code),
            unit_assumed=assumed,
            unusable=unusable,
        )
        if unusable is not None or assumed is not None or comparator is not None:
            self.noted_labs.append(lab)
        return lab

    # conditions and procedures -----------------------------------------------------------------
    def condition(self, where: str, raw: dict, concepts: frozenset[str]) -> ConditionEntry | None:
        model = self.parse(where, raw)
        if model is None:
            return None
        unread_statuses: list[str] = []
        return ConditionEntry(
            id=model.id,
            concepts=concepts,
            name=_raw_name(raw.get("code"), "(unnamed condition)"),
            clinical_status=_coded_status("clinicalStatus", model.clinicalStatus, unread_statuses),
            verification_status=_coded_status("verificationStatus", model.verificationStatus, unread_statuses),
            unread_statuses=tuple(unread_statuses),
            onset=to_datetime(model.onsetDateTime or (model.onsetPeriod and model.onsetPeriod.start)),
            abatement=to_datetime(model.abatementDateTime or (model.abatementPeriod and model.abatementPeriod.end)),
            recorded=to_datetime(model.recordedDate),
            categories=frozenset(c.code for cat in (model.category or ()) for c in (cat.coding or ()) if c.code),
            codings=_codings(model.code),
        )

    def procedure(self, where: str, raw: dict, concepts: frozenset[str]) -> ProcedureEntry | None:
        model = self.parse(where, raw)
        if model is None:
            return None
        return ProcedureEntry(
            id=model.id,
            concepts=concepts,
            name=_raw_name(raw.get("code"), "(unnamed procedure)"),
            status=model.status,
            performed=_when(model),
            codings=_codings(model.code),
        )

    def unread(self, category: str, raw, concepts: frozenset[str], build, date_of=None) -> Unread | None:
        """A history entry of `category` (read whole, or in outline), validated by `build` when
        first read. One whose date cannot be read from the raw JSON is validated now, to know where
        it belongs (`date_of` the built entry; kinds without dates, conditions, have none); None
        when it proves unusable (a record-unreadable gap of unknown date: it may be recent)."""
        moment = _when(raw)
        status, resource_id = _element(raw, "status"), _element(raw, "id")
        if moment is None and date_of is not None and _date_value(raw) is not None:
            entry = build()
            if entry is None:
                self.unreadable.append(Gap(category, "record-unreadable", _kind(raw), concepts=concepts))
                return None
            moment, build = date_of(entry), partial(_given, entry)
        # A status outside its R4 value set is not known before validation (which rejects it):
        # the history's status filter must not pass over a record that proves unreadable.
        known_status = r4_status(_kind(raw), status) if isinstance(status, str) else None
        return Unread(moment, concepts, _kind(raw), known_status, build, resource_id if isinstance(resource_id, str) else None)

    def coded_entries(self, category: str, resources, build_entry, date_of=None) -> list[Unread]:
        """History entries of resources coded in `code` (procedures, conditions): those whose code
        is in a value set and that belong to this patient, built by `build_entry` when read."""
        entries = []
        for where, raw in resources:
            concepts = self.kb.concepts_for_codings(_raw_codings(raw.get("code")))
            if concepts and not self.of_another_patient(where, raw):
                entry = self.unread(category, raw, concepts, partial(build_entry, where, raw, concepts), date_of)
                if entry is not None:
                    entries.append(entry)
        return entries

    def reach_of(self, key: str, resources: list) -> datetime | None:
        """How far back the resources of a query asked newest first reach: the date of the oldest,
        when every one has a date and they came in newest-first order; else None (not known)."""
        if key not in self.inputs.newest_first_keys:
            return None
        previous = None
        for raw in resources:
            if type(raw) is ObservationOutline:
                moment = _when(raw)  # Observations sort by the date the record reads
            elif not isinstance(raw, dict) or raw.get("resourceType") in _NOT_SORTED_TYPES:
                continue  # included Medications, a server's OperationOutcome
            else:
                moment = to_datetime(_sort_date_value(raw))
            if moment is None or (previous is not None and moment > previous):
                return None
            previous = moment
        return previous

    def patient(self, raw: dict | None) -> Patient:
        if raw is None:
            return Patient(self.inputs.patient_id, None, None)
        model = self.parse("patient", raw)
        if model is None:
            return Patient(self.inputs.patient_id, None, None)
        return Patient(model.id or self.inputs.patient_id, to_date(model.birthDate), model.gender)


# The elements a record's date comes from, first present wins: the same for the raw JSON (to order
# entries before validation, see LazyHistory) and for the validated model.
_DATE_PATHS = {
    "Observation": ("effectiveDateTime", "effectivePeriod.end", "effectivePeriod.start", "effectiveInstant", "issued"),
    "Procedure": ("performedDateTime", "performedPeriod.end", "performedPeriod.start"),
    "MedicationRequest": ("authoredOn",),
    "MedicationAdministration": ("effectiveDateTime", "effectivePeriod.start"),
    "MedicationDispense": ("whenHandedOver", "whenPrepared"),
    "MedicationStatement": ("effectiveDateTime", "effectivePeriod.start", "dateAsserted"),
}


_DATE_STEPS = {kind: tuple(tuple(path.split(".")) for path in paths) for kind, paths in _DATE_PATHS.items()}


def _date_value(resource):
    """The value at the first of the resource's date paths that has one, raw JSON (dict), outline
    or validated model alike (UNSET, an outline's absent element, is false); None when none has."""
    if isinstance(resource, dict):
        for steps in _DATE_STEPS.get(resource.get("resourceType"), ()):
            value = resource
            for name in steps:
                value = value.get(name) if isinstance(value, dict) else None
            if value:
                return value
        return None
    kind = resource.kind() if isinstance(resource, ResourceOutline) else resource.get_resource_type()
    for steps in _DATE_STEPS.get(kind, ()):
        value = resource
        for name in steps:
            value = getattr(value, name, None)
        if value:
            return value
    return None


def _when(resource) -> datetime | None:
    """The date a lab result, medication record or procedure is ordered and judged by."""
    return to_datetime(_date_value(resource))


# The element each query's `_sort` sorts by, where it differs from the date the record uses.
_SORT_DATE_PATHS = {"Condition": (("recordedDate",),), "MedicationStatement": (("effectiveDateTime",), ("effectivePeriod", "start"))}
_NOT_SORTED_TYPES = frozenset({"Medication", "OperationOutcome", "Patient"})
_NUMBER_IN_STRING = re.compile(r"^\s*(<=|>=|<|>|\u2264|\u2265)?\s*(\d+(?:\.\d+)?)\s*([^\d\s.,\-].*)?$")
_COMPARATORS = {"<": "<", "<=": "<=", ">": ">", ">=": ">=", "\u2264": "<=", "\u2265": ">=", "": None}
_SCAN_LIMIT = 2000  # values looked at when recognising a resource that cannot be read


def _sort_date_value(raw: dict):
    for steps in _SORT_DATE_PATHS.get(raw.get("resourceType"), ()):
        value = raw
        for name in steps:
            value = value.get(name) if isinstance(value, dict) else None
        if value:
            return value
    if raw.get("resourceType") in _SORT_DATE_PATHS:
        return None
    return _date_value(raw)


def _codes_and_texts(raw) -> tuple[list[tuple[str, str]], list[str]]:
    """Every (system, code) pair and every text or display anywhere in raw JSON (bounded walk)."""
    codings, texts, stack, seen = [], [], [raw], 0
    while stack and seen < _SCAN_LIMIT:
        node = stack.pop()
        seen += 1
        if isinstance(node, dict):
            if isinstance(node.get("system"), str) and isinstance(node.get("code"), str):
                codings.append((node["system"], node["code"]))
            for key, value in node.items():
                if isinstance(value, str) and (key in ("text", "display") or key.startswith("medication")):
                    texts.append(value[:200])
                elif isinstance(value, (dict, list)):
                    stack.append(value)
        elif isinstance(node, list):
            stack.extend(node)
    return codings, texts


MAX_HISTORY_MEDICATION_READS = 20  # Medication reads per call for history entries without a name
_READ_TYPES = frozenset(MEDICATION_TYPES + ("Observation", "Condition", "Procedure", "Patient", "Medication"))


def category_of_unread(resource_type: str) -> str:
    """The record category an unread (non-R4) resource most likely belongs to, by its name."""
    if resource_type.startswith("Medication"):
        return "medications"
    return {"DiagnosticOrder": "labs", "DiagnosticReport": "labs"}.get(resource_type, "conditions" if "Condition" in resource_type else "procedures")


def _shown_reference(reference: str) -> str:
    """A reference as a card may show it: "Medication/<id>" (never a long or odd URL)."""
    tail = "/".join(reference.split("/")[-2:])
    return tail[:80] if tail.startswith("Medication/") else "a referenced Medication"


def _raw_reference(raw) -> str | None:
    kind, ident = _kind(raw), _element(raw, "id")
    return f"{kind}/{ident}" if isinstance(kind, str) and isinstance(ident, str) else None


def _read_elements(raw: dict) -> dict:
    """`raw` with only the elements `_READ_ELEMENTS` names (and their `_element` extensions), its
    dosages with only those `_READ_DOSAGE_ELEMENTS` names."""
    resource_type = raw.get("resourceType")
    elements = _READ_ELEMENTS.get(resource_type)
    if elements is None:
        return raw
    kept = {"resourceType": resource_type, "id": raw["id"]} if "id" in raw else {"resourceType": resource_type}
    _copy_elements(raw, elements, kept)
    for (of_type, name), dosage_elements in _READ_DOSAGE_ELEMENTS.items():
        dosages = kept.get(name) if of_type == resource_type else None
        if isinstance(dosages, dict):
            kept[name] = _copy_elements(dosages, dosage_elements, {})
        elif isinstance(dosages, list):
            kept[name] = [_copy_elements(d, dosage_elements, {}) if isinstance(d, dict) else d for d in dosages]
    return kept


def _copy_elements(element: dict, names: tuple[str, ...], into: dict) -> dict:
    for name in names:
        if name in element:
            into[name] = element[name]
        if "_" + name in element:
            into["_" + name] = element["_" + name]
    return into


def _raw_name(concept, fallback: str) -> str:
    """A raw CodeableConcept's text, else its first coding's display."""
    if isinstance(concept, dict):
        if isinstance(concept.get("text"), str) and concept["text"].strip():
            return concept["text"].strip()[:200]
        for coding in concept.get("coding") if isinstance(concept.get("coding"), list) else ():
            if isinstance(coding, dict) and isinstance(coding.get("display"), str):
                return coding["display"][:200]
    return fallback


def _dose_mg(quantity) -> float | None:
    if quantity is None:
        return None
    unit = (quantity.code or quantity.unit or "").strip().lower()
    return _number(quantity.value) if unit in _MG_UNITS else None


def _timing(timing) -> Timing | None:
    if timing is None:
        return None
    period_days, count = None, None
    repeat = timing.repeat
    if repeat is not None:
        count = repeat.count
        if repeat.period is not None and repeat.periodUnit in _DAYS_PER_UNIT:
            frequency = repeat.frequency or 1
            period = _number(repeat.period)
            if period and frequency > 0:
                period_days = period * _DAYS_PER_UNIT[repeat.periodUnit] / frequency
    code = _first_code(timing.code)
    if period_days is None and code:
        period_days = _timing_code_days(code)
    text = timing.code.text if timing.code is not None else None
    if period_days is None and count is None and code is None and text is None:
        return None
    return Timing(period_days=period_days, code=code, text=text, count=count)


def _timing_code_days(code: str) -> float | None:
    """EHR frequency codes such as Q6M, Q4W, Q28D, WK, MO."""
    upper = code.strip().upper()
    if upper in _NAMED_TIMING_CODES:
        return _NAMED_TIMING_CODES[upper]
    if upper.startswith("Q"):
        digits = "".join(ch for ch in upper[1:] if ch.isdigit())
        unit = upper[1 + len(digits):]
        if digits and unit in _TIMING_CODE_UNITS:
            return int(digits) * _DAYS_PER_UNIT[_TIMING_CODE_UNITS[unit]]
    return None


def _has_standard_code(concept) -> bool:
    return any(canonical_system(system) in KNOWN_SYSTEMS for system, _ in _raw_codings(concept))


def _scheduled(request) -> datetime | None:
    """When a MedicationRequest says it will be given: the first dosage's boundsPeriod.start or
    earliest timing.event, else dispenseRequest.validityPeriod.start (card catalog: the moment of
    a draft order)."""
    for dosage in request.dosageInstruction or ():
        timing = dosage.timing
        if timing is None:
            continue
        bounds = timing.repeat.boundsPeriod if timing.repeat is not None else None
        if bounds is not None and bounds.start is not None:
            return to_datetime(bounds.start)
        events = [moment for moment in (to_datetime(event) for event in timing.event or ()) if moment is not None]
        if events:
            return min(events)
    validity = request.dispenseRequest.validityPeriod if request.dispenseRequest is not None else None
    return to_datetime(validity.start) if validity is not None else None


def _dosage(dosages) -> tuple[float | None, Timing | None, str | None]:
    """Dose in mg, timing and text from the first Dosage that says anything."""
    for dosage in dosages or ():
        dose = None
        for dose_and_rate in dosage.doseAndRate or ():
            dose = dose if dose is not None else _dose_mg(dose_and_rate.doseQuantity)
        timing = _timing(dosage.timing)
        if dose is not None or timing is not None or dosage.text:
            return dose, timing, dosage.text
    return None, None, None


def _range_bound(units, quantity, fallback_unit) -> float | None:
    if quantity is None or quantity.value is None:
        return None
    number = _number(quantity.value)
    if number is None:
        return None
    code, text = (quantity.code, quantity.unit) if (quantity.code or quantity.unit) else fallback_unit
    return units.to_canonical(number, code, text)


def _given(entry):
    return entry


def _selected(drafts, selections: tuple[str, ...] | None, reference_of=lambda d: d.reference) -> tuple:
    """The drafts the hook asks about: all of them, or on order-select those selected (an empty
    selection selects nothing)."""
    if selections is None:
        return tuple(drafts)  # order-sign / medication-prescribe, or an order-select without selections
    # Selections are relative references ("MedicationRequest/123"); some clients send full URLs.
    wanted = {"/".join(selection.rstrip("/").split("/")[-2:]) for selection in selections}
    return tuple(d for d in drafts if reference_of(d) in wanted)


def missing_medications(inputs: RecordInputs, kb: Knowledge, *, drafts_only: bool) -> tuple[str, ...]:
    """References of Medications that the focused draft orders (`drafts_only`) or the history
    entries name and that neither the request nor `inputs.referenced` holds: what to read from
    the FHIR server before the record can say what these orders are. A history entry whose
    reference carries a display (as Epic sends every one) is read by that name instead: a
    request per medication of a long history would cost the call's deadline; at most
    MAX_HISTORY_MEDICATION_READS are asked for, the rest stays unknown (a gap)."""
    builder = _Builder(inputs, kb)
    if drafts_only:
        raws = [r for r in inputs.draft_orders if isinstance(r, dict) and r.get("resourceType") == "MedicationRequest"]
        raws = _selected(raws, inputs.selections, _raw_reference)
    else:
        raws = []
        for _, group in inputs.resource_groups:
            for raw in group:
                if not isinstance(raw, dict):
                    continue
                if raw.get("resourceType") == "Medication":
                    builder.index_referenced(None, raw)
                elif "medicationReference" in raw and raw.get("resourceType") in MEDICATION_TYPES and not _reference_display(raw):
                    raws.append(raw)
    missing = tuple(dict.fromkeys(ref for raw in raws if (ref := builder.missing_medication(raw)) is not None))
    return missing if drafts_only else missing[:MAX_HISTORY_MEDICATION_READS]


def _reference_display(raw: dict) -> str | None:
    reference = raw.get("medicationReference")
    display = reference.get("display") if isinstance(reference, dict) else None
    return display if isinstance(display, str) and display.strip() else None


def _names_a_medication_resource(draft) -> bool:
    """True when a draft order's medication is a Medication resource elsewhere (not contained)."""
    reference = draft.get("medicationReference") if isinstance(draft, dict) else None
    ref = reference.get("reference") if isinstance(reference, dict) else None
    return isinstance(ref, str) and not ref.startswith("#")


def build_record(inputs: RecordInputs, kb: Knowledge, *, drafts_from: PatientRecord | None = None) -> PatientRecord:
    """The record of `inputs`. `drafts_from`: a record built earlier in the same call from the
    same draft orders and no resources (to decide whether anything must be fetched); its drafts
    and their problems are taken over instead of validated again, unless a draft names a
    Medication resource that only these inputs hold."""
    builder = _Builder(inputs, kb)
    patient_raw = None
    by_type: dict[str, list[tuple[str, dict]]] = {}
    labs = []
    medications_in_groups = False
    unreadable_history: set[str] = set()  # categories holding a recognisable resource not read
    for where, group in inputs.resource_groups:
        for raw in group:
            outlined = type(raw) is ObservationOutline  # most of a hook body's history (record/outline.py)
            resource_type = "Observation" if outlined else raw.get("resourceType") if isinstance(raw, dict) else None
            if resource_type == "Observation":  # most of a history, and needing nothing else: read at once
                concepts, analyte = builder.lab_analyte(where, raw)
                if analyte is not None and not builder.of_another_patient(where, raw):  # no analyte: no rule reads it
                    build = partial(builder.lab_of_outline if outlined else builder.lab, where, raw, concepts, analyte)
                    labs.append(builder.unread("labs", raw, frozenset({analyte}), build, lambda entry: entry.effective))
                continue
            if not isinstance(resource_type, str):
                builder.skip(where, "an entry is not a FHIR resource")
                continue
            if resource_type == "Medication":
                builder.index_referenced(None, raw)
                medications_in_groups = True
                continue
            if resource_type == "Patient":
                if patient_raw is None and inputs.patient_id and raw.get("id") == inputs.patient_id:
                    patient_raw = raw
                elif raw.get("id") != inputs.patient_id:
                    builder.skip(where, "Patient skipped: not the patient of this hook call")
                continue
            if resource_type not in _READ_TYPES and not is_r4_resource_type(resource_type):
                builder.skip(where, f"{resource_type[:40]} is not a FHIR R4 resource type (e.g. DSTU2): not read", _raw_reference(raw))
                if builder.recognisable_concepts(raw):  # e.g. a DSTU2 MedicationOrder for Prolia: history unread
                    unreadable_history.add(category_of_unread(resource_type))
                continue
            by_type.setdefault(resource_type, []).append((where, raw))

    reuse = drafts_from is not None and not (
        medications_in_groups and any(map(_names_a_medication_resource, inputs.draft_orders))
    )
    if reuse:
        drafts = list(drafts_from.draft_orders)
        unreadable = list(drafts_from.unreadable_orders)
        builder.skipped = [s for s in builder.skipped if s.where != DRAFTS] + list(drafts_from.skipped)
    else:
        drafts, unreadable = builder.draft_orders(inputs.draft_orders)
    draft_refs = {d.reference for d in drafts if d.reference}
    medications = []
    unknown_medications = 0
    for resource_type in MEDICATION_TYPES:
        for where, raw in by_type.get(resource_type, ()):
            if isinstance(raw.get("id"), str) and f"{resource_type}/{raw['id']}" in draft_refs:
                continue  # a re-signed order can also sit in the history prefetch: keep one copy, the draft
            concept_raw, concepts = builder.medication_concept(raw)
            if not concepts and builder.missing_medication(raw) is not None and not _reference_display(raw):
                if not builder.of_another_patient(where, raw):
                    unknown_medications += 1
                    builder.skip(where, f"{resource_type} skipped: its Medication could not be found")
                continue
            if not concepts or builder.of_another_patient(where, raw):
                continue  # no rule reads medications outside the value sets
            build = partial(builder.medication, where, raw, concept_raw, concepts)
            medications.append(builder.unread("medications", raw, concepts, build, lambda entry: entry.date))
    procedures = builder.coded_entries("procedures", by_type.get("Procedure", ()), builder.procedure, lambda entry: entry.performed)
    conditions = builder.coded_entries("conditions", by_type.get("Condition", ()), builder.condition)

    groups = dict(inputs.resource_groups)
    gaps = [
        Gap(g.category, g.cause, g.where, reaches_back_to=builder.reach_of(g.where, groups.get(g.where, [])))
        if g.reaches_back_to is None else g
        for g in inputs.gaps
    ]
    if unknown_medications:
        gaps.append(Gap("medications", "medication-unknown", f"{unknown_medications} medication record(s)"))
    gaps.extend(Gap(category, "not-r4", "resources not read") for category in sorted(unreadable_history))
    focus = _selected(drafts, inputs.selections)
    return PatientRecord(
        patient=builder.patient(patient_raw),
        draft_orders=tuple(drafts),
        focus_orders=focus,
        encounter_id=inputs.encounter_id,
        completeness=Completeness(tuple(gaps)),
        unreadable_orders=_selected(unreadable, inputs.selections),
        _labs=LazyHistory((e for e in labs if e is not None), category="labs", unreadable=builder.unreadable),
        _medications=LazyHistory((e for e in medications if e is not None), category="medications", unreadable=builder.unreadable),
        _procedures=LazyHistory(procedures, category="procedures", unreadable=builder.unreadable),
        _conditions=LazyHistory(conditions, category="conditions", unreadable=builder.unreadable),
        _skipped=builder.skipped,  # shared: entries found unusable when first read are added
        _noted_labs=builder.noted_labs,
        _unreadable=builder.unreadable,
    )
