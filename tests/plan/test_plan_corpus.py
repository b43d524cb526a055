"""Plans over the real-world corpus: every config, as a new machine and against itself, renders in
every format, lists exactly the manifest's entries, and never prints a secret it holds.

The corpus lives beside the repository (``<repo>/../shared/corpus``) or at ``$FLATCAR_INFRA_CORPUS``.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
from markdown_it import MarkdownIt

from flatcar_infra.compiler import compile_file
from flatcar_infra.manifest import build_manifest
from flatcar_infra.plan.model import Plan, plan_machine
from flatcar_infra.plan.render import render_json, render_markdown, render_text

REPO = Path(__file__).resolve().parents[2]
CORPUS = Path(os.environ.get("FLATCAR_INFRA_CORPUS", REPO.parent / "shared" / "corpus"))

if not (CORPUS / "butane").is_dir() and not os.environ.get("CI"):  # on CI a missing corpus fails
    pytest.skip(f"corpus not found at {CORPUS} (set FLATCAR_INFRA_CORPUS)", allow_module_level=True)

# the Butane configs real Butane accepts: those it has an output for (it rejects 09-*-INVALID and,
# in the flatcar variant before 1.2.0-experimental, 34-*'s clevis)
CONFIGS = sorted(p for p in (CORPUS / "butane").glob("*.yaml")
                 if p.with_suffix(".butane-v0.29.ign.json").exists()) + sorted(
    (CORPUS / "clc").glob("*.yaml")
)


@pytest.mark.parametrize("path", CONFIGS, ids=lambda p: f"{p.parent.name}/{p.name}")
def test_corpus_config_plans(path: Path) -> None:
    compiled = compile_file(
        path, files_dir=path.parent / "files", platform="ec2" if path.parent.name == "clc" else None
    )
    doc = compiled.ignition
    new = Plan((plan_machine(path.stem, None, doc, new_hash=compiled.hash),))
    keys = [c.key for c in new.machines[0].diff.changes]
    assert sorted(keys) == sorted(build_manifest(doc))
    text, md, js = render_text(new), render_markdown(new), render_json(new)
    assert json.loads(js)["machines"][0]["status"] == "added"
    html = MarkdownIt("commonmark").enable("table").render(md)
    assert html.count("<tr>") == len(keys) + 1
    for user in doc.get("passwd", {}).get("users", []):
        if user.get("passwordHash"):
            for out in (text, md, js):
                assert user["passwordHash"] not in out
    same = Plan((plan_machine(path.stem, doc, json.loads(json.dumps(doc))),))
    assert not same.has_changes and "no changes" in render_text(same)
