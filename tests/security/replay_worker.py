"""Run in separate processes by the replay tests: one process = one worker or instance."""

from __future__ import annotations


def claim_tokens(store_url: str, jtis: list[str], start, results) -> None:
    from cds_service.protocol.replay import ReplayGuard

    guard = ReplayGuard.for_store(store_url)
    start.wait(timeout=30)  # all processes race for the same tokens at once
    results.put([jti for jti in jtis if guard.first_use("https://ehr.example.org", jti, 4_000_000_000)])
