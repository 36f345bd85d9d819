"""`denosumab-cds report`: the committee's numbers, counted the documented way, on both back-ends."""

from __future__ import annotations

import csv
import io
import json
from datetime import datetime, timezone

import pytest

from cds_service.cli import main
from cds_service.config import Settings
from cds_service.report import build_report, parse_day_or_time
from tests.feedback.conftest import accepted, card_by_topic, issue_cards, make_card_app, overridden

FEEDBACK = "/cds-services/order-sign/feedback"
OCTOBER = datetime(2026, 10, 15, 9, 30, tzinfo=timezone.utc)


def post(client, *entries):
    response = client.post(FEEDBACK, json={"feedback": list(entries)})
    assert response.status_code == 200, response.get_data(as_text=True)


def committee_month(settings: Settings | None = None):
    """Six cards in November with known outcomes, two in October; returns the November app and cards."""
    october = make_card_app(settings, as_of=OCTOBER)
    old = issue_cards(october.test_client())
    post(october.test_client(), overridden(card_by_topic(old, "dental-clearance"), reason=0))

    app = make_card_app(settings)
    client = app.test_client()
    responses = [issue_cards(client, patient_id=f"pat-{i}") for i in range(3)]
    monitoring = [card_by_topic(cards, "calcium-monitoring") for cards in responses]
    dental = [card_by_topic(cards, "dental-clearance") for cards in responses]
    post(client, accepted(monitoring[0], 0), overridden(dental[0], reason=1, comment="patient refuses"))
    # Overridden first, accepted ten minutes later: counts as accepted.
    post(client, overridden(monitoring[1], reason=0, at="2026-11-25T15:01:00Z"))
    post(client, accepted(monitoring[1], 1, at="2026-11-25T15:11:00Z"))
    # Sent in the opposite order: the outcome time decides, not the arrival order.
    post(client, overridden(dental[1], reason=1, at="2026-11-25T15:30:00Z"))
    post(client, accepted(dental[1], 0, at="2026-11-25T15:02:00Z"))
    post(client, overridden(dental[2]))  # no reason given
    post(client, overridden(dental[2]))  # a resend changes nothing
    # monitoring[2]: no feedback at all.
    return app, monitoring, dental


def test_counts_per_topic_by_latest_outcome(backend_url):
    app, monitoring, dental = committee_month(Settings(store_url=backend_url))
    engine = app.extensions["denosumab_cds_feedback"].engine
    report = build_report(engine, since=parse_day_or_time("2026-11-01"))
    rows = {row.topic: row for row in report.topics}
    assert set(rows) == {"calcium-monitoring", "dental-clearance"}

    calcium = rows["calcium-monitoring"]
    assert (calcium.issued, calcium.accepted, calcium.overridden, calcium.no_response) == (3, 2, 0, 1)
    assert calcium.acceptance == pytest.approx(2 / 3)
    assert calcium.override_reasons == []
    assert sorted((c.label, c.count) for c in calcium.accepted_suggestions) == sorted(
        [(monitoring[0]["suggestions"][0]["label"], 1), (monitoring[1]["suggestions"][1]["label"], 1)]
    )

    dental_row = rows["dental-clearance"]
    assert (dental_row.issued, dental_row.accepted, dental_row.overridden, dental_row.no_response) == (3, 0, 3, 0)
    assert dental_row.acceptance == 0
    reason = dental[0]["overrideReasons"][1]
    assert [(c.label, c.code, c.count) for c in dental_row.override_reasons] == [
        (reason["display"], reason["code"], 2),
        ("(no reason given)", None, 1),
    ]
    assert dental_row.accepted_suggestions == []  # dental[1]'s acceptance was superseded

    total = report.total
    assert (total.issued, total.accepted, total.overridden, total.no_response) == (6, 2, 3, 1)

    everything = build_report(engine)  # October's two cards come back without --since
    assert everything.total.issued == 8 and everything.total.overridden == 4
    october_only = build_report(engine, until=parse_day_or_time("2026-11-01"))
    assert (october_only.total.issued, october_only.total.overridden, october_only.total.no_response) == (2, 1, 1)


def test_top_limits_the_reasons_listed(tmp_path):
    app, _, _ = committee_month()
    engine = app.extensions["denosumab_cds_feedback"].engine
    rows = {row.topic: row for row in build_report(engine, since=parse_day_or_time("2026-11-01"), top=1).topics}
    assert [c.count for c in rows["dental-clearance"].override_reasons] == [2]


def test_the_cli_prints_table_csv_and_json_and_draws_the_chart(tmp_path, capsys):
    committee_month()
    plot = tmp_path / "acceptance.html"
    assert main(["report", "--since", "2026-11-01", "--format", "csv", "--plot", str(plot)]) == 0
    rows = {row["topic"]: row for row in csv.DictReader(io.StringIO(capsys.readouterr().out)) if row["split"] in ("topic", "total")}
    assert rows["calcium-monitoring"]["issued"] == "3"
    assert rows["calcium-monitoring"]["acceptance"] == "0.6667"
    assert rows["dental-clearance"]["overridden"] == "3"
    assert "(no reason given) (1)" in rows["dental-clearance"]["top_override_reasons"]
    assert rows["total"]["no_response"] == "1"

    page = plot.read_text()
    assert page.startswith("<!DOCTYPE html>") and "<svg" in page
    assert "No recent calcium result: accepted 2 of 3 shown" in page
    assert "Dental evaluation before denosumab: overridden 3 of 3 shown" in page
    assert "<script" not in page

    assert main(["report", "--since", "2026-11-01", "--format", "json"]) == 0
    data = json.loads(capsys.readouterr().out)
    by_topic = {t["topic"]: t for t in data["topics"]}
    assert by_topic["calcium-monitoring"]["acceptance"] == 0.6667
    assert data["total"]["issued"] == 6

    assert main(["report", "--since", "2026-11-01"]) == 0
    table = capsys.readouterr().out
    line = next(line for line in table.splitlines() if line.startswith("No recent calcium result *"))
    assert line.split()[5:] == ["3", "2", "(67%)", "0", "(0%)", "1", "(33%)", "66.7%", "0.0%", "0", "0"]
    assert "Top override reasons:" in table and "(no reason given)" in table


def test_the_svg_chart_alone(tmp_path, capsys):
    committee_month()
    plot = tmp_path / "acceptance.svg"
    assert main(["report", "--format", "json", "--plot", str(plot)]) == 0
    assert plot.read_text().startswith("<svg")


def test_cli_errors(tmp_path, monkeypatch, capsys):
    assert main(["report", "--since", "last month"]) == 2
    assert "not a date" in capsys.readouterr().err
    monkeypatch.setenv("DENOSUMAB_CDS_STORE_URL", f"sqlite:///{tmp_path / 'nothing-here.sqlite3'}")
    assert main(["report"]) == 1
    assert "no store" in capsys.readouterr().err
    assert not (tmp_path / "nothing-here.sqlite3").exists()


def test_an_empty_period():
    app = make_card_app()
    engine = app.extensions["denosumab_cds_feedback"].engine
    report = build_report(engine, since=parse_day_or_time("2027-01-01"))
    assert report.topics == [] and report.total.issued == 0 and report.total.acceptance is None
