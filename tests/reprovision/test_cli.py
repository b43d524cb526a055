"""``flatcar-infra reprovision``: usage errors (exit 2), refusals (exit 1, host untouched), dry run."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest

from flatcar_infra.cli import main as cli_main
from tests.reprovision.helpers import ignition
from tests.support.sshd import Sshd, keygen, run_sshd


@pytest.fixture(scope="module")
def sshd(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Sshd]:
    with run_sshd(tmp_path_factory.mktemp("sshd")) as server:
        yield server


def run(argv: list[str]) -> int:
    try:
        return cli_main.main(["reprovision", *argv])
    except SystemExit as exc:  # argparse usage errors
        return int(exc.code or 0)


@pytest.fixture
def config(tmp_path: Path) -> Path:
    p = tmp_path / "c.ign"
    p.write_text(ignition({"/etc/app.conf": "v1\n"}))
    return p


def base(sshd: Sshd, config: Path) -> list[str]:
    return ["--host", "127.0.0.1", "--port", str(sshd.port), "--user", sshd.user,
            "--identity", str(sshd.identity_file), "--config", str(config)]


def test_usage_errors_exit_2(sshd: Sshd, config: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert run(base(sshd, config)) == 2  # no host key source
    assert run([*base(sshd, config), "--host-key", sshd.host_key, "--known-hosts", "/x"]) == 2
    assert run([*base(sshd, config), "--host-key", sshd.host_key, "--delivery", "url"]) == 2
    assert run([*base(sshd, config), "--host-key", sshd.host_key, "--keep-path", "relative/x"]) == 2
    assert run([*base(sshd, config), "--host-key", sshd.host_key, "--var", "novalue"]) == 2
    assert run([*base(sshd, config), "--host-key", sshd.host_key, "--identity", "/nonexistent"]) == 2
    assert run([*base(sshd, config), "--host-key", sshd.host_key, "--delivery", "pointer"]) == 2
    assert run([*base(sshd, config), "--host-key", sshd.host_key, "--keep-path", "/var/lib/app\\d+"]) == 2
    assert run([*base(sshd, config), "--host-key", sshd.host_key, "--confirm-window", "0"]) == 2
    assert run([*base(sshd, config), "--host-key", sshd.host_key, "--previous-config", "/nonexistent"]) == 2
    assert run([*base(sshd, config), "--host-key", sshd.host_key, "--config-source", "http://x"]) == 2
    err = capsys.readouterr().err
    assert "--delivery url needs --config-url" in err and "--keep-path" in err
    assert "--delivery pointer needs --config-url" in err and "'\\d' is Python-only" in err
    assert "--confirm-window: expected a positive number" in err and "--previous-config /nonexistent" in err
    assert "expected s3://BUCKET/KEY" in err
    assert "Traceback" not in err


def test_bad_config_exits_1_with_diagnostics(sshd: Sshd, tmp_path: Path,
                                             capsys: pytest.CaptureFixture[str]) -> None:
    bad = tmp_path / "bad.ign"
    bad.write_text('{"ignition": {"version": "3.3.0"}, "storage": {"files": [{"path": 7}]}}')
    assert run([*base(sshd, bad), "--host-key", sshd.host_key]) == 1
    assert "Traceback" not in capsys.readouterr().err


def test_wrong_host_key_exits_1(sshd: Sshd, config: Path, tmp_path: Path,
                                capsys: pytest.CaptureFixture[str]) -> None:
    other = keygen(tmp_path / "other")
    assert run([*base(sshd, config), "--host-key", other]) == 1
    assert "does not match the pinned key" in capsys.readouterr().err


def test_refusal_exits_1_and_says_the_host_was_not_changed(sshd: Sshd, config: Path,
                                                            capsys: pytest.CaptureFixture[str]) -> None:
    assert run([*base(sshd, config), "--host-key", sshd.host_key]) == 1
    err = capsys.readouterr().err
    assert "not Flatcar" in err and "host state: the host was not changed" in err


def test_dry_run_with_known_hosts_and_json(sshd: Sshd, config: Path, tmp_path: Path,
                                           capsys: pytest.CaptureFixture[str]) -> None:
    kh = tmp_path / "known_hosts"
    kh.write_text(f"[127.0.0.1]:{sshd.port} {sshd.host_key}\n")
    code = run([*base(sshd, config), "--known-hosts", str(kh), "--dry-run", "--json"])
    out, err = capsys.readouterr()
    assert code == 1  # this sshd is not a Flatcar host: the dry run shows the refusal
    data = json.loads(out)
    assert any("not Flatcar" in r for r in data["refused"])
    assert "+ file:/etc/app.conf" in data["changes"] and data["applied_hash"] is None
    assert "would run" not in err
    kh.write_text(f"otherhost {sshd.host_key}\n")
    assert run([*base(sshd, config), "--known-hosts", str(kh), "--dry-run"]) == 2
