"""The OpenAPI 3.1 description at /openapi.json stays true: every route is described, every
described route exists, and real answers (each documented status) match their schemas."""

from __future__ import annotations

import re
import uuid

import pytest
import responses
from jsonschema import Draft202012Validator
from referencing import Registry, Resource
from referencing.jsonschema import DRAFT202012
from sqlalchemy.exc import OperationalError

from tests.requests_for_tests import baseline_request
from tests.security.ehr import FHIR_BASE, PUBLIC_BASE_URL, bearer, claims_for

ORDER_SIGN = "/cds-services/order-sign"
FEEDBACK = "/cds-services/order-sign/feedback"
_DOCUMENT_URI = "urn:denosumab-cds:openapi"


@pytest.fixture
def document(jwt_client):
    response = jwt_client.get("/openapi.json")
    assert response.status_code == 200
    assert response.mimetype == "application/json"
    return response.get_json()


def openapi_path(rule: str) -> str:
    return re.sub(r"<(?:[a-z]+:)?([a-z_]+)>", r"{\1}", rule)


def validator_for(document: dict, schema: dict) -> Draft202012Validator:
    registry = Registry().with_resource(_DOCUMENT_URI, Resource.from_contents(document, default_specification=DRAFT202012))
    return Draft202012Validator(_rebase(schema), registry=registry)


def _rebase(schema):
    """Local '#/components/...' references, made to point into the document resource."""
    if isinstance(schema, dict):
        return {k: (_DOCUMENT_URI + v if k == "$ref" and v.startswith("#") else _rebase(v)) for k, v in schema.items()}
    if isinstance(schema, list):
        return [_rebase(item) for item in schema]
    return schema


def resolve(document: dict, node: dict) -> dict:
    while "$ref" in node:
        target = document
        for part in node["$ref"].removeprefix("#/").split("/"):
            target = target[part]
        node = target
    return node


def assert_matches_description(document: dict, rule_path: str, method: str, response) -> None:
    operation = document["paths"][rule_path][method.lower()]
    status = str(response.status_code)
    assert status in operation["responses"], f"{method} {rule_path} answered {status}, which is not described"
    described = resolve(document, operation["responses"][status])
    for name, header in described.get("headers", {}).items():
        if header.get("required"):
            assert name in response.headers, f"{status} must carry {name}"
    content = described.get("content")
    if content is None:
        return
    assert response.mimetype in content, f"{status} answered {response.mimetype}"
    schema = content[response.mimetype]["schema"]
    errors = sorted(validator_for(document, schema).iter_errors(response.get_json()), key=str)
    assert not errors, [f"{list(e.absolute_path)}: {e.message}" for e in errors[:5]]


def test_it_is_openapi_3_1_with_the_cds_hooks_jwt_scheme(document):
    assert document["openapi"].startswith("3.1.")
    scheme = document["components"]["securitySchemes"]["cdsHooksJwt"]
    assert (scheme["type"], scheme["scheme"], scheme["bearerFormat"]) == ("http", "bearer", "JWT")
    for schema in document["components"]["schemas"].values():
        Draft202012Validator.check_schema(schema)


def test_service_ids_are_those_of_discovery(document, jwt_client, ehr_key):
    ids = document["components"]["parameters"]["ServiceId"]["schema"]["enum"]
    discovery = jwt_client.get("/cds-services", headers=bearer(ehr_key.sign(claims_for(PUBLIC_BASE_URL + "/cds-services"))))
    assert sorted(s["id"] for s in discovery.get_json()["services"]) == ids


def test_every_route_is_described_and_every_description_is_a_route(document, jwt_app):
    routes = {
        (openapi_path(rule.rule), method.lower())
        for rule in jwt_app.url_map.iter_rules()
        for method in rule.methods - {"HEAD", "OPTIONS"}
    }
    described = {(path, method) for path, item in document["paths"].items() for method in item if method != "parameters"}
    assert routes == described


def test_cds_routes_require_the_jwt_and_the_description_says_so(document):
    assert document["security"] == [{"cdsHooksJwt": []}]
    for path, item in document["paths"].items():
        for method, operation in item.items():
            if method == "parameters":
                continue
            if path.startswith("/cds-services"):
                assert "security" not in operation and "401" in operation["responses"]
            else:
                assert operation["security"] == []


def card_request() -> dict:
    """The well-managed patient with no lab results prefetched and the FHIR server failing: one card."""
    request = baseline_request()
    del request["prefetch"]["labResults"]
    request["fhirAuthorization"] = {"access_token": "t", "token_type": "Bearer"}
    return request


def test_real_answers_match_the_description(document, jwt_client, jwt_app, ehr_key):
    def signed(path):
        return bearer(ehr_key.sign(claims_for(PUBLIC_BASE_URL + path)))

    seen: set[tuple[str, str, str]] = set()

    def check(rule_path, method, response):
        assert_matches_description(document, rule_path, method, response)
        seen.add((rule_path, method.lower(), str(response.status_code)))

    hook = "/cds-services/{service_id}"
    check("/openapi.json", "GET", jwt_client.get("/openapi.json"))
    check("/cds-services", "GET", jwt_client.get("/cds-services", headers=signed("/cds-services")))
    check("/cds-services", "GET", jwt_client.get("/cds-services"))
    with responses.RequestsMock() as fhir:
        fhir.get(f"{FHIR_BASE}/Observation", status=500)
        with_card = jwt_client.post(ORDER_SIGN, json=card_request(), headers=signed(ORDER_SIGN))
    check(hook, "POST", with_card)
    assert with_card.get_json()["cards"], "the description must be checked against real cards"
    check(hook, "POST", jwt_client.post(ORDER_SIGN, json=baseline_request(), headers=signed(ORDER_SIGN)))
    check(hook, "POST", jwt_client.post(ORDER_SIGN, json={"hook": "order-sign"}, headers=signed(ORDER_SIGN)))
    check(hook, "POST", jwt_client.post(ORDER_SIGN, json=baseline_request()))
    check(hook, "POST", jwt_client.post("/cds-services/nope", json={}, headers=signed("/cds-services/nope")))
    no_prefetch = baseline_request()
    del no_prefetch["prefetch"]
    check(hook, "POST", jwt_client.post(ORDER_SIGN, json=no_prefetch, headers=signed(ORDER_SIGN)))
    big = b'{"pad": "' + b"x" * (6 * 1024 * 1024) + b'"}'
    check(hook, "POST", jwt_client.post(ORDER_SIGN, data=big, content_type="application/json", headers=signed(ORDER_SIGN)))
    brotli = {**signed(ORDER_SIGN), "Content-Encoding": "br"}
    check(hook, "POST", jwt_client.post(ORDER_SIGN, data=b"\x0b\x02\x80{}\x03", content_type="application/json", headers=brotli))

    card = with_card.get_json()["cards"][0]
    feedback = {"feedback": [{"card": card["uuid"], "outcome": "overridden", "outcomeTimestamp": "2026-11-25T15:02:00Z",
                              "overrideReason": {"reason": card["overrideReasons"][0]}}]}
    check(FEEDBACK.replace("order-sign", "{service_id}"), "POST", jwt_client.post(FEEDBACK, json=feedback, headers=signed(FEEDBACK)))
    unknown_card = {"feedback": [{"card": str(uuid.uuid4()), "outcome": "accepted", "outcomeTimestamp": "2026-11-25T15:02:00Z"}]}
    fb = "/cds-services/{service_id}/feedback"
    check(fb, "POST", jwt_client.post(FEEDBACK, json=unknown_card, headers=signed(FEEDBACK)))
    check(fb, "POST", jwt_client.post(FEEDBACK, json=feedback))
    check(fb, "POST", jwt_client.post("/cds-services/nope/feedback", json=feedback, headers=signed("/cds-services/nope/feedback")))
    check(fb, "POST", jwt_client.post(FEEDBACK, data=big, content_type="application/json", headers=signed(FEEDBACK)))
    compressed = {**signed(FEEDBACK), "Content-Encoding": "zstd"}
    check(fb, "POST", jwt_client.post(FEEDBACK, data=b"(\xb5/\xfd", content_type="application/json", headers=compressed))

    # The store down: feedback is 503 (the EHR resends later). A hook call still gets its cards,
    # the replay check falling back to the worker's memory; only when that is full is it a 503,
    # not a 401 that would send the EHR looking at its keys.
    verifier = jwt_app.extensions["denosumab_cds_jwt"]

    def store_down(*_args):
        raise OperationalError("INSERT", {}, Exception("database is locked"))

    verifier.replay_guard.first_use = store_down
    jwt_app.extensions["denosumab_cds_feedback"]._store = store_down
    check(hook, "POST", jwt_client.post(ORDER_SIGN, json=baseline_request(), headers=signed(ORDER_SIGN)))
    check(fb, "POST", jwt_client.post(FEEDBACK, json=feedback, headers=signed(FEEDBACK)))
    verifier.recent_tokens.first_use = lambda *_args: None  # this worker's memory of tokens is full
    check("/cds-services", "GET", jwt_client.get("/cds-services", headers=signed("/cds-services")))
    check(hook, "POST", jwt_client.post(ORDER_SIGN, json=baseline_request(), headers=signed(ORDER_SIGN)))
    check(fb, "POST", jwt_client.post(FEEDBACK, json=feedback, headers=signed(FEEDBACK)))

    # The operations and knowledge routes (cds_service/ops, protocol/fhir_knowledge_routes.py).
    check("/healthz", "GET", jwt_client.get("/healthz"))
    check("/readyz", "GET", jwt_client.get("/readyz"))
    check("/metrics", "GET", jwt_client.get("/metrics"))
    knowledge = "/fhir/{resource_type}/{resource_id}"
    check(knowledge, "GET", jwt_client.get("/fhir/ValueSet/hypocalcemia"))
    check(knowledge, "GET", jwt_client.get("/fhir/PlanDefinition/no-such-topic"))
    check("/fhir/{resource_type}", "GET", jwt_client.get("/fhir/CodeSystem?url=https://denosumab-cds.org/fhir/CodeSystem/card-topic"))
    check("/fhir/{resource_type}", "GET", jwt_client.get("/fhir/Observation"))
    check("/fhir/metadata", "GET", jwt_client.get("/fhir/metadata"))
    jwt_app.extensions["denosumab_cds_feedback"].engine.raw_connection = store_down
    check("/readyz", "GET", jwt_client.get("/readyz"))

    documented = {
        (path, method, status)
        for path, item in document["paths"].items()
        for method, operation in item.items()
        if method != "parameters"
        for status in operation["responses"]
    }
    assert documented - seen == set(), "documented answers that no test produced"
