"""Canonical JSON bytes and the config hash: the identity of a compiled config.

The bytes must be identical on every run, process, ``PYTHONHASHSEED`` and machine, because the
hash decides whether a machine is reprovisioned: sorted keys, no insignificant whitespace,
UTF-8 (not ASCII escapes), no NaN/Infinity.
"""

from __future__ import annotations

import hashlib
import json
from typing import Any


def canonical_bytes(doc: Any) -> bytes:
    return json.dumps(
        doc, sort_keys=True, separators=(",", ":"), ensure_ascii=False, allow_nan=False
    ).encode("utf-8")


def config_hash(data: bytes) -> str:
    """``sha512-<hex>`` of the bytes: the same syntax Ignition uses for ``verification.hash``."""
    return "sha512-" + hashlib.sha512(data).hexdigest()


def pretty_bytes(doc: Any) -> bytes:
    """Human-readable form of the same document (for ``render --pretty``); never hashed."""
    return (
        json.dumps(doc, sort_keys=True, indent=2, ensure_ascii=False, allow_nan=False) + "\n"
    ).encode("utf-8")
