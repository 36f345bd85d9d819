"""The configuration keys of issue 16, read from TOML in today's style (the config branch ports them)."""

from __future__ import annotations

from pathlib import Path

import pytest

from cds_service.config import ConfigError, Settings, settings_from_toml

BASE = {"auth": {"require_jwt": False}}


def _settings(**tables) -> Settings:
    return settings_from_toml(BASE | tables, base_dir=Path("."))


def test_defaults():
    settings = _settings()
    assert settings.fhir_max_response_bytes == 16 * 1024 * 1024
    assert settings.max_draft_orders == 50
    assert settings.max_token_lifetime_seconds == 300
    assert Settings().max_draft_orders == 50  # trial mode too


def test_each_key_is_read_from_its_table():
    settings = _settings(
        fhir={"max_response_bytes": 1048576},
        server={"max_draft_orders": 10},
        auth={"require_jwt": False, "max_token_lifetime_seconds": 120},
    )
    assert (settings.fhir_max_response_bytes, settings.max_draft_orders, settings.max_token_lifetime_seconds) == (1048576, 10, 120)


@pytest.mark.parametrize("tables", [
    {"fhir": {"max_response_bytes": 0}},
    {"server": {"max_draft_orders": 0}},
    {"auth": {"require_jwt": False, "max_token_lifetime_seconds": -1}},
])
def test_non_positive_values_are_refused(tables):
    with pytest.raises(ConfigError):
        _settings(**tables)
