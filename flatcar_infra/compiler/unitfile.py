"""systemd unit text read the way Ignition reads it (``go-systemd/v22/unit.Deserialize``).

Ignition refuses a unit, drop-in (and ct a networkd unit) whose text that parser cannot read:
an unterminated ``[section``, text after a section header, a key line without ``=``, or a line of
2048 bytes or more (systemd's ``LINE_MAX``: systemd would truncate it). The parser reads through a
4096-byte ``bufio.Reader`` and checks the line length only while at least 2048 bytes are buffered,
so that buffer is modelled too: a long line is refused exactly when Ignition refuses it.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

LINE_MAX = 2048
_BUF = 4096
# Go's unicode.IsSpace for the runes a unit can hold
_SPACE = frozenset("\t\n\v\f\r \x85\xa0\u1680\u2028\u2029\u202f\u205f\u3000") | frozenset(
    chr(c) for c in range(0x2000, 0x200B)
)


class UnitSyntaxError(ValueError):
    """The parser's error, worded as Ignition reports it."""


@dataclass
class UnitText:
    sections: list[str] = field(default_factory=list)  # section names, in order
    options: list[tuple[str, str, str]] = field(default_factory=list)  # (section, key, value)


class _Reader:
    """A ``bufio.Reader`` over ``data``: only how much is buffered matters (for the length check)."""

    def __init__(self, data: bytes) -> None:
        self.data = data
        self.pos = 0
        self.filled = 0  # absolute end of the buffered bytes

    def _fill(self) -> None:
        self.filled = min(len(self.data), self.pos + _BUF)

    @property
    def buffered(self) -> int:
        return self.filled - self.pos

    def read_rune(self) -> str | None:
        if self.pos >= len(self.data):
            return None
        lead = self.data[self.pos]
        size = 1 if lead < 0x80 else 2 if lead < 0xE0 else 3 if lead < 0xF0 else 4
        if self.filled - self.pos < size and self.filled < len(self.data):
            self._fill()
        chunk = self.data[self.pos : self.pos + size]
        try:
            r = chunk.decode("utf-8")
            self.pos += size
        except UnicodeDecodeError:
            r = "\ufffd"
            self.pos += 1
        return r

    def unread(self, r: str) -> None:
        self.pos -= 1 if r == "\ufffd" else len(r.encode("utf-8"))

    def read_until(self, delim: int) -> tuple[bytes, bool]:
        """``ReadBytes(delim)``: the bytes up to and including ``delim``, and whether it was found."""
        start = self.pos
        while True:
            k = self.data.find(delim, self.pos, self.filled)
            if k >= 0:
                self.pos = k + 1
                return self.data[start : self.pos], True
            if self.filled >= len(self.data):
                self.pos = self.filled
                return self.data[start:], False
            if self.buffered >= _BUF:  # a full buffer is handed out as a fragment, then refilled
                self.pos = self.filled
            self._fill()

    def line_too_long(self) -> bool:
        if self.buffered < LINE_MAX:
            return False
        window = self.data[self.pos : self.pos + LINE_MAX]
        return b"\n" not in window and b"\r" not in window


_SPACE_CHARS = "".join(sorted(_SPACE))
_SPACE_RUN = re.compile("[" + "".join(sorted(_SPACE)).replace("\\", "") + "]*")
_NAME_END = re.compile(r"[=\r\n]")
_FIRST_MARK = re.compile(r"[\[#;]")


# A unit of plain lines only: blank lines and comments, then [Section] headers, Key=Value lines,
# blank lines and comments (no continuation backslash at a line end). Nearly every unit is one;
# its reading cannot fail, so its sections are all the parser's answer needed.
_PLAIN_UNIT = re.compile(  # possessive quantifiers throughout: linear time on any input
    r"(?:[ \t]*+(?:[#;][^\n]*+(?<![\\ ]))?+\n)*+"
    r"(?:[ \t]*+\[[^\]\n]*+\][ \t]*+(?:\n|\Z)"
    r"(?:[ \t]*+(?:[#;][^\n]*+(?<![\\ ])|\[[^\]\n]*+\][ \t]*+|[^\s\[#;=][^=\n]*+=[^\n]*+(?<!\\))?+"
    r"(?:\n|\Z))*+)?+"
)
_HEADER = re.compile(r"(?m)^[ \t]*\[([^\]\n]*)\]")


def parse_unit(text: str) -> UnitText:
    """Parse unit text; ``UnitSyntaxError`` for what Ignition refuses."""
    if len(text) < LINE_MAX // 4 or max(map(len, text.split("\n"))) < LINE_MAX // 4:
        # no line can reach LINE_MAX bytes (a character is at most 4 bytes)
        if _PLAIN_UNIT.fullmatch(text):
            return UnitText(sections=_HEADER.findall(text))
        return _parse_lines(text)
    data = text.encode("utf-8", errors="surrogateescape")
    if max(map(len, data.split(b"\n"))) >= LINE_MAX:
        return _parse_exact(data)
    return _parse_lines(text)


def _parse_lines(t: str) -> UnitText:
    """The same grammar, a line at a time: exact when no line reaches ``LINE_MAX`` bytes (then
    every 2048-byte window holds a newline, so the length check can never fire)."""
    out = UnitText()
    pos, n = 0, len(t)
    section = ""
    in_body = False

    def eol(p: int) -> int:
        k = t.find("\n", p)
        return n if k < 0 else k + 1

    def skip_comment(p: int) -> int:
        while True:
            end = eol(p)
            line = t[p:end].removesuffix("\n").removesuffix("\r").removesuffix(" ")
            p = end
            if not line.endswith("\\") or p >= n:
                return p

    while pos < n:
        if in_body:
            pos = _SPACE_RUN.match(t, pos).end()  # type: ignore[union-attr]
            if pos >= n:
                break
            c = t[pos]
        else:
            m = _FIRST_MARK.search(t, pos)
            if m is None:
                break
            pos, c = m.start(), m.group()
        if c == "[":
            k = t.find("]", pos + 1)
            if k < 0:
                raise UnitSyntaxError("unable to find end of section")
            section = t[pos + 1 : k]
            end = eol(k + 1)
            garbage = t[k + 1 : end].removesuffix("\n").removesuffix("\r").strip(_SPACE_CHARS)
            if garbage:
                raise UnitSyntaxError(f"found garbage after section name {section}: {garbage!r}")
            out.sections.append(section)
            in_body = True
            pos = end
            continue
        if c in "#;":
            pos = skip_comment(pos + 1)
            continue
        m = _NAME_END.search(t, pos)
        if m is None:
            raise UnitSyntaxError("EOF")
        if m.group() != "=":
            raise UnitSyntaxError("unexpected newline encountered while parsing option name")
        key = t[pos : m.start()].strip()
        pos = m.end()
        value: list[str] = []
        while True:
            end = eol(pos)
            line = t[pos:end].removesuffix("\n").removesuffix("\r")
            pos = end
            if line.strip():
                value.append(line)
                if line.endswith("\\") and pos < n:
                    continue
            break
        out.options.append((section, key, "\n".join(value).strip()))
    return out


def _parse_exact(data: bytes) -> UnitText:
    r = _Reader(data)
    out = UnitText()
    state = "section"  # "section": before any [Section]; "body": inside one
    section = ""

    def to_eol() -> bytes:
        line, _ = r.read_until(ord("\n"))
        return line.removesuffix(b"\n").removesuffix(b"\r")

    def skip_comment() -> None:
        while True:
            line = to_eol().removesuffix(b" ")
            if not line.endswith(b"\\") or r.pos >= len(r.data):
                return

    while True:
        if r.line_too_long():
            raise UnitSyntaxError(f"line too long (max {LINE_MAX} bytes)")
        c = r.read_rune()
        if c is None:
            return out
        if state == "body" and c in _SPACE:
            continue
        if c in "[#;" and r.line_too_long():
            raise UnitSyntaxError(f"line too long (max {LINE_MAX} bytes)")
        if c == "[":
            name, found = r.read_until(ord("]"))
            if not found:
                raise UnitSyntaxError("unable to find end of section")
            section = name[:-1].decode("utf-8", errors="replace")
            if r.line_too_long():
                raise UnitSyntaxError(f"line too long (max {LINE_MAX} bytes)")
            garbage = to_eol().decode("utf-8", errors="replace").strip(_SPACE_CHARS)
            if garbage:
                raise UnitSyntaxError(f"found garbage after section name {section}: {garbage!r}")
            out.sections.append(section)
            state = "body"
            continue
        if c in "#;":
            skip_comment()
            continue
        if state == "section":
            continue
        r.unread(c)
        if r.line_too_long():
            raise UnitSyntaxError(f"line too long (max {LINE_MAX} bytes)")
        key = bytearray()
        while True:
            ch = r.read_rune()
            if ch is None:
                raise UnitSyntaxError("EOF")
            if ch in "\r\n":
                raise UnitSyntaxError("unexpected newline encountered while parsing option name")
            if ch == "=":
                break
            key += ch.encode("utf-8", errors="surrogateescape")
        value = bytearray()
        while True:
            if r.line_too_long():
                raise UnitSyntaxError(f"line too long (max {LINE_MAX} bytes)")
            line = to_eol()
            if line.strip():
                value += line
                if line.endswith(b"\\"):
                    value += b"\n"
                    if r.pos < len(r.data):
                        continue
            break
        out.options.append(
            (
                section,
                key.decode("utf-8", errors="replace").strip(),
                value.decode("utf-8", errors="replace").strip(),
            )
        )
