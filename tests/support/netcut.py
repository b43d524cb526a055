"""A TCP forwarder on 127.0.0.1 that tests can cut (connections closed at once) or black-hole
(bytes silently dropped, connections left open, like a host whose network died): SSH drops at an
exact point of a running operation, without a VM."""

from __future__ import annotations

import contextlib
import socket
import threading
from types import TracebackType


class NetCut:
    def __init__(self, target_port: int) -> None:
        self.target_port = target_port
        self._listener = socket.create_server(("127.0.0.1", 0))
        self.port: int = self._listener.getsockname()[1]
        self._socks: list[socket.socket] = []
        self._lock = threading.Lock()
        self.mode = "forward"  # forward | blackhole | refuse
        threading.Thread(target=self._accept, daemon=True).start()

    def cut(self) -> None:
        """Close every connection now (the peer sees EOF or a reset) and refuse new ones."""
        with self._lock:
            self.mode = "refuse"
            for s in self._socks:
                with contextlib.suppress(OSError):
                    s.shutdown(socket.SHUT_RDWR)
                s.close()
            self._socks.clear()

    def blackhole(self) -> None:
        """Keep connections open but deliver nothing any more, in either direction."""
        self.mode = "blackhole"

    def _accept(self) -> None:
        while True:
            try:
                client, _ = self._listener.accept()
            except OSError:
                return
            if self.mode == "refuse":
                client.close()
                continue
            if self.mode == "blackhole":
                with self._lock:
                    self._socks.append(client)  # accepted, never answered
                continue
            upstream = socket.create_connection(("127.0.0.1", self.target_port))
            with self._lock:
                self._socks += [client, upstream]
            for a, b in ((client, upstream), (upstream, client)):
                threading.Thread(target=self._pump, args=(a, b), daemon=True).start()

    def _pump(self, src: socket.socket, dst: socket.socket) -> None:
        while True:
            try:
                data = src.recv(65536)
            except OSError:
                return
            if not data:
                with contextlib.suppress(OSError):
                    dst.shutdown(socket.SHUT_WR)
                return
            if self.mode != "forward":
                continue  # black-holed
            try:
                dst.sendall(data)
            except OSError:
                return

    def close(self) -> None:
        self.cut()
        self._listener.close()

    def __enter__(self) -> NetCut:
        return self

    def __exit__(
        self, et: type[BaseException] | None, e: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()
