"""Ignition configs (spec 3.3.0, what the stand-in's Ignition 2.14 accepts) for the VM tests."""

from __future__ import annotations

import urllib.parse
from typing import Any


def data_url(text: str) -> str:
    return "data:," + urllib.parse.quote(text)


def file_entry(path: str, text: str, mode: int = 0o644) -> dict[str, Any]:
    return {"path": path, "mode": mode, "overwrite": True, "contents": {"source": data_url(text)}}


def hello_unit(generation: str) -> dict[str, Any]:
    """An enabled oneshot unit: proves Ignition's preset is applied on that boot."""
    return {
        "name": f"hello-{generation}.service",
        "enabled": True,
        "contents": (
            "[Unit]\nDescription=hello from config " + generation + "\n"
            "[Service]\nType=oneshot\nRemainAfterExit=yes\n"
            f"ExecStart=/bin/sh -c 'echo {generation} > /run/hello'\n"
            "[Install]\nWantedBy=multi-user.target\n"
        ),
    }


def generation_config(generation: str, *, extra_files: tuple[str, ...] = (),
                      wipe_root: bool = False, users: tuple[str, ...] = ()) -> dict[str, Any]:
    """A config that marks its generation in /etc/generation, a unit and an optional user."""
    files = [file_entry("/etc/generation", generation + "\n")]
    files += [file_entry(path, f"only in {generation}\n") for path in extra_files]
    doc: dict[str, Any] = {
        "ignition": {"version": "3.3.0"},
        "storage": {"files": files},
        "systemd": {"units": [hello_unit(generation)]},
        "passwd": {"users": [{"name": u, "groups": ["sudo"]} for u in users]},
    }
    if wipe_root:
        doc["storage"]["filesystems"] = [{"device": "/dev/disk/by-label/ROOT", "format": "ext4",
                                          "label": "ROOT", "wipeFilesystem": True}]
    return doc
