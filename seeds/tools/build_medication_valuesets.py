"""Generate the medication value sets from the RxNorm extract (seeds/terminology/rxnorm_*.tsv).

Every RxNorm ingredient, clinical drug (SCDC/SCD), branded drug (SBD), pack and brand name of
each agent, with the NDCs the extract lists, plus the reviewed rows that do not come from the
extract (ATC, HCPCS, historic RxCUIs, FDA NDC Directory NDCs: medication-valueset-extras.csv).
Each row's source names the extract's version (its header line).

    python seeds/tools/build_medication_valuesets.py          # write seeds/valuesets/<name>.csv
    python seeds/tools/build_medication_valuesets.py --check  # exit 1 when a file differs

The calcium and vitamin D supplement sets take every product of the extract that contains the
agent (calcium salt; a vitamin D), less the products the reviewed selection rule leaves out
(valuesets.toml notes: antacid and drug combinations, multivitamins, topical calcitriol...),
listed one by one in medication-valueset-exclusions.csv.
"""

from __future__ import annotations

import csv
import io
import re
import sys
from pathlib import Path

SEEDS = Path(__file__).resolve().parents[1]
TERMINOLOGY = SEEDS / "terminology"
RXNORM = "http://www.nlm.nih.gov/research/umls/rxnorm"
NDC = "http://hl7.org/fhir/sid/ndc"
BONE = "rxnorm_bone_and_calcimimetic_agents.tsv"
DENOSUMAB = "rxnorm_denosumab_products.tsv"
CALCIUM_D = "rxnorm_calcium_vitamin_d.tsv"


def _oral(row) -> bool:
    return row["tty"] in ("IN", "BN") or "Oral" in row["name"] or row["name"].endswith(" MG")


def _injectable(row) -> bool:
    return row["tty"] != "IN" and row["tty"] != "BN" and not _oral(row)


def _alendronate(row) -> bool:
    return "alendronic acid" in row["name"] or row["name"] == "Fosamax Plus D"


def _not_palopegteriparatide(row) -> bool:
    # RxNorm files Yorvipath (palopegteriparatide, for hypoparathyroidism) under IN teriparatide.
    return "0.3 MG/ML" not in row["name"] and row["name"] != "Yorvipath"


_CALCIUM_SALT = re.compile(r"calcium (carbonate|citrate|phosphate)|tricalcium", re.IGNORECASE)
_VITAMIN_D = re.compile(r"cholecalciferol|ergocalciferol|calcifediol|calcitriol", re.IGNORECASE)
_ANY_ROOT = None  # every root of the extract

# value set -> (extract, root RxCUIs (None: any), which rows of those roots)
SPECS = {
    "denosumab-60mg": (DENOSUMAB, {"993449"}, lambda r: "60 MG/ML" in r["name"]),
    "denosumab-120mg": (DENOSUMAB, {"993449"}, lambda r: "70 MG/ML" in r["name"]),
    "denosumab-unspecified-strength": (DENOSUMAB, {"993449"}, lambda r: r["tty"] in ("IN", "PIN")),
    "zoledronic-acid": (BONE, {"77655"}, lambda r: True),
    "zoledronic-acid-5mg": (BONE, {"77655"}, lambda r: "0.05 MG/ML" in r["name"] or r["name"] == "Reclast"),
    "alendronate": (CALCIUM_D, {"2418"}, _alendronate),
    "risedronate": (BONE, {"73056"}, lambda r: True),
    "ibandronate": (BONE, {"115264"}, lambda r: True),
    "oral-bisphosphonate": (BONE, {"73056", "115264"}, lambda r: r["root_rxcui"] == "73056" or _oral(r)),
    "iv-bisphosphonate-other": (BONE, {"115264", "11473"}, lambda r: r["root_rxcui"] == "11473" or _injectable(r)),
    "other-osteoporosis-agent": (BONE, {"2123126", "32915"}, _not_palopegteriparatide),
    "calcimimetic": (BONE, {"407990", "1876119"}, lambda r: True),
    "calcium-supplement": (CALCIUM_D, _ANY_ROOT, lambda r: bool(_CALCIUM_SALT.search(r["name"]))),
    "vitamin-d-supplement": (CALCIUM_D, _ANY_ROOT, lambda r: bool(_VITAMIN_D.search(r["name"]))),
    # Calcitriol counts as vitamin D only in dialysis (catalog, calcium-vitamin-d-supplementation).
    "active-vitamin-d": (CALCIUM_D, _ANY_ROOT, lambda r: "calcitriol" in r["name"].lower() and "topical" not in r["name"].lower()),
}
# Rows of one set that another extract holds (the alendronate/cholecalciferol tablets are filed
# under cholecalciferol in the calcium/vitamin D extract).
ALSO = {"oral-bisphosphonate": ("alendronate",)}
# Brand names decided by their branded drugs: a BN row goes with the family of the SBDs naming it.
_BRAND = re.compile(r"\[([^\]]+)\]$")


def read_extract(name: str) -> tuple[str, list[dict]]:
    with open(TERMINOLOGY / name, encoding="utf-8") as handle:
        header = handle.readline()
        rows = list(csv.DictReader(handle, delimiter="\t"))
    version = re.search(r"Source: (.+?) as extracted", header)
    return (version.group(1) if version else header.strip("# \n")), rows


def _version_label(version: str) -> str:
    date = re.search(r"\d{4}-\d{2}-\d{2}", version)
    return f"RxNorm {date.group(0) if date else version} prescribable (S1)"


def rows_of(valueset: str) -> list[dict]:
    extract, roots, wanted = SPECS[valueset]
    version, rows = read_extract(extract)
    label = _version_label(version)
    of_roots = [r for r in rows if roots is None or r["root_rxcui"] in roots]
    excluded = exclusions().get(valueset, set())
    chosen = [r for r in of_roots if r["tty"] != "BN" and wanted(r) and r["rxcui"] not in excluded]
    brands = {m.group(1) for r in chosen if (m := _BRAND.search(r["name"]))}
    chosen += [r for r in of_roots if r["tty"] == "BN" and (r["name"] in brands or (wanted(r) and r["name"] not in _all_brands(of_roots)))]
    position = {id(r): i for i, r in enumerate(of_roots)}
    out, seen = [], set()
    for r in sorted(chosen, key=lambda r: position[id(r)]):
        if r["rxcui"] in seen:  # a product filed under two roots (a combination)
            continue
        seen.add(r["rxcui"])
        out.append({"system": RXNORM, "code": r["rxcui"], "display": f"{r['name']} ({r['tty']})", "source": label})
        for ndc in filter(None, (r.get("ndc11") or "").split(",")):
            out.append({"system": NDC, "code": ndc, "display": f"NDC of {r['name']} (RxCUI {r['rxcui']})",
                        "source": f"{label.removesuffix(' (S1)')}, RXNSAT NDC (S1)"})
    return out


def _all_brands(rows) -> set[str]:
    return {m.group(1) for r in rows if (m := _BRAND.search(r["name"]))}


def exclusions() -> dict[str, set[str]]:
    """RxCUIs the reviewed selection rule leaves out, per value set."""
    found: dict[str, set[str]] = {}
    with open(Path(__file__).with_name("medication-valueset-exclusions.csv"), encoding="utf-8", newline="") as handle:
        for row in csv.DictReader(handle):
            found.setdefault(row["valueset"], set()).add(row["rxcui"])
    return found


def extras() -> dict[str, list[dict]]:
    found: dict[str, list[dict]] = {}
    with open(Path(__file__).with_name("medication-valueset-extras.csv"), encoding="utf-8", newline="") as handle:
        for row in csv.DictReader(handle):
            found.setdefault(row.pop("valueset"), []).append(row)
    return found


def render(valueset: str, extra_rows: dict[str, list[dict]]) -> str:
    rows = rows_of(valueset)
    for other in ALSO.get(valueset, ()):
        rows += rows_of(other)
    rows += extra_rows.get(valueset, [])
    seen, unique = set(), []
    for row in rows:
        key = (row["system"], row["code"])
        if key not in seen:
            seen.add(key)
            unique.append(row)
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, ["system", "code", "display", "source"], lineterminator="\n")
    writer.writeheader()
    writer.writerows(unique)
    return buffer.getvalue()


def main(argv: list[str]) -> int:
    check = "--check" in argv
    extra_rows = extras()
    stale = []
    for valueset in SPECS:
        path = SEEDS / "valuesets" / f"{valueset}.csv"
        text = render(valueset, extra_rows)
        current = path.read_text(encoding="utf-8") if path.exists() else None
        if current != text:
            stale.append(path.name)
            if not check:
                path.write_text(text, encoding="utf-8")
    if check and stale:
        print("out of date (run seeds/tools/build_medication_valuesets.py): " + ", ".join(stale))
        return 1
    print(("checked" if check else "wrote") + f" {len(SPECS)} medication value sets" + (f"; changed: {', '.join(stale)}" if stale and not check else ""))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
