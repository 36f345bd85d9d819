"""GET /cds-services: the four services and prefetch templates a real EHR accepts."""

import re
from urllib.parse import parse_qsl, urlsplit

from cds_service.knowledge import LOINC, load_knowledge
from cds_service.protocol.services import load_services

ALLOWED_TOKEN = re.compile(r"^\{\{context\.[A-Za-z]+\}\}$|^\{\{user(Practitioner|PractitionerRole|Patient|RelatedPerson)Id\}\}$")
LAB_VALUE_SETS = (
    "calcium-total", "calcium-ionized", "albumin", "egfr", "vitamin-d-25oh", "pth", "magnesium", "phosphate",
    "hcg-qualitative", "hcg-quantitative",
)


def test_discovery_lists_one_service_per_hook(client):
    response = client.get("/cds-services")
    assert response.status_code == 200
    services = {s["id"]: s for s in response.get_json()["services"]}
    assert set(services) == {"order-select", "order-sign", "patient-view", "medication-prescribe"}
    for service_id, service in services.items():
        assert service["hook"] == service_id
        assert service["title"] and service["description"] and service["usageRequirements"]
        assert "patient/Observation.read" in service["usageRequirements"]


def test_prefetch_templates_use_only_cds_hooks_2_tokens_and_query_forms(client):
    for service in client.get("/cds-services").get_json()["services"]:
        for key, template in service["prefetch"].items():
            for token in re.findall(r"\{\{[^}]*\}\}", template):
                assert ALLOWED_TOKEN.match(token), (key, token)
            parts = urlsplit(template)
            params = [name for name, _ in parse_qsl(parts.query)]
            assert all(re.match(r"^([a-z-]+(:in)?|_count|_sort)$", name) for name in params), (key, params)
            if parts.path == "Observation":
                # Epic and Oracle Health need a category or a code on Observation searches.
                assert "category=laboratory" in template and "code=" in template


def test_prefetch_asks_for_every_record_category(client):
    services = {s["id"]: s for s in client.get("/cds-services").get_json()["services"]}
    resource_types = {urlsplit(t).path.split("/")[0] for t in services["order-sign"]["prefetch"].values()}
    assert resource_types == {
        "Patient", "MedicationRequest", "MedicationAdministration", "MedicationDispense",
        "MedicationStatement", "Observation", "Condition", "Procedure",
    }


def _asked_loinc_codes(template: str) -> set[str]:
    return {code.split("|", 1)[1] for code in dict(parse_qsl(urlsplit(template).query))["code"].split(",")}


def test_lab_prefetch_covers_every_lab_value_set():
    """The Observation query asks for every LOINC code the rules read (kept true as seeds grow)."""
    kb = load_knowledge()
    for service in load_services().values():
        if service.hook == "patient-view":
            continue  # asks for the eGFR only (below)
        template = next(t.template for t in service.prefetch if t.resource_type == "Observation")
        asked = _asked_loinc_codes(template)
        for name in LAB_VALUE_SETS:
            if name not in kb.value_sets:
                continue
            wanted = {c.code for c in kb.value_sets[name].codings if c.system == LOINC}
            assert wanted <= asked, (service.id, name, sorted(wanted - asked))


def test_patient_view_asks_only_for_what_its_rules_read():
    """overdue-dose and transition-needed read the medication history, the eGFR for the renal
    rule and DXA scans (a DXA since the stop quiets the 'reassess' card): nothing else on every
    chart opening."""
    kb = load_knowledge()
    service = load_services()["patient-view"]
    assert {t.resource_type for t in service.prefetch} == {
        "MedicationRequest", "MedicationAdministration", "MedicationDispense", "MedicationStatement", "Observation",
        "Procedure",
    }
    (labs,) = [t.template for t in service.prefetch if t.resource_type == "Observation"]
    assert _asked_loinc_codes(labs) == {c.code for c in kb.value_sets["egfr"].codings if c.system == LOINC}
    (procedures,) = [t.template for t in service.prefetch if t.resource_type == "Procedure"]
    asked = set(procedures.split("code=", 1)[1].split("&", 1)[0].split(","))
    assert asked == {f"{c.system}|{c.code}" for c in kb.value_sets["dxa-scan"].codings}


def test_every_search_asks_newest_first(client):
    """So that a page limit costs old history, not the newest results."""
    from cds_service.protocol.fhir_client import SORT_PARAMETER

    for service in client.get("/cds-services").get_json()["services"]:
        for key, template in service["prefetch"].items():
            resource_type = urlsplit(template).path.split("/")[0]
            if resource_type in SORT_PARAMETER:
                assert ("_sort", "-" + SORT_PARAMETER[resource_type]) in parse_qsl(urlsplit(template).query), (service["id"], key)
