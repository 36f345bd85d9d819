"""dental-clearance: at initiation, after invasive dental work, and on therapy; how denosumab
orders and doses are recognised for it (biosimilars by NDC or brand, text-only orders)."""

import pytest

from cds_service.rules import dental_clearance
from cds_service.rules.engine import discover_rules, run_rules
from tests.rules.record_builders import (
    AS_OF, CDT, ICD10CM, NDC, PATIENT_ID, RXNORM, SNOMED, actions, condition, context, evaluate, medication_order,
    procedure, prolia_administration, prolia_draft,
)

DENTAL_EXAM = ("D0120", CDT)
EXTRACTION = ("D7140", CDT)


def exam(days, code=DENTAL_EXAM):
    return procedure(code[0], code[1], days=days, text="Periodic oral evaluation")


def indicator(*resources, **kw):
    finding = evaluate(dental_clearance, resources, **kw)
    return finding.indicator if finding else None


# --- initiation -----------------------------------------------------------------------------

@pytest.mark.parametrize("exam_days, expected", [(None, "warning"), (200, "warning"), (182, None), (30, None)])
def test_initiating_needs_a_dental_exam_in_six_months(exam_days, expected):
    resources = [] if exam_days is None else [exam(exam_days)]
    assert indicator(*resources) == expected


def test_initiation_card_shows_what_it_used_and_suggests_a_dental_referral():
    finding = evaluate(dental_clearance, [exam(250)])
    assert "no earlier dose on file" in finding.detail
    assert "Last dental examination:** 2026-03-20" in finding.detail
    assert "No dental examination since 2026-05-26" in finding.detail
    ((kind, referral),) = actions(finding)
    assert kind == "create" and referral["resourceType"] == "ServiceRequest"
    assert referral["code"]["coding"][0] == {"system": SNOMED, "code": "103697008",
                                             "display": "Patient referral for dental care (procedure)"}
    assert referral["subject"] == {"reference": f"Patient/{PATIENT_ID}"}


def test_a_last_dose_over_twelve_months_ago_is_a_restart():
    finding = evaluate(dental_clearance, [prolia_administration(days=400), exam(250)])
    assert finding.indicator == "warning" and "restarts therapy" in finding.detail


@pytest.mark.parametrize("code", [("122856003", SNOMED), ("D0150", CDT), ("D0180", "http://terminology.hl7.org/CodeSystem/CD2")])
def test_dental_exam_codes(code):
    assert indicator(exam(40, code)) is None


def test_dental_exam_recorded_as_an_encounter_diagnosis():
    visit = condition("Z01.20", ICD10CM, clinical=None, onset="2026-09-03", category="encounter-diagnosis")
    assert indicator(visit) is None


@pytest.mark.parametrize("status", ["not-done", "entered-in-error", "preparation"])
def test_dental_exam_that_did_not_happen_does_not_count(status):
    assert indicator(procedure("D0120", CDT, days=40, status=status)) == "warning"


def test_a_dental_referral_is_not_an_examination():
    assert indicator(procedure("103697008", SNOMED, days=40)) == "warning"


# --- invasive dental work --------------------------------------------------------------------

@pytest.mark.parametrize("days, expected", [(5, "warning"), (13, "warning"), (14, "warning"), (14.5, "warning"), (15, None), (40, None)])
def test_invasive_dental_procedure_within_fourteen_days(days, expected):
    on_therapy = [prolia_administration(days=150), exam(60)]
    assert indicator(*on_therapy, procedure(*EXTRACTION, days=days)) == expected


@pytest.mark.parametrize("code", [("D7210", CDT), ("D6010", CDT), ("55162003", SNOMED), ("789147006", SNOMED)])
def test_extraction_implant_and_oral_surgery_codes(code):
    finding = evaluate(dental_clearance, [prolia_administration(days=150), exam(60), procedure(*code, days=3, text="Dental surgery")])
    assert finding.indicator == "warning" and "Dental surgery on 2026-11-22" in finding.detail


def test_planned_extraction_does_not_count():
    assert indicator(prolia_administration(days=150), exam(60), procedure(*EXTRACTION, days=2, status="preparation")) is None


# --- on therapy --------------------------------------------------------------------------------

@pytest.mark.parametrize("exam_days, expected", [(300, None), (364, None), (366, "info"), (None, "info")])
def test_on_therapy_dental_exam_within_twelve_months(exam_days, expected):
    resources = [prolia_administration(days=150)] + ([] if exam_days is None else [exam(exam_days)])
    assert indicator(*resources) == expected


def test_dose_known_only_from_a_medication_administration_means_on_therapy():
    # read as initiating, an exam 9 months ago would warn
    assert indicator(prolia_administration(days=180), exam(270)) is None


def test_dose_known_only_from_a_completed_order_means_on_therapy():
    from tests.rules.record_builders import PROLIA
    assert indicator(medication_order(PROLIA, status="completed", days=180), exam(270)) is None


def test_an_active_order_alone_is_not_a_dose_given():
    from tests.rules.record_builders import PROLIA
    assert indicator(medication_order(PROLIA, status="active", days=180), exam(270)) == "warning"


# --- which orders are denosumab orders (through the engine) -------------------------------------

@pytest.mark.parametrize("draft", [
    prolia_draft({"system": NDC, "code": "61314-240-63"}),               # Jubbonti, 10-digit 5-3-2
    prolia_draft({"system": NDC, "code": "61314024063"}),                # Jubbonti, 11-digit
    prolia_draft({"system": NDC, "code": "78206-0193-01"}),              # Bildyos, 5-4-2
    prolia_draft({"system": RXNORM, "code": "2715393"}),                 # Wyost SBD only
    prolia_draft({"system": RXNORM, "code": "2717873"}),                 # Osenvelt SBD only
    prolia_draft({"system": RXNORM, "code": "2723352"}),                 # Bildyos BN only
    prolia_draft(None, text="Xgeva 120 mg SC"),                          # uncoded
    prolia_draft(None, text="denosumab 60 mg subcut"),                   # uncoded, generic name
])
def test_biosimilar_and_uncoded_orders_get_the_dental_check(draft):
    ctx = context([], drafts=[draft])
    findings = run_rules(discover_rules(ctx.kb), "order-sign", ctx.record, ctx.kb, AS_OF)
    assert "dental-clearance" in {f.topic for f in findings}


def test_a_non_denosumab_order_gets_no_dental_check():
    alendronate = prolia_draft({"system": RXNORM, "code": "46041"}, text="alendronate 70 mg weekly")
    ctx = context([], drafts=[alendronate])
    findings = run_rules(discover_rules(ctx.kb), "order-sign", ctx.record, ctx.kb, AS_OF)
    assert "dental-clearance" not in {f.topic for f in findings}


# --- what the card rests on (the engine drops absence-based cards when the data is incomplete) --

def test_no_exam_cards_say_they_rest_on_absent_data():
    at_start = evaluate(dental_clearance, [])
    assert {(a.category, a.since.date().isoformat()) for a in at_start.rests_on_absence} >= {
        ("procedures", "2026-05-26"), ("conditions", "2026-05-26"), ("medications", "2025-11-25")}
    on_therapy = evaluate(dental_clearance, [prolia_administration(days=150), exam(400)])
    assert on_therapy.indicator == "info"
    assert {a.category for a in on_therapy.rests_on_absence} == {"procedures", "conditions"}
    assert "12 months" in on_therapy.rests_on_absence[0].check


def test_an_invasive_procedure_card_rests_on_what_was_found():
    finding = evaluate(dental_clearance, [procedure(*EXTRACTION, days=5), exam(30)])
    assert finding.indicator == "warning" and finding.rests_on_absence == ()
