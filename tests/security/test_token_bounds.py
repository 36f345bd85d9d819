"""Tokens and keys a hostile caller controls (issue 16, cases 4, 8, 12): time claims that are not
sane numbers, over-long lifetimes, a dripping JWKS endpoint, and the replay check with the store down."""

from __future__ import annotations

import logging
import time

import pytest
from sqlalchemy.exc import OperationalError

from cds_service.config import ClientConfig, Settings
from cds_service.errors import CdsError
from cds_service.protocol.jwt_auth import JWKS_FETCH_SECONDS, JWKS_WAIT_SECONDS, JwtVerifier
from tests.hostile_fhir_server import HostileFhirServer
from tests.requests_for_tests import baseline_request
from tests.security.ehr import EHR_ISS, PUBLIC_BASE_URL, EhrKey, bearer, claims_for, jwks

DISCOVERY = PUBLIC_BASE_URL + "/cds-services"
ORDER_SIGN = "/cds-services/order-sign"


def rejection_reason(caplog) -> str:
    reasons = [getattr(r, "fields", {}).get("reason") for r in caplog.records if r.getMessage() == "JWT rejected"]
    assert reasons, "no rejection was logged"
    return reasons[-1]


@pytest.mark.parametrize(
    "claim, value",
    [
        ("exp", 2**63),  # overflowed the store's BIGINT: 500 on SQLite, 503 on PostgreSQL
        ("exp", 2**64 + 5),
        ("exp", "4102444000"),  # a numeric string, which PyJWT takes
        ("exp", float("inf")),
        ("exp", True),
        ("iat", -1),
        ("iat", "now"),
        ("nbf", 1e300),
        ("nbf", [1]),
    ],
)
def test_time_claims_must_be_numbers_in_a_sane_range(jwt_client, ehr_key, caplog, claim, value):
    token = ehr_key.sign(claims_for(DISCOVERY) | {claim: value})
    response = jwt_client.get("/cds-services", headers=bearer(token))
    assert response.status_code == 401
    assert response.get_json()["resourceType"] == "OperationOutcome"
    assert rejection_reason(caplog) == f"claim {claim!r} is not a number of seconds between 2000 and 2100"


def test_a_token_living_longer_than_the_maximum_is_refused_with_its_own_reason(jwt_client, ehr_key, caplog):
    ten_years = ehr_key.sign(claims_for(DISCOVERY, lifetime=10 * 365 * 86400))
    assert jwt_client.get("/cds-services", headers=bearer(ten_years)).status_code == 401
    assert rejection_reason(caplog) == "token lifetime (exp - iat) is over 300 s"
    five_minutes = ehr_key.sign(claims_for(DISCOVERY, lifetime=300))
    assert jwt_client.get("/cds-services", headers=bearer(five_minutes)).status_code == 200


def test_the_maximum_lifetime_is_configurable(make_app, jwks_path, ehr_key):
    from tests.security.ehr import jwt_settings

    client = make_app(jwt_settings(jwks_path).with_overrides(max_token_lifetime_seconds=3600)).test_client()
    assert client.get("/cds-services", headers=bearer(ehr_key.sign(claims_for(DISCOVERY, lifetime=3000)))).status_code == 200
    assert client.get("/cds-services", headers=bearer(ehr_key.sign(claims_for(DISCOVERY, lifetime=4000)))).status_code == 401


class FakeClock:
    def __init__(self):
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def _verifier_for(jwks_url: str, clock) -> JwtVerifier:
    client = ClientConfig(iss=EHR_ISS, jwks_url=jwks_url)
    settings = Settings(trial_mode=False, public_base_url=PUBLIC_BASE_URL, require_jwt=True, clients=(client,))
    return JwtVerifier(settings, monotonic=clock)


def _timed_verify(verifier: JwtVerifier, token: str) -> tuple[bool, float]:
    started = time.monotonic()
    try:
        verifier.verify(f"Bearer {token}", DISCOVERY)
        accepted = True
    except CdsError as error:
        assert error.status == 401
        accepted = False
    return accepted, time.monotonic() - started


def test_a_dripping_jwks_url_holds_no_request_long_and_is_fetched_once_per_interval():
    key = EhrKey()
    clock = FakeClock()
    with HostileFhirServer(max_drip_seconds=8.0) as server:
        server.jwks = jwks(key)
        verifier = _verifier_for(f"{server.base}/jwks/", clock)
        assert _timed_verify(verifier, key.sign(claims_for(DISCOVERY)))[0]
        server.drip_jwks = True
        clock.now += 31  # past the cool-down: a forged token with an unknown kid may cause one refetch
        accepted, elapsed = _timed_verify(verifier, EhrKey().sign(claims_for(DISCOVERY)))
        assert not accepted and elapsed < JWKS_WAIT_SECONDS + 0.5
        # While that fetch drips on, the EHR's real tokens are answered at once.
        accepted, elapsed = _timed_verify(verifier, key.sign(claims_for(DISCOVERY)))
        assert accepted and elapsed < 0.5
        for _ in range(3):  # more forged tokens: no second fetch, a bounded wait each
            accepted, elapsed = _timed_verify(verifier, EhrKey().sign(claims_for(DISCOVERY)))
            assert not accepted and elapsed < JWKS_WAIT_SECONDS + 0.5
        assert server.count("/jwks/") == 2


def test_a_dripping_jwks_url_on_first_use_costs_a_bounded_wait():
    with HostileFhirServer(max_drip_seconds=8.0) as server:
        server.jwks = jwks(EhrKey())
        server.drip_jwks = True
        verifier = _verifier_for(f"{server.base}/jwks/", time.monotonic)
        accepted, elapsed = _timed_verify(verifier, EhrKey().sign(claims_for(DISCOVERY)))
        assert not accepted and elapsed < JWKS_FETCH_SECONDS + 1.0


def test_with_the_store_down_a_signed_hook_call_still_gets_its_cards(jwt_app, ehr_key, caplog):
    def store_down(*_args):
        raise OperationalError("INSERT", {}, Exception("unable to open database file"))

    jwt_app.extensions["denosumab_cds_jwt"].replay_guard.first_use = store_down
    client = jwt_app.test_client()
    request = baseline_request()
    request["prefetch"]["labResults"] = {"resourceType": "Bundle", "type": "searchset", "entry": []}  # no calcium: a card
    token = ehr_key.sign(claims_for(PUBLIC_BASE_URL + ORDER_SIGN))
    with caplog.at_level(logging.WARNING):
        response = client.post(ORDER_SIGN, json=request, headers=bearer(token))
    assert response.status_code == 200
    assert response.get_json()["cards"]
    assert any("replay protection degraded" in r.getMessage() for r in caplog.records)
    # The same token again, to this worker: still a replay.
    again = client.post(ORDER_SIGN, json=baseline_request(), headers=bearer(token))
    assert again.status_code == 401
    assert rejection_reason(caplog) == "jti already used (replay)"


def test_a_token_accepted_before_the_store_went_down_is_still_refused_after(jwt_app, ehr_key):
    client = jwt_app.test_client()
    token = ehr_key.sign(claims_for(DISCOVERY))
    assert client.get("/cds-services", headers=bearer(token)).status_code == 200

    def store_down(*_args):
        raise OperationalError("INSERT", {}, Exception("unable to open database file"))

    jwt_app.extensions["denosumab_cds_jwt"].replay_guard.first_use = store_down
    assert client.get("/cds-services", headers=bearer(token)).status_code == 401
    assert client.get("/cds-services", headers=bearer(ehr_key.sign(claims_for(DISCOVERY)))).status_code == 200
