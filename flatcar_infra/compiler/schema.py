"""The Ignition JSON Schemas we validate output against, loaded and compiled once per version.

The schema files in ``schema/`` were written from the Ignition spec documents (3.3.0, 3.4.0).
Building a ``jsonschema`` validator is far slower than running one, so each is built once and cached.
"""

from __future__ import annotations

import json
from functools import cache
from pathlib import Path
from typing import Any

from jsonschema import Draft202012Validator  # type: ignore[import-untyped]

SCHEMA_DIR = Path(__file__).with_name("schema")
SUPPORTED_VERSIONS = ("3.3.0", "3.4.0")


@cache
def schema(version: str) -> dict[str, Any]:
    """The schema document for an Ignition spec ``version`` (one of ``SUPPORTED_VERSIONS``)."""
    if version not in SUPPORTED_VERSIONS:
        raise KeyError(version)
    doc: dict[str, Any] = json.loads((SCHEMA_DIR / f"ignition-{version}.json").read_text("utf-8"))
    return doc


@cache
def validator(version: str) -> Draft202012Validator:
    """The validator, over a copy of the schema with its (non-recursive) ``$ref``s inlined:
    resolving references dominates validation time otherwise."""
    doc = schema(version)
    return Draft202012Validator(_inline_refs(doc, doc.get("$defs", {})))


def _inline_refs(node: Any, defs: dict[str, Any]) -> Any:
    if isinstance(node, dict):
        ref = node.get("$ref")
        if isinstance(ref, str) and ref.startswith("#/$defs/") and len(node) == 1:
            return _inline_refs(defs[ref.removeprefix("#/$defs/")], defs)
        return {k: _inline_refs(v, defs) for k, v in node.items() if k != "$defs"}
    if isinstance(node, list):
        return [_inline_refs(v, defs) for v in node]
    return node
