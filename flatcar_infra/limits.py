"""Resource limits for hostile input, in one place, and the bounded readers that enforce them.

Configs come from repositories anyone with commit access can change and are compiled on operators'
machines and in CI (``plan`` on every pull request). A config must never be able to hang, crash or
exhaust the machine that compiles it, so every resource it can make us spend is bounded here, and
going over a bound is a located error, never a traceback. The numbers are far above what a real
config needs (the largest corpus config is 9 KiB, 9 levels deep, 200 nodes) and far below what
hurts. docs/limits.md explains each one.
"""

from __future__ import annotations

import errno
import os
import stat
import zlib
from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass
from pathlib import Path
from typing import Final

KIB: Final = 1024
MIB: Final = 1024 * KIB


@dataclass(frozen=True)
class Limits:
    source_bytes: int = 8 * MIB
    """One config text (a file, stdin, a snippet, a template's output)."""
    depth: int = 64
    """Nesting of YAML/JSON collections, counted through aliases."""
    nodes: int = 1_000_000
    """YAML nodes after alias expansion (a "billion laughs" document is refused at its alias)."""
    scalar_bytes: int = 64 * MIB
    """Scalar text after alias expansion (one big anchored string aliased many times)."""
    contents_bytes: int = 16 * MIB
    """The contents of one file: inline, local, a tree entry, or a decompressed data URL."""
    local_total_bytes: int = 64 * MIB
    """All local files one config reads (``local``, ``contents_local``, ``trees``, keys files)."""
    output_bytes: int = 64 * MIB
    """The compiled Ignition JSON."""
    template_seconds: float = 10.0
    """Wall-clock time of rendering one template (a backstop: the step budget stops loops first)."""
    template_steps: int = 1_000_000
    """Loop iterations, calls and operators one template may evaluate."""
    template_output_bytes: int = 8 * MIB
    """Text one template may produce (buffered blocks and macros included); also the size of any
    single value a template expression builds."""


LIMITS: Final = Limits()


class LimitExceeded(ValueError):
    """An input is over a limit; the message names the limit (callers add the location)."""


def human(n: int) -> str:
    if n >= MIB and n % MIB == 0:
        return f"{n // MIB} MiB"
    if n >= KIB and n % KIB == 0:
        return f"{n // KIB} KiB"
    return f"{n} bytes"


def read_regular_file(path: str | os.PathLike[str], limit: int) -> bytes:
    """The bytes of a regular file of at most ``limit`` bytes.

    Opened with ``O_NONBLOCK`` and checked with ``fstat`` on the open descriptor, so a FIFO, a
    device or a socket is refused without blocking and without a race between check and read.
    Raises ``LimitExceeded`` (too big, not a regular file) or ``OSError``.
    """
    flags = os.O_RDONLY | os.O_NONBLOCK | getattr(os, "O_NOCTTY", 0) | getattr(os, "O_CLOEXEC", 0)
    try:
        fd = os.open(path, flags)
    except OSError as exc:
        if exc.errno == errno.ENXIO:  # a socket
            raise LimitExceeded("not a regular file") from None
        raise
    try:
        st = os.fstat(fd)
        if stat.S_ISDIR(st.st_mode):
            raise LimitExceeded("a directory")
        if not stat.S_ISREG(st.st_mode):
            raise LimitExceeded("not a regular file")  # a FIFO, device, socket
        if st.st_size > limit:
            raise LimitExceeded(f"{st.st_size} bytes, over the limit of {human(limit)}")
        os.set_blocking(fd, True)
        chunks: list[bytes] = []
        size = 0
        while chunk := os.read(fd, min(1 << 20, limit + 1 - size) or 1):
            chunks.append(chunk)
            size += len(chunk)
            if size > limit:  # it grew while we read it
                raise LimitExceeded(f"over the limit of {human(limit)}")
        return b"".join(chunks)
    finally:
        os.close(fd)


def read_text_input(path: str | os.PathLike[str], limit: int = LIMITS.source_bytes) -> bytes:
    """A config file's bytes, at most ``limit``. Pipes are allowed here (``<(cmd)``, ``/dev/stdin``)
    since the user named the file; they are read up to the limit. A directory is refused."""
    with open(path, "rb") as fh:
        if stat.S_ISDIR(os.fstat(fh.fileno()).st_mode):
            raise LimitExceeded("a directory")
        data = fh.read(limit + 1)
    if len(data) > limit:
        raise LimitExceeded(f"over the limit of {human(limit)}")
    return data


def gunzip(data: bytes, limit: int = LIMITS.contents_bytes) -> bytes:
    """Decompress gzip data, refusing output over ``limit`` (a gzip bomb) with ``LimitExceeded``.
    Malformed data raises ``zlib.error`` or ``EOFError`` like ``gzip.decompress``."""
    out: list[bytes] = []
    size = 0
    while True:  # one gzip member after another, as gzip.decompress does
        d = zlib.decompressobj(wbits=31)
        chunk = d.decompress(data, limit + 1 - size)
        size += len(chunk)
        if size > limit or d.unconsumed_tail:
            raise LimitExceeded(f"decompresses to more than {human(limit)}")
        if not d.eof:
            raise EOFError("compressed data ended before the end-of-stream marker")
        out.append(chunk)
        data = d.unused_data.lstrip(b"\0")  # gzip allows zero padding between members
        if not data:
            return b"".join(out)


_WITHIN: ContextVar[tuple[Path, str] | None] = ContextVar("flatcar_infra_local_reads_within", default=None)


@contextmanager
def local_reads_within(root: str | os.PathLike[str], name: str = "the repository") -> Iterator[None]:
    """While active, ``LocalFiles`` reads only files whose real path (symlinks followed) is below
    ``root`` and not under a ``.git`` directory: ``plan --stack-dir`` compiles configs a pull
    request controls, whose ``local:`` must not reach ``.git/config`` or the CI machine's files."""
    token = _WITHIN.set((Path(os.path.realpath(root)), name))
    try:
        yield
    finally:
        _WITHIN.reset(token)


def check_within(path: str | os.PathLike[str]) -> None:
    """Raise ``LimitExceeded`` when ``local_reads_within`` is active and ``path`` leaves it."""
    within = _WITHIN.get()
    if within is None:
        return
    root, name = within
    real = Path(os.path.realpath(path))
    if not real.is_relative_to(root):
        raise LimitExceeded(f"outside {name} (plan reads only files inside {name})")
    if ".git" in real.relative_to(root).parts:
        raise LimitExceeded("inside .git (plan never reads the repository's .git)")


class LocalFiles:
    """How one config reads its local files (``local:``, ``contents_local``, trees, key files):
    regular files only, never blocking, each within ``contents_bytes`` and all together within
    ``local_total_bytes``, and within ``local_reads_within`` when that is active."""

    def __init__(self, limits: Limits = LIMITS) -> None:
        self.limits = limits
        self.left = limits.local_total_bytes

    def read(self, path: str | os.PathLike[str]) -> bytes:
        """Raises ``LimitExceeded`` (too big, not a regular file, not allowed) or ``OSError``."""
        check_within(path)
        limit = min(self.limits.contents_bytes, self.left)
        try:
            data = read_regular_file(path, limit)
        except LimitExceeded:
            if limit < self.limits.contents_bytes:
                raise LimitExceeded(f"over the limit of {human(self.limits.local_total_bytes)} for all "
                                    "local files of a config together") from None
            raise
        self.left -= len(data)
        return data
