"""dose-too-soon (catalog v2): a denosumab draft too close to the dose before it — 60 mg under
150 days (critical under 28), 120 mg under 21 days (critical under 6), never critical on a
dispense only; the 120 mg loading doses of GCTB / hypercalcemia of malignancy; drafts read as a
schedule; the draft's own moment."""

from __future__ import annotations

from datetime import timedelta

import pytest

from cds_service.knowledge import ICD10CM, load_knowledge
from cds_service.record.build import RecordInputs, build_record
from cds_service.rules import dose_too_soon
from cds_service.rules.context import RuleContext
from cds_service.rules.engine import focus_triggers
from tests.rules.record_builders import AS_OF, ENCOUNTER_ID, PATIENT_ID, PROLIA, RXNORM, condition, days_ago, prolia_draft

XGEVA = {"system": RXNORM, "code": "1046402", "display": "1.7 ML denosumab 70 MG/ML Injection [Xgeva]"}
_ids = iter(range(1, 10**6))


def record_of(kind: str, coding: dict, days: float, status: str = "completed") -> dict:
    resource = {"resourceType": kind, "id": f"r-{next(_ids)}", "status": status,
                "medicationCodeableConcept": {"coding": [coding]}, "subject": {"reference": f"Patient/{PATIENT_ID}"}}
    if kind == "MedicationAdministration":
        resource["effectiveDateTime"] = days_ago(days)
    elif kind == "MedicationDispense":
        resource["whenHandedOver"] = days_ago(days)
    elif kind == "MedicationStatement":
        resource["effectiveDateTime"] = days_ago(days)
    else:
        resource.update(intent="order", authoredOn=days_ago(days))
    return resource


def given(coding: dict, days: float) -> dict:
    return record_of("MedicationAdministration", coding, days)


def draft(coding: dict = PROLIA, order_id: str = "draft-1", *, start_in_days: float | None = None, text: str | None = None,
          weekly: bool = False) -> dict:
    order = prolia_draft(coding)
    order["id"] = order_id
    dosage: dict = {"text": text or "1 injection subcutaneously"}
    if start_in_days is not None:
        dosage["timing"] = {"repeat": {"count": 1, "boundsPeriod": {"start": (AS_OF + timedelta(days=start_in_days)).date().isoformat()}}}
    if weekly:
        dosage["timing"] = {"repeat": {"frequency": 1, "period": 1, "periodUnit": "wk", "count": 2}}
    order["dosageInstruction"] = [dosage]
    return order


def run(resources, drafts=None, selections=None):
    kb = load_knowledge()
    record = build_record(RecordInputs(patient_id=PATIENT_ID, encounter_id=ENCOUNTER_ID, resource_groups=[("test", list(resources))],
                                       draft_orders=list(drafts or [draft()]), selections=selections), kb)
    triggers = focus_triggers("order-sign", record)
    return dose_too_soon.evaluate(RuleContext(record, AS_OF, kb, "denosumab-order", triggers["denosumab-order"]))


def indicator(finding):
    return finding.indicator if finding else None


GCTB = condition("D48.0", ICD10CM, onset="2026-10-01", text="Giant cell tumour of bone")


@pytest.mark.parametrize("days, expected", [(7, "critical"), (27, "critical"), (28, "warning"), (149, "warning"), (150, None), (183, None)])
def test_60mg_limits(days, expected):
    assert indicator(run([given(PROLIA, days)])) == expected


@pytest.mark.parametrize("days, expected", [(1, "critical"), (5, "critical"), (6, "warning"), (9, "warning"), (20, "warning"), (21, None)])
def test_120mg_limits(days, expected):
    assert indicator(run([given(XGEVA, days)], [draft(XGEVA)])) == expected


def test_a_dispense_only_is_never_critical_and_the_card_asks_about_that_syringe():
    finding = run([record_of("MedicationDispense", PROLIA, 5)])
    assert finding.indicator == "warning"
    assert "dispense with no administration recorded" in finding.detail and "that dispensed syringe" in finding.detail


def test_the_dispense_and_its_administration_are_one_dose_dated_by_the_administration():
    finding = run([record_of("MedicationDispense", PROLIA, 20), given(PROLIA, 10)])
    assert finding.indicator == "critical" and "10 days" in finding.detail and "same dose as MedicationDispense" in finding.detail


def test_the_draft_moment_is_its_start_date():
    assert indicator(run([given(PROLIA, 100)], [draft(start_in_days=60)])) is None   # 160 days after
    assert indicator(run([given(PROLIA, 100)], [draft(start_in_days=40)])) == "warning"  # 140 days after


def test_a_statement_date_counts_but_date_asserted_never_does():
    dated = record_of("MedicationStatement", PROLIA, 10, status="active")
    assert indicator(run([dated])) == "critical"
    asserted_only = {**dated, "id": "ms-asserted"}
    del asserted_only["effectiveDateTime"]
    asserted_only["dateAsserted"] = days_ago(10)
    assert run([asserted_only]) is None
    open_ended = {**asserted_only, "id": "ms-open", "effectivePeriod": {"start": days_ago(10)}}
    assert run([open_ended]) is None  # on therapy, date unknown: not a dose


@pytest.mark.parametrize("day", [8, 15, 29])
def test_120mg_loading_doses_for_gctb_are_expected(day):
    course_start = day - 1  # day 1 was `day - 1` days ago
    history = [given(XGEVA, course_start - d + 1) for d in (1, 8, 15) if d < day]
    assert run(history, [draft(XGEVA)]) is not None
    assert run(history + [GCTB], [draft(XGEVA)]) is None


def test_120mg_dose_5_days_after_a_loading_dose_is_still_too_soon():
    assert indicator(run([given(XGEVA, 5), GCTB], [draft(XGEVA)])) == "critical"


@pytest.mark.parametrize("course_start_days_ago, expected", [(35, None), (36, "warning")])
def test_loading_exception_ends_35_days_after_the_course_start(course_start_days_ago, expected):
    start = course_start_days_ago
    history = [given(XGEVA, start - d) for d in (0, 7, 14, 28)]  # days 1, 8, 15, 29; the draft 7 days after day 29
    assert indicator(run(history + [GCTB], [draft(XGEVA)])) == expected


def test_a_course_starts_after_12_weeks_without_a_120mg_dose():
    # Last 120 mg dose 95 days ago, then a new course 7 days ago: the draft is its day 8.
    assert run([given(XGEVA, 95), given(XGEVA, 7), GCTB], [draft(XGEVA)]) is None
    # 80 days (under 12 weeks) between them: the same course, started 80 days ago -> no loading phase.
    assert indicator(run([given(XGEVA, 87), given(XGEVA, 7), GCTB], [draft(XGEVA)])) == "warning"


def test_several_drafts_are_read_as_a_schedule():
    two = [draft(XGEVA, "d-1"), draft(XGEVA, "d-2", start_in_days=7), draft(XGEVA, "d-3", start_in_days=14)]
    assert run([GCTB], two) is None  # days 1, 8, 15 of a new GCTB course
    finding = run([], [draft(PROLIA, "p-1"), draft(PROLIA, "p-2", start_in_days=30)])
    assert finding.indicator == "warning" and "the draft order" in finding.detail  # second Prolia 30 days after the first


def test_suggests_cancelling_the_draft():
    finding = run([given(PROLIA, 7)])
    (suggestion,) = finding.suggestions
    assert suggestion.actions[0].type == "delete" and suggestion.actions[0].resource_id == "MedicationRequest/draft-1"
    assert "Next dose due about" in finding.detail


def test_many_drafts_are_read_in_one_pass(monkeypatch):
    """5000 drafts (issue 16 item 6): each draft is compared with the one before it only."""
    from cds_service.rules.concepts import dose_history

    calls = []
    real = dose_history.draft_moment
    monkeypatch.setattr(dose_history, "draft_moment", lambda ctx, order: calls.append(1) or real(ctx, order))
    drafts = [draft(XGEVA, f"d-{i}", start_in_days=i * 28) for i in range(5000)]
    finding = run([given(XGEVA, 10)], drafts)
    assert finding is not None and finding.indicator == "warning"
    assert sum(line.startswith("- **") for line in finding.detail.splitlines()) == 1  # only the first is too soon
    assert len(calls) <= 2 * len(drafts)


def test_a_regimen_change_is_named_and_the_interval_follows_the_draft():
    finding = run([given(XGEVA, 60)])  # Xgeva 60 days ago, now a Prolia draft: 60 mg regimen, under 150 days
    assert finding.indicator == "warning"
    assert "Regimen change: the dose before was 120 mg every 4 weeks, this order is 60 mg every 6 months" in finding.detail
