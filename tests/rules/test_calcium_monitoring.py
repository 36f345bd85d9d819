"""calcium-monitoring: a denosumab order with no countable calcium result in the last 30 days."""

import pytest

from cds_service.rules import calcium_monitoring
from tests.rules.record_builders import (
    CPT, albumin, calcium, condition, created_codes, days_ago, egfr, evaluate, observation, procedure,
)


def fires(*resources) -> bool:
    return evaluate(calcium_monitoring, resources) is not None


def test_no_calcium_on_file_is_a_warning_with_a_calcium_and_albumin_order():
    finding = evaluate(calcium_monitoring, [])
    assert finding.indicator == "warning"
    assert "No final serum calcium result since 2026-10-26" in finding.detail and "none on file" in finding.detail
    assert created_codes(finding) == {"17861-6", "1751-7"}


@pytest.mark.parametrize("days, expected", [(29, False), (31, True)])
def test_thirty_day_window(days, expected):
    assert fires(calcium(9.3, days=days), albumin(4.0, days=days)) is expected


def test_old_result_is_shown_and_flagged_when_it_was_low():
    finding = evaluate(calcium_monitoring, [calcium(7.7, days=40)])
    assert "7.7 mg/dL on 2026-10-16" in finding.detail and "**low**" in finding.detail


@pytest.mark.parametrize("loinc, value, unit", [
    ("1994-3", 1.21, "mmol/L"), ("17863-2", 4.8, "mg/dL"), ("29265-6", 2.3, "mmol/L"), ("2000-8", 2.31, "mmol/L"),
    ("49765-1", 9.1, "mg/dL"),
])
def test_any_calcium_kind_counts(loinc, value, unit):
    assert not fires(observation(loinc, value, unit, days_ago(5)))


def test_albumin_alone_is_not_a_calcium():
    assert fires(albumin(4.0, days=2))


def test_preliminary_result_does_not_count_but_is_shown():
    finding = evaluate(calcium_monitoring, [calcium(9.2, days=1, status="preliminary"), calcium(9.0, days=60)])
    assert finding is not None
    assert "9.2 mg/dL on 2026-11-24 (preliminary)" in finding.detail


def test_entered_in_error_result_does_not_count_and_is_not_shown():
    finding = evaluate(calcium_monitoring, [calcium(9.2, days=1, status="entered-in-error")])
    assert finding is not None and "9.2" not in finding.detail


def test_a_result_with_an_unreadable_unit_does_not_count():
    assert fires(calcium(9.1, days=3, unit="mg%", ucum=False))


def test_the_card_rests_on_the_absence_of_a_calcium_in_30_days():
    finding = evaluate(calcium_monitoring, [])
    (absence,) = finding.rests_on_absence
    assert absence.category == "labs" and "30 days" in absence.check
    assert absence.since.date().isoformat() == "2026-10-26"


@pytest.mark.parametrize("evidence", [
    lambda: egfr(24, days=40),
    lambda: condition("Z99.2"),
    lambda: procedure("90935", CPT, days=3),
])
def test_the_post_dose_schedule_of_advanced_ckd_is_left_to_hypocalcemia_risk(evidence):
    # version 2: one order set per response; the series is the hypocalcemia-risk card's
    finding = evaluate(calcium_monitoring, [evidence()])
    assert "weekly" not in finding.detail and created_codes(finding) == {"17861-6", "1751-7"}
