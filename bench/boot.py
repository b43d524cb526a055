"""Test-bed timings: image build, first boot, snapshot save and restore, reboots, a loaded boot.

    python bench/boot.py [--fresh] [--busy N]

Ratios are against the first boot measured in the same run, so they compare across machines of
different speed. ``--fresh`` rebuilds the image (root, a few minutes); otherwise the cached image is
used and its recorded build time reported. ``--busy N`` (default: one per CPU) also boots a VM
while N busy loops keep the CPUs loaded: it must come up (the in-guest and host-side timeouts
stretch with the load), and the run prints how much slower it was and the load factor the waits saw.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from flatcar_infra.testbed.bucket import LocalBucket
from flatcar_infra.testbed.image import build_image, cached_image
from flatcar_infra.testbed.machines import VmFactory
from flatcar_infra.testbed.vm import choose_accel, generate_client_key, time_scale


def config(generation: str) -> dict[str, object]:
    return {
        "ignition": {"version": "3.3.0"},
        "storage": {
            "files": [
                {
                    "path": "/etc/generation",
                    "mode": 420,
                    "overwrite": True,
                    "contents": {"source": f"data:,{generation}"},
                }
            ]
        },
    }


class Stopwatch:
    """Laps with labels, printed as ratios against the first."""

    def __init__(self) -> None:
        self.laps: list[tuple[str, float]] = []
        self._t = time.monotonic()

    def start(self) -> None:
        self._t = time.monotonic()

    def lap(self, label: str) -> None:
        self.laps.append((label, time.monotonic() - self._t))


def loaded_boot(factory: VmFactory, busy: int) -> tuple[float, float]:
    """Boot a VM while ``busy`` busy loops run; returns (seconds to SSH, largest load factor seen)."""
    loops = [subprocess.Popen([sys.executable, "-c", "while True: pass"]) for _ in range(busy)]
    try:
        time.sleep(5)
        t = time.monotonic()
        scale_before = time_scale()
        vm = factory.boot("loaded", config=config("loaded"), timeout=600)
        seconds = time.monotonic() - t
        assert vm.read_file("/etc/generation") == b"loaded"
        assert vm.run("systemctl --failed --no-legend --plain").text.strip() == ""
        return seconds, max(scale_before, time_scale())
    finally:
        for loop in loops:
            loop.kill()
            loop.wait()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--fresh", action="store_true", help="rebuild the image and time it")
    parser.add_argument("--busy", type=int, default=os.cpu_count() or 1,
                        help="busy loops during the loaded boot (0: skip it)")
    args = parser.parse_args()

    t0 = time.monotonic()
    was_cached = cached_image() is not None and not args.fresh
    image = build_image(lambda phase, msg: None, force=args.fresh)
    build_wall = time.monotonic() - t0
    manifest = json.loads((image.parent / "manifest.json").read_text())
    print(f"accelerator: {choose_accel()}, load factor at start: {time_scale():.1f}")
    if was_cached:
        print(
            f"image build: cached (lookup {build_wall:.1f}s; the cached build took "
            f"{manifest.get('build_seconds', '?')}s)"
        )
    else:
        print(f"image build: fresh {build_wall:.1f}s")

    watch = Stopwatch()
    loaded: tuple[float, float] | None = None
    with tempfile.TemporaryDirectory(prefix="fi-bench-") as tmp, LocalBucket() as bucket:
        key = generate_client_key(Path(tmp) / "keys")
        with VmFactory(image=image, bucket=bucket, client_key=key, workdir=Path(tmp) / "vms") as factory:
            watch.start()
            vm = factory.boot("bench", config=config("v1"), timeout=900)
            watch.lap("first boot -> SSH")
            watch.start()
            snap = factory.snapshot(vm)
            watch.lap("snapshot (save, resume)")
            watch.start()
            clone = factory.restore(snap, "clone")
            watch.lap("restore as a new VM -> SSH")
            assert clone.read_file("/etc/generation") == b"v1"
            clone.stop()
            watch.start()
            vm.restore(snap)
            watch.lap("restore in place -> SSH")
            watch.start()
            vm.reboot(timeout=900)
            watch.lap("plain reboot -> SSH")
            factory.upload("bench", config("v2"))
            vm.run("sudo flatcar-reset --keep-machine-id --keep-paths '/etc/ssh/ssh_host_.*'")
            watch.start()
            vm.reboot(timeout=900)
            watch.lap("reset reboot -> SSH")
            assert vm.read_file("/etc/generation") == b"v2"
            vm.stop()
            if args.busy:
                loaded = loaded_boot(factory, args.busy)

    first = watch.laps[0][1]
    for label, seconds in watch.laps:
        print(f"{label:28s} {seconds:7.1f}s  ({seconds / first:.3f} of first boot)")
    if loaded is not None:
        seconds, scale = loaded
        print(f"{'boot with ' + str(args.busy) + ' busy loops':28s} {seconds:7.1f}s  "
              f"({seconds / first:.2f} of first boot; load factor seen by the waits: {scale:.1f})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
