"""Clinical concepts the rules share, one module per concern: `labs` (countable and latest
results), `calcium` (the calcium compared, its limits, albumin pairing, the hypercalcemia state),
`kidney` (kidney function's two uses, dialysis, stale CKD codes), `order_suggestions` (lab and
medication orders the cards suggest, cancelling a draft). Dose history, regimen, indications and
wording are still in rules/common.py.

Like the rules, they are pure functions of the record, the time of the call and the reviewed
knowledge: no FHIR paths (the record has those) and no codes or numbers (seeds/ has those).
"""
