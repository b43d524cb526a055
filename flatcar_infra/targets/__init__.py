"""Targets: where a stack's machines run. One module per target, one interface, one registry.

Each module ``flatcar_infra.targets.<name>`` defines ``TARGET``, a ``Target`` that says

- its stack-config options (``flatcar-infra:<name>`` and per machine), checked by
  ``flatcar_infra.stackconfig`` with the same messages for ``pulumi up`` and ``flatcar-infra plan``;
- how the guest fetches its config (``fetch``): ``s3://`` with the instance role (aws), a public
  ``https://`` object (digitalocean), SSH file delivery (existing), the local bucket (local);
- whether the config carries host keys generated at deploy time (``delivers_host_keys``);
- how the stack program builds its machines (``build``), with the machine components, their
  hosting and their arguments defined in the same module.

The registry is the package itself: every public module here is a target, named after its file,
so a new cloud is one new file. Listing targets imports none of them; a target module (which
imports Pulumi, and its cloud SDK only when it builds) is imported when a stack uses it.
"""

from __future__ import annotations

import importlib
import pkgutil
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar, Literal

from flatcar_infra.errors import UserError

if TYPE_CHECKING:
    from flatcar_infra.components.machines import FlatcarMachine
    from flatcar_infra.components.stack import StackContext
    from flatcar_infra.stackconfig import MachineSpec, StackSpec

Kind = Literal["str", "int", "bool", "str_list", "str_map", "list_of_maps", "str_or_int"]
Fail = Callable[..., UserError]
"""``fail(where, message, advice=None)``: a ``UserError`` naming the stack file and key path."""


@dataclass(frozen=True)
class ItemSchema:
    """The keys of one entry of a list-of-mappings option (``volumes``, ``inbound``)."""

    keys: Mapping[str, Kind]
    required: tuple[str, ...]


INBOUND = ItemSchema({"ports": "str_or_int", "cidrs": "str_list", "protocol": "str"}, ("ports", "cidrs"))
"""Firewall rules besides SSH: ``{ports: 80, cidrs: ["0.0.0.0/0", "::/0"], protocol: tcp}``."""


class Target:
    """The interface every target module implements (as ``TARGET``)."""

    name: ClassVar[str]
    fetch: ClassVar[str]
    """How the guest fetches its config, in one line (shown in docs and errors)."""
    options: ClassVar[Mapping[str, Kind]] = {}
    items: ClassVar[Mapping[str, ItemSchema]] = {}
    stack_only: ClassVar[tuple[str, ...]] = ()
    """Options set once per stack (one bucket, one region), not per machine."""
    needs_private_key: ClassVar[bool] = True
    delivers_host_keys: ClassVar[bool] = False

    def check(self, defaults: Mapping[str, Any], machines: Sequence[MachineSpec], fail: Fail) -> None:
        """Requirements across options (a required key, a pair that must agree)."""

    def login_public_key(self, spec: StackSpec, machine: MachineSpec, project_dir: str | Path) -> str | None:
        """The reprovisioner's public key for ``machine`` when the stack's ``ssh`` settings do not
        give one (the local target reads its VM's key)."""
        return None

    def build(self, ctx: StackContext) -> dict[str, FlatcarMachine]:
        """Register the stack's machines (and what they share); return them by name."""
        raise NotImplementedError


@cache
def names() -> tuple[str, ...]:
    """Every target, by module name (no module is imported to list them)."""
    return tuple(sorted(m.name for m in pkgutil.iter_modules(__path__) if not m.name.startswith("_")))


def get(name: str) -> Target:
    """The target ``name``; a clear error for an unknown one."""
    if name not in names():
        raise UserError(f"unknown target {name!r}", advice="one of " + ", ".join(names()))
    module = importlib.import_module(f"{__name__}.{name}")
    target: Target = module.TARGET
    return target


__all__ = ["INBOUND", "Fail", "ItemSchema", "Kind", "Target", "get", "names"]
