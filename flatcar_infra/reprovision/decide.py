"""Pure decisions: from host facts and the desired state to a plan of phases, or refusals.

No I/O here, so every branch is unit-tested exhaustively. The procedure gathers facts (and the
preflight checks' findings), asks ``decide`` what to do, and acts.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal

from flatcar_infra.plan.effect import data_loss_notices
from flatcar_infra.reprovision.desired import Desired, authorized_keys, key_id, stamp_of
from flatcar_infra.reprovision.hoststate import (
    LOCK_FILE,
    MIN_RESET_VERSION,
    OEM_CONFIG,
    HostFacts,
    LockOwner,
    ignition_for,
    parse_version,
    spec_accepted,
)

Phase = Literal["preflight", "cleanup", "stage", "reboot", "verify", "confirm"]


def short(h: str | None) -> str:
    """``sha512-0123456789ab…`` for people; ``none`` when a host has no stamp."""
    return "none" if not h else (h[:19] + "…" if len(h) > 20 else h)


@dataclass(frozen=True)
class Refusal:
    """Why nothing will be changed (naming the entry), and what to do."""

    reason: str
    advice: str


@dataclass(frozen=True)
class Plan:
    phases: tuple[Phase, ...]
    refusals: tuple[Refusal, ...] = ()
    warnings: tuple[str, ...] = ()
    notes: tuple[str, ...] = ()
    rollback_config: bytes | None = None  # what a rollback re-applies (None: no rollback possible)
    remove_oem: bool = False  # a /oem/config.ign left by our own rollback must go (pointer delivery)

    @property
    def refused(self) -> bool:
        return bool(self.refusals)

    @property
    def reboots(self) -> bool:
        return "reboot" in self.phases


def rollback_oem(f: HostFacts) -> bool:
    """Is ``/oem/config.ign`` the one our own rollback wrote (the previous config, re-applied with
    ``-F`` after a pointer or URL delivery failed)? Then it is ours to remove, not a foreign one."""
    r = f.rollback_record
    return (
        f.oem_config is not None
        and r is not None
        and stamp_of(f.oem_config) == r.to_hash
        and r.to_hash == f.stamp
    )


def precedence_refusals(f: HostFacts, d: Desired) -> tuple[list[Refusal], list[str]]:
    """Ignition's config source on Flatcar, first match wins: ``ignition.config.url`` (cmdline,
    settable in /oem/grub.cfg) > ``/oem/config.ign`` > the cloud user-data. A source that would
    win over the chosen delivery makes the reprovision silently apply the wrong config."""
    refusals: list[Refusal] = []
    warnings: list[str] = []
    url = f.grub_config_url or f.cmdline_config_url
    where = "/oem/grub.cfg" if f.grub_config_url else "the kernel command line"
    if d.delivery == "pointer":
        if f.oem_config_hash is not None and not rollback_oem(f):
            refusals.append(
                Refusal(
                    f"{OEM_CONFIG} exists on the host: it overrides the cloud user-data pointer, so the "
                    "hosted config would never be applied",
                    f"remove it (sudo rm {OEM_CONFIG}) if the pointer should win, or use --delivery file "
                    "(the config is then delivered as that file)",
                )
            )
        if url and where == "/oem/grub.cfg" and rollback_oem(f):
            pass  # -F of our rollback strips it; nothing foreign
        elif url:
            refusals.append(
                Refusal(
                    f"ignition.config.url={url} is set in {where}: it overrides both {OEM_CONFIG} and "
                    "the cloud user-data pointer",
                    "remove it from /oem/grub.cfg, or use --delivery url",
                )
            )
    elif d.delivery == "file":
        if url:
            refusals.append(
                Refusal(
                    f"ignition.config.url={url} is set in {where}: it overrides {OEM_CONFIG}, so the "
                    "delivered file would never be applied",
                    "remove it from /oem/grub.cfg, or use --delivery url",
                )
            )
    else:  # url
        if url and d.config_url and url != d.config_url and where != "/oem/grub.cfg":
            refusals.append(
                Refusal(
                    f"ignition.config.url={url} is set on the kernel command line outside /oem/grub.cfg: "
                    "flatcar-reset -U cannot override it",
                    "remove it from the boot configuration first",
                )
            )
        if f.oem_config_hash is not None and not rollback_oem(f):
            warnings.append(
                f"{OEM_CONFIG} exists; ignition.config.url takes precedence over it, "
                "but it becomes active again if the URL is ever removed"
            )
    return refusals, warnings


def lock_refusal(f: HostFacts, me: LockOwner, *, stale_ours: bool) -> Refusal | None:
    """Another run holds the host's lock: report who and since when; never break it silently."""
    if f.lock_text is None or stale_ours or f.lock_taken:
        return None
    owner = f.lock_owner
    age = f"{f.lock_age:.0f}s" if f.lock_age is not None else "unknown time"
    who = owner.describe() if owner else f"unknown owner ({f.lock_text.strip()[:80]!r})"
    if owner and owner.token == me.token:
        return None
    return Refusal(
        f"the host is locked by another reprovision ({who}, taken {age} ago, {LOCK_FILE})",
        "wait for it to finish; if that process is gone, remove the lock with "
        f"'sudo rm {LOCK_FILE}' and run again (the host was not changed)",
    )


def config_refusals(
    d: Desired,
    *,
    user: str,
    login_key: str | None,
    platform_keys: Sequence[str] = (),
    more_keys: Sequence[str] = (),
    key_kept: bool = False,
) -> list[Refusal]:
    """What in the config itself would brick or lock out the host (no host access needed):
    everything the plan marks as a danger (``plan.effect``), and a config that does not
    authorize ``login_key`` (the key used after the reboot) for ``user`` when the platform does
    not install it on every boot (``platform_keys``) and no kept file authorizes it."""
    out: list[Refusal] = []
    if d.policy.strategy not in ("in-place", "wipe-root"):
        return out
    for n in data_loss_notices(d.document, root_expected=d.policy.strategy == "wipe-root"):
        if n.level == "danger":
            out.append(
                Refusal(
                    f"the config is dangerous to rerun on this host: {n.message}",
                    "change the config (the plan shows the same DANGER); nothing was changed",
                )
            )
    if login_key:
        want = key_id(login_key)
        known = {*authorized_keys(d.document, user), *(key_id(k) for k in more_keys)}
        if want not in known and want not in {key_id(k) for k in platform_keys} and not key_kept:
            out.append(
                Refusal(
                    f"the config would lock you out: it does not authorize the SSH key this run logs in "
                    f"with ({want.split()[0]} …{want[-12:]}) for user {user!r} "
                    f"($.passwd.users[name={user}].sshAuthorizedKeys), and the target does not install it "
                    "from cloud metadata on every boot",
                    f"add the public key to {user}'s sshAuthorizedKeys in the config (or list it in "
                    "platform_keys / --platform-key if the cloud installs it on every boot)",
                )
            )
    return out


def rollback_config(f: HostFacts, previous: bytes | None) -> bytes | None:
    """The exact config the host runs now, whose reapplication is the rollback: our saved copy on
    the host, else the caller's (the provider's old state), else a ``/oem/config.ign`` that
    stamps the running hash. None when nothing proves what the host runs."""
    if f.stamp is None:
        return None
    for candidate in (f.applied_config, previous, f.oem_config):
        if candidate is not None and stamp_of(candidate) == f.stamp:
            return candidate
    return None


def decide(
    f: HostFacts,
    d: Desired,
    me: LockOwner,
    *,
    stale_ours: bool = False,
    previous: bytes | None = None,
    checks: Sequence[Refusal] = (),
) -> Plan:
    """The phases to run, or the refusals that stop us before anything changes.

    ``checks``: refusals found by the preflight checks (config, keys, remote resources, kept
    files, the host's regex engine); ``previous``: the caller's copy of the running config.
    """
    refusals: list[Refusal] = []
    warnings: list[str] = []
    notes: list[str] = []
    if f.os_id != "flatcar":
        refusals.insert(
            0,
            Refusal(
                f"the host is not Flatcar Container Linux (os-release ID={f.os_id!r})",
                "in-place reprovisioning needs flatcar-reset; use strategy 'replace'",
            ),
        )
    elif f.reset_tool is None or (parse_version(f.version) or (0,))[0] < MIN_RESET_VERSION:
        refusals.append(
            Refusal(
                f"flatcar-reset is not available on this host (Flatcar {f.version or 'unknown'}); it "
                f"ships with Flatcar {MIN_RESET_VERSION} and newer",
                f"update the host to Flatcar >= {MIN_RESET_VERSION} (or use strategy 'replace')",
            )
        )
    if f.os_id == "flatcar" and not spec_accepted(d.version, f.version):
        ign, newest = ignition_for(f.version)
        refusals.append(
            Refusal(
                f"the config is Ignition spec {d.version}, but Flatcar {f.version} ships Ignition {ign}, "
                f"which accepts specs up to {newest}",
                f"emit spec {newest} (Butane variant flatcar 1.0.0 → 3.3.0) or update the host first",
            )
        )
    pre, warn = precedence_refusals(f, d)
    refusals += pre
    warnings += warn
    lock = lock_refusal(f, me, stale_ours=stale_ours)
    if lock:
        refusals.append(lock)
    if stale_ours and f.lock_text is not None and not f.lock_taken:
        owner = f.lock_owner
        notes.append(
            f"taking over a stale lock left by an earlier run ({owner.describe() if owner else '?'})"
        )

    pending_here = f.reset_staged and (f.staging is None or f.staging.boot_id == f.boot_id)
    back = rollback_config(f, previous)
    if f.stamp == d.config_hash:
        phases: tuple[Phase, ...] = ("preflight", "verify")
        notes.append("the host already runs the desired config: verifying only (no reboot)")
        if pending_here:
            phases = ("preflight", "cleanup", "verify")
            notes.append("a reset is staged on the host but not needed: cancelling it (flatcar-reset --stop)")
        if f.deadman_armed and not f.confirmed:
            phases = (*phases, "confirm")
            notes.append(
                "this boot is not confirmed yet: confirming it once verified (else the "
                "dead-man switch rolls it back)"
            )
            prev = f.staging.previous_hash if f.staging else None
            back = f.applied_config if f.applied_config and stamp_of(f.applied_config) == prev else None
        else:
            back = None  # nothing changes: a failing check now is not this run's doing
        # the config's own checks do not apply: nothing is reset, the host runs it already
        if refusals:
            return Plan(("preflight",), tuple(refusals), tuple(warnings), tuple(notes))
        return Plan(phases, (), tuple(warnings), tuple(notes), back)

    refusals = [*refusals, *checks]
    if d.policy.rollback and d.policy.strategy == "in-place" and back is None:
        refusals.append(
            Refusal(
                f"cannot roll back: nothing proves which config the host runs now (applied hash "
                f"{short(f.stamp)}); a failed new config could not be undone",
                "give the config the host runs now (--previous-config FILE), or turn rollback off for "
                "this run (--no-rollback / policy rollback: false); after one successful run the host "
                "keeps its own copy",
            )
        )
    if refusals:
        return Plan(("preflight",), tuple(refusals), tuple(warnings), tuple(notes))
    phases = ("preflight", "stage", "reboot", "verify", "confirm")
    if pending_here:
        phases = ("preflight", "cleanup", *phases[1:])
        what = f"for {short(f.staging.desired_hash)}" if f.staging else "by someone else"
        notes.append(f"a reset staged {what} never rebooted: cancelling it and staging again")
    elif f.staging and f.staging.boot_id != f.boot_id and f.staging.desired_hash == d.config_hash:
        warnings.append(
            f"an earlier attempt rebooted into {short(d.config_hash)} but the host runs "
            f"{short(f.stamp)}: Ignition did not apply it then; trying again "
            "(see 'journalctl -b -1 -t ignition' on the host if this repeats)"
        )
    if (
        f.rollback_record
        and f.rollback_record.from_hash == d.config_hash
        and f.stamp == f.rollback_record.to_hash
    ):
        notes.append(
            f"retrying {short(d.config_hash)}, which was rolled back earlier "
            f"({f.rollback_record.reason or 'by ' + f.rollback_record.by})"
        )
    remove_oem = d.delivery == "pointer" and rollback_oem(f)
    if remove_oem:
        notes.append(
            f"{OEM_CONFIG} was written by an earlier rollback: removing it so the pointer applies again"
        )
    if not d.policy.rollback or d.policy.strategy != "in-place":
        back = None
    return Plan(phases, (), tuple(warnings), tuple(notes), back, remove_oem)


def sha512_hex(data: bytes) -> str:
    return hashlib.sha512(data).hexdigest()
