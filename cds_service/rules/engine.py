"""Which rules run for a hook call, and running them.

A rule is a module in `cds_service.rules` that defines `TOPIC` (a code of seeds/topics.toml),
`NEEDS` (the record's data categories it reads) and `evaluate(ctx) -> Finding | None`. The
topic's `triggers` in seeds/topics.toml say when it runs:
- "denosumab-order": a focused draft order (selections on order-select) is any denosumab product;
- "follow-on-order": a focused draft order is a bisphosphonate or another osteoporosis agent;
- "patient-view": the patient-view hook, for a patient with any denosumab history.

Incomplete data (card catalog, "Incomplete data"): every rule runs on what arrived. A finding
that rests on something found is issued as usual; one that rests on an absence
(`Finding.rests_on_absence`) in a data category the record cannot vouch for
(`PatientRecord.settles_absence`) is not issued: the data-unavailable card lists its check with
the cause instead. That card also names each incomplete category and its cause, each lab value
that could not be used, each history record a check reached but could not read (a check may have
used an older one in its place), and each order in focus that could not be read or identified; it
is a warning when anything it lists could have been a critical card (seeds/topics.toml
`can_be_critical`), else info.
"""

from __future__ import annotations

import importlib
import logging
import pkgutil
from dataclasses import dataclass
from datetime import datetime
from types import ModuleType

from cds_service.cards import Finding
from cds_service.cards.model import Absence
from cds_service.knowledge import Knowledge
from cds_service.record.model import Gap, PatientRecord, UnreadableOrder
from cds_service.rules.common import fmt_date
from cds_service.rules.concepts.medications import DENOSUMAB, FOLLOW_ON_AGENT, is_denosumab, is_follow_on_agent
from cds_service.rules.context import RuleContext

logger = logging.getLogger(__name__)

ORDER_HOOKS = frozenset({"order-select", "order-sign", "medication-prescribe"})
DATA_UNAVAILABLE_TOPIC = "data-unavailable"
_NOT_RULES = {"common", "concepts", "context", "engine"}


@dataclass(frozen=True)
class Rule:
    topic: str
    needs: frozenset[str]
    module: ModuleType

    def evaluate(self, ctx: RuleContext) -> Finding | None:
        return self.module.evaluate(ctx)


def discover_rules(kb: Knowledge) -> tuple[Rule, ...]:
    """Every rule module, checked against the topic catalog (fails fast at start-up)."""
    import cds_service.rules as package

    rules = []
    for info in sorted(pkgutil.iter_modules(package.__path__), key=lambda i: i.name):
        if info.name in _NOT_RULES or info.name.startswith("_"):
            continue
        module = importlib.import_module(f"{package.__name__}.{info.name}")
        topic = getattr(module, "TOPIC", None)
        if topic is None:
            continue
        if topic not in kb.topics:
            raise RuntimeError(f"rule module {info.name} names unknown topic {topic!r} (seeds/topics.toml)")
        rules.append(Rule(topic, frozenset(getattr(module, "NEEDS", ())), module))
    return tuple(rules)


def focus_triggers(hook: str, record: PatientRecord) -> dict[str, tuple]:
    """Trigger name -> the focused draft orders that set it off (empty tuple for patient-view)."""
    triggers: dict[str, tuple] = {}
    if hook in ORDER_HOOKS:
        denosumab = tuple(o for o in record.focus_orders if is_denosumab(o))
        follow_on = tuple(o for o in record.focus_orders if is_follow_on_agent(o))
        if denosumab:
            triggers["denosumab-order"] = denosumab
        if follow_on:
            triggers["follow-on-order"] = follow_on
    elif hook == "patient-view" and next(record.medications_of(DENOSUMAB), None) is not None:
        triggers["patient-view"] = ()
    return triggers


CATEGORY_NAMES = {
    "patient": "Patient demographics",
    "medications": "Medication history",
    "labs": "Lab results",
    "conditions": "Diagnoses (conditions)",
    "procedures": "Procedures",
}
# On patient-view, whether a patient has any denosumab history is itself a conclusion from what
# the medication history holds.
_DENOSUMAB_HISTORY = Absence("medications", "whether this patient has any denosumab on record")


@dataclass(frozen=True)
class DroppedCheck:
    topic: str
    absence: Absence
    gaps: tuple[Gap, ...]  # the gaps that leave it open


def run_rules(
    rules: tuple[Rule, ...], hook: str, record: PatientRecord, kb: Knowledge, as_of: datetime
) -> list[Finding]:
    findings: list[Finding] = []
    dropped: list[DroppedCheck] = []
    failed_topics: set[str] = set()
    ran_topics: set[str] = set()
    readers: dict[str, set[str]] = {}  # data category -> topics of the rules that ran and read it
    undecided: list[tuple[str, str]] = []
    triggers = focus_triggers(hook, record)
    for trigger, orders in triggers.items():
        ctx = RuleContext(record=record, as_of=as_of, kb=kb, trigger=trigger, orders=orders, undecided=undecided)
        for rule in rules:
            if trigger not in kb.topics[rule.topic].triggers:
                continue
            ran_topics.add(rule.topic)
            for category in rule.needs:
                readers.setdefault(category, set()).add(rule.topic)
            try:
                finding = rule.evaluate(ctx)
            except Exception:  # one faulty rule must not take the other safety checks down with it
                logger.exception("rule %s failed", rule.topic)
                failed_topics.add(rule.topic)
                continue
            if finding is None:
                continue
            open_checks = [
                DroppedCheck(finding.topic, absence, record.open_gaps(absence.category, absence.since))
                for absence in finding.rests_on_absence if not record.settles_absence(absence.category, absence.since)
            ]
            if open_checks:  # an absence in incomplete data proves nothing: say so instead
                dropped.extend(open_checks)
            else:
                findings.append(finding)
    if hook == "patient-view" and not triggers and not record.settles_absence("medications", None):
        dropped.append(DroppedCheck(DATA_UNAVAILABLE_TOPIC, _DENOSUMAB_HISTORY, record.open_gaps("medications", None)))
    report = data_unavailable_finding(
        record, kb, dropped=dropped, failed_topics=failed_topics, ran_topics=ran_topics, undecided=undecided, readers=readers,
        orders_only=hook in ORDER_HOOKS and not triggers,
    )
    if report is not None:
        findings.append(report)
    return findings


def _order_kind(order: UnreadableOrder) -> str:
    if order.concepts & DENOSUMAB:
        return "denosumab"
    if order.concepts & FOLLOW_ON_AGENT:
        return "follow-on"
    return "unknown" if not order.concepts else "other"


def _title(kb: Knowledge, value_set: str) -> str:
    return kb.value_sets[value_set].title if value_set in kb.value_sets else value_set


def _read_by_a_critical_check(kb: Knowledge, ran_topics: set[str], value_sets) -> bool:
    """Whether a check that ran and can give a critical card reads any of `value_sets`."""
    return any(kb.topics[t].can_be_critical and not set(value_sets).isdisjoint(kb.topics[t].valuesets) for t in ran_topics)


def _gap_line(gap: Gap) -> str:
    text = gap.cause_text
    if gap.reaches_back_to is not None and gap.cause != "value-unusable":
        text += f"; what arrived (newest first) reaches back to {fmt_date(gap.reaches_back_to)}"
    return text


def data_unavailable_finding(
    record: PatientRecord,
    kb: Knowledge,
    *,
    dropped: list[DroppedCheck] = (),
    failed_topics: set[str] = frozenset(),
    ran_topics: set[str] = frozenset(),
    undecided: list[tuple[str, str]] = (),
    readers: dict[str, set[str]] | None = None,
    orders_only: bool = False,
) -> Finding | None:
    """The data-unavailable card: what could not be obtained or read, and which checks that cost;
    None when everything arrived and could be read. `orders_only`: no order in focus could be
    identified as one the rules check, so only the orders are reported."""
    can_be_critical = False
    parts = []
    incomplete, unread_records = [], ()
    unreadable = [o for o in record.unreadable_orders if _order_kind(o) in ("denosumab", "follow-on", "unknown")]
    if unreadable:
        lines = []
        for order in unreadable:
            kind = _order_kind(order)
            if kind == "unknown":
                lines.append(
                    f"- An order in this request could not be identified: {order.problem}. It may be a denosumab "
                    "order: none of the denosumab safety checks were made for it."
                )
                can_be_critical = True
            elif order.evaluated:
                noun = "A denosumab order" if kind == "denosumab" else "A bisphosphonate / osteoporosis order"
                lines.append(f"- {noun} in this request could not be fully read ({order.problem}); it was checked by its medication only (dose and timing not read).")
            else:
                noun = "A denosumab order" if kind == "denosumab" else "A bisphosphonate / osteoporosis order"
                lines.append(f"- {noun} in this request could not be read: {order.problem}. None of its safety checks were made.")
                can_be_critical = True
        parts.append("**Orders**\n\n" + "\n".join(lines))
    if orders_only:
        if not parts:
            return None
    else:
        incomplete = [
            (category, record.completeness.gaps_of(category)) for category in CATEGORY_NAMES
            if category in record.unavailable
        ]
        if incomplete:
            lines = []
            for category, gaps in incomplete:
                causes = "; ".join(dict.fromkeys(_gap_line(g) for g in gaps if g.cause != "not-requested"))
                line = f"- {CATEGORY_NAMES[category]}: {causes}."
                # What did not arrive may be recent (not known to be only older history): a check
                # that reads it may have missed a finding, critical ones included.
                if any(g.reaches_back_to is None and g.cause not in ("not-requested", "value-unusable") for g in gaps):
                    exposed = sorted((readers or {}).get(category, ()))
                    critical = [t for t in exposed if kb.topics[t].can_be_critical]
                    if critical:
                        line += " Checks that read it and can be critical may have missed something: " + ", ".join(
                            kb.topics[t].display for t in critical) + "."
                        can_be_critical = True
                lines.append(line)
            parts.append("**Patient data that did not all arrive**\n\n" + "\n".join(lines))
        if dropped:
            lines = []
            for check in dropped:
                why = "; ".join(dict.fromkeys(g.cause_text for g in check.gaps)) or "the data is incomplete"
                lines.append(f"- {check.absence.check} ({CATEGORY_NAMES.get(check.absence.category, check.absence.category).lower()}: {why})")
                can_be_critical |= check.topic in kb.topics and kb.topics[check.topic].can_be_critical
            parts.append(
                "**Not checked** (each needs to know that something is absent, which incomplete data cannot "
                "show):\n\n" + "\n".join(dict.fromkeys(lines))
            )
        if undecided:
            lines = [f"- {check}" for _, check in undecided]
            parts.append("**Could not be decided** (a value reported as a bound does not settle it):\n\n" + "\n".join(dict.fromkeys(lines)))
            can_be_critical |= any(topic in kb.topics and kb.topics[topic].can_be_critical for topic, _ in undecided)
        unusable = record.unusable_labs()
        if unusable:
            lines = []
            for lab in unusable:
                lines.append(f"- {_title(kb, lab.analyte)} on {fmt_date(lab.effective)}: {lab.reading}.")
                can_be_critical |= _read_by_a_critical_check(kb, ran_topics, {lab.analyte})
            parts.append("**Lab values that could not be used** (not read as normal):\n\n" + "\n".join(dict.fromkeys(lines)))
        unread_records = record.unreadable_records()
        if unread_records:
            lines = []
            for gap in unread_records:
                names = " / ".join(sorted(_title(kb, c) for c in gap.concepts))
                when = fmt_date(gap.value_date) if gap.value_date else "date not readable"
                lines.append(f"- {names} ({gap.where}, {when}).")
                can_be_critical |= _read_by_a_critical_check(kb, ran_topics, gap.concepts)
            parts.append(
                "**Records that could not be read** (skipped, not read as normal: a check may have used an older "
                "record in place of one of these):\n\n" + "\n".join(dict.fromkeys(lines))
            )
        if failed_topics:
            checks = "\n".join(f"- {kb.topics[t].display}" for t in sorted(failed_topics))
            parts.append(f"**These checks could not be evaluated** (the service log has the details):\n\n{checks}")
            can_be_critical |= any(kb.topics[t].can_be_critical for t in failed_topics)
    if not parts:
        return None
    if any(_order_kind(o) != "other" and not o.evaluated for o in unreadable):
        summary = "Denosumab safety checks not made: an order in this request could not be read or identified"
    elif dropped or undecided:
        summary = "Some denosumab safety checks could not be made: patient data incomplete or unreadable"
    elif unread_records and not incomplete:
        summary = "Denosumab safety checks made without some patient records: they could not be read"
    elif failed_topics and len(parts) == 1:
        summary = "Denosumab safety checks incomplete: some checks could not be evaluated"
    else:
        summary = "Denosumab safety checks made on incomplete data: some patient data did not arrive"
    return Finding(
        topic=DATA_UNAVAILABLE_TOPIC,
        indicator="warning" if can_be_critical else "info",
        summary=summary,
        detail="\n\n".join(parts) + "\n\nReview these by hand: missing data is not normal data.",
    )
