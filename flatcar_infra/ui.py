"""The one presentation layer for people: progress, diagnostics, tables. No scattered prints.

Machine-readable output (Ignition JSON, ``--json``) goes to stdout through ``emit``; everything for
people goes to stderr, colored only on a terminal. ``rich`` is imported on the first message, not
at start-up: a successful ``render`` prints none and should not pay for it.
"""

from __future__ import annotations

import sys
import time
from collections.abc import Iterable, Iterator, Sequence
from contextlib import contextmanager
from functools import cache
from typing import TYPE_CHECKING

from flatcar_infra.errors import Diagnostic

if TYPE_CHECKING:
    from rich.console import Console


@cache
def _err() -> Console:
    from rich.console import Console

    return Console(stderr=True, highlight=False, soft_wrap=True, emoji=False)  # "web.bu:100:3" stays text


def _escape(text: str) -> str:
    from rich.markup import escape

    return escape(text)


def emit(data: str | bytes) -> None:
    """Write machine-readable output to stdout, exactly as given."""
    if isinstance(data, str):
        data = data.encode("utf-8")
    sys.stdout.buffer.write(data)
    sys.stdout.buffer.flush()


def diagnostics(diags: Iterable[Diagnostic]) -> None:
    for d in diags:
        style = "red" if d.is_error else "yellow"
        _err().print(f"[{style}]{_escape(str(d))}[/{style}]")


def error(message: str) -> None:
    _err().print(f"[bold red]error:[/bold red] {_escape(message)}")


def info(message: str) -> None:
    _err().print(_escape(message))


def progress(phase: str, message: str, elapsed: float | None = None) -> None:
    """One progress line: ``[phase  12.3s] message``."""
    stamp = f" {elapsed:6.1f}s" if elapsed is not None else ""
    _err().print(f"[cyan]\\[{_escape(phase)}{stamp}][/cyan] {_escape(message)}")


@contextmanager
def phase(name: str, message: str) -> Iterator[None]:
    """Report a phase's start and its duration at the end."""
    t0 = time.monotonic()
    progress(name, message)
    yield
    progress(name, "done", time.monotonic() - t0)


def table(headers: Sequence[str], rows: Iterable[Sequence[str]]) -> None:
    """A plain table for people (on stderr): one row per item, columns aligned."""
    from rich.table import Table

    t = Table(box=None, pad_edge=False, show_edge=False, header_style="bold")
    for h in headers:
        t.add_column(h, overflow="fold")
    for row in rows:
        t.add_row(*(_escape(c) for c in row))
    _err().print(t)
