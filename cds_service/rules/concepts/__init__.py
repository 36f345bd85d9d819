"""Clinical concepts the rules share, one module per concern (medication classes, regimen, dose
history, calcium readings, kidney function, indications, order suggestions, wording).

Like the rules, they are pure functions of the record, the time of the call and the reviewed
knowledge: no FHIR paths (the record has those) and no codes or numbers (seeds/ has those).
"""
