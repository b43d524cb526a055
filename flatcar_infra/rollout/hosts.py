"""A machine reached over SSH as a rollout host (the CLI's hosts): the reprovision procedure as
its work, and a read-only preflight with the procedure's own facts and decisions."""

from __future__ import annotations

from typing import Any

from flatcar_infra.reprovision.desired import Desired
from flatcar_infra.reprovision.procedure import ensure, inspect
from flatcar_infra.rollout.results import Done
from flatcar_infra.rollout.runner import Preflight, Report, RolloutHost
from flatcar_infra.ssh import SshTarget


async def preflight(target: SshTarget, desired: Desired, *, root: str = "", **context: Any) -> Preflight:
    """What the procedure would do on this host, without changing anything (not even the lock).
    ``context``: what the run itself will be given (``previous``, ``platform_keys``, ``source``),
    so the preflight refuses exactly what the run would."""
    found = await inspect(target, desired, root=root, **context)
    refusal = "; ".join(r.reason for r in found.plan.refusals) or None
    return Preflight(found.facts.stamp, found.plan.reboots, refusal)


def ssh_host(name: str, target: SshTarget, desired: Desired, *, root: str = "",
             previous: bytes | None = None) -> RolloutHost:
    """``root`` prefixes every host path (tests against a scratch tree); empty on a real host.
    ``previous``: the caller's copy of the config the host runs (the rollback target when the host
    has none of its own; ignored on a host whose running hash it does not stamp)."""

    async def work(report: Report) -> Done:
        out = await ensure(target, desired, report=report, root=root, previous=previous)
        return Done(out.applied_hash, out.rebooted,
                    {"boot_id": out.boot_id, "phases": {k: round(v, 3) for k, v in out.phases},
                     "warnings": list(out.warnings)})

    async def check() -> Preflight:
        return await preflight(target, desired, root=root, previous=previous)

    return RolloutHost(name, desired.config_hash, work, check)
