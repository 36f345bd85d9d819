"""Schemathesis against the OpenAPI description, in process (WSGI, no network): the documented
examples, then generated and mutated requests for every operation, each signed with a fresh JWT
as the EHR would sign it; every answer is checked by schemathesis (no 5xx, a documented status,
content type, headers and body schema; schema-invalid requests rejected; 405 with Allow)."""

from __future__ import annotations

from datetime import datetime, timezone

import pytest
import schemathesis
from hypothesis import HealthCheck, settings

from cds_service.app import create_app
from tests.security.ehr import PUBLIC_BASE_URL, EhrKey, bearer, claims_for, jwt_settings, write_jwks

EHR = EhrKey("ES384")
AS_OF = datetime(2026, 11, 25, 15, tzinfo=timezone.utc)


@pytest.fixture(scope="module")
def api_schema(tmp_path_factory):
    folder = tmp_path_factory.mktemp("schemathesis")
    app = create_app(jwt_settings(write_jwks(folder / "jwks.json", EHR)), clock=lambda: AS_OF)
    return schemathesis.openapi.from_wsgi("/openapi.json", app)


schema = schemathesis.pytest.from_fixture("api_schema")


@schema.parametrize()
@settings(max_examples=60, deadline=None, derandomize=True, database=None, suppress_health_check=list(HealthCheck))
def test_api_conforms_to_its_description(case):
    headers = bearer(EHR.sign(claims_for(PUBLIC_BASE_URL + case.formatted_path)))
    # Not checked: "schema-valid data is accepted". What makes a hook request acceptable goes beyond
    # what a schema can say (the hook must be the service's, its context depends on the hook, a
    # fhirServer must be registered for the caller, prefetch must be complete or fetchable), so
    # well-formed but inconsistent requests are rightly 400 or 412. Every other check applies.
    case.call_and_validate(headers=headers, excluded_checks=[schemathesis.checks.positive_data_acceptance])
