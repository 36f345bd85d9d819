"""Clinical sub-routines shared by the rules, each stated once (like OpioidCDSRoutines): conditions
and procedures, the dental referral, and wording. Medication classes, regimen, dose history,
indications, the transition, labs, calcium, kidney function and order suggestions have their own
modules in rules/concepts/.

Value set *names* appear here (they are the vocabulary of the knowledge base); codes and numbers
never do: codes are in seeds/valuesets, numbers in seeds/thresholds.toml.
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import datetime

from cds_service.cards import Action, Suggestion, orders
from cds_service.record.model import ConditionEntry, LabResult, ProcedureEntry
from cds_service.rules.concepts import order_suggestions
from cds_service.rules.context import RuleContext

_COMPLETED = frozenset({"completed"})
ACTIVE_CLINICAL_STATUSES = frozenset({"active", "recurrence", "relapse"})
EXCLUDED_VERIFICATION_STATUSES = frozenset({"entered-in-error", "refuted"})


# --- conditions and procedures ----------------------------------------------------------------

def is_active_condition(condition: ConditionEntry, as_of: datetime) -> bool:
    if condition.verification_status in EXCLUDED_VERIFICATION_STATUSES:
        return False
    if condition.clinical_status is not None:
        return condition.clinical_status in ACTIVE_CLINICAL_STATUSES
    # No clinical status (allowed only for entered-in-error in US Core), or one coded outside its
    # value set: active unless abated (an unreadable status never hides the condition).
    return condition.abatement is None or condition.abatement > as_of


def active_conditions(ctx: RuleContext, concept: str) -> tuple[ConditionEntry, ...]:
    return tuple(c for c in ctx.record.conditions_of(concept) if is_active_condition(c, ctx.as_of))


def conditions_in_history(ctx: RuleContext, concept: str) -> tuple[ConditionEntry, ...]:
    """Any status but entered-in-error or refuted (topics that say "history")."""
    return tuple(
        c for c in ctx.record.conditions_of(concept) if c.verification_status not in EXCLUDED_VERIFICATION_STATUSES
    )


def completed_procedures(ctx: RuleContext, concept: str, since: datetime | None = None) -> Iterator[ProcedureEntry]:
    """Completed procedures of a kind up to the call (since `since`), newest first; read lazily."""
    return (
        p for p in ctx.record.procedures_of(concept, since=since, statuses=_COMPLETED)
        if p.status in _COMPLETED and p.performed is not None and p.performed <= ctx.as_of
    )


# --- wording for card details -----------------------------------------------------------------

def fmt_date(moment: datetime | None) -> str:
    return moment.date().isoformat() if moment else "unknown date"


def fmt_number(value: float) -> str:
    return f"{value:.2f}".rstrip("0").rstrip(".")


def fmt_reported(lab: LabResult) -> str:
    """The value as the lab reported it ('42 nmol/L'); the normalized value when nothing was reported."""
    comparator = lab.comparator or ""
    if lab.original_text:
        return lab.original_text if lab.original_text.startswith(comparator) else comparator + lab.original_text
    return f"{comparator}{fmt_number(lab.value)} {lab.unit}" if lab.value is not None else "no value"


def fmt_result(lab: LabResult) -> str:
    """The result as reported, with the value compared in parentheses when the rule compares it in
    another unit, and its date: '42 nmol/L (16.8 ng/mL) on 2026-09-26'."""
    shown = fmt_reported(lab)
    # A value reported without a unit already says which unit it was read in.
    if lab.original_text and lab.value is not None and lab.unit_assumed is None and (
        _reported_number(lab.original_text) != round(lab.value, 6)
        or _unit_spelling(lab.original_text.partition(" ")[2]) != _unit_spelling(lab.unit or "")
    ):
        shown += f" ({lab.comparator or ''}{fmt_converted(lab.value)} {lab.unit})"
    return f"{shown} on {fmt_date(lab.effective)}"


def _unit_spelling(unit: str) -> str:
    """A unit without the spelling differences of UCUM and print ('mL/min/{1.73_m2}' = 'mL/min/1.73m2')."""
    return "".join(ch for ch in unit.lower() if ch not in " {}_^")


def fmt_converted(value: float) -> str:
    """A converted value to three significant figures at most (16.8, 8.02, 120): no false precision."""
    return fmt_number(float(f"{value:.3g}")) if abs(value) < 1000 else fmt_number(round(value))


def _reported_number(text: str) -> float | None:
    try:
        return round(float(text.split()[0].lstrip("<>=")), 6)
    except (ValueError, IndexError):
        return None


def days_between(earlier: datetime, later: datetime) -> int:
    return (later - earlier).days


def fmt_condition(condition: ConditionEntry) -> str:
    """'Renal osteodystrophy (ICD-10-CM N25.0), active, onset 2023-02-01'."""
    codes = ", ".join(c.code for c in condition.codings if c.code)
    text = condition.name + (f" ({codes})" if codes else "")
    if condition.clinical_status:
        text += f", {condition.clinical_status}"
    elif "clinicalStatus" in condition.unread_statuses:
        text += ", status not readable (not an R4 clinical status code)"
    else:
        text += ", status not recorded"
    if condition.onset:
        text += f", onset {fmt_date(condition.onset)}"
    if condition.abatement:
        text += f", resolved {fmt_date(condition.abatement)}"
    return text


# --- the dental referral (dental-clearance, osteonecrosis-of-jaw) -------------------------------


def dental_referral_suggestion(ctx: RuleContext, *, reason: str) -> Suggestion:
    referral = order_suggestions.order_codings(ctx, "dental-care-referral")[0]
    return Suggestion(
        label="Refer for dental evaluation",
        actions=(
            Action(
                type="create",
                description="Referral for dental evaluation",
                resource=orders.service_request(
                    codings=(referral,), text=referral.display, reason=reason,
                    category=order_suggestions.order_codings(ctx, "referral-service-category")[0],
                    patient_id=ctx.patient_id, encounter_id=ctx.encounter_id,
                ),
            ),
        ),
        is_recommended=True,
    )


def fmt_condition_dated(condition: ConditionEntry) -> str:
    """`fmt_condition`, with the recorded date when there is no onset (every line then has a date)."""
    text = fmt_condition(condition)
    if condition.onset is None and condition.recorded is not None:
        text += f", recorded {fmt_date(condition.recorded)}"
    return text


# --- wording of elapsed time ------------------------------------------------------------------

_DAYS_PER_MONTH = 30.4375  # calendar average, for wording only ("about 8 months")


def fmt_elapsed(days: int) -> str:
    """'250 days (about 8 months)'."""
    months = round(days / _DAYS_PER_MONTH)
    if months < 2:
        return f"{days} days"
    return f"{days} days (about {months} months)"


