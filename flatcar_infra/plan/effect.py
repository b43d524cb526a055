"""What applying a config change does to a running machine, in words a reviewer can check.

Pure: the reprovisioning ``Policy`` and whether the machine exists on each side in, an ``Effect``
out. The wording follows what the reprovisioner really does (``flatcar_infra.reprovision``):
``in-place`` runs ``flatcar-reset`` keeping the listed paths and the machine-id, reboots, and
Ignition reruns on a wiped root; the machine is never replaced. The notices name what such a
rerun destroys or breaks (reformatted filesystems, files Ignition refuses to overwrite).
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any, Literal

from flatcar_infra.plan.diff import Action, ConfigDiff
from flatcar_infra.reprovision.policy import Policy

Status = Literal["changed", "unchanged", "added", "removed"]
EffectAction = Literal["none", "create", "destroy", "reboot", "replace", "drift"]


@dataclass(frozen=True)
class Notice:
    """Something a reviewer must not miss (``danger``: data loss or a failing boot)."""

    level: Literal["danger", "warning", "info"]
    message: str


@dataclass(frozen=True)
class Effect:
    """How the change reaches the machine: ``action`` for machines, ``summary`` for people."""

    strategy: str
    action: EffectAction
    summary: str
    keeps: tuple[str, ...] = ()
    wipes: str = ""


def describe_effect(status: Status, policy: Policy) -> Effect:
    s = policy.strategy
    if status == "unchanged":
        return Effect(s, "none", "no change: nothing is applied")
    if status == "added":
        return Effect(s, "create", "new machine: created, Ignition runs on its first boot")
    if status == "removed":
        return Effect(s, "destroy", "machine removed: it is destroyed with its disks")
    if s == "ignore":
        return Effect(
            s,
            "drift",
            "nothing is applied (strategy ignore): the machine keeps its old "
            "config and shows drift until it is reprovisioned",
        )
    if s == "replace":
        return Effect(
            s,
            "replace",
            "instance replaced (strategy replace): a new machine with a new "
            "IP address and new SSH host keys; nothing on the old one is kept",
            wipes="the whole machine",
        )
    keeps = ["IP address", "disks other than ROOT"]
    if policy.keep_machine_id:
        keeps.append("machine-id")
    if s == "wipe-root":
        return Effect(
            s,
            "reboot",
            (
                "reboots in place, not replaced (strategy wipe-root): the config reformats ROOT, "
                "Ignition reruns on an empty root filesystem"
            ),
            keeps=tuple(keeps),
            wipes="the whole ROOT filesystem, SSH host keys included",
        )
    keeps.insert(1, "SSH host keys")
    keeps += [f"paths matching {rx}" for rx in policy.all_keep_paths if not rx.startswith("/etc/ssh/")]
    return Effect(
        s,
        "reboot",
        (
            "reboots in place, not replaced (strategy in-place): flatcar-reset, reboot, "
            "Ignition reruns with the new config"
        ),
        keeps=tuple(keeps),
        wipes="everything else on the ROOT filesystem",
    )


def notices_for(
    status: Status, policy: Policy, diff: ConfigDiff, new: Mapping[str, Any] | None
) -> tuple[Notice, ...]:
    """Data-loss and failed-boot risks of this change under this policy."""
    if status != "changed" or policy.strategy in ("ignore", "replace") or new is None:
        return ()
    if policy.strategy == "wipe-root":
        return data_loss_notices(new, root_expected=True)
    return data_loss_notices(new, root_expected=False) + kept_path_notices(diff, new, policy.all_keep_paths)


def _is_root_fs(fs: Mapping[str, Any]) -> bool:
    return fs.get("label") == "ROOT" or fs.get("device") in (
        "/dev/disk/by-label/ROOT",
        "/dev/disk/by-partlabel/ROOT",
    )


def data_loss_notices(ignition: Mapping[str, Any], *, root_expected: bool) -> tuple[Notice, ...]:
    """What rerunning Ignition with ``ignition`` destroys on an existing host. ``root_expected``:
    reformatting ROOT is the point (strategy wipe-root), so it is a warning, not an accident."""
    storage = ignition.get("storage") or {}
    out: list[Notice] = []
    for fs in storage.get("filesystems") or ():
        if not fs.get("wipeFilesystem"):
            continue
        if _is_root_fs(fs):
            out.append(
                Notice(
                    "warning" if root_expected else "danger",
                    (
                        f"ROOT filesystem {fs.get('device')} has wipeFilesystem: true: it is reformatted, "
                        "so kept paths (SSH host keys, /var/lib/flatcar-infra) are lost too"
                    ),
                )
            )
        else:
            out.append(
                Notice(
                    "danger",
                    (
                        f"filesystem {fs.get('device')} has wipeFilesystem: true: "
                        "it is reformatted on every reprovision and its data is lost"
                    ),
                )
            )
    for disk in storage.get("disks") or ():
        if disk.get("wipeTable"):
            out.append(
                Notice(
                    "danger",
                    (
                        f"disk {disk.get('device')} has wipeTable: true: its partition table is rewritten "
                        "on every reprovision"
                    ),
                )
            )
    for luks in storage.get("luks") or ():
        if luks.get("wipeVolume"):
            out.append(
                Notice(
                    "danger",
                    (
                        f"LUKS volume {luks.get('name')} has wipeVolume: true: it is re-created (data lost) "
                        "on every reprovision"
                    ),
                )
            )
    return tuple(out)


def kept_path_notices(diff: ConfigDiff, new: Mapping[str, Any], keep: Iterable[str]) -> tuple[Notice, ...]:
    """Where the keep list and the config disagree on an in-place reprovision: a removed entry
    under a kept path stays on the host; a new file there without ``overwrite: true`` makes
    Ignition fail ("file exists") and leaves the host in an emergency shell."""
    patterns = [re.compile(f"(?:{p})(?:/.*)?") for p in keep]

    def kept(path: str) -> bool:
        return any(p.fullmatch(path) for p in patterns)

    out: list[Notice] = []
    for c in diff.changes:
        if c.action is Action.REMOVED and c.kind in ("file", "dir", "link") and kept(c.name):
            out.append(
                Notice("warning", f"{c.name} is removed from the config but stays on the host (kept path)")
            )
    for f in (new.get("storage") or {}).get("files") or ():
        path = f.get("path", "")
        if f.get("contents") is not None and not f.get("overwrite") and kept(path):
            out.append(
                Notice(
                    "danger",
                    f"{path} is under a kept path and has contents without overwrite: true: Ignition "
                    "fails when it already exists and the host stops in an emergency shell",
                )
            )
    return tuple(out)
