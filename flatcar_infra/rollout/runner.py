"""The rollout runner: drives many machines from ONE asyncio event loop, wave by wave.

What a machine's work is (the reprovision procedure for the CLI, the provider's per-machine step
for Pulumi) is handed in as a coroutine factory; every decision (may this one start, halt or go
on) is the pure ``Scheduler``'s. The runner only does the I/O in between:

1. preflight every machine at once (read-only): a machine that would refuse, or does not answer,
   fails before anything starts, so a rollout does not reboot half a fleet and then find a host it
   can never change; it also tells which machines already run the config (they are only
   verified, without leaving service);
2. the gates once before the first wave (never start on an unhealthy fleet);
3. per wave, a sliding window of at most ``max_unavailable`` machines away from service (counting
   failed ones), then, when the wave took a machine out, the bake time and the gates;
4. after a halt nothing new starts; machines already started finish (and roll back per their own
   policy); the rest are ``not-started``.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass, field

from flatcar_infra.reprovision.decide import short
from flatcar_infra.rollout.gates import run_gates
from flatcar_infra.rollout.policy import RolloutPolicy
from flatcar_infra.rollout.results import Done, HostResult, RolloutReport, classify
from flatcar_infra.rollout.schedule import Result, Scheduler, Wave, plan_waves

Report = Callable[[str, str, "float | None"], None]
"""``(phase, message, elapsed)``: the procedure's progress callback; phase is ``<host> <phase>``
for a machine's lines and ``wave 2/4`` or ``gate`` for the fleet's."""


def _noop(_phase: str, _message: str, _elapsed: float | None = None) -> None:
    pass


@dataclass(frozen=True)
class Preflight:
    """What a read-only look at a machine found before the rollout started."""

    applied_hash: str | None
    reboots: bool  # the work will take it out of service
    refusal: str | None = None  # it would refuse: nothing can be changed there


@dataclass(frozen=True)
class RolloutHost:
    """One machine as the runner sees it.

    ``work``: brings it to ``desired_hash`` (raises on failure); ``None`` when there is nothing to
    do (it is not contacted). ``preflight``: an optional read-only check run for every machine
    before anything starts. ``known_hash``: the last recorded applied hash (kept for a machine the
    rollout never reaches). ``takes_slot``: without a preflight, whether the work may reboot.
    """

    name: str
    desired_hash: str
    work: Callable[[Report], Awaitable[Done]] | None
    preflight: Callable[[], Awaitable[Preflight]] | None = None
    known_hash: str | None = None
    takes_slot: bool = True


@dataclass
class _Run:
    hosts: dict[str, RolloutHost]
    sched: Scheduler
    report: Report
    slot: dict[str, bool] = field(default_factory=dict)
    seen: dict[str, str | None] = field(default_factory=dict)  # applied hash found by the preflight
    results: dict[str, HostResult] = field(default_factory=dict)
    started: dict[str, float] = field(default_factory=dict)

    def host_report(self, name: str) -> Report:
        def report(phase: str, message: str, elapsed: float | None = None) -> None:
            self.report(f"{name} {phase}", message, elapsed)
        return report

    def record(self, name: str, result: Result, applied: str | None, message: str = "",
               detail: Mapping[str, object] | None = None) -> None:
        h = self.hosts[name]
        self.results[name] = HostResult(name, self.sched.hosts[name].wave, result, h.desired_hash, applied,
                                        self.started.get(name), time.time() if name in self.started else None,
                                        message, dict(detail or {}))


async def _preflight(run: _Run, dry_run: bool) -> None:
    todo = [h for h in run.hosts.values() if h.preflight is not None and h.work is not None]
    if not todo:
        return
    run.report("preflight", f"reading the state of {len(todo)} machine(s) (read-only)", None)
    outcomes = await asyncio.gather(*(h.preflight() for h in todo if h.preflight), return_exceptions=True)
    for h, out in zip(todo, outcomes, strict=True):
        if isinstance(out, BaseException):
            if not isinstance(out, Exception):
                raise out
            run.report(f"{h.name} preflight", f"not reachable: {out}", None)
            if not dry_run:
                run.sched.fail_before_start(h.name, in_service=False)
            run.record(h.name, "failed" if not dry_run else "not-started", None, f"preflight: {out}",
                       {"preflight": "unreachable"})
            continue
        run.slot[h.name] = out.reboots
        run.seen[h.name] = out.applied_hash
        if out.refusal:
            run.report(f"{h.name} preflight", f"would refuse: {out.refusal}", None)
            if not dry_run:
                run.sched.fail_before_start(h.name, in_service=True)
            run.record(h.name, "failed" if not dry_run else "not-started", out.applied_hash,
                       f"refused: {out.refusal}", {"preflight": "refused"})
            continue
        what = "reprovision (reboot)" if out.reboots else "already on the config: verify only"
        run.report(f"{h.name} preflight", f"applied {short(out.applied_hash)}, desired "
                   f"{short(h.desired_hash)}: {what}", None)
        if dry_run:
            run.record(h.name, "not-started", out.applied_hash, f"would {what}", {"preflight": "ok"})


async def _run_one(run: _Run, name: str) -> tuple[Result, str | None, str, Mapping[str, object]]:
    host = run.hosts[name]
    assert host.work is not None
    try:
        done = await host.work(run.host_report(name))
    except Exception as exc:  # one machine's error never stops the others mid-flight
        result, applied = classify(None, exc)
        text = str(exc) if str(exc) else type(exc).__name__
        run.report(f"{name} {result}", text.splitlines()[0], None)
        return result, applied, text, {}
    result, applied = classify(done, None)
    return result, applied, "", done.detail


async def _run_wave(run: _Run, wave: Wave, label: str) -> None:
    sched = run.sched
    pending = [n for n in wave.hosts if sched.hosts[n].status == "pending"]
    if not pending:
        return
    run.report(label, f"{', '.join(pending)}", None)
    running: dict[asyncio.Task[tuple[Result, str | None, str, Mapping[str, object]]], str] = {}
    while True:
        for name in list(pending):
            host, slot = run.hosts[name], run.slot.get(name, run.hosts[name].takes_slot)
            if host.work is None:
                sched.start(name, takes_slot=False)
                sched.finish(name, "unchanged")
                run.record(name, "unchanged", host.known_hash, "no change: not contacted")
                pending.remove(name)
                continue
            if not sched.may_start(name, takes_slot=slot):
                if slot or sched.halted:
                    break  # keep the order of the machines that leave service
                continue
            sched.start(name, takes_slot=slot)
            run.started[name] = time.time()
            pending.remove(name)
            running[asyncio.create_task(_run_one(run, name))] = name
        if not running:
            if pending and not sched.halted:
                sched.halt(f"{len(sched.unavailable)} machine(s) are out of service "
                           f"({', '.join(sorted(sched.unavailable))}) and max_unavailable is {sched.limit}: "
                           "no other machine may leave service")
            return
        done, _ = await asyncio.wait(running, return_when=asyncio.FIRST_COMPLETED)
        for task in done:
            name = running.pop(task)
            result, applied, message, detail = task.result()
            sched.finish(name, result)
            run.record(name, result, applied, message, detail)
            run.report(f"{name} {result}", f"runs {short(applied)}; {len(sched.unavailable)} machine(s) "
                       "away from service", None)


async def run_rollout(hosts: Sequence[RolloutHost], policy: RolloutPolicy, *, report: Report = _noop,
                      dry_run: bool = False, gate_env: Mapping[str, str] | None = None) -> RolloutReport:
    """Roll ``hosts`` (in order) out under ``policy``; never raises for a machine's failure."""
    t0 = time.time()
    waves = plan_waves([h.name for h in hosts], policy)
    sched = Scheduler(waves, policy)
    run = _Run({h.name: h for h in hosts}, sched, report)
    total = len(waves)
    report("rollout", f"{len(hosts)} machine(s) in {total} wave(s), at most {sched.limit} away from "
           f"service at once, failure budget {policy.failure_budget}", None)
    for w in waves:
        report(w.label(total), ", ".join(w.hosts), None)
    await _preflight(run, dry_run)
    if not dry_run:
        await _execute(run, waves, policy, gate_env or {})
    for name in sched.not_started():
        if name not in run.results:
            h = run.hosts[name]
            run.record(name, "not-started", run.seen.get(name, h.known_hash),
                       "halted before it started" if sched.halted else "")
    ordered = tuple(run.results[h.name] for h in hosts)
    overall = "halted" if dry_run else sched.overall()
    return RolloutReport(overall, sched.halt_reason, waves, ordered, t0, time.time(), sched.limit,
                         sched.peak_unavailable, dry_run)


async def _execute(run: _Run, waves: tuple[Wave, ...], policy: RolloutPolicy, gate_env: Mapping[str, str]
                   ) -> None:
    sched, report, total = run.sched, run.report, len(waves)

    async def gates(after: Wave | None) -> None:
        if not policy.gates or sched.halted:
            return
        converged = [n for n, r in run.results.items() if r.result in ("reprovisioned", "unchanged")]
        env = {**gate_env, "FLATCAR_INFRA_WAVE": str(after.number if after else 0),
               "FLATCAR_INFRA_WAVES": str(total),
               "FLATCAR_INFRA_WAVE_HOSTS": " ".join(after.hosts if after else ()),
               "FLATCAR_INFRA_CONVERGED": " ".join(converged)}
        where = f"after {after.label(total)}" if after else "before the first wave"
        report("gate", f"{len(policy.gates)} gate(s) {where}", None)
        problem = await run_gates(policy.gates, timeout=policy.gate_timeout, interval=policy.gate_interval,
                                  env=env, report=lambda m: report("gate", m, None))
        if problem:
            report("gate", problem, None)
            sched.halt(f"{where}: {problem}")

    if sched.halted:
        return
    if any(h.work is not None and sched.hosts[h.name].status == "pending" for h in run.hosts.values()):
        await gates(None)
    for wave in waves:
        if sched.halted:
            break
        t_wave = time.monotonic()
        await _run_wave(run, wave, wave.label(total))
        if sched.halted or not sched.wave_changed(wave):
            continue
        report(wave.label(total), "done", time.monotonic() - t_wave)
        if policy.bake_seconds:
            report("bake", f"watching {wave.label(total)} for {policy.bake_seconds:g}s", None)
            await asyncio.sleep(policy.bake_seconds)
        await gates(wave)
    if sched.halted:
        report("rollout", f"halted: {sched.halt_reason}", None)
