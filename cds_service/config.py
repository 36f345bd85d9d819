"""Service configuration: embedded defaults, then a TOML file, then explicit overrides.

No file at all means *local trial mode*: listen on 127.0.0.1 only, no JWT, nothing fetched
from any FHIR server. A file means production, where `auth.require_jwt` defaults to true.

The whole file is validated against a strict schema (pydantic): unknown sections and keys, wrong
types (`port = "abc"`, `require_jwt = "no"`), out-of-range numbers, unknown threshold or topic
names and unsupported store URLs stop start-up with one `ConfigError` naming the key. The rest
of the code reads the `Settings` dataclass built from the validated file.
"""

from __future__ import annotations

import difflib
import ipaddress
import os
import tomllib
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

CONFIG_ENV_VAR = "DENOSUMAB_CDS_CONFIG"
DEFAULT_MAX_BODY_BYTES = 5 * 1024 * 1024
DEFAULT_FHIR_TIMEOUT_SECONDS = 2.0
DEFAULT_FHIR_MAX_RESPONSE_BYTES = 16 * 1024 * 1024
SUPPORTED_STORE_BACKENDS = ("sqlite", "postgresql")
ALL_TOPICS = "*"


class ConfigError(ValueError):
    """The configuration file is missing, unreadable or inconsistent."""


@dataclass(frozen=True)
class ClientConfig:
    """One EHR allowed to call the service (a `[[clients]]` table)."""

    iss: str
    jwks_url: str | None = None
    jwks_file: Path | None = None
    fhir_servers: tuple[str, ...] = ()
    tenant: str | None = None


@dataclass(frozen=True)
class Settings:
    trial_mode: bool = True
    public_base_url: str | None = None
    require_jwt: bool = False
    clients: tuple[ClientConfig, ...] = ()
    allowed_fhir_servers: tuple[str, ...] = ()
    fhir_timeout_seconds: float = DEFAULT_FHIR_TIMEOUT_SECONDS
    fhir_max_pages: int = 10
    fhir_max_workers: int = 8
    fhir_max_response_bytes: int = DEFAULT_FHIR_MAX_RESPONSE_BYTES  # one FHIR response, read bounded
    max_body_bytes: int = DEFAULT_MAX_BODY_BYTES
    max_draft_orders: int = 50  # draft orders one hook call may carry
    host: str = "127.0.0.1"
    port: int = 8080
    workers: int = 2
    threads: int = 1  # per worker; above 1, calls waiting on a FHIR server let others run
    # Recycle a worker after this many requests (0: never). Large bodies leave the allocator
    # holding memory it does not give back (bench/RESULTS.md); recycling returns it.
    max_requests: int = 0
    max_token_lifetime_seconds: int = 300  # a JWT whose exp - iat is longer is refused
    metrics_enabled: bool = True
    metrics_require_jwt: bool = False
    silent_topics: tuple[str, ...] = ()  # topic codes evaluated and recorded but not returned; "*" = all
    # topic -> override reason code -> days a card of that topic stays suppressed after that override
    suppression_overrides: dict[str, dict[str, int | dict[str, int]]] = field(default_factory=dict)
    threshold_overrides: dict[str, float] = field(default_factory=dict)
    store_url: str | None = None
    patient_hash_key: str | None = field(default=None, repr=False)  # HMAC key of the card ledger
    cors_origins: tuple[str, ...] = ("*",)
    source_path: Path | None = None

    def with_overrides(self, **changes) -> "Settings":
        return replace(self, **changes)

    @property
    def listens_on_loopback(self) -> bool:
        """True when only this machine can connect (127.0.0.0/8, ::1, localhost)."""
        if self.host.lower() == "localhost":
            return True
        try:
            return ipaddress.ip_address(self.host.strip("[]")).is_loopback
        except ValueError:
            return False  # a host name other than localhost may resolve to anything


# --------------------------------------------------------------------------- the file's schema


def _known_names(kind: str, names, name: str) -> str:
    """'; did you mean ...' for a misspelt name, else the list of valid ones."""
    close = difflib.get_close_matches(name, list(names), n=1)
    return f"did you mean {close[0]!r}?" if close else f"known {kind}: {', '.join(sorted(names)) or 'none'}"


def _http_url(url: str) -> str:
    parts = urlsplit(url)
    if parts.scheme not in ("https", "http") or not parts.netloc:
        raise ValueError(f"{url!r} is not an http(s) URL")
    return url


class _Table(BaseModel):
    # strict: TOML already has types, so "8080" is never silently a port and "no" never true
    model_config = ConfigDict(extra="forbid", strict=True, frozen=True)


class _Auth(_Table):
    require_jwt: bool = True
    max_token_lifetime_seconds: int = Field(300, gt=0)


class _Client(_Table):
    iss: str = Field(min_length=1)
    jwks_url: str | None = None
    jwks_file: str | None = Field(None, min_length=1)
    fhir_servers: list[str] = []
    tenant: str | None = None

    @field_validator("jwks_url")
    @classmethod
    def _jwks_url_is_http(cls, url):
        return None if url is None else _http_url(url)

    @field_validator("fhir_servers")
    @classmethod
    def _servers_are_http(cls, urls):
        return [_http_url(url) for url in urls]

    @model_validator(mode="after")
    def _one_key_source(self):
        if (self.jwks_url is None) == (self.jwks_file is None):
            raise ValueError("give exactly one of 'jwks_url' or 'jwks_file'")
        return self


class _Fhir(_Table):
    allowed_servers: list[str] = []
    timeout_seconds: float = Field(DEFAULT_FHIR_TIMEOUT_SECONDS, gt=0, allow_inf_nan=False)
    max_pages: int = Field(10, ge=1)
    max_response_bytes: int = Field(DEFAULT_FHIR_MAX_RESPONSE_BYTES, gt=0)

    @field_validator("allowed_servers")
    @classmethod
    def _servers_are_http(cls, urls):
        return [_http_url(url) for url in urls]


class _Server(_Table):
    host: str = Field("0.0.0.0", min_length=1)
    port: int = Field(8080, ge=1, le=65535)
    workers: int = Field(2, ge=1)
    threads: int = Field(1, ge=1)
    max_body_bytes: int = Field(DEFAULT_MAX_BODY_BYTES, gt=0)
    max_requests: int = Field(0, ge=0)  # 0: never recycle
    max_draft_orders: int = Field(50, ge=1)
    cors_origins: list[str] = ["*"]


def unsupported_store_url(url: str) -> str | None:
    """Why the store cannot be at `url` (only SQLite and PostgreSQL), or None. Never repeats the
    URL, which may hold a password."""
    from sqlalchemy.engine import make_url
    from sqlalchemy.exc import ArgumentError

    try:
        backend = make_url(url).get_backend_name()
    except ArgumentError:
        return "not a database URL; use sqlite:///path or postgresql://user@host/db"
    if backend not in SUPPORTED_STORE_BACKENDS:
        return f"{backend} is not supported; use sqlite:///path or postgresql://user@host/db"
    return None


class _Store(_Table):
    url: str | None = None
    patient_hash_key: str | None = None

    @field_validator("url")
    @classmethod
    def _supported_backend(cls, url):
        if url is not None and (problem := unsupported_store_url(url)):
            raise ValueError(problem)
        return url


class _Metrics(_Table):
    enabled: bool = True
    require_jwt: bool = False


class _Cards(_Table):
    silent: list[str] = []

    @field_validator("silent")
    @classmethod
    def _known_topics(cls, codes):
        topics = _knowledge().topics
        for code in codes:
            if code != ALL_TOPICS and code not in topics:
                raise ValueError(f"{code!r} is not a topic code of seeds/topics.toml (or \"*\"); {_known_names('topics', topics, code)}")
        return codes


_REGIMENS = ("60mg", "120mg")  # the catalog's two denosumab regimens, as seeds/topics.toml names them


class _File(_Table):
    public_base_url: str | None = None
    auth: _Auth = _Auth()
    clients: list[_Client] = []
    fhir: _Fhir = _Fhir()
    server: _Server = _Server()
    store: _Store = _Store()
    thresholds: dict[str, float] = {}
    metrics: _Metrics = _Metrics()
    cards: _Cards = _Cards()
    # days, or days per regimen ({ 60mg = 183, 120mg = 28 }) for a reason whose period follows the regimen
    suppression: dict[str, dict[str, Any]] = {}  # checked by _known_reasons

    @field_validator("public_base_url")
    @classmethod
    def _base_is_http(cls, url):
        return None if url is None else _http_url(url)

    @field_validator("clients", mode="before")
    @classmethod
    def _array_of_tables(cls, value):
        if isinstance(value, dict):
            raise ValueError("must be an array of tables: write [[clients]] (one per EHR), not [clients]")
        return value

    @field_validator("thresholds", mode="after")
    @classmethod
    def _known_thresholds(cls, values):
        known = _knowledge().thresholds
        for name, value in values.items():
            if name not in known:
                raise _EntryError(name, f"no such threshold in seeds/thresholds.toml; {_known_names('thresholds', known, name)}")
            if value < 0 or value != value or value in (float("inf"), float("-inf")):
                raise _EntryError(name, f"must be a finite number at least 0, not {value!r}")
        return values

    @field_validator("suppression", mode="after")
    @classmethod
    def _known_reasons(cls, periods):
        topics = _knowledge().topics
        for code, reasons in periods.items():
            if code not in topics:
                raise _EntryError(code, f"no such topic in seeds/topics.toml; {_known_names('topics', topics, code)}")
            own = {reason.code for reason in topics[code].override_reasons}
            for reason, days in reasons.items():
                if reason not in own:
                    raise _EntryError(f"{code}.{reason}", f"not an override reason of topic {code!r}; {_known_names('reasons', own, reason)}")
                for regimen, period in (days.items() if isinstance(days, dict) else [(None, days)]):
                    where = f"{code}.{reason}" + (f".{regimen}" if regimen else "")
                    if regimen is not None and regimen not in _REGIMENS:
                        raise _EntryError(where, f"not a regimen; known: {', '.join(_REGIMENS)}")
                    if not isinstance(period, int) or isinstance(period, bool):
                        raise _EntryError(where, f"must be a whole number (found {period!r})")
                    if period < 0:
                        raise _EntryError(where, f"must be a number of days, at least 0, not {period}")
        return periods

    @model_validator(mode="after")
    def _jwt_needs_audience_and_clients(self):
        if self.auth.require_jwt:
            if not self.public_base_url:
                raise _EntryError("public_base_url", "required when auth.require_jwt is true (it is the JWT audience)", root=True)
            if not self.clients:
                raise _EntryError("clients", "at least one [[clients]] entry is required when auth.require_jwt is true", root=True)
        return self


class _EntryError(ValueError):
    """A problem with one entry of a table (a threshold name, a topic): names the entry."""

    def __init__(self, key: str, message: str, *, root: bool = False):
        super().__init__(message)
        self.key, self.root = key, root


def _knowledge():
    from cds_service.knowledge import load_knowledge

    return load_knowledge()


# --------------------------------------------------------------------------- error messages

_TYPE_WORDS = {
    "bool_type": "must be true or false",
    "int_type": "must be a whole number",
    "int_from_float": "must be a whole number",
    "float_type": "must be a number",
    "string_type": "must be a string in quotes",
    "list_type": "must be an array [...]",
    "dict_type": "must be a table",
    "model_type": "must be a table",
    "model_attributes_type": "must be a table",
    "finite_number": "must be a finite number",
}
_SECRET_KEYS = {("store", "patient_hash_key"), ("store", "url")}


def _dotted(loc: tuple) -> str:
    text = ""
    for part in loc:
        text += f"[{part}]" if isinstance(part, int) else (f".{part}" if text else str(part))
    return text


def _model_at(loc: tuple):
    """The schema class whose keys are valid at `loc` (None inside free-form tables)."""
    model = _File
    for part in loc:
        if isinstance(part, int):
            continue
        annotation = model.model_fields[part].annotation if part in model.model_fields else None
        inner = getattr(annotation, "__args__", (annotation,))[0]
        if not (isinstance(inner, type) and issubclass(inner, BaseModel)):
            return None
        model = inner
    return model


def _describe(error: dict) -> str:
    loc, kind, ctx = tuple(error["loc"]), error["type"], error.get("ctx") or {}
    where = _dotted(loc)
    if kind == "extra_forbidden":
        parent = _model_at(loc[:-1])
        names = list(parent.model_fields) if parent else []
        what = "section" if isinstance(error["input"], dict) and not loc[:-1] else "key"
        return f"{where}: unknown {what}; {_known_names(what + 's', names, str(loc[-1]))}"
    if kind == "missing":
        return f"{where}: required"
    if kind == "value_error":
        cause = ctx.get("error")
        if isinstance(cause, _EntryError):
            key = cause.key if cause.root else f"{where}.{cause.key}"
            return f"{key}: {cause}"
        return f"{where or 'file'}: {cause}"
    if kind in _TYPE_WORDS:
        shown = "" if tuple(p for p in loc if not isinstance(p, int))[:2] in _SECRET_KEYS else f" (found {_toml_repr(error['input'])})"
        return f"{where}: {_TYPE_WORDS[kind]}{shown}"
    if kind == "greater_than":
        return f"{where}: must be greater than {ctx['gt']}"
    if kind == "greater_than_equal":
        return f"{where}: must be at least {ctx['ge']}"
    if kind == "less_than_equal":
        return f"{where}: must be at most {ctx['le']}"
    if kind == "string_too_short":
        return f"{where}: must not be empty"
    return f"{where}: {error['msg']}"


def _toml_repr(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, str):
        return repr(value) if len(value) <= 40 else "a string"
    if isinstance(value, dict):
        return "a table"
    if isinstance(value, list):
        return "an array"
    return repr(value)


def _one_line(error: ValidationError) -> str:
    errors = error.errors()
    more = len(errors) - 1
    return _describe(errors[0]) + (f" (and {more} more problem{'s' if more > 1 else ''})" if more else "")


# --------------------------------------------------------------------------- Settings


def settings_from_toml(data: dict, *, base_dir: Path | str, source_path: Path | None = None) -> Settings:
    """Build production settings from a parsed TOML document (ConfigError on any mistake)."""
    try:
        file = _File.model_validate(data)
    except ValidationError as error:
        raise ConfigError(_one_line(error)) from None
    base_dir = Path(base_dir)
    auth, fhir, server = file.auth, file.fhir, file.server
    return Settings(
        trial_mode=False,
        public_base_url=(file.public_base_url or "").rstrip("/") or None,
        require_jwt=auth.require_jwt,
        clients=tuple(
            ClientConfig(
                iss=client.iss,
                jwks_url=client.jwks_url,
                jwks_file=(base_dir / client.jwks_file).resolve() if client.jwks_file else None,
                fhir_servers=tuple(url.rstrip("/") for url in client.fhir_servers),
                tenant=client.tenant,
            )
            for client in file.clients
        ),
        allowed_fhir_servers=tuple(url.rstrip("/") for url in fhir.allowed_servers),
        fhir_timeout_seconds=float(fhir.timeout_seconds),
        fhir_max_pages=fhir.max_pages,
        fhir_max_response_bytes=fhir.max_response_bytes,
        max_body_bytes=server.max_body_bytes,
        max_draft_orders=server.max_draft_orders,
        host=server.host,
        port=server.port,
        workers=server.workers,
        threads=server.threads,
        max_requests=server.max_requests,
        max_token_lifetime_seconds=auth.max_token_lifetime_seconds,
        metrics_enabled=file.metrics.enabled,
        metrics_require_jwt=file.metrics.require_jwt,
        silent_topics=tuple(file.cards.silent),
        suppression_overrides={topic: dict(reasons) for topic, reasons in file.suppression.items() if reasons},
        threshold_overrides={name: float(value) for name, value in file.thresholds.items()},
        store_url=file.store.url,
        patient_hash_key=file.store.patient_hash_key,
        cors_origins=tuple(server.cors_origins),
        source_path=source_path,
    )


def load_settings(path: str | os.PathLike | None = None) -> Settings:
    """Settings from `path`, else from $DENOSUMAB_CDS_CONFIG, else trial-mode defaults."""
    path = path or os.environ.get(CONFIG_ENV_VAR)
    if not path:
        return Settings()
    config_path = Path(path)
    try:
        data = tomllib.loads(config_path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise ConfigError(f"{config_path}: file not found") from None
    except IsADirectoryError:
        raise ConfigError(f"{config_path}: is a directory, not a TOML file") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"{config_path}: cannot be read ({type(exc).__name__}: {exc})") from None
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{config_path}: not valid TOML: {exc}") from None
    return settings_from_toml(data, base_dir=config_path.parent, source_path=config_path)
