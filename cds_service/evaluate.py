"""One hook call from request body to CDS Hooks response, shared by the HTTP app and the CLI:
validate the request, find out what the draft orders are (reading the Medications they refer to),
decide whether any rule applies, get the data, build the record, run the rules, build the cards."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timezone

from cds_service.cards import build_response
from cds_service.config import Settings
from cds_service.errors import not_found
from cds_service.knowledge import Knowledge, load_knowledge
from cds_service.knowledge.version import knowledge_version
from cds_service.protocol.auth import Caller
from cds_service.protocol.fhir_client import FhirClient
from cds_service.protocol.prefetch import read_medications, request_resources, resolve_data
from cds_service.protocol.request import HookRequest, parse_hook_request, refuse_too_many_draft_orders
from cds_service.protocol.services import ServiceDefinition, load_services
from cds_service.record.build import DRAFTS, RecordInputs, build_record, missing_medications
from cds_service.record.fhir_parse import warm_models
from cds_service.record.model import PatientRecord, SkippedResource
from cds_service.rules.engine import ORDER_HOOKS, discover_rules, focus_triggers, run_rules
from cds_service.suppression import CardGate, SuppressionPolicy

logger = logging.getLogger(__name__)

Clock = Callable[[], datetime]
CardsIssuedListener = Callable[[HookRequest, dict, PatientRecord, datetime], None]


def utc_now() -> datetime:
    return datetime.now(timezone.utc)


@dataclass
class CallOutcome:
    response: dict
    request: HookRequest
    fhir_requests: int = 0
    skipped: tuple[SkippedResource, ...] = ()
    unavailable: tuple[str, ...] = ()

    @property
    def topics(self) -> list[str]:
        return [card["source"]["topic"]["code"] for card in self.response["cards"]]


@dataclass
class HookService:
    settings: Settings
    kb: Knowledge = None
    services: dict[str, ServiceDefinition] = None
    fhir_client: FhirClient = None
    clock: Clock = utc_now
    listeners: list[CardsIssuedListener] = field(default_factory=list)
    # Set when a card ledger is open (feedback.open_feedback): suppression, silent topics, ledger.
    card_gate: CardGate | None = None

    def __post_init__(self):
        self.kb = self.kb or load_knowledge(threshold_overrides=self.settings.threshold_overrides or None)
        self.services = self.services or load_services()
        self.fhir_client = self.fhir_client or FhirClient(
            max_pages=self.settings.fhir_max_pages, max_workers=self.settings.fhir_max_workers,
            max_response_bytes=self.settings.fhir_max_response_bytes,
        )
        self.rules = discover_rules(self.kb)
        self.knowledge_version = knowledge_version(self.kb, self.settings)
        self.suppression = SuppressionPolicy.from_settings(self.kb, self.settings)  # checks the config at start-up
        warm_models()

    def service(self, service_id: str) -> ServiceDefinition:
        service = self.services.get(service_id)
        if service is None:
            raise not_found(f"No CDS service with id {service_id!r}; GET /cds-services lists them.")
        return service

    def discovery(self) -> dict:
        return {"services": [s.discovery_json() for s in self.services.values()]}

    def evaluate(self, service_id: str, body, caller: Caller) -> CallOutcome:
        refuse_too_many_draft_orders(body, self.service(service_id), self.settings.max_draft_orders)
        request = parse_hook_request(body, self.service(service_id))
        as_of = self.clock()
        deadline = time.monotonic() + self.settings.fhir_timeout_seconds  # one deadline for every FHIR read of the call
        draft_skips = [SkippedResource(DRAFTS, p) for p in request.draft_order_problems]
        inputs = RecordInputs(
            patient_id=request.patient_id,
            encounter_id=request.encounter_id,
            draft_orders=request.draft_orders,
            selections=request.selections,
            skipped=draft_skips,
            fhir_server=request.fhir_server,
            referenced=request_resources(request),
        )
        fhir_requests = 0
        drafts_only = None
        if request.hook in ORDER_HOOKS:
            # What the focused drafts are decides everything else: read the Medications they refer
            # to first (from the FHIR server when the request does not hold them).
            fhir_requests += self._read_medications(request, inputs, caller, deadline, drafts_only=True)
            drafts_only = build_record(inputs, self.kb)
            if not focus_triggers(request.hook, drafts_only):
                # No denosumab or follow-on order in focus: nothing to check, nothing to fetch;
                # an order that could not be identified is still said.
                findings = run_rules(self.rules, request.hook, drafts_only, self.kb, as_of)
                response = self._respond(findings, request, drafts_only, as_of, caller)
                return CallOutcome(response, request, fhir_requests=fhir_requests, skipped=drafts_only.skipped)
        data = resolve_data(
            request,
            client=self.fhir_client,
            allowed_bases=caller.fhir_servers,
            timeout_seconds=max(0.0, deadline - time.monotonic()),
        )
        fhir_requests += data.fhir_requests
        inputs.resource_groups = data.resource_groups
        inputs.gaps = list(data.gaps)
        inputs.newest_first_keys = frozenset(data.newest_first_keys)
        inputs.skipped = draft_skips + data.skipped
        fhir_requests += self._read_medications(request, inputs, caller, deadline, drafts_only=False)
        record = build_record(inputs, self.kb, drafts_from=drafts_only)
        findings = run_rules(self.rules, request.hook, record, self.kb, as_of)
        response = self._respond(findings, request, record, as_of, caller)
        return CallOutcome(
            response,
            request,
            fhir_requests=fhir_requests,
            skipped=record.skipped,
            unavailable=tuple(sorted(record.unavailable)),
        )

    def _respond(self, findings, request: HookRequest, record: PatientRecord, as_of: datetime, caller: Caller) -> dict:
        """The response to send: the findings as cards, less those the card gate hides (suppressed
        after an override, silent pilot topics); every listener is told what was shown."""
        response = build_response(findings, self.kb, self.knowledge_version)
        if self.card_gate is not None:
            response = self.card_gate.apply(
                request, response, record, as_of, caller,
                rebuild=lambda hidden: build_response(
                    [f for f in findings if f.topic not in hidden], self.kb, self.knowledge_version
                ),
            )
        for listener in self.listeners:
            listener(request, response, record, as_of)
        return response

    def _read_medications(self, request: HookRequest, inputs: RecordInputs, caller: Caller, deadline: float, *, drafts_only: bool) -> int:
        """Read from the FHIR server the Medications that the focused drafts (or the history)
        name and the request does not hold; adds them to `inputs`. Returns the requests made."""
        missing = missing_medications(inputs, self.kb, drafts_only=drafts_only)
        found, problems, made = read_medications(
            request, missing, client=self.fhir_client, allowed_bases=caller.fhir_servers,
            timeout_seconds=max(0.0, deadline - time.monotonic()),
        )
        inputs.referenced = inputs.referenced + found
        inputs.skipped = inputs.skipped + problems
        return made
