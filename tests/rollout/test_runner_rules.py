"""The runner's rules for ANY timing of events, checked by running it many times over random fleets.

Each machine's work here is a timed coroutine that ends the way the procedure's contract says a
machine can end (converged with a reboot, verified without one, rolled back, failed): the rules
under test are the runner's and the scheduler's, which never look inside the work. What real
hosts do is tested against real sshd servers and VMs elsewhere (test_cli_sshd, tests/vm).
"""

from __future__ import annotations

import asyncio
import random
import time
from dataclasses import dataclass, field

import pytest

from flatcar_infra.reprovision.messages import ReprovisionError
from flatcar_infra.rollout.policy import RolloutPolicy
from flatcar_infra.rollout.results import Done
from flatcar_infra.rollout.runner import Preflight, Report, RolloutHost, run_rollout

OLD, NEW = "sha512-" + "0" * 128, "sha512-" + "1" * 128


@dataclass
class Fleet:
    """Records what every machine's work did and when (monotonic)."""

    away: set[str] = field(default_factory=set)
    peak: int = 0
    events: list[tuple[float, str, str]] = field(default_factory=list)  # (t, name, "start"|result)
    failed_for_good: set[str] = field(default_factory=set)
    limit: int = 1
    violations: list[str] = field(default_factory=list)

    def host(
        self, name: str, outcome: str, delay: float, *, reboots: bool = True, preflight: str = "ok"
    ) -> RolloutHost:
        async def work(report: Report) -> Done:
            self.events.append((time.monotonic(), name, "start"))
            if reboots:
                self.away.add(name)
                counted = self.away | self.failed_for_good
                self.peak = max(self.peak, len(counted))
                if len(counted) > self.limit:
                    self.violations.append(f"{name}: {sorted(counted)} away at once (limit {self.limit})")
            report("stage", "working", None)
            await asyncio.sleep(delay)
            self.away.discard(name)
            self.events.append((time.monotonic(), name, outcome))
            if outcome == "rolled-back":
                raise ReprovisionError(
                    "health check failed", "rolled back", applied_hash=OLD, rolled_back=True
                )
            if outcome == "failed":
                self.failed_for_good.add(name)
                raise ReprovisionError("did not come back", "rebooting")
            if outcome == "crash":
                self.failed_for_good.add(name)
                raise RuntimeError("a bug")
            return Done(NEW, reboots)

        async def check() -> Preflight:
            await asyncio.sleep(0)
            if preflight == "down":
                raise OSError("connection refused")
            return Preflight(
                OLD if reboots else NEW, reboots, "the host is not Flatcar" if preflight == "refuse" else None
            )

        return RolloutHost(name, NEW, work, check, known_hash=OLD)


def scenario(seed: int) -> tuple[list[RolloutHost], RolloutPolicy, Fleet, dict[str, str]]:
    rng = random.Random(seed)
    n = rng.randint(1, 14)
    canary = rng.choice([0, 0, 1, 2]) if n > 2 else 0
    policy = RolloutPolicy(
        max_unavailable=rng.choice([1, 2, 3, 4, "25%", "50%", 12]),
        canary=canary,
        failure_budget=rng.choice([0, 0, 1, 2]),
    )
    fleet = Fleet(limit=policy.unavailable_limit(n))
    outcomes: dict[str, str] = {}
    hosts = []
    for i in range(n):
        name = f"m{i:02d}"
        outcome = rng.choices(
            ["reprovisioned", "unchanged", "rolled-back", "failed", "crash"], [10, 2, 1, 1, 0.3]
        )[0]
        pre = rng.choices(["ok", "refuse", "down"], [40, 1, 1])[0]
        outcomes[name] = outcome if pre == "ok" else pre
        hosts.append(
            fleet.host(name, outcome, rng.uniform(0.0, 0.01), reboots=outcome != "unchanged", preflight=pre)
        )
    return hosts, policy, fleet, outcomes


@pytest.mark.parametrize("seed", range(150))
def test_rules_hold_for_random_fleets(seed: int) -> None:
    hosts, policy, fleet, planned = scenario(seed)
    rep = asyncio.run(run_rollout(hosts, policy))
    by = {h.name: h for h in rep.hosts}
    # never more than max_unavailable away at once, counting failed machines as away
    assert not fleet.violations
    assert rep.peak_unavailable <= rep.max_unavailable
    started = {n for _, n, e in fleet.events if e == "start"}
    # a machine whose preflight refused or did not answer is never worked on, and fails
    for name, plan in planned.items():
        if plan in ("refuse", "down"):
            assert name not in started and by[name].result == "failed"
            assert by[name].started_at is None
    # results come from the outcome only
    expect = {
        "reprovisioned": "reprovisioned",
        "unchanged": "unchanged",
        "rolled-back": "rolled-back",
        "failed": "failed",
        "crash": "failed",
    }
    for name in started:
        assert by[name].result == expect[planned[name]], name
        assert by[name].started_at is not None and by[name].finished_at is not None
    for h in rep.hosts:
        if h.name not in started and planned[h.name] not in ("refuse", "down"):
            # what its preflight found it running
            found = NEW if planned[h.name] == "unchanged" else OLD
            assert h.result == "not-started" and h.applied_hash == found and h.started_at is None
    assert by["m00"].applied_hash in (NEW, OLD, None)
    # after the failure that exhausts the budget, nothing new starts: judged on the runner's own
    # clock (when it decided a start, when it learned a result), since a machine's work may end
    # in the very loop turn in which the runner, not knowing it yet, starts another
    failures = sorted(by[n].finished_at or 0.0 for n in started if by[n].result in ("rolled-back", "failed"))
    pre_failures = sum(1 for p in planned.values() if p in ("refuse", "down"))
    budget_left = policy.failure_budget - pre_failures
    if budget_left < 0:
        assert not started  # preflight failures alone exhaust it: nothing starts at all
    elif len(failures) > budget_left:
        t_halt = failures[budget_left]
        assert all((by[n].started_at or 0.0) <= t_halt for n in started)
        assert rep.result == "halted" and rep.halt_reason
    # waves in order: no machine of a later wave starts before every machine of earlier waves ended
    wave_of = {n: w.number for w in rep.waves for n in w.hosts}
    ends = {n: t for t, n, e in fleet.events if e != "start"}
    for t, n, e in fleet.events:
        if e == "start":
            assert all(ends[m] <= t for m in ends if wave_of[m] < wave_of[n])
    ok = all(p in ("reprovisioned", "unchanged") for p in planned.values())
    assert (rep.result == "succeeded") == ok


def test_the_first_failure_halts_everything_not_started() -> None:
    fleet = Fleet(limit=1)
    hosts = [
        fleet.host("a", "reprovisioned", 0.01),
        fleet.host("b", "rolled-back", 0.01),
        fleet.host("c", "reprovisioned", 0.01),
    ]
    rep = asyncio.run(run_rollout(hosts, RolloutPolicy(max_unavailable=1)))
    assert [h.result for h in rep.hosts] == ["reprovisioned", "rolled-back", "not-started"]
    assert [h.applied_hash for h in rep.hosts] == [NEW, OLD, OLD]
    assert rep.result == "halted" and "b rolled-back" in (rep.halt_reason or "")
    a, b = rep.hosts[0], rep.hosts[1]
    assert a.finished_at is not None and b.started_at is not None and a.finished_at <= b.started_at


def test_started_machines_finish_after_a_halt() -> None:
    fleet = Fleet(limit=3)
    hosts = [
        fleet.host("a", "failed", 0.0),
        fleet.host("b", "reprovisioned", 0.05),
        fleet.host("c", "reprovisioned", 0.05),
        fleet.host("d", "reprovisioned", 0.0),
    ]
    rep = asyncio.run(run_rollout(hosts, RolloutPolicy(max_unavailable=3)))
    assert [h.result for h in rep.hosts] == ["failed", "reprovisioned", "reprovisioned", "not-started"]


def test_failed_machines_keep_their_slot_until_none_is_left() -> None:
    """With a failure budget, failed machines stay counted as away: once they hold every slot,
    nothing else may leave service and the rollout halts instead of exceeding the limit."""
    fleet = Fleet(limit=2)
    hosts = [
        fleet.host("a", "failed", 0.0),
        fleet.host("b", "failed", 0.0),
        fleet.host("c", "reprovisioned", 0),
    ]
    rep = asyncio.run(run_rollout(hosts, RolloutPolicy(max_unavailable=2, failure_budget=5)))
    assert [h.result for h in rep.hosts] == ["failed", "failed", "not-started"]
    assert rep.result == "halted" and "out of service" in (rep.halt_reason or "")


def test_rolled_back_machines_are_back_in_service() -> None:
    fleet = Fleet(limit=1)
    hosts = [fleet.host("a", "rolled-back", 0.0), fleet.host("b", "reprovisioned", 0.0)]
    rep = asyncio.run(run_rollout(hosts, RolloutPolicy(max_unavailable=1, failure_budget=1)))
    assert [h.result for h in rep.hosts] == ["rolled-back", "reprovisioned"]
    assert rep.result == "failed"  # ran to the end, but not every machine runs the new config


def test_a_preflight_refusal_stops_the_rollout_before_anything_changes() -> None:
    fleet = Fleet(limit=2)
    hosts = [
        fleet.host("a", "reprovisioned", 0.0),
        fleet.host("b", "reprovisioned", 0.0),
        fleet.host("c", "reprovisioned", 0.0, preflight="refuse"),
    ]
    rep = asyncio.run(run_rollout(hosts, RolloutPolicy(max_unavailable=2)))
    assert [h.result for h in rep.hosts] == ["not-started", "not-started", "failed"]
    assert "not Flatcar" in rep.host("c").message and not fleet.events


def test_machines_already_on_the_config_are_verified_without_leaving_service() -> None:
    fleet = Fleet(limit=1)
    hosts = [
        fleet.host("a", "reprovisioned", 0.03),
        fleet.host("b", "unchanged", 0.0, reboots=False),
        fleet.host("c", "unchanged", 0.0, reboots=False),
    ]
    rep = asyncio.run(run_rollout(hosts, RolloutPolicy(max_unavailable=3, waves=(("a", "b", "c"),))))
    assert [h.result for h in rep.hosts] == ["reprovisioned", "unchanged", "unchanged"]
    assert rep.peak_unavailable == 1


def test_dry_run_changes_nothing() -> None:
    fleet = Fleet(limit=1)
    hosts = [fleet.host("a", "reprovisioned", 0.0), fleet.host("b", "reprovisioned", 0.0, preflight="refuse")]
    rep = asyncio.run(run_rollout(hosts, RolloutPolicy(), dry_run=True))
    assert not fleet.events and rep.dry_run and rep.result == "halted"
    assert [h.result for h in rep.hosts] == ["not-started", "not-started"]
    assert rep.host("a").message.startswith("would reprovision") and rep.host("b").message.startswith(
        "refused"
    )


def test_gates_run_before_and_between_waves_and_a_failing_gate_halts(tmp_path: object) -> None:
    import pathlib

    log = pathlib.Path(str(tmp_path)) / "gates.log"
    gate = f'echo "$FLATCAR_INFRA_WAVE:$FLATCAR_INFRA_CONVERGED" >> {log}; test "$FLATCAR_INFRA_WAVE" != 2'
    fleet = Fleet(limit=1)
    hosts = [fleet.host(n, "reprovisioned", 0.0) for n in ("a", "b", "c")]
    policy = RolloutPolicy(
        max_unavailable=1, gates=(gate,), gate_timeout=0.5, gate_interval=0.1, bake_seconds=0.05
    )
    t0 = time.monotonic()
    rep = asyncio.run(run_rollout(hosts, policy))
    lines = log.read_text().splitlines()
    assert lines[0] == "0:" and lines[1] == "1:a" and all(x == "2:a b" for x in lines[2:]) and len(lines) >= 4
    assert [h.result for h in rep.hosts] == ["reprovisioned", "reprovisioned", "not-started"]
    assert rep.result == "halted" and "after wave 2/3" in (rep.halt_reason or "")
    assert time.monotonic() - t0 >= 0.5 + 2 * 0.05  # two bakes, then the gate's whole timeout
