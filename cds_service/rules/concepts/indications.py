"""Indications of the two regimens, the 120 mg loading doses, and the other denosumab orders
(dosing-regimen, dose-indication-mismatch, duplicate-denosumab, dose-too-soon).

- Indication evidence: the patient's active conditions, and the order's own reason (reasonCode,
  or the Condition its reasonReference points to, at any status but entered-in-error/refuted).
- Loading doses (Xgeva label, giant cell tumour of bone and hypercalcemia of malignancy): 120 mg
  on days 1, 8, 15 and 29 of a course; the course starts with the first 120 mg dose after
  loading_course_gap_days (12 weeks) or more without one; within loading_course_window_days (35)
  of its start, doses loading_dose_min_gap_days (6) or more apart are expected.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import datetime

from cds_service.record.model import ConditionEntry, MedicationEntry
from cds_service.rules.common import EXCLUDED_VERIFICATION_STATUSES, active_conditions, fmt_condition, fmt_number
from cds_service.rules.concepts.medications import (
    ACTIVE_ORDER_STATUSES, DENOSUMAB, ORDER_SOURCE, is_active_medication, is_denosumab,
)
from cds_service.rules.context import RuleContext

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
    """Evidence of any of `concepts` (module docstring)."""
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


def has_loading_dose_indication(ctx: RuleContext, order: MedicationEntry) -> bool:
    return bool(indication_evidence(ctx, order, LOADING_DOSE_INDICATIONS))


def active_denosumab_orders(ctx: RuleContext) -> tuple[MedicationEntry, ...]:
    """Active denosumab orders of the history, never a draft of this call (also when the EHR sent
    it in both draftOrders and the MedicationRequest prefetch: matched by id)."""
    draft_ids = {d.id for d in ctx.record.draft_orders if d.id}
    return tuple(
        m for m in ctx.record.medications_of(DENOSUMAB, statuses=ACTIVE_ORDER_STATUSES, sources=ORDER_SOURCE)
        if is_active_medication(m) and m.id not in draft_ids
    )


def other_denosumab_orders(ctx: RuleContext, order: MedicationEntry) -> tuple[MedicationEntry, ...]:
    """Denosumab orders besides `order`: every other draft of this call (selected or not) and the
    active orders in the history. Stopped, completed and entered-in-error orders are not active."""
    drafts = [d for d in ctx.record.draft_orders if d is not order and is_denosumab(d)]
    return tuple(drafts) + active_denosumab_orders(ctx)


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


def is_expected_loading_dose(ctx: RuleContext, course_start: datetime, previous: datetime, moment: datetime) -> bool:
    """A 120 mg dose at `moment` that is part of the loading phase: within loading_course_window_days
    of the course start and loading_dose_min_gap_days or more after `previous`."""
    if (moment.date() - previous.date()).days < ctx.threshold("loading_dose_min_gap_days"):
        return False
    return (moment.date() - course_start.date()).days <= ctx.threshold("loading_course_window_days")
