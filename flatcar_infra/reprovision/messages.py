"""What people read when a reprovision stops: what happened, the host's state, what to do.

Every failure says which of these states the host is in, because the next step depends on it.
"""

from __future__ import annotations

from collections.abc import Sequence

from flatcar_infra.errors import UserError
from flatcar_infra.reprovision.plan import LOCK_FILE, Refusal

UNCHANGED = "the host was not changed"
STAGED = ("a reset is staged on the host: its NEXT boot deletes ROOT except the kept paths and "
          "runs Ignition with the new config")
REBOOTING = "the host was told to reboot into the staged reset"
APPLIED = "the host rebooted into the new config"


class ReprovisionError(UserError):
    """A reprovision stopped. ``host_state`` is one of the constants above (or a sentence).

    ``applied_hash``: the config hash the host was last proven to run when the run stopped (None
    when unknown); ``rolled_back``: the host was brought back to its previous config by this run.
    Callers that drive many hosts (rollouts) classify results by these two, never by the text.
    """

    def __init__(self, message: str, host_state: str, advice: str | None = None, *,
                 applied_hash: str | None = None, rolled_back: bool = False) -> None:
        self.host_state = host_state
        self.applied_hash = applied_hash
        self.rolled_back = rolled_back
        super().__init__(f"{message}\n  host state: {host_state}", advice)


def refused(host: str, refusals: Sequence[Refusal]) -> ReprovisionError:
    lines = [f"refusing to reprovision {host}:"] + [f"  - {r.reason}" for r in refusals]
    advice = "; ".join(r.advice for r in refusals)
    return ReprovisionError("\n".join(lines), UNCHANGED, advice)


def lost_before_reboot(host: str, detail: str) -> ReprovisionError:
    return ReprovisionError(
        f"lost {host} after staging, before the reboot was issued: {detail}", STAGED,
        "run the same command again: it finds the staged reset and continues (or cancel it on the "
        "host with 'sudo flatcar-reset --stop'); an unplanned reboot applies it")


def not_back(host: str, timeout: float, detail: str) -> ReprovisionError:
    return ReprovisionError(
        f"{host} did not come back with a new boot within {timeout:g}s: {detail}", REBOOTING,
        "check the machine's console (a failed Ignition run stops in an emergency shell); once it "
        "answers SSH, run again: a host already running the new config is only verified")


def reboot_unknown(host: str, timeout: float) -> ReprovisionError:
    return ReprovisionError(
        f"{host} did not come back within {timeout:g}s, and the connection was lost while issuing "
        "the reboot", f"{STAGED}; whether it rebooted is unknown",
        "once the host answers SSH, run again: a staged reset is continued, an applied one is only "
        "verified")


def identity_changed(host: str) -> ReprovisionError:
    return ReprovisionError(
        f"{host} came back with a DIFFERENT SSH host key: the reset did not keep "
        "/etc/ssh/ssh_host_* (or another machine now answers at this address)", APPLIED + " (probably)",
        "do not trust the connection blindly: check the machine's console, then pin the new key "
        "explicitly if this is expected")


def verify_failed(host: str, problems: Sequence[str]) -> ReprovisionError:
    return ReprovisionError(
        f"{host}: verification failed:\n" + "\n".join(f"  - {p}" for p in problems), APPLIED,
        "inspect the host (journalctl -b, systemctl --failed); fix the config and apply again")


def lock_lost(host: str) -> str:
    return f"could not release {LOCK_FILE} on {host} (it disappears with the next reboot anyway)"
