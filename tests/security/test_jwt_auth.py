"""Every call under /cds-services needs the EHR's JWT (CDS Hooks 2.0 security); every way a
token can be wrong is a 401 that does not say why, with the reason in the server log only."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import logging
import time

import jwt
import pytest
from cryptography.hazmat.primitives import serialization
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from cds_service.config import ClientConfig
from tests.requests_for_tests import baseline_request
from tests.security.ehr import (
    EHR_ISS,
    PUBLIC_BASE_URL,
    EhrKey,
    bearer,
    claims_for,
    jwt_settings,
    write_jwks,
)

DISCOVERY = "/cds-services"
ORDER_SIGN = "/cds-services/order-sign"
FEEDBACK = "/cds-services/order-sign/feedback"


def url(path: str) -> str:
    return PUBLIC_BASE_URL + path


def b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def unsigned_parts(header: dict, claims: dict) -> str:
    return b64url(json.dumps(header).encode()) + "." + b64url(json.dumps(claims).encode())


def assert_generic_401(response) -> None:
    assert response.status_code == 401
    assert response.headers["WWW-Authenticate"].startswith("Bearer ")
    assert response.get_json() == {
        "resourceType": "OperationOutcome",
        "issue": [{"severity": "error", "code": "login", "diagnostics": "Authentication failed."}],
    }


def rejection_reasons(caplog) -> list[str]:
    return [r.fields["reason"] for r in caplog.records if r.name == "cds_service.protocol.jwt_auth" and hasattr(r, "fields")]


# --- accepted -------------------------------------------------------------------------------


def test_valid_token_on_discovery(jwt_client, ehr_key):
    response = jwt_client.get(DISCOVERY, headers=bearer(ehr_key.sign(claims_for(url(DISCOVERY)))))
    assert response.status_code == 200
    assert {s["id"] for s in response.get_json()["services"]} >= {"order-sign", "patient-view"}


def test_valid_token_on_hook_call(jwt_client, ehr_key):
    token = ehr_key.sign(claims_for(url(ORDER_SIGN)))
    response = jwt_client.post(ORDER_SIGN, json=baseline_request(), headers=bearer(token))
    assert response.status_code == 200, response.get_json()
    assert "cards" in response.get_json()


def test_valid_token_on_feedback_reaches_the_feedback_handler(jwt_client, ehr_key):
    body = {"feedback": [{"card": "7b8a1e50-0e51-4bd9-9c5e-1a8f2b2d7c11", "outcome": "overridden",
                          "outcomeTimestamp": "2026-11-25T15:01:00Z"}]}
    without = jwt_client.post(FEEDBACK, json=body)
    assert_generic_401(without)
    response = jwt_client.post(FEEDBACK, json=body, headers=bearer(ehr_key.sign(claims_for(url(FEEDBACK)))))
    # Authenticated: the feedback handler answers about the body (a card this service never issued).
    assert response.status_code != 401
    assert response.status_code in (200, 400, 404), response.get_json()


def test_unknown_claims_as_epic_sends_them_are_accepted(jwt_client, ehr_key):
    claims = claims_for(url(DISCOVERY), **{"epic.eci": "E1234", "client_id": "abc", "sub": "x"})
    assert jwt_client.get(DISCOVERY, headers=bearer(ehr_key.sign(claims))).status_code == 200


def test_aud_as_an_array_holding_the_url_is_accepted(jwt_client, ehr_key):
    claims = claims_for([url(DISCOVERY), "https://other.example.org/cds-services"])
    assert jwt_client.get(DISCOVERY, headers=bearer(ehr_key.sign(claims))).status_code == 200


def test_small_clock_skew_is_tolerated(jwt_client, ehr_key):
    now = int(time.time())
    ahead = claims_for(url(DISCOVERY), iat=now + 20, nbf=now + 20)  # the EHR's clock is 20 s ahead
    behind = claims_for(url(DISCOVERY), exp=now - 20)  # just expired by our clock
    assert jwt_client.get(DISCOVERY, headers=bearer(ehr_key.sign(ahead))).status_code == 200
    assert jwt_client.get(DISCOVERY, headers=bearer(ehr_key.sign(behind))).status_code == 200


@pytest.mark.parametrize("alg", ["RS384", "RS256", "PS256", "ES256", "ES512"])
def test_other_asymmetric_algorithms_are_accepted(make_app, tmp_path, alg):
    key = EhrKey(alg)
    client = make_app(jwt_settings(write_jwks(tmp_path / "jwks.json", key))).test_client()
    assert client.get(DISCOVERY, headers=bearer(key.sign(claims_for(url(DISCOVERY))))).status_code == 200


def test_cors_preflight_needs_no_token(jwt_client):
    response = jwt_client.options(
        ORDER_SIGN,
        headers={"Origin": "https://sandbox.cds-hooks.org", "Access-Control-Request-Method": "POST",
                 "Access-Control-Request-Headers": "authorization, content-type"},
    )
    assert response.status_code == 200
    assert response.headers["Access-Control-Allow-Origin"] in ("*", "https://sandbox.cds-hooks.org")
    assert "authorization" in response.headers["Access-Control-Allow-Headers"].lower()


def test_openapi_description_is_public(jwt_client):
    assert jwt_client.get("/openapi.json").status_code == 200


# --- rejected ---------------------------------------------------------------------------------


def test_missing_header(jwt_client, caplog):
    caplog.set_level(logging.WARNING)
    assert_generic_401(jwt_client.get(DISCOVERY))
    assert rejection_reasons(caplog) == ["no Authorization header"]


@pytest.mark.parametrize(
    "authorization",
    ["Bearer", "Bearer not-a-jwt", "Bearer a.b.c", "Bearer eyJhbGciOiJFUzM4NCJ9..", "Basic dXNlcjpwYXNz", "Bearer " + "A" * 20000],
    ids=["empty", "not-a-jwt", "garbage-segments", "empty-payload", "basic-auth", "huge"],
)
def test_malformed_token(jwt_client, authorization):
    assert_generic_401(jwt_client.get(DISCOVERY, headers={"Authorization": authorization}))


def test_alg_none(jwt_client, ehr_key, caplog):
    caplog.set_level(logging.WARNING)
    token = unsigned_parts({"alg": "none", "typ": "JWT", "kid": ehr_key.kid}, claims_for(url(DISCOVERY))) + "."
    assert_generic_401(jwt_client.get(DISCOVERY, headers=bearer(token)))
    assert rejection_reasons(caplog) == ["algorithm 'none' is not accepted"]


@pytest.mark.parametrize("secret_form", ["pem", "jwk-json"])
def test_hs256_signed_with_the_public_key_as_secret(jwt_client, ehr_key, secret_form):
    if secret_form == "pem":
        secret = ehr_key.private_key.public_key().public_bytes(
            serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
        )
    else:
        secret = json.dumps(ehr_key.public_jwk).encode()
    signing_input = unsigned_parts({"alg": "HS256", "typ": "JWT", "kid": ehr_key.kid}, claims_for(url(DISCOVERY)))
    signature = hmac.new(secret, signing_input.encode(), hashlib.sha256).digest()
    assert_generic_401(jwt_client.get(DISCOVERY, headers=bearer(f"{signing_input}.{b64url(signature)}")))


@pytest.mark.parametrize(
    "aud",
    [url("/cds-services/patient-view"), url(DISCOVERY), "https://cds.example.org/cds-services/order-sign",
     url(ORDER_SIGN) + "/", ["https://other.example.org/x"]],
    ids=["other-service", "discovery-url", "other-base", "trailing-slash", "array-without-url"],
)
def test_wrong_aud(jwt_client, ehr_key, aud, caplog):
    caplog.set_level(logging.WARNING)
    response = jwt_client.post(ORDER_SIGN, json=baseline_request(), headers=bearer(ehr_key.sign(claims_for(aud))))
    assert_generic_401(response)
    assert rejection_reasons(caplog) == ["aud is not the URL called"]


def test_expired(jwt_client, ehr_key, caplog):
    caplog.set_level(logging.WARNING)
    now = int(time.time())
    claims = claims_for(url(DISCOVERY), iat=now - 600, nbf=now - 600, exp=now - 300)
    assert_generic_401(jwt_client.get(DISCOVERY, headers=bearer(ehr_key.sign(claims))))
    assert rejection_reasons(caplog) == ["token expired"]


def test_future_iat(jwt_client, ehr_key, caplog):
    caplog.set_level(logging.WARNING)
    now = int(time.time())
    claims = claims_for(url(DISCOVERY), iat=now + 600, exp=now + 900)
    del claims["nbf"]
    assert_generic_401(jwt_client.get(DISCOVERY, headers=bearer(ehr_key.sign(claims))))
    assert rejection_reasons(caplog) == ["iat or nbf is in the future"]


def test_unknown_iss(jwt_client, ehr_key, caplog):
    caplog.set_level(logging.WARNING)
    claims = claims_for(url(DISCOVERY), iss="https://evil.example.org")
    assert_generic_401(jwt_client.get(DISCOVERY, headers=bearer(ehr_key.sign(claims))))
    assert rejection_reasons(caplog) == ["iss is not a configured client"]


def test_unknown_kid(jwt_client, caplog):
    caplog.set_level(logging.WARNING)
    stranger = EhrKey("ES384")  # a valid key, but not one the EHR registered
    assert_generic_401(jwt_client.get(DISCOVERY, headers=bearer(stranger.sign(claims_for(url(DISCOVERY))))))
    assert rejection_reasons(caplog) == ["kid is not in the client's key set"]


def test_registered_kid_with_another_key(jwt_client, ehr_key, caplog):
    caplog.set_level(logging.WARNING)
    impostor = EhrKey("ES384", kid=ehr_key.kid)
    assert_generic_401(jwt_client.get(DISCOVERY, headers=bearer(impostor.sign(claims_for(url(DISCOVERY))))))
    assert rejection_reasons(caplog) == ["signature does not verify"]


def test_alg_that_does_not_fit_the_key(jwt_client, ehr_key):
    # The registered key is P-384; a token claiming ES256 with the same kid must not be tried with it.
    other = EhrKey("ES256", kid=ehr_key.kid)
    assert_generic_401(jwt_client.get(DISCOVERY, headers=bearer(other.sign(claims_for(url(DISCOVERY))))))


def test_tampered_claims(jwt_client, ehr_key):
    header, _payload, signature = ehr_key.sign(claims_for(url(DISCOVERY))).split(".")
    forged = b64url(json.dumps(claims_for(url(DISCOVERY), iss=EHR_ISS, sub="admin")).encode())
    assert_generic_401(jwt_client.get(DISCOVERY, headers=bearer(f"{header}.{forged}.{signature}")))


@pytest.mark.parametrize("claim", ["jti", "exp", "iat", "aud", "iss"])
def test_required_claim_missing(jwt_client, ehr_key, claim):
    claims = claims_for(url(DISCOVERY))
    del claims[claim]
    assert_generic_401(jwt_client.get(DISCOVERY, headers=bearer(ehr_key.sign(claims))))


def test_no_kid(jwt_client, ehr_key):
    token = jwt.encode(claims_for(url(DISCOVERY)), ehr_key.private_key, algorithm="ES384", headers={"typ": "JWT"})
    assert_generic_401(jwt_client.get(DISCOVERY, headers=bearer(token)))


def test_replayed_jti(jwt_client, ehr_key, caplog):
    caplog.set_level(logging.WARNING)
    token = ehr_key.sign(claims_for(url(ORDER_SIGN)))
    first = jwt_client.post(ORDER_SIGN, json=baseline_request(), headers=bearer(token))
    assert first.status_code == 200
    assert_generic_401(jwt_client.post(ORDER_SIGN, json=baseline_request(), headers=bearer(token)))
    assert rejection_reasons(caplog) == ["jti already used (replay)"]


def test_replayed_jti_in_a_new_token(jwt_client, ehr_key):
    # Same jti, freshly signed: still a replay (the jti, not the token string, is what is remembered).
    claims = claims_for(url(DISCOVERY))
    assert jwt_client.get(DISCOVERY, headers=bearer(ehr_key.sign(claims))).status_code == 200
    claims["iat"] += 1
    assert_generic_401(jwt_client.get(DISCOVERY, headers=bearer(ehr_key.sign(claims))))


def test_replay_is_refused_by_another_app_sharing_the_store(make_app, jwks_path, ehr_key):
    # Two apps = two instances behind a load balancer, one store.
    settings = jwt_settings(jwks_path)
    first, second = make_app(settings).test_client(), make_app(settings).test_client()
    token = ehr_key.sign(claims_for(url(DISCOVERY)))
    assert first.get(DISCOVERY, headers=bearer(token)).status_code == 200
    assert_generic_401(second.get(DISCOVERY, headers=bearer(token)))


def test_unknown_path_under_cds_services_is_not_revealed_without_a_token(jwt_client):
    assert_generic_401(jwt_client.post("/cds-services/no-such-service", json={}))


@pytest.mark.parametrize("token_tenant, expected", [("hospital-a", 200), ("hospital-b", 401), (None, 401)])
def test_tenant(make_app, jwks_path, ehr_key, token_tenant, expected):
    client = make_app(jwt_settings(jwks_path, tenant="hospital-a")).test_client()
    extra = {"tenant": token_tenant} if token_tenant else {}
    response = client.get(DISCOVERY, headers=bearer(ehr_key.sign(claims_for(url(DISCOVERY), **extra))))
    assert response.status_code == expected


def test_same_iss_two_tenants_each_with_its_own_fhir_servers(make_app, tmp_path, ehr_key):
    jwks_path = write_jwks(tmp_path / "jwks.json", ehr_key)
    other = ClientConfig(iss=EHR_ISS, jwks_file=jwks_path, fhir_servers=("https://b.example.org/fhir",), tenant="hospital-b")
    settings = jwt_settings(jwks_path, tenant="hospital-a", extra_clients=(other,))
    app = make_app(settings)
    verifier = app.extensions["denosumab_cds_jwt"]
    caller_b = verifier.verify(
        f"Bearer {ehr_key.sign(claims_for(url(DISCOVERY), tenant='hospital-b'))}", url(DISCOVERY)
    )
    assert caller_b.fhir_servers == ("https://b.example.org/fhir",)


def test_every_rejection_looks_the_same_to_the_caller(jwt_client, ehr_key):
    tokens = [
        None,
        "Bearer x",
        f"Bearer {ehr_key.sign(claims_for(url(DISCOVERY), iss='https://evil.example.org'))}",
        f"Bearer {EhrKey().sign(claims_for(url(DISCOVERY)))}",
        f"Bearer {ehr_key.sign(claims_for(url(ORDER_SIGN)))}",
    ]
    responses = [jwt_client.get(DISCOVERY, headers={"Authorization": t} if t else {}) for t in tokens]
    assert len({(r.status_code, r.get_data(), r.headers["WWW-Authenticate"]) for r in responses}) == 1


def test_rejection_log_has_the_reason_and_never_the_token(jwt_client, ehr_key, caplog):
    caplog.set_level(logging.DEBUG)
    token = ehr_key.sign(claims_for(url(ORDER_SIGN)))  # valid, but sent to discovery
    jwt_client.get(DISCOVERY, headers=bearer(token))
    warnings = [r for r in caplog.records if r.levelno == logging.WARNING and r.name.endswith("jwt_auth")]
    assert [w.fields["reason"] for w in warnings] == ["aud is not the URL called"]
    assert warnings[0].fields["iss"] == EHR_ISS
    for record in caplog.records:
        text = record.getMessage() + json.dumps(getattr(record, "fields", {}), default=str)
        assert token not in text and token.split(".")[2] not in text


_JSON_VALUES = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=30),
    lambda children: st.lists(children, max_size=3) | st.dictionaries(st.text(max_size=6), children, max_size=3),
    max_leaves=6,
)


@settings(max_examples=200, deadline=None, derandomize=True, database=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    header_changes=st.dictionaries(st.sampled_from(["alg", "kid", "jku", "typ", "crit", "b64", "x5u", "jwk"]), _JSON_VALUES, max_size=3),
    claim_changes=st.dictionaries(st.sampled_from(["iss", "aud", "exp", "iat", "nbf", "jti", "tenant", "sub"]), _JSON_VALUES, max_size=3),
)
def test_forged_headers_and_claims_are_always_a_plain_401(jwt_client, ehr_key, header_changes, claim_changes):
    # Unsigned (garbage signature) tokens with any header and claim values: never a 500.
    header = {"alg": "ES384", "typ": "JWT", "kid": ehr_key.kid, **header_changes}
    claims = {**claims_for(url(DISCOVERY)), **claim_changes}
    token = f"{unsigned_parts(header, claims)}.{b64url(b'not-a-signature')}"
    assert_generic_401(jwt_client.get(DISCOVERY, headers=bearer(token)))
