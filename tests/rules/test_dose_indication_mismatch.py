"""dose-indication-mismatch: the regimen against the indications on record and on the order."""

import pytest

from tests.rules.hook_calls import (
    DENOSUMAB_INGREDIENT, ICD10CM, SNOMED, XGEVA, add, condition, medication_request, remove, the_draft, topic_card,
)
from tests.requests_for_tests import baseline_request

TOPIC = "dose-indication-mismatch"
BONE_METS = [{"system": ICD10CM, "code": "C79.51", "display": "Secondary malignant neoplasm of bone"}]
MYELOMA = [{"system": SNOMED, "code": "109989006", "display": "Multiple myeloma (disorder)"}]
OSTEOPENIA = [{"system": ICD10CM, "code": "M85.80", "display": "Other specified disorders of bone density and structure, unspecified site"}]


def prolia_without_osteoporosis():
    """The baseline Prolia order with neither the osteoporosis problem nor the order's reason."""
    request = baseline_request()
    remove(request, "conditions", "cond-pmo-1")
    del the_draft(request)["reasonCode"]
    return request


def as_xgeva(request):
    request["context"]["draftOrders"]["entry"][0]["resource"] = medication_request(
        "draft-xgeva-1", XGEVA, dose_mg=120, period=4, unit="wk")
    return request


def test_the_well_managed_prolia_patient_is_silent(client):
    assert topic_card(client, baseline_request(), TOPIC) is None


@pytest.mark.parametrize("codings", [BONE_METS, MYELOMA])
def test_60mg_for_bone_metastases_or_myeloma_without_osteoporosis(client, codings):
    request = prolia_without_osteoporosis()
    add(request, "conditions", condition("cond-onc", codings, "Oncologic bone disease", onset="2026-09-30"))
    card = topic_card(client, request, TOPIC)
    assert card["indicator"] == "warning"
    assert codings[0]["code"] in card["detail"] and "onset 2026-09-30" in card["detail"]
    assert card["suggestions"][0]["actions"][0]["resourceId"] == "MedicationRequest/draft-prolia-1"


def test_60mg_with_bone_metastases_and_osteoporosis_is_silent(client):
    request = baseline_request()
    add(request, "conditions", condition("cond-onc", BONE_METS, "Bone metastases"))
    assert topic_card(client, request, TOPIC) is None


@pytest.mark.parametrize("clinical, verification", [("resolved", "confirmed"), ("active", "entered-in-error"), ("active", "refuted")])
def test_bone_metastases_that_are_not_active_do_not_count(client, clinical, verification):
    request = prolia_without_osteoporosis()
    add(request, "conditions", condition("cond-onc", BONE_METS, "Bone metastases", clinical=clinical, verification=verification))
    assert topic_card(client, request, TOPIC) is None


def test_the_orders_reason_code_is_an_indication(client):
    request = prolia_without_osteoporosis()
    the_draft(request)["reasonCode"] = [{"coding": BONE_METS, "text": "Bone metastases"}]
    card = topic_card(client, request, TOPIC)
    assert "order reason: Secondary malignant neoplasm of bone" in card["detail"]


def test_the_orders_reason_reference_is_resolved_against_the_conditions(client):
    request = prolia_without_osteoporosis()
    add(request, "conditions", condition("cond-mm", MYELOMA, "Myeloma", clinical="remission"))
    assert topic_card(client, request, TOPIC) is None  # in remission: not an active condition
    the_draft(request)["reasonReference"] = [{"reference": "https://ehr.example.org/fhir/r4/Condition/cond-mm"}]
    assert "order reason: Myeloma" in topic_card(client, request, TOPIC)["detail"]


@pytest.mark.parametrize("indication", [None, OSTEOPENIA])
def test_120mg_for_osteoporosis_or_osteopenia_without_oncologic_indication(client, indication):
    request = as_xgeva(baseline_request())
    if indication:
        remove(request, "conditions", "cond-pmo-1")
        add(request, "conditions", condition("cond-osteopenia", indication, "Osteopenia"))
    card = topic_card(client, request, TOPIC)
    assert card["indicator"] == "warning" and "60 mg every 6 months" in card["detail"]


def test_120mg_with_an_oncologic_indication_is_silent(client):
    request = as_xgeva(baseline_request())
    add(request, "conditions", condition("cond-onc", MYELOMA, "Multiple myeloma"))
    assert topic_card(client, request, TOPIC) is None


def test_120mg_without_any_indication_on_record_is_silent(client):
    assert topic_card(client, as_xgeva(prolia_without_osteoporosis()), TOPIC) is None


def test_regimen_from_the_dose_of_an_ingredient_coded_order(client):
    request = prolia_without_osteoporosis()
    add(request, "conditions", condition("cond-onc", BONE_METS, "Bone metastases"))
    request["context"]["draftOrders"]["entry"][0]["resource"] = medication_request(
        "draft-1", DENOSUMAB_INGREDIENT, dose_mg=60, period=6, unit="mo")
    assert "from the dose written, 60 mg" in topic_card(client, request, TOPIC)["detail"]


def test_regimen_unknown_yet_is_silent(client):
    request = prolia_without_osteoporosis()
    add(request, "conditions", condition("cond-onc", BONE_METS, "Bone metastases"))
    request["context"]["draftOrders"]["entry"][0]["resource"] = medication_request("draft-1", DENOSUMAB_INGREDIENT)
    assert topic_card(client, request, TOPIC) is None
