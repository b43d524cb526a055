"""Boot a Flatcar stand-in (or a real Flatcar qemu image) under QEMU and drive it over SSH.

Each VM runs on a qcow2 overlay of the cached base image, gets its user-data through QEMU fw_cfg,
sits on QEMU user-mode networking with ``restrict=on`` (no way out), SSH forwarded on 127.0.0.1
only and exactly one ``guestfwd`` to the local bucket server. Its serial console goes to a log
file and a QMP socket allows fault injection. ``stop()`` always removes what ``start()`` made.

SSH is pinned: the host key is captured once on the first boot (trust on first use) and every
later connection must present the same key, so a reset that loses the host keys is detected.

A booted VM can be saved (``Vm.snapshot``: its disk frozen as a qcow2 overlay, its RAM and devices
as a QEMU migration stream) and restored in seconds instead of a boot, in place (``Vm.restore``)
or as new, independent VMs (``VmFactory.restore``). Host-side waits stretch with the host's load
(``time_scale``), because a loaded machine slows software emulation down several times.
"""

from __future__ import annotations

import asyncio
import contextlib
import ctypes
import os
import shlex
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Coroutine
from concurrent.futures import TimeoutError as FutureTimeout
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

import asyncssh

from flatcar_infra.errors import UserError
from flatcar_infra.procs import pid_alive
from flatcar_infra.ssh import (
    CommandResult,
    HostKeyMismatch,
    SshError,
    SshSession,
    SshTarget,
    connect,
    fetch_host_key,
)
from flatcar_infra.testbed.bucket import GUEST_BUCKET_HOST, free_port
from flatcar_infra.testbed.qmp import qmp_command

T = TypeVar("T")

#: fw_cfg name Debian's Ignition (the stand-in) reads; real Flatcar reads FLATCAR_FW_CFG.
STANDIN_FW_CFG = "opt/com.coreos/config"
FLATCAR_FW_CFG = "opt/org.flatcar-linux/config"
#: fw_cfg file the stand-in's emergency hook reads: seconds before it reboots after a failed boot
#: (Flatcar: always 300). Always present, fixed width, so that a restored snapshot can change it.
EMERGENCY_TIMEOUT_FW_CFG = "opt/org.flatcar-infra/emergency-timeout"
FLATCAR_EMERGENCY_TIMEOUT = 300
NIC_ID = "nic0"
DRIVE_ID = "disk0"
RELAY = Path(__file__).with_name("relay.py")
# Serial-console lines that mean the boot cannot reach SSH any more (fail fast, not at the timeout).
FATAL_CONSOLE = ("Entering emergency mode", "Kernel panic", "Cannot open access to console")
# The initramfs offers the emergency shell and reboots after the emergency timeout: fatal only
# when the caller does not expect that reboot.
EMERGENCY_PROMPT = "Press Enter for emergency shell or wait"
MAX_TIME_SCALE = 6.0


def time_scale() -> float:
    """How many times longer guest work takes now than on an idle machine (at least 1).

    ``$FLATCAR_INFRA_TIME_SCALE`` sets it. Otherwise, under software emulation it is the 1-minute
    load average per CPU (a VM's two vCPU threads alone make 1 on two cores), capped at
    ``MAX_TIME_SCALE``; under KVM it is 1.
    """
    env = os.environ.get("FLATCAR_INFRA_TIME_SCALE")
    if env:
        return max(1.0, float(env))
    if choose_accel() == "kvm":
        return 1.0
    return min(MAX_TIME_SCALE, max(1.0, os.getloadavg()[0] / (os.cpu_count() or 1)))


class Deadline:
    """A timeout that stretches while it runs: it ends once the time spent exceeds ``seconds``
    times the largest ``time_scale()`` seen since it started."""

    def __init__(self, seconds: float) -> None:
        self.seconds = seconds
        self.start = time.monotonic()
        self.scale = time_scale()

    def remaining(self) -> float:
        self.scale = max(self.scale, time_scale())
        return self.start + self.seconds * self.scale - time.monotonic()

    def expired(self) -> bool:
        return self.remaining() <= 0

    def describe(self) -> str:
        return f"{time.monotonic() - self.start:.0f}s ({self.seconds:g}s x load factor {self.scale:.1f})"


class VmError(UserError):
    """The VM did not start, died, or did not come up."""


@dataclass(frozen=True)
class ClientKey:
    """An ed25519 key pair for logging in as ``core``; the public line goes into the config."""

    private_path: Path
    public_line: str


def generate_client_key(directory: Path, name: str = "id_ed25519") -> ClientKey:
    directory.mkdir(parents=True, exist_ok=True)
    key = asyncssh.generate_private_key("ssh-ed25519", comment="flatcar-infra-testbed")
    path = directory / name
    path.write_bytes(key.export_private_key("openssh"))
    path.chmod(0o600)
    public = key.export_public_key("openssh").decode().strip()
    (directory / f"{name}.pub").write_text(public + "\n")
    return ClientKey(path, public)


def choose_accel() -> str:
    """``kvm`` when it really works, else ``tcg``; ``$FLATCAR_INFRA_ACCEL`` overrides.

    A ``/dev/kvm`` alone is not enough: here it is ``kvm_pvm`` (nested), under which OVMF fails and
    the Debian kernel hangs. Only the hardware modules count.
    """
    env = os.environ.get("FLATCAR_INFRA_ACCEL")
    if env in ("kvm", "tcg"):
        return env
    hardware = any(Path(f"/sys/module/{m}").exists() for m in ("kvm_intel", "kvm_amd"))
    if hardware and os.access("/dev/kvm", os.R_OK | os.W_OK):
        return "kvm"
    return "tcg"


@dataclass(frozen=True)
class VmSpec:
    """Everything that determines one QEMU invocation (pure data; ``qemu_command`` renders it)."""

    name: str
    overlay: Path
    user_data_file: Path | None
    ssh_port: int
    bucket_port: int | None
    serial_log: Path
    qmp_socket: Path
    pidfile: Path
    accel: str = "tcg"
    memory_mib: int = 1024
    cpus: int = 2
    fw_cfg_name: str = STANDIN_FW_CFG
    emergency_timeout: int = FLATCAR_EMERGENCY_TIMEOUT
    incoming: Path | None = None  # a migration stream (``Vm.snapshot``) to resume instead of booting


def qemu_command(spec: VmSpec, *, daemonize: bool = False) -> list[str]:
    accel = ["-accel", "kvm", "-cpu", "host"] if spec.accel == "kvm" else \
        ["-accel", "tcg,thread=multi", "-cpu", "max"]
    netdev = f"user,id=net0,restrict=on,hostfwd=tcp:127.0.0.1:{spec.ssh_port}-:22"
    if spec.bucket_port is not None:
        # One forward, to the bucket server only; a relay per connection (see relay.py for why).
        relay = f"{sys.executable} -I {RELAY} {spec.bucket_port}"
        netdev += f",guestfwd=tcp:{GUEST_BUCKET_HOST}:80-cmd:{relay}"
    cmd = [
        "qemu-system-x86_64", "-name", spec.name, "-nodefaults", "-machine", "pc", *accel,
        "-smp", str(spec.cpus), "-m", str(spec.memory_mib), "-display", "none",
        "-serial", f"file:{spec.serial_log}",
        "-qmp", f"unix:{spec.qmp_socket},server=on,wait=off",
        "-pidfile", str(spec.pidfile),
        "-drive", f"if=virtio,format=qcow2,file={spec.overlay},id={DRIVE_ID}",
        "-netdev", netdev, "-device", f"virtio-net-pci,netdev=net0,id={NIC_ID}",
        # A new generation ID on every start: a restored snapshot reseeds the guest's RNG.
        "-device", "vmgenid,guid=auto",
        "-fw_cfg", f"name={EMERGENCY_TIMEOUT_FW_CFG},string={spec.emergency_timeout:06d}",
    ]  # fmt: skip
    if spec.user_data_file is not None:
        cmd += ["-fw_cfg", f"name={spec.fw_cfg_name},file={spec.user_data_file}"]
    if spec.incoming is not None:
        cmd += ["-incoming", f"exec:zstd -q -d -c {shlex.quote(str(spec.incoming))}"]
    if daemonize:
        cmd.append("-daemonize")
    return cmd


def create_overlay(base: Path, overlay: Path) -> None:
    overlay.parent.mkdir(parents=True, exist_ok=True)
    res = subprocess.run(["qemu-img", "create", "-q", "-f", "qcow2", "-b", str(base.resolve()),
                          "-F", "qcow2", str(overlay)], capture_output=True, text=True)
    if res.returncode != 0:
        raise VmError(f"cannot create the overlay {overlay}: {res.stderr.strip()}")


class _Loop:
    """A private event loop thread so that synchronous callers can keep one SSH session open."""

    def __init__(self) -> None:
        self.loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self.loop.run_forever, name="vm-ssh", daemon=True)
        self._thread.start()

    def run(self, coro: Coroutine[Any, Any, T], timeout: float | None = None) -> T:
        fut = asyncio.run_coroutine_threadsafe(coro, self.loop)
        try:
            return fut.result(timeout)
        except FutureTimeout:
            fut.cancel()
            raise VmError(f"operation timed out after {timeout}s") from None

    def close(self) -> None:
        self.loop.call_soon_threadsafe(self.loop.stop)
        self._thread.join(5)
        if not self.loop.is_running():
            self.loop.close()


def _die_with_parent() -> None:
    """Test VMs must not outlive the test process, even if it is killed (PR_SET_PDEATHSIG)."""
    libc = ctypes.CDLL(None, use_errno=True)
    libc.prctl(1, signal.SIGTERM)


@dataclass(frozen=True)
class VmSnapshot:
    """A booted VM saved to disk (``Vm.snapshot``): ``disk`` is its qcow2 overlay of the base image,
    never written again (restored VMs get overlays on top of it), ``state`` its RAM and device state
    as a zstd-compressed QEMU migration stream. Restoring needs the same device set-up (memory,
    CPUs, accelerator, fw_cfg names and the user-data's size); ``config`` is the config the VM was
    booted from through the bucket, if any (restored copies get it in their own bucket object),
    ``user_data`` its user-data."""

    name: str
    disk: Path
    state: Path
    memory_mib: int
    cpus: int
    accel: str
    fw_cfg_name: str
    user_data: bytes | None = field(repr=False)
    host_key: str = field(repr=False)
    config: bytes | None = field(default=None, repr=False)

    def remove(self) -> None:
        shutil.rmtree(self.disk.parent, ignore_errors=True)


@dataclass
class Vm:
    """One VM. ``start()`` boots it; ``stop()`` (idempotent) tears everything down."""

    spec: VmSpec
    client_key: ClientKey
    user: str = "core"
    host_key: str | None = None
    workdir: Path | None = None  # removed by stop() when set (holds the overlay and sockets)
    _proc: subprocess.Popen[bytes] | None = field(default=None, repr=False)
    _loop: _Loop | None = field(default=None, repr=False)
    _session: SshSession | None = field(default=None, repr=False)
    _console_mark: int = field(default=0, repr=False)

    # ---- lifecycle -------------------------------------------------------------------------
    @classmethod
    def create(cls, name: str, *, image: Path, workdir: Path, user_data: bytes | None,
               client_key: ClientKey, bucket_port: int | None, serial_log: Path | None = None,
               fw_cfg_name: str = STANDIN_FW_CFG, memory_mib: int = 1024, cpus: int = 2,
               ssh_port: int | None = None, accel: str | None = None,
               emergency_timeout: int = FLATCAR_EMERGENCY_TIMEOUT, incoming: Path | None = None) -> Vm:
        """Prepare (not boot) a VM: overlay, user-data file and sockets under ``workdir``.

        ``emergency_timeout``: seconds the stand-in's initramfs waits before it reboots after a
        failed boot (Flatcar: 300; the test bed's one deviation). ``incoming``: resume this
        migration stream (with ``image`` the snapshot's disk) instead of booting.
        The QMP socket lives in a short directory of its own (a Unix socket path has a 108-byte limit).
        """
        if not 1 <= emergency_timeout <= 999_999:
            raise VmError(f"emergency_timeout must be 1-999999 seconds, not {emergency_timeout}")
        workdir.mkdir(parents=True, exist_ok=True)
        overlay = workdir / f"{name}.qcow2"
        create_overlay(image, overlay)
        ud_file = None
        if user_data is not None:
            ud_file = workdir / f"{name}.user-data.json"
            ud_file.write_bytes(user_data)
        sock_dir = Path(tempfile.mkdtemp(prefix="fi-vm-"))
        spec = VmSpec(name=name, overlay=overlay, user_data_file=ud_file,
                      ssh_port=ssh_port or free_port(), bucket_port=bucket_port,
                      serial_log=serial_log or workdir / f"{name}.serial.log",
                      qmp_socket=sock_dir / "qmp.sock", pidfile=sock_dir / "qemu.pid",
                      accel=accel or choose_accel(), memory_mib=memory_mib, cpus=cpus,
                      fw_cfg_name=fw_cfg_name, emergency_timeout=emergency_timeout, incoming=incoming)
        return cls(spec=spec, client_key=client_key, workdir=workdir)

    def start(self, *, daemonize: bool = False) -> None:
        """Boot (or, with ``spec.incoming``, resume a snapshot). ``daemonize``: QEMU outlives this
        process (the local target); otherwise it is a child that dies with us."""
        self.spec.serial_log.parent.mkdir(parents=True, exist_ok=True)
        self.spec.serial_log.touch()
        self._console_mark = self.spec.serial_log.stat().st_size
        cmd = qemu_command(self.spec, daemonize=daemonize)
        if daemonize:
            res = subprocess.run(cmd, capture_output=True, text=True, stdin=subprocess.DEVNULL)
            if res.returncode != 0:
                raise VmError(f"QEMU did not start: {res.stderr.strip()}")
        else:
            log = (self.spec.serial_log.parent / f"{self.spec.name}.qemu.log").open("ab")
            self._proc = subprocess.Popen(cmd, stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT,
                                          preexec_fn=_die_with_parent)
            log.close()
            time.sleep(0.5)
            if self._proc.poll() is not None:
                out = (self.spec.serial_log.parent / f"{self.spec.name}.qemu.log").read_text(errors="replace")
                raise VmError(f"QEMU exited at once ({self._proc.returncode}): {out.strip()[-800:]}")
        if self.spec.incoming is not None:
            self._resume_incoming()

    @property
    def pid(self) -> int | None:
        if self._proc is not None:
            return self._proc.pid
        try:
            return int(self.spec.pidfile.read_text().strip())
        except (OSError, ValueError):
            return None

    def is_running(self) -> bool:
        if self._proc is not None:
            return self._proc.poll() is None
        pid = self.pid
        return pid is not None and pid_alive(pid)

    def stop(self) -> None:
        """Power off and remove the overlay and sockets. Safe to call twice or after a crash."""
        self._drop_session()
        if self._loop is not None:
            self._loop.close()
            self._loop = None
        self._quit_qemu()
        shutil.rmtree(self.spec.qmp_socket.parent, ignore_errors=True)
        self.spec.overlay.unlink(missing_ok=True)
        if self.spec.user_data_file is not None:
            self.spec.user_data_file.unlink(missing_ok=True)

    def _quit_qemu(self) -> None:
        pid = self.pid
        if pid is not None and self.is_running():
            with contextlib.suppress(UserError, OSError, ValueError):
                qmp_command(self.spec.qmp_socket, "quit", timeout=5)
            _wait_gone(pid, self._proc, 10)
            if self.is_running():
                with contextlib.suppress(ProcessLookupError):
                    os.kill(pid, signal.SIGKILL)
                _wait_gone(pid, self._proc, 10)
        if self._proc is not None:
            with contextlib.suppress(subprocess.TimeoutExpired):
                self._proc.wait(5)
        self._proc = None
        self.spec.pidfile.unlink(missing_ok=True)

    # ---- snapshots ---------------------------------------------------------------------------
    def snapshot(self, directory: Path, *, config: bytes | None = None, resume: bool = True,
                 timeout: float = 600.0) -> VmSnapshot:
        """Save this running VM to ``directory``; with ``resume``, carry on from the saved state.

        The guest is paused, its RAM and device state streamed to a file, QEMU stopped and its
        overlay frozen as the snapshot's disk; then this VM resumes from the snapshot on a new
        overlay (same ports, same host key), or stays stopped. Every ``restore`` later starts from
        exactly here.
        """
        if self.host_key is None:
            raise VmError(f"VM {self.spec.name}: snapshot a VM only once SSH answered (wait_ssh)")
        directory.mkdir(parents=True, exist_ok=True)
        state = directory / "state.zst"
        disk = directory / "disk.qcow2"
        self._drop_session()
        deadline = Deadline(timeout)
        self.qmp("stop")
        self.qmp("migrate", {"uri": f"exec:zstd -q -1 -T0 -f -o {shlex.quote(str(state))}"})
        while True:
            info = self.qmp("query-migrate")
            status = info.get("status")
            if status == "completed":
                break
            if status in ("failed", "cancelled") or deadline.expired():
                raise VmError(f"VM {self.spec.name}: saving its state {status or 'timed out'}: "
                              f"{info.get('error-desc', '')}")
            time.sleep(0.2)
        self._quit_qemu()
        self.spec.overlay.rename(disk)
        disk.chmod(0o444)
        user_data = self.spec.user_data_file.read_bytes() if self.spec.user_data_file else None
        snap = VmSnapshot(name=self.spec.name, disk=disk, state=state, memory_mib=self.spec.memory_mib,
                          cpus=self.spec.cpus, accel=self.spec.accel, fw_cfg_name=self.spec.fw_cfg_name,
                          user_data=user_data, host_key=self.host_key, config=config)
        if resume:
            self.restore(snap)
        return snap

    def restore(self, snap: VmSnapshot) -> None:
        """Rewind this VM to ``snap`` (stop QEMU, resume the snapshot on a fresh overlay). Same
        ports and spec; the pinned host key becomes the snapshot's."""
        check_compatible(snap, self.spec)
        self._drop_session()
        self._quit_qemu()
        self.spec.overlay.unlink(missing_ok=True)
        create_overlay(snap.disk, self.spec.overlay)
        self.spec = VmSpec(**{**self.spec.__dict__, "incoming": snap.state})
        self.host_key = snap.host_key
        self.start()

    def _resume_incoming(self, timeout: float = 600.0) -> None:
        """Wait until QEMU loaded the migration stream, run the guest, log in again and set the
        guest's clock (it stood still while the snapshot was on disk)."""
        deadline = Deadline(timeout)
        while True:
            if not self.is_running():
                raise VmError(f"VM {self.spec.name}: QEMU exited while loading its snapshot\n"
                              f"{self._qemu_log_tail()}")
            with contextlib.suppress(UserError):
                status = self.qmp("query-status")["status"]
                if status == "paused":
                    self.qmp("cont")
                    break
                if status == "running":
                    break
            if deadline.expired():
                raise VmError(f"VM {self.spec.name}: snapshot not loaded after {deadline.describe()}")
            time.sleep(0.2)
        self._console_mark = self.spec.serial_log.stat().st_size
        self.wait_ssh(120)
        self.sync_clock()

    def sync_clock(self) -> None:
        """Set the guest's wall clock to the host's (after a restore it is behind by the time the
        snapshot spent on disk)."""
        self.run(f"sudo date -u -s @{time.time():.3f} >/dev/null")

    def _qemu_log_tail(self) -> str:
        path = self.spec.serial_log.parent / f"{self.spec.name}.qemu.log"
        with contextlib.suppress(OSError):
            return path.read_text(errors="replace").strip()[-800:]
        return ""

    # ---- console ---------------------------------------------------------------------------
    @property
    def serial_log(self) -> Path:
        return self.spec.serial_log

    def console_since_boot(self) -> str:
        try:
            with self.spec.serial_log.open("rb") as fh:
                fh.seek(self._console_mark)
                return fh.read().decode("utf-8", errors="replace")
        except OSError:
            return ""

    def serial_tail(self, lines: int = 40) -> str:
        try:
            text = self.spec.serial_log.read_text(errors="replace")
        except OSError:
            return ""
        return "\n".join(text.replace("\r", "\n").splitlines()[-lines:])

    def _check_alive(self, *, expect_emergency_reboot: bool = False) -> None:
        if not self.is_running():
            raise VmError(f"VM {self.spec.name} is not running (QEMU exited)\n{self.serial_tail()}")
        console = self.console_since_boot()
        fatal = FATAL_CONSOLE if expect_emergency_reboot else (*FATAL_CONSOLE, EMERGENCY_PROMPT)
        for marker in fatal:
            if marker in console:
                raise VmError(f"VM {self.spec.name} failed to boot ({marker!r} on the console)\n"
                              f"{self.serial_tail(60)}")

    # ---- SSH -------------------------------------------------------------------------------
    @property
    def target(self) -> SshTarget:
        """Where to log in; pinned to the host key once it is known."""
        return SshTarget("127.0.0.1", self.spec.ssh_port, self.user,
                         identity_file=str(self.client_key.private_path), host_key=self.host_key,
                         connect_timeout=20.0 * time_scale())

    def _runner(self) -> _Loop:
        if self._loop is None:
            self._loop = _Loop()
        return self._loop

    def wait_ssh(self, timeout: float = 600.0, *, expect_emergency_reboot: bool = False) -> str:
        """Wait until ``core`` can log in; returns the (pinned) host key.

        On the first boot the key is taken on first use; afterwards a different key raises
        ``HostKeyMismatch`` at once. A dead QEMU or an emergency shell fails fast, the emergency
        prompt too unless ``expect_emergency_reboot`` (the initramfs reboots after its emergency
        timeout). ``timeout`` stretches with the host's load (``Deadline``).
        """
        deadline = Deadline(timeout)
        self._drop_session()
        while True:
            self._check_alive(expect_emergency_reboot=expect_emergency_reboot)
            try:
                # Probe with a short key exchange first: while the guest boots, QEMU accepts the TCP
                # connection and nothing answers, so a long login timeout would be waited out in full.
                probe = 8 * deadline.scale
                seen = self._runner().run(fetch_host_key("127.0.0.1", self.spec.ssh_port, timeout=probe),
                                          probe + 12)
                if self.host_key is None:
                    self.host_key = seen  # trust on first use; pinned from now on
                self._session = self._runner().run(connect(self.target), 60 * deadline.scale)
                return self.host_key
            except HostKeyMismatch:
                raise
            except SshError as exc:
                if deadline.expired():
                    raise VmError(f"VM {self.spec.name}: no SSH after {deadline.describe()} ({exc.message})\n"
                                  f"{self.serial_tail()}") from None
            time.sleep(1.0)

    def close_ssh(self) -> None:
        """Close the cached SSH session (the VM keeps running)."""
        self._drop_session()

    def _drop_session(self) -> None:
        if self._session is not None and self._loop is not None:
            with contextlib.suppress(Exception):
                self._loop.run(self._session.close(), 10)
        self._session = None

    async def ssh(self) -> SshSession:
        """A new pinned session on the caller's event loop (``async with await vm.ssh() as s``)."""
        return await connect(self.target)

    def _ensure_session(self) -> SshSession:
        if self._session is None:
            self._session = self._runner().run(connect(self.target), 60 * time_scale())
        return self._session

    def run(self, command: str | list[str], *, check: bool = True, input: bytes | None = None,
            timeout: float = 120.0) -> CommandResult:
        """Run a command as ``core`` (shell string, or argv list that gets quoted). ``timeout``
        stretches with the host's load."""
        session = self._ensure_session()
        timeout *= time_scale()
        try:
            return self._runner().run(session.run(command, input=input, timeout=timeout, check=check),
                                      timeout + 30)
        except SshError as exc:
            if "lost" in exc.message or "timed out" in exc.message:
                self._drop_session()
            raise

    def sudo(self, command: str, **kw: Any) -> CommandResult:
        return self.run(["sudo", "-n", "sh", "-c", command], **kw)

    def read_file(self, path: str, *, sudo: bool = True, missing_ok: bool = False) -> bytes | None:
        session = self._ensure_session()
        return self._runner().run(session.read_file(path, sudo=sudo, missing_ok=missing_ok),
                                  90 * time_scale())

    def boot_id(self) -> str:
        return self.run("cat /proc/sys/kernel/random/boot_id").text.strip()

    def reboot(self, *, wait: bool = True, timeout: float = 600.0) -> str | None:
        """Reboot from inside (detached, so the SSH command returns first); with ``wait``, return
        the new boot_id once SSH answers again."""
        before = self.boot_id()
        self.run("sudo systemd-run --no-block --collect sh -c 'sleep 1; systemctl reboot'")
        self._drop_session()
        self._console_mark = self.spec.serial_log.stat().st_size
        if not wait:
            return None
        return self.wait_boot_id_change(before, timeout)

    def wait_boot_id_change(self, before: str, timeout: float = 600.0, *,
                            expect_emergency_reboot: bool = False) -> str:
        """Wait until the guest answers SSH with a boot_id other than ``before`` (the reboot
        happened). ``expect_emergency_reboot``: a failed boot's emergency prompt is not fatal, the
        initramfs reboots after its emergency timeout."""
        deadline = Deadline(timeout)
        time.sleep(3)
        while True:
            self.wait_ssh(max(10.0, deadline.remaining() / deadline.scale),
                          expect_emergency_reboot=expect_emergency_reboot)
            now = self.boot_id()
            if now != before:
                return now
            self._drop_session()
            if deadline.expired():
                raise VmError(f"VM {self.spec.name} did not reboot within {deadline.describe()}")
            time.sleep(2)

    # ---- fault injection (QMP) -------------------------------------------------------------
    def qmp(self, command: str, arguments: dict[str, Any] | None = None) -> Any:
        return qmp_command(self.spec.qmp_socket, command, arguments)

    def link_down(self) -> None:
        self.qmp("set_link", {"name": NIC_ID, "up": False})

    def link_up(self) -> None:
        self.qmp("set_link", {"name": NIC_ID, "up": True})

    def pause(self) -> None:
        self.qmp("stop")

    def resume(self) -> None:
        self.qmp("cont")

    def hard_reset(self) -> None:
        """Press the reset button: no shutdown, the next boot starts from firmware."""
        self._drop_session()
        self._console_mark = self.spec.serial_log.stat().st_size
        self.qmp("system_reset")


def check_compatible(snap: VmSnapshot, spec: VmSpec) -> None:
    """QEMU resumes a migration stream only into the same devices: refuse other set-ups clearly."""
    size = spec.user_data_file.stat().st_size if spec.user_data_file else None
    theirs = (snap.memory_mib, snap.cpus, snap.accel, snap.fw_cfg_name,
              None if snap.user_data is None else len(snap.user_data))
    ours = (spec.memory_mib, spec.cpus, spec.accel, spec.fw_cfg_name, size)
    if theirs != ours:
        raise VmError(f"snapshot {snap.name} cannot be restored into VM {spec.name}: saved with "
                      f"(memory, cpus, accel, fw_cfg name, user-data size) {theirs}, the VM has {ours}",
                      "restore into a VM made the same way (VmFactory.restore does)")


def _wait_gone(pid: int, proc: subprocess.Popen[bytes] | None, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc is not None:
            if proc.poll() is not None:
                return
        elif not pid_alive(pid):
            return
        time.sleep(0.2)
