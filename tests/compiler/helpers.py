"""Small helpers for the compiler tests: compile text, render diagnostics as strings."""

from __future__ import annotations

import textwrap
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from flatcar_infra.canonical import canonical_bytes
from flatcar_infra.compiler.dataurl import decode_data_url
from flatcar_infra.compiler.pipeline import TranslateResult, translate
from tests.support.ignition import IGNITION_BIN, ignition_validate


def run(
    text: str,
    *,
    filename: str = "c.yaml",
    files_dir: Path | None = None,
    variables: Mapping[str, Any] | None = None,
    template: bool | None = None,
    snippets: Sequence[tuple[str, str]] = (),
    platform: str | None = None,
) -> TranslateResult:
    return translate(
        textwrap.dedent(text),
        filename=filename,
        files_dir=files_dir,
        variables=variables,
        template=template,
        snippets=snippets,
        platform=platform,
    )


def ok(text: str, **kw: Any) -> dict[str, Any]:
    """The document; fails the test on any error, and on anything the REAL ``ignition-validate``
    rejects (when Debian's ignition package is installed, as in CI)."""
    result = run(text, **kw)
    errors = [str(d) for d in result.diagnostics if d.is_error]
    assert not errors, errors
    assert result.document is not None
    if IGNITION_BIN.exists():
        from tests.compiler.conformance import same_entry

        checked = ignition_validate(canonical_bytes(result.document), allow_warnings=True)
        ours = {d.path for d in result.diagnostics}
        for warning in checked.unexpected:  # every warning Ignition gives, we give too (at the source)
            path = warning.removeprefix("warning at ").split(",")[0]
            assert any(same_entry(path, p) for p in ours), (warning, ours)
    return result.document


def messages(result: TranslateResult) -> list[str]:
    return [str(d) for d in sorted(result.diagnostics)]


def contents(url: str, compression: str | None = None) -> bytes:
    import gzip

    data = decode_data_url(url)
    return gzip.decompress(data) if compression == "gzip" else data
