"""The normalized patient record: the one view of a patient that the clinical rules read.

Built once per hook call from prefetch and fetched FHIR data (see `build.py`, the only code that
knows FHIR element paths). Immutable to its readers; its histories are read lazily
(`LazyHistory`). Every coded item carries `concepts`, the names of the `seeds/valuesets` it
belongs to, so rules ask clinical questions ("is this a calcimimetic?") without touching codes. A missing value is `None`, never `False` or 0.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from datetime import date, datetime
from typing import Literal, NamedTuple

MedicationSource = Literal[
    "MedicationRequest", "MedicationAdministration", "MedicationDispense", "MedicationStatement"
]

# Data categories the record is made of; a category whose data did not all arrive has gaps in
# `PatientRecord.completeness` (and is listed in `PatientRecord.unavailable`), so that nothing
# concludes "nothing there" from "not retrieved".
DATA_CATEGORIES = ("patient", "medications", "labs", "conditions", "procedures")

# Why part of a category is missing, in the words of the data-unavailable card.
GAP_CAUSES = {
    "timed-out": "the FHIR server did not answer in time",
    "server-error": "the FHIR server answered with an error",
    "operation-outcome": "the EHR sent an OperationOutcome instead of the data",
    "page-limit": "cut at the page limit (only the first pages were read)",
    "cut-by-ehr": "the EHR sent fewer entries than its Bundle's total, with no link to the rest",
    "no-server": "the EHR's data has more pages, and there is no FHIR server to ask for them",
    "server-not-allowed": "the FHIR server holding the rest is not one this service may read",
    "link-not-followed": "the link to the next page leaves the EHR's FHIR server",
    "medication-unknown": "a referenced Medication could not be found",
    "value-unusable": "a value could not be used",
    "record-unreadable": "a record could not be read (it is among the skipped resources)",
    "not-r4": "some records are of a resource type this service does not read (not FHIR R4)",
    "not-requested": "this service does not ask for this data on this hook",
}


@dataclass(frozen=True)
class Coding:
    system: str | None
    code: str | None
    display: str | None = None


@dataclass(frozen=True)
class Patient:
    id: str | None
    birth_date: date | None
    gender: str | None  # FHIR administrative gender: male | female | other | unknown

    def age_in_years(self, as_of: datetime) -> int | None:
        if self.birth_date is None:
            return None
        today = as_of.date()
        years = today.year - self.birth_date.year
        if (today.month, today.day) < (self.birth_date.month, self.birth_date.day):
            years -= 1
        return years


@dataclass(frozen=True)
class Timing:
    """How often a medication is given, from dosageInstruction.timing."""

    period_days: float | None = None  # one dose every `period_days` (period/periodUnit with frequency folded in)
    code: str | None = None  # e.g. "Q6M" or an EHR's frequency code, kept for display
    text: str | None = None
    count: int | None = None  # total number of doses (repeat.count), e.g. 1 for a once-only order


@dataclass(frozen=True)
class MedicationEntry:
    """One medication record of any kind: an order, an administration, a dispense, a statement."""

    source: MedicationSource
    id: str | None
    concepts: frozenset[str]
    name: str  # the medication's text or first coding display, for card details
    status: str | None
    intent: str | None = None  # MedicationRequest only
    is_draft_order: bool = False  # came from the hook's draftOrders / medications
    date: datetime | None = None  # authoredOn / effective[x] start / whenHandedOver
    end_date: datetime | None = None  # effectivePeriod.end for administrations and statements
    # When a dose was given (card catalog "Dose history"): administration effective[x] start;
    # dispense whenHandedOver, else whenPrepared; statement effectiveDateTime or effectivePeriod.end
    # (never dateAsserted: an open-ended statement is "on therapy, date unknown"); order: `scheduled`,
    # else authoredOn. None when the record dates no dose.
    dose_date: datetime | None = None
    # MedicationRequest: when the order says it will be given (timing.repeat.boundsPeriod.start,
    # the first timing.event, else dispenseRequest.validityPeriod.start); None when it does not say.
    scheduled: datetime | None = None
    dose_mg: float | None = None
    timing: Timing | None = None
    dosage_text: str | None = None
    reason_codes: tuple[Coding, ...] = ()
    reason_concepts: frozenset[str] = frozenset()
    reason_references: tuple[str, ...] = ()
    codings: tuple[Coding, ...] = ()
    name_concepts: frozenset[str] = frozenset()  # value sets its name names (medication-names.csv), coded or not
    matched_by_name: bool = False  # `concepts` come from its name although it carries a standard code

    @property
    def reference(self) -> str | None:
        return f"{self.source}/{self.id}" if self.id else None

    def is_a(self, concept: str) -> bool:
        return concept in self.concepts


_DATED_CAUSES = frozenset({"value-unusable", "record-unreadable"})  # one value or record, at its date


@dataclass(frozen=True)
class Gap:
    """Part of one data category that did not arrive, and why (`cause`: a key of GAP_CAUSES).

    `reaches_back_to`: when the entries that did arrive were asked for and received newest first,
    the date of the oldest of them: everything after it arrived. None when that is not known."""

    category: str
    cause: str
    where: str = ""  # the prefetch key, the analyte of an unusable value, the kind of an unreadable record
    reaches_back_to: datetime | None = None
    # Causes value-unusable and record-unreadable: the date of that value or record (None: not known).
    value_date: datetime | None = None
    # Cause record-unreadable: the value sets its code is in (what the record may have shown).
    concepts: frozenset[str] = frozenset()

    @property
    def cause_text(self) -> str:
        return GAP_CAUSES.get(self.cause, self.cause)

    def leaves_open(self, since: datetime | None) -> bool:
        """True when this gap may hide an entry dated at or after `since` (None: at any time)."""
        if self.cause in _DATED_CAUSES:
            return since is None or self.value_date is None or self.value_date >= since
        return since is None or self.reaches_back_to is None or not self.reaches_back_to < since


@dataclass(frozen=True)
class Completeness:
    """Which data categories arrived whole: the gaps of each, with their causes."""

    gaps: tuple[Gap, ...] = ()

    def gaps_of(self, category: str) -> tuple[Gap, ...]:
        return tuple(g for g in self.gaps if g.category == category)

    def is_complete(self, category: str) -> bool:
        return not any(g.category == category and g.cause != "not-requested" for g in self.gaps)

    @property
    def incomplete_categories(self) -> frozenset[str]:
        return frozenset(g.category for g in self.gaps if g.cause != "not-requested")


@dataclass(frozen=True)
class UnreadableOrder:
    """A draft order that is, or may be, a denosumab or follow-on order and could not be fully
    read: `concepts` are what its codes or text showed (empty when its medication is unknown)."""

    reference: str | None
    concepts: frozenset[str]
    problem: str  # plain words, for the data-unavailable card (no patient data)
    evaluated: bool = False  # its medication could be read, so the rules checked it anyway
    medication_reference: str | None = None  # the Medication it names that could not be found


_WITHDRAWN_RESULT_STATUSES = frozenset({"entered-in-error", "cancelled"})
_BELOW_SETTLED_BY = {"<": lambda bound, limit: bound <= limit, "<=": lambda bound, limit: bound < limit}
_ABOVE_SETTLED_BY = {">": lambda bound, limit: bound >= limit, ">=": lambda bound, limit: bound > limit}


@dataclass(frozen=True)
class LabResult:
    """One Observation, its value converted to the analyte's canonical unit.

    A value with a comparator (`<15`) is a bound: compare it with `is_below` / `is_above` /
    `is_at_least` / `is_at_most`, which answer True or False when the bound settles the question
    and None when it does not (and None for a result without a usable value). `value` stays the
    number as reported (converted), for display and for rules written before these methods.
    """

    id: str | None
    analyte: str  # value set name, e.g. "calcium-total"
    concepts: frozenset[str]
    status: str | None
    effective: datetime | None
    value: float | None  # in `unit`; None when not numeric or the unit is unknown
    unit: str | None  # canonical unit of the analyte
    comparator: str | None = None  # "<", "<=", ">=", ">" from valueQuantity.comparator
    original_text: str | None = None  # value and unit as the lab reported them, for card details
    reference_low: float | None = None  # canonical unit
    reference_high: float | None = None
    reference_range_unread: bool = False  # the lab sent a reference range that could not be read
    interpretation: frozenset[str] = frozenset()  # interpretation codes (e.g. "L", "H", "POS", "NEG")
    qualitative: str | None = None  # "positive" | "negative" for presence tests
    codings: tuple[Coding, ...] = ()
    unit_assumed: str | None = None  # the unit the value was read in when the lab reported none
    unusable: str | None = None  # why a reported value cannot be used (value is then None)

    def is_below(self, limit: float) -> bool | None:
        if self.value is None:
            return None
        if self.comparator in _BELOW_SETTLED_BY:
            return True if _BELOW_SETTLED_BY[self.comparator](self.value, limit) else None
        if self.comparator in _ABOVE_SETTLED_BY:
            return False if self.value >= limit else None
        return self.value < limit

    def is_at_least(self, limit: float) -> bool | None:
        below = self.is_below(limit)
        return None if below is None else not below

    def is_above(self, limit: float) -> bool | None:
        if self.value is None:
            return None
        if self.comparator in _ABOVE_SETTLED_BY:
            return True if _ABOVE_SETTLED_BY[self.comparator](self.value, limit) else None
        if self.comparator in _BELOW_SETTLED_BY:
            return False if self.value <= limit else None
        return self.value > limit

    def is_at_most(self, limit: float) -> bool | None:
        above = self.is_above(limit)
        return None if above is None else not above

    @property
    def reading(self) -> str:
        """What was made of the reported value, for cards and `check`: "7.2 (unit not reported,
        read as mg/dL)", "<15 (a bound: …)", "4.0: not used — no unit reported, and …"."""
        shown = self.original_text or "no value"
        if self.unusable:
            return f"{shown}: not used — {self.unusable}"
        if self.comparator:
            return f"{shown} (a bound: the exact value is not reported)"
        return shown


@dataclass(frozen=True)
class ConditionEntry:
    id: str | None
    concepts: frozenset[str]
    name: str
    clinical_status: str | None  # active | recurrence | relapse | inactive | remission | resolved
    verification_status: str | None  # unconfirmed | provisional | differential | confirmed | refuted | entered-in-error
    onset: datetime | None = None
    abatement: datetime | None = None
    recorded: datetime | None = None
    categories: frozenset[str] = frozenset()  # problem-list-item | encounter-diagnosis | health-concern
    codings: tuple[Coding, ...] = ()
    # clinicalStatus / verificationStatus when coded outside their R4 value sets (SNOMED only, a
    # local code): read as not recorded, and said so on the card.
    unread_statuses: tuple[str, ...] = ()


@dataclass(frozen=True)
class ProcedureEntry:
    id: str | None
    concepts: frozenset[str]
    name: str
    status: str | None
    performed: datetime | None  # performedDateTime or the end (else start) of performedPeriod
    codings: tuple[Coding, ...] = ()


@dataclass(frozen=True)
class SkippedResource:
    """A resource that could not be used; logged, so never with patient data or ids."""

    where: str  # prefetch key or "draftOrders"
    description: str
    reference: str | None = None  # "Type/id", for the user's own tools (`check`), never logged


class Unread(NamedTuple):  # a tuple: hundreds are made per call, most never read
    """One history entry before it is read: what the builder could tell from the raw resource
    without validating it, and how to build (validate) it."""

    moment: datetime | None  # the date the entry is ordered by (the same element its model's date comes from)
    concepts: frozenset[str]  # value sets its code belongs to (known before validation)
    kind: str  # resourceType
    status: str | None  # the R4 status code it is or spells; None when absent, not a string or none of its value set
    build: Callable[[], object | None]  # the validated entry, or None when unusable (reported)
    id: str | None = None  # the raw resource id, for entries a reference points to


class LazyHistory:
    """Entries of one kind (lab results, medication records, procedures, conditions), newest
    first, undated ones last in the order the EHR sent them (conditions have no date to order
    by), each built (validated) only when a reader first reaches it.

    Five years of history hold dozens of records per concept, and the rules read the newest few,
    or those of a status (active orders) or a window: validating only what is read keeps a hook
    call's cost independent of the history's length. The filters below look at what was known
    before validation; the reader still checks the built entry (its status, its date), so a
    filter only spares work, it never decides.
    """

    _NOT_BUILT = object()

    def __init__(self, entries: Iterable[Unread], *, category: str = "", unreadable: list[Gap] | None = None):
        # An entry that proves unusable when first read is a record-unreadable gap of `category`
        # at its date, added to `unreadable` (the record's): it may be what a rule looks for.
        self._category = category
        self._unreadable = unreadable if unreadable is not None else []
        entries = list(entries)
        dated = sorted((e for e in entries if e.moment is not None), key=lambda e: e.moment, reverse=True)
        ordered = dated + [e for e in entries if e.moment is None]
        self._slots = [[entry, self._NOT_BUILT] for entry in ordered]
        # Slot positions per concept, newest first: a reader of one concept skips the others.
        self._positions: dict[str, list[int]] = {}
        for position, entry in enumerate(ordered):
            for concept in entry.concepts:
                self._positions.setdefault(concept, []).append(position)

    def with_ids(self, ids: Iterable[str]) -> Iterator:
        """The entries whose resource id is one of `ids`, in history order."""
        ids = frozenset(ids)
        if ids:
            for slot in self._slots:
                if slot[0].id in ids:
                    yield from self._built(slot)

    def _built(self, slot: list) -> Iterator:
        if slot[1] is self._NOT_BUILT:
            slot[1] = slot[0].build()
            if slot[1] is None:
                self._unreadable.append(
                    Gap(self._category, "record-unreadable", slot[0].kind, value_date=slot[0].moment, concepts=slot[0].concepts)
                )
        if slot[1] is not None:
            yield slot[1]

    def newest_first(
        self,
        concepts: frozenset[str] | None = None,
        *,
        since: datetime | None = None,
        statuses: frozenset[str] | None = None,
        kinds: frozenset[str] | None = None,
    ) -> Iterator:
        """Entries newest first: of any of `concepts`; dated at or after `since` (undated ones
        never); whose status may be one of `statuses` (a status unknown before validation may);
        of the resource types `kinds`."""
        if concepts is None:
            positions = range(len(self._slots))
        elif len(concepts) == 1:
            positions = self._positions.get(next(iter(concepts)), ())
        else:
            positions = sorted({p for concept in concepts for p in self._positions.get(concept, ())})
        for position in positions:
            slot = self._slots[position]
            unread = slot[0]
            if since is not None and (unread.moment is None or unread.moment < since):
                return
            if statuses is not None and unread.status is not None and unread.status not in statuses:
                continue
            if kinds is not None and unread.kind not in kinds:
                continue
            yield from self._built(slot)


@dataclass(frozen=True)
class PatientRecord:
    patient: Patient
    draft_orders: tuple[MedicationEntry, ...] = ()  # every draft order of the hook call
    focus_orders: tuple[MedicationEntry, ...] = ()  # the drafts the hook asks about (selections)
    encounter_id: str | None = None
    completeness: Completeness = Completeness()  # the gaps of each data category, with causes
    # Draft orders that are or may be denosumab / follow-on orders and could not be fully read,
    # or whose medication is unknown (never read as "another drug").
    unreadable_orders: tuple[UnreadableOrder, ...] = ()
    # Lab results, medication history (draft orders excluded), procedures and conditions are read
    # lazily: ask for them with the methods below (newest first where dated) and stop once you
    # have what you need.
    _labs: LazyHistory = field(default_factory=lambda: LazyHistory(()), compare=False, repr=False)
    _medications: LazyHistory = field(default_factory=lambda: LazyHistory(()), compare=False, repr=False)
    _procedures: LazyHistory = field(default_factory=lambda: LazyHistory(()), compare=False, repr=False)
    _conditions: LazyHistory = field(default_factory=lambda: LazyHistory(()), compare=False, repr=False)
    # Grows while the histories are read: an entry found unusable is reported when first read.
    _skipped: list[SkippedResource] = field(default_factory=list, compare=False, repr=False)
    # Grows while labs are read: results whose value is a bound, has no unit, or cannot be used.
    _noted_labs: list[LabResult] = field(default_factory=list, compare=False, repr=False)
    # Grows while the histories are read: a record-unreadable gap per entry of a value set that
    # could not be read (it may be the very result or record a rule looks for).
    _unreadable: list[Gap] = field(default_factory=list, compare=False, repr=False)

    def labs_for(self, analyte: str, since: datetime | None = None) -> Iterator[LabResult]:
        """Results of one analyte (a value set name), newest first; with `since`, only those
        dated at or after it."""
        return self._labs.newest_first(frozenset({analyte}), since=since)

    def medications_of(
        self,
        concepts: frozenset[str],
        *,
        since: datetime | None = None,
        statuses: frozenset[str] | None = None,
        sources: frozenset[MedicationSource] | None = None,
    ) -> Iterator[MedicationEntry]:
        """Medication records (not this call's drafts) of any of `concepts`, newest first; with
        `since`, dated at or after it. `statuses` and `sources` spare reading records that cannot
        be wanted; check the status of what comes back."""
        return self._medications.newest_first(concepts, since=since, statuses=statuses, kinds=sources)

    def procedures_of(
        self, concept: str, *, since: datetime | None = None, statuses: frozenset[str] | None = None
    ) -> Iterator[ProcedureEntry]:
        """Procedures of a kind, newest first; with `since`, performed at or after it."""
        return self._procedures.newest_first(frozenset({concept}), since=since, statuses=statuses)

    def conditions_of(self, concept: str) -> tuple[ConditionEntry, ...]:
        """Conditions of a kind (a value set name), in the order the EHR sent them."""
        return tuple(self._conditions.newest_first(frozenset({concept})))

    def conditions_with_ids(self, ids: Iterable[str]) -> tuple[ConditionEntry, ...]:
        """The Conditions with these resource ids (what a reasonReference points to)."""
        return tuple(self._conditions.with_ids(ids))

    @property
    def conditions(self) -> tuple[ConditionEntry, ...]:
        """Every condition a rule could read (reads them all: for tools and tests, not rules)."""
        return tuple(self._conditions.newest_first())

    @property
    def labs(self) -> tuple[LabResult, ...]:
        """Every lab result, newest first (reads them all: for tools and tests, not rules)."""
        return tuple(self._labs.newest_first())

    @property
    def medications(self) -> tuple[MedicationEntry, ...]:
        """Every medication record, newest first (reads them all: for tools and tests, not rules)."""
        return tuple(self._medications.newest_first())

    @property
    def procedures(self) -> tuple[ProcedureEntry, ...]:
        """Every procedure, newest first (reads them all: for tools and tests, not rules)."""
        return tuple(self._procedures.newest_first())

    def read_everything(self) -> None:
        """Validate every history entry, read or not: for tools that must list every unusable
        resource (`denosumab-cds check`), never on a hook call."""
        for history in (self._labs, self._medications, self._procedures, self._conditions):
            for _ in history.newest_first():
                pass

    @property
    def skipped(self) -> tuple[SkippedResource, ...]:
        """Resources that could not be used, among those read so far."""
        return tuple(self._skipped)

    @property
    def unavailable(self) -> frozenset[str]:
        """The DATA_CATEGORIES that did not all arrive (see `completeness` for why)."""
        return self.completeness.incomplete_categories

    def unreadable_records(self) -> tuple[Gap, ...]:
        """History records of a value set that could not be read, among those read so far (a
        record-unreadable gap each): a check may have read an older record in place of one."""
        return tuple(self._unreadable)

    def unusable_labs(self) -> tuple[LabResult, ...]:
        """Lab results read so far whose value could not be used (listed on data-unavailable);
        not those withdrawn (entered-in-error, cancelled), which are no result at all."""
        return tuple(lab for lab in self._noted_labs if lab.unusable and lab.status not in _WITHDRAWN_RESULT_STATUSES)

    def value_readings(self) -> tuple[LabResult, ...]:
        """Lab results read so far whose value needed reading: a bound, no unit, or unusable;
        `LabResult.reading` says what was made of each (for `denosumab-cds check`)."""
        return tuple(self._noted_labs)

    def open_gaps(self, category: str, since: datetime | None) -> tuple[Gap, ...]:
        """The gaps that may hide an entry of `category` dated at or after `since` (None: at any
        time): those of what did not arrive, each record of the category read so far that could not
        be read, and for labs each unusable value inside the window."""
        gaps = self.completeness.gaps_of(category) + tuple(g for g in self._unreadable if g.category == category)
        if category == "labs":
            gaps += tuple(
                Gap("labs", "value-unusable", lab.analyte, value_date=lab.effective) for lab in self.unusable_labs()
            )
        return tuple(g for g in gaps if g.leaves_open(since))

    def settles_absence(self, category: str, since: datetime | None) -> bool:
        """True when a rule may conclude that nothing of `category` dated at or after `since`
        exists: no gap leaves that window open (entries received newest first that reach back
        past `since` settle it)."""
        return not self.open_gaps(category, since)
