"""Manifest keys are what a reviewer recognizes; digests change exactly when the entry changes."""

from __future__ import annotations

import copy
from typing import Any

from flatcar_infra.manifest import build_manifest

BASE: dict[str, Any] = {
    "ignition": {"version": "3.3.0"},
    "storage": {
        "files": [{"path": "/etc/x", "mode": 420, "contents": {"source": "data:,a"}}],
        "directories": [{"path": "/var/lib/app"}],
        "links": [{"path": "/etc/l", "target": "/etc/x"}],
    },
    "systemd": {
        "units": [
            {"name": "app.service", "enabled": True, "contents": "[Service]\n"},
            {"name": "docker.service", "dropins": [{"name": "10-x.conf", "contents": "[Service]\n"}]},
        ]
    },
    "passwd": {"users": [{"name": "core", "sshAuthorizedKeys": ["ssh-ed25519 AAAA"]}]},
    "kernelArguments": {"shouldExist": ["quiet"], "shouldNotExist": ["debug"]},
}


def test_keys() -> None:
    assert list(build_manifest(BASE)) == [
        "dir:/var/lib/app",
        "dropin:docker.service/10-x.conf",
        "file:/etc/x",
        "kernel-arg:+quiet",
        "kernel-arg:-debug",
        "link:/etc/l",
        "unit:app.service",
        "user:core",
    ]


def test_digest_changes_only_for_the_changed_entry() -> None:
    changed = copy.deepcopy(BASE)
    changed["storage"]["files"][0]["mode"] = 0o600
    a, b = build_manifest(BASE), build_manifest(changed)
    assert {k for k in a if a[k] != b[k]} == {"file:/etc/x"}


def test_digest_does_not_contain_the_value() -> None:
    secret = copy.deepcopy(BASE)
    secret["passwd"]["users"][0]["passwordHash"] = "$6$supersecret"
    m = build_manifest(secret)
    assert all("supersecret" not in v and len(v) == 12 for v in m.values())
