"""The record's view of incomplete data: bounds, values without units, and how far a history
received newest first reaches (what settles an absence)."""

from datetime import datetime, timedelta, timezone

import pytest

from cds_service.knowledge import load_knowledge
from cds_service.record.build import RecordInputs, build_record
from cds_service.record.model import Gap, LabResult
from cds_service.record.units import analyte_units

PID = "pat-1"
NOW = datetime(2026, 11, 25, 15, 0, tzinfo=timezone.utc)


def result(value, comparator=None) -> LabResult:
    return LabResult(id="o", analyte="egfr", concepts=frozenset({"egfr"}), status="final", effective=NOW,
                     value=value, unit="mL/min/1.73m2", comparator=comparator)


@pytest.mark.parametrize("value, comparator, below_30, at_least_35", [
    (15, "<", True, False),       # "<15": below 30 whatever it is
    (30, "<", True, False),       # "<30": below 30
    (30, "<=", None, False),      # "<=30": may be exactly 30
    (40, "<", None, None),        # "<40": may be 25 or 38
    (60, ">", False, True),       # ">60": not below 30
    (20, ">", None, None),        # ">20": may be 25 or 90
    (35, ">=", False, True),
    (28, None, True, False),
    (None, None, None, None),     # no usable value: unknown, never "normal"
])
def test_a_bound_decides_a_comparison_only_when_it_settles_it(value, comparator, below_30, at_least_35):
    lab = result(value, comparator)
    assert lab.is_below(30) is below_30
    assert lab.is_at_least(35) is at_least_35


@pytest.mark.parametrize("analyte, value, read_as, canonical", [
    ("calcium-total", 7.2, "mg/dL", 7.2),
    ("calcium-total", 2.4, "mmol/L", 2.4 * 4.008),
    ("calcium-ionized", 1.1, "mmol/L", 1.1 * 4.008),
    ("albumin", 38, "g/L", 3.8),
    ("egfr", 15, "mL/min/1.73m2", 15),
])
def test_a_value_without_unit_is_read_in_its_one_plausible_unit(analyte, value, read_as, canonical):
    converted, assumed, problem = analyte_units()[analyte].read(value, None, None)
    assert (assumed, problem) == (read_as, None)
    assert converted == pytest.approx(canonical)


@pytest.mark.parametrize("analyte, value, why", [
    ("calcium-total", 4.0, "plausible in mg/dL and in mmol/L"),
    ("vitamin-d-25oh", 30, "plausible in ng/mL and in nmol/L"),
    ("calcium-total", 60, "not plausible in any unit"),
])
def test_a_value_without_unit_that_fits_two_units_or_none_is_unusable(analyte, value, why):
    converted, assumed, problem = analyte_units()[analyte].read(value, None, None)
    assert converted is None and assumed is None and why in problem


def test_an_unknown_unit_is_unusable_and_says_which():
    assert analyte_units()["calcium-total"].read(9.1, None, "mg%")[2] == "the unit 'mg%' is not one this service can convert"


def test_every_plausible_unit_is_one_the_service_converts():
    for units in analyte_units().values():
        for unit in units.plausible:
            assert units.to_canonical(1.0, unit, None) is not None, (units.analyte, unit)


def _calcium(lab_id, days_ago, value=9.4):
    return {"resourceType": "Observation", "id": lab_id, "status": "final", "subject": {"reference": f"Patient/{PID}"},
            "code": {"coding": [{"system": "http://loinc.org", "code": "17861-6"}]},
            "effectiveDateTime": (NOW - timedelta(days=days_ago)).isoformat(),
            "valueQuantity": {"value": value, "unit": "mg/dL", "code": "mg/dL", "system": "http://unitsofmeasure.org"}}


def _record(resources, newest_first=True):
    inputs = RecordInputs(patient_id=PID, resource_groups=[("labResults", resources)],
                          gaps=[Gap("labs", "page-limit", "labResults")],
                          newest_first_keys=frozenset({"labResults"} if newest_first else ()))
    return build_record(inputs, load_knowledge())


def test_a_history_cut_newest_first_settles_absences_inside_what_it_covers():
    record = _record([_calcium("a", 2), _calcium("b", 40), _calcium("c", 90)])
    (gap,) = record.completeness.gaps_of("labs")
    assert gap.reaches_back_to == NOW - timedelta(days=90)
    assert record.settles_absence("labs", NOW - timedelta(days=30))  # "no calcium in 30 days" can be known
    assert not record.settles_absence("labs", NOW - timedelta(days=365))  # "none in a year" cannot
    assert not record.settles_absence("labs", None)  # "never" cannot
    assert record.unavailable == frozenset({"labs"})


def test_a_history_cut_out_of_order_or_not_asked_newest_first_settles_nothing():
    assert not _record([_calcium("a", 90), _calcium("b", 2)]).settles_absence("labs", NOW - timedelta(days=30))
    assert not _record([_calcium("a", 2), _calcium("b", 90)], newest_first=False).settles_absence(
        "labs", NOW - timedelta(days=30))


def test_an_unusable_value_inside_a_window_leaves_a_labs_absence_open():
    bare = _calcium("bare", 3)
    bare["valueQuantity"] = {"value": 4.0}
    record = build_record(RecordInputs(patient_id=PID, resource_groups=[("labResults", [bare])]), load_knowledge())
    (lab,) = record.labs_for("calcium-total")
    assert lab.value is None and "plausible in mg/dL and in mmol/L" in lab.unusable
    assert not record.settles_absence("labs", NOW - timedelta(days=30))
    assert record.settles_absence("labs", NOW - timedelta(days=1))  # the value is older than that window


@pytest.mark.parametrize("text, value, comparator, unusable", [
    ("<15", 15, "<", None),
    ("<15 mL/min/1.73m2", 15, "<", None),
    ("\u2265 90", 90, ">=", None),
    ("15-20", None, None, "not a number"),
    ("pending", None, None, "not a number"),
])
def test_an_egfr_written_as_text_is_read_as_a_number_or_a_bound(text, value, comparator, unusable):
    egfr = {"resourceType": "Observation", "id": "e", "status": "final", "subject": {"reference": f"Patient/{PID}"},
            "code": {"coding": [{"system": "http://loinc.org", "code": "98979-8"}]},
            "effectiveDateTime": NOW.isoformat(), "valueString": text}
    record = build_record(RecordInputs(patient_id=PID, resource_groups=[("labResults", [egfr])]), load_knowledge())
    (lab,) = record.labs_for("egfr")
    assert (lab.value, lab.comparator) == (value, comparator)
    assert (unusable is None) == (lab.unusable is None) and (unusable or "") in (lab.unusable or "")


def test_a_withdrawn_result_with_an_unusable_value_is_not_listed():
    bare = _calcium("bare", 3)
    bare["valueQuantity"], bare["status"] = {"value": 4.0}, "entered-in-error"
    record = build_record(RecordInputs(patient_id=PID, resource_groups=[("labResults", [bare])]), load_knowledge())
    assert len(tuple(record.labs_for("calcium-total"))) == 1
    assert record.unusable_labs() == () and record.settles_absence("labs", NOW - timedelta(days=30))
