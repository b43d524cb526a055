"""End to end on ONE test-bed VM, through the provider's real gRPC server, in order:

create → verified; refusals (wrong host key, spec 3.4.0) change nothing; v1 → v2 in place (kept
data byte-identical, host key, machine-id and port unchanged, v1-only files gone); an idempotent
rerun does not reboot; a foreign /oem/config.ign with pointer delivery is refused; SSH cut after
staging and again while waiting → a rerun converges; the host never returns (VM paused) → a clear
error within the timeout, state keeps the old applied hash, and a rerun converges.

One VM boot plus three reprovision reboots. Faults are injected at exact points of a running
provider operation by watching its progress lines (``ProviderEngine.when``).
"""

from __future__ import annotations

import json
import multiprocessing
import os
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import grpc
import pytest

from flatcar_infra.compiler.api import CompiledConfig, compile_config
from flatcar_infra.manifest import build_manifest
from flatcar_infra.provider import ReprovisionProvider
from flatcar_infra.reprovision.policy import Policy
from flatcar_infra.ssh import SshTarget
from flatcar_infra.testbed.machines import VmFactory
from flatcar_infra.testbed.vm import Vm
from tests.reprovision.engine import ProviderEngine, State
from tests.reprovision.helpers import ignition

pytestmark = [pytest.mark.vm, pytest.mark.timeout(3600)]

DATA = os.urandom(300_000)


def config(vm_key: str, version: str, files: dict[str, str], spec: str = "3.3.0") -> CompiledConfig:
    doc = json.loads(ignition(files, version=spec, units={"app.service": True}))
    doc["passwd"] = {"users": [{"name": "core", "sshAuthorizedKeys": [vm_key]}]}
    doc["storage"]["files"].append({"path": "/etc/app/version", "mode": 0o644, "overwrite": True,
                                    "contents": {"source": f"data:,{version}"}})
    return compile_config(json.dumps(doc), filename=f"{version}.ign", stamp_config=True)


def interrupted_run(target: SshTarget, desired: Any, qmp_socket: str, q: Any) -> None:
    """(child process) the procedure, with the network cut right after staging."""
    from flatcar_infra.errors import UserError
    from flatcar_infra.reprovision.procedure import ensure
    from flatcar_infra.ssh import run_sync
    from flatcar_infra.testbed.qmp import qmp_command
    from flatcar_infra.testbed.vm import NIC_ID

    def cut(phase: str, message: str, _elapsed: float | None = None) -> None:
        if phase == "stage" and message == "done":
            qmp_command(Path(qmp_socket), "set_link", {"name": NIC_ID, "up": False})

    try:
        run_sync(lambda: ensure(target, desired, report=cut))
        q.put("no error")
    except UserError as exc:
        q.put(f"{exc}\n{exc.advice or ''}")


@dataclass
class World:
    vm: Vm
    engine: ProviderEngine
    key_text: str
    vm_key: str
    state: State | None = None
    facts: dict[str, Any] = field(default_factory=dict)

    def inputs(self, c: CompiledConfig, **kw: Any) -> dict[str, Any]:
        pol = kw.pop("policy", {})
        base: dict[str, Any] = {
            "host": "127.0.0.1", "port": self.vm.spec.ssh_port, "user": "core", "private_key": self.key_text,
            "host_key": None, "config": c.canonical.decode(), "config_hash": c.hash,
            "manifest": build_manifest(c.ignition),
            "policy": Policy(keep_paths=("/var/lib/app",), health_checks=("test -f /etc/app/version",),
                             **pol).to_dict(),
            "delivery": "file", "config_url": None}
        base.update(kw)
        return base

    def up(self, c: CompiledConfig, **kw: Any) -> Any:
        step = self.engine.register("machine", self.inputs(c, **kw), state=self.state,
                                    secret_inputs=("private_key",))
        self.state = step.state
        return step

    def sudo(self, cmd: str) -> str:
        return self.vm.sudo(cmd).text


@pytest.fixture(scope="module")
def world(vm_factory_module: VmFactory) -> Iterator[World]:
    key = vm_factory_module.client_key
    v1 = config(key.public_line, "v1", {"/etc/app.conf": "v1\n", "/etc/v1-only": "old\n"})
    vm = vm_factory_module.boot("reprovision", config=v1.canonical, add_key=False)
    with ProviderEngine(ReprovisionProvider()) as eng:
        eng.configure({})
        w = World(vm, eng, key.private_path.read_text(), key.public_line)
        w.facts["v1"] = v1
        yield w


def test_create_captures_the_key_and_verifies(world: World) -> None:
    boot = world.vm.boot_id()
    step = world.up(world.facts["v1"])
    outs = step.state.outputs
    assert step.op == "create" and outs["last_action"] == "verified" and outs["rebooted"] is False
    assert outs["applied_hash"] == world.facts["v1"].hash
    assert outs["host_key"] == world.vm.host_key and outs["boot_id"] == boot
    assert world.key_text.strip() not in "".join(world.engine.stderr_lines)


def test_wrong_host_key_and_too_new_spec_are_refused_before_any_change(world: World, tmp_path: Any) -> None:
    from tests.support.sshd import keygen

    boot = world.vm.boot_id()
    c2 = config(world.vm_key, "v2", {"/etc/app.conf": "v2\n"})
    with pytest.raises(grpc.RpcError) as exc:
        world.engine.update(world.state.urn, world.state.id, world.state.outputs,  # type: ignore[union-attr]
                            world.engine.with_provider(world.inputs(c2, host_key=keygen(tmp_path / "k"))))
    assert "does not match the pinned key" in (exc.value.details() or "")  # type: ignore[attr-defined]
    c34 = config(world.vm_key, "v34", {"/etc/app.conf": "x\n"}, spec="3.4.0")
    with pytest.raises(grpc.RpcError) as exc:
        world.engine.update(world.state.urn, world.state.id, world.state.outputs,  # type: ignore[union-attr]
                            world.engine.with_provider(world.inputs(c34)))
    msg = exc.value.details() or ""  # type: ignore[attr-defined]
    assert "accepts specs up to 3.3.0" in msg and "host state: the host was not changed" in msg
    assert world.vm.boot_id() == boot
    assert world.sudo("test -e /selective-os-reset && echo staged || echo clean").strip() == "clean"


def test_v1_to_v2_in_place(world: World) -> None:
    vm = world.vm
    vm.sudo("mkdir -p /var/lib/app && cat > /var/lib/app/data.bin", input=DATA)
    before = {
        "machine_id": world.sudo("cat /etc/machine-id"),
        "host_keys": world.sudo("sha256sum /etc/ssh/ssh_host_*"),
        "boot": vm.boot_id(),
    }
    c2 = config(world.vm_key, "v2", {"/etc/app.conf": "v2\n", "/etc/v2-only": "new\n"})
    world.facts["v2"] = c2
    step = world.up(c2)
    outs = step.state.outputs
    assert step.op == "update" and outs["rebooted"] is True and outs["last_action"] == "reprovisioned"
    assert outs["applied_hash"] == c2.hash and outs["boot_id"] != before["boot"]
    assert set(outs["phases"]) == {"preflight", "stage", "reboot", "verify"}
    vm.wait_ssh()  # same pinned key, same forwarded port
    assert vm.read_file("/var/lib/app/data.bin") == DATA
    assert world.sudo("cat /etc/machine-id") == before["machine_id"]
    assert world.sudo("sha256sum /etc/ssh/ssh_host_*") == before["host_keys"]
    assert vm.read_file("/etc/v1-only", missing_ok=True) is None
    assert vm.read_file("/etc/v2-only") == b"new\n" and vm.read_file("/etc/app.conf") == b"v2\n"
    assert outs["host_key"] == vm.host_key


def test_idempotent_rerun_does_not_reboot(world: World) -> None:
    assert world.state is not None
    boot = world.vm.boot_id()
    same = world.up(world.facts["v2"])
    assert same.op == "same"
    # a rerun of the update itself (as after an interrupted `pulumi up`): verify only
    outs = world.engine.update(world.state.urn, world.state.id, world.state.outputs,
                               world.engine.with_provider(world.inputs(world.facts["v2"])))
    assert outs["rebooted"] is False and outs["last_action"] == "verified" and outs["boot_id"] == boot
    assert world.vm.boot_id() == boot


def test_foreign_oem_config_with_pointer_delivery_is_refused(world: World) -> None:
    c3 = config(world.vm_key, "v3", {"/etc/app.conf": "v3\n"})
    with pytest.raises(grpc.RpcError) as exc:
        world.up(c3, delivery="pointer")
    msg = exc.value.details() or ""  # type: ignore[attr-defined]
    assert "/oem/config.ign exists" in msg and "overrides the cloud user-data pointer" in msg
    assert world.state is not None and world.state.outputs["applied_hash"] == world.facts["v2"].hash


def test_ssh_cut_before_reboot_and_while_waiting_then_rerun_converges(world: World) -> None:
    vm = world.vm
    c3 = config(world.vm_key, "v3", {"/etc/app.conf": "v3\n"})
    boot = vm.boot_id()
    # The cut must land exactly between staging and the reboot command, and the interrupted run
    # must end the way a killed `pulumi up` does (its process gone, its lock left behind): run
    # the provider's procedure in a child process whose synchronous progress callback downs the
    # link before the next command is sent.
    from flatcar_infra.reprovision.plan import Desired

    inputs = world.inputs(c3, policy={"reboot_timeout": 60})
    desired = Desired.from_config(c3.canonical, c3.hash, Policy.from_dict(inputs["policy"]))
    target = SshTarget("127.0.0.1", vm.spec.ssh_port, "core", private_key=world.key_text,
                       host_key=vm.host_key)
    ctx = multiprocessing.get_context("spawn")
    q: Any = ctx.Queue()
    child = ctx.Process(target=interrupted_run, args=(target, desired, str(vm.spec.qmp_socket), q))
    child.start()
    msg = q.get(timeout=600)
    child.join(60)
    vm.link_up()
    assert "a reset is staged on the host" in msg and "run again" in msg
    vm.wait_ssh()
    assert vm.boot_id() == boot
    assert world.sudo("test -e /selective-os-reset && echo staged").strip() == "staged"
    assert world.state is not None and world.state.outputs["applied_hash"] == world.facts["v2"].hash

    # rerun: the staged reset is cancelled and staged again; the link dies while it waits
    world.engine.when("reboot", "waiting for the new boot (", action=vm.link_down)
    with pytest.raises(grpc.RpcError) as exc:
        world.up(c3, policy={"reboot_timeout": 45})
    vm.link_up()
    assert "did not come back" in (exc.value.details() or "")  # type: ignore[attr-defined]
    vm.wait_boot_id_change(boot, 600)  # the reboot was issued before the cut: let it finish

    step = world.up(c3, policy={"reboot_timeout": 600})
    outs = step.state.outputs
    assert outs["applied_hash"] == c3.hash
    vm.wait_ssh()
    assert vm.boot_id() != boot and vm.read_file("/var/lib/app/data.bin") == DATA
    world.facts["v3"] = c3


def test_host_never_returns_then_recovers(world: World) -> None:
    vm = world.vm
    c4 = config(world.vm_key, "v4", {"/etc/app.conf": "v4\n"})
    old_state = world.state
    assert old_state is not None
    world.engine.when("reboot", "waiting for the new boot (", action=vm.pause)
    with pytest.raises(grpc.RpcError) as exc:
        world.up(c4, policy={"reboot_timeout": 40})
    msg = exc.value.details() or ""  # type: ignore[attr-defined]
    # (if the reboot command's answer was lost too, the message says the reboot is unknown)
    assert "did not come back" in msg and "40s" in msg and "host state:" in msg
    assert world.state is old_state and old_state.outputs["applied_hash"] == world.facts["v3"].hash
    vm.resume()
    vm.wait_boot_id_change(old_state.outputs["boot_id"], 600)  # the reboot it was told to do
    step = world.up(c4)
    assert step.state.outputs["applied_hash"] == c4.hash
    refreshed = world.engine.refresh(step.state)
    assert refreshed.outputs["applied_hash"] == c4.hash


def test_back_to_the_pointer_delivery(world: World, vm_factory_module: VmFactory) -> None:
    """Remove the file delivery's /oem/config.ign; upload the next config to the hosted object the
    user-data pointer names; reprovision with pointer delivery (no -F, no -U)."""
    vm = world.vm
    vm.wait_ssh()
    vm.sudo("rm -f /oem/config.ign")
    c5 = config(world.vm_key, "v5", {"/etc/app.conf": "v5\n"})
    stale = world.inputs(c5, delivery="pointer",
                         config_url=vm_factory_module.upload("reprovision", world.facts["v3"].canonical,
                                                             add_key=False))
    boot = vm.boot_id()
    with pytest.raises(grpc.RpcError) as exc:  # the object still holds an older config
        world.engine.update(world.state.urn, world.state.id, world.state.outputs,  # type: ignore[union-attr]
                            world.engine.with_provider(stale))
    assert "does not hold the new config yet" in (exc.value.details() or "")  # type: ignore[attr-defined]
    assert vm.boot_id() == boot
    url = vm_factory_module.upload("reprovision", c5.canonical, add_key=False)
    step = world.up(c5, delivery="pointer", config_url=url)
    assert step.state.outputs["applied_hash"] == c5.hash and step.state.outputs["rebooted"] is True
    vm.wait_ssh()
    assert vm.read_file("/oem/config.ign", missing_ok=True) is None
    assert vm.read_file("/etc/app.conf") == b"v5\n" and vm.read_file("/var/lib/app/data.bin") == DATA


def test_cli_dry_run_shows_the_diff_and_the_previews(world: World, tmp_path: Any,
                                                     monkeypatch: pytest.MonkeyPatch,
                                                     capsys: pytest.CaptureFixture[str]) -> None:
    from flatcar_infra.cli import main as cli_main

    vm = world.vm
    doc = json.loads(ignition({"/etc/app.conf": "v6\n"}, units={"app.service": True}))
    doc["passwd"] = {"users": [{"name": "core", "sshAuthorizedKeys": [world.vm_key]}]}
    cfg = tmp_path / "v6.ign"
    cfg.write_text(json.dumps(doc))
    vm.wait_ssh()
    boot = vm.boot_id()
    code = cli_main.main(["reprovision", "--host", "127.0.0.1", "--port", str(vm.spec.ssh_port),
                          "--identity", str(vm.client_key.private_path), "--host-key", str(vm.host_key),
                          "--config", str(cfg), "--keep-path", "/var/lib/app", "--dry-run", "--json"])
    out, err = capsys.readouterr()
    assert code == 0, err
    data = json.loads(out)
    assert data["refused"] == [] and data["phases"] == ["preflight", "stage", "reboot", "verify"]
    assert "~ file:/etc/app.conf" in data["changes"] and "- file:/etc/app/version" in data["changes"]
    assert "/var/lib/app/data.bin" in data["preview_keep"]
    assert "/etc/app.conf" in data["preview_delete"]
    assert vm.boot_id() == boot
    assert world.sudo("test -e /selective-os-reset && echo staged || echo clean").strip() == "clean"
