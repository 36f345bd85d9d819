"""A test acting as the EHR: its own signing keys, its JWKS, and the JWTs it sends."""

from __future__ import annotations

import json
import time
import uuid
from pathlib import Path

import jwt
from cryptography.hazmat.primitives.asymmetric import ec, rsa

from cds_service.config import ClientConfig, Settings

EHR_ISS = "https://ehr.example.org/cds-client"
PUBLIC_BASE_URL = "https://cds.example.org/denosumab"
FHIR_BASE = "https://ehr.example.org/fhir/r4"

_CURVES = {"ES256": ec.SECP256R1, "ES384": ec.SECP384R1, "ES512": ec.SECP521R1}


class EhrKey:
    """One signing key of the EHR, with the public JWK it publishes."""

    def __init__(self, alg: str = "ES384", kid: str | None = None):
        self.alg = alg
        self.kid = kid or str(uuid.uuid4())
        if alg.startswith("ES"):
            self.private_key = ec.generate_private_key(_CURVES[alg]())
            algorithm = jwt.algorithms.ECAlgorithm
        else:
            self.private_key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
            algorithm = jwt.algorithms.RSAAlgorithm
        self.public_jwk = algorithm.to_jwk(self.private_key.public_key(), as_dict=True) | {
            "kid": self.kid, "use": "sig", "alg": alg,
        }

    def sign(self, claims: dict, **header) -> str:
        return jwt.encode(claims, self.private_key, algorithm=self.alg, headers={"kid": self.kid, "typ": "JWT", **header})


def jwks(*keys: EhrKey) -> dict:
    return {"keys": [key.public_jwk for key in keys]}


def write_jwks(path: Path, *keys: EhrKey) -> Path:
    path.write_text(json.dumps(jwks(*keys)), encoding="utf-8")
    return path


def claims_for(audience: str | list[str], *, iss: str = EHR_ISS, lifetime: int = 300, **extra) -> dict:
    """The claims an EHR sends (Epic-like: also sub and nbf), for one call to `audience`."""
    now = int(time.time())
    claims = {
        "iss": iss,
        "sub": "client-id-8a7b",
        "aud": audience,
        "exp": now + lifetime,
        "iat": now,
        "nbf": now,
        "jti": str(uuid.uuid4()),
    }
    claims.update(extra)
    return claims


def bearer(token: str) -> dict:
    return {"Authorization": f"Bearer {token}"}


def jwt_settings(
    jwks_path: Path,
    *,
    fhir_servers: tuple[str, ...] = (FHIR_BASE,),
    tenant: str | None = None,
    extra_clients: tuple[ClientConfig, ...] = (),
    store_url: str | None = None,
) -> Settings:
    """Production-like settings: JWT required, one EHR registered with its JWKS file; the store
    (JWT replay cache) beside the JWKS file unless given."""
    client = ClientConfig(iss=EHR_ISS, jwks_file=jwks_path, fhir_servers=fhir_servers, tenant=tenant)
    return Settings(
        trial_mode=False,
        public_base_url=PUBLIC_BASE_URL,
        require_jwt=True,
        clients=(client, *extra_clients),
        store_url=store_url or f"sqlite:///{jwks_path.parent / 'store.sqlite3'}",
    )
