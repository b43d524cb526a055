"""What people read when a reprovision stops: what happened, the host's state, what to do.

Every failure says which state the host is in, because the next step depends on it, and carries
``applied_hash`` (the config the host was last proven to run) and ``rolled_back``: callers that
drive many hosts classify results by these fields, never by the text. The full list of faults and
what each leaves the host with is docs/reprovision-faults.md.
"""

from __future__ import annotations

from collections.abc import Sequence

from flatcar_infra.errors import UserError
from flatcar_infra.reprovision.decide import Refusal, short
from flatcar_infra.reprovision.hoststate import LOCK_FILE

UNCHANGED = "the host was not changed"
STAGED = (
    "a reset is staged on the host: its NEXT boot deletes ROOT except the kept paths and "
    "runs Ignition with the new config"
)
REBOOTING = "the host was told to reboot into the staged reset"
APPLIED = "the host rebooted into the new config"
UNKNOWN = "unknown"


class ReprovisionError(UserError):
    """A reprovision stopped. ``host_state`` is one of the constants above (or a sentence).

    ``applied_hash``: the config hash the host was last proven to run when the run stopped (None
    when unknown); ``rolled_back``: the host was brought back to its previous config by this run
    (or by the dead-man switch this run armed).
    Callers that drive many hosts (rollouts) classify results by these two, never by the text.
    """

    def __init__(
        self,
        message: str,
        host_state: str,
        advice: str | None = None,
        *,
        applied_hash: str | None = None,
        rolled_back: bool = False,
    ) -> None:
        self.host_state = host_state
        self.applied_hash = applied_hash
        self.rolled_back = rolled_back
        super().__init__(f"{message}\n  host state: {host_state}", advice)


def refused(host: str, refusals: Sequence[Refusal], applied: str | None) -> ReprovisionError:
    lines = [f"refusing to reprovision {host} (nothing was changed):"] + [f"  - {r.reason}" for r in refusals]
    advice = "; ".join(dict.fromkeys(r.advice for r in refusals))
    return ReprovisionError("\n".join(lines), UNCHANGED, advice, applied_hash=applied)


def locked(host: str, who: str, applied: str | None) -> ReprovisionError:
    return ReprovisionError(
        f"the host {host} is locked by another reprovision ({who}, {LOCK_FILE})",
        UNCHANGED,
        "wait for it to finish, or remove the lock if its process is gone",
        applied_hash=applied,
    )


def lost(host: str, phase: str, detail: str, host_state: str, applied: str | None) -> ReprovisionError:
    """The connection dropped (or a command timed out) in a phase that changes nothing."""
    return ReprovisionError(
        f"lost {host} during {phase}: {detail}",
        host_state,
        "run the same command again once the host answers SSH: every step is safe to repeat",
        applied_hash=applied,
    )


def lost_before_reboot(host: str, detail: str, applied: str | None) -> ReprovisionError:
    return ReprovisionError(
        f"lost {host} while staging, before the reboot was confirmed issued: {detail}",
        STAGED + " (maybe)",
        "run the same command again: it finds the staged reset and continues (or cancel it on the "
        "host with 'sudo flatcar-reset --stop'); an unplanned reboot applies it",
        applied_hash=applied,
    )


def no_reboot(host: str, grace: float, applied: str | None) -> ReprovisionError:
    return ReprovisionError(
        f"{host} was told to reboot but still runs the same boot {grace:g}s later: the reboot never happened",
        STAGED,
        "run again (the staged reset is cancelled, staged afresh and the reboot issued again), or "
        "reboot the host yourself: its next boot applies the new config",
        applied_hash=applied,
    )


def not_back(host: str, waited: float, detail: str, applied: str | None) -> ReprovisionError:
    return ReprovisionError(
        f"{host} did not come back within {waited:g}s: {detail}",
        f"{REBOOTING}; its state is unknown",
        "check the machine's console (a failed Ignition run waits in the initramfs and reboots after "
        "5 minutes); once it answers SSH, run again: a host on the new config is only verified, one "
        "on the old config is reprovisioned again",
        applied_hash=applied,
    )


def identity_changed(host: str, applied: str | None) -> ReprovisionError:
    return ReprovisionError(
        f"{host} came back with a DIFFERENT SSH host key: the reset did not keep "
        "/etc/ssh/ssh_host_* (or another machine now answers at this address)",
        APPLIED + " (probably)",
        "do not trust the connection blindly: check the machine's console, then pin the new key "
        "explicitly if this is expected",
        applied_hash=applied,
    )


def verify_failed(
    host: str, problems: Sequence[str], applied: str | None, *, why_no_rollback: str = ""
) -> ReprovisionError:
    return ReprovisionError(
        f"{host}: verification failed:\n"
        + "\n".join(f"  - {p}" for p in problems)
        + (f"\n  not rolled back: {why_no_rollback}" if why_no_rollback else ""),
        APPLIED,
        "inspect the host (journalctl -b, systemctl --failed); fix the config and apply again",
        applied_hash=applied,
    )


def rolled_back(host: str, new: str, previous: str, why: Sequence[str], how: str) -> ReprovisionError:
    """The new config was rejected and the host is proven back on ``previous``."""
    return ReprovisionError(
        f"{host}: rolled back: the host runs the previous config {short(previous)} again ({how}); the "
        f"new config {short(new)} was rejected:\n" + "\n".join(f"  - {w}" for w in why),
        f"the host runs the previous config {short(previous)}, verified",
        "fix the new config and apply again (the next run retries it); the host's journal of the "
        "rejected boot: 'journalctl -b -1'",
        applied_hash=previous,
        rolled_back=True,
    )


def rollback_failed(host: str, new: str, previous: str, detail: str, applied: str | None) -> ReprovisionError:
    return ReprovisionError(
        f"{host}: the new config {short(new)} was rejected and rolling back to {short(previous)} did not "
        f"complete: {detail}",
        UNKNOWN,
        "check the machine's console; once it answers SSH, run again (a host on either config is "
        "verified or reprovisioned)",
        applied_hash=applied,
        rolled_back=False,
    )


def deadline(host: str, seconds: float, phase: str, host_state: str, applied: str | None) -> ReprovisionError:
    return ReprovisionError(
        f"{host}: the reprovision's deadline ({seconds:g}s, policy.deadline) passed during {phase}",
        host_state,
        "run again (every step is safe to repeat); raise policy.deadline if the host is just slow",
        applied_hash=applied,
    )


def lock_lost(host: str) -> str:
    return f"could not release {LOCK_FILE} on {host} (it disappears with the next reboot anyway)"
