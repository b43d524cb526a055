"""Command-line value parsing shared by every command (one way to read ``--var K=V``)."""

from __future__ import annotations

from flatcar_infra.errors import UsageError


def parse_vars(items: list[str]) -> dict[str, str] | None:
    """``--var KEY=VALUE`` pairs as a mapping; ``None`` when none were given (no template)."""
    if not items:
        return None
    out: dict[str, str] = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep or not key.strip():
            raise UsageError(f"--var {item!r}: expected KEY=VALUE")
        out[key.strip()] = value
    return out
