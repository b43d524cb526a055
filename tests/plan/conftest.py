"""Fixtures for the plan tests: a real git repository as the current directory, the CLI."""

from __future__ import annotations

import importlib
from collections.abc import Callable
from pathlib import Path

import pytest

from tests.plan.helpers import Repo, run_cli


@pytest.fixture
def repo(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Repo:
    r = Repo(tmp_path / "repo")
    monkeypatch.chdir(r.root)
    return r


def _importable(name: str) -> bool:
    try:
        importlib.import_module(name)
    except ModuleNotFoundError:
        return False
    return True


@pytest.fixture
def cli(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> Callable[..., tuple[int, str, str]]:
    from flatcar_infra.cli import main

    # Other commands are written in parallel; the entry point must not depend on them here.
    monkeypatch.setattr(main, "COMMAND_MODULES", tuple(m for m in main.COMMAND_MODULES if _importable(m)))

    def run(*argv: str) -> tuple[int, str, str]:
        return run_cli(list(argv), capsys)

    return run
