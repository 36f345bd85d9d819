"""Clinical sub-routines shared by the rules, each stated once (like OpioidCDSRoutines).

Value set *names* appear here (they are the vocabulary of the knowledge base); codes and numbers
never do: codes are in seeds/valuesets, numbers in seeds/thresholds.toml.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime, timedelta

from cds_service.cards import Action, Suggestion, orders
from cds_service.record.model import ConditionEntry, LabResult, MedicationEntry, PatientRecord, ProcedureEntry
from cds_service.rules.concepts import kidney
from cds_service.rules.concepts import order_suggestions
from cds_service.rules.context import RuleContext

DENOSUMAB = frozenset({"denosumab-60mg", "denosumab-120mg", "denosumab-unspecified-strength"})
BISPHOSPHONATE = frozenset({"zoledronic-acid", "oral-bisphosphonate", "iv-bisphosphonate-other"})
FOLLOW_ON_AGENT = BISPHOSPHONATE | {"other-osteoporosis-agent"}

_COMPLETED = frozenset({"completed"})
ACTIVE_CLINICAL_STATUSES = frozenset({"active", "recurrence", "relapse"})
EXCLUDED_VERIFICATION_STATUSES = frozenset({"entered-in-error", "refuted"})
# A dose was given when an administration or dispense completed, or a statement says it was taken.
DOSE_GIVEN_STATUSES = {
    "MedicationAdministration": frozenset({"completed"}),
    "MedicationDispense": frozenset({"completed"}),
    "MedicationStatement": frozenset({"active", "completed"}),
    "MedicationRequest": frozenset({"completed"}),
}
_DOSE_GIVEN_ANY_SOURCE = frozenset().union(*DOSE_GIVEN_STATUSES.values())
_DOSE_RECORD_SOURCES = frozenset({"MedicationAdministration", "MedicationDispense", "MedicationStatement"})
_ORDER_SOURCE = frozenset({"MedicationRequest"})
ACTIVE_ORDER_STATUSES = frozenset({"active", "on-hold"})
ACTIVE_STATEMENT_STATUSES = frozenset({"active", "intended"})
_ACTIVE_STATUSES = ACTIVE_ORDER_STATUSES | ACTIVE_STATEMENT_STATUSES
_ORDER_AND_STATEMENT_SOURCES = frozenset({"MedicationRequest", "MedicationStatement"})
ORDER_INTENTS = frozenset({"order", "original-order", "reflex-order", "filler-order", "instance-order", "plan"})


def is_denosumab(entry: MedicationEntry) -> bool:
    return bool(entry.concepts & DENOSUMAB)


def is_follow_on_agent(entry: MedicationEntry) -> bool:
    return bool(entry.concepts & FOLLOW_ON_AGENT)


# The catalog's two regimens, named by their dose; the dose itself is a reviewed threshold.
REGIMEN_DOSE_THRESHOLD = {"60mg": "regimen_60mg_dose_mg", "120mg": "regimen_120mg_dose_mg"}
_DOSE_ROUNDING_MG = 0.5  # a dose recorded as 59.99 or 120.0 mg is the same dose


def regimen_of(ctx: RuleContext, entry: MedicationEntry) -> str | None:
    """'60mg' (every 6 months) or '120mg' (every 4 weeks): from the product, else the dose, else
    the text (a product named in the medication's name, e.g. "Xgeva", or a dose written in the
    dosage text or the name, e.g. "120 mg subcutaneously every 4 weeks")."""
    return (
        _regimen_of_concepts(entry.concepts)
        or regimen_of_dose(ctx, entry.dose_mg)
        or _regimen_of_concepts(entry.name_concepts)
        or regimen_of_dose(ctx, dose_mg_in_text(entry.dosage_text))
        or regimen_of_dose(ctx, dose_mg_in_text(entry.name))
    )


def product_regimen(entry: MedicationEntry) -> str | None:
    """The regimen the product itself stands for (its codes, else a product named in its name)."""
    return _regimen_of_concepts(entry.concepts) or _regimen_of_concepts(entry.name_concepts)


def _regimen_of_concepts(concepts: frozenset[str]) -> str | None:
    if "denosumab-60mg" in concepts:
        return "60mg"
    if "denosumab-120mg" in concepts:
        return "120mg"
    return None


def regimen_of_dose(ctx: RuleContext, dose_mg: float | None) -> str | None:
    """The regimen whose dose this is (60 mg or 120 mg, from seeds/thresholds.toml), else None."""
    if dose_mg is None:
        return None
    for regimen, threshold in REGIMEN_DOSE_THRESHOLD.items():
        if abs(dose_mg - ctx.threshold(threshold)) < _DOSE_ROUNDING_MG:
            return regimen
    return None


# A dose in free text: "120 mg", "60mg", "120 mg/1.7 mL"; never a concentration such as "70 mg/mL".
_DOSE_IN_TEXT = re.compile(r"(?<![\d.])(\d+(?:\.\d+)?)\s*(?:mg|milligrams?)\b(?!\s*/\s*m?l\b)", re.IGNORECASE)


def dose_mg_in_text(text: str | None) -> float | None:
    """The first dose in mg written in free text (e.g. an order's dosage text), else None."""
    match = _DOSE_IN_TEXT.search(text or "")
    return float(match.group(1)) if match else None


# --- medications -------------------------------------------------------------------------------

def _dose_records(record: PatientRecord, as_of: datetime, concepts: frozenset[str], sources) -> Iterator[MedicationEntry]:
    """Records of `sources` saying a dose of the drug was given up to `as_of`, newest first."""
    return (
        m for m in record.medications_of(concepts, statuses=_DOSE_GIVEN_ANY_SOURCE, sources=sources)
        if m.date is not None and m.date <= as_of and m.status in DOSE_GIVEN_STATUSES[m.source]
    )


def doses_given(record: PatientRecord, as_of: datetime, concepts: frozenset[str]) -> tuple[MedicationEntry, ...]:
    """Every dose of a drug given up to `as_of`, newest first.

    From administrations, dispenses and statements; completed orders count only when none of those
    exist (card catalog: "Dose history").
    """
    return tuple(_dose_records(record, as_of, concepts, _DOSE_RECORD_SOURCES)) or tuple(
        _dose_records(record, as_of, concepts, _ORDER_SOURCE)
    )


def last_dose_given(record: PatientRecord, as_of: datetime, concepts: frozenset[str]) -> MedicationEntry | None:
    """The newest of `doses_given`, read without going further back than it."""
    for sources in (_DOSE_RECORD_SOURCES, _ORDER_SOURCE):
        newest = next(_dose_records(record, as_of, concepts, sources), None)
        if newest is not None:
            return newest
    return None


def last_denosumab_dose(ctx: RuleContext) -> MedicationEntry | None:
    return last_dose_given(ctx.record, ctx.as_of, DENOSUMAB)


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
    """Active orders and statements of any of `concepts`, newest first."""
    return tuple(
        m for m in record.medications_of(concepts, statuses=_ACTIVE_STATUSES, sources=_ORDER_AND_STATEMENT_SOURCES)
        if is_active_medication(m)
    )


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
    if lab.original_text and lab.value is not None and (
        _reported_number(lab.original_text) != round(lab.value, 6)
        or _unit_spelling(lab.original_text.partition(" ")[2]) != _unit_spelling(lab.unit or "")
    ):
        shown += f" ({fmt_converted(lab.value)} {lab.unit})"
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


def fmt_interval(days: float) -> str:
    """A dosing or monitoring interval in words: 'daily', 'weekly', 'every 4 weeks', 'monthly',
    'every 6 months', 'yearly' ('about every 6 months' for 180 days); 'every N days' only when no
    calendar unit fits (cards: intervals in words, never 'every 183 days')."""
    whole = round(days)
    if whole == 1:
        return "daily"
    if whole == 7:
        return "weekly"
    if whole % 7 == 0 and whole <= 84:
        return f"every {whole // 7} weeks"
    months = days / _DAYS_PER_MONTH
    nearest = round(months)
    if whole >= 28 and nearest >= 1 and abs(months - nearest) <= 0.03 * nearest + 0.05:
        words = {1: "monthly", 12: "yearly"}.get(nearest, f"every {nearest} months")
        return words if abs(months - nearest) <= 0.05 else f"about {words}"
    return f"every {whole} days"


def days_between(earlier: datetime, later: datetime) -> int:
    return (later - earlier).days


def fmt_condition(condition: ConditionEntry) -> str:
    """'Renal osteodystrophy (ICD-10-CM N25.0), active, onset 2023-02-01'."""
    codes = ", ".join(c.code for c in condition.codings if c.code)
    text = condition.name + (f" ({codes})" if codes else "")
    text += f", {condition.clinical_status or 'status not recorded'}"
    if condition.onset:
        text += f", onset {fmt_date(condition.onset)}"
    if condition.abatement:
        text += f", resolved {fmt_date(condition.abatement)}"
    return text


# --- indications, other denosumab orders, loading doses (dosing-regimen, dose-indication-mismatch,
# duplicate-denosumab) ----------------------------------------------------------------------------

# Indications of each regimen (card catalog, "Regimen"), as value set names.
OSTEOPOROSIS_TYPE_INDICATIONS = ("osteoporosis", "osteopenia", "treatment-induced-bone-loss")
ONCOLOGIC_INDICATIONS = ("bone-metastases", "multiple-myeloma", "giant-cell-tumor-of-bone", "hypercalcemia-of-malignancy")
# Indications whose 120 mg regimen starts with loading doses on days 8 and 15 (Xgeva label).
LOADING_DOSE_INDICATIONS = ("giant-cell-tumor-of-bone", "hypercalcemia-of-malignancy")


@dataclass(frozen=True)
class IndicationEvidence:
    """Where the record says a patient has an indication: an active condition or the order's reason."""

    concept: str  # value set name, e.g. "bone-metastases"
    description: str  # for card details: "Secondary malignant neoplasm of bone (C79.51), active, onset ..."


def indication_evidence(
    ctx: RuleContext, order: MedicationEntry, concepts: tuple[str, ...]
) -> tuple[IndicationEvidence, ...]:
    """Evidence of any of `concepts`: the patient's active conditions, and the order's own reason
    (reasonCode, or the Condition its reasonReference points to, at any status but entered-in-error
    or refuted: the prescriber named it as the reason for this very order)."""
    found: list[IndicationEvidence] = []
    seen_conditions: set[int] = set()
    for concept in concepts:
        for condition in active_conditions(ctx, concept):
            seen_conditions.add(id(condition))
            found.append(IndicationEvidence(concept, fmt_condition(condition)))
    for condition in referenced_conditions(ctx, order):
        for concept in concepts:
            if concept in condition.concepts and id(condition) not in seen_conditions:
                seen_conditions.add(id(condition))
                found.append(IndicationEvidence(concept, f"order reason: {fmt_condition(condition)}"))
    reason_text = ", ".join(c.display or c.code for c in order.reason_codes if c.display or c.code)
    for concept in concepts:
        if concept in order.reason_concepts:
            found.append(IndicationEvidence(concept, f"order reason: {reason_text}"))
    return tuple(found)


def referenced_conditions(ctx: RuleContext, order: MedicationEntry) -> tuple[ConditionEntry, ...]:
    """The patient's Conditions an order's reasonReference points to ("Condition/<id>", or a full URL)."""
    wanted = {ref.rstrip("/").split("Condition/")[-1] for ref in order.reason_references if "Condition/" in ref}
    return tuple(
        c for c in ctx.record.conditions_with_ids(wanted) if c.verification_status not in EXCLUDED_VERIFICATION_STATUSES
    )


def other_denosumab_orders(ctx: RuleContext, order: MedicationEntry) -> tuple[MedicationEntry, ...]:
    """Denosumab orders besides `order`: every other draft of this call (selected or not) and the
    active orders in the history — never the draft itself, also when the EHR sent it in both
    draftOrders and the MedicationRequest prefetch (matched by id). Stopped, completed and
    entered-in-error orders are not active."""
    draft_ids = {d.id for d in ctx.record.draft_orders if d.id}
    drafts = [d for d in ctx.record.draft_orders if d is not order and is_denosumab(d)]
    history = [
        m for m in ctx.record.medications_of(DENOSUMAB, statuses=ACTIVE_ORDER_STATUSES, sources=_ORDER_SOURCE)
        if is_active_medication(m) and m.id not in draft_ids
    ]
    return tuple(drafts + history)


def is_loading_dose_order(ctx: RuleContext, order: MedicationEntry) -> bool:
    """An order for the loading doses of the 120 mg regimen (days 8 and 15 of the first month).

    How EHRs write them: a weekly schedule (timing every 7 days or less), or dosage text that
    names both loading days ("on days 8 and 15") or says "loading".
    """
    second_day = ctx.threshold("gctb_loading_second_dose_day")
    third_day = ctx.threshold("gctb_loading_third_dose_day")
    timing = order.timing
    if timing is not None and timing.period_days is not None and timing.period_days <= third_day - second_day:
        return True
    words = set(re.findall(r"[a-z]+|\d+", (order.dosage_text or "").lower()))
    if "loading" in words:
        return True
    return bool(words & {"day", "days"}) and {fmt_number(second_day), fmt_number(third_day)} <= words


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


# --- denosumab history and transition to a bisphosphonate (overdue-dose, transition-needed,
# transition-timing) -----------------------------------------------------------------------------

# A regimen's dosing interval and the grace after it before a dose counts as late (topic overdue-dose).
REGIMEN_INTERVAL_AND_GRACE = {
    "60mg": ("regimen_60mg_interval_days", "regimen_60mg_grace_days"),
    "120mg": ("regimen_120mg_interval_days", "regimen_120mg_grace_days"),
}
REGIMEN_WORDS = {"60mg": "60 mg every 6 months", "120mg": "120 mg every 4 weeks"}
# Records that never amounted to a drug given or ordered (cancelled, refused, in error, only intended).
WITHDRAWN_MEDICATION_STATUSES = frozenset(
    {"entered-in-error", "cancelled", "not-done", "declined", "not-taken", "intended", "draft"}
)
_DAYS_PER_MONTH = 30.4375  # calendar average, for wording only ("about 8 months")


def history_regimen(ctx: RuleContext) -> str | None:
    """The regimen the patient has been on: the last dose's, else that of the newest denosumab
    record (order, statement, dispense) whose regimen is known (e.g. a dose recorded only by the
    ingredient code, under an order for Prolia)."""
    last = last_denosumab_dose(ctx)
    if last is not None and regimen_of(ctx, last):
        return regimen_of(ctx, last)
    for entry in ctx.record.medications_of(DENOSUMAB):  # newest first
        if entry.status not in WITHDRAWN_MEDICATION_STATUSES and regimen_of(ctx, entry):
            return regimen_of(ctx, entry)
    return None


def stopped_denosumab_record(ctx: RuleContext) -> MedicationEntry | None:
    """The newest denosumab order or statement, when its status says therapy was stopped."""
    newest = next(ctx.record.medications_of(DENOSUMAB, sources=_ORDER_AND_STATEMENT_SOURCES), None)
    return newest if newest is not None and newest.status == "stopped" else None


def bisphosphonates_since(ctx: RuleContext, since: datetime) -> tuple[MedicationEntry, ...]:
    """Bisphosphonates given or ordered on or after `since`: administrations, dispenses,
    statements and orders in the history (undated ones only when still active), and the other
    draft orders of this call. The focused draft orders themselves are not counted."""
    dated = [
        m for m in ctx.record.medications_of(BISPHOSPHONATE, since=since)
        if m.status not in WITHDRAWN_MEDICATION_STATUSES and m.date is not None and m.date <= ctx.as_of
    ]
    # Undated: only active ones, and not one merely intended (WITHDRAWN_MEDICATION_STATUSES).
    undated_active = [
        m for m in active_medications(ctx.record, BISPHOSPHONATE)
        if m.date is None and m.status not in WITHDRAWN_MEDICATION_STATUSES
    ]
    history = dated + undated_active
    drafts = [d for d in ctx.record.draft_orders if d.concepts & BISPHOSPHONATE and d not in ctx.orders]
    return tuple(history + drafts)


def egfr_allows_zoledronic_acid(ctx: RuleContext) -> tuple[LabResult | None, bool | None]:
    """(latest eGFR within egfr_lookback_days, whether it is at or above egfr_zoledronic_acid_min).

    None for the verdict when there is no eGFR, or a reported bound ("<60", ">30") that does not
    settle it.
    """
    egfr = kidney.latest_egfr(ctx)
    if egfr is None:
        return None, None
    limit = ctx.threshold("egfr_zoledronic_acid_min")
    if egfr.value >= limit and egfr.comparator not in ("<", "<="):
        return egfr, True
    if egfr.value < limit and egfr.comparator not in (">", ">="):
        return egfr, False
    return egfr, None


_GIVEN_AS = {
    "MedicationAdministration": "given",
    "MedicationDispense": "dispensed",
    "MedicationStatement": "recorded as taken",
    "MedicationRequest": "ordered",
}


def fmt_medication(entry: MedicationEntry) -> str:
    """'Prolia 60 mg/mL syringe, given 2026-05-28 (MedicationAdministration/madm-1, completed)'."""
    where = entry.reference or entry.source
    return f"{entry.name}, {_GIVEN_AS[entry.source]} {fmt_date(entry.date)} ({where}, {entry.status or 'no status'})"


def fmt_elapsed(days: int) -> str:
    """'250 days (about 8 months)'."""
    months = round(days / _DAYS_PER_MONTH)
    if months < 2:
        return f"{days} days"
    return f"{days} days (about {months} months)"


def oral_bisphosphonate_order_action(ctx: RuleContext, *, reason: str) -> Action:
    """The oral transition bisphosphonate (when zoledronic acid is contraindicated), weekly."""
    return order_suggestions.medication_order_action(ctx, "transition-oral-bisphosphonate-order", reason=reason)


def transition_due_date(ctx: RuleContext, last_dose: MedicationEntry) -> datetime:
    """When the follow-on bisphosphonate is due: about 6 months after the last 60 mg injection."""
    return last_dose.date + timedelta(days=ctx.threshold("transition_due_days"))
