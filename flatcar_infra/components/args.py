"""Typed arguments of the machine components.

Frozen dataclasses: an argument set is checked once when built (a wrong channel or a missing
SSH CIDR fails in the program, before any resource is registered) and cannot change afterwards.
Values typed ``pulumi.Input`` may be Outputs of other resources.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Literal

import pulumi

from flatcar_infra.components.config import ConfigOutput
from flatcar_infra.reprovision.policy import Policy

Channel = Literal["stable", "beta", "alpha", "lts"]
CHANNELS: tuple[str, ...] = ("stable", "beta", "alpha", "lts")
Delivery = Literal["file", "pointer", "url"]


def _check_channel(channel: str) -> None:
    if channel not in CHANNELS:
        raise pulumi.RunError(f"channel: {channel!r} is not a Flatcar channel (one of {', '.join(CHANNELS)})")


@dataclass(frozen=True)
class SshAccess:
    """How the reprovisioner logs in. ``private_key`` (OpenSSH/PEM text) is always made secret.

    ``public_key`` (an OpenSSH line) is what clouds install for ``user``; when omitted it is
    derived from ``private_key``.
    """

    private_key: pulumi.Input[str] = field(repr=False)
    user: str = "core"
    public_key: pulumi.Input[str] | None = None


@dataclass(frozen=True)
class Hooks:
    """Commands run on the machine over SSH (host key pinned) around a reprovision.

    ``before`` runs whenever the desired config changes, before the reprovision starts (drain a
    load balancer, stop writers); ``after`` runs once the new config is applied (smoke test,
    re-register). A failing hook fails the update.
    """

    before: str | None = None
    after: str | None = None


@dataclass(frozen=True, kw_only=True)
class MachineCommon:
    """What every machine has: its compiled config, the policy and how to log in."""

    config: ConfigOutput
    ssh: SshAccess
    policy: Policy = field(default_factory=Policy)
    hooks: Hooks = field(default_factory=Hooks)


@dataclass(frozen=True)
class DigitalOceanVolume:
    name: str
    size_gb: int


@dataclass(frozen=True, kw_only=True)
class DigitalOceanMachineArgs(MachineCommon):
    """A droplet booted from a Flatcar custom image, its config in a public-read Spaces object.

    ``image``: an existing custom image id; by default the channel's DigitalOcean image is
    uploaded as a custom image (share one ``FlatcarDigitalOceanImage`` between machines to upload
    it once). ``ssh_keys``: ids or fingerprints of keys in the account (DigitalOcean installs them
    for ``core`` through its metadata). ``allow_secrets``: accept uploading a config that holds
    secrets to the public object (see ``DigitalOceanConfigHosting``).
    """

    region: str
    size: str
    spaces_bucket: pulumi.Input[str]
    spaces_region: str | None = None
    channel: Channel = "stable"
    image: pulumi.Input[str] | None = None
    ssh_keys: Sequence[pulumi.Input[str]] = ()
    tags: Sequence[str] = ()
    volumes: Sequence[DigitalOceanVolume] = ()
    reserved_ip: bool = False
    vpc_uuid: pulumi.Input[str] | None = None
    allow_secrets: bool = False

    def __post_init__(self) -> None:
        for name in ("region", "size", "spaces_bucket"):
            if not getattr(self, name):  # an empty string from a half-filled stack config
                raise pulumi.RunError(f"DigitalOceanMachineArgs.{name}: required")
        _check_channel(self.channel)


@dataclass(frozen=True)
class AwsVolume:
    device_name: str
    size_gb: int
    type: str = "gp3"


@dataclass(frozen=True, kw_only=True)
class AwsMachineArgs(MachineCommon):
    """An EC2 instance from the channel's Flatcar AMI, reading its config from a private S3 object.

    ``ssh_cidrs``: who may reach port 22 (the reprovisioner must be among them); required, so an
    open-to-the-world SSH port is always a decision, never a default. ``bucket``: an existing
    private bucket; by default the machine gets its own ``AwsConfigBucket``. ``key_name``: an
    existing EC2 key pair; by default one is created from ``ssh.public_key``.
    """

    ssh_cidrs: Sequence[str]
    instance_type: str = "t3.small"
    channel: Channel = "stable"
    architecture: Literal["x86_64", "arm64"] = "x86_64"
    ami: pulumi.Input[str] | None = None
    bucket: pulumi.Input[str] | None = None
    key_name: pulumi.Input[str] | None = None
    vpc_id: pulumi.Input[str] | None = None
    subnet_id: pulumi.Input[str] | None = None
    root_volume_size: int | None = None
    volumes: Sequence[AwsVolume] = ()
    elastic_ip: bool = False
    tags: Mapping[str, str] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if not self.ssh_cidrs:
            raise pulumi.RunError(
                "AwsMachineArgs.ssh_cidrs: required (the networks allowed to reach SSH, e.g. your "
                "operator network's CIDR; the reprovisioner logs in over SSH)"
            )
        if isinstance(self.ssh_cidrs, str):
            raise pulumi.RunError("AwsMachineArgs.ssh_cidrs: a list of CIDRs, not a string")
        _check_channel(self.channel)
        if self.architecture not in ("x86_64", "arm64"):
            raise pulumi.RunError(f"AwsMachineArgs.architecture: {self.architecture!r} (x86_64 or arm64)")


@dataclass(frozen=True, kw_only=True)
class ExistingMachineArgs(MachineCommon):
    """A host you already have (bare metal, the local VM): only a connection.

    ``host_key``: the pinned OpenSSH host key line; without it the first contact records it
    (trust on first use) and every later contact is checked against it. ``delivery``: ``file``
    sends the config over SSH (``flatcar-reset -F``); ``url`` points the host at ``config_url``.
    """

    host: pulumi.Input[str]
    port: pulumi.Input[int] = 22
    host_key: pulumi.Input[str] | None = None
    delivery: Delivery = "file"
    config_url: pulumi.Input[str] | None = None

    def __post_init__(self) -> None:
        if not self.host:
            raise pulumi.RunError("ExistingMachineArgs.host: required")
        if self.delivery == "url" and self.config_url is None:
            raise pulumi.RunError("ExistingMachineArgs.config_url: required with delivery='url'")
        if self.delivery == "pointer":
            raise pulumi.RunError(
                "ExistingMachineArgs.delivery: 'pointer' needs a cloud; use 'file' or 'url'"
            )
