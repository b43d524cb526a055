"""The hook runner against a real OpenSSH server on 127.0.0.1: host key pinned, status passed on."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from flatcar_infra.components.hookrun import ENV_PREFIX, HOOK_COMMAND
from tests.support.sshd import Sshd, keygen, run_sshd


@pytest.fixture(scope="module")
def sshd(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Sshd]:
    with run_sshd(tmp_path_factory.mktemp("sshd")) as server:
        yield server


def hook(server: Sshd, command: str, host_key: str | None = None) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(ENV_PREFIX)}
    env.update(
        {
            f"{ENV_PREFIX}HOST": "127.0.0.1",
            f"{ENV_PREFIX}PORT": str(server.port),
            f"{ENV_PREFIX}USER": server.user,
            f"{ENV_PREFIX}HOST_KEY": host_key or server.host_key,
            f"{ENV_PREFIX}PRIVATE_KEY": server.identity_file.read_text(),
            f"{ENV_PREFIX}COMMAND": command,
        }
    )
    return subprocess.run(
        [sys.executable, "-m", "flatcar_infra.components.hookrun"],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )


def test_hook_runs_the_command_and_passes_its_output_and_status_on(sshd: Sshd) -> None:
    ok = hook(sshd, "echo drained; echo warn >&2")
    assert ok.returncode == 0 and ok.stdout == "drained\n" and "warn" in ok.stderr
    failed = hook(sshd, "exit 3")
    assert failed.returncode == 3


def test_hook_refuses_a_host_with_another_key(sshd: Sshd, tmp_path: Path) -> None:
    other = keygen(tmp_path / "other")
    res = hook(sshd, "touch should-not-run", host_key=other)
    assert res.returncode == 1
    assert "does not match the pinned key" in res.stderr
    assert "Traceback" not in res.stderr


def test_hook_without_its_environment_exits_2() -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith(ENV_PREFIX)}
    res = subprocess.run(
        [sys.executable, "-m", "flatcar_infra.components.hookrun"],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert res.returncode == 2 and f"{ENV_PREFIX}HOST" in res.stderr


def test_the_stored_command_runs_as_pulumi_command_runs_it(sshd: Sshd, tmp_path: Path) -> None:
    """``HOOK_COMMAND`` (what the state holds, identical on every machine) through ``/bin/sh -c``,
    pulumi-command's interpreter: the interpreter comes from ``FLATCAR_INFRA_PYTHON`` at run time,
    else ``python3`` on ``PATH``."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(ENV_PREFIX)}
    env.update(
        {
            f"{ENV_PREFIX}HOST": "127.0.0.1",
            f"{ENV_PREFIX}PORT": str(sshd.port),
            f"{ENV_PREFIX}USER": sshd.user,
            f"{ENV_PREFIX}HOST_KEY": sshd.host_key,
            f"{ENV_PREFIX}PRIVATE_KEY": sshd.identity_file.read_text(),
            f"{ENV_PREFIX}COMMAND": "echo from-the-hook",
        }
    )
    python3 = tmp_path / "bin" / "python3"  # a PATH whose python3 is this interpreter
    python3.parent.mkdir()
    python3.symlink_to(sys.executable)
    via_path = {**env, "PATH": f"{python3.parent}:/usr/bin:/bin"}
    via_path.pop("FLATCAR_INFRA_PYTHON", None)
    via_env = {**env, "PATH": "/usr/bin:/bin", "FLATCAR_INFRA_PYTHON": sys.executable}
    for e in (via_path, via_env):
        res = subprocess.run(
            ["/bin/sh", "-c", HOOK_COMMAND], env=e, capture_output=True, text=True, timeout=60
        )
        assert res.returncode == 0, res.stderr
        assert res.stdout == "from-the-hook\n"
