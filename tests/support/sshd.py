"""A real OpenSSH server on 127.0.0.1 for transport tests: own host key, own authorized key, own port."""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

SSHD = shutil.which("sshd") or "/usr/sbin/sshd"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


def keygen(path: Path, kind: str = "ed25519") -> str:
    subprocess.run(["ssh-keygen", "-q", "-t", kind, "-N", "", "-C", "", "-f", str(path)], check=True)
    return Path(f"{path}.pub").read_text().strip()


@dataclass(frozen=True)
class Sshd:
    port: int
    user: str
    host_key: str  # OpenSSH public key line of the server
    identity_file: Path  # client private key accepted by the server
    root: Path


@contextmanager
def run_sshd(workdir: Path) -> Iterator[Sshd]:
    """Start sshd in the foreground (-D) as the current user; stop it on exit."""
    workdir.mkdir(parents=True, exist_ok=True)
    host_pub = keygen(workdir / "host_ed25519")
    keygen(workdir / "client_ed25519")
    (workdir / "authorized_keys").write_text(Path(f"{workdir}/client_ed25519.pub").read_text())
    os.makedirs("/run/sshd", exist_ok=True)
    port = free_port()
    user = os.environ.get("USER") or "root"
    cfg = workdir / "sshd_config"
    cfg.write_text(
        f"Port {port}\nListenAddress 127.0.0.1\nHostKey {workdir}/host_ed25519\n"
        f"AuthorizedKeysFile {workdir}/authorized_keys\nPidFile {workdir}/sshd.pid\n"
        "StrictModes no\nUsePAM no\nPasswordAuthentication no\nKbdInteractiveAuthentication no\n"
        "PermitRootLogin prohibit-password\nLogLevel ERROR\n"
    )
    proc = subprocess.Popen([SSHD, "-D", "-e", "-f", str(cfg)], stderr=subprocess.PIPE)
    try:
        deadline = time.monotonic() + 10
        while True:
            try:
                socket.create_connection(("127.0.0.1", port), timeout=0.5).close()
                break
            except OSError:
                if proc.poll() is not None or time.monotonic() > deadline:
                    err = proc.stderr.read().decode() if proc.stderr else ""
                    raise RuntimeError(f"sshd did not start: {err}") from None
                time.sleep(0.05)
        yield Sshd(port, user, host_pub, workdir / "client_ed25519", workdir)
    finally:
        proc.terminate()
        proc.wait(timeout=10)
