"""Bounded waits against a real sshd: an SSH drop in preflight (and in its kept-file listing) or in
verify, a reboot that is issued but never happens, a host that never returns. Each is detected
within its own bound and reported with the host's state and the next step."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

import pytest

from flatcar_infra.reprovision import messages
from flatcar_infra.reprovision.decide import Plan
from flatcar_infra.reprovision.hoststate import Staging
from flatcar_infra.reprovision.policy import Policy
from flatcar_infra.reprovision.procedure import _Run, ensure
from flatcar_infra.ssh import SshTarget, run_sync
from tests.reprovision.helpers import OLD, desired
from tests.reprovision.test_host_sshd import flatcar_root, sshd, target  # noqa: F401  (fixture)
from tests.support.netcut import NetCut
from tests.support.sshd import Sshd, free_port


def via(s: Sshd, port: int) -> SshTarget:
    t = target(s)
    return SshTarget(t.host, port, t.user, t.identity_file, None, t.host_key, 5.0)


def test_a_drop_in_preflight_is_reported_at_once(sshd: Sshd, tmp_path: Path) -> None:  # noqa: F811
    root = flatcar_root(tmp_path / "host", stamp=OLD.hash)
    with NetCut(sshd.port) as net:

        def report(phase: str, message: str, _elapsed: float | None = None) -> None:
            if phase == "preflight" and message.startswith("reading"):
                net.cut()

        t0 = time.monotonic()
        with pytest.raises(messages.ReprovisionError) as exc:
            run_sync(lambda: ensure(via(sshd, net.port), desired(), root=str(root), report=report))
    assert time.monotonic() - t0 < 30
    e = exc.value
    assert "during preflight" in str(e) and e.host_state == messages.UNCHANGED and e.applied_hash is None
    assert "run the same command again" in (e.advice or "")


def test_a_dead_network_in_verify_is_detected_by_keepalive(sshd: Sshd, tmp_path: Path) -> None:  # noqa: F811
    d = desired(policy=Policy(health_checks=("true",)))
    root = flatcar_root(tmp_path / "host", stamp=d.config_hash)
    with NetCut(sshd.port) as net:

        def report(phase: str, message: str, _elapsed: float | None = None) -> None:
            if phase == "verify" and message.startswith("verifying"):
                net.blackhole()  # nothing answers any more, nothing is closed

        t0 = time.monotonic()
        with pytest.raises(messages.ReprovisionError) as exc:
            run_sync(lambda: ensure(via(sshd, net.port), d, root=str(root), report=report))
    assert time.monotonic() - t0 < 60  # SSH keepalive: 3 x 5 s, not the command's own timeout
    assert "during verify" in str(exc.value) and exc.value.applied_hash == d.config_hash


def _run(t: SshTarget, policy: Policy) -> _Run:
    return _Run(
        t,
        desired(policy=policy),
        lambda *_a: None,
        root="",
        previous=None,
        fallback_keys=(),
        platform_keys=(),
        source=None,
    )


def test_a_reboot_that_never_happens(sshd: Sshd) -> None:  # noqa: F811
    boot = Path("/proc/sys/kernel/random/boot_id").read_text().strip()
    run = _run(target(sshd), Policy(reboot_timeout=4))
    plan = Plan(("preflight", "stage", "reboot", "verify", "confirm"))
    t0 = time.monotonic()
    with pytest.raises(messages.ReprovisionError) as exc:
        run_sync(lambda: run.await_new_boot(boot, Staging("h", boot, 0, "file"), plan, issued=True))
    assert time.monotonic() - t0 < 30
    assert "the reboot never happened" in str(exc.value) and exc.value.host_state == messages.STAGED
    assert "run again" in (exc.value.advice or "")


def test_a_host_that_never_returns(sshd: Sshd) -> None:  # noqa: F811
    t = SshTarget("127.0.0.1", free_port(), sshd.user, str(sshd.identity_file), None, sshd.host_key, 2.0)
    run = _run(t, Policy(reboot_timeout=3, confirm_window=2))
    plan = Plan(("preflight", "stage", "reboot", "verify", "confirm"), rollback_config=OLD.canonical)
    t0 = time.monotonic()
    with pytest.raises(messages.ReprovisionError) as exc:
        run_sync(lambda: run.await_new_boot("boot-0", Staging("h", "boot-0", 0, "file"), plan, issued=True))
    waited = time.monotonic() - t0
    # the reboot timeout, then the dead-man switch's window and another reboot timeout
    assert 3 + 2 + 3 <= waited < 30
    assert "did not come back within 8s" in str(exc.value) and "its state is unknown" in exc.value.host_state
    assert "console" in (exc.value.advice or "")


def test_another_host_key_after_the_reboot_is_final(sshd: Sshd, tmp_path: Path) -> None:  # noqa: F811
    from tests.support.sshd import keygen

    t = target(sshd, keygen(tmp_path / "other"))
    run = _run(t, Policy(reboot_timeout=60))
    plan = Plan(("preflight", "stage", "reboot", "verify", "confirm"))
    t0 = time.monotonic()
    with pytest.raises(messages.ReprovisionError) as exc:
        run_sync(lambda: run.await_new_boot("boot-0", Staging("h", "boot-0", 0, "file"), plan, issued=True))
    assert time.monotonic() - t0 < 15  # not retried until the timeout
    assert "DIFFERENT SSH host key" in str(exc.value)


def test_the_deadline_bounds_every_wait(sshd: Sshd) -> None:  # noqa: F811
    t = SshTarget("127.0.0.1", free_port(), sshd.user, str(sshd.identity_file), None, sshd.host_key, 2.0)
    run = _run(t, Policy(reboot_timeout=600, deadline=4))
    plan = Plan(("preflight", "stage", "reboot", "verify", "confirm"), rollback_config=OLD.canonical)
    t0 = time.monotonic()
    with pytest.raises(messages.ReprovisionError) as exc:
        run_sync(lambda: run.await_new_boot("boot-0", Staging("h", "boot-0", 0, "file"), plan, issued=True))
    assert time.monotonic() - t0 < 20
    assert "deadline (4s, policy.deadline) passed during" in str(exc.value)


def test_a_rollback_that_would_fail_is_refused(tmp_path: Path) -> None:
    """The previous config writes a file without overwrite on a kept path that exists: re-applying
    it would stop Ignition, so the rollback could not work and the run is refused."""
    from flatcar_infra.reprovision import preflight
    from flatcar_infra.reprovision.kept import KeptEntry
    from tests.reprovision.helpers import compiled, facts

    prev = compiled({}, extra={"storage": {"files": [
        {"path": "/var/lib/app/seed", "contents": {"source": "data:,x"}}]}})
    findings = preflight.Findings(facts(stamp=prev.hash), [KeptEntry("/var/lib/app/seed", "file", 1, 0)])
    d = desired(policy=Policy(keep_paths=("/var/lib/app",)))
    refusals = preflight.local_refusals(d, findings, user="core", login_key=None, platform_keys=(),
                                        previous=prev.canonical)
    assert len(refusals) == 1 and "a rollback would fail" in refusals[0].reason
    assert "/var/lib/app/seed" in refusals[0].reason and "--no-rollback" in refusals[0].advice
    off = desired(policy=Policy(keep_paths=("/var/lib/app",), rollback=False))
    assert preflight.local_refusals(off, findings, user="core", login_key=None, platform_keys=(),
                                    previous=prev.canonical) == []


def test_answering_on_the_old_boot_then_going_down_is_a_reboot_under_way(sshd: Sshd) -> None:  # noqa: F811
    """Right after the reboot is issued the old boot may still answer; once the host stops
    answering it is rebooting, and a later timeout is "did not come back", not "never rebooted"."""
    boot = Path("/proc/sys/kernel/random/boot_id").read_text().strip()
    with NetCut(sshd.port) as net:
        run = _run(via(sshd, net.port), Policy(reboot_timeout=8))
        plan = Plan(("preflight", "stage", "reboot", "verify", "confirm"))

        async def go() -> None:
            async def down_soon() -> None:
                await asyncio.sleep(3)
                net.cut()  # the host goes down after answering on the old boot

            task = asyncio.ensure_future(down_soon())
            try:
                await run.await_new_boot(boot, Staging("h", boot, 0, "file"), plan, issued=True)
            finally:
                await task

        with pytest.raises(messages.ReprovisionError) as exc:
            run_sync(go)
    assert "did not come back within 8s" in str(exc.value), str(exc.value)
