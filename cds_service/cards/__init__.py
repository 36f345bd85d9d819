"""What a rule concludes (`Finding`) and the one place that turns it into a CDS Hooks card."""

from cds_service.cards.model import Absence, Action, Finding, Link, Suggestion
from cds_service.cards.build import TOPIC_SYSTEM, OVERRIDE_REASON_SYSTEM, build_response, card_from_finding
from cds_service.cards.validate import response_problems

__all__ = [
    "Absence",
    "Action",
    "Finding",
    "Link",
    "Suggestion",
    "TOPIC_SYSTEM",
    "OVERRIDE_REASON_SYSTEM",
    "build_response",
    "card_from_finding",
    "response_problems",
]
