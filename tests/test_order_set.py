"""One order set per response: the same order (code and timing) on the highest-ranked card only."""

from __future__ import annotations

from cds_service.cards import Action, Finding, Suggestion
from cds_service.cards.order_set import one_order_set, order_key

TOPICS = ["hypocalcemia", "calcium-monitoring", "hypocalcemia-risk", "vitamin-d-deficiency"]


def lab(code: str, display: str, **extra) -> Action:
    resource = {"resourceType": "ServiceRequest", "status": "draft", "intent": "order",
                "code": {"coding": [{"system": "http://loinc.org", "code": code, "display": display}], "text": display}, **extra}
    return Action(type="create", description=f"Order {display}", resource=resource)


CALCIUM = lab("17861-6", "Calcium [Mass/volume] in Serum or Plasma")
ALBUMIN = lab("1751-7", "Albumin [Mass/volume] in Serum or Plasma")
PTH = lab("2731-8", "Parathyrin.intact [Mass/volume] in Serum or Plasma")
WEEKLY_CALCIUM = lab("17861-6", "Calcium [Mass/volume] in Serum or Plasma",
                     occurrenceTiming={"repeat": {"count": 4, "frequency": 1, "period": 1, "periodUnit": "wk"}})


def finding(topic: str, indicator: str, *suggestions: Suggestion) -> Finding:
    return Finding(topic=topic, indicator=indicator, summary=topic, detail="Detail.", suggestions=suggestions)


def test_a_repeated_order_stays_on_the_first_card_of_the_catalog_at_the_same_indicator():
    monitoring = finding("calcium-monitoring", "warning", Suggestion("Order serum calcium and albumin", (CALCIUM, ALBUMIN)))
    risk = finding("hypocalcemia-risk", "warning", Suggestion("Order the CKD-MBD tests", (PTH, CALCIUM, ALBUMIN)))
    out_risk, out_monitoring = one_order_set([risk, monitoring], TOPICS)
    assert out_monitoring == monitoring
    (left,) = out_risk.suggestions
    assert left.actions == (PTH,) and left.label == "Order Parathyrin.intact (rest on a card above)"
    assert "not repeated here" in out_risk.detail


def test_a_higher_indicator_wins_over_catalog_order():
    monitoring = finding("calcium-monitoring", "warning", Suggestion("Order serum calcium and albumin", (CALCIUM, ALBUMIN)))
    risk = finding("hypocalcemia-risk", "critical", Suggestion("Order the CKD-MBD tests", (PTH, CALCIUM, ALBUMIN)))
    out_monitoring, out_risk = one_order_set([monitoring, risk], TOPICS)
    assert out_risk == risk
    assert out_monitoring.suggestions == ()  # every order of it is on the critical card


def test_the_same_code_at_another_timing_is_another_order_and_series_are_exempt():
    assert order_key(CALCIUM) != order_key(WEEKLY_CALCIUM)
    assert order_key(WEEKLY_CALCIUM) is None
    first = finding("calcium-monitoring", "warning", Suggestion("Order serum calcium", (CALCIUM,)))
    second = finding("hypocalcemia-risk", "warning", Suggestion("Order post-dose calcium", (WEEKLY_CALCIUM,)))
    third = finding("vitamin-d-deficiency", "warning", Suggestion("Order post-dose calcium", (WEEKLY_CALCIUM,)))
    assert one_order_set([first, second, third], TOPICS) == [first, second, third]


def test_deletes_and_patient_reported_statements_are_not_orders():
    delete = Action(type="delete", description="Cancel", resource_id="MedicationRequest/draft-1")
    statement = Action(type="create", description="Record", resource={"resourceType": "MedicationStatement", "status": "active",
                                                                      "medicationCodeableConcept": {"text": "calcium"}})
    a = finding("hypocalcemia", "critical", Suggestion("Cancel", (delete,)), Suggestion("Record", (statement,)))
    b = finding("calcium-monitoring", "warning", Suggestion("Cancel", (delete,)), Suggestion("Record", (statement,)))
    assert one_order_set([a, b], TOPICS) == [a, b]


def test_medication_orders_are_the_same_only_with_the_same_timing():
    def vitamin_d(timing: dict) -> Action:
        return Action(type="create", description="Order", resource={
            "resourceType": "MedicationRequest", "status": "draft", "intent": "order",
            "medicationCodeableConcept": {"coding": [{"system": "http://www.nlm.nih.gov/research/umls/rxnorm", "code": "309263"}]},
            "dosageInstruction": [{"text": "daily", "timing": {"repeat": timing}}]})
    daily = {"frequency": 1, "period": 1, "periodUnit": "d"}
    weekly = {"frequency": 1, "period": 1, "periodUnit": "wk"}
    assert order_key(vitamin_d(daily)) == order_key(vitamin_d(dict(daily)))
    assert order_key(vitamin_d(daily)) != order_key(vitamin_d(weekly))


def test_a_relabelled_lab_is_named_by_its_common_name_never_as_a_drug():
    vitamin_d_1_25 = lab("1649-3", "Calcitriol [Mass/volume] in Serum or Plasma (1,25-dihydroxyvitamin D)")
    risk = finding("hypocalcemia-risk", "warning", Suggestion("Order CKD-MBD tests", (CALCIUM, PTH, vitamin_d_1_25)))
    monitoring = finding("calcium-monitoring", "warning", Suggestion("Order serum calcium", (CALCIUM,)))
    _monitoring, left_risk = one_order_set([monitoring, risk], TOPICS)
    (label,) = [s.label for s in left_risk.suggestions]
    assert label == "Order Parathyrin.intact, 1,25-dihydroxyvitamin D (rest on a card above)"
    assert "Calcitriol" not in label
