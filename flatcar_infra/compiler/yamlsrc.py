"""YAML source with positions, and typed reads the way Butane does them.

PyYAML's constructor decides types from the text alone (YAML 1.1: ``no`` is ``False``, ``0644`` is
420). Butane decides from the field: ``yes`` is a boolean only where the field is a boolean, and an
inline ``contents: no`` stays the string ``"no"``. So we stop at the node graph (built from
libyaml's events) and let the translator ask for the type it needs, keeping each node's line and
column for error messages. The graph is built within ``flatcar_infra.limits`` (size, nesting, alias
expansion): hostile YAML is refused at its line, never expanded.
"""

from __future__ import annotations

import base64
import binascii
import re
from collections.abc import Iterator
from dataclasses import dataclass, field
from functools import cached_property
from typing import Any

import yaml

from flatcar_infra.errors import ConfigError, Diagnostic, Severity
from flatcar_infra.limits import LIMITS, Limits, human

try:  # libyaml when present: parsing is the hot path of compiling a large config
    from yaml._yaml import CParser as _Parser
except ImportError:  # pragma: no cover - pure-Python fallback
    from yaml.loader import BaseLoader as _Parser  # type: ignore[assignment]

STR_TAG = "tag:yaml.org,2002:str"
BINARY_TAG = "tag:yaml.org,2002:binary"
NULL_TAG = "tag:yaml.org,2002:null"

_TRUE = {"y", "yes", "true", "on"}
_FALSE = {"n", "no", "false", "off"}
_NULL = {"", "~", "null"}
_NULL_MAX = 16  # YAML strips plain scalars, so a null is at most len("null"); generous margin
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
        # the length test first: a long plain scalar (a whole file inline) is never null, and
        # lower-casing it for nothing was a tenth of all compile time
        return self.tag == NULL_TAG or (self.plain and len(self.value) <= _NULL_MAX
                                        and self.value.strip().lower() in _NULL)


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


@dataclass(frozen=True)
class Placeholders:
    """Template values kept out of the YAML text: the rendered text holds ``OPEN<n>CLOSE`` where
    value ``n`` goes, and ``parse_yaml`` puts the values into the scalars (and keys) after parsing,
    so a value is always the text of one scalar, whatever characters it holds."""

    open: str
    close: str
    values: tuple[str, ...]

    @cached_property
    def _pattern(self) -> re.Pattern[str]:
        return re.compile(re.escape(self.open) + r"(\d+)" + re.escape(self.close))

    def sub(self, text: str) -> str:
        if self.open not in text:
            return text
        return self._pattern.sub(lambda m: self.values[int(m.group(1))], text)


class _Refused(Exception):
    def __init__(self, mark: Mark, message: str, path: str = "$") -> None:
        super().__init__(message)
        self.mark, self.message, self.path = mark, message, path


@dataclass(slots=True)
class _Frame:
    """A collection being composed, with its expanded size so far."""

    node: YSeq | YMap
    path: str
    anchor: str | None
    nodes: int = 1
    chars: int = 0
    height: int = 1
    key: str | None = None  # a mapping's pending key
    key_mark: Mark | None = None
    skip: bool = False  # the pending key was refused: drop its value
    merges: list[tuple[YNode, Mark]] = field(default_factory=list)


def parse_yaml(
    text: str, filename: str, *, values: Placeholders | None = None, limits: Limits = LIMITS
) -> SourceDoc:
    """Parse one YAML document into positioned nodes; syntax errors and limits become diagnostics.

    The node graph is built here from libyaml's event stream, not by PyYAML's composer: libyaml's
    parser is iterative, while the composer recurses once per nesting level in C and crashes the
    process on deep input. Nesting, node count and scalar size are counted *through aliases* as the
    events arrive, so a deep or exponentially aliased document is refused at the offending line
    before it is built, let alone expanded.
    """
    doc = SourceDoc(filename, None)
    too_big = size_problem(text, filename, limits)
    if too_big is not None:
        doc.diagnostics.append(too_big)
        return doc
    parser = _Parser(text)
    try:
        doc.root = _Composer(parser, filename, doc.diagnostics, values, limits).compose()
    except _Refused as exc:
        doc.root = None
        doc.diagnostics.append(Diagnostic(filename, exc.mark.line, exc.mark.col, Severity.ERROR,
                                          exc.message, exc.path))
    except yaml.MarkedYAMLError as exc:
        doc.root = None
        m = _mark(exc.problem_mark or exc.context_mark)
        msg = " ".join(p for p in (exc.context, exc.problem) if p) or "invalid YAML"
        doc.diagnostics.append(Diagnostic(filename, max(m.line, 1), max(m.col, 1), Severity.ERROR,
                                          f"YAML: {msg}", "$"))
    except yaml.YAMLError as exc:  # e.g. a reader error on a control character
        doc.root = None
        line, col = _reader_position(exc, text)
        message = str(exc).split("\n", 1)[0]  # without 'in "<unicode string>", position N'
        doc.diagnostics.append(Diagnostic(filename, line, col, Severity.ERROR, f"YAML: {message}", "$"))
    finally:
        parser.dispose()
    return doc


_SURROGATE = re.compile("[\ud800-\udfff]")


def size_problem(text: str, filename: str, limits: Limits = LIMITS) -> Diagnostic | None:
    """A config text over the source size limit, or not Unicode text (a lone surrogate, as
    ``surrogateescape`` decoding leaves): checked before any parser sees it."""
    if text.isascii():
        size = len(text)
    else:
        bad = _SURROGATE.search(text)
        if bad is not None:
            line, col = _offset_position(text, bad.start())
            return Diagnostic(filename, line, col, Severity.ERROR,
                              f"not Unicode text: a lone surrogate U+{ord(bad.group(0)):04X}", "$")
        size = len(text.encode("utf-8"))
    if size <= limits.source_bytes:
        return None
    return Diagnostic(filename, 1, 1, Severity.ERROR,
                      f"config is {size} bytes, over the limit of {human(limits.source_bytes)}", "$")


def decode_source(data: bytes, filename: str) -> str:
    """UTF-8 config bytes as text; ``UnicodeDecodeError`` becomes a ``ConfigError`` located at the
    offending byte."""
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as exc:
        line = data.count(b"\n", 0, exc.start) + 1
        col = exc.start - (data.rfind(b"\n", 0, exc.start) + 1) + 1
        why = f"not UTF-8 text: byte 0x{data[exc.start]:02x} ({exc.reason})"
        raise ConfigError([Diagnostic(filename, line, col, Severity.ERROR, why, "$")]) from None


def _offset_position(text: str, pos: int) -> tuple[int, int]:
    before = text[:pos]
    return before.count("\n") + 1, pos - (before.rfind("\n") + 1) + 1


def json_depth_problem(text: str, filename: str, limits: Limits = LIMITS) -> Diagnostic | None:
    """JSON nested deeper than the limit, located at the first bracket too deep. Checked before
    ``json.loads``, whose C decoder recurses per level."""
    depth = 0
    for m in re.finditer(r'"(?:[^"\\]|\\.)*"?|[\[\]{}]', text):
        ch = m.group(0)
        if ch in "[{":
            depth += 1
            if depth > limits.depth:
                line, col = _offset_position(text, m.start())
                return Diagnostic(filename, line, col, Severity.ERROR,
                                  f"JSON nested more than {limits.depth} levels deep (limit)", "$")
        elif ch in "]}":
            depth -= 1
    return None


def _reader_position(exc: yaml.YAMLError, text: str) -> tuple[int, int]:
    """Line and column of a reader error (it carries only a character offset)."""
    pos = getattr(exc, "position", None)
    if not isinstance(pos, int):
        return 1, 1
    return _offset_position(text, pos)


class _Composer:
    def __init__(self, parser: Any, filename: str, diags: list[Diagnostic], values: Placeholders | None,
                 limits: Limits) -> None:
        self.parser = parser
        self.filename = filename
        self.diags = diags
        self.values = values
        self.limits = limits
        self.anchors: dict[str, YNode] = {}
        self.weights: dict[int, tuple[int, int, int]] = {}  # id(node) -> (nodes, chars, height)
        self.open: set[int] = set()  # collections not finished yet: an alias to one is recursive
        self.nodes = 0
        self.chars = 0

    def error(self, mark: Mark, message: str, path: str) -> None:
        self.diags.append(Diagnostic(self.filename, mark.line, mark.col, Severity.ERROR, message, path))

    def compose(self) -> YNode | None:
        get = self.parser.get_event
        get()  # stream start
        if isinstance(self.parser.peek_event(), yaml.StreamEndEvent):
            get()
            return None
        get()  # document start
        root = self._node()
        get()  # document end
        extra = get()
        if not isinstance(extra, yaml.StreamEndEvent):
            raise _Refused(_mark(extra.start_mark),
                           "YAML: expected a single document in the stream but found another document")
        return root

    def _count(self, mark: Mark, depth: int, nodes: int, chars: int, height: int) -> None:
        lim = self.limits
        self.nodes += nodes
        self.chars += chars
        if depth + height - 1 > lim.depth:
            raise _Refused(mark, f"YAML nested more than {lim.depth} levels deep (limit)")
        if self.nodes > lim.nodes:
            raise _Refused(mark, f"YAML document has more than {lim.nodes} nodes once aliases are "
                                 "expanded (limit; an alias bomb?)")
        if self.chars > lim.scalar_bytes:
            raise _Refused(mark, f"YAML scalars hold more than {human(lim.scalar_bytes)} once aliases "
                                 "are expanded (limit)")

    def _node(self) -> YNode:
        """Compose one node from the events, iteratively (no recursion per nesting level)."""
        get = self.parser.get_event
        stack: list[_Frame] = []
        sub = self.values.sub if self.values is not None else None
        while True:
            ev = get()
            cls = type(ev)
            node: YNode
            if cls is yaml.ScalarEvent:
                mark = _mark(ev.start_mark)
                value = ev.value if sub is None else sub(ev.value)
                tag = ev.tag if ev.tag not in (None, "!") else STR_TAG
                node = YScalar(value, tag, not ev.style, mark)
                weight = (1, len(value), 1)
                self._count(mark, len(stack) + 1, 1, len(value), 1)
                if ev.anchor is not None:
                    self._anchor(ev.anchor, node, mark, weight)
            elif cls is yaml.AliasEvent:
                mark = _mark(ev.start_mark)
                target = self.anchors.get(ev.anchor)
                if target is None:
                    raise _Refused(mark, f"YAML: found undefined alias {ev.anchor!r}")
                if id(target) in self.open:
                    raise _Refused(mark, f"YAML: alias {ev.anchor!r} refers to a collection that contains "
                                         "it (a recursive structure)")
                node = target
                weight = self.weights[id(target)]
                self._count(mark, len(stack) + 1, *weight)
            elif cls is yaml.SequenceStartEvent or cls is yaml.MappingStartEvent:
                mark = _mark(ev.start_mark)
                self._count(mark, len(stack) + 1, 1, 0, 1)
                path = self._child_path(stack[-1]) if stack else "$"
                coll: YSeq | YMap = YSeq([], mark) if cls is yaml.SequenceStartEvent else YMap({}, {}, mark)
                stack.append(_Frame(coll, path, ev.anchor))
                self.open.add(id(coll))
                if ev.anchor is not None:
                    self._anchor(ev.anchor, coll, mark, None)
                continue
            elif cls is yaml.SequenceEndEvent or cls is yaml.MappingEndEvent:
                frame = stack.pop()
                node = frame.node
                self.open.discard(id(node))
                if isinstance(node, YMap) and frame.merges:
                    self._merge(node, frame)
                weight = (frame.nodes, frame.chars, frame.height)
                self.weights[id(node)] = weight
            else:  # pragma: no cover - libyaml gives no other event inside a document
                raise _Refused(_mark(ev.start_mark), f"YAML: unexpected {cls.__name__}")
            if not stack:
                return node
            self._attach(stack[-1], node, weight)

    def _anchor(self, name: str, node: YNode, mark: Mark, weight: tuple[int, int, int] | None) -> None:
        if name in self.anchors:
            raise _Refused(mark, f"YAML: found duplicate anchor {name!r}")
        self.anchors[name] = node
        if weight is not None:
            self.weights[id(node)] = weight

    @staticmethod
    def _child_path(frame: _Frame) -> str:
        if isinstance(frame.node, YSeq):
            return f"{frame.path}.{len(frame.node.items)}"
        return f"{frame.path}.{frame.key}" if frame.key is not None else frame.path

    def _attach(self, frame: _Frame, node: YNode, weight: tuple[int, int, int]) -> None:
        frame.nodes += weight[0]
        frame.chars += weight[1]
        frame.height = max(frame.height, weight[2] + 1)
        parent = frame.node
        if isinstance(parent, YSeq):
            parent.items.append(node)
            return
        if frame.key is None and not frame.skip:  # a key
            if not isinstance(node, YScalar):
                self.error(node.mark, "mapping keys must be strings", frame.path)
                frame.skip = True
                return
            frame.key, frame.key_mark = node.value, node.mark
            if node.plain and node.value == "<<" and node.tag == STR_TAG:
                frame.key = _MERGE
            return
        key, kmark = frame.key, frame.key_mark
        frame.key, frame.key_mark = None, None
        if frame.skip:
            frame.skip = False
            return
        assert key is not None and kmark is not None
        if key is _MERGE:
            frame.merges.append((node, kmark))
        elif key in parent.items:
            self.error(kmark, f"duplicate key {key!r}", f"{frame.path}.{key}")
        else:
            parent.keys[key] = kmark
            parent.items[key] = node

    def _merge(self, node: YMap, frame: _Frame) -> None:
        """YAML merge keys (``<<: *base``, ``<<: [*a, *b]``): merged entries come first, an
        earlier source wins over a later one, and the mapping's own keys win over all of them."""
        items: dict[str, YNode] = {}
        keys: dict[str, Mark] = {}
        for value, kmark in frame.merges:
            sources = value.items if isinstance(value, YSeq) else [value]
            for src in sources:
                if not isinstance(src, YMap):
                    self.error(src.mark, "YAML: a merge key (<<) needs a mapping or a list of mappings",
                               frame.path)
                    continue
                for k, v in src.items.items():
                    if k not in items:
                        items[k], keys[k] = v, kmark
        for k in node.items:
            items.pop(k, None)
            keys.pop(k, None)
        node.items = {**items, **node.items}
        node.keys = {**keys, **node.keys}


_MERGE: Any = "\0<<merge>>\0"  # a key no YAML scalar can be (NUL is not allowed in YAML)


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
