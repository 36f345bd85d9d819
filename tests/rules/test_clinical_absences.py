"""Findings that rest on data not found say so (cds_service.cards.Absence), and findings that rest
on what was found do not: pregnancy, atypical-femoral-fracture (catalog v2, "Incomplete data")."""

from cds_service.rules import atypical_femoral_fracture, pregnancy
from tests.rules.record_builders import (
    ICD10CM, LOINC, condition, evaluate, observation, prolia_administration, days_ago,
)

WOMAN_32 = {"resourceType": "Patient", "id": "pat-7731", "gender": "female", "birthDate": "1994-06-15"}


def test_pregnancy_initiation_info_rests_on_no_test_and_no_exclusion():
    finding = evaluate(pregnancy, [WOMAN_32])
    assert finding.indicator == "info"
    checks = {a.category: a for a in finding.rests_on_absence}
    assert set(checks) == {"labs", "conditions", "procedures", "medications"}
    assert checks["labs"].since.date().isoformat() == "2026-10-26" and "30 days" in checks["labs"].check


def test_pregnancy_critical_rests_on_what_was_found():
    positive = observation("19080-1", 310, "m[IU]/mL", days_ago(3))
    finding = evaluate(pregnancy, [WOMAN_32, positive])
    assert finding.indicator == "critical" and finding.rests_on_absence == ()


def test_femoral_pain_card_rests_on_no_femur_imaging_since_the_pain():
    pain = condition("M79.651", ICD10CM, onset="2026-10-02", text="Pain in right thigh")
    finding = evaluate(atypical_femoral_fracture, [prolia_administration(days=150), pain])
    ((absence,),) = (finding.rests_on_absence,)
    assert absence.category == "procedures" and absence.since.date().isoformat() == "2026-10-02"


def test_fracture_card_rests_on_what_was_found():
    fracture = condition("M84.751A", ICD10CM, onset="2026-10-30")
    finding = evaluate(atypical_femoral_fracture, [prolia_administration(days=150), fracture])
    assert finding.indicator == "warning" and finding.rests_on_absence == ()
