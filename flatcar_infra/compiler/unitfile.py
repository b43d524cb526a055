"""systemd unit text read the way Ignition reads it (``go-systemd/v22/unit.Deserialize``).

Ignition refuses a unit, drop-in (and ct a networkd unit) whose text that parser cannot read:
an unterminated ``[section``, text after a section header, a key line without ``=``, or a line of
2048 bytes or more (systemd's ``LINE_MAX``: systemd would truncate it). The parser reads through a
4096-byte ``bufio.Reader`` and checks the line length only while at least 2048 bytes are buffered,
so that buffer is modelled too: a long line is refused exactly when Ignition refuses it.
"""

from __future__ import annotations

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


def parse_unit(text: str) -> UnitText:
    """Parse unit text; ``UnitSyntaxError`` for what Ignition refuses."""
    r = _Reader(text.encode("utf-8", errors="surrogateescape"))
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
            garbage = to_eol().strip()
            if garbage:
                raise UnitSyntaxError(
                    f"found garbage after section name {section}: {garbage.decode(errors='replace')!r}"
                )
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
