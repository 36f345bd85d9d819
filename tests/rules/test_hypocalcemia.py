"""hypocalcemia: which calcium results make the critical card, in both units, with and without albumin."""

import pytest

from cds_service.rules import hypocalcemia
from tests.rules.record_builders import (
    ENCOUNTER_ID, PATIENT_ID, actions, albumin, calcium, created_codes, days_ago, evaluate, observation, prolia_draft,
)


def fires(*resources, **kw) -> bool:
    return evaluate(hypocalcemia, resources, **kw) is not None


def test_low_total_calcium_is_critical_and_shows_value_date_and_limit():
    finding = evaluate(hypocalcemia, [calcium(7.9, days=10)])
    assert finding.indicator == "critical"
    assert "7.9 mg/dL on 2026-11-15" in finding.summary
    assert "7.9 mg/dL on 2026-11-15" in finding.detail and "8.5 mg/dL (2.12 mmol/L)" in finding.detail


def test_card_suggests_cancelling_the_draft_and_a_repeat_calcium_with_albumin():
    finding = evaluate(hypocalcemia, [calcium(7.9)])
    assert ("delete", "MedicationRequest/draft-1") in actions(finding)
    assert created_codes(finding) == {"17861-6", "1751-7"}
    for kind, resource in actions(finding):
        if kind == "create":
            assert resource["resourceType"] == "ServiceRequest" and resource["status"] == "draft"
            assert resource["subject"] == {"reference": f"Patient/{PATIENT_ID}"}
            assert resource["encounter"] == {"reference": f"Encounter/{ENCOUNTER_ID}"}
            assert resource["category"][0]["coding"][0]["code"] == "108252007"


def test_a_draft_without_id_gets_the_card_but_no_delete_action():
    finding = evaluate(hypocalcemia, [calcium(7.9)], drafts=[prolia_draft(order_id=None)])
    assert finding.indicator == "critical"
    assert all(kind != "delete" for kind, _ in actions(finding))


@pytest.mark.parametrize("value, expected", [(1.95, True), (2.11, True), (2.12, False), (2.30, False)])
def test_calcium_only_in_mmol_per_litre(value, expected):
    assert fires(calcium(value, unit="mmol/L")) is expected


def test_mmol_result_is_shown_as_reported():
    finding = evaluate(hypocalcemia, [calcium(1.95, unit="mmol/L")])
    assert "1.95 mmol/L" in finding.summary and "reported 1.95 mmol/L" in finding.detail


@pytest.mark.parametrize("value, unit, loinc, expected", [
    (1.11, "mmol/L", "1994-3", True), (1.12, "mmol/L", "1994-3", False),
    (4.4, "mg/dL", "38230-9", True), (4.6, "mg/dL", "17863-2", False), (1.05, "mmol/L", "1995-0", True),
])
def test_ionized_calcium_limit(value, unit, loinc, expected):
    assert fires(observation(loinc, value, unit, days_ago(3))) is expected


def test_corrected_calcium_below_while_raw_is_not():
    # 8.7 + 0.8 * (4.0 - 4.6) = 8.22
    finding = evaluate(hypocalcemia, [calcium(8.7, days=10), albumin(4.6, days=16)])
    assert finding is not None and "8.22 mg/dL" in finding.detail and "albumin 4.6 g/dL" in finding.detail


def test_raw_calcium_below_while_corrected_is_not():
    # 8.1 + 0.8 * (4.0 - 2.8) = 9.06
    assert not fires(calcium(8.1), albumin(2.8))


def test_albumin_in_grams_per_litre_corrects_the_same_way():
    assert not fires(calcium(8.1), albumin(28, unit="g/L"))


@pytest.mark.parametrize("albumin_days, expected", [(16, True), (18, False), (3, True), (2, False)])
def test_albumin_counts_only_within_seven_days_either_side(albumin_days, expected):
    # calcium 8.7 ten days ago: a paired albumin of 4.6 makes it low; unpaired, 8.7 is normal
    assert fires(calcium(8.7, days=10), albumin(4.6, days=albumin_days)) is expected


def test_the_albumin_closest_to_the_calcium_is_used():
    # closest (1 day from the calcium) is 2.8 -> corrected 9.06 normal; the 4.6 six days away is ignored
    assert not fires(calcium(8.1, days=10), albumin(2.8, days=11), albumin(4.6, days=4))


def test_calcium_older_than_thirty_days_is_not_judged():
    assert not fires(calcium(7.5, days=31))
    assert fires(calcium(7.5, days=29))


@pytest.mark.parametrize("status", ["preliminary", "entered-in-error", "registered", "cancelled"])
def test_results_that_are_not_final_do_not_count(status):
    assert not fires(calcium(7.2, days=2, status=status), calcium(9.3, days=12))


@pytest.mark.parametrize("status", ["amended", "corrected"])
def test_amended_and_corrected_results_count(status):
    assert fires(calcium(7.2, days=2, status=status))


def test_a_newer_preliminary_normal_does_not_hide_a_final_low():
    assert fires(calcium(9.4, days=1, status="preliminary"), calcium(7.8, days=8))


def test_only_the_latest_calcium_is_judged():
    assert not fires(calcium(7.9, days=20), calcium(9.2, days=5))
    assert fires(calcium(9.2, days=20), calcium(7.9, days=5))


def test_the_results_own_reference_range_low_counts_as_well():
    assert fires(calcium(8.5, low=8.6, high=10.3))
    # a lower lab range does not lift the fixed limit: 8.45 is below 8.5 mg/dL
    assert fires(calcium(8.45, low=8.4, high=10.2))
    finding = evaluate(hypocalcemia, [calcium(8.5, low=8.6, high=10.3)])
    assert "8.6 mg/dL (the lab's own reference range low)" in finding.detail


def test_lab_reported_albumin_corrected_calcium_stands_for_the_specimen():
    when = days_ago(6)
    total = observation("2000-8", 2.16, "mmol/L", when)
    reported = observation("29265-6", 2.04, "mmol/L", when)
    finding = evaluate(hypocalcemia, [total, reported])
    assert finding is not None and "reported by the lab" in finding.detail and "2.04 mmol/L" in finding.detail
    # and the other way round: a raw total that looks low, corrected normal by the lab
    assert not fires(observation("17861-6", 8.2, "mg/dL", when), observation("46099-8", 8.9, "mg/dL", when))


def test_less_than_comparator_counts_as_low():
    assert fires(calcium(5.0, comparator="<"))


def test_result_with_an_unknown_unit_is_not_compared():
    assert not fires(calcium(7.1, unit="mg%", ucum=False))


def test_a_deployment_can_change_the_limits():
    overrides = {"calcium_total_lower_limit_mg_dl": 8.8, "calcium_total_lower_limit_mmol_l": 2.2}
    assert fires(calcium(8.6), overrides=overrides)
    assert not fires(calcium(8.6))


def test_no_calcium_on_file_is_not_this_cards_business():
    assert not fires()
