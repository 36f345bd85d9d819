"""Kidney function's two uses (rules/concepts/kidney.py): Cockcroft-Gault creatinine clearance for
the bisphosphonate limits, else the latest eGFR; which one was used is said."""

from __future__ import annotations

import pytest

from cds_service.rules.concepts import kidney
from tests.rules.record_builders import PATIENT_ID, context, days_ago, egfr, observation


def patient(gender: str = "female", birth_date: str = "1944-03-02") -> dict:
    return {"resourceType": "Patient", "id": PATIENT_ID, "gender": gender, "birthDate": birth_date}


def creatinine(value, days: float = 10, unit: str = "mg/dL") -> dict:
    return observation("2160-0" if unit == "mg/dL" else "14682-9", value, unit, days_ago(days))


def weight(value, days: float = 10, unit: str = "kg") -> dict:
    resource = observation("29463-7", value, unit, days_ago(days))
    resource["category"][0]["coding"][0]["code"] = "vital-signs"
    return resource


def function(*resources):
    return kidney.kidney_function_for_bisphosphonates(context(resources))


def test_cockcroft_gault_with_actual_weight_age_and_sex():
    # woman of 82: (140 - 82) x 50 / (72 x 1.5) x 0.85 = 22.82 mL/min
    found = function(patient(), creatinine(1.5), weight(50), egfr(41))
    assert found.measure == kidney.CREATININE_CLEARANCE
    assert found.value == pytest.approx(22.82, abs=0.01) and found.unit == "mL/min"
    assert "serum creatinine 1.5 mg/dL" in found.describe() and "weight 50 kg" in found.describe()


def test_men_have_no_female_factor_and_units_are_converted():
    # man of 82, 110.2 lb (50 kg), creatinine 132.6 umol/L (1.5 mg/dL): (140 - 82) x 50 / 108 = 26.85
    found = function(patient("male"), creatinine(132.6, unit="umol/L"), weight(110.23, unit="[lb_av]"))
    assert found.value == pytest.approx(26.85, abs=0.05)
    assert "132.6 umol/L (1.5 mg/dL)" in found.describe() and "110.23 [lb_av] (50 kg)" in found.describe()


@pytest.mark.parametrize("resources", [
    lambda: [patient(), creatinine(1.5, days=400), weight(50), egfr(41)],   # creatinine older than 12 months
    lambda: [patient(), creatinine(1.5), weight(50, days=400), egfr(41)],   # weight older than 12 months
    lambda: [patient("unknown"), creatinine(1.5), weight(50), egfr(41)],    # no sex for the equation
    lambda: [creatinine(1.5), weight(50), egfr(41)],                        # no age
])
def test_without_every_input_the_latest_egfr_is_used(resources):
    found = function(*resources())
    assert found.measure == kidney.EGFR and found.value == 41
    assert found.describe().startswith("eGFR 41 mL/min/1.73m2 on")


def test_nothing_on_file_is_none_never_normal():
    assert function(patient()) is None


@pytest.mark.parametrize("limit, below", [(30, True), (22.8, False), (23, True)])
def test_is_below(limit, below):
    assert function(patient(), creatinine(1.5), weight(50)).is_below(limit) is below
