"""The example GitHub Actions workflow: valid YAML with the structure the docs promise (no network)."""

from __future__ import annotations

import argparse
import re
from pathlib import Path
from typing import Any

import yaml

from flatcar_infra.cli import plan

EXAMPLE = Path(__file__).resolve().parents[2] / "examples" / "ci"
WORKFLOW = EXAMPLE / ".github" / "workflows" / "flatcar-plan.yml"


def load() -> dict[str, Any]:
    doc = yaml.safe_load(WORKFLOW.read_text(encoding="utf-8"))
    assert isinstance(doc, dict)
    return doc


def step(job: dict[str, Any], uses_prefix: str) -> dict[str, Any]:
    found = [s for s in job["steps"] if str(s.get("uses", "")).startswith(uses_prefix)]
    assert len(found) == 1, uses_prefix
    result: dict[str, Any] = found[0]
    return result


def test_runs_on_pull_requests_with_comment_permission() -> None:
    doc: dict[Any, Any] = load()
    on = doc["on"] if "on" in doc else doc[True]  # YAML 1.1 reads a bare `on` as true
    assert "pull_request" in on
    assert doc["permissions"] == {"contents": "read", "pull-requests": "write"}


def test_plan_job_reads_the_base_and_posts_markdown() -> None:
    job = load()["jobs"]["plan"]
    assert step(job, "actions/checkout@")["with"]["fetch-depth"] == 0
    assert step(job, "actions/setup-python@")["with"]["python-version"] == "3.11"
    runs = "\n".join(s.get("run", "") for s in job["steps"])
    assert "pip install flatcar-infra" in runs
    cmd = next(s["run"] for s in job["steps"] if "flatcar-infra plan" in s.get("run", ""))
    assert '--base "origin/${GITHUB_BASE_REF}"' in cmd and "--format markdown" in cmd and "> plan.md" in cmd
    comment = step(job, "marocchino/sticky-pull-request-comment@")
    assert comment["with"]["path"] == "plan.md"


def test_plan_command_in_the_workflow_parses() -> None:
    job = load()["jobs"]["plan"]
    cmd = next(s["run"] for s in job["steps"] if "flatcar-infra plan" in s.get("run", ""))
    line = cmd.replace("\\\n", " ").splitlines()[0]
    argv = re.sub(r"\"origin/\$\{GITHUB_BASE_REF\}\"", "origin/main", line).split(">")[0].split()[1:]
    parser = argparse.ArgumentParser(prog="flatcar-infra")
    plan.register(parser.add_subparsers(dest="command"))
    args = parser.parse_args(argv)
    assert (args.stack_dir, args.base, args.format, args.max_size) == (
        "stacks",
        "origin/main",
        "markdown",
        60000,
    )


def test_preview_job_runs_pulumi_preview_per_stack() -> None:
    jobs = load()["jobs"]
    preview = jobs["preview"]
    assert preview["needs"] == "stacks"
    assert "fromJSON(needs.stacks.outputs.stacks)" in preview["strategy"]["matrix"]["stack"]
    action = step(preview, "pulumi/actions@v6")
    w = action["with"]
    assert w["command"] == "preview" and w["comment-on-pr"] is True and w["diff"] is True
    assert "matrix.stack" in w["stack-name"]
    assert "PULUMI_ACCESS_TOKEN" in action["env"]
    lister = jobs["stacks"]
    assert lister["outputs"]["stacks"] == "${{ steps.list.outputs.stacks }}"


def test_stack_lister_script_runs(tmp_path: Path, monkeypatch: Any) -> None:
    script = next(s["run"] for s in load()["jobs"]["stacks"]["steps"] if s.get("id") == "list")
    (tmp_path / "stacks").mkdir()
    for name in ("prod", "dev"):
        (tmp_path / "stacks" / f"Pulumi.{name}.yaml").write_text("config: {}\n")
    out = tmp_path / "out"
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("GITHUB_OUTPUT", str(out))
    exec(compile(script, "list", "exec"), {})
    assert out.read_text() == 'stacks=["dev", "prod"]\n'


def test_readme_explains_both_comments() -> None:
    text = (EXAMPLE / "README.md").read_text(encoding="utf-8")
    for needle in ("flatcar-plan.yml", "pulumi preview", "PULUMI_ACCESS_TOKEN", "fetch-depth"):
        assert needle in text
