"""pregnancy: prevents giving denosumab (fetal harm) to a pregnant patient, and starting it in a
woman of reproductive age whose pregnancy status has not been checked.

When:
- critical: an active pregnancy diagnosis, or a positive pregnancy test in the last
  pregnancy_test_lookback_days — qualitative hCG read as positive (by its value's code or text, or
  its interpretation), or quantitative hCG above the lab's cut-off (the result's reference range
  high, else hcg_positive_above_miu_ml). hCG in a male patient is a tumour marker, not a pregnancy
  test, and is not read as one.
- info: at initiation, a female aged pregnancy_age_min_years to pregnancy_age_max_years (from
  Patient.birthDate at the time of the call; sex from Patient.gender) with no pregnancy test at
  all in the last pregnancy_test_lookback_days.
Then: critical — the diagnosis or test with its date, do not give, suggests cancelling the draft;
info — verify pregnancy status, contraception during therapy and for 5 months after the last dose,
suggests a pregnancy test.
Source: Prolia label Contraindications and W&P Embryo-Fetal Toxicity; seed "Pregnancy and Lactation".
"""

from __future__ import annotations

from cds_service.cards import Action, Finding, Suggestion
from cds_service.cards.orders import service_request
from cds_service.record.model import LabResult
from cds_service.rules import common
from cds_service.rules.concepts import dose_history
from cds_service.rules.context import RuleContext

TOPIC = "pregnancy"
NEEDS = frozenset({"patient", "labs", "conditions"})

PREGNANCY_TESTS = ("hcg-qualitative", "hcg-quantitative")


def evaluate(ctx: RuleContext) -> Finding | None:
    diagnoses = common.active_conditions(ctx, "pregnancy")
    positives = positive_tests(ctx) if could_be_pregnancy_test(ctx) else ()
    if diagnoses or positives:
        return pregnant_finding(ctx, diagnoses, positives)
    if dose_history.is_initiating(ctx) and is_female_of_reproductive_age(ctx) and not recent_tests(ctx):
        return status_unknown_finding(ctx)
    return None


# --- criteria ------------------------------------------------------------------------------------

def recent_tests(ctx: RuleContext) -> tuple[LabResult, ...]:
    """Countable pregnancy tests (qualitative or quantitative) in the look-back window, newest first."""
    since = ctx.days_before("pregnancy_test_lookback_days")
    tests = [lab for analyte in PREGNANCY_TESTS for lab in common.countable_results(ctx, analyte, since)]
    return tuple(sorted(tests, key=lambda lab: lab.effective, reverse=True))


def positive_tests(ctx: RuleContext) -> tuple[LabResult, ...]:
    return tuple(lab for lab in recent_tests(ctx) if is_positive(ctx, lab))


def is_positive(ctx: RuleContext, lab: LabResult) -> bool:
    if lab.qualitative is not None:
        return lab.qualitative == "positive"
    if lab.analyte == "hcg-quantitative" and lab.value is not None:
        return lab.value > hcg_cutoff(ctx, lab) and lab.comparator not in ("<", "<=")
    return False


def hcg_cutoff(ctx: RuleContext, lab: LabResult) -> float:
    """The lab's own cut-off (reference range high) when it sends one, else the default."""
    return lab.reference_high if lab.reference_high is not None else ctx.threshold("hcg_positive_above_miu_ml")


def could_be_pregnancy_test(ctx: RuleContext) -> bool:
    """hCG reads as a pregnancy test unless the patient is male (hCG is then a tumour marker)."""
    return ctx.record.patient.gender != "male"


def is_female_of_reproductive_age(ctx: RuleContext) -> bool:
    age = ctx.record.patient.age_in_years(ctx.as_of)
    if ctx.record.patient.gender != "female" or age is None:
        return False
    return ctx.threshold("pregnancy_age_min_years") <= age <= ctx.threshold("pregnancy_age_max_years")


# --- wording -------------------------------------------------------------------------------------

def describe_test(ctx: RuleContext, lab: LabResult) -> str:
    name = next((c.display for c in lab.codings if c.display), "hCG")
    if lab.qualitative is not None:
        return f"{name}: **{lab.qualitative}** ({lab.original_text or lab.qualitative}) on {common.fmt_date(lab.effective)}"
    cutoff = common.fmt_number(hcg_cutoff(ctx, lab))
    return f"{name}: **{common.fmt_result(lab)}** (cut-off {cutoff} {lab.unit})"


def contraception_text(ctx: RuleContext) -> str:
    months = common.fmt_number(ctx.threshold("contraception_months_after_last_dose"))
    return f"effective contraception during therapy and for at least {months} months after the last dose"


def pregnant_finding(ctx: RuleContext, diagnoses, positives) -> Finding:
    lines = [f"- Pregnancy on the problem list: {common.fmt_condition(c)}" for c in diagnoses]
    lines += [f"- Positive pregnancy test: {describe_test(ctx, lab)}" for lab in positives]
    newer_negative = [
        lab for lab in recent_tests(ctx)
        if lab not in positives and positives and lab.effective > positives[0].effective
    ]
    lines += [f"- Newer test: {describe_test(ctx, lab)} — confirm before relying on it" for lab in newer_negative[:1]]
    patient = ctx.record.patient
    age = patient.age_in_years(ctx.as_of)
    who = f"{patient.gender or 'sex not recorded'}, aged {age}" if age is not None else (patient.gender or "sex not recorded")
    detail = (
        f"The patient ({who}) may be pregnant:\n\n" + "\n".join(lines) + "\n\n"
        "Denosumab can cause fetal harm and is contraindicated in pregnancy (Prolia). "
        "**Do not give it.** If the pregnancy has ended, update the problem list and confirm with a "
        f"pregnancy test; advise {contraception_text(ctx)}."
    )
    cancel = common.cancel_draft_orders_suggestion(ctx, "Cancel the denosumab order")
    return Finding(
        topic=TOPIC,
        indicator="critical",
        summary="Pregnancy: denosumab can cause fetal harm - do not give",
        detail=detail,
        suggestions=(cancel,) if cancel else (),
    )


def status_unknown_finding(ctx: RuleContext) -> Finding:
    patient = ctx.record.patient
    age = patient.age_in_years(ctx.as_of)
    days = common.fmt_number(ctx.threshold("pregnancy_test_lookback_days"))
    since = common.fmt_date(ctx.days_before("pregnancy_test_lookback_days"))
    latest = common.latest_result(ctx, PREGNANCY_TESTS, numeric=False)
    last_test = f"the latest on record: {describe_test(ctx, latest)}" if latest else "none on record"
    detail = (
        f"Female patient aged {age} (born {patient.birth_date.isoformat()}) starting denosumab; "
        f"no pregnancy test in the last {days} days, since {since} ({last_test}).\n\n"
        f"**Verify pregnancy status before the first dose** (pregnancy test in females of reproductive "
        f"potential) and advise {contraception_text(ctx)}."
    )
    test = service_request(
        codings=(),
        text="Pregnancy test (hCG, serum or urine)",
        reason="Pregnancy status before starting denosumab",
        patient_id=ctx.patient_id,
        encounter_id=ctx.encounter_id,
    )
    return Finding(
        topic=TOPIC,
        indicator="info",
        summary="Starting denosumab: verify pregnancy status and advise contraception",
        detail=detail,
        suggestions=(
            Suggestion(
                label="Order a pregnancy test",
                actions=(Action(type="create", description="Order a pregnancy test (hCG)", resource=test),),
            ),
        ),
    )
