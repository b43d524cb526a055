"""STAND-IN HOSTS FOR THE BENCH ONLY: many Flatcar-shaped hosts on one machine, cheap to reboot.

A fleet bench needs a dozen hosts whose reboot takes a FIXED time, so that what it measures is the
rollout's concurrency, not QEMU under software emulation. These are not Flatcar and are never used
by the tests (those run on the test-bed VMs); each one is:

- a network namespace of its own (``ip netns``) reached over a veth pair at 10.X.N.2 (a /16
  without a route yet), with a real OpenSSH server as the host's PID 1 (``unshare --pid``), in
  a chroot whose ROOT is a directory of its own, ``/usr`` an overlay of this machine's ``/usr``
  (plus the stand-in's ``os-release``, the test bed's ``flatcar-reset``, and
  a ``systemctl`` / ``systemd-run`` that know ``reboot``), ``/etc`` an overlay whose upper dir is
  ROOT's ``/etc`` (as on Flatcar), ``/oem`` and ``/boot`` separate directories, ``/run`` a fresh
  tmpfs per boot, and its own ``/proc/sys/kernel/random/boot_id``;
- "reboot" (``systemctl reboot``) ends PID 1, so every session dies at once; the supervisor waits
  ``reboot_seconds``, plays the initramfs (deletes what the staged regex does not keep, as the
  test bed's initrd-setup-root does, then the machine-id from ``/oem/grub.cfg``), plays
  Ignition's files stage (``data:`` files of ``/oem/config.ign`` when ``flatcar/first_boot`` is
  set, then ``/etc/.ignition-result.json``), writes a new boot id and starts the host again.

Needs root (namespaces, mounts). Everything is torn down on exit: the namespaces (and their veth
pairs), the host processes (by their pid), the directories.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import secrets
import shutil
import signal
import subprocess
import threading
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

from flatcar_infra.compiler.dataurl import decode_data_url

TESTBED = Path(__file__).resolve().parents[1] / "flatcar_infra/testbed/files/rootfs"

OS_RELEASE = (
    'NAME="Flatcar Container Linux by Kinvolk"\nID=flatcar\nVERSION_ID=3602.2.0\n'
    'PRETTY_NAME="Flatcar stand-in for the fleet bench"\n'
)
SYSTEMCTL = """#!/bin/sh
# bench stand-in: a healthy system whose reboot ends PID 1 (the host's sshd)
case "$1" in
  is-system-running) echo running ;;
  list-units) ;;
  reboot) touch /.standin-reboot; kill -TERM 1 ;;
  *) echo "systemctl (bench stand-in): $*" >&2; exit 1 ;;
esac
"""
SYSTEMD_RUN = """#!/bin/sh
# bench stand-in: run the command detached, like a transient unit
while [ $# -gt 0 ]; do
  case "$1" in
    --unit|-u) shift 2 ;;
    -*) shift ;;
    *) break ;;
  esac
done
setsid "$@" </dev/null >/dev/null 2>&1 &
"""
BOOT = """set -e
R=$1 D=$2
for d in usr etc .etc-work proc dev run tmp oem boot root; do mkdir -p "$R/$d"; done
for l in bin sbin lib lib64; do ln -sfn "usr/$l" "$R/$l"; done
mount --bind "$R" "$R"
mount -t overlay overlay -o "lowerdir=/usr,upperdir=$D/usr-upper,workdir=$D/usr-work" "$R/usr"
mount -t overlay overlay -o "lowerdir=/etc,upperdir=$R/etc,workdir=$R/.etc-work" "$R/etc"
mount --bind "$D/oem" "$R/oem"
mount --bind "$D/boot" "$R/boot"
mount -t proc proc "$R/proc"
mount --bind "$D/boot_id" "$R/proc/sys/kernel/random/boot_id"
mount --rbind /dev "$R/dev"
mount -t tmpfs tmpfs "$R/run"
mount -t tmpfs tmpfs "$R/tmp"
mkdir -p "$R/run/sshd"
exec chroot "$R" /usr/sbin/sshd -D -e -f /usr/share/standin/sshd_config
"""


@dataclass
class StandinHost:
    index: int
    name: str
    netns: str
    address: str
    dir: Path
    host_key: str = ""
    boots: int = 0
    proc: subprocess.Popen[bytes] | None = None
    stopping: bool = False
    log: list[str] = field(default_factory=list)

    @property
    def root(self) -> Path:
        return self.dir / "root"

    def boot_id(self) -> str:
        return (self.dir / "boot_id").read_text().strip()

    def applied_hash(self) -> str | None:
        p = self.root / "etc/flatcar-infra/config-hash"
        return p.read_text().strip() if p.exists() else None


def _run(*argv: str) -> None:
    subprocess.run(argv, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)


class StandinFleet:
    """``with StandinFleet(12, workdir, reboot_seconds=8, config=v1) as fleet: ...``"""

    def __init__(
        self, count: int, workdir: Path, *, reboot_seconds: float, config: bytes, client_public_key: str
    ) -> None:
        if os.geteuid() != 0:
            raise SystemExit("the bench's stand-in hosts need root (network namespaces, mounts)")
        tag = secrets.token_hex(2)
        self.subnet = _free_subnet()
        self.hosts = [
            StandinHost(
                i, f"standin-{i:02d}", f"fib-{tag}-{i}", f"{self.subnet}.{i}.2", workdir / f"standin-{i:02d}"
            )
            for i in range(1, count + 1)
        ]
        self.tag = tag
        self.reboot_seconds = reboot_seconds
        self.config = config
        self.client_public_key = client_public_key
        self.threads: list[threading.Thread] = []

    # --- lifecycle ------------------------------------------------------------------------------
    def __enter__(self) -> StandinFleet:
        try:
            for h in self.hosts:
                self._network(h)
                self._tree(h)
                _apply_boot(h, initial=self.config)
            for h in self.hosts:
                self._start(h)
            for h in self.hosts:
                _wait_port(h.address, 22, 20)
        except BaseException:
            self.__exit__()
            raise
        return self

    def __exit__(self, *exc: object) -> None:
        for h in self.hosts:
            h.stopping = True
            if h.proc and h.proc.poll() is None:
                h.proc.send_signal(signal.SIGTERM)
        for h in self.hosts:
            if h.proc:
                try:
                    h.proc.wait(timeout=10)
                except subprocess.TimeoutExpired:
                    h.proc.kill()
                    h.proc.wait()
        for t in self.threads:
            t.join(timeout=self.reboot_seconds + 15)
        for h in self.hosts:
            subprocess.run(["ip", "netns", "del", h.netns], stderr=subprocess.DEVNULL, check=False)
            shutil.rmtree(h.dir, ignore_errors=True)

    def _network(self, h: StandinHost) -> None:
        outer, inner = f"fb{self.tag}{h.index}a", f"fb{self.tag}{h.index}b"
        _run("ip", "netns", "add", h.netns)
        _run("ip", "link", "add", outer, "type", "veth", "peer", "name", inner)
        _run("ip", "link", "set", inner, "netns", h.netns)
        _run("ip", "addr", "add", f"{self.subnet}.{h.index}.1/30", "dev", outer)
        _run("ip", "link", "set", outer, "up")
        _run("ip", "netns", "exec", h.netns, "ip", "addr", "add", f"{h.address}/30", "dev", inner)
        _run("ip", "netns", "exec", h.netns, "ip", "link", "set", inner, "up")
        _run("ip", "netns", "exec", h.netns, "ip", "link", "set", "lo", "up")

    def _tree(self, h: StandinHost) -> None:
        d = h.dir
        for sub in (
            "root/etc/ssh",
            "usr-upper/local/sbin",
            "usr-upper/sbin",
            "usr-upper/lib",
            "usr-upper/share/standin",
            "usr-upper/share/flatcar",
            "usr-work",
            "oem",
            "boot/flatcar",
        ):
            (d / sub).mkdir(parents=True, exist_ok=True)
        up = d / "usr-upper"
        (up / "lib/os-release").write_text(OS_RELEASE)  # /etc/os-release links to it
        (up / "share/flatcar/release").write_text("FLATCAR_RELEASE_VERSION=3602.2.0\n")
        shutil.copy(TESTBED / "usr/sbin/flatcar-reset", up / "sbin/flatcar-reset")
        (up / "share/oem").unlink(missing_ok=True)
        (up / "share/oem").symlink_to("/oem")  # as on the test bed: the OEM partition is /oem
        for name, text in (("local/sbin/systemctl", SYSTEMCTL), ("local/sbin/systemd-run", SYSTEMD_RUN)):
            (up / name).write_text(text)
        for p in (
            up / "sbin/flatcar-reset",
            up / "local/sbin/systemctl",
            up / "local/sbin/systemd-run",
        ):
            p.chmod(0o755)
        (up / "share/standin/authorized_keys").write_text(self.client_public_key + "\n")
        (up / "share/standin/sshd_config").write_text(
            f"Port 22\nListenAddress {h.address}\nHostKey /etc/ssh/ssh_host_ed25519_key\n"
            "AuthorizedKeysFile /usr/share/standin/authorized_keys\nPidFile none\nStrictModes no\n"
            "UsePAM no\nPasswordAuthentication no\nKbdInteractiveAuthentication no\n"
            "PermitRootLogin prohibit-password\nLogLevel ERROR\nMaxStartups 100\n"
        )
        key = d / "root/etc/ssh/ssh_host_ed25519_key"
        _run("ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", "", "-f", str(key))
        h.host_key = Path(f"{key}.pub").read_text().strip()
        (d / "root/etc/machine-id").write_text(uuid.uuid4().hex + "\n")
        (d / "oem/grub.cfg").write_text("")
        (d / "boot_id").write_text(str(uuid.uuid4()) + "\n")

    def _start(self, h: StandinHost) -> None:
        h.boots += 1
        h.proc = subprocess.Popen(
            [
                "ip",
                "netns",
                "exec",
                h.netns,
                "unshare",
                "--mount",
                "--pid",
                "--fork",
                "--kill-child",
                "--propagation",
                "private",
                "sh",
                "-c",
                BOOT,
                "boot",
                str(h.root),
                str(h.dir),
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
        )
        t = threading.Thread(target=self._supervise, args=(h, h.proc), daemon=True)
        self.threads.append(t)
        t.start()

    def _supervise(self, h: StandinHost, proc: subprocess.Popen[bytes]) -> None:
        """Wait for the host to go down; if it asked to reboot, bring it back after the fixed time."""
        _, err = proc.communicate()
        if err:
            h.log.append(err.decode(errors="replace"))
        marker = h.root / ".standin-reboot"
        if h.stopping or not marker.exists():
            return
        marker.unlink()
        down = time.monotonic()
        _apply_boot(h)  # during the fixed reboot time, not added to it
        time.sleep(max(0.0, down + self.reboot_seconds - time.monotonic()))
        if h.stopping:
            return
        self._start(h)


def _free_subnet() -> str:
    """``10.X`` with no route on this machine yet (another run's stand-ins must not shadow ours)."""
    routes = subprocess.run(["ip", "-4", "route"], capture_output=True, text=True, check=True).stdout
    for x in range(213, 256):
        if f"10.{x}." not in routes:
            return f"10.{x}"
    raise RuntimeError("no free 10.X.0.0/16 for the stand-in hosts")


def _wait_port(host: str, port: int, timeout: float) -> None:
    import socket

    deadline = time.monotonic() + timeout
    while True:
        try:
            socket.create_connection((host, port), timeout=0.5).close()
            return
        except OSError:
            if time.monotonic() > deadline:
                raise RuntimeError(f"stand-in host {host} did not start") from None
            time.sleep(0.05)


def _apply_boot(h: StandinHost, *, initial: bytes | None = None) -> None:
    """The initramfs and Ignition of the stand-in, on the (stopped) host's directories."""
    root = h.root
    if root.resolve() == Path("/") or not root.resolve().is_relative_to(h.dir.resolve()):
        raise RuntimeError(f"refusing to reset {root}: not a stand-in host's directory")
    stage = root / "selective-os-reset"
    if stage.exists():
        # As the initramfs does: every path of ROOT the staged regex does not match, contents
        # before their directory, directories with rmdir (kept contents keep their parents),
        # never / or /usr, errors ignored. (Python's re for egrep: the regex flatcar-reset writes
        # is a plain alternation of paths.)
        kept = re.compile(stage.read_text().strip())
        for top, dirs, files in os.walk(root, topdown=False):
            for entry in [*files, *dirs]:
                path = os.path.join(top, entry)
                rel = "/" + os.path.relpath(path, root)
                if rel == "/usr" or kept.fullmatch(rel):
                    continue
                with contextlib.suppress(OSError):
                    if os.path.isdir(path) and not os.path.islink(path):
                        os.rmdir(path)
                    else:
                        os.unlink(path)
        stage.unlink(missing_ok=True)
        (root / "etc/machine-id").unlink(missing_ok=True)
    mid = re.search(r"systemd\.machine_id=([0-9a-f]{32})", (h.dir / "oem/grub.cfg").read_text())
    if not (root / "etc/machine-id").exists():
        (root / "etc").mkdir(parents=True, exist_ok=True)
        (root / "etc/machine-id").write_text((mid.group(1) if mid else uuid.uuid4().hex) + "\n")
    first_boot = h.dir / "boot/flatcar/first_boot"
    config = (
        initial
        if initial is not None
        else ((h.dir / "oem/config.ign").read_bytes() if first_boot.exists() else None)
    )
    if config is not None:
        for f in json.loads(config).get("storage", {}).get("files", []):
            dst = root / f["path"].lstrip("/")
            dst.parent.mkdir(parents=True, exist_ok=True)
            dst.write_bytes(decode_data_url(f["contents"]["source"]))
            dst.chmod(f.get("mode", 0o644))
        (root / "etc/.ignition-result.json").write_text(json.dumps({"provisioningDate": time.time()}))
        first_boot.unlink(missing_ok=True)
    (h.dir / "boot_id").write_text(str(uuid.uuid4()) + "\n")


@contextmanager
def standin_fleet(
    count: int, workdir: Path, *, reboot_seconds: float, config: bytes, client_public_key: str
) -> Iterator[StandinFleet]:
    with StandinFleet(
        count, workdir, reboot_seconds=reboot_seconds, config=config, client_public_key=client_public_key
    ) as fleet:
        yield fleet
