"""Build (once) and cache the Flatcar stand-in disk image from Debian packages.

No Flatcar image can be downloaded here, so the test bed builds one that follows Flatcar's boot
contract (``shared/DOMAIN.md``): a GPT disk with EFI-SYSTEM (/boot: kernel, initramfs, GRUB config,
``flatcar/first_boot``), OEM (/oem, ``grub.cfg`` sourced by GRUB), a read-only USR-A (/usr) and
ROOT. Partition numbers and labels are Flatcar's (1 EFI-SYSTEM, 2 BIOS-BOOT, 3 USR-A, 6 OEM,
9 ROOT); it boots with SeaBIOS and GRUB (i386-pc), because OVMF fails under the nested KVM here.

The image is keyed by a hash of everything that determines it (package list, suite, the files in
``testbed/files``, the layout, ``BUILDER_VERSION``), built without loop devices (``mkfs -d``,
mtools, ``sfdisk`` on a file) and stored in the cache dir; each VM boots a qcow2 overlay of it.

CLI: ``python -m flatcar_infra.testbed.image build|path|key|prune``.
"""

from __future__ import annotations

import argparse
import contextlib
import fcntl
import hashlib
import json
import os
import shutil
import struct
import subprocess
import sys
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

from flatcar_infra.errors import UserError

#: Bump when the build procedure changes in a way the hashed inputs do not show.
BUILDER_VERSION = "2"
SUITE = "bookworm"
KERNEL_PACKAGE = "linux-image-amd64"
PACKAGES = (
    "systemd", "systemd-sysv", "dbus", "udev", "kmod", "openssh-server", "sudo",
    "dracut", "dracut-network", "curl", "ignition", "e2fsprogs", "dosfstools", "gdisk",
    "fdisk", "util-linux", "iproute2", "procps", "less", "zstd", "rsync", "attr",
)  # fmt: skip
IMAGE_NAME = "flatcar-standin.qcow2"
FILES_DIR = Path(__file__).parent / "files"

# Host tools the build runs, and the Debian packages that provide them.
HOST_TOOLS = {
    "mmdebstrap": "mmdebstrap", "mkfs.ext4": "e2fsprogs", "mkfs.fat": "dosfstools",
    "mcopy": "mtools", "sfdisk": "fdisk", "qemu-img": "qemu-utils", "grub-mkimage": "grub-common",
}  # fmt: skip
GRUB_I386_DIR = Path("/usr/lib/grub/i386-pc")
GRUB_MODULES = ["biosdisk", "part_gpt", "fat", "ext2", "search", "search_label", "search_fs_file", "test",
                "linux", "normal", "serial", "terminal", "echo", "configfile", "gzio", "boot"]

Progress = Callable[[str, str], None]

_MIB = 1024 * 1024
_SECTOR = 512


@dataclass(frozen=True)
class Partition:
    number: int
    label: str
    type_guid: str
    size_mib: int


@dataclass(frozen=True)
class Layout:
    """Partition sizes (MiB). USR-A is sized from its contents at build time."""

    esp_mib: int = 128
    oem_mib: int = 128
    root_mib: int = 3072
    usr_headroom_mib: int = 160

    def as_dict(self) -> dict[str, int]:
        return {"esp": self.esp_mib, "oem": self.oem_mib, "root": self.root_mib,
                "usr_headroom": self.usr_headroom_mib}


GUID_EFI = "C12A7328-F81F-11D2-BA4B-00A0C93EC93B"
GUID_BIOS = "21686148-6449-6E6F-744E-656564454649"
GUID_LINUX = "0FC63DAF-8483-4772-8E79-3D69D8477DE4"
GUID_FLATCAR_USR = "5DFBF5F4-2848-4BAC-AA5E-0D9A20B745A6"
GUID_FLATCAR_ROOT = "3884DD41-8582-4404-B9A8-E9B84F2DF50E"


def cache_dir() -> Path:
    """``$FLATCAR_INFRA_CACHE``, else ``/var/cache/flatcar-infra`` (root) or ``~/.cache/flatcar-infra``."""
    env = os.environ.get("FLATCAR_INFRA_CACHE")
    if env:
        return Path(env)
    if os.geteuid() == 0:
        return Path("/var/cache/flatcar-infra")
    return Path.home() / ".cache" / "flatcar-infra"


def image_key(layout: Layout = Layout()) -> str:
    """Hash of every input that determines the image (not the mirror: same packages either way)."""
    h = hashlib.sha256()
    meta = {"builder": BUILDER_VERSION, "suite": SUITE, "packages": sorted(PACKAGES),
            "kernel": KERNEL_PACKAGE, "layout": layout.as_dict()}
    h.update(json.dumps(meta, sort_keys=True).encode())
    for path in sorted(p for p in FILES_DIR.rglob("*") if p.is_file()):
        rel = path.relative_to(FILES_DIR).as_posix()
        if "__pycache__" in rel:
            continue
        h.update(f"\0{rel}\0{path.stat().st_mode & 0o111:o}\0".encode())
        h.update(path.read_bytes())
    return h.hexdigest()[:16]


def image_path(layout: Layout = Layout()) -> Path:
    return cache_dir() / "images" / image_key(layout) / IMAGE_NAME


def cached_image(layout: Layout = Layout()) -> Path | None:
    path = image_path(layout)
    return path if path.is_file() else None


def build_image(progress: Progress | None = None, *, layout: Layout = Layout(),
                force: bool = False) -> Path:
    """The cached image for the current inputs, building it first when missing (needs root).

    Concurrent callers (several test processes) wait on a lock and reuse one build.
    """
    report = progress or (lambda phase, msg: None)
    target = image_path(layout)
    if target.is_file() and not force:
        report("image", f"cached: {target}")
        return target
    if os.geteuid() != 0:
        raise UserError(
            "building the Flatcar stand-in image needs root (mmdebstrap --mode=root, chroot)",
            f"run `sudo python -m flatcar_infra.testbed.image build` once (cache: {cache_dir()}), "
            "or set FLATCAR_INFRA_CACHE to a cache that holds it; developers without root may set "
            "FLATCAR_INFRA_SKIP_VM=1 to skip the VM tests",
        )
    _check_tools()
    target.parent.mkdir(parents=True, exist_ok=True)
    with _locked(target.parent / ".lock"):
        if target.is_file() and not force:
            report("image", f"built by another process: {target}")
            return target
        _build(target, layout, report)
    return target


@contextlib.contextmanager
def _locked(path: Path) -> Iterator[None]:
    with path.open("w") as fh:
        fcntl.flock(fh, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(fh, fcntl.LOCK_UN)


def _check_tools() -> None:
    missing = {tool: pkg for tool, pkg in HOST_TOOLS.items() if shutil.which(tool) is None}
    if not (GRUB_I386_DIR / "boot.img").is_file():
        missing["grub i386-pc modules"] = "grub-pc-bin"
    if missing:
        pkgs = " ".join(sorted(set(missing.values())))
        raise UserError(f"missing tools to build the image: {', '.join(sorted(missing))}",
                        f"apt-get install {pkgs}")


def apt_mirror(apt_dir: Path = Path("/etc/apt")) -> str:
    """The Debian mirror this host's apt uses (``$FLATCAR_INFRA_MIRROR`` overrides)."""
    env = os.environ.get("FLATCAR_INFRA_MIRROR")
    if env:
        return env
    for uri in _apt_uris(apt_dir):
        if "security" not in uri and "/debian" in uri:
            return uri
    raise UserError("cannot find the Debian mirror apt uses (no 'deb' source for Debian in "
                    "/etc/apt/sources.list*)", "set FLATCAR_INFRA_MIRROR=http://…/debian")


def _apt_uris(apt: Path) -> Iterator[str]:
    lists = [apt / "sources.list", *sorted((apt / "sources.list.d").glob("*.list"))]
    for path in lists:
        if path.is_file():
            for line in path.read_text().splitlines():
                words = line.split("#", 1)[0].split()
                if words and words[0] == "deb":
                    rest = [w for w in words[1:] if not w.startswith("[")]
                    if rest:
                        yield rest[0]
    for path in sorted((apt / "sources.list.d").glob("*.sources")):
        for stanza in path.read_text().split("\n\n"):
            fields = dict(
                (k.strip().lower(), v.strip())
                for k, _, v in (ln.partition(":") for ln in stanza.splitlines()
                                if ln and not ln.startswith(("#", " ")))
            )
            if "deb" in fields.get("types", "").split() and fields.get("enabled", "yes") != "no":
                yield from fields.get("uris", "").split()


def _run(cmd: list[str], report: Progress, phase: str, *, stream: bool = False,
         cwd: Path | None = None, input: bytes | None = None) -> None:
    """Run a build step; its output is shown on failure (or streamed as progress)."""
    proc = subprocess.Popen(cmd, cwd=cwd, stdin=subprocess.PIPE if input is not None else subprocess.DEVNULL,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    if input is not None:
        assert proc.stdin is not None
        proc.stdin.write(input)
        proc.stdin.close()
    assert proc.stdout is not None
    tail: list[str] = []
    for raw in proc.stdout:
        line = raw.decode("utf-8", errors="replace").rstrip()
        tail = [*tail[-40:], line]
        if stream and line.startswith(("I: ", "E: ", "W: ", "dracut: ", "Setting up linux-image")):
            report(phase, line)
    if proc.wait() != 0:
        raise UserError(f"image build step failed ({phase}): {' '.join(cmd[:3])} … exit {proc.returncode}\n"
                        + "\n".join(tail[-25:]))


def _build(target: Path, layout: Layout, report: Progress) -> None:
    t0 = time.monotonic()
    work = target.parent / f"work-{os.getpid()}"
    shutil.rmtree(work, ignore_errors=True)
    work.mkdir(parents=True)
    try:
        rootfs = work / "rootfs"
        mirror = apt_mirror()
        report("image", f"debootstrapping Debian {SUITE} from {mirror} (a few minutes)")
        customize = FILES_DIR / "customize.sh"
        _run(["mmdebstrap", "--mode=root", "--variant=minbase",
              "--aptopt=APT::Install-Recommends \"false\"",
              f"--include={','.join(PACKAGES)}",
              f"--customize-hook=bash {customize} \"$1\" {FILES_DIR} {KERNEL_PACKAGE}",
              SUITE, str(rootfs), f"deb {mirror} {SUITE} main"], report, "mmdebstrap", stream=True)
        report("image", f"root filesystem ready ({time.monotonic() - t0:.0f}s); assembling the disk")
        raw = _assemble(rootfs, work, layout, image_key(layout), report)
        shutil.rmtree(rootfs)
        report("image", "converting to qcow2")
        tmp = target.with_suffix(".tmp")
        _run(["qemu-img", "convert", "-O", "qcow2", str(raw), str(tmp)], report, "qemu-img")
        tmp.rename(target)
        manifest = {"key": image_key(layout), "builder": BUILDER_VERSION, "suite": SUITE,
                    "packages": list(PACKAGES), "mirror": mirror, "layout": layout.as_dict(),
                    "build_seconds": round(time.monotonic() - t0, 1)}
        (target.parent / "manifest.json").write_text(json.dumps(manifest, indent=2) + "\n")
        report("image", f"built {target} in {time.monotonic() - t0:.0f}s")
    finally:
        shutil.rmtree(work, ignore_errors=True)


def _dir_mib(path: Path) -> int:
    out = subprocess.run(["du", "-sxm", str(path)], check=True, capture_output=True, text=True).stdout
    return int(out.split()[0])


def _strip_identity(root: Path) -> None:
    """Per-machine identity is created on each machine's first boot, never baked in."""
    (root / "etc/machine-id").unlink(missing_ok=True)
    (root / "var/lib/dbus/machine-id").unlink(missing_ok=True)
    for key in (root / "etc/ssh").glob("ssh_host_*"):
        key.unlink()


def _flatcar_root_layout(root: Path) -> None:
    """ROOT holds only state, as on Flatcar: the pristine /etc moves to USR as the /etc overlay's
    lower dir (``/usr/share/flatcar/etc``; ROOT's /etc, the upper dir, starts empty), and Debian's
    package-manager state and kernel links go (Flatcar has neither on ROOT)."""
    lower = root / "usr/share/flatcar/etc"
    lower.parent.mkdir(parents=True, exist_ok=True)
    (root / "etc").rename(lower)
    (root / "etc").mkdir(mode=0o755)
    for rel in ("var/lib/dpkg", "var/lib/apt", "var/cache/apt", "var/cache/debconf", "var/log/apt"):
        shutil.rmtree(root / rel, ignore_errors=True)
    for path in [*root.glob("var/log/*.log"), *root.glob("vmlinuz*"), *root.glob("initrd.img*")]:
        path.unlink()


def _assemble(rootfs: Path, work: Path, layout: Layout, key: str, report: Progress) -> Path:
    kernels = sorted((rootfs / "boot").glob("vmlinuz-*"))
    if not kernels:
        raise UserError("image build: no kernel in the root filesystem")
    kver = kernels[-1].name.removeprefix("vmlinuz-")
    _strip_identity(rootfs)
    _flatcar_root_layout(rootfs)

    # EFI-SYSTEM: GRUB config, kernel, initramfs and the first-boot flag.
    esp = work / "esp"
    (esp / "grub").mkdir(parents=True)
    (esp / "flatcar").mkdir()
    shutil.copy(FILES_DIR / "grub/grub.cfg", esp / "grub/grub.cfg")
    shutil.copy(rootfs / f"boot/vmlinuz-{kver}", esp / "flatcar/vmlinuz")
    shutil.copy(rootfs / f"boot/initrd.img-{kver}", esp / "flatcar/initrd")
    (esp / "flatcar/first_boot").touch()
    esp_img = work / "esp.img"
    _run(["mkfs.fat", "-F", "32", "-n", "EFI-SYSTEM", "-i", key[:8], "-C", str(esp_img),
          str(layout.esp_mib * 1024)], report, "mkfs.fat")
    _run(["mcopy", "-s", "-i", str(esp_img), *(str(p) for p in sorted(esp.iterdir())), "::/"],
         report, "mcopy")

    # BIOS GRUB core image with an embedded config that finds EFI-SYSTEM.
    core = work / "core.img"
    _run(["grub-mkimage", "-O", "i386-pc", "-o", str(core), "-c", str(FILES_DIR / "grub/embedded.cfg"),
          "-p", "/grub", *GRUB_MODULES], report, "grub-mkimage")

    # USR-A: /usr, plus a factory copy of the pristine ROOT (but /etc, which the overlay's lower
    # dir provides) to recreate its base layout after a wipe or reset.
    usr = rootfs / "usr"
    factory = usr / "share/factory"
    factory.mkdir(parents=True)
    for entry in sorted(rootfs.iterdir()):
        if entry.name in ("usr", "boot", "etc"):
            continue
        _run(["cp", "-a", str(entry), str(factory / entry.name)], report, "factory")
    for name in ("boot", "oem"):
        (factory / name).mkdir(exist_ok=True)
    usr_mib = _dir_mib(usr) * 12 // 10 + layout.usr_headroom_mib
    usr_img = work / "usr.img"
    report("image", f"USR-A {usr_mib} MiB, ROOT {layout.root_mib} MiB (kernel {kver})")
    _run(["mkfs.ext4", "-q", "-L", "USR-A", "-U", str(_uuid(key, "usr")), "-d", str(usr),
          str(usr_img), f"{usr_mib}M"], report, "mkfs USR-A")
    shutil.rmtree(usr)
    usr.mkdir()
    for entry in (rootfs / "boot").iterdir():
        if entry.is_dir() and not entry.is_symlink():
            shutil.rmtree(entry)
        else:
            entry.unlink()

    root_img = work / "root.img"
    _run(["mkfs.ext4", "-q", "-L", "ROOT", "-U", str(_uuid(key, "root")), "-d", str(rootfs),
          str(root_img), f"{layout.root_mib}M"], report, "mkfs ROOT")

    oem = work / "oem"
    oem.mkdir()
    shutil.copy(FILES_DIR / "oem/grub.cfg", oem / "grub.cfg")
    oem_img = work / "oem.img"
    _run(["mkfs.ext4", "-q", "-L", "OEM", "-U", str(_uuid(key, "oem")), "-d", str(oem), str(oem_img),
          f"{layout.oem_mib}M"], report, "mkfs OEM")

    parts = [
        (Partition(2, "BIOS-BOOT", GUID_BIOS, 1), None),
        (Partition(1, "EFI-SYSTEM", GUID_EFI, layout.esp_mib), esp_img),
        (Partition(3, "USR-A", GUID_FLATCAR_USR, usr_mib), usr_img),
        (Partition(6, "OEM", GUID_LINUX, layout.oem_mib), oem_img),
        (Partition(9, "ROOT", GUID_FLATCAR_ROOT, layout.root_mib), root_img),
    ]
    return _write_disk(work / "disk.raw", parts, core, key, report)


def _uuid(key: str, what: str) -> uuid.UUID:
    return uuid.uuid5(uuid.NAMESPACE_URL, f"flatcar-infra-standin:{key}:{what}")


def _write_disk(raw: Path, parts: list[tuple[Partition, Path | None]], core: Path, key: str,
                report: Progress) -> Path:
    start = 2048  # sectors; 1 MiB alignment
    lines = ["label: gpt", f"label-id: {_uuid(key, 'disk')}"]
    placed: list[tuple[int, Path | None]] = []
    bios_lba = 0
    for part, img in parts:
        sectors = part.size_mib * _MIB // _SECTOR
        lines.append(f"{raw.name}{part.number} : start={start}, size={sectors}, type={part.type_guid}, "
                     f"uuid={_uuid(key, part.label)}, name=\"{part.label}\"")
        if part.label == "BIOS-BOOT":
            bios_lba = start
        placed.append((start, img))
        start += sectors
    with raw.open("wb") as fh:
        fh.truncate((start + 2048) * _SECTOR)
    _run(["sfdisk", "-q", str(raw)], report, "sfdisk", input=("\n".join(lines) + "\n").encode(),
         cwd=raw.parent)
    with raw.open("r+b") as out:
        for lba, img in placed:
            if img is not None:
                _copy_sparse(img, out, lba * _SECTOR)
                img.unlink()
    install_bios_grub(raw, core, bios_lba)
    return raw


def _copy_sparse(src: Path, out: object, offset: int) -> None:
    """Copy ``src`` into the open disk at ``offset``, skipping all-zero blocks (keeps it sparse)."""
    assert hasattr(out, "seek") and hasattr(out, "write")
    zero = bytes(_MIB)
    with src.open("rb") as fh:
        pos = offset
        while chunk := fh.read(_MIB):
            if chunk != zero[: len(chunk)]:
                out.seek(pos)
                out.write(chunk)
            pos += len(chunk)


def install_bios_grub(raw: Path, core: Path, core_lba: int) -> None:
    """What ``grub-bios-setup`` does for a BIOS-boot partition, on a file (no loop device):
    boot.img's code in the MBR, pointed at core.img's first sector, and core.img's blocklist
    pointed at the sectors after it."""
    boot = bytearray((GRUB_I386_DIR / "boot.img").read_bytes())
    image = bytearray(core.read_bytes())
    if len(boot) != _SECTOR:
        raise UserError(f"unexpected GRUB boot.img size {len(boot)}")
    struct.pack_into("<Q", boot, 0x5C, core_lba)  # GRUB_BOOT_MACHINE_KERNEL_SECTOR
    blocklist = _SECTOR - 12  # the diskboot blocklist entry at the end of core.img's first sector
    _start, length, _segment = struct.unpack_from("<QHH", image, blocklist)
    if length != (len(image) + _SECTOR - 1) // _SECTOR - 1:
        raise UserError("GRUB core.img layout not recognised (blocklist length)")
    if len(image) > 1024 * 1024:
        raise UserError("GRUB core.img does not fit the 1 MiB BIOS-BOOT partition")
    struct.pack_into("<Q", image, blocklist, core_lba + 1)
    with raw.open("r+b") as fh:
        mbr = bytearray(fh.read(_SECTOR))
        mbr[0:440] = boot[0:440]  # keep the disk signature and the protective MBR table
        fh.seek(0)
        fh.write(mbr)
        fh.seek(core_lba * _SECTOR)
        fh.write(image)


def prune(keep: str | None = None) -> list[Path]:
    """Remove cached images other than ``keep`` (default: the current key) that no process has
    open (a running VM holds its base image open through its overlay). Returns what was removed."""
    keep = keep or image_key()
    root = cache_dir() / "images"
    in_use = _open_files()
    removed = []
    for entry in sorted(root.iterdir()) if root.is_dir() else []:
        if entry.name == keep or not entry.is_dir():
            continue
        if any(str(p.resolve()) in in_use for p in entry.glob("*.qcow2")):
            continue
        shutil.rmtree(entry)
        removed.append(entry)
    return removed


def _open_files() -> set[str]:
    found: set[str] = set()
    for fd_dir in Path("/proc").glob("[0-9]*/fd"):
        with contextlib.suppress(OSError):
            for fd in fd_dir.iterdir():
                with contextlib.suppress(OSError):
                    found.add(os.readlink(fd))
    return found


def _print_progress(phase: str, message: str) -> None:
    from flatcar_infra import ui

    ui.progress(phase, message)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m flatcar_infra.testbed.image",
                                     description="Build or locate the cached Flatcar stand-in image.")
    sub = parser.add_subparsers(dest="cmd", required=True)
    b = sub.add_parser("build", help="build the image unless cached; print its path")
    b.add_argument("--force", action="store_true", help="rebuild even when cached")
    sub.add_parser("path", help="print the cached image's path (exit 1 when not built)")
    sub.add_parser("key", help="print the cache key of the current builder inputs")
    sub.add_parser("prune", help="remove cached images of other builder inputs that no VM uses")
    args = parser.parse_args(argv)
    from flatcar_infra import ui

    try:
        if args.cmd == "build":
            ui.emit(f"{build_image(_print_progress, force=args.force)}\n")
        elif args.cmd == "path":
            found = cached_image()
            if found is None:
                ui.error(f"no image built for key {image_key()} in {cache_dir()}")
                return 1
            ui.emit(f"{found}\n")
        elif args.cmd == "prune":
            for path in prune():
                ui.info(f"removed {path}")
        else:
            ui.emit(f"{image_key()}\n")
    except UserError as exc:
        ui.error(str(exc))
        return exc.exit_code
    return 0


if __name__ == "__main__":
    sys.exit(main())
