"""What the EHR is shown of the cards the rules produced: suppression after an override and silent
pilot topics (card catalog v2, *Suppression after an override*). Every card is written to the
card ledger, shown or not, with its status: issued, suppressed or silent.

Suppression, for the same patient (the ledger's patient HMAC) and topic:
- an override with a reason that carries a period (seeds/topics.toml `suppress_days`, changed by
  `[suppression.<topic>] <reason> = <days>`) hides the topic for that many days from the override
  — unless the card is critical and its topic `never_suppress_critical`, or the reason's
  `suppress_indicators` do not include the overridden card's indicator;
- within one ordering session (same encounter, same draft order id, within ORDER_SESSION of the
  override) an override of the topic hides it on the later calls of that session (order-select
  as the order changes, order-sign), whatever the reason;
- either way, a card comes back when it now carries a higher indicator than the card overridden.
Silent topics (`[cards] silent`) are evaluated and recorded as silent, never returned.

One query per call that has cards (`CardLedger.recent_overrides`). If the store cannot answer,
nothing is suppressed: a safety alert matters more than alert fatigue.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass, replace
from datetime import datetime, timedelta
from types import MappingProxyType

from sqlalchemy.exc import SQLAlchemyError

from cds_service.cards.build import OVERRIDE_REASON_SYSTEM
from cds_service.cards.model import INDICATOR_ORDER
from cds_service.config import ConfigError, Settings
from cds_service.knowledge import Knowledge, KnowledgeError
from cds_service.knowledge.loader import OverrideReason, suppression_period
from cds_service.ops.metrics import record_store_error, record_suppressed
from cds_service.protocol.auth import Caller
from cds_service.protocol.request import HookRequest
from cds_service.record.model import PatientRecord
from cds_service.rules.concepts.dose_history import last_denosumab_dose
from cds_service.rules.concepts.regimen import regimen_of
from cds_service.rules.context import RuleContext
from cds_service.rules.engine import ORDER_HOOKS, focus_triggers
from cds_service.store.ledger import CardLedger, IssuedCard, PastOverride

logger = logging.getLogger(__name__)

ALL_TOPICS = "*"
# How long one ordering session lasts at most: an order is chosen and signed within minutes or
# hours; an EHR that reuses an encounter and draft order id days later is ordering again.
ORDER_SESSION = timedelta(hours=24)


def _more_severe(indicator: str, than: str) -> bool:
    return INDICATOR_ORDER.get(indicator, 9) < INDICATOR_ORDER.get(than, 9)


@dataclass(frozen=True)
class SuppressionPolicy:
    """The seeds' suppression periods with the deployment's changes, and the silent topics."""

    kb: Knowledge
    reasons: MappingProxyType  # topic -> reason code -> OverrideReason (with the deployment's periods)
    silent: frozenset[str]  # topic codes, or {"*"}

    @classmethod
    def from_settings(cls, kb: Knowledge, settings: Settings) -> "SuppressionPolicy":
        reasons = {code: {r.code: r for r in topic.override_reasons} for code, topic in kb.topics.items()}
        overrides = settings.suppression_overrides or {}
        if not isinstance(overrides, dict):
            raise ConfigError("[suppression.<topic>] must be tables of <override reason> = <days>")
        for topic, changes in overrides.items():
            if topic not in reasons:
                raise ConfigError(f"[suppression.{topic}]: no such topic (seeds/topics.toml)")
            if not isinstance(changes, dict):
                raise ConfigError(f"[suppression.{topic}] must be a table of <override reason> = <days>")
            for code, days in changes.items():
                if code not in reasons[topic]:
                    known = ", ".join(sorted(reasons[topic]))
                    raise ConfigError(f"[suppression.{topic}] {code}: not an override reason of this topic ({known})")
                try:
                    period = suppression_period(days, f"[suppression.{topic}] {code}")
                except KnowledgeError as error:
                    raise ConfigError(str(error)) from None
                reasons[topic][code] = replace(reasons[topic][code], suppress_days=period)
        silent = settings.silent_topics or ()
        if isinstance(silent, str) or not all(isinstance(t, str) for t in silent):
            raise ConfigError('[cards] silent must be a list of topic codes, or ["*"]')
        unknown = sorted(set(silent) - set(kb.topics) - {ALL_TOPICS})
        if unknown:
            raise ConfigError(f"[cards] silent: no such topic {', '.join(unknown)} (seeds/topics.toml)")
        return cls(
            kb,
            MappingProxyType({topic: MappingProxyType(by_code) for topic, by_code in reasons.items()}),
            frozenset(silent),
        )

    @property
    def lookback(self) -> timedelta:
        longest = max(
            (days for by_code in self.reasons.values() for r in by_code.values() for days in r.suppress_days.values()),
            default=0,
        )
        return max(timedelta(days=longest), ORDER_SESSION)

    def is_silent(self, topic: str) -> bool:
        return ALL_TOPICS in self.silent or topic in self.silent

    def reason(self, topic: str, system: str | None, code: str | None) -> OverrideReason | None:
        """The topic's own reason for a feedback coding (ours, or the same code without a system)."""
        if system not in (None, OVERRIDE_REASON_SYSTEM):
            return None
        return self.reasons.get(topic, {}).get(code)

    def suppressed_by(
        self,
        card: IssuedCard,
        past: PastOverride,
        *,
        hook: str,
        order_keys: frozenset[str],
        as_of: datetime,
        regimen: Callable[[], str | None],
    ) -> str | None:
        """Why `past` hides `card` ("order-session" or "override-reason"), else None."""
        if past.topic != card.topic or _more_severe(card.indicator, than=past.indicator):
            return None
        if (
            hook in ORDER_HOOKS
            and past.hook in ORDER_HOOKS
            and order_keys & past.order_keys
            and as_of < past.outcome_at + ORDER_SESSION
        ):
            return "order-session"
        if card.indicator == "critical" and self.kb.topics[card.topic].never_suppress_critical:
            return None
        reason = self.reason(card.topic, past.reason_system, past.reason_code)
        if reason is None or not reason.suppress_days or past.indicator not in reason.suppress_indicators:
            return None
        days = reason.suppression_days(regimen() if len(reason.suppress_days) > 1 else None)
        if days and as_of < past.outcome_at + timedelta(days=days):
            return "override-reason"
        return None


def call_regimen(record: PatientRecord, kb: Knowledge, as_of: datetime, hook: str) -> str | None:
    """The regimen the call is about: of the denosumab draft in focus, else of the last dose."""
    ctx = RuleContext(record=record, as_of=as_of, kb=kb, trigger="patient-view")
    for order in focus_triggers(hook, record).get("denosumab-order", ()):
        regimen = regimen_of(ctx, order)
        if regimen:
            return regimen
    last = last_denosumab_dose(ctx)
    return last.regimen if last is not None else None


@dataclass
class CardGate:
    """Decides which cards of a response are shown and records all of them (see module doc)."""

    ledger: CardLedger
    policy: SuppressionPolicy
    knowledge_version: str | None = None

    def order_keys(self, request: HookRequest, record: PatientRecord) -> frozenset[str]:
        if request.hook not in ORDER_HOOKS or not request.encounter_id:
            return frozenset()
        orders = [order for orders in focus_triggers(request.hook, record).values() for order in orders]
        return frozenset(
            self.ledger.order_key(request.fhir_server, request.patient_id, request.encounter_id, order.id)
            for order in orders
            if order.id
        )

    def apply(
        self,
        request: HookRequest,
        response: dict,
        record: PatientRecord,
        as_of: datetime,
        caller: Caller,
        rebuild: Callable[[set[str]], dict],
    ) -> dict:
        """The response the EHR gets: `response` without its suppressed and silent cards.

        `rebuild(hidden topics)` builds the response again without them, so that a card nobody
        sees takes no suggested order away from a card that is shown (one order set per response)."""
        cards = response.get("cards") or []
        if not cards:
            return response
        issued = [IssuedCard.from_card_json(card) for card in cards]
        patient_hash = self.ledger.patient_hash(request.fhir_server, request.patient_id)
        order_keys = self.order_keys(request, record)
        topics = {c.topic for c in issued}
        regimen_cache: list = []

        def regimen():
            if not regimen_cache:
                regimen_cache.append(call_regimen(record, self.policy.kb, as_of, request.hook))
            return regimen_cache[0]

        def decide(overrides: list) -> tuple[dict, list[IssuedCard], dict[str, str]]:
            """(the response shown, the cards to record, card uuid -> suppressed | silent)."""
            statuses: dict[str, str] = {}
            for card in issued:
                if any(
                    self.policy.suppressed_by(card, past, hook=request.hook, order_keys=order_keys, as_of=as_of, regimen=regimen)
                    for past in overrides
                ):
                    statuses[card.card_uuid] = "suppressed"
                    record_suppressed(card.topic)
                elif self.policy.is_silent(card.topic):
                    statuses[card.card_uuid] = "silent"
            if not statuses:
                return response, issued, statuses
            shown = rebuild({card.topic for card in issued if card.card_uuid in statuses})
            hidden = [card for card in issued if card.card_uuid in statuses]
            return shown, hidden + [IssuedCard.from_card_json(card) for card in shown.get("cards", [])], statuses

        try:
            overrides = self.ledger.recent_overrides(patient_hash, topics, as_of - self.policy.lookback)
        except SQLAlchemyError as error:
            logger.error("suppression look-up failed (%s); no card suppressed", type(error).__name__)
            record_store_error("suppression-lookup")
            overrides = []
        shown, recorded, statuses = decide(overrides)
        try:
            self.ledger.record(
                recorded,
                service_id=request.service.id,
                hook=request.hook,
                hook_instance=request.hook_instance,
                patient_hash=patient_hash,
                issued_at=as_of,
                statuses=statuses,
                knowledge_version=self.knowledge_version,
                client_iss=caller.iss,
                client_tenant=caller.tenant,
                order_keys=tuple(order_keys),
            )
        except SQLAlchemyError as error:
            # The type only: driver messages can quote the row values. The cards still go out.
            logger.error("card ledger write failed (%s); %d card(s) not recorded", type(error).__name__, len(recorded))
            record_store_error("ledger-write")
        return shown
