"""The REAL Ignition for tests: the package's runner (``flatcar_infra.ignition_tool``) plus what
only tests need.

``apply_config`` here refuses configs with non-loopback remote sources (tests never leave
127.0.0.1); ``requires_ignition`` skips only when the binaries are not installed and never on CI;
``assert_applied`` checks a scratch root against the document.
"""

from __future__ import annotations

import gzip
import json
import os
import re
import stat
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import pytest

from flatcar_infra import ignition_tool
from flatcar_infra.compiler.dataurl import decode_data_url
from flatcar_infra.ignition_tool import (
    CORE_USER,
    FLATCAR_GROUPS,
    IGNITION_BIN,
    IGNITION_VALIDATE,
    ROOT_USER,
    SPEC_34_ONLY_KEYS,
    IgnitionFailed,
    User,
    ValidateResult,
    ignition_validate,
    prepare_root,
)

__all__ = ["CORE_USER", "FLATCAR_GROUPS", "IGNITION_BIN", "IGNITION_VALIDATE", "ROOT_USER",
           "SPEC_34_ONLY_KEYS", "IgnitionFailed", "User", "ValidateResult", "apply_config",
           "assert_applied", "ignition_validate", "prepare_root", "preset_lines", "requires_ignition"]

requires_ignition = pytest.mark.skipif(
    not ignition_tool.available() and not os.environ.get("CI"),
    reason="Debian package 'ignition' is not installed",
)


def apply_config(config: bytes, root: Path, users: Sequence[User] = (CORE_USER,), *,
                 work: Path | None = None, groups: Mapping[str, int] = FLATCAR_GROUPS) -> Path:
    """``ignition_tool.apply_config``, refusing remote sources other than loopback first."""
    _refuse_remote_sources(config)
    return ignition_tool.apply_config(config, root, users, work=work, groups=groups)


_LOOPBACK = re.compile(r"^(https?|tftp)://(127\.0\.0\.1|\[::1\]|localhost)(:\d+)?(/|$)")


def _refuse_remote_sources(config: bytes) -> None:
    """Tests may only use loopback: Ignition would fetch http(s)/s3/gs sources from the internet
    (and retry for minutes without one). ``data:`` and loopback URLs are allowed."""

    def walk(node: object, path: str) -> None:
        if isinstance(node, dict):
            src = node.get("source")
            if isinstance(src, str) and not (src.startswith("data:") or _LOOPBACK.match(src)):
                raise ValueError(f"refusing to apply a config that fetches {src!r} ({path}.source)")
            for k, v in node.items():
                walk(v, f"{path}.{k}")
        elif isinstance(node, list):
            for i, v in enumerate(node):
                walk(v, f"{path}.{i}")

    walk(json.loads(config), "$")


def preset_lines(root: Path) -> list[str]:
    """The ``enable``/``disable`` lines Ignition wrote for ``enabled:`` units."""
    p = root / "etc/systemd/system-preset/20-ignition.preset"
    return p.read_text().splitlines() if p.exists() else []


def assert_applied(doc: dict[str, Any], root: Path) -> int:
    """Check that ``root`` holds what the Ignition document ``doc`` says: file contents (appends
    included) and modes, directories, soft and hard links, units, drop-ins, masks, presets and SSH
    keys. Owners are left to specific tests. Returns how many things were checked."""
    checked = 0
    storage = doc.get("storage") or {}
    for f in storage.get("files") or []:
        p = root / f["path"].lstrip("/")
        expected = b""
        for res in [f.get("contents") or {}, *(f.get("append") or [])]:
            if res.get("source"):
                data = decode_data_url(res["source"])
                expected += gzip.decompress(data) if res.get("compression") == "gzip" else data
        assert p.read_bytes() == expected, f["path"]
        assert stat.S_IMODE(p.stat().st_mode) == (f.get("mode") if f.get("mode") is not None else 0o644), f[
            "path"
        ]
        checked += 1
    for d in storage.get("directories") or []:
        p = root / d["path"].lstrip("/")
        assert p.is_dir(), d["path"]
        assert stat.S_IMODE(p.stat().st_mode) == (d.get("mode") if d.get("mode") is not None else 0o755), d[
            "path"
        ]
        checked += 1
    for lk in storage.get("links") or []:
        p = root / lk["path"].lstrip("/")
        if lk.get("hard"):
            assert p.stat().st_ino == (root / lk["target"].lstrip("/")).stat().st_ino, lk["path"]
        else:
            assert os.readlink(p) == lk["target"], lk["path"]
        checked += 1
    sysd = root / "etc/systemd/system"
    presets = preset_lines(root)
    for u in (doc.get("systemd") or {}).get("units") or []:
        name = u["name"]
        if u.get("mask"):
            assert os.readlink(sysd / name) == "/dev/null", name
        elif u.get("contents") is not None:
            assert (sysd / name).read_text() == u["contents"], name
        for d in u.get("dropins") or []:
            if d.get("contents") is not None:
                assert (sysd / f"{name}.d" / d["name"]).read_text() == d["contents"], (name, d["name"])
        if u.get("enabled") is not None:
            assert f"{'enable' if u['enabled'] else 'disable'} {name}" in presets, name
        checked += 1
    homes = {
        line.split(":")[0]: line.split(":")[5]
        for line in (root / "etc/passwd").read_text().splitlines()
        if line.count(":") >= 6
    }
    for user in (doc.get("passwd") or {}).get("users") or []:
        keys = user.get("sshAuthorizedKeys") or []
        if keys:
            home = root / (user.get("homeDir") or homes[user["name"]]).lstrip("/")
            got = (home / ".ssh/authorized_keys.d/ignition").read_text().splitlines()
            assert got == keys, user["name"]
        checked += 1
    return checked
