"""Generate the clinical review page ``seeds/README.md`` from the seeds.

    python -m cds_service.knowledge.review            # print the markdown
    python -m cds_service.knowledge.review --write    # (re)write seeds/README.md
    python -m cds_service.knowledge.review --check    # exit 1 when seeds/README.md is out of date

The page is what a clinical informaticist signs off: every card topic with its trigger,
indicator, thresholds (value, unit, source) and value sets (size, sources), then every value
set, threshold and medication name in full. It is generated, so it cannot drift from the data.
It stands on its own: a legend of every label the citations use and the full reference of every
source (`sources.toml`); `--check` also fails when a citation names a label or source id that
`sources.toml` does not define.
"""

from __future__ import annotations

import argparse
import csv
import re
import sys
import tomllib
from pathlib import Path

from cds_service.knowledge.loader import (
    KNOWN_SYSTEMS,
    SYSTEM_ALIASES,
    Knowledge,
    KnowledgeError,
    load_knowledge,
)
from cds_service.knowledge.sources import SOURCES_NAME, Source, load_sources

README_NAME = "README.md"

_SYSTEM_LABELS = {
    "http://www.nlm.nih.gov/research/umls/rxnorm": "RxNorm",
    "http://hl7.org/fhir/sid/ndc": "NDC",
    "http://www.whocc.no/atc": "ATC",
    "http://loinc.org": "LOINC",
    "http://snomed.info/sct": "SNOMED CT",
    "http://hl7.org/fhir/sid/icd-10-cm": "ICD-10-CM",
    "http://www.ama-assn.org/go/cpt": "CPT",
    "https://www.cms.gov/Medicare/Coding/HCPCSReleaseCodeSets": "HCPCS (CMS URI)",
    "http://www.nlm.nih.gov/research/umls/hcpcs": "HCPCS (UMLS URI)",
    "http://www.ada.org/cdt": "CDT (ADA URI)",
    "http://terminology.hl7.org/CodeSystem/CD2": "CDT (HL7 CD2 URI)",
}

# What a citation may name: a source id in brackets ("[ects-2021]"), or one of the labels older
# citations use ("S3", "Reference E1", "V-L", "Catalog", "Seed", "clinical-codes.md").
_CITED_ID_RE = re.compile(r"\[([a-z][a-z0-9]*(?:-[a-z0-9]+)*)\]")
_LABEL_RE = re.compile(r"\b(S\d{1,2}(?![\d.])|V-[A-Z0-9]+\b|[Rr]eference [A-G]\d?\b|Catalog\b|Seed\b|clinical-codes\.md)")
_CITING_KEYS = {"citation", "source", "sources", "notes"}  # TOML keys whose text cites




def citation_texts(directory: Path):
    """(where, text) of every text in seeds/ that cites: `citation`, `source`, `sources` and
    `notes` of the TOML files, the `source` column of the CSV files."""

    def walk(value, where):
        if isinstance(value, dict):
            for key, item in value.items():
                if key in _CITING_KEYS:
                    for text in (item if isinstance(item, list) else [item]):
                        if isinstance(text, str):
                            yield f"{where}.{key}", text
                else:
                    yield from walk(item, f"{where}.{key}")
        elif isinstance(value, list):
            for index, item in enumerate(value):
                yield from walk(item, f"{where}[{index}]")

    for path in sorted(directory.glob("*.toml")):
        if path.name != SOURCES_NAME:
            yield from walk(tomllib.loads(path.read_text(encoding="utf-8")), path.name)
    for path in sorted([*directory.glob("*.csv"), *directory.glob("valuesets/*.csv")]):
        with path.open(encoding="utf-8", newline="") as handle:
            for line, row in enumerate(csv.DictReader(handle), start=2):
                if row.get("source"):
                    yield f"{path.relative_to(directory)}:{line}", row["source"]


def _label_key(label: str) -> str:
    return "Reference" + label[9:] if label.lower().startswith("reference ") else label


def cited_labels(text: str) -> set[str]:
    """The source ids (as "[id]") and labels a citation text names."""
    return {f"[{sid}]" for sid in _CITED_ID_RE.findall(text)} | {_label_key(m) for m in _LABEL_RE.findall(text)}


def undefined_citations(directory: Path, sources: dict[str, Source], legend) -> list[tuple[str, str]]:
    """(where, label) for every label or [id] a citation names that sources.toml does not define."""
    defined = {f"[{sid}]" for sid in sources} | {e.label for e in legend} | {s.label for s in sources.values() if s.label}
    problems = []
    for where, text in citation_texts(directory):
        for label in sorted(cited_labels(text) - defined):
            problems.append((where, label))
    return problems


def _sources_of(labels: set[str], sources: dict[str, Source], legend) -> list[str]:
    """The source ids that a set of cited labels resolves to, in sources.toml order."""
    by_label = {e.label: set(e.sources) for e in legend} | {s.label: {s.id} for s in sources.values() if s.label}
    wanted = {label[1:-1] for label in labels if label.startswith("[")}
    for label in labels:
        wanted |= by_label.get(label, set())
    return [sid for sid in sources if sid in wanted]


def topic_sources(topic, sources: dict[str, Source], legend) -> list[str]:
    """The sources a topic's citation names: by [id] or label, by a legend name it contains
    ("ECTS 2021", "Reclast label"), or by its source_url."""
    labels = cited_labels(topic.citation) | {e.label for e in legend if e.sources and e.label in topic.citation}
    by_url = {s.id for s in sources.values() if topic.source_url and topic.source_url in (s.url, *s.also)}
    listed = set(topic.sources)
    return [sid for sid in sources if sid in listed or sid in by_url or sid in _sources_of(labels, sources, legend)]


def _reference(source: Source) -> str:
    """A full reference: authors, title, journal or publisher, date, DOI / URL."""
    parts = [f"{source.authors.rstrip('.')}." if source.authors else "", f"*{source.title}*.",
             f"{source.journal}." if source.journal else "", f"{source.publisher}.", f"{source.date}."]
    if source.doi:
        parts.append(f"DOI [{source.doi}](https://doi.org/{source.doi}).")
    if source.url and source.url != f"https://doi.org/{source.doi}":
        parts.append(f"<{source.url}>")
    if source.location:
        parts.append(f"In this repository: `{source.location}`.")
    parts += [f"Also: <{url}>" for url in source.also]
    if source.revision:
        parts.append(f"Revision cited: {source.revision}.")
    if source.verification:
        parts.append(f"Link {'verified' if source.verified else '**not verified**'}: {source.verification}")
    return " ".join(p for p in parts if p)


def _cell(text: object) -> str:
    """Make text safe for a markdown table cell."""
    return " ".join(str(text).split()).replace("|", "\\|")


def _num(value: float) -> str:
    return str(int(value)) if float(value).is_integer() else repr(float(value))


def render(kb: Knowledge) -> str:
    out: list[str] = []
    w = out.append

    w("# Clinical knowledge base — review page")
    w("")
    w("<!-- GENERATED by `python -m cds_service.knowledge.review --write` from the files in this")
    w("directory. Do not edit by hand: edit the seeds, regenerate, and commit both.")
    w("`python -m cds_service.knowledge.review --check` fails when this page is out of date. -->")
    w("")
    w("This directory is the service's clinical knowledge: **value sets** (`valuesets/*.csv`, indexed in")
    w("`valuesets.toml`), a **medication-name fallback** for uncoded orders (`medication-names.csv`), every")
    w("**threshold** and look-back window (`thresholds.toml`) and the **card catalog** as data")
    w("(`topics.toml`). Every code and number carries its source. This page is for clinical sign-off.")
    w("")
    w(f"Contents: {len(kb.topics)} topics, {len(kb.thresholds)} thresholds, {len(kb.value_sets)} value sets "
      f"({sum(len(v) for v in kb.value_sets.values())} codings), {len(kb.medication_names)} medication names.")
    w("")

    w("## How codes are matched")
    w("")
    w("* **ICD-10-CM** (`http://hl7.org/fhir/sid/icd-10-cm`): a row matches that code **and all of its")
    w("  subcodes** — `M84.75` covers `M84.750A` … `M84.759S`. Codes are compared without the dot and in")
    w("  upper case, so `Z99.2` and `Z992` are the same code. Headers are listed only where every subcode")
    w("  belongs; otherwise exact leaf codes are listed (e.g. `N18.4`, `N18.5`, `N18.6`, never `N18`, so")
    w("  `N18.3` is *not* advanced CKD).")
    w("* **Every other system** matches the exact code only. Whitespace is ignored; NDCs are normalised to")
    w("  11 digits (hyphenated 4-4-2, 5-3-2, 5-4-1 and 5-4-2 forms; an unhyphenated 10-digit NDC is")
    w("  ambiguous and does not match); ATC, CPT, HCPCS and CDT codes are compared in upper case.")
    w("* **System URIs** are compared exactly, after mapping these aliases to the canonical URI:")
    aliases = sorted(SYSTEM_ALIASES.items())
    for i, (alias, canonical) in enumerate(aliases):
        w(f"  `{alias}` → `{canonical}`" + ("." if i == len(aliases) - 1 else ";"))
    w("* HCPCS and CDT rows are listed under **both** URIs in use (CMS/UMLS for HCPCS, ADA/HL7 CD2 for CDT).")
    w("* Accepted code systems: " + ", ".join(f"{_SYSTEM_LABELS.get(s, s)} `{s}`" for s in sorted(KNOWN_SYSTEMS)) + ".")
    w("* **Uncoded medications** (no code of an accepted system: no code at all, or only an EHR's local id)")
    w("  are recognised by name (`medication-names.csv`, on the text, else the display): case-insensitive, whole")
    w("  words (`Prolia 60 mg/mL syringe` → `denosumab-60mg`; hyphens and punctuation separate words).")
    w("")

    w("## How a deployment changes a threshold")
    w("")
    w("Every number below is a default. A deployment overrides one in the service configuration file")
    w("(`DENOSUMAB_CDS_CONFIG`), table `[thresholds]`, by the threshold's name, e.g.:")
    w("")
    w("```toml")
    w("[thresholds]")
    w("invasive_dental_healing_days = 28   # the conservative end of the seed's 2-4 weeks")
    w("```")
    w("")
    w("The service passes these to `load_knowledge(threshold_overrides=...)`; an unknown name or a")
    w("non-numeric or negative value stops the service at start-up (`configuration error: thresholds.<name>: …`). Paired limits")
    w("(mg/dL and mmol/L, ng/mL and nmol/L) must be changed together. Unit conversions (`units.toml`,")
    w("listed at the end of this page) are facts, not choices, and cannot be overridden.")
    w("")

    sources, legend = load_sources(kb.seeds_dir)
    w("## Legend")
    w("")
    w("Labels and abbreviations the citations below use. A citation names a source by its id in square")
    w("brackets (`[prolia-pi]`) or by one of these labels; every source is listed in full under")
    w("**Sources** (`sources.toml`).")
    w("")
    w("| label | means | sources |")
    w("|---|---|---|")
    for entry in legend:
        links = ", ".join(f"[`{sid}`](#source-{sid})" for sid in entry.sources)
        w(f"| {_cell(entry.label)} | {_cell(entry.means)} | {links} |")
    w("")
    w("## Sources")
    w("")
    w("Every document the seeds cite, with the id a citation uses (and the older label, e.g. `S1`).")
    w("")
    for source in sources.values():
        label = f" ({source.label})" if source.label else ""
        w(f'* <a id="source-{source.id}"></a>**`{source.id}`**{label} — {_reference(source)} {source.what}')
    w("")

    # ------------------------------------------------------------------ topics
    w("## Card topics")
    w("")
    w("| topic | fires on | indicator |")
    w("|---|---|---|")
    for t in kb.topics.values():
        w(f"| [`{t.code}`](#topic-{t.code}) {_cell(t.display)} | {', '.join(t.triggers)} | {_cell(t.indicators)} |")
    w("")
    for t in kb.topics.values():
        w(f'<a id="topic-{t.code}"></a>')
        w(f"### `{t.code}` — {t.display}")
        w("")
        w(f"* **Fires on:** {', '.join(t.triggers)}")
        w(f"* **When:** {t.when}")
        w(f"* **Indicator:** {t.indicators}")
        w(f"* **Cites:** {t.citation}")
        cited = topic_sources(t, sources, legend)
        if cited:
            w("* **Sources:** " + ", ".join(f"[`{sid}`](#source-{sid})" for sid in cited))
        if t.source_url:
            w(f"* **Source URL:** <{t.source_url}>")
        w("* **Override reasons:** " + "; ".join(f"`{r.code}` {r.display}{_suppression(r)}" for r in t.override_reasons))
        if t.never_suppress_critical:
            w("* **Never suppressed when critical** (an override's period never hides a critical card of this topic)")
        w("")
        if t.thresholds:
            w("| threshold | value | unit | source |")
            w("|---|---|---|---|")
            for name in t.thresholds:
                th = kb.thresholds[name]
                w(f"| `{name}` | {_num(th.value)} | {_cell(th.unit)} | {_cell(th.source)} |")
            w("")
        if t.valuesets:
            w("| value set | codings | sources |")
            w("|---|---|---|")
            for name in t.valuesets:
                vs = kb.value_sets[name]
                w(f"| [`{name}`](#vs-{name}) | {len(vs)} | {_cell(' / '.join(vs.sources))} |")
            w("")

    # ------------------------------------------------------------------ thresholds
    w("## Thresholds")
    w("")
    w("| name | value | unit | source | notes |")
    w("|---|---|---|---|---|")
    for th in kb.thresholds.values():
        w(f"| `{th.name}` | {_num(th.value)} | {_cell(th.unit)} | {_cell(th.source)} | {_cell(th.notes or '')} |")
    w("")

    # ------------------------------------------------------------------ value sets
    w("## Value sets")
    w("")
    w("| value set | title | codings | by system |")
    w("|---|---|---|---|")
    for vs in kb.value_sets.values():
        systems = ", ".join(f"{_SYSTEM_LABELS.get(s, s)} {n}" for s, n in sorted(vs.systems().items()))
        w(f"| [`{vs.name}`](#vs-{vs.name}) | {_cell(vs.title)} | {len(vs)} | {_cell(systems)} |")
    w("")
    for vs in kb.value_sets.values():
        used_by = [t.code for t in kb.topics.values() if vs.name in t.valuesets]
        w(f'<a id="vs-{vs.name}"></a>')
        w(f"### `{vs.name}` — {vs.title}")
        w("")
        w(f"{vs.description}")
        w("")
        w(f"* **Codings:** {len(vs)} (file `valuesets/{vs.name}.csv`)")
        w("* **By system:** " + ", ".join(f"{_SYSTEM_LABELS.get(s, s)} {n}" for s, n in sorted(vs.systems().items())))
        w("* **Used by topics:** " + (", ".join(f"`{c}`" for c in used_by) if used_by else "— (used by the order classification / other rules)"))
        w("* **Sources:**")
        for src in vs.sources:
            w(f"  * {src}")
        if vs.notes:
            w(f"* **Notes / decisions:** {vs.notes}")
        if vs.sig:
            w(f"* **Instructions on the suggested order:** {vs.sig}")
        if vs.timing_repeat:
            r = vs.timing_repeat
            w(f"* **Timing on the suggested order:** {r['frequency']} time(s) every {_num(r['period'])} {r['periodUnit']}")
        w("")
        if len(vs) <= 40:
            w("| system | code | display | source |")
            w("|---|---|---|---|")
            for c in vs.codings:
                w(f"| {_SYSTEM_LABELS.get(c.system, c.system)} | `{c.code}` | {_cell(c.display)} | {_cell(c.source)} |")
            w("")
        else:
            w(f"_{len(vs)} codings: too many to list here, see `valuesets/{vs.name}.csv`._")
            w("")

    # ------------------------------------------------------------------ names
    w("## Medication names (medications without a standard code only)")
    w("")
    w("| name | value set | source |")
    w("|---|---|---|")
    for m in kb.medication_names:
        w(f"| `{m.name}` | `{m.valueset}` | {_cell(m.source)} |")
    w("")

    # ------------------------------------------------------------------ units
    w("## Lab units (`units.toml`)")
    w("")
    w("Every result is converted to its analyte's canonical unit before any comparison; a unit not")
    w("listed leaves the value unusable (never compared), and so does a negative value or one above")
    w("the physical bound.")
    w("")
    w("| analyte | canonical unit | accepted units (factor to canonical) | physical bound | source |")
    w("|---|---|---|---|---|")
    for name, table in sorted(units_table(kb.seeds_dir).items()):
        accepted = ", ".join(f"`{unit}` ×{_num(factor)}" for unit, factor in table["units"].items())
        w(f"| `{name}` | `{table['canonical']}` | {accepted} | {_num(table['plausible_max'])} | {_cell(table['source'])} |")
    w("")
    return "\n".join(out)


def units_table(directory) -> dict:
    """The raw `units.toml` tables, for review (the record reads them through record/units.py)."""
    return tomllib.loads((directory / "units.toml").read_text(encoding="utf-8"))["analytes"]


def _suppression(reason) -> str:
    """An override reason's suppression period in words (card catalog v2)."""
    if not reason.suppress_days:
        return ""
    days = "; ".join(f"{d} days" if r == "*" else f"{r.replace('mg', ' mg')}: {d} days" for r, d in reason.suppress_days.items())
    only = "" if len(reason.suppress_indicators) == 3 else f", after a {' or '.join(reason.suppress_indicators)} card"
    return f" (suppresses the topic for {days}{only})"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m cds_service.knowledge.review", description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=Path, default=None, help="seeds directory (default: the service's)")
    group = parser.add_mutually_exclusive_group()
    group.add_argument("--check", action="store_true", help="exit 1 when README.md differs from the generated page")
    group.add_argument("--write", action="store_true", help="write README.md into the seeds directory")
    args = parser.parse_args(argv)
    try:
        kb = load_knowledge(args.seeds)
    except KnowledgeError as exc:
        print(f"knowledge base invalid: {exc}", file=sys.stderr)
        return 2
    try:
        sources, legend = load_sources(kb.seeds_dir)
    except KnowledgeError as exc:
        print(f"knowledge base invalid: {exc}", file=sys.stderr)
        return 2
    if args.check or args.write:
        undefined = undefined_citations(kb.seeds_dir, sources, legend)
        for where, label in undefined:
            print(f"{where}: cites {label}, which {SOURCES_NAME} does not define", file=sys.stderr)
        if undefined:
            return 1
    page = render(kb) + "\n"
    target = kb.seeds_dir / README_NAME
    if args.check:
        current = target.read_text(encoding="utf-8") if target.exists() else None
        if current != page:
            print(f"{target} is out of date: run python -m cds_service.knowledge.review --write", file=sys.stderr)
            return 1
        return 0
    if args.write:
        target.write_text(page, encoding="utf-8")
        print(f"wrote {target}", file=sys.stderr)
        return 0
    sys.stdout.write(page)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
