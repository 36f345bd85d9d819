"""The normalized patient record: the one view of a patient that the clinical rules read.

Built once per hook call from prefetch and fetched FHIR data (see `build.py`, the only code that
knows FHIR element paths). Immutable to its readers; lab results are read lazily (`LabSeries`). Every coded item carries `concepts`, the names of the
`seeds/valuesets` it belongs to, so rules ask clinical questions ("is this a calcimimetic?")
without touching codes. A missing value is `None`, never `False` or 0.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from datetime import date, datetime
from typing import Literal

MedicationSource = Literal[
    "MedicationRequest", "MedicationAdministration", "MedicationDispense", "MedicationStatement"
]

# Data categories the record is made of; a category whose data could not be obtained is listed
# in `PatientRecord.unavailable`, so rules never read "not retrieved" as "nothing there".
DATA_CATEGORIES = ("patient", "medications", "labs", "conditions", "procedures")


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
    dose_mg: float | None = None
    timing: Timing | None = None
    dosage_text: str | None = None
    reason_codes: tuple[Coding, ...] = ()
    reason_concepts: frozenset[str] = frozenset()
    reason_references: tuple[str, ...] = ()
    codings: tuple[Coding, ...] = ()
    name_concepts: frozenset[str] = frozenset()  # value sets its name names (medication-names.csv), coded or not

    @property
    def reference(self) -> str | None:
        return f"{self.source}/{self.id}" if self.id else None

    def is_a(self, concept: str) -> bool:
        return concept in self.concepts


@dataclass(frozen=True)
class LabResult:
    """One Observation, its value converted to the analyte's canonical unit."""

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
    interpretation: frozenset[str] = frozenset()  # interpretation codes (e.g. "L", "H", "POS", "NEG")
    qualitative: str | None = None  # "positive" | "negative" for presence tests
    codings: tuple[Coding, ...] = ()


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


class LabSeries:
    """The results of one analyte, newest first, each built (validated) only when first read.

    A five-year history holds dozens of results per analyte, and the rules read the newest few:
    validating only what is read keeps a hook call's cost independent of the history's length.
    Each entry comes with the date it is ordered by, taken from the resource before validation;
    reading stops at the first result older than `since`, before that one is validated. An entry
    that turns out unusable yields nothing (the builder reports it as skipped).
    """

    _UNREAD = object()

    def __init__(self, entries: Iterable[tuple[datetime | None, Callable[[], "LabResult | None"]]]):
        entries = list(entries)
        dated = sorted((e for e in entries if e[0] is not None), key=lambda e: e[0], reverse=True)
        undated = [e for e in entries if e[0] is None]
        # Each entry: [date, build, the result once built (else _UNREAD)]
        self._entries = [[moment, build, self._UNREAD] for moment, build in dated + undated]

    def newest_first(self, since: datetime | None = None) -> Iterator["LabResult"]:
        """Results newest first; with `since`, only those dated at or after it (undated ones never)."""
        for entry in self._entries:
            moment = entry[0]
            if since is not None and (moment is None or moment < since):
                return
            if entry[2] is self._UNREAD:
                entry[2], entry[1] = entry[1](), None
            if entry[2] is not None:
                yield entry[2]


@dataclass(frozen=True)
class PatientRecord:
    patient: Patient
    medications: tuple[MedicationEntry, ...] = ()  # history, newest first (draft orders excluded)
    draft_orders: tuple[MedicationEntry, ...] = ()  # every draft order of the hook call
    focus_orders: tuple[MedicationEntry, ...] = ()  # the drafts the hook asks about (selections)
    conditions: tuple[ConditionEntry, ...] = ()
    procedures: tuple[ProcedureEntry, ...] = ()  # newest first
    encounter_id: str | None = None
    unavailable: frozenset[str] = frozenset()  # DATA_CATEGORIES that could not be obtained
    _labs_by_analyte: dict[str, LabSeries] = field(default_factory=dict, compare=False, repr=False)
    # Grows while lab results are read: a result found unusable is reported when first read.
    _skipped: list[SkippedResource] = field(default_factory=list, compare=False, repr=False)

    def labs_for(self, analyte: str, since: datetime | None = None) -> Iterator[LabResult]:
        """Results of one analyte (a value set name), newest first; with `since`, only those
        dated at or after it. Read lazily: stop iterating once you have what you need."""
        series = self._labs_by_analyte.get(analyte)
        return series.newest_first(since) if series is not None else iter(())

    @property
    def labs(self) -> tuple[LabResult, ...]:
        """Every lab result, newest first, undated last (reads them all: for tools and tests)."""
        everything = [lab for series in self._labs_by_analyte.values() for lab in series.newest_first()]
        dated = sorted((lab for lab in everything if lab.effective is not None), key=lambda lab: lab.effective, reverse=True)
        return tuple(dated) + tuple(lab for lab in everything if lab.effective is None)

    @property
    def skipped(self) -> tuple[SkippedResource, ...]:
        """Resources that could not be used, among those read so far."""
        return tuple(self._skipped)

    def medications_of(self, concept: str) -> tuple[MedicationEntry, ...]:
        return tuple(m for m in self.medications if concept in m.concepts)

    def conditions_of(self, concept: str) -> tuple[ConditionEntry, ...]:
        return tuple(c for c in self.conditions if concept in c.concepts)

    def procedures_of(self, concept: str) -> tuple[ProcedureEntry, ...]:
        return tuple(p for p in self.procedures if concept in p.concepts)
