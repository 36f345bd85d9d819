"""`denosumab-cds knowledge export --fhir DIR`: every resource validates as FHIR R4 when loaded
back, every code of seeds/ is in it (read here from the seed files themselves), and GET /fhir/...
serves the same resources."""

from __future__ import annotations

import csv
import json
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest
from fhir.resources.R4B import get_fhir_model_class

from cds_service.cards.build import OVERRIDE_REASON_SYSTEM, TOPIC_SYSTEM
from cds_service.knowledge.fhir_export import CODE_DISPLAY_EXTENSION, CODE_SOURCE_EXTENSION, THRESHOLD_EXTENSION

SEEDS = Path(__file__).resolve().parents[1] / "seeds"
ICD10CM = "http://hl7.org/fhir/sid/icd-10-cm"


def export(directory: Path) -> subprocess.CompletedProcess:
    """The command as a user runs it (its own process: the CLI sets up logging on stderr)."""
    return subprocess.run([sys.executable, "-m", "cds_service.cli", "knowledge", "export", "--fhir", str(directory)],
                          capture_output=True, text=True, timeout=120)


def seed_value_sets() -> dict[str, list[dict]]:
    sets = {}
    for path in sorted((SEEDS / "valuesets").glob("*.csv")):
        with path.open(encoding="utf-8", newline="") as handle:
            sets[path.stem] = [row for row in csv.DictReader(handle) if row["code"].strip()]
    return sets


def seed_topics() -> dict[str, dict]:
    return tomllib.loads((SEEDS / "topics.toml").read_text(encoding="utf-8"))["topics"]


@pytest.fixture(scope="module")
def exported(tmp_path_factory) -> dict[tuple[str, str], dict]:
    """(resourceType, id) -> the resource, as loaded back from the files the command wrote."""
    directory = tmp_path_factory.mktemp("fhir") / "knowledge"
    result = export(directory)
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith(f"wrote {len(list(directory.glob('*.json')))} FHIR R4 resources to {directory}")
    resources = {}
    for path in sorted(directory.glob("*.json")):
        resource = json.loads(path.read_text(encoding="utf-8"))
        get_fhir_model_class(resource["resourceType"]).model_validate(resource)  # valid FHIR R4 (R4B models)
        assert path.name == f"{resource['resourceType']}-{resource['id']}.json"
        resources[(resource["resourceType"], resource["id"])] = resource
    return resources


def test_every_value_set_code_is_exported_with_its_source(exported):
    for name, rows in seed_value_sets().items():
        value_set = exported[("ValueSet", name)]
        enumerated, is_a = {}, {}
        for include in value_set["compose"]["include"]:
            for concept in include.get("concept", ()):
                enumerated[(include["system"], concept["code"])] = concept
            for filter_ in include.get("filter", ()):
                assert (filter_["property"], filter_["op"]) == ("concept", "is-a")
                is_a[(include["system"], filter_["value"])] = include
        for row in rows:
            key = (row["system"].strip(), row["code"].strip())
            if key[0] == ICD10CM:
                # The code and all of its sub-codes: a filter, never a single enumerated concept.
                assert key in is_a and key not in enumerated, (name, key)
                extensions = {e["url"]: e["valueString"] for e in is_a[key]["extension"]}
                assert extensions[CODE_DISPLAY_EXTENSION] == row["display"].strip()
            else:
                assert key in enumerated, (name, key)
                assert enumerated[key]["display"] == row["display"].strip()
                extensions = {e["url"]: e["valueString"] for e in enumerated[key]["extension"]}
            assert extensions[CODE_SOURCE_EXTENSION] == row["source"].strip()
        assert len(enumerated) + len(is_a) == len(rows)  # nothing added that is not in the seeds


def test_topics_and_override_reasons_are_code_systems(exported):
    topics = exported[("CodeSystem", "card-topic")]
    reasons = exported[("CodeSystem", "override-reason")]
    assert (topics["url"], reasons["url"]) == (TOPIC_SYSTEM, OVERRIDE_REASON_SYSTEM)
    topic_concepts = {c["code"]: c for c in topics["concept"]}
    reason_concepts = {c["code"]: c for c in reasons["concept"]}
    for code, topic in seed_topics().items():
        assert topic_concepts[code]["display"] == topic["display"]
        assert topic_concepts[code]["definition"] == topic["when"]
        for reason in topic["override_reasons"]:
            concept = reason_concepts[reason["code"]]
            assert reason["display"] in [concept["display"], *(d["value"] for d in concept.get("designation", ()))]
            assert {"code": "topic", "valueCode": code} in concept["property"]


def test_each_topic_is_a_plan_definition_with_trigger_condition_suggestions_and_sources(exported):
    value_sets = seed_value_sets()
    for code, topic in seed_topics().items():
        plan = exported[("PlanDefinition", code)]
        (action,) = plan["action"]
        assert action["code"][0]["coding"][0] == {"system": TOPIC_SYSTEM, "code": code, "display": topic["display"]}
        hooks = {t["name"] for t in action["trigger"]}
        if "denosumab-order" in topic["triggers"]:
            assert {"order-select", "order-sign", "medication-prescribe"} <= hooks
        assert ("patient-view" in hooks) == ("patient-view" in topic["triggers"])
        assert action["condition"][0]["expression"]["description"] == topic["when"]
        related = plan["relatedArtifact"]
        assert {"type": "citation", "citation": topic["citation"]} in related
        if topic.get("source_url"):
            assert any(r.get("url") == topic["source_url"] for r in related)
        read = {r["resource"].rsplit("/", 1)[1] for r in related if r["type"] == "depends-on"}
        assert read == set(topic["valuesets"])
        orders = [name for name in topic["valuesets"] if name.endswith(("-order", "-referral"))]
        suggested = action.get("action", [])
        assert [s["documentation"][0]["resource"].rsplit("/", 1)[1] for s in suggested] == orders
        for suggestion, name in zip(suggested, orders):
            assert {c["code"] for c in suggestion["code"][0]["coding"]} == {row["code"] for row in value_sets[name]}
        thresholds = [next(x["valueString"] for x in e["extension"] if x["url"] == "name")
                      for e in action.get("extension", []) if e["url"] == THRESHOLD_EXTENSION]
        assert thresholds == topic["thresholds"]


def test_a_medication_suggestion_carries_its_sig_and_timing(exported):
    index = tomllib.loads((SEEDS / "valuesets.toml").read_text(encoding="utf-8"))["valuesets"]
    with_sig = [name for name, entry in index.items() if "sig" in entry]
    assert with_sig
    suggestions = [s for (kind, _), r in exported.items() if kind == "PlanDefinition" for s in r["action"][0].get("action", [])]
    for name in with_sig:
        for suggestion in suggestions:
            if suggestion["documentation"][0]["resource"].endswith(f"/ValueSet/{name}"):
                assert suggestion["textEquivalent"] == index[name]["sig"]
                assert suggestion["timingTiming"]["repeat"] == index[name]["timing"]


def test_the_library_gathers_every_resource(exported):
    library = exported[("Library", "denosumab-cds-knowledge")]
    listed = {r["resource"] for r in library["relatedArtifact"] if r["type"] == "composed-of"}
    assert listed == {r["url"] for key, r in exported.items() if key[0] != "Library"}
    assert len(exported) == len(seed_value_sets()) + 2 + len(seed_topics()) + 1


def test_the_same_resources_are_served_read_only_without_a_jwt(exported, make_app, tmp_path):
    from tests.security.ehr import EhrKey, jwt_settings, write_jwks

    client = make_app(jwt_settings(write_jwks(tmp_path / "jwks.json", EhrKey("ES384")))).test_client()
    for resource_type, resource_id in [("ValueSet", "hypocalcemia"), ("CodeSystem", "card-topic"),
                                       ("PlanDefinition", "osteonecrosis-of-jaw"), ("Library", "denosumab-cds-knowledge")]:
        response = client.get(f"/fhir/{resource_type}/{resource_id}")
        assert response.status_code == 200, response.text
        assert response.content_type.startswith("application/fhir+json")
        assert response.json == exported[(resource_type, resource_id)]
    for path in ("/fhir/ValueSet/no-such-set", "/fhir/Patient/pat-wm-0001"):
        missing = client.get(path)
        assert missing.status_code == 404
        assert missing.json["resourceType"] == "OperationOutcome"
    assert client.post("/fhir/ValueSet/hypocalcemia", json={}).status_code == 405


def test_export_into_a_file_path_is_refused_without_a_traceback(tmp_path):
    target = tmp_path / "a-file"
    target.write_text("x")
    result = export(target)
    assert result.returncode == 2
    assert "is not a folder" in result.stderr and "Traceback" not in result.stderr


def test_a_value_set_and_a_topic_added_to_the_seeds_are_exported_without_a_code_change(tmp_path):
    import shutil

    from cds_service.knowledge import load_knowledge
    from cds_service.knowledge.fhir_export import knowledge_resources

    seeds = shutil.copytree(SEEDS, tmp_path / "seeds")
    (seeds / "valuesets" / "jaw-pain.csv").write_text(
        "system,code,display,source\n"
        "http://hl7.org/fhir/sid/icd-10-cm,R68.84,Jaw pain,ICD-10-CM April 2026 (S5)\n"
        "http://snomed.info/sct,274667000,Jaw pain (finding),SNOMED IPS free set 2022-07-31 (S6)\n",
        encoding="utf-8",
    )
    with (seeds / "valuesets.toml").open("a", encoding="utf-8") as index:
        index.write('\n[valuesets.jaw-pain]\ntitle = "Jaw pain"\ndescription = "Jaw pain as a finding."\n'
                    'sources = ["S5", "S6"]\n')
    with (seeds / "topics.toml").open("a", encoding="utf-8") as topics:
        topics.write('\n[topics.jaw-pain-review]\ndisplay = "Jaw pain on record"\ntriggers = ["patient-view"]\n'
                     'when = "Jaw pain recorded in the last 90 days."\nindicators = "info"\nthresholds = []\n'
                     'valuesets = ["jaw-pain", "dental-care-referral"]\ncitation = "Prolia label W&P ONJ"\n'
                     'override_reasons = [{ code = "reviewed", display = "Reviewed" }]\n')
    resources = {(r["resourceType"], r["id"]): r for r in knowledge_resources(load_knowledge(seeds))}
    includes = resources[("ValueSet", "jaw-pain")]["compose"]["include"]
    (snomed,) = [i for i in includes if i["system"] == "http://snomed.info/sct"]
    assert snomed["concept"] == [{
        "extension": [{"url": CODE_SOURCE_EXTENSION, "valueString": "SNOMED IPS free set 2022-07-31 (S6)"}],
        "code": "274667000", "display": "Jaw pain (finding)",
    }]
    assert any(f["value"] == "R68.84" for i in includes for f in i.get("filter", ()))
    plan = resources[("PlanDefinition", "jaw-pain-review")]
    assert [t["name"] for t in plan["action"][0]["trigger"]] == ["patient-view"]
    assert plan["action"][0]["action"][0]["documentation"][0]["resource"].endswith("/ValueSet/dental-care-referral")
    assert "jaw-pain-review" in {c["code"] for c in resources[("CodeSystem", "card-topic")]["concept"]}
    for resource in resources.values():
        get_fhir_model_class(resource["resourceType"]).model_validate(resource)


def test_a_canonical_url_is_resolved_by_search_and_the_capabilities_say_so(exported, client):

    hypocalcemia = exported[("ValueSet", "hypocalcemia")]
    found = client.get("/fhir/ValueSet", query_string={"url": hypocalcemia["url"]})
    assert found.status_code == 200 and found.content_type.startswith("application/fhir+json")
    bundle = found.json
    get_fhir_model_class("Bundle").model_validate(bundle)
    assert (bundle["type"], bundle["total"]) == ("searchset", 1)
    (entry,) = bundle["entry"]
    assert entry["resource"] == hypocalcemia and entry["fullUrl"].endswith("/fhir/ValueSet/hypocalcemia")
    every_plan = client.get("/fhir/PlanDefinition").json
    assert every_plan["total"] == len(seed_topics()) == len(every_plan["entry"])
    nothing = client.get("/fhir/CodeSystem", query_string={"url": "http://loinc.org"}).json
    assert nothing["total"] == 0 and "entry" not in nothing
    assert client.get("/fhir/Patient").status_code == 404

    capabilities = client.get("/fhir/metadata").json
    get_fhir_model_class("CapabilityStatement").model_validate(capabilities)
    (rest,) = capabilities["rest"]
    assert {r["type"] for r in rest["resource"]} == {"ValueSet", "CodeSystem", "PlanDefinition", "Library"}
