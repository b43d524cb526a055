"""The SSH transport against a real OpenSSH server: pinned keys, refusal on mismatch, I/O."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from flatcar_infra.ssh import (
    HostKeyMismatch,
    SshError,
    SshTarget,
    connect,
    fetch_host_key,
    normalize_host_key,
    run_sync,
    wait_for_ssh,
)
from tests.support.sshd import Sshd, free_port, keygen, run_sshd


@pytest.fixture(scope="module")
def sshd(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Sshd]:
    with run_sshd(tmp_path_factory.mktemp("sshd")) as server:
        yield server


def target(s: Sshd, host_key: str | None) -> SshTarget:
    return SshTarget("127.0.0.1", s.port, s.user, identity_file=str(s.identity_file), host_key=host_key)


def test_trust_on_first_use_then_pinned(sshd: Sshd) -> None:
    key = run_sync(lambda: fetch_host_key("127.0.0.1", sshd.port))
    assert key == normalize_host_key(sshd.host_key)

    async def go() -> tuple[str, bytes | None, bytes | None]:
        async with await connect(target(sshd, key)) as s:
            res = await s.run(["echo", "hi there"], check=True)
            await s.write_file(str(sshd.root / "written"), b"\x00bytes\n", mode=0o600)
            data = await s.read_file(str(sshd.root / "written"))
            missing = await s.read_file(str(sshd.root / "nope"), missing_ok=True)
            return res.text, data, missing

    text, data, missing = run_sync(go)
    assert text == "hi there\n" and data == b"\x00bytes\n" and missing is None
    assert (sshd.root / "written").stat().st_mode & 0o777 == 0o600


def test_wrong_host_key_is_refused_before_any_command(sshd: Sshd, tmp_path: Path) -> None:
    other = keygen(tmp_path / "other")
    marker = sshd.root / "must-not-exist"

    async def go() -> None:
        async with await connect(target(sshd, other)) as s:
            await s.run(["touch", str(marker)])

    with pytest.raises(HostKeyMismatch) as exc:
        run_sync(go)
    assert "does not match the pinned key" in str(exc.value)
    assert not marker.exists()
    # wait_for_ssh treats a mismatch as an answer: it does not retry until the deadline
    with pytest.raises(HostKeyMismatch):
        run_sync(lambda: wait_for_ssh(target(sshd, other), timeout=60))


def test_no_pinned_key_is_refused(sshd: Sshd) -> None:
    with pytest.raises(SshError, match="no host key pinned"):
        run_sync(lambda: connect(target(sshd, None)))


def test_unreachable_host_times_out_with_attempts(sshd: Sshd) -> None:
    attempts: list[int] = []
    t = SshTarget("127.0.0.1", free_port(), sshd.user, identity_file=str(sshd.identity_file),
                  host_key=sshd.host_key, connect_timeout=1)
    with pytest.raises(SshError, match="did not answer SSH within"):
        run_sync(lambda: wait_for_ssh(t, timeout=2, first_delay=0.2,
                                      on_attempt=lambda n, _e, _x: attempts.append(n)))
    assert len(attempts) >= 2


def test_failed_command_raises_with_stderr(sshd: Sshd) -> None:
    async def go() -> None:
        async with await connect(target(sshd, sshd.host_key)) as s:
            await s.run("echo oops >&2; exit 3", check=True)

    with pytest.raises(SshError, match=r"exit 3.*\n.*oops"):
        run_sync(go)


def test_bad_host_key_line_is_a_user_error() -> None:
    with pytest.raises(Exception, match="not an OpenSSH public key line"):
        normalize_host_key("garbage")
