"""Typed reads decide YAML 1.1 types by the field, the way Butane does."""

from __future__ import annotations

import pytest

from flatcar_infra.compiler.yamlsrc import (
    TypeMismatch,
    YMap,
    YScalar,
    YSeq,
    as_bool,
    as_bytes,
    as_int,
    as_str,
    is_decimal_literal,
    parse_yaml,
)

SRC = """\
mode: 0644
hex: 0x1F
dec: 644
flag: yes
plain_no: no
quoted_no: "no"
block: |
  no
bin: !!binary aGVsbG8=
base: &b {k: 1}
merged:
  <<: *b
  z: 2
list: [a, b]
"""


def root() -> YMap:
    doc = parse_yaml(SRC, "t.yaml")
    assert doc.diagnostics == []
    assert isinstance(doc.root, YMap)
    return doc.root


def test_octal_and_hex_ints() -> None:
    r = root()
    assert as_int(r.items["mode"]) == 0o644
    assert as_int(r.items["hex"]) == 31
    assert as_int(r.items["dec"]) == 644
    assert is_decimal_literal(r.items["dec"]) and not is_decimal_literal(r.items["mode"])


def test_booleans_only_where_asked() -> None:
    r = root()
    assert as_bool(r.items["flag"]) is True
    assert as_bool(r.items["plain_no"]) is False
    assert as_str(r.items["plain_no"]) == "no"
    assert as_str(r.items["block"]) == "no\n"
    with pytest.raises(TypeMismatch):
        as_bool(r.items["quoted_no"])
    with pytest.raises(TypeMismatch):
        as_int(r.items["quoted_no"])


def test_binary_and_merge_keys_and_positions() -> None:
    r = root()
    assert as_bytes(r.items["bin"]) == b"hello"
    merged = r.items["merged"]
    assert isinstance(merged, YMap) and list(merged.items) == ["k", "z"]
    assert isinstance(r.items["list"], YSeq)
    node = r.items["quoted_no"]
    assert isinstance(node, YScalar) and (node.mark.line, node.mark.col) == (6, 12)
    assert r.keys["quoted_no"].line == 6


@pytest.mark.parametrize(
    ("text", "line", "fragment"),
    [
        ("a: [1\n", 2, "flow sequence"),
        ("a: 1\na: 2\n", 2, "duplicate key 'a'"),
        ("a: *nope\n", 1, "undefined alias"),
        ("\t- x\n", 1, "YAML"),
    ],
)
def test_errors_are_located_diagnostics(text: str, line: int, fragment: str) -> None:
    doc = parse_yaml(text, "bad.yaml")
    assert doc.diagnostics, "expected a diagnostic"
    d = doc.diagnostics[0]
    assert d.file == "bad.yaml" and d.line == line and d.is_error
    assert fragment in str(d)
