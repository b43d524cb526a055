"""What goes into a public object: a DigitalOcean config holding a secret is refused, naming each
entry and the opt-in; the opt-in admits exactly the entries it names. The detector is the plan's
(``flatcar_infra.secrets``), so the two never disagree."""

from __future__ import annotations

import json
import re
from collections.abc import Mapping, Sequence
from typing import Any

import pulumi
import pytest

from flatcar_infra.compiler import compile_config
from flatcar_infra.components import DigitalOceanMachine, DigitalOceanMachineArgs, SshAccess, flatcar_config
from flatcar_infra.secrets import secret_entries
from tests.components.mockgraph import Graph, run_program

DO_OBJECT = "digitalocean:index/spacesBucketObject:SpacesBucketObject"
CA_KEY = (
    "-----BEGIN PRIVATE KEY-----\n"
    "MC4CAQAwBQYDK2VwBCIEIGdz1YwSpEcFRsTuT2l2bGx9b8kqC1mRBGo0cUeQ0rQm\n"
    "-----END PRIVATE KEY-----\n"
)

BASE = """variant: flatcar
version: 1.0.0
storage:
  files:
    - path: /etc/motd
      contents:
        inline: "{{ greeting }}"
"""
KEY_FILE = """    - path: /etc/app/ca.key
      mode: 0600
      contents:
        inline: |
""" + "".join(f"          {line}\n" for line in CA_KEY.splitlines())
PASSWORD = """passwd:
  users:
    - name: core
      password_hash: "$6$rounds=4096$salt$0123456789abcdefghijABCDEFGHIJ"
"""


def publish(
    text: str,
    ssh_key: dict[str, str],
    *,
    secrets: Mapping[str, str] | None = None,
    public_secrets: Sequence[str] = (),
) -> Graph:
    """``secrets``: template variables given as Pulumi secrets (instead of the plain greeting)."""

    def program() -> None:
        variables: dict[str, Any] = {k: pulumi.Output.secret(v) for k, v in (secrets or {}).items()}
        DigitalOceanMachine(
            "web",
            DigitalOceanMachineArgs(
                config=flatcar_config(
                    text=text, filename="web.bu", variables=variables or {"greeting": "hi"}
                ),
                ssh=SshAccess(private_key=ssh_key["private"]),
                region="fra1",
                size="s-1vcpu-2gb",
                spaces_bucket="configs",
                ssh_cidrs=["198.51.100.0/24"],
                public_secrets=public_secrets,
            ),
        )

    return run_program(program)


def refusal(text: str, ssh_key: dict[str, str], **kw: Any) -> str:
    with pytest.raises(pulumi.RunError) as info:
        publish(text, ssh_key, **kw)
    message = str(info.value)
    assert "Traceback" not in message
    return message


def test_a_literal_private_key_is_refused_naming_the_file_and_the_opt_in(ssh_key: dict[str, str]) -> None:
    message = refusal(BASE + KEY_FILE, ssh_key)
    assert "refusing to publish the config in a public-read Spaces object" in message
    assert "file:/etc/app/ca.key (contents: a private key" in message
    assert 'public_secrets=["file:/etc/app/ca.key"]' in message
    assert CA_KEY.splitlines()[1] not in message, "the error never shows the secret"


def test_the_opt_in_admits_exactly_the_entries_it_names(ssh_key: dict[str, str]) -> None:
    g = publish(BASE + KEY_FILE, ssh_key, public_secrets=["file:/etc/app/ca.key"])
    content = json.loads(g.one(DO_OBJECT).plain("content"))
    assert "/etc/app/ca.key" in {f["path"] for f in content["storage"]["files"]}
    # a secret added later is refused again, and only it is named
    message = refusal(BASE + KEY_FILE + PASSWORD, ssh_key, public_secrets=["file:/etc/app/ca.key"])
    assert "user:core (passwordHash: a password hash)" in message
    assert re.search(r"holds secrets: user:core \(", message) and "ca.key (contents" not in message
    assert 'public_secrets=["file:/etc/app/ca.key", "user:core"]' in message


def test_a_secret_variable_names_the_entry_it_lands_in(ssh_key: dict[str, str]) -> None:
    secret = {"greeting": "s3cr3t-greeting"}
    message = refusal(BASE, ssh_key, secrets=secret)
    assert "file:/etc/motd (contents: it holds a value from a Pulumi secret)" in message
    assert "s3cr3t" not in message
    g = publish(BASE, ssh_key, secrets=secret, public_secrets=["file:/etc/motd"])
    assert g.one(DO_OBJECT).is_secret("content"), "published on request, still a secret in the state"


def test_a_secret_variable_that_shows_nowhere_is_named_as_a_variable(ssh_key: dict[str, str]) -> None:
    text = BASE.replace('"{{ greeting }}"', "\"{% if flag == 'on' %}on{% else %}off{% endif %}\"")
    message = refusal(text, ssh_key, secrets={"flag": "on"})
    assert "variable:flag" in message and 'public_secrets=["variable:flag"]' in message
    publish(text, ssh_key, secrets={"flag": "on"}, public_secrets=["variable:flag"])


def test_refusal_and_plan_use_one_detector(ssh_key: dict[str, str]) -> None:
    """The entries refused are the entries ``flatcar-infra plan`` masks as secret."""
    text = BASE + KEY_FILE + PASSWORD
    masked = secret_entries(compile_config(text, variables={"greeting": "hi"}).ignition)
    message = refusal(text, ssh_key)
    named = set(re.search(r"public_secrets=\[(.*)\]", message).group(1).replace('"', "").split(", "))  # type: ignore[union-attr]
    assert named == masked == {"file:/etc/app/ca.key", "user:core"}


def test_a_public_config_is_published(ssh_key: dict[str, str]) -> None:
    g = publish(BASE, ssh_key)
    obj = g.one(DO_OBJECT)
    assert obj.plain("acl") == "public-read" and not obj.is_secret("content")


def test_the_stack_opt_in_is_a_machine_option(tmp_path: Any, ssh_key: dict[str, str]) -> None:
    from tests.components.test_stack_program import run_stack

    bu = tmp_path / "web.bu"
    bu.write_text(BASE.replace('"{{ greeting }}"', "hi") + KEY_FILE)
    machine: dict[str, Any] = {"name": "web1", "config": str(bu)}
    config = {
        "flatcar-infra:target": "digitalocean",
        "flatcar-infra:ssh": {"private_key_file": ssh_key["file"]},
        "flatcar-infra:digitalocean": {
            "region": "fra1",
            "size": "s-1vcpu-2gb",
            "spaces_bucket": "configs",
            "ssh_cidrs": ["198.51.100.0/24"],
        },
        "flatcar-infra:machines": [machine],
    }
    with pytest.raises(pulumi.RunError, match=r'web1: refusing .*public_secrets=\["file:/etc/app/ca.key"\]'):
        run_stack("digitalocean", config)
    machine["public_secrets"] = ["file:/etc/app/ca.key"]
    g = run_stack("digitalocean", config)
    assert "/etc/app/ca.key" in g.one(DO_OBJECT).plain("content")
