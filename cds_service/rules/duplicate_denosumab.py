"""duplicate-denosumab: prevents two denosumab therapies at once (e.g. Prolia with Xgeva, or a
reference product with its biosimilar: the same active ingredient).

When: a denosumab order, and (any product, biosimilars included):
- denosumab drafts of this request (every draft, not only the selected ones) for the same day
  (`dose_history.draft_moment`), or two standing (repeating) drafts, that do not form a valid
  schedule (a 120 mg loading-dose order beside the 120 mg regimen, for giant cell tumour of bone
  or hypercalcemia of malignancy) — or drafts that mix the two regimens: critical;
- an active denosumab order in the history (`indications.active_denosumab_orders`; never the
  draft itself, also when the EHR sends it in the prefetch) of the other regimen: critical; of
  the same regimen (a standing order re-ordered, a switch to a biosimilar): warning.
  Drafts days or weeks apart are dose-too-soon's concern, not duplicates.
Linear in the number of drafts: each is compared with its neighbour in moment order only.
Then: the card lists every order involved (product, status, date, dose, interval in words) and
says to keep one (discontinue the other); suggests removing each focused draft involved.
Source: Prolia ISI ("Patients receiving Prolia should not receive Xgeva"); Xgeva label.
"""

from __future__ import annotations

import math
from datetime import timedelta

from cds_service.cards import Finding
from cds_service.record.model import MedicationEntry
from cds_service.rules import common
from cds_service.rules.concepts import dose_history, indications, medications, order_suggestions, regimen as regimens
from cds_service.rules.context import RuleContext

TOPIC = "duplicate-denosumab"
NEEDS = frozenset({"medications"})


def evaluate(ctx: RuleContext) -> Finding | None:
    focused = {id(o) for o in ctx.orders}
    drafts = sorted(
        (d for d in ctx.record.draft_orders if medications.is_denosumab(d)), key=lambda d: dose_history.draft_moment(ctx, d)
    )
    to_remove: dict[int, MedicationEntry] = {}  # the focused drafts the card suggests removing
    involved: dict[int, MedicationEntry] = {}
    critical = False
    last_known: MedicationEntry | None = None  # the latest draft so far whose regimen is known
    for previous, draft in zip(drafts, drafts[1:]):
        if regimens.regimen_of(ctx, previous):
            last_known = previous
        mixes = last_known is not None and regimens.regimen_of(ctx, draft) not in (None, regimens.regimen_of(ctx, last_known))
        pair = (last_known, draft) if mixes else (previous, draft)
        if not (mixes or (coincide_or_overlap(ctx, previous, draft) and not is_valid_schedule(ctx, previous, draft))):
            continue
        if not any(id(entry) in focused for entry in pair):
            continue
        critical = True
        for entry in pair:
            involved[id(entry)] = entry
            if id(entry) in focused:  # either draft of the pair may be the one to keep: offer both
                to_remove[id(entry)] = entry
    active = indications.active_denosumab_orders(ctx)
    for order in ctx.orders if active else ():
        order_regimen = regimens.regimen_of(ctx, order)
        for other in active:
            other_regimen = regimens.regimen_of(ctx, other)
            if order_regimen and other_regimen and order_regimen != other_regimen:
                critical = True
            involved[id(other)] = other
        involved[id(order)] = order
        to_remove[id(order)] = order
    if not involved:
        return None
    indicator = "critical" if critical else "warning"
    return duplicate_finding(ctx, list(involved.values()), list(to_remove.values()), indicator, bool(active))


def is_standing(order: MedicationEntry) -> bool:
    """A repeating order (an interval, not a single dose)."""
    timing = order.timing
    return timing is not None and timing.period_days is not None and timing.count != 1


def coincide_or_overlap(ctx: RuleContext, first: MedicationEntry, second: MedicationEntry) -> bool:
    """Same day, or two standing orders whose schedules run at the same time."""
    same_day = dose_history.draft_moment(ctx, second) - dose_history.draft_moment(ctx, first) < timedelta(days=1)
    return same_day or (is_standing(first) and is_standing(second))


def is_valid_schedule(ctx: RuleContext, first: MedicationEntry, second: MedicationEntry) -> bool:
    """A 120 mg loading-dose order beside the 120 mg regimen, for an indication started with
    loading doses (dose-too-soon reads the same schedule)."""
    if regimens.regimen_of(ctx, first) == "60mg" or regimens.regimen_of(ctx, second) == "60mg":
        return False
    if not (indications.is_loading_dose_order(ctx, first) or indications.is_loading_dose_order(ctx, second)):
        return False
    return indications.has_loading_dose_indication(ctx, first) or indications.has_loading_dose_indication(ctx, second)


def describe(ctx: RuleContext, order: MedicationEntry) -> str:
    """'Xgeva 120 mg/1.7 mL vial (MedicationRequest/mr-9), active order, written 2026-10-01: 120 mg every 4 weeks'."""
    if order.is_draft_order:
        where = f"draft order in this session, for {common.fmt_date(dose_history.draft_moment(ctx, order))}"
    else:
        where = f"{order.status} order, written {common.fmt_date(order.date)}"
    dosage = []
    if order.dose_mg is not None:
        dosage.append(f"{common.fmt_number(order.dose_mg)} mg")
    if order.timing is not None and order.timing.period_days is not None and 0 < order.timing.period_days < math.inf:
        dosage.append(regimens.interval_in_words(order.timing.period_days))
    elif order.dosage_text:
        dosage.append(order.dosage_text)
    regimen = regimens.regimen_of(ctx, order)
    text = f"**{order.name}**" + (f" ({order.reference})" if order.reference else "") + medications.name_match_note(order) + f" — {where}"
    if dosage:
        text += ": " + " ".join(dosage)
    if regimen:
        text += f" [{regimens.regimen_name(regimen)} regimen]"
    return text


def duplicate_finding(
    ctx: RuleContext, entries: list[MedicationEntry], to_remove: list[MedicationEntry], indicator: str, has_active: bool,
) -> Finding:
    listed = "\n".join(f"- {describe(ctx, entry)}" for entry in entries)
    kinds = {regimens.regimen_of(ctx, e) for e in entries} - {None}
    mixed = len(kinds) > 1
    detail = (
        "More than one denosumab order for this patient:\n\n" + listed + "\n\n"
        + (
            "Prolia-type (60 mg) and Xgeva-type (120 mg) products contain the same active ingredient: "
            "a patient receiving one must not receive the other. **Discontinue one of them.**"
            if mixed else
            "All denosumab products (reference products and biosimilars) are the same active ingredient: "
            "**keep one order** — remove the new draft, or discontinue the existing order if this one replaces it."
        )
    )
    suggestions = tuple(
        suggestion
        for order in to_remove
        if (suggestion := order_suggestions.cancel_orders_suggestion((order,), f"Remove the new draft order for {order.name}"))
    )
    summary = (
        "Duplicate denosumab: Prolia-type and Xgeva-type orders together" if mixed
        else "Duplicate denosumab: drafts for the same time" if indicator == "critical" and not has_active
        else "Duplicate denosumab: another order of the same regimen exists"
    )
    return Finding(topic=TOPIC, indicator=indicator, summary=summary, detail=detail, suggestions=suggestions)
