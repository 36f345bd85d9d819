"""The operations endpoints in-process: /healthz, /readyz, /metrics (families, labels, counts) and
the log lines an operations team reads (JWT rejection with both audiences, access line with the
caller, CORS preflights)."""

from __future__ import annotations

import logging
from datetime import datetime
from pathlib import Path

import pytest
from prometheus_client.parser import text_string_to_metric_families

from cds_service import __version__
from cds_service.config import Settings
from cds_service.knowledge import load_knowledge
from cds_service.knowledge.version import knowledge_version
from cds_service.protocol.services import load_services
from tests.conftest import SCENARIOS, load_scenario
from tests.requests_for_tests import baseline_request
from tests.security.ehr import PUBLIC_BASE_URL, bearer, claims_for, jwt_settings

FAMILIES = {
    "denosumab_cds_requests": ("counter", {"service", "status"}),
    "denosumab_cds_request_duration_seconds": ("histogram", {"service"}),
    "denosumab_cds_cards": ("counter", {"topic", "indicator"}),
    "denosumab_cds_cards_suppressed": ("counter", {"topic"}),
    "denosumab_cds_fhir_queries": ("counter", {"outcome"}),
    "denosumab_cds_jwt_rejected": ("counter", {"reason"}),
    "denosumab_cds_store_errors": ("counter", {"operation"}),
}
HYPOCALCEMIA = SCENARIOS / "hypocalcemia" / "fires-calcium-only-in-mmol-l-1.95.json"


def scrape(client, **kwargs) -> dict[str, dict[tuple, float]]:
    """family name -> {sorted label items of a sample (with the sample's name) -> value}."""
    response = client.get("/metrics", **kwargs)
    assert response.status_code == 200, response.text
    assert response.content_type.startswith("text/plain")
    families = {}
    for family in text_string_to_metric_families(response.get_data(as_text=True)):
        families[family.name] = {
            (sample.name, *sorted(sample.labels.items())): sample.value for sample in family.samples
        }
    return families


def value(families, family: str, sample: str | None = None, **labels) -> float:
    return families[family].get((sample or f"{family}_total", *sorted(labels.items())), 0.0)


def grown(before, after, family: str, sample: str | None = None, **labels) -> float:
    return value(after, family, sample, **labels) - value(before, family, sample, **labels)


def label_values(families, family: str) -> set[str]:
    return {sample[1][1] for sample in families[family]}


def test_healthz_answers_the_version_without_a_jwt_and_without_configuration(make_app, jwks_path):
    client = make_app(jwt_settings(jwks_path)).test_client()
    response = client.get("/healthz")
    assert response.status_code == 200
    assert response.json == {"status": "ok", "version": __version__, "knowledgeVersion": knowledge_version(
        load_knowledge(), jwt_settings(jwks_path))}
    assert response.json["knowledgeVersion"].startswith(__version__ + "+kb.")
    assert response.headers["Cache-Control"] == "no-store"


def test_readyz_is_200_while_the_store_answers_and_503_naming_it_when_not(make_app, tmp_path, caplog):
    store = tmp_path / "ready.sqlite3"
    app = make_app(Settings(store_url=f"sqlite:///{store}"))
    client = app.test_client()
    assert client.get("/readyz").status_code == 200
    before = value(scrape(client), "denosumab_cds_store_errors", operation="readiness")

    # The store goes away under the running service (the file deleted, connections dropped).
    store.unlink()
    app.extensions["denosumab_cds_feedback"].engine.dispose()
    response = client.get("/readyz")
    assert response.status_code == 503
    assert response.headers["Retry-After"]
    outcome = response.json
    assert outcome["resourceType"] == "OperationOutcome"
    (issue,) = outcome["issue"]
    assert "store" in issue["diagnostics"] and issue["code"] == "transient"
    assert str(tmp_path) not in response.get_data(as_text=True)  # no configuration revealed
    assert value(scrape(client), "denosumab_cds_store_errors", operation="readiness") == before + 1
    assert any(r.getMessage() == "readiness: the store does not answer" for r in caplog.records)


def test_every_family_and_known_label_value_is_in_the_first_scrape(client):
    families = scrape(client)
    for name, (kind, label_names) in FAMILIES.items():
        assert name in families, name
        assert {k for sample in families[name] for k, _ in sample[1:]} - {"le"} == label_names
    kb = load_knowledge()
    cards, suppressed = families["denosumab_cds_cards"], families["denosumab_cds_cards_suppressed"]
    for topic in kb.topics:
        for indicator in ("critical", "warning", "info"):
            assert ("denosumab_cds_cards_total", ("indicator", indicator), ("topic", topic)) in cards
        assert ("denosumab_cds_cards_suppressed_total", ("topic", topic)) in suppressed
    requests, durations = families["denosumab_cds_requests"], families["denosumab_cds_request_duration_seconds"]
    for service in [*load_services(), "discovery", "feedback"]:
        assert ("denosumab_cds_requests_total", ("service", service), ("status", "500")) in requests
        assert ("denosumab_cds_request_duration_seconds_count", ("service", service)) in durations
    assert label_values(families, "denosumab_cds_fhir_queries") == {"ok", "error", "timeout", "truncated"}
    assert {"expired", "audience", "replay", "signature", "missing", "other"} <= label_values(families, "denosumab_cds_jwt_rejected")
    assert {"ledger-write", "feedback-write", "replay-check", "readiness"} <= label_values(families, "denosumab_cds_store_errors")


def test_a_hook_call_counts_its_request_duration_and_cards(make_app):
    scenario = load_scenario(HYPOCALCEMIA)
    client = make_app(as_of=datetime.fromisoformat(scenario["asOf"])).test_client()
    before = scrape(client)
    response = client.post("/cds-services/order-sign", json=scenario["request"])
    assert response.status_code == 200
    cards = [(c["source"]["topic"]["code"], c["indicator"]) for c in response.json["cards"]]
    assert ("hypocalcemia", "critical") in cards
    client.post("/cds-services/order-sign", json={"hook": "order-sign"})  # a 400
    client.post("/cds-services/no-such-service", json={})  # a 404: counted, never as its own label
    after = scrape(client)
    assert grown(before, after, "denosumab_cds_requests", service="order-sign", status="200") == 1
    assert grown(before, after, "denosumab_cds_requests", service="order-sign", status="400") == 1
    assert grown(before, after, "denosumab_cds_requests", service="unknown", status="404") == 1
    assert "no-such-service" not in label_values(after, "denosumab_cds_requests")
    count = "denosumab_cds_request_duration_seconds_count"
    assert grown(before, after, "denosumab_cds_request_duration_seconds", count, service="order-sign") == 2
    for topic, indicator in cards:
        assert grown(before, after, "denosumab_cds_cards", topic=topic, indicator=indicator) == cards.count((topic, indicator))


def test_no_label_holds_patient_or_request_data(make_app):
    scenario = load_scenario(HYPOCALCEMIA)
    client = make_app(as_of=datetime.fromisoformat(scenario["asOf"])).test_client()
    client.post("/cds-services/order-sign", json=scenario["request"])
    text = client.get("/metrics").get_data(as_text=True)
    request = scenario["request"]
    for private in (request["context"]["patientId"], request["hookInstance"], request["context"]["userId"]):
        assert private not in text


def test_suppressed_cards_are_counted_by_topic(client):
    from cds_service.ops.metrics import record_suppressed

    before = value(scrape(client), "denosumab_cds_cards_suppressed", topic="dental-clearance")
    record_suppressed("dental-clearance")
    assert value(scrape(client), "denosumab_cds_cards_suppressed", topic="dental-clearance") == before + 1


def test_metrics_can_be_turned_off_or_put_behind_the_jwt(make_app, jwks_path, ehr_key):
    assert make_app(Settings(metrics_enabled=False)).test_client().get("/metrics").status_code == 404
    guarded = make_app(jwt_settings(jwks_path).with_overrides(metrics_require_jwt=True)).test_client()
    refused = guarded.get("/metrics")
    assert refused.status_code == 401 and refused.json["resourceType"] == "OperationOutcome"
    token = ehr_key.sign(claims_for(f"{PUBLIC_BASE_URL}/metrics"))
    assert guarded.get("/metrics", headers=bearer(token)).status_code == 200
    open_by_default = make_app(jwt_settings(jwks_path)).test_client()
    assert open_by_default.get("/metrics").status_code == 200


def test_a_jwt_rejection_is_counted_and_logs_the_tokens_aud_beside_the_expected_one(make_app, jwks_path, ehr_key,
                                                                                    caplog):
    client = make_app(jwt_settings(jwks_path)).test_client()
    before = value(scrape(client), "denosumab_cds_jwt_rejected", reason="audience")
    wrong = "https://cds.example.org/other-service/cds-services/order-sign"
    caplog.set_level(logging.WARNING)
    token = ehr_key.sign(claims_for(wrong))
    response = client.post("/cds-services/order-sign", json=baseline_request(), headers=bearer(token))
    assert response.status_code == 401
    (rejection,) = [r for r in caplog.records if r.getMessage() == "JWT rejected"]
    assert rejection.fields["aud"] == wrong
    assert rejection.fields["expected_aud"] == f"{PUBLIC_BASE_URL}/cds-services/order-sign"
    assert value(scrape(client), "denosumab_cds_jwt_rejected", reason="audience") == before + 1


def test_the_access_line_names_the_calling_ehr_and_its_tenant(make_app, jwks_path, ehr_key, caplog):
    client = make_app(jwt_settings(jwks_path, tenant="hospital-a")).test_client()
    caplog.set_level(logging.INFO, logger="cds_service.access")
    token = ehr_key.sign(claims_for(f"{PUBLIC_BASE_URL}/cds-services", tenant="hospital-a"))
    assert client.get("/cds-services", headers=bearer(token)).status_code == 200
    (line,) = [r.fields for r in caplog.records if r.name == "cds_service.access"]
    assert line["iss"] == "https://ehr.example.org/cds-client" and line["tenant"] == "hospital-a"


def test_cors_preflights_are_logged_and_probes_that_answer_are_not(client, caplog):
    caplog.set_level(logging.INFO, logger="cds_service.access")
    headers = {"Origin": "https://sandbox.cds-hooks.org", "Access-Control-Request-Method": "POST"}
    preflight = client.options("/cds-services/order-sign", headers=headers)
    assert preflight.status_code == 200
    client.get("/healthz")
    client.get("/readyz")
    client.get("/metrics")
    lines = [r.fields for r in caplog.records if r.name == "cds_service.access"]
    assert lines == [{
        "method": "OPTIONS", "path": "/cds-services/order-sign", "status": 200, "duration_ms": lines[0]["duration_ms"],
        "preflight": True, "origin": "https://sandbox.cds-hooks.org",
    }]


def test_fhir_queries_are_counted_by_outcome(make_app):
    import requests
    import responses

    from tests.requests_for_tests import FHIR_BASE, searchset

    settings = Settings(allowed_fhir_servers=(FHIR_BASE,), fhir_timeout_seconds=1.0, fhir_max_pages=1)
    client = make_app(settings).test_client()
    request = baseline_request()
    prefetch = request.pop("prefetch")
    request["fhirServer"] = FHIR_BASE
    request["fhirAuthorization"] = {"access_token": "t-1", "token_type": "Bearer", "expires_in": 300}
    before = scrape(client)
    with responses.RequestsMock(assert_all_requests_are_fired=False) as rsps:
        rsps.add(responses.GET, f"{FHIR_BASE}/Patient/pat-wm-0001", json=prefetch["patient"])
        rsps.add(responses.GET, f"{FHIR_BASE}/MedicationRequest", json=prefetch["medicationRequests"])
        # A first page with a next link, past the page limit of 1: the history is truncated.
        rsps.add(responses.GET, f"{FHIR_BASE}/MedicationAdministration",
                 json=searchset([], next_url=f"{FHIR_BASE}/MedicationAdministration?page=2"))
        rsps.add(responses.GET, f"{FHIR_BASE}/MedicationDispense", status=500)
        rsps.add(responses.GET, f"{FHIR_BASE}/MedicationStatement", body=requests.exceptions.ReadTimeout("slow"))
        for resource_type, key in [("Observation", "labResults"), ("Condition", "conditions"),
                                   ("Procedure", "procedures")]:
            rsps.add(responses.GET, f"{FHIR_BASE}/{resource_type}", json=prefetch[key])
        assert client.post("/cds-services/order-sign", json=request).status_code == 200
    after = scrape(client)
    counted = {o: grown(before, after, "denosumab_cds_fhir_queries", outcome=o) for o in ("ok", "error", "timeout", "truncated")}
    assert counted == {"ok": 5, "error": 1, "timeout": 1, "truncated": 1}


def test_the_metrics_keys_of_the_configuration_file(tmp_path):
    from cds_service.config import settings_from_toml

    defaults = settings_from_toml({"auth": {"require_jwt": False}}, base_dir=tmp_path)
    assert (defaults.metrics_enabled, defaults.metrics_require_jwt) == (True, False)
    chosen = settings_from_toml({"auth": {"require_jwt": False}, "metrics": {"enabled": False, "require_jwt": True}},
                                base_dir=tmp_path)
    assert (chosen.metrics_enabled, chosen.metrics_require_jwt) == (False, True)
