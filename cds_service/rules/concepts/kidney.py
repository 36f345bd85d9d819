"""Kidney function and its two uses (card catalog, "Kidney function has two uses").

1. Bisphosphonate limits (the labels state them as creatinine clearance): Cockcroft-Gault
   creatinine clearance with actual body weight, from a serum creatinine and a weight of the
   last 12 months with age and sex; else the latest eGFR. `kidney_function_for_bisphosphonates`.
2. Hypocalcemia risk: 60 mg regimen — latest eGFR (12 months) below 30 mL/min/1.73 m² (the
   Prolia boxed warning's criterion); 120 mg regimen — creatinine clearance or eGFR below 30
   (Xgeva label). `advanced_ckd_evidence`.
Dialysis: a dialysis procedure in the last 90 days, or an active dialysis-dependence diagnosis
with no kidney transplant after it. A CKD stage 4/5/ESRD code counts only when no eGFR ≥ 30 of
the last 12 months, dated after the diagnosis, contradicts it.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from cds_service.record.model import ConditionEntry, LabResult, ProcedureEntry
from cds_service.rules import common
from cds_service.rules.concepts import labs
from cds_service.rules.context import RuleContext

CREATININE_CLEARANCE = "creatinine clearance (Cockcroft-Gault, actual body weight)"
EGFR = "eGFR"


@dataclass(frozen=True)
class KidneyFunction:
    """A kidney function value and where it comes from (for the card: which one was used)."""

    measure: str  # CREATININE_CLEARANCE or EGFR
    value: float  # mL/min (clearance) or mL/min/1.73 m² (eGFR)
    unit: str
    comparator: str | None = None  # a reported bound ("<15", ">60") carried over
    sources: tuple[LabResult, ...] = ()  # the eGFR, or the creatinine and the weight
    inputs_text: str = ""  # "creatinine 1.9 mg/dL on ..., weight 58 kg on ..., age 81, female"

    def is_below(self, limit: float) -> bool | None:
        """True/False when settled, None when a reported bound does not settle it."""
        if self.value < limit and self.comparator not in (">", ">="):
            return True
        if self.value >= limit and self.comparator not in ("<", "<="):
            return False
        return None

    def describe(self) -> str:
        shown = f"{common.fmt_converted(self.value)} {self.unit}"
        if self.measure == EGFR and self.sources:
            return f"eGFR {common.fmt_result(self.sources[0])}"
        return f"{self.measure} {shown} ({self.inputs_text})"


def latest_egfr(ctx: RuleContext) -> LabResult | None:
    """The newest countable eGFR (any equation's LOINC code) within egfr_lookback_days."""
    return labs.latest_result(ctx, ("egfr",), "egfr_lookback_days")


def egfr_function(ctx: RuleContext) -> KidneyFunction | None:
    egfr = latest_egfr(ctx)
    if egfr is None:
        return None
    return KidneyFunction(EGFR, egfr.value, egfr.unit, egfr.comparator, (egfr,))


def creatinine_clearance(ctx: RuleContext) -> KidneyFunction | None:
    """Cockcroft-Gault creatinine clearance, (140 − age) × weight kg / (72 × creatinine mg/dL),
    × 0.85 for women, with actual body weight; None unless a serum creatinine and a weight of the
    last 12 months, the age and a sex of male or female are on file (a creatinine reported as a
    bound such as "<0.5" gives no clearance)."""
    age = ctx.record.patient.age_in_years(ctx.as_of)
    sex = ctx.record.patient.gender
    if age is None or sex not in ("male", "female"):
        return None
    creatinine = labs.latest_result(ctx, ("creatinine",), "kidney_function_lookback_days")
    weight = labs.latest_result(ctx, ("body-weight",), "kidney_function_lookback_days")
    if creatinine is None or weight is None or creatinine.comparator or weight.comparator or creatinine.value <= 0:
        return None
    clearance = (ctx.threshold("cockcroft_gault_age_offset_years") - age) * weight.value / (
        ctx.threshold("cockcroft_gault_creatinine_factor") * creatinine.value
    )
    if sex == "female":
        clearance *= ctx.threshold("cockcroft_gault_female_factor")
    inputs = (
        f"serum creatinine {common.fmt_result(creatinine)}, weight {common.fmt_result(weight)}, "
        f"age {age}, {sex}"
    )
    return KidneyFunction(CREATININE_CLEARANCE, max(clearance, 0.0), "mL/min", None, (creatinine, weight), inputs)


def kidney_function_for_bisphosphonates(ctx: RuleContext) -> KidneyFunction | None:
    """Kidney function use 1: Cockcroft-Gault creatinine clearance when its inputs are on file,
    else the latest eGFR (12 months); None when neither is. `.measure` says which was used."""
    return creatinine_clearance(ctx) or egfr_function(ctx)


# --- use 2: advanced CKD, the hypocalcemia risk ------------------------------------------------

def recent_dialysis_procedures(ctx: RuleContext) -> tuple[ProcedureEntry, ...]:
    return tuple(
        common.completed_procedures(ctx, "dialysis-procedure", ctx.days_before("dialysis_procedure_lookback_days"))
    )


def _dated(condition: ConditionEntry) -> datetime | None:
    return condition.onset or condition.recorded


def kidney_transplant_after(ctx: RuleContext, moment: datetime | None) -> str | None:
    """A kidney transplant (procedure, or transplant-status diagnosis) recorded after `moment`
    (any time when `moment` is unknown), in words; None when there is none."""
    for procedure in common.completed_procedures(ctx, "kidney-transplant", moment):
        return f"{procedure.name} on {common.fmt_date(procedure.performed)}"
    for condition in common.conditions_in_history(ctx, "kidney-transplant"):
        when = _dated(condition)
        if moment is None or (when is not None and when > moment):
            return common.fmt_condition_dated(condition)
    return None


def dialysis_dependence_diagnoses(ctx: RuleContext) -> tuple[ConditionEntry, ...]:
    """Active dialysis-dependence diagnoses with no kidney transplant recorded after them."""
    return tuple(
        c for c in common.active_conditions(ctx, "dialysis-dependence")
        if kidney_transplant_after(ctx, _dated(c)) is None
    )


def is_on_dialysis(ctx: RuleContext) -> bool:
    return bool(recent_dialysis_procedures(ctx) or dialysis_dependence_diagnoses(ctx))


def contradicting_egfr(ctx: RuleContext, condition: ConditionEntry) -> LabResult | None:
    """An eGFR ≥ 30 of the last 12 months dated after the diagnosis (any of the 12 months when it
    has no date): the stage-4/5/ESRD code is then stale."""
    since = max(filter(None, (ctx.days_before("egfr_lookback_days"), _dated(condition))))
    limit = ctx.threshold("egfr_advanced_ckd_below")
    return next(
        (lab for lab in labs.countable_results(ctx, "egfr", since)
         if lab.value is not None and lab.value >= limit and lab.comparator not in ("<", "<=")),
        None,
    )


def advanced_ckd_evidence(ctx: RuleContext, regimen: str | None) -> tuple[str, ...]:
    """Why the patient has advanced CKD for the hypocalcemia risk (use 2), one line each; empty if not.

    60 mg: latest eGFR (12 months) below 30; 120 mg: creatinine clearance or eGFR below 30; an
    unknown regimen reads either (the safer side). Also dialysis, and an uncontradicted CKD
    stage 4/5/ESRD diagnosis.
    """
    limit = ctx.threshold("egfr_advanced_ckd_below")
    evidence = []
    egfr = egfr_function(ctx)
    if egfr is not None and egfr.is_below(limit):
        evidence.append(f"{egfr.describe()} (below {common.fmt_number(limit)} mL/min/1.73 m²)")
    if regimen != "60mg":
        clearance = creatinine_clearance(ctx)
        if clearance is not None and clearance.is_below(limit):
            evidence.append(f"{clearance.describe()} (below {common.fmt_number(limit)} mL/min)")
    for condition in dialysis_dependence_diagnoses(ctx):
        evidence.append(f"Dialysis dependence: {common.fmt_condition(condition)}")
    sessions = recent_dialysis_procedures(ctx)
    if sessions:
        count = f"{len(sessions)} dialysis session{'s' if len(sessions) > 1 else ''}"
        evidence.append(
            f"Dialysis: {count} in the last {common.fmt_number(ctx.threshold('dialysis_procedure_lookback_days'))} days, "
            f"latest {sessions[0].name} on {common.fmt_date(sessions[0].performed)}"
        )
    for condition in common.active_conditions(ctx, "advanced-ckd"):
        if "dialysis-dependence" in condition.concepts:  # read above, with the transplant check
            continue
        if contradicting_egfr(ctx, condition) is None:
            evidence.append(f"Advanced chronic kidney disease: {common.fmt_condition(condition)}")
    return tuple(evidence)
