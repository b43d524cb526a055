"""Test-bed timings: image build, first boot to SSH, plain reboot, reset (Ignition) reboot.

    python bench/boot.py [--fresh]

``--fresh`` rebuilds the image (root, a few minutes); otherwise the cached image is used and the
build time reported is that of the cached build (from its manifest). Ratios are against the
first boot measured in the same run, so they compare across machines of different speed.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

from flatcar_infra.testbed.bucket import LocalBucket
from flatcar_infra.testbed.image import build_image, cached_image
from flatcar_infra.testbed.machines import VmFactory
from flatcar_infra.testbed.vm import choose_accel, generate_client_key


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


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--fresh", action="store_true", help="rebuild the image and time it")
    args = parser.parse_args()

    t0 = time.monotonic()
    was_cached = cached_image() is not None and not args.fresh
    image = build_image(lambda phase, msg: None, force=args.fresh)
    build_wall = time.monotonic() - t0
    manifest = json.loads((image.parent / "manifest.json").read_text())
    print(f"accelerator: {choose_accel()}")
    if was_cached:
        print(
            f"image build: cached (lookup {build_wall:.1f}s; the cached build took "
            f"{manifest.get('build_seconds', '?')}s)"
        )
    else:
        print(f"image build: fresh {build_wall:.1f}s")

    with tempfile.TemporaryDirectory(prefix="fi-bench-") as tmp, LocalBucket() as bucket:
        key = generate_client_key(Path(tmp) / "keys")
        with VmFactory(image=image, bucket=bucket, client_key=key, workdir=Path(tmp) / "vms") as factory:
            t = time.monotonic()
            vm = factory.boot("bench", config=config("v1"), timeout=900)
            first = time.monotonic() - t

            t = time.monotonic()
            vm.reboot(timeout=900)
            plain = time.monotonic() - t

            factory.upload("bench", config("v2"))
            vm.run("sudo flatcar-reset --keep-machine-id --keep-paths '/etc/ssh/ssh_host_.*'")
            t = time.monotonic()
            vm.reboot(timeout=900)
            reset = time.monotonic() - t
            assert vm.read_file("/etc/generation") == b"v2"

    print(f"first boot -> SSH:   {first:6.1f}s  (1.00)")
    print(f"plain reboot -> SSH: {plain:6.1f}s  ({plain / first:.2f} of first boot)")
    print(f"reset reboot -> SSH: {reset:6.1f}s  ({reset / first:.2f} of first boot)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
