"""The stand-in on a booted VM behaves like Flatcar where our product depends on it: /etc is the
overlay Flatcar mounts, the previews see ROOT's /etc with /etc unmounted, flatcar-reset refuses
what the real tool refuses, a reset keeps exactly what its regex keeps (kept /etc/ssh files live
in the overlay's upper dir) and drops /etc/machine-id, and Ignition reruns. (A failed Ignition run
rebooting after the emergency timeout with the first-boot flag still set is checked on the
console by tests/reprovision/test_e2e_vm.py, whose rollback depends on it.)

Every VM here is restored from the session's snapshot (``booted_vm``/``booted_vm_module``): no
boot but the reboots the scenarios are about.
"""

from __future__ import annotations

import json
import time

import pytest

from flatcar_infra.testbed.machines import VmFactory
from flatcar_infra.testbed.vm import Vm, VmSnapshot
from tests.vm.configs import generation_config

pytestmark = [pytest.mark.vm, pytest.mark.timeout(1800)]

ROOT_WALK = "sudo unshare -m sh -c 'umount /etc && find / -xdev -print0' | tr '\\0' '\\n'"
BOTH = "Error: Can't specify both Ignition URL and Ignition file at the same time"
INVALID = "Error: Invalid path to keep, must be an absolute path or a regex for an absolute path: "


def lines(text: str) -> set[str]:
    return set(text.splitlines())


# ---- the running system (one restored VM, read-only checks) --------------------------------------


def test_etc_is_the_flatcar_overlay(booted_vm_module: Vm) -> None:
    vm = booted_vm_module
    fstype, options = vm.run("findmnt -no FSTYPE,OPTIONS /etc").text.split()
    assert fstype == "overlay"
    opts = options.split(",")
    assert "lowerdir=/sysroot/usr/share/flatcar/etc" in opts  # mounted in the initramfs, as on Flatcar
    assert "upperdir=/sysroot/etc" in opts and "workdir=/sysroot/.etc-work" in opts
    assert vm.run("findmnt -no FSTYPE /").text.strip() == "ext4"  # ROOT
    assert not vm.run("sudo touch /usr/share/flatcar/etc/x", check=False).ok  # the lower dir is on USR
    # ROOT's own /etc (the upper dir): what Ignition and the machine wrote, nothing of the image's
    upper = lines(vm.run("sudo unshare -m sh -c 'umount /etc && ls -A /etc'").text)
    assert {"machine-id", ".ignition-result.json", "flatcar-infra-testbed"} <= upper
    assert {f"ssh_host_{t}_key" for t in ("ed25519", "rsa", "ecdsa")} <= lines(
        vm.run("sudo unshare -m sh -c 'umount /etc && ls -A /etc/ssh'").text)
    assert not {"os-release", "fstab", "passwd", "sudoers.d"} & upper
    # without unmounting it, a walk of / never sees /etc: it is another file system
    plain = lines(vm.run("sudo find / -xdev -path '/etc*' -print", check=False).text)
    assert plain == {"/etc"}
    assert vm.read_file("/etc/flatcar-infra-testbed/base") == b"base\n"
    assert vm.run("systemctl is-enabled testbed-base.service").text.strip() == "enabled"
    assert "VERSION_ID=3975.2.1" in vm.run("cat /etc/os-release").text
    assert vm.run("readlink /usr/share/oem").text.strip() == "/oem"
    assert vm.run("findmnt -no SOURCE /oem").text.strip().endswith("vda6")


def test_previews_see_roots_etc(booted_vm_module: Vm) -> None:
    vm = booted_vm_module
    keep = lines(vm.run("sudo flatcar-reset --preview-keep --keep-paths '/etc/ssh/ssh_host_.*'").text)
    assert {"/etc/ssh/ssh_host_ed25519_key", "/etc/ssh/ssh_host_ed25519_key.pub"} <= keep
    assert all(p.startswith("/etc/ssh/ssh_host_") for p in keep)
    delete = vm.run("sudo flatcar-reset -P --keep-paths '/etc/ssh/ssh_host_.*'").text.splitlines()
    assert {"/", "/etc", "/etc/ssh", "/etc/machine-id", "/etc/.ignition-result.json", "/.etc-work",
            "/usr", "/boot", "/oem", "/var"} <= set(delete)
    assert "/etc/os-release" not in delete and "/etc/ssh/sshd_config" not in delete  # lower dir only
    assert delete[-1].startswith("Note that it is ok to delete")
    assert lines(vm.run(ROOT_WALK).text) - {"/selective-os-reset"} >= keep


@pytest.mark.parametrize(("args", "stderr"), [
    ("-F /tmp/a.ign -U http://x", BOTH),
    ("-U http://x -F /tmp/a.ign", BOTH),
    ("/var/log", "Error: Found unused arguments: /var/log"),
    ("-K", "Error: No paths to keep specified for --keep-paths argument"),
    ("-K ./x", INVALID + "./x"),
    ("-K x", INVALID + "x"),
    ("-S -P", "Error: Only one exclusive action allowed"),
])
def test_refusals_on_the_vm(booted_vm_module: Vm, args: str, stderr: str) -> None:
    vm = booted_vm_module
    res = vm.run(f"sudo flatcar-reset {args}", check=False)
    assert (res.exit_status, res.stdout, res.stderr.decode().strip()) == (1, b"", stderr)
    assert not vm.run("sudo test -e /selective-os-reset -o -e /boot/flatcar/first_boot", check=False).ok
    assert "Need to be root: sudo /usr/sbin/flatcar-reset  -S --" in vm.run(
        "/usr/sbin/flatcar-reset -S", check=False).stderr.decode()


def test_ignition_file_dash_is_a_file_named_dash(booted_vm_module: Vm) -> None:
    vm = booted_vm_module
    res = vm.run(["sudo", "flatcar-reset", "-F", "-", "-K", "/etc/ssh/ssh_host_.*"],
                 input=b'{"ignition":{"version":"3.3.0"}}', check=False)
    assert res.exit_status == 1
    assert res.stderr.decode().strip() == "cp: cannot stat '-': No such file or directory"
    assert vm.read_file("/oem/config.ign", missing_ok=True) is None
    assert not vm.run("sudo test -e /selective-os-reset -o -e /boot/flatcar/first_boot", check=False).ok


# ---- resets (a fresh VM each) ---------------------------------------------------------------------


def test_reset_keeps_exactly_the_regex_and_reruns_ignition(booted_vm: Vm, vm_factory: VmFactory) -> None:
    vm = booted_vm
    vm.run("sudo sh -c 'mkdir -p /var/lib/keep/sub /var/lib/drop /etc/app"
           " && echo precious > /var/lib/keep/sub/d && echo gone > /var/lib/drop/d"
           " && echo mine > /etc/app/kept.conf && echo changed >> /etc/motd"
           " && echo x > /etc/app/dropped.conf'")
    keep = ["/etc/ssh/ssh_host_.*", "/var/lib/keep", "/etc/app/kept.conf"]
    quoted = " ".join(f"'{k}'" for k in keep)
    kept = lines(vm.run(f"sudo flatcar-reset --preview-keep --keep-paths {quoted}").text)
    assert {"/var/lib/keep/sub/d", "/etc/app/kept.conf", "/etc/ssh/ssh_host_rsa_key"} <= kept
    files = " ".join(sorted(p.lstrip("/") for p in kept if p not in ("/var/lib/keep", "/var/lib/keep/sub")))
    checksums = f"sudo unshare -m sh -c 'umount /etc && cd / && sha256sum {files}'"
    sums = vm.run(checksums).text
    machine_id = vm.read_file("/etc/machine-id")
    result_before = vm.read_file("/etc/.ignition-result.json")
    vm_factory.upload(vm.spec.name, generation_config("after-reset"))  # the pointer's object
    vm.run(f"sudo flatcar-reset --keep-paths {quoted}")  # no --keep-machine-id
    vm.reboot()

    after = lines(vm.run(ROOT_WALK).text)
    assert kept <= after
    assert vm.run(checksums).text == sums  # byte for byte
    assert not {"/var/lib/drop", "/var/lib/drop/d", "/etc/app/dropped.conf", "/etc/motd",
                "/etc/flatcar-infra-testbed/base", "/selective-os-reset"} & after
    assert vm.read_file("/etc/motd") == vm.read_file("/usr/share/flatcar/etc/motd")  # the lower dir's again
    # a new machine-id (first boot for systemd), Ignition ran again with what the pointer serves now
    assert vm.read_file("/etc/machine-id") != machine_id
    assert vm.read_file("/etc/generation") == b"after-reset\n"
    assert vm.read_file("/etc/.ignition-result.json") != result_before
    assert vm.run("systemctl is-active hello-after-reset.service").text.strip() == "active"
    assert not vm.run("systemctl is-enabled testbed-base.service", check=False).ok  # the old config's unit
    assert "/etc/generation" in lines(vm.run("sudo unshare -m sh -c 'umount /etc && find /etc'").text)
    assert not vm.run("sudo test -e /boot/flatcar/first_boot", check=False).ok
    assert vm.run("systemctl --failed --no-legend --plain").text.strip() == ""


def test_restored_vms_are_independent_and_current(vm_factory: VmFactory, vm_snapshot: VmSnapshot) -> None:
    one = vm_factory.restore(vm_snapshot, "clone-one")
    two = vm_factory.restore(vm_snapshot, "clone-two")
    assert one.spec.ssh_port != two.spec.ssh_port and one.host_key == two.host_key == vm_snapshot.host_key
    one.run("echo one | sudo tee /var/lib/only-one >/dev/null")
    assert two.read_file("/var/lib/only-one", missing_ok=True) is None
    assert abs(float(two.run("date +%s.%N").text) - time.time()) < 30  # the clock was set on restore
    assert vm_snapshot.config is not None
    assert json.loads(vm_factory.bucket.get("clone-two/config.ign")) == json.loads(vm_snapshot.config)
