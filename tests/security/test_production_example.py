"""examples/production.toml, the configuration README tells an EHR team to start from, stays valid."""

from __future__ import annotations

from cds_service.config import load_settings
from cds_service.protocol.jwt_auth import JwtVerifier
from tests.conftest import ROOT

EXAMPLE = ROOT / "examples" / "production.toml"
SANDBOX_KID = "44823f3d-0b01-4a6c-a80e-b9d3e8a7226f"


def test_the_example_configuration_loads_and_its_keys_are_usable(tmp_path):
    settings = load_settings(EXAMPLE)
    assert settings.require_jwt and not settings.trial_mode
    assert settings.public_base_url == "https://cds.hospital.example/denosumab"
    ehr, sandbox = settings.clients
    assert ehr.jwks_url.startswith("https://") and ehr.fhir_servers == ("https://ehr.hospital.example/fhir/r4",)
    assert sandbox.iss == "https://sandbox.cds-hooks.org" and sandbox.fhir_servers == ()
    # The store of the example is a hospital's PostgreSQL; the keys are checked with a local one.
    verifier = JwtVerifier(settings.with_overrides(store_url=f"sqlite:///{tmp_path / 'store.sqlite3'}"))
    sandbox_keys = verifier.keys[1][1]
    assert sandbox_keys.key_for(SANDBOX_KID)["alg"] == "ES384"
