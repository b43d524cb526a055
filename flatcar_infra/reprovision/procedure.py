"""The reprovision procedure: preflight → (cleanup) → stage → reboot → verify, over SSH.

Shared by the Pulumi provider and the CLI. Facts are read in one round trip (``facts``), the
phases come from the pure ``plan.decide``, and every action goes through ``flatcar_infra.ssh``.
Safe to run again after any interruption: a host already running the desired hash is only
verified; a reset staged but never rebooted is cancelled and staged again.

The lock lives on tmpfs (``/run``): it protects preflight and staging, and the reboot that ends
the staging clears it, so a lock can never block the verification after the reboot, and a lock
left by a killed run lasts only until the next boot (a stale one is reported with owner and age,
never broken silently; only a lock provably left by this very machine's dead process is taken
over, and that is reported too).
"""

from __future__ import annotations

import asyncio
import getpass
import hashlib
import os
import shlex
import socket
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

from flatcar_infra.manifest import build_manifest
from flatcar_infra.procs import pid_alive
from flatcar_infra.reprovision import messages
from flatcar_infra.reprovision.facts import as_root, gather_facts
from flatcar_infra.reprovision.plan import (
    LOCK_DIR,
    LOCK_FILE,
    STAGED_CONFIG,
    STATE_FILE,
    Desired,
    HostFacts,
    KeptEntry,
    LockOwner,
    Plan,
    Staging,
    compare_kept,
    decide,
    hash_selection,
    kept_digest,
    manifest_changes,
    short,
)
from flatcar_infra.reprovision.policy import STATE_DIR
from flatcar_infra.ssh import HostKeyMismatch, SshError, SshSession, SshTarget, connect, wait_for_ssh

Report = Callable[[str, str, "float | None"], None]

_ACTIVE_TOKENS: set[str] = set()
"""Lock tokens held by operations running in this process (a lock of ours not in here is stale)."""


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
        return {"applied_hash": self.applied_hash, "boot_id": self.boot_id,
                "machine_id": self.machine_id, "system_state": self.system_state,
                "rebooted": self.rebooted, "phases": {k: round(v, 3) for k, v in self.phases},
                "warnings": list(self.warnings), "last_action": action}


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


# --- lock -------------------------------------------------------------------------------------------

async def acquire_lock(s: SshSession, me: LockOwner, *, root: str = "",
                       replace: str | None = None) -> str | None:
    """Take the host lock atomically (``ln`` of a complete file: fails if one exists, and the lock
    never exists without its owner). ``replace``: the exact stale content to take over.
    Returns ``None`` when taken, else the current holder's text."""
    lock = shlex.quote(f"{root}{LOCK_FILE}")
    script = f"""
set -e
mkdir -p {shlex.quote(root + LOCK_DIR)}
tmp=$(mktemp {shlex.quote(root + LOCK_DIR)}/.lock.XXXXXX)
printf '%s\\n' {shlex.quote(me.to_json())} > "$tmp"
if [ -n "$STALE" ] && [ "$(cat {lock} 2>/dev/null)" = "$STALE" ]; then rm -f {lock}; fi
if ln "$tmp" {lock} 2>/dev/null; then rm -f "$tmp"; echo TAKEN
else rm -f "$tmp"; cat {lock}; fi
"""
    res = await s.run(as_root(s, ["env", f"STALE={replace or ''}", "sh", "-c", script]), timeout=30)
    if not res.ok:
        raise SshError(f"cannot take the lock {LOCK_FILE} on {s.target.host}: "
                       f"{res.stderr.decode(errors='replace').strip()}")
    if res.text.strip() == "TAKEN":
        _ACTIVE_TOKENS.add(me.token)
        return None
    return res.text.strip()


async def release_lock(s: SshSession, me: LockOwner, *, root: str = "") -> bool:
    """Remove the lock only if it is still ours."""
    lock = shlex.quote(f"{root}{LOCK_FILE}")
    script = f"grep -qF {shlex.quote(me.token)} {lock} 2>/dev/null && rm -f {lock}; true"
    _ACTIVE_TOKENS.discard(me.token)
    try:
        res = await s.run(as_root(s, ["sh", "-c", script]), timeout=30)
    except SshError:
        return False
    return res.ok


# --- kept files ---------------------------------------------------------------------------------------

def keep_regex(keep_paths: tuple[str, ...]) -> str:
    """One egrep alternation over whole paths, like flatcar-reset builds it: a plain path also
    keeps everything below it; a regex ending in ``$ ) * ] ?`` is taken as written."""
    parts: list[str] = []
    for entry in keep_paths:
        e = entry.rstrip("/") or "/"
        if not e.endswith(("$", ")", "*", "]", "?")):
            parts.append(f"{e}/.*")
        parts.append(e)
    return "(" + "|".join(parts) + ")"


ROOT_VIEW = (
    'if [ -z "$R" ] && mountpoint -q /etc; then umount /etc || '
    '{ echo "cannot unmount the /etc overlay in a private mount namespace" >&2; exit 3; }; fi\n'
    'cd "$R/" || exit 1\n'
)
"""Shell prologue that shows ROOT as flatcar-reset and the initramfs see it: on current Flatcar
``/etc`` is an overlay (lower dir on USR), so ROOT's own ``/etc`` (the upper dir, where the host keys
live) is only visible with the overlay unmounted. Run inside ``unshare -m`` (see ``root_argv``)."""


def root_argv(s: SshSession, script: str, env: dict[str, str], *, root: str = "") -> list[str]:
    """``sh -c SCRIPT`` as root in a private mount namespace (the real host; ``root`` = "") or
    directly on a scratch tree (``root`` set, tests): the overlay unmount never leaks out."""
    argv = ["env", *(f"{k}={v}" for k, v in {"R": root, **env}.items()), "sh", "-c", ROOT_VIEW + script]
    if not root:
        argv = ["unshare", "-m", "--propagation", "private", *argv]
    return as_root(s, argv)


async def list_kept(s: SshSession, keep_paths: tuple[str, ...], *, root: str = "") -> list[KeptEntry]:
    """Regular files and symlinks on ROOT that the regexes keep (other filesystems not entered),
    seen the way flatcar-reset sees them (with the /etc overlay unmounted)."""
    script = (
        "find . -xdev -mindepth 1 \\( -type f -o -type l \\) -printf '/%P\\0' "
        '| grep -zEx -e "$RX" | sed -z "s|^|.|" '
        "| xargs -0r stat --printf '%f\\t%s\\t%Y\\t%n\\0' --\n"
    )
    res = await s.run(root_argv(s, script, {"RX": keep_regex(keep_paths)}, root=root), timeout=300)
    if not res.ok and not res.stdout:
        raise SshError(f"cannot list the kept files on {s.target.host}: "
                       f"{res.stderr.decode(errors='replace').strip()}")
    out: list[KeptEntry] = []
    for rec in res.stdout.split(b"\0"):
        if not rec:
            continue
        mode_hex, size, mtime, name = rec.decode("utf-8", errors="surrogateescape").split("\t", 3)
        path = name[1:] if name.startswith("./") else name
        if path.startswith(STATE_DIR + "/") or path == STATE_DIR:
            continue  # our own record changes by design
        is_link = int(mode_hex, 16) & 0o170000 == 0o120000
        out.append(KeptEntry(path, "link" if is_link else "file", int(size), float(mtime)))
    return sorted(out, key=lambda e: e.path)


async def hash_files(s: SshSession, paths: list[str], *, root: str = "") -> dict[str, str]:
    if not paths:
        return {}
    data = b"".join(b"." + p.encode("utf-8", errors="surrogateescape") + b"\0" for p in paths)
    res = await s.run(root_argv(s, "xargs -0r sha256sum -z --", {}, root=root), input=data, timeout=600)
    out: dict[str, str] = {}
    for rec in res.stdout.split(b"\0"):
        if rec:
            digest, _, name = rec.decode("utf-8", errors="surrogateescape").partition("  ")
            out[name[1:] if name.startswith("./") else name] = digest
    return out


async def kept_manifest(s: SshSession, keep_paths: tuple[str, ...], budget: int, *, root: str = "",
                        only: set[str] | None = None) -> tuple[dict[str, str], dict[str, float], list[str]]:
    """``(path → digest, path → mtime, not hashed)``; ``only`` limits hashing to these paths."""
    entries = await list_kept(s, keep_paths, root=root)
    if only is not None:
        selected = [e.path for e in entries if e.path in only and e.kind == "file"]
        skipped: list[str] = []
    else:
        selected, skipped = hash_selection(entries, budget)
    sums = await hash_files(s, selected, root=root)
    digests = {e.path: kept_digest(e, sums.get(e.path)) for e in entries}
    return digests, {e.path: e.mtime for e in entries}, skipped


# --- the phases ---------------------------------------------------------------------------------------

def reset_argv(d: Desired, *, preview: str | None = None) -> list[str]:
    argv = ["flatcar-reset"]
    if preview:
        return [*argv, f"--preview-{preview}", "--keep-paths", *_keep(d)]
    if d.policy.keep_machine_id:
        argv.append("--keep-machine-id")
    if d.delivery == "file":
        # flatcar-reset runs ``cp FILE /oem/config.ign``: it needs a file on the host ("-" is a file
        # named "-", not standard input), so the config is written to STAGED_CONFIG first.
        argv += ["-F", STAGED_CONFIG]
    elif d.delivery == "url":
        argv += ["-U", str(d.config_url)]
    keep = _keep(d)
    if keep:
        argv += ["--keep-paths", *keep]
    return argv


def _keep(d: Desired) -> tuple[str, ...]:
    # wipe-root: ROOT is reformatted by the config, so nothing on it can be kept
    return () if d.policy.strategy == "wipe-root" else d.policy.all_keep_paths


async def _check_pointer_object(s: SshSession, d: Desired) -> str | None:
    """With pointer delivery the hosted object must already hold the new config: fetch it FROM
    THE HOST (what Ignition will see) and compare hashes. Returns a problem or None."""
    if not d.config_url:
        return None
    want = hashlib.sha512(d.config).hexdigest()
    res = await s.run(["sh", "-c", 'command -v curl >/dev/null || exit 127; '
                       'curl -fsSL --max-time 30 "$0" | sha512sum | cut -d" " -f1', d.config_url], timeout=60)
    if res.exit_status == 127:
        return None  # no curl on this host: Ignition's own verification is all we have
    got = res.text.strip()
    if got != want:
        return (f"the hosted config at {d.config_url} does not hold the new config yet (sha512 "
                f"{got[:12] or 'unreadable'}… != {want[:12]}…): upload it before reprovisioning")
    return None


async def _wait_new_boot(target: SshTarget, old_boot: str, timeout: float, report: Report,
                         t_start: float, *, accept_new_key: bool = False,
                         same_boot_grace: float | None = None) -> tuple[SshSession, str | None]:
    """Dial with backoff until the host answers with a boot_id other than ``old_boot``.

    ``same_boot_grace``: when the reboot may never have been issued, a host that keeps answering
    on the old boot for that long has not rebooted: say so instead of waiting for the timeout.
    """
    deadline = t_start + timeout
    same_since: float | None = None
    delay = 0.5
    attempt = 0
    new_key: str | None = None
    last = "no answer yet"
    while True:
        attempt += 1
        t = SshTarget(target.host, target.port, target.user, target.identity_file, target.private_key,
                      new_key or target.host_key, min(target.connect_timeout, 5.0))
        try:
            s = await connect(t)
            try:
                boot = (await s.run(["cat", "/proc/sys/kernel/random/boot_id"], timeout=15)).text.strip()
            except SshError as exc:
                await s.close()
                raise exc
            if boot and boot != old_boot:
                return s, new_key
            await s.close()
            last = "still the old boot (not down yet)"
            same_since = same_since if same_since is not None else time.monotonic()
            if same_boot_grace is not None and time.monotonic() - same_since > same_boot_grace:
                raise messages.lost_before_reboot(
                    target.host, f"the host is still up on the same boot {same_boot_grace:g}s later: "
                    "the reboot command never arrived")
        except HostKeyMismatch:
            if not accept_new_key:
                raise messages.identity_changed(target.host) from None
            from flatcar_infra.ssh import fetch_host_key
            new_key = await fetch_host_key(target.host, target.port)
            report("reboot", f"wipe-root: the host has a NEW host key {new_key.split()[0]} "
                   "(root was reformatted); pinning it from now on (trust on first use)", None)
            continue
        except SshError as exc:
            last = exc.message
        now = time.monotonic()
        if now >= deadline:
            raise messages.not_back(target.host, timeout, last)
        if attempt % 5 == 1:
            report("reboot", f"waiting for the new boot ({last})", now - t_start)
        await asyncio.sleep(min(delay, max(0.0, deadline - now)))
        delay = min(delay * 1.5, 3.0)


async def _system_state(s: SshSession, d: Desired) -> tuple[str, list[str], list[str]]:
    """``(is-system-running, failed units, problems)``; waits while the system is starting."""
    t = d.policy.health_timeout
    res = await s.run(["sh", "-c", f"timeout {t:g} systemctl is-system-running --wait 2>/dev/null || "
                       "systemctl is-system-running 2>/dev/null; true"], timeout=t + 15)
    state = (res.text.strip().splitlines() or ["unknown"])[-1]
    failed_res = await s.run(["systemctl", "list-units", "--failed", "--plain", "--no-legend",
                              "--no-pager"], timeout=30)
    failed = [ln.split()[0] for ln in failed_res.text.splitlines() if ln.strip()]
    problems = [f"unit {u} (enabled by the config) has failed; see 'journalctl -b -u {u}'"
                for u in d.enabled_units if u in failed]
    return state, failed, problems


async def _health(s: SshSession, d: Desired, report: Report) -> list[str]:
    problems: list[str] = []
    t = d.policy.health_timeout
    for i, cmd in enumerate(d.policy.health_checks, 1):
        try:
            res = await s.run(["timeout", "-k", "5", f"{t:g}", "sh", "-c", cmd], timeout=t + 15)
        except SshError as exc:
            problems.append(f"health check #{i} failed: {exc.message}")
            continue
        if res.exit_status == 124:
            problems.append(f"health check #{i} timed out after {t:g}s")
        elif not res.ok:
            err = res.stderr.decode(errors="replace").strip()[-300:]
            problems.append(f"health check #{i} exited {res.exit_status}" + (f": {err}" if err else ""))
        else:
            report("verify", f"health check #{i} passed", None)
    return problems


async def verify(s: SshSession, d: Desired, before: HostFacts | None, staging: Staging | None,
                 report: Report, *, root: str = "") -> tuple[HostFacts, str, list[str], list[str]]:
    """Prove the host runs the desired config. Returns (facts, system state, problems, warnings)."""
    f = await gather_facts(s, root=root)
    problems: list[str] = []
    warnings: list[str] = []
    if f.stamp != d.config_hash:
        problems.append(f"the host runs config {short(f.stamp)}, not {short(d.config_hash)}: Ignition did "
                        "not apply the new config (see 'journalctl -b -t ignition')")
    fresh = staging is not None and staging.desired_hash == d.config_hash and staging.boot_id != f.boot_id
    if fresh and staging is not None:
        if f.ignition_result_mtime is None or f.ignition_result_mtime < staging.staged_at:
            problems.append("/etc/.ignition-result.json is not newer than the staging: Ignition did not run "
                            "on this boot")
        before_kept = dict(staging.kept)
        only = {p for p, v in before_kept.items() if not v.startswith("link:") and not v.endswith(":-")}
        after, mtimes, _ = await kept_manifest(s, _keep(d), d.policy.hash_budget_bytes, root=root, only=only)
        cmp = compare_kept(before_kept, after, mtimes, staging.staged_at)
        for p in cmp.missing:
            problems.append(f"kept path {p} is gone after the reset")
        for p in cmp.corrupted:
            problems.append(f"kept file {p} changed although nothing wrote it since staging")
        if cmp.rewritten:
            warnings.append(f"{len(cmp.rewritten)} kept file(s) were written by the running system since "
                            f"staging (e.g. {cmp.rewritten[0]})")
        report("verify", f"{len(before_kept)} kept file(s) checked", None)
    if (before is not None and d.policy.keep_machine_id and d.policy.strategy == "in-place"
            and before.machine_id and f.machine_id != before.machine_id):
        problems.append(f"the machine-id changed ({before.machine_id} → {f.machine_id}) although it was kept")
    state, failed, unit_problems = await _system_state(s, d)
    problems += unit_problems
    if state != "running":
        warnings.append(f"systemctl is-system-running: {state}"
                        + (f" (failed: {', '.join(failed)})" if failed else ""))
    problems += await _health(s, d, report)
    return f, state, problems, warnings


async def ensure(target: SshTarget, d: Desired, *, report: Report = _noop, first_boot_wait: float = 0,
                 root: str = "") -> Outcome:
    """Bring the host to ``d``: verify only when it already runs it, else the full procedure."""
    timer = _Timer(report)
    me = _me()
    host = target.host
    if first_boot_wait:
        s = await wait_for_ssh(target, timeout=first_boot_wait, first_delay=1.0, max_delay=5.0,
                               on_attempt=lambda n, el, exc: report("connect", f"waiting for SSH: {exc}", el))
    else:
        s = await connect(target)
    locked = False
    try:
        with timer.phase("preflight", f"reading the state of {host}"):
            facts = await gather_facts(s, root=root)
            plan = decide(facts, d, me, stale_ours=stale_ours(facts.lock_owner))
            if plan.refused:
                raise messages.refused(host, plan.refusals)
            if d.delivery == "pointer" and plan.reboots:
                problem = await _check_pointer_object(s, d)
                if problem:
                    raise messages.ReprovisionError(problem, messages.UNCHANGED,
                                                    "upload the config, then run again")
            holder = await acquire_lock(s, me, root=root,
                                        replace=facts.lock_text if stale_ours(facts.lock_owner) else None)
            if holder is not None:
                owner = LockOwner.parse(holder)
                raise messages.ReprovisionError(
                    f"the host is locked by another reprovision "
                    f"({owner.describe() if owner else holder[:80]}, {LOCK_FILE})", messages.UNCHANGED,
                    "wait for it to finish, or remove the lock if its process is gone")
            locked = True
            for n in plan.notes:
                report("preflight", n, None)
            for w in plan.warnings:
                report("preflight", f"warning: {w}", None)
            report("preflight", f"Flatcar {facts.version}, applied {short(facts.stamp)}, "
                   f"desired {short(d.config_hash)}; phases: {' → '.join(plan.phases)}", None)
        if not plan.reboots:
            if "cleanup" in plan.phases:
                with timer.phase("cleanup", "cancelling the staged reset"):
                    await s.run(as_root(s, ["flatcar-reset", "--stop"]), timeout=60, check=True)
            with timer.phase("verify", "verifying the running config"):
                f2, state, problems, warns = await verify(s, d, facts, facts.staging, report, root=root)
            await release_lock(s, me, root=root)
            locked = False
            if problems:
                raise messages.verify_failed(host, problems)
            return Outcome(f2.stamp, f2.boot_id, target.host_key, f2.machine_id, state, False,
                           tuple(timer.phases), (*plan.warnings, *warns), plan.notes)
        staging, skipped = await _stage(s, d, facts, plan, timer, report, root=root)
        with timer.phase("reboot", "rebooting (detached) and waiting for the new boot"):
            t0 = time.monotonic()
            issued = True
            try:
                await s.run(as_root(s, ["systemd-run", "--no-block", "--collect", "--unit",
                                        f"flatcar-infra-reboot-{me.token[:8]}", "sh", "-c",
                                        "sleep 2; systemctl reboot"]), timeout=30, check=True)
            except SshError as exc:
                # ambiguous: the reboot may already be under way (a slow host answers after the
                # 2 s delay), or the command never arrived. Find out by waiting.
                issued = False
                report("reboot", f"connection lost while issuing the reboot ({exc.message}); "
                       "waiting to see whether it happens", time.monotonic() - t0)
            locked = False  # the reboot clears /run
            _ACTIVE_TOKENS.discard(me.token)
            await s.close()
            try:
                s, new_key = await _wait_new_boot(
                    target, facts.boot_id, d.policy.reboot_timeout, report, t0,
                    accept_new_key=d.policy.strategy == "wipe-root", same_boot_grace=None if issued else 30)
            except messages.ReprovisionError as exc:
                if issued or exc.host_state != messages.REBOOTING:
                    raise
                raise messages.reboot_unknown(host, d.policy.reboot_timeout) from None
            if new_key:
                target = target.pinned(new_key)
        with timer.phase("verify", "verifying the new boot"):
            f2, state, problems, warns = await verify(s, d, facts, staging, report, root=root)
        if problems:
            raise messages.verify_failed(host, problems)
        return Outcome(f2.stamp, f2.boot_id, target.host_key, f2.machine_id, state, True,
                       tuple(timer.phases), (*plan.warnings, *warns), plan.notes, tuple(skipped))
    finally:
        if locked:
            await release_lock(s, me, root=root)
        await s.close()


async def _stage(s: SshSession, d: Desired, facts: HostFacts, plan: Plan, timer: _Timer, report: Report,
                 *, root: str = "") -> tuple[Staging, list[str]]:
    host = s.target.host
    if "cleanup" in plan.phases:
        with timer.phase("cleanup", "cancelling the reset staged earlier (flatcar-reset --stop)"):
            await s.run(as_root(s, ["flatcar-reset", "--stop"]), timeout=60, check=True)
    with timer.phase("stage", f"staging the reset ({d.delivery} delivery)"):
        kept, _mt, skipped = await kept_manifest(s, _keep(d), d.policy.hash_budget_bytes, root=root)
        report("stage", f"{len(kept)} kept file(s) recorded"
               + (f"; {len(skipped)} not hashed (budget {d.policy.hash_budget_bytes} bytes), "
                  f"e.g. {skipped[0]}" if skipped else ""), None)
        staging = Staging(d.config_hash, facts.boot_id, facts.now, d.delivery, tuple(sorted(kept.items())),
                          tuple(sorted(build_manifest(_json(d.config)).items())))
        await s.run(as_root(s, ["mkdir", "-p", "-m", "0700", f"{root}{STATE_DIR}"]), check=True)
        await s.write_file(f"{root}{STATE_FILE}", staging.to_json(), mode=0o600, sudo=s.target.user != "root")
        if d.delivery == "file":
            await s.write_file(f"{root}{STAGED_CONFIG}", d.config, mode=0o600, sudo=s.target.user != "root")
        try:
            res = await s.run(as_root(s, reset_argv(d)), timeout=120)
        except SshError as exc:
            raise messages.lost_before_reboot(host, exc.message) from None
        if not res.ok:
            raise messages.ReprovisionError(
                f"flatcar-reset failed (exit {res.exit_status}): "
                f"{res.stderr.decode(errors='replace').strip()[-500:]}",
                "unknown: flatcar-reset may have staged part of the reset",
                "run again (a staged reset is cancelled and staged afresh), or cancel it on the host "
                "with 'sudo flatcar-reset --stop'")
        if d.delivery == "file":
            sums = await s.run(as_root(s, ["sha512sum", "/oem/config.ign"]), timeout=30)
            if sums.text.split()[:1] != [hashlib.sha512(d.config).hexdigest()]:
                raise messages.ReprovisionError(
                    "/oem/config.ign on the host does not hold the exact bytes delivered", messages.STAGED,
                    "run again; if it repeats, check the OEM partition (mounted, space left)")
    return staging, skipped


def _json(data: bytes) -> dict[str, Any]:
    import json
    doc: dict[str, Any] = json.loads(data)
    return doc


# --- read-only entry points (refresh, dry run, connection-only update) ------------------------------

async def read_applied(target: SshTarget, *, wait: float = 0, root: str = "") -> dict[str, Any]:
    """The host's applied hash and boot (``pulumi refresh``)."""
    s = await (wait_for_ssh(target, timeout=wait) if wait else connect(target))
    async with s:
        f = await gather_facts(s, root=root)
    return {"applied_hash": f.stamp, "boot_id": f.boot_id, "machine_id": f.machine_id}


async def connect_only(target: SshTarget, d: Desired, report: Report = _noop, *, root: str = "") -> Outcome:
    """A connection or policy change: reconnect (proving the new key/credentials) and verify."""
    timer = _Timer(report)
    async with await connect(target) as s:
        with timer.phase("verify", f"reconnected to {target.host}; verifying"):
            f, state, problems, warns = await verify(s, d, None, None, report, root=root)
    if problems:
        raise messages.verify_failed(target.host, problems)
    return Outcome(f.stamp, f.boot_id, target.host_key, f.machine_id, state, False, tuple(timer.phases),
                   tuple(warns))


@dataclass(frozen=True)
class DryRun:
    facts: HostFacts
    plan: Plan
    changes: tuple[tuple[str, str], ...]  # manifest changes: ("+"|"-"|"~", key)
    current_manifest_known: bool
    preview_delete: tuple[str, ...]
    preview_keep: tuple[str, ...]


async def dry_run(target: SshTarget, d: Desired, *, root: str = "") -> DryRun:
    """Preflight and previews only; changes nothing (not even the lock)."""
    async with await connect(target) as s:
        f = await gather_facts(s, root=root)
        plan = decide(f, d, _me(), stale_ours=stale_ours(f.lock_owner))
        current: dict[str, str] | None = None
        if f.staging and f.staging.desired_hash == f.stamp and f.staging.manifest:
            current = dict(f.staging.manifest)
        else:
            raw = await s.read_file("/oem/config.ign", sudo=s.target.user != "root", missing_ok=True)
            if raw:
                try:
                    current = build_manifest(_json(raw))
                except (ValueError, KeyError, TypeError):
                    current = None
        new = build_manifest(_json(d.config))
        changes = manifest_changes(current or {}, new)
        pdel: tuple[str, ...] = ()
        pkeep: tuple[str, ...] = ()
        if f.reset_tool:
            for kind in ("delete", "keep"):
                res = await s.run(as_root(s, reset_argv(d, preview=kind)), timeout=300)
                err = res.stderr.decode(errors="replace").strip()
                lines = tuple(res.text.splitlines()) if res.ok else (
                    f"(flatcar-reset --preview-{kind} failed: {err})",)
                if kind == "delete":
                    pdel = lines
                else:
                    pkeep = lines
    return DryRun(f, plan, tuple(changes), current is not None, pdel, pkeep)
