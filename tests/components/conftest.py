"""Fixtures for the component tests: an SSH key pair and small configs."""

from __future__ import annotations

import warnings
from pathlib import Path

import asyncssh

# Imported before any Pulumi program runs: CPython 3.11.7 can fail to compile a module imported
# late in the session ("AST constructor recursion depth mismatch", cpython#106905), and the
# hypothesis plugin imports its package in the terminal summary.
import hypothesis  # noqa: F401
import pytest

from tests.components.mockgraph import BUTANE

with warnings.catch_warnings():  # the provider SDK warns about deprecated resources on import
    warnings.simplefilter("ignore", DeprecationWarning)
    import pulumi_digitalocean  # noqa: F401


@pytest.fixture(scope="session")
def ssh_key(tmp_path_factory: pytest.TempPathFactory) -> dict[str, str]:
    """A fresh ed25519 key: its private text, its public line and a file holding the private key."""
    key = asyncssh.generate_private_key("ssh-ed25519")
    d = tmp_path_factory.mktemp("ssh")
    path = d / "id_ed25519"
    private = key.export_private_key()  # exported once: each export salts a new check value
    path.write_bytes(private)
    path.chmod(0o600)
    return {
        "private": private.decode(),
        "public": key.export_public_key().decode().strip(),
        "file": str(path),
    }


@pytest.fixture
def butane_file(tmp_path: Path) -> Path:
    p = tmp_path / "web.bu"
    p.write_text(BUTANE)
    return p
