"""Fixtures for the rollout tests: one real sshd on 127.0.0.1 per module."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.support.sshd import Sshd, run_sshd


@pytest.fixture(scope="module")
def sshd(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Sshd]:
    with run_sshd(tmp_path_factory.mktemp("sshd")) as server:
        yield server
