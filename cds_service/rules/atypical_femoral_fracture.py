"""atypical-femoral-fracture: another denosumab dose on top of an atypical femoral fracture, or of
the new thigh, hip or groin pain that often announces one.

When (card catalog v2): a denosumab order and either
- an atypical femoral fracture diagnosis (history: any clinical status but refuted or
  entered-in-error); or
- thigh, hip or groin pain, clinically active, with onset (else recorded date) in the last
  femoral_pain_lookback_days (180), on or after the day of the first denosumab dose on record
  ("new or unusual" pain on therapy; pain from before denosumab is not this drug's warning sign),
  and no femur imaging (X-ray, CT or MRI of the femur or thigh, a completed procedure) dated on or
  after the pain's onset. An undated pain counts while any dose is on record.
Then: warning listing the fracture or pain with dates and the denosumab doses, asking for
radiographs of both femurs before the next dose (with a fracture: the other femur too) and
suggesting the imaging order (LOINC 36653-4, XR femur bilateral 2 views). The pain branch rests on
the absence of femur imaging. Overrides: imaging done, no
fracture; AFF known, benefit-risk reviewed.
Source: Prolia and Xgeva US PI, W&P Atypical Subtrochanteric and Diaphyseal Femoral Fractures.
"""

from __future__ import annotations

from datetime import datetime

from cds_service.cards import Absence, Finding, Suggestion
from cds_service.record.model import ConditionEntry, MedicationEntry
from cds_service.rules import common
from cds_service.rules.concepts import dose_history, order_suggestions, recency
from cds_service.rules.context import RuleContext

TOPIC = "atypical-femoral-fracture"
# Procedures (femur imaging) are an absence the pain finding declares (rests_on_absence), not a
# need: a fracture on record must show even when procedures could not be read.
NEEDS = frozenset({"conditions", "medications"})


def evaluate(ctx: RuleContext) -> Finding | None:
    fractures = common.conditions_in_history(ctx, "atypical-femoral-fracture")
    recent_pain = recency.current_diagnoses(ctx, "thigh-hip-groin-pain", "femoral_pain_lookback_days")
    if not fractures and not recent_pain:
        return None
    doses = dose_history.denosumab_doses(ctx)
    first_dose = doses[-1] if doses else None
    pains = tuple(
        pain for pain in recent_pain
        if first_dose is not None and began_on_denosumab(pain, first_dose) and not femur_imaged_since(ctx, pain)
    )
    if not fractures and not pains:
        return None
    return femoral_finding(ctx, fractures, pains, doses)


def began_on_denosumab(pain: ConditionEntry, first_dose: MedicationEntry) -> bool:
    when = recency.diagnosis_date(pain)
    # Compared by calendar day: pain noted on the day of the first injection counts.
    return when is None or when.date() >= first_dose.date.date()


def femur_imaged_since(ctx: RuleContext, pain: ConditionEntry) -> bool:
    """Femur imaging on or after the day the pain began (undated pain: since its look-back start)."""
    since = recency.diagnosis_date(pain) or ctx.days_before("femoral_pain_lookback_days")
    day_start = datetime.combine(since.date(), datetime.min.time(), tzinfo=since.tzinfo)
    return next(common.completed_procedures(ctx, "femur-imaging", day_start), None) is not None


def femur_imaging_suggestion(ctx: RuleContext) -> Suggestion:
    return Suggestion(
        label="Order radiographs of both femurs",
        actions=order_suggestions.lab_order_actions(
            ctx, "femur-imaging-order", category_set="imaging-service-category",
            reason="Thigh, hip or groin pain on denosumab: exclude an atypical femoral fracture",
        ),
        is_recommended=True,
    )


def femoral_finding(ctx: RuleContext, fractures, pains, doses) -> Finding:
    lines = [f"- Atypical femoral fracture: {common.fmt_condition_dated(c)}" for c in fractures]
    days = common.fmt_number(ctx.threshold("femoral_pain_lookback_days"))
    lines += [f"- New pain on denosumab (last {days} days), no femur imaging since: {common.fmt_condition_dated(c)}"
              for c in pains]
    if doses:
        lines.append(
            f"- Denosumab doses on record: {len(doses)}, first {common.fmt_date(doses[-1].date)}, "
            f"last {common.fmt_date(doses[0].date)}"
        )
    todo = []
    if pains:
        todo.append(
            "Atypical (subtrochanteric or diaphyseal) femoral fractures occur with denosumab after minimal or no "
            "trauma, often after weeks of thigh or groin pain, and are often bilateral. **Obtain radiographs of "
            "both femurs before the next dose.**"
        )
    if fractures:
        todo.append(
            "With an atypical femoral fracture on record, continuing denosumab is a benefit-risk decision with the "
            "bone specialist; consider interrupting therapy, and obtain radiographs of both femurs (the other femur "
            "is often affected too)."
        )
    absences = tuple(
        Absence("procedures", f"femur imaging since {common.fmt_date(recency.diagnosis_date(p))}",
                recency.diagnosis_date(p) or ctx.days_before("femoral_pain_lookback_days"))
        for p in pains
    ) if not fractures else ()
    return Finding(
        topic=TOPIC,
        indicator="warning",
        summary=(
            "Atypical femoral fracture on record: review before the next denosumab dose" if fractures
            else "New thigh/hip/groin pain on denosumab: femur radiographs before the next dose"
        ),
        detail="\n".join(lines) + "\n\n" + " ".join(todo),
        suggestions=(femur_imaging_suggestion(ctx),),
        rests_on_absence=absences,
    )
