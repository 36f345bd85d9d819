"""Where the project's data folders (`seeds/`, `hooks/`) are: inside the installed package
(wheel), else at the root of the source checkout (editable install, tests)."""

from __future__ import annotations

from pathlib import Path

_PACKAGE = Path(__file__).resolve().parent


def data_dir(name: str) -> Path:
    packaged = _PACKAGE / name
    return packaged if packaged.is_dir() else _PACKAGE.parent / name
