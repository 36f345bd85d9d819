"""Denosumab dose history (card catalog "Dose history", "Therapy active"): the doses given, the
last dose, initiation, an explicit stop, whether therapy is active, and the moment of a draft.

- Dose sources: MedicationAdministration (completed), MedicationDispense (completed),
  MedicationStatement (active/completed) — and completed MedicationRequests only where none of
  those exist. Dose dates are `MedicationEntry.dose_date` (the record knows the FHIR elements:
  never dateAsserted; an open-ended statement is "on therapy, date unknown", not a dose).
- Records within dose_record_merge_days_60mg (14) or dose_record_merge_days_120mg (3) of the
  first record of a dose are that dose (a dispense, then its administration, then a statement
  about it), dated by the administration when there is one, else the statement, else the
  dispense, else the order.
- Initiating: no dose within initiation_no_dose_lookback_days (12 months).
- Explicit stop: the newest denosumab order (authoredOn) is "stopped" and no denosumab draft of
  this call follows it — FHIR R4 gives no date of the status change, so a stopped standing order
  counts although its doses came after it was written; or a statement "stopped" / "not-taken"
  made after the last dose.
- Therapy active (patient-view): the last dose is at most therapy_active_max_days (24 months)
  old, no explicit stop, no bisphosphonate given or ordered since it. No active order needed.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta

from cds_service.record.model import MedicationEntry
from cds_service.rules.common import fmt_date
from cds_service.rules.concepts.medications import (
    DENOSUMAB, DOSE_GIVEN_STATUSES, DOSE_RECORD_SOURCES, ORDER_SOURCE, WITHDRAWN_MEDICATION_STATUSES, fmt_medication,
)
from cds_service.rules.concepts.regimen import regimen_of
from cds_service.rules.concepts.transition import bisphosphonates_since
from cds_service.rules.context import RuleContext

# Which record dates a dose made of several records (lower = preferred).
_DATING_PREFERENCE = {"MedicationAdministration": 0, "MedicationStatement": 1, "MedicationDispense": 2, "MedicationRequest": 3}
_MERGE_WINDOW = {"60mg": "dose_record_merge_days_60mg", "120mg": "dose_record_merge_days_120mg"}
_STATEMENT_STOPPED = frozenset({"stopped", "not-taken"})


@dataclass(frozen=True)
class Dose:
    """One denosumab dose: the records that tell of it, dated by the most direct of them."""

    records: tuple[MedicationEntry, ...]  # the dating record first
    regimen: str | None  # of any of its records (product, dose, text)

    @property
    def record(self) -> MedicationEntry:
        return self.records[0]

    @property
    def date(self) -> datetime:
        return self.record.dose_date

    @property
    def name(self) -> str:
        return self.record.name

    @property
    def source(self) -> str:
        return self.record.source

    @property
    def reference(self) -> str | None:
        return self.record.reference

    @property
    def is_dispense_only(self) -> bool:
        """Only dispensed (or ordered): no administration or statement says it was given."""
        return all(r.source in ("MedicationDispense", "MedicationRequest") for r in self.records) and any(
            r.source == "MedicationDispense" for r in self.records
        )


def _dose_records(ctx: RuleContext, sources: frozenset[str], since: datetime | None) -> list[MedicationEntry]:
    return [
        m for m in ctx.record.medications_of(DENOSUMAB, sources=sources, since=since)
        if m.status in DOSE_GIVEN_STATUSES[m.source] and m.dose_date is not None and m.dose_date <= ctx.as_of
    ]


def denosumab_doses(ctx: RuleContext, since: datetime | None = None) -> tuple[Dose, ...]:
    """Every denosumab dose given up to the call (from records dated at or after `since`), newest first."""
    records = _dose_records(ctx, DOSE_RECORD_SOURCES, since) or _dose_records(ctx, ORDER_SOURCE, since)
    if not records:
        return ()
    fallback_regimen = _regimen_of_records(ctx, records)
    groups: list[list[MedicationEntry]] = []
    for record in sorted(records, key=lambda m: m.dose_date):
        if groups:
            first = groups[-1][0]
            regimen = regimen_of(ctx, first) or regimen_of(ctx, record) or fallback_regimen
            window = _merge_window(ctx, regimen)
            if record.dose_date - first.dose_date <= window:
                groups[-1].append(record)
                continue
        groups.append([record])
    doses = []
    for group in groups:
        ordered = tuple(sorted(group, key=lambda m: (_DATING_PREFERENCE[m.source], m.dose_date)))
        doses.append(Dose(ordered, _regimen_of_records(ctx, ordered)))
    return tuple(reversed(doses))


def _merge_window(ctx: RuleContext, regimen: str | None) -> timedelta:
    # Unknown regimen: the shorter window, so two 120 mg loading doses a week apart stay two doses.
    names = [_MERGE_WINDOW[regimen]] if regimen else list(_MERGE_WINDOW.values())
    return timedelta(days=min(ctx.threshold(name) for name in names))


def _regimen_of_records(ctx: RuleContext, records) -> str | None:
    return next((r for r in (regimen_of(ctx, m) for m in records) if r), None)


def last_denosumab_dose(ctx: RuleContext) -> Dose | None:
    """The newest dose. Read from the records of the last initiation look-back (plus the merge
    windows) first, so a long history is not read to find a recent dose; the whole history
    only when that finds none, or a dose at the window's edge (its records may reach past it)."""
    longest_merge = timedelta(days=max(ctx.threshold(name) for name in _MERGE_WINDOW.values()))
    since = ctx.days_before("initiation_no_dose_lookback_days") - longest_merge
    recent = denosumab_doses(ctx, since)
    if recent and recent[0].date - since > 2 * longest_merge:
        return recent[0]
    doses = denosumab_doses(ctx)
    return doses[0] if doses else None


def is_initiating(ctx: RuleContext) -> bool:
    """No denosumab dose in the last 12 months (initiation_no_dose_lookback_days)."""
    last = last_denosumab_dose(ctx)
    return last is None or last.date < ctx.days_before("initiation_no_dose_lookback_days")


def history_regimen(ctx: RuleContext) -> str | None:
    """The regimen the patient has been on: the last dose's, else that of the newest denosumab
    record (order, statement, dispense) whose regimen is known."""
    last = last_denosumab_dose(ctx)
    if last is not None and last.regimen:
        return last.regimen
    for entry in ctx.record.medications_of(DENOSUMAB):  # newest first
        if entry.status not in WITHDRAWN_MEDICATION_STATUSES and regimen_of(ctx, entry):
            return regimen_of(ctx, entry)
    return None


def explicit_stop(ctx: RuleContext, last: Dose | None = None) -> MedicationEntry | None:
    """The record that stops denosumab on purpose (module docstring), else None."""
    if any(d.concepts & DENOSUMAB for d in ctx.record.draft_orders):
        return None  # this call orders denosumab again
    last = last if last is not None else last_denosumab_dose(ctx)
    newest_order = next(ctx.record.medications_of(DENOSUMAB, sources=ORDER_SOURCE), None)
    if newest_order is not None and newest_order.status == "stopped":
        return newest_order
    for statement in ctx.record.medications_of(DENOSUMAB, sources=frozenset({"MedicationStatement"})):
        if statement.status not in _STATEMENT_STOPPED:
            continue
        said = max((d for d in (statement.date, statement.end_date) if d is not None), default=None)
        if last is None or (said is not None and said > last.date):
            return statement
    return None


def therapy_is_active(ctx: RuleContext, last: Dose | None = None) -> bool:
    """Therapy active (patient-view): last dose at most 24 months old, no explicit stop, and no
    bisphosphonate given or ordered since it."""
    last = last if last is not None else last_denosumab_dose(ctx)
    if last is None or calendar_days(last.date, ctx.as_of) > ctx.threshold("therapy_active_max_days"):
        return False
    return explicit_stop(ctx, last) is None and not bisphosphonates_since(ctx, last.date)


def draft_moment(ctx: RuleContext, order: MedicationEntry) -> datetime:
    """When a draft order will be given: the date it says (boundsPeriod.start, timing.event,
    validityPeriod.start — never earlier than the call: a dose cannot be given in the past), else
    the call."""
    return max(order.scheduled, ctx.as_of) if order.scheduled is not None else ctx.as_of


def calendar_days(earlier: datetime, later: datetime) -> int:
    """Days between two moments by calendar date: dose intervals are counted in days, so a dose
    given at 10:15 and a draft at 09:00 150 days later are 150 days apart, not 149."""
    return (later.date() - earlier.date()).days


def fmt_dose(dose: Dose) -> str:
    """The dating record, and the other records of the same dose."""
    text = fmt_medication(dose.record)
    others = [f"{r.reference or r.source} {fmt_date(r.dose_date)}" for r in dose.records[1:]]
    if others:
        text += " — same dose as " + ", ".join(others)
    return text
