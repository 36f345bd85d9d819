"""The service reads only from the FHIR servers registered for the verified caller, and a
caller-supplied fhirServer can never turn it against another host of the hospital's network."""

from __future__ import annotations

from urllib.parse import urlsplit

import pytest
import requests
import responses
from hypothesis import given, settings
from hypothesis import strategies as st

from cds_service.config import ClientConfig, Settings
from cds_service.protocol.fhir_client import is_allowed_base
from tests.requests_for_tests import baseline_request, searchset
from tests.security.ehr import EHR_ISS, FHIR_BASE, PUBLIC_BASE_URL, EhrKey, bearer, claims_for, jwt_settings, write_jwks

ORDER_SIGN = "/cds-services/order-sign"
ACCESS_TOKEN = "fhir-access-token-7f3c"


def needs_a_fetch(fhir_server: str) -> dict:
    """The baseline request with its lab results left for the service to fetch from `fhir_server`."""
    request = baseline_request()
    del request["prefetch"]["labResults"]
    request["fhirServer"] = fhir_server
    request["fhirAuthorization"] = {"access_token": ACCESS_TOKEN, "token_type": "Bearer", "expires_in": 300,
                                    "scope": "patient/Observation.read", "subject": "denosumab-cds"}
    return request


def call(client, key: EhrKey, body: dict):
    token = key.sign(claims_for(PUBLIC_BASE_URL + ORDER_SIGN))
    return client.post(ORDER_SIGN, json=body, headers=bearer(token))


@pytest.mark.parametrize(
    "fhir_server",
    [
        "http://ehr.example.org/fhir/r4",  # scheme
        "https://ehr.example.org:8443/fhir/r4",  # port
        "https://intranet.example.org/fhir/r4",  # host
        "https://ehr.example.org.attacker.net/fhir/r4",  # host suffix
        "https://ehr.example.org@169.254.169.254/fhir/r4",  # userinfo trick: the host is the metadata service
        "https://ehr.example.org/fhir/r4-admin",  # path that only starts like the base
        "https://ehr.example.org/fhir",  # parent of the base
        "https://ehr.example.org/admin/fhir/r4",
        "https://collector.attacker.net\\@ehr.example.org/fhir/r4",  # parser differential
        "https://ehr.example.org/fhir/r4/../../admin",  # dot segments
    ],
)
def test_fhir_server_outside_the_callers_bases_is_412_and_nothing_is_fetched(jwt_client, ehr_key, fhir_server):
    with responses.RequestsMock(assert_all_requests_are_fired=False) as rsps:
        response = call(jwt_client, ehr_key, needs_a_fetch(fhir_server))
        assert len(rsps.calls) == 0
    assert response.status_code == 412  # CDS Hooks 2.0: the data cannot be had from this server
    body = response.get_json()
    assert body["resourceType"] == "OperationOutcome"
    assert body["issue"][0]["code"] == "security"
    assert body["issue"][0]["expression"] == ["fhirServer"]
    assert "fhirServer" in body["issue"][0]["diagnostics"]
    assert ACCESS_TOKEN not in response.get_data(as_text=True)


@pytest.mark.parametrize("fhir_server", [FHIR_BASE, FHIR_BASE + "/"])
def test_the_callers_own_base_is_fetched_with_the_token(jwt_client, ehr_key, fhir_server):
    with responses.RequestsMock() as rsps:
        labs = rsps.get(f"{FHIR_BASE}/Observation", json=searchset([]))
        response = call(jwt_client, ehr_key, needs_a_fetch(fhir_server))
    assert response.status_code == 200, response.get_json()
    assert labs.call_count == 1
    assert labs.calls[0].request.headers["Authorization"] == f"Bearer {ACCESS_TOKEN}"


def test_a_complete_prefetch_never_contacts_any_server(jwt_client, ehr_key):
    # The CDS Hooks sandbox always sends its own fhirServer; with every prefetch key filled in,
    # nothing is fetched, so the call works although that server is not registered.
    request = baseline_request()
    request["fhirServer"] = "https://launch.smarthealthit.org/v/r4/fhir"
    request["fhirAuthorization"] = {"access_token": ACCESS_TOKEN, "token_type": "Bearer"}
    with responses.RequestsMock(assert_all_requests_are_fired=False) as rsps:
        response = call(jwt_client, ehr_key, request)
        assert len(rsps.calls) == 0
    assert response.status_code == 200, response.get_json()


def test_one_clients_token_does_not_open_another_clients_fhir_server(make_app, tmp_path, ehr_key):
    other_key = EhrKey()
    other_client = ClientConfig(
        iss="https://other-hospital.example.com", jwks_file=write_jwks(tmp_path / "other.json", other_key),
        fhir_servers=("https://fhir.other-hospital.example.com/r4",),
    )
    settings = jwt_settings(write_jwks(tmp_path / "ehr.json", ehr_key), extra_clients=(other_client,))
    client = make_app(settings).test_client()
    with responses.RequestsMock(assert_all_requests_are_fired=False) as rsps:
        response = call(client, ehr_key, needs_a_fetch("https://fhir.other-hospital.example.com/r4"))
        assert len(rsps.calls) == 0
    assert response.status_code == 412


def test_redirect_from_the_fhir_server_is_not_followed_and_the_token_stays_home(jwt_client, ehr_key):
    with responses.RequestsMock(assert_all_requests_are_fired=False) as rsps:
        rsps.get(f"{FHIR_BASE}/Observation", status=302, headers={"Location": "https://collector.attacker.net/steal"})
        stolen = rsps.get("https://collector.attacker.net/steal", json=searchset([]))
        response = call(jwt_client, ehr_key, needs_a_fetch(FHIR_BASE))
    assert response.status_code == 200  # lab data unavailable, the call still answers
    assert stolen.call_count == 0


def test_next_link_to_another_origin_is_not_followed(jwt_client, ehr_key):
    with responses.RequestsMock(assert_all_requests_are_fired=False) as rsps:
        rsps.get(f"{FHIR_BASE}/Observation", json=searchset([], next_url="https://collector.attacker.net/page2"))
        elsewhere = rsps.get("https://collector.attacker.net/page2", json=searchset([]))
        response = call(jwt_client, ehr_key, needs_a_fetch(FHIR_BASE))
    assert response.status_code == 200
    assert elsewhere.call_count == 0


def test_without_jwt_the_configured_allowed_servers_apply(make_app):
    settings = Settings(trial_mode=False, require_jwt=False, allowed_fhir_servers=(FHIR_BASE,))
    client = make_app(settings).test_client()
    with responses.RequestsMock(assert_all_requests_are_fired=False) as rsps:
        refused = client.post(ORDER_SIGN, json=needs_a_fetch("https://intranet.example.org/fhir/r4"))
        assert len(rsps.calls) == 0
        rsps.get(f"{FHIR_BASE}/Observation", json=searchset([]))
        allowed = client.post(ORDER_SIGN, json=needs_a_fetch(FHIR_BASE))
    assert refused.status_code == 412
    assert allowed.status_code == 200


@pytest.mark.parametrize(
    "url, allowed",
    [
        ("https://ehr.example.org/fhir/r4", True),
        ("https://ehr.example.org/fhir/r4/Observation?patient=1", True),
        ("https://ehr.example.org:443/fhir/r4", True),
        ("HTTPS://EHR.Example.org/fhir/r4", True),
        ("https://ehr.example.org:99999/fhir/r4", False),
        ("ftp://ehr.example.org/fhir/r4", False),
        ("https:///fhir/r4", False),
        # What URL parsers read differently is refused rather than interpreted:
        ("https://ehr.example.org/fhir/r4/../../admin", False),  # urllib3 sends /admin
        ("https://ehr.example.org/fhir/r4/%2e%2e/%2e%2e/admin", False),  # the server decodes to /admin
        ("https://attacker.net\\@ehr.example.org/fhir/r4", False),  # urlsplit: ehr...; urllib3: attacker.net
        ("https://user:secret@ehr.example.org/fhir/r4", False),
        ("https://ehr.example.org\t.attacker.net/fhir/r4", False),
    ],
)
def test_base_matching(url, allowed):
    assert is_allowed_base(url, (FHIR_BASE,)) is allowed


_URL_PIECES = st.sampled_from(
    ["https://", "http://", "ehr.example.org", "attacker.net", "@", "\\", "/", "fhir", "r4", "..", ".", "%2e",
     ":443", ":8443", "#", "?", "%2f", "%40", " ", "\t", "admin", "Observation", "[::1]", "127.0.0.1"]
)


@settings(max_examples=300, deadline=None, derandomize=True, database=None)
@given(st.lists(_URL_PIECES, min_size=1, max_size=12).map("".join))
def test_an_allowed_url_is_sent_where_the_check_said(url):
    """Differential: whatever is_allowed_base accepts, requests (urllib3) sends to the same origin
    and under the same path; the access token cannot be steered elsewhere by URL tricks."""
    candidate = "https://ehr.example.org/fhir/r4" + url if not url.startswith("http") else url
    if not is_allowed_base(candidate, (FHIR_BASE,)):
        return
    try:
        sent = urlsplit(requests.Request("GET", candidate).prepare().url)
    except (requests.RequestException, ValueError):
        return  # not sendable at all: nothing leaves
    assert (sent.scheme, sent.hostname, sent.port or 443) == ("https", "ehr.example.org", 443)
    assert sent.path == "/fhir/r4" or sent.path.startswith("/fhir/r4/")


def test_jwt_settings_bind_the_client_to_its_fhir_servers(ehr_key, tmp_path):
    settings = jwt_settings(write_jwks(tmp_path / "k.json", ehr_key))
    assert settings.clients[0].iss == EHR_ISS and settings.clients[0].fhir_servers == (FHIR_BASE,)
