"""Mutation fuzzing of the compiler, shared by the test suite and ``bench/fuzz.py``.

Inputs are the real-world corpus and the conformance cases, mutated by a seeded ``random.Random``
(byte and line edits, YAML and Jinja tokens, splices of other seeds, values swapped for hostile
ones) plus generated hostile documents (alias bombs, deep nesting, endless templates, ``--var``
injection). Each input runs in a worker subprocess, through the API (``compile_config``) or the CLI
entry point in-process (``main(["render", ...])``), under a memory limit. The parent gives every
input a deadline: a worker that misses it is killed and the input counted as a hang; a worker
that dies is a crash; both are replaced and the run goes on.

An input passes when it compiles, or fails with ``ConfigError``/``UserError`` whose error
diagnostics all name a file and a line (API), or exits 0/1/2 printing ``FILE:LINE:COL: error``
lines (CLI). Anything else is a finding, grouped by cause (exception type and the innermost
``flatcar_infra`` frame; for hangs and crashes the stack ``faulthandler`` dumps just before).
"""

from __future__ import annotations

import base64
import contextlib
import io
import json
import os
import random
import re
import resource
import selectors
import signal
import subprocess
import sys
import tempfile
import time
import traceback
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[2]
SHARED = Path(os.environ.get("FLATCAR_INFRA_SHARED") or (
    Path(os.environ["FLATCAR_INFRA_CORPUS"]).parent if os.environ.get("FLATCAR_INFRA_CORPUS")
    else REPO.parent / "shared"))
MEMORY_LIMIT = 1536 * 1024 * 1024  # per worker: an alias bomb fails with MemoryError, not the machine


@dataclass(frozen=True)
class Seed:
    name: str
    text: str
    files_dir: str | None
    platform: str | None


@dataclass(frozen=True)
class FuzzInput:
    """One input: ``text`` (or raw ``data`` bytes), how to run it, and how it was made."""

    ident: int
    text: str
    files_dir: str | None
    platform: str | None
    variables: dict[str, str] | None
    via: str  # "api" or "cli"
    recipe: str  # the mutations applied, for reports
    data: bytes | None = None  # raw bytes instead of text (invalid UTF-8 ...)

    def to_json(self) -> str:
        d = {"id": self.ident, "text": self.text, "files_dir": self.files_dir, "platform": self.platform,
             "variables": self.variables, "via": self.via,
             "data": base64.b64encode(self.data).decode() if self.data is not None else None}
        return json.dumps(d)


def load_seeds(shared: Path = SHARED) -> list[Seed]:
    """Corpus configs and conformance inputs, each with the files dir and platform it needs."""
    seeds: list[Seed] = []
    corpus, conf = shared / "corpus", shared / "conformance"
    for path in sorted((corpus / "butane").glob("*.yaml")):
        seeds.append(Seed(f"corpus/{path.name}", path.read_text(), str(corpus / "butane" / "files"), None))
    for path in sorted((corpus / "clc").glob("*.yaml")):
        plat = {"11": "custom", "12": "ec2"}.get(path.name[:2])
        seeds.append(Seed(f"corpus/{path.name}", path.read_text(), str(corpus / "clc" / "files"), plat))
    for case in sorted((conf / "butane").glob("*/input.bu")):
        files = case.parent / "files"
        seeds.append(Seed(f"butane/{case.parent.name}", case.read_text(),
                          str(files) if files.is_dir() else None, None))
    for case in sorted((conf / "ct").glob("*/input.yaml")):
        files, plat = case.parent / "files", case.parent / "platform.txt"
        seeds.append(Seed(f"ct/{case.parent.name}", case.read_text(), str(files) if files.is_dir() else None,
                          plat.read_text().strip() if plat.is_file() else None))
    return seeds


# ---------------------------------------------------------------------------------------------
# Mutations

TOKENS = (
    "&a ", "*a", "<<: *a", "<<: [*a, *a]", "!!binary ", "!!str ", "!!int ", "!!null ", "!!map ",
    "!!python/object/apply:os.system ['true']", "!custom ", "? ", "- ", ": ", "[", "]", "{", "}", ",",
    "|", "|-", ">+", "'", '"', "#", "%YAML 1.1\n", "%TAG ! tag:x,2000:\n", "---\n", "...\n", "\t",
    "\x00", "\x07", "\ufeff", "\u2028", "\ud7ff", "\U0001f600", "\\", "\\x", '"\\u00"', "~", "null",
    "0x", "0o777", "0b", "0777", "99999999999999999999999999", "-1", "-0", ".inf", ".nan", "1e999",
    "2001-12-14", "yes", "No", "on", "//", "//etc//x", "/../..", "../", "/etc/passwd", "./",
    "{{ x }}", "{{", "}}", "{% if x %}", "{% endif %}", "{% for i in range(3) %}", "{% endfor %}",
    "{#", "{% raw %}", "{{ x|tojson }}", "{{ 7 ** 7 }}", "{{ ''.__class__ }}", "{{ range(10)|list }}",
    "source: data:,x", "source: data:;base64,!!", "source: https://u:p@example.com/x?sig=1",
    "source: s3://b/k", "source: arn:aws:s3:::b/k", "source: tftp://h/x", "source: ''",
    "compression: gzip", "compression: xz", "verification: {hash: sha512-00}", "inline: ", "local: ",
    "local: fifo", "local: up/etc/passwd", "local: dir", "local: /", "local: ''", "contents_local: fifo",
    "mode: 04777", "mode: 99999999", "mode: -1", "uid: -1", "id: 4294967296", "number: -5",
    "size_mib: 1e3", "start_mib: -1", "type_guid: zz", "guid: x", "label: ROOT", "wipe_filesystem: true",
    "with_mount_unit: true", "format: swap", "format: none", "path: ''", "path: /", "path: //",
    "path: /a/../b", "device: /dev/../etc", "name: ''", "name: a/b.service", "name: ../x.service",
    "enabled: maybe", "mask: true", "dropins:", "version: 1.1.0", "version: 1.0.0", "version: 9.9.9",
    "version: 3.4.0", "variant: fcos", "variant: flatcar", "variant: ''", "systemd:", "storage:",
    "passwd:", "ignition:", "kernel_arguments:", "should_exist: [x]", "trees:", "luks:", "raid:",
    "filesystem: root", "filesystem: nope", "networkd:", "etcd:", "flannel:", "docker:", "update:",
    "locksmith:", "{PRIVATE_IPV4}", "{HOSTNAME}", "{NOPE}", "${COREOS_EC2_IPV4_LOCAL}", "merge:",
    "replace:", "tls:", "proxy: {http_proxy: 'http://u:p@h'}", "http_headers: [{name: a, value: b}]",
)
HOSTILE_VALUES = (
    "", "''", '""', "~", "[]", "{}", "[[]]", "-", "--", ":", "?", "|", ">", "*", "&", "!", "%", "@",
    "`", "0", "-0", "08", "0x1F", "1e400", "-9223372036854775809", "18446744073709551616",
    "true", "TRUE", "y", "n", "=", "a: b", "a\tb", "'unterminated", '"unterminated', "/", "//", "///",
    "//x", "/./", "/..", "x" * 300, "\\u0000", "\u0085", "\ufffd",
)


def _long(rng: random.Random) -> str:
    return rng.choice(["A", "é", "\u2028", "ab\n", "- x\n"]) * rng.choice([100, 1000, 70000])


def mutate_text(rng: random.Random, text: str, seeds: list[Seed]) -> tuple[str, str]:
    """Apply one mutation; returns (new text, its name)."""
    lines = text.splitlines(keepends=True) or [""]
    kind = rng.choice(["byte", "byte", "token", "token", "token", "line", "line", "value", "value",
                       "splice", "indent", "long", "truncate"])
    if kind == "byte" and text:
        i = rng.randrange(len(text))
        op = rng.choice(["flip", "insert", "delete"])
        if op == "flip":
            return text[:i] + chr(rng.randrange(0, 0x80)) + text[i + 1:], "byte-flip"
        if op == "insert":
            ch = chr(rng.choice([rng.randrange(0, 0x80), rng.randrange(0x80, 0x3000)]))
            return text[:i] + ch + text[i:], "byte-insert"
        return text[:i] + text[i + rng.randint(1, 8):], "byte-delete"
    if kind == "token":
        i = rng.randrange(len(text) + 1)
        tok = rng.choice(TOKENS)
        if rng.random() < 0.5:  # at a line start, with the line's indentation
            li = rng.randrange(len(lines))
            indent = re.match(r"[ -]*", lines[li]).group(0)  # type: ignore[union-attr]
            lines.insert(li, f"{indent}{tok}\n")
            return "".join(lines), f"token-line:{tok!r}"
        return text[:i] + tok + text[i:], f"token:{tok!r}"
    if kind == "line" and lines:
        op = rng.choice(["dup", "del", "swap", "move"])
        a, b = rng.randrange(len(lines)), rng.randrange(len(lines))
        if op == "dup":
            lines.insert(a, lines[b])
        elif op == "del":
            del lines[a]
        elif op == "swap":
            lines[a], lines[b] = lines[b], lines[a]
        else:
            lines.insert(b, lines.pop(a))
        return "".join(lines), f"line-{op}"
    if kind == "value":
        spots = [m for m in re.finditer(r"(?m)(?<=: )\S[^\n]*$|(?<=- )\S[^\n]*$", text)]
        if spots:
            m = rng.choice(spots)
            val = rng.choice(HOSTILE_VALUES) if rng.random() < 0.7 else rng.choice(TOKENS)
            return text[: m.start()] + val + text[m.end():], f"value:{val[:20]!r}"
    if kind == "splice":
        other = rng.choice(seeds).text
        if other:
            a = rng.randrange(len(other))
            chunk = other[a: a + rng.randint(1, 400)]
            i = rng.randrange(len(text) + 1)
            return text[:i] + chunk + text[i:], "splice"
    if kind == "indent" and lines:
        a = rng.randrange(len(lines))
        n = rng.randint(a, min(len(lines), a + 10))
        delta = rng.choice([-4, -2, -1, 1, 2, 4])
        for j in range(a, n):
            lines[j] = (" " * delta + lines[j]) if delta > 0 else lines[j][min(-delta, len(lines[j]) -
                                                                          len(lines[j].lstrip(" "))):]
        return "".join(lines), f"indent{delta:+d}"
    if kind == "long":
        i = rng.randrange(len(text) + 1)
        return text[:i] + _long(rng) + text[i:], "long"
    if kind == "truncate" and text:
        return text[: rng.randrange(len(text))], "truncate"
    return text, "none"


def hostile_documents(rng: random.Random) -> tuple[str, str, dict[str, str] | None]:
    """Generated attacks: (text, name, variables)."""
    head = "variant: flatcar\nversion: 1.0.0\n"
    kind = rng.choice(["laughs", "laughs-str", "deep-flow", "deep-block", "deep-seq", "deep-json",
                       "jinja-loop", "jinja-big", "jinja-pow", "jinja-recurse", "var-inject",
                       "var-yaml", "slash", "many-anchors", "recursive-alias", "merge-bomb"])
    if kind == "laughs":
        levels = rng.randint(6, 12)
        lines = ["a0: &a0 [x, x, x, x, x, x, x, x, x, x]"]
        lines += [f"a{i}: &a{i} [" + ", ".join([f"*a{i - 1}"] * 10) + "]" for i in range(1, levels)]
        return head + "\n".join(lines) + f"\nstorage: {{files: *a{levels - 1}}}\n", kind, None
    if kind == "laughs-str":
        big = "x" * rng.choice([10_000, 100_000, 1_000_000])
        refs = ", ".join(["*s"] * rng.choice([100, 1000, 10000]))
        return head + f"s: &s '{big}'\nkernel_arguments: {{should_exist: [{refs}]}}\n", kind, None
    if kind == "merge-bomb":
        lines = ["m0: &m0 {k0: v}"]
        lines += [f"m{i}: &m{i} {{<<: [" + ", ".join([f"*m{i - 1}"] * 8) + f"], k{i}: v}}"
                  for i in range(1, 12)]
        return head + "\n".join(lines) + "\n", kind, None
    if kind == "many-anchors":
        n = rng.choice([1000, 50_000])
        return head + "x: [" + ", ".join(f"&a{i} {i}" for i in range(n)) + "]\n", kind, None
    if kind == "recursive-alias":
        return head + "storage: &a {files: [*a]}\n", kind, None
    if kind == "deep-flow":
        n = rng.choice([100, 1000, 100_000, 1_000_000])
        return head + "storage: " + "[" * n + "]" * n + "\n", kind, None
    if kind == "deep-block":
        n = rng.choice([100, 1000, 3000])
        return head + "".join(" " * i + f"k{i}:\n" for i in range(n)), kind, None
    if kind == "deep-seq":
        n = rng.choice([100, 1000, 100_000])
        return head + "storage:\n  files: " + "- " * n + "x\n", kind, None
    if kind == "deep-json":
        n = rng.choice([1000, 100_000])
        return '{"ignition": {"version": "3.3.0"}, "x": ' + "[" * n + "]" * n + "}", kind, None
    if kind == "jinja-loop":
        n = rng.choice(["100000", "99999"])
        body = f"{{% for a in range({n}) %}}{{% for b in range({n}) %}}{{% endfor %}}{{% endfor %}}"
        return head + body + "\n", kind, {"x": "1"}
    if kind == "jinja-big":
        expr = rng.choice(["'a' * 1000000000", "'a'|center(1000000000)", "'%999999999d' % 1",
                           "'{:>999999999}'.format(1)", "'x'.ljust(999999999)",
                           "('ab' * 1000000)|replace('a', 'a' * 1000000)"])
        return head + "x: '{{ " + expr + " }}'\n", kind, {"x": "1"}
    if kind == "jinja-pow":
        return head + "x: {{ 10 ** 10 ** 10 }}\n", kind, {"x": "1"}
    if kind == "jinja-recurse":
        body = ("{% macro f(n) %}{% if n %}{{ f(n - 1) }}{{ f(n - 1) }}{% endif %}{% endmacro %}"
                "x: {{ f(40) }}\n")
        return head + body, kind, {"x": "1"}
    if kind == "var-inject":
        text = head + "storage:\n  files:\n    - path: /etc/x\n      contents: {inline: '{{ v }}'}\n"
        val = rng.choice(["a'\n    - path: /etc/evil\n      mode: 0777\n  x: '",
                          "x\npasswd: {users: [{name: evil}]}",
                          "}\nsystemd: {units: [{name: evil.service}]}", "\u2028- path: /etc/evil"])
        return text, kind, {"v": val}
    if kind == "var-yaml":
        text = head + "storage:\n  files:\n    - path: {{ p }}\n      mode: {{ m }}\n"
        return text, kind, {"p": rng.choice(["/etc/x", "[a, b]", "{a: b}", "*a", "&a x", "!!binary x", "|"]),
                            "m": rng.choice(["0644", "- 1", ":", "[1]", "'"])}
    return head + "storage:\n  files:\n    - path: //etc/x\n  directories:\n    - path: //\n", "slash", None


def generate(seed: int, n: int, seeds: list[Seed], *, cli_share: float = 0.2,
             hostile_share: float = 0.08, hostile_dir: str | None = None) -> Iterator[FuzzInput]:
    """``n`` inputs, the same for the same ``seed`` and seeds."""
    rng = random.Random(seed)
    for ident in range(n):
        via = "cli" if rng.random() < cli_share else "api"
        variables: dict[str, str] | None = None
        data: bytes | None = None
        if rng.random() < hostile_share:
            text, recipe, variables = hostile_documents(rng)
            files_dir, platform = hostile_dir, None
        else:
            base = rng.choice(seeds)
            text, steps = base.text, []
            for _ in range(rng.choice([1, 1, 2, 3, 5])):
                text, name = mutate_text(rng, text, seeds)
                steps.append(name)
            recipe = f"{base.name}: " + ", ".join(steps)
            files_dir, platform = base.files_dir, base.platform
            if hostile_dir and rng.random() < 0.1:
                files_dir = hostile_dir
            if rng.random() < 0.08:
                variables = {"x": rng.choice(HOSTILE_VALUES), "v": "1"}
            if rng.random() < 0.02:
                data = text.encode("utf-8", "surrogatepass")
                i = rng.randrange(len(data) + 1)
                data = data[:i] + rng.choice([b"\xff", b"\xc3", b"\xed\xa0\x80", b"\x00"]) + data[i:]
                recipe += ", invalid-utf8"
        yield FuzzInput(ident, text, files_dir, platform, variables, via, recipe, data)


def make_hostile_dir(root: Path) -> Path:
    """A files dir with what a hostile config points ``local:`` at: a FIFO, a symlink out, a dir."""
    d = root / "hostile-files"
    d.mkdir(parents=True, exist_ok=True)
    if not (d / "fifo").exists():
        os.mkfifo(d / "fifo")
    if not (d / "up").exists():
        (d / "up").symlink_to("/")
    (d / "dir").mkdir(exist_ok=True)
    (d / "x").write_text("x\n")
    return d


# ---------------------------------------------------------------------------------------------
# Worker (runs in the subprocess)

_FRAME = re.compile(r'File "(?P<file>[^"]*flatcar_infra/[^"]+)", line (?P<line>\d+)')


def _where(tb_text: str) -> str:
    frames = _FRAME.findall(tb_text)
    if not frames:
        return "outside flatcar_infra"
    file, line = frames[-1]
    return f"{file.split('flatcar_infra/', 1)[1]}:{line}"


def _dumped_where(tail: str, returncode: int | None) -> str:
    """The innermost ``flatcar_infra`` frame of the last stack ``faulthandler`` dumped (it lists
    the most recent call first)."""
    starts = [m.end() for m in re.finditer(r"(?m)^(Current thread|Thread) 0x[0-9a-f]+", tail)]
    frames = _FRAME.findall(tail[starts[-1]:] if starts else tail)
    if frames:
        file, line = frames[0]
        return f"{file.split('flatcar_infra/', 1)[1]}:{line}"
    first = re.search(r'File "(?P<file>[^"]+)", line (?P<line>\d+)', tail[starts[-1]:] if starts else tail)
    if first:
        return "/".join(first["file"].split("/")[-2:]) + f":{first['line']}"
    return f"signal {-returncode}" if returncode is not None and returncode < 0 else "no stack"


def _unlocated(diags: Any) -> list[str]:
    return [str(d) for d in diags if d.is_error and (not d.file or d.line <= 0)]


def run_one(inp: dict[str, Any], scratch: Path) -> dict[str, Any]:
    from flatcar_infra.errors import ConfigError, UserError

    data = base64.b64decode(inp["data"]) if inp.get("data") else None
    source: str | bytes = data if data is not None else inp["text"]
    try:
        if inp["via"] == "cli":
            return _run_cli(inp, source, scratch)
        from flatcar_infra.compiler import compile_config

        compile_config(source, filename="fuzz.yaml", files_dir=inp["files_dir"], variables=inp["variables"],
                       platform=inp["platform"])
        return {"outcome": "ok"}
    except ConfigError as exc:
        return {"outcome": "error", "unlocated": _unlocated(exc.diagnostics)}
    except UserError as exc:
        return {"outcome": "error", "unlocated": [f"UserError without location: {exc}"]}
    except BaseException as exc:
        tb = traceback.format_exc()
        return {"outcome": "traceback", "cause": f"{type(exc).__name__} at {_where(tb)}",
                "detail": tb[-2000:]}


_LOCATED = re.compile(r"^(?P<file>.+?):(?P<line>\d+):(?P<col>\d+): error: ", re.M)


def _run_cli(inp: dict[str, Any], source: str | bytes, scratch: Path) -> dict[str, Any]:
    from flatcar_infra.cli import main as cli_main

    path = scratch / "fuzz.yaml"
    path.write_bytes(source if isinstance(source, bytes) else source.encode("utf-8", "surrogatepass"))
    argv = ["render", str(path), "-o", str(scratch / "out.ign")]
    if inp["files_dir"]:
        argv += ["--files-dir", inp["files_dir"]]
    if inp["platform"]:
        argv += ["--platform", inp["platform"]]
    for k, v in (inp["variables"] or {}).items():
        argv += ["--var", f"{k}={v}"]
    out, err = io.TextIOWrapper(io.BytesIO(), encoding="utf-8"), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        try:
            code = cli_main.main(argv)
        except SystemExit as exc:
            code = exc.code if isinstance(exc.code, int) else 2
    text = err.getvalue()
    if code not in (0, 1, 2):
        return {"outcome": "traceback", "cause": f"CLI exit code {code}", "detail": text[-2000:]}
    if code == 1:
        error_lines = [ln for ln in text.splitlines() if ": error: " in ln]
        unlocated = [ln for ln in error_lines if not (m := _LOCATED.match(ln)) or int(m["line"]) <= 0]
        if not error_lines:
            unlocated = [f"exit 1 without a located error: {text[-300:]}"]
        return {"outcome": "error", "unlocated": unlocated}
    return {"outcome": "ok" if code == 0 else "error", "unlocated": []}


def worker() -> None:
    """Read inputs (JSON lines) on stdin, answer one JSON line each on stdout."""
    import faulthandler

    resource.setrlimit(resource.RLIMIT_AS, (MEMORY_LIMIT, MEMORY_LIMIT))
    faulthandler.enable(file=sys.stderr)
    # warm up imports so the first input's deadline is not spent importing
    import flatcar_infra.cli.main
    import flatcar_infra.compiler.api  # noqa: F401

    answer = os.fdopen(os.dup(1), "w", buffering=1)
    sys.stdout = sys.stderr  # anything the code prints must not corrupt the protocol
    answer.write(json.dumps({"ready": True}) + "\n")
    with tempfile.TemporaryDirectory(prefix="fuzz-") as tmp:
        for line in sys.stdin:
            inp = json.loads(line)
            faulthandler.dump_traceback_later(float(inp.get("dump_after", 1e9)), exit=False, file=sys.stderr)
            result = run_one(inp, Path(tmp))
            faulthandler.cancel_dump_traceback_later()
            result["id"] = inp["id"]
            answer.write(json.dumps(result) + "\n")


# ---------------------------------------------------------------------------------------------
# Parent


@dataclass
class Report:
    inputs: int = 0
    ok: int = 0
    errors: int = 0
    tracebacks: int = 0
    hangs: int = 0
    crashes: int = 0
    unlocated: int = 0
    causes: Counter[str] = field(default_factory=Counter)
    examples: dict[str, str] = field(default_factory=dict)  # cause -> recipe of the first input

    def record(self, kind: str, cause: str, recipe: str) -> None:
        key = f"{kind}: {cause}"
        self.causes[key] += 1
        self.examples.setdefault(key, recipe)

    @property
    def findings(self) -> int:
        return self.tracebacks + self.hangs + self.crashes + self.unlocated

    def summary(self) -> str:
        lines = [f"inputs {self.inputs}: ok {self.ok}, errors {self.errors}, tracebacks {self.tracebacks}, "
                 f"hangs {self.hangs}, crashes {self.crashes}, unlocated errors {self.unlocated}; "
                 f"{len(self.causes)} cause(s)"]
        for cause, n in self.causes.most_common():
            lines.append(f"  {n:5d}  {cause}\n         e.g. {self.examples[cause][:160]}")
        return "\n".join(lines)


class _Worker:
    def __init__(self, env: dict[str, str]) -> None:
        self.stderr = tempfile.TemporaryFile()  # noqa: SIM115 - lives as long as the worker
        self.proc = subprocess.Popen(
            [sys.executable, "-c", "from tests.support.fuzz import worker; worker()"],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=self.stderr, cwd=REPO, env=env,
            start_new_session=True,
        )
        assert self.proc.stdout is not None
        self.sel = selectors.DefaultSelector()
        self.sel.register(self.proc.stdout, selectors.EVENT_READ)
        self.buf = b""

    def readline(self, timeout: float) -> bytes | None:
        """A line, ``b""`` at EOF (the worker died), ``None`` on timeout."""
        assert self.proc.stdout is not None
        deadline = time.monotonic() + timeout
        while b"\n" not in self.buf:
            left = deadline - time.monotonic()
            if left <= 0 or not self.sel.select(left):
                return None
            chunk = os.read(self.proc.stdout.fileno(), 1 << 16)
            if not chunk:
                return b""
            self.buf += chunk
        line, _, self.buf = self.buf.partition(b"\n")
        return line

    def send(self, line: str) -> None:
        assert self.proc.stdin is not None
        self.proc.stdin.write(line.encode() + b"\n")
        self.proc.stdin.flush()

    def stderr_tail(self) -> str:
        self.stderr.seek(0)
        return self.stderr.read().decode(errors="replace")[-6000:]

    def kill(self) -> None:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.proc.pid, signal.SIGKILL)
        self.proc.wait()
        self.sel.close()
        for f in (self.proc.stdin, self.proc.stdout):
            if f is not None:
                with contextlib.suppress(OSError):
                    f.close()
        self.stderr.close()


def run(inputs: Iterator[FuzzInput], *, deadline: float = 10.0, start_timeout: float = 120.0,
        progress: Any = None) -> Report:
    """Run every input in workers; hangs and crashes replace the worker and are counted."""
    env = {**os.environ, "PYTHONPATH": str(REPO), "PYTHONFAULTHANDLER": "1"}
    report = Report()
    worker: _Worker | None = None
    try:
        for inp in inputs:
            if worker is None:
                worker = _Worker(env)
                ready = worker.readline(start_timeout)
                if not ready:
                    raise RuntimeError(f"fuzz worker did not start: {worker.stderr_tail()}")
            report.inputs += 1
            payload = json.loads(inp.to_json())
            payload["dump_after"] = max(deadline - 1.0, deadline * 0.8)
            try:
                worker.send(json.dumps(payload))
                line = worker.readline(deadline)
            except BrokenPipeError:
                line = b""
            if line is None or line == b"":
                worker.proc.poll()
                if line is None:
                    time.sleep(0.2)
                    kind = "hang"
                    report.hangs += 1
                else:
                    worker.proc.wait()
                    kind = "crash"
                    report.crashes += 1
                cause = _dumped_where(worker.stderr_tail(), worker.proc.returncode)
                report.record(kind, cause, inp.recipe)
                worker.kill()
                worker = None
                continue
            result = json.loads(line)
            outcome = result["outcome"]
            if outcome == "ok":
                report.ok += 1
            elif outcome == "error":
                report.errors += 1
                if result["unlocated"]:
                    report.unlocated += 1
                    msg = re.sub(r"\d+", "N", result["unlocated"][0].split(": error: ")[-1])[:90]
                    report.record("unlocated", msg, inp.recipe)
            else:
                report.tracebacks += 1
                report.record("traceback", result["cause"], inp.recipe)
            if progress is not None:
                progress(report)
    finally:
        if worker is not None:
            worker.kill()
    return report
