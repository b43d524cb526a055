"""``data:`` URLs for inline and local contents, gzip only when it makes the URL smaller (as Butane)."""

from __future__ import annotations

import base64
import gzip
import urllib.parse

# RFC 2397 with the characters Butane leaves unescaped in a percent-encoded data URL.
_SAFE = "-_.!~*'()/:@&=+$,;?"


def data_url(data: bytes, *, allow_compression: bool = False) -> tuple[str, str | None]:
    """Return ``(url, compression)``: ``compression`` is ``"gzip"`` or ``None``.

    The gzip stream is written with mtime 0 and no file name so the bytes (and the config hash)
    are the same on every run and machine.
    """
    plain = _encode(data)
    if allow_compression and len(data) > 0:
        packed = gzip.compress(data, compresslevel=9, mtime=0)
        gz = "data:;base64," + base64.b64encode(packed).decode("ascii")
        if len(gz) < len(plain):
            return gz, "gzip"
    return plain, None


def _encode(data: bytes) -> str:
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError:
        return "data:;base64," + base64.b64encode(data).decode("ascii")
    quoted = "data:," + urllib.parse.quote(text, safe=_SAFE)
    b64 = "data:;base64," + base64.b64encode(data).decode("ascii")
    return quoted if len(quoted) <= len(b64) else b64


def decode_data_url(url: str) -> bytes:
    """The bytes a ``data:`` URL carries (used by plans, manifests and tests)."""
    if not url.startswith("data:"):
        raise ValueError("not a data URL")
    header, _, payload = url[5:].partition(",")
    if header.endswith(";base64"):
        return base64.b64decode(payload)
    return urllib.parse.unquote_to_bytes(payload)
