"""Command-line options shared by several commands (one way to read ``--var K=V``, one set of
rollback options for ``reprovision`` and ``rollout``)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from flatcar_infra.errors import UsageError, UserError

POLICY_FLAGS = {
    "policy.keep_paths": "--keep-path",
    "policy.confirm_window": "--confirm-window",
    "policy.deadline": "--deadline",
    "policy.reboot_timeout": "--timeout",
    "policy.health_timeout": "--health-timeout",
    "policy.health_checks": "--health",
}


def parse_vars(items: list[str]) -> dict[str, str] | None:
    """``--var KEY=VALUE`` pairs as a mapping; ``None`` when none were given (no template)."""
    if not items:
        return None
    out: dict[str, str] = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep or not key.strip():
            raise UsageError(f"--var {item!r}: expected KEY=VALUE")
        out[key.strip()] = value
    return out


def add_rollback_options(p: Any) -> None:
    """``--no-rollback``, ``--confirm-window``, ``--deadline``, ``--previous-config``."""
    p.add_argument("--no-rollback", action="store_true",
                   help="do not roll back a new config that fails its checks (and arm no dead-man switch)")
    p.add_argument("--confirm-window", type=float, default=300.0, metavar="S",
                   help="the new boot must be confirmed over a fresh SSH login within S seconds of "
                        "booting, else it rolls itself back to the previous config (default 300)")
    p.add_argument("--deadline", type=float, default=2400.0, metavar="S",
                   help="a host's whole run, rollback included, never takes longer (default 2400)")
    p.add_argument("--previous-config", metavar="FILE",
                   help="the exact config the host runs now (Ignition JSON with its stamp): the "
                        "rollback target where a host has no copy of its own yet (used only on a host "
                        "whose running hash it stamps)")


def read_option_file(option: str, path: str | None) -> bytes | None:
    """The bytes of a file named by an option; a usage error naming the option when unreadable."""
    if not path:
        return None
    try:
        return Path(path).read_bytes()
    except OSError as exc:
        raise UsageError(f"{option} {path}: {exc.strerror}") from None


def policy_usage_error(exc: UserError) -> UsageError:
    """A machine-policy error as the command line names it (``--keep-path``, not ``policy.keep_paths``)."""
    message = exc.message
    for key, flag in POLICY_FLAGS.items():
        message = message.replace(key, flag)
    return UsageError(message, exc.advice)
