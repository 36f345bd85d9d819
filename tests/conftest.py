"""Shared test fixtures: the app on trial settings with a fixed clock, and fixture loading."""

from __future__ import annotations

import json
from datetime import datetime, timezone
from pathlib import Path

import pytest

from cds_service.app import create_app
from cds_service.cards import build as card_builder
from cds_service.cards.validate import response_problems
from cds_service.config import Settings
from cds_service.evaluate import HookService

ROOT = Path(__file__).resolve().parents[1]
FIXTURES = ROOT / "fixtures"
SCENARIOS = FIXTURES / "scenarios"
DEFAULT_AS_OF = datetime(2026, 11, 25, 15, 0, tzinfo=timezone.utc)


def load_scenario(path: Path) -> dict:
    return json.loads(path.read_text(encoding="utf-8"))


def scenario_paths() -> list[Path]:
    return sorted(SCENARIOS.rglob("*.json"))


def assert_valid_cds_response(body: dict) -> None:
    problems = response_problems(body)
    assert not problems, problems


@pytest.fixture(autouse=True)
def isolated_store(tmp_path, monkeypatch):
    """Each test gets its own store (card ledger, feedback, JWT replay cache), never ./var."""
    monkeypatch.setenv("DENOSUMAB_CDS_STORE_URL", f"sqlite:///{tmp_path / 'store.sqlite3'}")


@pytest.fixture(autouse=True)
def every_response_is_valid_cds_hooks(request, monkeypatch):
    """Every response any test makes the service build is checked against CDS Hooks 2.0
    (cds-resp-1..6, required fields, no empty values), and no card may have been dropped as
    invalid on the way (the card builder drops and logs those rather than fail the call)."""
    problems: list[str] = []
    original = HookService.evaluate

    def checked(self, *args, **kwargs):
        outcome = original(self, *args, **kwargs)
        problems.extend(response_problems(outcome.response))
        return outcome

    def record_dropped_card(message, *args, **_kwargs):
        problems.append(message % args)

    monkeypatch.setattr(HookService, "evaluate", checked)
    if "allows_invalid_cards" not in request.keywords:
        monkeypatch.setattr(card_builder.logger, "error", record_dropped_card)
    yield
    assert not problems, problems


@pytest.fixture
def settings() -> Settings:
    return Settings()


@pytest.fixture
def make_app():
    """Factory: an app with the given settings and a clock fixed at `as_of`."""

    def factory(settings: Settings | None = None, as_of: datetime = DEFAULT_AS_OF):
        app = create_app(settings or Settings(), clock=lambda: as_of)
        app.testing = True
        return app

    return factory


@pytest.fixture
def client(make_app):
    return make_app().test_client()
