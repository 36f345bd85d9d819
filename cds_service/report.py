"""`denosumab-cds report`: what clinicians did with each kind of card, for the CDS committee.

Per card topic (by its display name): decisions shown, accepted, overridden, no response, the
acceptance and override rates, suppressed and silent cards, the top override reasons and the
suggestions taken; then the same split by indicator, service, EHR client and knowledge version,
and on request (`--by month`) the monthly trend of the override rate. The period is by the time a
card was issued (`--since` inclusive, `--until` exclusive, UTC); its feedback counts whenever it came.

Counting rules:
- **one decision counts once**: the cards of one topic for the same draft order in one ordering
  session (same encounter; order-select as the order changes, then order-sign) are one decision,
  with the latest outcome of any of them; every other card is a decision of its own;
- a decision's outcome is its **latest** feedback (greatest outcomeTimestamp; if two are equal,
  the one received last): overridden and later accepted counts as accepted;
- "no response" is a decision shown with no feedback at all;
- a decision is *shown* when any of its cards reached the EHR; *suppressed* (after an override)
  or *silent* (pilot topic) decisions were never seen and are counted apart;
- acceptance = accepted / shown decisions whose cards offered a suggestion (CDS Hooks allows
  "accepted" only with a suggestion taken): "n/a" for a topic whose cards offer none, where the
  override rate (overridden / shown) is what counts;
- a row with fewer than 10 shown decisions is flagged as too few to judge;
- override reasons are named by the topic's own reasons when the EHR sends our code (with our
  system or none), else by the display the EHR sent, else by the code.
"""

from __future__ import annotations

import csv
import html
import io
import json
import sys
from collections import Counter, defaultdict
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from pathlib import Path

from cds_service.record.dates import parse_day_or_time

FORMATS = ("table", "csv", "json")
SPLITS = ("indicator", "service", "client", "version", "month")
DEFAULT_SPLITS = ("indicator", "service")
TOO_FEW_TO_JUDGE = 10
NO_REASON = "(no reason given)"
NO_CLIENT = "(no JWT: trial mode)"
NO_VERSION = "(not recorded)"


@dataclass
class Count:
    label: str
    count: int
    code: str | None = None
    system: str | None = None

    def to_json(self) -> dict:
        return {k: v for k, v in (("label", self.label), ("count", self.count), ("code", self.code), ("system", self.system)) if v is not None}


@dataclass
class TopicRow:
    topic: str
    display: str
    split: str | None = None  # the value of the split this row is for (an indicator, a month ...)
    issued: int = 0  # decisions shown to a clinician
    accepted: int = 0
    overridden: int = 0
    no_response: int = 0
    suppressed: int = 0
    silent: int = 0
    with_suggestions: int = 0  # shown decisions whose cards offered a suggestion
    knowledge_versions: set = field(default_factory=set)
    override_reasons: list[Count] = field(default_factory=list)
    accepted_suggestions: list[Count] = field(default_factory=list)

    @property
    def acceptance(self) -> float | None:
        """None when n/a: no shown card offered a suggestion."""
        return self.accepted / self.with_suggestions if self.with_suggestions else None

    @property
    def override_rate(self) -> float | None:
        return self.overridden / self.issued if self.issued else None

    @property
    def too_few_to_judge(self) -> bool:
        return self.issued < TOO_FEW_TO_JUDGE

    def add(self, other: "TopicRow") -> None:
        for name in ("issued", "accepted", "overridden", "no_response", "suppressed", "silent", "with_suggestions"):
            setattr(self, name, getattr(self, name) + getattr(other, name))
        self.knowledge_versions |= other.knowledge_versions

    def to_json(self, split_name: str | None = None) -> dict:
        data = {"topic": self.topic, "display": self.display}
        if split_name:
            data[split_name] = self.split
        data.update(
            issued=self.issued,
            accepted=self.accepted,
            overridden=self.overridden,
            no_response=self.no_response,
            suppressed=self.suppressed,
            silent=self.silent,
            acceptance=_rounded(self.acceptance),
            override_rate=_rounded(self.override_rate),
            too_few_to_judge=self.too_few_to_judge,
            knowledge_versions=sorted(self.knowledge_versions),
        )
        if not split_name:
            data["override_reasons"] = [c.to_json() for c in self.override_reasons]
            data["accepted_suggestions"] = [c.to_json() for c in self.accepted_suggestions]
        return data


def _rounded(value: float | None) -> float | None:
    return None if value is None else round(value, 4)


@dataclass
class Report:
    since: datetime | None
    until: datetime | None
    generated_at: datetime
    topics: list[TopicRow]
    total: TopicRow
    splits: dict[str, list[TopicRow]]  # split name -> rows (topic x value)
    knowledge_versions: list[str]

    def to_json(self, splits=SPLITS) -> dict:
        return {
            "period": {
                "since": self.since.isoformat() if self.since else None,
                "until": self.until.isoformat() if self.until else None,
                "text": period_in_words(self.since, self.until),
            },
            "generated": self.generated_at.isoformat(timespec="seconds"),
            "knowledge_versions": self.knowledge_versions,
            "topics": [row.to_json() for row in self.topics],
            "total": {k: v for k, v in self.total.to_json().items() if k not in ("override_reasons", "accepted_suggestions")},
            **{f"by_{name}": [row.to_json(name) for row in self.splits[name]] for name in splits if name in self.splits},
        }


@dataclass
class _Decision:
    """The cards of one decision and what became of them."""

    cards: list = field(default_factory=list)
    outcome: object = None  # the latest feedback row, or None

    @property
    def status(self) -> str:
        from cds_service.store.schema import CARD_STATUSES

        statuses = {card.status for card in self.cards}
        return next(s for s in CARD_STATUSES if s in statuses)  # shown once shown at all

    @property
    def representative(self):
        """The card the decision is filed under: the one answered last, else the latest one shown."""
        if self.outcome is not None:
            return next(card for card in self.cards if card.card_uuid == self.outcome.card_uuid)
        status = self.status
        return max((card for card in self.cards if card.status == status), key=lambda card: card.issued_at)


def _decisions(cards: list) -> list[_Decision]:
    """Group cards (in order of issue): same topic and a shared ordering-session key within one
    session's length of the session's first card (union-find), else alone."""
    from cds_service.suppression import ORDER_SESSION

    parent: dict[str, str] = {}

    def root(uuid: str) -> str:
        while parent.get(uuid, uuid) != uuid:
            uuid = parent[uuid]
        return uuid

    first_of: dict[tuple[str, str], tuple] = {}  # (topic, session key) -> (first card uuid, its time)
    for card in cards:
        parent.setdefault(card.card_uuid, card.card_uuid)
        for key in (card.order_keys or "").split():
            first = first_of.get((card.topic, key))
            if first is None or card.issued_at >= first[1] + ORDER_SESSION:
                first_of[(card.topic, key)] = (card.card_uuid, card.issued_at)
            else:
                parent[root(card.card_uuid)] = root(first[0])
    groups: dict[str, _Decision] = defaultdict(_Decision)
    for card in cards:
        groups[root(card.card_uuid)].cards.append(card)
    return list(groups.values())


def _client(card) -> str:
    if card.client_iss is None:
        return NO_CLIENT
    return card.client_iss + (f" (tenant {card.client_tenant})" if card.client_tenant else "")


_SPLIT_VALUE = {
    "indicator": lambda card: card.indicator,
    "service": lambda card: card.service_id,
    "client": _client,
    "version": lambda card: card.knowledge_version or NO_VERSION,
    "month": lambda card: card.issued_at.strftime("%Y-%m"),
}


def build_report(
    engine,
    *,
    since: datetime | None = None,
    until: datetime | None = None,
    top: int = 5,
    topic_displays=None,
    kb=None,
    generated_at: datetime | None = None,
) -> Report:
    """Read the ledger and the feedback of the period in one snapshot and count (see module doc).
    `kb` names topics and override reasons; `topic_displays` alone names topics only."""
    from sqlalchemy import select

    from cds_service.store.schema import feedback, issued_card, issued_suggestion

    window = []
    if since is not None:
        window.append(issued_card.c.issued_at >= since)
    if until is not None:
        window.append(issued_card.c.issued_at < until)
    with engine.begin() as connection:
        cards = connection.execute(
            select(
                issued_card.c.card_uuid, issued_card.c.topic, issued_card.c.indicator, issued_card.c.service_id,
                issued_card.c.issued_at, issued_card.c.status, issued_card.c.knowledge_version,
                issued_card.c.client_iss, issued_card.c.client_tenant, issued_card.c.order_keys,
            ).where(*window).order_by(issued_card.c.issued_at, issued_card.c.card_uuid)
        ).all()
        suggestion_rows = connection.execute(
            select(issued_suggestion.c.suggestion_uuid, issued_suggestion.c.card_uuid, issued_suggestion.c.label)
            .join(issued_card, issued_card.c.card_uuid == issued_suggestion.c.card_uuid)
            .where(*window)
        ).all()
        feedback_rows = connection.execute(
            select(
                feedback.c.id, feedback.c.card_uuid, feedback.c.outcome, feedback.c.outcome_at, feedback.c.accepted_suggestions,
                feedback.c.override_reason_system, feedback.c.override_reason_code, feedback.c.override_reason_display,
            )
            .join(issued_card, issued_card.c.card_uuid == feedback.c.card_uuid)
            .where(*window)
        ).all()

    label_of = {row.suggestion_uuid: row.label for row in suggestion_rows}
    cards_with_suggestions = {row.card_uuid for row in suggestion_rows}
    latest_of_card = {}
    for row in sorted(feedback_rows, key=lambda r: (r.outcome_at, r.id)):
        latest_of_card[row.card_uuid] = row  # the last one wins
    decisions = _decisions(cards)
    for decision in decisions:
        answers = [latest_of_card[c.card_uuid] for c in decision.cards if c.card_uuid in latest_of_card]
        decision.outcome = max(answers, key=lambda r: (r.outcome_at, r.id)) if answers else None

    topics = kb.topics if kb is not None else {}
    displays = {code: topic.display for code, topic in topics.items()} | dict(topic_displays or {})

    def row_for(rows: dict, topic: str, split: str | None = None) -> TopicRow:
        key = (topic, split)
        if key not in rows:
            rows[key] = TopicRow(topic, displays.get(topic, topic), split)
        return rows[key]

    def count(row: TopicRow, decision: _Decision) -> None:
        card = decision.representative
        row.knowledge_versions.add(card.knowledge_version or NO_VERSION)
        status = decision.status
        if status != "issued":
            setattr(row, status, getattr(row, status) + 1)
            return
        row.issued += 1
        if any(c.card_uuid in cards_with_suggestions for c in decision.cards):
            row.with_suggestions += 1
        outcome = decision.outcome
        if outcome is None:
            row.no_response += 1
        elif outcome.outcome == "accepted":
            row.accepted += 1
        else:
            row.overridden += 1

    main_rows: dict = {}
    split_rows: dict[str, dict] = {name: {} for name in SPLITS}
    reasons: dict[str, Counter] = defaultdict(Counter)
    reason_labels: dict[tuple, Counter] = defaultdict(Counter)
    suggestions: dict[str, Counter] = defaultdict(Counter)
    for decision in decisions:
        card = decision.representative
        count(row_for(main_rows, card.topic), decision)
        for name, value_of in _SPLIT_VALUE.items():
            count(row_for(split_rows[name], card.topic, value_of(card)), decision)
        outcome = decision.outcome
        if decision.status != "issued" or outcome is None:
            continue
        if outcome.outcome == "accepted":
            for suggestion_uuid in json.loads(outcome.accepted_suggestions):
                suggestions[card.topic][label_of.get(suggestion_uuid, suggestion_uuid)] += 1
        else:
            key = (outcome.override_reason_system or "", outcome.override_reason_code or "")
            reasons[card.topic][key] += 1
            if outcome.override_reason_display:
                reason_labels[key][outcome.override_reason_display] += 1

    def reason_count(topic: str, key: tuple, number: int) -> Count:
        system, code = key
        if not code:
            return Count(NO_REASON, number)
        own = _own_reason(topics.get(topic), system, code)
        sent = reason_labels.get(key)
        label = own.display if own else (sent.most_common(1)[0][0] if sent else code)
        return Count(label, number, code=code, system=system or None)

    def ranked(counter: Counter) -> list:
        return sorted(counter.items(), key=lambda item: (-item[1], item[0]))[:top]

    rows = sorted(main_rows.values(), key=lambda r: (-(r.issued + r.suppressed + r.silent), r.display))
    for row in rows:
        row.override_reasons = [reason_count(row.topic, key, n) for key, n in ranked(reasons[row.topic])]
        row.accepted_suggestions = [Count(label, n) for label, n in ranked(suggestions[row.topic])]
    order = {row.topic: index for index, row in enumerate(rows)}
    total = TopicRow("total", "All topics")
    for row in rows:
        total.add(row)
    splits = {
        name: sorted(values.values(), key=lambda r: (order[r.topic], r.split))
        for name, values in split_rows.items()
    }
    versions = sorted({card.knowledge_version for card in cards if card.knowledge_version})
    return Report(since, until, generated_at or datetime.now(timezone.utc), rows, total, splits, versions)


def _own_reason(topic, system: str, code: str):
    from cds_service.cards.build import OVERRIDE_REASON_SYSTEM

    if topic is None or system not in ("", OVERRIDE_REASON_SYSTEM):
        return None
    return topic.override_reason(code)


# --- rendering ------------------------------------------------------------------------------


def _day(moment: datetime) -> str:
    return f"{moment.day} {moment.strftime('%B %Y')}"


def period_in_words(since: datetime | None, until: datetime | None) -> str:
    """'cards issued from 1 November 2026 to 30 November 2026' (until is exclusive)."""
    start = _day(since) if since else "the first card on record"
    if until is None:
        end = "now"
    elif (until.hour, until.minute, until.second, until.microsecond) == (0, 0, 0, 0):
        end = _day(until - timedelta(days=1))  # exclusive midnight: the day before is the last
    else:
        end = f"{_day(until)} {until.strftime('%H:%M')} UTC"
    return f"cards issued from {start} to {end}"


def _generated(report: Report) -> str:
    return f"generated {_day(report.generated_at)} {report.generated_at.strftime('%H:%M')} UTC"


def _share(part: int, whole: int) -> str:
    return f"{part} ({part / whole * 100:.0f}%)" if whole else str(part)


def _percent(value: float | None) -> str:
    return "n/a" if value is None else f"{value * 100:.1f}%"


def _display(row: TopicRow) -> str:
    return f"{row.display} *" if row.too_few_to_judge and row.topic != "total" else row.display


def _counts_text(counts: list[Count]) -> str:
    return "; ".join(f"{c.label}{f' [{c.code}]' if c.code else ''} ({c.count})" for c in counts)


_COLUMNS = ["Shown", "Accepted", "Overridden", "No response", "Acceptance", "Override rate", "Suppressed", "Silent"]


def _cells(row: TopicRow) -> list[str]:
    return [
        str(row.issued), _share(row.accepted, row.issued), _share(row.overridden, row.issued),
        _share(row.no_response, row.issued), _percent(row.acceptance), _percent(row.override_rate),
        str(row.suppressed), str(row.silent),
    ]


def _table(headers: list[str], rows: list[list[str]], *, left: int = 1) -> list[str]:
    widths = [max(len(line[i]) for line in [headers, *rows]) for i in range(len(headers))]

    def line(cells):
        return "  ".join(c.ljust(widths[i]) if i < left else c.rjust(widths[i]) for i, c in enumerate(cells)).rstrip()

    return [line(headers), line(["-" * w for w in widths]), *(line(r) for r in rows)]


_SPLIT_TITLES = {
    "indicator": ("By indicator", "Indicator"),
    "service": ("By service", "Service"),
    "client": ("By EHR client (JWT iss)", "Client"),
    "version": ("By knowledge version", "Version"),
    "month": ("Override rate by month", "Month"),
}


def splits_to_show(report: Report, requested: tuple[str, ...] | None) -> tuple[str, ...]:
    """The splits asked for (default: indicator and service), and client and knowledge version
    whenever the period has more than one of them."""
    chosen = list(requested or DEFAULT_SPLITS)
    for name in ("client", "version"):
        if name not in chosen and len({row.split for row in report.splits[name]}) > 1:
            chosen.append(name)
    return tuple(name for name in SPLITS if name in chosen)


def render_table(report: Report, splits: tuple[str, ...] | None = None) -> str:
    out = [f"Denosumab CDS: card outcomes, {period_in_words(report.since, report.until)} ({_generated(report)})"]
    versions = report.knowledge_versions or [NO_VERSION]
    out.append(f"Knowledge version{'s' if len(versions) > 1 else ''}: {', '.join(versions)}")
    out.append("")
    rows = [[_display(r), *_cells(r)] for r in report.topics]
    table = _table(["Topic", *_COLUMNS], [*rows, [report.total.display, *_cells(report.total)]])
    out += table[:-1] + [table[1], table[-1]]
    for row in report.topics:
        if not (row.override_reasons or row.accepted_suggestions):
            continue
        out += ["", f"{row.display} ({row.topic})"]
        if row.override_reasons:
            out.append("  Top override reasons:")
            out += [f"    {c.count:>5}  {c.label}{f' [{c.code}]' if c.code else ''}" for c in row.override_reasons]
        if row.accepted_suggestions:
            out.append("  Accepted suggestions:")
            out += [f"    {c.count:>5}  {c.label}" for c in row.accepted_suggestions]
    for name in splits_to_show(report, splits):
        title, column = _SPLIT_TITLES[name]
        out += ["", title]
        if name == "month":
            cells = [[r.display, r.split, str(r.issued), _share(r.overridden, r.issued), _percent(r.override_rate)]
                     for r in report.splits[name]]
            out += _table(["Topic", column, "Shown", "Overridden", "Override rate"], cells, left=2)
        else:
            cells = [[r.display, r.split, *_cells(r)] for r in report.splits[name]]
            out += _table(["Topic", column, *_COLUMNS], cells, left=2)
    out += [
        "",
        "Shown = decisions a clinician saw: the cards of one topic for one draft order in one ordering session count once,",
        "by their latest feedback. Acceptance = accepted / shown decisions that offered a suggestion (n/a: the topic's",
        "cards offer none; read its override rate). Suppressed = hidden after an earlier override; silent = pilot topic,",
        f"evaluated but not shown. * fewer than {TOO_FEW_TO_JUDGE} decisions: too few to judge.",
    ]
    return "\n".join(out) + "\n"


_CSV_HEADER = [
    "split", "value", "topic", "display", "issued", "accepted", "overridden", "no_response", "suppressed", "silent",
    "acceptance", "override_rate", "too_few_to_judge", "knowledge_versions", "top_override_reasons", "accepted_suggestions",
]


def _csv_row(split: str, row: TopicRow) -> list:
    def rate(value):
        return "n/a" if value is None else f"{value:.4f}"

    return [
        split, row.split or "", row.topic, row.display, row.issued, row.accepted, row.overridden, row.no_response,
        row.suppressed, row.silent, rate(row.acceptance), rate(row.override_rate),
        "yes" if row.too_few_to_judge else "no", " ".join(sorted(row.knowledge_versions)),
        _counts_text(row.override_reasons), _counts_text(row.accepted_suggestions),
    ]


def render_csv(report: Report, splits: tuple[str, ...] | None = None) -> str:
    """One table: the topic rows (split "topic"), the total, then each split's rows."""
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(_CSV_HEADER)
    for row in report.topics:
        writer.writerow(_csv_row("topic", row))
    writer.writerow(_csv_row("total", report.total))
    for name in splits_to_show(report, splits):
        for row in report.splits[name]:
            writer.writerow(_csv_row(name, row))
    return buffer.getvalue()


def render_json(report: Report, splits: tuple[str, ...] | None = None) -> str:
    """Always every split but the monthly trend, which comes with `--by month`."""
    shown = tuple(name for name in SPLITS if name != "month" or "month" in (splits or ()))
    return json.dumps(report.to_json(shown), indent=2) + "\n"


# Colour-blind-safe (Okabe-Ito): accepted blue, overridden orange, no response grey; the cards
# nobody saw hatched in lighter tones.
_SERIES = (
    ("accepted", "Accepted", "#0072B2"),
    ("overridden", "Overridden", "#E69F00"),
    ("no_response", "No response", "#BBBBBB"),
    ("suppressed", "Suppressed", "#CC79A7"),
    ("silent", "Silent (pilot)", "#DDDDDD"),
)


def render_svg(report: Report) -> str:
    """A horizontal stacked bar per topic, its length the number of cards (so 1 card and 17 cards
    do not look alike), with the counts and rates written beside it."""
    bar_height, gap, label_width, bar_width, top = 22, 12, 330, 420, 96
    rows = report.topics
    height = top + len(rows) * (bar_height + gap) + 40
    width = label_width + bar_width + 360
    longest = max((r.issued + r.suppressed + r.silent for r in rows), default=0) or 1
    parts = [
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" viewBox="0 0 {width} {height}" '
        'font-family="Helvetica, Arial, sans-serif" font-size="13" role="img" aria-label="Card outcomes by topic">',
        '<text x="0" y="18" font-size="16" font-weight="bold">Card outcomes by topic</text>',
        f'<text x="0" y="38" fill="#555">{html.escape(period_in_words(report.since, report.until))}; {_generated(report)}</text>',
        f'<text x="0" y="56" fill="#555">knowledge {html.escape(", ".join(report.knowledge_versions) or NO_VERSION)}</text>',
    ]
    x = label_width
    for key, name, colour in _SERIES:
        parts.append(f'<rect x="{x}" y="{top - 26}" width="12" height="12" fill="{colour}"/>')
        parts.append(f'<text x="{x + 16}" y="{top - 16}">{name}</text>')
        x += 115
    for index, row in enumerate(rows):
        y = top + index * (bar_height + gap)
        parts.append(f'<text x="{label_width - 8}" y="{y + bar_height - 6}" text-anchor="end">{html.escape(_display(row))}</text>')
        x = float(label_width)
        for key, name, colour in _SERIES:
            value = getattr(row, key)
            if not value:
                continue
            w = bar_width * value / longest
            parts.append(
                f'<rect x="{x:.1f}" y="{y}" width="{w:.1f}" height="{bar_height}" fill="{colour}">'
                f"<title>{html.escape(row.display)}: {name.lower()} {value} of {row.issued} shown</title></rect>"
            )
            x += w
        words = f"{row.issued} shown; acceptance {_percent(row.acceptance)}; override rate {_percent(row.override_rate)}"
        if row.suppressed or row.silent:
            words += f"; {row.suppressed} suppressed, {row.silent} silent"
        parts.append(f'<text x="{x + 8:.1f}" y="{y + bar_height - 6}">{html.escape(words)}</text>')
    if rows:
        parts.append(
            f'<text x="0" y="{height - 12}" fill="#555">* fewer than {TOO_FEW_TO_JUDGE} decisions: too few to judge. '
            "Acceptance n/a: the topic's cards offer no suggestion.</text>"
        )
    else:
        parts.append(f'<text x="0" y="{top + 16}">No cards were issued in this period.</text>')
    parts.append("</svg>")
    return "\n".join(parts) + "\n"


def render_html(report: Report) -> str:
    """A self-contained page (no script, no external file) for the slide deck: chart and table."""
    headers = ["Topic", *_COLUMNS, "Top override reasons", "Accepted suggestions"]
    header = "".join(f"<th>{h}</th>" for h in headers)
    body = []
    for row in [*report.topics, report.total]:
        cells = [html.escape(_display(row)), *_cells(row), html.escape(_counts_text(row.override_reasons)),
                 html.escape(_counts_text(row.accepted_suggestions))]
        body.append("<tr>" + "".join(f"<td>{cell}</td>" for cell in cells) + "</tr>")
    return (
        "<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\"><title>Denosumab CDS: card outcomes</title>\n"
        "<style>body{font-family:Helvetica,Arial,sans-serif;margin:2em}table{border-collapse:collapse;margin-top:2em}"
        "td,th{border:1px solid #ccc;padding:4px 8px;text-align:left;vertical-align:top}"
        "td:nth-child(n+2):nth-child(-n+9){text-align:right}</style></head><body>\n"
        f"{render_svg(report)}"
        f"<table><thead><tr>{header}</tr></thead><tbody>\n" + "\n".join(body) + "\n</tbody></table>\n"
        f"<p>{html.escape(period_in_words(report.since, report.until))}; {_generated(report)}. Each decision counts once, "
        "by its latest feedback. Acceptance = accepted / shown decisions that offered a suggestion; n/a: the topic's "
        f"cards offer none. * fewer than {TOO_FEW_TO_JUDGE} decisions: too few to judge.</p>\n</body></html>\n"
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
        report = build_report(engine, since=since, until=until, top=args.top, kb=load_knowledge())
    except (SQLAlchemyError, OSError) as error:
        cause = getattr(error, "orig", None) or error
        print(f"report: cannot read the store at {describe_url(url)}: {' '.join(str(cause).split())}", file=sys.stderr)
        return 1
    splits = tuple(getattr(args, "by", None) or ()) or None
    sys.stdout.write(RENDERERS[args.format](report, splits))
    if args.plot:
        plot = Path(args.plot)
        plot.write_text(render_svg(report) if plot.suffix.lower() == ".svg" else render_html(report), encoding="utf-8")
        print(f"chart written to {plot}", file=sys.stderr)
    return 0
