"""A Flatcar-shaped root filesystem in a scratch directory, to run the stand-in's own tools for
real without booting a VM (as root: mounts and chroot, in a private mount namespace per run).

Layout, as on a Flatcar host (and on the stand-in):

- ROOT is the directory ``root/`` (bind-mounted onto itself, so that it is a mount point);
- USR is a read-only overlay at ``root/usr``: the stand-in's files (``flatcar-reset``,
  ``/usr/share/oem`` -> ``/oem``, the /etc lower dir ``/usr/share/flatcar/etc``, the factory
  tree) over the host's own ``/usr``, which provides bash, getopt, find, rsync, ...;
- ``/etc`` is the overlay Flatcar mounts: lower ``/usr/share/flatcar/etc``, upper ROOT's ``/etc``,
  work dir ``/.etc-work``;
- ``/boot`` (EFI-SYSTEM) and ``/oem`` (OEM) are file systems of their own (overlays whose upper
  dirs ``boot/`` and ``oem/`` keep what the tools write), ``/proc`` and ``/dev`` are mounted.

Every mount lives only as long as the one ``run``; the directories keep the state in between, so a
test inspects ``root/``, ``boot/`` and ``oem/`` directly.
"""

from __future__ import annotations

import shlex
import shutil
import subprocess
from pathlib import Path

from flatcar_infra.testbed.image import FILES_DIR

NOBODY = "65534:65534"
MACHINE_ID = "0123456789abcdef0123456789abcdef"


class ScratchFlatcar:
    def __init__(self, base: Path) -> None:
        self.base = base
        self.root = base / "root"
        self.usr_files = base / "usr-files"  # the stand-in's part of USR (the host's /usr below it)
        self.boot = base / "boot"
        self.oem = base / "oem"
        for d in (self.root, self.usr_files, self.boot / "flatcar", self.oem, base / "empty",
                  base / "boot-work", base / "oem-work"):
            d.mkdir(parents=True, exist_ok=True)
        for d in ("etc", ".etc-work", "usr", "boot", "oem", "proc", "dev", "tmp", "var/log", "home/core"):
            (self.root / d).mkdir(parents=True, exist_ok=True)
        for link in ("bin", "sbin", "lib", "lib64"):
            if not (self.root / link).is_symlink():
                (self.root / link).symlink_to(f"usr/{link}")
        sbin = self.usr_files / "sbin"
        sbin.mkdir(parents=True, exist_ok=True)
        shutil.copy(FILES_DIR / "rootfs/usr/sbin/flatcar-reset", sbin / "flatcar-reset")
        share = self.usr_files / "share"
        (share / "flatcar/etc").mkdir(parents=True, exist_ok=True)
        if not (share / "oem").is_symlink():
            (share / "oem").symlink_to("/oem")
        (self.oem / "grub.cfg").write_text('# OEM settings sourced by GRUB\nset oem_id="qemu"\n')

    def provision(self) -> ScratchFlatcar:
        """Make it a host that has run a while: /etc files from the image (lower dir only), files
        the machine and Ignition wrote under /etc (upper dir: host keys, machine-id, generation),
        data under /var and /home; then mount once, as a boot does (the overlay makes its work dir)."""
        (self.lower_etc / "ssh").mkdir(parents=True, exist_ok=True)
        (self.lower_etc / "ssh/sshd_config").write_text("# shipped\n")
        (self.lower_etc / "hostname").write_text("shipped\n")
        etc = self.root / "etc"
        (etc / "ssh").mkdir(exist_ok=True)
        for key in ("ssh_host_ed25519_key", "ssh_host_ed25519_key.pub"):
            (etc / "ssh" / key).write_text(f"{key}\n")
        (etc / "machine-id").write_text(MACHINE_ID + "\n")
        (etc / "generation").write_text("v1\n")  # written by Ignition
        files = {"var/lib/keep/sub/data": "precious\n", "var/lib/other/x": "x\n",
                 "var/log/journal/system.journal": "log\n", "home/core/.bash_history": "ls\n"}
        for rel, text in files.items():
            (self.root / rel).parent.mkdir(parents=True, exist_ok=True)
            (self.root / rel).write_text(text)
        if self.run("true").returncode != 0:
            raise RuntimeError("cannot mount the scratch host (root, overlayfs and mount namespaces needed)")
        return self

    @property
    def lower_etc(self) -> Path:
        """The /etc overlay's lower dir (on USR), as the scratch directory holds it."""
        return self.usr_files / "share/flatcar/etc"

    def _mounts(self, *, running: bool = True) -> str:
        """ROOT and USR; for the running system (not the initramfs) also /boot, /oem, /proc, /dev."""
        r, b = shlex.quote(str(self.root)), shlex.quote(str(self.base))
        lines = ["set -e", f"mount --bind {r} {r}",
                 f"mount -t overlay usr -o ro,lowerdir={b}/usr-files:/usr {r}/usr"]
        if running:
            for fs in ("boot", "oem"):  # a file system of its own each, keeping its files in base/FS
                lines.append(f"mount -t overlay {fs} -o lowerdir={b}/empty,upperdir={b}/{fs},"
                             f"workdir={b}/{fs}-work {r}/{fs}")
            lines += [f"mount -t proc proc {r}/proc", f"mount --rbind /dev {r}/dev"]
        return "\n".join(lines) + "\n"

    def _etc_overlay(self, root: str) -> str:
        return (f"mount -t overlay overlay -o lowerdir={root}/usr/share/flatcar/etc,upperdir={root}/etc,"
                f"workdir={root}/.etc-work,redirect_dir=on,metacopy=off,noatime {root}/etc\n")

    def run(self, *argv: str, user: str | None = None, stdin: bytes | None = None,
            cwd: str = "/") -> subprocess.CompletedProcess[bytes]:
        """Run ``argv`` chrooted into the running system (/etc mounted), as root or ``user``."""
        r = shlex.quote(str(self.root))
        chroot = ["chroot", *([f"--userspec={user}"] if user else []), str(self.root),
                  "sh", "-c", f'cd {shlex.quote(cwd)} && exec "$@"', "sh", *argv]
        script = self._mounts() + self._etc_overlay(r) + f"exec {shlex.join(chroot)}\n"
        return subprocess.run(["unshare", "-m", "--propagation", "private", "bash", "-c", script],
                              input=stdin, capture_output=True, timeout=300)

    def boot_initramfs(self, script: Path, *after: str) -> subprocess.CompletedProcess[bytes]:
        """Run the initramfs script ``script`` with ROOT at /sysroot (USR mounted at /sysroot/usr,
        /sysroot/etc not mounted, as on a boot), then the shell commands ``after`` in the same
        mount namespace (to look at what the script mounted)."""
        initrd = self.base / "initrd"
        for d in ("usr", "sysroot", "proc", "dev", "tmp"):
            (initrd / d).mkdir(parents=True, exist_ok=True)
        for link in ("bin", "sbin", "lib", "lib64"):
            if not (initrd / link).is_symlink():
                (initrd / link).symlink_to(f"usr/{link}")
        shutil.copy(script, initrd / "setup-script")
        i, r = shlex.quote(str(initrd)), shlex.quote(str(self.root))
        lines = [
            self._mounts(running=False),
            f"mount --rbind /usr {i}/usr",
            f"mount --rbind {r} {i}/sysroot",
            f"mount -t proc proc {i}/proc",
            f"mount --rbind /dev {i}/dev",
            f"chroot {i} bash /setup-script",
            *(f"chroot {i} sh -c {shlex.quote(cmd)}" for cmd in after),
        ]
        return subprocess.run(["unshare", "-m", "--propagation", "private", "bash", "-c", "\n".join(lines)],
                              capture_output=True, timeout=300)
