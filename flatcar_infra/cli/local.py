"""``flatcar-infra local up|list|down|image``: Flatcar(-like) machines on this host, no cloud account.

``up`` compiles the config, adds the machine's login key for ``core`` (merged the way Ignition
merges configs), uploads it to the local bucket server, boots the VM with the never-changing
pointer config as user-data, waits for SSH and prints one JSON object (name, host, port, user,
identity_file, host_key, config_url, config_hash). Run twice with the same name, it reuses the
running VM; a changed config is uploaded and reported (applying it is ``flatcar-infra reprovision``'s
job). ``--image`` boots a real ``flatcar_production_qemu_image.img`` instead of the stand-in.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

from flatcar_infra import ui
from flatcar_infra.cli.options import parse_vars
from flatcar_infra.compiler.api import compile_file


def register(subparsers: Any) -> None:
    p = subparsers.add_parser("local", help="run Flatcar machines locally under QEMU (no cloud account)",
                              description=__doc__)
    sub = p.add_subparsers(dest="local_command", metavar="ACTION", required=True)

    up = sub.add_parser("up", help="boot (or reuse) a local machine from a config; prints JSON")
    up.add_argument("--name", default="flatcar", help="machine name (default: flatcar)")
    up.add_argument("--config", required=True, metavar="FILE", help="Butane, CLC or Ignition config")
    up.add_argument("--files-dir", metavar="DIR", help="directory for local files (default: the config's)")
    up.add_argument("--var", action="append", default=[], metavar="K=V", help="template variable; repeatable")
    up.add_argument("--image", metavar="PATH",
                    help="a real flatcar_production_qemu_image.img (default: the built-in stand-in)")
    up.add_argument("--timeout", type=float, default=900.0, help="seconds to wait for SSH (default 900)")
    up.set_defaults(func=run_up)

    ls = sub.add_parser("list", help="list local machines (JSON lines)")
    ls.set_defaults(func=run_list)

    down = sub.add_parser("down", help="stop local machines and remove their disks")
    who = down.add_mutually_exclusive_group(required=True)
    who.add_argument("--name", help="the machine to stop (the last one also stops the bucket server)")
    who.add_argument("--all", action="store_true", help="every machine, and the local bucket server")
    down.set_defaults(func=run_down)

    image = sub.add_parser("image", help="build (or locate) the cached stand-in image; prints its path")
    image.add_argument("--force", action="store_true", help="rebuild even when cached")
    image.set_defaults(func=run_image)


def _progress(phase: str, message: str) -> None:
    ui.progress(phase, message)


def run_up(args: argparse.Namespace) -> int:
    # The test bed is reached only through the local target (flatcar_infra.targets.local).
    from flatcar_infra.targets import local

    name = local.vm_name(args.name)
    compiled = compile_file(args.config, files_dir=args.files_dir, variables=parse_vars(args.var))
    for warning in compiled.warnings:
        ui.diagnostics([warning])
    # the login key for core, merged the way the stack's machine components merge it
    config = local.login_config(compiled, local.vm_login_key(name))
    result = local.vm_up(name, config, image=Path(args.image) if args.image else None,
                         progress=_progress, timeout=args.timeout)
    if not result.created:
        if result.config_changed:
            ui.info(f"{name} is running; its config changed and was uploaded to "
                    f"{result.machine['config_url']} — apply it with `flatcar-infra reprovision` "
                    "(the machine still runs the old one)")
        else:
            ui.info(f"{name} is already running with this config")
    ui.emit(json.dumps(local.vm_view(result.machine), sort_keys=True) + "\n")
    return 0


def run_list(args: argparse.Namespace) -> int:
    from flatcar_infra.targets import local

    for machine in local.vm_list():
        view = {**local.vm_view(machine), "running": machine["running"]}
        ui.emit(json.dumps(view, sort_keys=True) + "\n")
    return 0


def run_down(args: argparse.Namespace) -> int:
    from flatcar_infra.targets import local

    if args.all:
        for machine in local.vm_list():
            local.vm_down(machine["name"], _progress)
        if local.stop_bucket_server():
            ui.progress("bucket", "local bucket server stopped")
        return 0
    if not local.vm_down(local.vm_name(args.name), _progress):
        ui.info(f"no local machine named {args.name!r}")
    if not local.vm_list() and local.stop_bucket_server():
        # the bucket server only serves local machines: the last one down takes it along
        ui.progress("bucket", "no local machine left: local bucket server stopped")
    return 0


def run_image(args: argparse.Namespace) -> int:
    from flatcar_infra.targets import local

    ui.emit(f"{local.build_image(_progress, force=args.force)}\n")
    return 0
