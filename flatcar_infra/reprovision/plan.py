"""Pure decisions: from host facts and the desired state to a plan of phases, or a refusal.

No I/O here, so every branch is unit-tested exhaustively. The procedure gathers facts, asks
``decide`` what to do, and acts; the provider asks ``diff_props`` whether anything changes.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

from flatcar_infra.compiler.api import STAMP_PATH
from flatcar_infra.compiler.dataurl import decode_data_url
from flatcar_infra.reprovision.policy import STATE_DIR, Policy

Delivery = Literal["file", "pointer", "url"]
DELIVERIES: tuple[str, ...] = ("file", "pointer", "url")
Phase = Literal["preflight", "cleanup", "stage", "reboot", "verify"]

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

STATE_FILE = f"{STATE_DIR}/reprovision.json"
STAGED_CONFIG = f"{STATE_DIR}/staged-config.ign"
"""File delivery: the config is written here (root only, 0600) and handed to ``flatcar-reset -F``."""
LOCK_DIR = "/run/flatcar-infra"
LOCK_FILE = f"{LOCK_DIR}/reprovision.lock"
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


# --- the desired state --------------------------------------------------------------------------

def stamp_in(ignition: Mapping[str, Any]) -> str | None:
    """The hash the config stamps into ``STAMP_PATH`` (its proof of application), if any."""
    for f in ignition.get("storage", {}).get("files", []) or []:
        if f.get("path") == STAMP_PATH:
            src = (f.get("contents") or {}).get("source") or ""
            if src.startswith("data:") and not (f.get("contents") or {}).get("compression"):
                try:
                    return decode_data_url(src).decode("utf-8").strip()
                except (ValueError, UnicodeDecodeError):
                    return None
    return None


def enabled_units(ignition: Mapping[str, Any]) -> tuple[str, ...]:
    return tuple(sorted(u["name"] for u in ignition.get("systemd", {}).get("units", []) or []
                        if u.get("enabled") is True and not u.get("mask")))


def wipes_root(ignition: Mapping[str, Any]) -> bool:
    """Does the config reformat the ROOT filesystem (the ``wipe-root`` strategy's premise)?"""
    for fs in ignition.get("storage", {}).get("filesystems", []) or []:
        dev = str(fs.get("device", ""))
        if fs.get("wipeFilesystem") is True and (fs.get("label") == "ROOT" or dev.endswith("by-label/ROOT")):
            return True
    return False


@dataclass(frozen=True)
class Desired:
    """What the host should run: the exact bytes, their identity hash and how to get them there."""

    config: bytes = field(repr=False)  # may hold secrets: never printed
    config_hash: str
    version: str
    policy: Policy
    delivery: Delivery = "file"
    config_url: str | None = None
    enabled_units: tuple[str, ...] = ()
    wipes_root: bool = False

    @classmethod
    def from_config(cls, config: bytes | str, config_hash: str, policy: Policy,
                    delivery: str = "file", config_url: str | None = None) -> Desired:
        """Validate the pieces against each other; raises ``ValueError`` naming the problem."""
        data = config.encode("utf-8") if isinstance(config, str) else config
        try:
            doc = json.loads(data)
        except ValueError as exc:
            raise ValueError(f"config: not JSON: {exc}") from None
        if not isinstance(doc, dict) or not isinstance(doc.get("ignition"), dict):
            raise ValueError("config: not an Ignition config (no 'ignition' object)")
        version = str(doc["ignition"].get("version", ""))
        if not re.fullmatch(r"sha512-[0-9a-f]{128}", config_hash or ""):
            raise ValueError(f"config_hash: expected 'sha512-<128 hex>', got {config_hash[:20]!r}")
        if delivery not in DELIVERIES:
            raise ValueError(f"delivery: unknown {delivery!r}; use one of {', '.join(DELIVERIES)}")
        if delivery == "url" and not config_url:
            raise ValueError("config_url: required with delivery 'url'")
        stamped = stamp_in(doc)
        if policy.uses_ssh and stamped != config_hash:
            raise ValueError(
                "config: " + ("it does not stamp " + STAMP_PATH if stamped is None else
                              f"its stamp {STAMP_PATH} holds another hash than config_hash")
                + "; compile it with stamp_config=True so the host can prove which config it runs")
        if policy.strategy == "wipe-root" and not wipes_root(doc):
            raise ValueError("policy.strategy: 'wipe-root' needs a config that reformats ROOT "
                             "(a filesystem labeled ROOT with wipeFilesystem: true)")
        return cls(data, config_hash, version, policy, delivery,  # type: ignore[arg-type]
                   config_url, enabled_units(doc), wipes_root(doc))


# --- facts as the plan needs them (filled by ``facts.py``) -----------------------------------------

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
        return json.dumps({"host": self.host, "pid": self.pid, "user": self.user,
                           "token": self.token, "since": self.since}, sort_keys=True)

    def describe(self) -> str:
        return f"{self.user} on {self.host}, pid {self.pid}"


@dataclass(frozen=True)
class Staging:
    """The record written next to a staged reset (kept across it, in the state dir)."""

    desired_hash: str
    boot_id: str  # the boot during which the reset was staged
    staged_at: float  # host clock
    delivery: str
    kept: tuple[tuple[str, str], ...] = ()  # (path, "size:sha256|size:-|link:target")
    manifest: tuple[tuple[str, str], ...] = ()  # the config manifest that was staged

    def to_json(self) -> bytes:
        return json.dumps({"desired_hash": self.desired_hash, "boot_id": self.boot_id,
                           "staged_at": self.staged_at, "delivery": self.delivery,
                           "kept": dict(self.kept), "manifest": dict(self.manifest)},
                          sort_keys=True, indent=1).encode() + b"\n"

    @classmethod
    def parse(cls, data: bytes | None) -> Staging | None:
        if not data:
            return None
        try:
            d = json.loads(data)
            return cls(str(d["desired_hash"]), str(d["boot_id"]), float(d["staged_at"]),
                       str(d.get("delivery", "file")), tuple(sorted(d.get("kept", {}).items())),
                       tuple(sorted(d.get("manifest", {}).items())))
        except (ValueError, KeyError, TypeError, AttributeError):
            return None


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

    @property
    def lock_owner(self) -> LockOwner | None:
        return LockOwner.parse(self.lock_text) if self.lock_text is not None else None


# --- decisions ------------------------------------------------------------------------------------

@dataclass(frozen=True)
class Refusal:
    """Why nothing will be changed, what state the host is in, and what to do."""

    reason: str
    advice: str


@dataclass(frozen=True)
class Plan:
    phases: tuple[Phase, ...]
    refusals: tuple[Refusal, ...] = ()
    warnings: tuple[str, ...] = ()
    notes: tuple[str, ...] = ()

    @property
    def refused(self) -> bool:
        return bool(self.refusals)

    @property
    def reboots(self) -> bool:
        return "reboot" in self.phases


def precedence_refusals(f: HostFacts, d: Desired) -> tuple[list[Refusal], list[str]]:
    """Ignition's config source on Flatcar, first match wins: ``ignition.config.url`` (cmdline,
    settable in /oem/grub.cfg) > ``/oem/config.ign`` > the cloud user-data. A source that would
    win over the chosen delivery makes the reprovision silently apply the wrong config."""
    refusals: list[Refusal] = []
    warnings: list[str] = []
    url = f.grub_config_url or f.cmdline_config_url
    where = "/oem/grub.cfg" if f.grub_config_url else "the kernel command line"
    if d.delivery == "pointer":
        if f.oem_config_hash is not None:
            refusals.append(Refusal(
                f"{OEM_CONFIG} exists on the host: it overrides the cloud user-data pointer, so the "
                "hosted config would never be applied",
                f"remove it (sudo rm {OEM_CONFIG}) if the pointer should win, or use --delivery file "
                "(the config is then delivered as that file)"))
        if url:
            refusals.append(Refusal(
                f"ignition.config.url={url} is set in {where}: it overrides both {OEM_CONFIG} and "
                "the cloud user-data pointer",
                "remove it from /oem/grub.cfg, or use --delivery url"))
    elif d.delivery == "file":
        if url:
            refusals.append(Refusal(
                f"ignition.config.url={url} is set in {where}: it overrides {OEM_CONFIG}, so the "
                "delivered file would never be applied",
                "remove it from /oem/grub.cfg, or use --delivery url"))
    else:  # url
        if url and d.config_url and url != d.config_url and where != "/oem/grub.cfg":
            refusals.append(Refusal(
                f"ignition.config.url={url} is set on the kernel command line outside /oem/grub.cfg: "
                "flatcar-reset -U cannot override it",
                "remove it from the boot configuration first"))
        if f.oem_config_hash is not None:
            warnings.append(f"{OEM_CONFIG} exists; ignition.config.url takes precedence over it, "
                            "but it becomes active again if the URL is ever removed")
    return refusals, warnings


def lock_refusal(f: HostFacts, me: LockOwner, *, stale_ours: bool) -> Refusal | None:
    """Another run holds the host's lock: report who and since when; never break it silently."""
    if f.lock_text is None or stale_ours:
        return None
    owner = f.lock_owner
    age = f"{f.lock_age:.0f}s" if f.lock_age is not None else "unknown time"
    who = owner.describe() if owner else f"unknown owner ({f.lock_text.strip()[:80]!r})"
    if owner and owner.token == me.token:
        return None
    return Refusal(
        f"the host is locked by another reprovision ({who}, taken {age} ago, {LOCK_FILE})",
        "wait for it to finish; if that process is gone, remove the lock with "
        f"'sudo rm {LOCK_FILE}' and run again (the host was not changed)")


def decide(f: HostFacts, d: Desired, me: LockOwner, *, stale_ours: bool = False) -> Plan:
    """The phases to run, or the refusals that stop us before anything changes."""
    refusals: list[Refusal] = []
    warnings: list[str] = []
    notes: list[str] = []
    if f.os_id != "flatcar":
        refusals.append(Refusal(f"the host is not Flatcar Container Linux (os-release ID={f.os_id!r})",
                                "in-place reprovisioning needs flatcar-reset; use strategy 'replace'"))
    elif f.reset_tool is None or (parse_version(f.version) or (0,))[0] < MIN_RESET_VERSION:
        refusals.append(Refusal(
            f"flatcar-reset is not available on this host (Flatcar {f.version or 'unknown'}); it "
            f"ships with Flatcar {MIN_RESET_VERSION} and newer",
            f"update the host to Flatcar >= {MIN_RESET_VERSION} (or use strategy 'replace')"))
    if f.os_id == "flatcar" and not spec_accepted(d.version, f.version):
        ign, newest = ignition_for(f.version)
        refusals.append(Refusal(
            f"the config is Ignition spec {d.version}, but Flatcar {f.version} ships Ignition {ign}, "
            f"which accepts specs up to {newest}",
            f"emit spec {newest} (Butane variant flatcar 1.0.0 → 3.3.0) or update the host first"))
    pre, warn = precedence_refusals(f, d)
    refusals += pre
    warnings += warn
    lock = lock_refusal(f, me, stale_ours=stale_ours)
    if lock:
        refusals.append(lock)
    if stale_ours and f.lock_text is not None:
        owner = f.lock_owner
        who = owner.describe() if owner else "?"
        notes.append(f"taking over a stale lock left by an earlier run ({who})")
    if refusals:
        return Plan(("preflight",), tuple(refusals), tuple(warnings), tuple(notes))

    pending_here = f.reset_staged and (f.staging is None or f.staging.boot_id == f.boot_id)
    if f.stamp == d.config_hash:
        phases: tuple[Phase, ...] = ("preflight", "verify")
        notes.append("the host already runs the desired config: verifying only (no reboot)")
        if pending_here:
            phases = ("preflight", "cleanup", "verify")
            notes.append("a reset is staged on the host but not needed: cancelling it (flatcar-reset --stop)")
        return Plan(phases, (), tuple(warnings), tuple(notes))

    phases = ("preflight", "stage", "reboot", "verify")
    if pending_here:
        phases = ("preflight", "cleanup", *phases[1:])
        what = f"for {short(f.staging.desired_hash)}" if f.staging else "by someone else"
        notes.append(f"a reset staged {what} never rebooted: cancelling it and staging again")
    elif f.staging and f.staging.boot_id != f.boot_id and f.staging.desired_hash == d.config_hash:
        warnings.append(f"an earlier attempt rebooted into {short(d.config_hash)} but the host runs "
                        f"{short(f.stamp)}: Ignition did not apply it then; trying again "
                        "(see 'journalctl -b -1 -t ignition' on the host if this repeats)")
    return Plan(phases, (), tuple(warnings), tuple(notes))


def short(h: str | None) -> str:
    """``sha512-0123456789ab…`` for people; ``none`` when a host has no stamp."""
    return "none" if not h else (h[:19] + "…" if len(h) > 20 else h)


# --- kept-files manifest --------------------------------------------------------------------------

@dataclass(frozen=True)
class KeptEntry:
    path: str
    kind: Literal["file", "link"]
    size: int
    mtime: float
    target: str = ""  # link target


def hash_selection(entries: Sequence[KeptEntry], budget: int) -> tuple[list[str], list[str]]:
    """Which files to hash (in path order, while the byte budget lasts) and which not.

    Deterministic and greedy in path order: a reviewer can predict the cut from the list.
    """
    hashed: list[str] = []
    skipped: list[str] = []
    used = 0
    for e in sorted(entries, key=lambda x: x.path):
        if e.kind != "file":
            continue
        if used + e.size <= budget:
            hashed.append(e.path)
            used += e.size
        else:
            skipped.append(e.path)
    return hashed, skipped


def kept_digest(e: KeptEntry, sha: str | None) -> str:
    if e.kind == "link":
        return f"link:{e.target}"
    return f"{e.size}:{sha or '-'}"


@dataclass(frozen=True)
class KeptComparison:
    missing: tuple[str, ...]
    corrupted: tuple[str, ...]  # changed content, not written since staging: the reset damaged it
    rewritten: tuple[str, ...]  # changed, but written after staging by the running system (logs, ...)

    @property
    def ok(self) -> bool:
        return not self.missing and not self.corrupted


def compare_kept(before: Mapping[str, str], after: Mapping[str, str], mtimes: Mapping[str, float],
                 staged_at: float) -> KeptComparison:
    """Every file kept at staging must still be there; its content may only have changed if the
    running system wrote it after staging (a log, a database): that is not the reset's doing."""
    missing: list[str] = []
    corrupted: list[str] = []
    rewritten: list[str] = []
    for path, old in sorted(before.items()):
        new = after.get(path)
        if new is None:
            missing.append(path)
        elif new != old and not _same_unhashed(old, new):
            (rewritten if mtimes.get(path, 0) > staged_at else corrupted).append(path)
    return KeptComparison(tuple(missing), tuple(corrupted), tuple(rewritten))


def _same_unhashed(old: str, new: str) -> bool:
    """A file hashed on one side only (budget) compares by size."""
    o_size, _, o_sha = old.partition(":")
    n_size, _, n_sha = new.partition(":")
    return (o_sha == "-" or n_sha == "-") and o_size == n_size and not old.startswith("link:")


# --- the provider's diff --------------------------------------------------------------------------

CONNECTION_KEYS = ("host", "port", "user", "private_key", "host_key")
CONFIG_KEYS = ("config", "config_hash", "manifest", "delivery", "config_url")
POLICY_KEYS = ("policy", "platform_keys")
IDENTITY_KEYS = ("machine_identity",)
"""The cloud's id of the machine (instance or droplet id): when it changes, another machine answers
at the address, so the host key pinned for the old one must not be reused."""
INPUT_KEYS = (*CONNECTION_KEYS, *CONFIG_KEYS, *POLICY_KEYS, *IDENTITY_KEYS)

Action = Literal["none", "record", "connect", "reprovision", "replace", "new-machine"]


@dataclass(frozen=True)
class PropDiff:
    """What a change of inputs means for the host. ``changed`` are input names, sorted."""

    changed: tuple[str, ...]
    action: Action
    replaces: tuple[str, ...] = ()
    unknown: tuple[str, ...] = ()  # values not known yet (preview)

    @property
    def has_changes(self) -> bool:
        return self.action != "none"


def _norm(key: str, value: Any) -> Any:
    if key == "port" and isinstance(value, float) and value.is_integer():
        return int(value)
    if key == "policy":
        try:
            return Policy.from_dict(value).to_dict()
        except Exception:  # an invalid policy is check()'s business; compare raw
            return value
    if key == "host_key" and isinstance(value, str):
        return " ".join(value.split()[:2])
    if key == "platform_keys":
        return sorted(" ".join(str(k).split()[:2]) for k in value or ())
    return value


def diff_props(olds: Mapping[str, Any], news: Mapping[str, Any],
               is_unknown: Any = lambda v: False) -> PropDiff:
    """Pure and offline. ``olds`` are the previous OUTPUTS (they hold the inputs too).

    - a config hash change is an update (reprovision), never a replace — except under the
      ``replace`` strategy, where the machine itself is replaced and so is this resource;
    - connection-only changes update without a reboot (reconnect and verify);
    - policy-only changes are recorded (they shape the next reprovision);
    - an applied hash that differs from the desired one (drift seen by refresh, or a pending
      change left by ``ignore``) is a change too, unless the strategy is ``ignore``.
    """
    changed: list[str] = []
    unknown: list[str] = []
    for key in INPUT_KEYS:
        new = news.get(key)
        if is_unknown(new):
            unknown.append(key)
            changed.append(key)
            continue
        if key == "host_key" and not new:
            continue  # None = keep the key captured on first use (it is in olds)
        if _norm(key, olds.get(key)) != _norm(key, new):
            changed.append(key)
    try:
        strategy = Policy.from_dict(news.get("policy")).strategy if not is_unknown(news.get("policy")) \
            else "in-place"
    except Exception:
        strategy = "in-place"
    desired = news.get("config_hash")
    drift = (not is_unknown(desired) and olds.get("applied_hash") is not None
             and olds.get("applied_hash") != desired and strategy != "ignore")
    config_changed = any(k in changed for k in ("config", "config_hash"))
    if strategy == "replace":
        reps = tuple(k for k in ("host", "config_hash") if k in changed)
        if reps:
            return PropDiff(tuple(sorted(changed)), "replace", reps, tuple(sorted(unknown)))
    old_identity = olds.get("machine_identity")
    if old_identity is not None and "machine_identity" in changed:
        # a replaced machine: wait for its first boot, pin its key afresh, then converge it
        return PropDiff(tuple(sorted(changed)), "new-machine", (), tuple(sorted(unknown)))
    if (config_changed or drift) and strategy not in ("ignore", "replace"):
        action: Action = "reprovision"
    elif any(k in changed for k in CONNECTION_KEYS):
        action = "connect"
    elif changed:
        action = "record"
    else:
        action = "none"
    return PropDiff(tuple(sorted(changed)), action, (), tuple(sorted(unknown)))


def manifest_changes(old: Mapping[str, str], new: Mapping[str, str]) -> list[tuple[str, str]]:
    """``[("+"|"-"|"~", key)]`` sorted by key: what a reviewer reads in a config diff."""
    out: list[tuple[str, str]] = []
    for key in sorted(set(old) | set(new)):
        if key not in old:
            out.append(("+", key))
        elif key not in new:
            out.append(("-", key))
        elif old[key] != new[key]:
            out.append(("~", key))
    return out
