"""A minimal synchronous QMP client: enough for fault injection (link, pause, reset, quit)."""

from __future__ import annotations

import json
import socket
from pathlib import Path
from typing import Any

from flatcar_infra.errors import UserError


class QmpError(UserError):
    """QEMU refused a QMP command or could not be reached."""


def qmp_command(socket_path: Path, command: str, arguments: dict[str, Any] | None = None,
                *, timeout: float = 10.0) -> Any:
    """Connect, negotiate capabilities, run one command, return its ``return`` value.

    One connection per command keeps no state between calls (QEMU accepts reconnects).
    """
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
        sock.settimeout(timeout)
        try:
            sock.connect(str(socket_path))
        except OSError as exc:
            raise QmpError(f"cannot reach QEMU's QMP socket {socket_path}: {exc}") from None
        reader = sock.makefile("rb")
        _read_reply(reader, greeting=True)
        for cmd, args in (("qmp_capabilities", None), (command, arguments)):
            msg: dict[str, Any] = {"execute": cmd}
            if args:
                msg["arguments"] = args
            sock.sendall(json.dumps(msg).encode() + b"\n")
            result = _read_reply(reader)
        return result


def _read_reply(reader: Any, *, greeting: bool = False) -> Any:
    while True:
        line = reader.readline()
        if not line:
            raise QmpError("QEMU closed the QMP connection")
        msg = json.loads(line)
        if greeting and "QMP" in msg:
            return msg
        if "return" in msg:
            return msg["return"]
        if "error" in msg:
            err = msg["error"]
            raise QmpError(f"QMP error: {err.get('class')}: {err.get('desc')}")
        # asynchronous events (RESET, STOP, ...) are skipped
