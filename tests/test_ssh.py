"""The SSH transport against a real OpenSSH server: pinned keys, refusal on mismatch, I/O."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from flatcar_infra.ssh import (
    AuthRefused,
    HostKeyMismatch,
    SshError,
    SshTarget,
    connect,
    dial,
    fetch_host_key,
    normalize_host_key,
    run_sync,
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
    # dial treats a mismatch as an answer: it does not retry until the deadline
    t0 = time.monotonic()
    with pytest.raises(HostKeyMismatch):
        run_sync(lambda: dial(target(sshd, other), timeout=60))
    assert time.monotonic() - t0 < 10


def test_refused_key_is_final_and_a_second_key_is_tried(sshd: Sshd, tmp_path: Path) -> None:
    keygen(tmp_path / "stranger")
    stranger = SshTarget("127.0.0.1", sshd.port, sshd.user, identity_file=str(tmp_path / "stranger"),
                         host_key=sshd.host_key)
    t0 = time.monotonic()
    with pytest.raises(AuthRefused, match="refused our key"):
        run_sync(lambda: dial(stranger, timeout=60))
    assert time.monotonic() - t0 < 10

    async def rotated() -> str:  # key rotation: the new key is not authorized yet, the old one is
        async with await dial([stranger, target(sshd, sshd.host_key)], timeout=30) as s:
            return str(s.target.identity_file)

    assert run_sync(rotated) == str(sshd.identity_file)
    with pytest.raises(AuthRefused, match="refused every key"):
        run_sync(lambda: dial([stranger, stranger], timeout=60))


def test_trust_on_first_use_through_dial(sshd: Sshd) -> None:
    async def go() -> str | None:
        async with await dial(target(sshd, None), timeout=30, tofu=True) as s:
            return s.target.host_key

    assert run_sync(go) == normalize_host_key(sshd.host_key)


def test_no_pinned_key_is_refused(sshd: Sshd) -> None:
    with pytest.raises(SshError, match="no host key pinned"):
        run_sync(lambda: connect(target(sshd, None)))


def test_unreachable_host_times_out_with_attempts(sshd: Sshd) -> None:
    attempts: list[int] = []
    t = SshTarget("127.0.0.1", free_port(), sshd.user, identity_file=str(sshd.identity_file),
                  host_key=sshd.host_key, connect_timeout=1)
    with pytest.raises(SshError, match="did not answer SSH within"):
        run_sync(lambda: dial(t, timeout=2, first_delay=0.2,
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
