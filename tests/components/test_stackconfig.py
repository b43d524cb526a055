"""Stack config validation: the shipped stacks parse, every mistake names its file and key."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from flatcar_infra.errors import UserError
from flatcar_infra.stackconfig import SecureValue, load_stack_file, parse_stack_config, resolve_path

ROOT = Path(__file__).resolve().parents[2]
SRC = "stacks/Pulumi.aws.yaml"


def aws(**over: Any) -> dict[str, Any]:
    base: dict[str, Any] = {
        "flatcar-infra:target": "aws",
        "flatcar-infra:ssh": {"private_key_file": "~/.ssh/id"},
        "flatcar-infra:aws": {"region": "eu-central-1", "ssh_cidrs": ["198.51.100.0/24"]},
        "flatcar-infra:machines": [{"name": "web1", "config": "configs/web.bu"}],
    }
    base.update(over)
    return base


@pytest.mark.parametrize("stack", ["local", "digitalocean", "aws"])
def test_shipped_stacks_parse_and_their_configs_exist(stack: str) -> None:
    spec = load_stack_file(ROOT / "stacks" / f"Pulumi.{stack}.yaml")
    assert spec.target == stack
    assert spec.machines
    for m in spec.machines:
        assert resolve_path(ROOT, m.config).is_file()


def test_prefix_is_optional_and_other_namespaces_are_ignored() -> None:
    spec = parse_stack_config(
        {
            "target": "existing",
            "aws:region": "x",
            "ssh": {"private_key": {"secure": "v1:abc"}},
            "machines": [
                {
                    "name": "m1",
                    "config": "c.bu",
                    "host": "192.0.2.1",
                    "port": "2222",
                    "variables": {"n": 3, "flag": True, "pw": {"secure": "v1:zzz"}},
                }
            ],
        },
        "s.yaml",
    )
    m = spec.machines[0]
    assert spec.machine_options(m) == {"host": "192.0.2.1", "port": 2222}
    assert m.variables["n"] == "3" and m.variables["flag"] == "true"
    assert isinstance(m.variables["pw"], SecureValue) and "zzz" not in repr(m.variables["pw"])
    assert isinstance(spec.ssh["private_key"], SecureValue)


def test_defaults_overlay_machine_options() -> None:
    spec = parse_stack_config(
        aws(
            **{
                "flatcar-infra:machines": [
                    {"name": "a", "config": "c", "instance_type": "t3.large", "tags": {"role": "db"}}
                ]
            }
        ),
        SRC,
    )
    opts = spec.machine_options(spec.machines[0])
    assert opts["instance_type"] == "t3.large" and opts["region"] == "eu-central-1"
    assert opts["ssh_cidrs"] == ("198.51.100.0/24",) and opts["tags"] == {"role": "db"}


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"flatcar-infra:target": None}, "flatcar-infra:target: required"),
        ({"flatcar-infra:target": "gcp"}, "flatcar-infra:target: must be one of"),
        (
            {"flatcar-infra:machines": [{"name": "a", "config": "c"}, {"name": "b"}]},
            "flatcar-infra:machines[1].config: required",
        ),
        (
            {"flatcar-infra:machines": [{"name": "a", "config": "c"}, {"name": "a", "config": "d"}]},
            "flatcar-infra:machines[1].name: 'a' is already the name of machines[0]",
        ),
        ({"flatcar-infra:machines": [{"name": "Web_1", "config": "c"}]}, "machines[0].name: 'Web_1' must be"),
        (
            {"flatcar-infra:machines": [{"name": "a", "config": "c", "size": "x"}]},
            "flatcar-infra:machines[0].size: not a aws option here",
        ),
        (
            {"flatcar-infra:machines": [{"name": "a", "config": "c", "region": "us-east-1"}]},
            "flatcar-infra:machines[0].region: not a aws option here",
        ),
        (
            {"flatcar-infra:machines": [{"name": "a", "config": "c", "volumes": [{"size_gb": 5}]}]},
            "flatcar-infra:machines[0].volumes[0].device_name: required",
        ),
        (
            {
                "flatcar-infra:machines": [
                    {"name": "a", "config": "c", "volumes": [{"device_name": "/dev/sdf", "size_gb": 5}]}
                ]
            },
            "flatcar-infra:machines[0].availability_zone: required with volumes",
        ),
        (
            {"flatcar-infra:aws": {"region": "eu-central-1", "ssh_cidrs": ["10.0.0.1/8"]}},
            "flatcar-infra:aws.ssh_cidrs[0]: '10.0.0.1/8' is not a network in CIDR notation",
        ),
        (
            {"flatcar-infra:aws": {"region": "eu-central-1", "ssh_cidrs": []}},
            "flatcar-infra:aws.ssh_cidrs: must not be empty",
        ),
        (
            {
                "flatcar-infra:machines": [
                    {"name": "a", "config": "c", "inbound": [{"ports": "80-70", "cidrs": ["0.0.0.0/0"]}]}
                ]
            },
            "flatcar-infra:machines[0].inbound[0].ports: must be a port or a range",
        ),
        (
            {"flatcar-infra:machines": [{"name": "a", "config": "c", "inbound": [{"ports": 80}]}]},
            "flatcar-infra:machines[0].inbound[0].cidrs: required",
        ),
        (
            {"flatcar-infra:ssh": {"private_key_file": "k", "authorized_keys": ["ssh-ed25519 AAAAnotakey"]}},
            "flatcar-infra:ssh.authorized_keys[0]: ",
        ),
        (
            {"flatcar-infra:machines": [{"name": "a", "config": "c", "elastic_ip": "maybe"}]},
            "flatcar-infra:machines[0].elastic_ip: must be true or false",
        ),
        ({"flatcar-infra:aws": {"region": "eu-central-1"}}, "flatcar-infra:machines[0].ssh_cidrs: required"),
        (
            {"flatcar-infra:aws": {"channel": "nightly", "ssh_cidrs": ["0.0.0.0/0"]}},
            "flatcar-infra:aws.channel: must be one of",
        ),
        ({"flatcar-infra:policy": {"strategy": "yolo"}}, "flatcar-infra:policy.strategy: unknown strategy"),
        ({"flatcar-infra:policy": {"keep_pats": []}}, "flatcar-infra:policy.keep_pats: unknown policy key"),
        ({"flatcar-infra:ssh": {"user": "core"}}, "flatcar-infra:ssh.private_key_file: required"),
        (
            {"flatcar-infra:ssh": {"private_key_file": "a", "private_key": "b"}},
            "flatcar-infra:ssh.private_key: give either",
        ),
        (
            {"flatcar-infra:digitalocean": {"region": "fra1"}},
            "flatcar-infra:digitalocean: set, but the target is aws",
        ),
        ({"flatcar-infra:machine": []}, "flatcar-infra:machine: unknown key"),
        ({"flatcar-infra:machines": {"web": {}}}, "flatcar-infra:machines: must be a list"),
    ],
)
def test_mistakes_name_the_file_and_the_key(change: dict[str, Any], message: str) -> None:
    raw = {k: v for k, v in aws(**change).items() if v is not None}
    with pytest.raises(UserError) as info:
        parse_stack_config(raw, SRC)
    assert str(info.value).startswith(f"{SRC}: ")
    assert message in str(info.value)


def test_target_specific_requirements() -> None:
    with pytest.raises(UserError, match=r"machines\[0\]\.host: required for target existing"):
        parse_stack_config(
            {
                "target": "existing",
                "ssh": {"private_key_file": "k"},
                "machines": [{"name": "a", "config": "c"}],
            },
            "s",
        )
    with pytest.raises(UserError, match=r"machines\[0\]\.size: required"):
        parse_stack_config(
            {
                "target": "digitalocean",
                "ssh": {"private_key_file": "k"},
                "digitalocean": {"region": "fra1", "spaces_bucket": "b"},
                "machines": [{"name": "a", "config": "c"}],
            },
            "s",
        )
    with pytest.raises(UserError, match=r"machines\[0\]\.ssh_cidrs: required .*firewall"):
        parse_stack_config(
            {
                "target": "digitalocean",
                "ssh": {"private_key_file": "k"},
                "digitalocean": {"region": "fra1", "size": "s", "spaces_bucket": "b"},
                "machines": [{"name": "a", "config": "c"}],
            },
            "s",
        )
    with pytest.raises(UserError, match=r"digitalocean\.spaces_bucket: required"):
        parse_stack_config(
            {
                "target": "digitalocean",
                "ssh": {"private_key_file": "k"},
                "digitalocean": {"region": "fra1", "size": "s"},
                "machines": [{"name": "a", "config": "c"}],
            },
            "s",
        )
    local = parse_stack_config({"target": "local", "machines": [{"name": "dev", "config": "c"}]}, "s")
    assert local.ssh == {} and local.machine("dev").name == "dev"


def test_stack_file_errors(tmp_path: Path) -> None:
    with pytest.raises(UserError, match="cannot read stack file"):
        load_stack_file(tmp_path / "Pulumi.none.yaml")
    bad = tmp_path / "Pulumi.bad.yaml"
    bad.write_text("config: [1, 2\n")
    with pytest.raises(UserError, match="not valid YAML"):
        load_stack_file(bad)
    bad.write_text("encryptionsalt: x\n")
    with pytest.raises(UserError, match="config: required"):
        load_stack_file(bad)


def test_machine_variables_add_the_ssh_public_key_only_to_templates(tmp_path: Path) -> None:
    import asyncssh

    from flatcar_infra.stackconfig import login_public_key, machine_variables

    key = asyncssh.generate_private_key("ssh-ed25519")
    (tmp_path / "id").write_bytes(key.export_private_key())
    public = key.export_public_key().decode().strip()
    spec = parse_stack_config(
        aws(
            **{
                "flatcar-infra:ssh": {"private_key_file": "id"},
                "flatcar-infra:machines": [
                    {"name": "a", "config": "c", "variables": {"x": "1"}},
                    {"name": "b", "config": "c"},
                ],
            }
        ),
        SRC,
    )
    assert login_public_key(spec, spec.machine("a"), tmp_path) == public
    assert machine_variables(spec.machine("a"), public) == {"ssh_public_key": public, "x": "1"}
    assert machine_variables(spec.machine("b"), public) == {}, "no variables: not a template"
    (tmp_path / "id.pub").write_text(public + "\n")
    with_pub = parse_stack_config(
        aws(**{"flatcar-infra:ssh": {"private_key_file": "id", "public_key_file": "id.pub"}}), SRC
    )
    assert login_public_key(with_pub, with_pub.machines[0], tmp_path) == public
    missing = parse_stack_config(aws(**{"flatcar-infra:ssh": {"private_key_file": "nope"}}), SRC)
    with pytest.raises(UserError, match="cannot read the SSH key"):
        login_public_key(missing, missing.machines[0], tmp_path)


def test_machine_access_is_what_the_components_merge(tmp_path: Path) -> None:
    """The plan's view of a machine's SSH access: the login key first, then the stack's
    authorized keys (checked, de-duplicated), for the SSH user; the AWS target's generated host
    key as a secret placeholder."""
    import asyncssh

    from flatcar_infra.secrets import SECRET_MARKER
    from flatcar_infra.stackconfig import machine_access

    login = asyncssh.generate_private_key("ssh-ed25519").export_public_key().decode().strip()
    other = asyncssh.generate_private_key("ssh-ed25519").export_public_key().decode().strip() + " alice"
    spec = parse_stack_config(
        aws(
            **{
                "flatcar-infra:ssh": {
                    "private_key_file": "k",
                    "user": "ops",
                    "authorized_keys": [other, login],
                }
            }
        ),
        SRC,
    )
    access = machine_access(spec, spec.machines[0], login)
    assert access.user == "ops" and access.authorized_keys == (login, other)
    (hk,) = access.host_keys
    assert hk.private_path == "/etc/ssh/ssh_host_ed25519_key" and SECRET_MARKER in hk.private_openssh
    existing = parse_stack_config(
        {
            "target": "existing",
            "ssh": {"private_key_file": "k"},
            "machines": [{"name": "m", "config": "c", "host": "192.0.2.1", "user": "admin"}],
        },
        "s",
    )
    plain = machine_access(existing, existing.machines[0], "ssh-ed25519 (placeholder)")
    assert plain.user == "admin" and plain.host_keys == ()
    assert plain.authorized_keys == ("ssh-ed25519 (placeholder)",), "a placeholder is kept as it is"
