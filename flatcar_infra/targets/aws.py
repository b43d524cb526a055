"""AWS: EC2 instances reading their config from a private S3 object with their instance role.

What never replaces an instance by accident:

- the AMI is looked up (newest of the channel) or given, and used only at creation
  (``ignore_changes``): Flatcar updates itself, so the next release changes nothing here;
- SSH access comes through the config (no EC2 key pair needed; a given ``key_name`` is used at
  creation only), so rotating keys is a reprovision;
- the availability zone is pinned whenever volumes exist (given, or the subnet's, which never
  moves), and the EBS volumes are created in that same zone, never in the instance's computed
  one;
- the user-data is the pointer ``s3://bucket/flatcar-infra/<project>/<stack>/<machine>/config.ign``,
  which changes only if the bucket or key moves (then the instance is replaced: EC2 applies new
  user-data only with a stop/start and never reruns Ignition for it).

The instance's SSH host key is generated at deploy time (``tls.PrivateKey``, ED25519, kept in
state) and written to ``/etc/ssh`` by the config, so ``Reprovision`` pins it from the first
connection: no trust on first use. The config is then secret (state, object, ``Reprovision``),
and the object is private, encrypted, readable by that one instance role only.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, ClassVar, Literal

import pulumi
import pulumi_aws as aws
import pulumi_tls as tls

from flatcar_infra.access import HostKey
from flatcar_infra.components.args import (
    Channel,
    InboundRule,
    MachineCommon,
    check_channel,
    check_cidrs,
    world_open,
)
from flatcar_infra.components.hosting import check_object_key, object_key, pointer_config
from flatcar_infra.components.machines import FlatcarMachine
from flatcar_infra.targets import INBOUND, Fail, ItemSchema, Kind, Target

if TYPE_CHECKING:
    from flatcar_infra.components.stack import StackContext
    from flatcar_infra.stackconfig import MachineSpec

FLATCAR_AMI_OWNER = "075585003325"


@dataclass(frozen=True)
class AwsVolume:
    device_name: str
    size_gb: int
    type: str = "gp3"


@dataclass(frozen=True, kw_only=True)
class AwsMachineArgs(MachineCommon):
    """An EC2 instance from the channel's Flatcar AMI, reading its config from a private S3 object.

    ``ssh_cidrs``: who may reach port 22 (the reprovisioner must be among them); required, so an
    open SSH port is always a decision, never a default. ``inbound``: other ports to open.
    ``ami``: an AMI id instead of the channel's newest; like the lookup, used at creation only.
    ``bucket``: an existing private bucket; by default the machine gets its own
    ``AwsConfigBucket``. ``key_name``: an existing EC2 key pair, installed by Flatcar from the
    instance metadata on every boot (not needed: SSH keys come through the config); used at
    creation only. ``availability_zone``: required with ``volumes`` unless ``subnet_id`` gives it.
    ``object_key``: the S3 key of the config instead of ``flatcar-infra/<project>/<stack>/<machine>/
    config.ign``; give the key an instance already points at (``flatcar-infra/<stack>/<machine>/
    config.ign`` from flatcar-infra 0.1) so an upgrade keeps its user-data, since a changed
    pointer would replace the instance.
    """

    ssh_cidrs: Sequence[str]
    inbound: Sequence[InboundRule] = ()
    instance_type: str = "t3.small"
    channel: Channel = "stable"
    architecture: Literal["x86_64", "arm64"] = "x86_64"
    ami: pulumi.Input[str] | None = None
    bucket: pulumi.Input[str] | None = None
    key_name: pulumi.Input[str] | None = None
    vpc_id: pulumi.Input[str] | None = None
    subnet_id: pulumi.Input[str] | None = None
    availability_zone: pulumi.Input[str] | None = None
    root_volume_size: int | None = None
    volumes: Sequence[AwsVolume] = ()
    elastic_ip: bool = False
    tags: Mapping[str, str] = field(default_factory=dict)
    object_key: str | None = None

    def __post_init__(self) -> None:
        check_object_key("AwsMachineArgs.object_key", self.object_key)
        object.__setattr__(self, "ssh_cidrs", check_cidrs("AwsMachineArgs.ssh_cidrs", self.ssh_cidrs))
        check_channel("AwsMachineArgs.channel", self.channel)
        if self.architecture not in ("x86_64", "arm64"):
            raise pulumi.RunError(f"AwsMachineArgs.architecture: {self.architecture!r} (x86_64 or arm64)")
        if self.volumes and self.availability_zone is None and self.subnet_id is None:
            raise pulumi.RunError(
                "AwsMachineArgs.availability_zone: required with volumes (or a subnet_id, whose zone "
                "is used): EBS volumes live in one zone, pinned so that the instance, a replacement "
                "of it and its volumes always meet there"
            )


def s3_object_arn(bucket: str, key: str) -> str:
    return f"arn:aws:s3:::{bucket}/{key}"


def get_object_policy(bucket: str, key: str) -> str:
    """IAM policy allowing ``s3:GetObject`` on exactly one object (no wildcard, no listing)."""
    doc = {
        "Version": "2012-10-17",
        "Statement": [{"Effect": "Allow", "Action": "s3:GetObject", "Resource": s3_object_arn(bucket, key)}],
    }
    return json.dumps(doc, sort_keys=True)


EC2_ASSUME_ROLE_POLICY = json.dumps(
    {
        "Version": "2012-10-17",
        "Statement": [
            {"Effect": "Allow", "Action": "sts:AssumeRole", "Principal": {"Service": "ec2.amazonaws.com"}}
        ],
    },
    sort_keys=True,
)


class AwsConfigBucket(pulumi.ComponentResource):
    """A private S3 bucket for configs: all public access blocked, encrypted at rest (SSE-S3)."""

    bucket: pulumi.Output[str]

    def __init__(self, name: str, *, force_destroy: bool = True, opts: pulumi.ResourceOptions | None = None):
        super().__init__("flatcar-infra:aws:ConfigBucket", name, None, opts)
        child = pulumi.ResourceOptions(parent=self)
        bucket = aws.s3.Bucket(f"{name}-bucket", force_destroy=force_destroy, opts=child)
        self.public_access_block = aws.s3.BucketPublicAccessBlock(
            f"{name}-public-access-block",
            bucket=bucket.id,
            block_public_acls=True,
            block_public_policy=True,
            ignore_public_acls=True,
            restrict_public_buckets=True,
            opts=child,
        )
        self.encryption = aws.s3.BucketServerSideEncryptionConfiguration(
            f"{name}-encryption",
            bucket=bucket.id,
            rules=[
                aws.s3.BucketServerSideEncryptionConfigurationRuleArgs(
                    apply_server_side_encryption_by_default=aws.s3.BucketServerSideEncryptionConfigurationRuleApplyServerSideEncryptionByDefaultArgs(
                        sse_algorithm="AES256"
                    ),
                )
            ],
            opts=child,
        )
        self.bucket_resource = bucket
        # Consumers depend on the name *after* the protections exist: no object is ever written to
        # a bucket that is still public or unencrypted.
        self.bucket = pulumi.Output.all(bucket.bucket, self.public_access_block.id, self.encryption.id).apply(
            lambda a: str(a[0])
        )
        self.register_outputs({"bucket": self.bucket})


class AwsConfigHosting(pulumi.ComponentResource):
    """One machine's config in S3, and the instance profile that may read exactly that object.

    Ignition fetches ``s3://bucket/key`` with the instance role's credentials, so the bucket stays
    private; the role can read this one object and nothing else.
    """

    pointer: pulumi.Output[str]
    instance_profile: pulumi.Output[str]
    source: pulumi.Output[str]

    def __init__(
        self,
        name: str,
        *,
        bucket: pulumi.Input[str],
        key: str,
        content: pulumi.Input[str],
        opts: pulumi.ResourceOptions | None = None,
    ):
        super().__init__("flatcar-infra:aws:ConfigHosting", name, None, opts)
        child = pulumi.ResourceOptions(parent=self)
        self.key = key
        self.object = aws.s3.BucketObjectv2(
            f"{name}-config",
            bucket=bucket,
            key=key,
            content=content,
            content_type="application/json",
            server_side_encryption="AES256",
            opts=child,
        )
        self.role = aws.iam.Role(f"{name}-role", assume_role_policy=EC2_ASSUME_ROLE_POLICY, opts=child)
        self.policy = aws.iam.RolePolicy(
            f"{name}-read-config",
            role=self.role.id,
            policy=pulumi.Output.from_input(bucket).apply(lambda b: get_object_policy(b, key)),
            opts=child,
        )
        profile = aws.iam.InstanceProfile(
            f"{name}-profile",
            role=self.role.name,
            opts=pulumi.ResourceOptions(parent=self, depends_on=[self.policy]),
        )
        self.profile = profile
        self.instance_profile = profile.name
        self.source = pulumi.Output.from_input(bucket).apply(lambda b: f"s3://{b}/{key}")
        self.pointer = self.source.apply(pointer_config)
        self.register_outputs(
            {"pointer": self.pointer, "source": self.source, "instance_profile": self.instance_profile}
        )


def flatcar_ami(
    channel: str, architecture: str, opts: pulumi.InvokeOptions | None = None
) -> pulumi.Output[str]:
    """The newest official Flatcar AMI of a channel (owner 075585003325). Changes with every
    release: ``AwsMachine`` uses it only when it creates the instance."""
    ami = aws.ec2.get_ami_output(
        owners=[FLATCAR_AMI_OWNER],
        most_recent=True,
        filters=[
            aws.ec2.GetAmiFilterArgs(name="name", values=[f"Flatcar-{channel}-*"]),
            aws.ec2.GetAmiFilterArgs(name="architecture", values=[architecture]),
        ],
        opts=opts,
    )
    return ami.id


def _split_cidrs(cidrs: Sequence[str]) -> tuple[list[str], list[str]]:
    v6 = [c for c in cidrs if ":" in c]
    return [c for c in cidrs if ":" not in c], v6


def _ingress(protocol: str, lo: int, hi: int, cidrs: Sequence[str]) -> aws.ec2.SecurityGroupIngressArgs:
    v4, v6 = _split_cidrs(cidrs)
    return aws.ec2.SecurityGroupIngressArgs(
        protocol=protocol, from_port=lo, to_port=hi, cidr_blocks=v4 or None, ipv6_cidr_blocks=v6 or None
    )


class AwsMachine(FlatcarMachine):
    """A Flatcar EC2 instance reading its config from a private S3 object with its instance role."""

    def __init__(self, name: str, args: AwsMachineArgs, opts: pulumi.ResourceOptions | None = None):
        super().__init__("flatcar-infra:aws:Machine", name, None, opts)
        child = pulumi.ResourceOptions(parent=self)
        if world_open(args.ssh_cidrs):
            pulumi.log.warn(f"{name}: SSH (port 22) is open to the whole internet (ssh_cidrs)", self)
        # The host key: generated once, kept in state, delivered in the (private, secret) config.
        self.host_key_resource = tls.PrivateKey(f"{name}-host-key", algorithm="ED25519", opts=child)
        public = self.host_key_resource.public_key_openssh.apply(lambda k: k.strip())
        private: pulumi.Output[str] = pulumi.Output.secret(self.host_key_resource.private_key_openssh)  # type: ignore[arg-type]
        host_keys = pulumi.Output.all(private, public).apply(lambda a: [HostKey("ed25519", a[0], a[1])])
        config = self._access_config(args, host_keys)
        bucket: pulumi.Input[str]
        bucket = args.bucket if args.bucket is not None else AwsConfigBucket(name, opts=child).bucket
        self.hosting = AwsConfigHosting(
            name, bucket=bucket, key=args.object_key or object_key(name), content=config.canonical, opts=child
        )
        self.security_group = aws.ec2.SecurityGroup(
            f"{name}-sg",
            description=f"flatcar-infra {name}: SSH from the operator networks",
            vpc_id=args.vpc_id,
            ingress=[
                _ingress("tcp", 22, 22, args.ssh_cidrs),
                *(_ingress(r.protocol, *r.port_range, r.cidrs) for r in args.inbound),
            ],
            # Ignition fetches the config from S3 and Flatcar updates itself: outbound stays open.
            egress=[
                aws.ec2.SecurityGroupEgressArgs(
                    protocol="-1",
                    from_port=0,
                    to_port=0,
                    cidr_blocks=["0.0.0.0/0"],
                    ipv6_cidr_blocks=["::/0"],
                )
            ],
            opts=child,
        )
        ami = (
            args.ami
            if args.ami is not None
            else flatcar_ami(args.channel, args.architecture, pulumi.InvokeOptions(parent=self))
        )
        zone: pulumi.Input[str] | None = args.availability_zone
        if zone is None and args.volumes:
            # A subnet never changes its zone: a value that cannot move under the volumes.
            zone = aws.ec2.get_subnet_output(
                id=args.subnet_id, opts=pulumi.InvokeOptions(parent=self)
            ).availability_zone
        self.instance = aws.ec2.Instance(
            f"{name}-instance",
            ami=ami,
            instance_type=args.instance_type,
            key_name=args.key_name,
            availability_zone=zone,
            iam_instance_profile=self.hosting.instance_profile,
            vpc_security_group_ids=[self.security_group.id],
            subnet_id=args.subnet_id,
            user_data=self.hosting.pointer,
            # The pointer only changes if the bucket or key moves; EC2 would apply a new user-data
            # only after a stop/start, without rerunning Ignition, so such a change replaces.
            user_data_replace_on_change=True,
            root_block_device=(
                aws.ec2.InstanceRootBlockDeviceArgs(volume_size=args.root_volume_size)
                if args.root_volume_size
                else None
            ),
            metadata_options=aws.ec2.InstanceMetadataOptionsArgs(http_tokens="required"),
            tags={"Name": name, **args.tags},
            opts=self._machine_options(args, pinned=["ami", "keyName"], depends_on=[self.hosting.object]),
        )
        attachments: list[pulumi.Resource] = []
        for i, vol in enumerate(args.volumes):
            assert zone is not None  # AwsMachineArgs requires it with volumes
            volume = aws.ebs.Volume(
                f"{name}-volume-{i}",
                availability_zone=zone,
                size=vol.size_gb,
                type=vol.type,
                encrypted=True,
                tags={"Name": f"{name}-{vol.device_name}", **args.tags},
                opts=child,
            )
            attachments.append(
                aws.ec2.VolumeAttachment(
                    f"{name}-volume-{i}-attachment",
                    device_name=vol.device_name,
                    volume_id=volume.id,
                    instance_id=self.instance.id,
                    opts=child,
                )
            )
        self.public_ip = self.instance.public_ip
        if args.elastic_ip:
            self.eip = aws.ec2.Eip(f"{name}-eip", domain="vpc", tags={"Name": name, **args.tags}, opts=child)
            assoc = aws.ec2.EipAssociation(
                f"{name}-eip-association", allocation_id=self.eip.id, instance_id=self.instance.id, opts=child
            )
            attachments.append(assoc)
            self.public_ip = pulumi.Output.all(self.eip.public_ip, assoc.id).apply(lambda a: str(a[0]))
        platform_keys: pulumi.Input[Sequence[pulumi.Input[str]]] | None = None
        if args.key_name is not None:
            # Flatcar installs the key pair from the instance metadata on every boot.
            pair = aws.ec2.get_key_pair_output(
                key_name=args.key_name, include_public_key=True, opts=pulumi.InvokeOptions(parent=self)
            )
            platform_keys = pair.public_key.apply(lambda k: [k.strip()] if k else [])
        self._wire(
            name,
            args,
            host=self.public_ip,
            port=22,
            host_key=public,
            delivery="pointer",
            # s3:// is read by Ignition with the instance role; nothing else can fetch it to compare.
            config_url=None,
            depends_on=[self.hosting.object, self.instance, *attachments],
            machine_identity=self.instance.id,
            platform_keys=platform_keys,
        )
        self._finish()


# --- the stack target ------------------------------------------------------------------------------


class AwsTarget(Target):
    name = "aws"
    fetch = "s3://<bucket>/<key>, read by Ignition with the instance role (private, encrypted object)"
    options: ClassVar[Mapping[str, Kind]] = {
        "region": "str",
        "instance_type": "str",
        "channel": "str",
        "architecture": "str",  # x86_64 | arm64
        "ami": "str",  # an AMI id instead of the channel's newest (creation only)
        "ssh_cidrs": "str_list",
        "inbound": "list_of_maps",  # [{ports, cidrs, protocol}]
        "bucket": "str",  # an existing bucket; default: one private bucket per stack
        "key_name": "str",  # an existing EC2 key pair (creation only; keys come through the config)
        "volumes": "list_of_maps",  # [{device_name, size_gb, type}]
        "availability_zone": "str",
        "elastic_ip": "bool",
        "subnet_id": "str",
        "vpc_id": "str",
        "root_volume_size": "int",
        "tags": "str_map",
        "object_key": "str",  # keep the S3 key of a machine made by an older flatcar-infra
    }
    items: ClassVar[Mapping[str, ItemSchema]] = {
        "volumes": ItemSchema(
            {"device_name": "str", "size_gb": "int", "type": "str"}, ("device_name", "size_gb")
        ),
        "inbound": INBOUND,
    }
    stack_only = ("region", "bucket")
    delivers_host_keys = True

    def check(self, defaults: Mapping[str, Any], machines: Sequence[MachineSpec], fail: Fail) -> None:
        for i, m in enumerate(machines):
            o = {**defaults, **m.options}
            if not o.get("ssh_cidrs"):
                raise fail(
                    f"machines[{i}].ssh_cidrs",
                    "required (here or in flatcar-infra:aws): the networks allowed to reach SSH",
                    'e.g. ssh_cidrs: ["198.51.100.0/24"]; the reprovisioner logs in over SSH',
                )
            if o.get("architecture", "x86_64") not in ("x86_64", "arm64"):
                raise fail(
                    f"machines[{i}].architecture", f"must be x86_64 or arm64, got {o['architecture']!r}"
                )
            if o.get("volumes") and not (o.get("availability_zone") or o.get("subnet_id")):
                raise fail(
                    f"machines[{i}].availability_zone",
                    "required with volumes (here or in flatcar-infra:aws), unless subnet_id gives it",
                    "EBS volumes live in one zone: pinning it keeps the instance and its volumes together",
                )

    def build(self, ctx: StackContext) -> dict[str, FlatcarMachine]:
        spec = ctx.spec
        ssh = ctx.ssh_access()
        defaults = spec.target_defaults
        provider_opts: pulumi.ResourceOptions | None = None
        if "region" in defaults:
            provider = aws.Provider("aws", region=str(defaults["region"]))
            provider_opts = pulumi.ResourceOptions(providers=[provider])
        bucket: pulumi.Input[str] = (
            str(defaults["bucket"])
            if "bucket" in defaults
            else AwsConfigBucket("configs", opts=provider_opts).bucket
        )
        out: dict[str, FlatcarMachine] = {}
        for m in spec.machines:
            o = ctx.options(m)
            out[m.name] = AwsMachine(
                m.name,
                AwsMachineArgs(
                    config=ctx.config_of(m, ssh),
                    ssh=ssh,
                    policy=ctx.policy,
                    ssh_cidrs=list(o["ssh_cidrs"]),
                    inbound=ctx.inbound(o),
                    instance_type=str(o.get("instance_type", "t3.small")),
                    channel=str(o.get("channel", "stable")),  # type: ignore[arg-type]  # checked
                    architecture=str(o.get("architecture", "x86_64")),  # type: ignore[arg-type]
                    ami=o.get("ami"),
                    bucket=bucket,
                    key_name=o.get("key_name"),
                    vpc_id=o.get("vpc_id"),
                    subnet_id=o.get("subnet_id"),
                    availability_zone=o.get("availability_zone"),
                    root_volume_size=o.get("root_volume_size"),
                    volumes=[
                        AwsVolume(str(v["device_name"]), int(v["size_gb"]), str(v.get("type", "gp3")))
                        for v in o.get("volumes", ())
                    ],
                    elastic_ip=bool(o.get("elastic_ip", False)),
                    tags=dict(o.get("tags", {})),
                    object_key=o.get("object_key"),
                ),
                opts=provider_opts,
            )
        return out


TARGET = AwsTarget()
