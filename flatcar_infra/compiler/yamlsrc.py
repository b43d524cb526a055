"""YAML source with positions, and typed reads the way Butane does them.

PyYAML's constructor decides types from the text alone (YAML 1.1: ``no`` is ``False``, ``0644`` is
420). Butane decides from the field: ``yes`` is a boolean only where the field is a boolean, and an
inline ``contents: no`` stays the string ``"no"``. So we stop at the node graph (``yaml.compose``,
libyaml-backed when available) and let the translator ask for the type it needs, keeping each
node's line and column for error messages.
"""

from __future__ import annotations

import base64
import binascii
import re
from collections.abc import Iterator
from dataclasses import dataclass, field

import yaml

from flatcar_infra.errors import Diagnostic, Severity

try:  # libyaml when present: parsing is the hot path of compiling a large config
    from yaml import CSafeLoader as _Loader
except ImportError:  # pragma: no cover - pure-Python fallback
    from yaml import SafeLoader as _Loader  # type: ignore[assignment]

STR_TAG = "tag:yaml.org,2002:str"
BINARY_TAG = "tag:yaml.org,2002:binary"
NULL_TAG = "tag:yaml.org,2002:null"
MERGE_TAG = "tag:yaml.org,2002:merge"

_TRUE = {"y", "yes", "true", "on"}
_FALSE = {"n", "no", "false", "off"}
_NULL = {"", "~", "null"}
_INT_RE = re.compile(r"^[-+]?(0b[01_]+|0o?[0-7_]+|0x[0-9a-fA-F_]+|[1-9][0-9_]*|0)$")


@dataclass(frozen=True, slots=True)
class Mark:
    line: int  # 1-based
    col: int  # 1-based


@dataclass(slots=True)
class YScalar:
    value: str
    tag: str
    plain: bool  # unquoted, not a block scalar: only these may be bool/int/null
    mark: Mark

    @property
    def is_null(self) -> bool:
        return self.tag == NULL_TAG or (self.plain and self.value.strip().lower() in _NULL)


@dataclass(slots=True)
class YSeq:
    items: list[YNode]
    mark: Mark


@dataclass(slots=True)
class YMap:
    """A mapping with string keys, in source order; ``keys`` keeps each key's own position."""

    items: dict[str, YNode]
    keys: dict[str, Mark]
    mark: Mark

    def get(self, key: str) -> YNode | None:
        return self.items.get(key)

    def __contains__(self, key: object) -> bool:
        return key in self.items

    def __iter__(self) -> Iterator[str]:
        return iter(self.items)


YNode = YScalar | YSeq | YMap


@dataclass
class SourceDoc:
    """A parsed document: its root node plus the problems found while parsing."""

    filename: str
    root: YNode | None
    diagnostics: list[Diagnostic] = field(default_factory=list)


def _mark(m: yaml.Mark | None) -> Mark:
    return Mark(m.line + 1, m.column + 1) if m is not None else Mark(0, 0)


class _Flattener(yaml.constructor.SafeConstructor):
    """Only used for its merge-key (``<<``) flattening, which the composer does not do."""


def parse_yaml(text: str, filename: str) -> SourceDoc:
    """Parse one YAML document into positioned nodes; syntax errors become diagnostics."""
    doc = SourceDoc(filename, None)
    try:
        loader = _Loader(text)
        try:
            node = loader.get_single_node()
        finally:
            loader.dispose()
    except yaml.MarkedYAMLError as exc:
        m = _mark(exc.problem_mark or exc.context_mark)
        msg = " ".join(p for p in (exc.context, exc.problem) if p) or "invalid YAML"
        doc.diagnostics.append(Diagnostic(filename, m.line, m.col, Severity.ERROR, f"YAML: {msg}", "$"))
        return doc
    except yaml.YAMLError as exc:  # e.g. a reader error on a control character
        doc.diagnostics.append(Diagnostic(filename, 1, 1, Severity.ERROR, f"YAML: {exc}", "$"))
        return doc
    if node is None:
        return doc
    flattener = _Flattener()
    seen: dict[int, YNode] = {}
    doc.root = _convert(node, filename, doc.diagnostics, flattener, seen, "$")
    return doc


def _convert(
    node: yaml.Node,
    filename: str,
    diags: list[Diagnostic],
    flattener: _Flattener,
    seen: dict[int, YNode],
    path: str,
) -> YNode:
    # Aliases share the node object: convert once, reuse (also stops alias loops).
    if id(node) in seen:
        return seen[id(node)]
    mark = _mark(node.start_mark)
    if isinstance(node, yaml.ScalarNode):
        out: YNode = YScalar(str(node.value), node.tag, not node.style, mark)
        seen[id(node)] = out
        return out
    if isinstance(node, yaml.SequenceNode):
        seq = YSeq([], mark)
        seen[id(node)] = seq
        for i, item in enumerate(node.value):
            seq.items.append(_convert(item, filename, diags, flattener, seen, f"{path}.{i}"))
        return seq
    assert isinstance(node, yaml.MappingNode)
    own = sum(1 for k, _ in node.value if k.tag != MERGE_TAG)
    try:
        flattener.flatten_mapping(node)
    except yaml.MarkedYAMLError as exc:
        m = _mark(exc.problem_mark)
        diags.append(Diagnostic(filename, m.line, m.col, Severity.ERROR, f"YAML: {exc.problem}", path))
    ymap = YMap({}, {}, mark)
    seen[id(node)] = ymap
    merged_pairs = len(node.value) - own  # flatten_mapping puts the merged ("<<") pairs first
    merged: set[str] = set()
    for index, (key_node, value_node) in enumerate(node.value):
        kmark = _mark(key_node.start_mark)
        if not isinstance(key_node, yaml.ScalarNode):
            diags.append(Diagnostic(filename, kmark.line, kmark.col, Severity.ERROR,
                                    "mapping keys must be strings", path))
            continue
        key = str(key_node.value)
        if index < merged_pairs:  # a key from a merge: the first source that has it wins
            if key in ymap.items:
                continue
            merged.add(key)
        elif key in merged:  # an explicit key overrides a merged one (YAML merge keys)
            merged.discard(key)
        elif key in ymap.items:
            diags.append(Diagnostic(filename, kmark.line, kmark.col, Severity.ERROR,
                                    f"duplicate key {key!r}", f"{path}.{key}"))
            continue
        ymap.keys[key] = kmark
        ymap.items[key] = _convert(value_node, filename, diags, flattener, seen, f"{path}.{key}")
    return ymap


class TypeMismatch(ValueError):
    """A node is not of the type its field needs; the message says what was expected."""


def as_str(node: YNode) -> str:
    if not isinstance(node, YScalar):
        raise TypeMismatch(f"expected a string, found a {kind(node)}")
    if node.tag == BINARY_TAG:
        return as_bytes(node).decode("utf-8", errors="strict")
    return node.value


def as_bytes(node: YNode) -> bytes:
    """A string field's bytes; ``!!binary`` scalars are base64-decoded (ct accepted them)."""
    if not isinstance(node, YScalar):
        raise TypeMismatch(f"expected a string, found a {kind(node)}")
    if node.tag == BINARY_TAG:
        try:
            return base64.b64decode("".join(node.value.split()), validate=True)
        except (binascii.Error, ValueError) as exc:
            raise TypeMismatch(f"invalid !!binary base64 data: {exc}") from None
    return node.value.encode("utf-8")


def as_bool(node: YNode) -> bool:
    if isinstance(node, YScalar) and node.plain:
        v = node.value.lower()
        if v in _TRUE:
            return True
        if v in _FALSE:
            return False
    raise TypeMismatch(f"expected a boolean (true/false), found {describe(node)}")


def as_int(node: YNode) -> int:
    """YAML 1.1 integers as Butane reads them: ``0644`` is octal, ``0x1F`` hex, ``1_000`` decimal."""
    if isinstance(node, YScalar) and node.plain and _INT_RE.match(node.value):
        v = node.value.replace("_", "")
        sign = -1 if v.startswith("-") else 1
        v = v.lstrip("+-")
        if v.startswith("0b"):
            return sign * int(v[2:], 2)
        if v.startswith("0x"):
            return sign * int(v[2:], 16)
        if v.startswith("0o"):
            return sign * int(v[2:], 8)
        if len(v) > 1 and v.startswith("0"):
            return sign * int(v[1:], 8)
        return sign * int(v)
    raise TypeMismatch(f"expected an integer, found {describe(node)}")


def is_decimal_literal(node: YNode) -> bool:
    """True for a plain integer written in decimal (``644``), which is probably meant as octal."""
    return isinstance(node, YScalar) and node.plain and re.fullmatch(r"[1-9][0-9]*", node.value) is not None


def kind(node: YNode) -> str:
    return {YScalar: "scalar", YSeq: "list", YMap: "mapping"}[type(node)]


def describe(node: YNode) -> str:
    if isinstance(node, YScalar):
        text = node.value if len(node.value) <= 40 else node.value[:37] + "..."
        return repr(text)
    return f"a {kind(node)}"
