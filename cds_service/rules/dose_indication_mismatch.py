"""dose-indication-mismatch: prevents the wrong denosumab strength for the patient's disease —
60 mg (which does not prevent skeletal-related events) for bone metastases or myeloma, or
120 mg every 4 weeks (an oncology dose) for osteoporosis.

When: the order's regimen (`regimen.regimen_of`: product, else dose, else text) is
- 60 mg, and the patient has bone metastases or multiple myeloma, and no osteoporosis-type
  indication (osteoporosis, osteopenia, treatment-induced bone loss); or
- 120 mg, and the patient has an osteoporosis-type indication and no oncologic one (bone
  metastases, myeloma, giant cell tumour of bone, hypercalcemia of malignancy).
Indications come from the patient's active conditions and from the order's own reason
(reasonCode, or the Condition its reasonReference points to). An order whose regimen cannot be
told yet gets no card.
Then: warning naming the regimen, how it was determined, and the indications found with their
dates; suggests cancelling the draft to re-order the strength that fits the indication.
Source: Prolia and Xgeva labels, Indications; seed "Clinical Indications and Dosing",
"Cancer Treatment-Induced Bone Loss".
"""

from __future__ import annotations

from cds_service.cards import Absence, Finding, Suggestion
from cds_service.record.model import MedicationEntry
from cds_service.rules import common
from cds_service.rules.concepts import indications, order_suggestions, regimen as regimens
from cds_service.rules.concepts.indications import ONCOLOGIC_INDICATIONS, OSTEOPOROSIS_TYPE_INDICATIONS
from cds_service.rules.context import RuleContext

TOPIC = "dose-indication-mismatch"
NEEDS = frozenset({"conditions"})

# 60 mg does not prevent skeletal-related events: the oncologic indications it misses.
SRE_PREVENTION_INDICATIONS = ("bone-metastases", "multiple-myeloma")


def evaluate(ctx: RuleContext) -> Finding | None:
    for order in ctx.orders:
        regimen = regimens.regimen_of(ctx, order)
        if regimen == "60mg":
            oncologic = indications.indication_evidence(ctx, order, SRE_PREVENTION_INDICATIONS)
            if oncologic and not indications.indication_evidence(ctx, order, OSTEOPOROSIS_TYPE_INDICATIONS):
                return low_dose_for_bone_metastases(ctx, order, oncologic)
        elif regimen == "120mg":
            osteoporosis = indications.indication_evidence(ctx, order, OSTEOPOROSIS_TYPE_INDICATIONS)
            if osteoporosis and not indications.indication_evidence(ctx, order, ONCOLOGIC_INDICATIONS):
                return oncology_dose_for_osteoporosis(ctx, order, osteoporosis)
    return None


def how_regimen_was_told(ctx: RuleContext, order: MedicationEntry) -> str:
    if regimens.product_regimen(order) is not None:
        return "from the product"
    if regimens.regimen_of_dose(ctx, order.dose_mg) is not None:
        return f"from the dose written, {common.fmt_number(order.dose_mg)} mg"
    return "from the order text"


def yearly_exposure_ratio(ctx: RuleContext) -> float:
    """Yearly dose of the 120 mg regimen over that of the 60 mg regimen (about 13)."""
    per_day_120 = ctx.threshold("regimen_120mg_dose_mg") / ctx.threshold("regimen_120mg_interval_days")
    per_day_60 = ctx.threshold("regimen_60mg_dose_mg") / ctx.threshold("regimen_60mg_interval_days")
    return per_day_120 / per_day_60


def evidence_lines(evidence) -> str:
    return "\n".join(f"- {item.description}" for item in evidence)


def cancel_suggestion(order: MedicationEntry, label: str) -> tuple[Suggestion, ...]:
    suggestion = order_suggestions.cancel_orders_suggestion((order,), label)
    return (suggestion,) if suggestion else ()


def low_dose_for_bone_metastases(ctx: RuleContext, order: MedicationEntry, evidence) -> Finding:
    dose_60 = common.fmt_number(ctx.threshold("regimen_60mg_dose_mg"))
    dose_120 = common.fmt_number(ctx.threshold("regimen_120mg_dose_mg"))
    detail = (
        f"**{order.name}** is the {dose_60} mg every 6 months regimen ({how_regimen_was_told(ctx, order)}), "
        f"but the patient has an oncologic bone indication:\n\n{evidence_lines(evidence)}\n\n"
        "No osteoporosis, osteopenia or treatment-induced bone loss is recorded. "
        f"{dose_60} mg is approved for osteoporosis and does **not** prevent skeletal-related events; "
        f"bone metastases and myeloma are treated with **{dose_120} mg every 4 weeks** (Xgeva-type product).\n\n"
        f"**Order {dose_120} mg every 4 weeks instead**, or record the osteoporosis-type indication "
        "if that is what this order treats."
    )
    return Finding(
        topic=TOPIC,
        indicator="warning",
        summary=f"Denosumab {dose_60} mg ordered for a patient with bone metastases or myeloma",
        detail=detail,
        suggestions=cancel_suggestion(order, f"Cancel this order to re-order denosumab {dose_120} mg every 4 weeks"),
        rests_on_absence=(Absence("conditions", "an osteoporosis, osteopenia or treatment-induced bone loss diagnosis"),),
    )


def oncology_dose_for_osteoporosis(ctx: RuleContext, order: MedicationEntry, evidence) -> Finding:
    dose_60 = common.fmt_number(ctx.threshold("regimen_60mg_dose_mg"))
    dose_120 = common.fmt_number(ctx.threshold("regimen_120mg_dose_mg"))
    detail = (
        f"**{order.name}** is the {dose_120} mg every 4 weeks oncology regimen ({how_regimen_was_told(ctx, order)}), "
        f"but the indication on record is osteoporosis-type:\n\n{evidence_lines(evidence)}\n\n"
        "No bone metastases, myeloma, giant cell tumour of bone or hypercalcemia of malignancy is recorded. "
        f"Osteoporosis is treated with **{dose_60} mg every 6 months** (Prolia-type product); the oncology "
        f"regimen gives about {yearly_exposure_ratio(ctx):.0f} times the yearly dose, with more hypocalcemia and "
        "jaw osteonecrosis.\n\n"
        f"**Order {dose_60} mg every 6 months instead**, or record the oncologic indication."
    )
    return Finding(
        topic=TOPIC,
        indicator="warning",
        summary=f"Denosumab {dose_120} mg (oncology dose) ordered for osteoporosis",
        detail=detail,
        suggestions=cancel_suggestion(order, f"Cancel this order to re-order denosumab {dose_60} mg every 6 months"),
        rests_on_absence=(Absence("conditions", "a bone metastases, myeloma, giant cell tumour of bone or hypercalcemia of malignancy diagnosis"),),
    )
