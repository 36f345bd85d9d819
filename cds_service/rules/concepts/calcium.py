"""Calcium as the card catalog reads it: which result is compared, its limits, the albumin
correction, and the hypercalcemia state every calcium or vitamin D suggestion respects.

*The calcium compared* (catalog, topic hypocalcemia; last 30 days): the latest ionized calcium
when it is within 7 days of the latest total calcium (or there is no total); else the latest
total calcium — a lab-reported albumin-corrected calcium as reported, else the total corrected
for albumin (Payne: Ca + 0.8 × (4.0 − albumin g/dL)) only when an albumin below 4.0 g/dL was
measured within 7 days of it; never corrected downwards. *Limits*: the result's own reference
range, else the fixed limits (seeds/thresholds.toml), in mg/dL and mmol/L alike.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta

from cds_service.record.model import ConditionEntry, LabResult
from cds_service.record.units import analyte_units
from cds_service.rules import common
from cds_service.rules.concepts import indications, labs
from cds_service.rules.concepts.regimen import regimen_of
from cds_service.rules.context import RuleContext

TOTAL_ANALYTES = ("calcium-total", "calcium-albumin-corrected")
IONIZED = "calcium-ionized"
CALCIUM_ANALYTES = (*TOTAL_ANALYTES, IONIZED)
_MOLAR_UNIT = "mmol/L"  # the unit of every *_mmol_l threshold name
# Each limit is printed in both units (8.5 mg/dL = 2.12 mmol/L); the pair names the thresholds.
_FIXED_LIMITS = {
    "total": {
        "lower": ("calcium_total_lower_limit_mg_dl", "calcium_total_lower_limit_mmol_l"),
        "upper": ("calcium_total_upper_limit_mg_dl", "calcium_total_upper_limit_mmol_l"),
        "critical": ("calcium_total_critical_below_mg_dl", "calcium_total_critical_below_mmol_l"),
    },
    "ionized": {
        "lower": ("calcium_ionized_lower_limit_mg_dl", "calcium_ionized_lower_limit_mmol_l"),
        "upper": ("calcium_ionized_upper_limit_mg_dl", "calcium_ionized_upper_limit_mmol_l"),
        "critical": ("calcium_ionized_critical_below_mg_dl", "calcium_ionized_critical_below_mmol_l"),
    },
}


@dataclass(frozen=True)
class CalciumReading:
    """One calcium result as the catalog judges it; `value` and the limits are in mg/dL."""

    lab: LabResult
    value: float
    lower_limit: float
    upper_limit: float
    critical_below: float
    albumin: LabResult | None = None  # the albumin (< 4.0 g/dL) the value was corrected with
    lower_limit_text: str = ""  # where the lower limit comes from, for the card
    upper_limit_text: str = ""

    @property
    def is_ionized(self) -> bool:
        return self.lab.analyte == IONIZED

    @property
    def is_corrected(self) -> bool:
        return self.albumin is not None or self.lab.analyte == "calcium-albumin-corrected"

    @property
    def is_low(self) -> bool:
        # "<8.0" is low; ">8.0" proves nothing about the lower limit.
        return self.value < self.lower_limit and self.lab.comparator not in (">", ">=")

    @property
    def is_critically_low(self) -> bool:
        """CTCAE grade 2 or worse: below 8.0 mg/dL (2.00 mmol/L), ionized below 4.0 mg/dL (1.00 mmol/L)."""
        return self.value < self.critical_below and self.lab.comparator not in (">", ">=")

    @property
    def is_high(self) -> bool:
        return self.value > self.upper_limit and self.lab.comparator not in ("<", "<=")

    @property
    def kind(self) -> str:
        if self.is_ionized:
            return "ionized calcium"
        if self.lab.analyte == "calcium-albumin-corrected":
            return "albumin-corrected calcium (reported by the lab)"
        return "total calcium"

    @property
    def shown_value(self) -> str:
        """The value as the clinician knows it: as reported, or as this service corrected it."""
        if self.albumin is not None:
            return f"{common.fmt_number(self.value)} mg/dL"
        return common.fmt_reported(self.lab)

    def describe(self) -> str:
        """'total calcium 7.4 mg/dL on 2026-11-10, corrected for albumin 3.0 g/dL (2026-11-09): 8.2 mg/dL'."""
        text = f"{self.kind} {common.fmt_result(self.lab)}"
        if self.albumin is not None:
            text += (
                f", corrected for albumin {common.fmt_result(self.albumin)}: "
                f"**{common.fmt_number(self.value)} mg/dL**"
            )
        return text


def _in_mg_dl(analyte: str, value_mmol_l: float) -> float:
    # Converted with the factor of the results themselves (seeds/units.toml), so that a result of
    # exactly 2.12 mmol/L lands exactly on the converted limit.
    return analyte_units()[analyte].to_canonical(value_mmol_l, _MOLAR_UNIT, None)


def _fixed(ctx: RuleContext, lab: LabResult, which: str) -> tuple[float, str]:
    """A fixed limit in mg/dL, and its two printed forms. A result is below a lower limit only
    when it is below both forms, and above an upper limit only when above both (the forms differ
    by < 0.3%), so a result exactly at the printed limit in either unit never counts."""
    mass, molar = _FIXED_LIMITS["ionized" if lab.analyte == IONIZED else "total"][which]
    forms = (ctx.threshold(mass), _in_mg_dl(lab.analyte, ctx.threshold(molar)))
    value = max(forms) if which == "upper" else min(forms)
    text = f"{common.fmt_number(ctx.threshold(mass))} mg/dL ({common.fmt_number(ctx.threshold(molar))} mmol/L)"
    return value, text


_RANGE_UNREAD = " (the lab's own reference range could not be read)"


def _reference_text(lab: LabResult, bound: float) -> str:
    reported_molar = (lab.original_text or "").split()[-1:] == [_MOLAR_UNIT]
    if reported_molar:
        return f"{common.fmt_number(bound / _in_mg_dl(lab.analyte, 1.0))} mmol/L (the lab's own reference range)"
    return f"{common.fmt_number(bound)} mg/dL (the lab's own reference range)"


def calcium_reading(ctx: RuleContext, lab: LabResult, *, corrected: bool = True) -> CalciumReading | None:
    """How the catalog reads one calcium result (None when it has no usable number)."""
    if lab.value is None:
        return None
    lower, lower_text = _fixed(ctx, lab, "lower")
    upper, upper_text = _fixed(ctx, lab, "upper")
    critical, _ = _fixed(ctx, lab, "critical")
    if lab.reference_low is not None:
        lower, lower_text = lab.reference_low, _reference_text(lab, lab.reference_low)
    if lab.reference_high is not None:
        upper, upper_text = lab.reference_high, _reference_text(lab, lab.reference_high)
    if lab.reference_range_unread:
        lower_text += _RANGE_UNREAD
        upper_text += _RANGE_UNREAD
    albumin = low_albumin_paired_with(ctx, lab) if corrected and lab.analyte == "calcium-total" else None
    value = lab.value
    if albumin is not None:
        value += ctx.threshold("albumin_correction_factor") * (
            ctx.threshold("albumin_correction_reference_g_dl") - albumin.value
        )
    return CalciumReading(lab, value, lower, upper, critical, albumin, lower_text, upper_text)


def albumin_paired_with(ctx: RuleContext, calcium: LabResult) -> LabResult | None:
    """The countable albumin measured closest to the calcium, within albumin_pairing_days either side."""
    window = timedelta(days=ctx.threshold("albumin_pairing_days"))
    paired = [
        albumin for albumin in labs.countable_results(ctx, "albumin", calcium.effective - window)
        if albumin.value is not None and albumin.effective - calcium.effective <= window
    ]
    return min(paired, key=lambda albumin: abs(albumin.effective - calcium.effective), default=None)


def low_albumin_paired_with(ctx: RuleContext, calcium: LabResult) -> LabResult | None:
    """The paired albumin when it is below 4.0 g/dL (the only case the catalog corrects)."""
    albumin = albumin_paired_with(ctx, calcium)
    if albumin is None or albumin.comparator in (">", ">="):
        return None
    return albumin if albumin.value < ctx.threshold("albumin_correction_reference_g_dl") else None


def recent_calcium_results(ctx: RuleContext) -> tuple[LabResult, ...]:
    """Countable calcium results (total, albumin-corrected, ionized) with a usable number within
    calcium_lookback_days, newest first."""
    since = ctx.days_before("calcium_lookback_days")
    results = [
        lab for analyte in CALCIUM_ANALYTES for lab in labs.countable_results(ctx, analyte, since) if lab.value is not None
    ]
    return tuple(sorted(results, key=lambda lab: lab.effective, reverse=True))


def _latest_of(results: tuple[LabResult, ...], analytes: tuple[str, ...]) -> LabResult | None:
    """The newest of these analytes; at one specimen time a lab-reported corrected calcium
    stands for the total calcium."""
    candidates = [lab for lab in results if lab.analyte in analytes]
    if not candidates:
        return None
    newest = [lab for lab in candidates if lab.effective == candidates[0].effective]
    return next((lab for lab in newest if lab.analyte == "calcium-albumin-corrected"), newest[0])


def compared_calcium(ctx: RuleContext) -> CalciumReading | None:
    """The calcium the catalog compares (see the module docstring), None without one in 30 days."""
    results = recent_calcium_results(ctx)
    total = _latest_of(results, TOTAL_ANALYTES)
    ionized = _latest_of(results, (IONIZED,))
    pairing = timedelta(days=ctx.threshold("ionized_calcium_pairing_days"))
    if ionized is not None and (total is None or abs(ionized.effective - total.effective) <= pairing):
        return calcium_reading(ctx, ionized)
    return calcium_reading(ctx, total) if total is not None else None


# --- hypercalcemia state (general rules: no calcium or vitamin D suggested while it holds) -----

@dataclass(frozen=True)
class HypercalcemiaState:
    reading: CalciumReading | None = None  # the high calcium compared
    diagnoses: tuple[ConditionEntry, ...] = ()  # active hypercalcemia with no normal calcium since

    def __bool__(self) -> bool:
        return self.reading is not None or bool(self.diagnoses)

    def describe(self) -> str:
        parts = []
        if self.reading is not None:
            parts.append(f"latest {self.reading.describe()} is above the upper limit of {self.reading.upper_limit_text}")
        parts += [f"active hypercalcemia with no normal calcium since: {common.fmt_condition_dated(c)}" for c in self.diagnoses]
        return "; ".join(parts)


def _diagnosed_on(condition: ConditionEntry) -> datetime | None:
    return condition.onset or condition.recorded


def normal_calcium_since(ctx: RuleContext, since: datetime | None) -> bool:
    """A countable calcium (any kind) not above its upper limit, dated at or after `since`
    (within calcium_lookback_days when the diagnosis has no date)."""
    start = since or ctx.days_before("calcium_lookback_days")
    for analyte in CALCIUM_ANALYTES:
        for lab in labs.countable_results(ctx, analyte, start):
            reading = calcium_reading(ctx, lab)
            if reading is not None and not reading.is_high and lab.comparator not in (">", ">="):
                return True
    return False


def hypercalcemia_state(ctx: RuleContext) -> HypercalcemiaState:
    """The catalog's hypercalcemia state: the calcium compared (30 days) is above its upper
    limit, or an active hypercalcemia diagnosis has no normal calcium since its onset."""
    reading = compared_calcium(ctx)
    high = reading if reading is not None and reading.is_high else None
    diagnoses = tuple(
        c for c in common.active_conditions(ctx, "hypercalcemia") if not normal_calcium_since(ctx, _diagnosed_on(c))
    )
    return HypercalcemiaState(high, diagnoses)


def is_for_hypercalcemia_of_malignancy(ctx: RuleContext) -> bool:
    """A 120 mg order (the regimen indicated for it) with hypercalcemia of malignancy as its
    reason or on the problem list: calcium and vitamin D are then given only to treat
    hypocalcemia (catalog, Hypercalcemia state). ICD-10-CM has no code of its own (E83.52 with a
    neoplasm), so a 60 mg order with a hypercalcemia code is not read as this indication."""
    return any(
        regimen_of(ctx, order) == "120mg"
        and indications.indication_evidence(ctx, order, ("hypercalcemia-of-malignancy",))
        for order in ctx.orders
    )
