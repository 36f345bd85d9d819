"""Where the EHR's keys come from: a pinned JWKS file, or its JWKS URL fetched and cached. A
token's `jku` header never decides where keys are fetched from."""

from __future__ import annotations

import json

import pytest
import responses

from cds_service.config import ClientConfig, ConfigError, Settings
from cds_service.errors import CdsError
from cds_service.protocol.jwt_auth import JwtVerifier, parse_jwks
from tests.conftest import FIXTURES
from tests.security.ehr import EHR_ISS, PUBLIC_BASE_URL, EhrKey, claims_for, jwks, write_jwks

JWKS_URL = "https://ehr.example.org/.well-known/jwks.json"
ATTACKER_JWKS = "https://attacker.example.net/jwks.json"
AUDIENCE = PUBLIC_BASE_URL + "/cds-services"


class FakeClock:
    def __init__(self):
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture(autouse=True)
def store_in_tmp(tmp_path, monkeypatch):
    monkeypatch.setenv("DENOSUMAB_CDS_STORE_URL", f"sqlite:///{tmp_path / 'store.sqlite3'}")
    monkeypatch.chdir(tmp_path)  # whatever the store default, it lands here


def url_settings(jwks_url: str = JWKS_URL) -> Settings:
    client = ClientConfig(iss=EHR_ISS, jwks_url=jwks_url, fhir_servers=("https://ehr.example.org/fhir/r4",))
    return Settings(trial_mode=False, public_base_url=PUBLIC_BASE_URL, require_jwt=True, clients=(client,))


def accepted(verifier: JwtVerifier, token: str) -> bool:
    try:
        verifier.verify(f"Bearer {token}", AUDIENCE)
    except CdsError as error:
        assert error.status == 401
        return False
    return True


@responses.activate
def test_jwks_url_is_fetched_once_and_cached():
    key = EhrKey()
    jwks_call = responses.get(JWKS_URL, json=jwks(key))
    verifier = JwtVerifier(url_settings())
    assert all(accepted(verifier, key.sign(claims_for(AUDIENCE))) for _ in range(5))
    assert jwks_call.call_count == 1


@responses.activate
def test_unknown_kid_refetches_the_key_set_once_then_waits():
    old, new = EhrKey(), EhrKey()
    clock = FakeClock()
    jwks_call = responses.get(JWKS_URL, json=jwks(old))
    verifier = JwtVerifier(url_settings(), monotonic=clock)
    assert accepted(verifier, old.sign(claims_for(AUDIENCE)))

    # The EHR rotates its key a minute later: one refetch finds the new kid.
    clock.now += 60
    responses.replace(responses.GET, JWKS_URL, json=jwks(old, new))
    assert accepted(verifier, new.sign(claims_for(AUDIENCE)))
    assert jwks_call.call_count == 1 and len(responses.calls) == 2

    # Tokens with made-up kids cannot make us hammer the EHR's JWKS endpoint.
    for _ in range(20):
        assert not accepted(verifier, EhrKey().sign(claims_for(AUDIENCE)))
    assert len(responses.calls) == 2
    clock.now += 31  # after the cool-down one more look is allowed
    assert not accepted(verifier, EhrKey().sign(claims_for(AUDIENCE)))
    assert len(responses.calls) == 3


@responses.activate
def test_cached_key_set_is_refreshed_after_an_hour():
    key = EhrKey()
    clock = FakeClock()
    responses.get(JWKS_URL, json=jwks(key))
    verifier = JwtVerifier(url_settings(), monotonic=clock)
    assert accepted(verifier, key.sign(claims_for(AUDIENCE)))
    clock.now += 3601
    responses.replace(responses.GET, JWKS_URL, json={"keys": []})  # the EHR withdrew the key
    assert not accepted(verifier, key.sign(claims_for(AUDIENCE)))


@responses.activate
def test_jku_equal_to_the_configured_url_is_honoured():
    key = EhrKey()
    responses.get(JWKS_URL, json=jwks(key))
    verifier = JwtVerifier(url_settings())
    assert accepted(verifier, key.sign(claims_for(AUDIENCE), jku=JWKS_URL))


@responses.activate
def test_jku_not_allow_listed_is_refused_and_never_fetched():
    attacker = EhrKey()
    attacker_jwks = responses.get(ATTACKER_JWKS, json=jwks(attacker))
    responses.get(JWKS_URL, json=jwks(EhrKey()))
    verifier = JwtVerifier(url_settings())
    assert not accepted(verifier, attacker.sign(claims_for(AUDIENCE), jku=ATTACKER_JWKS))
    assert attacker_jwks.call_count == 0


@responses.activate
def test_jku_is_never_fetched_for_a_client_with_a_pinned_key_file(tmp_path):
    attacker, ehr = EhrKey(), EhrKey()
    attacker_jwks = responses.get(ATTACKER_JWKS, json=jwks(attacker))
    client = ClientConfig(iss=EHR_ISS, jwks_file=write_jwks(tmp_path / "jwks.json", ehr))
    verifier = JwtVerifier(Settings(trial_mode=False, public_base_url=PUBLIC_BASE_URL, require_jwt=True, clients=(client,)))
    assert not accepted(verifier, attacker.sign(claims_for(AUDIENCE), jku=ATTACKER_JWKS))
    assert attacker_jwks.call_count == 0
    # The real EHR's token with a jku of its own (as the CDS Hooks sandbox sends) verifies with the pinned keys.
    assert accepted(verifier, ehr.sign(claims_for(AUDIENCE), jku="https://ehr.example.org/jwks"))


@responses.activate
def test_jwks_redirect_is_not_followed():
    key = EhrKey()
    responses.get(JWKS_URL, status=302, headers={"Location": ATTACKER_JWKS})
    elsewhere = responses.get(ATTACKER_JWKS, json=jwks(key))
    verifier = JwtVerifier(url_settings())
    assert not accepted(verifier, key.sign(claims_for(AUDIENCE)))
    assert elsewhere.call_count == 0


@responses.activate
def test_jwks_endpoint_down_then_back():
    key = EhrKey()
    clock = FakeClock()
    responses.get(JWKS_URL, status=503)
    verifier = JwtVerifier(url_settings(), monotonic=clock)
    assert not accepted(verifier, key.sign(claims_for(AUDIENCE)))
    clock.now += 31
    responses.replace(responses.GET, JWKS_URL, json=jwks(key))
    assert accepted(verifier, key.sign(claims_for(AUDIENCE)))


@responses.activate
def test_symmetric_and_private_members_of_a_jwks_are_not_used():
    key = EhrKey()
    hs_key = {"kty": "oct", "kid": "shared", "k": "c2VjcmV0", "alg": "HS256"}
    responses.get(JWKS_URL, json={"keys": [hs_key, key.public_jwk]})
    verifier = JwtVerifier(url_settings())
    assert accepted(verifier, key.sign(claims_for(AUDIENCE)))
    assert "shared" not in verifier.keys[0][1].keys


def test_plain_http_jwks_url_is_refused_outside_loopback():
    with pytest.raises(ConfigError, match="https"):
        JwtVerifier(url_settings("http://ehr.example.org/jwks.json"))
    JwtVerifier(url_settings("http://127.0.0.1:9999/jwks.json"))  # a test EHR on this machine


def test_unreadable_jwks_file_fails_at_start_up(tmp_path):
    client = ClientConfig(iss=EHR_ISS, jwks_file=tmp_path / "missing.json")
    with pytest.raises(ConfigError, match="jwks_file"):
        JwtVerifier(Settings(trial_mode=False, public_base_url=PUBLIC_BASE_URL, require_jwt=True, clients=(client,)))


def test_cds_hooks_sandbox_key_set_is_usable():
    path = FIXTURES / "keys" / "cds-hooks-sandbox-jwks.json"
    keys = parse_jwks(json.loads(path.read_text(encoding="utf-8")))
    assert keys["44823f3d-0b01-4a6c-a80e-b9d3e8a7226f"]["crv"] == "P-384"
