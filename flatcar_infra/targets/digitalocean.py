"""DigitalOcean: droplets from a Flatcar custom image, their config in a public-read Spaces object.

Why a public object: Ignition fetches ``s3://`` only from AWS (no custom endpoint) and cannot
sign a request, and a droplet's user-data can never change. A presigned https URL would have to
be written into that user-data once and expires after at most 7 days, after which the pointer
(read again by every reprovision's Ignition run, and by the retry after a failed one) would be
dead. So the object is ``public-read`` at a stable key holding 128 random bits
(``flatcar-infra/<project>/<stack>/<machine>/<random>/config.ign``): the URL is a bearer token,
and a config holding a secret is refused unless each secret entry is accepted by name
(``public_secrets``). Keep secrets out of it: fetch them at boot from a secret store.

What never replaces a droplet by accident: the image and ``ssh_keys`` are used at creation only
(``ignore_changes``; Flatcar updates itself, SSH keys come through the config); the user-data is
the pointer, which changes only if the bucket or key moves. Without a private place for a host
key, the droplet's key is captured on first contact (its SHA256 fingerprint is logged: compare
it with the droplet console) and pinned from then on; a new droplet id drops the pin.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, ClassVar

import pulumi
import pulumi_random as random

from flatcar_infra.components.args import (
    Channel,
    InboundRule,
    MachineCommon,
    check_channel,
    check_cidrs,
    world_open,
)
from flatcar_infra.components.config import ConfigOutput
from flatcar_infra.components.hosting import (
    check_object_key,
    object_key,
    pointer_config,
    refuse_public_secrets,
)
from flatcar_infra.components.machines import FlatcarMachine
from flatcar_infra.targets import INBOUND, Fail, ItemSchema, Kind, Target

if TYPE_CHECKING:
    from types import ModuleType

    from flatcar_infra.components.stack import StackContext
    from flatcar_infra.stackconfig import MachineSpec


def _sdk() -> ModuleType:
    """``pulumi_digitalocean``, imported when first used: it takes about a second to import,
    which ``flatcar-infra plan`` (reading this module for its options only) should not pay."""
    import warnings

    with warnings.catch_warnings():  # the SDK warns about its deprecated resources on import
        warnings.simplefilter("ignore", DeprecationWarning)
        import pulumi_digitalocean

    return pulumi_digitalocean


def digitalocean_image_url(channel: str) -> str:
    return (
        f"https://{channel}.release.flatcar-linux.net/amd64-usr/current/"
        "flatcar_production_digitalocean_image.bin.bz2"
    )


@dataclass(frozen=True)
class DigitalOceanVolume:
    name: str
    size_gb: int


@dataclass(frozen=True, kw_only=True)
class DigitalOceanMachineArgs(MachineCommon):
    """A droplet booted from a Flatcar custom image, its config in a public-read Spaces object.

    ``ssh_cidrs``: who may reach port 22 through the droplet's firewall (required: nothing is
    open to the world by default); ``inbound``: other ports to open. ``image``: an existing custom
    image id; by default the channel's DigitalOcean image is uploaded (share one
    ``FlatcarDigitalOceanImage`` between machines to upload it once); used at creation only.
    ``ssh_keys``: ids or fingerprints of account keys DigitalOcean installs through its metadata
    (not needed: SSH keys come through the config); used at creation only. ``public_secrets``:
    the entries (``file:/etc/app/ca.key``, ``user:core``, ``variable:token``) you accept to
    publish in the public object; any other secret is refused. ``object_key``: the Spaces key of
    the config instead of a new unguessable one; give the key a droplet already points at (e.g.
    ``flatcar-infra/<hex>/config.ign`` from flatcar-infra 0.1) so an upgrade keeps its
    user-data, since a changed pointer would replace the droplet.
    """

    region: str
    size: str
    spaces_bucket: pulumi.Input[str]
    ssh_cidrs: Sequence[str]
    inbound: Sequence[InboundRule] = ()
    spaces_region: str | None = None
    channel: Channel = "stable"
    image: pulumi.Input[str] | None = None
    ssh_keys: Sequence[pulumi.Input[str]] = ()
    tags: Sequence[str] = ()
    volumes: Sequence[DigitalOceanVolume] = ()
    reserved_ip: bool = False
    vpc_uuid: pulumi.Input[str] | None = None
    public_secrets: Sequence[str] = ()
    object_key: str | None = None

    def __post_init__(self) -> None:
        check_object_key("DigitalOceanMachineArgs.object_key", self.object_key)
        for name in ("region", "size", "spaces_bucket"):
            if not getattr(self, name):  # an empty string from a half-filled stack config
                raise pulumi.RunError(f"DigitalOceanMachineArgs.{name}: required")
        object.__setattr__(
            self, "ssh_cidrs", check_cidrs("DigitalOceanMachineArgs.ssh_cidrs", self.ssh_cidrs)
        )
        if isinstance(self.public_secrets, str):
            raise pulumi.RunError("DigitalOceanMachineArgs.public_secrets: a list of entries, not a string")
        check_channel("DigitalOceanMachineArgs.channel", self.channel)


class DigitalOceanConfigHosting(pulumi.ComponentResource):
    """One machine's config as a Spaces object at an unguessable, stable key, public over https.

    The key is generated once and kept in state, so it never changes with the config. A config
    holding secrets is refused before anything is written, unless each secret entry is listed in
    ``public_secrets`` (see the module docstring).
    """

    pointer: pulumi.Output[str]
    url: pulumi.Output[str]

    def __init__(
        self,
        name: str,
        *,
        bucket: pulumi.Input[str],
        region: pulumi.Input[str],
        config: ConfigOutput,
        public_secrets: Sequence[str] = (),
        key: str | None = None,
        opts: pulumi.ResourceOptions | None = None,
    ):
        super().__init__("flatcar-infra:digitalocean:ConfigHosting", name, None, opts)
        child = pulumi.ResourceOptions(parent=self)
        content = refuse_public_secrets(
            name, config, public_secrets, where="a public-read Spaces object", opt_in="public_secrets"
        )
        if key is not None:
            self.key: pulumi.Output[str] = pulumi.Output.from_input(key)
        else:
            self.key_id = random.RandomId(f"{name}-key", byte_length=16, opts=child)
            self.key = self.key_id.hex.apply(lambda h: object_key(name, unguessable=h))
        self.object = _sdk().SpacesBucketObject(
            f"{name}-config",
            bucket=bucket,
            region=region,
            key=self.key,
            content=content,
            content_type="application/json",
            acl="public-read",
            opts=child,
        )
        self.url = pulumi.Output.all(bucket, region, self.key).apply(
            lambda a: f"https://{a[0]}.{a[1]}.digitaloceanspaces.com/{a[2]}"
        )
        self.pointer = self.url.apply(pointer_config)
        self.register_outputs({"pointer": self.pointer, "url": self.url})


class FlatcarDigitalOceanImage(pulumi.ComponentResource):
    """The channel's Flatcar DigitalOcean image uploaded as a custom image (share between droplets).

    Only what droplets are created from (a running droplet updates itself within its channel), so
    like the droplet's ``image`` it is pinned: a changed channel does not upload and swap it under
    the droplets that were created from it and may be replaced from it.
    """

    image_id: pulumi.Output[str]

    def __init__(
        self, name: str, *, channel: str, regions: Sequence[str], opts: pulumi.ResourceOptions | None = None
    ):
        super().__init__("flatcar-infra:digitalocean:FlatcarImage", name, None, opts)
        self.image = _sdk().CustomImage(
            f"{name}-image",
            name=f"flatcar-{channel}",
            url=digitalocean_image_url(channel),
            regions=list(regions),
            distribution="Unknown OS",
            description=f"Flatcar Container Linux ({channel} channel)",
            opts=pulumi.ResourceOptions(parent=self, ignore_changes=["url", "name", "description"]),
        )
        self.image_id = self.image.image_id.apply(str)
        self.register_outputs({"image_id": self.image_id})


class DigitalOceanMachine(FlatcarMachine):
    """A Flatcar droplet whose config lives in Spaces, reprovisioned in place over SSH."""

    def __init__(self, name: str, args: DigitalOceanMachineArgs, opts: pulumi.ResourceOptions | None = None):
        super().__init__("flatcar-infra:digitalocean:Machine", name, None, opts)
        do = _sdk()
        child = pulumi.ResourceOptions(parent=self)
        if world_open(args.ssh_cidrs):
            pulumi.log.warn(f"{name}: SSH (port 22) is open to the whole internet (ssh_cidrs)", self)
        config = self._access_config(args)
        self.hosting = DigitalOceanConfigHosting(
            name,
            bucket=args.spaces_bucket,
            region=args.spaces_region or args.region,
            config=config,
            public_secrets=args.public_secrets,
            key=args.object_key,
            opts=child,
        )
        image: pulumi.Input[str]
        if args.image is not None:
            image = args.image
        else:
            image = FlatcarDigitalOceanImage(
                name,
                channel=args.channel,
                regions=[args.region],
                opts=pulumi.ResourceOptions(parent=self),
            ).image_id
        self.droplet = do.Droplet(
            f"{name}-droplet",
            name=name,
            image=image,
            region=args.region,
            size=args.size,
            ssh_keys=list(args.ssh_keys),
            tags=list(args.tags),
            user_data=self.hosting.pointer,
            vpc_uuid=args.vpc_uuid,
            opts=self._machine_options(args, pinned=["image", "sshKeys"]),
        )
        droplet_id = self.droplet.id.apply(int)
        self.firewall = do.Firewall(
            f"{name}-firewall",
            droplet_ids=[droplet_id],
            inbound_rules=[
                do.FirewallInboundRuleArgs(
                    protocol="tcp", port_range="22", source_addresses=list(args.ssh_cidrs)
                ),
                *(
                    do.FirewallInboundRuleArgs(
                        protocol=r.protocol,
                        port_range="{}-{}".format(*r.port_range)
                        if r.port_range[0] != r.port_range[1]
                        else str(r.port_range[0]),
                        source_addresses=list(r.cidrs),
                    )
                    for r in args.inbound
                ),
            ],
            # Ignition fetches the config over https and Flatcar updates itself: outbound stays open.
            outbound_rules=[
                *(
                    do.FirewallOutboundRuleArgs(
                        protocol=proto, port_range="1-65535", destination_addresses=["0.0.0.0/0", "::/0"]
                    )
                    for proto in ("tcp", "udp")
                ),
                do.FirewallOutboundRuleArgs(protocol="icmp", destination_addresses=["0.0.0.0/0", "::/0"]),
            ],
            opts=child,
        )
        attachments: list[pulumi.Resource] = [self.firewall]
        for vol in args.volumes:
            volume = do.Volume(
                f"{name}-{vol.name}",
                name=f"{name}-{vol.name}",
                region=args.region,
                size=vol.size_gb,
                opts=child,
            )
            attachments.append(
                do.VolumeAttachment(
                    f"{name}-{vol.name}-attachment", droplet_id=droplet_id, volume_id=volume.id, opts=child
                )
            )
        self.public_ip = self.droplet.ipv4_address
        if args.reserved_ip:
            self.reserved_ip = do.ReservedIp(f"{name}-ip", region=args.region, opts=child)
            assignment = do.ReservedIpAssignment(
                f"{name}-ip-assignment",
                ip_address=self.reserved_ip.ip_address,
                droplet_id=droplet_id,
                opts=child,
            )
            attachments.append(assignment)
            self.public_ip = pulumi.Output.all(self.reserved_ip.ip_address, assignment.id).apply(
                lambda a: str(a[0])
            )
        self._wire(
            name,
            args,
            host=self.public_ip,
            port=22,
            host_key=None,  # nothing private can travel in a public object: first contact pins it
            delivery="pointer",
            config_url=self.hosting.url,
            depends_on=[self.hosting.object, self.droplet, *attachments],
            machine_identity=self.droplet.id,
        )
        self._finish()


# --- the stack target ------------------------------------------------------------------------------


class DigitalOceanTarget(Target):
    name = "digitalocean"
    fetch = (
        "https://<bucket>.<region>.digitaloceanspaces.com/<key>: a public-read object at an "
        "unguessable key (secrets refused unless accepted by name)"
    )
    options: ClassVar[Mapping[str, Kind]] = {
        "region": "str",
        "size": "str",
        "channel": "str",
        "image": "str_or_int",  # an existing custom image id instead of uploading the channel's image
        "ssh_keys": "str_list",  # ids or fingerprints of account keys (creation only)
        "ssh_cidrs": "str_list",
        "inbound": "list_of_maps",  # [{ports, cidrs, protocol}]
        "public_secrets": "str_list",
        "object_key": "str",  # keep the Spaces key of a droplet made by an older flatcar-infra
        "tags": "str_list",
        "volumes": "list_of_maps",  # [{name, size_gb}]
        "reserved_ip": "bool",
        "spaces_bucket": "str",
        "spaces_region": "str",
        "vpc_uuid": "str",
    }
    items: ClassVar[Mapping[str, ItemSchema]] = {
        "volumes": ItemSchema({"name": "str", "size_gb": "int"}, ("name", "size_gb")),
        "inbound": INBOUND,
    }
    stack_only = ("spaces_bucket", "spaces_region")

    def check(self, defaults: Mapping[str, Any], machines: Sequence[MachineSpec], fail: Fail) -> None:
        if "spaces_bucket" not in defaults:
            raise fail("digitalocean.spaces_bucket", "required: the Spaces bucket that hosts the configs")
        for i, m in enumerate(machines):
            o = {**defaults, **m.options}
            for req in ("region", "size"):
                if req not in o:
                    raise fail(f"machines[{i}].{req}", "required (here or in flatcar-infra:digitalocean)")
            if not o.get("ssh_cidrs"):
                raise fail(
                    f"machines[{i}].ssh_cidrs",
                    "required (here or in flatcar-infra:digitalocean): the networks the droplet's "
                    "firewall lets reach SSH",
                    'e.g. ssh_cidrs: ["198.51.100.0/24"]; nothing is open to the world by default',
                )

    def build(self, ctx: StackContext) -> dict[str, FlatcarMachine]:
        spec = ctx.spec
        ssh = ctx.ssh_access()
        defaults = spec.target_defaults
        # One custom image per channel in use, shared by the droplets created from it.
        images: dict[str, FlatcarDigitalOceanImage] = {}
        wanted: dict[str, set[str]] = {}
        for m in spec.machines:
            o = ctx.options(m)
            if "image" not in o:
                wanted.setdefault(str(o.get("channel", "stable")), set()).add(str(o["region"]))
        for channel, regions in sorted(wanted.items()):
            images[channel] = FlatcarDigitalOceanImage(
                f"flatcar-{channel}", channel=channel, regions=sorted(regions)
            )
        out: dict[str, FlatcarMachine] = {}
        for m in spec.machines:
            o = ctx.options(m)
            channel = str(o.get("channel", "stable"))
            out[m.name] = DigitalOceanMachine(
                m.name,
                DigitalOceanMachineArgs(
                    config=ctx.config_of(m, ssh),
                    ssh=ssh,
                    policy=ctx.policy,
                    region=str(o["region"]),
                    size=str(o["size"]),
                    spaces_bucket=str(defaults["spaces_bucket"]),
                    spaces_region=str(defaults.get("spaces_region") or o["region"]),
                    ssh_cidrs=list(o["ssh_cidrs"]),
                    inbound=ctx.inbound(o),
                    channel=channel,  # type: ignore[arg-type]  # checked by parse_stack_config
                    image=str(o["image"]) if "image" in o else images[channel].image_id,
                    ssh_keys=list(o.get("ssh_keys", ())),
                    tags=list(o.get("tags", ())),
                    volumes=[
                        DigitalOceanVolume(str(v["name"]), int(v["size_gb"])) for v in o.get("volumes", ())
                    ],
                    reserved_ip=bool(o.get("reserved_ip", False)),
                    vpc_uuid=o.get("vpc_uuid"),
                    public_secrets=list(o.get("public_secrets", ())),
                    object_key=o.get("object_key"),
                ),
            )
        return out


TARGET = DigitalOceanTarget()
