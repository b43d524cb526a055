"""Every Butane config of the shared corpus compiles and passes the REAL ``ignition-validate``;
the known-invalid one fails with a located error; documented outputs match semantically.

The corpus lives beside the repository (``<repo>/../shared/corpus``) or at ``$FLATCAR_INFRA_CORPUS``.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import pytest

from flatcar_infra.compiler import compile_file
from flatcar_infra.compiler.dataurl import decode_data_url
from flatcar_infra.errors import ConfigError
from tests.support.ignition import (
    CORE_USER,
    apply_config,
    assert_applied,
    ignition_validate,
    requires_ignition,
)

REPO = Path(__file__).resolve().parents[2]
CORPUS = Path(os.environ.get("FLATCAR_INFRA_CORPUS", REPO.parent / "shared" / "corpus"))
BUTANE = CORPUS / "butane"
FILES = BUTANE / "files"

if not BUTANE.is_dir() and not os.environ.get("CI"):  # on CI a missing corpus fails
    pytest.skip(f"corpus not found at {CORPUS} (set FLATCAR_INFRA_CORPUS)", allow_module_level=True)

VALID = sorted(p for p in BUTANE.glob("*.yaml") if "INVALID" not in p.name)
INVALID = sorted(BUTANE.glob("*-INVALID.yaml"))
EXPECTED = sorted(BUTANE.glob("*.expected.ign.json"))


def _appliable(path: Path) -> bool:
    """Configs the files stage can apply in a scratch root: no fetch beyond ``data:`` (tests stay
    on loopback) and no LUKS (needs cryptsetup and real devices)."""
    doc = compile_file(path, files_dir=FILES).ignition
    text = json.dumps(doc)
    checkable = (
        doc.get("storage", {}).keys() & {"files", "directories", "links"}
        or "systemd" in doc
        or "passwd" in doc
    )
    return (
        bool(checkable)
        and '"luks"' not in text
        and not any(
            s in text
            for s in (
                '"source": "http',
                '"source": "s3:',
                '"source": "gs:',
                '"source": "tftp',
                '"source": "arn:',
            )
        )
    )


APPLIABLE = [p for p in VALID if _appliable(p)]


def test_corpus_is_there() -> None:
    assert len(VALID) >= 30 and INVALID and EXPECTED
    assert len(APPLIABLE) >= 20


@pytest.mark.ignition
@requires_ignition
@pytest.mark.parametrize("path", VALID, ids=lambda p: p.name)
def test_corpus_config_compiles_and_ignition_accepts_it(path: Path) -> None:
    compiled = compile_file(path, files_dir=FILES)
    assert compiled.version in ("3.3.0", "3.4.0")
    ignition_validate(compiled.canonical)
    again = compile_file(path, files_dir=FILES)
    assert again.canonical == compiled.canonical  # deterministic


@pytest.mark.parametrize("path", INVALID, ids=lambda p: p.name)
def test_invalid_corpus_config_fails_with_a_located_error(path: Path) -> None:
    with pytest.raises(ConfigError) as info:
        compile_file(path, files_dir=FILES)
    errors = [d for d in info.value.diagnostics if d.is_error]
    assert errors and all(d.line > 0 and d.col > 0 for d in errors)
    assert any(
        "Container Linux Config" in d.message and d.path.startswith("$.storage.filesystems.0") for d in errors
    )


def normalize(doc: Any) -> Any:
    """Compare meaning, not encoding: data URLs decoded (and gunzipped), ``compression: ""`` dropped."""
    if isinstance(doc, dict):
        out = {k: normalize(v) for k, v in doc.items() if not (k == "compression" and v in ("", None))}
        source = doc.get("source")
        if isinstance(source, str) and source.startswith("data:"):
            import gzip

            data = decode_data_url(source)
            out["source"] = gzip.decompress(data) if doc.get("compression") == "gzip" else data
            out.pop("compression", None)
        return out
    if isinstance(doc, list):
        return [normalize(x) for x in doc]
    return doc


@pytest.mark.parametrize("expected", EXPECTED, ids=lambda p: p.name)
def test_documented_outputs_match(expected: Path) -> None:
    source = expected.with_name(expected.name.replace(".expected.ign.json", ".yaml"))
    compiled = compile_file(source, files_dir=FILES)
    assert normalize(compiled.ignition) == normalize(json.loads(expected.read_text()))


@pytest.mark.ignition
@requires_ignition
@pytest.mark.parametrize("path", APPLIABLE, ids=lambda p: p.name)
def test_corpus_config_applied_by_real_ignition(path: Path, tmp_path: Path) -> None:
    compiled = compile_file(path, files_dir=FILES)
    root = apply_config(compiled.canonical, tmp_path / "root", [CORE_USER])
    assert assert_applied(compiled.ignition, root) > 0
