"""Lab units: every analyte converted to one canonical unit (`seeds/units.toml`), and how a
presence test reads as positive or negative (`seeds/qualitative-results.toml`)."""

from __future__ import annotations

import tomllib
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path

from cds_service.knowledge import seeds_dir


def _unit_key(unit: str) -> str:
    return unit.replace(" ", "").replace("µ", "u").replace("μ", "u").lower()


@dataclass(frozen=True)
class AnalyteUnits:
    analyte: str
    canonical: str
    factors: dict[str, float]  # normalized unit key -> factor to the canonical unit
    plausible_max: float  # canonical unit; beyond it (or below zero) a value is a data error
    # unit as printed -> (low, high): values a living patient's result can have in that unit, for
    # reading a result reported without a unit (seeds/units.toml `plausible`)
    plausible: dict[str, tuple[float, float]] = field(default_factory=dict)

    def read(self, value: float, unit_code: str | None, unit_text: str | None) -> tuple[float | None, str | None, str | None]:
        """(value in the canonical unit, the unit assumed when none was reported, why unusable).

        Without a unit the value is read in the one unit whose plausible range holds it; in
        several or none it is unusable (card catalog, "Reading values")."""
        if unit_code or unit_text:
            converted = self.to_canonical(value, unit_code, unit_text)
            if converted is not None:
                return converted, None, None
            if any(self.factors.get(_unit_key(u)) is not None for u in (unit_code, unit_text) if u):
                return None, None, "the value is outside what a result can be"
            return None, None, f"the unit {(unit_code or unit_text)!r} is not one this service can convert"
        fitting = [unit for unit, (low, high) in self.plausible.items() if low <= value <= high]
        if len(fitting) == 1:
            converted = self.to_canonical(value, fitting[0], None)
            if converted is not None:
                return converted, fitting[0], None
        if len(fitting) > 1:
            return None, None, "no unit reported, and the value is plausible in " + " and in ".join(fitting)
        return None, None, "no unit reported, and the value is not plausible in any unit of this analyte"

    def to_canonical(self, value: float, unit_code: str | None, unit_text: str | None) -> float | None:
        """`value` in the canonical unit; None when the unit is unknown or the value impossible."""
        for unit in (unit_code, unit_text):
            if unit:
                factor = self.factors.get(_unit_key(unit))
                if factor is not None:
                    converted = value * factor
                    return converted if 0 <= converted <= self.plausible_max else None
        return None


@dataclass(frozen=True)
class QualitativeVocabulary:
    positive_codings: frozenset[str]
    negative_codings: frozenset[str]
    positive_texts: frozenset[str]
    negative_texts: frozenset[str]

    def read_coding(self, system: str | None, code: str | None) -> str | None:
        key = f"{system}|{code}"
        if key in self.positive_codings:
            return "positive"
        if key in self.negative_codings:
            return "negative"
        return None

    def read_text(self, text: str | None) -> str | None:
        if not text:
            return None
        key = text.strip().lower()
        if key in self.positive_texts:
            return "positive"
        if key in self.negative_texts:
            return "negative"
        return None


@lru_cache(maxsize=4)
def analyte_units(directory: Path | None = None) -> dict[str, AnalyteUnits]:
    data = tomllib.loads(((directory or seeds_dir()) / "units.toml").read_text(encoding="utf-8"))
    return {
        name: AnalyteUnits(
            analyte=name,
            canonical=table["canonical"],
            plausible_max=float(table["plausible_max"]),
            factors={_unit_key(unit): float(factor) for unit, factor in table["units"].items()},
            plausible={unit: (float(low), float(high)) for unit, (low, high) in table.get("plausible", {}).items()},
        )
        for name, table in data["analytes"].items()
    }


@lru_cache(maxsize=4)
def qualitative_vocabulary(directory: Path | None = None) -> QualitativeVocabulary:
    data = tomllib.loads(((directory or seeds_dir()) / "qualitative-results.toml").read_text(encoding="utf-8"))
    return QualitativeVocabulary(
        positive_codings=frozenset(data["positive"]["codings"]),
        negative_codings=frozenset(data["negative"]["codings"]),
        positive_texts=frozenset(t.lower() for t in data["positive"]["texts"]),
        negative_texts=frozenset(t.lower() for t in data["negative"]["texts"]),
    )
