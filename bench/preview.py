"""Preview cost: 500 ``Diff`` calls of ``Reprovision`` resources through the real provider gRPC
server (``python -m pulumi.dynamic``), as ``pulumi preview`` makes them. No network: every host
is a closed port on 127.0.0.1, so a diff that dialed would fail or stall.

Target: <= 1 s for all 500. Baseline in the same run: the SDK's no-op ``ResourceProvider.diff``
through the same server (the floor set by gRPC + (de)serialization).

    python bench/preview.py [N]
"""

from __future__ import annotations

import socket
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from pulumi.dynamic import ResourceProvider

from flatcar_infra.provider import ReprovisionProvider
from flatcar_infra.reprovision.policy import Policy
from tests.reprovision.engine import ProviderEngine
from tests.reprovision.helpers import compiled


def closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def props(i: int, version: str, port: int) -> dict[str, object]:
    from flatcar_infra.manifest import build_manifest

    files = {f"/etc/app/{k}.conf": f"machine {i} file {k} {version}\n" * 20 for k in range(20)}
    c = compiled(files, units={f"app{k}.service": True for k in range(5)})
    return {
        "host": "127.0.0.1",
        "port": port,
        "user": "core",
        "private_key": "-----KEY-----",
        "host_key": "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIOMqqnkVzrm0SdG6UOoqKLsabgH5C9okWi0dh2l9GKJl",
        "config": c.canonical.decode(),
        "config_hash": c.hash,
        "manifest": build_manifest(c.ignition),
        "policy": Policy(keep_paths=("/var/lib/app",)).to_dict(),
        "delivery": "file",
        "config_url": None,
    }


def run(provider: ResourceProvider, pairs: list[tuple[dict[str, object], dict[str, object]]]) -> float:
    with ProviderEngine(provider) as eng:
        eng.configure({})
        # warm up: the server unpickles and configures the provider once
        eng.diff(eng.urn("warm"), "id", eng.with_provider(pairs[0][0]), eng.with_provider(pairs[0][1]))
        t0 = time.perf_counter()
        for i, (old, new) in enumerate(pairs):
            eng.diff(eng.urn(f"m{i}"), f"id{i}", eng.with_provider(old), eng.with_provider(new))
        return time.perf_counter() - t0


def main() -> int:
    n = int(sys.argv[1]) if len(sys.argv) > 1 else 500
    port = closed_port()
    v1 = [props(i, "v1", port) for i in range(n)]
    v2 = [props(i, "v2" if i % 2 else "v1", port) for i in range(n)]  # half of them change
    pairs = [({**a, "applied_hash": a["config_hash"]}, b) for a, b in zip(v1, v2, strict=True)]
    base = run(ResourceProvider(), pairs)
    ours = run(ReprovisionProvider(), pairs)
    print(f"{n} Diff calls through the gRPC server (config ~{len(str(v1[0]['config'])) // 1024} KiB each)")
    print(f"  baseline (SDK no-op diff): {base:.3f} s")
    print(f"  Reprovision diff:          {ours:.3f} s  ({ours / n * 1000:.2f} ms/diff)")
    print(
        f"  ratio to baseline: {ours / base:.2f}; target <= 1.0 s total: {'met' if ours <= 1.0 else 'MISSED'}"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
