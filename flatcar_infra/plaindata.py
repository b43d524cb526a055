"""Plain data (stack config, Pulumi outputs, JSON) read into a frozen settings dataclass."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import fields
from typing import Any

from flatcar_infra.errors import UserError


def checked_fields(d: object, cls: type, where: str, error: type[UserError]) -> dict[str, Any]:
    """``d`` as keyword arguments for the dataclass ``cls``: a mapping whose every key is a field,
    else ``error`` naming the key (``where.key``) and the known keys, so a typo in a stack config
    is a clear error, never a silently ignored option."""
    if not isinstance(d, Mapping):
        raise error(f"{where}: expected a mapping, got {type(d).__name__}")
    known = {f.name for f in fields(cls)}
    for key in d:
        if key not in known:
            raise error(f"{where}.{key}: unknown {where} key", f"known keys: {', '.join(sorted(known))}")
    return dict(d)
