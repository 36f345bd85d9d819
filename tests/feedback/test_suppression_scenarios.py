"""Suppression with the real rules on the scenario fixtures: the issue's own examples."""

from __future__ import annotations

import uuid
from datetime import datetime, timedelta

from sqlalchemy import select

from cds_service.store.schema import issued_card
from tests.conftest import SCENARIOS, load_scenario

OVERRIDE_REASON_SYSTEM = "https://denosumab-cds.org/fhir/CodeSystem/override-reason"


def call(make_app, scenario: dict, as_of: datetime, encounter: str | None = None) -> dict[str, dict]:
    request = {**scenario["request"], "hookInstance": str(uuid.uuid4())}
    if encounter:  # a later visit
        request["context"] = {**request["context"], "encounterId": encounter}
    response = make_app(as_of=as_of).test_client().post(f"/cds-services/{scenario['service']}", json=request)
    assert response.status_code == 200, response.get_data(as_text=True)
    return {card["source"]["topic"]["code"]: card for card in response.get_json()["cards"]}


def override(make_app, scenario: dict, card: dict, code: str, at: datetime) -> None:
    entry = {"card": card["uuid"], "outcome": "overridden", "outcomeTimestamp": at.isoformat(),
             "overrideReason": {"reason": {"system": OVERRIDE_REASON_SYSTEM, "code": code}}}
    response = make_app().test_client().post(f"/cds-services/{scenario['service']}/feedback", json={"feedback": [entry]})
    assert response.status_code == 200, response.get_data(as_text=True)


def statuses(make_app, topic: str) -> list[str]:
    engine = make_app().extensions["denosumab_cds_feedback"].engine
    with engine.connect() as connection:
        return connection.execute(
            select(issued_card.c.status).where(issued_card.c.topic == topic).order_by(issued_card.c.issued_at)
        ).scalars().all()


def test_the_dialysis_patient_on_cinacalcet_is_not_warned_every_month_once_nephrology_supervises(make_app):
    scenario = load_scenario(SCENARIOS / "hypocalcemia-risk" / "fires-critical-dialysis-z99-2-with-cinacalcet.json")
    as_of = datetime.fromisoformat(scenario["asOf"])
    card = call(make_app, scenario, as_of)["hypocalcemia-risk"]
    assert card["indicator"] == "critical"
    override(make_app, scenario, card, "nephrology-supervised", as_of + timedelta(minutes=2))

    assert "hypocalcemia-risk" not in call(make_app, scenario, as_of + timedelta(days=28), "enc-next-month")
    assert statuses(make_app, "hypocalcemia-risk") == ["issued", "suppressed"]  # the rule still fired


def test_an_outside_dose_of_xgeva_hides_overdue_dose_for_the_120_mg_interval(make_app):
    scenario = load_scenario(
        SCENARIOS / "overdue-dose" / "fires-info-order-120mg-xgeva-49-days-after-last-dose-over-35-days-medication-prescribe-bare-list.json"
    )
    as_of = datetime.fromisoformat(scenario["asOf"])
    card = call(make_app, scenario, as_of)["overdue-dose"]
    override(make_app, scenario, card, "dose-given-elsewhere", as_of + timedelta(minutes=1))

    assert "overdue-dose" not in call(make_app, scenario, as_of + timedelta(days=20), "enc-visit-2")
    assert "overdue-dose" in call(make_app, scenario, as_of + timedelta(days=29), "enc-visit-3")  # 120 mg: 28 days, not 183
    assert statuses(make_app, "overdue-dose") == ["issued", "suppressed", "issued"]
