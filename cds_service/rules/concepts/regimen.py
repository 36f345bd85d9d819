"""The two denosumab regimens (card catalog "Regimen"): 60 mg every 6 months (Prolia-type) and
120 mg every 4 weeks (Xgeva-type) — which one a record is on, and intervals said in words.

Known from the product, else from the dose in dosageInstruction, else from the text. The doses,
intervals and graces are reviewed thresholds (seeds/thresholds.toml).
"""

from __future__ import annotations

import re

from cds_service.record.model import MedicationEntry
from cds_service.rules.common import fmt_number
from cds_service.rules.context import RuleContext

# The catalog's two regimens, named by their dose; the dose itself is a reviewed threshold.
REGIMEN_DOSE_THRESHOLD = {"60mg": "regimen_60mg_dose_mg", "120mg": "regimen_120mg_dose_mg"}
REGIMEN_INTERVAL = {"60mg": "regimen_60mg_interval_days", "120mg": "regimen_120mg_interval_days"}
# A regimen's dosing interval and the grace after it before a dose counts as late (topic overdue-dose).
REGIMEN_INTERVAL_AND_GRACE = {
    "60mg": ("regimen_60mg_interval_days", "regimen_60mg_grace_days"),
    "120mg": ("regimen_120mg_interval_days", "regimen_120mg_grace_days"),
}
REGIMEN_WORDS = {"60mg": "60 mg every 6 months", "120mg": "120 mg every 4 weeks"}
_DOSE_ROUNDING_MG = 0.5  # a dose recorded as 59.99 or 120.0 mg is the same dose


def regimen_of(ctx: RuleContext, entry: MedicationEntry) -> str | None:
    """'60mg' (every 6 months) or '120mg' (every 4 weeks): from the product, else the dose, else
    the text (a product named in the medication's name, e.g. "Xgeva", or a dose written in the
    dosage text or the name, e.g. "120 mg subcutaneously every 4 weeks")."""
    return (
        _regimen_of_concepts(entry.concepts)
        or regimen_of_dose(ctx, entry.dose_mg)
        or _regimen_of_concepts(entry.name_concepts)
        or regimen_of_dose(ctx, dose_mg_in_text(entry.dosage_text))
        or regimen_of_dose(ctx, dose_mg_in_text(entry.name))
    )


def product_regimen(entry: MedicationEntry) -> str | None:
    """The regimen the product itself stands for (its codes, else a product named in its name)."""
    return _regimen_of_concepts(entry.concepts) or _regimen_of_concepts(entry.name_concepts)


def _regimen_of_concepts(concepts: frozenset[str]) -> str | None:
    if "denosumab-60mg" in concepts:
        return "60mg"
    if "denosumab-120mg" in concepts:
        return "120mg"
    return None


def regimen_of_dose(ctx: RuleContext, dose_mg: float | None) -> str | None:
    """The regimen whose dose this is (60 mg or 120 mg, from seeds/thresholds.toml), else None."""
    if dose_mg is None:
        return None
    for regimen, threshold in REGIMEN_DOSE_THRESHOLD.items():
        if abs(dose_mg - ctx.threshold(threshold)) < _DOSE_ROUNDING_MG:
            return regimen
    return None


# A dose in free text: "120 mg", "60mg", "120 mg/1.7 mL"; never a concentration such as "70 mg/mL".
_DOSE_IN_TEXT = re.compile(r"(?<![\d.])(\d+(?:\.\d+)?)\s*(?:mg|milligrams?)\b(?!\s*/\s*m?l\b)", re.IGNORECASE)


def dose_mg_in_text(text: str | None) -> float | None:
    """The first dose in mg written in free text (e.g. an order's dosage text), else None."""
    match = _DOSE_IN_TEXT.search(text or "")
    return float(match.group(1)) if match else None


def regimen_name(regimen: str) -> str:
    """'60 mg' / '120 mg' for a regimen code."""
    return regimen.replace("mg", " mg")


# --- intervals in words -------------------------------------------------------------------------

_DAYS_PER_MONTH = 30.4375  # calendar average


def interval_in_words(days: float) -> str:
    """'daily', 'weekly', 'every 4 weeks', 'monthly', 'every 6 months', 'yearly' — never
    'every 1 days' or 'every 183 days'; 'every N days' only when no calendar unit fits."""
    if days <= 0:
        return "at no usable interval"
    if days < 1:
        per_day = round(1 / days)
        return {2: "twice daily", 3: "three times daily", 4: "four times daily"}.get(per_day, f"{per_day} times daily")
    if abs(days - 1) < 0.05:
        return "daily"
    whole = round(days)
    months = round(days / _DAYS_PER_MONTH)
    # Within half a day per month of a whole number of months ("every 180 days" and "every 183
    # days" are both how EHRs write 6 months; 30 and 31 days are "monthly").
    if months >= 1 and abs(days - months * _DAYS_PER_MONTH) <= max(1.5, 0.5 * months):
        if months == 12:
            return "yearly"
        return "monthly" if months == 1 else f"every {months} months"
    if abs(days - whole) < 0.05 and whole % 7 == 0:
        weeks = whole // 7
        return "weekly" if weeks == 1 else f"every {weeks} weeks"
    in_days = f"every {whole} days" if abs(days - whole) < 0.05 else f"every {fmt_number(days)} days"
    # Near, but not at, a number of months (149 days): the exact days matter (a limit is 150), the
    # months say what it amounts to.
    near_months = days / _DAYS_PER_MONTH
    if days >= 28 and abs(near_months - round(near_months)) <= 0.03 * round(near_months) + 0.05:
        return f"{in_days} (about {round(near_months)} month{'s' if round(near_months) > 1 else ''})"
    return in_days
