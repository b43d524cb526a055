"""A dynamic resource that only takes time and records it: for testing the ENGINE DRIVER
(tests/reprovision/engine.py) and the real provider server's scheduling, not any product code.

``seconds``: how long create/update take; ``fail``: raise instead; ``log``: a file that gets one
line ``start|end <name> <time.monotonic()>`` per operation (appended atomically), read by the test.
"""

from __future__ import annotations

import os
import time
import uuid
from typing import Any

import pulumi
import pulumi.dynamic as dyn


def _note(props: dict[str, Any], what: str) -> None:
    line = f"{what} {props['name']} {time.monotonic()!r}\n".encode()
    fd = os.open(props["log"], os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
    try:
        os.write(fd, line)
    finally:
        os.close(fd)


class ProbeProvider(dyn.ResourceProvider):
    def configure(self, req: dyn.ConfigureRequest) -> None:
        """Writes the stack config it was configured with to ``$PROBE_CONFIG_LOG`` (one JSON)."""
        target = os.environ.get("PROBE_CONFIG_LOG")
        if target:
            import json

            with open(target, "w") as f:
                json.dump({"other:key": req.config.get("other:key"), "all": req.config._props}, f)

    def _work(self, props: dict[str, Any]) -> dict[str, Any]:
        _note(props, "start")
        time.sleep(float(props.get("seconds") or 0))
        _note(props, "end")
        if props.get("fail"):
            raise RuntimeError(f"{props['name']} failed on purpose")
        return {**props, "done": props.get("version")}

    def create(self, props: dict[str, Any]) -> dyn.CreateResult:
        return dyn.CreateResult(f"probe-{uuid.uuid4().hex[:8]}", self._work(props))

    def update(self, _id: str, _olds: dict[str, Any], news: dict[str, Any]) -> dyn.UpdateResult:
        return dyn.UpdateResult(self._work(news))

    def diff(self, _id: str, olds: dict[str, Any], news: dict[str, Any]) -> dyn.DiffResult:
        return dyn.DiffResult(changes=olds.get("version") != news.get("version"))


class Probe(dyn.Resource, module="test", name="Probe"):
    done: pulumi.Output[str]

    def __init__(self, name: str, *, version: str, log: str, seconds: float = 0.0, fail: bool = False,
                 opts: pulumi.ResourceOptions | None = None) -> None:
        super().__init__(ProbeProvider(), name, {"name": name, "version": version, "log": log,
                                                 "seconds": seconds, "fail": fail, "done": None}, opts)


def intervals(log: str) -> dict[str, list[tuple[float, float]]]:
    """name → [(start, end)] from the log."""
    starts: dict[str, list[float]] = {}
    out: dict[str, list[tuple[float, float]]] = {}
    with open(log) as f:
        for line in f:
            what, name, t = line.split()
            if what == "start":
                starts.setdefault(name, []).append(float(t))
            else:
                out.setdefault(name, []).append((starts[name].pop(0), float(t)))
    return out


def peak(spans: list[tuple[float, float]]) -> int:
    events = sorted([(a, 1) for a, _ in spans] + [(b, -1) for _, b in spans], key=lambda e: (e[0], e[1]))
    cur = top = 0
    for _, d in events:
        cur += d
        top = max(top, cur)
    return top
