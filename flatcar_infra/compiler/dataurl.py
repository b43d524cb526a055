"""``data:`` URLs for inline and local contents, encoded the way Butane encodes them.

Three candidates, the shortest wins: percent-escaped (good for text), base64 (small or binary data),
and, where allowed, base64 of gzip (compressible data) — which must beat the others by more than
the length of the ``"gzip"`` compression value it needs. Matching Butane's choice keeps a config
migrated from Butane byte-identical, so its hash does not change.
"""

from __future__ import annotations

import base64
import gzip
import urllib.parse

# Left unescaped besides letters, digits and "-_.~" (which quote() never escapes).
_SAFE = "!*'()"


def data_url(data: bytes, *, allow_compression: bool = False) -> tuple[str, str | None]:
    """Return ``(url, compression)``: ``compression`` is ``"gzip"`` or ``None``.

    The gzip stream is written with mtime 0 and no file name so the bytes (and the config hash)
    are the same on every run and machine.
    """
    opaque = "," + urllib.parse.quote(data, safe=_SAFE)
    b64 = ";base64," + base64.b64encode(data).decode("ascii")
    if len(b64) < len(opaque):
        opaque = b64
    compression = None
    if allow_compression:
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
