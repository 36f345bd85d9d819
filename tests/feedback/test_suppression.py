"""Suppression after an override, silent pilot topics and the knowledge version, through the HTTP
API on both back-ends (card catalog v2, *Suppression after an override*)."""

from __future__ import annotations

import types
import uuid
from datetime import datetime, timedelta

import pytest
from sqlalchemy import select

from cds_service.app import create_app
from cds_service.cards import Finding, Suggestion
from cds_service.config import ConfigError, Settings, settings_from_toml
from cds_service.evaluate import HookService
from cds_service.knowledge import load_knowledge
from cds_service.knowledge.version import knowledge_version
from cds_service.rules.engine import Rule
from cds_service.store.schema import issued_card
from tests.conftest import DEFAULT_AS_OF
from tests.feedback.conftest import order_sign_request

KNOWLEDGE_VERSION = "https://denosumab-cds.org/knowledge-version"


def finding(topic: str, indicator: str) -> Finding:
    return Finding(
        topic=topic,
        indicator=indicator,
        summary=f"{topic} ({indicator})",
        detail="Fixed finding for the test.",
        suggestions=(Suggestion("Order serum calcium and albumin"),),
    )


class Ward:
    """An EHR calling a service whose rules answer what the test says, at the time it says."""

    def __init__(self, settings: Settings | None = None, *findings: Finding):
        self.now = DEFAULT_AS_OF
        self.findings = {f.topic: f for f in findings}
        service = HookService(settings or Settings(), clock=lambda: self.now)
        service.rules = tuple(
            Rule(topic, frozenset(), types.SimpleNamespace(evaluate=lambda ctx, t=topic: self.findings.get(t)))
            for topic in load_knowledge().topics
        )
        self.app = create_app(settings or Settings(), hook_service=service)
        self.app.testing = True
        self.http = self.app.test_client()
        self.signer = None  # (EhrKey, iss, extra claims) when the service requires a JWT

    def post(self, path: str, body: dict):
        headers = {}
        if self.signer is not None:
            from tests.security.ehr import PUBLIC_BASE_URL, bearer, claims_for

            key, iss, extra = self.signer
            headers = bearer(key.sign(claims_for(f"{PUBLIC_BASE_URL}{path}", iss=iss, **extra)))
        return self.http.post(path, json=body, headers=headers)

    @property
    def engine(self):
        return self.app.extensions["denosumab_cds_feedback"].engine

    def set(self, topic: str, indicator: str | None) -> None:
        if indicator is None:
            self.findings.pop(topic, None)
        else:
            self.findings[topic] = finding(topic, indicator)

    def call(self, hook: str = "order-sign", *, patient: str = "pat-wm-0001", encounter: str | None = None,
             draft: str = "draft-prolia-1") -> dict[str, dict]:
        """One hook call (a new encounter unless given); the cards shown, by topic."""
        request = order_sign_request(patient_id=patient)
        request["hook"] = hook
        request["context"]["encounterId"] = encounter or f"enc-{uuid.uuid4().hex[:8]}"
        request["context"]["draftOrders"]["entry"][0]["resource"]["id"] = draft
        if hook == "order-select":
            request["context"]["selections"] = [f"MedicationRequest/{draft}"]
        response = self.post(f"/cds-services/{hook}", request)
        assert response.status_code == 200, response.get_data(as_text=True)
        return {card["source"]["topic"]["code"]: card for card in response.get_json()["cards"]}

    def override(self, card: dict, reason_code: str | None, *, hook: str = "order-sign", after: timedelta = timedelta(minutes=1),
                 only_system_and_code: bool = False) -> None:
        entry = {"card": card["uuid"], "outcome": "overridden",
                 "outcomeTimestamp": (self.now + after).isoformat().replace("+00:00", "Z")}
        if reason_code is not None:
            reason = next(r for r in card["overrideReasons"] if r["code"] == reason_code)
            if only_system_and_code:
                reason = {"system": reason["system"], "code": reason["code"]}
            entry["overrideReason"] = {"reason": reason}
        response = self.post(f"/cds-services/{hook}/feedback", {"feedback": [entry]})
        assert response.status_code == 200, response.get_data(as_text=True)

    def accept(self, card: dict, *, hook: str = "order-sign", after: timedelta = timedelta(minutes=2)) -> None:
        entry = {"card": card["uuid"], "outcome": "accepted", "acceptedSuggestions": [{"id": card["suggestions"][0]["uuid"]}],
                 "outcomeTimestamp": (self.now + after).isoformat().replace("+00:00", "Z")}
        response = self.post(f"/cds-services/{hook}/feedback", {"feedback": [entry]})
        assert response.status_code == 200, response.get_data(as_text=True)

    def later(self, **delta) -> None:
        self.now = self.now + timedelta(**delta)

    def ledger(self) -> list:
        with self.engine.connect() as connection:
            return connection.execute(select(issued_card).order_by(issued_card.c.issued_at)).all()


@pytest.fixture
def settings(backend_url):
    return Settings(store_url=backend_url)


def test_an_override_reason_with_a_period_hides_the_topic_for_that_patient(settings):
    ward = Ward(settings, finding("dental-clearance", "warning"), finding("calcium-monitoring", "warning"))
    cards = ward.call()
    ward.override(cards["dental-clearance"], "dental-exam-done-elsewhere")

    ward.later(days=30)
    shown = ward.call()
    assert set(shown) == {"calcium-monitoring"}  # suppressed for 365 days; the other topic shown
    ward.accept(shown["calcium-monitoring"])  # the card shown is the one on record
    assert set(ward.call(patient="pat-wm-0002")) == {"calcium-monitoring", "dental-clearance"}  # another patient
    ward.later(days=336)  # 366 days after the override
    assert "dental-clearance" in ward.call()

    suppressed = [row for row in ward.ledger() if row.status == "suppressed"]
    assert [(row.topic, row.indicator) for row in suppressed] == [("dental-clearance", "warning")]
    statuses = {row.status for row in ward.ledger()}
    assert statuses == {"issued", "suppressed"}


def test_a_reason_without_a_period_and_a_later_acceptance_suppress_nothing(settings):
    ward = Ward(settings, finding("dental-clearance", "warning"))
    ward.override(ward.call()["dental-clearance"], "dental-clearance-documented")  # no period in the catalog
    assert "dental-clearance" in ward.call()
    card = ward.call()["dental-clearance"]
    ward.override(card, "dental-exam-done-elsewhere")
    ward.accept(card, after=timedelta(minutes=5))  # the clinician changed their mind: the latest outcome counts
    assert "dental-clearance" in ward.call()


def test_the_reason_is_matched_when_the_ehr_sends_only_system_and_code(settings):
    ward = Ward(settings, finding("active-infection", "warning"))
    ward.override(ward.call()["active-infection"], "infection-resolved", only_system_and_code=True)
    ward.later(days=59)
    assert ward.call() == {}
    ward.later(days=2)  # 61 days: the catalog's 60 days are over
    assert "active-infection" in ward.call()


def test_the_deployment_changes_a_period_in_its_configuration(backend_url):
    settings = settings_from_toml(
        {"auth": {"require_jwt": False}, "store": {"url": backend_url},
         "suppression": {"dental-clearance": {"dental-exam-done-elsewhere": 30}}},
        base_dir=".",
    )
    assert settings.suppression_overrides == {"dental-clearance": {"dental-exam-done-elsewhere": 30}}
    ward = Ward(settings, finding("dental-clearance", "warning"))
    ward.override(ward.call()["dental-clearance"], "dental-exam-done-elsewhere")
    ward.later(days=29)
    assert ward.call() == {}
    ward.later(days=2)
    assert "dental-clearance" in ward.call()


@pytest.mark.parametrize(
    "suppression, message",
    [
        ({"no-such-topic": {"x": 1}}, "no such topic"),
        ({"dental-clearance": {"no-such-reason": 30}}, "not an override reason"),
        ({"dental-clearance": {"dental-exam-done-elsewhere": -1}}, "whole number of days"),
        ({"overdue-dose": {"dose-given-elsewhere": {"90mg": 10}}}, "by regimen"),
    ],
)
def test_a_wrong_suppression_setting_stops_start_up(suppression, message):
    with pytest.raises(ConfigError, match=message):
        HookService(Settings(suppression_overrides=suppression))


def test_critical_cards_of_never_suppressed_topics_come_back(settings):
    # A deployment that gives a hypocalcemia reason a period still never hides a critical hypocalcemia.
    settings = settings.with_overrides(suppression_overrides={"hypocalcemia": {"specialist-supervised": 365}})
    ward = Ward(settings, finding("hypocalcemia", "critical"), finding("hypocalcemia-risk", "critical"))
    cards = ward.call()
    ward.override(cards["hypocalcemia"], "specialist-supervised")
    ward.override(cards["hypocalcemia-risk"], "nephrology-supervised")
    ward.later(days=28)  # the next monthly Xgeva dose
    shown = ward.call()
    assert "hypocalcemia" in shown  # never suppressed
    assert "hypocalcemia-risk" not in shown  # the dialysis patient's CKD-MBD card is (catalog: 365 days)


def test_every_never_suppressed_topic_of_the_catalog_is_marked_in_the_seeds():
    topics = load_knowledge().topics
    never = {"hypocalcemia", "pregnancy", "duplicate-denosumab", "dose-too-soon", "osteonecrosis-of-jaw"}
    assert {code for code, topic in topics.items() if topic.never_suppress_critical} == never & set(topics)


def test_a_higher_indicator_comes_back_early(settings):
    ward = Ward(settings, finding("osteonecrosis-of-jaw", "warning"), finding("pregnancy", "info"))
    cards = ward.call()
    ward.override(cards["osteonecrosis-of-jaw"], "onj-resolved-specialist-approved")
    ward.override(cards["pregnancy"], "not-of-reproductive-potential")
    ward.later(days=10)
    assert ward.call() == {}  # both suppressed
    ward.set("osteonecrosis-of-jaw", "critical")  # a new ONJ
    ward.set("pregnancy", "warning")  # an equivocal hCG
    shown = ward.call()
    assert shown["osteonecrosis-of-jaw"]["indicator"] == "critical"
    assert shown["pregnancy"]["indicator"] == "warning"


def test_an_override_at_order_select_hides_the_topic_at_order_sign_of_that_order(settings):
    ward = Ward(settings, finding("calcium-monitoring", "warning"), finding("hypocalcemia", "critical"))
    selected = ward.call("order-select", encounter="enc-5501", draft="draft-prolia-1")
    # Whatever the reason (none here), and even for a never-suppressed critical card.
    ward.override(selected["calcium-monitoring"], None, hook="order-select")
    ward.override(selected["hypocalcemia"], "hypocalcemia-corrected", hook="order-select")
    assert ward.call("order-sign", encounter="enc-5501", draft="draft-prolia-1") == {}
    assert set(ward.call("order-sign", encounter="enc-5501", draft="draft-prolia-2")) == {"calcium-monitoring", "hypocalcemia"}
    assert set(ward.call("order-sign", encounter="enc-9999", draft="draft-prolia-1")) == {"calcium-monitoring", "hypocalcemia"}
    hidden = [row for row in ward.ledger() if row.status == "suppressed"]
    assert sorted(row.hook for row in hidden) == ["order-sign", "order-sign"]
    ward.later(days=2)  # an EHR reusing the encounter and draft id days later is ordering again
    assert set(ward.call("order-sign", encounter="enc-5501", draft="draft-prolia-1")) == {"calcium-monitoring", "hypocalcemia"}


def test_dose_given_elsewhere_hides_overdue_dose_until_the_next_due_date(settings):
    ward = Ward(settings, finding("overdue-dose", "info"))  # the baseline draft is Prolia 60 mg
    ward.override(ward.call()["overdue-dose"], "dose-given-elsewhere")
    ward.later(days=182)
    assert ward.call() == {}
    ward.later(days=2)  # 184 days: the 60 mg regimen's next dose is due
    assert "overdue-dose" in ward.call()


def test_silent_topics_are_recorded_not_returned(settings):
    ward = Ward(settings.with_overrides(silent_topics=("dental-clearance",)),
                finding("dental-clearance", "warning"), finding("calcium-monitoring", "warning"))
    assert set(ward.call()) == {"calcium-monitoring"}
    assert sorted((row.topic, row.status) for row in ward.ledger()) == [
        ("calcium-monitoring", "issued"), ("dental-clearance", "silent")
    ]
    everything = Ward(settings.with_overrides(silent_topics=("*",)), finding("hypocalcemia", "critical"))
    assert everything.call() == {}
    assert [row.status for row in everything.ledger() if row.topic == "hypocalcemia"] == ["silent"]


def test_silent_topics_from_the_configuration_file():
    settings = settings_from_toml({"auth": {"require_jwt": False}, "cards": {"silent": ["pregnancy"]}}, base_dir=".")
    assert settings.silent_topics == ("pregnancy",)
    with pytest.raises(ConfigError, match="no such topic"):
        HookService(Settings(silent_topics=("pregnacy",)))


def test_the_knowledge_version_is_on_every_card_and_in_the_ledger(settings):
    ward = Ward(settings, finding("dental-clearance", "warning"), finding("calcium-monitoring", "warning"))
    version = knowledge_version(load_knowledge(), settings)
    cards = ward.call()
    assert {card["extension"][KNOWLEDGE_VERSION] for card in cards.values()} == {version}
    assert {row.knowledge_version for row in ward.ledger()} == {version}
    assert version.startswith("0.1.0+kb.")

    # A deployment's threshold or suppression change is another knowledge version.
    changed = settings.with_overrides(threshold_overrides={"calcium_lookback_days": 21})
    assert knowledge_version(load_knowledge(threshold_overrides={"calcium_lookback_days": 21}), changed) != version
    assert knowledge_version(
        load_knowledge(), settings.with_overrides(suppression_overrides={"dental-clearance": {"dental-exam-done-elsewhere": 30}})
    ) != version
    assert knowledge_version(load_knowledge(), Settings()) == version  # the store is not knowledge


def test_the_cli_prints_the_version_and_the_knowledge_version(capsys):
    from cds_service.cli import main

    with pytest.raises(SystemExit) as stopped:
        main(["--version"])
    assert stopped.value.code == 0
    out = capsys.readouterr().out
    assert out.split() == ["denosumab-cds", "0.1.0", "knowledge", knowledge_version(load_knowledge(), Settings())]


def test_an_older_store_is_upgraded_in_place(backend_url):
    """A version-1 ledger (cards and feedback from before this release) keeps working."""
    from sqlalchemy import text

    from cds_service.store.ledger import open_engine

    engine = open_engine(backend_url)
    with engine.begin() as connection:
        for ddl in (
            "CREATE TABLE store_meta (name VARCHAR(64) PRIMARY KEY, value TEXT NOT NULL)",
            "CREATE TABLE issued_card (card_uuid VARCHAR(64) PRIMARY KEY, service_id VARCHAR(128) NOT NULL, "
            "hook VARCHAR(64) NOT NULL, hook_instance TEXT NOT NULL, topic VARCHAR(128) NOT NULL, "
            "indicator VARCHAR(16) NOT NULL, issued_at TIMESTAMP WITH TIME ZONE NOT NULL, patient_hash VARCHAR(64) NOT NULL)",
            "CREATE TABLE feedback (id INTEGER PRIMARY KEY, dedup_key VARCHAR(64) NOT NULL UNIQUE, "
            "card_uuid VARCHAR(64) NOT NULL REFERENCES issued_card (card_uuid), outcome VARCHAR(16) NOT NULL, "
            "outcome_at TIMESTAMP WITH TIME ZONE NOT NULL, accepted_suggestions TEXT NOT NULL, override_reason_system TEXT, "
            "override_reason_code TEXT, override_reason_display TEXT, has_user_comment BOOLEAN NOT NULL, "
            "received_at TIMESTAMP WITH TIME ZONE NOT NULL)",
            "INSERT INTO store_meta VALUES ('schema_version', '1')",
            "INSERT INTO issued_card VALUES ('0b6b1c9e-1111-4d6e-9a0e-000000000001', 'order-sign', 'order-sign', "
            "'hi', 'dental-clearance', 'warning', '2026-10-01 10:00:00', 'abc')",
        ):
            connection.execute(text(ddl))
    engine.dispose()
    ward = Ward(Settings(store_url=backend_url), finding("dental-clearance", "warning"))
    assert "dental-clearance" in ward.call()
    rows = ward.ledger()
    assert [(row.topic, row.status, row.knowledge_version) for row in rows][0] == ("dental-clearance", "issued", None)
    assert rows[-1].knowledge_version is not None
    with ward.engine.connect() as connection:
        assert connection.execute(text("SELECT value FROM store_meta WHERE name = 'schema_version'")).scalar_one() == "2"


def test_the_look_up_is_one_query_per_call_with_cards_and_none_without(settings):
    from sqlalchemy import event

    ward = Ward(settings, finding("dental-clearance", "warning"), finding("calcium-monitoring", "warning"))
    ward.override(ward.call()["dental-clearance"], "dental-exam-done-elsewhere")
    statements: list[str] = []
    ledger = ward.app.extensions["denosumab_cds"].card_gate.ledger
    for engine in {ledger.engine, ledger.reader}:  # the look-up reads through its reader's connections
        event.listen(engine, "before_cursor_execute", lambda *args: statements.append(args[2].lstrip().split()[0].upper()))
    ward.call()
    reads = [s for s in statements if s == "SELECT"]
    assert len(reads) == 1  # the suppression look-up; the rest is the ledger write
    statements.clear()
    ward.set("dental-clearance", None)
    ward.set("calcium-monitoring", None)
    assert ward.call() == {}
    assert statements == []


def test_the_readme_configuration_of_periods_by_regimen_is_accepted(tmp_path):
    from cds_service.config import load_settings

    config = tmp_path / "service.toml"
    config.write_text(
        "[auth]\nrequire_jwt = false\n[cards]\nsilent = [\"atypical-femoral-fracture\"]\n"
        "[suppression.dental-clearance]\ndental-exam-done-elsewhere = 180\n"
        "[suppression.overdue-dose]\ndose-given-elsewhere = { 60mg = 183, 120mg = 28 }\n",
        encoding="utf-8",
    )
    policy = HookService(load_settings(config)).suppression
    assert policy.reason("overdue-dose", None, "dose-given-elsewhere").suppression_days("120mg") == 28
    assert policy.reason("dental-clearance", None, "dental-exam-done-elsewhere").suppression_days(None) == 180
    assert policy.is_silent("atypical-femoral-fracture") and not policy.is_silent("dental-clearance")
    with pytest.raises(ConfigError, match="list of topic codes"):
        HookService(Settings(silent_topics="*"))
