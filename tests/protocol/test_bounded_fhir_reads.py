"""FHIR servers that misbehave (issue 16, cases 1-3): one response can cost its query, never the
call, never more than the call's FHIR budget (+1 s), and never another caller's call.

A real HTTP server on 127.0.0.1 (tests/hostile_fhir_server.py), since slowness lives in sockets."""

from __future__ import annotations

import threading
import time
import tracemalloc

import pytest

from cds_service.config import Settings
from cds_service.protocol.fhir_client import FhirClient
from cds_service.protocol.http_read import ResponseUnreadable, parse_json
from tests.hostile_fhir_server import HostileFhirServer
from tests.protocol.test_prefetch_and_fetch import TOKEN
from tests.requests_for_tests import baseline_request

BUDGET_SECONDS = 1.0


def _topics(response) -> list[str]:
    return [card["source"]["topic"]["code"] for card in response.get_json()["cards"]]


def _call_fetching_everything_from(base: str) -> dict:
    request = baseline_request()
    request.pop("prefetch")
    request["fhirServer"] = base
    request["fhirAuthorization"] = {"access_token": TOKEN, "token_type": "Bearer", "expires_in": 300, "subject": "cds"}
    return request


@pytest.fixture
def hostile():
    with HostileFhirServer() as server:
        yield server


def _app_for(make_app, *bases: str, budget: float = BUDGET_SECONDS):
    return make_app(Settings(allowed_fhir_servers=bases, fhir_timeout_seconds=budget)).test_client()


def test_a_gzip_bomb_costs_its_query_and_little_memory(hostile):
    client = FhirClient()
    tracemalloc.start()
    try:
        started = time.monotonic()
        results = client.fetch_all(
            {"labs": f"{hostile.base}/bomb/fhir/Observation"}, base=f"{hostile.base}/bomb/fhir",
            token=None, timeout_seconds=5.0,
        )
        elapsed = time.monotonic() - started
        _current, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert results["labs"].error == f"response larger than {16 * 1024 * 1024} bytes"
    assert results["labs"].resources == []
    assert peak < 64 * 1024 * 1024  # the 16 MiB cap and its decompression steps, not the 1 GiB
    assert hostile.bomb_bytes_sent < 4 * 1024 * 1024  # the service stopped reading early
    assert elapsed < 5.0


def test_a_gzip_bomb_through_a_hook_call_gives_data_unavailable(make_app, hostile):
    base = f"{hostile.base}/bomb/fhir"
    response = _app_for(make_app, base, budget=5.0).post("/cds-services/order-sign", json=_call_fetching_everything_from(base))
    assert response.status_code == 200
    assert _topics(response) == ["data-unavailable"]


@pytest.mark.parametrize("mode", ["drip-body", "drip-headers"])
def test_a_server_dripping_one_byte_a_second_cannot_stretch_the_call(make_app, hostile, mode):
    base = f"{hostile.base}/{mode}/fhir"
    client = _app_for(make_app, base)
    started = time.monotonic()
    response = client.post("/cds-services/order-sign", json=_call_fetching_everything_from(base))
    elapsed = time.monotonic() - started
    assert response.status_code == 200
    assert _topics(response) == ["data-unavailable"]
    assert elapsed < BUDGET_SECONDS + 1.0


def test_no_fetch_thread_outlives_the_deadline(hostile):
    client = FhirClient()
    base = f"{hostile.base}/drip-body/fhir"
    started = time.monotonic()
    results = client.fetch_all({f"q{i}": f"{base}/Observation?i={i}" for i in range(8)}, base=base, token=None, timeout_seconds=0.5)
    assert all(result.error for result in results.values())
    stragglers = time.monotonic() + 2.0
    while time.monotonic() < stragglers and any(t.name.startswith("fhir-fetch") for t in threading.enumerate()):
        time.sleep(0.05)
    assert not [t.name for t in threading.enumerate() if t.name.startswith("fhir-fetch")]
    assert time.monotonic() - started < 0.5 + 1.0


def test_deeply_nested_json_costs_its_query_not_the_call(make_app, hostile):
    base = f"{hostile.base}/deep/fhir"
    response = _app_for(make_app, base).post("/cds-services/order-sign", json=_call_fetching_everything_from(base))
    assert response.status_code == 200
    assert _topics(response) == ["data-unavailable"]


def test_nesting_and_broken_json_are_refused_with_their_cause():
    with pytest.raises(ResponseUnreadable, match="nested too deeply"):
        parse_json(b"[" * 1100)
    with pytest.raises(ResponseUnreadable, match="not JSON"):
        parse_json(b'{"resourceType": "Bundle",')
    assert parse_json(bytearray(b'{"a": [[1], {"b": "[[[[{{{{"}]}')) == {"a": [[1], {"b": "[[[[{{{{"}]}


def test_a_150k_entry_page_is_answered_within_the_budget(make_app, hostile):
    base = f"{hostile.base}/big-page/fhir"
    client = _app_for(make_app, base, budget=2.0)
    started = time.monotonic()
    response = client.post("/cds-services/order-sign", json=_call_fetching_everything_from(base))
    elapsed = time.monotonic() - started
    assert response.status_code == 200
    assert elapsed < 2.0 + 1.0


def test_eight_huge_pages_in_one_call_stay_within_the_call_budget():
    """Every one of a call's 8 queries answered with a 16 MiB page (230k entries): the call's
    responses together are capped, so the heap stays far below a worker's 400 MB."""
    with HostileFhirServer(big_page_entries=230_000) as server:
        base = f"{server.base}/big-page/fhir"
        tracemalloc.start()
        try:
            results = FhirClient().fetch_all(
                {f"q{i}": f"{base}/Observation?i={i}" for i in range(8)}, base=base, token=None, timeout_seconds=20.0
            )
            _current, peak = tracemalloc.get_traced_memory()
        finally:
            tracemalloc.stop()
    errors = [result.error for result in results.values()]
    assert errors.count("the call's responses together are larger than allowed") == 7
    assert [len(result.resources) for result in results.values() if result.error is None] == [230_000]  # one fits
    assert peak < 250 * 1024 * 1024


def test_one_stuck_call_does_not_starve_another_callers_call(make_app, hostile):
    stuck_base, good_base = f"{hostile.base}/drip-body/fhir", f"{hostile.base}/ok/fhir"
    # One app, one FhirClient: two callers through the same worker.
    client = _app_for(make_app, stuck_base, good_base, budget=3.0)
    stuck_answer = {}

    def stuck_call():
        stuck_answer["response"] = client.post("/cds-services/order-sign", json=_call_fetching_everything_from(stuck_base))

    thread = threading.Thread(target=stuck_call)
    thread.start()
    until = time.monotonic() + 3.0
    while hostile.count("/drip-body/") < 8 and time.monotonic() < until:
        time.sleep(0.02)
    assert hostile.count("/drip-body/") == 8  # all 8 queries of the stuck call are hanging now
    started = time.monotonic()
    response = client.post("/cds-services/order-sign", json=_call_fetching_everything_from(good_base))
    elapsed = time.monotonic() - started
    thread.join(timeout=10)
    assert response.status_code == 200
    # The other caller's data came (an empty record): its checks ran, not a data-unavailable card.
    assert "data-unavailable" not in _topics(response)
    assert elapsed < 2.0  # well before the stuck call's 3 s budget runs out
    assert _topics(stuck_answer["response"]) == ["data-unavailable"]
