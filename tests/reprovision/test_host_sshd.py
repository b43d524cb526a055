"""Transport-level behaviour against a REAL OpenSSH server on 127.0.0.1.

The server's filesystem stands in for a host through the ``root`` prefix the fact and lock code
takes (every path is ``root + /path``), so facts parsing, the lock, the kept-file manifest, the
health checks and the verify-only rerun run for real without a VM.
"""

from __future__ import annotations

import asyncio
import hashlib
import os
import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest

from flatcar_infra.compiler.api import STAMP_PATH
from flatcar_infra.reprovision import messages
from flatcar_infra.reprovision.facts import gather_facts
from flatcar_infra.reprovision.plan import LOCK_FILE, STATE_FILE, LockOwner, Staging
from flatcar_infra.reprovision.policy import Policy
from flatcar_infra.reprovision.procedure import (
    _health,
    acquire_lock,
    dry_run,
    ensure,
    kept_manifest,
    release_lock,
)
from flatcar_infra.ssh import HostKeyMismatch, SshTarget, connect, run_sync
from tests.reprovision.helpers import OTHER, desired
from tests.support.sshd import Sshd, keygen, run_sshd

RESET_SCRIPT = Path(__file__).parents[2] / "flatcar_infra/testbed/files/rootfs/usr/sbin/flatcar-reset"


@pytest.fixture(scope="module")
def sshd(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Sshd]:
    with run_sshd(tmp_path_factory.mktemp("sshd")) as server:
        yield server


def target(s: Sshd, host_key: str | None = None) -> SshTarget:
    return SshTarget("127.0.0.1", s.port, s.user, identity_file=str(s.identity_file),
                     host_key=host_key or s.host_key)


def flatcar_root(root: Path, *, stamp: str | None = None, version: str = "3602.2.0") -> Path:
    (root / "etc").mkdir(parents=True, exist_ok=True)
    (root / "etc/os-release").write_text(f'NAME="Flatcar Container Linux by Kinvolk"\nID=flatcar\n'
                                         f"VERSION_ID={version}\n")
    (root / "usr/sbin").mkdir(parents=True, exist_ok=True)
    shutil.copy(RESET_SCRIPT, root / "usr/sbin/flatcar-reset")
    (root / "etc/machine-id").write_text("0123456789abcdef0123456789abcdef\n")
    (root / "proc").mkdir(exist_ok=True)
    (root / "proc/cmdline").write_text("BOOT_IMAGE=/vmlinuz root=LABEL=ROOT quiet\n")
    (root / "etc/ssh").mkdir(exist_ok=True)
    (root / "etc/ssh/ssh_host_ed25519_key").write_text("secret host key\n")
    if stamp:
        (root / STAMP_PATH.lstrip("/")).parent.mkdir(parents=True, exist_ok=True)
        (root / STAMP_PATH.lstrip("/")).write_text(stamp + "\n")
    return root


def test_facts_are_read_and_parsed(sshd: Sshd, tmp_path: Path) -> None:
    root = flatcar_root(tmp_path / "host", stamp="sha512-" + "ab" * 64)
    (root / "oem").mkdir()
    (root / "oem/config.ign").write_bytes(b'{"ignition":{"version":"3.3.0"}}')
    (root / "oem/grub.cfg").write_text('set linux_append="$linux_append ignition.config.url=http://h/c.ign"\n')
    st = Staging("sha512-" + "cd" * 64, "boot-x", 123.0, "file", (("/etc/x", "1:aa"),))
    (root / STATE_FILE.lstrip("/")).parent.mkdir(parents=True)
    (root / STATE_FILE.lstrip("/")).write_bytes(st.to_json())
    (root / "selective-os-reset").write_text("(x)\n")

    async def go() -> object:
        async with await connect(target(sshd)) as s:
            return await gather_facts(s, root=str(root))

    f = run_sync(go)
    assert f.os_id == "flatcar" and f.version == "3602.2.0"  # type: ignore[attr-defined]
    assert f.reset_tool == f"{root}/usr/sbin/flatcar-reset"  # type: ignore[attr-defined]
    assert f.stamp == "sha512-" + "ab" * 64  # type: ignore[attr-defined]
    want = "sha512-" + hashlib.sha512(b'{"ignition":{"version":"3.3.0"}}').hexdigest()
    assert f.oem_config_hash == want  # type: ignore[attr-defined]
    assert f.grub_config_url == "http://h/c.ign" and f.cmdline_config_url is None  # type: ignore[attr-defined]
    assert f.staging == st and f.reset_staged and not f.first_boot  # type: ignore[attr-defined]
    assert f.boot_id == Path("/proc/sys/kernel/random/boot_id").read_text().strip()  # type: ignore[attr-defined]
    assert f.machine_id == "0123456789abcdef0123456789abcdef" and f.lock_text is None  # type: ignore[attr-defined]


def test_lock_is_atomic_reported_and_only_released_by_its_owner(sshd: Sshd, tmp_path: Path) -> None:
    root = str(flatcar_root(tmp_path / "host"))
    a = LockOwner("ci", 1, "alice", "tok-a", 1.0)
    b = LockOwner("ci", 2, "bob", "tok-b", 2.0)

    async def go() -> None:
        async with await connect(target(sshd)) as s1, await connect(target(sshd)) as s2:
            # two contenders at once: exactly one wins
            r = await asyncio.gather(acquire_lock(s1, a, root=root), acquire_lock(s2, b, root=root))
            assert sorted(x is None for x in r) == [False, True]
            winner, loser = (a, b) if r[0] is None else (b, a)
            held = r[0] if r[0] is not None else r[1]
            assert held is not None and LockOwner.parse(held) == winner
            # the loser cannot release it
            await release_lock(s1, loser, root=root)
            assert Path(root + LOCK_FILE).exists()
            f = await gather_facts(s1, root=root)
            assert f.lock_owner == winner and f.lock_age is not None and f.lock_age >= 0
            await release_lock(s1, winner, root=root)
            assert not Path(root + LOCK_FILE).exists()
            # a stale lock is taken over only when its exact content is named
            Path(root + LOCK_FILE).write_text(OTHER.to_json() + "\n")
            assert await acquire_lock(s1, a, root=root) is not None
            assert await acquire_lock(s1, a, root=root, replace="something else") is not None
            assert await acquire_lock(s1, a, root=root, replace=OTHER.to_json()) is None
            assert LockOwner.parse(Path(root + LOCK_FILE).read_text()) == a

    run_sync(go)


def test_a_foreign_lock_refuses_the_reprovision_and_changes_nothing(sshd: Sshd, tmp_path: Path) -> None:
    root = flatcar_root(tmp_path / "host", stamp="sha512-" + "00" * 64)
    (root / LOCK_FILE.lstrip("/")).parent.mkdir(parents=True)
    (root / LOCK_FILE.lstrip("/")).write_text(OTHER.to_json() + "\n")
    before = sorted(p.relative_to(root) for p in root.rglob("*"))
    with pytest.raises(messages.ReprovisionError) as exc:
        run_sync(lambda: ensure(target(sshd), desired(), root=str(root)))
    assert "bob on laptop, pid 99" in str(exc.value) and "not changed" in str(exc.value)
    assert sorted(p.relative_to(root) for p in root.rglob("*")) == before


def test_wrong_host_key_is_refused_before_anything(sshd: Sshd, tmp_path: Path) -> None:
    root = flatcar_root(tmp_path / "host")
    wrong = keygen(tmp_path / "other")
    before = sorted(p.relative_to(root) for p in root.rglob("*"))
    with pytest.raises(HostKeyMismatch):
        run_sync(lambda: ensure(target(sshd, wrong), desired(), root=str(root)))
    assert sorted(p.relative_to(root) for p in root.rglob("*")) == before


def test_spec_too_new_is_refused_on_the_host(sshd: Sshd, tmp_path: Path) -> None:
    root = flatcar_root(tmp_path / "host")
    with pytest.raises(messages.ReprovisionError) as exc:
        run_sync(lambda: ensure(target(sshd), desired(version="3.4.0"), root=str(root)))
    assert "accepts specs up to 3.3.0" in str(exc.value)
    assert not (root / LOCK_FILE.lstrip("/")).exists()


def test_kept_manifest_within_budget(sshd: Sshd, tmp_path: Path) -> None:
    root = flatcar_root(tmp_path / "host")
    data = root / "var/lib/app"
    data.mkdir(parents=True)
    (data / "a b.db").write_bytes(b"x" * 100)
    (data / "big.bin").write_bytes(b"y" * 5000)
    os.symlink("a b.db", data / "link")
    (root / "var/lib/flatcar-infra").mkdir(parents=True)
    (root / "var/lib/flatcar-infra/reprovision.json").write_text("{}")
    (root / "var/lib/other").mkdir()
    (root / "var/lib/other/x").write_text("not kept")
    keep = Policy(keep_paths=("/var/lib/app",)).all_keep_paths

    async def go() -> tuple[dict[str, str], dict[str, float], list[str]]:
        async with await connect(target(sshd)) as s:
            return await kept_manifest(s, keep, 1000, root=str(root))

    kept, mtimes, skipped = run_sync(go)
    sha = hashlib.sha256
    assert kept == {
        "/etc/ssh/ssh_host_ed25519_key": f"16:{sha(b'secret host key' + bytes([10])).hexdigest()}",
        "/var/lib/app/a b.db": f"100:{sha(b'x' * 100).hexdigest()}",
        "/var/lib/app/big.bin": "5000:-",
        "/var/lib/app/link": "link:",
    }
    assert skipped == ["/var/lib/app/big.bin"] and set(mtimes) == set(kept)


def test_health_checks_pass_fail_and_time_out(sshd: Sshd) -> None:
    d = desired(policy=Policy(health_checks=("true", "echo broken >&2; exit 3", "sleep 30"),
                              health_timeout=1))
    lines: list[str] = []

    def report(_phase: str, message: str, _elapsed: float | None = None) -> None:
        lines.append(message)

    async def go() -> list[str]:
        async with await connect(target(sshd)) as s:
            return await _health(s, d, report)

    problems = run_sync(go)
    assert problems == ["health check #2 exited 3: broken", "health check #3 timed out after 1s"]
    assert lines == ["health check #1 passed"]


def test_rerun_on_an_applied_host_only_verifies(sshd: Sshd, tmp_path: Path) -> None:
    d = desired(policy=Policy(health_checks=("test -d /",)))
    root = flatcar_root(tmp_path / "host", stamp=d.config_hash)
    phases: list[str] = []
    def report(phase: str, _message: str, _elapsed: float | None = None) -> None:
        phases.append(phase)

    out = run_sync(lambda: ensure(target(sshd), d, root=str(root), report=report))
    assert not out.rebooted and out.applied_hash == d.config_hash
    assert [p for p, _ in out.phases] == ["preflight", "verify"]
    assert "stage" not in phases and "reboot" not in phases
    assert not (root / LOCK_FILE.lstrip("/")).exists()  # released


def test_dry_run_changes_nothing_and_shows_the_config_diff(sshd: Sshd, tmp_path: Path) -> None:
    import json

    from flatcar_infra.manifest import build_manifest

    old = desired({"/etc/app.conf": "v1\n", "/etc/old-only": "x"})
    new = desired({"/etc/app.conf": "v2\n", "/etc/new-only": "y"})
    root = flatcar_root(tmp_path / "host", stamp=old.config_hash)
    st = Staging(old.config_hash, "boot-0", 1.0, "file",
                 manifest=tuple(build_manifest(json.loads(old.config)).items()))
    (root / STATE_FILE.lstrip("/")).parent.mkdir(parents=True)
    (root / STATE_FILE.lstrip("/")).write_bytes(st.to_json())
    before = {p: p.stat().st_mtime_ns for p in root.rglob("*")}
    r = run_sync(lambda: dry_run(target(sshd), new, root=str(root)))
    assert r.plan.reboots and not r.plan.refused and r.current_manifest_known
    assert ("+", "file:/etc/new-only") in r.changes and ("-", "file:/etc/old-only") in r.changes
    assert ("~", "file:/etc/app.conf") in r.changes
    assert {p: p.stat().st_mtime_ns for p in root.rglob("*")} == before
