"""Machine components: one typed component per target, each wiring a ``Reprovision`` resource.

The instance never sees the config itself: cloud user-data is the hosting's pointer, which does not
change with the config, so a config change updates the bucket object and then the ``Reprovision``
resource (which depends on that object) applies it in place over SSH. Only the ``replace``
strategy ties the instance to the config hash, and then replaces it create-before-delete.
"""

from __future__ import annotations

import sys
from collections.abc import Sequence
from typing import Any

import asyncssh
import pulumi
import pulumi_aws as aws
import pulumi_command as command
import pulumi_digitalocean as digitalocean

from flatcar_infra.components.args import (
    AwsMachineArgs,
    Delivery,
    DigitalOceanMachineArgs,
    ExistingMachineArgs,
    Hooks,
    MachineCommon,
    SshAccess,
)
from flatcar_infra.components.hookrun import ENV_PREFIX
from flatcar_infra.components.hosting import AwsConfigBucket, AwsConfigHosting, DigitalOceanConfigHosting

FLATCAR_AMI_OWNER = "075585003325"


def digitalocean_image_url(channel: str) -> str:
    return (
        f"https://{channel}.release.flatcar-linux.net/amd64-usr/current/"
        "flatcar_production_digitalocean_image.bin.bz2"
    )


def public_key_of(private_key: str) -> str:
    """The OpenSSH public key line of a private key (what a cloud installs for the user)."""
    try:
        key = asyncssh.import_private_key(private_key)
    except (asyncssh.KeyImportError, ValueError) as exc:
        raise pulumi.RunError(f"ssh.private_key: not a private key: {exc}") from None
    return key.export_public_key("openssh").decode().strip()


def ssh_public_key(ssh: SshAccess) -> pulumi.Output[str]:
    """``ssh.public_key``, else derived from the private key (not secret: a public key is not one)."""
    if ssh.public_key is not None:
        return pulumi.Output.from_input(ssh.public_key)
    return pulumi.Output.unsecret(pulumi.Output.from_input(ssh.private_key).apply(public_key_of))


def depends_on_of(opts: pulumi.ResourceOptions | None) -> list[pulumi.Resource]:
    """The resources in ``opts.depends_on`` (one resource or a list)."""
    deps = opts.depends_on if opts is not None else None
    if isinstance(deps, pulumi.Resource):
        return [deps]
    if isinstance(deps, Sequence):
        return [d for d in deps if isinstance(d, pulumi.Resource)]
    return []


class FlatcarMachine(pulumi.ComponentResource):
    """Shared wiring: the ``Reprovision`` resource, hooks, and the common outputs."""

    public_ip: pulumi.Output[str]
    config_hash: pulumi.Output[str]
    applied_hash: pulumi.Output[str]
    host_key: pulumi.Output[str]

    def __init__(
        self, t: str, name: str, props: Any = None, opts: pulumi.ResourceOptions | None = None
    ) -> None:
        super().__init__(t, name, props, opts)
        # Children never inherit ``depends_on`` from their parent: passed on explicitly, so that
        # ``depends_on=[other_machine]`` orders this machine's reprovision after the other's.
        self._user_depends_on = depends_on_of(opts)

    def _wire(
        self,
        name: str,
        args: MachineCommon,
        *,
        host: pulumi.Input[str],
        port: pulumi.Input[int],
        host_key: pulumi.Input[str] | None,
        delivery: Delivery,
        config_url: pulumi.Input[str] | None,
        depends_on: Sequence[pulumi.Resource],
    ) -> None:
        from flatcar_infra.provider import Reprovision

        depends_on = [*depends_on, *self._user_depends_on]
        before = self._hook(
            name, "before", args.hooks, args, host, port, host_key, args.config.hash, depends_on
        )
        self.reprovision = Reprovision(
            f"{name}-reprovision",
            host=host,
            port=port,
            user=args.ssh.user,
            private_key=pulumi.Output.secret(args.ssh.private_key),
            host_key=host_key,
            config=args.config.canonical,
            config_hash=args.config.hash,
            manifest=args.config.manifest,
            policy=args.policy,
            delivery=delivery,
            config_url=config_url,
            opts=pulumi.ResourceOptions(parent=self, depends_on=[*depends_on, *([before] if before else [])]),
        )
        self._hook(
            name,
            "after",
            args.hooks,
            args,
            host,
            port,
            self.reprovision.host_key,
            self.reprovision.applied_hash,
            [self.reprovision],
        )
        self.config_hash = args.config.hash
        self.applied_hash = self.reprovision.applied_hash
        self.host_key = self.reprovision.host_key

    def _hook(
        self,
        name: str,
        when: str,
        hooks: Hooks,
        args: MachineCommon,
        host: pulumi.Input[str],
        port: pulumi.Input[int],
        host_key: pulumi.Input[str] | None,
        trigger: pulumi.Input[str],
        depends_on: Sequence[pulumi.Resource],
    ) -> command.local.Command | None:
        cmd = getattr(hooks, when)
        if not cmd:
            return None
        if host_key is None:
            raise pulumi.RunError(
                f"{name}: hooks.{when} runs before the first contact and needs a pinned host key "
                "(ExistingMachineArgs.host_key); use hooks.after, which runs with the recorded key"
            )
        env = {
            f"{ENV_PREFIX}HOST": host,
            f"{ENV_PREFIX}PORT": pulumi.Output.from_input(port).apply(str),
            f"{ENV_PREFIX}USER": args.ssh.user,
            f"{ENV_PREFIX}HOST_KEY": host_key,
            f"{ENV_PREFIX}PRIVATE_KEY": pulumi.Output.secret(args.ssh.private_key),
            f"{ENV_PREFIX}COMMAND": cmd,
            # An input, not a trigger: pulumi-command replaces (reruns ``create``) on a trigger
            # change but runs ``update`` when another input changes.
            f"{ENV_PREFIX}CONFIG_HASH": trigger,
        }
        run = f"{sys.executable} -m flatcar_infra.components.hookrun"
        return command.local.Command(
            f"{name}-{when}-hook",
            # "before" only matters for a change: a new machine has nothing to drain yet.
            create=run if when == "after" else None,
            update=run,
            environment=env,
            opts=pulumi.ResourceOptions(parent=self, depends_on=list(depends_on)),
        )

    def _finish(self) -> None:
        self.register_outputs(
            {
                "public_ip": self.public_ip,
                "config_hash": self.config_hash,
                "applied_hash": self.applied_hash,
                "host_key": self.host_key,
            }
        )


def _instance_options(parent: pulumi.Resource, args: MachineCommon, **extra: Any) -> pulumi.ResourceOptions:
    """The ``replace`` strategy replaces the instance when the config changes, new one first."""
    if args.policy.strategy == "replace":
        return pulumi.ResourceOptions(
            parent=parent, replacement_trigger=args.config.hash, delete_before_replace=False, **extra
        )
    return pulumi.ResourceOptions(parent=parent, **extra)


class FlatcarDigitalOceanImage(pulumi.ComponentResource):
    """The channel's Flatcar DigitalOcean image uploaded as a custom image (share between droplets)."""

    image_id: pulumi.Output[str]

    def __init__(
        self, name: str, *, channel: str, regions: Sequence[str], opts: pulumi.ResourceOptions | None = None
    ):
        super().__init__("flatcar-infra:digitalocean:FlatcarImage", name, None, opts)
        self.image = digitalocean.CustomImage(
            f"{name}-image",
            name=f"flatcar-{channel}",
            url=digitalocean_image_url(channel),
            regions=list(regions),
            distribution="Unknown OS",
            description=f"Flatcar Container Linux ({channel} channel)",
            opts=pulumi.ResourceOptions(parent=self),
        )
        self.image_id = self.image.image_id.apply(str)
        self.register_outputs({"image_id": self.image_id})


class DigitalOceanMachine(FlatcarMachine):
    """A Flatcar droplet whose config lives in Spaces, reprovisioned in place over SSH."""

    def __init__(self, name: str, args: DigitalOceanMachineArgs, opts: pulumi.ResourceOptions | None = None):
        super().__init__("flatcar-infra:digitalocean:Machine", name, None, opts)
        child = pulumi.ResourceOptions(parent=self)
        self.hosting = DigitalOceanConfigHosting(
            name,
            bucket=args.spaces_bucket,
            region=args.spaces_region or args.region,
            content=args.config.canonical,
            allow_secrets=args.allow_secrets,
            opts=child,
        )
        image: pulumi.Input[str]
        if args.image is not None:
            image = args.image
        else:
            image = FlatcarDigitalOceanImage(
                name, channel=args.channel, regions=[args.region], opts=child
            ).image_id
        self.droplet = digitalocean.Droplet(
            f"{name}-droplet",
            name=name,
            image=image,
            region=args.region,
            size=args.size,
            ssh_keys=list(args.ssh_keys),
            tags=list(args.tags),
            user_data=self.hosting.pointer,
            vpc_uuid=args.vpc_uuid,
            opts=_instance_options(self, args),
        )
        attachments: list[pulumi.Resource] = []
        for vol in args.volumes:
            volume = digitalocean.Volume(
                f"{name}-{vol.name}",
                name=f"{name}-{vol.name}",
                region=args.region,
                size=vol.size_gb,
                opts=child,
            )
            attachments.append(
                digitalocean.VolumeAttachment(
                    f"{name}-{vol.name}-attachment",
                    droplet_id=self.droplet.id.apply(int),
                    volume_id=volume.id,
                    opts=child,
                )
            )
        self.public_ip = self.droplet.ipv4_address
        if args.reserved_ip:
            self.reserved_ip = digitalocean.ReservedIp(f"{name}-ip", region=args.region, opts=child)
            assignment = digitalocean.ReservedIpAssignment(
                f"{name}-ip-assignment",
                ip_address=self.reserved_ip.ip_address,
                droplet_id=self.droplet.id.apply(int),
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
            host_key=None,
            delivery="pointer",
            config_url=self.hosting.url,
            depends_on=[self.hosting.object, self.droplet, *attachments],
        )
        self._finish()


def flatcar_ami(
    channel: str, architecture: str, opts: pulumi.InvokeOptions | None = None
) -> pulumi.Output[str]:
    """The newest official Flatcar AMI of a channel (owner 075585003325)."""
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


class AwsMachine(FlatcarMachine):
    """A Flatcar EC2 instance reading its config from a private S3 object with its instance role."""

    def __init__(self, name: str, args: AwsMachineArgs, opts: pulumi.ResourceOptions | None = None):
        super().__init__("flatcar-infra:aws:Machine", name, None, opts)
        child = pulumi.ResourceOptions(parent=self)
        bucket: pulumi.Input[str]
        bucket = args.bucket if args.bucket is not None else AwsConfigBucket(name, opts=child).bucket
        self.hosting = AwsConfigHosting(
            name,
            bucket=bucket,
            key=f"flatcar-infra/{pulumi.get_stack()}/{name}/config.ign",
            content=args.config.canonical,
            opts=child,
        )
        key_name: pulumi.Input[str]
        if args.key_name is not None:
            key_name = args.key_name
        else:
            key_name = aws.ec2.KeyPair(
                f"{name}-key", public_key=ssh_public_key(args.ssh), opts=child
            ).key_name
        self.security_group = aws.ec2.SecurityGroup(
            f"{name}-sg",
            description=f"flatcar-infra {name}: SSH from the operator networks",
            vpc_id=args.vpc_id,
            ingress=[
                aws.ec2.SecurityGroupIngressArgs(
                    protocol="tcp", from_port=22, to_port=22, cidr_blocks=list(args.ssh_cidrs)
                )
            ],
            # Ignition fetches the config from S3 and Flatcar updates itself: outbound stays open.
            egress=[
                aws.ec2.SecurityGroupEgressArgs(
                    protocol="-1", from_port=0, to_port=0, cidr_blocks=["0.0.0.0/0"]
                )
            ],
            opts=child,
        )
        ami = (
            args.ami
            if args.ami is not None
            else flatcar_ami(args.channel, args.architecture, pulumi.InvokeOptions(parent=self))
        )
        self.instance = aws.ec2.Instance(
            f"{name}-instance",
            ami=ami,
            instance_type=args.instance_type,
            key_name=key_name,
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
            opts=_instance_options(self, args, depends_on=[self.hosting.object]),
        )
        attachments: list[pulumi.Resource] = []
        for i, vol in enumerate(args.volumes):
            volume = aws.ebs.Volume(
                f"{name}-volume-{i}",
                availability_zone=self.instance.availability_zone,
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
        self._wire(
            name,
            args,
            host=self.public_ip,
            port=22,
            host_key=None,
            delivery="pointer",
            config_url=self.hosting.source,
            depends_on=[self.hosting.object, self.instance, *attachments],
        )
        self._finish()


class ExistingMachine(FlatcarMachine):
    """A host you already have (bare metal, the local VM): config delivered over SSH."""

    def __init__(self, name: str, args: ExistingMachineArgs, opts: pulumi.ResourceOptions | None = None):
        super().__init__("flatcar-infra:existing:Machine", name, None, opts)
        if args.policy.strategy == "replace":
            raise pulumi.RunError(
                f"{name}: policy.strategy 'replace' needs a cloud that can replace the machine; "
                "use in-place or wipe-root for an existing host"
            )
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
        )
        self._finish()
