"""Who is calling: the EHR's identity and the FHIR servers it may send us to.

With `auth.require_jwt = false` (trial mode, local tests) every caller is anonymous and may use
the `[fhir] allowed_servers`. With JWT required, the bearer token is verified by `jwt_verifier`."""

from __future__ import annotations

from dataclasses import dataclass

from cds_service.config import Settings


@dataclass(frozen=True)
class Caller:
    iss: str | None  # None when JWT is off
    fhir_servers: tuple[str, ...]  # FHIR bases this caller may send as fhirServer
    tenant: str | None = None  # the EHR's tenant: its signed token's `tenant` claim, else the registered client's


def anonymous_caller(settings: Settings) -> Caller:
    return Caller(iss=None, fhir_servers=settings.allowed_fhir_servers)
