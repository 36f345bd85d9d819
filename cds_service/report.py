"""`denosumab-cds report`: what clinicians did with each kind of card, for the CDS committee.

Per card topic: cards issued, accepted, overridden, no response, the acceptance rate, the top
override reasons and the suggestions taken. The period is by the time a card was issued
(`--since` inclusive, `--until` exclusive, UTC), and its feedback counts whenever it came.

Counting rules:
- every card counts once, by its **latest** outcome (greatest outcomeTimestamp; if two are equal,
  the one received last): a card overridden and later accepted counts as accepted;
- "no response" is a card with no feedback at all (many EHRs send none for a card that was
  only looked at);
- acceptance rate = accepted / issued (a card without feedback counts as not accepted, as in the
  usual "override rate" of alert reviews), empty when nothing was issued;
- override reasons and accepted suggestions are those of each card's latest outcome.
"""

from __future__ import annotations

import csv
import html
import io
import json
import sys
from collections import Counter
from dataclasses import asdict, dataclass, field
from datetime import datetime
from pathlib import Path

from cds_service.record.dates import parse_day_or_time

FORMATS = ("table", "csv", "json")
NO_REASON = ("", "", "(no reason given)")


@dataclass
class Count:
    label: str
    count: int
    code: str | None = None
    system: str | None = None


@dataclass
class TopicRow:
    topic: str
    display: str
    issued: int = 0
    accepted: int = 0
    overridden: int = 0
    no_response: int = 0
    override_reasons: list[Count] = field(default_factory=list)
    accepted_suggestions: list[Count] = field(default_factory=list)

    @property
    def acceptance_rate(self) -> float | None:
        return self.accepted / self.issued if self.issued else None

    def to_json(self) -> dict:
        data = asdict(self)
        data["acceptance_rate"] = None if self.acceptance_rate is None else round(self.acceptance_rate, 4)
        for key in ("override_reasons", "accepted_suggestions"):
            data[key] = [{k: v for k, v in item.items() if v is not None} for item in data[key]]
        return data


@dataclass
class Report:
    since: datetime | None
    until: datetime | None
    topics: list[TopicRow]
    total: TopicRow

    def to_json(self) -> dict:
        return {
            "since": self.since.isoformat() if self.since else None,
            "until": self.until.isoformat() if self.until else None,
            "topics": [row.to_json() for row in self.topics],
            "total": {k: v for k, v in self.total.to_json().items() if k not in ("override_reasons", "accepted_suggestions")},
        }


def build_report(engine, *, since: datetime | None = None, until: datetime | None = None, top: int = 5, topic_displays=None) -> Report:
    """Read the ledger and the feedback of the period in one snapshot and count."""
    from sqlalchemy import select

    from cds_service.store.schema import feedback, issued_card, issued_suggestion

    window = []
    if since is not None:
        window.append(issued_card.c.issued_at >= since)
    if until is not None:
        window.append(issued_card.c.issued_at < until)
    with engine.begin() as connection:
        topic_of = dict(connection.execute(select(issued_card.c.card_uuid, issued_card.c.topic).where(*window)).all())
        label_of = dict(
            connection.execute(
                select(issued_suggestion.c.suggestion_uuid, issued_suggestion.c.label)
                .join(issued_card, issued_card.c.card_uuid == issued_suggestion.c.card_uuid)
                .where(*window)
            ).all()
        )
        latest: dict[str, tuple] = {}
        rows = connection.execute(
            select(
                feedback.c.card_uuid,
                feedback.c.outcome,
                feedback.c.accepted_suggestions,
                feedback.c.override_reason_system,
                feedback.c.override_reason_code,
                feedback.c.override_reason_display,
            )
            .join(issued_card, issued_card.c.card_uuid == feedback.c.card_uuid)
            .where(*window)
            .order_by(feedback.c.card_uuid, feedback.c.outcome_at, feedback.c.id)
        )
        for row in rows:
            latest[row.card_uuid] = row  # ordered by time within a card: the last one wins

    displays = topic_displays or {}
    by_topic: dict[str, TopicRow] = {}
    reasons: dict[str, Counter] = {}
    reason_labels: dict[tuple[str, str], Counter] = {}
    suggestions: dict[str, Counter] = {}
    for card_uuid, topic in topic_of.items():
        row = by_topic.setdefault(topic, TopicRow(topic, displays.get(topic, topic)))
        row.issued += 1
        outcome = latest.get(card_uuid)
        if outcome is None:
            row.no_response += 1
        elif outcome.outcome == "accepted":
            row.accepted += 1
            for suggestion_uuid in json.loads(outcome.accepted_suggestions):
                suggestions.setdefault(topic, Counter())[label_of.get(suggestion_uuid, suggestion_uuid)] += 1
        else:
            row.overridden += 1
            key = (outcome.override_reason_system or "", outcome.override_reason_code or "")
            reasons.setdefault(topic, Counter())[key] += 1
            if outcome.override_reason_display:
                reason_labels.setdefault(key, Counter())[outcome.override_reason_display] += 1

    def reason_count(key, count) -> Count:
        if key == NO_REASON[:2]:
            return Count(NO_REASON[2], count)
        shown = reason_labels.get(key)
        return Count(shown.most_common(1)[0][0] if shown else key[1], count, code=key[1], system=key[0] or None)

    for topic, row in by_topic.items():
        ranked = sorted(reasons.get(topic, Counter()).items(), key=lambda item: (-item[1], item[0]))
        row.override_reasons = [reason_count(key, count) for key, count in ranked[:top]]
        ranked_suggestions = sorted(suggestions.get(topic, Counter()).items(), key=lambda item: (-item[1], item[0]))
        row.accepted_suggestions = [Count(label, count) for label, count in ranked_suggestions[:top]]
    topics = sorted(by_topic.values(), key=lambda r: (-r.issued, r.topic))
    total = TopicRow("total", "All topics")
    for row in topics:
        total.issued += row.issued
        total.accepted += row.accepted
        total.overridden += row.overridden
        total.no_response += row.no_response
    return Report(since, until, topics, total)


# --- rendering ------------------------------------------------------------------------------


def _rate(row: TopicRow) -> str:
    return "" if row.acceptance_rate is None else f"{row.acceptance_rate * 100:.1f}%"


def _period(report: Report) -> str:
    start = report.since.isoformat() if report.since else "the beginning"
    end = report.until.isoformat() if report.until else "now"
    return f"cards issued from {start} to {end}"


def _counts_text(counts: list[Count]) -> str:
    return "; ".join(f"{c.label}{f' [{c.code}]' if c.code else ''} ({c.count})" for c in counts)


def render_table(report: Report) -> str:
    headers = ["Topic", "Issued", "Accepted", "Overridden", "No response", "Acceptance"]
    rows = [[r.topic, str(r.issued), str(r.accepted), str(r.overridden), str(r.no_response), _rate(r)] for r in report.topics]
    total = report.total
    rows.append(["TOTAL", str(total.issued), str(total.accepted), str(total.overridden), str(total.no_response), _rate(total)])
    widths = [max(len(line[i]) for line in [headers, *rows]) for i in range(len(headers))]

    def line(cells):
        return "  ".join(cell.ljust(widths[0]) if i == 0 else cell.rjust(widths[i]) for i, cell in enumerate(cells)).rstrip()

    out = [f"Denosumab CDS: card outcomes, {_period(report)}", "", line(headers), line(["-" * w for w in widths])]
    out += [line(r) for r in rows[:-1]]
    out += [line(["-" * w for w in widths]), line(rows[-1])]
    for row in report.topics:
        if not (row.override_reasons or row.accepted_suggestions):
            continue
        out += ["", f"{row.topic} ({row.display})"]
        if row.override_reasons:
            out.append("  Top override reasons:")
            out += [f"    {c.count:>5}  {c.label}{f' [{c.code}]' if c.code else ''}" for c in row.override_reasons]
        if row.accepted_suggestions:
            out.append("  Accepted suggestions:")
            out += [f"    {c.count:>5}  {c.label}" for c in row.accepted_suggestions]
    out += ["", "Acceptance = accepted / issued; each card counts once, by its latest feedback."]
    return "\n".join(out) + "\n"


def render_csv(report: Report) -> str:
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(
        ["topic", "display", "issued", "accepted", "overridden", "no_response", "acceptance_rate", "top_override_reasons", "accepted_suggestions"]
    )
    for row in [*report.topics, report.total]:
        rate = "" if row.acceptance_rate is None else f"{row.acceptance_rate:.4f}"
        writer.writerow(
            [row.topic, row.display, row.issued, row.accepted, row.overridden, row.no_response, rate,
             _counts_text(row.override_reasons), _counts_text(row.accepted_suggestions)]
        )
    return buffer.getvalue()


def render_json(report: Report) -> str:
    return json.dumps(report.to_json(), indent=2) + "\n"


# Colour-blind-safe pair (blue / orange) plus grey for "no response".
_SERIES = (("accepted", "Accepted", "#0072B2"), ("overridden", "Overridden", "#E69F00"), ("no_response", "No response", "#BBBBBB"))


def render_svg(report: Report) -> str:
    """A horizontal 100 % stacked bar per topic: accepted, overridden, no response."""
    bar_height, gap, label_width, bar_width, top = 22, 10, 260, 520, 76
    rows = report.topics
    height = top + len(rows) * (bar_height + gap) + 20
    width = label_width + bar_width + 150
    parts = [
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" viewBox="0 0 {width} {height}" '
        'font-family="Helvetica, Arial, sans-serif" font-size="13" role="img" aria-label="Card outcomes by topic">',
        f'<text x="0" y="18" font-size="16" font-weight="bold">Card outcomes by topic</text>',
        f'<text x="0" y="38" fill="#555">{html.escape(_period(report))}</text>',
    ]
    x = label_width
    for key, name, colour in _SERIES:
        parts.append(f'<rect x="{x}" y="{top - 26}" width="12" height="12" fill="{colour}"/>')
        parts.append(f'<text x="{x + 16}" y="{top - 16}">{name}</text>')
        x += 130
    for index, row in enumerate(rows):
        y = top + index * (bar_height + gap)
        parts.append(f'<text x="{label_width - 8}" y="{y + bar_height - 6}" text-anchor="end">{html.escape(row.topic)}</text>')
        x = float(label_width)
        for key, name, colour in _SERIES:
            value = getattr(row, key)
            if not value:
                continue
            w = bar_width * value / row.issued
            parts.append(
                f'<rect x="{x:.1f}" y="{y}" width="{w:.1f}" height="{bar_height}" fill="{colour}">'
                f"<title>{html.escape(row.topic)}: {name.lower()} {value} of {row.issued}</title></rect>"
            )
            x += w
        parts.append(
            f'<text x="{label_width + bar_width + 8}" y="{y + bar_height - 6}">{_rate(row)} accepted of {row.issued}</text>'
        )
    if not rows:
        parts.append(f'<text x="0" y="{top + 16}">No cards were issued in this period.</text>')
    parts.append("</svg>")
    return "\n".join(parts) + "\n"


def render_html(report: Report) -> str:
    """A self-contained page (no script, no external file) for the slide deck: chart and table."""
    header = "".join(f"<th>{h}</th>" for h in ("Topic", "Issued", "Accepted", "Overridden", "No response", "Acceptance", "Top override reasons", "Accepted suggestions"))
    body = []
    for row in [*report.topics, report.total]:
        cells = [html.escape(row.topic if row is not report.total else "Total"), row.issued, row.accepted, row.overridden,
                 row.no_response, _rate(row), html.escape(_counts_text(row.override_reasons)), html.escape(_counts_text(row.accepted_suggestions))]
        body.append("<tr>" + "".join(f"<td>{cell}</td>" for cell in cells) + "</tr>")
    return (
        "<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\"><title>Denosumab CDS: card outcomes</title>\n"
        "<style>body{font-family:Helvetica,Arial,sans-serif;margin:2em}table{border-collapse:collapse;margin-top:2em}"
        "td,th{border:1px solid #ccc;padding:4px 8px;text-align:left;vertical-align:top}"
        "td:nth-child(n+2):nth-child(-n+6){text-align:right}</style></head><body>\n"
        f"{render_svg(report)}"
        f"<table><thead><tr>{header}</tr></thead><tbody>\n" + "\n".join(body) + "\n</tbody></table>\n"
        "<p>Acceptance = accepted / issued; each card counts once, by its latest feedback.</p>\n</body></html>\n"
    )


RENDERERS = {"table": render_table, "csv": render_csv, "json": render_json}


def run_report(args) -> int:
    """The CLI command (arguments defined in `cds_service.cli`)."""
    from sqlalchemy.exc import SQLAlchemyError

    from cds_service.config import ConfigError, load_settings, unsupported_store_url
    from cds_service.knowledge import load_knowledge
    from cds_service.store.ledger import describe_url, open_engine, store_url
    from cds_service.store.schema import migrate

    try:
        since = parse_day_or_time(args.since) if args.since else None
        until = parse_day_or_time(args.until) if args.until else None
    except ValueError as error:
        print(f"report: {error}", file=sys.stderr)
        return 2
    if since and until and since >= until:
        print(f"report: --since {args.since} is not before --until {args.until} (the period would be empty)", file=sys.stderr)
        return 2
    url = store_url(load_settings(args.config))
    if problem := unsupported_store_url(url):
        raise ConfigError(f"store.url: {problem}")
    try:
        engine = open_engine(url, read_only=True)
        database = engine.url.database
        if engine.dialect.name == "sqlite" and database and database != ":memory:" and not Path(database).exists():
            print(f"report: no store at {describe_url(url)} yet (the service creates it when it starts)", file=sys.stderr)
            return 1
        migrate(engine)  # a store written by an older release is brought up to date first
        displays = {code: topic.display for code, topic in load_knowledge().topics.items()}
        report = build_report(engine, since=since, until=until, top=args.top, topic_displays=displays)
    except (SQLAlchemyError, OSError) as error:
        cause = getattr(error, "orig", None) or error
        print(f"report: cannot read the store at {describe_url(url)}: {' '.join(str(cause).split())}", file=sys.stderr)
        return 1
    sys.stdout.write(RENDERERS[args.format](report))
    if args.plot:
        plot = Path(args.plot)
        plot.write_text(render_svg(report) if plot.suffix.lower() == ".svg" else render_html(report), encoding="utf-8")
        print(f"chart written to {plot}", file=sys.stderr)
    return 0
