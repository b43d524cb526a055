"""The project's stack program (``__main__.py``) run under mocks with each shipped stack's config."""

from __future__ import annotations

import json
import runpy
from pathlib import Path
from typing import Any

import pulumi
import pytest
import yaml

from tests.components.mockgraph import LOCAL_OBJECT_TYPE, REPROVISION_TYPE, Graph, run_program

ROOT = Path(__file__).resolve().parents[2]


def stack_config(stack: str, **override: Any) -> dict[str, Any]:
    """The stack file's ``config:`` as the CLI hands it to the program (full keys, JSON values)."""
    doc = yaml.safe_load((ROOT / "stacks" / f"Pulumi.{stack}.yaml").read_text())
    config: dict[str, Any] = dict(doc["config"])
    for k, v in override.items():
        config["flatcar-infra:" + k] = v
    return config


def run_stack(
    stack: str,
    config: dict[str, Any],
    secret_keys: list[str] | None = None,
    monkeypatch: pytest.MonkeyPatch | None = None,
) -> Graph:
    def program() -> None:
        runpy.run_path(str(ROOT / "__main__.py"), run_name="__main__")

    if monkeypatch is not None:
        monkeypatch.chdir(ROOT)
    return run_program(program, stack=stack, config=config, secret_keys=secret_keys)


def test_pulumi_yaml_names_the_project_and_the_stack_dir() -> None:
    doc = yaml.safe_load((ROOT / "Pulumi.yaml").read_text())
    assert doc["name"] == "flatcar-infra"
    assert doc["runtime"] == "python" or doc["runtime"]["name"] == "python"
    assert doc["stackConfigDir"] == "stacks"


def test_aws_stack_builds_two_machines_sharing_one_bucket(ssh_key: dict[str, str]) -> None:
    g = run_stack("aws", stack_config("aws", ssh={"private_key_file": ssh_key["file"]}))
    assert sorted(r.name for r in g.by_type("flatcar-infra:aws:Machine")) == ["web1", "worker1"]
    assert len(g.by_type("aws:s3/bucket:Bucket")) == 1 and not g.by_type("aws:ec2/keyPair:KeyPair")
    provider = g.one("pulumi:providers:aws")
    assert provider.plain("region") == "eu-central-1"
    objects = sorted(g.by_type("aws:s3/bucketObjectv2:BucketObjectv2"), key=lambda o: o.name)
    assert [o.plain("key") for o in objects] == [
        "flatcar-infra/flatcar-infra/aws/web1/config.ign",
        "flatcar-infra/flatcar-infra/aws/worker1/config.ign",
    ]
    assert "web1.example.com" in objects[0].plain("content")
    users = json.loads(objects[0].plain("content"))["passwd"]["users"]
    assert users == [{"name": "core", "sshAuthorizedKeys": [ssh_key["public"]]}], (
        "the config authorizes the key"
    )
    assert len(g.by_type("tls:index/privateKey:PrivateKey")) == 2, "one host key per machine"
    web_sg = g.one("aws:ec2/securityGroup:SecurityGroup", "web1-sg").plain("ingress")
    assert {(r["fromPort"], tuple(r.get("cidrBlocks") or ())) for r in web_sg} == {
        (22, ("198.51.100.0/24",)),
        (80, ("0.0.0.0/0",)),
    }
    web1 = next(r for r in g.by_type(REPROVISION_TYPE) if r.name == "web1-reprovision")
    assert web1.plain("policy")["keep_paths"] == ["/var/lib/app"]
    assert web1.plain("private_key") == ssh_key["private"] and web1.is_secret("private_key")
    assert len(g.by_type("aws:ec2/eip:Eip")) == 1 and len(g.by_type("aws:ebs/volume:Volume")) == 1
    assert g.one("aws:ebs/volume:Volume").plain("availabilityZone") == "eu-central-1a"
    worker = g.one("aws:ec2/instance:Instance", "worker1-instance")
    assert worker.plain("availabilityZone") == "eu-central-1a" and "ami" in worker.ignore_changes
    assert worker.plain("instanceType") == "t3.medium" and worker.plain("tags") == {
        "Name": "worker1",
        "role": "worker",
    }


def test_digitalocean_stack_uploads_the_image_once_and_firewalls_each_droplet(
    ssh_key: dict[str, str],
) -> None:
    pub = Path(ssh_key["file"] + ".pub")
    pub.write_text(ssh_key["public"] + "\n")
    cfg = stack_config("digitalocean", ssh={"private_key_file": ssh_key["file"], "public_key_file": str(pub)})
    g = run_stack("digitalocean", cfg)
    assert sorted(r.name for r in g.by_type("flatcar-infra:digitalocean:Machine")) == ["web1", "web2"]
    image = g.one("digitalocean:index/customImage:CustomImage")
    assert image.plain("regions") == ["fra1"]
    assert not g.by_type("digitalocean:index/sshKey:SshKey"), "keys come through the config"
    droplets = sorted(g.by_type("digitalocean:index/droplet:Droplet"), key=lambda d: d.name)
    assert [d.plain("size") for d in droplets] == ["s-1vcpu-2gb", "s-2vcpu-4gb"]
    assert all(not d.plain("sshKeys") for d in droplets)
    firewalls = g.by_type("digitalocean:index/firewall:Firewall")
    assert len(firewalls) == 2
    for fw in firewalls:
        assert {r["portRange"]: r["sourceAddresses"] for r in fw.plain("inboundRules")} == {
            "22": ["198.51.100.0/24"],
            "80": ["0.0.0.0/0", "::/0"],
        }
    keys = [o.plain("key") for o in g.by_type("digitalocean:index/spacesBucketObject:SpacesBucketObject")]
    assert len(set(keys)) == 2, "each machine has its own unguessable key"
    assert all(
        o.plain("bucket") == "my-flatcar-configs"
        for o in g.by_type("digitalocean:index/spacesBucketObject:SpacesBucketObject")
    )


def test_existing_stack_with_secret_variables_and_an_inline_secret_key(
    tmp_path: Path, ssh_key: dict[str, str]
) -> None:
    cfg = tmp_path / "host.bu"
    cfg.write_text(
        "variant: flatcar\nversion: 1.0.0\nstorage:\n  files:\n    - path: /etc/token\n"
        '      contents:\n        inline: "{{ token }}"\n'
    )
    config = {
        "flatcar-infra:target": "existing",
        "flatcar-infra:ssh": {"user": "ops", "private_key": ssh_key["private"]},
        "flatcar-infra:machines": [
            {
                "name": "metal1",
                "config": str(cfg),
                "host": "192.0.2.7",
                "port": 2200,
                "host_key": "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIB1",
                "variables": {"token": "t0ps3cret"},
            }
        ],
    }
    g = run_stack("metal", config, secret_keys=["flatcar-infra:ssh", "flatcar-infra:machines"])
    rep = g.one(REPROVISION_TYPE)
    assert rep.plain("host") == "192.0.2.7" and rep.plain("port") == 2200 and rep.plain("user") == "ops"
    assert rep.is_secret("config") and "t0ps3cret" in rep.plain("config")
    assert rep.is_secret("private_key")


@pytest.mark.parametrize(
    ("override", "message"),
    [
        (
            {"machines": [{"name": "web1"}]},
            "stacks/Pulumi.aws.yaml: flatcar-infra:machines[0].config: required",
        ),
        (
            {"aws": {"region": "eu-central-1", "ssh_cidrs": ["10.0.0.0/8"], "instance_type": 3}},
            "flatcar-infra:aws.instance_type: must be a string",
        ),
        (
            {
                "machines": [
                    {"name": "web1", "config": "stacks/configs/missing.bu", "ssh_cidrs": ["10.0.0.0/8"]}
                ]
            },
            "missing.bu: cannot read",
        ),
        (
            {"ssh": {"private_key_file": "/nonexistent/key"}},
            "flatcar-infra:ssh.private_key_file: cannot read",
        ),
    ],
)
def test_invalid_stack_config_is_a_clear_error_naming_the_key(
    override: dict[str, Any], message: str, ssh_key: dict[str, str]
) -> None:
    config = stack_config("aws", ssh={"private_key_file": ssh_key["file"]})
    config.update({"flatcar-infra:" + k: v for k, v in override.items()})
    with pytest.raises(pulumi.RunError) as info:
        run_stack("aws", config)
    assert message in str(info.value)
    assert "Traceback" not in str(info.value)


def test_config_values_arrive_as_json_strings_like_the_cli_sends_them() -> None:
    # Guard for the helper above: the SDK reads structured config as JSON text.
    assert json.loads(json.dumps(stack_config("aws")["flatcar-infra:machines"]))[0]["name"] == "web1"


def test_local_stack_reads_the_vm_state_and_hosts_in_the_local_bucket(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, ssh_key: dict[str, str]
) -> None:
    from flatcar_infra.testbed import local  # the test writes the state `local up` would write

    monkeypatch.setenv("FLATCAR_INFRA_HOME", str(tmp_path))
    # the fields `flatcar-infra local up` records (load_machine's contract), for a VM on port 2230
    state = {
        "name": "dev",
        "host": "127.0.0.1",
        "port": 2230,
        "user": "core",
        "identity_file": ssh_key["file"],
        "host_key": "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIB1",
        "config_url": "http://127.0.0.1:1/x",
        "config_hash": "sha512-" + "0" * 128,
    }
    local.state_path("dev").parent.mkdir(parents=True)
    local.state_path("dev").write_text(json.dumps(state))
    g = run_stack("local", stack_config("local"))
    machine = g.one("flatcar-infra:local:Machine")
    rep, obj = g.one(REPROVISION_TYPE), g.one(LOCAL_OBJECT_TYPE)
    assert g.parent_of(rep) is machine and machine.name == "dev"
    assert (rep.plain("host"), rep.plain("port"), rep.plain("user")) == ("127.0.0.1", 2230, "core")
    assert rep.plain("host_key") == state["host_key"] and rep.plain("delivery") == "pointer"
    assert obj.plain("machine") == "dev" and obj.plain("content") == rep.plain("config")
    assert rep.plain("config_url") == obj.outputs["url"] and g.depends_on(rep, obj)
    assert rep.plain("private_key") == ssh_key["private"] and rep.is_secret("private_key")
    assert ssh_key["public"] in rep.plain("config"), "the VM's key is authorized in the config"
    assert rep.plain("policy")["keep_paths"] == ["/var/lib/app"]


def test_local_stack_without_the_vm_says_how_to_start_it(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("FLATCAR_INFRA_HOME", str(tmp_path))
    with pytest.raises(pulumi.RunError, match=r"(?s)no local machine named 'dev'.*flatcar-infra local up"):
        run_stack("local", stack_config("local"))


def test_only_the_local_target_reaches_the_test_bed() -> None:
    """Core code (stack config, the stack program, the CLI, the plan) goes through the target
    registry; ``flatcar_infra/targets/local.py`` is the one bridge to ``flatcar_infra.testbed``."""
    import re

    package = ROOT / "flatcar_infra"
    importers = sorted(
        str(p.relative_to(package))
        for p in package.rglob("*.py")
        if "testbed" not in p.relative_to(package).parts[:1]
        and re.search(r"^\s*(from|import) flatcar_infra\.testbed", p.read_text(), re.M)
    )
    assert importers == ["targets/local.py"]
