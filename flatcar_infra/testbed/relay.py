"""Relay one guest connection (stdin/stdout) to a TCP port on 127.0.0.1.

QEMU runs this for each connection the guest opens to the bucket address
(``guestfwd=tcp:10.0.2.100:80-cmd:python3 -I relay.py PORT``). A ``tcp:`` chardev target would be
simpler, but QEMU 7.2 connects it once per QEMU process: the first Ignition boot fetches its config
and every later boot (the reset boots the tests exist for) hangs. Self-contained (run with
``python -I``) so that it starts fast and needs nothing from the environment.
"""

from __future__ import annotations

import os
import socket
import sys
import threading


def _pump(read: int, write: socket.socket) -> None:
    while chunk := os.read(read, 65536):
        write.sendall(chunk)
    write.shutdown(socket.SHUT_WR)


def main() -> int:
    port = int(sys.argv[1])
    sock = socket.create_connection(("127.0.0.1", port), timeout=30)
    sock.settimeout(None)
    upstream = threading.Thread(target=_pump, args=(sys.stdin.fileno(), sock), daemon=True)
    upstream.start()
    out = sys.stdout.fileno()
    while chunk := sock.recv(65536):
        view = memoryview(chunk)
        while view:
            view = view[os.write(out, view):]
    return 0


if __name__ == "__main__":
    try:
        sys.exit(main())
    except (OSError, ValueError):
        sys.exit(1)
