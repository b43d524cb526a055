"""``flatcar_config``: a config compiled as a Pulumi value (Output variables, secrets, errors)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pulumi
import pytest

from flatcar_infra import compile_config
from flatcar_infra.compiler import STAMP_PATH
from flatcar_infra.components import flatcar_config
from flatcar_infra.manifest import build_manifest
from tests.components.mockgraph import BUTANE, ignition_text, run_program


def resolve(program: Any) -> dict[str, Any]:
    """Run an async program under mocks and return what it collected."""
    box: dict[str, Any] = {}

    async def wrapped() -> None:
        box.update(await program())

    run_program(wrapped)
    return box


def test_butane_file_with_plain_variables_matches_the_compiler(butane_file: Path) -> None:
    async def program() -> dict[str, Any]:
        c = flatcar_config(butane_file, variables={"greeting": "hello"})
        return {
            "canonical": await c.canonical.future(),
            "hash": await c.hash.future(),
            "manifest": await c.manifest.future(),
            "version": await c.version.future(),
            "secret": await c.canonical.is_secret(),
        }

    got = resolve(program)
    want = compile_config(
        BUTANE, filename=str(butane_file), variables={"greeting": "hello"}, stamp_config=True
    )
    assert got["canonical"].encode() == want.canonical
    assert got["hash"] == want.hash
    assert got["version"] == "3.3.0"
    assert got["manifest"] == build_manifest(want.ignition)
    assert "file:/etc/motd" in got["manifest"]
    assert STAMP_PATH in got["canonical"], "components always stamp the config"
    assert got["secret"] is False


def test_output_variables_render_when_they_resolve_and_secrets_propagate(butane_file: Path) -> None:
    async def program() -> dict[str, Any]:
        later = pulumi.Output.from_input("from-an-output").apply(lambda s: s.upper())
        plain = flatcar_config(butane_file, variables={"greeting": later})
        secret = flatcar_config(butane_file, variables={"greeting": pulumi.Output.secret("s3cr3t")})
        return {
            "plain": await plain.canonical.future(),
            "plain_secret": await plain.canonical.is_secret(),
            "secret_flags": [
                await secret.canonical.is_secret(),
                await secret.hash.is_secret(),
                await secret.manifest.is_secret(),
            ],
            "secret_text": await secret.canonical.future(),
        }

    got = resolve(program)
    assert "FROM-AN-OUTPUT" in got["plain"]
    assert got["plain_secret"] is False
    assert got["secret_flags"] == [True, True, True]
    assert "s3cr3t" in got["secret_text"]


def test_hash_ignores_the_stamp_and_changes_with_the_content() -> None:
    async def program() -> dict[str, Any]:
        a = flatcar_config(text=ignition_text("one"), filename="a.ign")
        b = flatcar_config(text=ignition_text("two"), filename="b.ign")
        return {"a": await a.hash.future(), "b": await b.hash.future()}

    got = resolve(program)
    assert got["a"] != got["b"]
    assert got["a"] == compile_config(ignition_text("one")).hash


def test_compile_error_is_a_clear_run_error_naming_the_file_and_path(tmp_path: Path) -> None:
    bad = tmp_path / "bad.bu"
    bad.write_text("variant: flatcar\nversion: 1.0.0\nstorage:\n  files:\n    - path: relative/motd\n")

    def program() -> None:
        flatcar_config(bad)

    with pytest.raises(pulumi.RunError) as info:
        run_program(program)
    msg = str(info.value)
    assert str(bad) in msg and "storage.files.0.path" in msg
    assert "Traceback" not in msg


def test_missing_file_and_ambiguous_source_are_run_errors(tmp_path: Path) -> None:
    with pytest.raises(pulumi.RunError, match="cannot read"):
        run_program(lambda: flatcar_config(tmp_path / "nope.bu"))
    with pytest.raises(pulumi.RunError, match="exactly one of path or text"):
        run_program(lambda: flatcar_config(tmp_path / "x.bu", text="{}"))
