"""Pure rollout decisions: the waves, who may start now, when to halt, what each result means.

No I/O and no clock: the runner (``rollout.runner``) reports what happened and asks what to do
next, so every rule here (the unavailability limit, the failure budget, the halt) is tested by
simulation, for any timing of events.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Literal

from flatcar_infra.rollout.policy import RolloutPolicy, RolloutPolicyError

Result = Literal["reprovisioned", "unchanged", "rolled-back", "failed", "not-started"]
RESULTS: tuple[Result, ...] = ("reprovisioned", "unchanged", "rolled-back", "failed", "not-started")
CONVERGED: frozenset[str] = frozenset({"reprovisioned", "unchanged"})
"""Results that leave the machine on its desired config."""
FAILURES: frozenset[str] = frozenset({"rolled-back", "failed"})
"""Results that count against the failure budget."""

Overall = Literal["succeeded", "failed", "halted"]


@dataclass(frozen=True)
class Wave:
    number: int  # 1-based
    hosts: tuple[str, ...]
    canary: bool = False

    def label(self, total: int) -> str:
        return f"wave {self.number}/{total}" + (" (canary)" if self.canary else "")

    def key(self) -> str:
        """A stable, sortable name (``wave-01``): Pulumi shows map keys in sorted order."""
        return f"wave-{self.number:02d}"


def plan_waves(names: Sequence[str], policy: RolloutPolicy) -> tuple[Wave, ...]:
    """The ordered waves: explicit ``waves`` (or the first ``canary`` machines) first, then the
    remaining machines in their given order, ``max_unavailable`` per wave."""
    if len(set(names)) != len(names):
        dup = next(n for n in names if list(names).count(n) > 1)
        raise RolloutPolicyError(f"machine {dup!r} appears twice in the fleet")
    known = set(names)
    head: list[tuple[str, ...]] = []
    for i, wave in enumerate(policy.waves, 1):
        unknown = [n for n in wave if n not in known]
        if unknown:
            raise RolloutPolicyError(f"rollout.waves[{i}]: no machine named {', '.join(map(repr, unknown))} "
                                     "in the fleet", f"machines: {', '.join(names)}")
        head.append(wave)
    if policy.canary:
        if policy.canary >= len(names):
            raise RolloutPolicyError(f"rollout.canary: {policy.canary} canary machine(s) in a fleet of "
                                     f"{len(names)}: nothing would be left to roll out after the canary")
        head.append(tuple(names[:policy.canary]))
    placed = {n for w in head for n in w}
    rest = [n for n in names if n not in placed]
    size = policy.unavailable_limit(len(names))
    batches = [tuple(rest[i:i + size]) for i in range(0, len(rest), size)]
    waves = [*head, *batches]
    return tuple(Wave(i, w, canary=bool(policy.canary) and i == 1) for i, w in enumerate(waves, 1))


@dataclass
class HostState:
    wave: int
    status: Literal["pending", "running", "done"] = "pending"
    takes_slot: bool = True
    result: Result | None = None


@dataclass
class Scheduler:
    """The rollout's bookkeeping and every decision about it.

    ``unavailable``: machines away from service now: running ones that take a slot (a reboot),
    plus machines that failed in an unknown state (they stay away until proven otherwise).
    A machine that converged or was rolled back is back in service.
    """

    waves: tuple[Wave, ...]
    policy: RolloutPolicy
    hosts: dict[str, HostState] = field(default_factory=dict)
    unavailable: set[str] = field(default_factory=set)
    failures: list[str] = field(default_factory=list)
    halt_reason: str | None = None
    peak_unavailable: int = 0

    def __post_init__(self) -> None:
        for w in self.waves:
            for name in w.hosts:
                self.hosts[name] = HostState(w.number)
        self.limit = self.policy.unavailable_limit(len(self.hosts))

    @property
    def halted(self) -> bool:
        return self.halt_reason is not None

    def halt(self, reason: str) -> None:
        if self.halt_reason is None:
            self.halt_reason = reason

    def may_start(self, name: str, *, takes_slot: bool) -> bool:
        """Whether ``name`` may start now without breaking ``max_unavailable``."""
        if self.halted or self.hosts[name].status != "pending":
            return False
        if not takes_slot or name in self.unavailable:
            return True  # stays in service, or is already counted as away
        return len(self.unavailable) < self.limit

    def start(self, name: str, *, takes_slot: bool) -> None:
        if not self.may_start(name, takes_slot=takes_slot):
            raise RuntimeError(f"{name} may not start now")  # a runner bug, never a user's
        st = self.hosts[name]
        st.status, st.takes_slot = "running", takes_slot
        if takes_slot:
            self.unavailable.add(name)
            self.peak_unavailable = max(self.peak_unavailable, len(self.unavailable))

    def finish(self, name: str, result: Result, *, in_service: bool | None = None) -> None:
        """Record a result; halts once the failures exceed the budget.

        ``in_service``: whether the machine is known to serve; by default a ``failed`` machine is
        not (its state is unknown) and every other result is (converged, or rolled back).
        """
        st = self.hosts[name]
        if result == "not-started":
            st.status, st.result = "done", result
            return
        if st.status != "running":
            raise RuntimeError(f"{name} finished without having started")
        st.status, st.result = "done", result
        if in_service is None:
            in_service = result != "failed"
        if in_service:
            self.unavailable.discard(name)
        else:
            self.unavailable.add(name)
            self.peak_unavailable = max(self.peak_unavailable, len(self.unavailable))
        if result in FAILURES:
            self.failures.append(name)
            if len(self.failures) > self.policy.failure_budget:
                budget = self.policy.failure_budget
                self.halt(f"{name} {result}: {len(self.failures)} failure(s), failure budget {budget}")

    def fail_before_start(self, name: str, *, in_service: bool) -> None:
        """A machine found unusable before anything started: refused (untouched, still serving)
        or unreachable (away from service)."""
        st = self.hosts[name]
        if st.status != "pending":
            raise RuntimeError(f"{name} already started")
        st.status, st.takes_slot = "running", False
        self.finish(name, "failed", in_service=in_service)

    def stuck(self, pending: Iterable[str], *, takes_slot: bool = True) -> bool:
        """Nothing runs and no pending machine may start: the failed machines hold every slot."""
        running = any(st.status == "running" for st in self.hosts.values())
        return not running and any(not self.may_start(n, takes_slot=takes_slot) for n in pending)

    def not_started(self) -> list[str]:
        return [n for n, st in self.hosts.items() if st.status == "pending"]

    def wave_changed(self, wave: Wave) -> bool:
        """Whether the wave took a machine out of service (then it bakes and is gated)."""
        return any(self.hosts[n].takes_slot and self.hosts[n].status == "done"
                   and self.hosts[n].result not in (None, "not-started") for n in wave.hosts)

    def overall(self) -> Overall:
        """``succeeded``: every machine on its desired config and no halt (a failed gate after the
        last wave halts too); ``halted``: stopped early; ``failed``: ran to the end with failures
        within the budget."""
        results = [st.result for st in self.hosts.values()]
        if all(r in CONVERGED for r in results) and not self.halted:
            return "succeeded"
        if self.halted or any(r in (None, "not-started") for r in results):
            return "halted"
        return "failed"
