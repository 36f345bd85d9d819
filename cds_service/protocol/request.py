"""Validation of a CDS Hooks 2.0 hook request body into a `HookRequest`.

What is wrong with the request itself is a 400 with an OperationOutcome naming the field; what is
wrong inside one FHIR resource is not (that resource is skipped later, in the record builder)."""

from __future__ import annotations

import uuid
from dataclasses import dataclass, field
from urllib.parse import urlsplit

from cds_service.errors import bad_request
from cds_service.protocol.bundles import bundle_resources
from cds_service.protocol.services import CONTEXT_FIELDS, ServiceDefinition
from cds_service.storable import unstorable

MAX_ID_LENGTH = 256


@dataclass(frozen=True)
class HookRequest:
    service: ServiceDefinition
    hook_instance: str
    context: dict
    patient_id: str
    user_id: str
    encounter_id: str | None
    draft_orders: list = field(default_factory=list)
    draft_order_problems: list[str] = field(default_factory=list)
    selections: tuple[str, ...] | None = None
    prefetch: dict = field(default_factory=dict)
    fhir_server: str | None = None
    access_token: str | None = field(default=None, repr=False)  # never logged

    @property
    def hook(self) -> str:
        return self.service.hook


def _string(container: dict, name: str, where: str, *, required: bool) -> str | None:
    value = container.get(name)
    if value is None:
        if required:
            raise bad_request(f"{where}{name} is required", expression=f"{where}{name}", code="required")
        return None
    if not isinstance(value, str) or not value.strip():
        raise bad_request(f"{where}{name} must be a non-empty string", expression=f"{where}{name}")
    problem = unstorable(value)
    if problem:  # stored (hookInstance) or hashed (patientId, fhirServer) on the way
        raise bad_request(f"{where}{name} {problem}", expression=f"{where}{name}", code="value")
    if len(value) > MAX_ID_LENGTH and name != "fhirServer":
        raise bad_request(f"{where}{name} is longer than {MAX_ID_LENGTH} characters", expression=f"{where}{name}")
    return value


def refuse_too_many_draft_orders(body, service: ServiceDefinition, limit: int) -> None:
    """400 too-costly for more draft orders than `limit`, before any work is done on them."""
    context = body.get("context") if isinstance(body, dict) else None
    orders = context.get("medications" if service.hook == "medication-prescribe" else "draftOrders") if isinstance(context, dict) else None
    entries = orders.get("entry") if isinstance(orders, dict) else orders
    if isinstance(entries, list) and len(entries) > limit:
        raise bad_request(
            f"{len(entries)} draft orders in one request; at most {limit} are checked per call",
            expression="context.draftOrders" if service.hook != "medication-prescribe" else "context.medications",
            code="too-costly",
        )


def parse_hook_request(body, service: ServiceDefinition) -> HookRequest:
    if not isinstance(body, dict):
        raise bad_request("The request body must be a JSON object (a CDS Hooks request).")
    hook = _string(body, "hook", "", required=True)
    if hook != service.hook:
        raise bad_request(
            f"hook {hook!r} does not match service {service.id!r}, which handles {service.hook!r}", expression="hook"
        )
    hook_instance = _string(body, "hookInstance", "", required=True)
    try:
        uuid.UUID(hook_instance)
    except ValueError:
        raise bad_request("hookInstance must be a UUID", expression="hookInstance") from None

    context = body.get("context")
    if not isinstance(context, dict):
        raise bad_request("context is required and must be an object", expression="context", code="required")
    fields = CONTEXT_FIELDS[service.hook]
    for name in ("userId", "patientId", "encounterId"):
        _string(context, name, "context.", required=name in fields["required"])

    draft_orders: list = []
    problems: list[str] = []
    orders_field = "medications" if service.hook == "medication-prescribe" else "draftOrders"
    if orders_field in fields["required"]:
        orders = context.get(orders_field)
        if orders is None:
            raise bad_request(f"context.{orders_field} is required", expression=f"context.{orders_field}", code="required")
        if not isinstance(orders, (dict, list)):
            raise bad_request(f"context.{orders_field} must be a Bundle", expression=f"context.{orders_field}")
        draft_orders, problems = bundle_resources(orders)

    selections = None
    if service.hook == "order-select":
        raw_selections = context.get("selections")
        if raw_selections is not None and (
            not isinstance(raw_selections, list) or not all(isinstance(s, str) for s in raw_selections)
        ):
            raise bad_request("context.selections must be an array of references", expression="context.selections")
        selections = tuple(raw_selections) if raw_selections is not None else None  # [] selects nothing

    fhir_server = _string(body, "fhirServer", "", required=False)
    if fhir_server is not None and urlsplit(fhir_server).scheme not in ("http", "https"):
        raise bad_request("fhirServer must be an http(s) URL", expression="fhirServer")
    access_token = None
    authorization = body.get("fhirAuthorization")
    if authorization is not None:
        if not isinstance(authorization, dict):
            raise bad_request("fhirAuthorization must be an object", expression="fhirAuthorization")
        if fhir_server is None:
            raise bad_request("fhirServer is required when fhirAuthorization is given", expression="fhirServer", code="required")
        access_token = _string(authorization, "access_token", "fhirAuthorization.", required=True)
        token_type = authorization.get("token_type", "Bearer")
        if not isinstance(token_type, str) or token_type.lower() != "bearer":
            raise bad_request("fhirAuthorization.token_type must be Bearer", expression="fhirAuthorization.token_type")

    prefetch = body.get("prefetch", {})
    if prefetch is None:
        prefetch = {}
    if not isinstance(prefetch, dict):
        raise bad_request("prefetch must be an object", expression="prefetch")
    return HookRequest(
        service=service,
        hook_instance=hook_instance,
        context=context,
        patient_id=context["patientId"],
        user_id=context.get("userId") or "",
        encounter_id=context.get("encounterId"),
        draft_orders=draft_orders,
        draft_order_problems=problems,
        selections=selections,
        prefetch=prefetch,
        fhir_server=fhir_server.rstrip("/") if fhir_server else None,
        access_token=access_token,
    )
