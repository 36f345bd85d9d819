"""The EHR's key and JWKS of the security tests, for the tests of what operations see of JWT calls."""

from tests.security.conftest import ehr_key, jwks_path  # noqa: F401 - fixtures, used by name
