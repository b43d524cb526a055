"""Existing hosts (bare metal, a VM you run): only a connection; the config is delivered over SSH.

Nothing is hosted: each change is written to the host and handed to ``flatcar-reset -F`` (or
pointed at with ``-U`` when ``delivery="url"``). The host key is pinned from ``host_key`` (check
it out of band: ``ssh-keyscan``, the console) or, without one, on first contact (its SHA256
fingerprint is logged).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, ClassVar

import pulumi

from flatcar_infra.components.args import Delivery, MachineCommon, SshAccess
from flatcar_infra.components.machines import FlatcarMachine
from flatcar_infra.targets import Fail, Kind, Target

if TYPE_CHECKING:
    from flatcar_infra.components.stack import StackContext
    from flatcar_infra.stackconfig import MachineSpec


@dataclass(frozen=True, kw_only=True)
class ExistingMachineArgs(MachineCommon):
    """A host you already have: only a connection.

    ``host_key``: the pinned OpenSSH host key line; without it the first contact records it
    (trust on first use) and every later contact is checked against it. ``delivery``: ``file``
    sends the config over SSH (``flatcar-reset -F``); ``url`` points the host at ``config_url``.
    ``machine_identity``: anything that changes when the host is reinstalled (a serial number, an
    install id): a new value drops the pinned host key and waits for the new host's first boot.
    """

    host: pulumi.Input[str]
    port: pulumi.Input[int] = 22
    host_key: pulumi.Input[str] | None = None
    delivery: Delivery = "file"
    config_url: pulumi.Input[str] | None = None
    machine_identity: pulumi.Input[str] | None = None

    def __post_init__(self) -> None:
        if not self.host:
            raise pulumi.RunError("ExistingMachineArgs.host: required")
        if self.delivery == "url" and self.config_url is None:
            raise pulumi.RunError("ExistingMachineArgs.config_url: required with delivery='url'")
        if self.delivery == "pointer":
            raise pulumi.RunError(
                "ExistingMachineArgs.delivery: 'pointer' needs a cloud; use 'file' or 'url'"
            )


class ExistingMachine(FlatcarMachine):
    """A host you already have (bare metal): config delivered over SSH."""

    def __init__(self, name: str, args: ExistingMachineArgs, opts: pulumi.ResourceOptions | None = None):
        super().__init__("flatcar-infra:existing:Machine", name, None, opts)
        if args.policy.strategy == "replace":
            raise pulumi.RunError(
                f"{name}: policy.strategy 'replace' needs a cloud that can replace the machine; "
                "use in-place or wipe-root for an existing host"
            )
        self._access_config(args)
        self.public_ip = pulumi.Output.from_input(args.host)
        self._wire(
            name,
            args,
            host=args.host,
            port=args.port,
            host_key=args.host_key,
            delivery=args.delivery,
            config_url=args.config_url,
            depends_on=[],
            machine_identity=args.machine_identity,
        )
        self._finish()


class ExistingTarget(Target):
    name = "existing"
    fetch = "over SSH: the config is written to the host and handed to flatcar-reset -F"
    options: ClassVar[Mapping[str, Kind]] = {"host": "str", "port": "int", "user": "str", "host_key": "str"}

    def check(self, defaults: Mapping[str, Any], machines: Sequence[MachineSpec], fail: Fail) -> None:
        for i, m in enumerate(machines):
            o = {**defaults, **m.options}
            if "host" not in o:
                raise fail(f"machines[{i}].host", "required for target existing")
            if "port" in o and not 0 < o["port"] < 65536:
                raise fail(f"machines[{i}].port", f"must be a TCP port, got {o['port']}")

    def build(self, ctx: StackContext) -> dict[str, FlatcarMachine]:
        base = ctx.ssh_access()
        out: dict[str, FlatcarMachine] = {}
        for m in ctx.spec.machines:
            o = ctx.options(m)
            ssh = base
            if "user" in o:
                ssh = SshAccess(
                    private_key=base.private_key,
                    user=str(o["user"]),
                    public_key=base.public_key,
                    authorized_keys=base.authorized_keys,
                )
            out[m.name] = ExistingMachine(
                m.name,
                ExistingMachineArgs(
                    config=ctx.config_of(m, ssh),
                    ssh=ssh,
                    policy=ctx.policy,
                    host=str(o["host"]),
                    port=int(o.get("port", 22)),
                    host_key=o.get("host_key"),
                    delivery="file",
                ),
            )
        return out


TARGET = ExistingTarget()
