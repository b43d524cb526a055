"""The host scripts against a REAL OpenSSH server on 127.0.0.1.

The server's filesystem stands in for a host through the ``root`` prefix the read-only scripts
take (every path is ``root + /path``), so the facts, the lock, the kept-file listing with the
host's own regex engine, the remote fetches from the host, the health checks, the confirmation and
the verify-only rerun run for real without a VM.
"""

from __future__ import annotations

import asyncio
import functools
import hashlib
import os
import shutil
import threading
from collections.abc import Iterator
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from flatcar_infra.compiler.api import STAMP_PATH
from flatcar_infra.reprovision import messages, preflight, scripts
from flatcar_infra.reprovision.desired import Desired
from flatcar_infra.reprovision.facts import parse_facts, run_script
from flatcar_infra.reprovision.hoststate import (
    APPLIED_CONFIG,
    LOCK_FILE,
    STATE_FILE,
    HostFacts,
    LockOwner,
    Staging,
)
from flatcar_infra.reprovision.policy import Policy
from flatcar_infra.reprovision.procedure import acquire_lock, dry_run, ensure, release_lock
from flatcar_infra.ssh import SshTarget, connect, run_sync
from tests.reprovision.helpers import OTHER, desired
from tests.support.sshd import Sshd, free_port, keygen, run_sshd

RESET_SCRIPT = Path(__file__).parents[2] / "flatcar_infra/testbed/files/rootfs/usr/sbin/flatcar-reset"


@pytest.fixture(scope="module")
def sshd(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Sshd]:
    with run_sshd(tmp_path_factory.mktemp("sshd")) as server:
        yield server


def target(s: Sshd, host_key: str | None = None) -> SshTarget:
    return SshTarget(
        "127.0.0.1", s.port, s.user, identity_file=str(s.identity_file), host_key=host_key or s.host_key
    )


def flatcar_root(root: Path, *, stamp: str | None = None, version: str = "3602.2.0") -> Path:
    (root / "etc").mkdir(parents=True, exist_ok=True)
    (root / "etc/os-release").write_text(
        f'NAME="Flatcar Container Linux by Kinvolk"\nID=flatcar\nVERSION_ID={version}\n'
    )
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
    (root / "oem/grub.cfg").write_text(
        'set linux_append="$linux_append ignition.config.url=http://h/c.ign"\n'
    )
    st = Staging("sha512-" + "cd" * 64, "boot-x", 123.0, "file", (("/etc/x", "1:aa"),))
    (root / STATE_FILE.lstrip("/")).parent.mkdir(parents=True)
    (root / STATE_FILE.lstrip("/")).write_bytes(st.to_json())
    (root / "selective-os-reset").write_text("(x)\n")

    async def go() -> HostFacts:
        async with await connect(target(sshd)) as s:
            return parse_facts(await run_script(s, scripts.facts(str(root))))

    f = run_sync(go)
    assert f.os_id == "flatcar" and f.version == "3602.2.0"
    assert f.reset_tool == f"{root}/usr/sbin/flatcar-reset"
    assert f.stamp == "sha512-" + "ab" * 64
    want = "sha512-" + hashlib.sha512(b'{"ignition":{"version":"3.3.0"}}').hexdigest()
    assert f.oem_config_hash == want and f.oem_config == b'{"ignition":{"version":"3.3.0"}}'
    assert f.grub_config_url == "http://h/c.ign" and f.cmdline_config_url is None
    assert f.staging is not None and f.staging.desired_hash == st.desired_hash
    assert f.reset_staged and not f.first_boot and not f.deadman_armed and f.uptime > 0
    assert f.boot_id == Path("/proc/sys/kernel/random/boot_id").read_text().strip()
    assert f.machine_id == "0123456789abcdef0123456789abcdef" and f.lock_text is None


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
            f = parse_facts(await run_script(s1, scripts.facts(root)))
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
    with pytest.raises(messages.ReprovisionError) as exc:
        run_sync(lambda: ensure(target(sshd, wrong), desired(), root=str(root)))
    assert "does not match the pinned key" in str(exc.value) and exc.value.host_state == messages.UNCHANGED
    assert sorted(p.relative_to(root) for p in root.rglob("*")) == before


def test_spec_too_new_is_refused_on_the_host(sshd: Sshd, tmp_path: Path) -> None:
    root = flatcar_root(tmp_path / "host")
    with pytest.raises(messages.ReprovisionError) as exc:
        run_sync(lambda: ensure(target(sshd), desired(version="3.4.0"), root=str(root)))
    assert "accepts specs up to 3.3.0" in str(exc.value)
    assert not (root / LOCK_FILE.lstrip("/")).exists()


def checked(s: Sshd, root: Path, d: Desired, login_key: str | None = None) -> preflight.Findings:
    """The preflight script run against ``root`` on the sshd (no lock), its answers interpreted."""

    async def go() -> preflight.Findings:
        async with await connect(target(s)) as session:
            req = preflight.script_for(
                d,
                root=str(root),
                owner_json=OTHER.to_json(),
                take_lock=False,
                stale=None,
                user="core",
                login_key=login_key,
            )
            kv = await run_script(session, req.script)
            return preflight.interpret(req, kv, d, root=str(root), user="core")

    return run_sync(go)


def reasons(s: Sshd, root: Path, d: Desired) -> list[str]:
    return [r.reason for r in checked(s, root, d).refusals]


def _serve(directory: Path) -> tuple[ThreadingHTTPServer, int]:
    handler = functools.partial(SimpleHTTPRequestHandler, directory=str(directory))
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server, server.server_address[1]


def test_preflight_checks_on_the_host(sshd: Sshd, tmp_path: Path) -> None:
    """One round trip: kept files seen by the host's regex engine, keep entries compiled by it,
    config files without overwrite on kept paths, the login key in kept authorized_keys, and the
    remote resources fetched from the host with their hashes checked."""
    root = flatcar_root(tmp_path / "host")
    data = root / "var/lib/app"
    data.mkdir(parents=True)
    (data / "a b.db").write_bytes(b"x" * 100)
    (data / "big.bin").write_bytes(b"y" * 5000)
    os.symlink("a b.db", data / "link")
    (data / "conf").write_text("exists\n")
    (root / "var/lib/flatcar-infra").mkdir(parents=True)
    (root / "var/lib/flatcar-infra/reprovision.json").write_text("{}")
    (root / "var/lib/other").mkdir()
    (root / "var/lib/other/x").write_text("not kept")
    (root / "etc/passwd").write_text("core:x:500:500::/home/core:/bin/bash\\n")
    (root / "home/core/.ssh").mkdir(parents=True)
    (root / "home/core/.ssh/authorized_keys").write_text(client_key(sshd) + "\\n")
    web = tmp_path / "web"
    web.mkdir()
    (web / "blob").write_bytes(b"remote bytes")
    server, port = _serve(web)
    good = "sha512-" + hashlib.sha512(b"remote bytes").hexdigest()
    files = [
        {"path": "/var/lib/app/conf", "contents": {"source": "data:,new"}},  # kept, exists, no overwrite
        {"path": "/var/lib/app/later", "contents": {"source": "data:,x"}},  # kept, not there yet
        {"path": "/etc/motd", "contents": {"source": "data:,hi"}},  # not kept: fine
        {
            "path": "/opt/ok",
            "overwrite": True,
            "contents": {"source": f"http://127.0.0.1:{port}/blob", "verification": {"hash": good}},
        },
        {
            "path": "/opt/bad-hash",
            "overwrite": True,
            "contents": {
                "source": f"http://127.0.0.1:{port}/blob",
                "verification": {"hash": "sha512-" + "0" * 128},
            },
        },
        {"path": "/opt/missing", "overwrite": True, "contents": {"source": f"http://127.0.0.1:{port}/nope"}},
    ]
    d = desired(
        policy=Policy(keep_paths=("/var/lib/app", "/home/core/.ssh")), extra={"storage": {"files": files}}
    )
    try:
        f = checked(sshd, root, d, client_key(sshd))
    finally:
        server.shutdown()
        server.server_close()
    kept = {e.path: e.kind for e in f.kept}
    assert kept == {
        "/etc/ssh/ssh_host_ed25519_key": "file",
        "/var/lib/app/a b.db": "file",
        "/var/lib/app/big.bin": "file",
        "/var/lib/app/link": "link",
        "/var/lib/app/conf": "file",
        "/home/core/.ssh/authorized_keys": "file",
    }  # our state dir is not a user file
    assert f.key_kept
    reasons = [r.reason for r in f.refusals]
    assert len(reasons) == 4, reasons
    assert any("/var/lib/app/conf" in r and "exists on the host now" in r for r in reasons)
    assert any("/var/lib/app/later" in r and "next reprovision or a rollback" in r for r in reasons)
    assert any("$.storage.files.4.contents" in r and "do not match verification.hash" in r for r in reasons)
    assert any("$.storage.files.5.contents" in r and "HTTP 404" in r for r in reasons)
    assert not (root / LOCK_FILE.lstrip("/")).exists()  # take_lock=False: a dry run takes no lock


def test_pointer_object_is_fetched_from_the_host_and_a_failure_keeps_its_own_message(
    sshd: Sshd, tmp_path: Path
) -> None:
    root = flatcar_root(tmp_path / "host")
    web = tmp_path / "web"
    web.mkdir()
    server, port = _serve(web)
    url = f"http://127.0.0.1:{port}/config.ign"
    d = desired(delivery="pointer", config_url=url)

    try:
        missing = reasons(sshd, root, d)
        (web / "config.ign").write_bytes(b'{"ignition":{"version":"3.3.0"}}')
        stale = reasons(sshd, root, d)
        (web / "config.ign").write_bytes(d.config)
        ok = reasons(sshd, root, d)
    finally:
        server.shutdown()
        server.server_close()
    assert len(missing) == 1 and "fetching the hosted config from the host failed: HTTP 404" in missing[0]
    assert "does not hold the new config" not in missing[0]
    assert len(stale) == 1 and "does not hold the new config yet" in stale[0]
    assert ok == []
    # nothing listens: curl's own error, not a wrong guess
    d2 = desired(delivery="pointer", config_url=f"http://127.0.0.1:{free_port()}/c.ign")

    r = reasons(sshd, root, d2)
    assert len(r) == 1 and "curl exit 7" in r[0]


def test_keep_entries_are_compiled_by_the_hosts_engine(sshd: Sshd, tmp_path: Path) -> None:
    """An entry GNU ERE rejects (Python accepts nothing like it either way) is refused by name; the
    policy's own check already stops Python-only syntax before any host is contacted."""
    root = flatcar_root(tmp_path / "host")
    d = desired()
    bad = Policy.__new__(Policy)  # an invalid policy from old state, bypassing validation
    object.__setattr__(bad, "__dict__", {**Policy().__dict__, "keep_paths": ("/var/a{2,1}",)})

    dd = type(d)(d.config, d.config_hash, d.version, bad, d.delivery)
    found = reasons(sshd, root, dd)
    assert "'/var/a{2,1}'" in found[0] and "Invalid content of" in found[0]
    assert len(found) == 2 and "cannot list the kept files" in found[1]  # nor can the reset


def test_rerun_on_an_applied_host_only_verifies(sshd: Sshd, tmp_path: Path) -> None:
    d = desired(policy=Policy(health_checks=("test -d /",)))
    root = flatcar_root(tmp_path / "host", stamp=d.config_hash)
    phases: list[str] = []

    def report(phase: str, _message: str, _elapsed: float | None = None) -> None:
        phases.append(phase)

    out = run_sync(lambda: ensure(target(sshd), d, root=str(root), report=report))
    assert not out.rebooted and out.applied_hash == d.config_hash
    assert [p for p, _ in out.phases] == ["preflight", "verify", "confirm"]
    assert "stage" not in phases and "reboot" not in phases
    assert not (root / LOCK_FILE.lstrip("/")).exists()  # released
    # the host keeps the config it proved to run: the next reprovision's rollback target
    assert (root / APPLIED_CONFIG.lstrip("/")).read_bytes() == d.config


def test_a_failing_health_check_on_a_verified_host_is_reported_not_rolled_back(
    sshd: Sshd, tmp_path: Path
) -> None:
    d = desired(
        policy=Policy(health_checks=("true", "echo broken >&2; exit 3", "sleep 30"), health_timeout=1)
    )
    root = flatcar_root(tmp_path / "host", stamp=d.config_hash)
    with pytest.raises(messages.ReprovisionError) as exc:
        run_sync(lambda: ensure(target(sshd), d, root=str(root)))
    msg = str(exc.value)
    assert "health check #2 exited 3: broken" in msg and "health check #3 timed out after 1s" in msg
    assert "#1" not in msg and not exc.value.rolled_back and exc.value.applied_hash == d.config_hash
    assert not (root / LOCK_FILE.lstrip("/")).exists()


def test_dry_run_changes_nothing_and_shows_the_config_diff(sshd: Sshd, tmp_path: Path) -> None:
    import json

    from flatcar_infra.manifest import build_manifest

    old = desired({"/etc/app.conf": "v1\n", "/etc/old-only": "x"})
    new = desired({"/etc/app.conf": "v2\n", "/etc/new-only": "y"})
    root = flatcar_root(tmp_path / "host", stamp=old.config_hash)
    st = Staging(
        old.config_hash, "boot-0", 1.0, "file", manifest=tuple(build_manifest(json.loads(old.config)).items())
    )
    (root / STATE_FILE.lstrip("/")).parent.mkdir(parents=True)
    (root / STATE_FILE.lstrip("/")).write_bytes(st.to_json())
    (root / APPLIED_CONFIG.lstrip("/")).write_bytes(old.config)
    before = {p: p.stat().st_mtime_ns for p in root.rglob("*")}
    r = run_sync(lambda: dry_run(target(sshd), new, root=str(root), platform_keys=[client_key(sshd)]))
    assert r.plan.reboots and not r.plan.refused and r.current_manifest_known, r.plan.refusals
    assert ("+", "file:/etc/new-only") in r.changes and ("-", "file:/etc/old-only") in r.changes
    assert ("~", "file:/etc/app.conf") in r.changes
    assert {p: p.stat().st_mtime_ns for p in root.rglob("*")} == before
    # the exact commands of a real run, the config itself shown by size only
    what = [w for w, _ in r.commands]
    assert what == [
        "preflight (takes the lock)",
        "stage + reboot",
        "wait for the new boot",
        "verify",
        "confirm (a fresh SSH login)",
    ]
    stage = dict(r.commands)["stage + reboot"]
    assert "flatcar-reset --keep-machine-id -F /var/lib/flatcar-infra/staged-config.ign --keep-paths" in stage
    assert f"<the new config: {len(new.config)} bytes>" in stage and new.config.decode()[:30] not in stage
    assert "systemd-run --no-block" in stage and "flatcar-infra-rollback.timer" in stage


def client_key(s: Sshd) -> str:
    return Path(f"{s.identity_file}.pub").read_text().strip()


def test_verify_finds_kept_files_gone_or_damaged(sshd: Sshd, tmp_path: Path) -> None:
    """The verification after the reboot checks every file recorded at staging: gone, changed
    although nothing wrote it since staging (the reset damaged it), or rewritten by the running
    system since (a log: a warning)."""
    from flatcar_infra.reprovision.procedure import _Expect, _Run

    d = desired(policy=Policy(keep_paths=("/var/lib/app",)))
    root = flatcar_root(tmp_path / "host", stamp=d.config_hash)
    app = root / "var/lib/app"
    app.mkdir(parents=True)
    files = {"same": b"s" * 10, "gone": b"g", "damaged": b"d" * 5, "log": b"l1"}
    for name, data in files.items():
        (app / name).write_bytes(data)
    record = tuple(
        sorted((f"/var/lib/app/{n}", f"{len(b)}:{hashlib.sha256(b).hexdigest()}") for n, b in files.items())
    )
    staged_at = 1_000_000_000.0
    (app / "gone").unlink()
    (app / "damaged").write_bytes(b"D" * 5)
    os.utime(app / "damaged", (staged_at - 100, staged_at - 100))  # not written since staging
    (app / "log").write_bytes(b"l2")  # written now, after the staging
    staging = Staging(d.config_hash, "boot-before", staged_at, "file", record)
    run = _Run(
        target(sshd),
        d,
        lambda *_a: None,
        root=str(root),
        previous=None,
        fallback_keys=(),
        platform_keys=(),
        source=None,
    )

    async def go() -> list[str]:
        async with await connect(target(sshd)) as s:
            v = await run.verify(s, _Expect.new(d), staging, None)
            await release_lock(s, run.me, root=str(root))
            return [*v.problems, *v.warnings]

    out = run_sync(go)
    assert "kept path /var/lib/app/gone is gone after the reset" in out
    assert "kept file /var/lib/app/damaged changed although nothing wrote it since staging" in out
    assert any(
        "1 kept file(s) were written by the running system since staging (e.g. /var/lib/app/log)" in x
        for x in out
    )
    assert not any("/var/lib/app/same" in x for x in out)
