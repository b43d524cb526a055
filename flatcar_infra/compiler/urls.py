"""URLs read the way Ignition (Go's ``net/url``) reads them, so we refuse exactly what it refuses.

Python's ``urllib.parse`` accepts nearly anything; Go's ``url.Parse`` rejects control characters,
bad ``%`` escapes, bad ports and characters a host cannot have. A ``source`` that Go cannot parse
is a config the machine's Ignition rejects at first boot, so we check it the same way.
"""

from __future__ import annotations

import re
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


_BAD_ESCAPE = re.compile(r"%(?![0-9A-Fa-f]{2}).{0,2}", re.DOTALL)
# in a host, an escape must be of a byte >= 0x80 (or "%25", the zone separator)
_BAD_HOST_ESCAPE = re.compile(r"%(?!25)[0-7][0-9A-Fa-f]")
_BAD_HOST_CHAR = re.compile(r"[^A-Za-z0-9!$&'()*+,;=:\[\]<>\"\-_.~%\x80-\U0010ffff]")
_BAD_USERINFO_CHAR = re.compile(r"[^A-Za-z0-9\-._:~!$&'()*+,;=%@]")
_CTL = re.compile(r"[\x00-\x1f\x7f]")


def _unescape(s: str, *, host: bool = False) -> None:
    """Go's ``unescape`` checks only (the decoded value is not needed)."""
    bad = _BAD_ESCAPE.search(s)
    if bad is not None:
        raise URLError(f"invalid URL escape {bad.group()!r}")
    if host:
        bad = _BAD_HOST_ESCAPE.search(s)
        if bad is not None:
            raise URLError(f"invalid URL escape {bad.group()!r}")
        bad = _BAD_HOST_CHAR.search(s)
        if bad is not None:
            raise URLError(f"invalid character {bad.group()!r} in host name")


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
    if _CTL.search(rest_all):
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
            if _BAD_USERINFO_CHAR.search(userinfo):
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
