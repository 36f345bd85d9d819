"""Orders the cards suggest: codes from seeds/valuesets, resources from cards/orders.

A lab is not suggested when the same analyte already has a countable result inside the
look-back window the suggesting rule names (card catalog, "One order set per response");
prospective orders (a post-dose series, with `occurrence`) are exempt. The same order on two
cards of one response is left to the response builder (cards/order_set.py).
"""

from __future__ import annotations

from cds_service.cards import Action, Suggestion, orders
from cds_service.knowledge import KnowledgeError
from cds_service.record.model import Coding
from cds_service.record.units import analyte_units
from cds_service.rules.concepts import labs
from cds_service.rules.context import RuleContext


def order_codings(ctx: RuleContext, order_set: str) -> tuple[Coding, ...]:
    """The codes of a value set of things to order (one row, one order), as record Codings."""
    return tuple(Coding(c.system, c.code, c.display) for c in ctx.kb.value_set(order_set).codings)


def analyte_of(ctx: RuleContext, test: Coding) -> str | None:
    """The analyte (lab value set with units) a test code orders, e.g. 17861-6 -> calcium-total."""
    concepts = ctx.kb.concepts_for_codings(((test.system, test.code),))
    units = analyte_units()
    return next((name for name in sorted(concepts) if name in units), None)


def tests_without_recent_result(ctx: RuleContext, order_set: str, lookback_threshold: str) -> tuple[Coding, ...]:
    """The tests of `order_set` whose analyte has no countable result within the look-back."""
    since = ctx.days_before(lookback_threshold)
    return tuple(
        test for test in order_codings(ctx, order_set)
        if (analyte := analyte_of(ctx, test)) is None or not labs.has_result_since(ctx, analyte, since)
    )


def lab_order_actions(
    ctx: RuleContext, order_set: str, *, reason: str, note: str | None = None,
    lookback_threshold: str | None = None, occurrence: dict | None = None,
    category_set: str = "laboratory-service-category",
) -> tuple[Action, ...]:
    """One draft ServiceRequest per test of `order_set` (a lab test, or an imaging study with
    category_set "imaging-service-category"), for this patient and encounter.

    `lookback_threshold`: leave out the tests already resulted inside that window.
    `occurrence`: when it is to be drawn ({"occurrenceTiming": ...} or {"occurrencePeriod": ...}).
    """
    category = order_codings(ctx, category_set)[0]
    tests = (
        tests_without_recent_result(ctx, order_set, lookback_threshold) if lookback_threshold
        else order_codings(ctx, order_set)
    )
    return tuple(
        Action(
            type="create",
            description=f"Order {test.display}",
            resource=orders.service_request(
                codings=(test,), text=test.display, reason=reason, category=category, note=note,
                patient_id=ctx.patient_id, encounter_id=ctx.encounter_id, occurrence=occurrence,
            ),
        )
        for test in tests
    )


def lab_order_suggestion(label: str, actions: tuple[Action, ...], *, is_recommended: bool = False) -> Suggestion | None:
    """A suggestion of these lab orders; None when every test was left out."""
    return Suggestion(label=label, actions=actions, is_recommended=is_recommended) if actions else None


def calcium_recheck_suggestion(ctx: RuleContext, *, reason: str, order_set: str = "calcium-recheck-order",
                               label: str = "Order serum calcium and albumin") -> Suggestion:
    return Suggestion(label=label, actions=lab_order_actions(ctx, order_set, reason=reason), is_recommended=True)


def cancel_order_actions(draft_orders) -> tuple[Action, ...]:
    """Delete actions for draft orders of this call (a draft without an id cannot be deleted)."""
    return tuple(
        Action(type="delete", description=f"Cancel the draft order: {order.name}", resource_id=order.reference)
        for order in draft_orders if order.reference
    )


def cancel_orders_suggestion(draft_orders, label: str) -> Suggestion | None:
    """One suggestion that cancels these draft orders; None when none of them has an id."""
    actions = cancel_order_actions(draft_orders)
    return Suggestion(label=label, actions=actions) if actions else None


def cancel_draft_orders_suggestion(ctx: RuleContext, label: str) -> Suggestion | None:
    """Cancel the draft order(s) that set off this rule."""
    return cancel_orders_suggestion(ctx.orders, label)


def medication_order_action(
    ctx: RuleContext, order_set: str, *, reason: str, dosage_text: str | None = None, timing: dict | None = None
) -> Action:
    """A draft MedicationRequest for the product of `order_set` (one row), for this patient and
    encounter, with the order set's instructions and timing (seeds) unless given here."""
    order_set_seed = ctx.kb.value_set(order_set)
    product = order_codings(ctx, order_set)[0]
    dosage_text = dosage_text or order_set_seed.sig
    if not dosage_text:
        raise KnowledgeError(f"value set {order_set!r} has no sig (instructions) for the order it suggests")
    if timing is None and order_set_seed.timing_repeat is not None:
        timing = {"repeat": dict(order_set_seed.timing_repeat)}
    return Action(
        type="create",
        description=f"Order {product.display}: {dosage_text}",
        resource=orders.medication_request(
            codings=(product,), text=product.display, dosage_text=dosage_text, reason=reason, timing=timing,
            patient_id=ctx.patient_id, encounter_id=ctx.encounter_id,
        ),
    )


def patient_reported_medication_action(ctx: RuleContext, order_set: str, *, note: str) -> Action:
    """Record a medication the patient takes (bought over the counter) as a MedicationStatement
    with the patient as its information source, coded with the product of `order_set`."""
    product = order_codings(ctx, order_set)[0]
    return Action(
        type="create",
        description=f"Record that the patient takes {product.display} (over the counter)",
        resource=orders.medication_statement(codings=(product,), text=product.display, patient_id=ctx.patient_id, note=note),
    )
