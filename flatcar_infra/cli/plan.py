"""``flatcar-infra plan``: what a config change does to each machine, for a reviewer.

Two forms: ``plan OLD NEW`` (files or ``git:REV:path``) and ``plan --stack-dir stacks --base REV``
(every machine of every stack, at REV against the working tree: the CI form for pull requests).
Exit 0 whether or not there are changes; 3 with ``--exit-code`` when there are.
"""

from __future__ import annotations

import argparse
import os
import shutil
import sys
from typing import Any

from flatcar_infra import ui
from flatcar_infra.cli.options import parse_vars
from flatcar_infra.errors import UsageError
from flatcar_infra.plan.model import Plan
from flatcar_infra.plan.render import RENDERERS, render_json, render_markdown, render_text
from flatcar_infra.plan.sources import CompileOptions, plan_files, plan_stacks
from flatcar_infra.reprovision.policy import STRATEGIES, Policy
from flatcar_infra.secrets import SecretRules

EXIT_CHANGES = 3


def register(subparsers: Any) -> None:
    p = subparsers.add_parser(
        "plan",
        help="show what a config change does to each machine",
        description=(
            "Compare two configs (files or git:REV:PATH) or every machine of every stack between a "
            "git revision and the working tree. Shows, per machine, the files, units, drop-ins, users "
            "and kernel arguments added, changed or removed, and how the change is applied."
        ),
    )
    p.add_argument(
        "configs",
        nargs="*",
        metavar="OLD NEW",
        help="two configs: YAML (Butane, Container Linux Config) or Ignition JSON files, or git:REV:PATH",
    )
    p.add_argument(
        "--files-dir",
        metavar="DIR",
        help="directory for local: contents (default: the "
        "config's directory; relative paths are read at the revision of a git: reference)",
    )
    p.add_argument("--var", action="append", default=[], metavar="K=V", help="template variable")
    p.add_argument("--platform", help="platform for Container Linux Config dynamic data (e.g. ec2)")
    p.add_argument("--stack-dir", metavar="DIR", help="compare every stack in DIR (Pulumi.<stack>.yaml)")
    p.add_argument("--base", metavar="REV", help="with --stack-dir: the git revision to compare against")
    p.add_argument(
        "--stack",
        action="append",
        default=[],
        metavar="NAME",
        help="with --stack-dir: only this stack (repeatable)",
    )
    p.add_argument(
        "--strategy",
        choices=STRATEGIES,
        default="in-place",
        help="OLD NEW form: the reprovisioning strategy to describe (default in-place)",
    )
    p.add_argument(
        "--keep-path",
        action="append",
        default=[],
        metavar="REGEX",
        help="OLD NEW form: a path the in-place reprovision keeps (repeatable)",
    )
    p.add_argument(
        "--secret-path",
        action="append",
        default=[],
        metavar="GLOB",
        help="also treat paths or unit names matching GLOB as secret (repeatable)",
    )
    p.add_argument("--format", choices=RENDERERS, default="text", help="output format (default text)")
    p.add_argument(
        "--max-size",
        type=int,
        metavar="BYTES",
        help="markdown: fit the output in BYTES (drop content diffs first), e.g. 60000 for a PR comment",
    )
    p.add_argument(
        "--color",
        choices=("auto", "always", "never"),
        default="auto",
        help="color the text format (default: only on a terminal)",
    )
    p.add_argument("--exit-code", action="store_true", help=f"exit {EXIT_CHANGES} when there are changes")
    p.set_defaults(func=run)


def build_plan(args: argparse.Namespace) -> Plan:
    if args.max_size is not None and (args.format != "markdown" or args.max_size < 1024):
        raise UsageError("--max-size is for --format markdown, at least 1024 bytes")
    secrets = SecretRules(globs=tuple(args.secret_path))
    if args.stack_dir is not None:
        if args.configs:
            raise UsageError("give either OLD NEW or --stack-dir, not both")
        if not args.base:
            raise UsageError("--stack-dir needs --base REV (e.g. --base origin/main)")
        for opt in ("files_dir", "platform"):
            if getattr(args, opt) is not None:
                raise UsageError(f"--{opt.replace('_', '-')} is for OLD NEW; stacks set it per machine")
        if args.var or args.keep_path or args.strategy != "in-place":
            raise UsageError(
                "--var, --strategy and --keep-path are for OLD NEW; stacks set them in the stack file"
            )
        return plan_stacks(args.stack_dir, args.base, secrets=secrets, stacks=tuple(args.stack))
    if len(args.configs) != 2:
        raise UsageError("give two configs (OLD NEW) or --stack-dir DIR --base REV")
    if args.base or args.stack:
        raise UsageError("--base and --stack need --stack-dir")
    policy = Policy(strategy=args.strategy, keep_paths=tuple(args.keep_path))
    opts = CompileOptions(args.files_dir, parse_vars(args.var), args.platform)
    return plan_files(args.configs[0], args.configs[1], opts, policy=policy, secrets=secrets)


def _use_color(choice: str) -> bool:
    if choice != "auto":
        return choice == "always"
    return sys.stdout.isatty() and "NO_COLOR" not in os.environ and os.environ.get("TERM") != "dumb"


def run(args: argparse.Namespace) -> int:
    plan = build_plan(args)
    if args.format == "json":
        out = render_json(plan)
    elif args.format == "markdown":
        out = render_markdown(plan, max_size=args.max_size)
    else:
        color = _use_color(args.color)
        out = render_text(plan, color=color, width=shutil.get_terminal_size().columns if color else 100)
    ui.emit(out)
    return EXIT_CHANGES if args.exit_code and plan.has_changes else 0
