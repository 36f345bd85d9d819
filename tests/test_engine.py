"""The rule engine: a faulty rule or an invalid card never silences the other checks."""

import json

import pytest

from cds_service.cards import Finding, build_response, response_problems
from cds_service.knowledge import load_knowledge
from cds_service.logs import JsonFormatter
from tests.requests_for_tests import baseline_request


def _low_calcium_request():
    request = baseline_request()
    for entry in request["prefetch"]["labResults"]["entry"]:
        if entry["resource"]["id"] == "lab-ca-1":
            entry["resource"]["valueQuantity"]["value"] = 7.6
    return request


def test_a_rule_that_raises_is_reported_and_the_others_still_answer(client, monkeypatch):
    app_service = client.application.extensions["denosumab_cds"]
    broken = next(rule for rule in app_service.rules if rule.topic == "dental-clearance")

    def explode(_ctx):
        raise KeyError("bug")

    monkeypatch.setattr(broken.module, "evaluate", explode)
    response = client.post("/cds-services/order-sign", json=_low_calcium_request())
    assert response.status_code == 200
    cards = {c["source"]["topic"]["code"]: c for c in response.get_json()["cards"]}
    assert "hypocalcemia" in cards
    assert "could not be evaluated" in cards["data-unavailable"]["detail"]


@pytest.mark.allows_invalid_cards
def test_an_invalid_card_is_dropped_not_sent(client, monkeypatch):
    app_service = client.application.extensions["denosumab_cds"]
    rule = next(rule for rule in app_service.rules if rule.topic == "pediatric")
    monkeypatch.setattr(rule.module, "evaluate", lambda ctx: Finding("pediatric", "warning", "", "no summary"))
    response = client.post("/cds-services/order-sign", json=_low_calcium_request())
    assert response.status_code == 200
    topics = [c["source"]["topic"]["code"] for c in response.get_json()["cards"]]
    assert "pediatric" not in topics and "hypocalcemia" in topics


def test_an_overlong_summary_is_shortened_not_dropped():
    kb = load_knowledge()
    summary = "Surgical removal of impacted tooth, completely bony, with unusual complications " * 3
    (card,) = build_response([Finding("dental-clearance", "warning", summary, "d")], kb)["cards"]
    assert len(card["summary"]) < 140 and card["summary"].endswith("…")


def test_cards_are_ordered_critical_warning_info_and_one_per_topic():
    kb = load_knowledge()
    findings = [
        Finding("pediatric", "warning", "Child", "d"),
        Finding("dental-clearance", "info", "Dental exam overdue", "d"),
        Finding("hypocalcemia", "critical", "Low calcium", "d"),
        Finding("dental-clearance", "warning", "No dental clearance", "d"),
    ]
    cards = build_response(findings, kb)["cards"]
    assert [(c["source"]["topic"]["code"], c["indicator"]) for c in cards] == [
        ("hypocalcemia", "critical"), ("dental-clearance", "warning"), ("pediatric", "warning"),
    ]
    assert not response_problems({"cards": cards})
    assert all("*Source:*" in c["detail"] and c["overrideReasons"] for c in cards)


def test_a_failing_rule_is_logged_with_where_it_failed_but_not_its_message(client, monkeypatch, caplog):
    app_service = client.application.extensions["denosumab_cds"]
    broken = next(rule for rule in app_service.rules if rule.topic == "pediatric")

    def explode(_ctx):
        raise ValueError("patient Halvorsen born 1958-03-14")  # a message that quotes data

    monkeypatch.setattr(broken.module, "evaluate", explode)
    with caplog.at_level("ERROR", logger="cds_service.rules.engine"):
        assert client.post("/cds-services/order-sign", json=_low_calcium_request()).status_code == 200
    (record,) = [r for r in caplog.records if r.name == "cds_service.rules.engine"]
    line = json.loads(JsonFormatter().format(record))
    assert line["exception"] == "ValueError"
    assert any("test_engine.py" in frame and "explode" in frame for frame in line["where"])
    assert "Halvorsen" not in json.dumps(line)


def _with_procedures_unavailable(request):
    request.pop("fhirServer", None)
    request["prefetch"]["procedures"] = {"resourceType": "OperationOutcome",
                                         "issue": [{"severity": "error", "code": "timeout"}]}
    return request


def test_a_finding_resting_on_an_absence_in_incomplete_data_becomes_its_check(client, monkeypatch):
    """The policy is the engine's, for any rule: here a critical-capable topic's finding that
    rests on "no procedure since …" while procedures did not arrive."""
    from datetime import datetime, timezone

    from cds_service.cards import Absence

    app_service = client.application.extensions["denosumab_cds"]
    rule = next(rule for rule in app_service.rules if rule.topic == "osteonecrosis-of-jaw")
    since = datetime(2026, 5, 1, tzinfo=timezone.utc)
    monkeypatch.setattr(rule.module, "evaluate", lambda ctx: Finding(
        "osteonecrosis-of-jaw", "warning", "No oral surgery review on file", "detail",
        rests_on_absence=(Absence("procedures", "an oral surgery review since 2026-05-01", since),)))
    response = client.post("/cds-services/order-sign", json=_with_procedures_unavailable(baseline_request()))
    cards = {c["source"]["topic"]["code"]: c for c in response.get_json()["cards"]}
    assert "osteonecrosis-of-jaw" not in cards
    assert cards["data-unavailable"]["indicator"] == "warning"  # the topic can be critical
    assert "an oral surgery review since 2026-05-01" in cards["data-unavailable"]["detail"]


def test_a_finding_resting_on_what_was_found_is_issued_from_incomplete_data(client, monkeypatch):
    app_service = client.application.extensions["denosumab_cds"]
    rule = next(rule for rule in app_service.rules if rule.topic == "osteonecrosis-of-jaw")
    monkeypatch.setattr(rule.module, "evaluate", lambda ctx: Finding(
        "osteonecrosis-of-jaw", "critical", "ONJ diagnosed 2 months ago", "detail"))
    response = client.post("/cds-services/order-sign", json=_with_procedures_unavailable(baseline_request()))
    cards = {c["source"]["topic"]["code"]: c for c in response.get_json()["cards"]}
    assert cards["osteonecrosis-of-jaw"]["indicator"] == "critical"
    # and the missing procedures are said: hypocalcemia-risk, which can be critical, reads them
    assert "High risk of severe hypocalcemia" in cards["data-unavailable"]["detail"]


def test_a_comparison_a_rule_cannot_decide_is_listed_never_read_as_normal(client, monkeypatch):
    app_service = client.application.extensions["denosumab_cds"]
    rule = next(rule for rule in app_service.rules if rule.topic == "hypocalcemia-risk")

    def undecided(ctx):
        ctx.cannot_tell("hypocalcemia-risk", "eGFR below 30 (reported >20 mL/min/1.73m2 on 2026-11-10)")
        return None

    monkeypatch.setattr(rule.module, "evaluate", undecided)
    response = client.post("/cds-services/order-sign", json=baseline_request())
    cards = {c["source"]["topic"]["code"]: c for c in response.get_json()["cards"]}
    assert cards["data-unavailable"]["indicator"] == "warning"  # hypocalcemia-risk can be critical
    assert "eGFR below 30 (reported >20 mL/min/1.73m2 on 2026-11-10)" in cards["data-unavailable"]["detail"]
