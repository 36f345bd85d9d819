"""Configuration: trial mode without a file, production defaults with one, clear errors."""

from pathlib import Path

import pytest

from cds_service.cli import main
from cds_service.config import CONFIG_ENV_VAR, ConfigError, Settings, load_settings
from tests.conftest import SCENARIOS

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
    with pytest.raises(ConfigError, match="file not found"):
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


# --------------------------------------------------------------------------- strict validation

NO_JWT = "[auth]\nrequire_jwt = false\n"
BASELINE = SCENARIOS / "baseline" / "no-cards-well-managed-prolia-order-sign.json"

# Each mistake a deployment makes, and the one line it must get (after "configuration error: ").
MISTAKES = [
    ("misspelt section", NO_JWT + "[sever]\nport = 8081\n", "sever: unknown section; did you mean 'server'?"),
    ("misspelt key", NO_JWT + "[fhir]\ntimout_seconds = 3\n", "fhir.timout_seconds: unknown key; did you mean 'timeout_seconds'?"),
    ("key without its s", NO_JWT + "[server]\nworker = 4\n", "server.worker: unknown key; did you mean 'workers'?"),
    ("store uri, not url", NO_JWT + "[store]\nuri = 'postgresql://cds@db.example.org/cds'\n", "store.uri: unknown key; did you mean 'url'?"),
    ("port as text", NO_JWT + "[server]\nport = 'abc'\n", "server.port: must be a whole number (found 'abc')"),
    ("port quoted number", NO_JWT + "[server]\nport = '8080'\n", "server.port: must be a whole number (found '8080')"),
    ("port out of range", NO_JWT + "[server]\nport = 70000\n", "server.port: must be at most 65535"),
    ("[clients] table", "public_base_url = 'https://cds.example.org'\n[clients]\niss = 'https://ehr.example.org'\n"
     "jwks_url = 'https://ehr.example.org/jwks'\n",
     "clients: must be an array of tables: write [[clients]] (one per EHR), not [clients]"),
    ("unknown threshold", NO_JWT + "[thresholds]\ncalcium_lookbak_days = 14\n",
     "thresholds.calcium_lookbak_days: no such threshold in seeds/thresholds.toml; did you mean 'calcium_lookback_days'?"),
    ("negative threshold", NO_JWT + "[thresholds]\ncalcium_lookback_days = -1\n",
     "thresholds.calcium_lookback_days: must be a finite number at least 0, not -1.0"),
    ("threshold as text", NO_JWT + "[thresholds]\ncalcium_lookback_days = '14'\n",
     "thresholds.calcium_lookback_days: must be a number (found '14')"),
    ("mysql store", NO_JWT + "[store]\nurl = 'mysql://cds:s3cret@db.example.org/cds'\n",
     "store.url: mysql is not supported; use sqlite:///path or postgresql://user@host/db"),
    ("require_jwt as text", "[auth]\nrequire_jwt = 'no'\n", "auth.require_jwt: must be true or false (found 'no')"),
    ("unknown silent topic", NO_JWT + "[cards]\nsilent = ['hypocalcaemia']\n",
     "cards.silent: 'hypocalcaemia' is not a topic code of seeds/topics.toml (or \"*\"); did you mean 'hypocalcemia'?"),
    ("silent not a list", NO_JWT + "[cards]\nsilent = '*'\n", "cards.silent: must be an array [...] (found '*')"),
    ("suppression of an unknown topic", NO_JWT + "[suppression.dental-clearence]\ndental-exam-done-elsewhere = 90\n",
     "suppression.dental-clearence: no such topic in seeds/topics.toml; did you mean 'dental-clearance'?"),
    ("suppression with another topic's reason", NO_JWT + "[suppression.dental-clearance]\nresult-spurious = 30\n",
     "suppression.dental-clearance.result-spurious: not an override reason of topic 'dental-clearance'; known reasons: "
     "dental-clearance-documented, dental-exam-done-elsewhere, edentulous-patient, urgent-treatment-benefit-outweighs-risk"),
    ("suppression days as text", NO_JWT + "[suppression.dental-clearance]\ndental-exam-done-elsewhere = '90 days'\n",
     "suppression.dental-clearance.dental-exam-done-elsewhere: must be a whole number (found '90 days')"),
    ("metrics flag as text", NO_JWT + "[metrics]\nenabled = 'yes'\n", "metrics.enabled: must be true or false (found 'yes')"),
    ("zero response limit", NO_JWT + "[fhir]\nmax_response_bytes = 0\n", "fhir.max_response_bytes: must be greater than 0"),
    ("zero draft orders", NO_JWT + "[server]\nmax_draft_orders = 0\n", "server.max_draft_orders: must be at least 1"),
    ("token lifetime as float", "[auth]\nrequire_jwt = false\nmax_token_lifetime_seconds = 300.5\n",
     "auth.max_token_lifetime_seconds: must be a whole number (found 300.5)"),
    ("unknown client key", "public_base_url = 'https://cds.example.org'\n[[clients]]\niss = 'https://ehr.example.org'\n"
     "jwks_uri = 'https://ehr.example.org/jwks'\n", "clients[0].jwks_uri: unknown key; did you mean 'jwks_url'?"),
    ("jwt without audience", "[auth]\nrequire_jwt = true\n",
     "public_base_url: required when auth.require_jwt is true (it is the JWT audience)"),
    ("ftp FHIR base", NO_JWT + "[fhir]\nallowed_servers = ['ftp://fhir.example.org']\n",
     "fhir.allowed_servers: 'ftp://fhir.example.org' is not an http(s) URL"),
]


def _one_error_line(err: str) -> str:
    lines = err.splitlines()
    assert len(lines) == 1, err  # one line, never a traceback
    assert lines[0].startswith("configuration error: "), err
    return lines[0].removeprefix("configuration error: ")


@pytest.mark.parametrize("text, expected", [m[1:] for m in MISTAKES], ids=[m[0] for m in MISTAKES])
def test_every_mistake_stops_start_up_with_one_line_naming_the_key(tmp_path, capsys, text, expected):
    path = tmp_path / "cds.toml"
    path.write_text(text)
    # serve stops before gunicorn starts; check and report read the same configuration
    for command in (["serve"], ["check", str(BASELINE)], ["report"]):
        assert main([*command, "--config", str(path)]) == 2
        captured = capsys.readouterr()
        assert _one_error_line(captured.err) == expected
        assert captured.out == ""


def test_a_store_password_is_never_echoed(tmp_path, capsys):
    path = tmp_path / "cds.toml"
    path.write_text(NO_JWT + "[store]\nurl = 'mysql://cds:s3cret@db.example.org/cds'\npatient_hash_key = 12345\n")
    assert main(["check", str(BASELINE), "--config", str(path)]) == 2
    err = capsys.readouterr().err
    assert "s3cret" not in err and "12345" not in err
    assert "and 1 more problem" in _one_error_line(err)


@pytest.mark.parametrize(
    "where, expected",
    [("directory", "is a directory, not a TOML file"), ("missing", "file not found"), ("broken", "not valid TOML")],
)
def test_a_config_path_that_is_not_a_toml_file(tmp_path, capsys, monkeypatch, where, expected):
    path = {"directory": tmp_path, "missing": tmp_path / "nope.toml", "broken": tmp_path / "broken.toml"}[where]
    (tmp_path / "broken.toml").write_text("[server\nport = 1\n")
    assert main(["check", str(BASELINE), "--config", str(path)]) == 2
    assert _one_error_line(capsys.readouterr().err).startswith(f"{path}: {expected}")
    monkeypatch.setenv(CONFIG_ENV_VAR, str(path))  # the same through the environment variable
    assert main(["serve"]) == 2
    assert _one_error_line(capsys.readouterr().err).startswith(f"{path}: {expected}")


def test_new_keys_have_their_defaults(tmp_path):
    path = tmp_path / "cds.toml"
    path.write_text(NO_JWT)
    for settings in (load_settings(path), Settings()):
        assert settings.fhir_max_response_bytes == 16 * 1024 * 1024
        assert settings.max_draft_orders == 50
        assert settings.max_token_lifetime_seconds == 300
        assert settings.metrics_enabled is True and settings.metrics_require_jwt is False
        assert settings.silent_topics == () and settings.suppression_overrides == {}


def test_new_keys_are_read(tmp_path):
    path = tmp_path / "cds.toml"
    path.write_text(
        "[auth]\nrequire_jwt = false\nmax_token_lifetime_seconds = 120\n"
        "[fhir]\nmax_response_bytes = 1048576\n"
        "[server]\nmax_draft_orders = 20\n"
        "[metrics]\nenabled = false\nrequire_jwt = true\n"
        "[cards]\nsilent = ['dental-clearance', 'pediatric']\n"
        "[suppression.dental-clearance]\ndental-exam-done-elsewhere = 180\nedentulous-patient = 0\n"
    )
    settings = load_settings(path)
    assert settings.max_token_lifetime_seconds == 120
    assert settings.fhir_max_response_bytes == 1048576
    assert settings.max_draft_orders == 20
    assert settings.metrics_enabled is False and settings.metrics_require_jwt is True
    assert settings.silent_topics == ("dental-clearance", "pediatric")
    assert settings.suppression_overrides == {"dental-clearance": {"dental-exam-done-elsewhere": 180, "edentulous-patient": 0}}
    path.write_text(NO_JWT + "[cards]\nsilent = ['*']\n")
    assert load_settings(path).silent_topics == ("*",)


def test_a_valid_file_with_every_section_loads(tmp_path):
    """A guard against the schema refusing what README documents."""
    readme = (Path(__file__).resolve().parents[1] / "README.md").read_text(encoding="utf-8")
    example = readme.split("## Configuration for an EHR", 1)[1].split("```toml\n", 1)[1].split("```", 1)[0]
    path = tmp_path / "cds.toml"
    path.write_text(example)
    settings = load_settings(path)
    assert settings.require_jwt and settings.port == 8080 and settings.store_url.startswith("sqlite:///")
    # the block of further keys: every key it shows exists, with the default it states
    further = readme.split("These keys exist too, with these defaults:", 1)[1].split("```toml\n", 1)[1].split("```", 1)[0]
    path.write_text(further.replace("[auth]\n", "[auth]\nrequire_jwt = false\n", 1))
    assert load_settings(path).with_overrides(source_path=None) == Settings(trial_mode=False, host="0.0.0.0")


# --------------------------------------------------------------------------- unauthenticated on a network


def test_no_jwt_on_a_network_address_warns_at_start(make_app, caplog):
    with caplog.at_level("WARNING", logger="cds_service.app"):
        make_app(Settings(trial_mode=False, require_jwt=False, host="0.0.0.0"))
    (warning,) = [r for r in caplog.records if r.name == "cds_service.app" and r.levelname == "WARNING"]
    assert "require_jwt" in warning.getMessage() and "without authentication" in warning.getMessage()


@pytest.mark.parametrize("host", ["127.0.0.1", "localhost", "::1", "127.0.0.2"])
def test_no_jwt_on_loopback_is_quiet(make_app, caplog, host):
    with caplog.at_level("WARNING", logger="cds_service.app"):
        make_app(Settings(trial_mode=False, require_jwt=False, host=host))
    assert not [r for r in caplog.records if r.name == "cds_service.app"]

