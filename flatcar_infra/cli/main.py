"""``flatcar-infra`` entry point: builds the parser from the command modules and maps errors to
exit codes in one place (0 ok, 1 invalid input or failed operation, 2 usage, 3 plan has changes).

Each command module exposes ``register(subparsers)`` which adds the parsers of its commands and
sets ``func=run`` where ``run(args) -> int``. Only the module of the command being run is
imported (start-up time: ``render`` must not load SSH, Pulumi or rich); the others appear in
``--help`` from the one-line help below. A new command is one line in ``COMMANDS``.
"""

from __future__ import annotations

import argparse
import importlib
import sys
from collections.abc import Sequence

from flatcar_infra import __version__
from flatcar_infra.errors import ConfigError, UserError

# command -> (module that registers it, one-line help shown by `flatcar-infra --help`)
COMMANDS: dict[str, tuple[str, str]] = {
    "render": ("flatcar_infra.cli.render", "compile a Butane/CLC/Ignition config to Ignition JSON"),
    "validate": ("flatcar_infra.cli.render", "check configs (Butane, CLC, Ignition) and print every problem"),
    "plan": ("flatcar_infra.cli.plan", "show what a config change does to each machine"),
    "reprovision": ("flatcar_infra.cli.reprovision", "apply a config to a running machine in place"),
    "rollout": ("flatcar_infra.cli.rollout", "roll a config out to a fleet in waves, with health gates"),
    "local": ("flatcar_infra.cli.local", "run Flatcar machines locally under QEMU (no cloud account)"),
}


def _command(argv: Sequence[str]) -> str | None:
    """The command named on the command line (the first argument that is not an option)."""
    return next((a for a in argv if not a.startswith("-")), None)


def build_parser(argv: Sequence[str] | None = None) -> argparse.ArgumentParser:
    """The parser; with ``argv``, only the named command's module is imported (``None``: all)."""
    parser = argparse.ArgumentParser(
        prog="flatcar-infra",
        description="Compile Flatcar configs and reprovision machines in place.",
    )
    parser.add_argument("--version", action="version", version=f"flatcar-infra {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    if argv is None:
        modules = dict.fromkeys(module for module, _ in COMMANDS.values())
    else:
        chosen = COMMANDS.get(_command(argv) or "")
        modules = dict.fromkeys([chosen[0]] if chosen else [])
    for module in modules:
        importlib.import_module(module).register(sub)
    for name, (_, help_text) in COMMANDS.items():
        if name not in sub.choices:  # listed in --help; its module loads when it is run
            sub.add_parser(name, help=help_text, add_help=False)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    parser = build_parser(argv)
    args = parser.parse_args(argv)
    from flatcar_infra import ui

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
