"""Medication classes and medication states the rules share: which records are denosumab, a
bisphosphonate or another osteoporosis agent, which are active, and how a record is shown.

Classes are value set names (seeds/valuesets); a record belongs to a class by its codes, or — when
no value set holds its codes — by its name (seeds/medication-names.csv; `matched_by_name`).
"""

from __future__ import annotations

from cds_service.record.model import MedicationEntry, PatientRecord
from cds_service.rules.common import fmt_date

DENOSUMAB = frozenset({"denosumab-60mg", "denosumab-120mg", "denosumab-unspecified-strength"})
BISPHOSPHONATE = frozenset({"zoledronic-acid", "oral-bisphosphonate", "iv-bisphosphonate-other"})
FOLLOW_ON_AGENT = BISPHOSPHONATE | {"other-osteoporosis-agent"}
# Any osteoporosis therapy other than denosumab (transition-needed: "any osteoporosis therapy").
OSTEOPOROSIS_THERAPY = FOLLOW_ON_AGENT

# A dose was given when an administration or dispense completed, or a statement says it was taken.
DOSE_GIVEN_STATUSES = {
    "MedicationAdministration": frozenset({"completed"}),
    "MedicationDispense": frozenset({"completed"}),
    "MedicationStatement": frozenset({"active", "completed"}),
    "MedicationRequest": frozenset({"completed"}),
}
DOSE_RECORD_SOURCES = frozenset({"MedicationAdministration", "MedicationDispense", "MedicationStatement"})
ORDER_SOURCE = frozenset({"MedicationRequest"})
ORDER_AND_STATEMENT_SOURCES = frozenset({"MedicationRequest", "MedicationStatement"})
ACTIVE_ORDER_STATUSES = frozenset({"active", "on-hold"})
ACTIVE_STATEMENT_STATUSES = frozenset({"active", "intended"})
ORDER_INTENTS = frozenset({"order", "original-order", "reflex-order", "filler-order", "instance-order", "plan"})
# Records that never amounted to a drug given or ordered (cancelled, refused, in error, only intended).
WITHDRAWN_MEDICATION_STATUSES = frozenset(
    {"entered-in-error", "cancelled", "not-done", "declined", "not-taken", "intended", "draft"}
)


def is_denosumab(entry: MedicationEntry) -> bool:
    return bool(entry.concepts & DENOSUMAB)


def is_follow_on_agent(entry: MedicationEntry) -> bool:
    return bool(entry.concepts & FOLLOW_ON_AGENT)


def is_bisphosphonate(entry: MedicationEntry) -> bool:
    return bool(entry.concepts & BISPHOSPHONATE)


def is_active_medication(entry: MedicationEntry) -> bool:
    """An active order (not a draft of this call) or an active medication statement."""
    if entry.is_draft_order:
        return False
    if entry.source == "MedicationRequest":
        return entry.status in ACTIVE_ORDER_STATUSES and (entry.intent in ORDER_INTENTS or entry.intent is None)
    if entry.source == "MedicationStatement":
        return entry.status in ACTIVE_STATEMENT_STATUSES
    return False


def active_medications(record: PatientRecord, concepts: frozenset[str]) -> tuple[MedicationEntry, ...]:
    """Active orders and statements of any of `concepts`, newest first."""
    return tuple(
        m for m in record.medications_of(
            concepts, statuses=ACTIVE_ORDER_STATUSES | ACTIVE_STATEMENT_STATUSES, sources=ORDER_AND_STATEMENT_SOURCES
        )
        if is_active_medication(m)
    )


_GIVEN_AS = {
    "MedicationAdministration": "given",
    "MedicationDispense": "dispensed",
    "MedicationStatement": "recorded as taken",
    "MedicationRequest": "ordered",
}


def fmt_medication(entry: MedicationEntry) -> str:
    """'Prolia 60 mg/mL syringe, given 2026-05-28 (MedicationAdministration/madm-1, completed)'."""
    where = entry.reference or entry.source
    when = entry.dose_date or entry.date
    return (
        f"{entry.name}, {_GIVEN_AS[entry.source]} {fmt_date(when)} ({where}, {entry.status or 'no status'})"
        + name_match_note(entry)
    )


def name_match_note(entry: MedicationEntry) -> str:
    """Says so when a coded medication was recognised by its name, not its code."""
    if not entry.matched_by_name:
        return ""
    codes = ", ".join(c.code for c in entry.codings if c.code)
    return f" [code {codes} is in no value set of this service: recognised by its name]"
