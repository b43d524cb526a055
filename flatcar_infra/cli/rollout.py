"""``flatcar-infra rollout``: apply a config to a fleet in waves, with health checks and gates.

The hosts come from a YAML inventory (``flatcar_infra.rollout.inventory``); each is reprovisioned
by the same procedure as ``flatcar-infra reprovision``, many at once from one event loop, never
more than ``--max-unavailable`` away from service. Exit 0 when every host runs the new config
(and every gate passed), 1 otherwise (or for invalid input), 2 for usage errors.

Heavy modules (compiler, SSH, the runner) are imported inside ``run``: the CLI must start fast.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import TYPE_CHECKING, Any

from flatcar_infra import ui
from flatcar_infra.cli.options import add_rollback_options, parse_vars, policy_usage_error, read_option_file
from flatcar_infra.errors import UsageError

if TYPE_CHECKING:
    from flatcar_infra.reprovision.policy import Policy
    from flatcar_infra.rollout.inventory import Inventory
    from flatcar_infra.rollout.policy import RolloutPolicy
    from flatcar_infra.rollout.results import RolloutReport
    from flatcar_infra.rollout.runner import RolloutHost


def register(subparsers: Any) -> None:
    p = subparsers.add_parser(
        "rollout",
        help="apply a config to a fleet in waves (max unavailable, canary, bake, health checks, gates)",
        description=(
            "Reprovision every host of an inventory with a config, wave by wave: never more than "
            "--max-unavailable hosts away from service at once (a failed host stays counted), a "
            "canary wave first if asked, a bake time and the --gate commands (run here, on the "
            "operator's side) between waves, and the --health commands on each host after its "
            "reboot. The first failure (more than --failure-budget) halts everything not yet "
            "started; hosts already started finish. Every host is checked read-only before "
            "anything starts: a host that would refuse or does not answer stops the rollout first."
        ),
    )
    p.add_argument("--inventory", required=True, metavar="FILE",
                   help="YAML: hosts: [{name, host, port, user, identity, host_key, vars}]")
    p.add_argument("--config", required=True, metavar="FILE",
                   help="Butane, Container Linux Config or Ignition JSON (a template when vars are given)")
    p.add_argument("--files-dir", metavar="DIR", help="directory for local: contents")
    p.add_argument("--var", action="append", default=[], metavar="K=V",
                   help="template variable for every host (a host's own vars win); repeatable")
    p.add_argument("--keep-path", action="append", default=[], metavar="REGEX",
                   help="also keep paths matching REGEX (egrep, whole path; repeatable)")
    p.add_argument("--health", action="append", default=[], metavar="CMD",
                   help="a command that must succeed ON EACH HOST after its reboot (repeatable)")
    p.add_argument("--health-timeout", type=float, default=60.0, metavar="S")
    p.add_argument("--gate", action="append", default=[], metavar="CMD",
                   help="a command run HERE before the first wave and after each wave; retried until "
                        "it succeeds or --gate-timeout passes (repeatable)")
    p.add_argument("--gate-timeout", type=float, default=300.0, metavar="S")
    p.add_argument("--max-unavailable", default="1", metavar="N|P%",
                   help="hosts away from service at once: a count or a share of the fleet (default 1)")
    p.add_argument("--canary", type=int, default=0, metavar="N",
                   help="the first N hosts form wave 1 on their own")
    p.add_argument("--bake", type=float, default=0.0, metavar="S",
                   help="seconds to wait after a wave that rebooted hosts, before its gates")
    p.add_argument("--failure-budget", type=int, default=0, metavar="N",
                   help="failed or rolled-back hosts tolerated before halting (default 0)")
    p.add_argument("--timeout", type=float, default=600.0, metavar="S",
                   help="how long to wait for each host to come back (default 600)")
    add_rollback_options(p)
    p.add_argument("--dry-run", action="store_true",
                   help="check every host read-only and show the waves; change nothing")
    p.add_argument("--json", action="store_true", help="print the result per host as JSON on stdout")
    p.set_defaults(func=run)


def _policies(args: argparse.Namespace, inventory: Inventory) -> tuple[Policy, RolloutPolicy]:
    from flatcar_infra.reprovision.policy import Policy, PolicyError
    from flatcar_infra.rollout.policy import RolloutPolicy, RolloutPolicyError

    flag = {"max_unavailable": "--max-unavailable", "canary": "--canary", "bake_seconds": "--bake",
            "failure_budget": "--failure-budget", "gate_timeout": "--gate-timeout", "gates": "--gate",
            "waves": "the inventory's waves"}
    try:
        rollout = RolloutPolicy(max_unavailable=args.max_unavailable, canary=args.canary,
                                waves=inventory.waves, bake_seconds=args.bake, gates=tuple(args.gate),
                                gate_timeout=args.gate_timeout, failure_budget=args.failure_budget)
    except RolloutPolicyError as exc:
        msg = exc.message
        for key, name in flag.items():
            msg = msg.replace(f"rollout.{key}", name)
        raise UsageError(msg, exc.advice) from None
    try:
        policy = Policy(keep_paths=tuple(args.keep_path), health_checks=tuple(args.health),
                        health_timeout=args.health_timeout, reboot_timeout=args.timeout,
                        rollback=not args.no_rollback, confirm_window=args.confirm_window,
                        deadline=args.deadline)
    except PolicyError as exc:
        raise policy_usage_error(exc) from None
    return policy, rollout


def build_hosts(args: argparse.Namespace, inventory: Inventory, policy: Policy) -> list[RolloutHost]:
    """One compiled config per distinct set of variables; one SSH rollout host per inventory host."""
    from flatcar_infra.compiler.api import CompiledConfig, compile_file
    from flatcar_infra.errors import UserError
    from flatcar_infra.reprovision.desired import Desired
    from flatcar_infra.rollout.hosts import ssh_host
    from flatcar_infra.ssh import SshTarget

    cli_vars = parse_vars(args.var) or {}
    previous = read_option_file("--previous-config", args.previous_config)
    templated = bool(cli_vars or inventory.vars or any(h.vars for h in inventory.hosts))
    compiled: dict[tuple[tuple[str, str], ...], CompiledConfig] = {}
    hosts: list[RolloutHost] = []
    for h in inventory.hosts:
        variables = {**inventory.vars, **cli_vars, **h.vars}
        key = tuple(sorted(variables.items()))
        if key not in compiled:
            c = compile_file(args.config, files_dir=args.files_dir,
                             variables=variables if templated else None, stamp_config=True)
            ui.diagnostics(c.warnings)
            compiled[key] = c
        c = compiled[key]
        try:
            desired = Desired.from_config(c.canonical, c.hash, policy, "file")
        except ValueError as exc:
            raise UserError(f"{args.config}: {exc}") from None
        target = SshTarget(h.host, h.port, h.user, identity_file=h.identity, host_key=h.host_key)
        hosts.append(ssh_host(h.name, target, desired, previous=previous))
    return hosts


def run(args: argparse.Namespace) -> int:
    if not Path(args.config).is_file():
        raise UsageError(f"--config {args.config}: no such file")
    if args.files_dir and not Path(args.files_dir).is_dir():
        raise UsageError(f"--files-dir {args.files_dir}: no such directory")
    from flatcar_infra.rollout.inventory import load_inventory
    from flatcar_infra.rollout.runner import run_rollout
    from flatcar_infra.rollout.schedule import plan_waves
    from flatcar_infra.ssh import run_sync

    inventory = load_inventory(args.inventory)
    policy, rollout = _policies(args, inventory)
    try:
        plan_waves(inventory.names(), rollout)
    except UsageError:
        raise
    except Exception as exc:  # RolloutPolicyError: a canary as large as the fleet, ...
        raise UsageError(str(exc)) from None
    hosts = build_hosts(args, inventory, policy)
    report = run_sync(lambda: run_rollout(hosts, rollout, report=ui.progress, dry_run=args.dry_run))
    _summary(report)
    if args.json:
        ui.emit(json.dumps(report.to_json(), indent=2, sort_keys=True) + "\n")
    if args.dry_run:
        return 1 if any(h.detail.get("preflight") in ("refused", "unreachable") for h in report.hosts) else 0
    return 0 if report.ok else 1


def _summary(report: RolloutReport) -> None:
    from flatcar_infra.reprovision.decide import short

    rows = []
    for h in report.hosts:
        ran = (f"{h.finished_at - h.started_at:.1f}s"
               if h.started_at is not None and h.finished_at is not None else "")
        rows.append([h.name, str(h.wave), h.result, short(h.applied_hash), ran,
                     h.message.splitlines()[0] if h.message else ""])
    ui.table(["host", "wave", "result", "applied", "took", "note"], rows)
    took = report.finished_at - report.started_at
    if report.dry_run:
        ui.info(f"dry run: nothing was changed ({len(report.waves)} wave(s), at most "
                f"{report.max_unavailable} host(s) away from service at once)")
    elif report.ok:
        ui.info(f"rollout succeeded in {took:.1f}s: every host runs the new config "
                f"(at most {report.peak_unavailable} away from service at once)")
    else:
        ui.error(f"rollout {report.result} after {took:.1f}s"
                 + (f": {report.halt_reason}" if report.halt_reason else ""))
