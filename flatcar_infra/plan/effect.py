"""What applying a config change does to a running machine, in words a reviewer can check.

Pure: the reprovisioning ``Policy`` and whether the machine exists on each side in, an ``Effect``
out. The wording follows what the reprovisioner really does (``flatcar_infra.reprovision``):
``in-place`` runs ``flatcar-reset`` keeping the listed paths and the machine-id, reboots, and
Ignition reruns on a wiped root; the machine is never replaced.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Literal

from flatcar_infra.plan.diff import ConfigDiff, Notice, data_loss_notices, kept_path_notices
from flatcar_infra.reprovision.policy import Policy

Status = Literal["changed", "unchanged", "added", "removed"]
EffectAction = Literal["none", "create", "destroy", "reboot", "replace", "drift"]


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
    out = list(data_loss_notices(new, rerun=True))
    if policy.strategy == "wipe-root":
        # Reformatting ROOT is the point of wipe-root: say it, but not as an accident.
        out = [Notice("warning", n.message) if "ROOT filesystem" in n.message else n for n in out]
    else:
        out += kept_path_notices(diff, new, policy.all_keep_paths)
    return tuple(out)
