"""The CDS Hooks services offered, read from `hooks/*.json` and checked at start-up.

A definition with a prefetch template that CDS Hooks 2.0 does not allow fails fast here rather
than at an EHR's first call (prefetch tokens: only `{{context.<field>}}` and the user tokens)."""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import parse_qsl, urlsplit

from cds_service.paths import data_dir

SUPPORTED_HOOKS = ("order-select", "order-sign", "patient-view", "medication-prescribe")
_TOKEN = re.compile(r"\{\{([^}]*)\}\}")
_ALLOWED_TOKENS = re.compile(
    r"^(context\.[A-Za-z]+|userPractitionerId|userPractitionerRoleId|userPatientId|userRelatedPersonId)$"
)
_ALLOWED_SEARCH_PARAMS = re.compile(r"^([A-Za-z][A-Za-z0-9-]*(:in)?|_count|_sort)$")

# The record's data categories, by the FHIR resource type a prefetch template asks for.
CATEGORY_OF_RESOURCE_TYPE = {
    "Patient": "patient",
    "MedicationRequest": "medications",
    "MedicationAdministration": "medications",
    "MedicationDispense": "medications",
    "MedicationStatement": "medications",
    "Observation": "labs",
    "Condition": "conditions",
    "Procedure": "procedures",
}
CONTEXT_FIELDS = {
    "order-select": {"required": ("userId", "patientId", "selections", "draftOrders"), "optional": ("encounterId",)},
    "order-sign": {"required": ("userId", "patientId", "draftOrders"), "optional": ("encounterId",)},
    "patient-view": {"required": ("userId", "patientId"), "optional": ("encounterId",)},
    "medication-prescribe": {"required": ("userId", "patientId", "medications"), "optional": ("encounterId",)},
}


class ServiceDefinitionError(ValueError):
    pass


@dataclass(frozen=True)
class PrefetchTemplate:
    key: str
    template: str
    resource_type: str

    @property
    def category(self) -> str:
        return CATEGORY_OF_RESOURCE_TYPE[self.resource_type]


@dataclass(frozen=True)
class ServiceDefinition:
    id: str
    hook: str
    title: str
    description: str
    prefetch: tuple[PrefetchTemplate, ...]
    usage_requirements: str | None

    def discovery_json(self) -> dict:
        out = {"hook": self.hook, "id": self.id, "title": self.title, "description": self.description}
        if self.prefetch:
            out["prefetch"] = {p.key: p.template for p in self.prefetch}
        if self.usage_requirements:
            out["usageRequirements"] = self.usage_requirements
        return out


def _check_template(path: Path, key: str, template: str) -> str:
    for token in _TOKEN.findall(template):
        if not _ALLOWED_TOKENS.match(token.strip()):
            raise ServiceDefinitionError(f"{path.name}: prefetch {key!r} uses {{{{{token}}}}}, not a CDS Hooks 2.0 token")
    parts = urlsplit(template)
    resource_type = parts.path.split("/")[0]
    if resource_type not in CATEGORY_OF_RESOURCE_TYPE:
        raise ServiceDefinitionError(f"{path.name}: prefetch {key!r} asks for {resource_type!r}, which no rule reads")
    for name, _ in parse_qsl(parts.query, keep_blank_values=True):
        if not _ALLOWED_SEARCH_PARAMS.match(name):
            raise ServiceDefinitionError(f"{path.name}: prefetch {key!r} uses search parameter {name!r}")
    return resource_type


def load_services(directory: Path | None = None) -> dict[str, ServiceDefinition]:
    directory = directory or data_dir("hooks")
    services: dict[str, ServiceDefinition] = {}
    for path in sorted(directory.glob("*.json")):
        data = json.loads(path.read_text(encoding="utf-8"))
        for field_name in ("id", "hook", "title", "description"):
            if not isinstance(data.get(field_name), str) or not data[field_name]:
                raise ServiceDefinitionError(f"{path.name}: '{field_name}' is required")
        if data["hook"] not in SUPPORTED_HOOKS:
            raise ServiceDefinitionError(f"{path.name}: hook {data['hook']!r} is not one this service handles")
        if data["id"] in services:
            raise ServiceDefinitionError(f"{path.name}: duplicate service id {data['id']!r}")
        prefetch = tuple(
            PrefetchTemplate(key, template, _check_template(path, key, template))
            for key, template in data.get("prefetch", {}).items()
        )
        services[data["id"]] = ServiceDefinition(
            id=data["id"],
            hook=data["hook"],
            title=data["title"],
            description=data["description"],
            prefetch=prefetch,
            usage_requirements=data.get("usageRequirements"),
        )
    if not services:
        raise ServiceDefinitionError(f"no service definitions in {directory}")
    return services
