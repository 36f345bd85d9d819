"""The normalized record: units, dates, medication identification, selection of drafts."""

from datetime import datetime, timedelta, timezone

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from cds_service.knowledge import ICD10CM, RXNORM, load_knowledge
from cds_service.record.build import RecordInputs, build_record

RX = RXNORM
PID = "p-42"


@pytest.fixture(scope="module")
def kb():
    return load_knowledge()


def _lab(code, value, unit, ucum=None, when="2026-11-20T08:00:00-05:00", **extra):
    lab = {"resourceType": "Observation", "id": f"o-{code}-{value}", "status": "final",
           "code": {"coding": [{"system": "http://loinc.org", "code": code}]},
           "subject": {"reference": f"Patient/{PID}"}, "effectiveDateTime": when,
           "valueQuantity": {"value": value, "unit": unit}}
    if ucum:
        lab["valueQuantity"].update(system="http://unitsofmeasure.org", code=ucum)
    lab.update(extra)
    return lab


def _record(kb, resources=(), drafts=(), selections=None):
    return build_record(
        RecordInputs(patient_id=PID, resource_groups=[("test", list(resources))], draft_orders=list(drafts),
                     selections=selections),
        kb,
    )


def test_calcium_in_mmol_per_litre_is_converted_to_mg_per_decilitre(kb):
    lab = _lab("2000-8", 2.05, "mmol/L", "mmol/L",
               referenceRange=[{"low": {"value": 2.12, "unit": "mmol/L"}, "high": {"value": 2.62, "unit": "mmol/L"}}])
    (result,) = _record(kb, [lab]).labs_for("calcium-total")
    assert result.unit == "mg/dL"
    assert result.value == pytest.approx(8.22, abs=0.01)
    assert result.reference_low == pytest.approx(8.50, abs=0.01)
    assert result.reference_high == pytest.approx(10.50, abs=0.01)
    assert result.original_text == "2.05 mmol/L"


def test_vitamin_d_in_nmol_per_litre_is_converted_to_ng_per_millilitre(kb):
    (result,) = _record(kb, [_lab("14635-7", 40, "nmol/L", "nmol/L")]).labs_for("vitamin-d-25oh")
    assert result.value == pytest.approx(16.0, abs=0.05) and result.unit == "ng/mL"


@pytest.mark.parametrize("unit", ["mL/min/{1.73_m2}", "mL/min/1.73m2", "mL/min/1.73 m2"])
def test_egfr_units_as_labs_print_them(kb, unit):
    (result,) = _record(kb, [_lab("62238-1", 24, unit)]).labs_for("egfr")
    assert result.value == 24


def test_unknown_unit_leaves_no_value_to_compare(kb):
    (result,) = _record(kb, [_lab("17861-6", 9.1, "furlongs")]).labs_for("calcium-total")
    assert result.value is None and result.original_text == "9.1 furlongs"


def test_date_time_without_zone_is_read_as_utc(kb):
    (result,) = _record(kb, [_lab("17861-6", 9.1, "mg/dL", "mg/dL", when="2026-11-20T08:00:00")]).labs_for("calcium-total")
    assert result.effective == datetime(2026, 11, 20, 8, 0, tzinfo=timezone.utc)


def test_labs_are_newest_first_and_unrelated_observations_are_dropped(kb):
    labs = [_lab("17861-6", 9.0, "mg/dL", "mg/dL", when="2026-01-01"),
            _lab("17861-6", 9.5, "mg/dL", "mg/dL", when="2026-10-01"),
            _lab("2951-2", 140, "mmol/L", "mmol/L")]  # sodium: no rule reads it
    record = _record(kb, labs)
    assert [lab.value for lab in record.labs_for("calcium-total")] == [9.5, 9.0]
    assert len(record.labs) == 2


def test_lab_results_are_validated_only_when_read_newest_first(kb):
    # Five years of calcium results: the rules read the newest few, so a malformed result from
    # years back costs nothing and is reported only when something reads that far.
    old_and_malformed = _lab("17861-6", "eight point nine", "mg/dL", "mg/dL", when="2021-03-01")
    labs = [old_and_malformed,
            _lab("17861-6", 9.5, "mg/dL", "mg/dL", when="2026-10-01T09:00:00+02:00"),
            _lab("17861-6", 9.2, "mg/dL", "mg/dL", when="2024-05-01")]
    record = _record(kb, labs)
    assert next(record.labs_for("calcium-total")).value == 9.5
    assert record.skipped == ()
    assert [lab.value for lab in record.labs_for("calcium-total")] == [9.5, 9.2]  # the malformed one skipped
    (skipped,) = record.skipped
    assert skipped.reference == f"Observation/{old_and_malformed['id']}"


def test_lab_results_since_a_date_stop_before_older_and_undated_ones(kb):
    undated = _lab("17861-6", 8.1, "mg/dL", "mg/dL")
    undated.pop("effectiveDateTime")
    labs = [_lab("17861-6", 9.0, "mg/dL", "mg/dL", when="2026-06-30T23:59:59Z"),
            _lab("17861-6", 9.1, "mg/dL", "mg/dL", when="2026-07-01T00:00:00Z"),
            _lab("17861-6", 9.3, "mg/dL", "mg/dL", when="2026-07-01T01:00:00+02:00"),  # 2026-06-30 23:00 UTC
            undated]
    record = _record(kb, labs)
    since = datetime(2026, 7, 1, tzinfo=timezone.utc)
    assert [lab.value for lab in record.labs_for("calcium-total", since)] == [9.1]
    assert [lab.value for lab in record.labs_for("calcium-total")] == [9.1, 9.0, 9.3, 8.1]  # undated last


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    moments=st.lists(st.datetimes(min_value=datetime(2020, 1, 1), max_value=datetime(2027, 1, 1),
                                  timezones=st.sampled_from([timezone.utc, timezone(timedelta(hours=-5)),
                                                             timezone(timedelta(hours=9, minutes=30))])),
                     max_size=12),
    since=st.datetimes(min_value=datetime(2020, 1, 1), max_value=datetime(2027, 1, 1), timezones=st.just(timezone.utc)),
)
def test_reading_lazily_since_a_date_gives_what_filtering_everything_gives(kb, moments, since):
    labs = [_lab("17861-6", 8 + i / 10, "mg/dL", "mg/dL", when=m.isoformat(), id=f"o-{i}") for i, m in enumerate(moments)]
    everything = list(_record(kb, labs).labs_for("calcium-total"))
    assert [lab.effective for lab in everything] == sorted((lab.effective for lab in everything), reverse=True)
    expected = [lab.id for lab in everything if lab.effective >= since]
    assert [lab.id for lab in _record(kb, labs).labs_for("calcium-total", since)] == expected


def test_a_lab_result_with_an_unreadable_date_is_validated_at_once_and_reported(kb):
    garbled = _lab("17861-6", 9.0, "mg/dL", "mg/dL", when="last Tuesday")
    record = _record(kb, [garbled, _lab("17861-6", 9.4, "mg/dL", "mg/dL")])
    assert len(record.skipped) == 1  # no date to place it by without reading it, so it is read now
    assert [lab.value for lab in record.labs_for("calcium-total")] == [9.4]


def test_hcg_qualitative_positive_by_code_and_by_interpretation(kb):
    by_code = _lab("2106-3", 0, "x", id="a")
    by_code.pop("valueQuantity")
    by_code["valueCodeableConcept"] = {"coding": [{"system": "http://snomed.info/sct", "code": "10828004"}]}
    by_interpretation = _lab("2118-8", 0, "x")
    by_interpretation.pop("valueQuantity")
    by_interpretation["id"] = "b"
    by_interpretation["interpretation"] = [{"coding": [{"system": "http://terminology.hl7.org/CodeSystem/v3-ObservationInterpretation", "code": "POS"}]}]
    results = _record(kb, [by_code, by_interpretation]).labs_for("hcg-qualitative")
    assert [r.qualitative for r in results] == ["positive", "positive"]


def _draft(order_id, medication, **extra):
    draft = {"resourceType": "MedicationRequest", "id": order_id, "status": "draft", "intent": "order",
             "subject": {"reference": f"Patient/{PID}"}, **medication}
    draft.update(extra)
    return draft


def test_biosimilar_identified_by_hyphenated_ndc_only(kb):
    draft = _draft("d1", {"medicationCodeableConcept": {"coding": [{"system": "http://hl7.org/fhir/sid/ndc", "code": "61314-240-63"}]}})
    (order,) = _record(kb, drafts=[draft]).draft_orders
    assert "denosumab-60mg" in order.concepts  # Jubbonti


def test_uncoded_order_is_identified_by_its_text(kb):
    draft = _draft("d1", {"medicationCodeableConcept": {"text": "Xgeva 120 mg/1.7 mL SC"}})
    (order,) = _record(kb, drafts=[draft]).draft_orders
    assert "denosumab-120mg" in order.concepts


def test_a_coded_order_in_no_value_set_is_identified_by_its_name_and_says_so(kb):
    """Catalog v2 / issue 13: an RxNorm code newer than the extract (the sandbox's alendronic acid
    70 mg weekly, 904431) is still recognised by its display or text, flagged for the card."""
    draft = _draft("d1", {"medicationCodeableConcept": {
        "coding": [{"system": RX, "code": "904431", "display": "alendronic acid 70 MG Oral Tablet"}]}})
    (order,) = _record(kb, drafts=[draft]).draft_orders
    assert "oral-bisphosphonate" in order.concepts and order.matched_by_name
    coded = _draft("d2", {"medicationCodeableConcept": {"coding": [{"system": RX, "code": "993456"}], "text": "Prolia"}})
    (order,) = _record(kb, drafts=[coded]).draft_orders
    assert "denosumab-60mg" in order.concepts and not order.matched_by_name


def test_contained_medication_is_followed(kb):
    draft = _draft("d1", {"medicationReference": {"reference": "#med1"}},
                   contained=[{"resourceType": "Medication", "id": "med1",
                               "code": {"coding": [{"system": RX, "code": "2715393"}]}}])
    (order,) = _record(kb, drafts=[draft]).draft_orders
    assert "denosumab-120mg" in order.concepts  # Wyost


def test_referenced_medication_in_the_prefetch_is_followed(kb):
    medication = {"resourceType": "Medication", "id": "m-77", "code": {"coding": [{"system": RX, "code": "2717862"}]}}
    administration = {"resourceType": "MedicationAdministration", "id": "a1", "status": "completed",
                      "medicationReference": {"reference": "Medication/m-77"},
                      "subject": {"reference": f"Patient/{PID}"}, "effectiveDateTime": "2026-05-01"}
    (given,) = _record(kb, [medication, administration]).medications
    assert "denosumab-60mg" in given.concepts and given.date.year == 2026  # Stoboclo


@pytest.mark.parametrize(
    "timing, period_days",
    [
        ({"repeat": {"frequency": 1, "period": 6, "periodUnit": "mo"}}, 182.6),
        ({"repeat": {"period": 4, "periodUnit": "wk"}}, 28.0),
        ({"code": {"coding": [{"code": "Q6M"}]}}, 182.6),
        ({"code": {"coding": [{"system": "http://example.org/freq", "code": "Q4W"}]}}, 28.0),
    ],
)
def test_dosing_interval_from_timing(kb, timing, period_days):
    draft = _draft("d1", {"medicationCodeableConcept": {"coding": [{"system": RX, "code": "993456"}]}},
                   dosageInstruction=[{"timing": timing, "doseAndRate": [{"doseQuantity": {"value": 60, "unit": "mg"}}]}])
    (order,) = _record(kb, drafts=[draft]).draft_orders
    assert order.timing.period_days == pytest.approx(period_days, abs=0.1)
    assert order.dose_mg == 60


def test_order_without_timing_has_none(kb):
    draft = _draft("d1", {"medicationCodeableConcept": {"coding": [{"system": RX, "code": "993456"}]}})
    (order,) = _record(kb, drafts=[draft]).draft_orders
    assert order.timing is None and order.dose_mg is None


def test_selections_choose_the_focus_orders(kb):
    drafts = [_draft("d1", {"medicationCodeableConcept": {"coding": [{"system": RX, "code": "993456"}]}}),
              _draft("d2", {"medicationCodeableConcept": {"coding": [{"system": RX, "code": "197361"}]}})]
    record = _record(kb, drafts=drafts, selections=("https://ehr.example.org/fhir/MedicationRequest/d2",))
    assert [o.id for o in record.focus_orders] == ["d2"]
    assert len(record.draft_orders) == 2


def test_a_draft_also_in_the_history_is_kept_once(kb):
    draft = _draft("d1", {"medicationCodeableConcept": {"coding": [{"system": RX, "code": "993456"}]}})
    record = _record(kb, resources=[dict(draft, status="active")], drafts=[draft])
    assert record.medications == () and len(record.draft_orders) == 1


@pytest.mark.parametrize("value", [-9.4, 350.0, 12000])
def test_impossible_values_are_kept_but_never_compared(kb, value):
    (result,) = _record(kb, [_lab("17861-6", value, "mg/dL", "mg/dL")]).labs_for("calcium-total")
    assert result.value is None
    assert result.original_text.endswith("mg/dL")


def test_order_with_only_a_local_ehr_code_is_identified_by_its_display(kb):
    """Epic and others may send only their own medication id: that is not a standard code."""
    local = {"coding": [{"system": "urn:oid:1.2.840.114350.1.13.0.1.7.2.698288", "code": "123456",
                         "display": "PROLIA 60 MG/ML SC SOSY"}]}
    (order,) = _record(kb, drafts=[_draft("d1", {"medicationCodeableConcept": local})]).draft_orders
    assert "denosumab-60mg" in order.concepts


# --- medication history and procedures, read lazily -----------------------------------------------

DENOSUMAB_60 = {"medicationCodeableConcept": {"coding": [{"system": RX, "code": "993456"}]}}
_MEDICATION_DATE = {"MedicationRequest": "authoredOn", "MedicationAdministration": "effectiveDateTime",
                    "MedicationDispense": "whenHandedOver", "MedicationStatement": "effectiveDateTime"}


def _medication(kind, record_id, status, when, **extra):
    record = {"resourceType": kind, "id": record_id, "status": status, **DENOSUMAB_60,
              "subject": {"reference": f"Patient/{PID}"}, _MEDICATION_DATE[kind]: when}
    if kind == "MedicationRequest":
        record["intent"] = "order"
    record.update(extra)
    return record


def test_the_newest_dose_is_found_without_reading_older_records(kb):
    from cds_service.rules.concepts.dose_history import last_denosumab_dose
    from cds_service.rules.context import RuleContext

    malformed_old = _medication("MedicationAdministration", "a-2022", "completed", "2022-05-02",
                                dosage={"dose": {"value": "sixty", "unit": "mg"}})
    record = _record(kb, [malformed_old,
                          _medication("MedicationAdministration", "a-2026", "completed", "2026-05-04T10:00:00-04:00"),
                          _medication("MedicationRequest", "r-2026", "completed", "2026-05-01")])
    as_of = datetime(2026, 11, 25, tzinfo=timezone.utc)
    assert last_denosumab_dose(RuleContext(record, as_of, kb, "patient-view")).record.id == "a-2026"
    assert record.skipped == ()
    assert [m.id for m in record.medications] == ["a-2026", "r-2026"]  # reading everything finds the bad one
    assert len(record.skipped) == 1


def test_active_orders_are_found_without_reading_completed_ones(kb):
    from cds_service.rules.concepts.medications import DENOSUMAB, active_medications

    malformed_completed = _medication("MedicationRequest", "r-old", "completed", "2024-01-01",
                                      dosageInstruction=[{"timing": {"repeat": {"period": "six"}}}])
    malformed_active = _medication("MedicationRequest", "r-odd", "active", "2023-01-01",
                                   dosageInstruction=[{"timing": {"repeat": {"period": "six"}}}])
    record = _record(kb, [malformed_completed, malformed_active,
                          _medication("MedicationRequest", "r-now", "active", "2026-06-01")])
    assert [m.id for m in active_medications(record, DENOSUMAB)] == ["r-now"]
    (skipped,) = record.skipped  # the active one had to be read to know it is unusable; the completed one not
    assert skipped.reference == "MedicationRequest/r-odd"


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    history=st.lists(
        st.tuples(st.sampled_from(sorted(_MEDICATION_DATE)),
                  st.sampled_from(["active", "on-hold", "completed", "stopped", "entered-in-error", "intended"]),
                  st.one_of(st.none(), st.dates(min_value=datetime(2019, 1, 1).date(), max_value=datetime(2027, 1, 1).date()))),
        max_size=10),
    since=st.one_of(st.none(), st.datetimes(min_value=datetime(2019, 1, 1), max_value=datetime(2027, 1, 1),
                                            timezones=st.just(timezone.utc))),
    statuses=st.one_of(st.none(), st.frozensets(st.sampled_from(["active", "on-hold", "completed", "intended"]), min_size=1)),
    sources=st.one_of(st.none(), st.frozensets(st.sampled_from(sorted(_MEDICATION_DATE)), min_size=1)),
)
def test_reading_medications_lazily_gives_what_filtering_everything_gives(kb, history, since, statuses, sources):
    from cds_service.rules.concepts.medications import DENOSUMAB

    resources = []
    for i, (kind, status, day) in enumerate(history):
        resource = _medication(kind, f"m-{i}", status, day.isoformat() if day else None)
        if day is None:
            resource.pop(_MEDICATION_DATE[kind])
        resources.append(resource)
    everything = _record(kb, resources).medications
    assert [m.date for m in everything if m.date] == sorted((m.date for m in everything if m.date), reverse=True)
    expected = [
        m.id for m in everything
        if (since is None or (m.date is not None and m.date >= since))
        and (statuses is None or m.status in statuses) and (sources is None or m.source in sources)
    ]
    lazily = _record(kb, resources).medications_of(DENOSUMAB, since=since, statuses=statuses, sources=sources)
    assert [m.id for m in lazily] == expected


def test_procedures_since_a_date_are_read_newest_first(kb):
    def exam(procedure_id, status, when):
        return {"resourceType": "Procedure", "id": procedure_id, "status": status,
                "subject": {"reference": f"Patient/{PID}"}, "performedPeriod": {"start": when, "end": when},
                "code": {"coding": [{"system": "http://www.ada.org/cdt", "code": "D0120"}]}}

    record = _record(kb, [exam("p-2024", "completed", "2024-03-01"), exam("p-2026", "completed", "2026-09-01"),
                          exam("p-planned", "preparation", "2026-12-01")])
    since = datetime(2025, 11, 25, tzinfo=timezone.utc)
    completed = frozenset({"completed"})
    assert [p.id for p in record.procedures_of("dental-examination", since=since, statuses=completed)] == ["p-2026"]
    assert [p.id for p in record.procedures_of("dental-examination")] == ["p-planned", "p-2026", "p-2024"]


def _condition(condition_id, code, **extra):
    resource = {"resourceType": "Condition", "id": condition_id, "subject": {"reference": f"Patient/{PID}"},
                "clinicalStatus": {"coding": [{"system": "http://terminology.hl7.org/CodeSystem/condition-clinical",
                                               "code": "active"}]},
                "code": {"coding": [{"system": ICD10CM, "code": code}]}}
    resource.update(extra)
    return resource


def test_conditions_are_validated_only_when_their_kind_or_their_id_is_asked_for(kb):
    # Yearly encounter diagnoses repeat the same few conditions; a rule asks about a kind
    # (bone metastases?) or follows an order's reasonReference, and reads nothing else.
    malformed_osteoporosis = _condition("c-op", "M81.0", onsetDateTime="spring 2019")
    record = _record(kb, [malformed_osteoporosis, _condition("c-met", "C79.51"), _condition("c-ckd", "N18.5")])
    assert [c.id for c in record.conditions_of("bone-metastases")] == ["c-met"]
    assert [c.id for c in record.conditions_with_ids({"c-ckd", "c-elsewhere"})] == ["c-ckd"]
    assert record.skipped == ()
    assert record.conditions_of("osteoporosis") == ()  # read now: unusable, so skipped and reported
    (skipped,) = record.skipped
    assert skipped.reference == "Condition/c-op"


@pytest.mark.parametrize("clinical_status, read_as, unread", [
    ({"coding": [{"system": "http://terminology.hl7.org/CodeSystem/condition-clinical", "code": "remission"}]}, "remission", ()),
    ({"coding": [{"system": "http://hl7.org/fhir/condition-clinical", "code": "resolved"}]}, "resolved", ()),  # STU3 URL
    ({"coding": [{"code": "inactive"}]}, "inactive", ()),  # no system, a code of the value set
    ({"coding": [{"system": "http://snomed.info/sct", "code": "73425007"}, {"code": "inactive"}]}, "inactive", ()),
    ({"text": "Resolved"}, None, ()),  # text only: not recorded
    ({"coding": [{"system": "http://terminology.hl7.org/CodeSystem/condition-clinical", "code": "Resolved"}]}, "resolved", ()),
    ({"coding": [{"system": "http://terminology.hl7.org/CodeSystem/condition-clinical", "code": "resolving"}]}, None, ("clinicalStatus",)),
    ({"coding": [{"system": "http://example.org/local-status", "code": "resolved"}]}, None, ("clinicalStatus",)),
])
def test_a_conditions_clinical_status_is_read_from_its_r4_value_set_only(kb, clinical_status, read_as, unread):
    record = _record(kb, [_condition("c-ckd", "N18.5", clinicalStatus=clinical_status)])
    (condition,) = record.conditions_of("advanced-ckd")
    assert (condition.clinical_status, condition.unread_statuses) == (read_as, unread)
    assert record.skipped == ()


def test_a_condition_of_another_patient_is_reported_when_a_rule_could_read_it(kb):
    theirs = _condition("c-theirs", "C79.51", subject={"reference": "Patient/someone-else"})
    unrelated = _condition("c-asthma", "J45.909", subject={"reference": "Patient/someone-else"})
    record = _record(kb, [theirs, unrelated])
    assert record.conditions_of("bone-metastases") == ()
    (skipped,) = record.skipped  # the asthma entry no rule reads is dropped by its code, unreported
    assert "its subject is not this patient" in skipped.description


def test_medications_of_several_concepts_come_newest_first_across_them(kb):
    def order(order_id, code, authored):
        return {"resourceType": "MedicationRequest", "id": order_id, "status": "active", "intent": "order",
                "subject": {"reference": f"Patient/{PID}"}, "authoredOn": authored,
                "medicationCodeableConcept": {"coding": [{"system": RX, "code": code}]}}

    alendronate, zoledronic = "46041", "77655"
    record = _record(kb, [order("z-2024", zoledronic, "2024-02-01"), order("a-2026", alendronate, "2026-03-01"),
                          order("a-2023", alendronate, "2023-01-05"), order("z-2025", zoledronic, "2025-07-01")])
    found = record.medications_of(frozenset({"oral-bisphosphonate", "zoledronic-acid"}))
    assert [m.id for m in found] == ["a-2026", "z-2025", "z-2024", "a-2023"]


@settings(max_examples=200, deadline=None)
@given(moment=st.datetimes(min_value=datetime(1900, 1, 1), max_value=datetime(2100, 1, 1),
                           timezones=st.sampled_from([None, timezone.utc, timezone(timedelta(hours=-5)),
                                                      timezone(timedelta(hours=14)), timezone(timedelta(hours=-12))])),
       timespec=st.sampled_from(["auto", "seconds", "milliseconds", "microseconds"]),
       form=st.sampled_from(["datetime", "date", "year-month", "year"]))
def test_every_form_of_a_fhir_date_reads_alike_on_the_fast_and_the_careful_path(moment, timespec, form):
    from cds_service.record.dates import to_datetime

    text = {"datetime": moment.isoformat(timespec=timespec), "date": moment.date().isoformat(),
            "year-month": moment.strftime("%Y-%m"), "year": moment.strftime("%Y")}[form]
    text = text.replace("+00:00", "Z") if form == "datetime" and moment.tzinfo is timezone.utc else text
    read = to_datetime(text)
    assert read == to_datetime(f" {text} ")  # padded: always the careful path
    assert read.tzinfo is not None and read.utcoffset() == timedelta(0)
    if form == "datetime":  # a time without a zone is UTC; precision as written
        assert abs(read - (moment if moment.tzinfo else moment.replace(tzinfo=timezone.utc))) < timedelta(seconds=1)


def _full_record_after_drafts(kb, resources, drafts, skipped_before=()):
    """As a hook call builds it: the drafts first (is anything to check?), then everything."""
    from cds_service.record.model import SkippedResource

    inputs = RecordInputs(patient_id=PID, draft_orders=list(drafts),
                          skipped=[SkippedResource("draftOrders", p) for p in skipped_before])
    drafts_only = build_record(inputs, kb)
    inputs.resource_groups = [("medicationRequests", list(resources))]
    inputs.skipped = inputs.skipped + [SkippedResource("medicationRequests", "a prefetch problem")]
    return drafts_only, build_record(inputs, kb, drafts_from=drafts_only)


def test_draft_orders_are_validated_once_per_call_and_their_problems_reported_once(kb):
    prolia = _draft("d1", {"medicationCodeableConcept": {"coding": [{"system": RX, "code": "993456"}]}})
    malformed = _draft("d2", {"medicationCodeableConcept": {"coding": [{"system": RX, "code": "46041"}]}},
                       authoredOn="yesterday")
    drafts_only, full = _full_record_after_drafts(kb, [], [prolia, malformed], skipped_before=["entry 3 is not a resource"])
    assert full.draft_orders[0] is drafts_only.draft_orders[0]  # taken over, not validated again
    assert sorted(s.description.split(":")[0] for s in full.skipped) == [
        "MedicationRequest skipped", "a prefetch problem", "entry 3 is not a resource"]


def test_a_draft_naming_a_medication_resource_is_read_again_once_the_prefetch_holds_it(kb):
    draft = _draft("d1", {"medicationReference": {"reference": "Medication/m-9", "display": "denosumab injection"}})
    xgeva = {"resourceType": "Medication", "id": "m-9", "code": {"coding": [{"system": RX, "code": "1046402"}]}}
    drafts_only, full = _full_record_after_drafts(kb, [xgeva], [draft])
    assert drafts_only.draft_orders[0].concepts == frozenset({"denosumab-unspecified-strength"})  # by its name
    (order,) = full.draft_orders
    assert "denosumab-120mg" in order.concepts  # by the Medication's code
    assert [s.description for s in full.skipped] == ["a prefetch problem"]
