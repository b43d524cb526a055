"""The reprovision procedure: preflight → (cleanup) → stage → reboot → verify → confirm, over SSH,
with automatic rollback. Shared by the Pulumi provider, the CLI and fleet rollouts.

Facts and checks come from one host script per phase (``scripts``), decisions from the pure
``decide``, and every action goes through ``flatcar_infra.ssh``. Safe to run again after any
interruption: a host already running the desired hash is only verified (and its boot confirmed);
a reset staged but never rebooted is cancelled and staged again.

Rollback (``policy.rollback``, on by default; docs/reprovision-faults.md lists every fault):
- the new boot answers but fails verification or a health check: the saved previous config is
  re-applied in place (``flatcar-reset -F``), verified, and the run fails saying so;
- the new boot never answers (SSH or network broken by the config): a dead-man switch installed
  with the staging rolls the host back by itself unless a FRESH SSH login confirms the boot, after
  verification, within ``policy.confirm_window``;
- Ignition fails in the initramfs (pointer/URL delivery): the previous config is restored at the
  config source, so the emergency reboot (5 minutes) applies it; file delivery refuses in
  preflight what it could not roll back.

Every wait has its own bound and all of them ``policy.deadline``. The lock lives on tmpfs
(``/run``): it guards preflight and staging, the reboot clears it, and the new boot takes it again
for verification, confirmation or rollback. A stale lock is reported with owner and age, never
broken silently (only one provably left by a dead process of this machine is taken over).

``ensure`` is safe to run concurrently for different hosts: the only module state is keyed by
lock token.
"""

from __future__ import annotations

import asyncio
import getpass
import hashlib
import json
import os
import socket
import time
import uuid
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager, suppress
from dataclasses import dataclass, field
from typing import Any

from flatcar_infra.manifest import build_manifest
from flatcar_infra.procs import pid_alive
from flatcar_infra.reprovision import messages, preflight, scripts
from flatcar_infra.reprovision.decide import Plan, decide, rollback_config, short
from flatcar_infra.reprovision.desired import Desired, enabled_units, stamp_of
from flatcar_infra.reprovision.facts import as_root, parse_facts, run_script
from flatcar_infra.reprovision.hoststate import (
    APPLIED_CONFIG,
    STAGED_CONFIG,
    HostFacts,
    LockOwner,
    RollbackRecord,
    Staging,
)
from flatcar_infra.reprovision.kept import KeptEntry, compare_kept, hash_selection, kept_digest, parse_listing
from flatcar_infra.reprovision.propdiff import manifest_changes
from flatcar_infra.reprovision.source import ConfigSource, SourceError
from flatcar_infra.ssh import (
    AuthRefused,
    HostKeyMismatch,
    SshError,
    SshSession,
    SshTarget,
    dial,
    fetch_host_key,
    fingerprint,
)

Report = Callable[[str, str, "float | None"], None]

_ACTIVE_TOKENS: set[str] = set()
"""Lock tokens held by operations running in this process (a lock of ours not in here is stale)."""

EMERGENCY_REBOOT = 300.0
"""Flatcar's initramfs reboots this long after a failed Ignition run (bootengine 99emergency-timeout)."""
REBOOT_GRACE = 120.0
"""A host still answering on the old boot this long after the reboot was issued did not reboot."""
FIRST_DIAL = 30.0
"""How long the first login of a run retries (a host that is up answers at once)."""
REBOOT_POLL = 1.0
"""Longest pause between SSH attempts while waiting for a new boot: the wait ends at most this long
after sshd answers (the default back-off grows to 5 s, a tenth of a reboot under emulation)."""


def _noop(_phase: str, _message: str, _elapsed: float | None = None) -> None:
    pass


@dataclass(frozen=True)
class Outcome:
    """What a run established about the host (becomes the provider's outputs)."""

    applied_hash: str | None
    boot_id: str
    host_key: str | None
    machine_id: str | None
    system_state: str
    rebooted: bool
    phases: tuple[tuple[str, float], ...] = ()
    warnings: tuple[str, ...] = ()
    notes: tuple[str, ...] = ()
    not_hashed: tuple[str, ...] = ()

    def to_outputs(self, action: str) -> dict[str, Any]:
        return {
            "applied_hash": self.applied_hash,
            "boot_id": self.boot_id,
            "machine_id": self.machine_id,
            "system_state": self.system_state,
            "rebooted": self.rebooted,
            "phases": {k: round(v, 3) for k, v in self.phases},
            "warnings": list(self.warnings),
            "last_action": action,
        }


@dataclass
class _Timer:
    report: Report
    phases: list[tuple[str, float]] = field(default_factory=list)

    @contextmanager
    def phase(self, name: str, message: str) -> Iterator[None]:
        t0 = time.monotonic()
        self.report(name, message, None)
        yield
        dt = time.monotonic() - t0
        self.phases.append((name, dt))
        self.report(name, "done", dt)


def _me() -> LockOwner:
    return LockOwner(socket.gethostname(), os.getpid(), getpass.getuser(), uuid.uuid4().hex, time.time())


def stale_ours(owner: LockOwner | None) -> bool:
    """A lock provably left by a run from THIS machine that is no longer running."""
    if owner is None or owner.host != socket.gethostname():
        return False
    if owner.pid == os.getpid():
        return owner.token not in _ACTIVE_TOKENS
    return not pid_alive(owner.pid)


# --- lock (also used on its own by tests and tools) ----------------------------------------------------


async def acquire_lock(
    s: SshSession, me: LockOwner, *, root: str = "", replace: str | None = None
) -> str | None:
    """Take the host lock atomically; ``replace``: the exact stale content to take over.
    Returns ``None`` when taken, else the current holder's text."""
    kv = await run_script(s, scripts.lock(root, me.to_json(), replace))
    if kv.get("lock_taken"):
        _ACTIVE_TOKENS.add(me.token)
        return None
    return (kv.get("lock") or b"").decode(errors="replace").strip()


async def release_lock(s: SshSession, me: LockOwner, *, root: str = "") -> bool:
    """Remove the lock only if it is still ours."""
    _ACTIVE_TOKENS.discard(me.token)
    try:
        await run_script(s, scripts.release(root, me.token))
    except SshError:
        return False
    return True


# --- commands ------------------------------------------------------------------------------------------


def reset_argv(d: Desired, *, preview: str | None = None, deadman: bool = False) -> list[str]:
    """``flatcar-reset`` as real Flatcar parses it (getopt ``hF:U:KMBSPWDR``): ``-F FILE`` copies a
    file (``-`` is a file named ``-``), ``-U URL``, ``--keep-paths`` followed by the entries."""
    keep = preflight.keep_entries(d, deadman=deadman)
    if preview:
        return (
            ["flatcar-reset", f"--preview-{preview}", "--keep-paths", *keep]
            if keep
            else ["flatcar-reset", f"--preview-{preview}"]
        )
    argv = ["flatcar-reset"]
    if d.policy.keep_machine_id:
        argv.append("--keep-machine-id")
    if d.delivery == "file":
        argv += ["-F", STAGED_CONFIG]
    elif d.delivery == "url":
        argv += ["-U", str(d.config_url)]
    if keep:
        argv += ["--keep-paths", *keep]
    return argv


def rollback_argv(d: Desired) -> list[str]:
    """Re-apply the saved previous config: ``-F`` strips any ``ignition.config.url`` and makes
    ``/oem/config.ign`` the source for that boot, whatever the delivery was."""
    argv = [
        "flatcar-reset",
        *(["--keep-machine-id"] if d.policy.keep_machine_id else []),
        "-F",
        APPLIED_CONFIG,
    ]
    keep = preflight.keep_entries(d, deadman=False)
    return argv + (["--keep-paths", *keep] if keep else [])


@dataclass(frozen=True)
class _Expect:
    """What verification checks a boot against."""

    config_hash: str
    enabled_units: tuple[str, ...]
    health_checks: tuple[str, ...]
    health_timeout: float
    keep_machine_id: bool

    @classmethod
    def new(cls, d: Desired) -> _Expect:
        return cls(
            d.config_hash,
            d.enabled_units,
            d.policy.health_checks,
            d.policy.health_timeout,
            d.policy.keep_machine_id and d.policy.strategy == "in-place",
        )

    @classmethod
    def previous(cls, d: Desired, config: bytes) -> _Expect:
        """The rollback target: its own enabled units; the new config's health checks do not apply."""
        return cls(
            stamp_of(config) or "",
            enabled_units(json.loads(config)),
            (),
            d.policy.health_timeout,
            d.policy.keep_machine_id,
        )


@dataclass
class _Verified:
    facts: HostFacts
    state: str
    problems: list[str]
    warnings: list[str]
    lock_taken: bool


class _Run:
    """One reprovision of one host: the state every phase shares (never module state)."""

    def __init__(
        self,
        target: SshTarget,
        d: Desired,
        report: Report,
        *,
        root: str,
        previous: bytes | None,
        fallback_keys: Sequence[str],
        platform_keys: Sequence[str],
        source: ConfigSource | None,
    ) -> None:
        self.target = target
        self.keys = [target, *(target.with_key(k) for k in fallback_keys if k and k != target.private_key)]
        self.d = d
        self.report = report
        self.root = root
        self.previous = previous
        self.platform_keys = tuple(platform_keys)
        self.source = source
        self.timer = _Timer(report)
        self.me = _me()
        self.host = target.host
        self.t0 = time.monotonic()
        self.state = messages.UNCHANGED
        self.applied: str | None = None
        self.phase = "connect"
        self.restored_source = False
        self.not_hashed: list[str] = []
        self._fresh: asyncio.Task[SshSession] | None = None

    def dial_fresh(self) -> None:
        """Open the confirmation's fresh connection while verification runs (it is only used
        once verification passed): one handshake less on the critical path."""
        self._fresh = asyncio.ensure_future(self.dial(60))

    async def drop_fresh(self) -> None:
        task, self._fresh = self._fresh, None
        if task is None:
            return
        if not task.done():
            task.cancel()
        with suppress(asyncio.CancelledError, SshError):
            await (await task).close()

    # --- bounds ---------------------------------------------------------------------------------------
    def left(self) -> float:
        return self.d.policy.deadline - (time.monotonic() - self.t0)

    def bound(self, seconds: float) -> float:
        left = self.left()
        if left <= 0:
            raise messages.deadline(self.host, self.d.policy.deadline, self.phase, self.state, self.applied)
        return min(seconds, left)

    async def dial(
        self, timeout: float, *, attempt_timeout: float = 8.0, max_delay: float = 5.0
    ) -> SshSession:
        return await dial(
            self.keys,
            timeout=self.bound(timeout),
            attempt_timeout=attempt_timeout,
            max_delay=max_delay,
            on_attempt=lambda n, el, exc: (
                self.report(self.phase, f"waiting for SSH: {exc.message}", el) if n % 5 == 1 else None
            ),
        )

    def wrap(self, exc: SshError) -> messages.ReprovisionError:
        """An SSH failure in the current phase, reported with the host's state and the next step."""
        if isinstance(exc, messages.ReprovisionError):
            return exc
        return messages.lost(self.host, self.phase, exc.message, self.state, self.applied)

    # --- the procedure --------------------------------------------------------------------------------
    async def go(self, first_boot_wait: float) -> Outcome:
        try:
            s = await self.dial(first_boot_wait or FIRST_DIAL, attempt_timeout=self.target.connect_timeout)
        except HostKeyMismatch as exc:
            raise messages.ReprovisionError(exc.message, messages.UNCHANGED, exc.advice) from None
        except AuthRefused as exc:
            raise messages.ReprovisionError(exc.message, messages.UNCHANGED, exc.advice) from None
        except SshError as exc:
            raise messages.ReprovisionError(
                f"cannot reach {self.host}: {exc.message}",
                messages.UNCHANGED,
                "check the address and that the host is up; nothing was changed",
            ) from None
        locked = False
        try:
            self.phase = "preflight"
            with self.timer.phase("preflight", f"reading the state of {self.host} and checking the config"):
                findings, plan = await self.run_preflight(s)
                locked = True
            if not plan.reboots:
                locked = False  # released by the confirmation, or before a failure is raised
                return await self.verify_only(s, findings, plan)
            staging, issued = await self.stage(s, findings, plan)
            locked = False
            await s.close()
            s = await self.await_new_boot(findings.facts.boot_id, staging, plan, issued=issued)
            return await self.after_reboot(s, staging, plan, findings)
        except SshError as exc:
            raise self.wrap(exc) from None
        finally:
            await self.drop_fresh()
            if locked:
                await release_lock(s, self.me, root=self.root)
            _ACTIVE_TOKENS.discard(self.me.token)
            await s.close()

    async def run_preflight(self, s: SshSession) -> tuple[preflight.Findings, Plan]:
        login_key = self.target.public_key()
        req = preflight.script_for(
            self.d,
            root=self.root,
            owner_json=self.me.to_json(),
            take_lock=True,
            stale=None,
            user=self.target.user,
            login_key=login_key,
        )
        kv = await run_script(s, req.script)
        findings = preflight.interpret(req, kv, self.d, root=self.root, user=self.target.user)
        f = findings.facts
        self.applied = f.stamp
        if f.lock_taken:
            _ACTIVE_TOKENS.add(self.me.token)
        elif stale_ours(f.lock_owner):
            holder = await acquire_lock(s, self.me, root=self.root, replace=f.lock_text)
            if holder is None:
                self.report(
                    "preflight",
                    "took over a stale lock left by an earlier run of this machine "
                    f"({f.lock_owner.describe() if f.lock_owner else '?'})",
                    None,
                )
                findings.facts = f = _with_lock(f)
        if not f.lock_taken:
            who = f.lock_owner.describe() if f.lock_owner else (f.lock_text or "?")[:80]
            age = f", taken {f.lock_age:.0f}s ago" if f.lock_age is not None else ""
            raise messages.locked(self.host, who + age, f.stamp)
        try:
            refusals = preflight.local_refusals(
                self.d,
                findings,
                user=self.target.user,
                login_key=login_key,
                platform_keys=self.platform_keys,
                previous=self._previous(f),
            )
            op_refusals, op_warnings, pointer_hex = await preflight.operator_side(self.d, self.source)
            findings.warnings += op_warnings
            refusals += [*findings.refusals, *op_refusals]
            if await self._republish(findings, pointer_hex):
                refusals = [x for x in refusals if "does not hold the new config" not in x.reason]
            plan = decide(f, self.d, self.me, previous=self.previous, checks=refusals)
            if plan.refused:
                raise messages.refused(self.host, plan.refusals, f.stamp)
        except BaseException:
            await release_lock(s, self.me, root=self.root)
            raise
        for n in (*plan.notes, *findings.notes):
            self.report("preflight", n, None)
        for w in (*plan.warnings, *findings.warnings):
            self.report("preflight", f"warning: {w}", None)
        self.report(
            "preflight",
            f"Flatcar {f.version}, applied {short(f.stamp)}, desired "
            f"{short(self.d.config_hash)}; phases: {' → '.join(plan.phases)}",
            None,
        )
        return findings, plan

    def _previous(self, f: HostFacts) -> bytes | None:
        return rollback_config(f, self.previous)

    async def _republish(self, findings: preflight.Findings, pointer_hex: str | None) -> bool:
        """After our own rollback restored the previous config at the source, the next run of the
        new config puts it back there (the hosting resource's state still says it holds it)."""
        f = findings.facts
        r = f.rollback_record
        held = pointer_hex or findings.pointer_sha512
        if not (
            r
            and r.reason.startswith("source restored")
            and self.source
            and self.d.delivery != "file"
            and f.applied_config
            and held == hashlib.sha512(f.applied_config).hexdigest()
        ):
            return False
        await self.source.write(self.d.config)
        self.report(
            "preflight",
            f"re-published the new config at {self.d.config_url} (an earlier "
            "rollback had restored the previous one there)",
            None,
        )
        return True

    async def verify_only(self, s: SshSession, findings: preflight.Findings, plan: Plan) -> Outcome:
        f = findings.facts
        if "cleanup" in plan.phases:
            with self.timer.phase("cleanup", "cancelling the staged reset"):
                await s.run(as_root(s, ["flatcar-reset", "--stop"]), timeout=60, check=True)
        self.phase = "verify"
        if "confirm" in plan.phases:
            self.dial_fresh()
        with self.timer.phase("verify", "verifying the running config"):
            v = await self.verify(s, _Expect.new(self.d), f.staging if "confirm" in plan.phases else None, f)
        if v.problems:
            if plan.rollback_config is not None:
                return await self.rollback_in_place(s, v, plan)
            await release_lock(s, self.me, root=self.root)
            raise messages.verify_failed(self.host, v.problems, v.facts.stamp)
        applied = (
            None if (f.applied_config and stamp_of(f.applied_config) == self.d.config_hash) else self.d.config
        )
        await self.confirm(s, fresh="confirm" in plan.phases, applied=applied)
        return self.outcome(v, plan, findings, rebooted=False)

    async def stage(self, s: SshSession, findings: preflight.Findings, plan: Plan) -> tuple[Staging, bool]:
        if self.root:
            raise SshError("staging acts on the real host: it cannot run against a scratch root")
        d = self.d
        f = findings.facts
        self.phase = "stage"
        deadman = plan.rollback_config is not None
        with self.timer.phase("stage", f"staging the reset ({d.delivery} delivery) and rebooting"):
            hashed, skipped = hash_selection(findings.kept, d.policy.hash_budget_bytes)
            self.not_hashed = skipped
            keep = preflight.keep_entries(d, deadman=deadman)
            staging = new_staging(d, f, plan)
            script = stage_script(d, findings, plan, self.me, hashed, staging_json=staging.to_json())
            issued = True
            try:
                kv = await run_script(s, script)
            except SshError as exc:
                if "failed (exit" in exc.message:  # the script itself stopped: nothing rebooted
                    await release_lock(s, self.me, root=self.root)
                    raise messages.ReprovisionError(
                        f"staging failed on {self.host}: {exc.message}",
                        "unknown: the reset may be staged partly (no reboot was scheduled)",
                        "run again (a staged reset is cancelled and staged afresh), or cancel it on the "
                        "host with 'sudo flatcar-reset --stop'",
                        applied_hash=f.stamp,
                    ) from None
                issued = False  # lost: the script may or may not have scheduled the reboot
                self.report(
                    "stage",
                    f"connection lost while staging ({exc.message}); waiting to see whether the host reboots",
                    None,
                )
                kv = {}
            sums = parse_kv_sums(kv.get("sums"))
            kept = tuple(sorted((e.path, kept_digest(e, sums.get(e.path))) for e in findings.kept))
            staging = Staging(
                staging.desired_hash,
                staging.boot_id,
                staging.staged_at,
                staging.delivery,
                kept,
                staging.manifest,
                staging.previous_hash,
                False,
                staging.confirm_window,
                keep,
            )
            self.report(
                "stage",
                f"{len(kept)} kept file(s) recorded"
                + (
                    f"; {len(skipped)} not hashed (budget {d.policy.hash_budget_bytes} bytes), e.g. "
                    f"{skipped[0]}"
                    if skipped
                    else ""
                )
                + ("; dead-man switch armed" if deadman else ""),
                None,
            )
        self.state = messages.REBOOTING if issued else messages.STAGED + " (maybe)"
        _ACTIVE_TOKENS.discard(self.me.token)  # the reboot clears /run and the lock with it
        return staging, issued

    async def await_new_boot(
        self, old_boot: str, staging: Staging, plan: Plan, *, issued: bool
    ) -> SshSession:
        """Dial until the host answers on a boot other than ``old_boot``.

        - still the old boot ``REBOOT_GRACE`` after the reboot was issued: it never happened;
        - no answer within ``reboot_timeout`` (SSH or network broken by the new config, or Ignition
          failed): restore the previous config at the source (pointer/URL), then keep waiting for the
          dead-man switch or the emergency reboot to bring the host back;
        - a different host key: another machine, or the reset lost the keys (final).
        """
        self.phase = "reboot"
        t0 = time.monotonic()
        p = self.d.policy
        grace = min(REBOOT_GRACE if issued else 30.0, p.reboot_timeout)
        with self.timer.phase("reboot", "waiting for the new boot"):
            first = await self._await(old_boot, t0, p.reboot_timeout, issued=issued, grace=grace)
            if first is not None:
                return first
        # no answer within reboot_timeout
        back = plan.rollback_config
        if back is None:
            raise messages.not_back(self.host, p.reboot_timeout, "no SSH answer on a new boot", self.applied)
        self.phase = "rollback"
        wait = p.confirm_window + p.reboot_timeout
        how = "the dead-man switch rolls it back"
        if self.d.delivery in ("pointer", "url"):
            wait += EMERGENCY_REBOOT
            how += ", or the initramfs reboots into the previous config"
            if self.source is not None:
                try:
                    await self.source.write(back)
                    self.restored_source = True
                    self.report(
                        "rollback",
                        f"no answer within {p.reboot_timeout:g}s: restored the previous "
                        f"config {short(stamp_of(back))} at {self.d.config_url} (if Ignition failed, "
                        "the emergency reboot applies it)",
                        None,
                    )
                except SourceError as exc:
                    self.report(
                        "rollback",
                        f"could not restore the previous config at the source: {exc.message}",
                        None,
                    )
            else:
                self.report(
                    "rollback", "no config_source: a failed Ignition run cannot be undone from here", None
                )
        with self.timer.phase(
            "rollback", f"no answer within {p.reboot_timeout:g}s; waiting up to {wait:g}s while {how}"
        ):
            back_s = await self._await(old_boot, time.monotonic(), wait, issued=True, rollback=True)
        if back_s is None:
            raise messages.not_back(
                self.host,
                p.reboot_timeout + wait,
                "neither the new config nor the rollback answered SSH",
                self.applied,
            )
        return back_s

    async def _await(
        self,
        old_boot: str,
        t0: float,
        timeout: float,
        *,
        issued: bool,
        grace: float | None = None,
        rollback: bool = False,
    ) -> SshSession | None:
        """Dial until the host answers on a boot other than ``old_boot``; None at ``timeout``.
        A host that keeps answering on the old boot for ``grace`` seconds (or until the timeout)
        did not reboot: that is an answer, raised at once."""
        same_since: float | None = None

        def never_rebooted() -> messages.ReprovisionError:
            if issued:
                return messages.no_reboot(self.host, time.monotonic() - (same_since or t0), self.applied)
            return messages.lost_before_reboot(
                self.host, "the host still runs the same boot: the reboot was never scheduled", self.applied
            )

        while True:
            left = t0 + timeout - time.monotonic()
            if left <= 0:
                if same_since is not None:
                    raise never_rebooted()
                return None
            try:
                s = await self.dial(left, max_delay=REBOOT_POLL)
            except HostKeyMismatch:
                if self.d.policy.strategy == "wipe-root":
                    key = await fetch_host_key(self.host, self.target.port)
                    self.report(
                        "reboot",
                        f"wipe-root: the host has a NEW host key {fingerprint(key)} (ROOT "
                        "was reformatted); pinning it from now on (trust on first use)",
                        None,
                    )
                    self.target = self.target.pinned(key)
                    self.keys = [k.pinned(key) for k in self.keys]
                    continue
                raise messages.identity_changed(self.host, self.applied) from None
            except AuthRefused:
                # the host is up but refuses every key we have: the new config does not let us in
                if not rollback:
                    self.report(
                        self.phase,
                        "the host answers but refuses our keys: waiting for the dead-man switch",
                        None,
                    )
                    return None
                await asyncio.sleep(min(5.0, max(0.0, t0 + timeout - time.monotonic())))
                continue
            except SshError:
                same_since = None  # down: the old boot is going (or gone)
                continue  # the deadline check above decides
            try:
                boot = (await s.run(["cat", "/proc/sys/kernel/random/boot_id"], timeout=15)).text.strip()
            except SshError:
                await s.close()
                continue
            if boot and boot != old_boot:
                return s
            await s.close()
            same_since = same_since if same_since is not None else time.monotonic()
            if grace is not None and time.monotonic() - same_since > grace:
                raise never_rebooted()
            await asyncio.sleep(min(1.0, max(0.0, t0 + timeout - time.monotonic())))

    async def after_reboot(
        self, s: SshSession, staging: Staging, plan: Plan, findings: preflight.Findings
    ) -> Outcome:
        self.phase = "verify"
        self.state = messages.APPLIED
        if plan.rollback_config is not None:
            self.dial_fresh()
        try:
            with self.timer.phase("verify", "verifying the new boot"):
                v = await self.verify(s, _Expect.new(self.d), staging, findings.facts)
            self.applied = v.facts.stamp
            back = plan.rollback_config
            prev = stamp_of(back) if back else None
            if v.facts.stamp == prev and prev is not None:
                return await self.came_back_on_previous(s, v)
            if v.problems:
                if back is not None and v.facts.stamp == self.d.config_hash:
                    return await self.rollback_in_place(s, v, plan)
                await release_lock(s, self.me, root=self.root)
                raise messages.verify_failed(
                    self.host,
                    v.problems,
                    v.facts.stamp,
                    why_no_rollback=(
                        "rollback is off"
                        if not self.d.policy.rollback
                        else "the host does not run the new config"
                        if v.facts.stamp != self.d.config_hash
                        else "no previous config to return to"
                    ),
                )
            await self.confirm(s, fresh=back is not None, applied=None if back is not None else self.d.config)
            if self.restored_source and self.source is not None:
                await self.source.write(self.d.config)  # the new config came up late after all
            return self.outcome(v, plan, findings, rebooted=True)
        finally:
            await s.close()

    async def came_back_on_previous(self, s: SshSession, v: _Verified) -> Outcome:
        """The host answers on the previous config: the dead-man switch or the initramfs (after
        the source was restored) rolled it back. Record why, and fail saying so."""
        r = v.facts.rollback_record
        why: list[str] = []
        how = "rolled back by itself"
        if r is not None and r.by == "deadman" and r.from_hash == self.d.config_hash:
            why.append(r.reason)
            how = (
                f"the dead-man switch re-applied it after {self.d.policy.confirm_window:g}s without "
                "confirmation"
            )
        elif self.restored_source:
            why.append(
                "the new boot never answered SSH (Ignition failed in the initramfs, or SSH or the "
                "network were broken); the previous config was restored at the config source"
            )
            how = "the initramfs' emergency reboot applied the restored config"
        else:
            why.append("the host runs the previous config: Ignition did not apply the new one")
            how = "Ignition did not apply the new config"
        rec = None
        if self.restored_source:
            rec = RollbackRecord(
                r.by if r else "procedure",
                self.d.config_hash,
                v.facts.stamp or "",
                r.boot_id if r else "",
                r.at if r else v.facts.now,
                "source restored: " + "; ".join(why),
            )
        await run_script(s, scripts.settle(rec.to_json() if rec else None))
        if v.problems:
            why += [f"(and the previous config's own check: {p})" for p in v.problems]
        await release_lock(s, self.me, root=self.root)
        raise messages.rolled_back(self.host, self.d.config_hash, v.facts.stamp or "", why, how)

    async def rollback_in_place(self, s: SshSession, v: _Verified, plan: Plan) -> Outcome:
        """Case A: the new boot answers but fails its checks. Re-apply the previous config (kept
        on the host), wait for it, verify it, and fail saying the host is back on it and why."""
        back = plan.rollback_config
        assert back is not None
        prev = stamp_of(back) or ""
        why = list(v.problems)
        self.phase = "rollback"
        self.report(
            "rollback", f"the new config was rejected ({why[0]}); rolling back to {short(prev)}", None
        )
        f = v.facts
        staging = Staging(
            prev,
            f.boot_id,
            f.now,
            "file",
            f.staging.kept if f.staging else (),
            (),
            self.d.config_hash,
            True,
            0.0,
            preflight.keep_entries(self.d, deadman=False),
        )
        rec = RollbackRecord("procedure", self.d.config_hash, prev, f.boot_id, f.now, "; ".join(why)[:500])
        with self.timer.phase("rollback", f"re-applying the previous config {short(prev)}"):
            try:
                kv = await run_script(
                    s,
                    scripts.rollback(
                        record=rec.to_json(),
                        staging_json=staging.to_json(),
                        reset_argv=rollback_argv(self.d),
                        reboot_unit=f"flatcar-infra-rollback-{self.me.token[:8]}",
                    ),
                )
            except SshError as exc:
                raise messages.rollback_failed(
                    self.host, self.d.config_hash, prev, exc.message, f.stamp
                ) from None
            if kv.get("rollback") == b"already-started":
                self.report("rollback", "the dead-man switch is already rolling back", None)
            await s.close()
            self.state = "the host was told to reboot into its previous config"
            self.phase = "rollback"
            back_s = await self._await(
                f.boot_id,
                time.monotonic(),
                self.d.policy.reboot_timeout,
                issued=True,
                grace=min(REBOOT_GRACE, self.d.policy.reboot_timeout),
                rollback=True,
            )
        if back_s is None:
            raise messages.rollback_failed(
                self.host,
                self.d.config_hash,
                prev,
                f"no SSH answer within {self.d.policy.reboot_timeout:g}s",
                f.stamp,
            )
        try:
            with self.timer.phase("rollback-verify", f"verifying the previous config {short(prev)}"):
                v2 = await self.verify(back_s, _Expect.previous(self.d, back), staging, f)
            await release_lock(back_s, self.me, root=self.root)
        finally:
            await back_s.close()
        if v2.facts.stamp != prev:
            raise messages.rollback_failed(
                self.host, self.d.config_hash, prev, f"the host runs {short(v2.facts.stamp)}", v2.facts.stamp
            )
        if v2.problems:
            why += [f"(and after the rollback: {p})" for p in v2.problems]
        raise messages.rolled_back(self.host, self.d.config_hash, prev, why, "re-applied in place")

    async def verify(
        self, s: SshSession, want: _Expect, staging: Staging | None, before: HostFacts | None
    ) -> _Verified:
        """Prove the host runs ``want``: stamp, Ignition ran on this boot, kept files intact,
        machine-id kept, no enabled unit failed, health checks pass. One round trip."""
        kept_record = dict(staging.kept) if staging else {}
        hash_paths = [p for p, v in kept_record.items() if not v.startswith("link:") and not v.endswith(":-")]
        script = scripts.verify(
            self.root,
            owner_json=self.me.to_json(),
            kept_paths=sorted(kept_record),
            hash_paths=hash_paths,
            user=s.target.user,
            health_checks=want.health_checks,
            health_timeout=want.health_timeout,
        )
        kv = await run_script(s, script)
        f = parse_facts(kv)
        if f.lock_taken:
            _ACTIVE_TOKENS.add(self.me.token)
        problems: list[str] = []
        warnings: list[str] = []
        if f.stamp != want.config_hash:
            problems.append(
                f"the host runs config {short(f.stamp)}, not {short(want.config_hash)}: Ignition did "
                "not apply it (see 'journalctl -b -t ignition')"
            )
        fresh = staging is not None and staging.boot_id != f.boot_id
        if fresh and staging is not None:
            if f.ignition_result_mtime is None or f.ignition_result_mtime < staging.staged_at:
                problems.append(
                    "/etc/.ignition-result.json is not newer than the staging: Ignition did not "
                    "run on this boot"
                )
            listing = parse_listing(kv.get("kept_listing") or b"")
            if self.root:
                listing = [KeptEntry(e.path[len(self.root) :], e.kind, e.size, e.mtime) for e in listing]
            sums = {k[len(self.root) :]: v for k, v in parse_kv_sums(kv.get("sums")).items()}
            after = {e.path: kept_digest(e, sums.get(e.path)) for e in listing}
            cmp = compare_kept(kept_record, after, {e.path: e.mtime for e in listing}, staging.staged_at)
            problems += [f"kept path {p} is gone after the reset" for p in cmp.missing]
            problems += [
                f"kept file {p} changed although nothing wrote it since staging" for p in cmp.corrupted
            ]
            if cmp.rewritten:
                warnings.append(
                    f"{len(cmp.rewritten)} kept file(s) were written by the running system since "
                    f"staging (e.g. {cmp.rewritten[0]})"
                )
            self.report("verify", f"{len(kept_record)} kept file(s) checked", None)
        if (
            before is not None
            and want.keep_machine_id
            and before.machine_id
            and f.machine_id != before.machine_id
        ):
            problems.append(
                f"the machine-id changed ({before.machine_id} → {f.machine_id}) although it was kept"
            )
        state = (kv.get("system_state") or b"unknown").decode(errors="replace").strip().splitlines()[-1:] or [
            "unknown"
        ]
        failed = (kv.get("failed_units") or b"").decode(errors="replace").split()
        problems += [
            f"unit {u} (enabled by the config) has failed; see 'journalctl -b -u {u}'"
            for u in want.enabled_units
            if u in failed
        ]
        if state[0] != "running":
            warnings.append(
                f"systemctl is-system-running: {state[0]}"
                + (f" (failed: {', '.join(failed)})" if failed else "")
            )
        for i, _cmd in enumerate(want.health_checks, 1):
            rc = (kv.get(f"health_rc_{i - 1}") or b"?").decode()
            err = (kv.get(f"health_err_{i - 1}") or b"").decode(errors="replace").strip()
            if rc == "124":
                problems.append(f"health check #{i} timed out after {want.health_timeout:g}s")
            elif rc != "0":
                problems.append(f"health check #{i} exited {rc}" + (f": {err}" if err else ""))
            else:
                self.report("verify", f"health check #{i} passed", None)
        return _Verified(f, state[0], problems, warnings, f.lock_taken)

    async def confirm(self, s: SshSession, *, fresh: bool, applied: bytes | None) -> None:
        """Confirm the boot over a FRESH login (proving new SSH logins work), disarming the
        dead-man switch; save the config as the host's rollback target; release the lock."""
        self.phase = "confirm"
        with self.timer.phase(
            "confirm",
            "confirming the boot over a fresh SSH login" if fresh else "recording the applied config",
        ):
            c = s
            if fresh:
                c = await (self._fresh or self.dial(60))
                self._fresh = None
            try:
                kv = await run_script(
                    c,
                    scripts.confirm(
                        self.root,
                        lock_token=self.me.token,
                        new_sha512=hashlib.sha512(self.d.config).hexdigest(),
                        applied=applied,
                    ),
                )
            finally:
                if c is not s:
                    await c.close()
        _ACTIVE_TOKENS.discard(self.me.token)
        if kv.get("confirm") == b"too-late":
            raise SshError(
                "the dead-man switch started its rollback before the confirmation "
                f"(policy.confirm_window {self.d.policy.confirm_window:g}s is too short for this host)"
            )

    def outcome(self, v: _Verified, plan: Plan, findings: preflight.Findings, *, rebooted: bool) -> Outcome:
        return Outcome(
            v.facts.stamp,
            v.facts.boot_id,
            self.target.host_key,
            v.facts.machine_id,
            v.state,
            rebooted,
            tuple(self.timer.phases),
            (*plan.warnings, *findings.warnings, *v.warnings),
            (*plan.notes, *findings.notes),
            tuple(self.not_hashed),
        )


def _with_lock(f: HostFacts) -> HostFacts:
    from dataclasses import replace

    return replace(f, lock_taken=True)


def parse_kv_sums(data: bytes | None) -> dict[str, str]:
    """``sha256sum -z`` output → path → hex digest."""
    out: dict[str, str] = {}
    for rec in (data or b"").split(b"\0"):
        digest, _, name = rec.decode("utf-8", errors="surrogateescape").partition("  ")
        if name:
            out[name] = digest
    return out


async def ensure(
    target: SshTarget,
    d: Desired,
    *,
    report: Report = _noop,
    first_boot_wait: float = 0,
    root: str = "",
    previous: bytes | None = None,
    fallback_keys: Sequence[str] = (),
    platform_keys: Sequence[str] = (),
    source: ConfigSource | None = None,
) -> Outcome:
    """Bring the host to ``d``: verify only when it already runs it, else the full procedure with
    rollback. ``previous``: the caller's copy of the config the host runs (used when the host has
    none saved); ``fallback_keys``: older private keys to log in with while the new one is not
    authorized yet (key rotation); ``platform_keys``: public keys the cloud installs on every
    boot; ``source``: where the operator reads and restores the hosted config (pointer/URL).
    Raises ``messages.ReprovisionError`` (with ``applied_hash`` and ``rolled_back``) on failure.
    """
    run = _Run(
        target,
        d,
        report,
        root=root,
        previous=previous,
        fallback_keys=fallback_keys,
        platform_keys=platform_keys,
        source=source,
    )
    try:
        return await asyncio.wait_for(run.go(first_boot_wait), timeout=d.policy.deadline + 30)
    except TimeoutError:
        raise messages.deadline(target.host, d.policy.deadline, run.phase, run.state, run.applied) from None


# --- read-only entry points (refresh, dry run, connection-only update) ------------------------------


async def read_applied(target: SshTarget, *, wait: float = 0, root: str = "") -> dict[str, Any]:
    """The host's applied hash and boot (``pulumi refresh``)."""
    s = await dial(target, timeout=wait or FIRST_DIAL)
    async with s:
        f = parse_facts(await run_script(s, scripts.facts(root)))
    return {"applied_hash": f.stamp, "boot_id": f.boot_id, "machine_id": f.machine_id}


async def connect_only(target: SshTarget, d: Desired, report: Report = _noop, *, root: str = "") -> Outcome:
    """A connection or policy change: reconnect (proving the new key/credentials) and verify."""
    run = _Run(target, d, report, root=root, previous=None, fallback_keys=(), platform_keys=(), source=None)
    async with await dial(target, timeout=FIRST_DIAL) as s:
        with run.timer.phase("verify", f"reconnected to {target.host}; verifying"):
            v = await run.verify(s, _Expect.new(d), None, None)
        await release_lock(s, run.me, root=root)
    if v.problems:
        raise messages.verify_failed(target.host, v.problems, v.facts.stamp)
    return Outcome(
        v.facts.stamp,
        v.facts.boot_id,
        target.host_key,
        v.facts.machine_id,
        v.state,
        False,
        tuple(run.timer.phases),
        tuple(v.warnings),
    )


@dataclass(frozen=True)
class DryRun:
    facts: HostFacts
    plan: Plan
    changes: tuple[tuple[str, str], ...]  # manifest changes: ("+"|"-"|"~", key)
    current_manifest_known: bool
    preview_delete: tuple[str, ...]
    preview_keep: tuple[str, ...]
    commands: tuple[tuple[str, str], ...] = ()  # (what, exact command as it would run as root)
    warnings: tuple[str, ...] = ()


@dataclass(frozen=True)
class Inspection:
    """A read-only preflight: every check a real run makes, no lock taken."""

    facts: HostFacts
    plan: Plan
    findings: preflight.Findings
    request: preflight.Request
    rollback_target: bytes | None
    warnings: tuple[str, ...]


async def _inspect(
    s: SshSession,
    d: Desired,
    me: LockOwner,
    *,
    root: str,
    previous: bytes | None,
    platform_keys: Sequence[str],
    source: ConfigSource | None,
) -> Inspection:
    login_key = s.target.public_key()
    req = preflight.script_for(
        d,
        root=root,
        owner_json=me.to_json(),
        take_lock=False,
        stale=None,
        user=s.target.user,
        login_key=login_key,
    )
    findings = preflight.interpret(req, await run_script(s, req.script), d, root=root, user=s.target.user)
    f = findings.facts
    back = rollback_config(f, previous)
    refusals = preflight.local_refusals(
        d, findings, user=s.target.user, login_key=login_key, platform_keys=platform_keys, previous=back
    )
    op_refusals, op_warnings, _ = await preflight.operator_side(d, source)
    plan = decide(
        f,
        d,
        me,
        stale_ours=stale_ours(f.lock_owner),
        previous=previous,
        checks=[*refusals, *findings.refusals, *op_refusals],
    )
    return Inspection(f, plan, findings, req, back, (*findings.warnings, *op_warnings))


async def inspect(
    target: SshTarget,
    d: Desired,
    *,
    root: str = "",
    previous: bytes | None = None,
    platform_keys: Sequence[str] = (),
    source: ConfigSource | None = None,
) -> Inspection:
    """What a run would do on this host and why not, changing nothing (not even the lock): for
    rollout preflights and dry runs."""
    async with await dial(target, timeout=FIRST_DIAL) as s:
        return await _inspect(
            s, d, _me(), root=root, previous=previous, platform_keys=platform_keys, source=source
        )


async def dry_run(
    target: SshTarget,
    d: Desired,
    *,
    root: str = "",
    previous: bytes | None = None,
    platform_keys: Sequence[str] = (),
    source: ConfigSource | None = None,
) -> DryRun:
    """Preflight (every check) and previews; changes nothing, not even the lock. Returns the exact
    commands a real run would send (payloads shown by size)."""
    me = _me()
    async with await dial(target, timeout=FIRST_DIAL) as s:
        ins = await _inspect(
            s, d, me, root=root, previous=previous, platform_keys=platform_keys, source=source
        )
        f, plan, back = ins.facts, ins.plan, ins.rollback_target
        current: dict[str, str] | None = None
        if f.staging and f.staging.desired_hash == f.stamp and f.staging.manifest:
            current = dict(f.staging.manifest)
        elif back is not None:
            current = build_manifest(json.loads(back))
        changes = manifest_changes(current or {}, build_manifest(d.document))
        previews: dict[str, tuple[str, ...]] = {"delete": (), "keep": ()}
        if f.reset_tool and plan.reboots and not root:
            for kind in previews:
                res = await s.run(
                    as_root(s, reset_argv(d, preview=kind, deadman=back is not None)), timeout=300
                )
                err = res.stderr.decode(errors="replace").strip()
                previews[kind] = (
                    tuple(res.text.splitlines())
                    if res.ok
                    else (f"(flatcar-reset --preview-{kind} failed: {err})",)
                )
    commands = planned_commands(d, ins.findings, plan, me, user=target.user) if not plan.refused else ()
    return DryRun(
        f,
        plan,
        tuple(changes),
        current is not None,
        previews["delete"],
        previews["keep"],
        commands,
        ins.warnings,
    )


def _sudo_sh(user: str) -> str:
    return "sh -s" if user == "root" else "sudo -n sh -s"


def new_staging(d: Desired, f: HostFacts, plan: Plan) -> Staging:
    """The staging record (its kept files are added once the stage script hashed them)."""
    deadman = plan.rollback_config is not None
    return Staging(
        d.config_hash,
        f.boot_id,
        f.now,
        d.delivery,
        (),
        tuple(sorted(build_manifest(d.document).items())),
        f.stamp,
        False,
        d.policy.confirm_window if deadman else 0.0,
        preflight.keep_entries(d, deadman=deadman),
    )


def stage_script(
    d: Desired,
    findings: preflight.Findings,
    plan: Plan,
    me: LockOwner,
    hashed: list[str],
    *,
    staging_json: bytes,
) -> scripts.Script:
    """The one script that stages the reset and schedules the reboot (see ``scripts.stage``)."""
    f = findings.facts
    back = plan.rollback_config
    deadman = None
    if back is not None:
        deadman = scripts.deadman_files(
            new_hash=d.config_hash,
            previous_hash=f.stamp or "",
            staged_boot=f.boot_id,
            window=d.policy.confirm_window,
            rollback_reset=rollback_argv(d),
        )
    return scripts.stage(
        staging_json=staging_json,
        kept_list=b"".join(e.record() for e in findings.kept),
        hash_paths=hashed,
        config=d.config,
        config_sha512=hashlib.sha512(d.config).hexdigest(),
        delivery=d.delivery,
        reset_argv=reset_argv(d, deadman=back is not None),
        cancel_first="cleanup" in plan.phases,
        remove_oem=plan.remove_oem,
        seed_applied=back if (back is not None and f.applied_config != back) else None,
        deadman=deadman,
        reboot_unit=f"flatcar-infra-reboot-{me.token[:8]}",
    )


def planned_commands(
    d: Desired, findings: preflight.Findings, plan: Plan, me: LockOwner, *, user: str
) -> tuple[tuple[str, str], ...]:
    """The exact commands of a real run, in order (each script as sent on standard input)."""
    deadman = plan.rollback_config is not None
    hashed: list[str] = []
    out: list[tuple[str, str]] = [
        (
            "preflight (takes the lock)",
            f"{_sudo_sh(user)} <<'SCRIPT'\n"
            + preflight.script_for(
                d, root="", owner_json=me.to_json(), take_lock=True, stale=None, user=user, login_key=None
            ).script.display()
            + "SCRIPT",
        )
    ]
    if plan.reboots:
        hashed, _ = hash_selection(findings.kept, d.policy.hash_budget_bytes)
        staging = new_staging(d, findings.facts, plan)
        stage = stage_script(d, findings, plan, me, hashed, staging_json=staging.to_json())
        out.append(("stage + reboot", f"{_sudo_sh(user)} <<'SCRIPT'\n{stage.display()}SCRIPT"))
        out.append(("wait for the new boot", "cat /proc/sys/kernel/random/boot_id   # until it changes"))
    ver = scripts.verify(
        "",
        owner_json=me.to_json(),
        kept_paths=[e.path for e in findings.kept] if plan.reboots else [],
        hash_paths=hashed if plan.reboots else [],
        user=user,
        health_checks=d.policy.health_checks,
        health_timeout=d.policy.health_timeout,
    )
    out.append(("verify", f"{_sudo_sh(user)} <<'SCRIPT'\n{ver.display()}SCRIPT"))
    conf = scripts.confirm(
        "",
        lock_token=me.token,
        new_sha512=hashlib.sha512(d.config).hexdigest(),
        applied=None if deadman else d.config,
    )
    out.append(("confirm (a fresh SSH login)", f"{_sudo_sh(user)} <<'SCRIPT'\n{conf.display()}SCRIPT"))
    return tuple(out)
