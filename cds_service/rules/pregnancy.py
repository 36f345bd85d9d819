"""pregnancy: prevents giving denosumab (fetal harm) to a pregnant patient, and starting it in a
woman of reproductive age whose pregnancy status has not been checked.

When (card catalog v2, topic pregnancy):
- critical: an active pregnancy diagnosis with onset (else recorded date) in the last
  pregnancy_diagnosis_max_age_days (294 days, 42 weeks), or a positive pregnancy test in the last
  pregnancy_test_lookback_days (30): a qualitative test read as positive, or a quantitative hCG of
  hcg_positive_min_miu_ml (25 mIU/mL) or more.
- warning: a quantitative hCG from hcg_equivocal_min_miu_ml (5) up to below 25 mIU/mL in the last
  30 days (equivocal: repeat the test); info instead from pituitary_hcg_age_min_years (45): "may be
  pituitary hCG; repeat, or check FSH".
- The test branches apply only to patients who may be female (gender female, or not recorded as
  male) and who are not excluded as postmenopausal (value set postmenopausal-state: a specific
  menopausal-state or postmenopausal-osteoporosis code, never M81.0) or after hysterectomy or
  bilateral oophorectomy (a diagnosis or a completed procedure) - except that a clearly positive
  test is still read under age 45 when the only exclusion is a postmenopausal code (project
  decision: a wrong code must not silence a pregnancy). A quantitative hCG is a tumour
  marker, not a pregnancy test, while an hCG-secreting tumour (germ-cell tumour, gestational
  trophoblastic disease) is active on the problem list.
- A positive test or a pregnancy diagnosis stops counting at a later negative test or a later
  recorded pregnancy outcome (delivery, miscarriage, termination: a diagnosis or a procedure).
- info: an active pregnancy diagnosis that no longer counts (older than 294 days, or ended by a
  later outcome or negative test): "still active on the problem list since <date>: verify and
  update"; and at initiation, a female aged pregnancy_age_min_years to pregnancy_age_max_years
  (12-50) with no pregnancy test in the last 30 days, unless postmenopausal or after hysterectomy /
  bilateral oophorectomy.
Then: critical - the diagnosis or test with its date, do not give, suggests cancelling the draft;
warning/info (equivocal hCG) - repeat the test (a coded pregnancy test order); info - verify
pregnancy status, contraception during therapy and for 5 months after the last dose, suggests a
pregnancy test (LOINC-coded ServiceRequest). The initiation info rests on absences (no pregnancy
test in 30 days, no menopause or hysterectomy record, no dose in 12 months).
Source: Prolia US PI - Contraindications (pregnancy), Dosage and Administration (pregnancy must be
ruled out; pregnancy testing in females of reproductive potential), W&P Embryo-Fetal Toxicity,
Females and Males of Reproductive Potential; Xgeva US PI - W&P Embryo-Fetal Toxicity; catalog v2
for the windows and hCG cut-offs.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from cds_service.cards import Absence, Finding, Suggestion
from cds_service.record.model import ConditionEntry, LabResult
from cds_service.rules import common
from cds_service.rules.concepts import dose_history, labs, order_suggestions, recency
from cds_service.rules.context import RuleContext

TOPIC = "pregnancy"
NEEDS = frozenset({"patient", "labs", "conditions"})

PREGNANCY_TESTS = ("hcg-qualitative", "hcg-quantitative")
_WINDOW = "pregnancy_diagnosis_max_age_days"


@dataclass(frozen=True)
class Outcome:
    """A recorded end of a pregnancy (a diagnosis or a procedure)."""

    date: datetime
    description: str


def evaluate(ctx: RuleContext) -> Finding | None:
    outcomes = pregnancy_outcomes(ctx)
    current, stale = [], []
    for diagnosis in common.active_conditions(ctx, "pregnancy"):
        ended = ended_by(ctx, recency.diagnosis_date(diagnosis), outcomes)
        if recency.is_within(ctx, diagnosis, _WINDOW) and ended is None:
            current.append(diagnosis)
        else:
            stale.append((diagnosis, ended))
    recent = recent_tests(ctx)  # (whether tests apply is asked only when there are some: it reads diagnoses)
    recent = recent if recent and tests_apply_to_patient(ctx, positive=True) else ()
    positives = [lab for lab in recent if result_of(ctx, lab) == "positive" and ended_by(ctx, lab.effective, outcomes) is None]
    if current or positives:
        return pregnant_finding(ctx, current, positives, recent)
    recent = recent if recent and tests_apply_to_patient(ctx) else ()
    equivocal = next((lab for lab in recent if result_of(ctx, lab) == "equivocal"), None)
    if equivocal is not None and ended_by(ctx, equivocal.effective, outcomes) is None:
        return equivocal_finding(ctx, equivocal)
    needs_test = (
        dose_history.is_initiating(ctx) and is_female_of_reproductive_age(ctx)
        and exclusion(ctx) is None and not recent_tests(ctx)
    )
    if stale or needs_test:
        return status_unverified_finding(ctx, stale, needs_test)
    return None


# --- criteria ------------------------------------------------------------------------------------

def recent_tests(ctx: RuleContext) -> tuple[LabResult, ...]:
    """Pregnancy tests in the look-back window, newest first (quantitative hCG only where it
    means pregnancy: not with an hCG-secreting tumour on the problem list)."""
    return tests_since(ctx, ctx.days_before("pregnancy_test_lookback_days"))


def tests_since(ctx: RuleContext, since: datetime | None) -> tuple[LabResult, ...]:
    analytes = ("hcg-qualitative",) if common.active_conditions(ctx, "hcg-secreting-tumor") else PREGNANCY_TESTS
    tests = [lab for analyte in analytes for lab in labs.countable_results(ctx, analyte, since)]
    return tuple(sorted(tests, key=lambda lab: lab.effective, reverse=True))


def result_of(ctx: RuleContext, lab: LabResult) -> str | None:
    """'positive', 'equivocal' or 'negative'; None when the result (or a reported bound such as
    "<10") does not settle it."""
    if lab.qualitative in ("positive", "negative"):
        return lab.qualitative
    if lab.analyte != "hcg-quantitative" or lab.value is None:
        return None
    positive_from = ctx.threshold("hcg_positive_min_miu_ml")
    equivocal_from = ctx.threshold("hcg_equivocal_min_miu_ml")
    value, comparator = lab.value, lab.comparator
    if comparator in ("<", "<="):  # an upper bound: negative only when it is under the equivocal range
        below = value <= equivocal_from if comparator == "<" else value < equivocal_from
        return "negative" if below else None
    if comparator in (">", ">="):  # a lower bound: at least this much
        return "positive" if value >= positive_from else "equivocal" if value >= equivocal_from else None
    return "positive" if value >= positive_from else "equivocal" if value >= equivocal_from else "negative"


def pregnancy_outcomes(ctx: RuleContext) -> tuple[Outcome, ...]:
    """Deliveries, miscarriages and terminations on record, newest first."""
    found = [
        Outcome(when, common.fmt_condition_dated(c))
        for c in common.conditions_in_history(ctx, "pregnancy-outcome")
        if (when := recency.diagnosis_date(c)) is not None and when <= ctx.as_of
    ]
    found += [
        Outcome(p.performed, f"{p.name}, performed {common.fmt_date(p.performed)}")
        for p in common.completed_procedures(ctx, "pregnancy-outcome")
    ]
    return tuple(sorted(found, key=lambda o: o.date, reverse=True))


def ended_by(ctx: RuleContext, since: datetime | None, outcomes: tuple[Outcome, ...]) -> str | None:
    """What ended a pregnancy known since `since`: a later outcome, or a later negative test."""
    if since is None:
        return None
    outcome = next((o for o in outcomes if o.date > since), None)
    if outcome is not None:
        return f"pregnancy outcome recorded after it: {outcome.description}"
    negative = next(
        (lab for lab in tests_since(ctx, since) if lab.effective > since and result_of(ctx, lab) == "negative"), None
    )
    if negative is not None:
        return f"negative pregnancy test after it: {describe_test(negative)}"
    return None


def surgical_exclusion(ctx: RuleContext) -> str | None:
    """Uterus or both ovaries removed: a status diagnosis or a completed procedure."""
    concept = "hysterectomy-or-bilateral-oophorectomy"
    condition = next(iter(common.conditions_in_history(ctx, concept)), None)
    if condition is not None:
        return f"hysterectomy or bilateral oophorectomy: {common.fmt_condition_dated(condition)}"
    procedure = next(common.completed_procedures(ctx, concept), None)
    if procedure is not None:
        return f"hysterectomy or bilateral oophorectomy: {procedure.name}, performed {common.fmt_date(procedure.performed)}"
    return None


def postmenopausal_exclusion(ctx: RuleContext) -> str | None:
    condition = next(iter(common.conditions_in_history(ctx, "postmenopausal-state")), None)
    return f"postmenopausal: {common.fmt_condition_dated(condition)}" if condition is not None else None


def exclusion(ctx: RuleContext) -> str | None:
    """Why pregnancy tests do not apply to this woman: postmenopausal, or uterus / both ovaries removed."""
    return surgical_exclusion(ctx) or postmenopausal_exclusion(ctx)


def tests_apply_to_patient(ctx: RuleContext, *, positive: bool = False) -> bool:
    """The test branches apply to a patient who may be female (female, or sex not recorded as
    male) and is not excluded as postmenopausal or after hysterectomy / bilateral oophorectomy.

    A clearly positive test is still read in a woman under pituitary_hcg_age_min_years whose only
    exclusion is a postmenopausal code: menopause that early is rare and a wrong code must not
    silence a pregnancy (project decision, see the review page)."""
    if ctx.record.patient.gender == "male" or surgical_exclusion(ctx) is not None:
        return False
    if postmenopausal_exclusion(ctx) is None:
        return True
    age = ctx.record.patient.age_in_years(ctx.as_of)
    return positive and age is not None and age < ctx.threshold("pituitary_hcg_age_min_years")


def is_female_of_reproductive_age(ctx: RuleContext) -> bool:
    age = ctx.record.patient.age_in_years(ctx.as_of)
    if ctx.record.patient.gender != "female" or age is None:
        return False
    return ctx.threshold("pregnancy_age_min_years") <= age <= ctx.threshold("pregnancy_age_max_years")


# --- wording -------------------------------------------------------------------------------------

def describe_test(lab: LabResult) -> str:
    name = next((c.display for c in lab.codings if c.display), "hCG")
    if lab.qualitative is not None:
        return f"{name}: **{lab.qualitative}** ({lab.original_text or lab.qualitative}) on {common.fmt_date(lab.effective)}"
    return f"{name}: **{common.fmt_result(lab)}**"


def _who(ctx: RuleContext) -> str:
    patient = ctx.record.patient
    age = patient.age_in_years(ctx.as_of)
    sex = patient.gender or "sex not recorded"
    return f"{sex}, aged {age}" if age is not None else sex


def contraception_text(ctx: RuleContext) -> str:
    months = common.fmt_number(ctx.threshold("contraception_months_after_last_dose"))
    return f"effective contraception during therapy and for at least {months} months after the last dose"


def _cut_offs(ctx: RuleContext) -> str:
    unit = ctx.kb.thresholds["hcg_positive_min_miu_ml"].unit
    return (
        f"hCG {common.fmt_number(ctx.threshold('hcg_positive_min_miu_ml'))} {unit} or more is positive, "
        f"{common.fmt_number(ctx.threshold('hcg_equivocal_min_miu_ml'))} to "
        f"{common.fmt_number(ctx.threshold('hcg_positive_min_miu_ml') - 1)} {unit} equivocal"
    )


def pregnancy_test_suggestion(ctx: RuleContext, label: str, reason: str) -> Suggestion:
    return Suggestion(label=label, actions=order_suggestions.lab_order_actions(ctx, "pregnancy-test-order", reason=reason))


def pregnant_finding(ctx: RuleContext, diagnoses: list[ConditionEntry], positives: list[LabResult], recent) -> Finding:
    weeks = common.fmt_number(ctx.threshold(_WINDOW) / 7)
    lines = [f"- Pregnancy on the problem list ({recency.fmt_since(c)}, within {weeks} weeks): {common.fmt_condition_dated(c)}"
             for c in diagnoses]
    positive_from = f"{common.fmt_number(ctx.threshold('hcg_positive_min_miu_ml'))} {ctx.kb.thresholds['hcg_positive_min_miu_ml'].unit}"
    lines += [
        f"- Positive pregnancy test: {describe_test(lab)}" + ("" if lab.qualitative else f" (positive from {positive_from})")
        for lab in positives
    ]
    if positives:
        newer = [lab for lab in recent if lab.effective > positives[0].effective and result_of(ctx, lab) != "positive"]
        lines += [f"- Newer test: {describe_test(lab)} - confirm before relying on it" for lab in newer[:1]]
    detail = (
        f"The patient ({_who(ctx)}) may be pregnant:\n\n" + "\n".join(lines) + "\n\n"
        "Denosumab can cause fetal harm and is contraindicated in pregnancy (Prolia). **Do not give it.** "
        "If the pregnancy has ended, record the outcome on the problem list and confirm with a pregnancy test; "
        f"advise {contraception_text(ctx)}."
    )
    cancel = order_suggestions.cancel_draft_orders_suggestion(ctx, "Cancel the denosumab order")
    return Finding(
        topic=TOPIC,
        indicator="critical",
        summary="Pregnancy: denosumab can cause fetal harm - do not give",
        detail=detail,
        suggestions=(cancel,) if cancel else (),
    )


def equivocal_finding(ctx: RuleContext, lab: LabResult) -> Finding:
    age = ctx.record.patient.age_in_years(ctx.as_of)
    pituitary = age is not None and age >= ctx.threshold("pituitary_hcg_age_min_years")
    detail = (
        f"Equivocal pregnancy test in the last {common.fmt_number(ctx.threshold('pregnancy_test_lookback_days'))} days "
        f"({_who(ctx)}):\n\n- {describe_test(lab)} ({_cut_offs(ctx)})\n\n"
    )
    if pituitary:
        detail += (
            f"From age {common.fmt_number(ctx.threshold('pituitary_hcg_age_min_years'))} a low hCG "
            "**may be pituitary hCG** (perimenopause) rather than pregnancy: "
            "repeat the test, or check FSH, before the dose."
        )
    else:
        detail += (
            "Early pregnancy is not excluded. **Repeat the pregnancy test before giving denosumab** "
            f"(it can cause fetal harm) and advise {contraception_text(ctx)}."
        )
    return Finding(
        topic=TOPIC,
        indicator="info" if pituitary else "warning",
        summary=("Low hCG, may be pituitary: repeat the test or check FSH before denosumab" if pituitary
                 else "Equivocal hCG: repeat the pregnancy test before giving denosumab"),
        detail=detail,
        suggestions=(pregnancy_test_suggestion(ctx, "Repeat the pregnancy test", "Equivocal hCG before denosumab"),),
    )


def status_unverified_finding(ctx: RuleContext, stale, needs_test: bool) -> Finding:
    parts = []
    weeks = common.fmt_number(ctx.threshold(_WINDOW) / 7)
    for diagnosis, ended in stale:
        why = ended or f"older than {weeks} weeks"
        parts.append(
            f"- Pregnancy still active on the problem list {recency.fmt_since(diagnosis)} ({why}): "
            f"{common.fmt_condition_dated(diagnosis)}. **Verify and update the problem list.**"
        )
    absences: tuple[Absence, ...] = ()
    if needs_test:
        patient = ctx.record.patient
        days = common.fmt_number(ctx.threshold("pregnancy_test_lookback_days"))
        since = ctx.days_before("pregnancy_test_lookback_days")
        latest = labs.latest_result(ctx, PREGNANCY_TESTS, numeric=False)
        last_test = f"the latest on record: {describe_test(latest)}" if latest else "none on record"
        parts.append(
            f"- Female patient aged {patient.age_in_years(ctx.as_of)} (born {patient.birth_date.isoformat()}) starting "
            f"denosumab; no pregnancy test in the last {days} days, since {common.fmt_date(since)} ({last_test}); "
            "no menopause, hysterectomy or bilateral oophorectomy on record.\n\n"
            "**Verify pregnancy status before the first dose** (pregnancy test in females of reproductive "
            f"potential) and advise {contraception_text(ctx)}."
        )
        absences = (
            Absence("labs", f"a pregnancy test in the last {days} days", since),
            Absence("conditions", "a menopause, hysterectomy or bilateral oophorectomy diagnosis", None),
            Absence("procedures", "a hysterectomy or bilateral oophorectomy", None),
            Absence("medications", "a denosumab dose in the last 12 months (initiation)",
                    ctx.days_before("initiation_no_dose_lookback_days")),
        )
    summary = (
        "Starting denosumab: verify pregnancy status and advise contraception" if needs_test
        else "Pregnancy still on the problem list: verify and update it"
    )
    suggestions = (
        (pregnancy_test_suggestion(ctx, "Order a pregnancy test", "Pregnancy status before starting denosumab"),)
        if needs_test else ()
    )
    return Finding(
        topic=TOPIC,
        indicator="info",
        summary=summary,
        detail="\n\n".join(parts),
        suggestions=suggestions,
        rests_on_absence=absences,
    )
