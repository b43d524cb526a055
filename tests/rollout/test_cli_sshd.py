"""``flatcar-infra rollout`` against REAL OpenSSH servers on 127.0.0.1 (no reboot here: the
rollouts that reboot run on test-bed VMs, tests/vm/test_fleet_rollout.py).

The sshd's host is Debian, not Flatcar: the procedure's own preflight refuses it, which is exactly
what a rollout must find out for every host before it changes any.
"""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

import pytest

from flatcar_infra.cli import main as cli_main
from flatcar_infra.reprovision.policy import Policy
from flatcar_infra.rollout.hosts import ssh_host
from flatcar_infra.rollout.policy import RolloutPolicy
from flatcar_infra.rollout.runner import run_rollout
from flatcar_infra.ssh import SshTarget
from tests.reprovision.helpers import desired, ignition
from tests.reprovision.test_host_sshd import flatcar_root
from tests.support.sshd import Sshd, free_port


def run(argv: list[str]) -> int:
    """``flatcar-infra rollout ARGV``'s exit code (argparse's usage errors included)."""
    try:
        return cli_main.main(["rollout", *argv])
    except SystemExit as exc:
        return int(exc.code or 0)


@pytest.fixture
def config(tmp_path: Path) -> Path:
    """A small stamped-able Ignition config every host gets."""
    (tmp_path / "c.ign").write_text(ignition({"/etc/app.conf": "v1\n"}))
    return tmp_path / "c.ign"


def inventory(
    tmp_path: Path, sshd: Sshd, names: list[str], *, extra: str = "", port: int | None = None
) -> Path:
    hosts = "".join(
        f"  - name: {n}\n    host: 127.0.0.1\n    port: {port or sshd.port}\n    user: {sshd.user}\n"
        f'    identity: {sshd.identity_file.name}\n    host_key: "{sshd.host_key}"\n'
        for n in names
    )
    p = sshd.identity_file.parent / f"inv-{tmp_path.name}.yaml"
    p.write_text(f"{extra}hosts:\n{hosts}")
    return p


def test_usage_errors_exit_2(
    sshd: Sshd, config: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    inv = str(inventory(tmp_path, sshd, ["a", "b"]))
    base = ["--inventory", inv, "--config", str(config)]
    assert run(base[:2]) == 2  # no --config
    assert run([*base, "--max-unavailable", "0"]) == 2
    assert run([*base, "--max-unavailable", "lots"]) == 2
    assert run([*base, "--canary", "2"]) == 2  # nothing left after the canary
    assert run([*base, "--keep-path", "var/lib"]) == 2
    assert run([*base, "--var", "novalue"]) == 2
    assert run(["--inventory", inv, "--config", str(tmp_path / "missing.bu")]) == 2
    assert run([*base, "--previous-config", str(tmp_path / "missing.ign")]) == 2
    assert run([*base, "--confirm-window", "-1"]) == 2
    err = capsys.readouterr().err
    assert "--max-unavailable" in err and "--canary" in err and "--keep-path" in err
    assert "--previous-config" in err and "--confirm-window" in err
    assert "Traceback" not in err


def test_inventory_errors_name_file_line_and_column(
    sshd: Sshd, config: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    inv = tmp_path / "inv.yaml"
    inv.write_text(
        "hosts:\n"
        "  - name: a\n    host: 127.0.0.1\n    port: 70000\n    identity: nope\n"
        '    host_key: "ssh-ed25519 AAAA"\n'
        '  - name: a\n    host: h\n    identity: /etc/hostname\n    host_key: "' + sshd.host_key + '"\n'
        "    colour: blue\n"
        "  - host: h2\n"
        "waves: [[zzz]]\n"
    )
    assert run(["--inventory", str(inv), "--config", str(config)]) == 1
    err = capsys.readouterr().err
    assert f"{inv}:4:11: error: not a TCP port: 70000 [$.hosts.0.port]" in err
    assert "[$.hosts.0.identity]" in err and "does not exist" in err
    assert "[$.hosts.0.host_key]" in err
    assert f"{inv}:7:11: error: duplicate host name 'a' (first at line 2)" in err
    assert "unknown key 'colour'" in err and f"{inv}:12:5: error: required key 'name' is missing" in err
    assert "no host named 'zzz'" in err and "inventory invalid" in err and "Traceback" not in err


def test_every_host_is_checked_before_any_change(
    sshd: Sshd, config: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """A refusing host (not Flatcar) and an unreachable one fail before anything starts: the
    rollout halts with the others not started, exit 1, and says why per host."""
    dead = free_port()
    inv = inventory(tmp_path, sshd, ["web-1", "web-2"])
    text = inv.read_text() + (
        f"  - name: web-3\n    host: 127.0.0.1\n    port: {dead}\n"
        f'    identity: {sshd.identity_file}\n    host_key: "{sshd.host_key}"\n'
    )
    inv.write_text(text)
    code = run(
        [
            "--inventory",
            str(inv),
            "--config",
            str(config),
            "--json",
            "--max-unavailable",
            "2",
            "--failure-budget",
            "2",
        ]
    )
    out, err = capsys.readouterr()
    assert code == 1
    data = json.loads(out)
    assert data["result"] == "halted" and data["max_unavailable"] == 2
    hosts = {h["name"]: h for h in data["hosts"]}
    assert [h["name"] for h in data["hosts"]] == ["web-1", "web-2", "web-3"]
    for n in ("web-1", "web-2"):
        assert hosts[n]["result"] == "failed" and "not Flatcar" in hosts[n]["message"]
        assert hosts[n]["started_at"] is None and hosts[n]["finished_at"] is None
    assert hosts["web-3"]["result"] == "failed" and "preflight" in hosts["web-3"]["message"]
    assert set(hosts["web-1"]) >= {"name", "result", "applied_hash", "started_at", "finished_at"}
    assert "web-1 preflight" in err and "Traceback" not in err


def test_dry_run_shows_the_waves_and_changes_nothing(
    sshd: Sshd, config: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    inv = inventory(tmp_path, sshd, ["a", "b", "c", "d"])
    code = run(
        [
            "--inventory",
            str(inv),
            "--config",
            str(config),
            "--dry-run",
            "--json",
            "--canary",
            "1",
            "--max-unavailable",
            "50%",
        ]
    )
    out, err = capsys.readouterr()
    data = json.loads(out)
    assert data["dry_run"] is True
    assert [(w["wave"], w["hosts"], w["canary"]) for w in data["waves"]] == [
        (1, ["a"], True),
        (2, ["b", "c"], False),
        (3, ["d"], False),
    ]
    assert all(h["result"] == "not-started" for h in data["hosts"])
    assert code == 1  # the dry run found refusals: the real run would fail
    assert "wave 1/3 (canary)" in err and "dry run: nothing was changed" in err


def test_hosts_already_on_the_config_are_verified_only(sshd: Sshd, tmp_path: Path) -> None:
    """Through the runner with a scratch root per host (the sshd's filesystem stands in for two
    Flatcar hosts): both already run the desired config, so both are verified without a reboot."""
    d = desired(policy=Policy(health_checks=("test -d /",)))
    hosts = []
    for n in ("a", "b"):
        root = flatcar_root(tmp_path / n, stamp=d.config_hash)
        target = SshTarget(
            "127.0.0.1", sshd.port, sshd.user, identity_file=str(sshd.identity_file), host_key=sshd.host_key
        )
        hosts.append(ssh_host(n, target, d, root=str(root)))
    lines: list[str] = []
    rep = asyncio.run(
        run_rollout(hosts, RolloutPolicy(), report=lambda p, m, e=None: lines.append(f"{p}: {m}"))
    )
    assert rep.result == "succeeded" and [h.result for h in rep.hosts] == ["unchanged", "unchanged"]
    assert all(h.applied_hash == d.config_hash for h in rep.hosts) and rep.peak_unavailable == 0
    assert any("already on the config: verify only" in line for line in lines)
    assert any(line.startswith("a verify") for line in lines)


def test_previous_config_is_the_rollback_target_only_where_it_stamps_the_running_hash(
    sshd: Sshd, tmp_path: Path
) -> None:
    """A fleet that runs a config it has no copy of (first booted from a pointer, say): without a
    rollback target every host is refused before anything changes; ``--previous-config`` (here:
    ``ssh_host(previous=...)``) is that target on each host whose running hash it stamps, and
    never on a host that runs something else."""
    from flatcar_infra.rollout.hosts import preflight
    from flatcar_infra.ssh import run_sync
    from tests.reprovision.helpers import OLD, compiled

    d = desired({"/etc/app.conf": "v2\n"})
    other = compiled({"/etc/app.conf": "something else\n"})
    target = SshTarget(
        "127.0.0.1", sshd.port, sshd.user, identity_file=str(sshd.identity_file), host_key=sshd.host_key
    )
    root = str(flatcar_root(tmp_path / "host", stamp=OLD.hash))

    def refusal(previous: bytes | None) -> str | None:
        return run_sync(lambda: preflight(target, d, root=root, previous=previous)).refusal

    assert "cannot roll back" in (refusal(None) or "")
    assert "cannot roll back" in (refusal(other.canonical) or "")
    assert "cannot roll back" not in (refusal(OLD.canonical) or "")
