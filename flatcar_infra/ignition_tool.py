"""The REAL Ignition, run outside a boot: ``ignition-validate`` and the stage runner on a scratch
root (Debian's ``ignition`` package). Used by the reprovision preflight (a config the host's
Ignition would reject must be refused before the reset), by ``flatcar-infra validate --ignition``,
and by the tests.

* ``ignition_validate(config)`` runs ``ignition-validate``. Debian ships Ignition 2.14, which knows
  spec 3.3.0 but 3.4.0 only as ``3.4.0-experimental`` (and without the 3.4.0 additions
  ``luks.discard``, ``luks.openOptions``, ``clevis.tang.advertisement``). So a 3.4.0 config is
  validated as a copy with the version string swapped, the "Unused key" warnings for exactly those
  3.4.0-only keys are tolerated, and the original is also checked against our own 3.4.0 schema +
  semantic checks (``flatcar_infra.compiler.validate``).
* ``apply_config(config, root, users=[...])`` prepares a scratch root (passwd/group/shadow/gshadow
  with the users the config touches, their homes, ``/etc/selinux/config``, a ``setfiles`` stub
  first on PATH) and runs the ``fetch`` then ``files`` stages into it with ``-platform file``.

Both raise ``IgnitionFailed`` (a ``UserError`` carrying Ignition's log) on failure.
"""

from __future__ import annotations

import base64
import gzip
import json
import os
import re
import shutil
import stat
import subprocess
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from flatcar_infra.compiler.dataurl import decode_data_url
from flatcar_infra.errors import UserError

IGNITION_BIN = Path("/usr/lib/dracut/modules.d/30ignition/ignition")
IGNITION_VALIDATE = shutil.which("ignition-validate") or "/usr/bin/ignition-validate"
VALIDATOR_VERSION = "2.14"
"""Debian bookworm's ``ignition`` package: specs up to 3.3.0, 3.4.0 as ``3.4.0-experimental``."""

# Keys Ignition 2.14's 3.4.0-experimental does not know but the final 3.4.0 spec has.
SPEC_34_ONLY_KEYS = frozenset({"discard", "openOptions", "advertisement"})


def available() -> bool:
    """Are both real Ignition binaries installed (Debian package ``ignition``)?"""
    return IGNITION_BIN.exists() and Path(IGNITION_VALIDATE).exists()


class IgnitionFailed(UserError):
    """Ignition rejected or failed to apply a config; ``log`` holds its full output."""

    def __init__(self, what: str, log: str) -> None:
        super().__init__(f"{what}\n--- ignition output ---\n{log.rstrip()}")
        self.what = what
        self.log = log


@dataclass(frozen=True)
class User:
    """An account that exists in the scratch root before Ignition runs."""

    name: str
    uid: int
    gid: int | None = None
    home: str | None = None
    shell: str = "/bin/bash"

    @property
    def group_id(self) -> int:
        return self.uid if self.gid is None else self.gid

    @property
    def home_dir(self) -> str:
        return self.home or ("/root" if self.name == "root" else f"/home/{self.name}")


ROOT_USER = User("root", 0, 0, "/root")
CORE_USER = User("core", 500, 500, "/home/core")


@dataclass(frozen=True)
class ValidateResult:
    warnings: tuple[str, ...]  # every "warning at $.path, line L col C: message" line
    output: str
    unexpected: tuple[str, ...] = ()  # the warnings not explained by Ignition 2.14's 3.4.0 gap


def ignition_validate(config: bytes, *, allow_warnings: bool = False) -> ValidateResult:
    """Validate with the real ``ignition-validate``; 3.4.0 is checked as described above.

    Warnings other than the tolerated 3.4.0-only keys fail unless ``allow_warnings``.
    """
    doc = json.loads(config)
    version = doc.get("ignition", {}).get("version")
    data = config
    tolerated: frozenset[str] = frozenset()
    if version == "3.4.0":
        from flatcar_infra.compiler.validate import validate_document

        problems = [d for d in validate_document(doc, filename="<ignition>") if d.is_error]
        if problems:
            raise IgnitionFailed("our 3.4.0 schema rejects the config", "\n".join(map(str, problems)))
        doc["ignition"]["version"] = "3.4.0-experimental"
        data = json.dumps(doc).encode()
        tolerated = SPEC_34_ONLY_KEYS
    proc = subprocess.run([IGNITION_VALIDATE, "-"], input=data, capture_output=True, timeout=60, check=False)
    out = (proc.stdout + proc.stderr).decode(errors="replace")
    if proc.returncode != 0:
        raise IgnitionFailed(f"ignition-validate exited {proc.returncode}", out)
    warnings = tuple(line for line in out.splitlines() if line.startswith("warning"))
    unexpected = [w for w in warnings if not _tolerated(w, tolerated)]
    if unexpected and not allow_warnings:
        raise IgnitionFailed("ignition-validate warned", out)
    return ValidateResult(warnings, out, tuple(unexpected))


def _tolerated(warning: str, keys: frozenset[str]) -> bool:
    m = re.search(r"Unused key (\w+)", warning)
    return m is not None and m.group(1) in keys


# Supplementary groups a Flatcar image has that real configs add users to.
FLATCAR_GROUPS: Mapping[str, int] = {"sudo": 150, "systemd-journal": 190, "docker": 233}


def prepare_root(
    root: Path, users: Iterable[User] = (CORE_USER,), *, groups: Mapping[str, int] = FLATCAR_GROUPS
) -> Path:
    """Lay out the minimal /etc that Ignition's files stage needs, plus the users' homes and the
    extra ``groups`` (name → gid) that configs put users in."""
    all_users = {u.name: u for u in (ROOT_USER, *users)}
    etc = root / "etc"
    (etc / "selinux").mkdir(parents=True, exist_ok=True)
    (etc / "selinux" / "config").write_text("SELINUX=disabled\nSELINUXTYPE=targeted\n")
    # as on Flatcar: useradd (run by Ignition inside the root) gives each new user its own group
    (etc / "login.defs").write_text("USERGROUPS_ENAB yes\nUID_MIN 1000\nGID_MIN 1000\n")
    passwd, group, shadow, gshadow = [], [], [], []
    for u in all_users.values():
        passwd.append(f"{u.name}:x:{u.uid}:{u.group_id}::{u.home_dir}:{u.shell}")
        group.append(f"{u.name}:x:{u.group_id}:")
        shadow.append(f"{u.name}:*:19000:0:99999:7:::")
        gshadow.append(f"{u.name}:!::")
    for gname, gid in groups.items():
        if gname not in all_users:
            group.append(f"{gname}:x:{gid}:")
            gshadow.append(f"{gname}:!::")
    for name, lines, mode in (
        ("passwd", passwd, 0o644),
        ("group", group, 0o644),
        ("shadow", shadow, 0o600),
        ("gshadow", gshadow, 0o600),
    ):
        p = etc / name
        p.write_text("\n".join(lines) + "\n")
        p.chmod(mode)
    root.chmod(0o755)
    _make_traversable(root)
    for u in all_users.values():
        home = root / u.home_dir.lstrip("/")
        home.mkdir(parents=True, exist_ok=True)
        # every parent traversable: Ignition writes ~/.ssh as the user
        parent = home.parent
        while parent != root and root in parent.parents:
            parent.chmod(0o755)
            parent = parent.parent
        os.chown(home, u.uid, u.group_id)
        home.chmod(0o755)
    return root


def _make_traversable(root: Path) -> None:
    """Ignition writes ``~/.ssh`` as the user: every ancestor of the scratch root (pytest's
    ``tmp_path`` is under 0700 directories) must be searchable by others. Only ``o+x`` is added."""
    for parent in root.parents:
        mode = parent.stat().st_mode
        if not mode & stat.S_IXOTH:
            parent.chmod(stat.S_IMODE(mode) | stat.S_IXOTH)


def apply_config(
    config: bytes,
    root: Path,
    users: Sequence[User] = (CORE_USER,),
    *,
    work: Path | None = None,
    groups: Mapping[str, int] = FLATCAR_GROUPS,
) -> Path:
    """Apply ``config`` to the scratch ``root`` with the real Ignition; return ``root``.

    A run failed if a stage exits non-zero or logs ``CRITICAL``; then ``IgnitionFailed`` carries
    the whole log. Needs root (the files stage sets owners). Remote sources are fetched for real,
    from this machine's network.
    """
    root = root.resolve()
    prepare_root(root, users, groups=groups)
    work = (work or root.parent / f"{root.name}-ignition").resolve()
    work.mkdir(parents=True, exist_ok=True)
    cfg = work / "config.ign"
    cfg.write_bytes(_runnable(config))
    stub_dir = work / "bin"
    stub_dir.mkdir(exist_ok=True)
    setfiles = stub_dir / "setfiles"
    setfiles.write_text("#!/bin/sh\ncat >/dev/null\nexit 0\n")
    setfiles.chmod(0o755)
    env = dict(os.environ)
    env["IGNITION_CONFIG_FILE"] = str(cfg)
    env["PATH"] = f"{stub_dir}:{env.get('PATH', '/usr/sbin:/usr/bin:/sbin:/bin')}"
    log_all = []
    for stage in ("fetch", "files"):
        argv = [
            str(IGNITION_BIN),
            "-platform",
            "file",
            "-stage",
            stage,
            "-root",
            str(root),
            "-config-cache",
            str(work / "cache.json"),
            "-state-file",
            str(work / "state"),
            "-neednet",
            str(work / "neednet"),
            "-log-to-stdout",
        ]
        proc = subprocess.run(argv, env=env, capture_output=True, timeout=120, check=False)
        log = (proc.stdout + proc.stderr).decode(errors="replace")
        log_all.append(f"== stage {stage} (exit {proc.returncode}) ==\n{log}")
        if proc.returncode != 0 or "CRITICAL" in log:
            raise IgnitionFailed(f"ignition stage {stage} failed", "\n".join(log_all))
    return root


def _runnable(config: bytes) -> bytes:
    """Ignition 2.14 runs 3.4.0 only as ``3.4.0-experimental``: swap the version string, also in
    configs merged or replaced from ``data:`` URLs."""
    doc = json.loads(config)
    if doc.get("ignition", {}).get("version") != "3.4.0":
        return config
    return json.dumps(_as_experimental(doc)).encode()


def _as_experimental(doc: dict[str, Any]) -> dict[str, Any]:
    ign = doc.get("ignition", {})
    if ign.get("version") == "3.4.0":
        ign["version"] = "3.4.0-experimental"
    cfg = ign.get("config") or {}
    for res in [*(cfg.get("merge") or []), *([cfg["replace"]] if cfg.get("replace") else [])]:
        src = res.get("source") or ""
        if src.startswith("data:"):
            data = decode_data_url(src)
            if res.get("compression") == "gzip":
                data = gzip.decompress(data)
            inner = _as_experimental(json.loads(data))
            res["source"] = "data:;base64," + base64.b64encode(json.dumps(inner).encode()).decode()
            res["compression"] = ""
            res.pop("verification", None)  # the bytes changed; the original hash no longer applies
    return doc


def check(config: bytes) -> ValidateResult:
    """What ``flatcar-infra validate --ignition`` runs: ``ignition-validate``, then the fetch and
    files stages applied to a throw-away scratch root with Flatcar's users (``core``, ``root``).
    Raises ``IgnitionFailed`` with Ignition's log, or ``UserError`` when it cannot run here."""
    import tempfile

    if not available():
        raise UserError(
            "the real Ignition is not installed here",
            "install Debian's 'ignition' package (ignition-validate and the stage runner)",
        )
    result = ignition_validate(config, allow_warnings=True)
    if os.geteuid() != 0:
        raise UserError(
            "applying the config to a scratch root needs root (Ignition's files stage sets owners)",
            "run 'sudo flatcar-infra validate --ignition ...'",
        )
    with tempfile.TemporaryDirectory(prefix="flatcar-infra-ignition-") as tmp:
        apply_config(config, Path(tmp) / "root", (CORE_USER,), work=Path(tmp) / "work")
    return result
