"""hypocalcemia: which calcium is compared and against which limit, in both units, with and without
albumin; graded critical from CTCAE grade 2, else warning."""

import pytest

from cds_service.rules import hypocalcemia
from tests.rules.record_builders import (
    ENCOUNTER_ID, PATIENT_ID, actions, albumin, calcium, created_codes, days_ago, evaluate, observation, prolia_draft,
)


def fires(*resources, **kw) -> bool:
    return evaluate(hypocalcemia, resources, **kw) is not None


def test_low_total_calcium_below_8_is_critical_and_shows_value_date_and_limit():
    finding = evaluate(hypocalcemia, [calcium(7.9, days=10)])
    assert finding.indicator == "critical"
    assert "7.9 mg/dL on 2026-11-15" in finding.summary
    assert "7.9 mg/dL on 2026-11-15" in finding.detail and "8.5 mg/dL (2.12 mmol/L)" in finding.detail


def test_card_suggests_cancelling_the_draft_and_a_repeat_calcium_with_albumin_magnesium_phosphate():
    finding = evaluate(hypocalcemia, [calcium(7.9)])
    assert ("delete", "MedicationRequest/draft-1") in actions(finding)
    assert created_codes(finding) == {"17861-6", "1751-7", "19123-9", "2777-1"}
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
    assert "1.95 mmol/L" in finding.summary and "1.95 mmol/L (7.82 mg/dL)" in finding.detail


@pytest.mark.parametrize("value, unit, loinc, expected", [
    (1.11, "mmol/L", "1994-3", True), (1.12, "mmol/L", "1994-3", False),
    (4.4, "mg/dL", "38230-9", True), (4.6, "mg/dL", "17863-2", False), (1.05, "mmol/L", "1995-0", True),
])
def test_ionized_calcium_limit(value, unit, loinc, expected):
    assert fires(observation(loinc, value, unit, days_ago(3))) is expected


@pytest.mark.parametrize("total, albumin_g_dl", [(8.7, 4.6), (8.8, 4.7), (8.5, 4.0), (8.6, 4.0)])
def test_no_correction_at_albumin_4_or_above(total, albumin_g_dl):
    # version 1 corrected downwards: 8.7 with albumin 4.6 became a critical 8.22
    assert not fires(calcium(total, days=10), albumin(albumin_g_dl, days=9))


def test_low_albumin_corrects_upwards_and_shows_both_values():
    # 7.6 + 0.8 * (4.0 - 3.5) = 8.0: grade 1 (warning), the raw 7.6 alone would be critical
    finding = evaluate(hypocalcemia, [calcium(7.6, days=10), albumin(3.5, days=9)])
    assert finding.indicator == "warning"
    assert "total calcium 7.6 mg/dL on 2026-11-15" in finding.detail and "albumin 3.5 g/dL" in finding.detail
    assert "**8 mg/dL**" in finding.detail


@pytest.mark.parametrize("albumin_g_dl, corrected", [(3.9, True), (4.0, False)])
def test_albumin_boundary_at_4(albumin_g_dl, corrected):
    # 8.4 corrected with 3.9 is 8.48 (still low); with 4.0 no correction: 8.4 low either way
    finding = evaluate(hypocalcemia, [calcium(8.4, days=10), albumin(albumin_g_dl, days=10)])
    assert finding.indicator == "warning"
    assert ("corrected for albumin" in finding.detail) is corrected


def test_raw_calcium_below_while_corrected_is_not():
    # 8.1 + 0.8 * (4.0 - 2.8) = 9.06
    assert not fires(calcium(8.1), albumin(2.8))


def test_albumin_in_grams_per_litre_corrects_the_same_way():
    assert not fires(calcium(8.1), albumin(28, unit="g/L"))


@pytest.mark.parametrize("albumin_days, expected", [(16, False), (18, True), (3, False), (2, True)])
def test_albumin_counts_only_within_seven_days_either_side(albumin_days, expected):
    # calcium 8.2 ten days ago: a paired albumin of 3.0 corrects it to 9.0 (normal); unpaired, 8.2 is low
    assert fires(calcium(8.2, days=10), albumin(3.0, days=albumin_days)) is expected


def test_the_albumin_closest_to_the_calcium_is_used():
    # closest (1 day from the calcium) is 2.8 -> corrected 9.06 normal; the 4.2 six days away is ignored
    assert not fires(calcium(8.1, days=10), albumin(2.8, days=11), albumin(4.2, days=4))
    # closest is 4.2 (no correction: 8.1 is low), the 2.8 six days away is ignored
    assert fires(calcium(8.1, days=10), albumin(4.2, days=11), albumin(2.8, days=4))


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


def test_the_results_own_reference_range_low_is_its_limit():
    finding = evaluate(hypocalcemia, [calcium(8.5, low=8.6, high=10.3)])
    assert finding.indicator == "warning"  # version 1 called a borderline 8.5 critical
    assert "8.6 mg/dL (the lab's own reference range)" in finding.detail
    assert not fires(calcium(8.6, low=8.6, high=10.3))
    # the lab's own lower limit replaces the default: 8.45 is normal for a lab whose range starts at 8.4
    assert not fires(calcium(8.45, low=8.4, high=10.2))
    assert fires(calcium(8.45))


@pytest.mark.parametrize("value, unit, expected", [
    (7.99, "mg/dL", "critical"), (8.0, "mg/dL", "warning"), (8.49, "mg/dL", "warning"), (8.5, "mg/dL", None),
    (1.99, "mmol/L", "critical"), (2.00, "mmol/L", "warning"), (2.11, "mmol/L", "warning"), (2.12, "mmol/L", None),
])
def test_grade_boundaries_of_total_calcium(value, unit, expected):
    finding = evaluate(hypocalcemia, [calcium(value, unit=unit)])
    assert (finding.indicator if finding else None) == expected


@pytest.mark.parametrize("value, unit, expected", [
    (0.99, "mmol/L", "critical"), (1.00, "mmol/L", "warning"), (1.11, "mmol/L", "warning"), (1.12, "mmol/L", None),
    (3.9, "mg/dL", "critical"), (4.0, "mg/dL", "warning"),
])
def test_grade_boundaries_of_ionized_calcium(value, unit, expected):
    finding = evaluate(hypocalcemia, [observation("1994-3" if unit == "mmol/L" else "38230-9", value, unit, days_ago(3))])
    assert (finding.indicator if finding else None) == expected


@pytest.mark.parametrize("ionized_days, expected", [(3, None), (17, None), (18, "warning")])
def test_ionized_within_7_days_of_the_total_decides(ionized_days, expected):
    # total 8.2 (low) ten days ago; a normal ionized 1.20 mmol/L within 7 days of it decides
    finding = evaluate(hypocalcemia, [calcium(8.2, days=10), observation("1994-3", 1.20, "mmol/L", days_ago(ionized_days))])
    assert (finding.indicator if finding else None) == expected


def test_advanced_ckd_notes_that_corrected_calcium_overestimates_ionized_and_suggests_one():
    from tests.rules.record_builders import egfr
    finding = evaluate(hypocalcemia, [calcium(7.8, days=4), albumin(3.2, days=4), egfr(22, days=4)])
    assert "overestimate ionized calcium" in finding.detail and "eGFR 22 mL/min/1.73m2" in finding.detail
    assert "1994-3" in created_codes(finding)
    finding = evaluate(hypocalcemia, [calcium(7.8, days=4), egfr(45, days=4)])
    assert "overestimate" not in finding.detail and "1994-3" not in created_codes(finding)


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


def test_every_grade_says_hypocalcemia_is_a_contraindication():
    for value in (7.5, 8.3):
        assert "contraindication" in evaluate(hypocalcemia, [calcium(value)]).detail


def test_no_calcium_on_file_is_not_this_cards_business():
    assert not fires()
