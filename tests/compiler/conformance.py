"""Run the shared conformance suites (Butane's and ct's own test cases) through our compiler and
compare the result with the README's rules (``<shared>/conformance/README.md``).

Used by ``test_conformance.py`` (one test per case) and runnable on its own to print the figures::

    python -m tests.compiler.conformance [-v]

Comparing "by meaning" for Butane: same verdict; output equal once data URLs are decoded (gzip
inflated), ``compression: ""`` dropped, empty objects/lists dropped and keyed lists sorted; every
expected warning reported on the same entry, no other warning, nothing on a ``none`` entry; for an
error case an error on the same entry as each expected one. "Exact" also wants the same data URLs
and compression (gzip: same choice and payload) and the exact diagnostic paths.

For ct: the output must also pass the real ``ignition-validate`` and is compared after applying
spec defaults, normalising unit text, wrapper flags and Flatcar's renamed paths; an error case must
report an error on the line ct gives.
"""

from __future__ import annotations

import gzip
import json
import os
import re
import shutil
import socket
import tempfile
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from flatcar_infra.compiler import CompiledConfig, compile_file
from flatcar_infra.compiler.dataurl import decode_data_url
from flatcar_infra.errors import ConfigError, Diagnostic

REPO = Path(__file__).resolve().parents[2]


def conformance_dir() -> Path:
    """``$FLATCAR_INFRA_CONFORMANCE`` or ``<repo>/../shared/conformance`` (as for the corpus)."""
    env = os.environ.get("FLATCAR_INFRA_CONFORMANCE")
    if env:
        return Path(env)
    corpus = os.environ.get("FLATCAR_INFRA_CORPUS")
    if corpus:
        return Path(corpus).parent / "conformance"
    return REPO.parent / "shared" / "conformance"


CONFORMANCE = conformance_dir()
BUTANE_CASES = sorted(p for p in (CONFORMANCE / "butane").glob("*") if (p / "input.bu").is_file())
CT_CASES = sorted(p for p in (CONFORMANCE / "ct").glob("*") if (p / "input.yaml").is_file())
DIFFERENCES_DOC = REPO / "docs" / "compiler-conformance.md"


# --- deliberate differences, read from the docs page -------------------------------------------


@dataclass(frozen=True)
class Difference:
    suite: str  # "butane" or "ct"
    case: str
    check: str  # "meaning" (both figures) or "exact" (the exact figure only)
    reason: str


def deliberate_differences(doc: Path = DIFFERENCES_DOC) -> dict[tuple[str, str, str], Difference]:
    """The table rows ``| suite | case | check | reason |`` of the docs page, by (suite, case, check)."""
    out: dict[tuple[str, str, str], Difference] = {}
    for line in doc.read_text(encoding="utf-8").splitlines():
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        if len(cells) != 4 or cells[0] not in ("butane", "ct"):
            continue
        suite, case, check, reason = cells
        case = case.strip("`")
        if check not in ("meaning", "exact"):
            raise ValueError(f"{doc}: check must be 'meaning' or 'exact': {line}")
        out[(suite, case, check)] = Difference(suite, case, check, reason)
    return out


# --- running a case ----------------------------------------------------------------------------


@dataclass
class Rendered:
    config: CompiledConfig | None
    diagnostics: tuple[Diagnostic, ...]

    @property
    def errors(self) -> list[Diagnostic]:
        return [d for d in self.diagnostics if d.is_error]

    @property
    def warnings(self) -> list[Diagnostic]:
        return [d for d in self.diagnostics if not d.is_error]


# Symbolic links of the upstream test trees. A copy of the suite made without symlink support
# (``git config core.symlinks false``, an archive tool) turns each into a small file holding its
# target; ``prepared`` turns such a file back into the link. A proper checkout needs nothing.
LINKS = {
    "docs-tree": ["files/tree/directory/symlink"],
    "tree-basic": [
        "files/tree/subdir/link",
        "files/tree/subdir/bad-link",
        "files/tree/subdir/overridden-link",
    ],
    "tree-no-overrides": ["files/tree/subdir/link"],
    "tree-collisions": [
        "files/tree7/file",
        "files/tree8/directory",
        "files/tree9/link",
        "files/tree10/file-partial",
        "files/tree11/link-partial",
        "files/tree12/tree-file",
        "files/tree13/tree-link",
        "files/tree14/tree-link",
    ],
}


def restore_links(root: Path, links: list[str]) -> None:
    """Turn each file of ``links`` (relative to ``root``) that holds a link's target back into
    that symbolic link; one that already is a link is left alone."""
    for rel in links:
        link = root / rel
        if link.is_file() and not link.is_symlink():
            target = link.read_text()
            link.parent.chmod(link.parent.stat().st_mode | 0o700)  # copies keep read-only modes
            link.unlink()
            link.symlink_to(target)


@contextmanager
def prepared(case: Path) -> Iterator[Path]:
    """A scratch copy of ``case`` with the empty directories and Unix sockets of its ``meta.json``
    (and its symbolic links, see ``LINKS``)."""
    with tempfile.TemporaryDirectory(prefix="cf-") as tmp, ExitStack() as stack:
        work = Path(tmp) / case.name
        shutil.copytree(case, work, symlinks=True)
        restore_links(work, LINKS.get(case.name, []))
        meta_file = work / "meta.json"
        meta = json.loads(meta_file.read_text()) if meta_file.exists() else {}
        for rel in meta.get("empty_dirs", []):
            (work / rel).mkdir(parents=True, exist_ok=True)
        for rel in meta.get("sockets", []):
            target = work / rel
            target.parent.mkdir(parents=True, exist_ok=True)
            sock = stack.enter_context(socket.socket(socket.AF_UNIX, socket.SOCK_STREAM))
            sock.bind(str(target))
        yield work


def render(work: Path, source: str, *, platform: str | None = None) -> Rendered:
    """Compile like ``flatcar-infra render``: ``files/`` as files dir when present, else the default."""
    files = work / "files"
    try:
        compiled = compile_file(work / source, files_dir=files if files.is_dir() else None, platform=platform)
    except ConfigError as exc:
        return Rendered(None, exc.diagnostics)
    return Rendered(compiled, compiled.warnings)


# --- paths and entries -------------------------------------------------------------------------


def snake(path: str) -> str:
    """``$.passwd.users.0.sshAuthorizedKeys`` → ``...ssh_authorized_keys`` (``sizeMiB`` → ``size_mib``)."""
    return re.sub(r"(MiB|[A-Z])", lambda m: "_" + m[1].lower(), path)


def _parts(path: str) -> list[str]:
    return [p for p in path.split(".") if p and p != "$"]


def same_entry(a: str, b: str) -> bool:
    """The README's "same entry": same first list item, or a prefix below the section level."""
    pa, pb = _parts(snake(a)), _parts(snake(b))
    if pa == pb:
        return True

    def entry(p: list[str]) -> list[str] | None:
        for i, part in enumerate(p):
            if part.isdigit():
                return p[: i + 1]
        return None

    ea, eb = entry(pa), entry(pb)
    if ea is not None and ea == eb:
        return True
    short, long = (pa, pb) if len(pa) <= len(pb) else (pb, pa)
    return len(short) >= 2 and long[: len(short)] == short


@dataclass(frozen=True)
class Expectation:
    severity: str  # error, warning, none
    path: str  # "-" for none
    note: str


def expectations(case: Path) -> list[Expectation]:
    f = case / "expected-error.txt"
    if not f.exists():
        return []
    out = []
    for line in f.read_text().splitlines():
        if not line.strip() or line.lstrip().startswith("#"):
            continue
        body, _, note = line.partition("#")
        severity, path = body.split()[:2]
        out.append(Expectation(severity, path, note.strip()))
    return out


# --- comparing outputs -------------------------------------------------------------------------

_KEYED = ("path", "name", "device")


def _payload(res: dict[str, Any]) -> Any:
    try:
        data = decode_data_url(res["source"])
        return gzip.decompress(data) if res.get("compression") == "gzip" else data
    except (ValueError, OSError, EOFError) as exc:
        return f"<undecodable: {exc}>"


def normalize_butane(doc: Any, *, exact: bool = False) -> Any:
    """Meaning: data URLs decoded, ``compression: ""`` and empty values dropped, keyed lists sorted.
    ``exact``: data URLs and compression kept as written, except that a gzip payload is compared
    inflated (Go's and zlib's deflate bytes differ), keeping the choice of gzip."""
    if isinstance(doc, dict):
        out: dict[str, Any] = {}
        for k, v in doc.items():
            if k == "compression" and v == "" and not exact:
                continue
            nv = normalize_butane(v, exact=exact)
            if nv in ({}, []) or nv is None:
                continue
            out[k] = nv
        src = doc.get("source")
        if isinstance(src, str) and src.startswith("data:"):
            if not exact:
                out["source"] = _payload(doc)
                out.pop("compression", None)
            elif doc.get("compression") == "gzip":
                out["source"] = ("gzip", _payload(doc))
        return out
    if isinstance(doc, list):
        items = [normalize_butane(x, exact=exact) for x in doc]
        if items and all(isinstance(x, dict) and any(k in x for k in _KEYED) for x in items):
            items.sort(key=lambda x: json.dumps([x.get(k) for k in _KEYED], default=str))
        return items
    return doc


@dataclass
class Verdict:
    meaning: list[str] = field(default_factory=list)  # why "by meaning" fails (empty: passes)
    exact: list[str] = field(default_factory=list)  # why "exact" fails, beyond meaning

    @property
    def ok(self) -> bool:
        return not self.meaning

    @property
    def exact_ok(self) -> bool:
        return not self.meaning and not self.exact


def _fmt(ds: list[Diagnostic]) -> str:
    return "; ".join(f"{d.severity.value} {d.path}: {d.message}" for d in ds) or "nothing"


def judge_butane(case: Path, result: Rendered) -> Verdict:
    v = Verdict()
    expected_file = case / "expected.json"
    exps = expectations(case)
    if expected_file.exists():
        if result.config is None:
            v.meaning.append(f"expected output, got errors: {_fmt(result.errors)}")
            return v
        expected = json.loads(expected_file.read_text())
        got = result.config.ignition
        if normalize_butane(got) != normalize_butane(expected):
            v.meaning.append(
                "output differs:\n  got      "
                + json.dumps(normalize_butane(got), default=repr, sort_keys=True)
                + "\n  expected "
                + json.dumps(normalize_butane(expected), default=repr, sort_keys=True)
            )
        elif normalize_butane(got, exact=True) != normalize_butane(expected, exact=True):
            v.exact.append("output encoded differently (data URL or compression)")
        wanted = [e for e in exps if e.severity == "warning"]
        for e in wanted:
            if not any(same_entry(d.path, e.path) for d in result.warnings):
                v.meaning.append(f"missing warning at {e.path} ({e.note}); got {_fmt(result.warnings)}")
            elif not any(snake(d.path) == e.path for d in result.warnings):
                v.exact.append(f"warning at {e.path} reported at another path: {_fmt(result.warnings)}")
        for d in result.warnings:
            if not any(same_entry(d.path, e.path) for e in wanted):
                v.meaning.append(f"unexpected warning: {_fmt([d])}")
    else:
        if result.config is not None:
            v.meaning.append(f"expected an error, but it rendered (warnings: {_fmt(result.warnings)})")
            return v
        for e in exps:
            if e.severity != "error":
                continue
            if e.path == "-":
                if not result.errors:
                    v.meaning.append(f"expected an error ({e.note})")
                continue
            if not any(same_entry(d.path, e.path) for d in result.errors):
                v.meaning.append(f"missing error at {e.path} ({e.note}); got {_fmt(result.errors)}")
            elif not any(snake(d.path) == e.path for d in result.errors):
                v.exact.append(f"error at {e.path} reported at another path: {_fmt(result.errors)}")
    for e in exps:
        if e.severity == "none":
            hit = [d for d in result.diagnostics if same_entry(d.path, e.path)]
            if hit:
                v.meaning.append(f"nothing expected at {e.path} ({e.note}); got {_fmt(hit)}")
    return v


# --- ct ----------------------------------------------------------------------------------------

_RENAMES = (
    ("/etc/coreos/update.conf", "/etc/flatcar/update.conf"),
    ("/usr/lib/coreos/", "/usr/lib/flatcar/"),
    ("/run/metadata/coreos", "/run/metadata/flatcar"),
)
_IGN_N = re.compile(r"(/tmp/[^/\"]*-ign)\d+")
_WRAPPER = re.compile(r"^ExecStart=(\S*-wrapper)(.*)$")


def _renamed(text: str) -> str:
    for old, new in _RENAMES:
        text = text.replace(old, new)
    return _IGN_N.sub(r"\1N", text)


def unit_lines(text: str) -> list[str]:
    """Unit text as ``[section] key=value`` lines: continuations joined, whitespace collapsed,
    blank lines dropped, the ``--flag`` arguments of a ``*-wrapper`` ExecStart compared as a set."""
    joined = re.sub(r"\\\n", " ", _renamed(text))
    section = ""
    out = []
    for raw in joined.splitlines():
        line = " ".join(raw.split())
        if not line:
            continue
        if line.startswith("["):
            section = line
            continue
        m = _WRAPPER.match(line)
        if m:
            words = m[2].split()
            flags = sorted(w for w in words if w.startswith("--"))
            rest = [w for w in words if not w.startswith("--")]
            line = f"ExecStart={m[1]} {' '.join(rest)} {{{' '.join(flags)}}}"
        out.append(f"{section} {line}")
    return out


def judge_ct(case: Path, result: Rendered) -> Verdict:
    v = Verdict()
    expected_file = case / "expected.json"
    if expected_file.exists():
        if result.config is None:
            v.meaning.append(f"expected output, got errors: {_fmt(result.errors)}")
            return v
        from tests.support.ignition import IgnitionFailed, ignition_validate

        try:
            ignition_validate(result.config.canonical, allow_warnings=True)
        except IgnitionFailed as exc:
            v.meaning.append(f"ignition-validate rejects our output: {exc.log.strip()}")
        expected = _ct_normal(json.loads(expected_file.read_text()))
        got = _ct_normal(result.config.ignition)
        if got != expected:
            v.meaning.append(
                "output differs:\n  got      "
                + json.dumps(got, default=repr, sort_keys=True)
                + "\n  expected "
                + json.dumps(expected, default=repr, sort_keys=True)
            )
        return v
    if result.config is not None:
        v.meaning.append(f"expected an error, but it rendered (warnings: {_fmt(result.warnings)})")
        return v
    lines = {d.line for d in result.errors}
    for raw in (case / "expected-error.txt").read_text().splitlines():
        if not raw.strip():
            continue
        where, _, msg = raw.partition(": ")
        if where == "-":
            ok = bool(result.errors)
        elif where.startswith("~"):
            lo, hi = (int(x) for x in where[1:].split("-"))
            ok = any(lo <= n <= hi for n in lines)
        else:
            ok = int(where.split(":")[0]) in lines
        if not ok:
            v.meaning.append(
                f"missing error at {where} ({msg}); got {_fmt(result.errors)} on lines {sorted(lines)}"
            )
    return v


_DEFAULTS: dict[str, dict[str, Any]] = {
    "files": {"overwrite": False, "mode": 0o644},
    "directories": {"overwrite": False, "mode": 0o755},
    "links": {"overwrite": False, "hard": False},
    "partitions": {"shouldExist": True},
}


def _ct_normal(doc: Any, key: str = "", path: str = "") -> Any:
    """The README's ct normalisation (see module docstring)."""
    if isinstance(doc, list):
        items = [_ct_normal(x, key, path) for x in doc]
        items = [x for x in items if x not in ({}, [], None)]
        if items and all(isinstance(x, dict) for x in items):
            items.sort(key=lambda x: json.dumps([x.get(k) for k in _KEYED], default=repr))
        elif items and all(isinstance(x, str) for x in items):
            items.sort()
        return items
    if isinstance(doc, str):
        return _renamed(doc)
    if not isinstance(doc, dict):
        return doc
    out: dict[str, Any] = {}
    for k, v in doc.items():
        if k == "contents" and isinstance(v, str):  # unit and drop-in text
            out[k] = unit_lines(v)
            continue
        nv = _ct_normal(v, k, path)
        if nv in ({}, [], None, ""):
            continue
        out[k] = nv
    if key == "ignition":
        out.pop("version", None)
    src = doc.get("source")
    if isinstance(src, str) and src.startswith("data:"):
        out.pop("compression", None)
        out["source"] = _payload(doc)
    for k, default in _DEFAULTS.get(key, {}).items():
        out.setdefault(k, default)
    if key == "partitions":
        for k in ("number", "sizeMiB", "startMiB"):
            if out.get(k) == 0:
                out.pop(k)
    for k in ("guid", "typeGuid", "hash", "uuid"):
        if isinstance(out.get(k), str):
            out[k] = out[k].lower()
    if (
        key == "files"
        and isinstance(out.get("path"), str)
        and out["path"].startswith("/etc/systemd/network/")
    ):
        contents = out.get("contents")
        if isinstance(contents, dict) and isinstance(contents.get("source"), bytes):
            contents["source"] = unit_lines(contents["source"].decode("utf-8", "replace"))
    return out


# --- figures -----------------------------------------------------------------------------------


def run_butane(case: Path) -> Verdict:
    with prepared(case) as work:
        return judge_butane(case, render(work, "input.bu"))


def run_ct(case: Path) -> Verdict:
    platform_file = case / "platform.txt"
    platform = platform_file.read_text().strip() if platform_file.exists() else None
    with prepared(case) as work:
        return judge_ct(case, render(work, "input.yaml", platform=platform))


def main(argv: list[str] | None = None) -> int:
    import argparse

    parser = argparse.ArgumentParser(description="Print the conformance figures")
    parser.add_argument("-v", action="store_true", help="list every failing case with the reason")
    args = parser.parse_args(argv)
    bm = be = 0
    for case in BUTANE_CASES:
        v = run_butane(case)
        bm += v.ok
        be += v.exact_ok
        if args.v and not v.exact_ok:
            print(f"butane {case.name}: {'EXACT ' if v.ok else ''}{'; '.join(v.meaning + v.exact)}")
    cm = 0
    for case in CT_CASES:
        v = run_ct(case)
        cm += v.ok
        if args.v and not v.ok:
            print(f"ct {case.name}: {'; '.join(v.meaning)}")
    print(f"Butane suite: {bm}/{len(BUTANE_CASES)} by meaning, {be}/{len(BUTANE_CASES)} exact")
    print(f"ct suite: {cm}/{len(CT_CASES)} by meaning")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
