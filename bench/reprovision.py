"""In-place reprovision vs a plain reboot, on ONE test-bed VM in one run.

Baseline: ``systemctl reboot`` (detached) until SSH answers with a new boot_id, measured with the
same dialing loop the procedure uses. Then a full in-place reprovision (preflight, stage, reboot,
verify) of a changed config. The baseline is measured before and after, and averaged.
Target: reprovision / reboot <= 1.15.

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
from flatcar_infra.reprovision.plan import Desired
from flatcar_infra.reprovision.policy import Policy
from flatcar_infra.reprovision.procedure import _wait_new_boot, ensure
from flatcar_infra.ssh import connect, run_sync
from flatcar_infra.testbed.bucket import LocalBucket
from flatcar_infra.testbed.image import build_image
from flatcar_infra.testbed.machines import VmFactory
from flatcar_infra.testbed.vm import Vm, generate_client_key


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
        async with await connect(target) as s:
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
        s2, _ = await _wait_new_boot(target, boot, 600, lambda *a: None, t0)
        dt = time.monotonic() - t0
        await s2.close()
        return dt

    return run_sync(go)


def main() -> int:
    image = build_image(lambda phase, msg: print(f"[{phase}] {msg}", file=sys.stderr))
    with tempfile.TemporaryDirectory(prefix="bench-reprovision-") as tmp, LocalBucket() as bucket:
        key = generate_client_key(Path(tmp) / "keys")
        with VmFactory(image=image, bucket=bucket, client_key=key, workdir=Path(tmp) / "vms") as factory:
            v1, v2 = config(key.public_line, "v1"), config(key.public_line, "v2")
            t0 = time.monotonic()
            vm = factory.boot("bench", config=v1.canonical, add_key=False)
            print(f"first boot to SSH: {time.monotonic() - t0:.1f}s", file=sys.stderr)
            vm.sudo("mkdir -p /var/lib/app && dd if=/dev/urandom of=/var/lib/app/blob bs=1M count=32")
            base1 = plain_reboot(vm)
            print(f"plain reboot #1: {base1:.1f}s", file=sys.stderr)
            desired = Desired.from_config(v2.canonical, v2.hash, Policy(keep_paths=("/var/lib/app",)))
            t0 = time.monotonic()
            out = run_sync(lambda: ensure(vm.target, desired, report=_report))
            full = time.monotonic() - t0
            assert out.applied_hash == v2.hash and out.rebooted
            base2 = plain_reboot(vm)
            print(f"plain reboot #2: {base2:.1f}s", file=sys.stderr)
    base = (base1 + base2) / 2
    print(f"plain reboot to SSH (mean of 2): {base:.1f}s  ({base1:.1f}s, {base2:.1f}s)")
    print(f"full in-place reprovision:       {full:.1f}s")
    for name, dt in out.phases:
        print(f"  {name:<10} {dt:6.1f}s")
    ratio = full / base
    print(f"ratio: {ratio:.3f} (target <= 1.15: {'met' if ratio <= 1.15 else 'MISSED'})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
