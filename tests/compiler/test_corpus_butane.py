"""Every Butane config of the shared corpus compiles as the real Butane compiles it: the same
Ignition (by meaning) as Butane v0.29's output kept beside it (``*.butane-v0.29.ign.json``), and
the REAL ``ignition-validate`` accepts it; what Butane rejects we reject, with a located error;
documented outputs match semantically.

The corpus lives beside the repository (``<repo>/../shared/corpus``) or at ``$FLATCAR_INFRA_CORPUS``.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import tempfile
from pathlib import Path
from typing import Any

import pytest

from flatcar_infra.compiler import compile_config, compile_file
from flatcar_infra.compiler.dataurl import decode_data_url
from flatcar_infra.errors import ConfigError
from tests.compiler.conformance import restore_links
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
# The files dir, with the symbolic link its tree holds (see ``conformance.LINKS``).
_FILES_COPY = tempfile.TemporaryDirectory(prefix="corpus-files-")
FILES = Path(_FILES_COPY.name) / "files"
if (BUTANE / "files").is_dir():
    shutil.copytree(BUTANE / "files", FILES, symlinks=True)
    restore_links(FILES, ["tree/directory/symlink"])

if not BUTANE.is_dir() and not os.environ.get("CI"):  # on CI a missing corpus fails
    pytest.skip(f"corpus not found at {CORPUS} (set FLATCAR_INFRA_CORPUS)", allow_module_level=True)


def _real_butane(path: Path) -> Path:
    return path.with_name(path.name.removesuffix(".yaml") + ".butane-v0.29.ign.json")


# The real Butane compiled these (its output is kept beside them); it rejected the others.
VALID = sorted(p for p in BUTANE.glob("*.yaml") if _real_butane(p).exists())
REJECTED = sorted(p for p in BUTANE.glob("*.yaml") if not _real_butane(p).exists())
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
    assert {p.name for p in REJECTED} >= {p.name for p in INVALID}


@pytest.mark.parametrize("path", VALID, ids=lambda p: p.name)
def test_corpus_config_means_what_real_butane_outputs(path: Path) -> None:
    """By meaning (data URLs decoded, gzip inflated, ``compression: ""`` = absent), and with no
    warning Butane would not give either (its ``--strict`` would fail otherwise)."""
    compiled = compile_file(path, files_dir=FILES)
    assert normalize(compiled.ignition) == normalize(json.loads(_real_butane(path).read_text()))


@pytest.mark.parametrize("path", REJECTED, ids=lambda p: p.name)
def test_corpus_config_butane_rejects_is_rejected(path: Path) -> None:
    with pytest.raises(ConfigError) as info:
        compile_file(path, files_dir=FILES)
    errors = [d for d in info.value.diagnostics if d.is_error]
    assert errors and all(d.line > 0 and d.col > 0 and d.path.startswith("$.") for d in errors)


def test_clevis_needs_the_experimental_version() -> None:
    """Butane's flatcar 1.0.0/1.1.0 refuse ``storage.luks.clevis``; 1.2.0-experimental takes it."""
    path = BUTANE / "34-butane-docs-luks-static-tpm-tang.yaml"
    with pytest.raises(ConfigError) as info:
        compile_file(path, files_dir=FILES)
    assert {d.path for d in info.value.diagnostics if d.is_error} == {
        "$.storage.luks.1.clevis",
        "$.storage.luks.2.clevis",
    }
    text = re.sub(r"(?m)^version: .*$", "version: 1.2.0-experimental", path.read_text())
    compiled = compile_config(text, filename=path.name, files_dir=FILES)
    assert compiled.version == "3.5.0-experimental"
    luks = compiled.ignition["storage"]["luks"]
    assert luks[1]["clevis"] == {"tpm2": True}
    assert luks[2]["clevis"]["tang"][0]["url"] == "https://tang.example.com"


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
