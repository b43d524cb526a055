"""``flatcar-infra`` entry point: builds the parser from the command modules and maps errors to
exit codes in one place (0 ok, 1 invalid input or failed operation, 2 usage, 3 plan has changes).

Each command module exposes ``register(subparsers)`` which adds its parser and sets
``func=run`` where ``run(args) -> int``.
"""

from __future__ import annotations

import argparse
import importlib
import sys
from collections.abc import Sequence

from flatcar_infra import __version__, ui
from flatcar_infra.errors import ConfigError, UserError

COMMAND_MODULES = (
    "flatcar_infra.cli.render",  # render, validate
    "flatcar_infra.cli.plan",  # plan
    "flatcar_infra.cli.reprovision",  # reprovision
    "flatcar_infra.cli.rollout",  # rollout
    "flatcar_infra.cli.local",  # local up/list/down
)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="flatcar-infra",
        description="Compile Flatcar configs and reprovision machines in place.",
    )
    parser.add_argument("--version", action="version", version=f"flatcar-infra {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for name in COMMAND_MODULES:
        module = importlib.import_module(name)
        module.register(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        code: int = args.func(args)
    except ConfigError as exc:
        ui.diagnostics(exc.diagnostics)
        errors = sum(1 for d in exc.diagnostics if d.is_error)
        ui.error(f"config invalid: {errors} error(s), {len(exc.diagnostics) - errors} warning(s)")
        return exc.exit_code
    except UserError as exc:
        ui.error(str(exc))
        return exc.exit_code
    except KeyboardInterrupt:
        ui.error("interrupted")
        return 130
    return code


if __name__ == "__main__":
    sys.exit(main())
