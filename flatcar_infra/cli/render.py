"""``flatcar-infra render`` and ``flatcar-infra validate``: the compiler on the command line.

``render`` prints canonical Ignition JSON (or only its hash); ``validate`` checks any number of
inputs (Butane, Container Linux Config or raw Ignition JSON) and prints every diagnostic.
Exit codes: 0 ok, 1 invalid input (diagnostics on stderr), 2 usage error.
"""

from __future__ import annotations

import argparse
import os
import stat
from pathlib import Path
from typing import Any

from flatcar_infra import ui
from flatcar_infra.cli.options import parse_vars
from flatcar_infra.compiler.api import CompiledConfig, compile_config, read_config_file
from flatcar_infra.errors import ConfigError, Diagnostic, Severity, UsageError, UserError


def register(subparsers: Any) -> None:
    p = subparsers.add_parser(
        "render",
        help="compile a Butane/CLC/Ignition config to canonical Ignition JSON",
        description="Compile INPUT (Butane variant flatcar 1.0.0/1.1.0, Container Linux Config or "
        "Ignition JSON) to canonical Ignition JSON on stdout.",
    )
    p.add_argument("input", metavar="INPUT", help="config file ('-' for stdin)")
    p.add_argument("-o", "--output", metavar="OUT", help="write to OUT (atomically, only on success)")
    p.add_argument(
        "--files-dir",
        metavar="DIR",
        help="directory for local/contents_local/trees (default: the input's directory)",
    )
    p.add_argument("--strict", action="store_true", help="treat warnings as errors")
    p.add_argument("--pretty", action="store_true", help="indented JSON (same content, not hashed)")
    p.add_argument("--platform", metavar="NAME", help="platform for CLC dynamic data, e.g. ec2")
    p.add_argument(
        "--var",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="template variable (a string); implies template rendering",
    )
    p.add_argument("--vars-file", metavar="FILE", help="YAML/JSON mapping of template variables")
    p.add_argument(
        "--snippet",
        action="append",
        default=[],
        metavar="FILE",
        help="config merged into INPUT (same kind, variant and version); repeatable",
    )
    p.add_argument(
        "--stamp", action="store_true", help="add /etc/flatcar-infra/config-hash holding the config's hash"
    )
    p.add_argument("--hash", action="store_true", help="print only the config hash (sha512-...)")
    p.set_defaults(func=run_render)

    v = subparsers.add_parser(
        "validate",
        help="check configs (Butane, CLC or Ignition JSON) and print every problem",
        description="Check each INPUT and print its diagnostics as FILE:LINE:COL: SEVERITY: MESSAGE.",
    )
    v.add_argument("inputs", nargs="+", metavar="INPUT")
    v.add_argument("--files-dir", metavar="DIR", help="directory for local files (default: each input's)")
    v.add_argument("--strict", action="store_true", help="treat warnings as errors")
    v.add_argument("--platform", metavar="NAME", help="platform for CLC dynamic data, e.g. ec2")
    v.add_argument("--ignition", action="store_true",
                   help="also run the real Ignition: ignition-validate, then apply the config to a scratch "
                        "root with Ignition's stage runner (needs root and Debian's 'ignition' package)")
    v.set_defaults(func=run_validate)


def _read(path: str) -> tuple[str, str]:
    """(display name, text) of an input file or stdin, within the source size limit."""
    if path == "-":
        import sys

        from flatcar_infra.compiler.yamlsrc import decode_source
        from flatcar_infra.limits import LIMITS, human

        data = sys.stdin.buffer.read(LIMITS.source_bytes + 1)
        if len(data) > LIMITS.source_bytes:
            too_big = f"cannot read: over the limit of {human(LIMITS.source_bytes)}"
            raise ConfigError([Diagnostic("<stdin>", 1, 1, Severity.ERROR, too_big, "$")])
        return "<stdin>", decode_source(data, "<stdin>")
    return path, read_config_file(path)


def _variables(args: argparse.Namespace) -> dict[str, Any] | None:
    variables: dict[str, Any] | None = None
    if args.vars_file:
        import yaml

        from flatcar_infra.compiler.yamlsrc import parse_yaml

        name, text = _read(args.vars_file)
        bounded = parse_yaml(text, name)  # the limits first: depth, alias expansion, size
        if any(d.is_error for d in bounded.diagnostics):
            raise ConfigError(bounded.diagnostics)
        try:
            loaded = yaml.load(text, Loader=yaml.CSafeLoader)
        except yaml.YAMLError as exc:
            raise UsageError(f"--vars-file {name}: not YAML/JSON: {exc}") from None
        if not isinstance(loaded, dict) or not all(isinstance(k, str) for k in loaded):
            raise UsageError(f"--vars-file {name}: must be a mapping of variable names to values")
        variables = dict(loaded)
    given = parse_vars(args.var)
    if given:
        variables = {**(variables or {}), **given}
    return variables


def _files_dir(args: argparse.Namespace, input_path: str) -> Path | None:
    if args.files_dir:
        d = Path(args.files_dir)
        if not d.is_dir():
            raise UsageError(f"--files-dir {args.files_dir}: not a directory")
        return d
    return Path(input_path).parent if input_path != "-" else Path.cwd()


def _compile(
    args: argparse.Namespace,
    input_path: str,
    *,
    stamp: bool = False,
    variables: dict[str, Any] | None = None,
    snippets: list[str] | None = None,
) -> CompiledConfig:
    name, text = _read(input_path)
    snips = [_read(s) for s in snippets or []]
    return compile_config(
        text,
        filename=name,
        files_dir=_files_dir(args, input_path),
        variables=variables,
        template=None,
        snippets=snips,
        platform=args.platform,
        strict=args.strict,
        stamp_config=stamp,
    )


def run_render(args: argparse.Namespace) -> int:
    if args.hash and args.pretty:
        raise UsageError("--hash and --pretty exclude each other")
    compiled = _compile(args, args.input, stamp=args.stamp, variables=_variables(args), snippets=args.snippet)
    ui.diagnostics(compiled.warnings)
    if args.hash:
        data = (compiled.hash + "\n").encode()
    elif args.pretty:
        data = compiled.pretty()
    else:
        data = compiled.canonical  # exactly the delivered bytes: `render | sha512sum` is the hash
    if args.output:
        _write_atomic(Path(args.output), data)
    else:
        ui.emit(data)
    return 0


def _write_atomic(path: Path, data: bytes) -> None:
    """Write ``path`` all at once: a temporary file in the same directory, renamed over it. Only a
    regular file (or nothing) is replaced: a symlink, FIFO, device or directory there is refused,
    never written through. A new file gets the umask's mode, an existing one keeps its mode."""
    import tempfile

    try:
        st: os.stat_result | None = os.lstat(path)
    except FileNotFoundError:
        st = None
    except OSError as exc:
        raise UserError(f"cannot write {path}: {exc.strerror}") from None
    if st is not None and not stat.S_ISREG(st.st_mode):
        what = next((name for test, name in _SPECIAL if test(st.st_mode)), "not a regular file")
        raise UserError(f"cannot write {path}: it is {what}; refusing to replace it",
                        advice="give -o the path of a regular file (or a new one)")
    mode = stat.S_IMODE(st.st_mode) if st is not None else 0o666 & ~_umask()
    directory = path.parent if str(path.parent) else Path(".")
    try:
        fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", dir=directory)
    except OSError as exc:
        raise UserError(f"cannot write {path}: {exc.strerror}") from None
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
            fh.flush()
            os.fchmod(fh.fileno(), mode)
        os.replace(tmp, path)
    except OSError as exc:
        Path(tmp).unlink(missing_ok=True)
        raise UserError(f"cannot write {path}: {exc.strerror}") from None


def _umask() -> int:
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


_SPECIAL = ((stat.S_ISLNK, "a symbolic link"), (stat.S_ISFIFO, "a FIFO"), (stat.S_ISCHR, "a device"),
            (stat.S_ISBLK, "a block device"), (stat.S_ISSOCK, "a socket"), (stat.S_ISDIR, "a directory"))


def run_validate(args: argparse.Namespace) -> int:
    failed = 0
    for input_path in args.inputs:
        try:
            compiled = _compile(args, input_path)
        except ConfigError as exc:
            failed += 1
            ui.diagnostics(exc.diagnostics)
            continue
        ui.diagnostics(compiled.warnings)
        if args.ignition:
            from flatcar_infra import ignition_tool

            try:
                checked = ignition_tool.check(compiled.canonical)
            except ignition_tool.IgnitionFailed as exc:
                failed += 1
                ui.error(f"{input_path}: the real Ignition rejects it ({exc.what})\n{exc.log.rstrip()}")
                continue
            for w in checked.warnings:
                ui.info(f"{input_path}: ignition-validate: {w}")
        ui.info(f"{input_path}: ok (Ignition {compiled.version}, {compiled.hash[:19]}…"
                + (", accepted and applied by the real Ignition)" if args.ignition else ")"))
    if failed:
        ui.error(f"{failed} of {len(args.inputs)} config(s) invalid")
        return 1
    return 0
