"""``flatcar-infra validate --ignition``: the real Ignition validates the config and applies it to a
scratch root, so a config that compiles but fails at boot is caught before any host sees it."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from flatcar_infra.cli import main as cli_main
from tests.support.ignition import requires_ignition

pytestmark = [pytest.mark.ignition, requires_ignition]


def write(tmp_path: Path, name: str, files: list[dict[str, object]]) -> Path:
    p = tmp_path / name
    p.write_text(json.dumps({"ignition": {"version": "3.3.0"}, "storage": {"files": files}}))
    return p


def test_validate_ignition_applies_the_config(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    good = write(
        tmp_path, "good.ign", [{"path": "/etc/motd", "mode": 420, "contents": {"source": "data:,hi"}}]
    )
    assert cli_main.main(["validate", "--ignition", str(good)]) == 0
    assert "accepted and applied by the real Ignition" in capsys.readouterr().err
    # compiles (the owner's name is not ours to know) but Ignition's files stage fails at boot
    bad = write(
        tmp_path,
        "bad.ign",
        [
            {
                "path": "/etc/app.conf",
                "mode": 420,
                "user": {"name": "no-such-user"},
                "contents": {"source": "data:,x"},
            }
        ],
    )
    assert cli_main.main(["validate", str(bad)]) == 0
    assert cli_main.main(["validate", "--ignition", str(bad)]) == 1
    err = capsys.readouterr().err
    assert "the real Ignition rejects it" in err and "no-such-user" in err and "Traceback" not in err
