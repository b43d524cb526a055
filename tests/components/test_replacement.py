"""Day two, under mocks: what a new Flatcar release, another channel, a rotated SSH key or a config
change does to the registered resources.

Each scenario runs the same program twice and compares the two registered graphs resource by
resource, input by input (the mock monitor records every ``RegisterResourceRequest``: inputs,
``ignoreChanges``, ``replacementTrigger``). A changed input counts unless the resource lists it in
``ignore_changes`` (the engine then keeps the old value, also when the resource is replaced). Two
checks: no changed input is one that forces the provider to replace the resource
(``FORCES_REPLACEMENT``, from the providers' schemas), and only the expected resources change.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

import asyncssh
import pytest

from flatcar_infra.components import (
    AwsMachine,
    AwsMachineArgs,
    AwsVolume,
    DigitalOceanMachine,
    DigitalOceanMachineArgs,
    DigitalOceanVolume,
    Hooks,
    SshAccess,
    flatcar_config,
)
from tests.components.mockgraph import LOCAL_OBJECT_TYPE, REPROVISION_TYPE, Graph, ignition_text, run_program
from tests.components.test_stack_program import stack_config

AMI = "aws:ec2/getAmi:getAmi"
OBJECT = "aws:s3/bucketObjectv2:BucketObjectv2"
DO_OBJECT = "digitalocean:index/spacesBucketObject:SpacesBucketObject"
HOOK = "command:local:Command"

FORCES_REPLACEMENT: dict[str, set[str]] = {
    # EC2: DOMAIN.md's list plus the other create-only fields of aws_instance
    "aws:ec2/instance:Instance": {
        "ami",
        "availabilityZone",
        "keyName",
        "subnetId",
        "privateIp",
        "placementGroup",
        "tenancy",
        "hostId",
        "ebsBlockDevices",
        "ephemeralBlockDevices",
        "networkInterfaces",
        "launchTemplate",
        "cpuOptions",
        "ipv6Addresses",
        "securityGroups",
        "associatePublicIpAddress",
        "hibernation",
        "userData",  # with userDataReplaceOnChange (set): the pointer only changes if the bucket moves
        "userDataReplaceOnChange",
    },
    "aws:ebs/volume:Volume": {"availabilityZone", "encrypted", "kmsKeyId", "snapshotId", "outpostArn"},
    "aws:ec2/volumeAttachment:VolumeAttachment": {"deviceName", "instanceId", "volumeId"},
    "aws:ec2/eip:Eip": {"domain", "address", "publicIpv4Pool", "networkBorderGroup"},
    "aws:ec2/eipAssociation:EipAssociation": {"allocationId", "instanceId", "networkInterfaceId", "publicIp"},
    "aws:ec2/securityGroup:SecurityGroup": {"name", "namePrefix", "description", "vpcId"},
    "aws:iam/role:Role": {"name", "namePrefix", "path"},
    "aws:iam/rolePolicy:RolePolicy": {"role", "name", "namePrefix"},
    "aws:iam/instanceProfile:InstanceProfile": {"name", "namePrefix", "path"},
    "aws:s3/bucket:Bucket": {"bucket", "bucketPrefix", "objectLockEnabled"},
    "aws:s3/bucketPublicAccessBlock:BucketPublicAccessBlock": {"bucket"},
    "aws:s3/bucketServerSideEncryptionConfiguration:BucketServerSideEncryptionConfiguration": {
        "bucket",
        "expectedBucketOwner",
    },
    OBJECT: {"bucket", "key"},
    "tls:index/privateKey:PrivateKey": {"algorithm", "ecdsaCurve", "rsaBits"},
    "random:index/randomId:RandomId": {"byteLength", "keepers", "prefix"},
    "digitalocean:index/droplet:Droplet": {"image", "region", "sshKeys", "userData", "vpcUuid"},
    "digitalocean:index/customImage:CustomImage": {"url", "distribution"},
    "digitalocean:index/volume:Volume": {"region", "name", "snapshotId", "initialFilesystemType"},
    "digitalocean:index/volumeAttachment:VolumeAttachment": {"dropletId", "volumeId"},
    "digitalocean:index/reservedIp:ReservedIp": {"region", "ipAddress"},
    "digitalocean:index/reservedIpAssignment:ReservedIpAssignment": {"ipAddress", "dropletId"},
    "digitalocean:index/firewall:Firewall": set(),
    DO_OBJECT: {"bucket", "region", "key"},
    HOOK: {"triggers"},  # with `update` set, other changes run `update`
    "pulumi:providers:aws": set(),
    # our dynamic resources: their diff updates (Reprovision replaces only under `replace`)
    REPROVISION_TYPE: set(),
    LOCAL_OBJECT_TYPE: set(),
}


def changes(a: Graph, b: Graph) -> dict[tuple[str, str], set[str]]:
    """``(type, name) -> changed inputs`` of every custom resource; inputs the resource ignores
    are not changes. Both runs must register the same resources."""
    assert sorted(r.urn for r in a.resources) == sorted(r.urn for r in b.resources), "added or removed"
    out: dict[tuple[str, str], set[str]] = {}
    for new in b.resources:
        old = a.by_urn(new.urn)
        if not new.custom:
            continue
        assert new.type in FORCES_REPLACEMENT, f"classify {new.type}: which inputs force a replacement?"
        keys = {k for k in set(old.inputs) | set(new.inputs) if old.plain(k) != new.plain(k)}
        keys -= {"__provider"} if old.plain("__provider") == new.plain("__provider") else set()
        if old.replacement_trigger != new.replacement_trigger:
            keys.add("(replacement_trigger)")
        keys -= set(new.ignore_changes)
        if keys:
            out[(new.type, new.name)] = keys
    return out


def forced(diff: dict[tuple[str, str], set[str]]) -> dict[tuple[str, str], set[str]]:
    """The changes that would make the engine replace a resource."""
    out = {}
    for (typ, name), keys in diff.items():
        hit = (keys & FORCES_REPLACEMENT[typ]) | ({"(replacement_trigger)"} & keys)
        if hit:
            out[(typ, name)] = hit
    return out


def new_key() -> str:
    return asyncssh.generate_private_key("ssh-ed25519").export_private_key().decode()


def public_of(private: str) -> str:
    return asyncssh.import_private_key(private).export_public_key().decode().strip()


def aws_machine(
    *,
    motd: str = "one",
    private_key: str,
    channel: str = "stable",
    extra_keys: tuple[str, ...] = (),
    hooks: Hooks | None = None,
) -> Callable[[], None]:
    def program() -> None:
        AwsMachine(
            "web",
            AwsMachineArgs(
                config=flatcar_config(text=ignition_text(motd), filename="web.ign"),
                ssh=SshAccess(private_key=private_key, authorized_keys=extra_keys),
                ssh_cidrs=["198.51.100.0/24"],
                channel=channel,  # type: ignore[arg-type]
                availability_zone="eu-central-1a",
                volumes=[AwsVolume("/dev/sdf", 20)],
                elastic_ip=True,
                hooks=hooks or Hooks(),
            ),
        )

    return program


def ami(image: str) -> dict[str, dict[str, Any]]:
    return {AMI: {"id": image, "name": "Flatcar-stable-9999.0.0-hvm"}}


@pytest.fixture(scope="module")
def keys() -> tuple[str, str]:
    return new_key(), new_key()


# --- AWS ---------------------------------------------------------------------------------------------


def test_aws_a_new_flatcar_release_changes_nothing(keys: tuple[str, str]) -> None:
    a = run_program(aws_machine(private_key=keys[0]), invokes=ami("ami-04593"))
    b = run_program(aws_machine(private_key=keys[0]), invokes=ami("ami-04600"))
    assert a.one("aws:ec2/instance:Instance").plain("ami") != b.one("aws:ec2/instance:Instance").plain("ami")
    assert "ami" in b.one("aws:ec2/instance:Instance").ignore_changes
    assert changes(a, b) == {}


def test_aws_another_channel_changes_nothing(keys: tuple[str, str]) -> None:
    a = run_program(aws_machine(private_key=keys[0]), invokes=ami("ami-stable"))
    b = run_program(aws_machine(private_key=keys[0], channel="beta"), invokes=ami("ami-beta"))
    assert changes(a, b) == {}, "Flatcar switches channels itself (GROUP in update.conf, via the config)"


def test_aws_rotating_the_ssh_key_is_a_reprovision_never_a_replacement(keys: tuple[str, str]) -> None:
    old, new = keys
    base = run_program(aws_machine(private_key=old, hooks=Hooks(after="true")))
    # step 1: authorize the new key while logging in with the old one
    step1 = run_program(aws_machine(private_key=old, extra_keys=(public_of(new),), hooks=Hooks(after="true")))
    # step 2: log in with the new key; the old one is no longer authorized
    step2 = run_program(aws_machine(private_key=new, hooks=Hooks(after="true")))
    for a, b in ((base, step1), (step1, step2)):
        diff = changes(a, b)
        assert forced(diff) == {}
        assert set(diff) == {
            (OBJECT, "web-config"),
            (REPROVISION_TYPE, "web-reprovision"),
            (HOOK, "web-after-hook"),
        }
        assert diff[(REPROVISION_TYPE, "web-reprovision")] <= {
            "config",
            "config_hash",
            "manifest",
            "private_key",
        }
        assert diff[(HOOK, "web-after-hook")] == {"environment"}
    users = [
        json.loads(g.one(REPROVISION_TYPE).plain("config"))["passwd"]["users"][0]["sshAuthorizedKeys"]
        for g in (base, step1, step2)
    ]
    assert users == [[public_of(old)], [public_of(old), public_of(new)], [public_of(new)]]


def test_aws_a_config_change_touches_only_the_object_and_the_reprovision(keys: tuple[str, str]) -> None:
    a = run_program(aws_machine(motd="one", private_key=keys[0]))
    b = run_program(aws_machine(motd="two", private_key=keys[0]))
    diff = changes(a, b)
    assert set(diff) == {(OBJECT, "web-config"), (REPROVISION_TYPE, "web-reprovision")}
    assert diff[(OBJECT, "web-config")] == {"content"}
    assert diff[(REPROVISION_TYPE, "web-reprovision")] == {"config", "config_hash", "manifest"}
    assert forced(diff) == {}


def test_aws_stack_program_survives_a_release_unchanged(ssh_key: dict[str, str]) -> None:
    cfg = stack_config("aws", ssh={"private_key_file": ssh_key["file"]})

    def stack(image: str) -> Graph:
        def program() -> None:
            import runpy

            from tests.components.test_stack_program import ROOT

            runpy.run_path(str(ROOT / "__main__.py"), run_name="__main__")

        return run_program(program, stack="aws", config=cfg, invokes=ami(image))

    assert changes(stack("ami-04593"), stack("ami-04600")) == {}


def test_the_replace_strategy_is_the_only_path_to_a_new_instance(keys: tuple[str, str]) -> None:
    from flatcar_infra.components import Policy

    def program(motd: str) -> Callable[[], None]:
        def run() -> None:
            AwsMachine(
                "web",
                AwsMachineArgs(
                    config=flatcar_config(text=ignition_text(motd)),
                    ssh=SshAccess(private_key=keys[0]),
                    ssh_cidrs=["198.51.100.0/24"],
                    policy=Policy(strategy="replace"),
                ),
            )

        return run

    diff = changes(run_program(program("one")), run_program(program("two")))
    assert forced(diff) == {("aws:ec2/instance:Instance", "web-instance"): {"(replacement_trigger)"}}


# --- DigitalOcean ------------------------------------------------------------------------------------


def do_machine(*, motd: str = "one", private_key: str, channel: str = "stable") -> Callable[[], None]:
    def program() -> None:
        DigitalOceanMachine(
            "web",
            DigitalOceanMachineArgs(
                config=flatcar_config(text=ignition_text(motd), filename="web.ign"),
                ssh=SshAccess(private_key=private_key),
                region="fra1",
                size="s-1vcpu-2gb",
                spaces_bucket="configs",
                ssh_cidrs=["198.51.100.0/24"],
                channel=channel,  # type: ignore[arg-type]
                ssh_keys=["aa:bb"],
                volumes=[DigitalOceanVolume("data", 10)],
                reserved_ip=True,
            ),
        )

    return program


def test_digitalocean_another_channel_changes_nothing(keys: tuple[str, str]) -> None:
    a = run_program(do_machine(private_key=keys[0]))
    b = run_program(do_machine(private_key=keys[0], channel="beta"))
    image = b.one("digitalocean:index/customImage:CustomImage")
    assert image.plain("url") != a.one("digitalocean:index/customImage:CustomImage").plain("url")
    assert changes(a, b) == {}, "the image a droplet was created from stays"


def test_digitalocean_rotating_the_ssh_key_and_changing_the_config_update_in_place(
    keys: tuple[str, str],
) -> None:
    base = run_program(do_machine(private_key=keys[0]))
    rotated = run_program(do_machine(private_key=keys[1]))
    changed = run_program(do_machine(private_key=keys[0], motd="two"))
    for other in (rotated, changed):
        diff = changes(base, other)
        assert forced(diff) == {}
        assert set(diff) == {(DO_OBJECT, "web-config"), (REPROVISION_TYPE, "web-reprovision")}
        assert diff[(DO_OBJECT, "web-config")] == {"content"}


def test_mocked_cloud_is_deterministic(keys: tuple[str, str]) -> None:
    """Guard for the comparisons above: the same program twice registers identical graphs."""
    assert (
        changes(run_program(aws_machine(private_key=keys[0])), run_program(aws_machine(private_key=keys[0])))
        == {}
    )
    assert (
        changes(run_program(do_machine(private_key=keys[0])), run_program(do_machine(private_key=keys[0])))
        == {}
    )


def test_changes_sees_a_changed_forcing_input(keys: tuple[str, str]) -> None:
    """Guard: the comparison is not blind (a user-data change without ignore_changes shows)."""

    def program(bucket: str) -> Callable[[], None]:
        def run() -> None:
            AwsMachine(
                "web",
                AwsMachineArgs(
                    config=flatcar_config(text=ignition_text("x")),
                    ssh=SshAccess(private_key=keys[0]),
                    ssh_cidrs=["198.51.100.0/24"],
                    bucket=bucket,
                ),
            )

        return run

    diff = forced(changes(run_program(program("a")), run_program(program("b"))))
    assert diff[("aws:ec2/instance:Instance", "web-instance")] == {"userData"}
    assert diff[(OBJECT, "web-config")] == {"bucket"}


# --- upgrading from flatcar-infra 0.1 ------------------------------------------------------------------


def test_object_key_keeps_the_pointer_of_a_machine_made_by_0_1(keys: tuple[str, str]) -> None:
    """0.1 keyed objects without the project (AWS: flatcar-infra/<stack>/<machine>/config.ign;
    DigitalOcean: flatcar-infra/<hex>/config.ign). Giving that key keeps the user-data byte for
    byte, so the upgrade replaces nothing; without it the pointer moves (and would replace)."""
    from flatcar_infra.components.hosting import pointer_config

    def aws(object_key: str | None) -> Callable[[], None]:
        def program() -> None:
            AwsMachine("web", AwsMachineArgs(
                config=flatcar_config(text=ignition_text("one"), filename="web.ign"),
                ssh=SshAccess(private_key=keys[0]), ssh_cidrs=["198.51.100.0/24"], bucket="configs",
                object_key=object_key))
        return program

    old_key = "flatcar-infra/stack/web/config.ign"  # what 0.1 wrote for stack "stack", machine "web"
    kept = run_program(aws(old_key)).one("aws:ec2/instance:Instance").plain("userData")
    assert kept == pointer_config(f"s3://configs/{old_key}")
    moved = run_program(aws(None)).one("aws:ec2/instance:Instance").plain("userData")
    assert moved != kept and "/flatcar-infra/test/web/" in moved  # project "flatcar-infra", stack "test"

    def do(object_key: str | None) -> Callable[[], None]:
        def program() -> None:
            DigitalOceanMachine("web", DigitalOceanMachineArgs(
                config=flatcar_config(text=ignition_text("one"), filename="web.ign"),
                ssh=SshAccess(private_key=keys[0]), region="fra1", size="s-1vcpu-2gb",
                spaces_bucket="configs", ssh_cidrs=["198.51.100.0/24"], object_key=object_key))
        return program

    old_do = "flatcar-infra/0123456789abcdef0123456789abcdef/config.ign"
    g = run_program(do(old_do))
    assert g.one("digitalocean:index/droplet:Droplet").plain("userData") == pointer_config(
        f"https://configs.fra1.digitaloceanspaces.com/{old_do}")
    assert g.one(DO_OBJECT).plain("key") == old_do

    with pytest.raises(Exception, match="is not an object key"):
        AwsMachineArgs(config=flatcar_config(text=ignition_text("one")), ssh=SshAccess(private_key=keys[0]),
                       ssh_cidrs=["198.51.100.0/24"], object_key="/abs/key")
