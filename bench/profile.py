"""Where one heavy hook call spends its time, in-process (the worker's code, without HTTP):

    python3 -m bench.profile                    # 400 Observations, cProfile top functions
    python3 -m bench.profile --observations 10000 --pyinstrument
    python3 -m bench.profile --no-card          # the well-managed patient: no card, no ledger write
    python3 -m bench.profile --lean             # the same resources as a lean EHR sends them (~300 KiB)

Prints the cost of each stage (JSON parse, record build, and the record build with validation
switched off: what the R4B validation itself costs), the garbage collections per call with the
worker's GC settings, then a profile. pyinstrument is optional (pip install pyinstrument). The
patient is the benchmark's default, whose order gets one card (written to a temporary card
ledger); bench/hot_path.py times the card's pieces (suppression look-up, ledger write) one by one.
"""

from __future__ import annotations

import argparse
import gc
import json
import os
import statistics
import tempfile
import time
from datetime import datetime, timezone

from bench.service import FLOOR_ENV_VAR, FLOOR_PATH


def _median_ms(action, repeats: int) -> float:
    samples = []
    for _ in range(repeats):
        started = time.perf_counter()
        action()
        samples.append((time.perf_counter() - started) * 1000)
    return statistics.median(samples)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python3 -m bench.profile", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--observations", type=int, default=400)
    parser.add_argument("--repeats", type=int, help="calls per measurement (default: ~20,000 Observations' worth)")
    parser.add_argument("--pyinstrument", action="store_true", help="profile with pyinstrument instead of cProfile")
    parser.add_argument("--no-card", action="store_true", help="the patient well managed: its order gets no card")
    parser.add_argument("--lean", action="store_true", help="the lean request of target 1 (bench/patient.py lean_resource)")
    parser.add_argument("--top", type=int, default=25)
    parser.add_argument("--sort", default="tottime", help="cProfile sort key, e.g. cumulative (default: tottime)")
    args = parser.parse_args(argv)
    os.environ[FLOOR_ENV_VAR] = "1"  # the floor route, to show the whole call beside it
    os.environ.setdefault("DENOSUMAB_CDS_STORE_URL", f"sqlite:///{tempfile.mkdtemp(prefix='denosumab-profile-')}/store.sqlite3")

    from bench.patient import CARD_LABS_DAYS_AGO, QUIET_LABS_DAYS_AGO, heavy_patient, order_select_request
    from cds_service.app import create_app
    from cds_service.cli import GC_YOUNG_THRESHOLD
    from cds_service.config import Settings
    from cds_service.record import build

    as_of = datetime.now(timezone.utc)
    app = create_app(Settings(max_body_bytes=1 << 30), clock=lambda: as_of)
    service = app.extensions["denosumab_cds"]
    client = app.test_client()
    heavy = heavy_patient(observations=args.observations, lean=args.lean,
                          newest_labs_days_ago=QUIET_LABS_DAYS_AGO if args.no_card else CARD_LABS_DAYS_AGO)
    body = json.dumps(order_select_request(heavy), separators=(",", ":")).encode()
    document = json.loads(body)
    resource_groups = list(heavy.by_key.items())
    repeats = args.repeats or max(5, 20000 // max(1, args.observations))

    def call():
        response = client.post("/cds-services/order-select", data=body, content_type="application/json")
        assert response.status_code == 200, response.get_data(as_text=True)[:300]

    def record():
        inputs = build.RecordInputs(patient_id=heavy.patient["id"], resource_groups=resource_groups,
                                    draft_orders=[heavy.draft_order], selections=(f"MedicationRequest/{heavy.draft_order['id']}",))
        return build.build_record(inputs, service.kb)

    def floor_call():
        response = client.post(FLOOR_PATH, data=body, content_type="application/json")
        assert response.status_code == 200

    call()  # first call: lazy imports, caches
    gc.freeze()  # as the worker does after fork (cds_service/cli.py)
    gc.set_threshold(GC_YOUNG_THRESHOLD, 10, 10)
    collections = [0, 0, 0]
    gc.callbacks.append(lambda phase, info: phase == "stop" and collections.__setitem__(info["generation"], collections[info["generation"]] + 1))

    validated = {"count": 0}
    real_parse = build._Builder.parse

    def counting_parse(self, where, raw, *, draft=False):
        validated["count"] += 1
        return real_parse(self, where, raw, draft=draft)

    build._Builder.parse = counting_parse
    service.evaluate("order-select", document, service_caller(app))  # validates what the rules read
    build._Builder.parse = real_parse
    built = record()
    kept = len(built.labs) + len(built.medications) + len(built.conditions) + len(built.procedures) + 1
    stages = {
        "json.loads of the body": _median_ms(lambda: json.loads(body), repeats),
        "record build (history validated later, when read)": _median_ms(record, repeats),
    }
    build._Builder.parse = lambda self, where, raw, draft=False: None  # counterfactual: no validation
    stages["record build, validation switched off"] = _median_ms(record, repeats)
    build._Builder.parse = real_parse
    stages["HookService.evaluate (request already parsed)"] = _median_ms(
        lambda: service.evaluate("order-select", document, service_caller(app)), repeats)
    stages["the floor through Flask (test client): read the body as JSON"] = _median_ms(floor_call, repeats)
    collections[:] = [0, 0, 0]
    stages["whole call through Flask (test client)"] = _median_ms(call, repeats)
    per_call_gc = [round(n / repeats, 1) for n in collections]

    print(f"{args.observations} Observations, body {len(body) / 1024:.0f} KiB, {sum(len(group) for _, group in resource_groups)} resources, "
          f"{kept} kept by code ({len(built.labs)} lab results), {validated['count']} validated in a call, "
          f"median of {repeats} calls:")
    for name, ms in stages.items():
        print(f"  {name:<62} {ms:8.2f} ms")
    print(f"  garbage collections per call (young, middle, full): {per_call_gc}")
    print()

    if args.pyinstrument:
        from pyinstrument import Profiler

        profiler = Profiler(interval=0.0005)
        profiler.start()
        for _ in range(repeats):
            call()
        profiler.stop()
        print(profiler.output_text(unicode=False, color=False, show_all=False))
    else:
        import cProfile
        import pstats

        profiler = cProfile.Profile()
        profiler.enable()
        for _ in range(repeats):
            call()
        profiler.disable()
        pstats.Stats(profiler).sort_stats(args.sort).print_stats(args.top)
    return 0


def service_caller(app):
    from cds_service.protocol.auth import anonymous_caller

    return anonymous_caller(app.extensions["denosumab_cds"].settings)


if __name__ == "__main__":
    raise SystemExit(main())
