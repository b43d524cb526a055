"""Short, safe display forms shared by the diff and the renderers: masked URLs, abbreviated keys
and hashes, sizes. Pure string functions."""

from __future__ import annotations

from urllib.parse import urlsplit, urlunsplit


def mask_url(url: str) -> str:
    """A URL without credentials or query string (a presigned URL's signature is a secret)."""
    if url.startswith("data:"):
        return "inline"
    try:
        parts = urlsplit(url)
    except ValueError:
        return "(unparsable URL)"
    netloc = parts.netloc
    if "@" in netloc:
        netloc = "•••@" + netloc.rsplit("@", 1)[1]
    query = "•••" if parts.query else ""
    return urlunsplit((parts.scheme, netloc, parts.path, query, ""))


def abbreviate_key(key: str) -> str:
    """``ssh-ed25519 AAAAC3Nz…WXyz comment``: enough to recognize a public key."""
    fields = key.split()
    if len(fields) >= 2 and len(fields[1]) > 20:
        fields[1] = f"{fields[1][:8]}…{fields[1][-8:]}"
    return " ".join(fields)


def short_hash(value: str | None, n: int = 12) -> str:
    """``sha512-0123456789ab…`` for display."""
    if not value:
        return "(none)"
    algo, sep, hexdigest = value.partition("-")
    if not sep:
        return value[:n]
    return f"{algo}-{hexdigest[:n]}…" if len(hexdigest) > n else value


def human_size(n: int) -> str:
    if n < 1024:
        return f"{n} B"
    if n < 1024 * 1024:
        return f"{n / 1024:.1f} KiB"
    return f"{n / (1024 * 1024):.1f} MiB"
