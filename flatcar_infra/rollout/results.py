"""What a rollout established per machine, and how one machine's outcome is classified.

Pure. A machine's result comes ONLY from the reprovision procedure's contract: success with a
reboot → ``reprovisioned``; success without one → ``unchanged`` (already on the config: verified);
``ReprovisionError`` with ``rolled_back`` → ``rolled-back`` (back on ``applied_hash``); any other
error → ``failed`` (``applied_hash``: what it was last proven to run, possibly unknown); never
started → ``not-started``. Never by the text of a message.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from flatcar_infra.reprovision.messages import ReprovisionError
from flatcar_infra.rollout.schedule import Overall, Result, Wave


@dataclass(frozen=True)
class Done:
    """A machine's work finished without an error."""

    applied_hash: str | None
    rebooted: bool
    detail: Mapping[str, Any] = field(default_factory=dict)


def classify(done: Done | None, error: BaseException | None) -> tuple[Result, str | None]:
    """``(result, applied hash)`` from the work's return value or its error."""
    if error is None:
        assert done is not None
        return ("reprovisioned" if done.rebooted else "unchanged"), done.applied_hash
    if isinstance(error, ReprovisionError):
        return ("rolled-back" if error.rolled_back else "failed"), error.applied_hash
    return "failed", None


def iso(ts: float | None) -> str | None:
    """A wall-clock time as ISO 8601 UTC with milliseconds (what ``--json`` and the state hold)."""
    if ts is None:
        return None
    return datetime.fromtimestamp(ts, UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


@dataclass(frozen=True)
class HostResult:
    name: str
    wave: int
    result: Result
    desired_hash: str
    applied_hash: str | None
    started_at: float | None = None
    finished_at: float | None = None
    message: str = ""
    detail: Mapping[str, Any] = field(default_factory=dict)

    def to_json(self) -> dict[str, Any]:
        return {"name": self.name, "wave": self.wave, "result": self.result,
                "applied_hash": self.applied_hash, "desired_hash": self.desired_hash,
                "started_at": iso(self.started_at), "finished_at": iso(self.finished_at),
                "message": self.message}


@dataclass(frozen=True)
class RolloutReport:
    result: Overall
    halt_reason: str | None
    waves: tuple[Wave, ...]
    hosts: tuple[HostResult, ...]
    started_at: float
    finished_at: float
    max_unavailable: int
    peak_unavailable: int
    dry_run: bool = False

    @property
    def ok(self) -> bool:
        return self.result == "succeeded"

    def host(self, name: str) -> HostResult:
        return next(h for h in self.hosts if h.name == name)

    def to_json(self) -> dict[str, Any]:
        return {
            "result": self.result,
            "halt_reason": self.halt_reason,
            "dry_run": self.dry_run,
            "started_at": iso(self.started_at),
            "finished_at": iso(self.finished_at),
            "max_unavailable": self.max_unavailable,
            "peak_unavailable": self.peak_unavailable,
            "waves": [{"wave": w.number, "canary": w.canary, "hosts": list(w.hosts)} for w in self.waves],
            "hosts": [h.to_json() for h in self.hosts],
        }
