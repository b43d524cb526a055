"""Machine components under mocks: resource graph, stable pointer, scoped IAM, secrets, strategies."""

from __future__ import annotations

import json
import re
import sys
from typing import Any

import pulumi
import pytest

from flatcar_infra.components import (
    AwsMachine,
    AwsMachineArgs,
    AwsVolume,
    DigitalOceanMachine,
    DigitalOceanMachineArgs,
    DigitalOceanVolume,
    ExistingMachine,
    ExistingMachineArgs,
    Hooks,
    Policy,
    SshAccess,
    flatcar_config,
)
from flatcar_infra.components.hookrun import HOOK_COMMAND
from flatcar_infra.components.hosting import POINTER_VERSION
from tests.components.mockgraph import REPROVISION_TYPE, Graph, ignition_text, run_program

AWS_OBJECT = "aws:s3/bucketObjectv2:BucketObjectv2"
DO_OBJECT = "digitalocean:index/spacesBucketObject:SpacesBucketObject"


def aws_program(motd: str, ssh_key: dict[str, str], **extra: Any) -> Graph:
    def program() -> None:
        config = flatcar_config(text=ignition_text(motd), filename="web.ign")
        AwsMachine(
            "web",
            AwsMachineArgs(
                config=config,
                ssh=SshAccess(private_key=ssh_key["private"]),
                ssh_cidrs=["198.51.100.0/24"],
                **extra,
            ),
        )

    return run_program(program)


def do_program(motd: str, ssh_key: dict[str, str], **extra: Any) -> Graph:
    def program() -> None:
        config = flatcar_config(text=ignition_text(motd), filename="web.ign")
        DigitalOceanMachine(
            "web",
            DigitalOceanMachineArgs(
                config=config,
                ssh=SshAccess(private_key=ssh_key["private"]),
                region="fra1",
                size="s-1vcpu-2gb",
                spaces_bucket="configs",
                **{"ssh_keys": ["aa:bb"], "ssh_cidrs": ["198.51.100.0/24"], **extra},
            ),
        )

    return run_program(program)


def assert_children_parented(g: Graph, component_type: str) -> None:
    """Every resource but the component sits below it (``parent=self`` all the way down)."""
    root = g.one(component_type)
    for r in g.resources:
        if r is root:
            continue
        node: Any = r
        while node is not None and node is not root:
            node = g.parent_of(node)
        assert node is root, f"{r.type} {r.name} is not below {component_type}"


# --- AWS -------------------------------------------------------------------------------------------


def test_aws_graph_types_parents_and_dependencies(ssh_key: dict[str, str]) -> None:
    g = aws_program("one", ssh_key)
    assert sorted(set(g.types())) == sorted(
        {
            "flatcar-infra:aws:Machine",
            "flatcar-infra:aws:ConfigBucket",
            "flatcar-infra:aws:ConfigHosting",
            "aws:s3/bucket:Bucket",
            "aws:s3/bucketPublicAccessBlock:BucketPublicAccessBlock",
            "aws:s3/bucketServerSideEncryptionConfiguration:BucketServerSideEncryptionConfiguration",
            AWS_OBJECT,
            "aws:iam/role:Role",
            "aws:iam/rolePolicy:RolePolicy",
            "aws:iam/instanceProfile:InstanceProfile",
            "tls:index/privateKey:PrivateKey",
            "aws:ec2/securityGroup:SecurityGroup",
            "aws:ec2/instance:Instance",
            REPROVISION_TYPE,
        }
    )
    assert_children_parented(g, "flatcar-infra:aws:Machine")
    machine = g.one("flatcar-infra:aws:Machine")
    hosting = g.one("flatcar-infra:aws:ConfigHosting")
    obj, instance, rep = g.one(AWS_OBJECT), g.one("aws:ec2/instance:Instance"), g.one(REPROVISION_TYPE)
    assert g.parent_of(hosting) is machine and g.parent_of(obj) is hosting and g.parent_of(rep) is machine
    assert g.depends_on(rep, obj), "the reprovision must wait for the new object content"
    assert g.depends_on(rep, instance)
    assert g.depends_on(instance, obj), "the first boot must find its config"
    assert g.depends_on(instance, g.one("aws:iam/instanceProfile:InstanceProfile"))
    # the bucket name reaches the object only after the protections exist
    assert g.depends_on(obj, g.one("aws:s3/bucketPublicAccessBlock:BucketPublicAccessBlock"))
    assert g.depends_on(
        obj, g.one("aws:s3/bucketServerSideEncryptionConfiguration:BucketServerSideEncryptionConfiguration")
    )
    assert rep.plain("delivery") == "pointer"
    assert rep.plain("host") == instance.outputs["publicIp"]
    assert rep.plain("machine_identity") == instance.id and instance.id.startswith("i-")
    assert instance.plain("keyName") is None, "no EC2 key pair: SSH keys come through the config"
    assert {"ami", "keyName"} <= set(instance.ignore_changes)


def test_aws_pointer_is_byte_identical_across_configs_while_the_object_changes(
    ssh_key: dict[str, str],
) -> None:
    a, b = aws_program("one", ssh_key), aws_program("two", ssh_key)
    ua, ub = (g.one("aws:ec2/instance:Instance").plain("userData") for g in (a, b))
    assert ua == ub
    bucket = a.one("aws:s3/bucket:Bucket").outputs["bucket"]
    assert json.loads(ua) == {
        "ignition": {
            "version": POINTER_VERSION,
            "config": {
                "replace": {"source": f"s3://{bucket}/flatcar-infra/flatcar-infra/test/web/config.ign"}
            },
        }
    }
    oa, ob = a.one(AWS_OBJECT), b.one(AWS_OBJECT)
    assert oa.plain("content") != ob.plain("content")
    assert oa.plain("key") == ob.plain("key")
    ha, hb = a.one(REPROVISION_TYPE).plain("config_hash"), b.one(REPROVISION_TYPE).plain("config_hash")
    assert ha != hb and ha not in ua and hb not in ub, "the pointer never carries the hash"
    assert a.one("aws:ec2/instance:Instance").replacement_trigger is None


def test_aws_bucket_is_private_and_encrypted_and_iam_reads_exactly_one_object(
    ssh_key: dict[str, str],
) -> None:
    g = aws_program("one", ssh_key)
    pab = g.one("aws:s3/bucketPublicAccessBlock:BucketPublicAccessBlock").inputs
    assert all(
        pab[k] is True
        for k in ("blockPublicAcls", "blockPublicPolicy", "ignorePublicAcls", "restrictPublicBuckets")
    )
    sse = g.one(
        "aws:s3/bucketServerSideEncryptionConfiguration:BucketServerSideEncryptionConfiguration"
    ).inputs
    assert sse["rules"][0]["applyServerSideEncryptionByDefault"]["sseAlgorithm"] == "AES256"
    bucket = g.one("aws:s3/bucket:Bucket").outputs["bucket"]
    obj = g.one(AWS_OBJECT)
    assert obj.plain("contentType") == "application/json"
    policy = json.loads(g.one("aws:iam/rolePolicy:RolePolicy").plain("policy"))
    assert policy["Statement"] == [
        {"Effect": "Allow", "Action": "s3:GetObject", "Resource": f"arn:aws:s3:::{bucket}/{obj.plain('key')}"}
    ]
    assert "*" not in json.dumps(policy)
    trust = json.loads(g.one("aws:iam/role:Role").plain("assumeRolePolicy"))
    assert trust["Statement"][0]["Principal"] == {"Service": "ec2.amazonaws.com"}
    instance = g.one("aws:ec2/instance:Instance")
    assert (
        instance.plain("iamInstanceProfile")
        == g.one("aws:iam/instanceProfile:InstanceProfile").outputs["name"]
    )


def test_aws_ami_lookup_security_group_volumes_and_elastic_ip(ssh_key: dict[str, str]) -> None:
    g = aws_program(
        "one",
        ssh_key,
        architecture="arm64",
        channel="beta",
        elastic_ip=True,
        availability_zone="eu-central-1c",
        volumes=[AwsVolume("/dev/sdf", 50)],
    )
    _token, args = next(i for i in g.invokes if i[0] == "aws:ec2/getAmi:getAmi")
    assert args["owners"] == ["075585003325"] and args["mostRecent"] is True
    assert {f["name"]: f["values"] for f in args["filters"]} == {
        "name": ["Flatcar-beta-*"],
        "architecture": ["arm64"],
    }
    instance = g.one("aws:ec2/instance:Instance")
    assert instance.plain("ami") == "ami-0flatcararm64" and "ami" in instance.ignore_changes
    assert instance.plain("availabilityZone") == "eu-central-1c"
    sg = g.one("aws:ec2/securityGroup:SecurityGroup").inputs
    assert sg["ingress"] == [
        {"cidrBlocks": ["198.51.100.0/24"], "fromPort": 22, "protocol": "tcp", "toPort": 22}
    ]
    eip = g.one("aws:ec2/eip:Eip")
    rep = g.one(REPROVISION_TYPE)
    assert rep.plain("host") == eip.outputs["publicIp"], "the reprovisioner dials the stable address"
    assert g.depends_on(rep, g.one("aws:ec2/eipAssociation:EipAssociation"))
    vol = g.one("aws:ebs/volume:Volume")
    assert vol.plain("size") == 50 and vol.plain("encrypted") is True
    assert vol.plain("availabilityZone") == "eu-central-1c", "the pinned zone, not the instance's output"
    assert not g.depends_on(vol, instance)
    att = g.one("aws:ec2/volumeAttachment:VolumeAttachment")
    assert att.plain("deviceName") == "/dev/sdf" and g.depends_on(att, vol)


def test_aws_replace_strategy_ties_the_instance_to_the_hash_create_before_delete(
    ssh_key: dict[str, str],
) -> None:
    g = aws_program("one", ssh_key, policy=Policy(strategy="replace"))
    instance, rep = g.one("aws:ec2/instance:Instance"), g.one(REPROVISION_TYPE)
    assert instance.replacement_trigger == rep.plain("config_hash")
    assert not rep.is_secret("config_hash"), "a generated host key makes the config secret, not its hash"
    assert instance.delete_before_replace is False
    assert rep.plain("policy")["strategy"] == "replace"


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        ({"ssh_cidrs": []}, "ssh_cidrs: required"),
        ({"ssh_cidrs": "10.0.0.0/8"}, "a list of CIDRs, not a string"),
        ({"ssh_cidrs": ["10.0.0.1/8"]}, "'10.0.0.1/8' is not a network"),
        (
            {"ssh_cidrs": ["10.0.0.0/8"], "volumes": [AwsVolume("/dev/sdf", 5)]},
            "availability_zone: required with volumes",
        ),
    ],
)
def test_aws_args_refuse_open_or_unpinned_settings(extra: dict[str, Any], message: str) -> None:
    with pytest.raises(pulumi.RunError, match=message):
        run_program(
            lambda: AwsMachineArgs(
                config=flatcar_config(text=ignition_text("x")), ssh=SshAccess(private_key="k"), **extra
            )
        )


def test_aws_volumes_take_the_subnet_zone_which_never_moves(ssh_key: dict[str, str]) -> None:
    g = aws_program("one", ssh_key, subnet_id="subnet-1", volumes=[AwsVolume("/dev/sdf", 5)])
    assert ("aws:ec2/getSubnet:getSubnet", {"id": "subnet-1"}) in g.invokes
    assert g.one("aws:ebs/volume:Volume").plain("availabilityZone") == "eu-central-1b"
    assert g.one("aws:ec2/instance:Instance").plain("availabilityZone") == "eu-central-1b"


def test_aws_host_key_is_generated_delivered_privately_and_pinned(ssh_key: dict[str, str]) -> None:
    """No trust on first use on AWS: the host key resource's public key is what ``Reprovision``
    pins, and its private key is in the (secret) config at /etc/ssh, which only the instance
    role can read."""
    from flatcar_infra.compiler.dataurl import decode_data_url

    g = aws_program("one", ssh_key)
    key = g.one("tls:index/privateKey:PrivateKey")
    assert key.plain("algorithm") == "ED25519"
    rep, obj = g.one(REPROVISION_TYPE), g.one(AWS_OBJECT)
    assert rep.plain("host_key") == key.outputs["publicKeyOpenssh"].strip()
    assert rep.is_secret("config") and obj.is_secret("content")
    files = {f["path"]: f for f in json.loads(rep.plain("config"))["storage"]["files"]}
    private = files["/etc/ssh/ssh_host_ed25519_key"]
    assert private["mode"] == 0o600 and private["overwrite"] is True
    assert (
        decode_data_url(private["contents"]["source"]).decode()
        == key.outputs["privateKeyOpenssh"].strip() + "\n"
    )
    public = decode_data_url(files["/etc/ssh/ssh_host_ed25519_key.pub"]["contents"]["source"]).decode()
    assert public.strip() == rep.plain("host_key")
    assert obj.plain("content") == rep.plain("config"), "the object holds exactly what is applied"
    assert key.outputs["privateKeyOpenssh"] not in json.dumps(g.one("aws:ec2/instance:Instance").inputs), (
        "never in the user-data"
    )
    assert rep.plain("manifest")["file:/etc/ssh/ssh_host_ed25519_key"]


def test_ssh_keys_are_authorized_by_the_config_for_the_ssh_user(ssh_key: dict[str, str]) -> None:
    import asyncssh

    other = asyncssh.generate_private_key("ssh-ed25519").export_public_key().decode().strip() + " alice"

    def program() -> None:
        config = flatcar_config(
            text=json.dumps(
                {"ignition": {"version": "3.3.0"}, "passwd": {"users": [{"name": "ops", "groups": ["sudo"]}]}}
            )
        )
        ExistingMachine(
            "metal",
            ExistingMachineArgs(
                config=config,
                ssh=SshAccess(
                    private_key=ssh_key["private"], user="ops", authorized_keys=[other, ssh_key["public"]]
                ),
                host="192.0.2.10",
            ),
        )

    rep = run_program(program).one(REPROVISION_TYPE)
    users = json.loads(rep.plain("config"))["passwd"]["users"]
    assert users == [{"name": "ops", "groups": ["sudo"], "sshAuthorizedKeys": [ssh_key["public"], other]}]
    assert "user:ops" in rep.plain("manifest")


def test_an_invalid_authorized_key_is_a_clear_error(ssh_key: dict[str, str]) -> None:
    def program() -> None:
        ExistingMachine(
            "metal",
            ExistingMachineArgs(
                config=flatcar_config(text=ignition_text("x")),
                ssh=SshAccess(private_key=ssh_key["private"], authorized_keys=["nope"]),
                host="192.0.2.10",
            ),
        )

    with pytest.raises(pulumi.RunError, match=r"authorized_keys\[1\]: not an OpenSSH public key line"):
        run_program(program)


# --- DigitalOcean ----------------------------------------------------------------------------------


def test_digitalocean_graph_and_public_object_at_a_random_stable_key(ssh_key: dict[str, str]) -> None:
    g = do_program("one", ssh_key, volumes=[DigitalOceanVolume("data", 20)], reserved_ip=True)
    assert_children_parented(g, "flatcar-infra:digitalocean:Machine")
    assert {
        "random:index/randomId:RandomId",
        DO_OBJECT,
        "digitalocean:index/customImage:CustomImage",
        "digitalocean:index/droplet:Droplet",
        "digitalocean:index/volume:Volume",
        "digitalocean:index/volumeAttachment:VolumeAttachment",
        "digitalocean:index/reservedIp:ReservedIp",
        "digitalocean:index/reservedIpAssignment:ReservedIpAssignment",
        REPROVISION_TYPE,
    } <= set(g.types())
    rid = g.one("random:index/randomId:RandomId")
    assert rid.plain("byteLength") == 16
    obj = g.one(DO_OBJECT)
    assert re.fullmatch(r"flatcar-infra/flatcar-infra/test/web/[0-9a-f]{32}/config\.ign", obj.plain("key"))
    assert obj.plain("acl") == "public-read" and obj.plain("contentType") == "application/json"
    image = g.one("digitalocean:index/customImage:CustomImage")
    assert image.plain("url") == (
        "https://stable.release.flatcar-linux.net/amd64-usr/current/flatcar_production_digitalocean_image.bin.bz2"
    )
    droplet = g.one("digitalocean:index/droplet:Droplet")
    assert droplet.plain("image") == "123456" and droplet.plain("sshKeys") == ["aa:bb"]
    assert {"image", "sshKeys"} <= set(droplet.ignore_changes), "used at creation only"
    assert {"url", "name", "description"} <= set(image.ignore_changes)
    pointer = json.loads(droplet.plain("userData"))
    assert pointer["ignition"]["config"]["replace"]["source"] == (
        f"https://configs.fra1.digitaloceanspaces.com/{obj.plain('key')}"
    )
    rep = g.one(REPROVISION_TYPE)
    assert g.depends_on(rep, obj) and g.depends_on(rep, droplet)
    assert rep.plain("host") == g.one("digitalocean:index/reservedIp:ReservedIp").outputs["ipAddress"]
    assert (
        rep.plain("delivery") == "pointer"
        and rep.plain("config_url") in pointer["ignition"]["config"]["replace"]["source"]
    )
    assert rep.plain("host_key") is None, "first contact pins it: no private key may go in a public object"
    assert rep.plain("machine_identity") == droplet.id, "a new droplet drops the host-key pin"


def test_digitalocean_firewall_admits_ssh_from_the_given_networks_only(ssh_key: dict[str, str]) -> None:
    from flatcar_infra.components import InboundRule

    g = do_program("one", ssh_key, inbound=[InboundRule(ports="8000-8100", cidrs=["0.0.0.0/0", "::/0"])])
    fw = g.one("digitalocean:index/firewall:Firewall")
    rules = fw.plain("inboundRules")
    assert rules == [
        {"portRange": "22", "protocol": "tcp", "sourceAddresses": ["198.51.100.0/24"]},
        {"portRange": "8000-8100", "protocol": "tcp", "sourceAddresses": ["0.0.0.0/0", "::/0"]},
    ]
    assert fw.plain("dropletIds") == [int(g.one("digitalocean:index/droplet:Droplet").id)]
    assert g.depends_on(g.one(REPROVISION_TYPE), fw), "the first contact waits for the firewall"
    with pytest.raises(pulumi.RunError, match="ssh_cidrs: required"):
        do_program("one", ssh_key, ssh_cidrs=[])


def test_digitalocean_pointer_is_identical_across_configs(ssh_key: dict[str, str]) -> None:
    a, b = do_program("one", ssh_key), do_program("two", ssh_key)
    da, db = (g.one("digitalocean:index/droplet:Droplet") for g in (a, b))
    assert da.plain("userData") == db.plain("userData")
    assert a.one(DO_OBJECT).plain("content") != b.one(DO_OBJECT).plain("content")
    assert da.replacement_trigger is None


def test_digitalocean_existing_image_skips_the_upload(ssh_key: dict[str, str]) -> None:
    g = do_program("one", ssh_key, image="98765")
    assert not g.by_type("digitalocean:index/customImage:CustomImage")
    assert g.one("digitalocean:index/droplet:Droplet").plain("image") == "98765"


# --- Existing hosts and the shared wiring -----------------------------------------------------------


def rep_config_users(g: Graph) -> str:
    return json.dumps(json.loads(g.one(REPROVISION_TYPE).plain("config")).get("passwd", {}))


def existing_program(ssh_key: dict[str, str], **extra: Any) -> Graph:
    def program() -> None:
        config = flatcar_config(text=ignition_text("one"), filename="host.ign")
        ExistingMachine(
            "metal",
            ExistingMachineArgs(
                config=config, ssh=SshAccess(private_key=ssh_key["private"]), host="192.0.2.10", **extra
            ),
        )

    return run_program(program)


def test_existing_machine_is_a_connection_and_a_file_delivered_reprovision(ssh_key: dict[str, str]) -> None:
    g = existing_program(
        ssh_key,
        port=2222,
        host_key="ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIB1",
        policy=Policy(keep_paths=("/srv",)),
    )
    assert g.types() == ["flatcar-infra:existing:Machine", REPROVISION_TYPE]
    assert ssh_key["public"] in rep_config_users(g), "the login key is authorized by the config"
    rep = g.one(REPROVISION_TYPE)
    assert g.parent_of(rep) is g.one("flatcar-infra:existing:Machine")
    assert rep.plain("host") == "192.0.2.10" and rep.plain("port") == 2222
    assert rep.plain("delivery") == "file"
    assert rep.plain("policy")["keep_paths"] == ["/srv"]
    assert rep.is_secret("private_key") and ssh_key["private"] == rep.plain("private_key")
    assert set(rep.additional_secret_outputs) >= {"private_key", "config"}


def test_ignore_strategy_still_wires_a_reprovision_that_shows_drift(ssh_key: dict[str, str]) -> None:
    g = existing_program(ssh_key, policy=Policy(strategy="ignore"))
    assert g.one(REPROVISION_TYPE).plain("policy")["strategy"] == "ignore"


def test_existing_machine_refuses_replace(ssh_key: dict[str, str]) -> None:
    with pytest.raises(pulumi.RunError, match="replace"):
        existing_program(ssh_key, policy=Policy(strategy="replace"))


def test_after_hook_runs_through_pulumi_command_with_the_pinned_key_as_a_secret(
    ssh_key: dict[str, str],
) -> None:
    g = existing_program(ssh_key, hooks=Hooks(after="systemctl is-active app"))
    hook = g.one("command:local:Command")
    rep = g.one(REPROVISION_TYPE)
    assert g.depends_on(hook, rep)
    env = hook.plain("environment")
    assert env["FLATCAR_INFRA_HOOK_COMMAND"] == "systemctl is-active app"
    assert env["FLATCAR_INFRA_HOOK_HOST_KEY"] == rep.outputs["host_key"]
    assert env["FLATCAR_INFRA_HOOK_CONFIG_HASH"] == rep.outputs["applied_hash"], (
        "reruns when a change is applied"
    )
    assert not hook.plain("triggers"), "a trigger would replace the command instead of running update"
    assert hook.is_secret("environment"), "the private key is in the environment"
    assert hook.plain("create") == hook.plain("update") == HOOK_COMMAND
    assert sys.executable not in HOOK_COMMAND, "the same command on every machine"


def test_before_hook_needs_a_pinned_host_key(ssh_key: dict[str, str]) -> None:
    with pytest.raises(pulumi.RunError, match="pinned host key"):
        existing_program(ssh_key, hooks=Hooks(before="drain"))
    g = existing_program(
        ssh_key, hooks=Hooks(before="drain"), host_key="ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIB1"
    )
    before = g.one("command:local:Command")
    assert g.depends_on(g.one(REPROVISION_TYPE), before)
    assert before.plain("create") is None and "hookrun" in before.plain("update")
    assert before.plain("environment")["FLATCAR_INFRA_HOOK_CONFIG_HASH"] == g.one(REPROVISION_TYPE).plain(
        "config_hash"
    )


def test_aws_secret_variables_make_the_object_and_the_reprovision_config_secret(
    ssh_key: dict[str, str],
) -> None:
    def program() -> None:
        config = flatcar_config(
            text=ignition_text("{{ token }}"),
            filename="web.ign",
            variables={"token": pulumi.Output.secret("tok3n")},
        )
        AwsMachine(
            "web",
            AwsMachineArgs(
                config=config, ssh=SshAccess(private_key=ssh_key["private"]), ssh_cidrs=["10.0.0.0/8"]
            ),
        )

    g = run_program(program)
    obj, rep = g.one(AWS_OBJECT), g.one(REPROVISION_TYPE)
    assert obj.is_secret("content") and "tok3n" in obj.plain("content")
    assert rep.is_secret("config") and rep.is_secret("private_key")
    pointer = g.one("aws:ec2/instance:Instance")
    assert not pointer.is_secret("userData") and "tok3n" not in pointer.plain("userData")


def test_aws_given_bucket_and_key_pair_are_used_not_created(ssh_key: dict[str, str]) -> None:
    g = aws_program("one", ssh_key, bucket="corp-flatcar-configs", key_name="ops")
    assert not g.by_type("aws:s3/bucket:Bucket") and not g.by_type("aws:ec2/keyPair:KeyPair")
    assert g.one(AWS_OBJECT).plain("bucket") == "corp-flatcar-configs"
    instance = g.one("aws:ec2/instance:Instance")
    assert instance.plain("keyName") == "ops" and "keyName" in instance.ignore_changes
    # Flatcar installs the key pair from the metadata on every boot: a platform key
    assert g.one(REPROVISION_TYPE).plain("platform_keys") == [
        "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIPlatformKey"
    ]
    policy = json.loads(g.one("aws:iam/rolePolicy:RolePolicy").plain("policy"))
    assert (
        policy["Statement"][0]["Resource"]
        == "arn:aws:s3:::corp-flatcar-configs/flatcar-infra/flatcar-infra/test/web/config.ign"
    )


def test_preview_with_unknown_outputs_registers_the_same_graph(ssh_key: dict[str, str]) -> None:
    def program() -> None:
        config = flatcar_config(text=ignition_text("one"), filename="web.ign")
        DigitalOceanMachine(
            "web",
            DigitalOceanMachineArgs(
                config=config,
                ssh=SshAccess(private_key=ssh_key["private"]),
                region="fra1",
                size="s",
                spaces_bucket="configs",
                ssh_cidrs=["198.51.100.0/24"],
            ),
        )

    g = run_program(program, preview=True)
    assert REPROVISION_TYPE in g.types() and "digitalocean:index/droplet:Droplet" in g.types()
