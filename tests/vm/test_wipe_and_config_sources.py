"""Reformatting ROOT on the flagged boot, and Flatcar's config-source precedence.

One VM (restored from the session's snapshot, no first boot), three reboots: v2 with
``wipeFilesystem: true`` for ROOT (a new filesystem; the host keys are lost with it, which the
pinned client must notice) → a config in ``/oem/config.ign`` (``flatcar-reset -F FILE``) that wins
over the user-data pointer → a config URL set with ``-U`` (``ignition.config.url`` in
/oem/grub.cfg), which wins over an ``/oem/config.ign`` present at the same time.
"""

from __future__ import annotations

import json

import pytest

from flatcar_infra.canonical import canonical_bytes
from flatcar_infra.ssh import HostKeyMismatch
from flatcar_infra.testbed.machines import VmFactory, with_core_key
from flatcar_infra.testbed.vm import Vm
from tests.vm.configs import generation_config

pytestmark = [pytest.mark.vm, pytest.mark.timeout(1200)]

ROOT_UUID = "findmnt -no UUID /"


@pytest.fixture(scope="module")
def vm(booted_vm_module: Vm) -> Vm:
    return booted_vm_module


def test_wipe_filesystem_reformats_root(vm: Vm, vm_factory_module: VmFactory) -> None:
    machine_id = vm.read_file("/etc/machine-id")
    old_uuid = vm.run(ROOT_UUID).text.strip()
    old_key = vm.host_key
    vm.run("echo data | sudo tee /var/lib/marker >/dev/null")
    vm_factory_module.upload(vm.spec.name, generation_config("v2", wipe_root=True))
    # keeping paths is moot when ROOT is reformatted: Ignition's disks stage runs first
    vm.run("sudo flatcar-reset --keep-machine-id --keep-paths '/etc/ssh/ssh_host_.*' /var/lib/marker")
    before = vm.boot_id()
    vm.run("sudo systemd-run --no-block sh -c 'sleep 1; systemctl reboot'")
    # The new ROOT has new host keys: the pinned client refuses them instead of carrying on.
    with pytest.raises(HostKeyMismatch):
        vm.wait_boot_id_change(before, 600)
    vm.host_key = None  # the test knows the machine was reformatted: trust the new key
    vm.wait_ssh(120)
    assert vm.host_key != old_key
    assert vm.boot_id() != before
    assert vm.run(ROOT_UUID).text.strip() != old_uuid
    assert vm.read_file("/var/lib/marker", missing_ok=True) is None
    assert vm.read_file("/etc/generation") == b"v2\n"
    assert vm.run("systemctl is-active hello-v2.service").text.strip() == "active"
    assert vm.read_file("/etc/machine-id") == machine_id  # from the kernel command line


def test_oem_config_wins_over_user_data(vm: Vm, vm_factory_module: VmFactory) -> None:
    key = vm_factory_module.client_key.public_line
    oem = canonical_bytes(with_core_key(generation_config("oem"), key))
    # the bucket object (what the user-data pointer fetches) says v3; /oem/config.ign says oem
    vm_factory_module.upload(vm.spec.name, generation_config("v3"))
    # flatcar-reset -F copies a file (cp): "-" would be a file named "-", not standard input
    vm.run("cat > /tmp/oem.ign", input=oem)
    vm.run(["sudo", "flatcar-reset", "--keep-machine-id", "-F", "/tmp/oem.ign", "--keep-paths",
            "/etc/ssh/ssh_host_.*"])
    assert json.loads(vm.read_file("/oem/config.ign") or b"{}") == json.loads(oem)
    vm.reboot()
    assert vm.read_file("/etc/generation") == b"oem\n"
    assert vm.run("systemctl is-active hello-oem.service").text.strip() == "active"
    assert not vm.run("test -e /etc/systemd/system/hello-v2.service", check=False).ok


def test_config_url_replaces_oem_config_and_user_data(vm: Vm, vm_factory_module: VmFactory) -> None:
    key = vm_factory_module.client_key.public_line
    url = vm_factory_module.bucket.put(f"{vm.spec.name}/by-url.ign",
                                       canonical_bytes(with_core_key(generation_config("url"), key)))
    vm.run(["sudo", "flatcar-reset", "--keep-machine-id", "-U", url, "--keep-paths", "/etc/ssh/ssh_host_.*"])
    assert vm.read_file("/oem/config.ign", missing_ok=True) is None  # -U replaces an -F config
    # with a config in /oem/config.ign as well, the kernel command line's URL still wins
    vm.run("cat > /tmp/oem.ign && sudo cp /tmp/oem.ign /oem/config.ign",
           input=canonical_bytes(with_core_key(generation_config("oem-again"), key)))
    vm.reboot()
    assert f"ignition.config.url={url}" in vm.run("cat /proc/cmdline").text
    assert vm.read_file("/etc/generation") == b"url\n"
    assert vm.run("systemctl is-active hello-url.service").text.strip() == "active"
    assert not vm.run("test -e /etc/systemd/system/hello-oem-again.service", check=False).ok
