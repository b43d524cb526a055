"""``flatcar-infra local up/list/down`` as a user runs it: real CLI processes, one real VM."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from flatcar_infra.compiler.api import STAMP_PATH
from flatcar_infra.ssh import SshTarget, connect, run_sync
from flatcar_infra.testbed import local

pytestmark = [pytest.mark.vm, pytest.mark.timeout(1200)]

BUTANE = """\
variant: flatcar
version: 1.0.0
storage:
  files:
    - path: /etc/hello
      mode: 0644
      contents:
        inline: "hello {{ who }}\\n"
"""


def cli(env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "flatcar_infra.cli.main", *args], env=env,
                          capture_output=True, text=True, timeout=1100)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    stat = Path(f"/proc/{pid}/stat")
    return stat.exists() and stat.read_text().split(")")[-1].split()[0] != "Z"


def test_local_up_list_down(tmp_path: Path, vm_image: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    home = tmp_path / "home"
    env = {**os.environ, "FLATCAR_INFRA_HOME": str(home)}
    monkeypatch.setenv("FLATCAR_INFRA_HOME", str(home))
    cfg = tmp_path / "web.bu"
    cfg.write_text(BUTANE)

    up = cli(env, "local", "up", "--name", "web", "--config", str(cfg), "--var", "who=world")
    try:
        assert up.returncode == 0, up.stderr
        out = json.loads(up.stdout)
        assert set(out) == {"name", "host", "port", "user", "identity_file", "host_key", "config_url",
                            "config_hash"}
        assert out["name"] == "web" and out["host"] == "127.0.0.1" and out["user"] == "core"
        assert out["config_url"].startswith("http://10.0.2.100/") and out["config_hash"].startswith("sha512-")
        assert "[boot" in up.stderr or "[machine" in up.stderr  # progress was shown

        target = SshTarget(out["host"], out["port"], out["user"], identity_file=out["identity_file"],
                           host_key=out["host_key"], connect_timeout=20)

        async def check() -> tuple[bytes, bytes]:
            async with await connect(target) as s:
                hello = await s.read_file("/etc/hello")
                stamp = await s.read_file(STAMP_PATH)
                return hello or b"", stamp or b""

        hello, stamp = run_sync(check)
        assert hello == b"hello world\n"
        assert stamp.decode().strip() == out["config_hash"]
        assert local.load_machine("web")["port"] == out["port"]

        # the same config again: the running VM is reused, same answer
        again = cli(env, "local", "up", "--name", "web", "--config", str(cfg), "--var", "who=world")
        assert again.returncode == 0 and json.loads(again.stdout) == out
        # a changed config is uploaded and reported, the VM is not rebooted
        changed = cli(env, "local", "up", "--name", "web", "--config", str(cfg), "--var", "who=moon")
        assert changed.returncode == 0 and "changed" in changed.stderr
        assert json.loads(changed.stdout)["config_hash"] != out["config_hash"]
        assert json.loads(changed.stdout)["port"] == out["port"]

        listed = [json.loads(line) for line in cli(env, "local", "list").stdout.splitlines()]
        assert [(m["name"], m["running"]) for m in listed] == [("web", True)]
    finally:
        state = local.load_machine("web") if (home / "local" / "web.json").exists() else None
        bucket = json.loads((home / "local" / "bucket.json").read_text()) \
            if (home / "local" / "bucket.json").exists() else None
        down = cli(env, "local", "down", "--all")
    assert down.returncode == 0, down.stderr
    assert state is not None and bucket is not None
    assert not _alive(int(state["pid"])) and not _alive(int(bucket["pid"]))
    assert not Path(state["overlay"]).exists()
    assert cli(env, "local", "list").stdout == ""


def test_local_cli_refuses_bad_input_without_side_effects(tmp_path: Path) -> None:
    env = {**os.environ, "FLATCAR_INFRA_HOME": str(tmp_path / "home")}
    bad = cli(env, "local", "up", "--name", "Bad_Name", "--config", str(tmp_path / "missing.bu"))
    assert bad.returncode == 1 and "invalid machine name" in bad.stderr and "Traceback" not in bad.stderr
    missing = cli(env, "local", "up", "--name", "ok", "--config", str(tmp_path / "missing.bu"))
    assert missing.returncode == 1 and "Traceback" not in missing.stderr
    usage = cli(env, "local", "down")
    assert usage.returncode == 2
    assert not (tmp_path / "home" / "local" / "bucket.json").exists()


def test_demo_stops_what_it_started_when_interrupted(tmp_path: Path, vm_image: Path) -> None:
    """scripts/local-demo.sh interrupted (Ctrl-C) while its VM boots: the VM and the bucket server
    it started are stopped, and it says so."""
    import signal
    import time

    home = tmp_path / "home"
    env = {**os.environ, "FLATCAR_INFRA_HOME": str(home), "NAME": "demo-int"}
    script = Path(__file__).parents[2] / "scripts" / "local-demo.sh"
    proc = subprocess.Popen(["bash", str(script)], env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            start_new_session=True)
    state_file = home / "local" / "demo-int.json"
    deadline = time.monotonic() + 300
    while not (state_file.exists() and json.loads(state_file.read_text()).get("pid")):
        assert proc.poll() is None and time.monotonic() < deadline, proc.communicate()[1].decode()[-2000:]
        time.sleep(0.5)
    state = json.loads(state_file.read_text())
    bucket = json.loads((home / "local" / "bucket.json").read_text())
    assert _alive(int(state["pid"])) and _alive(int(bucket["pid"]))
    os.killpg(proc.pid, signal.SIGINT)  # what Ctrl-C in a terminal does
    _, err = proc.communicate(timeout=300)
    assert proc.returncode == 130
    assert "== interrupted" in err.decode() and "== cleaning up: stopping 'demo-int'" in err.decode()
    assert not _alive(int(state["pid"])) and not _alive(int(bucket["pid"]))
    assert not state_file.exists() and not (home / "local" / "bucket.json").exists()
