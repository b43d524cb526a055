"""Boot a Flatcar stand-in (or a real Flatcar qemu image) under QEMU and drive it over SSH.

Each VM runs on a qcow2 overlay of the cached base image, gets its user-data through QEMU fw_cfg,
sits on QEMU user-mode networking with ``restrict=on`` (no way out), SSH forwarded on 127.0.0.1
only and exactly one ``guestfwd`` to the local bucket server. Its serial console goes to a log
file and a QMP socket allows fault injection. ``stop()`` always removes what ``start()`` made.

SSH is pinned: the host key is captured once on the first boot (trust on first use) and every
later connection must present the same key, so a reset that loses the host keys is detected.
"""

from __future__ import annotations

import asyncio
import contextlib
import ctypes
import os
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
NIC_ID = "nic0"
RELAY = Path(__file__).with_name("relay.py")
# Serial-console lines that mean the boot cannot reach SSH any more (fail fast, not at the timeout).
FATAL_CONSOLE = ("Entering emergency mode", "Kernel panic", "Cannot open access to console")


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
        "-drive", f"if=virtio,format=qcow2,file={spec.overlay}",
        "-netdev", netdev, "-device", f"virtio-net-pci,netdev=net0,id={NIC_ID}",
    ]  # fmt: skip
    if spec.user_data_file is not None:
        cmd += ["-fw_cfg", f"name={spec.fw_cfg_name},file={spec.user_data_file}"]
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
               ssh_port: int | None = None, accel: str | None = None) -> Vm:
        """Prepare (not boot) a VM: overlay, user-data file and sockets under ``workdir``.

        The QMP socket lives in a short directory of its own (a Unix socket path has a 108-byte limit).
        """
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
                      fw_cfg_name=fw_cfg_name)
        return cls(spec=spec, client_key=client_key, workdir=workdir)

    def start(self, *, daemonize: bool = False) -> None:
        """Boot. ``daemonize``: QEMU outlives this process (the local target); otherwise it is a
        child that dies with us."""
        self.spec.serial_log.parent.mkdir(parents=True, exist_ok=True)
        self.spec.serial_log.touch()
        self._console_mark = self.spec.serial_log.stat().st_size
        cmd = qemu_command(self.spec, daemonize=daemonize)
        if daemonize:
            res = subprocess.run(cmd, capture_output=True, text=True, stdin=subprocess.DEVNULL)
            if res.returncode != 0:
                raise VmError(f"QEMU did not start: {res.stderr.strip()}")
            return
        log = (self.spec.serial_log.parent / f"{self.spec.name}.qemu.log").open("wb")
        self._proc = subprocess.Popen(cmd, stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT,
                                      preexec_fn=_die_with_parent)
        log.close()
        time.sleep(0.5)
        if self._proc.poll() is not None:
            out = (self.spec.serial_log.parent / f"{self.spec.name}.qemu.log").read_text(errors="replace")
            raise VmError(f"QEMU exited at once ({self._proc.returncode}): {out.strip()[-800:]}")

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
        shutil.rmtree(self.spec.qmp_socket.parent, ignore_errors=True)
        self.spec.overlay.unlink(missing_ok=True)
        if self.spec.user_data_file is not None:
            self.spec.user_data_file.unlink(missing_ok=True)

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
        return "\n".join(text.replace("\r", "").splitlines()[-lines:])

    def _check_alive(self) -> None:
        if not self.is_running():
            raise VmError(f"VM {self.spec.name} is not running (QEMU exited)\n{self.serial_tail()}")
        console = self.console_since_boot()
        for marker in FATAL_CONSOLE:
            if marker in console:
                raise VmError(f"VM {self.spec.name} failed to boot ({marker!r} on the console)\n"
                              f"{self.serial_tail(60)}")

    # ---- SSH -------------------------------------------------------------------------------
    @property
    def target(self) -> SshTarget:
        """Where to log in; pinned to the host key once it is known."""
        return SshTarget("127.0.0.1", self.spec.ssh_port, self.user,
                         identity_file=str(self.client_key.private_path), host_key=self.host_key,
                         connect_timeout=20.0)

    def _runner(self) -> _Loop:
        if self._loop is None:
            self._loop = _Loop()
        return self._loop

    def wait_ssh(self, timeout: float = 600.0) -> str:
        """Wait until ``core`` can log in; returns the (pinned) host key.

        On the first boot the key is taken on first use; afterwards a different key raises
        ``HostKeyMismatch`` at once. A dead QEMU or an emergency shell fails fast.
        """
        deadline = time.monotonic() + timeout
        self._drop_session()
        while True:
            self._check_alive()
            try:
                # Probe with a short key exchange first: while the guest boots, QEMU accepts the TCP
                # connection and nothing answers, so a long login timeout would be waited out in full.
                seen = self._runner().run(fetch_host_key("127.0.0.1", self.spec.ssh_port, timeout=8), 20)
                if self.host_key is None:
                    self.host_key = seen  # trust on first use; pinned from now on
                self._session = self._runner().run(connect(self.target), 60)  # verifies the pinned key
                return self.host_key
            except HostKeyMismatch:
                raise
            except SshError as exc:
                if time.monotonic() > deadline:
                    raise VmError(f"VM {self.spec.name}: no SSH within {timeout:g}s ({exc.message})\n"
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

    def run(self, command: str | list[str], *, check: bool = True, input: bytes | None = None,
            timeout: float = 120.0) -> CommandResult:
        """Run a command as ``core`` (shell string, or argv list that gets quoted)."""
        if self._session is None:
            self._session = self._runner().run(connect(self.target), 60)
        session = self._session
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
        if self._session is None:
            self._session = self._runner().run(connect(self.target), 60)
        return self._runner().run(self._session.read_file(path, sudo=sudo, missing_ok=missing_ok), 90)

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

    def wait_boot_id_change(self, before: str, timeout: float = 600.0) -> str:
        deadline = time.monotonic() + timeout
        time.sleep(3)
        while True:
            self.wait_ssh(max(10.0, deadline - time.monotonic()))
            now = self.boot_id()
            if now != before:
                return now
            self._drop_session()
            if time.monotonic() > deadline:
                raise VmError(f"VM {self.spec.name} did not reboot within {timeout:g}s")
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


def _wait_gone(pid: int, proc: subprocess.Popen[bytes] | None, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc is not None:
            if proc.poll() is not None:
                return
        elif not pid_alive(pid):
            return
        time.sleep(0.2)
