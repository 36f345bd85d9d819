"""pediatric: prevents denosumab in children, in whom safety and effectiveness are not established
and severe, life-threatening hypercalcemia has been reported (osteogenesis imperfecta trials).

When: a denosumab order for a patient younger than pediatric_age_below_years, age taken from
Patient.birthDate at the time of the call (no birth date: no card).
Then: warning with the age and birth date (and an osteogenesis imperfecta or giant cell tumour of
bone diagnosis when present: the label allows Xgeva for skeletally mature adolescents with giant
cell tumour of bone); suggests cancelling the draft.
Source: MHRA Drug Safety Update (Prolia not for under 18); seed "Hypercalcemia in Pediatric
Patients"; Xgeva label (GCTB in skeletally mature adolescents).
"""

from __future__ import annotations

from cds_service.cards import Finding
from cds_service.rules import common
from cds_service.rules.concepts import order_suggestions
from cds_service.rules.context import RuleContext

TOPIC = "pediatric"
NEEDS = frozenset({"patient", "conditions"})


def evaluate(ctx: RuleContext) -> Finding | None:
    age = ctx.record.patient.age_in_years(ctx.as_of)
    # No birth date, or one after the call (a data error), tells nothing about age.
    if age is None or age < 0 or age >= ctx.threshold("pediatric_age_below_years"):
        return None
    return pediatric_finding(ctx, age)


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
