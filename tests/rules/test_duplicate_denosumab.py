"""duplicate-denosumab: another active denosumab order, or a second denosumab draft."""

import pytest

from tests.rules.hook_calls import (
    ICD10CM, PROLIA, XGEVA, add, add_draft, condition, make_initiating, medication_request, the_draft, topic_card,
)
from tests.requests_for_tests import as_order_select, baseline_request

TOPIC = "duplicate-denosumab"
WYOST_NDC = {"system": "http://hl7.org/fhir/sid/ndc", "code": "61314022894", "display": "WYOST 120MG/1.7ML"}
GCTB = [{"system": ICD10CM, "code": "D48.0", "display": "Neoplasm of uncertain behavior of bone and articular cartilage"}]


def test_the_well_managed_prolia_patient_is_silent(client):
    assert topic_card(client, baseline_request(), TOPIC) is None


@pytest.mark.parametrize("status, fires", [
    ("active", True), ("on-hold", True),
    ("completed", False), ("stopped", False), ("cancelled", False), ("entered-in-error", False), ("draft", False),
])
def test_another_order_in_the_history_counts_only_when_active(client, status, fires):
    request = baseline_request()
    add(request, "medicationRequests", medication_request(
        "mr-xgeva-old", XGEVA, status=status, dose_mg=120, period=4, unit="wk", authored="2026-09-01T10:00:00Z"))
    card = topic_card(client, request, TOPIC)
    assert (card is not None) == fires
    if fires:
        assert card["indicator"] == "critical"
        assert f"MedicationRequest/mr-xgeva-old) — {status} order, written 2026-09-01" in card["detail"]
        assert "same active ingredient" in card["detail"]
        assert card["suggestions"][0]["actions"][0]["resourceId"] == "MedicationRequest/draft-prolia-1"


def test_an_active_medication_statement_is_not_an_order(client):
    request = baseline_request()
    add(request, "medicationStatements", {
        "resourceType": "MedicationStatement", "id": "ms-prolia", "status": "active",
        "medicationCodeableConcept": {"coding": [PROLIA]}, "subject": {"reference": "Patient/pat-wm-0001"},
        "effectiveDateTime": "2026-05-28",
    })
    assert topic_card(client, request, TOPIC) is None


def test_the_draft_itself_in_the_prefetch_is_not_a_duplicate(client):
    request = baseline_request()
    stored = dict(the_draft(request), status="active")
    add(request, "medicationRequests", stored)
    assert topic_card(client, request, TOPIC) is None


def test_a_second_draft_biosimilar_coded_by_ndc(client):
    request = baseline_request()
    add_draft(request, medication_request("draft-wyost", WYOST_NDC, dose_mg=120, period=4, unit="wk"))
    card = topic_card(client, request, TOPIC)
    assert card["indicator"] == "critical" and "Prolia-type (60 mg) and Xgeva-type (120 mg)" in card["detail"]
    removed = {a["resourceId"] for s in card["suggestions"] for a in s["actions"]}
    assert removed == {"MedicationRequest/draft-prolia-1", "MedicationRequest/draft-wyost"}


def test_order_select_counts_every_draft_not_only_the_selected_one(client):
    request = as_order_select(baseline_request())
    add_draft(request, medication_request("draft-prolia-2", PROLIA))  # not selected, still being written
    card = topic_card(client, request, TOPIC)
    assert "draft-prolia-2" in card["detail"]
    assert [a["resourceId"] for s in card["suggestions"] for a in s["actions"]] == ["MedicationRequest/draft-prolia-1"]


def test_a_non_denosumab_second_draft_is_not_a_duplicate(client):
    request = baseline_request()
    add_draft(request, medication_request("draft-ca", {
        "system": "http://www.nlm.nih.gov/research/umls/rxnorm", "code": "608343", "display": "calcium carbonate / cholecalciferol"}))
    assert topic_card(client, request, TOPIC) is None


def gctb_pair(second_text):
    request = baseline_request()
    make_initiating(request)
    request["context"]["draftOrders"]["entry"][0]["resource"] = medication_request(
        "draft-xgeva-q4w", XGEVA, dose_mg=120, period=4, unit="wk")
    add_draft(request, medication_request("draft-xgeva-loading", XGEVA, dose_mg=120, text=second_text))
    return request


def test_a_loading_dose_order_beside_the_gctb_regimen_is_not_a_duplicate(client):
    request = gctb_pair("120 mg SC on day 8 and day 15")
    assert topic_card(client, request, TOPIC) is not None  # no loading-dose indication on record yet
    add(request, "conditions", condition("cond-gctb", GCTB, "Giant cell tumour of bone"))
    assert topic_card(client, request, TOPIC) is None


def test_a_second_plain_xgeva_draft_for_gctb_is_still_a_duplicate(client):
    request = gctb_pair("120 mg SC every 4 weeks")
    add(request, "conditions", condition("cond-gctb", GCTB, "Giant cell tumour of bone"))
    assert topic_card(client, request, TOPIC)["indicator"] == "critical"


def test_a_nonsense_interval_on_the_other_order_is_not_shown(client):
    request = baseline_request()
    add(request, "medicationRequests", medication_request(
        "mr-xgeva-odd", XGEVA, status="active", dose_mg=120, period=1e308, unit="a", authored="2026-09-01T10:00:00Z"))
    card = topic_card(client, request, TOPIC)
    assert "MedicationRequest/mr-xgeva-odd) — active order, written 2026-09-01: 120 mg [120 mg regimen]" in card["detail"]


def test_many_drafts_cost_linear_time(monkeypatch):
    """5000 drafts (issue 16 item 6): each is compared with its neighbour in moment order only."""
    from datetime import timedelta

    from cds_service.rules import duplicate_denosumab
    from tests.rules.record_builders import AS_OF, context, prolia_draft

    calls = []
    real = duplicate_denosumab.coincide_or_overlap
    monkeypatch.setattr(duplicate_denosumab, "coincide_or_overlap", lambda ctx, a, b: calls.append(1) or real(ctx, a, b))
    drafts = []
    for i in range(5000):
        order = prolia_draft(order_id=f"d-{i}")
        start = (AS_OF + timedelta(days=183 * i)).date().isoformat()
        order["dosageInstruction"][0]["timing"] = {"repeat": {"count": 1, "boundsPeriod": {"start": start}}}
        drafts.append(order)
    drafts.append(prolia_draft(order_id="d-same-day-as-d-0"))
    finding = duplicate_denosumab.evaluate(context(drafts=drafts))
    assert finding is not None and finding.indicator == "critical"  # the two drafts for today
    assert "d-same-day-as-d-0" in finding.detail and "d-1)" not in finding.detail
    assert len(calls) < len(drafts)
