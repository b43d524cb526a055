"""End to end on ONE test-bed VM, through the provider's real gRPC server and the CLI, in order.

Each test leaves the host on a known config for the next. Kept data (``DATA``) must stay
byte-identical through every scenario, rollbacks included. Faults are injected at exact points of a
running operation by watching its progress lines (``ProviderEngine.when`` for the provider, the
CLI's stderr for the CLI). The fault matrix in docs/reprovision-faults.md points at these tests.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import grpc
import pytest

from flatcar_infra.compiler.api import STAMP_PATH, CompiledConfig, compile_config
from flatcar_infra.manifest import build_manifest
from flatcar_infra.provider import ReprovisionProvider
from flatcar_infra.reprovision.policy import Policy
from flatcar_infra.ssh import fingerprint
from flatcar_infra.testbed.machines import VmFactory
from flatcar_infra.testbed.vm import Vm, VmSnapshot
from tests.reprovision.engine import ProviderEngine, State
from tests.reprovision.helpers import ignition

pytestmark = [pytest.mark.vm, pytest.mark.timeout(5400)]

DATA = os.urandom(300_000)
SLOW_VM: dict[str, Any] = {"reboot_timeout": 1200, "confirm_window": 900, "deadline": 3600}
"""Software emulation on a shared machine boots in 1-6 minutes: wide bounds where a scenario does
not test the bound itself (the defaults are for real machines)."""
ROOT = Path(__file__).resolve().parents[2]


def config(
    vm_key: str | None,
    version: str,
    files: dict[str, str] | None = None,
    *,
    spec: str = "3.3.0",
    extra: dict[str, Any] | None = None,
    units: list[dict[str, Any]] | None = None,
) -> CompiledConfig:
    doc = json.loads(
        ignition(files or {"/etc/app.conf": f"{version}\n"}, version=spec, units={"app.service": True})
    )
    if vm_key:
        doc["passwd"] = {"users": [{"name": "core", "sshAuthorizedKeys": [vm_key]}]}
    doc["storage"]["files"].append(
        {
            "path": "/etc/app/version",
            "mode": 0o644,
            "overwrite": True,
            "contents": {"source": f"data:,{version}"},
        }
    )
    doc["systemd"]["units"] += units or []
    for k, v in (extra or {}).items():
        doc.setdefault(k, {}).update(v)
    return compile_config(json.dumps(doc), filename=f"{version}.ign", stamp_config=True)


@dataclass
class World:
    vm: Vm
    factory: VmFactory
    engine: ProviderEngine
    key_text: str
    vm_key: str
    tmp: Path
    state: State | None = None
    configs: dict[str, CompiledConfig] = field(default_factory=dict)

    def inputs(self, c: CompiledConfig, **kw: Any) -> dict[str, Any]:
        pol = kw.pop("policy", {})
        base: dict[str, Any] = {
            "host": "127.0.0.1",
            "port": self.vm.spec.ssh_port,
            "user": "core",
            "private_key": self.key_text,
            "host_key": None,
            "config": c.canonical.decode(),
            "config_hash": c.hash,
            "manifest": build_manifest(c.ignition),
            "policy": Policy(
                **{
                    **SLOW_VM,
                    "keep_paths": ("/var/lib/app",),
                    "health_checks": ("test -f /etc/app/version",),
                    **pol,
                }
            ).to_dict(),
            "delivery": "file",
            "config_url": None,
        }
        base.update(kw)
        return base

    def up(self, c: CompiledConfig, **kw: Any) -> Any:
        step = self.engine.register(
            "machine", self.inputs(c, **kw), state=self.state, secret_inputs=("private_key",)
        )
        self.state = step.state
        return step

    def up_error(self, c: CompiledConfig, **kw: Any) -> str:
        with pytest.raises(grpc.RpcError) as exc:
            self.up(c, **kw)
        return exc.value.details() or ""  # type: ignore[attr-defined]

    def cli_args(self, c: CompiledConfig, *extra: str, name: str | None = None) -> list[str]:
        path = self.tmp / f"{name or c.hash[7:19]}.ign"
        # the config as a user writes it: the CLI compiles and stamps it itself (to the same hash)
        doc = json.loads(c.canonical)
        doc["storage"]["files"] = [f for f in doc["storage"]["files"] if f["path"] != STAMP_PATH]
        path.write_text(json.dumps(doc))
        return [
            "reprovision",
            "--host",
            "127.0.0.1",
            "--port",
            str(self.vm.spec.ssh_port),
            "--identity",
            str(self.vm.client_key.private_path),
            "--host-key",
            str(self.vm.host_key),
            "--config",
            str(path),
            "--keep-path",
            "/var/lib/app",
            *("--timeout", "1200", "--confirm-window", "900", "--deadline", "3600"),
            *extra,
        ]

    def cli(self, c: CompiledConfig, *extra: str) -> subprocess.Popen[str]:
        """The CLI as a user runs it: its own process (so it can be killed like one)."""
        creds = self.factory.bucket.credentials
        env = {
            **os.environ,
            "PYTHONPATH": str(ROOT),
            "AWS_ACCESS_KEY_ID": creds.access_key,
            "AWS_SECRET_ACCESS_KEY": creds.secret_key,
            "AWS_DEFAULT_REGION": "us-east-1",
        }
        return subprocess.Popen(
            [sys.executable, "-m", "flatcar_infra.cli.main", *self.cli_args(c, *extra)],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            env=env,
            cwd=str(ROOT),
        )

    def logged(self, needle: str, timeout: float = 30) -> bool:
        """The provider's log lines are drained by a thread: give it time on a busy machine."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if any(needle in ln for ln in self.engine.stderr_lines):
                return True
            time.sleep(0.2)
        return False

    def stamp(self) -> str:
        return self.sudo("cat /etc/flatcar-infra/config-hash").strip()

    def sudo(self, cmd: str) -> str:
        return self.vm.sudo(cmd).text

    def identity(self) -> dict[str, str]:
        """What a reprovision in place must keep: the machine-id and the SSH host keys."""
        return {
            "machine_id": self.sudo("cat /etc/machine-id"),
            "host_keys": self.sudo("sha256sum /etc/ssh/ssh_host_*"),
        }

    def data_intact(self) -> None:
        assert self.vm.read_file("/var/lib/app/data.bin") == DATA

    def nothing_staged(self) -> None:
        assert self.sudo("test -e /selective-os-reset && echo staged || echo clean").strip() == "clean"


EMERGENCY = 30
"""Seconds the stand-in's initramfs waits after a failed Ignition run before it reboots (Flatcar: 300)."""


@pytest.fixture(scope="module")
def world(
    vm_factory_module: VmFactory, vm_snapshot: VmSnapshot, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[World]:
    """A VM restored from the session's booted snapshot (no boot of its own): it runs the test
    bed's unstamped base config, so the first reprovision cannot roll back (nothing proves what
    the host runs) and is made with rollback off."""
    key = vm_factory_module.client_key
    vm = vm_factory_module.restore(vm_snapshot, "reprovision", emergency_timeout=EMERGENCY)
    with ProviderEngine(ReprovisionProvider()) as eng:
        eng.configure({})
        w = World(
            vm,
            vm_factory_module,
            eng,
            key.private_path.read_text(),
            key.public_line,
            tmp_path_factory.mktemp("e2e"),
        )
        yield w


def test_create_reprovisions_the_base_in_place_without_rollback(world: World) -> None:
    """The first `pulumi up`: the host runs an unstamped config, so nothing could roll a failure
    back; with rollback off it is reprovisioned in place, keeping data, host keys, machine-id."""
    vm = world.vm
    vm.sudo("mkdir -p /var/lib/app && cat > /var/lib/app/data.bin", input=DATA)
    before = {**world.identity(), "boot": vm.boot_id()}
    v1 = config(world.vm_key, "v1", {"/etc/app.conf": "v1\n", "/etc/v1-only": "old\n"})
    world.configs["v1"] = v1
    assert "cannot roll back" in world.up_error(v1)
    step = world.up(v1, policy={"rollback": False})
    outs = step.state.outputs
    assert step.op == "create" and outs["last_action"] == "reprovisioned" and outs["rebooted"] is True
    assert outs["applied_hash"] == v1.hash and outs["boot_id"] != before["boot"]
    assert outs["host_key"] == vm.host_key
    assert world.logged(f"host key captured on first use: {fingerprint(vm.host_key or '')}")
    assert world.key_text.strip() not in "".join(world.engine.stderr_lines)
    vm.wait_ssh()
    world.data_intact()
    assert world.sudo("cat /etc/machine-id") == before["machine_id"]
    assert world.sudo("sha256sum /etc/ssh/ssh_host_*") == before["host_keys"]
    assert vm.read_file("/etc/flatcar-infra-testbed/base", missing_ok=True) is None  # the base is gone
    # the kept record lists the host keys as flatcar-reset sees them (ROOT's own /etc, the overlay's
    # upper dir) and the data
    kept = world.sudo("tr '\\0' '\\n' < /var/lib/flatcar-infra/kept.list | cut -f4")
    assert "/etc/ssh/ssh_host_ed25519_key" in kept and "/var/lib/app/data.bin" in kept
    assert vm.read_file("/var/lib/flatcar-infra/applied.ign") == v1.canonical  # the next rollback target
    # no dead-man switch without a rollback
    assert world.sudo("ls /etc/systemd/system/ | grep -c flatcar-infra; true").strip() == "0"


def test_refused_before_anything_changes(world: World, tmp_path: Path) -> None:
    """Wrong host key, a spec the host's Ignition does not know, a Python-only keep regex, a config
    that would lock the operator out, a remote file that 404s from the host: each refused with
    its reason, through the provider and the CLI, and the host keeps its boot and stages nothing."""
    from tests.support.sshd import keygen

    vm = world.vm
    boot = vm.boot_id()
    state = world.state
    assert state is not None
    c2 = config(world.vm_key, "v2")
    msg = world.up_error(c2, host_key=keygen(tmp_path / "k"))
    assert "does not match the pinned key" in msg
    world.state = state
    msg = world.up_error(config(world.vm_key, "v34", spec="3.4.0"))
    assert "accepts specs up to 3.3.0" in msg and "host state: the host was not changed" in msg
    # a keep path only Python's re understands: refused by name when the inputs are checked
    bad = world.inputs(c2)
    bad["policy"] = {**bad["policy"], "keep_paths": ["/var/lib/app\\d+"]}  # as a stack config would give it
    step = world.engine.register("machine", bad, state=state)
    assert step.op == "check-failed" and "[0-9]" in step.check_failures[0][1]
    p = world.cli(c2, "--keep-path", "/var/lib/app\\d+")
    _, err = p.communicate(timeout=120)
    assert p.returncode == 2 and "'\\d' is Python-only" in err
    # the config does not authorize the key we log in with, and the VM installs none from metadata
    locked_out = config(None, "v2-no-key")
    msg = world.up_error(locked_out)
    assert "would lock you out" in msg and "sshAuthorizedKeys" in msg
    p = world.cli(locked_out)
    _, err = p.communicate(timeout=300)
    assert p.returncode == 1 and "would lock you out" in err and "the host was not changed" in err
    # a remote file Ignition would fetch at boot: fetched from the host now, and it 404s
    url = world.factory.upload("missing-probe", b"x", add_key=False)
    missing = url.rsplit("/", 2)[0] + "/nope/missing.txt"
    gone = config(
        world.vm_key,
        "v2-remote",
        extra={
            "storage": {
                "files": [
                    {
                        "path": "/etc/remote.txt",
                        "overwrite": True,
                        "mode": 0o644,
                        "contents": {"source": missing},
                    }
                ]
            }
        },
    )
    msg = world.up_error(gone)
    assert "fetching $.storage.files" in msg and ("HTTP 404" in msg or "HTTP 403" in msg), msg
    assert vm.boot_id() == boot
    world.nothing_staged()
    assert world.stamp() == world.configs["v1"].hash
    world.state = state


def test_v1_to_v2_in_place(world: World) -> None:
    vm = world.vm
    before = {**world.identity(), "boot": vm.boot_id()}
    c2 = config(world.vm_key, "v2", {"/etc/app.conf": "v2\n", "/etc/v2-only": "new\n"})
    world.configs["v2"] = c2
    step = world.up(c2)
    outs = step.state.outputs
    assert step.op == "update" and outs["rebooted"] is True and outs["last_action"] == "reprovisioned"
    assert outs["applied_hash"] == c2.hash and outs["boot_id"] != before["boot"]
    assert set(outs["phases"]) == {"preflight", "stage", "reboot", "verify", "confirm"}
    vm.wait_ssh()  # same pinned key, same forwarded port
    world.data_intact()
    assert world.sudo("cat /etc/machine-id") == before["machine_id"]
    assert world.sudo("sha256sum /etc/ssh/ssh_host_*") == before["host_keys"]
    assert vm.read_file("/etc/v1-only", missing_ok=True) is None
    assert vm.read_file("/etc/v2-only") == b"new\n" and vm.read_file("/etc/app.conf") == b"v2\n"
    # the kept record lists the host keys as flatcar-reset sees them (ROOT's own /etc)
    kept = world.sudo("tr '\\0' '\\n' < /var/lib/flatcar-infra/kept.list | cut -f4")
    assert "/etc/ssh/ssh_host_ed25519_key" in kept and "/var/lib/app/data.bin" in kept
    # confirmed: the dead-man switch is gone and the new config is the next rollback target
    assert world.sudo("ls /etc/systemd/system/flatcar-infra-rollback.timer 2>/dev/null; true").strip() == ""
    assert vm.read_file("/var/lib/flatcar-infra/applied.ign") == c2.canonical
    assert outs["host_key"] == vm.host_key


def test_idempotent_rerun_does_not_reboot(world: World) -> None:
    assert world.state is not None
    boot = world.vm.boot_id()
    assert world.up(world.configs["v2"]).op == "same"
    # a rerun of the update itself (as after an interrupted `pulumi up`): verify only
    outs = world.engine.update(
        world.state.urn,
        world.state.id,
        world.state.outputs,
        world.engine.with_provider(world.inputs(world.configs["v2"])),
    )
    assert outs["rebooted"] is False and outs["last_action"] == "verified" and outs["boot_id"] == boot
    assert world.vm.boot_id() == boot


def test_failing_health_check_rolls_back_through_the_cli(world: World) -> None:
    """Verification passes, a health check fails, SSH works: the previous config is re-applied
    in place and verified, exit 1 saying so. (The same through the provider server: the Fleet's
    rollout in tests/vm/test_fleet_rollout.py, whose state then says the host runs the old hash.)"""
    boot = world.vm.boot_id()
    c3 = config(world.vm_key, "v3")
    p = world.cli(c3, "--health", "test -f /etc/app/version", "--health", "test -f /etc/app/does-not-exist")
    _, err = p.communicate(timeout=1800)
    assert p.returncode == 1, err
    said = " ".join(err.split())  # the terminal output may wrap
    assert "rolled back" in said and "health check #2 exited 1" in said
    assert f"runs the previous config {world.configs['v2'].hash[:19]}" in said
    world.vm.wait_ssh()
    assert world.stamp() == world.configs["v2"].hash and world.vm.boot_id() != boot
    world.data_intact()
    record = json.loads(world.vm.read_file("/var/lib/flatcar-infra/rollback.json") or b"{}")
    assert (
        record["by"] == "procedure" and record["from"] == c3.hash and record["to"] == world.configs["v2"].hash
    )


def test_config_that_masks_sshd_rolls_back_by_itself(world: World) -> None:
    """No SSH on the new boot: nothing can log in to roll back, so the dead-man switch installed
    with the staging does, within the confirm window; the run reports it and fails."""
    window = 30  # after the basic system is up (not the boot): SSH never answers on this one anyway
    masked = config(
        world.vm_key,
        "v-nossh",
        units=[{"name": "ssh.service", "mask": True}, {"name": "ssh.socket", "mask": True}],
    )
    old_state = world.state
    assert old_state is not None
    t0 = time.monotonic()
    msg = world.up_error(masked, policy={"confirm_window": window, "reboot_timeout": 400})
    elapsed = time.monotonic() - t0
    assert "rolled back" in msg and "dead-man switch" in msg, msg
    # a failed update keeps the old state: it says what the host runs; the next up retries
    assert world.state is old_state and old_state.outputs["applied_hash"] == world.configs["v2"].hash
    world.vm.wait_ssh()
    assert world.stamp() == world.configs["v2"].hash
    world.data_intact()
    record = json.loads(world.vm.read_file("/var/lib/flatcar-infra/rollback.json") or b"{}")
    assert record["by"] == "deadman" and record["from"] == masked.hash
    # staging + reboot + the window + the rollback's reboot, nothing like the old 600 s wait
    assert elapsed < 400 + window + 400 + 120, elapsed  # the bounds, not an open-ended wait


def test_two_at_once_one_is_refused_by_the_lock(world: World) -> None:
    """The CLI takes the host's lock in its preflight; a provider update arriving while it holds
    it is refused (the host is not changed by it); the CLI's run converges."""
    c4 = config(world.vm_key, "v4")
    p = world.cli(c4)
    assert p.stderr is not None
    lines = []
    for line in p.stderr:
        lines.append(line)
        if "phases: preflight" in line:  # the lock is taken, the reset not staged yet
            break
    msg = world.up_error(c4)
    assert "locked by another reprovision" in msg and "the host was not changed" in msg, msg
    _, rest = p.communicate(timeout=3600)
    assert p.returncode == 0, "".join(lines) + rest
    world.vm.wait_ssh()
    assert world.stamp() == c4.hash
    world.data_intact()
    world.configs["v4"] = c4
    # the provider's state catches up: verify only
    step = world.up(c4)
    assert step.state.outputs["applied_hash"] == c4.hash and step.state.outputs["rebooted"] is False


def test_killed_while_staging_then_rerun_converges(world: World) -> None:
    c5 = config(world.vm_key, "v5")
    p = world.cli(c5)
    assert p.stderr is not None
    for line in p.stderr:
        if line.startswith("[stage"):
            os.kill(p.pid, signal.SIGKILL)
            break
    p.wait(60)
    assert p.returncode == -signal.SIGKILL
    time.sleep(10)  # a reboot the script may have scheduled starts within 2 s
    world.vm.wait_ssh()
    step = world.up(c5)  # whatever the kill left (a stale lock, a staged reset, a reboot): converge
    assert step.state.outputs["applied_hash"] == c5.hash
    world.vm.wait_ssh()
    assert world.stamp() == c5.hash
    world.data_intact()
    world.configs["v5"] = c5


def test_killed_while_waiting_for_the_reboot_then_rerun_converges(world: World) -> None:
    c6 = config(world.vm_key, "v6")
    state = world.state
    assert state is not None
    boot = world.vm.boot_id()
    world.engine.when(
        "reboot", "waiting for the new boot", action=lambda: os.kill(world.engine.proc.pid, signal.SIGKILL)
    )
    with pytest.raises(grpc.RpcError):
        world.up(c6)
    world.engine.close()
    world.engine = ProviderEngine(ReprovisionProvider())  # `pulumi up` again: a new provider process
    world.engine.configure({})
    world.state = state  # the interrupted update never completed: the old state stands
    world.vm.wait_boot_id_change(boot)  # the reboot it was waiting for goes on without it
    step = world.up(c6)
    outs = step.state.outputs
    assert outs["applied_hash"] == c6.hash
    world.vm.wait_ssh()
    assert (
        world.stamp() == c6.hash
        and world.sudo("ls /etc/systemd/system/ | grep -c flatcar-infra; true").strip() == "0"
    )
    world.data_intact()
    world.configs["v6"] = c6


def test_pointer_delivery_refuses_an_object_without_the_new_config(world: World) -> None:
    """Back to the pointer (the file delivery's /oem/config.ign removed, as a switch of delivery
    does): the object the user-data pointer names still serves the old config, so the preflight
    refuses before anything changes. (A pointer reprovision that succeeds: tests/stacks.)"""
    vm = world.vm
    vm.sudo("rm -f /oem/config.ign")
    c7 = config(world.vm_key, "v7")
    stale = world.factory.upload("reprovision", world.configs["v6"].canonical, add_key=False)
    boot = vm.boot_id()
    msg = world.up_error(c7, delivery="pointer", config_url=stale)
    assert "does not hold the new config yet" in msg
    assert vm.boot_id() == boot and world.stamp() == world.configs["v6"].hash
    world.nothing_staged()


def test_cli_dry_run_shows_the_diff_the_previews_and_the_commands(world: World) -> None:
    vm = world.vm
    boot = vm.boot_id()
    c8 = config(world.vm_key, "v8", {"/etc/app.conf": "v8\n"})
    p = world.cli(c8, "--dry-run", "--json")
    out, err = p.communicate(timeout=300)
    assert p.returncode == 0, err
    data = json.loads(out)
    assert data["refused"] == [] and data["phases"] == ["preflight", "stage", "reboot", "verify", "confirm"]
    assert "~ file:/etc/app.conf" in data["changes"]
    assert "/var/lib/app/data.bin" in data["preview_keep"]
    assert "/etc/app.conf" in data["preview_delete"]
    stage = next(c["command"] for c in data["commands"] if c["what"] == "stage + reboot")
    assert "flatcar-reset --keep-machine-id -F /var/lib/flatcar-infra/staged-config.ign" in stage
    assert "<the new config:" in stage and "--- stage + reboot" in err
    assert vm.boot_id() == boot
    world.nothing_staged()


def test_ignition_failure_at_boot_with_pointer_delivery_rolls_back(world: World) -> None:
    """Ignition fails in the initramfs (a file it must fetch vanished after the preflight fetched
    it): nothing answers SSH. The previous config is restored at the pointer's source, the
    initramfs' emergency reboot runs Ignition again with it, and the host is back on the old hash."""
    bucket = world.factory.bucket
    previous = world.configs["v6"]  # what the host runs (no /oem/config.ign: the pointer rules)
    file_url = world.factory.upload("vanishing", b"payload", add_key=False)
    c9 = config(
        world.vm_key,
        "v9",
        extra={
            "storage": {
                "files": [
                    {
                        "path": "/etc/remote.txt",
                        "overwrite": True,
                        "mode": 0o644,
                        "contents": {"source": file_url},
                    }
                ]
            }
        },
    )
    url = world.factory.upload("reprovision", c9.canonical, add_key=False)
    key = world.factory.object_key("reprovision")
    mark = world.vm.serial_log.stat().st_size
    p = world.cli(
        c9,
        "--delivery",
        "pointer",
        "--config-url",
        url,
        "--config-source",
        f"s3://{bucket.bucket}/{key}",
        "--source-endpoint",
        bucket.endpoint,
        "--source-public",
        "--timeout",
        "150",
    )
    assert p.stderr is not None
    lines = []
    for line in p.stderr:
        lines.append(line)
        if line.startswith("[stage") and " done" in line:
            bucket.client().delete_object(Bucket=bucket.bucket, Key=world.factory.object_key("vanishing"))
            break
    _, rest = p.communicate(timeout=3600)
    err = "".join(lines) + rest
    assert p.returncode == 1, err
    assert "rolled back" in err and "restored" in err
    world.vm.wait_ssh(expect_emergency_reboot=True)  # the failed boot's prompt is on the console
    # the stand-in's initramfs as Flatcar's: Ignition's failure and the emergency prompt on the
    # console, a reboot after the (shortened) timeout with the first-boot flag still set
    console = world.vm.serial_log.read_bytes()[mark:].decode(errors="replace")
    assert "Ignition has failed" in console and f"0 minutes {EMERGENCY} seconds for reboot" in console
    assert "Rebooting." in console and console.count("Linux version") >= 2
    assert world.stamp() == previous.hash
    assert not world.vm.run("sudo test -e /boot/flatcar/first_boot", check=False).ok
    assert bucket.get(key) == previous.canonical  # the source serves the previous config again
    world.data_intact()
