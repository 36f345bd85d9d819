"""Errors the service answers with, each carried to the client as a FHIR OperationOutcome.

Every non-2xx body is an OperationOutcome (CDS Hooks 3.0 draft asks for it; 2.0 is silent).
`code` values are FHIR issue-type codes; `diagnostics` says what was wrong in words an
integrator can act on, and never echoes tokens or patient data.
"""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass(frozen=True)
class Issue:
    """One OperationOutcome.issue: what went wrong and (optionally) where."""

    diagnostics: str
    code: str = "invalid"
    severity: str = "error"
    expression: tuple[str, ...] = ()

    def to_json(self) -> dict:
        issue = {"severity": self.severity, "code": self.code, "diagnostics": self.diagnostics}
        if self.expression:
            issue["expression"] = list(self.expression)
        return issue


def operation_outcome(issues: list[Issue] | tuple[Issue, ...]) -> dict:
    return {"resourceType": "OperationOutcome", "issue": [issue.to_json() for issue in issues]}


@dataclass
class CdsError(Exception):
    """An error answered to the caller with `status` and an OperationOutcome body."""

    status: int
    issues: tuple[Issue, ...]
    headers: dict[str, str] = field(default_factory=dict)

    def __str__(self) -> str:  # for logs: diagnostics only, which never hold secrets
        return f"{self.status}: " + "; ".join(issue.diagnostics for issue in self.issues)

    def body(self) -> dict:
        return operation_outcome(self.issues)


def bad_request(message: str, *, expression: str | None = None, code: str = "invalid") -> CdsError:
    return CdsError(400, (Issue(message, code=code, expression=(expression,) if expression else ()),))


def not_found(message: str) -> CdsError:
    return CdsError(404, (Issue(message, code="not-found"),))


def precondition_failed(message: str, *, expression: tuple[str, ...] = ()) -> CdsError:
    return CdsError(412, (Issue(message, code="incomplete", expression=expression),))


def unauthorized() -> CdsError:
    """401 without detail: the reason goes to the server log only (CDS Hooks security)."""
    return CdsError(
        401,
        (Issue("Authentication failed.", code="login"),),
        headers={"WWW-Authenticate": 'Bearer realm="denosumab-cds", error="invalid_token"'},
    )
