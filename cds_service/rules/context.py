"""What every rule receives: the record, the time of the call and the reviewed knowledge."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime, timedelta

from cds_service.knowledge import Knowledge
from cds_service.record.model import MedicationEntry, PatientRecord


@dataclass(frozen=True)
class RuleContext:
    record: PatientRecord
    as_of: datetime  # the time of the hook call (aware, UTC); rules never read the clock
    kb: Knowledge
    trigger: str  # "denosumab-order" | "follow-on-order" | "patient-view"
    orders: tuple[MedicationEntry, ...] = ()  # the draft orders that set off the trigger
    # (topic, check) of comparisons a rule could not decide (a bound that does not settle it):
    # listed on the data-unavailable card, never read as normal. Filled through `cannot_tell`.
    undecided: list[tuple[str, str]] = field(default_factory=list, compare=False, repr=False)

    def cannot_tell(self, topic: str, check: str) -> None:
        """Say that `check` ("eGFR below 30: reported >20") could not be decided from the data."""
        self.undecided.append((topic, check))

    def threshold(self, name: str) -> float:
        return self.kb.threshold(name)

    def days_before(self, threshold_name: str) -> datetime:
        """The start of a look-back window named in seeds/thresholds.toml (in days)."""
        return self.as_of - timedelta(days=self.kb.threshold(threshold_name))

    @property
    def patient_id(self) -> str | None:
        return self.record.patient.id

    @property
    def encounter_id(self) -> str | None:
        return self.record.encounter_id
