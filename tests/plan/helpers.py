"""Helpers for the plan tests: Ignition documents built in a few lines, the CLI run in-process,
and real git repositories in a temporary directory."""

from __future__ import annotations

import base64
import copy
import gzip
import json
import os
import subprocess
import urllib.parse
from pathlib import Path
from typing import Any

import pytest


def data_url(data: bytes | str, *, b64: bool = False, gz: bool = False) -> dict[str, Any]:
    raw = data.encode() if isinstance(data, str) else data
    if gz:
        return {
            "source": "data:;base64," + base64.b64encode(gzip.compress(raw, mtime=0)).decode(),
            "compression": "gzip",
        }
    if b64:
        return {"source": "data:;base64," + base64.b64encode(raw).decode()}
    return {"source": "data:," + urllib.parse.quote(raw.decode())}


def ign(**sections: Any) -> dict[str, Any]:
    doc: dict[str, Any] = {"ignition": {"version": "3.3.0"}}
    doc.update(copy.deepcopy(sections))
    return doc


def file_entry(path: str, contents: bytes | str | None = None, **kw: Any) -> dict[str, Any]:
    e: dict[str, Any] = {"path": path, **kw}
    if contents is not None:
        e["contents"] = data_url(contents)
    return e


def run_cli(argv: list[str], capsys: pytest.CaptureFixture[str]) -> tuple[int, str, str]:
    """``flatcar-infra ARGV`` in-process, through the real entry point."""
    from flatcar_infra.cli.main import main

    try:
        code = main(argv)
    except SystemExit as exc:  # argparse usage errors
        code = int(exc.code or 0)
    out = capsys.readouterr()
    return code, out.out, out.err


class Repo:
    """A real git repository in a temporary directory."""

    def __init__(self, root: Path) -> None:
        self.root = root
        root.mkdir(parents=True)
        self.git("init", "-q", "-b", "main")

    def git(self, *args: str) -> str:
        env = {
            **os.environ,
            "GIT_AUTHOR_NAME": "t",
            "GIT_AUTHOR_EMAIL": "t@example.invalid",
            "GIT_COMMITTER_NAME": "t",
            "GIT_COMMITTER_EMAIL": "t@example.invalid",
            "GIT_CONFIG_NOSYSTEM": "1",
            "HOME": str(self.root),
        }
        proc = subprocess.run(
            ["git", *args], cwd=self.root, env=env, capture_output=True, text=True, check=True
        )
        return proc.stdout

    def write(self, rel: str, text: str | dict[str, Any]) -> Path:
        p = self.root / rel
        p.parent.mkdir(parents=True, exist_ok=True)
        p.write_text(text if isinstance(text, str) else json.dumps(text), encoding="utf-8")
        return p

    def commit(self, message: str = "c") -> str:
        self.git("add", "-A")
        self.git("commit", "-q", "-m", message)
        return self.git("rev-parse", "HEAD").strip()
