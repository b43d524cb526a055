"""Fleet-level gates: commands run on the operator's side between waves ("etcd has quorum").

Each gate is retried until it exits 0 or its timeout passes, because what it checks (a load
balancer noticing a backend, a cluster re-electing) settles some time after a host is back. A
gate runs in its own process group so a timeout ends everything it started, and nothing else.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import time
from collections.abc import Callable, Mapping, Sequence

GateReport = Callable[[str], None]


async def _run_once(command: str, env: Mapping[str, str], timeout: float) -> tuple[int | None, str]:
    """``(exit status or None on timeout, the tail of its output)``."""
    proc = await asyncio.create_subprocess_exec(
        "sh", "-c", command, stdin=asyncio.subprocess.DEVNULL, stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT, env={**os.environ, **env}, start_new_session=True)
    try:
        out, _ = await asyncio.wait_for(proc.communicate(), timeout)
    except TimeoutError:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)  # the group this gate started, nothing else
        await proc.wait()
        return None, ""
    except asyncio.CancelledError:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)
        raise
    text = out.decode("utf-8", errors="replace").strip()
    return proc.returncode, text[-400:]


async def wait_gate(command: str, *, timeout: float, interval: float, env: Mapping[str, str],
                    report: GateReport) -> str | None:
    """Run ``command`` until it exits 0; ``None`` when it passed, else why it did not."""
    deadline = time.monotonic() + timeout
    attempt = 0
    last = ""
    while True:
        attempt += 1
        left = deadline - time.monotonic()
        status, out = await _run_once(command, env, max(left, 0.1))
        if status == 0:
            report(f"gate passed: {command}" + (f" (attempt {attempt})" if attempt > 1 else ""))
            return None
        last = f"exit {status}" if status is not None else "timed out"
        if out:
            last += f": {out.splitlines()[-1]}"
        left = deadline - time.monotonic()
        if left <= 0:
            return f"gate {command!r} did not pass within {timeout:g}s ({attempt} attempt(s); last: {last})"
        if attempt == 1 or attempt % 5 == 0:
            report(f"gate not passing yet ({last}); retrying every {interval:g}s: {command}")
        await asyncio.sleep(min(interval, left))


async def run_gates(commands: Sequence[str], *, timeout: float, interval: float, env: Mapping[str, str],
                    report: GateReport) -> str | None:
    """Every gate in order, each with its own timeout; the first that does not pass stops."""
    for command in commands:
        problem = await wait_gate(command, timeout=timeout, interval=interval, env=env, report=report)
        if problem:
            return problem
    return None
