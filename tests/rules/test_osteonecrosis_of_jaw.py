"""osteonecrosis-of-jaw (catalog v2): critical for an active ONJ with onset in the last 12 months;
warning for an older active ONJ or a history one; nothing when recorded in error."""

import pytest

from cds_service.rules import osteonecrosis_of_jaw
from tests.rules.record_builders import ICD10CM, actions, condition, evaluate, prolia_draft


def onj(**kw):
    return condition("M87.180", ICD10CM, text="Osteonecrosis of jaw due to drug", **kw)


@pytest.mark.parametrize("clinical", ["active", "recurrence", "relapse"])
def test_active_onj_is_critical_with_cancel_and_dental_referral(clinical):
    finding = evaluate(osteonecrosis_of_jaw, [onj(clinical=clinical, onset="2026-09-14")])
    assert finding.indicator == "critical"
    assert "M87.180" in finding.detail and clinical in finding.detail and "2026-09-14" in finding.detail
    kinds = actions(finding)
    assert ("delete", "MedicationRequest/draft-1") in kinds
    referral = next(resource for kind, resource in kinds if kind == "create")
    assert referral["code"]["coding"][0]["code"] == "103697008"
    assert referral["category"][0]["coding"][0]["code"] == "3457005"


@pytest.mark.parametrize("clinical", ["resolved", "inactive", "remission"])
def test_onj_in_history_is_a_warning_without_cancel(clinical):
    finding = evaluate(osteonecrosis_of_jaw, [onj(clinical=clinical, abatement="2024-03-15")])
    assert finding.indicator == "warning"
    assert "2024-03-15" in finding.detail
    assert [kind for kind, _ in actions(finding)] == ["create"]


def test_history_and_recent_active_together_is_critical():
    finding = evaluate(osteonecrosis_of_jaw, [onj(clinical="resolved", abatement="2022-01-01"),
                                              onj(clinical="active", onset="2026-06-01")])
    assert finding.indicator == "critical"


@pytest.mark.parametrize("onset, indicator", [
    ("2025-11-25", "critical"),  # 365 days before 2026-11-25: inside 12 months
    ("2025-11-24", "warning"),   # 366 days: ONJ left on the problem list
    (None, "critical"),          # undated: nothing says it is old
])
def test_active_onj_is_critical_for_12_months(onset, indicator):
    finding = evaluate(osteonecrosis_of_jaw, [onj(onset=onset)])
    assert finding.indicator == indicator
    if indicator == "warning":
        assert "ONJ on the problem list since 2025-11-24: **verify**" in finding.detail
        assert "specialist benefit-risk decision (AAOMS 2022)" in finding.detail
        assert [kind for kind, _ in actions(finding)] == ["create"]  # a referral, no cancel


@pytest.mark.parametrize("verification", ["entered-in-error", "refuted"])
def test_onj_recorded_in_error_or_refuted_is_ignored(verification):
    assert evaluate(osteonecrosis_of_jaw, [onj(clinical=None, verification=verification)]) is None


def test_unconfirmed_onj_still_counts():
    assert evaluate(osteonecrosis_of_jaw, [onj(verification="provisional", onset="2026-10-01")]).indicator == "critical"


def test_no_onj_no_card():
    assert evaluate(osteonecrosis_of_jaw, [condition("M81.0")]) is None


def test_active_onj_without_draft_id_still_refers():
    finding = evaluate(osteonecrosis_of_jaw, [onj()], drafts=[prolia_draft(order_id=None)])
    assert [kind for kind, _ in actions(finding)] == ["create"]
