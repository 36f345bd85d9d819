"""Configuration: trial mode without a file, production defaults with one, clear errors."""

import pytest

from cds_service.config import CONFIG_ENV_VAR, ConfigError, Settings, load_settings

PRODUCTION = """
public_base_url = "https://cds.example.org/"
[auth]
[[clients]]
iss = "https://ehr.example.org"
jwks_url = "https://ehr.example.org/.well-known/jwks.json"
fhir_servers = ["https://ehr.example.org/fhir/r4/"]
[fhir]
allowed_servers = ["http://localhost:8081/fhir"]
timeout_seconds = 1.5
[thresholds]
calcium_lookback_days = 14
"""


def test_no_file_is_local_trial_mode(monkeypatch):
    monkeypatch.delenv(CONFIG_ENV_VAR, raising=False)
    settings = load_settings()
    assert settings.trial_mode and not settings.require_jwt
    assert settings.host == "127.0.0.1"
    assert settings.allowed_fhir_servers == ()


def test_a_file_is_production_and_requires_jwt_by_default(tmp_path):
    path = tmp_path / "cds.toml"
    path.write_text(PRODUCTION)
    settings = load_settings(path)
    assert not settings.trial_mode and settings.require_jwt
    assert settings.public_base_url == "https://cds.example.org"
    assert settings.clients[0].fhir_servers == ("https://ehr.example.org/fhir/r4",)
    assert settings.allowed_fhir_servers == ("http://localhost:8081/fhir",)
    assert settings.fhir_timeout_seconds == 1.5
    assert settings.threshold_overrides == {"calcium_lookback_days": 14.0}


def test_config_named_by_environment_variable(tmp_path, monkeypatch):
    path = tmp_path / "cds.toml"
    path.write_text(PRODUCTION)
    monkeypatch.setenv(CONFIG_ENV_VAR, str(path))
    assert load_settings().public_base_url == "https://cds.example.org"


def test_jwt_off_needs_no_clients(tmp_path):
    path = tmp_path / "cds.toml"
    path.write_text('[auth]\nrequire_jwt = false\n[fhir]\nallowed_servers = ["https://fhir.example.org/r4"]\n')
    settings = load_settings(path)
    assert not settings.require_jwt and settings.allowed_fhir_servers == ("https://fhir.example.org/r4",)


@pytest.mark.parametrize(
    "text, message",
    [
        ("[[clients]]\niss = 'x'\njwks_url = 'https://x/jwks'\n", "public_base_url"),
        ("public_base_url = 'https://cds.example.org'\n", "clients"),
        ("public_base_url = 'https://c'\n[[clients]]\niss = 'x'\n", "jwks"),
        ("[auth]\nrequire_jwt = false\n[fhir]\nallowed_servers = ['ftp://x']\n", "http"),
        ("[auth\n", "TOML"),
    ],
)
def test_bad_configuration_is_a_clear_error(tmp_path, text, message):
    path = tmp_path / "cds.toml"
    path.write_text(text)
    with pytest.raises(ConfigError, match=message):
        load_settings(path)


def test_missing_file_is_a_clear_error(tmp_path):
    with pytest.raises(ConfigError, match="not found"):
        load_settings(tmp_path / "nope.toml")


def test_threshold_overrides_reach_the_knowledge_base(tmp_path, make_app):
    path = tmp_path / "cds.toml"
    path.write_text("[auth]\nrequire_jwt = false\n[thresholds]\ncalcium_lookback_days = 14\n")
    app = make_app(load_settings(path))
    assert app.extensions["denosumab_cds"].kb.threshold("calcium_lookback_days") == 14


def test_workers_are_recycled_only_when_configured(tmp_path):
    from cds_service.cli import gunicorn_options

    path = tmp_path / "cds.toml"
    path.write_text("[auth]\nrequire_jwt = false\n[server]\nworkers = 3\nmax_requests = 20000\n")
    options = gunicorn_options(load_settings(path))
    assert options["workers"] == 3 and options["max_requests"] == 20000 and options["max_requests_jitter"] == 2000
    assert gunicorn_options(Settings())["max_requests"] == 0  # trial mode: never
    path.write_text("[auth]\nrequire_jwt = false\n[server]\nmax_requests = -1\n")
    with pytest.raises(ConfigError, match="max_requests"):
        load_settings(path)


def test_one_call_at_a_time_per_worker_unless_threads_are_configured(tmp_path):
    from cds_service.cli import gunicorn_options

    from gunicorn.util import load_class
    from gunicorn.workers.gthread import ThreadWorker
    from gunicorn.workers.sync import SyncWorker

    # CPU-bound calls: no thread interleaving (gunicorn's sync worker, as gunicorn itself loads it)
    assert issubclass(load_class(gunicorn_options(Settings())["worker_class"]), SyncWorker)
    path = tmp_path / "cds.toml"
    path.write_text("[auth]\nrequire_jwt = false\n[server]\nthreads = 4\n")
    options = gunicorn_options(load_settings(path))
    assert issubclass(load_class(options["worker_class"]), ThreadWorker) and options["threads"] == 4
    path.write_text("[auth]\nrequire_jwt = false\n[server]\nthreads = 0\n")
    with pytest.raises(ConfigError, match="threads"):
        load_settings(path)
