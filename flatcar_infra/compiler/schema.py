"""The Ignition JSON Schemas we validate output against, loaded and compiled once per version.

The schema files in ``schema/`` were written from the Ignition spec documents; the version
registry (``versions.py``) names the file of each spec version.
Building a ``jsonschema`` validator is far slower than running one, so each is built once and cached.

``jsonschema`` walks a document through a generic interpreter, which made validation the largest
cost of a compile. Nearly every document is valid, so ``quick_check`` first answers "is there
any problem at all?" with plain Python closures compiled once from the same schema (only the
keywords our schema uses); only when it says no does ``jsonschema`` run, and it alone words the
errors. Tests assert both always agree.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from functools import cache
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:  # imported when a document has a problem to word (CLI start-up time)
    from jsonschema import Draft202012Validator  # type: ignore[import-untyped]

from flatcar_infra.compiler.versions import IGNITION_SPECS

SCHEMA_DIR = Path(__file__).with_name("schema")
SUPPORTED_VERSIONS = tuple(IGNITION_SPECS)


@cache
def schema(version: str) -> dict[str, Any]:
    """The schema document for an Ignition spec ``version`` (one of ``SUPPORTED_VERSIONS``)."""
    if version not in SUPPORTED_VERSIONS:
        raise KeyError(version)
    doc: dict[str, Any] = json.loads((SCHEMA_DIR / IGNITION_SPECS[version].schema).read_text("utf-8"))
    return doc


@cache
def validator(version: str) -> Draft202012Validator:
    """The validator, over a copy of the schema with its (non-recursive) ``$ref``s inlined:
    resolving references dominates validation time otherwise."""
    from jsonschema import Draft202012Validator

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


Check = Callable[[Any], bool]


@cache
def quick_check(version: str) -> Check:
    """A predicate equivalent to ``validator(version).is_valid`` for our schema, but fast."""
    doc = schema(version)
    return _compile(_inline_refs(doc, doc.get("$defs", {})))


_ANNOTATIONS = frozenset({"$schema", "$id", "title", "description"})
_TYPES: dict[str, Check] = {
    "string": lambda v: isinstance(v, str),
    "boolean": lambda v: isinstance(v, bool),
    # JSON Schema: 1.0 is an integer; a bool is not
    "integer": lambda v: (
        (isinstance(v, int) and not isinstance(v, bool)) or (isinstance(v, float) and v.is_integer())
    ),
    "object": lambda v: isinstance(v, dict),
    "array": lambda v: isinstance(v, list),
    "null": lambda v: v is None,
}


def _compile(node: dict[str, Any]) -> Check:
    unknown = (
        set(node)
        - _ANNOTATIONS
        - {"type", "const", "properties", "required", "additionalProperties", "items"}
    )
    if unknown:  # a schema edit used a keyword this checker does not implement
        raise ValueError(f"quick_check cannot compile keywords {sorted(unknown)}")
    checks: list[Check] = []
    if "type" in node:
        names = node["type"] if isinstance(node["type"], list) else [node["type"]]
        type_checks = [_TYPES[n] for n in names]
        checks.append(lambda v: any(t(v) for t in type_checks))
    if "const" in node:
        const = node["const"]
        checks.append(lambda v: type(v) is type(const) and v == const)
    props = {k: _compile(v) for k, v in node.get("properties", {}).items()}
    required = tuple(node.get("required", ()))
    closed = node.get("additionalProperties") is False
    if props or required or closed:

        def check_object(v: Any) -> bool:
            if not isinstance(v, dict):
                return True
            for key in required:
                if key not in v:
                    return False
            for key, value in v.items():
                sub = props.get(key)
                if sub is None:
                    if closed:
                        return False
                elif not sub(value):
                    return False
            return True

        checks.append(check_object)
    if "items" in node:
        item = _compile(node["items"])
        checks.append(lambda v: not isinstance(v, list) or all(item(x) for x in v))
    return lambda v: all(c(v) for c in checks)
