"""hypocalcemia-risk: each risk factor, the critical combination, and what does not count."""

import pytest

from cds_service.rules import hypocalcemia_risk
from tests.rules.record_builders import (
    CPT, ICD10CM, PATIENT_ID, RXNORM, SNOMED, actions, created_codes, condition, date_ago, days_ago, egfr,
    evaluate, medication_order, observation, procedure, prolia_administration, prolia_draft,
)

CINACALCET = {"system": RXNORM, "code": "432402", "display": "cinacalcet 30 MG Oral Tablet"}
PARSABIV = {"system": RXNORM, "code": "1876136", "display": "1 ML etelcalcetide 5 MG/ML Injection [Parsabiv]"}


def indicator(*resources):
    finding = evaluate(hypocalcemia_risk, resources)
    return finding.indicator if finding else None


def test_no_risk_factor_no_card():
    assert indicator(egfr(72), condition("M81.0")) is None


@pytest.mark.parametrize("loinc", ["98979-8", "98980-6", "62238-1", "33914-3", "77147-7", "88294-4", "50044-7", "69405-9"])
def test_egfr_below_30_under_any_of_its_loinc_codes(loinc):
    finding = evaluate(hypocalcemia_risk, [egfr(24, loinc=loinc)])
    assert finding.indicator == "warning"
    assert "eGFR 24 mL/min/1.73m2" in finding.detail and "on 2026-11-15" in finding.detail


@pytest.mark.parametrize("value, expected", [(29.9, "warning"), (30, None), (45, None)])
def test_egfr_limit(value, expected):
    assert indicator(egfr(value)) == expected


def test_only_the_latest_egfr_within_twelve_months_counts():
    assert indicator(egfr(25, days=400)) is None
    assert indicator(egfr(25, days=200), egfr(48, days=20)) is None
    assert indicator(egfr(48, days=200), egfr(25, days=20)) == "warning"


XGEVA = {"system": RXNORM, "code": "1046402", "display": "1.7 ML denosumab 70 MG/ML Injection [Xgeva]"}


def xgeva_draft() -> dict:
    draft = prolia_draft(XGEVA)
    draft["dosageInstruction"] = [{"text": "120 mg subcutaneously every 4 weeks"}]
    return draft


def patient(gender: str = "female", birth_date: str = "1944-03-02") -> dict:
    return {"resourceType": "Patient", "id": PATIENT_ID, "gender": gender, "birthDate": birth_date}


def creatinine(value: float, days: float = 10) -> dict:
    return observation("2160-0", value, "mg/dL", days_ago(days))


def weight(kg: float, days: float = 10) -> dict:
    resource = observation("29463-7", kg, "kg", days_ago(days))
    resource["category"][0]["coding"][0]["code"] = "vital-signs"
    return resource


def timings(finding) -> list[dict]:
    return [resource["occurrenceTiming"]["repeat"] for kind, resource in actions(finding)
            if kind == "create" and "occurrenceTiming" in resource]


def test_advanced_ckd_at_initiation_lists_the_boxed_warning_steps_with_latest_values():
    pth = observation("2731-8", 410, "pg/mL", days_ago(40))
    finding = evaluate(hypocalcemia_risk, [egfr(22), pth])
    assert "Before starting, evaluate for CKD-MBD" in finding.detail
    assert "intact PTH: 410 pg/mL on 2026-10-16" in finding.detail
    assert "1,25-(OH)2 vitamin D: none on file" in finding.detail
    assert "expertise" in finding.detail and "weekly for the first month" in finding.detail
    # the PTH of 40 days ago is not ordered again; the calcium series is post-dose (17861-6)
    assert created_codes(finding) == {"17861-6", "1751-7", "62292-8", "1649-3"}
    ckd_mbd = [s for s in finding.suggestions if "CKD-MBD" in s.label][0]
    assert {a.resource["code"]["coding"][0]["code"] for a in ckd_mbd.actions} == {"17861-6", "1751-7", "62292-8", "1649-3"}


def test_ckd_mbd_tests_older_than_12_months_are_suggested_again():
    pth = observation("2731-8", 410, "pg/mL", days_ago(370))
    finding = evaluate(hypocalcemia_risk, [egfr(22), pth])
    assert "2731-8" in created_codes(finding)


def test_on_60mg_therapy_no_before_starting_wording_and_no_ckd_mbd_orders():
    finding = evaluate(hypocalcemia_risk, [egfr(22), prolia_administration(183)])
    assert "Before starting" not in finding.detail
    assert not [s for s in finding.suggestions if "CKD-MBD" in s.label]
    assert len(timings(finding)) == 2  # the post-dose series at every dose


def test_60mg_advanced_ckd_post_dose_series_weekly_4_then_monthly_5_as_occurrence_timing():
    finding = evaluate(hypocalcemia_risk, [egfr(22)])
    weekly, monthly = timings(finding)
    assert weekly == {"boundsPeriod": {"start": date_ago(-7)}, "count": 4, "frequency": 1, "period": 1, "periodUnit": "wk"}
    assert monthly == {"boundsPeriod": {"start": date_ago(-58)}, "count": 5, "frequency": 1, "period": 1, "periodUnit": "mo"}
    series = [s for s in finding.suggestions if "post-dose" in s.label][0]
    assert series.label == "Order post-dose serum calcium weekly × 4, then monthly × 5" and len(series.label) < 80


def test_the_post_dose_series_follows_the_date_the_draft_will_be_given():
    draft = prolia_draft()
    draft["dosageInstruction"] = [{"text": "60 mg subcutaneously once", "timing": {"repeat": {"boundsPeriod": {"start": date_ago(-10)}}}}]
    weekly, monthly = timings(evaluate(hypocalcemia_risk, [egfr(22)], drafts=[draft]))
    assert weekly["boundsPeriod"] == {"start": date_ago(-17)}  # about day 7 after a dose given in 10 days
    assert monthly["boundsPeriod"] == {"start": date_ago(-68)}


def test_120mg_advanced_ckd_at_initiation_weekly_4_only_citing_the_xgeva_label():
    finding = evaluate(hypocalcemia_risk, [egfr(22)], drafts=[xgeva_draft()])
    assert [t["count"] for t in timings(finding)] == [4]
    assert "Xgeva label" in finding.detail and "boxed warning" not in finding.detail


def test_120mg_advanced_ckd_on_therapy_one_calcium_7_to_14_days_after_the_dose():
    xgeva_given = prolia_administration(28)
    xgeva_given["medicationCodeableConcept"] = {"coding": [XGEVA]}
    finding = evaluate(hypocalcemia_risk, [egfr(22), xgeva_given], drafts=[xgeva_draft()])
    assert timings(finding) == []
    periods = [r["occurrencePeriod"] for kind, r in actions(finding) if kind == "create"]
    assert periods == [{"start": date_ago(-7), "end": date_ago(-14)}]


@pytest.mark.parametrize("creatinine_mg_dl, regimen, expected", [
    # woman of 82, 50 kg: (140 - 82) x 50 / (72 x 1.5) x 0.85 = 22.8 mL/min; eGFR 41
    (1.5, "120mg", "warning"), (1.5, "60mg", None),
    # (140 - 82) x 50 / (72 x 1.1) x 0.85 = 31.1 mL/min: not below 30
    (1.1, "120mg", None),
])
def test_creatinine_clearance_counts_for_the_120mg_regimen_only(creatinine_mg_dl, regimen, expected):
    resources = [patient(birth_date="1944-03-02"), creatinine(creatinine_mg_dl), weight(50), egfr(41)]
    drafts = [xgeva_draft()] if regimen == "120mg" else None
    finding = evaluate(hypocalcemia_risk, resources, drafts=drafts)
    assert (finding.indicator if finding else None) == expected
    if finding:
        assert "creatinine clearance (Cockcroft-Gault, actual body weight) 22.8 mL/min" in finding.detail


def test_a_ckd_stage_4_code_contradicted_by_a_later_egfr_of_30_or_more_does_not_count():
    assert indicator(condition("N18.4", onset="2025-02-01"), egfr(38, days=30)) is None
    assert indicator(condition("N18.4", onset="2025-02-01"), egfr(30, days=30)) is None
    assert indicator(condition("N18.4", onset="2025-02-01"), egfr(29, days=30)) == "warning"
    # an eGFR from before the diagnosis does not contradict it
    assert indicator(condition("N18.4", onset=date_ago(20)), egfr(38, days=60)) == "warning"


def test_dialysis_dependence_ends_with_a_kidney_transplant_after_it():
    assert indicator(condition("Z99.2", onset="2022-01-10"), condition("Z94.0", onset="2024-05-01")) is None
    assert indicator(condition("Z99.2", onset="2024-06-01"), condition("Z94.0", onset="2020-05-01")) == "warning"


@pytest.mark.parametrize("code, system", [("Z99.2", ICD10CM), ("105502003", SNOMED), ("428982002", SNOMED)])
def test_dialysis_dependence_as_a_condition(code, system):
    finding = evaluate(hypocalcemia_risk, [condition(code, system)])
    assert finding.indicator == "warning" and "Dialysis dependence" in finding.detail


def test_resolved_dialysis_dependence_does_not_count():
    assert indicator(condition("Z99.2", clinical="resolved", abatement="2025-01-10")) is None


@pytest.mark.parametrize("code, system", [("90935", CPT), ("90937", CPT), ("302497006", SNOMED), ("71192002", SNOMED)])
def test_recent_dialysis_procedures(code, system):
    finding = evaluate(hypocalcemia_risk, [procedure(code, system, days=2), procedure(code, system, days=4)])
    assert finding.indicator == "warning" and "2 dialysis sessions in the last 90 days" in finding.detail


@pytest.mark.parametrize("days, status", [(100, "completed"), (3, "not-done"), (3, "entered-in-error")])
def test_dialysis_procedures_that_do_not_count(days, status):
    assert indicator(procedure("90935", CPT, days=days, status=status)) is None


@pytest.mark.parametrize("code, system", [("N18.4", ICD10CM), ("N18.5", ICD10CM), ("N18.6", ICD10CM),
                                          ("431857002", SNOMED), ("46177005", SNOMED)])
def test_ckd_stage_4_5_and_esrd_diagnoses(code, system):
    finding = evaluate(hypocalcemia_risk, [condition(code, system)])
    assert finding.indicator == "warning" and "Advanced chronic kidney disease" in finding.detail


def test_resolved_ckd_does_not_count():
    assert indicator(condition("N18.4", clinical="resolved", abatement="2023-06-15"), egfr(62)) is None


def test_ckd_stage_3_is_not_advanced():
    assert indicator(condition("N18.30")) is None


@pytest.mark.parametrize("compounding", [
    lambda: condition("N25.0"), lambda: condition("N25.81"), lambda: condition("16726004", SNOMED),
    lambda: medication_order(CINACALCET), lambda: medication_order(PARSABIV),
])
def test_advanced_ckd_with_ckd_mbd_or_calcimimetic_is_critical(compounding):
    assert indicator(egfr(18), compounding()) == "critical"
    assert indicator(condition("Z99.2"), compounding()) == "critical"


def test_ckd_mbd_or_calcimimetic_without_advanced_ckd_is_a_warning():
    assert indicator(condition("N25.81"), egfr(41)) == "warning"
    assert indicator(medication_order(CINACALCET), egfr(41)) == "warning"


def test_a_stopped_calcimimetic_does_not_count():
    assert indicator(egfr(18), medication_order(CINACALCET, status="stopped")) == "warning"
    assert indicator(medication_order(CINACALCET, status="completed")) is None


@pytest.mark.parametrize("code, label", [("E20.9", "Hypoparathyroidism"), ("E89.2", "Hypoparathyroidism"),
                                         ("K90.0", "Malabsorption"), ("K90.9", "Malabsorption")])
def test_hypoparathyroidism_and_malabsorption_ask_for_a_post_dose_mineral_check(code, label):
    finding = evaluate(hypocalcemia_risk, [condition(code)])
    assert finding.indicator == "warning"
    assert f"{label}: " in finding.detail and "10-14 days after the denosumab injection" in finding.detail
    assert created_codes(finding) == {"17861-6", "1751-7", "2777-1", "19123-9"}
    notes = {resource["note"][0]["text"] for kind, resource in actions(finding) if kind == "create"}
    assert notes == {"Draw 10-14 days after the denosumab injection."}
    periods = {str(resource["occurrencePeriod"]) for kind, resource in actions(finding) if kind == "create"}
    assert periods == {str({"start": date_ago(-10), "end": date_ago(-14)})}


def test_every_factor_found_is_listed():
    finding = evaluate(hypocalcemia_risk, [egfr(14), condition("N18.6"), condition("N25.0"),
                                           medication_order(CINACALCET, text="Cinacalcet 30 mg tablet"), condition("E89.2")])
    assert finding.indicator == "critical"
    for expected in ("eGFR 14", "N18.6", "CKD-MBD: ", "Calcimimetic: Cinacalcet 30 mg tablet", "Hypoparathyroidism: "):
        assert expected in finding.detail
