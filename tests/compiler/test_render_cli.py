"""``flatcar-infra render`` / ``validate``: outputs, exit codes, messages."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from flatcar_infra.canonical import config_hash
from flatcar_infra.cli import main as cli_main


def cli(*argv: str) -> int:
    try:
        return cli_main.main(list(argv))
    except SystemExit as exc:  # argparse usage errors
        return int(exc.code or 0)


HEAD = "variant: flatcar\nversion: 1.0.0\nstorage:\n  files:\n"
GOOD = HEAD + "    - path: /etc/x\n      contents: {inline: '{{ v }}'}\n"
WARN = "variant: flatcar\nversion: 1.0.0\nstorage:\n  files:\n    - path: /etc/x\n      mode: 644\n"
BAD = "variant: flatcar\nversion: 1.0.0\nstorage:\n  files:\n    - path: etc/x\n      mode: 0644\n"


@pytest.fixture()
def work(tmp_path: Path) -> Path:
    (tmp_path / "good.yaml").write_text(GOOD)
    (tmp_path / "warn.yaml").write_text(WARN)
    (tmp_path / "bad.yaml").write_text(BAD)
    return tmp_path


def test_render_stdout_hash_pretty(work: Path, capsysbinary: pytest.CaptureFixture[bytes]) -> None:
    assert cli("render", str(work / "good.yaml"), "--var", "v=hello") == 0
    out = capsysbinary.readouterr().out
    assert json.loads(out)["storage"]["files"][0]["contents"]["source"] == "data:,hello"
    canonical = out
    assert cli("render", str(work / "good.yaml"), "--var", "v=hello", "--hash") == 0
    assert capsysbinary.readouterr().out == (config_hash(canonical) + "\n").encode()
    assert cli("render", str(work / "good.yaml"), "--var", "v=hello", "--pretty") == 0
    pretty = capsysbinary.readouterr().out
    assert b"\n  " in pretty and json.loads(pretty) == json.loads(canonical)


def test_vars_file_and_output_written_only_on_success(work: Path, capsys: pytest.CaptureFixture[str]) -> None:
    (work / "vars.yaml").write_text("v: from-file\n")
    out = work / "out.ign"
    assert cli("render", str(work / "good.yaml"), "--vars-file", str(work / "vars.yaml"), "-o", str(out)) == 0
    assert json.loads(out.read_text())["storage"]["files"][0]["contents"]["source"] == "data:,from-file"
    before = out.read_bytes()
    assert cli("render", str(work / "bad.yaml"), "-o", str(out)) == 1
    assert out.read_bytes() == before
    err = capsys.readouterr().err
    assert f"{work / 'bad.yaml'}:5:13: error: path 'etc/x' must be absolute [$.storage.files.0.path]" in err
    assert sorted(p.name for p in work.iterdir()) == [
        "bad.yaml",
        "good.yaml",
        "out.ign",
        "vars.yaml",
        "warn.yaml",
    ]


def test_missing_variable_names_it(work: Path, capsys: pytest.CaptureFixture[str]) -> None:
    (work / "t.yaml.j2").write_text(GOOD)
    assert cli("render", str(work / "t.yaml.j2")) == 1
    assert "t.yaml.j2:6:1: error: undefined template variable 'v'" in capsys.readouterr().err


def test_warnings_printed_and_strict(work: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert cli("render", str(work / "warn.yaml")) == 0
    assert ":6:13: warning: mode 644 is decimal" in capsys.readouterr().err
    assert cli("render", str(work / "warn.yaml"), "--strict") == 1


def test_usage_errors_exit_2(work: Path) -> None:
    assert cli("render") == 2
    assert cli("render", str(work / "good.yaml"), "--var", "novalue") == 2
    assert cli("render", str(work / "good.yaml"), "--files-dir", str(work / "nope")) == 2
    assert cli("render", str(work / "good.yaml"), "--hash", "--pretty") == 2


def test_unreadable_input_is_exit_1(work: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert cli("render", str(work / "missing.yaml")) == 1
    assert "cannot read" in capsys.readouterr().err


def test_validate_many_inputs(work: Path, capsys: pytest.CaptureFixture[str]) -> None:
    (work / "raw.ign").write_text(json.dumps({"ignition": {"version": "3.3.0"}}))
    assert cli("validate", str(work / "warn.yaml"), str(work / "raw.ign")) == 0
    assert cli("validate", str(work / "warn.yaml"), str(work / "bad.yaml"), str(work / "raw.ign")) == 1
    err = capsys.readouterr().err
    assert "bad.yaml:5:13: error" in err and "1 of 3 config(s) invalid" in err


def test_output_file_is_the_delivered_bytes_and_stamp_keeps_the_identity_hash(
    work: Path, capsysbinary: pytest.CaptureFixture[bytes]
) -> None:
    plain, stamped = work / "plain.ign", work / "stamped.ign"
    assert cli("render", str(work / "good.yaml"), "--var", "v=x", "-o", str(plain)) == 0
    assert cli("render", str(work / "good.yaml"), "--var", "v=x", "--stamp", "-o", str(stamped)) == 0
    assert cli("render", str(work / "good.yaml"), "--var", "v=x", "--stamp", "--hash") == 0
    identity = capsysbinary.readouterr().out.decode().strip()
    assert identity == config_hash(plain.read_bytes())
    files = json.loads(stamped.read_bytes())["storage"]["files"]
    stamp = next(f for f in files if f["path"] == "/etc/flatcar-infra/config-hash")
    assert identity in stamp["contents"]["source"]


def test_stdin_input(monkeypatch: pytest.MonkeyPatch, capsysbinary: pytest.CaptureFixture[bytes]) -> None:
    import io
    import sys

    def stdin(text: str) -> io.TextIOWrapper:
        return io.TextIOWrapper(io.BytesIO(text.encode()), encoding="utf-8")

    monkeypatch.setattr(sys, "stdin", stdin(WARN.replace("644", "0644")))
    assert cli("render", "-") == 0
    assert json.loads(capsysbinary.readouterr().out)["storage"]["files"][0]["mode"] == 0o644
    monkeypatch.setattr(sys, "stdin", stdin(BAD))
    assert cli("render", "-") == 1
    assert b"<stdin>:5:13: error: path 'etc/x' must be absolute" in capsysbinary.readouterr().err


def test_line_numbers_are_never_turned_into_emoji(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """rich would print ``web.bu:100:3`` as ``web.bu💯3`` (``:100:`` is an emoji code)."""
    (tmp_path / "web.bu").write_text("variant: flatcar\nversion: 1.0.0\n" + "#\n" * 97 + "storage: ]\n")
    assert cli("render", str(tmp_path / "web.bu")) == 1
    err = capsys.readouterr().err
    assert f"{tmp_path / 'web.bu'}:100:" in err and "\U0001f4af" not in err
