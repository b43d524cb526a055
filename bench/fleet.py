"""Fleet rollout concurrency: 12 hosts, max_unavailable 4 and 12, against one host, in ONE run.

The hosts are the bench's stand-ins (``bench/standin_hosts.py``: real sshd in network namespaces,
a reboot that takes a fixed time), driven by the same runner and procedure as
``flatcar-infra rollout``. Baseline: one host's rollout (measured before and after, averaged).

- max_unavailable 4 on 12 hosts: total / single, ideal 3.0, target <= 3.3
- max_unavailable 12 on 12 hosts: total / single, ideal 1.0, target <= 1.2
- the same change through ``pulumi up`` (the test engine and the REAL provider server): a
  ``Fleet`` (one ``Rollout`` resource, max_unavailable 12), and for contrast one
  ``ExistingMachine`` per host (12 ``Reprovision`` resources: the provider's 4 worker threads)

    sudo python bench/fleet.py [--reboot-seconds 15] [--hosts 12] [--no-pulumi]
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
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # the package, and tests/ (the engine)
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

KEEP = ("/var/lib/app",)


def doc(version: str, public_key: str | None = None) -> dict[str, Any]:
    """``public_key``: authorized for root (the CLI applies the file as it is; the preflight
    refuses a config that would lock the operator out). Pulumi's machines merge it themselves."""
    files = [{"path": f"/etc/app/{i}.conf", "mode": 420, "overwrite": True,
              "contents": {"source": f"data:,{version}-{i}"}} for i in range(10)]
    d: dict[str, Any] = {"ignition": {"version": "3.3.0"}, "storage": {"files": files}}
    if public_key:
        d["passwd"] = {"users": [{"name": "root", "sshAuthorizedKeys": [public_key]}]}
    return d


def config(version: str, public_key: str | None = None) -> CompiledConfig:
    return compile_config(json.dumps(doc(version, public_key)), filename=f"{version}.ign", stamp_config=True)


def quiet(_phase: str, _message: str, _elapsed: float | None = None) -> None:
    pass


def rollout(hosts: list[StandinHost], identity: Path, version: str, max_unavailable: int
            ) -> tuple[float, RolloutReport]:
    """The CLI's path: the runner with one SSH rollout host per stand-in."""
    c = config(version, Path(f"{identity}.pub").read_text().strip())
    desired = Desired.from_config(c.canonical, c.hash, Policy(keep_paths=KEEP))
    # the hosts first run v1, as a pointer delivered it (no copy on the host): the rollback target
    # until each keeps its own, as `flatcar-infra rollout --previous-config v1.ign` gives it
    v1 = config("v1", Path(f"{identity}.pub").read_text().strip()).canonical
    rhosts = [ssh_host(h.name, SshTarget(h.address, 22, "root", identity_file=str(identity),
                                         host_key=h.host_key), desired, previous=v1) for h in hosts]
    t0 = time.monotonic()
    rep = asyncio.run(run_rollout(rhosts, RolloutPolicy(max_unavailable=max_unavailable), report=quiet))
    took = time.monotonic() - t0
    bad = [f"{h.name}: {h.result} {h.message[:200]}" for h in rep.hosts if h.result != "reprovisioned"]
    if bad or rep.result != "succeeded":
        raise SystemExit(f"rollout to {version} did not succeed ({rep.result}):\n" + "\n".join(bad))
    return took, rep


def pulumi_up(hosts: list[StandinHost], identity: Path, version: str, *, fleet: bool, stack: Any) -> float:
    """``pulumi up`` of a config: a ``Fleet`` (max_unavailable = every host) or one
    ``ExistingMachine`` (with its own ``Reprovision`` resource) per host."""
    from flatcar_infra.components import (
        ExistingMachine,
        ExistingMachineArgs,
        Fleet,
        FleetArgs,
        SshAccess,
        flatcar_config,
    )
    from tests.reprovision.engine import deploy

    key = identity.read_text()
    text = json.dumps(doc(version))

    def program() -> None:
        machines = {h.name: ExistingMachineArgs(config=flatcar_config(text=text, filename=f"{version}.ign"),
                                                ssh=SshAccess(private_key=key, user="root"), host=h.address,
                                                port=22, host_key=h.host_key, policy=Policy(keep_paths=KEEP))
                    for h in hosts}
        if fleet:
            Fleet("fleet", FleetArgs(machines=machines, rollout=RolloutPolicy(max_unavailable=len(hosts))))
        else:
            for name, args in machines.items():
                ExistingMachine(name, args)

    t0 = time.monotonic()
    dep = deploy(program, stack)
    took = time.monotonic() - t0
    if not dep.ok:
        raise SystemExit(f"pulumi up to {version} failed: {dep.error} "
                         f"{[(s.name, s.op, (s.error or '')[-300:]) for s in dep.failed]}")
    return took


def phases(rep: RolloutReport) -> str:
    """Mean seconds per procedure phase over the hosts (where the time went)."""
    sums: dict[str, list[float]] = {}
    for h in rep.hosts:
        for k, v in dict(h.detail.get("phases") or {}).items():
            sums.setdefault(k, []).append(float(v))
    return ", ".join(f"{k} {sum(v) / len(v):.1f}s" for k, v in sums.items())


def log(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--hosts", type=int, default=12)
    # Real Flatcar reboots take 30-90 s; 15 s keeps the bench short while the rollout's own costs
    # (the procedure's reconnect polling, up to 3 s apart, and CPU for many SSH sessions) stay
    # visible: they are printed in seconds too.
    ap.add_argument("--reboot-seconds", type=float, default=15.0)
    ap.add_argument("--no-pulumi", action="store_true", help="skip the pulumi up measurements")
    args = ap.parse_args()
    n = args.hosts
    with tempfile.TemporaryDirectory(prefix="bench-fleet-") as tmp:
        key = Path(tmp) / "id_ed25519"
        subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", "", "-f", str(key)], check=True)
        public = Path(f"{key}.pub").read_text().strip()
        with StandinFleet(n, Path(tmp), reboot_seconds=args.reboot_seconds,
                          config=config("v1", public).canonical, client_public_key=public) as fleet:
            hosts = fleet.hosts
            single1, rep1 = rollout(hosts[:1], key, "single-a", 1)
            log(f"single host: {single1:.1f}s (reboot {args.reboot_seconds:g}s) [{phases(rep1)}]")
            four, rep4 = rollout(hosts, key, "four", 4)
            log(f"{n} hosts, max_unavailable 4: {four:.1f}s (peak {rep4.peak_unavailable} away) "
                f"[{phases(rep4)}]")
            twelve, rep12 = rollout(hosts, key, "twelve", n)
            log(f"{n} hosts, max_unavailable {n}: {twelve:.1f}s (peak {rep12.peak_unavailable} away) "
                f"[{phases(rep12)}]")
            fleet_up = machines_up = 0.0
            if not args.no_pulumi:
                from tests.reprovision.engine import Stack

                stacks = {"fleet": Stack(), "machines": Stack()}
                pulumi_up(hosts, key, "pulumi-a", fleet=True, stack=stacks["fleet"])  # the first up
                fleet_up = pulumi_up(hosts, key, "pulumi-b", fleet=True, stack=stacks["fleet"])
                log(f"pulumi up, Fleet (one Rollout), max_unavailable {n}: {fleet_up:.1f}s")
                pulumi_up(hosts, key, "pulumi-c", fleet=False, stack=stacks["machines"])  # the first up
                machines_up = pulumi_up(hosts, key, "pulumi-d", fleet=False, stack=stacks["machines"])
                log(f"pulumi up, {n} Reprovision resources: {machines_up:.1f}s")
            single2, rep2 = rollout(hosts[:1], key, "single-b", 1)
            log(f"single host again: {single2:.1f}s [{phases(rep2)}]")
            assert all(h.applied_hash() is not None for h in hosts)
    single = (single1 + single2) / 2
    waves4 = -(-n // 4)
    print(f"max_unavailable 4:  total/single = {four / single:.2f}  (ideal {waves4:.1f}, "
          f"target <= {waves4 * 1.1:.1f})")
    print(f"max_unavailable {n}: total/single = {twelve / single:.2f}  (ideal 1.0, target <= 1.2)")
    if not args.no_pulumi:
        print(f"pulumi up, Fleet, max_unavailable {n}: total/single = {fleet_up / single:.2f}  "
              "(one Rollout resource, its own concurrency)")
        print(f"pulumi up, {n} Reprovision resources: total/single = {machines_up / single:.2f}  "
              "(for contrast: the provider process's 4 worker threads)")
    print(f"overhead over ideal: {four - waves4 * single:+.1f}s (max_unavailable 4), "
          f"{twelve - single:+.1f}s (max_unavailable {n}); single host {single:.1f}s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
