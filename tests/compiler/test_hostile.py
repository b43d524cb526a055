"""Hostile input: every limit of ``flatcar_infra.limits`` holds, stops fast and says where.

A config comes from a repository anyone with commit access can change and is compiled on operators'
machines and in CI. These are the attacks of issue 12, each refused with a located error (never a
traceback, hang, crash or gigabyte), and the template rule that a value is always data.
"""

from __future__ import annotations

import gzip
import json
import os
import resource
import stat
import subprocess
import sys
import threading
from pathlib import Path

import pytest

from flatcar_infra.cli import main as cli_main
from flatcar_infra.compiler import compile_config
from flatcar_infra.compiler.templates import render_template
from flatcar_infra.compiler.yamlsrc import parse_yaml
from flatcar_infra.errors import ConfigError, Diagnostic
from flatcar_infra.limits import LIMITS, LimitExceeded, Limits, LocalFiles, gunzip, read_regular_file

REPO = Path(__file__).resolve().parents[2]
V10 = "variant: flatcar\nversion: 1.0.0\n"
FILE_X = V10 + "storage:\n  files:\n    - path: /etc/x\n      contents: {inline: '{{ v }}'}\n"


def errors(text: str | bytes, **kw: object) -> list[Diagnostic]:
    with pytest.raises(ConfigError) as info:
        compile_config(text, filename="h.bu", **kw)  # type: ignore[arg-type]
    found = [d for d in info.value.diagnostics if d.is_error]
    assert found and all(d.file == "h.bu" and d.line >= 1 for d in found), found
    return found


def inline_of(text: str, **kw: object) -> str:
    doc = compile_config(text, filename="t.bu", **kw).ignition  # type: ignore[arg-type]
    from flatcar_infra.compiler.dataurl import decode_data_url

    return decode_data_url(doc["storage"]["files"][0]["contents"]["source"]).decode()


def rss_growth(fn: object) -> int:
    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    fn()  # type: ignore[operator]
    return (resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before) * 1024


# --- YAML ---------------------------------------------------------------------------------------

def billion_laughs(levels: int = 10) -> str:
    lines = ["a0: &a0 [lol, lol, lol, lol, lol, lol, lol, lol, lol, lol]"]
    lines += [f"a{i}: &a{i} [" + ", ".join([f"*a{i - 1}"] * 10) + "]" for i in range(1, levels)]
    return V10 + "\n".join(lines) + f"\nkernel_arguments: {{should_exist: *a{levels - 1}}}\n"


def test_billion_laughs_is_refused_at_its_alias_not_expanded() -> None:
    text = billion_laughs()
    assert len(text) < 4096  # the 3.8 KB document
    (d,) = rss_growth_and_errors(text)
    assert d.line == 8 and "more than 1000000 nodes once aliases are expanded" in d.message


def rss_growth_and_errors(text: str) -> list[Diagnostic]:
    out: list[list[Diagnostic]] = []
    grew = rss_growth(lambda: out.append(errors(text)))
    assert grew < 200 * 1024 * 1024
    return out[0]


def test_one_big_string_aliased_many_times_is_refused() -> None:
    refs = ", ".join(["*s"] * 1000)
    text = V10 + "s: &s '" + "x" * 100_000 + f"'\nkernel_arguments: {{should_exist: [{refs}]}}\n"
    (d,) = errors(text)
    assert "scalars hold more than 64 MiB once aliases are expanded" in d.message and d.line == 4


def test_recursive_and_undefined_aliases_are_located() -> None:
    (d,) = errors(V10 + "storage: &a {files: [*a]}\n")
    assert (d.line, d.col) == (3, 22) and "recursive" in d.message
    (d,) = errors(V10 + "storage: *nope\n")
    assert d.line == 3 and "undefined alias 'nope'" in d.message


@pytest.mark.parametrize("kind", ["flow", "block-seq", "block-map", "json", "aliases"])
def test_deep_nesting_is_a_located_error_never_a_crash(kind: str) -> None:
    """Run in a subprocess: if nesting ever reached a recursive C parser again, the crash would
    fail this test instead of killing the test run."""
    code = f"""
import json
from flatcar_infra.compiler import compile_config
from flatcar_infra.errors import ConfigError
kind, n = {kind!r}, 1_000_000
head = "variant: flatcar\\nversion: 1.0.0\\n"
text = {{
    "flow": head + "storage: " + "[" * n + "]" * n,
    "block-seq": head + "storage:\\n  files:\\n  " + "- " * 200_000 + "x\\n",
    "block-map": head + "".join(" " * i + f"k{{i}}:\\n" for i in range(2000)),
    "json": '{{"ignition": {{"version": "3.3.0"}}, "x": ' + "[" * n + "]" * n + "}}",
    "aliases": head + "a0: &a0 " + "[" * 60 + "]" * 60 + "\\n" + "".join(
        f"a{{i}}: &a{{i}} [[[[[[[[[[*a{{i - 1}}]]]]]]]]]]\\n" for i in range(1, 20)),
}}[kind]
try:
    compile_config(text, filename="deep.bu")
except ConfigError as exc:
    print(json.dumps([[d.line, d.message] for d in exc.diagnostics if d.is_error]))
"""
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120,
                          env={**os.environ, "PYTHONPATH": str(REPO)}, check=False)
    assert proc.returncode == 0, proc.stderr[-2000:]
    found = json.loads(proc.stdout)
    assert found and all(line >= 1 for line, _ in found)
    assert any("nested more than 64 levels deep" in m for _, m in found), found


def test_the_size_of_a_config_is_limited_before_parsing() -> None:
    (d,) = errors(V10 + "#" + "x" * LIMITS.source_bytes + "\n")
    assert d.line == 1 and "over the limit of 8 MiB" in d.message


def test_merge_keys_follow_yaml_and_keep_positions() -> None:
    doc = parse_yaml("base: &b {x: 1, y: 2}\nc:\n  <<: [*b, {x: 9, z: 3}]\n  y: 4\n", "m.yaml")
    c = doc.root.items["c"]  # type: ignore[union-attr]
    assert {k: v.value for k, v in c.items.items()} == {"x": "1", "z": "3", "y": "4"}  # type: ignore[union-attr]
    assert not doc.diagnostics
    bad = parse_yaml("c:\n  <<: [1]\n", "m.yaml")
    assert [d.line for d in bad.diagnostics] == [2] and "merge key" in bad.diagnostics[0].message


@pytest.mark.parametrize(("data", "where", "what"), [
    (V10.encode() + b"x: \xff\n", (3, 4), "byte 0xff"),
    ((V10 + "x: \ud800\n").encode("utf-8", "surrogatepass").decode("utf-8", "surrogateescape"), (3, 4),
     "lone surrogate"),
])
def test_text_that_is_not_unicode_is_located(data: str | bytes, where: tuple[int, int], what: str) -> None:
    (d,) = errors(data)
    assert (d.line, d.col) == where and what in d.message


def test_a_double_slash_path_is_an_error_at_once() -> None:
    (d,) = errors(V10 + "storage:\n  files:\n    - path: //etc/x\n  directories:\n    - path: //\n")[:1]
    assert d.line == 5 and "use '/etc/x'" in d.message


# --- local files ----------------------------------------------------------------------------------

def test_local_reads_never_block_and_are_bounded(tmp_path: Path) -> None:
    os.mkfifo(tmp_path / "fifo")
    big = tmp_path / "big"
    with big.open("wb") as fh:  # sparse: nothing is written, nothing must be read
        fh.truncate(LIMITS.contents_bytes + 1)
    for name, message in (("fifo", "is not a regular file"), ("big", "over the limit of 16 MiB")):
        text = V10 + f"storage:\n  files:\n    - path: /a\n      contents:\n        local: {name}\n"
        (d,) = errors(text, files_dir=tmp_path)
        assert d.line == 7 and message in d.message
    clc = "storage:\n  files:\n    - path: /a\n      filesystem: root\n      contents:\n        local: fifo\n"
    (d,) = errors(clc, files_dir=tmp_path)
    assert d.line == 6 and "not a regular file" in d.message


def test_all_local_files_together_are_bounded(tmp_path: Path) -> None:
    for name in ("a", "b", "c"):
        (tmp_path / name).write_bytes(b"x" * 6)
    local = LocalFiles(Limits(contents_bytes=8, local_total_bytes=15))
    assert local.read(tmp_path / "a") == b"x" * 6 and local.read(tmp_path / "b") == b"x" * 6
    with pytest.raises(LimitExceeded, match="for all local files"):
        local.read(tmp_path / "c")
    with pytest.raises(LimitExceeded, match="a directory"):
        read_regular_file(tmp_path, 100)


def test_gzip_bombs_are_refused_without_inflating() -> None:
    bomb = gzip.compress(b"\0" * (64 * 1024 * 1024), mtime=0)
    assert len(bomb) < 100_000
    with pytest.raises(LimitExceeded, match="decompresses to more than 16 MiB"):
        gunzip(bomb)
    assert gunzip(gzip.compress(b"a") + gzip.compress(b"b")) == b"ab"


# --- templates ----------------------------------------------------------------------------------

@pytest.mark.parametrize(("body", "message"), [
    ("{% for a in range(100000) %}{% for b in range(100000) %}{% endfor %}{% endfor %}", "steps"),
    ("{% macro f(n) %}{% if n %}{{ f(n - 1) }}{{ f(n - 1) }}{% endif %}{% endmacro %}{{ f(60) }}", "steps"),
    ("{{ 'a' * 1000000000 }}", "builds a value"),
    ("{{ 'a'|center(1000000000) }}", "builds a value"),
    ("{{ 'x'.ljust(999999999) }}", "builds a value"),
    ("{{ '%0999999999d' % 1 }}", "builds a value"),
    ("{{ '{:>999999999}'.format(1) }}", "builds a value"),
    ("{{ 7 ** 999999999 }}", "builds a value"),
    ("{{ ('ab' * 1000000)|replace('a', 'a' * 1000000) }}", "builds a value"),
    ("{% set ns = namespace(s='ab') %}{% for i in range(60) %}{% set ns.s = ns.s ~ ns.s %}{% endfor %}",
     "builds a value"),
    ("{% set x %}{% for i in range(100000) %}{{ 'a' * 1000 }}{% endfor %}{% endset %}", "produces more"),
    ("{% for i in range(100000) %}{% for j in range(100) %}" + "A" * 100 + "{% endfor %}{% endfor %}",
     "produces more"),
])
def test_templates_are_bounded_and_stop_at_their_line(body: str, message: str) -> None:
    (d,) = errors(V10 + "\n" + body + "\n", variables={})
    assert d.line == 4 and message in d.message


@pytest.mark.parametrize("value", [
    "a'\n    - path: /etc/evil\n      mode: 0777\n  x: '",
    "x\npasswd: {users: [{name: evil}]}",
    "}\nsystemd: {units: [{name: evil.service}]}",
    '"; evil: "',
    "\u2028- path: /etc/evil",
    "- a\n- b",
    "*alias &anchor !!binary",
])
def test_a_variable_is_always_the_text_of_one_scalar(value: str) -> None:
    for quoting in ("'{{ v }}'", '"{{ v }}"', "{{ v }}"):
        text = FILE_X.replace("'{{ v }}'", quoting)
        doc = compile_config(text, filename="t.bu", variables={"v": value}).ignition
        assert [f["path"] for f in doc["storage"]["files"]] == ["/etc/x"]
        assert set(doc) == {"ignition", "storage"}
        assert inline_of(text, variables={"v": value}) == value
    block = V10 + "storage:\n  files:\n    - path: /etc/x\n      contents:\n        inline: |\n"
    block += "          {{ v }}\n"
    assert inline_of(block, variables={"v": value}) == value + "\n"


def test_values_keep_their_field_types_and_tojson_gives_structure() -> None:
    text = (V10 + "storage:\n  files:\n    - path: /etc/{{ name }}.conf\n      mode: {{ mode }}\n"
            "      contents: {inline: 'x'}\npasswd:\n  users:\n    - name: core\n"
            "      ssh_authorized_keys: {{ keys | tojson }}\n")
    variables = {"name": "app", "mode": "0600", "keys": ["ssh-ed25519 AAAA a", "x\u2028y"]}
    doc = compile_config(text, filename="t.bu", variables=variables).ignition
    (f,) = doc["storage"]["files"]
    assert f["path"] == "/etc/app.conf" and f["mode"] == 0o600
    assert doc["passwd"]["users"][0]["sshAuthorizedKeys"] == ["ssh-ed25519 AAAA a", "x\u2028y"]


def test_macro_and_block_output_holding_values_stays_data() -> None:
    macro = "{% macro line(k, v) %}{{ k }}={{ v }}{% endmacro %}"
    text = macro + FILE_X.replace("{{ v }}", "{{ line('A', v) }}")
    assert inline_of(text, variables={"v": "1\n- x"}) == "A=1\n- x"


def test_json_templates_take_values_in_strings() -> None:
    text = ('{"ignition": {"version": "3.3.0"}, "storage": {"files": [{"path": "/etc/{{ v }}", '
            '"mode": {{ m | tojson }}}]}}')
    doc = compile_config(text, filename="t.ign.j2", variables={"v": 'a"b', "m": 420}).ignition
    (f,) = doc["storage"]["files"]
    assert f["path"] == '/etc/a"b' and f["mode"] == 420
    (d,) = errors(text.replace("{{ m | tojson }}", "{{ m }}"), variables={"v": "x", "m": "420"})
    assert "outside a JSON string" in d.message


def test_rendered_text_shows_values_for_people() -> None:
    rendered = render_template("a: {{ x }}\n", "t.j2", {"x": "1\nb: 2"})
    assert "1\nb: 2" not in rendered.text and rendered.plain() == "a: 1\nb: 2\n"


def test_cli_var_injection_is_data(tmp_path: Path, capsysbinary: pytest.CaptureFixture[bytes]) -> None:
    (tmp_path / "t.bu").write_text(FILE_X)
    value = "a'\n    - path: /etc/evil\n  x: '"
    assert cli_main.main(["render", str(tmp_path / "t.bu"), "--var", f"v={value}"]) == 0
    doc = json.loads(capsysbinary.readouterr().out)
    assert [f["path"] for f in doc["storage"]["files"]] == ["/etc/x"]


# --- render -o ------------------------------------------------------------------------------------

def test_render_output_refuses_special_files(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    (tmp_path / "c.bu").write_text(V10)
    target = tmp_path / "real.ign"
    target.write_text("keep")
    (tmp_path / "link.ign").symlink_to(target)
    os.mkfifo(tmp_path / "fifo.ign")
    for out, what in (("link.ign", "a symbolic link"), ("fifo.ign", "a FIFO"), ("/dev/null", "a device"),
                      (".", "a directory")):
        path = out if out.startswith("/") else str(tmp_path / out)
        result: list[int] = []
        argv = ["render", str(tmp_path / "c.bu"), "-o", path]
        t = threading.Thread(target=lambda a=argv, r=result: r.append(cli_main.main(a)), daemon=True)
        t.start()
        t.join(30)
        assert not t.is_alive() and result == [1], out
        assert f"it is {what}; refusing to replace it" in capsys.readouterr().err
    assert target.read_text() == "keep" and (tmp_path / "link.ign").is_symlink()
    assert stat.S_ISCHR(os.stat("/dev/null").st_mode)


def test_render_output_honours_the_umask_and_keeps_a_mode(tmp_path: Path) -> None:
    (tmp_path / "c.bu").write_text(V10)
    old = os.umask(0o027)
    try:
        assert cli_main.main(["render", str(tmp_path / "c.bu"), "-o", str(tmp_path / "new.ign")]) == 0
        (tmp_path / "kept.ign").write_text("x")
        (tmp_path / "kept.ign").chmod(0o604)
        assert cli_main.main(["render", str(tmp_path / "c.bu"), "-o", str(tmp_path / "kept.ign")]) == 0
    finally:
        os.umask(old)
    assert stat.S_IMODE((tmp_path / "new.ign").stat().st_mode) == 0o640
    assert stat.S_IMODE((tmp_path / "kept.ign").stat().st_mode) == 0o604
    assert json.loads((tmp_path / "kept.ign").read_text())["ignition"]["version"] == "3.3.0"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["c.bu", "kept.ign", "new.ign"]


def test_a_hostile_vars_file_is_refused_at_its_line(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    (tmp_path / "t.bu").write_text(FILE_X)
    (tmp_path / "vars.yaml").write_text(billion_laughs().replace(V10, "v: x\n"))
    assert cli_main.main(["render", str(tmp_path / "t.bu"), "--vars-file", str(tmp_path / "vars.yaml")]) == 1
    assert "vars.yaml:7:45: error: YAML document has more than 1000000 nodes" in capsys.readouterr().err
    (tmp_path / "vars.yaml").write_text("v: " + "[" * 100_000 + "]" * 100_000 + "\n")
    assert cli_main.main(["render", str(tmp_path / "t.bu"), "--vars-file", str(tmp_path / "vars.yaml")]) == 1
    assert "nested more than 64 levels deep" in capsys.readouterr().err
