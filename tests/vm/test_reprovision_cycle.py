"""The package's central promise on a host that really reboots and reruns Ignition.

One VM (module scope, three boots) goes: v1 first boot through the pointer and the bucket →
``flatcar-reset`` keeping host keys, machine-id and /var/lib/keep with v2 uploaded to the same
object → fault injection (link, pause, hard reset: a reboot that must not run Ignition).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

import pytest

from flatcar_infra.compiler import compile_config
from flatcar_infra.compiler.api import STAMP_PATH, CompiledConfig
from flatcar_infra.ssh import SshError, SshTarget, connect, run_sync
from flatcar_infra.testbed.machines import VmFactory, with_core_key
from flatcar_infra.testbed.vm import Vm
from tests.vm.configs import generation_config

pytestmark = [pytest.mark.vm, pytest.mark.timeout(1500)]

HOST_KEYS = "/etc/ssh/ssh_host_*"


@dataclass
class Host:
    vm: Vm
    factory: VmFactory
    configs: dict[str, CompiledConfig]
    facts: dict[str, Any]


def compiled(doc: dict[str, Any], key: str) -> CompiledConfig:
    return compile_config(json.dumps(with_core_key(doc, key)), filename="test.ign", stamp_config=True)


@pytest.fixture(scope="module")
def host(vm_factory_module: VmFactory) -> Host:
    key = vm_factory_module.client_key.public_line
    configs = {
        "v1": compiled(generation_config("v1", extra_files=("/etc/v1-only",), users=("alice",)), key),
        "v2": compiled(generation_config("v2", users=("bob",)), key),
    }
    vm = vm_factory_module.boot("cycle", config=configs["v1"].canonical, add_key=False)
    return Host(vm, vm_factory_module, configs, {})


def host_key_bytes(vm: Vm) -> str:
    return vm.run(f"sudo sh -c 'cat {HOST_KEYS} | sha256sum'").text


def test_first_boot_applies_v1_from_the_bucket(host: Host) -> None:
    vm = host.vm
    assert vm.read_file("/etc/generation") == b"v1\n"
    assert vm.read_file(STAMP_PATH) == (host.configs["v1"].hash + "\n").encode()
    assert vm.read_file("/etc/v1-only") == b"only in v1\n"
    assert vm.run("systemctl is-enabled hello-v1.service").text.strip() == "enabled"
    assert vm.run("systemctl is-active hello-v1.service").text.strip() == "active"
    assert vm.read_file("/run/hello") == b"v1\n"
    assert vm.run("id -nG alice").text.split() == ["alice", "sudo"]
    keys = vm.read_file("/home/core/.ssh/authorized_keys.d/ignition")
    assert keys is not None and host.factory.client_key.public_line.split()[1].encode() in keys
    result = json.loads(vm.read_file("/etc/.ignition-result.json") or b"{}")
    assert "provisioningDate" in result
    # Flatcar's identity and contract
    assert "ID=flatcar" in vm.run("cat /etc/os-release").text
    assert "FLATCAR_RELEASE_VERSION=3975.2.1" in vm.run("cat /usr/share/flatcar/release").text
    assert "flatcar.first_boot=detected" in vm.run("cat /proc/cmdline").text
    assert not vm.run("sudo test -e /boot/flatcar/first_boot", check=False).ok
    assert not vm.run("sudo touch /usr/x", check=False).ok  # /usr is read-only
    assert vm.run("sudo -n true").ok  # passwordless sudo for core
    assert vm.run("systemctl --failed --no-legend --plain").text.strip() == ""
    host.facts.update(
        host_keys=host_key_bytes(vm),
        machine_id=vm.read_file("/etc/machine-id"),
        boot_id=vm.boot_id(),
        port=vm.spec.ssh_port,
        host_key=vm.host_key,
    )


def test_preview_and_stop_stage_nothing(host: Host) -> None:
    vm = host.vm
    vm.run("sudo mkdir -p /var/lib/keep/sub && echo precious | sudo tee /var/lib/keep/sub/data >/dev/null")
    paths = "--keep-paths '/etc/ssh/ssh_host_.*' /var/lib/keep"
    keep = vm.run(f"sudo flatcar-reset --preview-keep {paths}").text
    delete = vm.run(f"sudo flatcar-reset --preview-delete {paths}").text
    assert "/var/lib/keep/sub/data" in keep.splitlines()
    assert "/etc/ssh/ssh_host_ed25519_key" in keep.splitlines()
    assert "/etc/v1-only" in delete.splitlines() and "/etc/v1-only" not in keep.splitlines()
    # other file systems: their mount points are listed (find prints them), never their contents
    assert "/usr" in delete.splitlines() and not any(p.startswith("/usr/") for p in delete.splitlines())
    assert not vm.run("sudo test -e /selective-os-reset", check=False).ok
    vm.run("sudo flatcar-reset --keep-paths /var/lib/keep")
    assert vm.run("sudo test -e /selective-os-reset && sudo test -e /boot/flatcar/first_boot", check=False).ok
    vm.run("sudo flatcar-reset --stop")
    assert not vm.run("sudo test -e /selective-os-reset -o -e /boot/flatcar/first_boot", check=False).ok
    bad = vm.run("sudo flatcar-reset --keep-paths relative/path", check=False)
    assert bad.exit_status != 0 and b"absolute" in bad.stderr


def test_reset_applies_v2_and_keeps_chosen_state(host: Host) -> None:
    vm, facts = host.vm, host.facts
    assert facts, "needs the first-boot test"
    host.factory.upload("cycle", host.configs["v2"].canonical, add_key=False)
    vm.run("sudo flatcar-reset --keep-machine-id --keep-paths '/etc/ssh/ssh_host_.*' /var/lib/keep")
    grub = vm.read_file("/oem/grub.cfg") or b""
    assert f"systemd.machine_id={facts['machine_id'].decode().strip()}".encode() in grub
    new_boot = vm.reboot()

    assert new_boot != facts["boot_id"]
    assert vm.spec.ssh_port == facts["port"] and vm.host_key == facts["host_key"]
    assert vm.read_file("/etc/generation") == b"v2\n"
    assert vm.read_file(STAMP_PATH) == (host.configs["v2"].hash + "\n").encode()
    assert vm.run("systemctl is-active hello-v2.service").text.strip() == "active"
    assert vm.read_file("/run/hello") == b"v2\n"
    # v1-only state is gone: the file, the unit, the user
    assert vm.read_file("/etc/v1-only", missing_ok=True) is None
    assert not vm.run("test -e /etc/systemd/system/hello-v1.service", check=False).ok
    assert not vm.run("id alice", check=False).ok
    assert vm.run("id -nG bob").text.split() == ["bob", "sudo"]
    # chosen data, host keys and machine-id survive byte for byte
    assert vm.read_file("/var/lib/keep/sub/data") == b"precious\n"
    assert host_key_bytes(vm) == facts["host_keys"]
    assert vm.read_file("/etc/machine-id") == facts["machine_id"]
    assert not vm.run("sudo test -e /selective-os-reset -o -e /boot/flatcar/first_boot", check=False).ok
    assert vm.run("systemctl --failed --no-legend --plain").text.strip() == ""
    facts["boot_id"] = new_boot


def test_fault_injection_and_a_reboot_without_ignition(host: Host) -> None:
    """Pause, link down, hard reset; the hard reset is also the plain reboot of the boot contract:
    Ignition does not run again (no first-boot flag), local changes and the machine-id stay."""
    vm, facts = host.vm, host.facts
    result_before = vm.run("stat -c %Y /etc/.ignition-result.json").text
    vm.run("echo local-change | sudo tee /etc/generation >/dev/null && sync")  # durable before the reset
    assert vm.qmp("query-status")["status"] == "running"
    vm.pause()
    assert vm.qmp("query-status")["status"] == "paused"
    vm.resume()
    vm.link_down()
    short = SshTarget(vm.target.host, vm.target.port, vm.target.user, vm.target.identity_file,
                      host_key=vm.host_key, connect_timeout=3)
    with pytest.raises(SshError):
        run_sync(lambda: connect(short))
    vm.link_up()
    vm.wait_ssh(120)
    vm.hard_reset()
    vm.wait_boot_id_change(facts["boot_id"], 600)
    assert "ignition.firstboot" not in vm.run("cat /proc/cmdline").text
    assert vm.read_file("/etc/generation") == b"local-change\n"  # nothing re-applied
    assert vm.run("stat -c %Y /etc/.ignition-result.json").text == result_before
    assert vm.read_file("/etc/machine-id") == facts["machine_id"]
