"""Text the service can store and hash: valid Unicode (no unpaired surrogate, which JSON's
`\\ud800` escape can carry but UTF-8 cannot encode) and no NUL (which PostgreSQL text refuses).
Such input is refused when it arrives, naming the field, rather than failing at the write."""

from __future__ import annotations


def unstorable(value: str) -> str | None:
    """Why `value` cannot be stored, or None when it can."""
    if "\x00" in value:
        return "holds a NUL character"
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        return "is not valid Unicode (an unpaired surrogate)"
    return None
