"""Kept files: the regex flatcar-reset builds from the keep entries, the record taken at staging,
and the comparison after the reboot. Pure.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Literal


def keep_regex(keep_paths: Sequence[str]) -> str:
    """The alternation flatcar-reset writes to ``/selective-os-reset`` (whole-path ERE match):
    a plain entry also keeps everything below it; an entry ending in ``$ ) * ] ?`` is taken as
    written; the backup directory and the marker itself are always kept."""
    parts: list[str] = []
    for entry in keep_paths:
        e = entry.rstrip("/") or "/"
        if e.startswith("/") and not e.endswith(("$", ")", "*", "]", "?")):
            parts.append(f"{e}/.*")
        parts.append(e)
    return "(" + "".join(f"{p}|" for p in parts) + "/flatcar-backup|/flatcar-backup/.*|/selective-os-reset)"


@dataclass(frozen=True)
class KeptEntry:
    path: str
    kind: Literal["file", "link"]
    size: int
    mtime: float

    def record(self) -> bytes:
        """One ``KEPT_LIST`` record (see ``hoststate.KEPT_LIST``)."""
        kind = "l" if self.kind == "link" else "f"
        return f"{kind}\t{self.size}\t{self.mtime!r}\t{self.path}".encode("utf-8", "surrogateescape") + b"\0"


def parse_listing(data: bytes) -> list[KeptEntry]:
    """``find -printf '%y\\t%s\\t%T@\\t%p\\0'`` output (or a ``KEPT_LIST``) → entries, by path."""
    out: list[KeptEntry] = []
    for rec in data.split(b"\0"):
        if not rec:
            continue
        try:
            kind, size, mtime, path = rec.decode("utf-8", errors="surrogateescape").split("\t", 3)
            out.append(KeptEntry(path, "link" if kind == "l" else "file", int(size), float(mtime)))
        except ValueError:
            continue
    return sorted(out, key=lambda e: e.path)


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
        return "link:"
    return f"{e.size}:{sha or '-'}"


@dataclass(frozen=True)
class KeptComparison:
    missing: tuple[str, ...]
    corrupted: tuple[str, ...]  # changed content, not written since staging: the reset damaged it
    rewritten: tuple[str, ...]  # changed, but written after staging by the running system (logs, ...)

    @property
    def ok(self) -> bool:
        return not self.missing and not self.corrupted


def compare_kept(
    before: Mapping[str, str], after: Mapping[str, str], mtimes: Mapping[str, float], staged_at: float
) -> KeptComparison:
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
