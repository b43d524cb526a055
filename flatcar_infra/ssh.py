"""SSH transport: the only place that dials hosts. Host keys are always checked.

A host key is either given (pinned) or captured once on first contact (trust on first use, the
caller stores it and pins it from then on). A key mismatch is refused before any command runs.
The transport knows how to run commands and move bytes; it knows nothing about Flatcar.
"""

from __future__ import annotations

import asyncio
import contextlib
import shlex
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from types import TracebackType
from typing import TypeVar

import asyncssh

from flatcar_infra.errors import UserError

T = TypeVar("T")


class SshError(UserError):
    """The host could not be reached or refused us."""


class HostKeyMismatch(SshError):
    """The host presented a key other than the pinned one: possibly another machine (or an attack)."""


@dataclass(frozen=True)
class SshTarget:
    """Where and how to log in. ``host_key`` is an OpenSSH public key line (``TYPE BASE64 [comment]``)."""

    host: str
    port: int = 22
    user: str = "core"
    identity_file: str | None = None
    private_key: str | None = field(default=None, repr=False)  # PEM/OpenSSH text; a secret
    host_key: str | None = None
    connect_timeout: float = 10.0

    def pinned(self, host_key: str) -> SshTarget:
        return SshTarget(self.host, self.port, self.user, self.identity_file, self.private_key,
                         normalize_host_key(host_key), self.connect_timeout)

    def _client_keys(self) -> list[asyncssh.SSHKey]:
        if self.private_key:
            return [asyncssh.import_private_key(self.private_key)]
        if self.identity_file:
            return [asyncssh.read_private_key(self.identity_file)]
        raise SshError(f"no private key for {self.user}@{self.host}:{self.port}",
                       "give an identity file or a private key")


@dataclass(frozen=True)
class CommandResult:
    command: str
    exit_status: int
    stdout: bytes
    stderr: bytes

    @property
    def ok(self) -> bool:
        return self.exit_status == 0

    @property
    def text(self) -> str:
        return self.stdout.decode("utf-8", errors="replace")


def normalize_host_key(line: str) -> str:
    """``TYPE BASE64`` without comment, validated, so two spellings of one key compare equal."""
    parts = line.strip().split()
    if len(parts) < 2:
        raise UserError(f"not an OpenSSH public key line: {line!r}", "expected 'TYPE BASE64', "
                        "e.g. the contents of /etc/ssh/ssh_host_ed25519_key.pub")
    try:
        key = asyncssh.import_public_key(f"{parts[0]} {parts[1]}")
    except (asyncssh.KeyImportError, ValueError) as exc:
        raise UserError(f"invalid host key {parts[0]} …: {exc}") from None
    return key.export_public_key("openssh").decode().split()[0] + " " + parts[1]


def fingerprint(host_key: str) -> str:
    """``SHA256:…`` as ``ssh-keygen -lf`` prints it: what people compare against a console."""
    parts = host_key.strip().split()
    try:
        key = asyncssh.import_public_key(f"{parts[0]} {parts[1]}")
    except (asyncssh.KeyImportError, ValueError, IndexError) as exc:
        raise UserError(f"invalid host key: {exc}") from None
    return f"{parts[0]} {key.get_fingerprint('sha256')}"


async def fetch_host_key(host: str, port: int, *, timeout: float = 10.0) -> str:
    """The host key a server presents, for trust on first use (no login, no command)."""
    try:
        key = await asyncio.wait_for(asyncssh.get_server_host_key(host, port), timeout)
    except (TimeoutError, OSError, asyncssh.Error) as exc:
        raise SshError(f"cannot read the host key of {host}:{port}: {exc or type(exc).__name__}") from None
    if key is None:
        raise SshError(f"{host}:{port} presented no host key")
    return normalize_host_key(key.export_public_key("openssh").decode())


class SshSession:
    """One authenticated connection with a pinned host key. Use ``connect()``."""

    def __init__(self, target: SshTarget, conn: asyncssh.SSHClientConnection) -> None:
        self.target = target
        self._conn = conn

    async def __aenter__(self) -> SshSession:
        return self

    async def __aexit__(self, et: type[BaseException] | None, e: BaseException | None,
                        tb: TracebackType | None) -> None:
        await self.close()

    async def close(self) -> None:
        self._conn.close()
        with contextlib.suppress(asyncio.TimeoutError, OSError, asyncssh.Error):
            await asyncio.wait_for(self._conn.wait_closed(), 5)

    async def run(self, command: str | list[str], *, input: bytes | None = None,
                  timeout: float | None = 60.0, check: bool = False) -> CommandResult:
        """Run a command; ``list`` commands are shell-quoted. ``check`` raises on non-zero exit."""
        cmd = command if isinstance(command, str) else shlex.join(command)
        try:
            res = await asyncio.wait_for(
                self._conn.run(cmd, input=input, encoding=None, check=False), timeout)
        except TimeoutError:
            raise SshError(f"command timed out after {timeout:g}s on {self.target.host}: {cmd}") from None
        except (OSError, asyncssh.Error) as exc:
            raise SshError(f"connection to {self.target.host}:{self.target.port} lost while "
                           f"running {cmd!r}: {exc}") from None
        out = CommandResult(cmd, res.exit_status if res.exit_status is not None else -1,
                            _as_bytes(res.stdout), _as_bytes(res.stderr))
        if check and not out.ok:
            err = out.stderr.decode("utf-8", errors="replace").strip()
            raise SshError(f"command failed on {self.target.host} (exit {out.exit_status}): {cmd}"
                           + (f"\n  {err}" if err else ""))
        return out

    async def read_file(self, path: str, *, sudo: bool = False, missing_ok: bool = False) -> bytes | None:
        """A file's bytes; ``None`` when it does not exist and ``missing_ok``."""
        cmd = ["sudo", "-n", "cat", "--", path] if sudo else ["cat", "--", path]
        res = await self.run(cmd)
        if res.ok:
            return res.stdout
        exists = await self.run(["sudo", "-n", "test", "-e", path] if sudo else ["test", "-e", path])
        if not exists.ok and missing_ok:
            return None
        raise SshError(f"cannot read {path} on {self.target.host}: "
                       f"{res.stderr.decode('utf-8', errors='replace').strip()}")

    async def write_file(self, path: str, data: bytes, *, mode: int = 0o644, sudo: bool = False) -> None:
        """Write atomically (temp file + rename) so an interruption never leaves half a file."""
        tmp = f"{path}.tmp-flatcar-infra"
        script = (f"umask 077 && cat > {shlex.quote(tmp)} && chmod {mode:o} {shlex.quote(tmp)} "
                  f"&& mv -f {shlex.quote(tmp)} {shlex.quote(path)}")
        cmd = ["sudo", "-n", "sh", "-c", script] if sudo else ["sh", "-c", script]
        await self.run(cmd, input=data, check=True)


async def connect(target: SshTarget) -> SshSession:
    """Log in once. Without a pinned host key this refuses: capture one with ``fetch_host_key``."""
    if not target.host_key:
        raise SshError(f"no host key pinned for {target.host}:{target.port}",
                       "pass the host's public key, or capture it on first use")
    pinned = normalize_host_key(target.host_key)
    host_pattern = target.host if target.port == 22 else f"[{target.host}]:{target.port}"
    known = asyncssh.import_known_hosts(f"{host_pattern} {pinned}\n")
    try:
        conn = await asyncio.wait_for(
            asyncssh.connect(
                target.host,
                port=target.port,
                username=target.user,
                client_keys=target._client_keys(),
                known_hosts=known,
                agent_path=None,
                config=None,
                connect_timeout=target.connect_timeout,
                keepalive_interval=5,
                keepalive_count_max=3,
            ),
            target.connect_timeout + 5,
        )
    except asyncssh.HostKeyNotVerifiable as exc:
        raise HostKeyMismatch(
            f"host key of {target.host}:{target.port} does not match the pinned key ({exc.reason})",
            "if the machine was really replaced, update the pinned host key; otherwise do not connect",
        ) from None
    except asyncssh.PermissionDenied as exc:
        raise SshError(f"{target.user}@{target.host}:{target.port} refused our key: {exc.reason}") from None
    except (TimeoutError, OSError, asyncssh.Error) as exc:
        raise SshError(f"cannot connect to {target.host}:{target.port}: "
                       f"{exc or type(exc).__name__}") from None
    return SshSession(target, conn)


async def wait_for_ssh(target: SshTarget, *, timeout: float = 600.0, first_delay: float = 1.0,
                       max_delay: float = 10.0,
                       on_attempt: Callable[[int, float, Exception], None] | None = None) -> SshSession:
    """Dial until the host answers, with exponential backoff and an overall deadline.

    A host-key mismatch is never retried: it is an answer, not an outage.
    """
    deadline = time.monotonic() + timeout
    delay = first_delay
    attempt = 0
    while True:
        attempt += 1
        try:
            return await connect(target)
        except HostKeyMismatch:
            raise
        except SshError as exc:
            left = deadline - time.monotonic()
            if left <= 0:
                raise SshError(f"{target.host}:{target.port} did not answer SSH within {timeout:g}s "
                               f"({attempt} attempts; last error: {exc.message})") from None
            if on_attempt:
                on_attempt(attempt, timeout - left, exc)
            await asyncio.sleep(min(delay, left))
            delay = min(delay * 2, max_delay)


def _as_bytes(data: bytes | str | None) -> bytes:
    if data is None:
        return b""
    return data.encode() if isinstance(data, str) else bytes(data)


def run_sync(coro_factory: Callable[[], Awaitable[T]]) -> T:
    """Run async SSH work from synchronous code (CLI, Pulumi provider, tests)."""
    async def _main() -> T:
        return await coro_factory()
    return asyncio.run(_main())


def read_public_key_file(path: str | Path) -> str:
    return normalize_host_key(Path(path).read_text())
