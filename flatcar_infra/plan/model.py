"""A plan: per machine, what changes in its config and what applying it does. Pure values.

Built from two Ignition documents per machine (``None`` where the machine does not exist) and the
machine's reprovisioning policy; renderers (``render.py``) only read it.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from flatcar_infra.plan.diff import ConfigDiff, SecretRules, diff_ignition
from flatcar_infra.plan.effect import Effect, Notice, Status, describe_effect, notices_for
from flatcar_infra.reprovision.policy import Policy


@dataclass(frozen=True)
class MachinePlan:
    name: str
    stack: str | None
    status: Status
    diff: ConfigDiff
    effect: Effect
    notices: tuple[Notice, ...] = ()
    old_source: str | None = None  # where the old config came from, e.g. "git:main:web.bu"
    new_source: str | None = None

    @property
    def title(self) -> str:
        return f"{self.stack}/{self.name}" if self.stack else self.name

    @property
    def has_changes(self) -> bool:
        return self.status != "unchanged"


@dataclass(frozen=True)
class Plan:
    machines: tuple[MachinePlan, ...]
    base: str | None = None  # the git revision compared against, in stack mode

    @property
    def has_changes(self) -> bool:
        return any(m.has_changes for m in self.machines)

    def counts(self) -> dict[str, int]:
        out = {"added": 0, "changed": 0, "removed": 0, "unchanged": 0}
        for m in self.machines:
            out[m.status] += 1
        return out


def plan_machine(
    name: str,
    old: Mapping[str, Any] | None,
    new: Mapping[str, Any] | None,
    *,
    stack: str | None = None,
    policy: Policy | None = None,
    secrets: SecretRules | None = None,
    old_hash: str | None = None,
    new_hash: str | None = None,
    old_source: str | None = None,
    new_source: str | None = None,
    extra_notices: tuple[Notice, ...] = (),
) -> MachinePlan:
    """Diff one machine's configs and describe the effect under its policy."""
    pol = policy or Policy()
    diff = diff_ignition(old, new, secrets=secrets, old_hash=old_hash, new_hash=new_hash)
    status: Status
    if old is None and new is None:
        raise ValueError("a machine needs a config on at least one side")
    if old is None:
        status = "added"
    elif new is None:
        status = "removed"
    else:
        status = "changed" if diff.has_changes else "unchanged"
    notices = notices_for(status, pol, diff, new) + extra_notices
    return MachinePlan(
        name, stack, status, diff, describe_effect(status, pol), notices, old_source, new_source
    )
