"""Input that used to break the service (issue 16, cases 6, 7, 9): too many draft orders, text
that cannot be stored, trailing slashes, compressed bodies, headers a browser client must read."""

from __future__ import annotations

import copy
import gzip
import json
import zlib

import pytest
import responses

from cds_service.config import Settings
from tests.feedback.conftest import accepted, backend_url, issue_cards, make_card_app, overridden, postgres_url  # noqa: F401
from tests.requests_for_tests import FHIR_BASE, baseline_request, prolia_draft
from tests.security.conftest import ehr_key, jwks_path, jwt_app, jwt_client  # noqa: F401 (fixtures)
from tests.security.ehr import PUBLIC_BASE_URL, bearer, claims_for

ORDER_SIGN = "/cds-services/order-sign"
FEEDBACK = ORDER_SIGN + "/feedback"


def _issue(response) -> dict:
    body = response.get_json()
    assert body["resourceType"] == "OperationOutcome"
    return body["issue"][0]


def _with_drafts(count: int) -> dict:
    request = baseline_request()
    request["context"]["draftOrders"] = {
        "resourceType": "Bundle", "type": "collection",
        "entry": [{"resource": prolia_draft(f"draft-{i}")} for i in range(count)],
    }
    return request


# --- draft orders -------------------------------------------------------------------------------


def test_more_draft_orders_than_allowed_is_400_too_costly_before_any_work(make_app):
    client = make_app(Settings(allowed_fhir_servers=(FHIR_BASE,))).test_client()
    request = _with_drafts(51)
    request.pop("prefetch")  # would need fetching: nothing may be fetched for a refused call
    request["fhirServer"] = FHIR_BASE
    request["fhirAuthorization"] = {"access_token": "t", "token_type": "Bearer", "expires_in": 300, "subject": "cds"}
    with responses.RequestsMock() as rsps:
        response = client.post(ORDER_SIGN, json=request)
        assert len(rsps.calls) == 0
    assert response.status_code == 400
    issue = _issue(response)
    assert issue["code"] == "too-costly"
    assert issue["expression"] == ["context.draftOrders"]
    assert "at most 50" in issue["diagnostics"]


def test_five_thousand_draft_orders_are_refused_at_once(make_app):
    """4.7 MB, under the body limit: once over 30 s of duplicate checking and gunicorn's HTML 500."""
    response = make_app().test_client().post(ORDER_SIGN, json=_with_drafts(5000))
    assert response.status_code == 400
    assert _issue(response)["code"] == "too-costly"


def test_the_draft_order_limit_is_inclusive_and_configurable(make_app):
    assert make_app().test_client().post(ORDER_SIGN, json=_with_drafts(50)).status_code == 200
    client = make_app(Settings(max_draft_orders=5)).test_client()
    assert client.post(ORDER_SIGN, json=_with_drafts(6)).status_code == 400


# --- text that cannot be stored ----------------------------------------------------------------


def _set(request: dict, path: str, value: str) -> None:
    *parents, last = path.split(".")
    for name in parents:
        request = request[name]
    request[last] = value


def _refused_as_not_unicode(response) -> None:
    """A lone surrogate escape is refused by the JSON parser itself (cds_service/json_parse.py),
    wherever it is: 400, saying what and where in the body."""
    assert response.status_code == 400
    issue = _issue(response)
    assert "lone surrogate escape" in issue["diagnostics"] and "at byte" in issue["diagnostics"], issue


@pytest.mark.parametrize("bad", ["\ud800", "a\x00b"], ids=["lone-surrogate", "nul"])
@pytest.mark.parametrize("field", ["context.patientId", "fhirServer", "context.userId", "context.encounterId", "hookInstance"])
def test_a_field_the_service_stores_or_hashes_must_be_storable_text(make_app, field, bad):
    request = baseline_request()
    original = request
    for name in field.split(".")[:-1]:
        original = original[name]
    prefix = {"fhirServer": "https://ehr.example.org/fhir/r4", "hookInstance": request["hookInstance"]}.get(field, "pat-wm-0001")
    _set(request, field, prefix + bad)
    body = json.dumps(request).encode()  # json escapes the surrogate as \\ud800, as a client would send it
    response = make_app().test_client().post(ORDER_SIGN, data=body, content_type="application/json")
    if bad == "\ud800":
        _refused_as_not_unicode(response)
        return
    assert response.status_code == 400
    assert _issue(response)["expression"] == [field]


@pytest.mark.parametrize("member", ["code", "display", "system"])
@pytest.mark.parametrize("bad", ["\udfff", "x\x00"], ids=["lone-surrogate", "nul"])
def test_an_override_reason_that_cannot_be_stored_is_400_naming_it(backend_url, member, bad):
    client = make_card_app(Settings(store_url=backend_url)).test_client()
    card = issue_cards(client)[0]
    entry = copy.deepcopy(overridden(card, reason=0))
    entry["overrideReason"]["reason"][member] = "reason" + bad
    response = client.post(FEEDBACK, data=json.dumps({"feedback": [entry]}), content_type="application/json")
    if bad == "\udfff":
        _refused_as_not_unicode(response)
    else:
        assert response.status_code == 400
        assert _issue(response)["expression"] == [f"feedback[0].overrideReason.reason.{member}"]
    good = overridden(card, reason=0)
    assert client.post(FEEDBACK, json={"feedback": [good]}).status_code == 200  # the store is none the worse


def test_a_lone_surrogate_in_the_jwt_jti_is_401_not_500(jwt_client, ehr_key):
    token = ehr_key.sign(claims_for(PUBLIC_BASE_URL + "/cds-services", jti="\ud800"))
    assert jwt_client.get("/cds-services", headers=bearer(token)).status_code == 401


# --- trailing slashes, compressed bodies, CORS ---------------------------------------------------


def test_every_route_accepts_a_trailing_slash(make_app):
    client = make_card_app().test_client()
    assert client.get("/cds-services/").status_code == 200
    assert client.get("/openapi.json/").status_code == 200
    response = client.post(ORDER_SIGN + "/", json=baseline_request())
    assert response.status_code == 200
    card = issue_cards(client)[0]
    assert client.post(FEEDBACK + "/", json={"feedback": [accepted(card, 0)]}).status_code == 200


def test_a_token_for_the_url_with_the_trailing_slash_is_accepted(jwt_client, ehr_key):
    for path in ("/cds-services/", ORDER_SIGN + "/"):
        token = ehr_key.sign(claims_for(PUBLIC_BASE_URL + path))
        method = jwt_client.get if path == "/cds-services/" else (lambda p, **kw: jwt_client.post(p, json=baseline_request(), **kw))
        assert method(path, headers=bearer(token)).status_code == 200
    token = ehr_key.sign(claims_for(PUBLIC_BASE_URL + "/cds-services/patient-view/"))
    assert jwt_client.get("/cds-services/", headers=bearer(token)).status_code == 401  # still the URL called


@pytest.mark.parametrize("encoding, compress", [("gzip", gzip.compress), ("deflate", zlib.compress)])
def test_a_compressed_body_is_read(make_app, encoding, compress):
    request = baseline_request()
    request["prefetch"]["labResults"] = {"resourceType": "Bundle", "type": "searchset", "entry": []}
    plain = make_app().test_client().post(ORDER_SIGN, json=request)
    response = make_app().test_client().post(
        ORDER_SIGN, data=compress(json.dumps(request).encode()), content_type="application/json",
        headers={"Content-Encoding": encoding},
    )
    assert response.status_code == 200
    topics = lambda r: [c["source"]["topic"]["code"] for c in r.get_json()["cards"]]  # noqa: E731
    assert topics(response) == topics(plain) and topics(response)


def test_a_compressed_body_over_the_limit_once_decompressed_is_413(make_app):
    bomb = gzip.compress(b'{"pad": "' + b" " * (6 * 1024 * 1024) + b'"}')
    assert len(bomb) < 100 * 1024
    response = make_app().test_client().post(ORDER_SIGN, data=bomb, content_type="application/json",
                                             headers={"Content-Encoding": "gzip"})
    assert response.status_code == 413
    assert _issue(response)["code"] == "too-costly"


def test_other_content_encodings_are_415_naming_the_header(make_app):
    response = make_app().test_client().post(ORDER_SIGN, data=b"\x0b\x02\x80{}\x03", content_type="application/json",
                                             headers={"Content-Encoding": "br"})
    assert response.status_code == 415
    assert _issue(response)["expression"] == ["Content-Encoding"]
    broken = make_app().test_client().post(ORDER_SIGN, data=b"\x1f\x8b not gzip", content_type="application/json",
                                           headers={"Content-Encoding": "gzip"})
    assert broken.status_code == 400


def test_browser_clients_can_read_x_skipped_resources(make_app):
    request = baseline_request()
    bad = {"resourceType": "Observation", "id": "lab-broken", "status": "final",
           "code": {"coding": [{"system": "http://loinc.org", "code": "17861-6"}]},
           "effectiveDateTime": "2026-11-24T08:00:00Z",  # the newest calcium: the checks read it
           "valueQuantity": {"value": "eight point one", "unit": "mg/dL"}}
    request["prefetch"]["labResults"]["entry"].append({"resource": bad})
    response = make_app().test_client().post(ORDER_SIGN, json=request, headers={"Origin": "https://sandbox.cds-hooks.org"})
    assert response.status_code == 200
    assert "X-Skipped-Resources" in response.headers
    exposed = [h.strip().lower() for h in response.headers["Access-Control-Expose-Headers"].split(",")]
    assert "x-skipped-resources" in exposed
