"""``data:`` URLs for inline and local contents, encoded the way Butane encodes them.

Three candidates, the shortest wins: percent-escaped (good for text), base64 (small or binary data),
and, where allowed, base64 of gzip (compressible data) — which must beat the others by more than
the length of the ``"gzip"`` compression value it needs. Matching Butane's choice keeps a config
migrated from Butane byte-identical, so its hash does not change.
"""

from __future__ import annotations

import base64
import gzip
import re
import urllib.parse

# dataurl.Escape's unreserved set (RFC 2396): letters, digits and "-_.!~*'()"; every other byte
# is %XX. A table lookup per byte (in C, through map) is twice as fast as urllib's quote().
_UNRESERVED = frozenset(b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_.!~*'()")
_ESCAPE = [chr(b) if b in _UNRESERVED else f"%{b:02X}" for b in range(256)]
_UNRESERVED_BYTES = bytes(sorted(_UNRESERVED))


def data_url(data: bytes, *, allow_compression: bool = False) -> tuple[str, str | None]:
    """Return ``(url, compression)``: ``compression`` is ``"gzip"`` or ``None``.

    The gzip stream is written with mtime 0 and no file name so the bytes (and the config hash)
    are the same on every run and machine.
    """
    # Lengths first (in C): build the percent-escaped form only when it is the shorter one.
    reserved = len(data.translate(None, _UNRESERVED_BYTES))
    escaped_len = 1 + len(data) + 2 * reserved
    b64_len = len(";base64,") + 4 * ((len(data) + 2) // 3)
    if b64_len < escaped_len:
        opaque = ";base64," + base64.b64encode(data).decode("ascii")
    else:
        opaque = "," + "".join(map(_ESCAPE.__getitem__, data))
    compression = None
    # gzip's own header and trailer take 18 bytes (24 in base64): it cannot win below that
    if allow_compression and len(opaque) > len(";base64,") + 24 + len("gzip"):
        packed = gzip.compress(data, compresslevel=9, mtime=0)
        gz = ";base64," + base64.b64encode(packed).decode("ascii")
        if len(gz) + len("gzip") < len(opaque):
            opaque, compression = gz, "gzip"
    return "data:" + opaque, compression


def decode_data_url(url: str) -> bytes:
    """The bytes a ``data:`` URL carries (used by plans, manifests and tests)."""
    if not url.startswith("data:"):
        raise ValueError("not a data URL")
    header, _, payload = url[5:].partition(",")
    if header.endswith(";base64"):
        return base64.b64decode(payload)
    return urllib.parse.unquote_to_bytes(payload)


# --- strict decoding, as Ignition's data URL library reads them ----------------------------------

_TSPECIALS = frozenset('()<>@,;:\\"/[]?=')
_B64_RE = re.compile(r"[A-Za-z0-9+/]*={0,2}")
# ASCII printable but space and the RFC 2396 delims/unwise characters
_URL_CHARS_RE = re.compile(r"[!$%&'()*+,\-./0-9:;=?@A-Z_a-z~]*")
_BAD_ESCAPE_RE = re.compile(r"%(?![0-9A-Fa-f]{2}).{0,2}", re.DOTALL)


def _token_char(c: str) -> bool:
    return c.isascii() and ord(c) > 0x20 and ord(c) != 0x7F and c not in _TSPECIALS


def decode_data_url_strict(url: str) -> bytes:
    """The bytes of a ``data:`` URL, refusing what Ignition refuses (``vincent-petithory/dataurl``:
    RFC 2397 media type and parameters, ``%`` escapes that must be hex, padded standard base64,
    ASCII only). ``ValueError`` carries that library's message."""
    return _strict(url, decode=True)


def check_data_url(url: str) -> None:
    """``decode_data_url_strict`` without decoding: ``ValueError`` if Ignition refuses ``url``."""
    _strict(url, decode=False)


def _strict(url: str, *, decode: bool) -> bytes:
    if not url.startswith("data:"):
        raise ValueError("missing data prefix")
    header, comma, payload = url[5:].partition(",")
    if not comma:
        raise ValueError("missing comma before data")
    base64_enc = False
    params = header.split(";")
    media = params[0]
    if media:
        mtype, slash, subtype = media.partition("/")
        if not slash:
            raise ValueError("missing media type slash")
        if not all(_token_char(c) for c in mtype):
            raise ValueError("invalid character for media type")
        if not mtype.lower().startswith(("x-",)) and not mtype.startswith(
            ("text", "image", "audio", "video", "application", "message", "multipart")
        ):
            raise ValueError("invalid media type")
        if not all(_token_char(c) for c in subtype):  # an empty subtype is accepted
            raise ValueError("invalid character for media subtype")
    for i, param in enumerate(params[1:], 1):
        attr, eq, value = param.partition("=")
        if not attr:
            raise ValueError("unterminated parameter sequence")
        if not all(_token_char(c) for c in attr):
            raise ValueError("invalid character for parameter attribute")
        if not eq:
            if attr != "base64" or i != len(params) - 1:
                last = i == len(params) - 1
                raise ValueError(
                    f"expected base64, got {attr}" if last else "invalid character for parameter attribute"
                )
            base64_enc = True
            continue
        if value.startswith('"'):
            if len(value) < 2 or not value.endswith('"') or not value.isascii():
                raise ValueError("unclosed quoted string")
        elif not value or not all(_token_char(c) for c in value):
            raise ValueError("invalid character for parameter value")
    if base64_enc:
        if not _B64_RE.fullmatch(payload):
            raise ValueError("invalid data character")
        if len(payload) % 4 or (payload.endswith("=") and len(payload.rstrip("=")) % 4 == 1):
            raise ValueError("illegal base64 data (bad padding)")
        return base64.b64decode(payload) if decode else b""
    if not _URL_CHARS_RE.fullmatch(payload):
        raise ValueError("invalid data character")
    bad = _BAD_ESCAPE_RE.search(payload)
    if bad is not None:
        if len(bad.group()) < 3:
            raise ValueError("rfc2396: unexpected end of unescape sequence")
        raise ValueError("rfc2396: invalid char 0x25 in unescape sequence")
    return urllib.parse.unquote_to_bytes(payload) if decode else b""
