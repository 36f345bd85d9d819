"""Clinical sub-routines shared by the rules, each stated once (like OpioidCDSRoutines).

Value set *names* appear here (they are the vocabulary of the knowledge base); codes and numbers
never do: codes are in seeds/valuesets, numbers in seeds/thresholds.toml.
"""

from __future__ import annotations

from datetime import datetime

from cds_service.record.model import ConditionEntry, LabResult, MedicationEntry, PatientRecord, ProcedureEntry
from cds_service.rules.context import RuleContext

DENOSUMAB = frozenset({"denosumab-60mg", "denosumab-120mg", "denosumab-unspecified-strength"})
BISPHOSPHONATE = frozenset({"zoledronic-acid", "oral-bisphosphonate", "iv-bisphosphonate-other"})
FOLLOW_ON_AGENT = BISPHOSPHONATE | {"other-osteoporosis-agent"}

# Observations count when final, amended or corrected (card catalog: "When the service looks").
COUNTABLE_OBSERVATION_STATUSES = frozenset({"final", "amended", "corrected"})
ACTIVE_CLINICAL_STATUSES = frozenset({"active", "recurrence", "relapse"})
EXCLUDED_VERIFICATION_STATUSES = frozenset({"entered-in-error", "refuted"})
# A dose was given when an administration or dispense completed, or a statement says it was taken.
DOSE_GIVEN_STATUSES = {
    "MedicationAdministration": frozenset({"completed"}),
    "MedicationDispense": frozenset({"completed"}),
    "MedicationStatement": frozenset({"active", "completed"}),
    "MedicationRequest": frozenset({"completed"}),
}
ACTIVE_ORDER_STATUSES = frozenset({"active", "on-hold"})
ACTIVE_STATEMENT_STATUSES = frozenset({"active", "intended"})
ORDER_INTENTS = frozenset({"order", "original-order", "reflex-order", "filler-order", "instance-order", "plan"})


def is_denosumab(entry: MedicationEntry) -> bool:
    return bool(entry.concepts & DENOSUMAB)


def is_follow_on_agent(entry: MedicationEntry) -> bool:
    return bool(entry.concepts & FOLLOW_ON_AGENT)


def regimen_of(entry: MedicationEntry) -> str | None:
    """'60mg' (every 6 months) or '120mg' (every 4 weeks): from the product, else the dose."""
    if "denosumab-60mg" in entry.concepts:
        return "60mg"
    if "denosumab-120mg" in entry.concepts:
        return "120mg"
    if entry.dose_mg is not None:
        if abs(entry.dose_mg - 60) < 0.5:
            return "60mg"
        if abs(entry.dose_mg - 120) < 0.5:
            return "120mg"
    return None


# --- medications -------------------------------------------------------------------------------

def doses_given(record: PatientRecord, as_of: datetime, concepts: frozenset[str]) -> tuple[MedicationEntry, ...]:
    """Doses of a drug given up to `as_of`, newest first.

    From administrations, dispenses and statements; completed orders count only when none of those
    exist (card catalog: "Dose history").
    """
    given = [
        m for m in record.medications
        if m.concepts & concepts and m.date is not None and m.date <= as_of
        and m.status in DOSE_GIVEN_STATUSES.get(m.source, frozenset())
    ]
    primary = [m for m in given if m.source != "MedicationRequest"]
    return tuple(primary or given)


def last_denosumab_dose(ctx: RuleContext) -> MedicationEntry | None:
    doses = doses_given(ctx.record, ctx.as_of, DENOSUMAB)
    return doses[0] if doses else None


def is_initiating(ctx: RuleContext) -> bool:
    """No denosumab dose in the last 12 months (initiation_no_dose_lookback_days)."""
    last = last_denosumab_dose(ctx)
    return last is None or last.date < ctx.days_before("initiation_no_dose_lookback_days")


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
    return tuple(m for m in record.medications if m.concepts & concepts and is_active_medication(m))


# --- labs --------------------------------------------------------------------------------------

def countable_results(ctx: RuleContext, analyte: str, since: datetime | None = None) -> tuple[LabResult, ...]:
    """Final/amended/corrected results of `analyte` up to the call, newest first."""
    return tuple(
        lab for lab in ctx.record.labs_for(analyte)
        if lab.status in COUNTABLE_OBSERVATION_STATUSES and lab.effective is not None
        and lab.effective <= ctx.as_of and (since is None or lab.effective >= since)
    )


def latest_result(ctx: RuleContext, analyte: str, lookback_threshold: str, *, numeric: bool = True) -> LabResult | None:
    """The newest countable result within the named look-back window (numeric value if asked)."""
    for lab in countable_results(ctx, analyte, ctx.days_before(lookback_threshold)):
        if not numeric or lab.value is not None:
            return lab
    return None


# --- conditions and procedures ----------------------------------------------------------------

def is_active_condition(condition: ConditionEntry, as_of: datetime) -> bool:
    if condition.verification_status in EXCLUDED_VERIFICATION_STATUSES:
        return False
    if condition.clinical_status is not None:
        return condition.clinical_status in ACTIVE_CLINICAL_STATUSES
    # No clinical status (allowed only for entered-in-error in US Core): active unless abated.
    return condition.abatement is None or condition.abatement > as_of


def active_conditions(ctx: RuleContext, concept: str) -> tuple[ConditionEntry, ...]:
    return tuple(c for c in ctx.record.conditions_of(concept) if is_active_condition(c, ctx.as_of))


def conditions_in_history(ctx: RuleContext, concept: str) -> tuple[ConditionEntry, ...]:
    """Any status but entered-in-error or refuted (topics that say "history")."""
    return tuple(
        c for c in ctx.record.conditions_of(concept) if c.verification_status not in EXCLUDED_VERIFICATION_STATUSES
    )


def completed_procedures(ctx: RuleContext, concept: str, since: datetime | None = None) -> tuple[ProcedureEntry, ...]:
    """Completed procedures of a kind up to the call, newest first."""
    return tuple(
        p for p in ctx.record.procedures_of(concept)
        if p.status == "completed" and p.performed is not None and p.performed <= ctx.as_of
        and (since is None or p.performed >= since)
    )


# --- wording for card details -----------------------------------------------------------------

def fmt_date(moment: datetime | None) -> str:
    return moment.date().isoformat() if moment else "unknown date"


def fmt_number(value: float) -> str:
    return f"{value:.2f}".rstrip("0").rstrip(".")


def fmt_result(lab: LabResult) -> str:
    """'8.1 mg/dL (reported 2.02 mmol/L) on 2026-10-01'."""
    shown = f"{fmt_number(lab.value)} {lab.unit}" if lab.value is not None else (lab.original_text or "no value")
    if lab.original_text and lab.value is not None and lab.original_text.split()[-1:] != [lab.unit]:
        shown += f" (reported {lab.original_text})"
    return f"{shown} on {fmt_date(lab.effective)}"


def days_between(earlier: datetime, later: datetime) -> int:
    return (later - earlier).days
