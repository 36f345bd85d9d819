"""Which rules run for a hook call, and running them.

A rule is a module in `cds_service.rules` that defines `TOPIC` (a code of seeds/topics.toml),
`NEEDS` (the record's data categories it reads) and `evaluate(ctx) -> Finding | None`. The
topic's `triggers` in seeds/topics.toml say when it runs:
- "denosumab-order": a focused draft order (selections on order-select) is any denosumab product;
- "follow-on-order": a focused draft order is a bisphosphonate or another osteoporosis agent;
- "patient-view": the patient-view hook, for a patient with any denosumab history.
A rule whose data could not be obtained does not run; the data-unavailable card says so.
"""

from __future__ import annotations

import importlib
import logging
import pkgutil
from dataclasses import dataclass
from datetime import datetime
from types import ModuleType

from cds_service.cards import Finding
from cds_service.knowledge import Knowledge
from cds_service.record.model import PatientRecord
from cds_service.rules.concepts.medications import DENOSUMAB, is_denosumab, is_follow_on_agent
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


def run_rules(
    rules: tuple[Rule, ...], hook: str, record: PatientRecord, kb: Knowledge, as_of: datetime
) -> list[Finding]:
    findings: list[Finding] = []
    skipped_topics: set[str] = set()
    failed_topics: set[str] = set()
    for trigger, orders in focus_triggers(hook, record).items():
        ctx = RuleContext(record=record, as_of=as_of, kb=kb, trigger=trigger, orders=orders)
        for rule in rules:
            if trigger not in kb.topics[rule.topic].triggers:
                continue
            if rule.needs & record.unavailable:
                skipped_topics.add(rule.topic)
                continue
            try:
                finding = rule.evaluate(ctx)
            except Exception:  # one faulty rule must not take the other safety checks down with it
                logger.exception("rule %s failed", rule.topic)
                failed_topics.add(rule.topic)
                continue
            if finding is not None:
                findings.append(finding)
    if skipped_topics or failed_topics:
        findings.append(incomplete_checks_finding(record, kb, skipped_topics, failed_topics))
    return findings


def incomplete_checks_finding(
    record: PatientRecord, kb: Knowledge, skipped_topics: set[str], failed_topics: set[str]
) -> Finding:
    """Say which checks did not run, so that silence is never mistaken for "all clear"."""
    parts = []
    if skipped_topics:
        checks = "\n".join(f"- {kb.topics[t].display}" for t in sorted(skipped_topics))
        parts.append(
            f"The EHR's FHIR server did not return this patient's **{', '.join(sorted(record.unavailable))}** "
            f"in time, so these checks were not performed:\n\n{checks}"
        )
    if failed_topics:
        checks = "\n".join(f"- {kb.topics[t].display}" for t in sorted(failed_topics))
        parts.append(f"These checks could not be evaluated (the service log has the details):\n\n{checks}")
    summary = (
        "Denosumab safety checks incomplete: some patient data could not be retrieved"
        if skipped_topics else "Denosumab safety checks incomplete: some checks could not be evaluated"
    )
    return Finding(
        topic=DATA_UNAVAILABLE_TOPIC,
        indicator="info",
        summary=summary,
        detail="\n\n".join(parts) + "\n\nReview them by hand before signing.",
    )
