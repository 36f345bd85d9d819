"""Service configuration: embedded defaults, then a TOML file, then explicit overrides.

No file at all means *local trial mode*: listen on 127.0.0.1 only, no JWT, nothing fetched
from any FHIR server. A file means production, where `auth.require_jwt` defaults to true.
"""

from __future__ import annotations

import os
import tomllib
from dataclasses import dataclass, field, replace
from pathlib import Path
from urllib.parse import urlsplit

CONFIG_ENV_VAR = "DENOSUMAB_CDS_CONFIG"
DEFAULT_MAX_BODY_BYTES = 5 * 1024 * 1024
DEFAULT_FHIR_TIMEOUT_SECONDS = 2.0


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
    max_body_bytes: int = DEFAULT_MAX_BODY_BYTES
    host: str = "127.0.0.1"
    port: int = 8080
    workers: int = 2
    threads: int = 1  # per worker; above 1, calls waiting on a FHIR server let others run
    # Recycle a worker after this many requests (0: never). Large bodies leave the allocator
    # holding memory it does not give back (bench/RESULTS.md); recycling returns it.
    max_requests: int = 0
    threshold_overrides: dict[str, float] = field(default_factory=dict)
    store_url: str | None = None
    patient_hash_key: str | None = field(default=None, repr=False)  # HMAC key of the card ledger
    cors_origins: tuple[str, ...] = ("*",)
    source_path: Path | None = None
    metrics_enabled: bool = True  # GET /metrics
    metrics_require_jwt: bool = False  # GET /metrics needs a client's JWT, as /cds-services does

    def with_overrides(self, **changes) -> "Settings":
        return replace(self, **changes)


def _require(condition: bool, message: str) -> None:
    if not condition:
        raise ConfigError(message)


def _fhir_base(url: str, where: str) -> str:
    parts = urlsplit(url)
    _require(parts.scheme in ("https", "http") and bool(parts.netloc), f"{where}: {url!r} is not an http(s) URL")
    return url.rstrip("/")


def _client(table: dict, index: int, base_dir: Path) -> ClientConfig:
    where = f"clients[{index}]"
    _require(isinstance(table.get("iss"), str) and table["iss"], f"{where}: 'iss' is required")
    jwks_url, jwks_file = table.get("jwks_url"), table.get("jwks_file")
    _require(bool(jwks_url) != bool(jwks_file), f"{where}: give exactly one of 'jwks_url' or 'jwks_file'")
    if jwks_url:
        _require(urlsplit(jwks_url).scheme in ("https", "http"), f"{where}: jwks_url must be an http(s) URL")
    servers = table.get("fhir_servers", [])
    _require(isinstance(servers, list), f"{where}: 'fhir_servers' must be a list of URLs")
    return ClientConfig(
        iss=table["iss"],
        jwks_url=jwks_url,
        jwks_file=(base_dir / jwks_file).resolve() if jwks_file else None,
        fhir_servers=tuple(_fhir_base(url, f"{where}.fhir_servers") for url in servers),
        tenant=table.get("tenant"),
    )


def settings_from_toml(data: dict, *, base_dir: Path, source_path: Path | None = None) -> Settings:
    """Build production settings from a parsed TOML document."""
    auth = data.get("auth", {})
    fhir = data.get("fhir", {})
    server = data.get("server", {})
    store = data.get("store", {})
    thresholds = data.get("thresholds", {})
    metrics = data.get("metrics", {})
    _require(all(isinstance(v, (int, float)) for v in thresholds.values()), "[thresholds] values must be numbers")
    settings = Settings(
        trial_mode=False,
        public_base_url=(data.get("public_base_url") or "").rstrip("/") or None,
        require_jwt=bool(auth.get("require_jwt", True)),
        clients=tuple(_client(t, i, base_dir) for i, t in enumerate(data.get("clients", []))),
        allowed_fhir_servers=tuple(_fhir_base(u, "fhir.allowed_servers") for u in fhir.get("allowed_servers", [])),
        fhir_timeout_seconds=float(fhir.get("timeout_seconds", DEFAULT_FHIR_TIMEOUT_SECONDS)),
        fhir_max_pages=int(fhir.get("max_pages", 10)),
        max_body_bytes=int(server.get("max_body_bytes", DEFAULT_MAX_BODY_BYTES)),
        host=server.get("host", "0.0.0.0"),
        port=int(server.get("port", 8080)),
        workers=int(server.get("workers", 2)),
        threads=int(server.get("threads", 1)),
        max_requests=int(server.get("max_requests", 0)),
        threshold_overrides={k: float(v) for k, v in thresholds.items()},
        store_url=store.get("url"),
        patient_hash_key=store.get("patient_hash_key"),
        cors_origins=tuple(server.get("cors_origins", ["*"])),
        source_path=source_path,
        metrics_enabled=bool(metrics.get("enabled", True)),
        metrics_require_jwt=bool(metrics.get("require_jwt", False)),
    )
    _require(settings.fhir_timeout_seconds > 0, "fhir.timeout_seconds must be positive")
    _require(settings.max_body_bytes > 0, "server.max_body_bytes must be positive")
    _require(settings.workers >= 1 and settings.threads >= 1, "server.workers and server.threads must be at least 1")
    _require(settings.max_requests >= 0, "server.max_requests must be 0 (never recycle) or positive")
    if settings.require_jwt:
        _require(bool(settings.public_base_url), "public_base_url is required when auth.require_jwt is true (JWT audience)")
        _require(bool(settings.clients), "at least one [[clients]] entry is required when auth.require_jwt is true")
    return settings


def load_settings(path: str | os.PathLike | None = None) -> Settings:
    """Settings from `path`, else from $DENOSUMAB_CDS_CONFIG, else trial-mode defaults."""
    path = path or os.environ.get(CONFIG_ENV_VAR)
    if not path:
        return Settings()
    config_path = Path(path)
    try:
        data = tomllib.loads(config_path.read_text(encoding="utf-8"))
    except FileNotFoundError as exc:
        raise ConfigError(f"configuration file not found: {config_path}") from exc
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{config_path}: not valid TOML: {exc}") from exc
    return settings_from_toml(data, base_dir=config_path.parent, source_path=config_path)
