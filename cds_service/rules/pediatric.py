"""pediatric: prevents denosumab in children, in whom safety and effectiveness are not established
and severe, life-threatening hypercalcemia has been reported (osteogenesis imperfecta trials).

When (card catalog v2): a denosumab order for a patient younger than pediatric_age_below_years
(18), age taken from Patient.birthDate at the time of the call (no birth date: no card).
Then: warning with the age and birth date (and an osteogenesis imperfecta or giant cell tumour of
bone diagnosis when present); suggests cancelling the draft. Instead info ("confirm skeletal
maturity") for a 120 mg order with a giant cell tumour of bone indication (an active diagnosis or
the order's reason) at age gctb_adolescent_min_age_years (12) to 17: Xgeva is indicated for GCTB in
skeletally mature adolescents.
Source: Prolia US PI, Pediatric Use (not established; severe hypercalcemia reported); Xgeva US PI,
Indications and Usage (GCTB in adults and skeletally mature adolescents) and Pediatric Use.
"""

from __future__ import annotations

from cds_service.cards import Finding
from cds_service.rules import common
from cds_service.rules.concepts import indications, order_suggestions
from cds_service.rules.concepts.regimen import regimen_of
from cds_service.rules.context import RuleContext

TOPIC = "pediatric"
NEEDS = frozenset({"patient", "conditions"})


def evaluate(ctx: RuleContext) -> Finding | None:
    age = ctx.record.patient.age_in_years(ctx.as_of)
    # No birth date, or one after the call (a data error), tells nothing about age.
    if age is None or age < 0 or age >= ctx.threshold("pediatric_age_below_years"):
        return None
    if age >= ctx.threshold("gctb_adolescent_min_age_years"):
        gctb_orders = [
            order for order in ctx.orders
            if regimen_of(ctx, order) == "120mg"
            and indications.indication_evidence(ctx, order, ("giant-cell-tumor-of-bone",))
        ]
        if gctb_orders and len(gctb_orders) == len(ctx.orders):
            return skeletal_maturity_finding(ctx, age, gctb_orders[0])
    return pediatric_finding(ctx, age)


def skeletal_maturity_finding(ctx: RuleContext, age: int, order) -> Finding:
    evidence = indications.indication_evidence(ctx, order, ("giant-cell-tumor-of-bone",))
    lines = [f"- Age **{age}** (born {ctx.record.patient.birth_date.isoformat()})", f"- Order: {order.name} (120 mg regimen)"]
    lines += [f"- Giant cell tumour of bone: {e.description}" for e in evidence]
    detail = (
        "\n".join(lines) + "\n\n"
        "Xgeva-type 120 mg is indicated for giant cell tumour of bone in adults and **skeletally mature** "
        "adolescents. **Confirm skeletal maturity** (closed growth plates on imaging) before the dose; "
        "monitor calcium during and after therapy (hypercalcemia has been reported in patients with growing skeletons)."
    )
    return Finding(
        topic=TOPIC,
        indicator="info",
        summary=f"Giant cell tumour of bone at age {age}: confirm skeletal maturity before Xgeva",
        detail=detail,
    )


def pediatric_finding(ctx: RuleContext, age: int) -> Finding:
    limit = common.fmt_number(ctx.threshold("pediatric_age_below_years"))
    lines = [f"- Age **{age}** (born {ctx.record.patient.birth_date.isoformat()})"]
    lines += [f"- Osteogenesis imperfecta: {common.fmt_condition(c)}" for c in common.active_conditions(ctx, "osteogenesis-imperfecta")]
    gctb = common.active_conditions(ctx, "giant-cell-tumor-of-bone")
    lines += [f"- Giant cell tumour of bone: {common.fmt_condition(c)}" for c in gctb]
    detail = (
        f"Denosumab is not established as safe or effective under {limit} years:\n\n" + "\n".join(lines) + "\n\n"
        "Severe hypercalcemia requiring hospitalization, with acute kidney injury, has been reported in "
        "children (osteogenesis imperfecta trials were stopped early), during treatment and in the weeks to "
        "months after the last dose. "
        + (
            "Xgeva-type 120 mg is labelled for giant cell tumour of bone only in **skeletally mature** adolescents. "
            if gctb else ""
        )
        + "**Do not start without a pediatric bone specialist**; if given, monitor calcium during and after therapy."
    )
    cancel = order_suggestions.cancel_draft_orders_suggestion(ctx, "Cancel the denosumab order")
    return Finding(
        topic=TOPIC,
        indicator="warning",
        summary=f"Denosumab in a patient aged {age}: not established under {limit}, severe hypercalcemia reported",
        detail=detail,
        suggestions=(cancel,) if cancel else (),
    )
