"""The reprovisioning policy: one value shared by the Pulumi components, the provider and the CLI.

A frozen dataclass because a policy that was accepted once must stay valid: every field is checked
when it is built, and ``from_dict`` names the offending key so a typo in a stack config is a clear
error, not a silently ignored option.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Literal, get_args

from flatcar_infra.errors import UserError
from flatcar_infra.plaindata import checked_fields
from flatcar_infra.reprovision.ere import ere_problems

Strategy = Literal["in-place", "wipe-root", "replace", "ignore"]
STRATEGIES: tuple[str, ...] = get_args(Strategy)

STATE_DIR = "/var/lib/flatcar-infra"
"""The package's own state on the host (kept across resets: it holds the staging record)."""

DEFAULT_KEEP_PATHS: tuple[str, ...] = ("/etc/ssh/ssh_host_.*", STATE_DIR)
"""Always kept: the SSH host keys (the host's identity, pinned by every client) and our state."""

MIB = 1024 * 1024


class PolicyError(UserError):
    """A policy field has a wrong name, type or value."""


@dataclass(frozen=True)
class Policy:
    """How a config change reaches a machine.

    ``strategy``: ``in-place`` (``flatcar-reset`` keeping chosen paths, reboot, Ignition reruns),
    ``wipe-root`` (the new config reformats ROOT: same machine and IP, root data lost),
    ``replace`` (no SSH: the machine component replaces the instance), ``ignore`` (nothing
    applied: the pending change stays visible as drift, applied hash != desired hash).
    ``keep_paths`` are POSIX ERE regexes (full-path match, as flatcar-reset applies them) added to
    ``DEFAULT_KEEP_PATHS``; Python-only syntax (``\\d``, ``(?:``) is an error.
    ``rollback``: a new config that fails its checks is rolled back to the previous one (see
    docs/reprovision-faults.md); ``confirm_window``: seconds after the new boot's system start
    (timers.target) within which a fresh SSH login must confirm it, after verification, else the
    host rolls itself back (the dead-man switch);
    ``deadline``: the whole reprovision of one machine, rollback included, never takes longer
    (Pulumi's ``customTimeouts`` do not reach a dynamic provider, so this is the bound).
    """

    strategy: Strategy = "in-place"
    keep_paths: tuple[str, ...] = ()
    keep_machine_id: bool = True
    health_checks: tuple[str, ...] = ()
    health_timeout: float = 60.0
    reboot_timeout: float = 600.0
    hash_budget_bytes: int = 64 * MIB
    rollback: bool = True
    confirm_window: float = 300.0
    deadline: float = 2400.0

    def __post_init__(self) -> None:
        if self.strategy not in STRATEGIES:
            raise PolicyError(f"policy.strategy: unknown strategy {self.strategy!r}",
                              f"use one of: {', '.join(STRATEGIES)}")
        for name in ("keep_paths", "health_checks"):
            value = getattr(self, name)
            if isinstance(value, str) or not isinstance(value, tuple | list):
                raise PolicyError(f"policy.{name}: expected a list of strings, got {type(value).__name__}")
            if not all(isinstance(v, str) and v.strip() for v in value):
                raise PolicyError(f"policy.{name}: every entry must be a non-empty string")
            object.__setattr__(self, name, tuple(value))
        for rx in self.keep_paths:
            if not rx.startswith("/"):
                raise PolicyError(f"policy.keep_paths: {rx!r} is not an absolute path regex",
                                  "flatcar-reset matches the full path, e.g. '/var/lib/app' or '/etc/app/.*'")
            problems = ere_problems(rx)
            if problems:
                raise PolicyError(f"policy.keep_paths: {rx!r} is not a POSIX ERE as flatcar-reset applies "
                                  f"it: {'; '.join(problems)}",
                                  "flatcar-reset matches with GNU ERE (find -regextype egrep), not "
                                  "Python's re")
        for name in ("keep_machine_id", "rollback"):
            if not isinstance(getattr(self, name), bool):
                raise PolicyError(f"policy.{name}: expected true or false")
        for name in ("health_timeout", "reboot_timeout", "confirm_window", "deadline"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int | float) or value <= 0:
                raise PolicyError(f"policy.{name}: expected a positive number of seconds, got {value!r}")
            object.__setattr__(self, name, float(value))
        if (isinstance(self.hash_budget_bytes, bool) or not isinstance(self.hash_budget_bytes, int)
                or self.hash_budget_bytes < 0):
            raise PolicyError(f"policy.hash_budget_bytes: expected a non-negative integer, "
                              f"got {self.hash_budget_bytes!r}")

    @property
    def all_keep_paths(self) -> tuple[str, ...]:
        """Defaults first, then the user's, without duplicates (order kept: it is shown to people)."""
        out: list[str] = []
        for rx in (*DEFAULT_KEEP_PATHS, *self.keep_paths):
            if rx not in out:
                out.append(rx)
        return tuple(out)

    @property
    def uses_ssh(self) -> bool:
        return self.strategy in ("in-place", "wipe-root")

    @classmethod
    def from_dict(cls, d: Mapping[str, Any] | None) -> Policy:
        """Build from plain data (stack config, Pulumi outputs, JSON); unknown keys are errors."""
        if d is None:
            return cls()
        if isinstance(d, Policy):
            return d
        kwargs: dict[str, Any] = {}
        for key, value in checked_fields(d, cls, "policy", PolicyError).items():
            if key in ("keep_paths", "health_checks") and isinstance(value, list):
                value = tuple(value)
            if key == "hash_budget_bytes" and isinstance(value, float) and value.is_integer():
                value = int(value)  # protobuf Struct numbers arrive as floats
            kwargs[key] = value
        return cls(**kwargs)

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON-able data (lists, not tuples) that ``from_dict`` reads back to an equal policy."""
        return {
            "strategy": self.strategy,
            "keep_paths": list(self.keep_paths),
            "keep_machine_id": self.keep_machine_id,
            "health_checks": list(self.health_checks),
            "health_timeout": self.health_timeout,
            "reboot_timeout": self.reboot_timeout,
            "hash_budget_bytes": self.hash_budget_bytes,
            "rollback": self.rollback,
            "confirm_window": self.confirm_window,
            "deadline": self.deadline,
        }
