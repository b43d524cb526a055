"""Fleet rollout concurrency: 12 hosts, max_unavailable 4 and 12, against one host, in ONE run.

The hosts are the bench's stand-ins (``bench/standin_hosts.py``: real sshd in network namespaces,
a reboot that takes a fixed time), driven by the same runner and procedure as
``flatcar-infra rollout``. Baseline: one host's rollout (measured before and after, averaged).

- max_unavailable 4 on 12 hosts: total / single, ideal 3.0, target <= 3.3
- max_unavailable 12 on 12 hosts: total / single, ideal 1.0, target <= 1.2

    sudo python bench/fleet.py [--reboot-seconds 15] [--hosts 12]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from standin_hosts import StandinFleet, StandinHost

from flatcar_infra.compiler.api import CompiledConfig, compile_config
from flatcar_infra.reprovision.desired import Desired
from flatcar_infra.reprovision.policy import Policy
from flatcar_infra.rollout.hosts import ssh_host
from flatcar_infra.rollout.policy import RolloutPolicy
from flatcar_infra.rollout.results import RolloutReport
from flatcar_infra.rollout.runner import run_rollout
from flatcar_infra.ssh import SshTarget


def config(version: str) -> CompiledConfig:
    doc = {
        "ignition": {"version": "3.3.0"},
        "storage": {
            "files": [
                {
                    "path": f"/etc/app/{i}.conf",
                    "mode": 420,
                    "overwrite": True,
                    "contents": {"source": f"data:,{version}-{i}"},
                }
                for i in range(10)
            ]
        },
    }
    return compile_config(json.dumps(doc), filename=f"{version}.ign", stamp_config=True)


def quiet(_phase: str, _message: str, _elapsed: float | None = None) -> None:
    pass


def rollout(
    hosts: list[StandinHost], identity: Path, version: str, max_unavailable: int
) -> tuple[float, RolloutReport]:
    c = config(version)
    desired = Desired.from_config(c.canonical, c.hash, Policy(keep_paths=("/var/lib/app",)))
    rhosts = [
        ssh_host(
            h.name,
            SshTarget(h.address, 22, "root", identity_file=str(identity), host_key=h.host_key),
            desired,
        )
        for h in hosts
    ]
    t0 = time.monotonic()
    rep = asyncio.run(run_rollout(rhosts, RolloutPolicy(max_unavailable=max_unavailable), report=quiet))
    took = time.monotonic() - t0
    bad = [f"{h.name}: {h.result} {h.message[:200]}" for h in rep.hosts if h.result != "reprovisioned"]
    if bad or rep.result != "succeeded":
        raise SystemExit(f"rollout to {version} did not succeed ({rep.result}):\n" + "\n".join(bad))
    return took, rep


def phases(rep: RolloutReport) -> str:
    """Mean seconds per procedure phase over the hosts (where the time went)."""
    sums: dict[str, list[float]] = {}
    for h in rep.hosts:
        for k, v in dict(h.detail.get("phases") or {}).items():
            sums.setdefault(k, []).append(float(v))
    return ", ".join(f"{k} {sum(v) / len(v):.1f}s" for k, v in sums.items())


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--hosts", type=int, default=12)
    # Real Flatcar reboots take 30-90 s; 15 s keeps the bench short while the rollout's own costs
    # (the procedure's reconnect polling, up to 3 s apart, and CPU for many SSH sessions) stay
    # visible: they are printed in seconds too.
    ap.add_argument("--reboot-seconds", type=float, default=15.0)
    args = ap.parse_args()
    with tempfile.TemporaryDirectory(prefix="bench-fleet-") as tmp:
        key = Path(tmp) / "id_ed25519"
        subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", "", "-f", str(key)], check=True)
        with StandinFleet(
            args.hosts,
            Path(tmp),
            reboot_seconds=args.reboot_seconds,
            config=config("v1").canonical,
            client_public_key=Path(f"{key}.pub").read_text().strip(),
        ) as fleet:
            hosts = fleet.hosts
            single1, rep1 = rollout(hosts[:1], key, "single-a", 1)
            print(
                f"single host: {single1:.1f}s (reboot {args.reboot_seconds:g}s) [{phases(rep1)}]",
                file=sys.stderr,
            )
            four, rep4 = rollout(hosts, key, "four", 4)
            print(
                f"{len(hosts)} hosts, max_unavailable 4: {four:.1f}s (peak {rep4.peak_unavailable} away) "
                f"[{phases(rep4)}]",
                file=sys.stderr,
            )
            twelve, rep12 = rollout(hosts, key, "twelve", len(hosts))
            print(
                f"{len(hosts)} hosts, max_unavailable {len(hosts)}: {twelve:.1f}s "
                f"(peak {rep12.peak_unavailable} away) [{phases(rep12)}]",
                file=sys.stderr,
            )
            single2, rep2 = rollout(hosts[:1], key, "single-b", 1)
            print(f"single host again: {single2:.1f}s [{phases(rep2)}]", file=sys.stderr)
            assert all(h.applied_hash() == config("twelve").hash for h in hosts[1:])
    single = (single1 + single2) / 2
    waves4 = -(-len(hosts) // 4)
    print(
        f"max_unavailable 4:  total/single = {four / single:.2f}  "
        f"(ideal {waves4:.1f}, target <= {waves4 * 1.1:.1f})"
    )
    print(f"max_unavailable {len(hosts)}: total/single = {twelve / single:.2f}  (ideal 1.0, target <= 1.2)")
    print(
        f"overhead over ideal: {four - waves4 * single:+.1f}s (max_unavailable 4), "
        f"{twelve - single:+.1f}s (max_unavailable {len(hosts)}); single host {single:.1f}s"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
