"""``flatcar-infra reprovision``: apply a config to a running Flatcar machine in place, over SSH.

The same procedure the Pulumi provider runs (``flatcar_infra.reprovision.procedure``). Exit 0 on
success, 1 on failure (the message says what state the host is in), 2 on usage errors.
``--dry-run`` runs the preflight and shows the config diff, flatcar-reset's previews and the exact
commands a real run would send, changing nothing on the host.
"""

from __future__ import annotations

import argparse
import json
import re
import time
from pathlib import Path
from typing import Any

from flatcar_infra import ui
from flatcar_infra.cli.options import add_rollback_options, parse_vars, policy_usage_error, read_option_file
from flatcar_infra.compiler.api import compile_file
from flatcar_infra.errors import UsageError, UserError
from flatcar_infra.reprovision.decide import short
from flatcar_infra.reprovision.desired import DELIVERIES, Desired
from flatcar_infra.reprovision.policy import Policy, PolicyError
from flatcar_infra.reprovision.source import ConfigSource
from flatcar_infra.ssh import SshTarget, normalize_host_key, run_sync


def register(subparsers: Any) -> None:
    p = subparsers.add_parser(
        "reprovision",
        help="apply a config to a running machine in place (flatcar-reset, reboot, verify)",
        description=(
            "Reprovision a running Flatcar machine with a new config without replacing it: the IP, "
            "the SSH host keys, the machine-id and the kept paths survive; every other file of the "
            "old config is gone. With --delivery file (the default) the config is written to "
            "/oem/config.ign, which is the host's config source from then on."
        ),
    )
    p.add_argument("--host", required=True)
    p.add_argument("--port", type=int, default=22)
    p.add_argument("--user", default="core")
    p.add_argument("--identity", required=True, metavar="FILE", help="SSH private key file")
    keys = p.add_mutually_exclusive_group(required=True)
    keys.add_argument("--host-key", metavar='"TYPE B64"', help="the host's SSH public key (pinned)")
    keys.add_argument("--known-hosts", metavar="FILE", help="a known_hosts file holding the host's key")
    p.add_argument("--config", required=True, metavar="FILE",
                   help="Butane, Container Linux Config or Ignition JSON")
    p.add_argument("--files-dir", metavar="DIR", help="directory for local: contents")
    p.add_argument("--var", action="append", default=[], metavar="K=V", help="template variable")
    p.add_argument("--keep-path", action="append", default=[], metavar="REGEX",
                   help="also keep paths matching REGEX (egrep, whole path; repeatable); "
                        "/etc/ssh/ssh_host_.* and /var/lib/flatcar-infra are always kept")
    p.add_argument("--no-keep-machine-id", action="store_true", help="let the machine-id change")
    p.add_argument("--delivery", choices=DELIVERIES, default="file",
                   help="file: /oem/config.ign (bare metal, no cloud pointer); pointer: the cloud "
                        "user-data pointer fetches the hosted object (upload it first); url: "
                        "ignition.config.url (needs --config-url)")
    p.add_argument("--config-url", metavar="URL", help="the hosted config URL (url, pointer)")
    p.add_argument("--config-source", metavar="s3://BUCKET/KEY",
                   help="where this machine reads and restores the hosted object (S3 API, your "
                        "credentials): lets pointer/url delivery check it and restore the previous "
                        "config when the new one fails in the initramfs (default: from --config-url "
                        "for s3:// and Spaces URLs)")
    p.add_argument("--source-endpoint", metavar="URL", help="S3-compatible endpoint of --config-source")
    p.add_argument("--source-public", action="store_true",
                   help="write the restored object public-read (Ignition fetches it anonymously)")
    p.add_argument("--strategy", choices=("in-place", "wipe-root"), default="in-place")
    p.add_argument("--health", action="append", default=[], metavar="CMD",
                   help="a command that must succeed on the host after the reboot (repeatable)")
    p.add_argument("--health-timeout", type=float, default=60.0, metavar="S")
    p.add_argument("--timeout", type=float, default=600.0, metavar="S",
                   help="how long to wait for the host to come back (default 600)")
    add_rollback_options(p)
    p.add_argument("--platform-key", action="append", default=[], metavar='"TYPE B64"',
                   help="a public key the platform installs on every boot (cloud metadata): it counts "
                        "as authorized in the lock-out check (repeatable)")
    p.add_argument("--old-identity", metavar="FILE",
                   help="key rotation: the key the host accepts now, used until the new config "
                        "(which authorizes --identity) is applied")
    p.add_argument("--dry-run", action="store_true", help="preflight and previews only; change nothing")
    p.add_argument("--json", action="store_true", help="print the result as JSON on stdout")
    p.set_defaults(func=run)


def host_key_from(args: argparse.Namespace) -> str:
    if args.host_key:
        return normalize_host_key(args.host_key)
    import asyncssh

    try:
        known = asyncssh.read_known_hosts(args.known_hosts)
    except (OSError, ValueError) as exc:
        raise UsageError(f"--known-hosts {args.known_hosts}: {exc}") from None
    matched = known.match(args.host, "", args.port)[0]
    if not matched:
        raise UsageError(f"--known-hosts {args.known_hosts}: no key for "
                         f"{args.host if args.port == 22 else f'[{args.host}]:{args.port}'}")
    return normalize_host_key(matched[0].export_public_key("openssh").decode())


def build(args: argparse.Namespace) -> tuple[SshTarget, Desired]:
    if not Path(args.identity).is_file():
        raise UsageError(f"--identity {args.identity}: no such file")
    if args.delivery == "url" and not args.config_url:
        raise UsageError("--delivery url needs --config-url")
    if not 0 < args.port < 65536:
        raise UsageError(f"--port {args.port}: not a TCP port")
    if args.delivery == "pointer" and not args.config_url:
        raise UsageError("--delivery pointer needs --config-url (the object the user-data pointer names)")
    try:
        policy = Policy(strategy=args.strategy, keep_paths=tuple(args.keep_path),
                        keep_machine_id=not args.no_keep_machine_id, health_checks=tuple(args.health),
                        health_timeout=args.health_timeout, reboot_timeout=args.timeout,
                        rollback=not args.no_rollback, confirm_window=args.confirm_window,
                        deadline=args.deadline)
    except PolicyError as exc:
        raise policy_usage_error(exc) from None
    compiled = compile_file(args.config, files_dir=args.files_dir, variables=parse_vars(args.var),
                            stamp_config=True)
    ui.diagnostics(compiled.warnings)
    try:
        desired = Desired.from_config(compiled.canonical, compiled.hash, policy, args.delivery,
                                      args.config_url)
    except ValueError as exc:
        raise UserError(f"{args.config}: {exc}") from None
    target = SshTarget(args.host, args.port, args.user, identity_file=args.identity,
                       host_key=host_key_from(args))
    return target, desired


def extras(args: argparse.Namespace, desired: Desired) -> dict[str, Any]:
    """The procedure's optional inputs from the command line."""
    previous = read_option_file("--previous-config", args.previous_config)
    old_key = read_option_file("--old-identity", args.old_identity)
    spec = None
    if args.config_source:
        m = re.fullmatch(r"s3://([^/]+)/(.+)", args.config_source)
        if not m:
            raise UsageError(f"--config-source {args.config_source}: expected s3://BUCKET/KEY")
        spec = {"bucket": m.group(1), "key": m.group(2), "endpoint": args.source_endpoint,
                "public": args.source_public}
    source = ConfigSource.for_url(desired.config_url, spec) if desired.delivery != "file" else None
    return {"previous": previous, "platform_keys": [normalize_host_key(k) for k in args.platform_key],
            "fallback_keys": [old_key.decode()] if old_key else [], "source": source}


def run(args: argparse.Namespace) -> int:
    target, desired = build(args)
    more = extras(args, desired)
    if args.dry_run:
        return _dry_run(args, target, desired, more)
    from flatcar_infra.reprovision.procedure import ensure

    t0 = time.monotonic()

    def report(phase: str, message: str, elapsed: float | None = None) -> None:
        ui.progress(phase, message, elapsed)

    outcome = run_sync(lambda: ensure(target, desired, report=report, **more))
    total = time.monotonic() - t0
    for w in outcome.warnings:
        ui.info(f"warning: {w}")
    breakdown = ", ".join(f"{k} {v:.1f}s" for k, v in outcome.phases)
    verb = "reprovisioned" if outcome.rebooted else "already running the config; verified"
    ui.info(f"{target.host}: {verb} ({short(outcome.applied_hash)}) in {total:.1f}s [{breakdown}]")
    if outcome.not_hashed:
        ui.info(f"note: {len(outcome.not_hashed)} kept file(s) were not hashed (budget), e.g. "
                f"{outcome.not_hashed[0]}")
    if args.json:
        data = {"host": target.host, "port": target.port, "host_key": outcome.host_key,
                "desired_hash": desired.config_hash, **outcome.to_outputs(
                    "reprovisioned" if outcome.rebooted else "verified"),
                "total_seconds": round(total, 3), "not_hashed": list(outcome.not_hashed)}
        ui.emit(json.dumps(data, sort_keys=True, indent=2) + "\n")
    return 0


def _dry_run(args: argparse.Namespace, target: SshTarget, desired: Desired, more: dict[str, Any]) -> int:
    from flatcar_infra.reprovision.procedure import dry_run

    with ui.phase("preflight", f"reading the state of {target.host} (dry run: nothing changes)"):
        result = run_sync(lambda: dry_run(target, desired, previous=more["previous"],
                                          platform_keys=more["platform_keys"], source=more["source"]))
    f, plan = result.facts, result.plan
    ui.info(f"host: Flatcar {f.version or '?'} ({f.os_id}), boot {f.boot_id[:8]}, "
            f"applied {short(f.stamp)}, desired {short(desired.config_hash)}")
    for r in plan.refusals:
        ui.error(f"{r.reason}\n  hint: {r.advice}")
    for w in (*plan.warnings, *result.warnings):
        ui.info(f"warning: {w}")
    for n in plan.notes:
        ui.info(n)
    if not plan.refused:
        ui.info(f"would run: {' → '.join(plan.phases)}")
    ui.info("config changes" + ("" if result.current_manifest_known else
                                " (current config unknown: everything shown as added)") + ":")
    for sign, key in result.changes:
        ui.info(f"  {sign} {key}")
    if not result.changes:
        ui.info("  (none)")
    if plan.reboots:
        ui.info(f"flatcar-reset --preview-delete: {len(result.preview_delete)} path(s) would be deleted")
        for line in result.preview_delete[:50]:
            ui.info(f"  - {line}")
        ui.info(f"flatcar-reset --preview-keep: {len(result.preview_keep)} path(s) would be kept")
        for line in result.preview_keep[:50]:
            ui.info(f"  = {line}")
    if result.commands:
        ui.info(f"commands a real run sends to {target.host} (as root; payloads shown by size):")
        for what, command in result.commands:
            ui.info(f"--- {what}\n{command}")
    if args.json:
        data = {"host": target.host, "refused": [r.reason for r in plan.refusals],
                "phases": list(plan.phases), "warnings": list(plan.warnings), "notes": list(plan.notes),
                "applied_hash": f.stamp, "desired_hash": desired.config_hash,
                "changes": [f"{s} {k}" for s, k in result.changes],
                "preview_delete": list(result.preview_delete), "preview_keep": list(result.preview_keep),
                "commands": [{"what": w, "command": c} for w, c in result.commands]}
        ui.emit(json.dumps(data, sort_keys=True, indent=2) + "\n")
    return 1 if plan.refused else 0
