"""atypical-femoral-fracture: prevents another denosumab dose on top of an atypical femoral
fracture, or of the thigh, hip or groin pain that often announces one.

When: a denosumab order and either
- an atypical femoral fracture diagnosis that is clinically active; or
- thigh, hip or groin pain, clinically active, recorded while on denosumab: its onset (else its
  recorded date) on or after the first denosumab dose on record (undated pain counts when the
  patient has had any dose). Pain before denosumab was ever given is not this drug's warning sign.
Then: warning listing the fracture or pain with dates and the denosumab doses; radiographic
evaluation of both femurs before the next dose; suggests the imaging order.
Source: Prolia/Xgeva labels W&P Atypical Femoral Fractures; seed "Atypical Femoral Fractures".
"""

from __future__ import annotations

from cds_service.cards import Action, Finding, Suggestion
from cds_service.cards.orders import service_request
from cds_service.record.model import ConditionEntry, MedicationEntry
from cds_service.rules import common
from cds_service.rules.concepts import dose_history
from cds_service.rules.context import RuleContext

TOPIC = "atypical-femoral-fracture"
NEEDS = frozenset({"conditions", "medications"})


def evaluate(ctx: RuleContext) -> Finding | None:
    fractures = common.active_conditions(ctx, "atypical-femoral-fracture")
    pain_conditions = common.active_conditions(ctx, "thigh-hip-groin-pain")
    if not fractures and not pain_conditions:
        return None
    doses = dose_history.denosumab_doses(ctx)
    first_dose = doses[-1] if doses else None
    pains = tuple(
        pain for pain in pain_conditions
        if first_dose is not None and recorded_while_on_denosumab(pain, first_dose)
    )
    if not fractures and not pains:
        return None
    return femoral_finding(ctx, fractures, pains, doses)


def recorded_while_on_denosumab(pain: ConditionEntry, first_dose: MedicationEntry) -> bool:
    when = pain.onset or pain.recorded
    # Compared by calendar day: pain noted on the day of the first injection counts.
    return when is None or when.date() >= first_dose.date.date()


def femoral_finding(ctx: RuleContext, fractures, pains, doses) -> Finding:
    lines = [f"- Atypical femoral fracture: {common.fmt_condition(c)}" for c in fractures]
    lines += [f"- Pain: {common.fmt_condition_dated(c)}" for c in pains]
    if doses:
        lines.append(
            f"- Denosumab doses on record: {len(doses)}, first {common.fmt_date(doses[-1].date)}, "
            f"last {common.fmt_date(doses[0].date)}"
        )
    detail = (
        "\n".join(lines) + "\n\n"
        "Atypical (subtrochanteric or diaphyseal) femoral fractures occur with long-term denosumab, with "
        "minimal or no trauma, often after weeks of thigh or groin pain, and are frequently bilateral. "
        "**Obtain radiographs of both femurs before the next dose**; with an atypical fracture, consider "
        "interrupting denosumab (benefit-risk) with the bone specialist."
    )
    imaging = service_request(
        codings=(),
        text="X-ray of both femurs, full length (atypical femoral fracture evaluation)",
        reason="Thigh/hip/groin pain or atypical femoral fracture on denosumab",
        patient_id=ctx.patient_id,
        encounter_id=ctx.encounter_id,
    )
    return Finding(
        topic=TOPIC,
        indicator="warning",
        summary=(
            "Atypical femoral fracture on record: evaluate before the next denosumab dose" if fractures
            else "Thigh/hip/groin pain on denosumab: femur radiographs before the next dose"
        ),
        detail=detail,
        suggestions=(
            Suggestion(
                label="Order radiographs of both femurs",
                actions=(Action(type="create", description="Order bilateral full-length femur X-rays", resource=imaging),),
            ),
        ),
    )

