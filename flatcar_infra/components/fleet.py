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

import importlib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import pulumi

from flatcar_infra.components.args import Delivery, MachineCommon
from flatcar_infra.components.config import ConfigOutput
from flatcar_infra.components.machines import FlatcarMachine, depends_on_of
from flatcar_infra.errors import UserError
from flatcar_infra.rollout.policy import RolloutPolicy
from flatcar_infra.rollout.schedule import plan_waves

if TYPE_CHECKING:
    from flatcar_infra.rollout.provider import Rollout


@dataclass(frozen=True)
class FleetArgs:
    """``machines``: name → the machine's args (``ExistingMachineArgs``, ``AwsMachineArgs``, any
    target's ``<X>MachineArgs``), in rollout order (the default waves follow it). ``rollout``: how
    changes move through the fleet (``RolloutPolicy``)."""

    machines: Mapping[str, MachineCommon]
    rollout: RolloutPolicy = field(default_factory=RolloutPolicy)

    def __post_init__(self) -> None:
        if not self.machines:
            raise pulumi.RunError("FleetArgs.machines: a fleet needs at least one machine")
        for name, args in self.machines.items():
            if not isinstance(args, MachineCommon):
                raise pulumi.RunError(f"FleetArgs.machines[{name!r}]: expected a machine's args (Existing"
                                      f"MachineArgs, AwsMachineArgs, ...), got {type(args).__name__}")
            _machine_class(type(args))  # an args class without a machine component fails here
            if args.policy.strategy == "replace":
                raise pulumi.RunError(f"FleetArgs.machines[{name!r}]: strategy 'replace' replaces the "
                                      "instance itself; a rollout applies changes in place (in-place or "
                                      "wipe-root), so give such machines their own components")


@dataclass(frozen=True)
class _Wiring:
    """What a machine hands the fleet instead of creating its own ``Reprovision``."""

    args: MachineCommon
    config: ConfigOutput  # with the machine's SSH access merged in: what is delivered
    host: pulumi.Input[str]
    port: pulumi.Input[int]
    host_key: pulumi.Input[str] | None
    delivery: Delivery
    config_url: pulumi.Input[str] | None
    depends_on: Sequence[pulumi.Resource]
    machine_identity: pulumi.Input[str] | None
    platform_keys: pulumi.Input[Sequence[pulumi.Input[str]]] | None
    config_source: pulumi.Input[Mapping[str, Any]] | None


class _Member(FlatcarMachine):
    """Mixed in before a machine component: everything of the machine but its ``Reprovision``
    and hook commands, which the fleet's rollout does instead."""

    _wiring: _Wiring

    def _wire(self, name: str, args: MachineCommon, *, host: pulumi.Input[str], port: pulumi.Input[int],
              host_key: pulumi.Input[str] | None, delivery: Delivery, config_url: pulumi.Input[str] | None,
              depends_on: Sequence[pulumi.Resource], machine_identity: pulumi.Input[str] | None = None,
              platform_keys: pulumi.Input[Sequence[pulumi.Input[str]]] | None = None,
              config_source: pulumi.Input[Mapping[str, Any]] | None = None) -> None:
        self._wiring = _Wiring(args, self.config, host, port, host_key, delivery, config_url,
                               [*depends_on, *self._user_depends_on], machine_identity, platform_keys,
                               config_source)
        self.config_hash = self.config.hash

    def _finish(self) -> None:
        """Deferred: the applied hash and host key come from the fleet's rollout (``_joined``)."""

    def _joined(self, rollout: Rollout, name: str) -> None:
        def pick(key: str) -> pulumi.Output[Any]:
            return rollout.hosts.apply(lambda h: ((h or {}).get(name) or {}).get(key))

        self.applied_hash = pick("applied_hash")
        self.host_key = pick("host_key")
        FlatcarMachine._finish(self)


_MEMBERS: dict[type, type[_Member]] = {}


def _machine_class(args_type: type) -> type[FlatcarMachine]:
    """``<X>MachineArgs`` → ``<X>Machine`` of the same target module."""
    module = importlib.import_module(args_type.__module__)
    machine = getattr(module, args_type.__name__.removesuffix("Args"), None)
    if not (isinstance(machine, type) and issubclass(machine, FlatcarMachine)):
        raise pulumi.RunError(f"{args_type.__name__}: no machine component next to it for a fleet")
    return machine


def _new_member(name: str, args: MachineCommon, parent: pulumi.Resource) -> _Member:
    """The machine's own component class with ``_Member`` mixed in (same type token)."""
    cls: Any = _MEMBERS.get(type(args))
    if cls is None:
        machine = _machine_class(type(args))
        cls = _MEMBERS[type(args)] = type(f"Fleet{machine.__name__}", (_Member, machine), {})
    member: _Member = cls(name, args, pulumi.ResourceOptions(parent=parent))
    return member


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
        members = {n: _new_member(n, a, self) for n, a in args.machines.items()}
        plan: dict[str, dict[str, Any]] = {}
        deps: list[pulumi.Resource] = depends_on_of(opts)
        for wave in waves:
            plan[wave.key()] = {}
            for n in wave.hosts:
                w = members[n]._wiring
                a = w.args
                plan[wave.key()][n] = {
                    "host": w.host, "port": w.port, "user": a.ssh.user, "host_key": w.host_key,
                    "config_hash": w.config.hash, "manifest": w.config.manifest,
                    "policy": a.policy.to_dict(), "delivery": w.delivery, "config_url": w.config_url,
                    "machine_identity": w.machine_identity, "platform_keys": w.platform_keys or [],
                    "config_source": w.config_source,
                    "hooks": {"before": a.hooks.before, "after": a.hooks.after},
                }
                deps += w.depends_on
        self.rollout = Rollout(
            f"{name}-rollout", waves=plan, order=names, rollout=args.rollout,
            configs={n: m._wiring.config.canonical for n, m in members.items()},
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
