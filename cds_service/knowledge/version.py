"""The knowledge version: which release and which reviewed knowledge made a card.

`<release>+kb.<digest>`: the package version, and the first 12 hex digits of SHA-256 over every
file of `seeds/` (path and bytes, in path order; the generated seeds/README.md left out, it only
restates them) and the deployment's threshold and suppression overrides. Two deployments with the
same version give the same cards for the same data; a committee report splits by it.
"""

from __future__ import annotations

import hashlib
import json
from functools import lru_cache
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path

from cds_service.config import Settings
from cds_service.knowledge.loader import Knowledge

PACKAGE = "denosumab-cds"
_GENERATED = frozenset({"README.md"})


def release() -> str:
    try:
        return version(PACKAGE)
    except PackageNotFoundError:  # run from a source tree that was never installed
        return "0+unknown"


@lru_cache(maxsize=8)
def _seeds_digest(seeds_dir: Path) -> str:
    digest = hashlib.sha256()
    for path in sorted(p for p in seeds_dir.rglob("*") if p.is_file()):
        relative = path.relative_to(seeds_dir).as_posix()
        if relative in _GENERATED:
            continue
        digest.update(relative.encode("utf-8") + b"\0")
        digest.update(path.read_bytes() + b"\0")
    return digest.hexdigest()


def knowledge_version(kb: Knowledge, settings: Settings) -> str:
    """The knowledge version of this knowledge base under this deployment's overrides."""
    overrides = {
        "thresholds": {name: float(value) for name, value in (settings.threshold_overrides or {}).items()},
        "suppression": settings.suppression_overrides or {},
    }
    digest = hashlib.sha256(_seeds_digest(Path(kb.seeds_dir)).encode("ascii"))
    digest.update(json.dumps(overrides, sort_keys=True, separators=(",", ":"), default=str).encode("utf-8"))
    return f"{release()}+kb.{digest.hexdigest()[:12]}"
