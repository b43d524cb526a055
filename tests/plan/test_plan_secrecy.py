"""The plan never prints a secret, wherever in a config it sits and whatever the format.

Secrets are planted (found by content, in innocently named places) in every place a plan can show
config bytes: file and unit contents, drop-ins, field values, list members, kernel arguments,
remote URLs (path, credentials, query), HTTP header values, inline merged configs, gzip and binary
contents, verification hashes. Every renderer (text with and without color, Markdown with and
without the size cut, JSON) is read for each needle, for an added, a changed and a removed machine.
The stack form is checked end to end with ``secure:`` values: what the CI example posts as a PR
comment holds neither the ciphertext nor the stand-in the plan compiles in place of the value.
"""

from __future__ import annotations

import base64
import gzip
import json
import re
from collections.abc import Callable
from typing import Any

import pytest

from flatcar_infra.plan.model import Plan, plan_machine
from flatcar_infra.plan.render import render_json, render_markdown, render_text
from flatcar_infra.secrets import SECRET_MARKER
from tests.plan.helpers import Repo, data_url, file_entry, ign

Cli = Callable[..., tuple[int, str, str]]

KEY = ("-----BEGIN OPENSSH PRIVATE KEY-----\nb3BlbnNzaC1rZXktdjEAAAAABG5vbmUAAAAEbm9uZQAAAA\n"
       "-----END OPENSSH PRIVATE KEY-----\n")
GH = "ghp_" + "Z" * 36
NEEDLES = ("b3BlbnNzaC1rZXkt", "hunter2hunter2", GH, "s3cr3tpass", "sigvalue123", "Bearer abc",
           "tok3n-in-karg", "supersecretgecos", "c2VjcmV0IGd6aXA", "deadbeefcafe")


def planted(variant: str) -> dict[str, Any]:
    """A config with a secret in every printable place; ``variant`` changes every entry."""
    secret_gz = gzip.compress(f"API_TOKEN=hunter2hunter2{variant}\n".encode(), mtime=0)
    merged = json.dumps({"ignition": {"version": "3.3.0"}, "storage": {"files": [file_entry("/k", KEY)]}})
    return ign(
        ignition={"version": "3.3.0", "config": {"merge": [data_url(merged + " " * len(variant))]},
                  "proxy": {"httpsProxy": f"http://proxyuser:s3cr3tpass@proxy{variant}:3128"}},
        storage={"files": [
            file_entry("/etc/ssh/host_key", KEY + variant),
            {"path": "/etc/app/env.gz", "contents": {
                "source": "data:;base64," + base64.b64encode(secret_gz).decode(), "compression": "gzip"}},
            {"path": "/etc/app/blob", "contents": data_url(b"\x00\x01" + (KEY + variant).encode(), b64=True)},
            {"path": "/etc/app/remote", "contents": {
                "source": f"https://deploy:s3cr3tpass@h.example/{GH}/{variant}?X-Amz-Signature=sigvalue123",
                "httpHeaders": [{"name": "Authorization", "value": f"Bearer abc{variant}"}],
                "verification": {"hash": f"sha512-deadbeefcafe{variant}"}}},
            {"path": "/etc/app/tls.key", "contents": {
                "source": f"https://h.example/tls{variant}.key",
                "verification": {"hash": f"sha512-deadbeefcafe{variant}"}}},
        ]},
        systemd={"units": [{
            "name": "app.service",
            "contents": f"[Service]\nEnvironment=DB_PASSWORD=hunter2hunter2{variant}\n",
            "dropins": [{"name": "10-env.conf", "contents": f"[Service]\nEnvironment=GH={GH}{variant}\n"}],
        }]},
        passwd={"users": [{
            "name": "core",
            "gecos": f"password=supersecretgecos{variant}",
            "sshAuthorizedKeys": ["ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIPub core", KEY + variant],
        }]},
        kernelArguments={"shouldExist": [f"api_token=tok3n-in-karg{variant}", "console=ttyS0"]},
    )


def every_rendering(plan: Plan) -> str:
    return "\n".join([render_text(plan), render_text(plan, color=True), render_markdown(plan),
                      render_markdown(plan, max_size=2048), render_json(plan)])


@pytest.mark.parametrize("sides", ["added", "changed", "removed"])
def test_no_planted_secret_is_ever_printed(sides: str) -> None:
    old = None if sides == "added" else planted("1")
    new = None if sides == "removed" else planted("2")
    plan = Plan((plan_machine("m", old, new),))
    out = every_rendering(plan)
    for needle in NEEDLES:
        assert needle not in out, needle
    changes = {c.key: c for c in plan.machines[0].diff.changes}
    assert all(c.secret for k, c in changes.items() if k.startswith("kernel-arg:+api_token"))
    if sides == "changed":  # the reviewer still learns what changed, only not the values
        text = render_text(plan)
        assert "contents (secret, changed)" in text and "gecos (secret, changed)" in text
        assert "sshAuthorizedKeys (secret, changed)" in text and "kernel arg" not in text
        assert "(secret)" in text and "console=ttyS0" not in text  # unchanged public argument
        assert "headers Authorization" not in text or "Bearer" not in text


def test_public_values_are_still_shown() -> None:
    def cfg(gecos: str, key: str, console: str) -> dict[str, Any]:
        return ign(passwd={"users": [{"name": "core", "gecos": gecos, "sshAuthorizedKeys": [key]}]},
                   kernelArguments={"shouldExist": [console]})

    old = cfg("Core user", "ssh-ed25519 AAAAold a", "console=ttyS0")
    new = cfg("Core admin", "ssh-ed25519 AAAAnew a", "console=ttyS1")
    text = render_text(Plan((plan_machine("m", old, new),)))
    assert "gecos Core user → Core admin" in text and "+ssh-ed25519 AAAAnew a" in text
    assert "console=ttyS1" in text and "secret" not in text


STACK = """\
config:
  flatcar-infra:target: local
  flatcar-infra:machines:
    - name: web-1
      config: configs/web.bu.j2
      variables:
        token:
          secure: {ct}
        level: {lvl}
"""
CONFIG = """\
variant: flatcar
version: 1.0.0
storage:
  files:
    - path: /etc/app.env
      contents:
        inline: "TOKEN={{ token }}\\nLEVEL={{ level }}\\n"
    - path: /etc/shout
      contents:
        inline: "{{ token | upper }} {{ level }}"
    - path: /etc/remote
      contents:
        source: https://h.example/cfg-{{ level }}
        http_headers: [{name: X-Token, value: "{{ token }}"}]
systemd:
  units:
    - name: app.service
      contents: "[Service]\\nEnvironment=T={{ token }} L={{ level }}\\n"
      dropins:
        - name: 10-t.conf
          contents: "[Service]\\nEnvironment=T={{ token }} L={{ level }}\\n"
passwd:
  users:
    - name: core
      gecos: "{{ token }} {{ level }}"
      ssh_authorized_keys: ["{{ token }}", "ssh-ed25519 AAAA{{ level }} a"]
kernel_arguments:
  should_exist: ["app.token={{ token }}", "app.level={{ level }}"]
"""


def test_stack_plan_prints_no_secure_value_in_any_format(repo: Repo, cli: Cli) -> None:
    repo.write("configs/web.bu.j2", CONFIG)
    repo.write("stacks/Pulumi.prod.yaml", STACK.format(ct="v1:AAAACiphertextOld", lvl="info"))
    repo.commit("base")
    repo.write("stacks/Pulumi.prod.yaml", STACK.format(ct="v1:BBBBCiphertextNew", lvl="debug"))
    outputs = {}
    for fmt in ("text", "markdown", "json"):
        code, out, err = cli("plan", "--stack-dir", "stacks", "--base", "main", "--format", fmt)
        assert code == 0, err
        outputs[fmt] = out
    # the CI example's PR comment (examples/ci/.github/workflows/flatcar-plan.yml)
    code, comment, err = cli("plan", "--stack-dir", "stacks", "--base", "main", "--format", "markdown",
                             "--max-size", "60000")
    assert code == 0, err
    for name, out in {**outputs, "comment": comment}.items():
        assert "Ciphertext" not in out, name
        assert not re.search(re.escape(SECRET_MARKER), out, re.IGNORECASE), name
        assert "debug" in out, name  # the public variable's change is shown
    text = outputs["text"]
    for entry in ("/etc/app.env", "/etc/shout", "app.service", "10-t.conf"):
        assert re.search(re.escape(entry) + r".*\(secret, changed\)", text), entry
    assert "gecos (secret, changed)" in text and "kernel-arg" not in text
    doc = json.loads(outputs["json"])
    keys = {c["key"] for c in doc["machines"][0]["changes"]}
    assert "kernel-arg:+(secret)" not in keys or all(SECRET_MARKER not in k for k in keys)
    assert "secret variable token changed or was re-encrypted" in text
