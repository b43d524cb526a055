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
from collections.abc import Awaitable, Callable, Sequence
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
    """The host presented a key other than the pinned one: possibly another machine (or an attack).
    Final: an answer, not an outage, so it is never retried."""


class AuthRefused(SshError):
    """The host answered and refused our key. Final: retrying the same key cannot help."""


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
        return SshTarget(
            self.host,
            self.port,
            self.user,
            self.identity_file,
            self.private_key,
            normalize_host_key(host_key),
            self.connect_timeout,
        )

    def with_key(self, private_key: str) -> SshTarget:
        """The same host and pin, logging in with another private key (key rotation)."""
        return SshTarget(
            self.host, self.port, self.user, None, private_key, self.host_key, self.connect_timeout
        )

    def public_key(self) -> str:
        """``TYPE BASE64`` of the key this target logs in with."""
        key = self._client_keys()[0]
        return " ".join(key.export_public_key("openssh").decode().split()[:2])

    def _client_keys(self) -> list[asyncssh.SSHKey]:
        if self.private_key:
            return [asyncssh.import_private_key(self.private_key)]
        if self.identity_file:
            return [asyncssh.read_private_key(self.identity_file)]
        raise SshError(
            f"no private key for {self.user}@{self.host}:{self.port}",
            "give an identity file or a private key",
        )


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
        raise UserError(
            f"not an OpenSSH public key line: {line!r}",
            "expected 'TYPE BASE64', e.g. the contents of /etc/ssh/ssh_host_ed25519_key.pub",
        )
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
        raise SshError(
            f"cannot read the host key of {host}:{port}: {str(exc) or type(exc).__name__}"
        ) from None
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

    async def __aexit__(
        self, et: type[BaseException] | None, e: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.close()

    async def close(self) -> None:
        self._conn.close()
        with contextlib.suppress(asyncio.TimeoutError, OSError, asyncssh.Error):
            await asyncio.wait_for(self._conn.wait_closed(), 5)

    async def run(
        self,
        command: str | list[str],
        *,
        input: bytes | None = None,
        timeout: float | None = 60.0,
        check: bool = False,
    ) -> CommandResult:
        """Run a command; ``list`` commands are shell-quoted. ``check`` raises on non-zero exit."""
        cmd = command if isinstance(command, str) else shlex.join(command)
        try:
            res = await asyncio.wait_for(
                self._conn.run(cmd, input=input, encoding=None, check=False), timeout
            )
        except TimeoutError:
            raise SshError(f"command timed out after {timeout:g}s on {self.target.host}: {cmd}") from None
        except (OSError, asyncssh.Error) as exc:
            raise SshError(
                f"connection to {self.target.host}:{self.target.port} lost while running {cmd!r}: {exc}"
            ) from None
        out = CommandResult(
            cmd,
            res.exit_status if res.exit_status is not None else -1,
            _as_bytes(res.stdout),
            _as_bytes(res.stderr),
        )
        if check and not out.ok:
            err = out.stderr.decode("utf-8", errors="replace").strip()
            raise SshError(
                f"command failed on {self.target.host} (exit {out.exit_status}): {cmd}"
                + (f"\n  {err}" if err else "")
            )
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
        raise SshError(
            f"cannot read {path} on {self.target.host}: "
            f"{res.stderr.decode('utf-8', errors='replace').strip()}"
        )

    async def write_file(self, path: str, data: bytes, *, mode: int = 0o644, sudo: bool = False) -> None:
        """Write atomically (temp file + rename) so an interruption never leaves half a file."""
        tmp = f"{path}.tmp-flatcar-infra"
        script = (
            f"umask 077 && cat > {shlex.quote(tmp)} && chmod {mode:o} {shlex.quote(tmp)} "
            f"&& mv -f {shlex.quote(tmp)} {shlex.quote(path)}"
        )
        cmd = ["sudo", "-n", "sh", "-c", script] if sudo else ["sh", "-c", script]
        await self.run(cmd, input=data, check=True)


async def connect(target: SshTarget) -> SshSession:
    """Log in once. Without a pinned host key this refuses: capture one with ``fetch_host_key``."""
    if not target.host_key:
        raise SshError(
            f"no host key pinned for {target.host}:{target.port}",
            "pass the host's public key, or capture it on first use",
        )
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
        raise AuthRefused(
            f"{target.user}@{target.host}:{target.port} refused our key: {exc.reason}",
            "authorize the key for that user on the host (its config's "
            "sshAuthorizedKeys), or log in with a key it accepts",
        ) from None
    except (TimeoutError, OSError, asyncssh.Error) as exc:
        raise SshError(
            f"cannot connect to {target.host}:{target.port}: {str(exc) or type(exc).__name__}"
        ) from None
    return SshSession(target, conn)


async def dial(
    targets: SshTarget | Sequence[SshTarget],
    *,
    timeout: float,
    tofu: bool = False,
    first_delay: float = 0.5,
    max_delay: float = 5.0,
    attempt_timeout: float | None = None,
    on_attempt: Callable[[int, float, SshError], None] | None = None,
) -> SshSession:
    """THE dialing loop: log in to one host until it answers or ``timeout`` seconds pass.

    ``targets``: the same host with its login keys in order of preference (key rotation: the
    new key first); each attempt tries them in turn. Exponential backoff between attempts, each
    attempt bounded by ``attempt_timeout`` (default: the target's connect timeout), never past the
    deadline. Final errors are raised at once, never retried: ``HostKeyMismatch`` (another
    machine, or an attack) and ``AuthRefused`` once every key was refused. ``tofu``: with no
    pinned key, capture the host's key on first contact (the session's target is then pinned;
    log its ``fingerprint``). Anything else is an outage: retried until the deadline, then an
    ``SshError`` naming the attempts and the last error.
    """
    keys = [targets] if isinstance(targets, SshTarget) else list(targets)
    if not keys:
        raise ValueError("dial: no target")
    t0 = time.monotonic()
    deadline = t0 + timeout
    delay = first_delay
    attempt = 0
    while True:
        attempt += 1
        last: SshError | None = None
        refused: list[AuthRefused] = []
        for target in keys:
            left = deadline - time.monotonic()
            per = max(1.0, min(attempt_timeout or target.connect_timeout, left))
            try:
                if target.host_key is None:
                    if not tofu:
                        raise SshError(
                            f"no host key pinned for {target.host}:{target.port}",
                            "pass the host's public key, or capture it on first use",
                        )
                    target = target.pinned(await fetch_host_key(target.host, target.port, timeout=per))
                    keys = [t.pinned(target.host_key or "") for t in keys]
                t = SshTarget(
                    target.host,
                    target.port,
                    target.user,
                    target.identity_file,
                    target.private_key,
                    target.host_key,
                    per,
                )
                session = await connect(t)
                session.target = target
                return session
            except (HostKeyMismatch, ValueError):
                raise
            except AuthRefused as exc:
                refused.append(exc)
            except SshError as exc:
                last = exc
                break  # the host itself did not answer: the other keys cannot do better now
        if refused and len(refused) == len(keys):
            raise AuthRefused(
                refused[-1].message
                if len(keys) == 1
                else f"{keys[0].user}@{keys[0].host}:{keys[0].port} refused every key we have ({len(keys)})",
                refused[-1].advice,
            )
        left = deadline - time.monotonic()
        err = last or (refused[-1] if refused else SshError("no answer"))
        if left <= 0:
            raise SshError(
                f"{keys[0].host}:{keys[0].port} did not answer SSH within {timeout:g}s "
                f"({attempt} attempt(s); last error: {err.message})"
            ) from None
        if on_attempt:
            on_attempt(attempt, time.monotonic() - t0, err)
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
