"""Typed arguments every machine component shares; each target adds its own in its module.

Frozen dataclasses: an argument set is checked once when built (a wrong channel or a missing
SSH CIDR fails in the program, before any resource is registered) and cannot change afterwards.
Values typed ``pulumi.Input`` may be Outputs of other resources.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Literal

import pulumi

from flatcar_infra.components.config import ConfigOutput
from flatcar_infra.reprovision.policy import Policy

Channel = Literal["stable", "beta", "alpha", "lts"]
CHANNELS: tuple[str, ...] = ("stable", "beta", "alpha", "lts")
Delivery = Literal["file", "pointer", "url"]


def check_channel(where: str, channel: str) -> None:
    if channel not in CHANNELS:
        raise pulumi.RunError(f"{where}: {channel!r} is not a Flatcar channel (one of {', '.join(CHANNELS)})")


def check_cidrs(where: str, cidrs: Sequence[str], *, what: str = "SSH") -> tuple[str, ...]:
    """Networks as written, each checked (``198.51.100.0/24``, ``2001:db8::/32``); a clear error
    otherwise. An empty list is refused: who may connect is always a decision, never a default."""
    if isinstance(cidrs, str):
        raise pulumi.RunError(f"{where}: a list of CIDRs, not a string (write [{cidrs!r}])")
    if not cidrs:
        raise pulumi.RunError(
            f"{where}: required (the networks allowed to reach {what}, e.g. your operator network's "
            "CIDR; nothing is open to the world by default)"
        )
    out = []
    for c in cidrs:
        try:
            ipaddress.ip_network(str(c), strict=True)
        except ValueError as exc:
            raise pulumi.RunError(f"{where}: {c!r} is not a network in CIDR notation ({exc})") from None
        out.append(str(c))
    return tuple(out)


def world_open(cidrs: Sequence[str]) -> bool:
    return any(ipaddress.ip_network(c).prefixlen == 0 for c in cidrs)


@dataclass(frozen=True)
class SshAccess:
    """How the reprovisioner logs in, and who else may.

    ``private_key`` (OpenSSH/PEM text) is always made secret. ``public_key`` (an OpenSSH line)
    is derived from it when omitted. The machine's config authorizes ``public_key`` plus
    ``authorized_keys`` for ``user``: add a teammate or a break-glass key there, and the next key
    during a rotation (see docs/pulumi.md: rotating the SSH key). No cloud key-pair field is
    involved, so changing keys reprovisions the machine instead of replacing it.
    """

    private_key: pulumi.Input[str] = field(repr=False)
    user: str = "core"
    public_key: pulumi.Input[str] | None = None
    authorized_keys: Sequence[pulumi.Input[str]] = ()


@dataclass(frozen=True)
class Hooks:
    """Commands run on the machine over SSH (host key pinned) around a reprovision.

    ``before`` runs whenever the desired config changes, before the reprovision starts (drain a
    load balancer, stop writers); ``after`` runs once the new config is applied (smoke test,
    re-register). A failing hook fails the update.
    """

    before: str | None = None
    after: str | None = None


@dataclass(frozen=True)
class InboundRule:
    """Traffic a cloud firewall admits besides SSH: ``ports`` is ``80`` or ``"8000-8100"``."""

    ports: int | str
    cidrs: Sequence[str]
    protocol: Literal["tcp", "udp"] = "tcp"

    def __post_init__(self) -> None:
        where = f"inbound rule {self.ports!r}"
        check_cidrs(f"{where}.cidrs", self.cidrs, what=f"port {self.ports}")
        if self.protocol not in ("tcp", "udp"):
            raise pulumi.RunError(f"{where}.protocol: {self.protocol!r} (tcp or udp)")
        lo, hi = self.port_range
        if not 0 < lo <= hi < 65536:
            raise pulumi.RunError(f"{where}: not a port or a range of ports (e.g. 80 or '8000-8100')")

    @property
    def port_range(self) -> tuple[int, int]:
        text = str(self.ports)
        lo, _, hi = text.partition("-")
        try:
            return int(lo), int(hi or lo)
        except ValueError:
            return 0, 0


@dataclass(frozen=True, kw_only=True)
class MachineCommon:
    """What every machine has: its compiled config, the policy and how to log in."""

    config: ConfigOutput
    ssh: SshAccess
    policy: Policy = field(default_factory=Policy)
    hooks: Hooks = field(default_factory=Hooks)
