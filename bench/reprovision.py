"""In-place reprovision and its rollback vs a plain reboot, on ONE test-bed VM in one run.

Baseline: ``systemctl reboot`` (detached) until SSH answers with a new boot_id, through the same
dialing helper the procedure uses, measured before and after and averaged. Then:

1. a full in-place reprovision (preflight, stage + reboot, verify, confirm) of a changed config;
   target: reprovision / plain reboot <= 1.05;
2. a reprovision whose health check fails after the reboot, so it rolls back in place: the cost
   of the rollback (from the failed check to the host proven back on the old config) as a ratio
   to the plain reprovision of step 1.

    python bench/reprovision.py          (needs root for the cached test-bed image)
"""

from __future__ import annotations

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
from flatcar_infra.reprovision.procedure import ensure
from flatcar_infra.ssh import dial, run_sync
from flatcar_infra.testbed.bucket import LocalBucket
from flatcar_infra.testbed.image import build_image
from flatcar_infra.testbed.machines import VmFactory
from flatcar_infra.testbed.vm import Vm, generate_client_key

TARGET = 1.05


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


def plain_reboot(vm: Vm) -> float:
    target = vm.target

    async def go() -> float:
        async with await dial(target, timeout=60) as s:
            boot = (await s.run(["cat", "/proc/sys/kernel/random/boot_id"])).text.strip()
            t0 = time.monotonic()
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
            async with await dial(target, timeout=600, attempt_timeout=8) as s2:
                if (await s2.run(["cat", "/proc/sys/kernel/random/boot_id"])).text.strip() != boot:
                    return time.monotonic() - t0
            await __import__("asyncio").sleep(1)

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
            base1 = plain_reboot(vm)
            print(f"plain reboot #1: {base1:.1f}s", file=sys.stderr)
            policy = Policy(keep_paths=("/var/lib/app",), health_checks=("test -f /etc/app/0.conf",))
            d2 = Desired.from_config(v2.canonical, v2.hash, policy)
            t0 = time.monotonic()
            out = run_sync(lambda: ensure(vm.target, d2, report=_report, previous=v1.canonical))
            full = time.monotonic() - t0
            assert out.applied_hash == v2.hash and out.rebooted
            base2 = plain_reboot(vm)
            print(f"plain reboot #2: {base2:.1f}s", file=sys.stderr)
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
    base = (base1 + base2) / 2
    print(f"plain reboot to SSH (mean of 2): {base:.1f}s  ({base1:.1f}s, {base2:.1f}s)")
    print(f"full in-place reprovision:       {full:.1f}s")
    for name, dt in out.phases:
        print(f"  {name:<10} {dt:6.1f}s")
    ratio = full / base
    print(
        f"ratio reprovision / reboot: {ratio:.3f} "
        f"(target <= {TARGET}: {'met' if ratio <= TARGET else 'MISSED'})"
    )
    print(
        f"failing reprovision, rolled back: {failing:.1f}s in total; from the failed health check to the "
        f"host proven back on the old config: {back:.1f}s"
    )
    print(f"rollback cost / plain reprovision: {back / full:.3f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
