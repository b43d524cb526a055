"""``Fleet``: machines whose config changes roll out in waves, in one ``pulumi up``.

```python
fleet = Fleet("web", FleetArgs(
    machines={"web-1": AwsMachineArgs(...), "web-2": AwsMachineArgs(...), "web-3": ...},
    rollout=RolloutPolicy(max_unavailable=1, canary=1, bake_seconds=60,
                          gates=("curl -fsS https://lb.example.com/healthz",)),
))
```

The fleet builds each machine component (hosting, instance, volumes: exactly as on its own) but
not the machine's own ``Reprovision`` resource: one ``Rollout`` resource applies every config
change instead, wave by wave (``flatcar_infra.rollout.provider`` says why one resource and not a
chain of per-machine ones), and a ``RolloutVerdict`` fails the deployment unless every machine
ends on its desired config. A machine's ``hooks`` run around ITS reprovision inside the rollout,
so drains happen one wave at a time, not all at once. ``depends_on`` given to the fleet reaches
the rollout; the rollout also waits for every machine's hosting object and instance.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import pulumi

from flatcar_infra.components.args import (
    AwsMachineArgs,
    Delivery,
    DigitalOceanMachineArgs,
    ExistingMachineArgs,
    MachineCommon,
)
from flatcar_infra.components.machines import (
    AwsMachine,
    DigitalOceanMachine,
    ExistingMachine,
    FlatcarMachine,
    depends_on_of,
)
from flatcar_infra.errors import UserError
from flatcar_infra.rollout.policy import RolloutPolicy
from flatcar_infra.rollout.schedule import plan_waves

if TYPE_CHECKING:
    from flatcar_infra.rollout.provider import Rollout


@dataclass(frozen=True)
class FleetArgs:
    """``machines``: name → the machine's args, in rollout order (the default waves follow it).
    ``rollout``: how changes move through the fleet (``RolloutPolicy``)."""

    machines: Mapping[str, MachineCommon]
    rollout: RolloutPolicy = field(default_factory=RolloutPolicy)

    def __post_init__(self) -> None:
        if not self.machines:
            raise pulumi.RunError("FleetArgs.machines: a fleet needs at least one machine")
        for name, args in self.machines.items():
            if not isinstance(args, ExistingMachineArgs | AwsMachineArgs | DigitalOceanMachineArgs):
                raise pulumi.RunError(f"FleetArgs.machines[{name!r}]: expected ExistingMachineArgs, "
                                      f"AwsMachineArgs or DigitalOceanMachineArgs, got {type(args).__name__}")
            if args.policy.strategy == "replace":
                raise pulumi.RunError(f"FleetArgs.machines[{name!r}]: strategy 'replace' replaces the "
                                      "instance itself; a rollout applies changes in place (in-place or "
                                      "wipe-root), so give such machines their own components")


@dataclass(frozen=True)
class _Wiring:
    """What a machine hands the fleet instead of creating its own ``Reprovision``."""

    args: MachineCommon
    host: pulumi.Input[str]
    port: pulumi.Input[int]
    host_key: pulumi.Input[str] | None
    delivery: Delivery
    config_url: pulumi.Input[str] | None
    depends_on: Sequence[pulumi.Resource]


class _Member(FlatcarMachine):
    """A machine inside a fleet: everything but the ``Reprovision`` and the hook commands."""

    _wiring: _Wiring

    def _wire(self, name: str, args: MachineCommon, *, host: pulumi.Input[str], port: pulumi.Input[int],
              host_key: pulumi.Input[str] | None, delivery: Delivery, config_url: pulumi.Input[str] | None,
              depends_on: Sequence[pulumi.Resource]) -> None:
        self._wiring = _Wiring(args, host, port, host_key, delivery, config_url, list(depends_on))
        self.config_hash = args.config.hash

    def _finish(self) -> None:
        """Deferred: the applied hash and host key come from the fleet's rollout (``_joined``)."""

    def _joined(self, rollout: Rollout, name: str) -> None:
        def pick(key: str) -> pulumi.Output[Any]:
            return rollout.hosts.apply(lambda h: ((h or {}).get(name) or {}).get(key))

        self.applied_hash = pick("applied_hash")
        self.host_key = pick("host_key")
        FlatcarMachine._finish(self)


class _ExistingMember(_Member, ExistingMachine):
    pass


class _AwsMember(_Member, AwsMachine):
    pass


class _DigitalOceanMember(_Member, DigitalOceanMachine):
    pass


def _member(name: str, args: MachineCommon, parent: pulumi.Resource) -> _Member:
    opts = pulumi.ResourceOptions(parent=parent)
    if isinstance(args, ExistingMachineArgs):
        return _ExistingMember(name, args, opts)
    if isinstance(args, AwsMachineArgs):
        return _AwsMember(name, args, opts)
    assert isinstance(args, DigitalOceanMachineArgs)
    return _DigitalOceanMember(name, args, opts)


class Fleet(pulumi.ComponentResource):
    """Machines + one rollout for their config changes. ``machines``: name → machine component;
    ``results``: name → {result, applied_hash, desired_hash, wave, started_at, finished_at};
    ``result``: the rollout's overall result."""

    machines: dict[str, FlatcarMachine]
    results: pulumi.Output[dict[str, Any]]
    result: pulumi.Output[str]

    def __init__(self, name: str, args: FleetArgs, opts: pulumi.ResourceOptions | None = None) -> None:
        from flatcar_infra.rollout.provider import Rollout, RolloutVerdict

        super().__init__("flatcar-infra:fleet:Fleet", name, None, opts)
        names = list(args.machines)
        try:
            waves = plan_waves(names, args.rollout)
        except UserError as exc:
            raise pulumi.RunError(f"Fleet {name}: {exc}") from None
        members = {n: _member(n, a, self) for n, a in args.machines.items()}
        plan: dict[str, dict[str, Any]] = {}
        deps: list[pulumi.Resource] = depends_on_of(opts)
        for wave in waves:
            plan[wave.key()] = {}
            for n in wave.hosts:
                w = members[n]._wiring
                a = w.args
                plan[wave.key()][n] = {
                    "host": w.host, "port": w.port, "user": a.ssh.user, "host_key": w.host_key,
                    "config_hash": a.config.hash, "manifest": a.config.manifest,
                    "policy": a.policy.to_dict(), "delivery": w.delivery, "config_url": w.config_url,
                    "machine_identity": None, "platform_keys": [],
                    "hooks": {"before": a.hooks.before, "after": a.hooks.after},
                }
                deps += w.depends_on
        self.rollout = Rollout(
            f"{name}-rollout", waves=plan, order=names, rollout=args.rollout,
            configs={n: a.config.canonical for n, a in args.machines.items()},
            private_keys={n: a.ssh.private_key for n, a in args.machines.items()},
            opts=pulumi.ResourceOptions(parent=self, depends_on=deps))
        self.verdict = RolloutVerdict(f"{name}-verdict", rollout=self.rollout, fleet=name,
                                      opts=pulumi.ResourceOptions(parent=self))
        for n, m in members.items():
            m._joined(self.rollout, n)
        self.machines = dict(members)
        keep = ("result", "applied_hash", "desired_hash", "wave", "started_at", "finished_at")
        self.results = self.rollout.hosts.apply(
            lambda hosts: {n: {k: (h or {}).get(k) for k in keep} for n, h in (hosts or {}).items()})
        self.result = self.rollout.result
        self.register_outputs({"results": self.results, "result": self.result})
