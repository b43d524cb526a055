"""The stand-in's initramfs side of a reset follows Flatcar's bootengine (initrd-setup-root): run
for real, as root, against a scratch ROOT at /sysroot in a private mount namespace, no VM.

A reset staged by the stand-in's flatcar-reset keeps exactly what the regex keeps (plus the
directories holding kept paths), removes /etc/machine-id and the marker, never touches /usr; then
the base layout is back, /etc is the overlay Flatcar mounts, and upper-dir files equal to the lower
dir's are dropped.
"""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest

from flatcar_infra.testbed.image import FILES_DIR
from tests.testbed.scratch import ScratchFlatcar

pytestmark = pytest.mark.skipif(os.geteuid() != 0 and not os.environ.get("CI"),
                                reason="needs root (mount namespaces, overlayfs, chroot)")

SETUP_ROOT = FILES_DIR / "dracut/50flatcar-standin/initrd-setup-root.sh"
OVERLAY = "lowerdir=/sysroot/usr/share/flatcar/etc,upperdir=/sysroot/etc,workdir=/sysroot/.etc-work"


@pytest.fixture
def host(tmp_path: Path) -> ScratchFlatcar:
    s = ScratchFlatcar(tmp_path / "host")
    lower = s.lower_etc
    (lower / "passwd").write_text("root:x:0:0::/root:/bin/bash\n")
    (lower / "modes").write_text("same bytes\n")
    (lower / "empty.d").mkdir()
    (lower / "os-release").symlink_to("../usr/lib/os-release")
    factory = s.usr_files / "share/factory"
    for d in ("var/log", "var/lib", "home/core", "tmp", "boot", "oem", "root", "proc", "dev"):
        (factory / d).mkdir(parents=True)
    (factory / "home/core/.profile").write_text("# factory\n")
    s.provision()
    return s


def root_paths(s: ScratchFlatcar) -> set[str]:
    return {"/" + p.relative_to(s.root).as_posix() for p in s.root.rglob("*")}


def boot(s: ScratchFlatcar, *after: str) -> subprocess.CompletedProcess[bytes]:
    res = s.boot_initramfs(SETUP_ROOT, *after)
    assert res.returncode == 0, res.stderr.decode()
    return res


def test_selective_reset_keeps_exactly_what_the_regex_keeps(host: ScratchFlatcar) -> None:
    keep = ["/etc/ssh/ssh_host_.*", "/var/lib/keep"]
    preview = host.run("/usr/sbin/flatcar-reset", "--preview-keep", "--keep-paths", *keep)
    kept = set(preview.stdout.decode().split())
    assert kept == {"/etc/ssh/ssh_host_ed25519_key", "/etc/ssh/ssh_host_ed25519_key.pub",
                    "/var/lib/keep", "/var/lib/keep/sub", "/var/lib/keep/sub/data"}
    assert host.run("/usr/sbin/flatcar-reset", "-M", "--keep-paths", *keep).returncode == 0

    res = boot(host, "findmnt -no FSTYPE,OPTIONS /sysroot/etc", "cat /sysroot/etc/hostname",
               "cat /sysroot/etc/ssh/ssh_host_ed25519_key", "test ! -e /sysroot/etc/machine-id")
    fstype_options, hostname, key = res.stdout.decode().splitlines()[-3:]
    left = root_paths(host)
    # kept paths and their directories; the base layout again (factory); /usr never touched;
    # relative symlinks to directories survive (rmdir refuses them, as on Flatcar); the overlay's
    # work dir made anew; machine-id, marker and everything else gone
    assert left == kept | {
        "/etc", "/etc/ssh", "/var", "/var/lib", "/usr", "/bin", "/sbin", "/lib", "/lib64",
        "/var/log", "/home", "/home/core", "/home/core/.profile", "/tmp", "/boot", "/oem", "/root",
        "/proc", "/dev", "/.etc-work", "/.etc-work/work",
    }
    assert (host.root / "var/lib/keep/sub/data").read_text() == "precious\n"
    assert fstype_options.startswith("overlay ") and OVERLAY in fstype_options
    assert "redirect_dir=on" in fstype_options
    assert hostname == "shipped"  # from the lower dir, through the overlay
    assert key == "ssh_host_ed25519_key"  # the kept upper-dir file
    assert b"selective OS reset done" in res.stdout


def test_no_reset_without_a_staged_marker_and_with_an_empty_one(host: ScratchFlatcar) -> None:
    (host.root / "selective-os-reset").write_text("")  # only a non-empty marker resets
    before = root_paths(host)
    boot(host)
    assert root_paths(host) == before | {"/root", "/home/core/.profile"}  # the base layout completed
    assert (host.root / "etc/machine-id").is_file()


def test_upper_dir_copies_equal_to_the_lower_dir_are_dropped(host: ScratchFlatcar) -> None:
    etc, lower = host.root / "etc", host.lower_etc
    (etc / "hostname").write_text("shipped\n")  # same bytes, mode, owner: dropped
    (etc / "modes").write_text("same bytes\n")
    (etc / "modes").chmod(0o600)  # another mode: a real change, kept
    (etc / "empty.d").mkdir()  # an empty directory the lower dir has too: dropped
    (etc / "ssh/sshd_config").write_text("# changed\n")  # changed: kept
    (etc / "os-release").symlink_to("../usr/lib/os-release")  # same link: dropped
    os.mknod(etc / "passwd", 0o600 | 0o020000, os.makedev(0, 0))  # a whiteout: the user deleted it
    assert (lower / "modes").stat().st_mode & 0o777 != 0o600
    boot(host, "cat /sysroot/etc/passwd")
    upper = {p.name for p in etc.iterdir()}
    assert upper == {"ssh", "machine-id", "generation", "modes"}
    assert {p.name for p in (etc / "ssh").iterdir()} == {"ssh_host_ed25519_key", "ssh_host_ed25519_key.pub",
                                                         "sshd_config"}


def test_opting_out_of_the_cleanup_keeps_upper_dir_copies(host: ScratchFlatcar) -> None:
    etc = host.root / "etc"
    (etc / "hostname").write_text("shipped\n")
    (etc / ".no-dup-update").write_text("")
    boot(host)
    assert (etc / "hostname").read_text() == "shipped\n"
