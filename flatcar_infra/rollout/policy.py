"""The rollout policy: how a config change moves through a fleet. One value for Pulumi and the CLI.

A machine's own ``Policy`` (``reprovision.policy``) says how ONE machine is reprovisioned (kept
paths, health checks on the host, rollback); this policy says how MANY are: how many may be away
from service at once, in which waves, how long to watch each wave, which fleet-level gates must
pass between waves, and how many failures stop everything. Frozen and checked when built, so a
typo in a stack config or a bad flag is a clear error before any host is touched.
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from flatcar_infra.errors import UserError
from flatcar_infra.plaindata import checked_fields

_PERCENT = re.compile(r"^([0-9]+(?:\.[0-9]+)?)%$")


class RolloutPolicyError(UserError):
    """A rollout policy field has a wrong name, type or value."""


@dataclass(frozen=True)
class RolloutPolicy:
    """How a config change rolls through a fleet.

    ``max_unavailable``: how many machines may be away from service at any moment: a count
    (``2``) or a share of the fleet (``"25%"``, rounded down, at least 1). A machine is away from
    the moment its reprovision starts until it is proven back (on the new config, or rolled back
    to the old one); a machine that failed in an unknown state stays counted as away.
    ``canary``: the first N machines (in order) form wave 1 on their own. ``waves``: explicit
    ordered groups of machine names instead (machines not named follow in order). The remaining
    machines form waves of ``max_unavailable`` machines. A wave larger than ``max_unavailable``
    runs as a sliding window.
    ``bake_seconds``: wait after a wave that rebooted a machine, before its gates and the next wave.
    ``gates``: commands run on the operator's side (a shell on the machine running the rollout)
    before the first wave and after every wave that changed something; each is retried every
    ``gate_interval`` seconds until it exits 0 or ``gate_timeout`` passes (e.g. "etcd has
    quorum", "the load balancer sees N healthy backends").
    ``failure_budget``: how many machines may fail (or roll back) before the rollout halts; with
    the default 0 the first failure halts everything not yet started (machines already started
    finish, and roll back per their own policy).
    """

    max_unavailable: int | str = 1
    canary: int = 0
    waves: tuple[tuple[str, ...], ...] = ()
    bake_seconds: float = 0.0
    gates: tuple[str, ...] = ()
    gate_timeout: float = 300.0
    gate_interval: float = 5.0
    failure_budget: int = 0

    def __post_init__(self) -> None:
        mu: Any = self.max_unavailable
        if isinstance(mu, bool):
            raise RolloutPolicyError(f"rollout.max_unavailable: expected a count or a percentage, got {mu!r}")
        if isinstance(mu, float) and mu.is_integer():
            mu = int(mu)  # protobuf Struct numbers arrive as floats
        if isinstance(mu, str) and mu.strip().isdigit():
            mu = int(mu.strip())
        if isinstance(mu, int):
            if mu < 1:
                raise RolloutPolicyError(f"rollout.max_unavailable: must be at least 1, got {mu}",
                                         "a rollout that may take no machine out of service cannot start")
        elif isinstance(mu, str):
            m = _PERCENT.match(mu.strip())
            if not m or not 0 < float(m.group(1)) <= 100:
                raise RolloutPolicyError(f"rollout.max_unavailable: {mu!r} is not a count or a percentage "
                                         "in (0%, 100%]", "e.g. 1, 3 or '25%'")
            mu = mu.strip()
        else:
            raise RolloutPolicyError(f"rollout.max_unavailable: expected a count or a percentage, got {mu!r}")
        object.__setattr__(self, "max_unavailable", mu)
        for name in ("canary", "failure_budget"):
            value = getattr(self, name)
            if isinstance(value, float) and value.is_integer():
                value = int(value)
            if isinstance(value, bool) or not isinstance(value, int) or value < 0:
                raise RolloutPolicyError(f"rollout.{name}: expected a non-negative integer, got {value!r}")
            object.__setattr__(self, name, value)
        for name in ("bake_seconds", "gate_timeout", "gate_interval"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int | float) or value < 0 or (
                    name != "bake_seconds" and value == 0):
                what = "non-negative" if name == "bake_seconds" else "positive"
                raise RolloutPolicyError(f"rollout.{name}: expected a {what} number of seconds, "
                                         f"got {value!r}")
            object.__setattr__(self, name, float(value))
        if isinstance(self.gates, str) or not isinstance(self.gates, Sequence):
            raise RolloutPolicyError("rollout.gates: expected a list of commands")
        if not all(isinstance(g, str) and g.strip() for g in self.gates):
            raise RolloutPolicyError("rollout.gates: every gate must be a non-empty command")
        object.__setattr__(self, "gates", tuple(self.gates))
        object.__setattr__(self, "waves", _waves(self.waves))
        if self.waves and self.canary:
            raise RolloutPolicyError("rollout: give canary or waves, not both",
                                     "put the canary machines in the first of the waves")

    def unavailable_limit(self, fleet_size: int) -> int:
        """``max_unavailable`` resolved against the fleet: a percentage rounds down, at least 1."""
        if isinstance(self.max_unavailable, int):
            return self.max_unavailable
        share = float(self.max_unavailable.rstrip("%"))
        return max(1, math.floor(fleet_size * share / 100 + 1e-9))

    @classmethod
    def from_dict(cls, d: Mapping[str, Any] | None) -> RolloutPolicy:
        """Build from plain data (stack config, Pulumi outputs, JSON); unknown keys are errors."""
        if d is None:
            return cls()
        if isinstance(d, RolloutPolicy):
            return d
        return cls(**checked_fields(d, cls, "rollout", RolloutPolicyError))

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON-able data that ``from_dict`` reads back to an equal policy."""
        return {
            "max_unavailable": self.max_unavailable,
            "canary": self.canary,
            "waves": [list(w) for w in self.waves],
            "bake_seconds": self.bake_seconds,
            "gates": list(self.gates),
            "gate_timeout": self.gate_timeout,
            "gate_interval": self.gate_interval,
            "failure_budget": self.failure_budget,
        }


def _waves(value: Any) -> tuple[tuple[str, ...], ...]:
    if isinstance(value, str) or not isinstance(value, Sequence):
        raise RolloutPolicyError("rollout.waves: expected a list of waves, each a list of machine names")
    out: list[tuple[str, ...]] = []
    seen: set[str] = set()
    for i, wave in enumerate(value, 1):
        if isinstance(wave, str) or not isinstance(wave, Sequence) or not wave:
            raise RolloutPolicyError(f"rollout.waves[{i}]: expected a non-empty list of machine names")
        for name in wave:
            if not isinstance(name, str) or not name.strip():
                raise RolloutPolicyError(f"rollout.waves[{i}]: machine names must be non-empty strings")
            if name in seen:
                raise RolloutPolicyError(f"rollout.waves[{i}]: {name!r} is already in an earlier wave")
            seen.add(name)
        out.append(tuple(wave))
    return tuple(out)
