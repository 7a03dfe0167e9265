"""Fingerprints of settings: the identity of a cache's content (bottom layer: imports nothing of the package)."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping
from dataclasses import asdict
from typing import Any

#: Bump when the on-disk cache layout changes; older caches are then refused as stale.
CACHE_FORMAT_VERSION = 1


def fingerprint(settings: Mapping[str, Any]) -> str:
    """SHA-256 of a settings mapping in canonical JSON (sorted keys), plus the cache format version.

    Args:
        settings: every setting that changes the cache content (source identity, preprocessing settings,
            generator version).

    Returns:
        A 64-character hex digest.
    """
    payload = json.dumps({"cache_format": CACHE_FORMAT_VERSION, **settings}, sort_keys=True, default=str)
    return hashlib.sha256(payload.encode()).hexdigest()


def settings_dict(settings: Any) -> dict[str, Any]:
    """A dataclass of settings as a JSON-ready dict (tuples become lists)."""
    return json.loads(json.dumps(asdict(settings), default=str))
