"""Jinja2 templates: strict undefined variables located at the template line, sandboxed, deterministic."""

from __future__ import annotations

from pathlib import Path

import pytest

from flatcar_infra.compiler import compile_config, compile_file
from flatcar_infra.compiler.templates import render_template
from flatcar_infra.errors import ConfigError, Diagnostic


def render_error(text: str, variables: dict[str, object] | None = None) -> Diagnostic:
    with pytest.raises(ConfigError) as info:
        render_template(text, "node.yaml.j2", variables or {})
    (d,) = info.value.diagnostics
    assert d.is_error and d.file == "node.yaml.j2" and d.path == "$"
    return d


def test_renders_without_escaping_and_keeps_trailing_newline() -> None:
    out = render_template("a: {{ x }}\nb: '{{ y | upper }}'\n", "t.j2", {"x": "<&>", "y": "q"}).plain()
    assert out == "a: <&>\nb: 'Q'\n"


def test_loops_and_conditionals() -> None:
    text = "keys:\n{% for k in keys %}  - {{ k }}\n{% endfor %}{% if extra %}extra: true\n{% endif %}"
    rendered = render_template(text, "t.j2", {"keys": ["a", "b"], "extra": False})
    assert rendered.plain() == "keys:\n  - a\n  - b\n"


def test_missing_variable_names_it_and_the_template_line() -> None:
    d = render_error("a: 1\nb: 2\nc: {{ hostname }}\n", {"host": "x"})
    assert d.message == "undefined template variable 'hostname'"
    assert d.line == 3


def test_missing_variable_inside_a_loop_points_at_its_line() -> None:
    d = render_error("x:\n{% for i in items %}\n  - {{ i }}{{ sufix }}\n{% endfor %}\n", {"items": [1]})
    assert (d.line, d.message) == (3, "undefined template variable 'sufix'")


def test_missing_attribute_is_an_error_too() -> None:
    d = render_error("a: 1\nb: {{ node.ip }}\n", {"node": {"name": "n"}})
    assert d.line == 2 and "'ip'" in d.message


def test_syntax_error_is_located() -> None:
    d = render_error("a: 1\nb: {% if %}\n")
    assert d.line == 2 and d.message.startswith("template syntax error")


def test_sandbox_refuses_python_internals() -> None:
    d = render_error("a: 1\nb: {{ ''.__class__.__mro__[1].__subclasses__() }}\n")
    assert d.line == 2 and "sandbox" in d.message


def test_runtime_errors_are_config_errors() -> None:
    assert render_error("a: {{ 1 // 0 }}\n").line == 1
    assert render_error("a: {% include 'other.j2' %}\n").line == 1


def test_sources_of_nondeterminism_are_removed() -> None:
    assert "random" in render_error("a: {{ [1, 2] | random }}\n").message
    assert "lipsum" in render_error("a: {{ lipsum() }}\n").message
    text = "{% for k, v in m.items() %}{{ k }}={{ v }}\n{% endfor %}"
    variables = {"m": {"b": 2, "a": 1}}
    assert (
        render_template(text, "t.j2", variables).plain()
        == render_template(text, "t.j2", variables).plain()
        == "b=2\na=1\n"
    )


def test_compile_with_variables_renders_before_parsing() -> None:
    text = (
        "variant: flatcar\nversion: 1.0.0\nstorage:\n  files:\n    - path: /etc/hostname\n"
        "      mode: 0644\n      contents:\n        inline: {{ hostname }}\n"
    )
    compiled = compile_config(text, filename="node.yaml", variables={"hostname": "web-1"})
    assert compiled.ignition["storage"]["files"][0]["contents"]["source"] == "data:,web-1"
    with pytest.raises(ConfigError) as info:
        compile_config(text, filename="node.yaml", variables={"host": "web-1"})
    (d,) = [d for d in info.value.diagnostics if d.is_error]
    assert (d.file, d.line, d.message) == ("node.yaml", 8, "undefined template variable 'hostname'")


def test_j2_files_are_templates_and_clc_works_through_them(tmp_path: Path) -> None:
    src = tmp_path / "cl.yaml.j2"
    src.write_text("update:\n  group: {{ channel }}\n")
    compiled = compile_file(src, variables={"channel": "beta"})
    assert compiled.source_kind == "clc"
    with pytest.raises(ConfigError) as info:
        compile_file(src)  # a .j2 file without variables: every variable is missing
    assert any("'channel'" in d.message and d.line == 2 for d in info.value.diagnostics)


def test_template_can_be_forced_off() -> None:
    text = "update:\n  group: stable\n# {{ not a template }}\n"
    assert compile_config(text, filename="cl.yaml.j2", template=False).source_kind == "clc"
