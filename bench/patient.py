"""A heavy patient, generated deterministically: five years of US Core-shaped history.

The shape follows what an EHR actually sends for a long-term Prolia patient with CKD 3a:
basic metabolic panels and blood counts at every visit (most of which no rule reads), calcium,
albumin, eGFR and vitamin D series in both mass and molar units, a medication history coded in
RxNorm and NDC, encounter diagnoses in ICD-10-CM and SNOMED CT, and procedures in CPT, CDT and
SNOMED CT. A few resources carry the usual EHR slips (date-times without a zone, vendor fields).

By default the patient's newest labs are 45 days old, so the Prolia order gets one card
(calcium-monitoring: no calcium in the last 30 days) and the service writes it to its card
ledger; `newest_labs_days_ago=QUIET_LABS_DAYS_AGO` is the same patient well managed (no card).
`lean=True` is the same history as a leaner EHR sends it (about half the bytes): no `meta`,
display strings, extra codings, identifiers, performers, encounter references, issue times,
concept or reference-range text, or search modes (`lean_resource`).

Nothing here is committed as data: `heavy_patient(seed=..., observations=...)` builds it in
well under a second, identical for the same arguments. `PatientRotation` gives one request body
for many patients (same bytes but the patient id), so that a card ledger holds a realistic
number of cards per patient however many calls the benchmark makes.
"""

from __future__ import annotations

import itertools
import random
import uuid
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone

LOINC = "http://loinc.org"
UCUM = "http://unitsofmeasure.org"
RXNORM = "http://www.nlm.nih.gov/research/umls/rxnorm"
NDC = "http://hl7.org/fhir/sid/ndc"
ICD10CM = "http://hl7.org/fhir/sid/icd-10-cm"
SNOMED = "http://snomed.info/sct"
CPT = "http://www.ama-assn.org/go/cpt"
CDT = "http://terminology.hl7.org/CodeSystem/CD2"
OBS_CATEGORY = "http://terminology.hl7.org/CodeSystem/observation-category"
INTERPRETATION = "http://terminology.hl7.org/CodeSystem/v3-ObservationInterpretation"
LOCAL_LAB = "urn:oid:1.2.840.114350.1.13.0.1.7.2.768282"  # an EHR's own result-component codes
US_CORE = "http://hl7.org/fhir/us/core/StructureDefinition/"
BASE_URL = "https://ehr.example.org/fhir/r4"

PATIENT_ID = "pat-heavy-0001"
ROTATED_ID = "pat-heavy-{:04d}"  # the same length as PATIENT_ID: every rotated body has the same size
CARD_LABS_DAYS_AGO = 45  # the default: one card (calcium-monitoring)
QUIET_LABS_DAYS_AGO = 14  # well managed: no card
PRACTITIONER_ID = "prac-5120"
DRAFT_ID = "draft-prolia-heavy"


@dataclass(frozen=True)
class Analyte:
    loinc: str
    display: str
    unit: str  # UCUM code, also used as the human unit
    low: float | None
    high: float | None
    mean: float
    sd: float
    decimals: int = 1


# Panels as drawn at a visit; `share` is the chance that a visit includes the panel.
BMP = (
    Analyte("2951-2", "Sodium [Moles/volume] in Serum or Plasma", "mmol/L", 136, 145, 140, 2.5, 0),
    Analyte("2823-3", "Potassium [Moles/volume] in Serum or Plasma", "mmol/L", 3.5, 5.1, 4.3, 0.35),
    Analyte("2075-0", "Chloride [Moles/volume] in Serum or Plasma", "mmol/L", 98, 107, 102, 2.5, 0),
    Analyte("2028-9", "Carbon dioxide, total [Moles/volume] in Serum or Plasma", "mmol/L", 22, 29, 25, 2, 0),
    Analyte("3094-0", "Urea nitrogen [Mass/volume] in Serum or Plasma", "mg/dL", 7, 20, 22, 5, 0),
    Analyte("2160-0", "Creatinine [Mass/volume] in Serum or Plasma", "mg/dL", 0.6, 1.1, 1.25, 0.12, 2),
    Analyte("2345-7", "Glucose [Mass/volume] in Serum or Plasma", "mg/dL", 70, 99, 112, 18, 0),
    Analyte("17861-6", "Calcium [Mass/volume] in Serum or Plasma", "mg/dL", 8.5, 10.5, 9.3, 0.35),
    Analyte("98979-8", "Glomerular filtration rate/1.73 sq M.predicted [Volume Rate/Area] in Serum, Plasma or Blood by Creatinine-based formula (CKD-EPI 2021)", "mL/min/{1.73_m2}", 60, None, 52, 5, 0),
)
HEPATIC = (
    Analyte("1751-7", "Albumin [Mass/volume] in Serum or Plasma", "g/dL", 3.5, 5.0, 4.0, 0.25),
    Analyte("2885-2", "Protein [Mass/volume] in Serum or Plasma", "g/dL", 6.0, 8.3, 7.0, 0.4),
    Analyte("1742-6", "Alanine aminotransferase [Enzymatic activity/volume] in Serum or Plasma", "U/L", 7, 35, 22, 6, 0),
    Analyte("1920-8", "Aspartate aminotransferase [Enzymatic activity/volume] in Serum or Plasma", "U/L", 8, 33, 24, 5, 0),
    Analyte("6768-6", "Alkaline phosphatase [Enzymatic activity/volume] in Serum or Plasma", "U/L", 44, 147, 78, 15, 0),
    Analyte("1975-2", "Bilirubin.total [Mass/volume] in Serum or Plasma", "mg/dL", 0.1, 1.2, 0.6, 0.15),
)
CBC = (
    Analyte("6690-2", "Leukocytes [#/volume] in Blood by Automated count", "10*3/uL", 4.5, 11.0, 6.8, 1.2),
    Analyte("789-8", "Erythrocytes [#/volume] in Blood by Automated count", "10*6/uL", 4.2, 5.4, 4.5, 0.3, 2),
    Analyte("718-7", "Hemoglobin [Mass/volume] in Blood", "g/dL", 12.0, 15.5, 12.9, 0.8),
    Analyte("4544-3", "Hematocrit [Volume Fraction] of Blood by Automated count", "%", 36, 46, 39, 2.2),
    Analyte("787-2", "MCV [Entitic volume] by Automated count", "fL", 80, 100, 90, 3),
    Analyte("785-6", "MCH [Entitic mass] by Automated count", "pg", 27, 33, 30, 1.2),
    Analyte("786-4", "MCHC [Mass/volume] by Automated count", "g/dL", 32, 36, 33.5, 0.8),
    Analyte("788-0", "Erythrocyte distribution width [Ratio] by Automated count", "%", 11.5, 14.5, 13.1, 0.6),
    Analyte("777-3", "Platelets [#/volume] in Blood by Automated count", "10*3/uL", 150, 400, 245, 45, 0),
)
LIPIDS = (
    Analyte("2093-3", "Cholesterol [Mass/volume] in Serum or Plasma", "mg/dL", None, 200, 185, 20, 0),
    Analyte("2571-8", "Triglyceride [Mass/volume] in Serum or Plasma", "mg/dL", None, 150, 140, 30, 0),
    Analyte("2085-9", "Cholesterol in HDL [Mass/volume] in Serum or Plasma", "mg/dL", 40, None, 55, 8, 0),
    Analyte("13457-7", "Cholesterol in LDL [Mass/volume] in Serum or Plasma by calculation", "mg/dL", None, 100, 102, 18, 0),
)
SINGLES = (
    (0.30, Analyte("4548-4", "Hemoglobin A1c/Hemoglobin.total in Blood", "%", 4.0, 5.6, 6.4, 0.4)),
    (0.15, Analyte("3016-3", "Thyrotropin [Units/volume] in Serum or Plasma", "m[IU]/L", 0.45, 4.5, 2.1, 0.8, 2)),
    (0.25, Analyte("1989-3", "25-Hydroxyvitamin D3 [Mass/volume] in Serum or Plasma", "ng/mL", 30, 100, 34, 7, 0)),
    (0.10, Analyte("19123-9", "Magnesium [Mass/volume] in Serum or Plasma", "mg/dL", 1.7, 2.2, 2.0, 0.15)),
    (0.10, Analyte("2777-1", "Phosphate [Mass/volume] in Serum or Plasma", "mg/dL", 2.5, 4.5, 3.6, 0.4)),
    (0.08, Analyte("2731-8", "Parathyrin.intact [Mass/volume] in Serum or Plasma", "pg/mL", 15, 65, 58, 15, 0)),
    (0.05, Analyte("1994-3", "Calcium.ionized [Moles/volume] in Blood", "mmol/L", 1.12, 1.32, 1.22, 0.04, 2)),
)
# An outside lab that reports calcium and vitamin D in molar units.
MOLAR_CALCIUM = Analyte("2000-8", "Calcium [Moles/volume] in Serum or Plasma", "mmol/L", 2.12, 2.62, 2.33, 0.08, 2)
MOLAR_VITAMIN_D = Analyte("14635-7", "25-Hydroxyvitamin D3 [Moles/volume] in Serum or Plasma", "nmol/L", 75, 250, 85, 15, 0)
PANELS = ((1.0, BMP), (0.7, CBC), (0.4, HEPATIC), (0.2, LIPIDS))

PROLIA = {"system": RXNORM, "code": "993456", "display": "1 ML denosumab 60 MG/ML Prefilled Syringe [Prolia]"}
PROLIA_NDC = {"system": NDC, "code": "55513-0710-01", "display": "Prolia 60 mg/mL prefilled syringe"}
CALCIUM_D = {"system": RXNORM, "code": "152770", "display": "calcium carbonate 1250 MG / cholecalciferol 0.01 MG Oral Tablet"}
# (coding, text, dose text): everyday drugs no denosumab rule reads.
OTHER_DRUGS = (
    ({"system": RXNORM, "code": "314076", "display": "lisinopril 10 MG Oral Tablet"}, "Lisinopril 10 mg tablet", "10 mg by mouth daily"),
    ({"system": RXNORM, "code": "617312", "display": "atorvastatin 20 MG Oral Tablet"}, "Atorvastatin 20 mg tablet", "20 mg by mouth at bedtime"),
    ({"system": RXNORM, "code": "861007", "display": "metformin hydrochloride 500 MG Oral Tablet"}, "Metformin 500 mg tablet", "500 mg by mouth twice daily with meals"),
    ({"system": RXNORM, "code": "966222", "display": "levothyroxine sodium 0.05 MG Oral Tablet"}, "Levothyroxine 50 mcg tablet", "50 mcg by mouth every morning"),
    ({"system": NDC, "code": "0093-5057-01", "display": "Omeprazole 20 mg delayed-release capsule"}, "Omeprazole 20 mg DR capsule", "20 mg by mouth daily before breakfast"),
    ({"system": RXNORM, "code": "197361", "display": "amlodipine 5 MG Oral Tablet"}, "Amlodipine 5 mg tablet", "5 mg by mouth daily"),
)
# (codings, text): diagnoses; the first two are in the service's value sets, the rest are not.
CONDITIONS = (
    ([{"system": ICD10CM, "code": "M81.0", "display": "Age-related osteoporosis without current pathological fracture"},
      {"system": SNOMED, "code": "102447009", "display": "Osteoporosis of aged"}], "Postmenopausal osteoporosis"),
    ([{"system": ICD10CM, "code": "N18.31", "display": "Chronic kidney disease, stage 3a"}], "CKD stage 3a"),
    ([{"system": ICD10CM, "code": "I10", "display": "Essential (primary) hypertension"},
      {"system": SNOMED, "code": "59621000", "display": "Essential hypertension"}], "Hypertension"),
    ([{"system": ICD10CM, "code": "E78.5", "display": "Hyperlipidemia, unspecified"}], "Hyperlipidemia"),
    ([{"system": ICD10CM, "code": "E11.9", "display": "Type 2 diabetes mellitus without complications"},
      {"system": SNOMED, "code": "44054006", "display": "Diabetes mellitus type 2"}], "Type 2 diabetes"),
    ([{"system": ICD10CM, "code": "E03.9", "display": "Hypothyroidism, unspecified"}], "Hypothyroidism"),
    ([{"system": ICD10CM, "code": "K21.9", "display": "Gastro-esophageal reflux disease without esophagitis"}], "GERD"),
    ([{"system": ICD10CM, "code": "M17.11", "display": "Unilateral primary osteoarthritis, right knee"}], "OA right knee"),
    ([{"system": SNOMED, "code": "195967001", "display": "Asthma"}], "Asthma"),
    ([{"system": ICD10CM, "code": "Z79.899", "display": "Other long term (current) drug therapy"}], "Long-term drug therapy"),
)
# (codings, text, kind): "dental" and "dxa" repeat on schedules; the rest fill the history.
PROCEDURES = (
    ([{"system": CDT, "code": "D0120", "display": "periodic oral evaluation - established patient"}], "Periodic oral evaluation", "dental"),
    ([{"system": CPT, "code": "77080", "display": "Dual-energy X-ray absorptiometry (DXA), bone density study, 1 or more sites; axial skeleton"}], "DXA scan", "dxa"),
    ([{"system": CPT, "code": "45378", "display": "Colonoscopy, flexible; diagnostic"}], "Colonoscopy", "other"),
    ([{"system": SNOMED, "code": "241615005", "display": "Magnetic resonance imaging of knee"}], "MRI right knee", "other"),
    ([{"system": CPT, "code": "93000", "display": "Electrocardiogram, routine ECG with at least 12 leads"}], "ECG", "other"),
    ([{"system": CPT, "code": "20610", "display": "Arthrocentesis, aspiration and/or injection, major joint"}], "Knee injection", "other"),
    ([{"system": SNOMED, "code": "234336002", "display": "Hemorrhoidectomy"}], "Hemorrhoidectomy", "other"),
    ([{"system": CPT, "code": "92014", "display": "Ophthalmological services: comprehensive, established patient"}], "Diabetic eye exam", "other"),
)


@dataclass
class HeavyPatient:
    """The patient's resources by prefetch key (the hook descriptors' keys) plus the draft order."""

    patient: dict
    by_key: dict[str, list[dict]] = field(default_factory=dict)
    draft_order: dict = field(default_factory=dict)
    lean: bool = False  # Bundles without search modes too (see `lean_resource`)

    def counts(self) -> dict[str, int]:
        return {key: len(items) for key, items in self.by_key.items()}


def _iso(moment: datetime) -> str:
    return moment.astimezone(timezone(timedelta(hours=-6))).isoformat(timespec="seconds")


def _uid(rng: random.Random) -> str:
    return str(uuid.UUID(int=rng.getrandbits(128), version=4))


def _subject() -> dict:
    return {"reference": f"Patient/{PATIENT_ID}", "display": "Halvorsen, Margit L"}


class _Generator:
    def __init__(self, seed: int, years: float, as_of: datetime):
        self.rng = random.Random(seed)
        self.as_of = as_of
        self.start = as_of - timedelta(days=365.25 * years)
        self.span_days = 365.25 * years

    def moment(self, fraction: float) -> datetime:
        """A morning time (07:00-11:00 US Central) at `fraction` of the history (0 = oldest, 1 = today)."""
        day = self.start + timedelta(days=self.span_days * fraction)
        return day.replace(hour=13, minute=0, second=0, microsecond=0) + timedelta(minutes=self.rng.randrange(0, 240))

    # observations -----------------------------------------------------------------------------
    def observation(self, analyte: Analyte, drawn: datetime, encounter: str, index: int) -> dict:
        rng = self.rng
        value = round(rng.gauss(analyte.mean, analyte.sd), analyte.decimals)
        if analyte.decimals == 0:
            value = int(value)
        obs = {
            "resourceType": "Observation",
            "id": f"lab-{index:06d}",
            "meta": {"profile": [US_CORE + "us-core-observation-lab"]},
            "status": "final" if rng.random() > 0.02 else "amended",
            "category": [{"coding": [{"system": OBS_CATEGORY, "code": "laboratory", "display": "Laboratory"}], "text": "Laboratory"}],
            "code": {"coding": [{"system": LOINC, "code": analyte.loinc, "display": analyte.display}], "text": analyte.display.split(" [")[0]},
            "subject": _subject(),
            "encounter": {"reference": f"Encounter/{encounter}"},
            "effectiveDateTime": _iso(drawn),
            "issued": (drawn + timedelta(hours=3)).isoformat(timespec="milliseconds").replace("+00:00", "Z"),
            "performer": [{"reference": "Organization/org-central-lab", "display": "Central Laboratory"}],
            "valueQuantity": {"value": value, "unit": analyte.unit.replace("{1.73_m2}", "1.73 m2"), "system": UCUM, "code": analyte.unit},
        }
        reference: dict = {}
        if analyte.low is not None:
            reference["low"] = {"value": analyte.low, "unit": analyte.unit, "system": UCUM, "code": analyte.unit}
        if analyte.high is not None:
            reference["high"] = {"value": analyte.high, "unit": analyte.unit, "system": UCUM, "code": analyte.unit}
        if reference:
            bounds = f"{analyte.low if analyte.low is not None else ''}-{analyte.high if analyte.high is not None else ''}"
            reference["text"] = f"{bounds} {analyte.unit}"
            obs["referenceRange"] = [reference]
        flag = "L" if analyte.low is not None and value < analyte.low else "H" if analyte.high is not None and value > analyte.high else None
        if flag:  # most EHRs flag abnormal results only
            obs["interpretation"] = [{"coding": [{"system": INTERPRETATION, "code": flag}], "text": {"L": "Low", "H": "High"}[flag]}]
        if rng.random() < 0.3:  # some interfaces add the EHR's own component code
            obs["code"]["coding"].append({"system": LOCAL_LAB, "code": str(1000 + int(analyte.loinc.split("-")[0]) % 9000)})
        slip = rng.random()
        if slip < 0.02:  # an interface engine that drops the zone
            obs["effectiveDateTime"] = drawn.strftime("%Y-%m-%dT%H:%M:%S")
        elif slip < 0.05:  # a vendor field R4 has no place for
            obs["specimenReceived"] = _iso(drawn + timedelta(minutes=40))
        return obs

    def observations(self, count: int, newest_days_ago: int) -> list[dict]:
        """Visits spread evenly over the history until `count` results are drawn."""
        rng = self.rng
        visits: list[list[Analyte]] = []
        total = 0
        while total < count:
            drawn: list[Analyte] = []
            for share, panel in PANELS:
                if rng.random() < share:
                    drawn.extend(panel)
            drawn.extend(analyte for share, analyte in SINGLES if rng.random() < share)
            if rng.random() < 0.08:
                drawn.extend((MOLAR_CALCIUM, MOLAR_VITAMIN_D))
            drawn = drawn[: count - total]
            visits.append(drawn)
            total += len(drawn)
        result: list[dict] = []
        # Newest first, as EHRs return searches; only the oldest visit may be cut short.
        for number, analytes in enumerate(visits):
            when = self.moment(1 - number / max(1, len(visits) - 1)) - timedelta(days=newest_days_ago)
            encounter = f"enc-{number:05d}"
            result.extend(self.observation(a, when, encounter, len(result)) for a in analytes)
        return result

    # medications ------------------------------------------------------------------------------
    def medications(self, count: int) -> dict[str, list[dict]]:
        rng = self.rng
        out: dict[str, list[dict]] = {
            "medicationRequests": [],
            "medicationAdministrations": [],
            "medicationDispenses": [],
            "medicationStatements": [],
        }
        doses = max(2, count // 6)  # Prolia every 6 months: one order and one administration each
        for n in range(doses):
            given = self.moment(n / doses) + timedelta(days=2)
            if given > self.as_of - timedelta(days=170):
                given = self.as_of - timedelta(days=178 - n % 3)
            out["medicationRequests"].append(self.medication_request(f"mr-prolia-{n:03d}", PROLIA, "Prolia 60 mg/mL syringe",
                                                                     given - timedelta(days=7), "completed", "60 mg subcutaneously once", 60))
            out["medicationAdministrations"].append({
                "resourceType": "MedicationAdministration",
                "id": f"madm-prolia-{n:03d}",
                "status": "completed",
                "medicationCodeableConcept": {"coding": [PROLIA, PROLIA_NDC], "text": "Prolia 60 mg/mL syringe"},
                "subject": _subject(),
                "context": {"reference": f"Encounter/enc-inj-{n:03d}"},
                "effectiveDateTime": _iso(given),
                "performer": [{"actor": {"reference": "Practitioner/prac-rn-31", "display": "Injection clinic RN"}}],
                "request": {"reference": f"MedicationRequest/mr-prolia-{n:03d}"},
                "dosage": {
                    "route": {"coding": [{"system": SNOMED, "code": "34206005", "display": "Subcutaneous route"}]},
                    "site": {"coding": [{"system": SNOMED, "code": "368209003", "display": "Right upper arm"}]},
                    "dose": {"value": 60, "unit": "mg", "system": UCUM, "code": "mg"},
                },
            })
        out["medicationRequests"].append(self.medication_request("mr-calcium-d", CALCIUM_D, "Calcium 500 mg + D3 400 unit tablet",
                                                                 self.as_of - timedelta(days=300), "active", "1 tablet by mouth twice daily", None))
        made = sum(len(v) for v in out.values())
        n = 0
        while made < count:
            coding, text, sig = OTHER_DRUGS[n % len(OTHER_DRUGS)]
            when = self.moment(rng.random())
            kind = n % 4
            if kind == 3:
                out["medicationStatements"].append({
                    "resourceType": "MedicationStatement",
                    "id": f"ms-{n:04d}",
                    "status": rng.choice(["active", "completed", "stopped"]),
                    "medicationCodeableConcept": {"coding": [coding], "text": text},
                    "subject": _subject(),
                    "effectivePeriod": {"start": _iso(when)},
                    "dateAsserted": _iso(when),
                    "informationSource": {"reference": f"Patient/{PATIENT_ID}"},
                    "dosage": [{"text": sig}],
                })
            elif kind == 2:
                out["medicationDispenses"].append({
                    "resourceType": "MedicationDispense",
                    "id": f"md-{n:04d}",
                    "status": "completed",
                    "medicationCodeableConcept": {"coding": [coding], "text": text},
                    "subject": _subject(),
                    "quantity": {"value": 90, "unit": "tablet", "system": UCUM, "code": "{tbl}"},
                    "daysSupply": {"value": 90, "unit": "day", "system": UCUM, "code": "d"},
                    "whenHandedOver": _iso(when),
                    "dosageInstruction": [{"text": sig}],
                })
            else:
                out["medicationRequests"].append(self.medication_request(f"mr-{n:04d}", coding, text, when,
                                                                         rng.choice(["active", "completed", "stopped"]), sig, None))
            made += 1
            n += 1
        return out

    def medication_request(self, ident: str, coding: dict, text: str, authored: datetime, status: str, sig: str, dose_mg) -> dict:
        dosage: dict = {"text": sig}
        if dose_mg is not None:
            dosage["route"] = {"coding": [{"system": SNOMED, "code": "34206005", "display": "Subcutaneous route"}]}
            dosage["doseAndRate"] = [{"doseQuantity": {"value": dose_mg, "unit": "mg", "system": UCUM, "code": "mg"}}]
        else:
            dosage["timing"] = {"repeat": {"frequency": 1, "period": 1, "periodUnit": "d"}}
        return {
            "resourceType": "MedicationRequest",
            "id": ident,
            "meta": {"profile": [US_CORE + "us-core-medicationrequest"]},
            "status": status,
            "intent": "order",
            "category": [{"coding": [{"system": "http://terminology.hl7.org/CodeSystem/medicationrequest-category", "code": "outpatient"}]}],
            "medicationCodeableConcept": {"coding": [coding], "text": text},
            "subject": _subject(),
            "authoredOn": _iso(authored),
            "requester": {"reference": f"Practitioner/{PRACTITIONER_ID}", "display": "Dr. Ana Ortiz"},
            "dosageInstruction": [dosage],
        }

    # conditions and procedures -----------------------------------------------------------------
    def conditions(self, count: int) -> list[dict]:
        rng = self.rng
        result = []
        for n in range(count):
            codings, text = CONDITIONS[n % len(CONDITIONS)]
            problem = n < len(CONDITIONS)  # one problem-list entry each, then encounter diagnoses
            onset = self.moment(rng.random() * 0.3 if problem else rng.random())
            result.append({
                "resourceType": "Condition",
                "id": f"cond-{n:04d}",
                "meta": {"profile": [US_CORE + ("us-core-condition-problems-health-concerns" if problem else "us-core-condition-encounter-diagnosis")]},
                "clinicalStatus": {"coding": [{"system": "http://terminology.hl7.org/CodeSystem/condition-clinical", "code": "active"}]},
                "verificationStatus": {"coding": [{"system": "http://terminology.hl7.org/CodeSystem/condition-ver-status", "code": "confirmed"}]},
                "category": [{"coding": [{"system": "http://terminology.hl7.org/CodeSystem/condition-category",
                                          "code": "problem-list-item" if problem else "encounter-diagnosis"}]}],
                "code": {"coding": codings, "text": text},
                "subject": _subject(),
                "onsetDateTime": _iso(onset),
                "recordedDate": _iso(onset + timedelta(days=1)),
            })
        return result

    def procedures(self, count: int) -> list[dict]:
        result = []
        for n in range(count):
            codings, text, kind = PROCEDURES[n % len(PROCEDURES)] if n % 3 else PROCEDURES[0]
            when = self.moment(1 - n / count) - timedelta(days=80)  # newest: a dental exam ~3 months ago
            procedure = {
                "resourceType": "Procedure",
                "id": f"proc-{n:04d}",
                "meta": {"profile": [US_CORE + "us-core-procedure"]},
                "status": "completed",
                "code": {"coding": codings, "text": text},
                "subject": _subject(),
                "performedDateTime": _iso(when),
            }
            if kind == "dental":
                procedure["performer"] = [{"actor": {"reference": "Practitioner/prac-dds-4", "display": "Dr. Lee, DDS"}}]
            else:
                procedure["reasonCode"] = [{"text": "routine"}]
            result.append(procedure)
        return result


# What a lean EHR export leaves out (all optional in R4 and US Core): only codes, values, dates,
# statuses and references are kept.
LEAN_DROPPED_KEYS = frozenset({"meta", "display", "identifier", "extension", "performer", "issued", "address", "encounter"})


def lean_resource(value):
    """`value` as a leaner EHR sends it: no `LEAN_DROPPED_KEYS`, one coding per concept (the
    standard code first in every concept here: LOINC, RxNorm, ICD-10-CM, CPT), no concept text,
    no human unit beside a UCUM code, reference ranges as bare bounds (value and unit, no text).
    Dosage instructions keep their text."""
    if isinstance(value, list):
        return [lean_resource(item) for item in value]
    if not isinstance(value, dict):
        return value
    if "low" in value or "high" in value:  # a reference range: the lab's bounds as value and unit
        return {key: {"value": bound["value"], "unit": bound["unit"]} for key, bound in value.items() if key in ("low", "high")}
    out = {}
    for key, item in value.items():
        if key in LEAN_DROPPED_KEYS:
            continue
        if key == "coding":
            item = item[:1]
        elif key == "text" and "coding" in value:
            continue  # a concept's text, not a dosage's
        elif key == "unit" and "code" in value and value.get("system") == UCUM:
            continue
        out[key] = lean_resource(item)
    return out


def heavy_patient(
    *, seed: int = 20261125, observations: int = 400, medications: int = 60, conditions: int = 40,
    procedures: int = 30, years: float = 5.0, as_of: datetime | None = None,
    newest_labs_days_ago: int = CARD_LABS_DAYS_AGO, lean: bool = False,
) -> HeavyPatient:
    """The same arguments give the same patient; `as_of` (default: today, 00:00 UTC) is the day of
    the hook call, so the history stays five years back and the last dose six months back.

    With the newest labs 45 days old (the default) the order gets the calcium-monitoring card (no
    calcium in the last 30 days); two weeks old (QUIET_LABS_DAYS_AGO) the patient is well managed
    (no card). `lean=True`: the same resources through `lean_resource` (the same values and cards)."""
    as_of = as_of or datetime.now(timezone.utc).replace(hour=0, minute=0, second=0, microsecond=0)
    gen = _Generator(seed, years, as_of)
    patient = {
        "resourceType": "Patient",
        "id": PATIENT_ID,
        "meta": {"profile": [US_CORE + "us-core-patient"]},
        "extension": [{
            "url": US_CORE + "us-core-birthsex", "valueCode": "F",
        }],
        "identifier": [{"system": "urn:oid:1.2.840.114350.1.13.0.1.7.5.737384.14", "value": "E4098123"}],
        "name": [{"use": "official", "family": "Halvorsen", "given": ["Margit", "L"]}],
        "gender": "female",
        "birthDate": "1952-06-02",
        "address": [{"line": ["12 Birch Ln"], "city": "Madison", "state": "WI", "postalCode": "53703"}],
    }
    by_key = {"patient": [patient]}
    by_key.update(gen.medications(medications))
    by_key["labResults"] = gen.observations(observations, newest_labs_days_ago)
    by_key["conditions"] = gen.conditions(conditions)
    by_key["procedures"] = gen.procedures(procedures)
    draft = gen.medication_request(DRAFT_ID, PROLIA, "Prolia 60 mg/mL prefilled syringe", as_of - timedelta(minutes=3),
                                   "draft", "60 mg subcutaneously once every 6 months", 60)
    draft["dosageInstruction"][0]["timing"] = {"repeat": {"frequency": 1, "period": 6, "periodUnit": "mo"}}
    draft["reasonCode"] = [{"coding": [{"system": ICD10CM, "code": "M81.0"}]}]
    draft["encounter"] = {"reference": "Encounter/enc-today"}
    if lean:
        by_key = {key: lean_resource(items) for key, items in by_key.items()}
        patient, draft = by_key["patient"][0], lean_resource(draft)
    return HeavyPatient(patient=patient, by_key=by_key, draft_order=draft, lean=lean)


class PatientRotation:
    """One request body for `patients` patients: each call gives the next patient's body (ids
    ROTATED_ID from `first` on, the same length as PATIENT_ID, round and round), and
    `body_for(n)` patient n's. Safe to call from several client threads.

    The service writes each card to its ledger and, before answering, looks up the patient's
    earlier cards of the same topics: one patient called thousands of times would make that
    look-up read thousands of rows (a real patient has a few dozen cards), so the benchmark
    spreads its calls over many patients. Every body has the same bytes but the id."""

    def __init__(self, body: bytes, *, patients: int = 1000, first: int = 0):
        if first + patients > 10_000:
            raise ValueError("ROTATED_ID has four digits: at most 10,000 patients")
        self.parts = body.split(PATIENT_ID.encode())
        self.patients = patients
        self.first = first
        self.size = len(body)  # of every body
        self._next = itertools.count()  # next() on it is atomic: one patient per call across threads

    def body_for(self, n: int) -> bytes:
        return ROTATED_ID.format(self.first + n % self.patients).encode().join(self.parts)

    def __call__(self) -> bytes:
        return self.body_for(next(self._next))


def searchset(resources: list[dict], *, base: str = BASE_URL, next_url: str | None = None, total: int | None = None,
              search_modes: bool = True) -> dict:
    bundle = {
        "resourceType": "Bundle",
        "id": str(uuid.UUID(int=len(resources) + 1)),
        "type": "searchset",
        "total": len(resources) if total is None else total,
        "link": [{"relation": "self", "url": base}],
        "entry": [
            {"fullUrl": f"{base}/{r['resourceType']}/{r['id']}", "resource": r, **({"search": {"mode": "match"}} if search_modes else {})}
            for r in resources
        ],
    }
    if next_url:
        bundle["link"].append({"relation": "next", "url": next_url})
    return bundle


def order_select_request(
    heavy: HeavyPatient, *, prefetch: bool = True, fhir_server: str | None = None, seed: int = 1
) -> dict:
    """An order-select call for the draft Prolia order, with the full prefetch or none at all."""
    body = {
        "hook": "order-select",
        "hookInstance": _uid(random.Random(seed)),
        "context": {
            "userId": f"Practitioner/{PRACTITIONER_ID}",
            "patientId": PATIENT_ID,
            "encounterId": "enc-today",
            "selections": [f"MedicationRequest/{DRAFT_ID}"],
            "draftOrders": {"resourceType": "Bundle", "type": "collection", "entry": [{"resource": heavy.draft_order}]},
        },
    }
    if fhir_server:
        body["fhirServer"] = fhir_server
        body["fhirAuthorization"] = {
            "access_token": "bench-token-not-a-secret", "token_type": "Bearer", "expires_in": 300,
            "scope": "patient/Observation.read patient/MedicationRequest.read", "subject": "denosumab-cds",
        }
    if prefetch:
        body["prefetch"] = {"patient": heavy.patient}
        for key, resources in heavy.by_key.items():
            if key != "patient":
                body["prefetch"][key] = searchset(resources, search_modes=not heavy.lean)
    return body
