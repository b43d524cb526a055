"""URLs read the way Ignition (Go's ``net/url``) reads them, so we refuse exactly what it refuses.

Python's ``urllib.parse`` accepts nearly anything; Go's ``url.Parse`` rejects control characters,
bad ``%`` escapes, bad ports and characters a host cannot have. A ``source`` that Go cannot parse
is a config the machine's Ignition rejects at first boot, so we check it the same way.
"""

from __future__ import annotations

from dataclasses import dataclass
from urllib.parse import unquote


class URLError(ValueError):
    """``url.Parse`` would fail; the message is Go's."""


@dataclass(frozen=True)
class GoURL:
    scheme: str  # lower-cased, as Go stores it
    opaque: str
    host: str
    raw_query: str


_HEX = frozenset("0123456789abcdefABCDEF")
_HOST_OK = frozenset("!$&'()*+,;=:[]<>\"-_.~")
_USERINFO_OK = frozenset("-._:~!$&'()*+,;=%@")


def _alnum(c: str) -> bool:
    return c.isascii() and c.isalnum()


def _unescape(s: str, *, host: bool = False) -> None:
    """Go's ``unescape`` checks only (the decoded value is not needed)."""
    i = 0
    while i < len(s):
        c = s[i]
        if c == "%":
            if i + 2 >= len(s) or s[i + 1] not in _HEX or s[i + 2] not in _HEX:
                raise URLError(f"invalid URL escape {s[i : i + 3]!r}")
            if host and int(s[i + 1], 16) < 8 and s[i : i + 3] != "%25":
                raise URLError(f"invalid URL escape {s[i : i + 3]!r}")
            i += 3
            continue
        if host and ord(c) < 0x80 and not (_alnum(c) or c in _HOST_OK):
            raise URLError(f"invalid character {c!r} in host name")
        i += 1


def _valid_port(port: str) -> bool:
    return port == "" or (port.startswith(":") and all("0" <= c <= "9" for c in port[1:]))


def _parse_host(host: str) -> str:
    if host.startswith("["):
        i = host.rfind("]")
        if i < 0:
            raise URLError("missing ']' in host")
        if not _valid_port(host[i + 1 :]):
            raise URLError(f"invalid port {host[i + 1 :]!r} after host")
        zone = host.find("%25", 0, i)
        if zone >= 0:
            _unescape(host[:zone], host=True)
            _unescape(host[i:], host=True)
            return host
    elif (i := host.rfind(":")) != -1 and not _valid_port(host[i:]):
        raise URLError(f"invalid port {host[i:]!r} after host")
    _unescape(host, host=True)
    return host


def _scheme(raw: str) -> tuple[str, str]:
    for i, c in enumerate(raw):
        if c.isascii() and c.isalpha():
            continue
        if c.isascii() and (c.isdigit() or c in "+-."):
            if i == 0:
                return "", raw
            continue
        if c == ":":
            if i == 0:
                raise URLError("missing protocol scheme")
            return raw[:i], raw[i + 1 :]
        return "", raw
    return "", raw


def parse_url(raw: str) -> GoURL:
    """``url.Parse(raw)``: the parts Ignition looks at, or ``URLError``."""
    rest_all, _, frag = raw.partition("#")
    if any(ord(c) < 0x20 or ord(c) == 0x7F for c in rest_all):
        raise URLError("net/url: invalid control character in URL")
    if rest_all == "*":
        return GoURL("", "", "", "")
    scheme, rest = _scheme(rest_all)
    scheme = scheme.lower()
    if rest.endswith("?") and rest.count("?") == 1:
        rest, query = rest[:-1], ""
    else:
        rest, _, query = rest.partition("?")
    if not rest.startswith("/"):
        if scheme:
            if frag:
                _unescape(frag)
            return GoURL(scheme, rest, "", query)
        if ":" in rest.partition("/")[0]:
            raise URLError("first path segment in URL cannot contain colon")
    host = ""
    if (scheme or not rest.startswith("///")) and rest.startswith("//"):
        authority, slash, path = rest[2:].partition("/")
        rest = slash + path
        at = authority.rfind("@")
        host = _parse_host(authority[at + 1 :] if at >= 0 else authority)
        if at >= 0:
            userinfo = authority[:at]
            if not all(_alnum(c) or c in _USERINFO_OK for c in userinfo):
                raise URLError("net/url: invalid userinfo")
            for part in userinfo.split(":", 1):
                _unescape(part)
    _unescape(rest)
    if frag:
        _unescape(frag)
    return GoURL(scheme, "", host, query)


def query_values(raw_query: str) -> dict[str, list[str]]:
    """Go's ``url.ParseQuery`` as ``URL.Query()`` uses it (bad pairs are skipped)."""
    out: dict[str, list[str]] = {}
    for pair in raw_query.split("&"):
        if not pair or ";" in pair:
            continue
        key, _, value = pair.partition("=")
        try:
            _unescape(key)
            _unescape(value)
        except URLError:
            continue
        out.setdefault(unquote(key.replace("+", " ")), []).append(unquote(value.replace("+", " ")))
    return out
