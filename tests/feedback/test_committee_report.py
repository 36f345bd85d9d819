"""The committee report the issue asks for, from cards issued and answered through the HTTP API,
on both back-ends: one decision counts once, n/a acceptance, suppressed and silent columns,
display names, splits by indicator, service, EHR client and knowledge version, the monthly trend."""

from __future__ import annotations

import csv
import io
import json
from datetime import datetime, timedelta, timezone

import pytest

from cds_service.cli import main
from cds_service.config import ClientConfig, Settings
from cds_service.knowledge import load_knowledge
from cds_service.report import build_report, period_in_words, render_csv, render_svg, render_table
from tests.feedback.test_suppression import Ward, finding

GENERATED = datetime(2026, 12, 1, 8, 0, tzinfo=timezone.utc)


def report_of(ward: Ward, **kwargs):
    return build_report(ward.engine, kb=load_knowledge(), generated_at=GENERATED, **kwargs)


def rows_by_topic(report) -> dict:
    return {row.topic: row for row in report.topics}


def test_one_decision_counts_once_with_its_latest_outcome(backend_url):
    """The sandbox case: choosing Prolia (order-select, twice as the order changes) and signing it
    was one hypocalcemia decision, counted three times."""
    ward = Ward(Settings(store_url=backend_url), finding("hypocalcemia", "critical"))
    first = ward.call("order-select", encounter="enc-1", draft="draft-prolia-1")["hypocalcemia"]
    ward.call("order-select", encounter="enc-1", draft="draft-prolia-1")
    signed = ward.call("order-sign", encounter="enc-1", draft="draft-prolia-1")["hypocalcemia"]
    ward.override(first, "result-spurious", hook="order-select", after=timedelta(seconds=10))
    ward.accept(signed, after=timedelta(minutes=3))  # the clinician cancelled the order at signing
    ward.call("order-sign", encounter="enc-2", draft="draft-prolia-7")  # another order: another decision

    row = rows_by_topic(report_of(ward))["hypocalcemia"]
    assert (row.issued, row.accepted, row.overridden, row.no_response) == (2, 1, 0, 1)
    assert row.acceptance == 0.5


def test_topics_without_suggestions_have_no_acceptance_and_suppressed_and_silent_are_columns(backend_url):
    settings = Settings(store_url=backend_url, silent_topics=("pregnancy",))
    ward = Ward(settings, finding("dental-clearance", "warning"), finding("pregnancy", "info"))
    ward.findings["overdue-dose"] = ward.findings["dental-clearance"].__class__(
        topic="overdue-dose", indicator="info", summary="Denosumab dose 40 days late", detail="Last dose 2026-03-10."
    )  # overdue-dose cards on an order carry no suggestion
    cards = ward.call()
    ward.override(cards["overdue-dose"], "scheduled-appointment")
    ward.override(cards["dental-clearance"], "dental-exam-done-elsewhere")
    ward.later(days=1)
    ward.call()
    ward.call()

    report = report_of(ward)
    rows = rows_by_topic(report)
    overdue = rows["overdue-dose"]
    assert overdue.display == "Denosumab dose overdue"
    assert overdue.acceptance is None and overdue.override_rate == pytest.approx(1 / 3)
    dental = rows["dental-clearance"]
    assert (dental.issued, dental.overridden, dental.suppressed, dental.silent) == (1, 1, 2, 0)
    assert (rows["pregnancy"].issued, rows["pregnancy"].silent) == (0, 3)
    assert all(row.too_few_to_judge for row in report.topics)

    data = json.loads(json.dumps(report.to_json()))
    by_topic = {row["topic"]: row for row in data["topics"]}
    for key in ("topic", "display", "issued", "accepted", "overridden", "no_response", "suppressed", "silent", "acceptance"):
        assert all(key in row for row in data["topics"]), key
    assert by_topic["overdue-dose"]["acceptance"] is None
    assert by_topic["dental-clearance"]["suppressed"] == 2 and by_topic["pregnancy"]["silent"] == 3

    table = render_table(report)
    line = next(line for line in table.splitlines() if line.startswith("Denosumab dose overdue"))
    assert "n/a" in line.split() and "33.3%" in line.split()
    assert "too few to judge" in table
    assert "generated 1 December 2026 08:00 UTC" in table
    exported = {row["topic"]: row for row in csv.DictReader(io.StringIO(render_csv(report))) if row["split"] == "topic"}
    assert exported["overdue-dose"]["acceptance"] == "n/a"
    assert (exported["dental-clearance"]["suppressed"], exported["pregnancy"]["silent"]) == ("2", "3")
    chart = render_svg(report)
    assert "Denosumab dose overdue *" in chart and "acceptance n/a" in chart and "2 suppressed" in chart


def test_override_reasons_are_named_by_the_topics_own_reasons(backend_url):
    ward = Ward(Settings(store_url=backend_url), finding("active-infection", "warning"))
    ward.override(ward.call()["active-infection"], "infection-treated-benefit-outweighs-risk", only_system_and_code=True)
    reasons = rows_by_topic(report_of(ward))["active-infection"].override_reasons
    assert [(c.label, c.code, c.count) for c in reasons] == [
        ("Infection under treatment; benefit outweighs risk", "infection-treated-benefit-outweighs-risk", 1)
    ]


def test_split_by_indicator_service_and_month(backend_url):
    ward = Ward(Settings(store_url=backend_url), finding("pregnancy", "info"))
    ward.now = datetime(2026, 10, 20, 10, 0, tzinfo=timezone.utc)
    ward.override(ward.call()["pregnancy"], "not-pregnant-verified")
    ward.now = datetime(2026, 11, 20, 10, 0, tzinfo=timezone.utc)
    ward.set("pregnancy", "critical")
    ward.call("order-select")
    ward.accept(ward.call()["pregnancy"])

    report = report_of(ward)
    assert {(r.split, r.issued) for r in report.splits["indicator"] if r.topic == "pregnancy"} == {("info", 1), ("critical", 2)}
    assert {(r.split, r.issued) for r in report.splits["service"]} == {("order-sign", 2), ("order-select", 1)}
    assert [(r.split, r.issued, r.override_rate) for r in report.splits["month"]] == [("2026-10", 1, 1.0), ("2026-11", 2, 0.0)]

    november = report_of(ward, since=datetime(2026, 11, 1, tzinfo=timezone.utc), until=datetime(2026, 12, 1, tzinfo=timezone.utc))
    assert rows_by_topic(november)["pregnancy"].issued == 2
    assert period_in_words(november.since, november.until) == "cards issued from 1 November 2026 to 30 November 2026"


def test_the_report_splits_by_knowledge_version_when_the_period_spans_two(backend_url, capsys, monkeypatch):
    monkeypatch.setenv("DENOSUMAB_CDS_STORE_URL", backend_url)
    before = Ward(Settings(store_url=backend_url), finding("dental-clearance", "warning"))
    old_version = before.call()["dental-clearance"]["extension"]["https://denosumab-cds.org/knowledge-version"]
    after = Ward(Settings(store_url=backend_url, suppression_overrides={"dental-clearance": {"dental-exam-done-elsewhere": 90}}),
                 finding("dental-clearance", "warning"))
    new_version = after.call()["dental-clearance"]["extension"]["https://denosumab-cds.org/knowledge-version"]
    assert old_version != new_version

    assert main(["report", "--format", "json"]) == 0
    data = json.loads(capsys.readouterr().out)
    assert data["knowledge_versions"] == sorted([old_version, new_version])
    assert {(row["version"], row["issued"]) for row in data["by_version"]} == {(old_version, 1), (new_version, 1)}
    assert main(["report"]) == 0
    table = capsys.readouterr().out
    assert "By knowledge version" in table and old_version in table and new_version in table


def test_cards_and_feedback_carry_the_ehr_client_and_the_report_splits_by_it(tmp_path, backend_url):
    from tests.security.ehr import EHR_ISS, FHIR_BASE, EhrKey, jwt_settings, write_jwks

    ehr_key = EhrKey("ES384")
    jwks = write_jwks(tmp_path / "jwks.json", ehr_key)
    other_iss = "https://north.example.org/cds-client"
    settings = jwt_settings(
        jwks, store_url=backend_url,
        extra_clients=(ClientConfig(iss=other_iss, jwks_file=jwks, fhir_servers=(FHIR_BASE,), tenant="north"),),
    )
    ward = Ward(settings, finding("dental-clearance", "warning"))
    ward.signer = (ehr_key, EHR_ISS, {})
    first = ward.call()["dental-clearance"]
    ward.signer = (ehr_key, other_iss, {"tenant": "north"})
    second = ward.call(patient="pat-wm-0002")["dental-clearance"]

    # Feedback is matched to the client that got the card: the other EHR cannot answer it.
    entry = {"card": first["uuid"], "outcome": "overridden", "outcomeTimestamp": "2026-11-25T15:01:00Z"}
    refused = ward.post("/cds-services/order-sign/feedback", {"feedback": [entry]})
    assert refused.status_code == 400 and "not-found" in refused.get_data(as_text=True)
    ward.override(second, "edentulous-patient")
    ward.signer = (ehr_key, EHR_ISS, {})
    ward.override(first, "dental-clearance-documented")

    from sqlalchemy import select

    from cds_service.store.schema import feedback, issued_card

    with ward.engine.connect() as connection:
        cards = {row.card_uuid: (row.client_iss, row.client_tenant) for row in connection.execute(select(issued_card))}
        answers = {row.card_uuid: (row.client_iss, row.client_tenant) for row in connection.execute(select(feedback))}
    assert cards == answers == {first["uuid"]: (EHR_ISS, None), second["uuid"]: (other_iss, "north")}

    report = report_of(ward)
    assert {(r.split, r.overridden) for r in report.splits["client"]} == {(EHR_ISS, 1), (f"{other_iss} (tenant north)", 1)}
    assert "By EHR client" in render_table(report)  # shown by default when there are two
