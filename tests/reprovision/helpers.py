"""Builders shared by the reprovision tests: stamped configs and host facts."""

from __future__ import annotations

import json
from dataclasses import replace
from typing import Any

from flatcar_infra.compiler.api import CompiledConfig, compile_config
from flatcar_infra.reprovision.desired import Desired
from flatcar_infra.reprovision.hoststate import HostFacts, LockOwner, Staging
from flatcar_infra.reprovision.policy import Policy


def ignition(files: dict[str, str], *, version: str = "3.3.0", units: dict[str, bool] | None = None,
             extra: dict[str, Any] | None = None) -> str:
    from flatcar_infra.compiler.dataurl import data_url

    doc: dict[str, Any] = {
        "ignition": {"version": version},
        "storage": {"files": [{"path": p, "mode": 0o644, "overwrite": True,
                               "contents": {"source": data_url(c.encode())[0]}} for p, c in files.items()]},
    }
    if units:
        doc["systemd"] = {"units": [{"name": n, "enabled": e,
                                     "contents": "[Service]\nExecStart=/bin/true\n[Install]\n"
                                                 "WantedBy=multi-user.target\n"} for n, e in units.items()]}
    doc.update(extra or {})
    return json.dumps(doc)


def compiled(files: dict[str, str], **kw: Any) -> CompiledConfig:
    return compile_config(ignition(files, **kw), filename="test.ign", stamp_config=True)


def desired(files: dict[str, str] | None = None, *, policy: Policy | None = None, delivery: str = "file",
            config_url: str | None = None, **kw: Any) -> Desired:
    c = compiled(files or {"/etc/app.conf": "v1\n"}, **kw)
    return Desired.from_config(c.canonical, c.hash, policy or Policy(), delivery, config_url)


ME = LockOwner("operator", 4242, "alice", "tok-me", 1000.0)
OTHER = LockOwner("laptop", 99, "bob", "tok-other", 900.0)
OLD = compiled({"/etc/app.conf": "v0\n"})
"""The config the hosts of ``facts()`` run (and keep as their rollback target)."""


def facts(**kw: Any) -> HostFacts:
    base = HostFacts(boot_id="boot-1", os_id="flatcar", version="3602.2.0",
                     reset_tool="/usr/sbin/flatcar-reset",
                     stamp=OLD.hash, oem_config_hash=None, grub_config_url=None, cmdline_config_url=None,
                     lock_text=None, lock_age=None, now=2000.0, reset_staged=False, first_boot=False,
                     staging=None, ignition_result_mtime=1500.0, machine_id="a" * 32,
                     applied_config=OLD.canonical)
    return replace(base, **kw)


def staging(desired_hash: str, boot_id: str = "boot-1", **kw: Any) -> Staging:
    return Staging(desired_hash, boot_id, kw.pop("staged_at", 1900.0), kw.pop("delivery", "file"), **kw)
