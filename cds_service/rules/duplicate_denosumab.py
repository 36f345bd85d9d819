"""duplicate-denosumab: prevents two denosumab therapies at once (e.g. Prolia with Xgeva, or a
reference product with its biosimilar: the same active ingredient).

When: a denosumab order and, besides it (`common.other_denosumab_orders`), another active
denosumab order in the patient's history, or a second denosumab draft order in this call
(order-sign: every draft; order-select: every draft, not only the selected ones). Any product
counts, biosimilars included. The draft itself is never its own duplicate, even when the EHR also
sends it in the MedicationRequest prefetch; stopped, completed and entered-in-error orders are not
active. A 120 mg loading-dose order beside a 120 mg order, for a patient with giant cell tumour of
bone or hypercalcemia of malignancy, is that regimen's loading phase, not a duplicate.
Then: critical card listing each denosumab order found (product, status, date, dose and
interval); suggests removing the new draft order.
Source: Prolia ISI ("Patients receiving Prolia should not receive Xgeva"); Xgeva label.
"""

from __future__ import annotations

import math

from cds_service.cards import Finding
from cds_service.record.model import MedicationEntry
from cds_service.rules import common
from cds_service.rules.common import LOADING_DOSE_INDICATIONS
from cds_service.rules.concepts import order_suggestions
from cds_service.rules.context import RuleContext

TOPIC = "duplicate-denosumab"
NEEDS = frozenset({"medications"})


def evaluate(ctx: RuleContext) -> Finding | None:
    duplicates: dict[int, tuple[MedicationEntry, tuple[MedicationEntry, ...]]] = {}
    for order in ctx.orders:
        others = tuple(o for o in common.other_denosumab_orders(ctx, order) if not is_loading_phase_of(ctx, order, o))
        if others:
            duplicates[id(order)] = (order, others)
    if not duplicates:
        return None
    return duplicate_finding(ctx, list(duplicates.values()))


def is_loading_phase_of(ctx: RuleContext, order: MedicationEntry, other: MedicationEntry) -> bool:
    """One of the two is the loading-dose order of the other's 120 mg regimen, for an indication
    that is started with loading doses."""
    if common.regimen_of(ctx, order) == "60mg" or common.regimen_of(ctx, other) == "60mg":
        return False
    if not (common.is_loading_dose_order(ctx, order) or common.is_loading_dose_order(ctx, other)):
        return False
    return bool(common.indication_evidence(ctx, order, LOADING_DOSE_INDICATIONS))


def describe(ctx: RuleContext, order: MedicationEntry) -> str:
    """'Xgeva 120 mg/1.7 mL vial (MedicationRequest/mr-9), active, ordered 2026-10-01: 120 mg every 28 days'."""
    if order.is_draft_order:
        where = "draft order in this session"
    else:
        where = f"{order.status} order, written {common.fmt_date(order.date)}"
    dosage = []
    if order.dose_mg is not None:
        dosage.append(f"{common.fmt_number(order.dose_mg)} mg")
    if order.timing is not None and order.timing.period_days is not None and 0 < order.timing.period_days < math.inf:
        dosage.append(common.fmt_interval(order.timing.period_days))
    elif order.dosage_text:
        dosage.append(order.dosage_text)
    regimen = common.regimen_of(ctx, order)
    text = f"**{order.name}**" + (f" ({order.reference})" if order.reference else "") + f" — {where}"
    if dosage:
        text += ": " + " ".join(dosage)
    if regimen:
        text += f" [{regimen.replace('mg', ' mg')} regimen]"
    return text


def duplicate_finding(ctx: RuleContext, duplicates) -> Finding:
    listed: list[str] = []
    seen: set[int] = set()
    regimens: set[str] = set()
    for order, others in duplicates:
        for entry in (order, *others):
            regimen = common.regimen_of(ctx, entry)
            if regimen:
                regimens.add(regimen)
            if id(entry) not in seen:
                seen.add(id(entry))
                listed.append(f"- {describe(ctx, entry)}")
    mixed = len(regimens) > 1
    detail = (
        "More than one denosumab order for this patient:\n\n" + "\n".join(listed) + "\n\n"
        + (
            "Prolia-type (60 mg) and Xgeva-type (120 mg) products contain the same active ingredient: "
            "a patient receiving one must not receive the other.\n\n"
            if mixed else
            "All denosumab products (reference products and biosimilars) are the same active ingredient.\n\n"
        )
        + "**Keep one denosumab order**: remove the new draft, or stop the existing order if this one replaces it."
    )
    suggestions = tuple(
        suggestion
        for order, _ in duplicates
        if (suggestion := order_suggestions.cancel_orders_suggestion((order,), f"Remove the new draft order for {order.name}"))
    )
    return Finding(
        topic=TOPIC,
        indicator="critical",
        summary="Duplicate denosumab: " + ("Prolia-type and Xgeva-type orders together" if mixed else "another denosumab order exists"),
        detail=detail,
        suggestions=suggestions,
    )
