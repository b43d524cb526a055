"""Typed, located reads of CLC YAML nodes, shared by the CLC section translators.

Every read reports a mistake as a diagnostic at the node's line and returns ``None`` instead of
raising, so one bad field never hides the others and bad input never becomes a traceback.
"""

from __future__ import annotations

import posixpath
from collections.abc import Collection
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from flatcar_infra.compiler.translated import Origin
from flatcar_infra.compiler.yamlsrc import (
    Mark,
    TypeMismatch,
    YMap,
    YNode,
    YScalar,
    YSeq,
    as_bool,
    as_bytes,
    as_int,
    as_str,
    describe,
)
from flatcar_infra.errors import Diagnostic, Severity
from flatcar_infra.limits import LocalFiles


@dataclass
class Ctx:
    """The state of one CLC translation: where problems go and where outputs came from."""

    filename: str
    files_dir: Path | None
    platform: str | None
    diagnostics: list[Diagnostic] = field(default_factory=list)
    # output path -> where in the CLC it came from (and the CLC path, where it differs)
    origins: dict[str, Origin] = field(default_factory=dict)
    local: LocalFiles = field(default_factory=LocalFiles)  # bounded, non-blocking local reads

    # --- reporting -------------------------------------------------------------------------------

    def error(self, where: Mark, message: str, path: str) -> None:
        self.diagnostics.append(
            Diagnostic(self.filename, where.line, where.col, Severity.ERROR, message, path)
        )

    def warn(self, where: Mark, message: str, path: str) -> None:
        self.diagnostics.append(
            Diagnostic(self.filename, where.line, where.col, Severity.WARNING, message, path)
        )

    def mark(self, opath: str, where: Mark, ipath: str | None = None) -> None:
        self.origins.setdefault(opath, Origin(ipath, where))

    # --- structure -------------------------------------------------------------------------------

    def mapping(self, node: YNode | None, ipath: str, allowed: Collection[str] = ()) -> YMap | None:
        """``node`` as a mapping (``None`` when absent or null); unknown keys earn warnings."""
        if node is None or (isinstance(node, YScalar) and node.is_null):
            return None
        if not isinstance(node, YMap):
            self.error(node.mark, f"expected a mapping, found {describe(node)}", ipath)
            return None
        if allowed:
            for key, kmark in node.keys.items():
                if key not in allowed:
                    self.warn(kmark, f"unknown key {key!r} (ignored)", f"{ipath}.{key}")
        return node

    def seq(self, node: YNode | None, ipath: str) -> list[YNode]:
        if node is None or (isinstance(node, YScalar) and node.is_null):
            return []
        if not isinstance(node, YSeq):
            self.error(node.mark, f"expected a list, found {describe(node)}", ipath)
            return []
        return node.items

    def maps(self, node: YNode | None, ipath: str, allowed: Collection[str]) -> list[tuple[int, YMap]]:
        """The mappings of a list of mappings, with their indexes (bad items are reported)."""
        out = []
        for i, item in enumerate(self.seq(node, ipath)):
            m = self.mapping(item, f"{ipath}.{i}", allowed)
            if m is not None:
                out.append((i, m))
            elif isinstance(item, YScalar) and item.is_null:
                self.error(item.mark, "expected a mapping, found an empty entry", f"{ipath}.{i}")
        return out

    # --- scalars ---------------------------------------------------------------------------------

    def str_(self, m: YMap, key: str, ipath: str) -> str | None:
        node = child(m, key)
        if node is None:
            return None
        try:
            return as_str(node)
        except (TypeMismatch, UnicodeDecodeError) as exc:
            self.error(node.mark, _why(exc), f"{ipath}.{key}")
            return None

    def bytes_(self, m: YMap, key: str, ipath: str) -> bytes | None:
        node = child(m, key)
        if node is None:
            return None
        try:
            return as_bytes(node)
        except TypeMismatch as exc:
            self.error(node.mark, str(exc), f"{ipath}.{key}")
            return None

    def bool_(self, m: YMap, key: str, ipath: str) -> bool | None:
        node = child(m, key)
        if node is None:
            return None
        try:
            return as_bool(node)
        except TypeMismatch as exc:
            self.error(node.mark, str(exc), f"{ipath}.{key}")
            return None

    def int_(self, m: YMap, key: str, ipath: str, *, minimum: int | None = 0) -> int | None:
        node = child(m, key)
        if node is None:
            return None
        try:
            value = as_int(node)
        except TypeMismatch as exc:
            self.error(node.mark, str(exc), f"{ipath}.{key}")
            return None
        if minimum is not None and value < minimum:
            self.error(node.mark, f"must be at least {minimum}, found {value}", f"{ipath}.{key}")
            return None
        if value > 2**63 - 1:
            self.error(node.mark, f"{value} is too large", f"{ipath}.{key}")
            return None
        return value

    def strs(self, m: YMap, key: str, ipath: str) -> list[str] | None:
        node = child(m, key)
        if node is None:
            return None
        out = []
        for i, item in enumerate(self.seq(node, f"{ipath}.{key}")):
            try:
                out.append(as_str(item))
            except (TypeMismatch, UnicodeDecodeError) as exc:
                self.error(item.mark, _why(exc), f"{ipath}.{key}.{i}")
        return out

    def abs_path(self, m: YMap, key: str, ipath: str, *, required: bool = True) -> str | None:
        """An absolute path, cleaned like Go's ``path.Clean`` (what ct and ign-converter do)."""
        value = self.str_(m, key, ipath)
        where = key_mark(m, key)
        if value is None or value == "":
            if required:
                self.error(where, f"{key} is required", f"{ipath}.{key}")
            return None
        if not value.startswith("/"):
            self.error(where, f"{key} must be an absolute path, found {value!r}", f"{ipath}.{key}")
            return None
        return clean_path(value)


def child(m: YMap, key: str) -> YNode | None:
    """The value of ``key``; ``None`` when absent or an explicit null."""
    node = m.items.get(key)
    if node is None or (isinstance(node, YScalar) and node.is_null):
        return None
    return node


def key_mark(m: YMap, key: str) -> Mark:
    node = m.items.get(key)
    return node.mark if node is not None else m.mark


def clean_path(path: str) -> str:
    """Go's ``path.Clean`` for absolute paths (posixpath keeps a leading ``//``)."""
    cleaned = posixpath.normpath(path)
    if cleaned.startswith("//"):
        cleaned = "/" + cleaned.lstrip("/")
    return cleaned


def join_path(base: str, path: str) -> str:
    return clean_path(base.rstrip("/") + "/" + path.lstrip("/"))


def prune(value: Any) -> Any:
    """Drop ``None``, empty lists and empty objects (Ignition omits them)."""
    if isinstance(value, dict):
        out = {k: prune(v) for k, v in value.items()}
        return {k: v for k, v in out.items() if v is not None and v != {} and v != []}
    if isinstance(value, list):
        return [prune(v) for v in value]
    return value


def _why(exc: Exception) -> str:
    if isinstance(exc, UnicodeDecodeError):
        return "!!binary data is not valid UTF-8 text"
    return str(exc)
