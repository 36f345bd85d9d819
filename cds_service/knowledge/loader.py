"""Load and validate the clinical knowledge base in ``seeds/``.

The seeds directory holds reviewed data only (no code):

* ``valuesets/<name>.csv`` — one value set per file, columns ``system,code,display,source``;
* ``valuesets.toml``      — the index: title, description, sources, notes per value set;
* ``medication-names.csv`` — lower-case names of *uncoded* medications -> value set;
* ``thresholds.toml``     — every number the rules use, each with unit and source sentence;
* ``topics.toml``         — the card catalog as data;
* ``sources.toml``        — the documents the cards cite (stable ids, URL, how the URL was checked).

Matching semantics
------------------
* ICD-10-CM (``http://hl7.org/fhir/sid/icd-10-cm``): a row matches that code **and all of its
  subcodes** (``M84.75`` covers ``M84.750A`` …). Codes are compared without the dot and in
  upper case, so ``Z99.2`` and ``Z992`` are the same code.
* Every other system matches the exact code only (after whitespace is stripped; NDCs are
  normalised to 11 digits, codes of ATC/CPT/HCPCS/CDT are compared in upper case).
* System URIs are compared exactly after mapping a few well-known aliases (``urn:oid:`` forms,
  the UMLS NDC URI, a trailing slash on SNOMED) to the canonical FHIR URI.

Everything is validated on load; a problem raises :class:`KnowledgeError` naming the file and
line. The result is cached per (directory, overrides), so calling :func:`load_knowledge` from
request code is cheap; all look-ups are dictionary/set hits.
"""

from __future__ import annotations

import csv
import math
import re
import threading
import tomllib
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from types import MappingProxyType

from cds_service.knowledge.errors import KnowledgeError
from cds_service.knowledge.sources import SOURCES_NAME, Source, load_sources

# --------------------------------------------------------------------------------------------
# Code systems
# --------------------------------------------------------------------------------------------

RXNORM = "http://www.nlm.nih.gov/research/umls/rxnorm"
NDC = "http://hl7.org/fhir/sid/ndc"
ATC = "http://www.whocc.no/atc"
LOINC = "http://loinc.org"
SNOMED = "http://snomed.info/sct"
ICD10CM = "http://hl7.org/fhir/sid/icd-10-cm"
CPT = "http://www.ama-assn.org/go/cpt"
HCPCS_CMS = "https://www.cms.gov/Medicare/Coding/HCPCSReleaseCodeSets"
HCPCS_UMLS = "http://www.nlm.nih.gov/research/umls/hcpcs"
CDT_ADA = "http://www.ada.org/cdt"
CDT_HL7 = "http://terminology.hl7.org/CodeSystem/CD2"

#: The only system URIs a seed row may use (canonical FHIR URIs).
KNOWN_SYSTEMS: frozenset[str] = frozenset(
    {RXNORM, NDC, ATC, LOINC, SNOMED, ICD10CM, CPT, HCPCS_CMS, HCPCS_UMLS, CDT_ADA, CDT_HL7}
)

#: Common aliases accepted in incoming data, mapped to the canonical URI.
SYSTEM_ALIASES: Mapping[str, str] = MappingProxyType(
    {
        "urn:oid:2.16.840.1.113883.6.88": RXNORM,
        "urn:oid:2.16.840.1.113883.6.1": LOINC,
        "urn:oid:2.16.840.1.113883.6.96": SNOMED,
        "urn:oid:2.16.840.1.113883.6.90": ICD10CM,
        "urn:oid:2.16.840.1.113883.6.69": NDC,
        "http://www.nlm.nih.gov/research/umls/ndc": NDC,
        "http://snomed.info/sct/": SNOMED,
        "urn:oid:2.16.840.1.113883.6.73": ATC,
        "urn:oid:2.16.840.1.113883.6.12": CPT,
        "urn:oid:2.16.840.1.113883.6.285": HCPCS_CMS,
        "urn:oid:2.16.840.1.113883.6.13": CDT_ADA,
        # FHIR's own code systems of a Condition's statuses (record/fhir_parse.R4_CODED_STATUSES),
        # under the URLs STU3 gave them: the same codes
        "http://hl7.org/fhir/condition-clinical": "http://terminology.hl7.org/CodeSystem/condition-clinical",
        "http://hl7.org/fhir/condition-ver-status": "http://terminology.hl7.org/CodeSystem/condition-ver-status",
    }
)

_UPPER_CASE_SYSTEMS = frozenset({ICD10CM, ATC, CPT, HCPCS_CMS, HCPCS_UMLS, CDT_ADA, CDT_HL7})

# Format checks for seed rows (incoming data is only normalised, never rejected).
_SEED_CODE_PATTERNS: Mapping[str, re.Pattern[str]] = MappingProxyType(
    {
        RXNORM: re.compile(r"^[0-9]{1,9}$"),
        NDC: re.compile(r"^[0-9]{11}$"),
        ATC: re.compile(r"^[A-Z][0-9]{2}([A-Z]([A-Z]([0-9]{2})?)?)?$"),
        LOINC: re.compile(r"^[0-9]{1,7}-[0-9]$"),
        SNOMED: re.compile(r"^[1-9][0-9]{5,17}$"),
        ICD10CM: re.compile(r"^[A-Z][0-9][0-9A-Z](\.[0-9A-Z]{1,4})?$"),
        CPT: re.compile(r"^[0-9]{4}[0-9A-Z]$"),
        HCPCS_CMS: re.compile(r"^[A-V][0-9]{4}$"),
        HCPCS_UMLS: re.compile(r"^[A-V][0-9]{4}$"),
        CDT_ADA: re.compile(r"^D[0-9]{4}$"),
        CDT_HL7: re.compile(r"^D[0-9]{4}$"),
    }
)

VALUESET_COLUMNS = ("system", "code", "display", "source")
MEDICATION_NAME_COLUMNS = ("name", "valueset", "source")
TRIGGERS = frozenset({"denosumab-order", "follow-on-order", "patient-view"})

_NAME_RE = re.compile(r"^[a-z0-9]+(-[a-z0-9]+)*$")
_THRESHOLD_NAME_RE = re.compile(r"^[a-z0-9]+(_[a-z0-9]+)*$")
_WORD_RE = re.compile(r"[a-z0-9]+")



# --------------------------------------------------------------------------------------------
# Normalisation
# --------------------------------------------------------------------------------------------


def canonical_system(system: str | None) -> str:
    """Map an incoming system URI to its canonical FHIR URI (unknown URIs are returned stripped)."""
    if not system:
        return ""
    system = system.strip()
    return SYSTEM_ALIASES.get(system, system)


def normalize_ndc(code: str) -> str:
    """NDC in any of the usual forms -> 11 digits (5-4-2), else the stripped input.

    Hyphenated 10-digit forms 4-4-2, 5-3-2 and 5-4-1 get the missing leading zero in the right
    segment; 5-4-2 hyphenated and plain 11-digit codes are joined as they are. An unhyphenated
    10-digit code is ambiguous and is returned unchanged (it cannot match an 11-digit row).
    """
    code = code.strip()
    if "-" not in code:
        return code
    parts = code.split("-")
    if len(parts) != 3 or not all(p.isdigit() for p in parts):
        return code
    a, b, c = (len(p) for p in parts)
    if (a, b, c) == (4, 4, 2):
        parts[0] = "0" + parts[0]
    elif (a, b, c) == (5, 3, 2):
        parts[1] = "0" + parts[1]
    elif (a, b, c) == (5, 4, 1):
        parts[2] = "0" + parts[2]
    elif (a, b, c) != (5, 4, 2):
        return code
    return "".join(parts)


def normalize_code(system: str, code: str | None) -> str:
    """Normalise a code of the (canonical) ``system`` for comparison."""
    if code is None:
        return ""
    code = "".join(code.split())  # strip all whitespace
    if system == NDC:
        return normalize_ndc(code)
    if system == ICD10CM:
        return code.upper().replace(".", "")
    if system in _UPPER_CASE_SYSTEMS:
        return code.upper()
    return code


def _icd_prefixes(code: str) -> Iterable[str]:
    """``M84750A`` -> M84, M847, M8475, M84750, M84750A (ICD-10-CM categories have 3 chars)."""
    for end in range(3, len(code) + 1):
        yield code[:end]


# --------------------------------------------------------------------------------------------
# Data classes
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Coding:
    system: str
    code: str
    display: str
    source: str


@dataclass(frozen=True)
class ValueSet:
    name: str
    title: str
    description: str
    sources: tuple[str, ...]
    notes: str | None
    codings: tuple[Coding, ...]
    _keys: frozenset[tuple[str, str]] = field(repr=False, compare=False)
    # Value sets of things a card orders: the instructions the suggested order carries.
    sig: str | None = None  # dosage text, as the prescriber will read it
    timing_repeat: Mapping[str, object] | None = None  # FHIR Timing.repeat: frequency, period, periodUnit

    def contains(self, system: str | None, code: str | None) -> bool:
        """True when the coding is in this value set (ICD-10-CM: also via a listed parent code)."""
        system = canonical_system(system)
        norm = normalize_code(system, code)
        if not norm:
            return False
        if system == ICD10CM:
            return any((system, p) in self._keys for p in _icd_prefixes(norm))
        return (system, norm) in self._keys

    def __len__(self) -> int:
        return len(self.codings)

    @property
    def size(self) -> int:
        return len(self.codings)

    def systems(self) -> dict[str, int]:
        """Number of rows per code system (for review pages)."""
        counts: dict[str, int] = {}
        for c in self.codings:
            counts[c.system] = counts.get(c.system, 0) + 1
        return counts


@dataclass(frozen=True)
class Threshold:
    name: str
    value: float
    unit: str
    source: str
    notes: str | None = None
    #: the value in seeds/thresholds.toml (differs from ``value`` when a deployment overrides it)
    default: float | None = None

    @property
    def overridden(self) -> bool:
        return self.default is not None and self.default != self.value


REGIMENS = ("60mg", "120mg")
INDICATORS = ("info", "warning", "critical")


@dataclass(frozen=True)
class OverrideReason:
    code: str
    display: str
    # Suppression after an override (card catalog v2): days the topic stays hidden for the patient;
    # by regimen when the period is the dosing interval. Empty: this reason suppresses nothing.
    suppress_days: Mapping[str, int] = field(default_factory=dict)  # regimen or "*" -> days
    suppress_indicators: tuple[str, ...] = INDICATORS  # indicators of the overridden card it applies to

    def suppression_days(self, regimen: str | None) -> int | None:
        """The period for `regimen`; with the regimen unknown, the shortest (the card returns soonest)."""
        if not self.suppress_days:
            return None
        if "*" in self.suppress_days:
            return self.suppress_days["*"]
        if regimen in self.suppress_days:
            return self.suppress_days[regimen]
        return min(self.suppress_days.values())


@dataclass(frozen=True)
class Topic:
    code: str
    display: str
    triggers: tuple[str, ...]
    when: str
    indicators: str
    thresholds: tuple[str, ...]
    valuesets: tuple[str, ...]
    citation: str
    source_url: str | None
    override_reasons: tuple[OverrideReason, ...]
    sources: tuple[str, ...] = ()  # ids in sources.toml, primary sources first
    never_suppress_critical: bool = False  # a critical card of this topic is never hidden by an override's period
    can_be_critical: bool = True  # seeds/topics.toml `can_be_critical`; unknown counts as "can"

    def override_reason(self, code: str | None) -> OverrideReason | None:
        return next((reason for reason in self.override_reasons if reason.code == code), None)


@dataclass(frozen=True)
class MedicationName:
    name: str
    valueset: str
    source: str


_SEEN_CODINGS_LIMIT = 20_000


@dataclass(frozen=True)
class Knowledge:
    seeds_dir: Path
    value_sets: Mapping[str, ValueSet]
    thresholds: Mapping[str, Threshold]
    topics: Mapping[str, Topic]
    medication_names: tuple[MedicationName, ...]
    _index: Mapping[tuple[str, str], frozenset[str]] = field(repr=False, compare=False)
    _names: Mapping[tuple[str, ...], frozenset[str]] = field(repr=False, compare=False)
    _max_name_words: int = field(default=0, repr=False, compare=False)
    sources: Mapping[str, "Source"] = field(default_factory=dict)  # sources.toml, by id
    # A concept's codings as they arrive -> their value sets: a long history repeats the same few
    # dozen codes (a lab catalogue is the same for every patient), and normalising each costs more
    # than looking it up. Bounded; cleared when full.
    _seen_codings: dict[tuple, frozenset[str]] = field(default_factory=dict, repr=False, compare=False)
    # The same for medication names: an EHR's history repeats the same few texts on every call
    # (82 look-ups per heavy call, each a scan of every word run). Bounded; cleared when full.
    _seen_texts: dict[str, frozenset[str]] = field(default_factory=dict, repr=False, compare=False)

    # -- look-ups ---------------------------------------------------------------------------

    def concepts_for(self, system: str | None, code: str | None) -> frozenset[str]:
        """Names of all value sets containing the coding (ICD-10-CM: also via parent codes)."""
        return self.concepts_for_codings(((system, code),))

    def concepts_for_codings(self, codings: tuple[tuple[str | None, str | None], ...]) -> frozenset[str]:
        """Names of all value sets containing any of a concept's codings, (system, code) pairs."""
        found = self._seen_codings.get(codings)
        if found is None:
            found = frozenset().union(*(self._concepts_of_coding(system, code) for system, code in codings))
            if len(self._seen_codings) >= _SEEN_CODINGS_LIMIT:
                self._seen_codings.clear()
            self._seen_codings[codings] = found
        return found

    def _concepts_of_coding(self, system: str | None, code: str | None) -> frozenset[str]:
        system = canonical_system(system)
        norm = normalize_code(system, code)
        if not norm:
            return frozenset()
        if system != ICD10CM:
            return self._index.get((system, norm), frozenset())
        found: frozenset[str] = frozenset()
        for prefix in _icd_prefixes(norm):
            hit = self._index.get((system, prefix))
            if hit:
                found = found | hit
        return found

    def concepts_for_text(self, text: str | None) -> frozenset[str]:
        """Value sets named in free text (medication-names.csv; case-insensitive whole words)."""
        if not text:
            return frozenset()
        found = self._seen_texts.get(text)
        if found is None:
            found = self._concepts_named_in(text)
            if len(self._seen_texts) >= _SEEN_CODINGS_LIMIT:
                self._seen_texts.clear()
            self._seen_texts[text] = found
        return found

    def _concepts_named_in(self, text: str) -> frozenset[str]:
        words = _WORD_RE.findall(text.lower())
        found: frozenset[str] = frozenset()
        for i in range(len(words)):
            for n in range(1, min(self._max_name_words, len(words) - i) + 1):
                hit = self._names.get(tuple(words[i : i + n]))
                if hit:
                    found = found | hit
        return found

    def threshold(self, name: str) -> float:
        try:
            return self.thresholds[name].value
        except KeyError:
            raise KnowledgeError(f"unknown threshold {name!r}") from None

    def value_set(self, name: str) -> ValueSet:
        try:
            return self.value_sets[name]
        except KeyError:
            raise KnowledgeError(f"unknown value set {name!r}") from None


# --------------------------------------------------------------------------------------------
# Loading
# --------------------------------------------------------------------------------------------


def _line_of(text: str, needle: str) -> int | None:
    for number, line in enumerate(text.splitlines(), start=1):
        if line.strip().startswith(needle):
            return number
    return None


def _where(path: Path, line: int | None) -> str:
    return f"{path}:{line}" if line else str(path)


def _read_toml(path: Path) -> tuple[dict, str]:
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise KnowledgeError(f"{path}: file missing") from None
    try:
        return tomllib.loads(text), text
    except tomllib.TOMLDecodeError as exc:
        raise KnowledgeError(f"{path}: invalid TOML: {exc}") from None


def _tables(data: dict, key: str, path: Path) -> dict[str, dict]:
    tables = data.get(key)
    if not isinstance(tables, dict) or not tables:
        raise KnowledgeError(f"{path}: expected [{key}.<name>] tables")
    unknown = set(data) - {key}
    if unknown:
        raise KnowledgeError(f"{path}: unexpected top-level keys {sorted(unknown)}")
    return tables


def _require_str(table: dict, key: str, where: str, *, optional: bool = False) -> str | None:
    value = table.get(key)
    if value is None and optional:
        return None
    if not isinstance(value, str) or not value.strip():
        raise KnowledgeError(f"{where}: '{key}' must be a non-empty string")
    return value.strip()


def _require_str_list(table: dict, key: str, where: str, *, allow_empty: bool = False) -> tuple[str, ...]:
    value = table.get(key)
    if not isinstance(value, list) or (not value and not allow_empty):
        raise KnowledgeError(f"{where}: '{key}' must be a{'n' if allow_empty else ' non-empty'} array of strings")
    if not all(isinstance(v, str) and v.strip() for v in value):
        raise KnowledgeError(f"{where}: '{key}' must contain non-empty strings only")
    if len(set(value)) != len(value):
        raise KnowledgeError(f"{where}: '{key}' has duplicate entries")
    return tuple(v.strip() for v in value)


def _check_keys(table: dict, allowed: set[str], where: str) -> None:
    unknown = set(table) - allowed
    if unknown:
        raise KnowledgeError(f"{where}: unknown keys {sorted(unknown)} (allowed: {sorted(allowed)})")


def _read_csv(path: Path, columns: tuple[str, ...]) -> list[tuple[int, dict[str, str]]]:
    try:
        handle = path.open(encoding="utf-8", newline="")
    except FileNotFoundError:
        raise KnowledgeError(f"{path}: file missing") from None
    rows: list[tuple[int, dict[str, str]]] = []
    with handle:
        reader = csv.reader(handle)
        header = next(reader, None)
        if header is None or tuple(h.strip() for h in header) != columns:
            raise KnowledgeError(
                f"{path}:1: column layout must be exactly {','.join(columns)} (found {header!r})"
            )
        for record in reader:
            line = reader.line_num
            if not record or all(not cell.strip() for cell in record):
                continue
            if len(record) != len(columns):
                raise KnowledgeError(f"{path}:{line}: expected {len(columns)} columns, found {len(record)}")
            rows.append((line, {c: v.strip() for c, v in zip(columns, record)}))
    return rows


def _load_value_sets(seeds: Path) -> dict[str, ValueSet]:
    index_path = seeds / "valuesets.toml"
    data, text = _read_toml(index_path)
    entries = _tables(data, "valuesets", index_path)
    csv_dir = seeds / "valuesets"
    if not csv_dir.is_dir():
        raise KnowledgeError(f"{csv_dir}: directory missing")
    csv_names = {p.stem: p for p in csv_dir.iterdir() if p.suffix == ".csv"}
    others = [p.name for p in csv_dir.iterdir() if p.suffix != ".csv" and not p.name.startswith(".")]
    if others:
        raise KnowledgeError(f"{csv_dir}: unexpected files {sorted(others)} (only <name>.csv)")
    for name, path in sorted(csv_names.items()):
        if name not in entries:
            raise KnowledgeError(f"{path}: no [valuesets.{name}] entry in {index_path}")

    value_sets: dict[str, ValueSet] = {}
    for name, entry in entries.items():
        where = _where(index_path, _line_of(text, f"[valuesets.{name}]"))
        if not _NAME_RE.match(name):
            raise KnowledgeError(f"{where}: value set name {name!r} must be lower-kebab-case")
        if not isinstance(entry, dict):
            raise KnowledgeError(f"{where}: [valuesets.{name}] must be a table")
        _check_keys(entry, {"title", "description", "sources", "notes", "sig", "timing"}, where)
        if name not in csv_names:
            raise KnowledgeError(f"{where}: [valuesets.{name}] has no file {csv_dir / (name + '.csv')}")
        title = _require_str(entry, "title", where)
        description = _require_str(entry, "description", where)
        sources = _require_str_list(entry, "sources", where)
        notes = _require_str(entry, "notes", where, optional=True)
        sig = _require_str(entry, "sig", where, optional=True)
        timing_repeat = _timing_repeat(entry.get("timing"), where) if "timing" in entry else None

        path = csv_names[name]
        codings: list[Coding] = []
        keys: set[tuple[str, str]] = set()
        for line, row in _read_csv(path, VALUESET_COLUMNS):
            at = f"{path}:{line}"
            system, code = row["system"], row["code"]
            if not code:
                raise KnowledgeError(f"{at}: empty code")
            if system not in KNOWN_SYSTEMS:
                raise KnowledgeError(f"{at}: unknown system URI {system!r}")
            pattern = _SEED_CODE_PATTERNS[system]
            if not pattern.match(code):
                raise KnowledgeError(f"{at}: code {code!r} is not a well-formed {system} code")
            if not row["display"]:
                raise KnowledgeError(f"{at}: empty display")
            if not row["source"]:
                raise KnowledgeError(f"{at}: empty source")
            key = (system, normalize_code(system, code))
            if key in keys:
                raise KnowledgeError(f"{at}: duplicate row {system}|{code}")
            keys.add(key)
            codings.append(Coding(system, code, row["display"], row["source"]))
        if not codings:
            raise KnowledgeError(f"{path}: value set has no rows")
        value_sets[name] = ValueSet(
            name=name,
            title=title,
            description=description,
            sources=sources,
            notes=notes,
            codings=tuple(codings),
            _keys=frozenset(keys),
            sig=sig,
            timing_repeat=timing_repeat,
        )
    return value_sets


_TIMING_PERIOD_UNITS = frozenset({"s", "min", "h", "d", "wk", "mo", "a"})


def _timing_repeat(table, where: str) -> Mapping[str, object]:
    """`timing = { frequency = 2, period = 1, periodUnit = "d" }`: a FHIR Timing.repeat; an
    optional `count` is the number of doses (a course, e.g. weekly for 8 weeks)."""
    if not isinstance(table, dict):
        raise KnowledgeError(f"{where}: timing must be an inline table such as {{ frequency = 1, period = 1, periodUnit = \"d\" }}")
    _check_keys(table, {"frequency", "period", "periodUnit", "count"}, where)
    count = table.get("count")
    if count is not None and not (isinstance(count, int) and not isinstance(count, bool) and count > 0):
        raise KnowledgeError(f"{where}: timing.count must be a positive whole number")
    frequency, period, unit = table.get("frequency"), table.get("period"), table.get("periodUnit")
    if not (isinstance(frequency, int) and not isinstance(frequency, bool) and frequency > 0):
        raise KnowledgeError(f"{where}: timing.frequency must be a positive whole number")
    if not (isinstance(period, (int, float)) and not isinstance(period, bool) and period > 0):
        raise KnowledgeError(f"{where}: timing.period must be a positive number")
    if unit not in _TIMING_PERIOD_UNITS:
        raise KnowledgeError(f"{where}: timing.periodUnit must be one of {', '.join(sorted(_TIMING_PERIOD_UNITS))}")
    repeat = {"frequency": frequency, "period": period, "periodUnit": unit}
    if count is not None:
        repeat["count"] = count
    return MappingProxyType(repeat)


def _load_medication_names(seeds: Path, value_sets: Mapping[str, ValueSet]) -> tuple[MedicationName, ...]:
    path = seeds / "medication-names.csv"
    names: list[MedicationName] = []
    seen: set[tuple[str, str]] = set()
    for line, row in _read_csv(path, MEDICATION_NAME_COLUMNS):
        at = f"{path}:{line}"
        name, valueset, source = row["name"], row["valueset"], row["source"]
        if not name:
            raise KnowledgeError(f"{at}: empty name")
        if name != name.lower():
            raise KnowledgeError(f"{at}: name {name!r} must be lower case")
        if not _WORD_RE.findall(name):
            raise KnowledgeError(f"{at}: name {name!r} has no letters or digits")
        if valueset not in value_sets:
            raise KnowledgeError(f"{at}: unknown value set {valueset!r}")
        if not source:
            raise KnowledgeError(f"{at}: empty source")
        if (name, valueset) in seen:
            raise KnowledgeError(f"{at}: duplicate row {name},{valueset}")
        seen.add((name, valueset))
        names.append(MedicationName(name, valueset, source))
    return tuple(names)


def _number(value: object) -> float | None:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return None
    value = float(value)
    return value if math.isfinite(value) else None


def _load_thresholds(seeds: Path, overrides: Mapping[str, object] | None) -> dict[str, Threshold]:
    path = seeds / "thresholds.toml"
    data, text = _read_toml(path)
    tables = _tables(data, "thresholds", path)
    thresholds: dict[str, Threshold] = {}
    for name, table in tables.items():
        where = _where(path, _line_of(text, f"[thresholds.{name}]"))
        if not _THRESHOLD_NAME_RE.match(name):
            raise KnowledgeError(f"{where}: threshold name {name!r} must be lower_snake_case")
        if not isinstance(table, dict):
            raise KnowledgeError(f"{where}: [thresholds.{name}] must be a table")
        _check_keys(table, {"value", "unit", "source", "notes"}, where)
        value = _number(table.get("value"))
        if value is None:
            raise KnowledgeError(f"{where}: 'value' must be a finite number")
        if "source" not in table:
            raise KnowledgeError(f"{where}: threshold {name!r} has no source")
        unit = _require_str(table, "unit", where)
        source = _require_str(table, "source", where)
        notes = _require_str(table, "notes", where, optional=True)
        thresholds[name] = Threshold(name, value, unit, source, notes, default=value)

    for name, raw in (overrides or {}).items():
        if name not in thresholds:
            raise KnowledgeError(f"threshold override {name!r}: no such threshold in {path}")
        value = _number(raw)
        if value is None and isinstance(raw, str):
            try:
                value = _number(float(raw.strip()))
            except ValueError:
                value = None
        if value is None or value < 0:
            raise KnowledgeError(f"threshold override {name!r}: {raw!r} is not a finite non-negative number")
        base = thresholds[name]
        thresholds[name] = Threshold(name, value, base.unit, base.source, base.notes, default=base.default)
    return thresholds


def _load_topics(
    seeds: Path, value_sets: Mapping[str, ValueSet], thresholds: Mapping[str, Threshold],
    sources: Mapping[str, Source],
) -> dict[str, Topic]:
    path = seeds / "topics.toml"
    data, text = _read_toml(path)
    tables = _tables(data, "topics", path)
    allowed = {
        "display", "triggers", "when", "indicators", "thresholds", "valuesets",
        "citation", "source_url", "override_reasons", "sources", "never_suppress_critical", "can_be_critical",
    }
    topics: dict[str, Topic] = {}
    for code, table in tables.items():
        where = _where(path, _line_of(text, f"[topics.{code}]"))
        if not _NAME_RE.match(code):
            raise KnowledgeError(f"{where}: topic code {code!r} must be lower-kebab-case")
        if not isinstance(table, dict):
            raise KnowledgeError(f"{where}: [topics.{code}] must be a table")
        _check_keys(table, allowed, where)
        triggers = _require_str_list(table, "triggers", where)
        bad = [t for t in triggers if t not in TRIGGERS]
        if bad:
            raise KnowledgeError(f"{where}: unknown triggers {bad} (allowed: {sorted(TRIGGERS)})")
        used_thresholds = _require_str_list(table, "thresholds", where, allow_empty=True)
        for name in used_thresholds:
            if name not in thresholds:
                raise KnowledgeError(f"{where}: topic {code!r} references unknown threshold {name!r}")
        used_sets = _require_str_list(table, "valuesets", where, allow_empty=True)
        for name in used_sets:
            if name not in value_sets:
                raise KnowledgeError(f"{where}: topic {code!r} references unknown value set {name!r}")
        source_url = _require_str(table, "source_url", where, optional=True)
        if source_url is not None and not source_url.startswith(("https://", "http://")):
            raise KnowledgeError(f"{where}: source_url must be an http(s) URL")
        cited = _require_str_list(table, "sources", where, allow_empty=True) if "sources" in table else ()
        unknown_sources = [s for s in cited if s not in sources]
        if unknown_sources:
            raise KnowledgeError(f"{where}: topic {code!r} cites unknown sources {unknown_sources} (sources.toml)")
        reasons_raw = table.get("override_reasons")
        if not isinstance(reasons_raw, list) or not reasons_raw:
            raise KnowledgeError(f"{where}: 'override_reasons' must be a non-empty array of tables")
        reasons: list[OverrideReason] = []
        for reason in reasons_raw:
            if not isinstance(reason, dict) or not {"code", "display"} <= set(reason) <= _REASON_KEYS:
                raise KnowledgeError(
                    f"{where}: each override reason needs code and display (optional: suppress_days, suppress_indicators)"
                )
            r_code = _require_str(reason, "code", where)
            r_display = _require_str(reason, "display", where)
            if not _NAME_RE.match(r_code):
                raise KnowledgeError(f"{where}: override reason code {r_code!r} must be lower-kebab-case")
            if any(r.code == r_code for r in reasons):
                raise KnowledgeError(f"{where}: duplicate override reason {r_code!r}")
            reasons.append(
                OverrideReason(
                    r_code,
                    r_display,
                    suppress_days=suppression_period(reason.get("suppress_days"), f"{where}: {r_code}.suppress_days"),
                    suppress_indicators=_suppress_indicators(reason, f"{where}: {r_code}"),
                )
            )
        topics[code] = Topic(
            code=code,
            display=_require_str(table, "display", where),
            triggers=triggers,
            when=_require_str(table, "when", where),
            indicators=_require_str(table, "indicators", where),
            thresholds=used_thresholds,
            valuesets=used_sets,
            citation=_require_str(table, "citation", where),
            source_url=source_url,
            override_reasons=tuple(reasons),
            never_suppress_critical=_flag(table, "never_suppress_critical", where),
            sources=cited,
            # a topic that does not say counts as able to be critical: the safe side
            can_be_critical=_flag(table, "can_be_critical", where, default=True),
        )
    return topics


_REASON_KEYS = {"code", "display", "suppress_days", "suppress_indicators"}


def suppression_period(raw: object, where: str) -> Mapping[str, int]:
    """A suppression period as written in seeds or config: days (every regimen), or a table of
    days by regimen (`{ 60mg = 183, 120mg = 28 }`); None means none."""
    if raw is None:
        return MappingProxyType({})
    by_regimen = raw if isinstance(raw, dict) else {"*": raw}
    if not by_regimen or any(r != "*" and r not in REGIMENS for r in by_regimen):
        raise KnowledgeError(f"{where}: give days, or a table of days by regimen ({', '.join(REGIMENS)})")
    for days in by_regimen.values():
        if isinstance(days, bool) or not isinstance(days, int) or not 0 <= days <= 3650:
            raise KnowledgeError(f"{where}: {days!r} is not a whole number of days from 0 to 3650")
    return MappingProxyType(dict(by_regimen))


def _suppress_indicators(reason: dict, where: str) -> tuple[str, ...]:
    if "suppress_indicators" not in reason:
        return INDICATORS
    values = _require_str_list(reason, "suppress_indicators", where)
    if any(v not in INDICATORS for v in values):
        raise KnowledgeError(f"{where}: suppress_indicators must be among {', '.join(INDICATORS)}")
    return values


def _flag(table: Mapping, key: str, where: str, default: bool = False) -> bool:
    value = table.get(key, default)
    if not isinstance(value, bool):
        raise KnowledgeError(f"{where}: {key!r} must be true or false")
    return value


def _load_sources(seeds: Path) -> dict[str, Source]:
    """sources.toml (optional file): the documents the topics cite, by id."""
    return load_sources(seeds)[0] if (seeds / SOURCES_NAME).exists() else {}


def _build(seeds: Path, overrides: Mapping[str, object] | None) -> Knowledge:
    if not seeds.is_dir():
        raise KnowledgeError(f"{seeds}: seeds directory missing")
    value_sets = _load_value_sets(seeds)
    med_names = _load_medication_names(seeds, value_sets)
    thresholds = _load_thresholds(seeds, overrides)
    sources = _load_sources(seeds)
    topics = _load_topics(seeds, value_sets, thresholds, sources)

    index: dict[tuple[str, str], set[str]] = {}
    for vs in value_sets.values():
        for key in vs._keys:
            index.setdefault(key, set()).add(vs.name)
    names: dict[tuple[str, ...], set[str]] = {}
    for med in med_names:
        names.setdefault(tuple(_WORD_RE.findall(med.name)), set()).add(med.valueset)
    return Knowledge(
        seeds_dir=seeds,
        value_sets=MappingProxyType(dict(sorted(value_sets.items()))),
        thresholds=MappingProxyType(dict(sorted(thresholds.items()))),
        topics=MappingProxyType(topics),
        medication_names=med_names,
        sources=MappingProxyType(sources),
        _index=MappingProxyType({k: frozenset(v) for k, v in index.items()}),
        _names=MappingProxyType({k: frozenset(v) for k, v in names.items()}),
        _max_name_words=max((len(k) for k in names), default=0),
    )


_cache: dict[tuple[Path, tuple], Knowledge] = {}
_lock = threading.Lock()


def seeds_dir() -> Path:
    """The seeds directory: packaged copy in an installed wheel, else the repository's ``seeds/``."""
    import cds_service

    packaged = Path(cds_service.__file__).resolve().parent / "seeds"
    if packaged.is_dir():
        return packaged
    return Path(__file__).resolve().parents[2] / "seeds"


_default_seeds_dir = seeds_dir  # the parameter of load_knowledge shadows the name


def load_knowledge(
    seeds_dir: str | Path | None = None, threshold_overrides: Mapping[str, object] | None = None
) -> Knowledge:
    """Load (once per directory and overrides) and validate the knowledge base."""
    directory = Path(seeds_dir).resolve() if seeds_dir is not None else _default_seeds_dir()
    try:
        key_overrides = tuple(sorted((str(k), repr(v)) for k, v in (threshold_overrides or {}).items()))
    except TypeError:
        raise KnowledgeError("threshold_overrides must be a mapping of name -> number") from None
    key = (directory, key_overrides)
    with _lock:
        cached = _cache.get(key)
        if cached is None:
            cached = _build(directory, threshold_overrides)
            _cache[key] = cached
        return cached


def clear_cache() -> None:
    """Forget loaded knowledge (tests, or after seeds changed on disk)."""
    with _lock:
        _cache.clear()
