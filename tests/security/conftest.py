"""Fixtures for the security tests: an EHR with its own ES384 key, and the app configured for it."""

from __future__ import annotations

import pytest

from tests.security.ehr import EhrKey, jwt_settings, write_jwks


@pytest.fixture(scope="session")
def ehr_key() -> EhrKey:
    return EhrKey("ES384")


@pytest.fixture
def jwks_path(tmp_path, ehr_key):
    return write_jwks(tmp_path / "ehr-jwks.json", ehr_key)


@pytest.fixture
def jwt_app(make_app, jwks_path):
    return make_app(jwt_settings(jwks_path))


@pytest.fixture
def jwt_client(jwt_app):
    return jwt_app.test_client()
