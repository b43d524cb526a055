"""A fleet rollout on THREE test-bed VMs, max_unavailable 1, the health check failing on the second:
first through ``flatcar-infra rollout``, then through the Pulumi ``Fleet`` under the test engine
(the real provider server), then a rerun that resumes.

Expected each time: host 1 on the new hash; host 2 rolled back to its old hash by the procedure's
automatic rollback; host 3 not started (same boot, old hash); exit 1 / a failed deployment; no
two hosts' [started_at, finished_at] overlap. The health check fails on host 2 only, and only for the
versions listed in its (kept) /var/lib/app/bad-versions.

One boot (saved and resumed three times) and 5 reprovision reboots (more with rollback).
"""

from __future__ import annotations

import itertools
import json
from collections.abc import Iterator
from dataclasses import dataclass, fields
from datetime import datetime
from pathlib import Path
from typing import Any

import pytest

from flatcar_infra.cli import main as cli_main
from flatcar_infra.compiler.api import CompiledConfig, compile_config
from flatcar_infra.reprovision.policy import Policy
from flatcar_infra.testbed.machines import VmFactory
from flatcar_infra.testbed.vm import Vm
from tests.reprovision.engine import Stack, deploy

pytestmark = [pytest.mark.vm, pytest.mark.timeout(3600)]

NAMES = ("fleet-a", "fleet-b", "fleet-c")
HEALTH = 'v=$(cat /etc/app/version) && ! grep -qx "$v" /var/lib/app/bad-versions 2>/dev/null'
ROLLBACK = any("rollback" in f.name for f in fields(Policy))
"""Whether the procedure rolls back by itself (the reprovision part adds it to ``Policy``)."""


def doc(version: str, key: str | None) -> str:
    d: dict[str, Any] = {
        "ignition": {"version": "3.3.0"},
        "storage": {
            "files": [
                {
                    "path": "/etc/app/version",
                    "mode": 0o644,
                    "overwrite": True,
                    "contents": {"source": f"data:,{version}"},
                }
            ]
        },
    }
    if key:  # the CLI applies the file as it is: it must authorize the operator's key itself
        d["passwd"] = {"users": [{"name": "core", "sshAuthorizedKeys": [key]}]}
    return json.dumps(d)


def compiled(version: str, key: str) -> CompiledConfig:
    return compile_config(doc(version, key), filename=f"{version}.ign", stamp_config=True)


@dataclass
class Fleet3:
    vms: list[Vm]
    factory: VmFactory
    hashes: dict[str, str]
    v1: bytes  # the exact config the hosts first booted (through the pointer): no host has a copy

    def stamp(self, vm: Vm) -> str:
        vm.close_ssh()  # a session cached before a reboot is gone
        return vm.sudo("cat /etc/flatcar-infra/config-hash").text.strip()

    @staticmethod
    def boot(vm: Vm) -> str:
        vm.close_ssh()
        return vm.boot_id()


@pytest.fixture(scope="module")
def fleet(vm_factory_module: VmFactory) -> Iterator[Fleet3]:
    key = vm_factory_module.client_key.public_line
    v1 = compiled("v1", key)
    # one boot, saved, resumed three times (a boot under software emulation takes minutes)
    base = vm_factory_module.boot("fleet-base", config=v1.canonical, add_key=False, timeout=900)
    snap = vm_factory_module.snapshot(base, resume=False)
    vms = [vm_factory_module.restore(snap, n) for n in NAMES]
    for vm in vms:
        vm.wait_ssh(300)
    vms[1].sudo("mkdir -p /var/lib/app && printf 'v2\\nv3\\n' > /var/lib/app/bad-versions")
    yield Fleet3(vms, vm_factory_module, {"v1": v1.hash}, v1.canonical)


def _ts(value: str | None) -> datetime:
    assert value is not None
    return datetime.fromisoformat(value)


def assert_one_at_a_time(hosts: list[dict[str, Any]]) -> None:
    spans = sorted((_ts(h["started_at"]), _ts(h["finished_at"])) for h in hosts if h.get("started_at"))
    for (_, end), (start, _) in itertools.pairwise(spans):
        assert end <= start, spans


def assert_second_host(f: Fleet3, host: dict[str, Any], new: str, old: str) -> None:
    vm = f.vms[1]
    if ROLLBACK:
        assert host["result"] == "rolled-back" and host["applied_hash"] == old
        assert f.stamp(vm) == old
    else:
        assert host["result"] == "failed", host
        assert f.stamp(vm) == new  # left on the new config whose health check failed
    assert "health check" in (host.get("message") or "")


def test_cli_halts_after_the_second_host(
    fleet: Fleet3, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    key = fleet.factory.client_key
    v2 = compiled("v2", key.public_line)
    fleet.hashes["v2"] = v2.hash
    (tmp_path / "v2.ign").write_text(doc("v2", key.public_line))
    # what the fleet runs now: booted through the pointer, no host holds a copy to roll back to
    (tmp_path / "v1.ign").write_bytes(fleet.v1)
    inv = tmp_path / "inventory.yaml"
    inv.write_text(
        "hosts:\n"
        + "".join(
            f"  - name: {n}\n    host: 127.0.0.1\n    port: {vm.spec.ssh_port}\n    user: core\n"
            f'    identity: {key.private_path}\n    host_key: "{vm.host_key}"\n'
            for n, vm in zip(NAMES, fleet.vms, strict=True)
        )
    )
    boot_c = fleet.boot(fleet.vms[2])
    code = cli_main.main(
        [
            "rollout",
            "--inventory",
            str(inv),
            "--config",
            str(tmp_path / "v2.ign"),
            "--max-unavailable",
            "1",
            "--keep-path",
            "/var/lib/app",
            "--health",
            HEALTH,
            "--timeout",
            "900",
            "--previous-config",
            str(tmp_path / "v1.ign"),
            "--json",
        ]
    )
    out, err = capsys.readouterr()
    assert code == 1, err
    data = json.loads(out)
    hosts = {h["name"]: h for h in data["hosts"]}
    assert data["result"] == "halted"
    a, b, c = (hosts[n] for n in NAMES)
    assert a["result"] == "reprovisioned" and a["applied_hash"] == v2.hash == fleet.stamp(fleet.vms[0])
    assert_second_host(fleet, b, v2.hash, fleet.hashes["v1"])
    assert c["result"] == "not-started" and c["applied_hash"] == fleet.hashes["v1"]
    assert fleet.boot(fleet.vms[2]) == boot_c and fleet.stamp(fleet.vms[2]) == fleet.hashes["v1"]
    assert_one_at_a_time(list(hosts.values()))
    assert "[wave 2/3] fleet-b" in err and "fleet-b verify" in err


def fleet_program(f: Fleet3, version: str, max_unavailable: int) -> Any:
    from flatcar_infra.components import (
        ExistingMachineArgs,
        Fleet,
        FleetArgs,
        RolloutPolicy,
        SshAccess,
        flatcar_config,
    )

    key = f.factory.client_key.private_path.read_text()

    def program() -> None:
        machines = {
            n: ExistingMachineArgs(
                config=flatcar_config(text=doc(version, None), filename=f"{version}.ign"),
                ssh=SshAccess(private_key=key),
                host="127.0.0.1",
                port=vm.spec.ssh_port,
                host_key=vm.host_key,
                policy=Policy(keep_paths=("/var/lib/app",), health_checks=(HEALTH,), reboot_timeout=900),
            )
            for n, vm in zip(NAMES, f.vms, strict=True)
        }
        Fleet("web", FleetArgs(machines=machines, rollout=RolloutPolicy(max_unavailable=max_unavailable)))

    return program


def test_pulumi_fleet_halts_records_each_machine_and_resumes(fleet: Fleet3) -> None:
    stack = Stack()
    # fleet-c still runs the v1 it booted through the pointer, of which it has no copy: give it
    # one in /oem/config.ign, as a bare-metal host installed with `flatcar-install -i` has (without
    # a rollback target the preflight refuses the host, and with it the whole rollout)
    fleet.vms[2].close_ssh()
    fleet.vms[2].sudo("install -m 0600 /dev/stdin /oem/config.ign", input=fleet.v1)
    before = {n: fleet.stamp(vm) for n, vm in zip(NAMES, fleet.vms, strict=True)}
    boot_c = fleet.boot(fleet.vms[2])
    dep = deploy(fleet_program(fleet, "v3", 1), stack)
    assert not dep.ok and dep.step("web-rollout").op == "create"
    assert dep.step("web-verdict").op == "failed" and "fleet-b (wave-02)" in (
        dep.step("web-verdict").error or ""
    )
    out = stack.by_name("web-rollout").outputs
    hosts = out["hosts"]
    v3 = hosts["fleet-a"]["desired_hash"]
    assert out["result"] == "halted"
    assert hosts["fleet-a"]["result"] == "reprovisioned" and hosts["fleet-a"]["applied_hash"] == v3
    assert fleet.stamp(fleet.vms[0]) == v3
    assert_second_host(fleet, hosts["fleet-b"], v3, before["fleet-b"])
    assert (
        hosts["fleet-c"]["result"] == "not-started" and hosts["fleet-c"]["applied_hash"] == before["fleet-c"]
    )
    assert fleet.boot(fleet.vms[2]) == boot_c
    assert_one_at_a_time(list(hosts.values()))

    # the cause is fixed: the rerun resumes; fleet-a is only verified (no reboot)
    fleet.vms[1].close_ssh()
    fleet.vms[1].sudo("rm -f /var/lib/app/bad-versions")
    boot_a = fleet.boot(fleet.vms[0])
    again = deploy(fleet_program(fleet, "v3", 2), stack)
    assert again.ok, (again.error, [(s.name, s.op, s.error) for s in again.steps])
    hosts = stack.by_name("web-rollout").outputs["hosts"]
    # fleet-b: rolled back to its old config, it is reprovisioned again; without rollback it was
    # left on the new config, which now passes its check: verified only
    second = "reprovisioned" if ROLLBACK else "unchanged"
    assert [hosts[n]["result"] for n in NAMES] == ["unchanged", second, "reprovisioned"]
    assert fleet.boot(fleet.vms[0]) == boot_a
    assert all(fleet.stamp(vm) == v3 for vm in fleet.vms)
