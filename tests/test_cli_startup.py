"""CLI start-up: a command loads only what it needs (the timing itself is ``bench/cli.py``).

Each check runs a fresh interpreter and reads ``sys.modules`` after the command: heavy libraries
(SSH, Pulumi, AWS, terminal rendering, templates, JSON Schema) must not be imported by a plain
``render``, by ``--help``, or by importing the entry point.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
HEAVY = ("asyncssh", "pulumi", "boto3", "botocore", "rich", "jinja2", "jsonschema", "cryptography")
CONFIG = ("variant: flatcar\nversion: 1.1.0\nstorage:\n  files:\n    - path: /etc/motd\n"
          "      contents: {inline: hi}\n")


def loaded_after(code: str, tmp_path: Path) -> set[str]:
    script = (
        "import json, sys\n"
        f"{code}\n"
        "print(json.dumps(sorted({m.split('.')[0] for m in sys.modules})), file=sys.__stderr__)\n"
    )
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    proc = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, env=env,
                          cwd=tmp_path, check=False)
    last = proc.stderr.strip().splitlines()[-1]
    return set(json.loads(last))


def test_importing_the_entry_point_loads_nothing_heavy(tmp_path: Path) -> None:
    assert not loaded_after("import flatcar_infra.cli.main", tmp_path) & set(HEAVY)


def test_render_loads_nothing_heavy(tmp_path: Path) -> None:
    (tmp_path / "c.bu").write_text(CONFIG)
    code = ("from flatcar_infra.cli.main import main\n"
            "assert main(['render', 'c.bu', '-o', 'c.ign']) == 0\n")
    assert not loaded_after(code, tmp_path) & set(HEAVY)
    assert json.loads((tmp_path / "c.ign").read_text())["storage"]["files"][0]["path"] == "/etc/motd"


def test_help_lists_every_command_without_loading_them(tmp_path: Path) -> None:
    code = ("from flatcar_infra.cli.main import main\n"
            "try:\n    main(['--help'])\nexcept SystemExit:\n    pass\n")
    assert not loaded_after(code, tmp_path) & set(HEAVY)
    out = subprocess.run([sys.executable, "-m", "flatcar_infra.cli.main", "--help"], capture_output=True,
                         text=True, env={**os.environ, "PYTHONPATH": str(REPO)}, check=True).stdout
    from flatcar_infra.cli.main import COMMANDS

    for name in COMMANDS:
        assert name in out


@pytest.mark.parametrize("extra", [["--var", "x=1"], []])
def test_what_a_feature_needs_is_loaded_when_used(tmp_path: Path, extra: list[str]) -> None:
    """Templates need Jinja2 and a failing config needs the schema library's wording: loaded then."""
    (tmp_path / "c.bu").write_text(CONFIG.replace("hi", "{{ x }}" if extra else "hi") + "  bogus: 1\n")
    code = ("from flatcar_infra.cli.main import main\n"
            f"main(['render', 'c.bu', *{extra!r}])\n")
    loaded = loaded_after(code, tmp_path)
    assert ("jinja2" in loaded) == bool(extra)
    assert "asyncssh" not in loaded and "pulumi" not in loaded
