"""Verification of the JWT an EHR sends with every call (CDS Hooks 2.0 security), with PyJWT.

What is checked, for a token to name a `Caller`:
- `Authorization: Bearer <JWT>`; header `alg` asymmetric (ES*, RS*, PS*), never `none` or HS*;
  `kid` names a key of the issuer's key set;
- `iss` is a configured `[[clients]]` entry; `tenant` equals the entry's, when it names one;
- the signature verifies with that client's key: from its `jwks_file`, or from its `jwks_url`
  (cached, refetched once when a token names an unknown `kid`). A token's `jku` header is
  honoured only when it equals the client's configured `jwks_url`: the token never chooses
  where keys come from;
- `aud` equals the exact URL being called (a string, or an array holding it); `exp` and `iat`
  (and `nbf`, when sent) hold within a small clock skew; other claims (`sub`, ...) are ignored;
- `jti` was never used before, in any worker or instance (`ReplayGuard`, in the shared store).

Any failure is the same generic 401 for the caller; the reason goes to the server log only,
and never the token itself."""

from __future__ import annotations

import ipaddress
import logging
import math
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from urllib.parse import urlsplit

import jwt
import requests
from sqlalchemy.exc import SQLAlchemyError

from cds_service.config import ClientConfig, ConfigError, Settings
from cds_service.errors import CdsError, Issue, unauthorized
from cds_service.json_parse import parse_json
from cds_service.storable import unstorable
from cds_service.ops.metrics import record_jwt_rejected, record_store_error
from cds_service.protocol.auth import Caller
from cds_service.protocol.http_read import ResponseUnreadable, bounded_session, read_json_response
from cds_service.protocol.replay import MAX_ISS_LENGTH, MAX_JTI_LENGTH, RecentTokens, ReplayGuard

logger = logging.getLogger(__name__)

# alg -> (JWK key type, curve): asymmetric algorithms only; a key must fit the token's alg.
ACCEPTED_ALGORITHMS = {
    "ES256": ("EC", "P-256"),
    "ES384": ("EC", "P-384"),
    "ES512": ("EC", "P-521"),
    "RS256": ("RSA", None),
    "RS384": ("RSA", None),
    "RS512": ("RSA", None),
    "PS256": ("RSA", None),
    "PS384": ("RSA", None),
    "PS512": ("RSA", None),
}
REQUIRED_CLAIMS = ("iss", "aud", "exp", "iat", "jti")
CLOCK_SKEW_SECONDS = 60
MAX_TOKEN_CHARS = 16 * 1024
JWKS_MAX_AGE_SECONDS = 3600.0  # a fetched key set is reused this long, then fetched again
JWKS_REFETCH_COOLDOWN_SECONDS = 30.0  # unknown kids cannot make us fetch more often than this
JWKS_FETCH_SECONDS = 3.0  # the whole fetch of a key set (connect, headers, body)
JWKS_WAIT_SECONDS = 1.0  # a request waits at most this long for a refetch; the fetch goes on without it
JWKS_MAX_BYTES = 256 * 1024
REPLAY_STORE_RETRY_AFTER_SECONDS = 5
TIME_CLAIMS = ("exp", "iat", "nbf")
EARLIEST_TIME_CLAIM = 946_684_800  # 2000-01-01T00:00:00Z
LATEST_TIME_CLAIM = 4_102_444_800  # 2100-01-01T00:00:00Z
MAX_LOGGED_CLAIM_CHARS = 256  # a claim written to the log (token aud, tenant) is cut to this
MAX_LOGGED_AUDIENCES = 5
_PRIVATE_JWK_MEMBERS = ("d", "p", "q", "dp", "dq", "qi", "oth", "k")


def _token_audience(authorization: str | None):
    """The `aud` the rejected token names (unverified; for the log, next to the expected one):
    a string or a list of strings, each cut to a bounded length; None when there is none to read."""
    token = (authorization or "").strip().partition(" ")[2].strip()
    if not token or len(token) > MAX_TOKEN_CHARS:
        return None
    try:
        aud = jwt.decode(token, options={"verify_signature": False}).get("aud")
    except jwt.InvalidTokenError:
        return None
    if isinstance(aud, str):
        return aud[:MAX_LOGGED_CLAIM_CHARS]
    if isinstance(aud, list):
        return [a[:MAX_LOGGED_CLAIM_CHARS] for a in aud[:MAX_LOGGED_AUDIENCES] if isinstance(a, str)]
    return None


class TokenRejected(Exception):
    """Why a token was refused: for the server log only."""

    def __init__(self, reason: str, iss: str | None = None):
        super().__init__(reason)
        self.reason = reason
        self.iss = iss


def _public_jwk(entry) -> dict | None:
    """The public part of one JWKS entry usable for signatures, else None."""
    if not isinstance(entry, dict) or entry.get("kty") not in ("EC", "RSA") or not isinstance(entry.get("kid"), str):
        return None
    if entry.get("use", "sig") != "sig":
        return None
    return {k: v for k, v in entry.items() if k not in _PRIVATE_JWK_MEMBERS}


def parse_jwks(document) -> dict[str, dict]:
    """kid -> public JWK for the signing keys of a JWKS document (other entries are ignored)."""
    if not isinstance(document, dict) or not isinstance(document.get("keys"), list):
        raise ValueError("a JWKS is an object with a 'keys' array")
    keys = {}
    for entry in document["keys"]:
        jwk = _public_jwk(entry)
        if jwk is not None:
            keys[jwk["kid"]] = jwk
    return keys


def _is_loopback(url: str) -> bool:
    host = urlsplit(url).hostname or ""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


@dataclass
class ClientKeys:
    """One client's key set: loaded from its file, or fetched from its URL and cached."""

    client: ClientConfig
    session: requests.Session
    monotonic: Callable[[], float]
    refetch_cooldown: float
    keys: dict[str, dict] = field(default_factory=dict)
    loaded_at: float | None = None
    lock: threading.Lock = field(default_factory=threading.Lock)
    refreshing: threading.Event | None = None  # set when the fetch under way ends

    def __post_init__(self):
        if self.client.jwks_file is not None:
            try:
                self._load()
            except (OSError, ValueError) as exc:
                raise ConfigError(f"clients {self.client.iss!r}: cannot read jwks_file {self.client.jwks_file}: {exc}") from exc

    def key_for(self, kid: str) -> dict | None:
        if self.client.jwks_file is not None:
            return self._key_from_file(kid)
        with self.lock:
            now = self.monotonic()
            first = self.loaded_at is None
            due = (
                first
                or now - self.loaded_at >= JWKS_MAX_AGE_SECONDS
                # the EHR may have rotated its keys since we last looked
                or (kid not in self.keys and now - self.loaded_at >= self.refetch_cooldown)
            )
            if due and self.refreshing is None:
                self.refreshing = threading.Event()
                threading.Thread(target=self._refresh, args=(self.refreshing,), name="jwks-fetch", daemon=True).start()
            refreshing = self.refreshing
        if refreshing is not None and (due or kid not in self.keys):
            # The fetch runs off the request path: a request waits for it a bounded time only,
            # then goes on with the keys it has (a dripping JWKS endpoint holds no worker).
            refreshing.wait(JWKS_FETCH_SECONDS + 0.5 if first else JWKS_WAIT_SECONDS)
        return self.keys.get(kid)

    def _key_from_file(self, kid: str) -> dict | None:
        with self.lock:
            if kid not in self.keys and self.monotonic() - self.loaded_at >= self.refetch_cooldown:
                self._reload()
            return self.keys.get(kid)

    def _refresh(self, done: threading.Event) -> None:
        try:
            self._reload()
        finally:
            with self.lock:
                self.refreshing = None
            done.set()

    def _reload(self) -> None:
        try:
            self._load()
        except (OSError, ValueError, requests.RequestException) as exc:
            # Keep the keys we have (an EHR's JWKS endpoint may blip), and try again later.
            logger.warning(
                "key set unavailable",
                extra={"fields": {"iss": self.client.iss, "problem": str(exc)[:120] if isinstance(exc, ResponseUnreadable) else type(exc).__name__}},
            )
            self.loaded_at = self.monotonic()

    def _load(self) -> None:
        if self.client.jwks_file is not None:
            document = parse_json(self.client.jwks_file.read_bytes())
        else:
            document = self._fetch(self.client.jwks_url)
        self.keys = parse_jwks(document)
        self.loaded_at = self.monotonic()

    def _fetch(self, url: str) -> dict:
        return read_json_response(
            self.session, url,
            headers={"Accept": "application/json, application/jwk-set+json"},
            deadline=time.monotonic() + JWKS_FETCH_SECONDS,
            max_bytes=JWKS_MAX_BYTES,
        )


class JwtVerifier:
    """Checks the bearer JWT of a call; one per app, shared by its threads."""

    def __init__(
        self,
        settings: Settings,
        *,
        replay_guard: ReplayGuard | None = None,
        session: requests.Session | None = None,
        monotonic: Callable[[], float] = time.monotonic,
        refetch_cooldown: float = JWKS_REFETCH_COOLDOWN_SECONDS,
    ):
        if not settings.clients:
            raise ConfigError("JWT verification needs at least one [[clients]] entry")
        self.session = session or bounded_session(pool_maxsize=2)
        self.session.trust_env = False  # no proxy or .netrc credentials picked up from the host
        self.max_token_lifetime = settings.max_token_lifetime_seconds
        self.recent_tokens = RecentTokens()  # this worker's own memory, for when the store is down
        for client in settings.clients:
            if client.jwks_url and urlsplit(client.jwks_url).scheme != "https" and not _is_loopback(client.jwks_url):
                raise ConfigError(f"clients {client.iss!r}: jwks_url must be https (plain http only on loopback, for tests)")
        self.keys = [
            (client, ClientKeys(client, self.session, monotonic, refetch_cooldown)) for client in settings.clients
        ]
        self.replay_guard = replay_guard or ReplayGuard.for_store(settings.store_url)

    def verify(self, authorization: str | None, audience: str) -> Caller:
        """The verified caller, or a generic 401 (`CdsError`); the reason is logged, not answered."""
        try:
            return self._verify(authorization, audience)
        except TokenRejected as rejection:
            record_jwt_rejected(rejection.reason)
            fields = {
                "reason": rejection.reason, "iss": rejection.iss,
                "aud": _token_audience(authorization), "expected_aud": audience,  # what the token says, what was called
            }
            logger.warning("JWT rejected", extra={"fields": fields})
            raise unauthorized() from None

    def _verify(self, authorization: str | None, audience: str) -> Caller:
        token = self._bearer_token(authorization)
        try:
            header = jwt.get_unverified_header(token)
            unverified = jwt.decode(token, options={"verify_signature": False})
        except jwt.InvalidTokenError:
            raise TokenRejected("malformed token") from None
        alg = header.get("alg")
        if not isinstance(alg, str) or alg not in ACCEPTED_ALGORITHMS:
            raise TokenRejected(f"algorithm {str(alg)[:20]!r} is not accepted")
        iss = unverified.get("iss")
        iss = iss[:MAX_ISS_LENGTH] if isinstance(iss, str) else None
        client, client_keys = self._client_for(iss, unverified.get("tenant"))
        _check_time_claims(unverified, iss)
        jwk = self._signing_key(header, alg, client, client_keys)
        try:
            claims = jwt.decode(
                token,
                jwt.PyJWK(jwk, algorithm=alg).key,
                algorithms=[alg],
                audience=audience,
                issuer=client.iss,
                leeway=CLOCK_SKEW_SECONDS,
                options={"require": list(REQUIRED_CLAIMS)},
            )
        except jwt.ExpiredSignatureError:
            raise TokenRejected("token expired", iss) from None
        except jwt.ImmatureSignatureError:
            raise TokenRejected("iat or nbf is in the future", iss) from None
        except jwt.InvalidAudienceError:
            raise TokenRejected("aud is not the URL called", iss) from None
        except jwt.MissingRequiredClaimError as exc:
            raise TokenRejected(f"claim {exc.claim!r} missing", iss) from None
        except jwt.InvalidSignatureError:
            raise TokenRejected("signature does not verify", iss) from None
        except (jwt.PyJWTError, ValueError) as exc:  # malformed claims, or a key the library refuses
            raise TokenRejected(f"invalid token ({type(exc).__name__})", iss) from None
        if claims["exp"] - claims["iat"] > self.max_token_lifetime:
            raise TokenRejected(f"token lifetime (exp - iat) is over {self.max_token_lifetime} s", iss)
        jti = claims["jti"]
        if not isinstance(jti, str) or not 0 < len(jti) <= MAX_JTI_LENGTH or unstorable(jti):
            raise TokenRejected("jti is not a string of 1 to 256 characters", iss)
        self._check_first_use(client.iss, jti, claims["exp"])
        tenant = claims.get("tenant")
        tenant = tenant if isinstance(tenant, str) and len(tenant) <= MAX_LOGGED_CLAIM_CHARS else client.tenant
        return Caller(iss=client.iss, fhir_servers=client.fhir_servers, tenant=tenant)

    @staticmethod
    def _bearer_token(authorization: str | None) -> str:
        if not authorization:
            raise TokenRejected("no Authorization header")
        scheme, _, token = authorization.strip().partition(" ")
        if scheme.lower() != "bearer" or not token.strip():
            raise TokenRejected("Authorization is not a Bearer token")
        if len(token) > MAX_TOKEN_CHARS:
            raise TokenRejected("token too long")
        return token.strip()

    def _client_for(self, iss: str | None, tenant) -> tuple[ClientConfig, ClientKeys]:
        same_issuer = [(client, keys) for client, keys in self.keys if client.iss == iss]
        if not same_issuer:
            raise TokenRejected("iss is not a configured client", iss)
        for client, keys in sorted(same_issuer, key=lambda pair: pair[0].tenant is None):
            if client.tenant is None or client.tenant == tenant:
                return client, keys
        raise TokenRejected("tenant is not the one configured for this client", iss)

    @staticmethod
    def _signing_key(header: dict, alg: str, client: ClientConfig, client_keys: ClientKeys) -> dict:
        kid = header.get("kid")
        if not isinstance(kid, str) or not kid:
            raise TokenRejected("no kid in the token header", client.iss)
        jku = header.get("jku")
        # Keys pinned in a file are authoritative, and a jku is never fetched for such a client.
        if jku is not None and client.jwks_url is not None and jku != client.jwks_url:
            raise TokenRejected("jku is not the client's configured jwks_url", client.iss)
        jwk = client_keys.key_for(kid)
        if jwk is None:
            raise TokenRejected("kid is not in the client's key set", client.iss)
        key_type, curve = ACCEPTED_ALGORITHMS[alg]
        if jwk.get("kty") != key_type or (curve and jwk.get("crv") != curve) or jwk.get("alg", alg) != alg:
            raise TokenRejected(f"key {kid[:64]!r} does not fit alg {alg}", client.iss)
        return jwk

    def _check_first_use(self, iss: str, jti: str, expires_at) -> None:
        expires_at = int(expires_at) + CLOCK_SKEW_SECONDS
        try:
            first = self.replay_guard.first_use(iss, jti, expires_at)
        except SQLAlchemyError as exc:
            # Without the shared store, this worker's own memory of recent tokens still refuses a
            # replay to it: the safety cards keep flowing (a store outage must not silence them).
            logger.warning(
                "replay store unavailable: replay protection degraded to this worker's own memory of recent tokens",
                extra={"fields": {"problem": type(exc).__name__}},
            )
            record_store_error("replay-check")
            first = self.recent_tokens.first_use(iss, jti, expires_at, int(time.time()))
            if first is None:
                raise CdsError(
                    503,
                    (Issue("The service cannot check credentials right now; try again.", code="transient"),),
                    headers={"Retry-After": str(REPLAY_STORE_RETRY_AFTER_SECONDS)},
                ) from None
        else:
            self.recent_tokens.first_use(iss, jti, expires_at, int(time.time()))
        if not first:
            raise TokenRejected("jti already used (replay)", iss)


def _check_time_claims(claims: dict, iss: str | None) -> None:
    """exp, iat and nbf, when present, are JSON numbers of seconds within a sane range (PyJWT
    takes a numeric string, and an exp of 2^63 overflowed the store's integer column)."""
    for name in TIME_CLAIMS:
        if name not in claims:
            continue  # a required one missing is reported by PyJWT
        value = claims[name]
        if (
            isinstance(value, bool)
            or not isinstance(value, (int, float))
            or not math.isfinite(value)
            or not EARLIEST_TIME_CLAIM <= value <= LATEST_TIME_CLAIM
        ):
            raise TokenRejected(f"claim {name!r} is not a number of seconds between 2000 and 2100", iss)
