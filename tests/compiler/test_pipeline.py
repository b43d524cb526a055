"""The compile pipeline: kinds, templates, snippets, and the API on top of it."""

from __future__ import annotations

import base64
import gzip
import json
from pathlib import Path

import pytest

from flatcar_infra.compiler import compile_config, compile_file
from flatcar_infra.errors import ConfigError
from tests.compiler.helpers import messages, ok, run

V10 = "variant: flatcar\nversion: 1.0.0\n"


def test_raw_ignition_passes_through() -> None:
    doc = {"ignition": {"version": "3.4.0"}, "storage": {"files": [{"path": "/a"}]}}
    result = run(json.dumps(doc), filename="x.ign")
    assert result.kind == "ignition" and result.document == doc


def test_template_rendering_rules() -> None:
    src = V10 + "storage:\n  files:\n    - path: /etc/hostname\n      contents: {inline: '{{ name }}'}\n"
    doc = ok(src, variables={"name": "web1"})
    assert doc["storage"]["files"][0]["contents"]["source"] == "data:,web1"
    # no variables, not .j2, template not forced: the braces stay text
    assert ok(src)["storage"]["files"][0]["contents"]["source"].startswith("data:,%7B%7B")
    # .j2 renders, and a missing variable is an error naming it and the line
    result = run(src, filename="c.yaml.j2")
    assert messages(result) == ["c.yaml.j2:6:1: error: undefined template variable 'name' [$]"]
    # template=False wins over variables
    assert (
        "%7B%7B"
        in ok(src, variables={"name": "x"}, template=False)["storage"]["files"][0]["contents"]["source"]
    )


def test_snippets_merge_in_order_and_must_match() -> None:
    main = V10 + "passwd:\n  users:\n    - name: core\n      ssh_authorized_keys: [a]\n"
    s1 = V10 + "passwd:\n  users:\n    - name: core\n      ssh_authorized_keys: [b]\n"
    s2 = V10 + "systemd:\n  units:\n    - name: x.service\n      mask: true\n"
    doc = ok(main, snippets=[("s1.yaml", s1), ("s2.yaml", s2)])
    assert doc["passwd"]["users"] == [{"name": "core", "sshAuthorizedKeys": ["a", "b"]}]
    assert doc["systemd"]["units"] == [{"name": "x.service", "mask": True}]
    other = "variant: flatcar\nversion: 1.1.0\n"
    result = run(main, snippets=[("s.yaml", other)])
    assert messages(result) == [
        "s.yaml:1:1: error: snippet is flatcar 1.1.0 but the main config is flatcar "
        "1.0.0; snippets must use the same kind, variant and version [$]"
    ]
    result = run(main, snippets=[("s.ign", '{"ignition": {"version": "3.3.0"}}')])
    assert "snippet is ignition 3.3.0" in messages(result)[0]
    # a snippet's own errors are located in the snippet
    result = run(main, snippets=[("bad.yaml", V10 + "storage:\n  files:\n    - path: rel\n")])
    assert messages(result) == ["bad.yaml:5:13: error: path 'rel' must be absolute [$.storage.files.0.path]"]


def test_compile_config_api_strict_and_stamp(tmp_path: Path) -> None:
    src = V10 + "storage:\n  files:\n    - path: /a\n      mode: 644\n"
    compiled = compile_config(src, filename="c.yaml")
    assert [w.message.split(";")[0] for w in compiled.warnings] == ["mode 644 is decimal (= 01204)"]
    with pytest.raises(ConfigError):
        compile_config(src, filename="c.yaml", strict=True)
    stamped = compile_config(src, filename="c.yaml", stamp_config=True)
    assert stamped.hash == compiled.hash and stamped.canonical != compiled.canonical
    p = tmp_path / "c.yaml"
    p.write_text(V10 + "storage:\n  files:\n    - path: /a\n      contents: {local: x.txt}\n")
    (tmp_path / "x.txt").write_text("x")
    assert compile_file(p).ignition["storage"]["files"][0]["contents"]["source"] == "data:,x"


def test_snippet_replacing_gzip_contents_does_not_inherit_compression() -> None:
    """A snippet's plain contents merged over the main config's gzip contents stay readable
    (Ignition's merge would otherwise keep the parent's ``compression: gzip``)."""
    from tests.compiler.helpers import contents

    big = "".join(f"          repeated line {i % 4}\n" for i in range(100))
    main = V10 + "storage:\n  files:\n    - path: /etc/a\n      contents:\n        inline: |\n" + big
    snip = V10 + "storage:\n  files:\n    - path: /etc/a\n      contents:\n        inline: small\n"
    doc = ok(main, snippets=[("s.yaml", snip)])
    c = doc["storage"]["files"][0]["contents"]
    assert c["compression"] == ""
    assert contents(c["source"], c["compression"]) == b"small"
    # the same with a raw Ignition snippet that does not say compression at all
    raw = (
        '{"ignition": {"version": "3.3.0"}, "storage": {"files": [{"path": "/etc/a", "contents": '
        '{"source": "data:,small"}}]}}'
    )
    packed = base64.b64encode(gzip.compress(b"big parent contents", mtime=0)).decode()
    gz = {"source": "data:;base64," + packed, "compression": "gzip"}
    main_ign = json.dumps(
        {"ignition": {"version": "3.3.0"}, "storage": {"files": [{"path": "/etc/a", "contents": gz}]}}
    )
    doc = ok(main_ign, filename="m.ign", snippets=[("s.ign", raw)])
    c = doc["storage"]["files"][0]["contents"]
    assert contents(c["source"], c["compression"]) == b"small"
