"""The CDS Hooks 2.0 protocol: service definitions, request validation, prefetch and FHIR access."""
