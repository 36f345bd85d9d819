"""Clinical sub-routines shared by the rules, each stated once (like OpioidCDSRoutines): labs,
conditions and procedures, calcium, kidney, order suggestions and wording. Medication classes,
regimen, dose history, indications and the transition have their own modules in rules/concepts/.

Value set *names* appear here (they are the vocabulary of the knowledge base); codes and numbers
never do: codes are in seeds/valuesets, numbers in seeds/thresholds.toml.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime, timedelta

from cds_service.cards import Action, Suggestion, orders
from cds_service.knowledge import KnowledgeError
from cds_service.record.model import Coding, ConditionEntry, LabResult, ProcedureEntry
from cds_service.record.units import analyte_units
from cds_service.rules.context import RuleContext

# Observations count when final, amended or corrected (card catalog: "When the service looks").
COUNTABLE_OBSERVATION_STATUSES = frozenset({"final", "amended", "corrected"})
_COMPLETED = frozenset({"completed"})
ACTIVE_CLINICAL_STATUSES = frozenset({"active", "recurrence", "relapse"})
EXCLUDED_VERIFICATION_STATUSES = frozenset({"entered-in-error", "refuted"})


# --- labs --------------------------------------------------------------------------------------

def countable_results(ctx: RuleContext, analyte: str, since: datetime | None = None) -> Iterator[LabResult]:
    """Final/amended/corrected results of `analyte` up to the call (since `since`), newest first.
    Read lazily (each result is validated when first read): take what you need and stop."""
    return (
        lab for lab in ctx.record.labs_for(analyte, since)
        if lab.status in COUNTABLE_OBSERVATION_STATUSES and lab.effective is not None and lab.effective <= ctx.as_of
    )


def latest_result(
    ctx: RuleContext, analytes: tuple[str, ...], lookback_threshold: str | None = None, *, numeric: bool = True
) -> LabResult | None:
    """The newest countable result of any of `analytes`, within the named look-back window (any
    age without one), with a numeric value unless `numeric` is False."""
    since = ctx.days_before(lookback_threshold) if lookback_threshold else None
    newest = (
        next((lab for lab in countable_results(ctx, analyte, since) if not numeric or lab.value is not None), None)
        for analyte in analytes
    )
    return max((lab for lab in newest if lab is not None), key=lambda lab: lab.effective, default=None)


# --- conditions and procedures ----------------------------------------------------------------

def is_active_condition(condition: ConditionEntry, as_of: datetime) -> bool:
    if condition.verification_status in EXCLUDED_VERIFICATION_STATUSES:
        return False
    if condition.clinical_status is not None:
        return condition.clinical_status in ACTIVE_CLINICAL_STATUSES
    # No clinical status (allowed only for entered-in-error in US Core): active unless abated.
    return condition.abatement is None or condition.abatement > as_of


def active_conditions(ctx: RuleContext, concept: str) -> tuple[ConditionEntry, ...]:
    return tuple(c for c in ctx.record.conditions_of(concept) if is_active_condition(c, ctx.as_of))


def conditions_in_history(ctx: RuleContext, concept: str) -> tuple[ConditionEntry, ...]:
    """Any status but entered-in-error or refuted (topics that say "history")."""
    return tuple(
        c for c in ctx.record.conditions_of(concept) if c.verification_status not in EXCLUDED_VERIFICATION_STATUSES
    )


def completed_procedures(ctx: RuleContext, concept: str, since: datetime | None = None) -> Iterator[ProcedureEntry]:
    """Completed procedures of a kind up to the call (since `since`), newest first; read lazily."""
    return (
        p for p in ctx.record.procedures_of(concept, since=since, statuses=_COMPLETED)
        if p.status in _COMPLETED and p.performed is not None and p.performed <= ctx.as_of
    )


# --- wording for card details -----------------------------------------------------------------

def fmt_date(moment: datetime | None) -> str:
    return moment.date().isoformat() if moment else "unknown date"


def fmt_number(value: float) -> str:
    return f"{value:.2f}".rstrip("0").rstrip(".")


def fmt_result(lab: LabResult) -> str:
    """'8.1 mg/dL (reported 2.02 mmol/L) on 2026-10-01'."""
    shown = f"{fmt_number(lab.value)} {lab.unit}" if lab.value is not None else (lab.original_text or "no value")
    if lab.original_text and lab.value is not None and lab.original_text.split()[-1:] != [lab.unit]:
        shown += f" (reported {lab.original_text})"
    return f"{shown} on {fmt_date(lab.effective)}"


def days_between(earlier: datetime, later: datetime) -> int:
    return (later - earlier).days


# --- calcium (hypocalcemia, calcium-monitoring; the upper limit for calcium-vitamin-d-supplementation)

CALCIUM_ANALYTES = ("calcium-total", "calcium-albumin-corrected", "calcium-ionized")
# Both printed forms of each limit (8.5 mg/dL = 2.12 mmol/L; 4.5 mg/dL = 1.12 mmol/L) are named
# thresholds; a result counts as below the limit only when it is below both forms, so a result
# exactly at the printed limit in either unit never counts (the forms differ by < 0.3%).
_CALCIUM_LIMITS = {
    "calcium-total": ("calcium_total_lower_limit_mg_dl", "calcium_total_lower_limit_mmol_l",
                      "calcium_total_upper_limit_mg_dl", "calcium_total_upper_limit_mmol_l"),
    "calcium-albumin-corrected": ("calcium_total_lower_limit_mg_dl", "calcium_total_lower_limit_mmol_l",
                                  "calcium_total_upper_limit_mg_dl", "calcium_total_upper_limit_mmol_l"),
    "calcium-ionized": ("calcium_ionized_lower_limit_mg_dl", "calcium_ionized_lower_limit_mmol_l",
                        "calcium_ionized_upper_limit_mg_dl", "calcium_ionized_upper_limit_mmol_l"),
}
_MOLAR_UNIT = "mmol/L"  # the unit of every *_mmol_l threshold name


@dataclass(frozen=True)
class CalciumReading:
    """One calcium result as the catalog judges it (topic hypocalcemia).

    Total calcium is corrected for albumin (Payne) when an albumin was measured within
    `albumin_pairing_days` of it; a lab-reported albumin-corrected calcium is used as reported;
    ionized calcium has its own limit. `value` and the limits are in mg/dL.
    """

    lab: LabResult
    value: float
    lower_limit: float
    upper_limit: float
    albumin: LabResult | None = None  # the albumin the value was corrected with
    lower_limit_text: str = ""  # where the lower limit comes from, for the card

    @property
    def is_ionized(self) -> bool:
        return self.lab.analyte == "calcium-ionized"

    @property
    def is_corrected(self) -> bool:
        return self.albumin is not None or self.lab.analyte == "calcium-albumin-corrected"

    @property
    def is_low(self) -> bool:
        # "<8.0" is low; ">8.0" proves nothing about the lower limit.
        return self.value < self.lower_limit and self.lab.comparator not in (">", ">=")

    @property
    def is_high(self) -> bool:
        return self.value > self.upper_limit and self.lab.comparator not in ("<", "<=")

    @property
    def shown_value(self) -> str:
        """The value as the clinician knows it: as reported, unless this service corrected it."""
        if self.albumin is None and self.lab.original_text:
            return self.lab.original_text
        return f"{fmt_number(self.value)} {self.lab.unit}"

    def describe(self) -> str:
        """'total calcium 8.7 mg/dL on 2026-11-10, corrected for albumin 4.6 g/dL (2026-11-09): 8.22 mg/dL'."""
        kind = (
            "ionized calcium" if self.is_ionized
            else "albumin-corrected calcium (reported by the lab)" if self.lab.analyte == "calcium-albumin-corrected"
            else "total calcium"
        )
        text = f"{kind} {fmt_result(self.lab)}"
        if self.albumin is not None:
            text += (
                f", corrected for albumin {fmt_number(self.albumin.value)} {self.albumin.unit} "
                f"({fmt_date(self.albumin.effective)}): **{fmt_number(self.value)} {self.lab.unit}**"
            )
        return text


def _molar_limit_in_mg_dl(analyte: str, value_mmol_l: float) -> float:
    # Converted with the same factor as the results themselves (seeds/units.toml), so that a
    # result of exactly 2.12 mmol/L lands exactly on the converted limit.
    return analyte_units()[analyte].to_canonical(value_mmol_l, _MOLAR_UNIT, None)


def calcium_limits(ctx: RuleContext, lab: LabResult) -> tuple[float, float, str]:
    """(lower, upper) limits in mg/dL for one calcium result, and the lower limit in words.

    Lower: the fixed limit (topic hypocalcemia); for total and albumin-corrected calcium, the
    result's own reference range low as well — a value below either counts ("below 8.5 mg/dL or
    the result's own reference range low"). Upper: the result's own reference range high when
    given, else the fixed limit (thresholds.toml, calcium_total_upper_limit_mg_dl notes).
    """
    low_mass, low_molar, high_mass, high_molar = _CALCIUM_LIMITS[lab.analyte]
    lower = min(ctx.threshold(low_mass), _molar_limit_in_mg_dl(lab.analyte, ctx.threshold(low_molar)))
    upper = max(ctx.threshold(high_mass), _molar_limit_in_mg_dl(lab.analyte, ctx.threshold(high_molar)))
    lower_text = f"{_fmt_threshold(ctx, low_mass)} ({_fmt_threshold(ctx, low_molar)})"
    fixed_lower = max(ctx.threshold(low_mass), _molar_limit_in_mg_dl(lab.analyte, ctx.threshold(low_molar)))
    if lab.analyte != "calcium-ionized" and lab.reference_low is not None and lab.reference_low > fixed_lower:
        lower = lab.reference_low
        lower_text = f"{fmt_number(lower)} {lab.unit} (the lab's own reference range low)"
    if lab.reference_high is not None:
        upper = lab.reference_high
    return lower, upper, lower_text


def _fmt_threshold(ctx: RuleContext, name: str) -> str:
    return f"{fmt_number(ctx.threshold(name))} {ctx.kb.thresholds[name].unit}"


def albumin_paired_with(ctx: RuleContext, calcium: LabResult) -> LabResult | None:
    """The countable albumin measured closest to the calcium, within albumin_pairing_days either side."""
    window = timedelta(days=ctx.threshold("albumin_pairing_days"))
    paired = [
        albumin for albumin in countable_results(ctx, "albumin", calcium.effective - window)
        if albumin.value is not None and albumin.effective - calcium.effective <= window
    ]
    return min(paired, key=lambda albumin: abs(albumin.effective - calcium.effective), default=None)


def calcium_reading(ctx: RuleContext, lab: LabResult) -> CalciumReading | None:
    """How the catalog reads one calcium result (None when it has no usable number)."""
    if lab.value is None:
        return None
    lower, upper, lower_text = calcium_limits(ctx, lab)
    albumin = albumin_paired_with(ctx, lab) if lab.analyte == "calcium-total" else None
    value = lab.value
    if albumin is not None:
        value += ctx.threshold("albumin_correction_factor") * (
            ctx.threshold("albumin_correction_reference_g_dl") - albumin.value
        )
    return CalciumReading(lab, value, lower, upper, albumin, lower_text)


def recent_calcium_results(ctx: RuleContext) -> tuple[LabResult, ...]:
    """Countable calcium results (total, albumin-corrected, ionized) with a usable number within
    calcium_lookback_days, newest first."""
    since = ctx.days_before("calcium_lookback_days")
    results = [
        lab for analyte in CALCIUM_ANALYTES for lab in countable_results(ctx, analyte, since) if lab.value is not None
    ]
    return tuple(sorted(results, key=lambda lab: lab.effective, reverse=True))


def latest_calcium_readings(ctx: RuleContext) -> tuple[CalciumReading, ...]:
    """The readings of the latest calcium specimen within calcium_lookback_days (empty if none).

    The latest specimen is the newest collection time; all calcium results of that time are read
    (a panel can hold total and ionized calcium). When the lab reported an albumin-corrected
    calcium for that specimen, it stands for the total calcium of the same specimen.
    """
    results = recent_calcium_results(ctx)
    if not results:
        return ()
    latest = [lab for lab in results if lab.effective == results[0].effective]
    if any(lab.analyte == "calcium-albumin-corrected" for lab in latest):
        latest = [lab for lab in latest if lab.analyte != "calcium-total"]
    return tuple(reading for lab in latest if (reading := calcium_reading(ctx, lab)) is not None)


# --- kidney (hypocalcemia-risk, calcium-monitoring) ---------------------------------------------

def latest_egfr(ctx: RuleContext) -> LabResult | None:
    """The newest countable eGFR (any equation's LOINC code) within egfr_lookback_days."""
    return latest_result(ctx, ("egfr",), "egfr_lookback_days")


def recent_dialysis_procedures(ctx: RuleContext) -> tuple[ProcedureEntry, ...]:
    return tuple(completed_procedures(ctx, "dialysis-procedure", ctx.days_before("dialysis_procedure_lookback_days")))


def advanced_ckd_evidence(ctx: RuleContext) -> tuple[str, ...]:
    """Why the patient has advanced CKD (Prolia boxed warning), one line each; empty if not.

    Advanced CKD: latest eGFR (12 months) below egfr_advanced_ckd_below, dialysis dependence
    (an active diagnosis, or dialysis sessions within dialysis_procedure_lookback_days), or an
    active CKD stage 4/5/ESRD diagnosis.
    """
    evidence = []
    egfr = latest_egfr(ctx)
    limit = ctx.threshold("egfr_advanced_ckd_below")
    if egfr is not None and egfr.value < limit and egfr.comparator not in (">", ">="):
        evidence.append(f"eGFR {fmt_result(egfr)} (below {fmt_number(limit)} {egfr.unit})")
    for condition in active_conditions(ctx, "dialysis-dependence"):
        evidence.append(f"Dialysis dependence: {fmt_condition(condition)}")
    sessions = recent_dialysis_procedures(ctx)
    if sessions:
        count = f"{len(sessions)} dialysis session{'s' if len(sessions) > 1 else ''}"
        evidence.append(
            f"Dialysis: {count} in the last {fmt_number(ctx.threshold('dialysis_procedure_lookback_days'))} days, "
            f"latest {sessions[0].name} on {fmt_date(sessions[0].performed)}"
        )
    for condition in active_conditions(ctx, "advanced-ckd"):
        if "dialysis-dependence" not in condition.concepts:  # already listed above
            evidence.append(f"Advanced chronic kidney disease: {fmt_condition(condition)}")
    return tuple(evidence)


def fmt_condition(condition: ConditionEntry) -> str:
    """'Renal osteodystrophy (ICD-10-CM N25.0), active, onset 2023-02-01'."""
    codes = ", ".join(c.code for c in condition.codings if c.code)
    text = condition.name + (f" ({codes})" if codes else "")
    text += f", {condition.clinical_status or 'status not recorded'}"
    if condition.onset:
        text += f", onset {fmt_date(condition.onset)}"
    if condition.abatement:
        text += f", resolved {fmt_date(condition.abatement)}"
    return text


# --- suggestions shared by several rules (codes from seeds/valuesets, resources from cards/orders)

def order_codings(ctx: RuleContext, order_set: str) -> tuple[Coding, ...]:
    """The codes of a value set of things to order (one row, one order), as record Codings."""
    return tuple(Coding(c.system, c.code, c.display) for c in ctx.kb.value_set(order_set).codings)


def lab_order_actions(ctx: RuleContext, order_set: str, *, reason: str, note: str | None = None) -> tuple[Action, ...]:
    """One draft lab ServiceRequest per test of `order_set`, for this patient and encounter."""
    category = order_codings(ctx, "laboratory-service-category")[0]
    return tuple(
        Action(
            type="create",
            description=f"Order {test.display}",
            resource=orders.service_request(
                codings=(test,), text=test.display, reason=reason, category=category, note=note,
                patient_id=ctx.patient_id, encounter_id=ctx.encounter_id,
            ),
        )
        for test in order_codings(ctx, order_set)
    )


def calcium_recheck_suggestion(ctx: RuleContext, *, reason: str) -> Suggestion:
    return Suggestion(
        label="Order serum calcium and albumin",
        actions=lab_order_actions(ctx, "calcium-recheck-order", reason=reason),
        is_recommended=True,
    )


def dental_referral_suggestion(ctx: RuleContext, *, reason: str) -> Suggestion:
    referral = order_codings(ctx, "dental-care-referral")[0]
    return Suggestion(
        label="Refer for dental evaluation",
        actions=(
            Action(
                type="create",
                description="Referral for dental evaluation",
                resource=orders.service_request(
                    codings=(referral,), text=referral.display, reason=reason,
                    category=order_codings(ctx, "referral-service-category")[0],
                    patient_id=ctx.patient_id, encounter_id=ctx.encounter_id,
                ),
            ),
        ),
        is_recommended=True,
    )


def cancel_order_actions(orders) -> tuple[Action, ...]:
    """Delete actions for draft orders of this call (a draft without an id cannot be deleted)."""
    return tuple(
        Action(type="delete", description=f"Cancel the draft order: {order.name}", resource_id=order.reference)
        for order in orders if order.reference
    )


def cancel_orders_suggestion(orders, label: str) -> Suggestion | None:
    """One suggestion that cancels these draft orders; None when none of them has an id."""
    actions = cancel_order_actions(orders)
    return Suggestion(label=label, actions=actions) if actions else None


def cancel_draft_orders_suggestion(ctx: RuleContext, label: str) -> Suggestion | None:
    """Cancel the draft order(s) that set off this rule."""
    return cancel_orders_suggestion(ctx.orders, label)


def fmt_condition_dated(condition: ConditionEntry) -> str:
    """`fmt_condition`, with the recorded date when there is no onset (every line then has a date)."""
    text = fmt_condition(condition)
    if condition.onset is None and condition.recorded is not None:
        text += f", recorded {fmt_date(condition.recorded)}"
    return text


# --- wording of elapsed time, and medication orders ---------------------------------------------

_DAYS_PER_MONTH = 30.4375  # calendar average, for wording only ("about 8 months")


def fmt_elapsed(days: int) -> str:
    """'250 days (about 8 months)'."""
    months = round(days / _DAYS_PER_MONTH)
    if months < 2:
        return f"{days} days"
    return f"{days} days (about {months} months)"


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


