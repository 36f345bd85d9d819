"""POST /cds-services/{id}/feedback (CDS Hooks 2.0): what clinicians did with our cards.

A batch is checked whole before anything is stored, then stored in one transaction: either every
entry is recorded or none is, and a 400 OperationOutcome names each bad entry
(`feedback[3].outcome`). Feedback must be for a card that this service id issued (the card
ledger) to the same EHR client (JWT iss and tenant); an unknown card uuid is a 400 too, because
resending the same batch cannot succeed. The client is stored with each entry.

Idempotent: "the same feedback" is the same card, outcome, outcomeTimestamp (to the
microsecond, in UTC), accepted suggestion ids and override reason code. A resend of it stores
nothing new. A different outcome for the same card later is new feedback and is kept; the report
counts each card once, by its latest outcome (see `report`). The clinician's free-text
`userComment` is not stored (it may name the patient), only whether there was one.
"""

from __future__ import annotations

import hashlib
import json
import logging
import uuid
from dataclasses import dataclass
from datetime import datetime, timezone

from sqlalchemy import Engine, select
from sqlalchemy.exc import InterfaceError, OperationalError

from cds_service.config import Settings
from cds_service.errors import CdsError, Issue
from cds_service.protocol.auth import Caller
from cds_service.storable import unstorable
from cds_service.ops.metrics import record_store_error
from cds_service.store.ledger import open_store
from cds_service.store.schema import feedback, insert_if_absent, issued_card, issued_suggestion, utc_now

logger = logging.getLogger(__name__)

OUTCOMES = ("accepted", "overridden")
MAX_ENTRIES_PER_BATCH = 1000
MAX_CODE_LENGTH = 256
MAX_DISPLAY_LENGTH = 1024
MAX_ISSUES_REPORTED = 50
RETRY_AFTER_SECONDS = 5


@dataclass(frozen=True)
class OverrideReason:
    system: str | None
    code: str | None
    display: str | None


@dataclass(frozen=True)
class FeedbackEntry:
    """One validated feedback entry; `index` is its place in the batch (for error messages)."""

    index: int
    card_uuid: str
    outcome: str
    outcome_at: datetime
    accepted_suggestions: tuple[str, ...] = ()  # sorted, unique
    override_reason: OverrideReason | None = None
    has_user_comment: bool = False

    @property
    def dedup_key(self) -> str:
        reason = self.override_reason
        identity = [
            self.card_uuid,
            self.outcome,
            self.outcome_at.isoformat(timespec="microseconds"),
            list(self.accepted_suggestions),
            reason.system if reason else None,
            reason.code if reason else None,
        ]
        return hashlib.sha256(json.dumps(identity, separators=(",", ":")).encode("utf-8")).hexdigest()


class _Problems:
    """Collects every problem of a batch, so one answer lists them all."""

    def __init__(self):
        self.issues: list[Issue] = []

    def add(self, expression: str, message: str, code: str = "invalid") -> None:
        self.issues.append(Issue(f"{expression}: {message}", code=code, expression=(expression,)))

    def raise_if_any(self) -> None:
        if self.issues:
            shown = self.issues[:MAX_ISSUES_REPORTED]
            if len(self.issues) > len(shown):
                shown.append(Issue(f"... and {len(self.issues) - len(shown)} more problems", code="invalid"))
            raise CdsError(400, tuple(shown))


def _uuid(value, where: str, problems: _Problems) -> str | None:
    if not isinstance(value, str) or not value.strip():
        problems.add(where, "must be a UUID string", "required" if value is None else "invalid")
        return None
    try:
        return str(uuid.UUID(value.strip()))  # canonical lower-case form, as we issue them
    except ValueError:
        problems.add(where, "is not a UUID", "value")
        return None


def _timestamp(value, where: str, problems: _Problems) -> datetime | None:
    if value is None:
        problems.add(where, "is required (RFC 3339 date-time with a time zone)", "required")
        return None
    try:
        # RFC 3339 allows a lower-case t and z; a date alone parses as naive and is refused below.
        parsed = datetime.fromisoformat(value.upper()) if isinstance(value, str) else None
    except ValueError:
        parsed = None
    if parsed is None or parsed.tzinfo is None:
        problems.add(where, "must be an RFC 3339 date-time with a time zone, e.g. 2026-11-25T15:02:11Z", "value")
        return None
    return parsed.astimezone(timezone.utc)


def _text(container: dict, name: str, where: str, max_length: int, problems: _Problems) -> str | None:
    value = container.get(name)
    if value is None:
        return None
    if not isinstance(value, str) or not value.strip() or len(value) > max_length:
        problems.add(f"{where}.{name}", f"must be a non-empty string of at most {max_length} characters")
        return None
    problem = unstorable(value)
    if problem:
        problems.add(f"{where}.{name}", problem, "value")
        return None
    return value


def _override_reason(value, where: str, problems: _Problems) -> tuple[OverrideReason | None, bool]:
    if value is None:
        return None, False
    if not isinstance(value, dict):
        problems.add(where, "must be an object {reason: Coding, userComment: string}")
        return None, False
    comment = value.get("userComment")
    if comment is not None and not isinstance(comment, str):
        problems.add(f"{where}.userComment", "must be a string")
    reason = value.get("reason")
    if reason is None:
        return None, bool(comment)
    if not isinstance(reason, dict):
        problems.add(f"{where}.reason", "must be a Coding {system, code, display}")
        return None, bool(comment)
    system = _text(reason, "system", f"{where}.reason", MAX_CODE_LENGTH, problems)
    code = _text(reason, "code", f"{where}.reason", MAX_CODE_LENGTH, problems)
    display = _text(reason, "display", f"{where}.reason", MAX_DISPLAY_LENGTH, problems)
    if code is None and "code" not in reason:
        problems.add(f"{where}.reason.code", "is required in a Coding", "required")
    return OverrideReason(system, code, display), bool(comment)


def _entry(value, index: int, problems: _Problems) -> FeedbackEntry | None:
    where = f"feedback[{index}]"
    if not isinstance(value, dict):
        problems.add(where, "must be an object")
        return None
    before = len(problems.issues)
    card = _uuid(value.get("card"), f"{where}.card", problems)
    outcome = value.get("outcome")
    if outcome not in OUTCOMES:
        problems.add(f"{where}.outcome", f"must be one of {', '.join(OUTCOMES)}", "required" if outcome is None else "code-invalid")
    outcome_at = _timestamp(value.get("outcomeTimestamp"), f"{where}.outcomeTimestamp", problems)

    accepted: list[str] = []
    suggestions = value.get("acceptedSuggestions")
    if outcome == "accepted":
        if not isinstance(suggestions, list) or not suggestions:
            problems.add(f"{where}.acceptedSuggestions", "is required when outcome is accepted: [{\"id\": <suggestion uuid>}]", "required")
        else:
            for position, suggestion in enumerate(suggestions):
                item = f"{where}.acceptedSuggestions[{position}]"
                if not isinstance(suggestion, dict):
                    problems.add(item, "must be an object {\"id\": <suggestion uuid>}")
                    continue
                suggestion_id = _uuid(suggestion.get("id"), f"{item}.id", problems)
                if suggestion_id:
                    accepted.append(suggestion_id)
    elif outcome == "overridden" and suggestions not in (None, []):
        problems.add(f"{where}.acceptedSuggestions", "is only allowed when outcome is accepted")

    reason, has_comment = None, False
    if outcome == "accepted" and value.get("overrideReason") is not None:
        problems.add(f"{where}.overrideReason", "is only allowed when outcome is overridden")
    elif outcome == "overridden":
        reason, has_comment = _override_reason(value.get("overrideReason"), f"{where}.overrideReason", problems)

    if len(problems.issues) > before:
        return None
    return FeedbackEntry(
        index=index,
        card_uuid=card,
        outcome=outcome,
        outcome_at=outcome_at,
        accepted_suggestions=tuple(sorted(set(accepted))),
        override_reason=reason,
        has_user_comment=has_comment,
    )


def parse_feedback(body) -> list[FeedbackEntry]:
    """The entries of a feedback request, or a 400 listing every problem."""
    problems = _Problems()
    if not isinstance(body, dict) or not isinstance(body.get("feedback"), list):
        problems.add("feedback", "the body must be an object {\"feedback\": [...]}", "structure")
        problems.raise_if_any()
    entries = body["feedback"]
    if not entries:
        problems.add("feedback", "must hold at least one entry", "required")
    if len(entries) > MAX_ENTRIES_PER_BATCH:
        raise CdsError(
            400,
            (Issue(f"at most {MAX_ENTRIES_PER_BATCH} feedback entries per request", code="too-costly", expression=("feedback",)),),
        )
    parsed = [_entry(value, index, problems) for index, value in enumerate(entries)]
    problems.raise_if_any()
    return parsed


@dataclass
class FeedbackReceiver:
    engine: Engine

    def receive(self, service_id: str, body, caller: Caller | None = None) -> dict:
        """Validate, join to the ledger and store a batch atomically; answer the counts."""
        entries = parse_feedback(body)
        received_at = utc_now()
        try:
            recorded = self._store(service_id, entries, received_at, caller or Caller(None, ()))
        except (OperationalError, InterfaceError) as error:
            # Store down or locked past the busy timeout. A resend is safe (idempotent), so say so.
            logger.error("feedback store unavailable (%s)", type(error).__name__)
            record_store_error("feedback-write")
            raise CdsError(
                503,
                (Issue("Feedback cannot be stored right now; send it again later (a resend is never counted twice).", code="transient"),),
                headers={"Retry-After": str(RETRY_AFTER_SECONDS)},
            ) from None
        return {"received": len(entries), "recorded": recorded, "alreadyRecorded": len(entries) - recorded}

    def _store(self, service_id: str, entries: list[FeedbackEntry], received_at: datetime, caller: Caller) -> int:
        insert = insert_if_absent(self.engine.dialect.name, feedback).returning(feedback.c.id)
        recorded = 0
        with self.engine.begin() as connection:
            self._check_against_ledger(connection, service_id, entries, caller)
            for entry in entries:
                reason = entry.override_reason
                row = {
                    "dedup_key": entry.dedup_key,
                    "card_uuid": entry.card_uuid,
                    "outcome": entry.outcome,
                    "outcome_at": entry.outcome_at,
                    "accepted_suggestions": json.dumps(list(entry.accepted_suggestions)),
                    "override_reason_system": reason.system if reason else None,
                    "override_reason_code": reason.code if reason else None,
                    "override_reason_display": reason.display if reason else None,
                    "has_user_comment": entry.has_user_comment,
                    "received_at": received_at,
                    "client_iss": caller.iss,
                    "client_tenant": caller.tenant,
                }
                if connection.execute(insert, row).first() is not None:
                    recorded += 1
        return recorded

    @staticmethod
    def _check_against_ledger(connection, service_id: str, entries: list[FeedbackEntry], caller: Caller) -> None:
        card_uuids = sorted({entry.card_uuid for entry in entries})
        rows = connection.execute(
            select(
                issued_card.c.card_uuid, issued_card.c.service_id, issued_card.c.client_iss, issued_card.c.client_tenant
            ).where(issued_card.c.card_uuid.in_(card_uuids))
        ).all()
        issued = {row.card_uuid: row.service_id for row in rows}
        # Cards recorded before the ledger kept the client (schema 1) have none: any client may answer them.
        client_of = {row.card_uuid: (row.client_iss, row.client_tenant) for row in rows if row.client_iss is not None}
        suggestions: dict[str, set[str]] = {}
        for suggestion_uuid, card_uuid in connection.execute(
            select(issued_suggestion.c.suggestion_uuid, issued_suggestion.c.card_uuid).where(
                issued_suggestion.c.card_uuid.in_(card_uuids)
            )
        ):
            suggestions.setdefault(card_uuid, set()).add(suggestion_uuid)
        problems = _Problems()
        for entry in entries:
            where = f"feedback[{entry.index}]"
            issued_by = issued.get(entry.card_uuid)
            if issued_by is None:
                problems.add(f"{where}.card", f"no card {entry.card_uuid} was issued by this service", "not-found")
            elif issued_by != service_id:
                problems.add(
                    f"{where}.card",
                    f"card {entry.card_uuid} was issued by service {issued_by!r}; send its feedback to "
                    f"/cds-services/{issued_by}/feedback",
                    "not-found",
                )
            elif client_of.get(entry.card_uuid, (caller.iss, caller.tenant)) != (caller.iss, caller.tenant):
                # Another EHR's card: said as "not found", which names nothing of the other client.
                problems.add(f"{where}.card", f"no card {entry.card_uuid} was issued to this client", "not-found")
            else:
                card_suggestions = suggestions.get(entry.card_uuid, set())
                for suggestion_id in entry.accepted_suggestions:
                    if suggestion_id not in card_suggestions:
                        problems.add(
                            f"{where}.acceptedSuggestions",
                            f"card {entry.card_uuid} has no suggestion {suggestion_id}",
                            "not-found",
                        )
        problems.raise_if_any()


def open_feedback(settings: Settings, hook_service) -> FeedbackReceiver:
    """Open the store, have `hook_service` record every card it issues, and return the receiver."""
    from cds_service.suppression import CardGate

    store = open_store(settings)
    hook_service.card_gate = CardGate(store.ledger, hook_service.suppression, hook_service.knowledge_version)
    return FeedbackReceiver(store.engine)
