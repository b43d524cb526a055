"""Each example is its own Pulumi project: run its ``__main__.py`` under mocks from its directory."""

from __future__ import annotations

import json
import runpy
from pathlib import Path
from typing import Any

import pulumi
import pytest
import yaml

from flatcar_infra.compiler import compile_file
from flatcar_infra.compiler.dataurl import decode_data_url
from tests.components.mockgraph import REPROVISION_TYPE, Graph, run_program

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"
NAMES = ["digitalocean-web", "aws-fleet", "bare-metal"]


def run_example(
    name: str,
    config: dict[str, Any],
    monkeypatch: pytest.MonkeyPatch,
    secret: tuple[str, ...] = ("sshPrivateKey",),
) -> Graph:
    d = EXAMPLES / name
    project = yaml.safe_load((d / "Pulumi.yaml").read_text())["name"]
    monkeypatch.chdir(d)
    return run_program(
        lambda: runpy.run_path(str(d / "__main__.py"), run_name="__main__"),
        project=project,
        stack="dev",
        config={f"{project}:{k}": v for k, v in config.items()},
        secret_keys=[f"{project}:{k}" for k in secret],
    )


@pytest.mark.parametrize("name", NAMES)
def test_example_is_a_complete_project(name: str) -> None:
    d = EXAMPLES / name
    assert yaml.safe_load((d / "Pulumi.yaml").read_text())["runtime"]["name"] == "python"
    assert "flatcar_infra.components" in (d / "__main__.py").read_text()
    reqs = (d / "requirements.txt").read_text()
    assert "flatcar-infra" in reqs and "pulumi" in reqs
    assert "pulumi up" in (d / "README.md").read_text()
    configs = sorted(d.glob("*.bu"))
    assert configs, "each example ships its Butane config"
    for bu in configs:  # they compile (template variables filled with placeholders)
        compiled = compile_file(
            bu,
            variables={
                "greeting": "g",
                "node": "n",
                "fleet": "f",
                "hostname": "h",
            },
        )
        assert compiled.version == "3.3.0"


def test_digitalocean_web(monkeypatch: pytest.MonkeyPatch, ssh_key: dict[str, str]) -> None:
    g = run_example(
        "digitalocean-web",
        {"sshPrivateKey": ssh_key["private"], "greeting": "Hi there", "sshCidrs": ["198.51.100.0/24"]},
        monkeypatch,
    )
    machine = g.one("flatcar-infra:digitalocean:Machine")
    assert g.parent_of(g.one("digitalocean:index/droplet:Droplet")) is machine
    obj = g.one("digitalocean:index/spacesBucketObject:SpacesBucketObject")
    assert obj.plain("bucket") == g.one("digitalocean:index/spacesBucket:SpacesBucket").outputs["name"]
    files = {f["path"]: f for f in json.loads(obj.plain("content"))["storage"]["files"]}
    page = decode_data_url(files["/var/lib/app/www/index.html"]["contents"]["source"])
    assert b"<h1>Hi there</h1>" in page
    fw = g.one("digitalocean:index/firewall:Firewall")
    assert {r["portRange"]: r["sourceAddresses"] for r in fw.plain("inboundRules")} == {
        "22": ["198.51.100.0/24"],
        "80": ["0.0.0.0/0", "::/0"],
    }
    assert json.loads(obj.plain("content"))["passwd"]["users"][0]["sshAuthorizedKeys"] == [ssh_key["public"]]
    assert g.one(REPROVISION_TYPE).plain("policy")["keep_paths"] == ["/var/lib/app"]
    assert g.one(REPROVISION_TYPE).is_secret("private_key")


def test_aws_fleet(monkeypatch: pytest.MonkeyPatch, ssh_key: dict[str, str]) -> None:
    g = run_example(
        "aws-fleet",
        {"sshPrivateKey": ssh_key["private"], "sshCidrs": ["198.51.100.0/24"], "size": "2"},
        monkeypatch,
    )
    assert sorted(m.name for m in g.by_type("flatcar-infra:aws:Machine")) == ["node1", "node2"]
    assert len(g.by_type("aws:s3/bucket:Bucket")) == 1, "one bucket for the fleet"
    bucket = g.one("aws:s3/bucket:Bucket").outputs["bucket"]
    policies = sorted(
        json.loads(p.plain("policy"))["Statement"][0]["Resource"]
        for p in g.by_type("aws:iam/rolePolicy:RolePolicy")
    )
    assert policies == [
        f"arn:aws:s3:::{bucket}/flatcar-infra/flatcar-aws-fleet/dev/node{i}/config.ign" for i in (1, 2)
    ]
    assert not g.by_type("aws:ec2/keyPair:KeyPair")
    users = {i.plain("userData") for i in g.by_type("aws:ec2/instance:Instance")}
    assert len(users) == 2, "each node points at its own object"
    hooks = g.by_type("command:local:Command")
    assert len(hooks) == 2 and all(h.is_secret("environment") for h in hooks)


def test_bare_metal(monkeypatch: pytest.MonkeyPatch, ssh_key: dict[str, str]) -> None:
    key = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIB1"
    g = run_example(
        "bare-metal",
        {
            "sshPrivateKey": ssh_key["private"],
            "host": "192.0.2.10",
            "hostKey": key,
            "drainCommand": "true",
        },
        monkeypatch,
    )
    rep = g.one(REPROVISION_TYPE)
    assert rep.plain("delivery") == "file" and rep.plain("host_key") == key
    assert ssh_key["public"] in rep.plain("config")
    assert len(g.by_type("command:local:Command")) == 2
    assert not [t for t in g.types() if t.startswith(("aws:", "digitalocean:"))]


def test_bare_metal_missing_config_is_a_clear_error(
    monkeypatch: pytest.MonkeyPatch, ssh_key: dict[str, str]
) -> None:
    with pytest.raises(pulumi.ConfigMissingError, match="flatcar-bare-metal:host"):
        run_example(
            "bare-metal",
            {"sshPrivateKey": ssh_key["private"]},
            monkeypatch,
        )


def test_digitalocean_web_without_ssh_cidrs_is_refused(
    monkeypatch: pytest.MonkeyPatch, ssh_key: dict[str, str]
) -> None:
    with pytest.raises(pulumi.ConfigMissingError, match="sshCidrs"):
        run_example("digitalocean-web", {"sshPrivateKey": ssh_key["private"]}, monkeypatch)
