"""Host facts as plain data: the paths we read and write on a host, the Flatcar release table, the
lock owner, the staging and rollback records, and ``HostFacts`` (filled by ``facts.py``).

Pure: nothing here talks to a host.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from typing import Any

from flatcar_infra.reprovision.policy import STATE_DIR

MIN_RESET_VERSION = 3535
"""First Flatcar major release that ships ``flatcar-reset``."""

IGNITION_BY_RELEASE: tuple[tuple[int, str, str], ...] = (
    # (first Flatcar major, Ignition version shipped, newest config spec it accepts)
    (3535, "2.14", "3.3.0"),  # 3.4.0 only as "3.4.0-experimental"
    (4081, "2.19", "3.4.0"),  # LTS 2024
    (4593, "2.24", "3.5.0"),  # stable 2025
)
"""Known anchors; a release between two anchors gets the older one (never over-promise), and a
release newer than the last anchor gets the newest known."""

# --- our state on the host (STATE_DIR is kept across every reset) ---------------------------------
STATE_FILE = f"{STATE_DIR}/reprovision.json"
"""The staging record (``Staging``): which config was staged, when, during which boot."""
KEPT_LIST = f"{STATE_DIR}/kept.list"
"""The kept files recorded at staging: ``kind TAB size TAB mtime TAB path`` records, NUL-separated."""
KEPT_SUMS = f"{STATE_DIR}/kept.sha256"
"""``sha256sum -z`` of the recorded kept files that fit the hash budget."""
STAGED_CONFIG = f"{STATE_DIR}/staged-config.ign"
"""The new config's exact bytes (root only, 0600): ``flatcar-reset -F`` reads it with file
delivery, and it becomes ``APPLIED_CONFIG`` once the new boot is verified and confirmed."""
APPLIED_CONFIG = f"{STATE_DIR}/applied.ign"
"""The config the host was last proven to run: what a rollback re-applies."""
ROLLBACK_RECORD = f"{STATE_DIR}/rollback.json"
"""Written when a rollback starts (by the procedure or by the dead-man switch on the host)."""
DEADMAN_ENV = f"{STATE_DIR}/deadman.env"
DEADMAN_SCRIPT = f"{STATE_DIR}/deadman.sh"
DEADMAN_UNIT = "flatcar-infra-rollback"
UNIT_DIR = "/etc/systemd/system"
DEADMAN_SERVICE = f"{UNIT_DIR}/{DEADMAN_UNIT}.service"
DEADMAN_TIMER = f"{UNIT_DIR}/{DEADMAN_UNIT}.timer"
DEADMAN_WANTS = f"{UNIT_DIR}/timers.target.wants/{DEADMAN_UNIT}.timer"
DEADMAN_KEEP = tuple(p.replace(".", "\\.") for p in (DEADMAN_SERVICE, DEADMAN_TIMER, DEADMAN_WANTS))
"""Extra keep entries while a dead-man switch is armed: its units survive the reset into the new
boot."""
RUN_DIR = "/run/flatcar-infra"
LOCK_FILE = f"{RUN_DIR}/reprovision.lock"
CONFIRMED = f"{RUN_DIR}/confirmed"
"""Touched by the confirmation (tmpfs: it confirms this boot only)."""

# --- Flatcar's own paths ---------------------------------------------------------------------------
OEM_CONFIG = "/oem/config.ign"
RESET_MARKER = "/selective-os-reset"
FIRST_BOOT = "/boot/flatcar/first_boot"
IGNITION_RESULT = "/etc/.ignition-result.json"


def parse_version(text: str) -> tuple[int, ...]:
    """``3602.2.0`` → ``(3602, 2, 0)``; anything unparsable → ``()``."""
    parts = re.findall(r"\d+", text.split("-")[0].split("+")[0])
    return tuple(int(p) for p in parts)


def ignition_for(flatcar_version: str) -> tuple[str, str]:
    """(Ignition version, newest spec) for a Flatcar release; see ``IGNITION_BY_RELEASE``."""
    major = (parse_version(flatcar_version) or (0,))[0]
    best = IGNITION_BY_RELEASE[0]
    for row in IGNITION_BY_RELEASE:
        if major >= row[0]:
            best = row
    return best[1], best[2]


def spec_accepted(config_version: str, flatcar_version: str) -> bool:
    _, newest = ignition_for(flatcar_version)
    wanted = parse_version(config_version)
    if config_version.endswith("-experimental"):
        return False
    return bool(wanted) and wanted[0] >= 2 and wanted <= parse_version(newest)


@dataclass(frozen=True)
class LockOwner:
    host: str
    pid: int
    user: str
    token: str
    since: float

    @classmethod
    def parse(cls, text: str) -> LockOwner | None:
        try:
            d = json.loads(text)
            return cls(str(d["host"]), int(d["pid"]), str(d["user"]), str(d["token"]), float(d["since"]))
        except (ValueError, KeyError, TypeError):
            return None

    def to_json(self) -> str:
        return json.dumps(
            {"host": self.host, "pid": self.pid, "user": self.user, "token": self.token, "since": self.since},
            sort_keys=True,
        )

    def describe(self) -> str:
        return f"{self.user} on {self.host}, pid {self.pid}"


@dataclass(frozen=True)
class Staging:
    """The record written with a staged reset (kept across it, in the state dir).

    ``previous_hash``: what the host ran when this was staged (what a rollback returns to);
    ``rollback``: this staging IS a rollback to ``desired_hash``; ``confirm_window``: seconds the
    dead-man switch waits on the new boot (0: none armed).
    """

    desired_hash: str
    boot_id: str  # the boot during which the reset was staged
    staged_at: float  # host clock
    delivery: str
    kept: tuple[tuple[str, str], ...] = ()  # (path, "size:sha256|size:-|link:")
    manifest: tuple[tuple[str, str], ...] = ()  # the config manifest that was staged
    previous_hash: str | None = None
    rollback: bool = False
    confirm_window: float = 0.0
    keep_paths: tuple[str, ...] = ()

    def to_json(self) -> bytes:
        """The record; the kept files live next to it (``KEPT_LIST``, ``KEPT_SUMS``)."""
        return (
            json.dumps(
                {
                    "desired_hash": self.desired_hash,
                    "boot_id": self.boot_id,
                    "staged_at": self.staged_at,
                    "delivery": self.delivery,
                    "manifest": dict(self.manifest),
                    "previous_hash": self.previous_hash,
                    "rollback": self.rollback,
                    "confirm_window": self.confirm_window,
                    "keep_paths": list(self.keep_paths),
                },
                sort_keys=True,
                indent=1,
            ).encode()
            + b"\n"
        )

    @classmethod
    def parse(cls, data: bytes | None, kept: tuple[tuple[str, str], ...] = ()) -> Staging | None:
        if not data:
            return None
        try:
            d = json.loads(data)
            if "kept" in d and not kept:  # a record written before the kept files moved out
                kept = tuple(sorted(d["kept"].items()))
            return cls(
                str(d["desired_hash"]),
                str(d["boot_id"]),
                float(d["staged_at"]),
                str(d.get("delivery", "file")),
                kept,
                tuple(sorted(d.get("manifest", {}).items())),
                d.get("previous_hash"),
                bool(d.get("rollback", False)),
                float(d.get("confirm_window", 0.0)),
                tuple(d.get("keep_paths", ())),
            )
        except (ValueError, KeyError, TypeError, AttributeError):
            return None


@dataclass(frozen=True)
class RollbackRecord:
    """Why and how the host was last rolled back (``ROLLBACK_RECORD``)."""

    by: str  # "deadman" (the switch on the host) or "procedure"
    from_hash: str
    to_hash: str
    boot_id: str  # the boot that was rolled back
    at: float
    reason: str = ""

    @classmethod
    def parse(cls, data: bytes | None) -> RollbackRecord | None:
        if not data:
            return None
        try:
            d = json.loads(data)
            return cls(
                str(d["by"]),
                str(d["from"]),
                str(d["to"]),
                str(d["boot_id"]),
                float(d["at"]),
                str(d.get("reason", "")),
            )
        except (ValueError, KeyError, TypeError):
            return None

    def to_json(self) -> bytes:
        return (
            json.dumps(
                {
                    "by": self.by,
                    "from": self.from_hash,
                    "to": self.to_hash,
                    "boot_id": self.boot_id,
                    "at": self.at,
                    "reason": self.reason,
                },
                sort_keys=True,
            ).encode()
            + b"\n"
        )


@dataclass(frozen=True)
class HostFacts:
    """Read-only state of a host, gathered in one SSH round trip."""

    boot_id: str
    os_id: str
    version: str
    reset_tool: str | None  # path of flatcar-reset, None when absent
    stamp: str | None  # applied config hash (STAMP_PATH), None when absent
    oem_config_hash: str | None  # sha512-<hex> of /oem/config.ign, None when absent
    grub_config_url: str | None  # ignition.config.url in /oem/grub.cfg
    cmdline_config_url: str | None  # ignition.config.url on the running kernel's cmdline
    lock_text: str | None
    lock_age: float | None
    now: float  # host clock, seconds since the epoch
    reset_staged: bool  # /selective-os-reset present
    first_boot: bool  # /boot/flatcar/first_boot present
    staging: Staging | None
    ignition_result_mtime: float | None
    machine_id: str | None = None
    applied_config: bytes | None = None  # APPLIED_CONFIG (the rollback target)
    oem_config: bytes | None = None  # /oem/config.ign
    deadman_armed: bool = False  # the dead-man switch's units are installed
    confirmed: bool = False  # this boot was confirmed (CONFIRMED exists)
    rollback_record: RollbackRecord | None = None
    uptime: float = 0.0  # seconds since this boot started
    lock_taken: bool = False  # the preflight script took the lock for us

    @property
    def lock_owner(self) -> LockOwner | None:
        return LockOwner.parse(self.lock_text) if self.lock_text is not None else None


def parse_kept(listing: bytes | None, sums: bytes | None) -> tuple[tuple[str, str], ...]:
    """The kept record (``KEPT_LIST`` + ``KEPT_SUMS``) as ``(path, digest)`` pairs."""
    if not listing:
        return ()
    hashed: dict[str, str] = {}
    for rec in (sums or b"").split(b"\0"):
        digest, _, name = rec.decode("utf-8", errors="surrogateescape").partition("  ")
        if name:
            hashed[name] = digest
    out: dict[str, str] = {}
    for rec in listing.split(b"\0"):
        if not rec:
            continue
        try:
            kind, size, _mtime, path = rec.decode("utf-8", errors="surrogateescape").split("\t", 3)
        except ValueError:
            continue
        out[path] = "link:" if kind == "l" else f"{size}:{hashed.get(path, '-')}"
    return tuple(sorted(out.items()))


def as_json(data: bytes | None) -> dict[str, Any] | None:
    try:
        doc = json.loads(data) if data else None
    except ValueError:
        return None
    return doc if isinstance(doc, dict) else None
