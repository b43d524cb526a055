"""In-place reprovision and its rollback vs a plain reboot, on ONE test-bed VM in one run.

Baselines, each measured twice (before and after the reprovision) and averaged, through the same
dialing helper and polling the procedure uses, from the reboot command to SSH on the new boot:
a plain ``systemctl reboot``, and a bare reset (``flatcar-reset -F`` by hand, keeping what the
procedure keeps, then the reboot: the floor of any in-place reprovision, since the reset boot
reruns Ignition). Then:

1. a full in-place reprovision (preflight, stage + reboot, verify, confirm) of a changed config;
   target: reprovision / plain reboot <= 1.05; printed with its split into the reset boot's own
   cost (bare reset / plain reboot) and the procedure's phases;
2. a reprovision whose health check fails after the reboot, so it rolls back in place: the cost
   of the rollback (from the failed check to the host proven back on the old config) as a ratio
   to the plain reprovision of step 1.

    python bench/reprovision.py          (needs root for the cached test-bed image)
"""

from __future__ import annotations

import asyncio
import json
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from flatcar_infra.compiler.api import CompiledConfig, compile_config
from flatcar_infra.reprovision.desired import Desired
from flatcar_infra.reprovision.messages import ReprovisionError
from flatcar_infra.reprovision.policy import Policy
from flatcar_infra.reprovision.procedure import REBOOT_POLL, ensure
from flatcar_infra.ssh import AuthRefused, HostKeyMismatch, SshError, dial, run_sync
from flatcar_infra.testbed.bucket import LocalBucket
from flatcar_infra.testbed.image import build_image
from flatcar_infra.testbed.machines import VmFactory
from flatcar_infra.testbed.vm import Vm, generate_client_key

TARGET = 1.05
#: What the bare reset keeps: the bench's data, the host keys and the procedure's own state
BARE_KEEP = ("/var/lib/app", "/etc/ssh/ssh_host_.*", "/var/lib/flatcar-infra")


def config(key: str, version: str) -> CompiledConfig:
    doc = {
        "ignition": {"version": "3.3.0"},
        "passwd": {"users": [{"name": "core", "sshAuthorizedKeys": [key]}]},
        "storage": {
            "files": [
                {
                    "path": f"/etc/app/{i}.conf",
                    "mode": 420,
                    "overwrite": True,
                    "contents": {"source": f"data:,{version}-{i}"},
                }
                for i in range(20)
            ]
        },
    }
    return compile_config(json.dumps(doc), filename=f"{version}.ign", stamp_config=True)


def _report(phase: str, message: str, elapsed: float | None = None) -> None:
    print(f"  [{phase}{f' {elapsed:.1f}s' if elapsed is not None else ''}] {message}", file=sys.stderr)


def reboot_to_ssh(vm: Vm, reset: bytes | None = None) -> float:
    """Seconds from the reboot command to SSH answering on the new boot. ``reset``: first stage a
    selective reset to this config by hand (the floor any tool pays for an in-place reprovision:
    ``flatcar-reset`` keeping what the procedure keeps, then the reboot)."""
    target = vm.target
    stage: list[str] = []
    if reset is not None:
        stage = [
            "sudo",
            "-n",
            "flatcar-reset",
            "--keep-machine-id",
            "-F",
            "/var/tmp/bench.ign",
            "--keep-paths",
            *BARE_KEEP,
        ]

    async def go() -> float:
        async with await dial(target, timeout=60) as s:
            boot = (await s.run(["cat", "/proc/sys/kernel/random/boot_id"])).text.strip()
            t0 = time.monotonic()
            if reset is not None:
                await s.run(["sudo", "-n", "tee", "/var/tmp/bench.ign"], input=reset, check=True)
                await s.run(stage, check=True)
            await s.run(
                [
                    "sudo",
                    "-n",
                    "systemd-run",
                    "--no-block",
                    "--collect",
                    "sh",
                    "-c",
                    "sleep 2; systemctl reboot",
                ],
                check=True,
            )
        while True:
            # the old boot may still answer (or drop the connection mid-command) while it goes down
            try:
                async with await dial(target, timeout=600, attempt_timeout=8, max_delay=REBOOT_POLL) as s2:
                    now = (await s2.run(["cat", "/proc/sys/kernel/random/boot_id"], check=True)).text.strip()
                    if now and now != boot:  # a shell killed by the shutdown prints nothing
                        return time.monotonic() - t0
            except (HostKeyMismatch, AuthRefused):
                raise
            except SshError:
                pass
            await asyncio.sleep(1)

    return run_sync(go)


def main() -> int:
    image = build_image(lambda phase, msg: print(f"[{phase}] {msg}", file=sys.stderr))
    with tempfile.TemporaryDirectory(prefix="bench-reprovision-") as tmp, LocalBucket() as bucket:
        key = generate_client_key(Path(tmp) / "keys")
        with VmFactory(image=image, bucket=bucket, client_key=key, workdir=Path(tmp) / "vms") as factory:
            v1, v2, v3 = (config(key.public_line, v) for v in ("v1", "v2", "v3"))
            t0 = time.monotonic()
            vm = factory.boot("bench", config=v1.canonical, add_key=False)
            print(f"first boot to SSH: {time.monotonic() - t0:.1f}s", file=sys.stderr)
            vm.sudo("mkdir -p /var/lib/app && dd if=/dev/urandom of=/var/lib/app/blob bs=1M count=32")
            vm.close_ssh()
            plain = [reboot_to_ssh(vm)]
            print(f"plain reboot #1: {plain[-1]:.1f}s", file=sys.stderr)
            bare = [reboot_to_ssh(vm, reset=v1.canonical)]
            print(f"bare reset + reboot #1: {bare[-1]:.1f}s", file=sys.stderr)
            policy = Policy(keep_paths=("/var/lib/app",), health_checks=("test -f /etc/app/0.conf",))
            d2 = Desired.from_config(v2.canonical, v2.hash, policy)
            t0 = time.monotonic()
            out = run_sync(lambda: ensure(vm.target, d2, report=_report, previous=v1.canonical))
            full = time.monotonic() - t0
            assert out.applied_hash == v2.hash and out.rebooted
            plain.append(reboot_to_ssh(vm))
            print(f"plain reboot #2: {plain[-1]:.1f}s", file=sys.stderr)
            bare.append(reboot_to_ssh(vm, reset=v2.canonical))
            print(f"bare reset + reboot #2: {bare[-1]:.1f}s", file=sys.stderr)
            bad = Policy(keep_paths=("/var/lib/app",), health_checks=("test -f /etc/app/missing",))
            d3 = Desired.from_config(v3.canonical, v3.hash, bad)
            marks: dict[str, float] = {}

            def mark(phase: str, message: str, elapsed: float | None = None) -> None:
                _report(phase, message, elapsed)
                if phase == "rollback" and "rejected" in message:
                    marks["detected"] = time.monotonic()

            t0 = time.monotonic()
            try:
                run_sync(lambda: ensure(vm.target, d3, report=mark))
                print("the failing reprovision did not fail", file=sys.stderr)
                return 1
            except ReprovisionError as exc:
                failing = time.monotonic() - t0
                back = time.monotonic() - marks["detected"]
                assert exc.rolled_back and exc.applied_hash == v2.hash, exc
    base, floor = sum(plain) / len(plain), sum(bare) / len(bare)
    own = sum(dt for name, dt in out.phases if name != "reboot")
    print(f"plain reboot to SSH (mean of 2):        {base:.1f}s  ({', '.join(f'{x:.1f}s' for x in plain)})")
    print(f"bare reset + reboot to SSH (mean of 2): {floor:.1f}s  ({', '.join(f'{x:.1f}s' for x in bare)})")
    print(f"full in-place reprovision:              {full:.1f}s")
    for name, dt in out.phases:
        print(f"  {name:<10} {dt:6.1f}s")
    ratio = full / base
    print(
        f"ratio reprovision / reboot: {ratio:.3f} "
        f"(target <= {TARGET}: {'met' if ratio <= TARGET else 'MISSED'})"
    )
    print(f"  the reset boot itself (bare reset + reboot / plain reboot): {floor / base:.3f}")
    print(f"  the procedure's own phases (all but the reboot): {own:.1f}s = {own / base:.3f} of a reboot")
    print(f"ratio reprovision / bare reset + reboot: {full / floor:.3f}")
    print(
        f"failing reprovision, rolled back: {failing:.1f}s in total; from the failed health check to the "
        f"host proven back on the old config: {back:.1f}s"
    )
    print(f"rollback cost / plain reprovision: {back / full:.3f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
