"""Renderers: Markdown checked through a real Markdown library's HTML, text, JSON, effects."""

from __future__ import annotations

import json
import re
from typing import Any

import pytest
from markdown_it import MarkdownIt

from flatcar_infra.plan.effect import Notice
from flatcar_infra.plan.model import Plan, plan_machine
from flatcar_infra.plan.render import JSON_SCHEMA, md_code, render_json, render_markdown, render_text
from flatcar_infra.reprovision.policy import Policy
from tests.plan.helpers import data_url, file_entry, ign

OLD = ign(
    storage={
        "files": [
            file_entry("/etc/app.conf", "a=1\nb=2\n", mode=0o644),
            file_entry("/etc/old.conf", "bye\n"),
            file_entry("/etc/tls/app.key", "PRIVATEKEYTEXT"),
            file_entry("/etc/we|ird`name", "x\n"),
        ]
    },
    systemd={"units": [{"name": "app.service", "enabled": True, "contents": "[Service]\nExecStart=/a\n"}]},
    passwd={"users": [{"name": "core", "passwordHash": "$6$OLDHASHVALUE"}]},
)
NEW = ign(
    storage={
        "files": [
            file_entry("/etc/app.conf", "a=1\nb=3\n", mode=0o600),
            file_entry("/etc/tls/app.key", "PRIVATEKEYTEXT2"),
            file_entry("/etc/we|ird`name", "y\n"),
            {"path": "/opt/blob", "contents": data_url(b"\x00\x01\x02", b64=True)},
        ]
    },
    systemd={
        "units": [
            {
                "name": "app.service",
                "enabled": False,
                "contents": "[Service]\nExecStart=/b\n",
                "dropins": [{"name": "10-env.conf", "contents": "[Service]\nEnvironment=X=1\n"}],
            }
        ]
    },
    passwd={"users": [{"name": "core", "passwordHash": "$6$NEWHASHVALUE"}]},
    kernelArguments={"shouldExist": ["console=ttyS0"]},
)


def sample_plan(**kw: Any) -> Plan:
    return Plan(
        (
            plan_machine(
                "web-1",
                OLD,
                NEW,
                stack="prod",
                old_hash="sha512-" + "1" * 128,
                new_hash="sha512-" + "2" * 128,
                **kw,
            ),
            plan_machine(
                "web-2",
                OLD,
                OLD,
                stack="prod",
                old_hash="sha512-" + "1" * 128,
                new_hash="sha512-" + "1" * 128,
            ),
            plan_machine("db-1", None, NEW, stack="prod"),
        ),
        base="origin/main",
    )


def html_of(md: str) -> str:
    html: str = MarkdownIt("commonmark").enable("table").render(md)
    return html


def test_markdown_renders_headings_tables_and_diff_blocks() -> None:
    html = html_of(render_markdown(sample_plan()))
    assert re.search(r"<h2>flatcar-infra plan against <code>origin/main</code></h2>", html)
    assert "<h3><code>prod/web-1</code>: config changed</h3>" in html
    assert "<h3><code>prod/db-1</code>: new machine</h3>" in html
    # unchanged machines are listed, not given a section
    assert "<h3><code>prod/web-2</code>" not in html and "No changes: <code>prod/web-2</code>" in html
    # one table per changed machine, a row per entry, four columns
    tables = re.findall(r"<table>.*?</table>", html, re.S)
    assert len(tables) == 2
    rows = re.findall(r"<tr>(.*?)</tr>", tables[0], re.S)
    header = re.findall(r"<th>(.*?)</th>", rows[0])
    assert header == ["", "Kind", "Entry", "Change"]
    cells = [re.findall(r"<td>(.*?)</td>", r, re.S) for r in rows[1:]]
    assert all(len(c) == 4 for c in cells)
    by_entry = {c[2]: c for c in cells}
    assert by_entry["<code>/etc/app.conf</code>"][3] == "mode 0644 → 0600; contents changed (+1 -1 lines)"
    assert by_entry["<code>app.service</code>"][3] == "enabled → disabled; contents changed (+1 -1 lines)"
    assert by_entry["<code>app.service/10-env.conf</code>"][1] == "drop-in"
    assert by_entry["<code>/etc/old.conf</code>"][0] == "removed"
    assert by_entry["<code>/etc/tls/app.key</code>"][3] == "contents (secret, changed)"
    # a pipe and a backtick in a name stay inside one cell, shown literally
    assert by_entry["<code>/etc/we|ird`name</code>"][0] == "changed"
    # content diffs: collapsible, fenced as diff
    assert html.count("<details>") == html.count("</details>") >= 4
    blocks = re.findall(r'<pre><code class="language-diff">(.*?)</code></pre>', html, re.S)
    assert any("-b=2\n+b=3" in b for b in blocks)
    assert any("+++ b/app.service/10-env.conf" in b for b in blocks)
    assert "<summary>contents of <code>/etc/app.conf</code> (+1 -1)</summary>" in html
    # effect and hash lines
    assert "<strong>Effect:</strong> reboots in place, not replaced" in html
    assert "<code>sha512-111111111111…</code> → <code>sha512-222222222222…</code>" in html


def test_markdown_never_contains_secrets() -> None:
    md = render_markdown(sample_plan())
    for secret in ("PRIVATEKEYTEXT", "OLDHASHVALUE", "NEWHASHVALUE"):
        assert secret not in md
    assert "PRIVATEKEYTEXT" not in html_of(md)


def test_markdown_notices_are_blockquotes() -> None:
    new = ign(
        storage={
            "filesystems": [
                {
                    "device": "/dev/disk/by-label/ROOT",
                    "format": "ext4",
                    "label": "ROOT",
                    "wipeFilesystem": True,
                }
            ]
        }
    )
    plan = Plan((plan_machine("m", ign(), new),))
    html = html_of(render_markdown(plan))
    quote = re.search(r"<blockquote>(.*?)</blockquote>", html, re.S)
    assert quote and "[!CAUTION]" in quote.group(1) and "wipeFilesystem: true" in quote.group(1)


def test_markdown_fence_outlasts_backticks_in_content() -> None:
    old = ign(storage={"files": [file_entry("/etc/readme.md", "```\ncode\n```\n")]})
    new = ign(storage={"files": [file_entry("/etc/readme.md", "````\ncode2\n````\n")]})
    html = html_of(render_markdown(Plan((plan_machine("m", old, new),))))
    block = re.search(r'<pre><code class="language-diff">(.*?)</code></pre>', html, re.S)
    assert block and "+````" in block.group(1) and "-```" in block.group(1)


def test_md_code_escapes() -> None:
    assert md_code("a`b") == "``a`b``"
    assert md_code("a|b") == "`a\\|b`"


def test_text_is_plain_without_color_and_colored_with() -> None:
    plan = sample_plan()
    plain = render_text(plan)
    assert "\x1b[" not in plain
    assert "prod/web-1: config changed" in plain
    assert "    ~ /etc/app.conf" in plain and "        -b=2" in plain and "        +b=3" in plain
    assert "    + console=ttyS0" in plain
    colored = render_text(plan, color=True)
    assert "\x1b[" in colored
    assert re.sub(r"\x1b\[[0-9;]*m", "", colored) == plain
    assert render_text(plan, width=40) == plain  # no wrapping: width-independent
    for secret in ("PRIVATEKEYTEXT", "OLDHASHVALUE"):
        assert secret not in plain


def test_json_schema_is_stable() -> None:
    doc = json.loads(render_json(sample_plan()))
    assert doc["schema"] == JSON_SCHEMA and doc["changes"] is True and doc["base"] == "origin/main"
    assert doc["summary"] == {"added": 1, "changed": 1, "removed": 0, "unchanged": 1}
    web1 = doc["machines"][0]
    assert set(web1) == {
        "stack",
        "name",
        "status",
        "old_source",
        "new_source",
        "old_hash",
        "new_hash",
        "effect",
        "notices",
        "counts",
        "changes",
    }
    assert web1["effect"]["action"] == "reboot" and web1["effect"]["strategy"] == "in-place"
    change = next(c for c in web1["changes"] if c["key"] == "file:/etc/app.conf")
    assert set(change) == {
        "key",
        "kind",
        "name",
        "action",
        "secret",
        "summary",
        "old_digest",
        "new_digest",
        "fields",
        "contents",
    }
    assert change["fields"][0] == {
        "field": "mode",
        "old": "0644",
        "new": "0600",
        "item": False,
        "secret": False,
        "text": "mode 0644 → 0600",
    }
    assert change["contents"][0]["mode"] == "diff" and "+b=3" in change["contents"][0]["diff"]
    user = next(c for c in web1["changes"] if c["key"] == "user:core")
    assert user["fields"][0]["old"] is None and user["fields"][0]["secret"] is True
    assert render_json(sample_plan()) == render_json(sample_plan())


@pytest.mark.parametrize(
    ("strategy", "action", "phrase"),
    [
        ("in-place", "reboot", "reboots in place, not replaced"),
        ("wipe-root", "reboot", "reboots in place, not replaced (strategy wipe-root)"),
        ("replace", "replace", "instance replaced"),
        ("ignore", "drift", "nothing is applied"),
    ],
)
def test_effect_per_strategy(strategy: str, action: str, phrase: str) -> None:
    m = plan_machine("m", OLD, NEW, policy=Policy(strategy=strategy))  # type: ignore[arg-type]
    assert m.effect.action == action and phrase in m.effect.summary


def test_in_place_effect_lists_kept_paths() -> None:
    m = plan_machine("m", OLD, NEW, policy=Policy(keep_paths=("/var/lib/app",)))
    assert m.effect.keeps == (
        "IP address",
        "SSH host keys",
        "disks other than ROOT",
        "machine-id",
        "paths matching /var/lib/flatcar-infra",
        "paths matching /var/lib/app",
    )
    assert m.effect.wipes == "everything else on the ROOT filesystem"
    assert plan_machine("m", OLD, OLD).effect.action == "none"
    assert plan_machine("m", None, OLD).effect.action == "create"
    assert plan_machine("m", OLD, None).effect.action == "destroy"


def test_root_wipe_is_flagged_as_data_loss() -> None:
    fs = {"device": "/dev/disk/by-label/ROOT", "format": "ext4", "label": "ROOT", "wipeFilesystem": True}
    data = {"device": "/dev/vdb", "format": "xfs", "wipeFilesystem": True}
    new = ign(storage={"filesystems": [fs, data]})
    danger = plan_machine("m", ign(), new).notices
    assert [n.level for n in danger] == ["danger", "danger"]
    assert "ROOT filesystem" in danger[0].message and "/dev/vdb" in danger[1].message
    # wipe-root expects the ROOT reformat: a warning, not an accident; the data disk still is one
    expected = plan_machine("m", ign(), new, policy=Policy(strategy="wipe-root")).notices
    assert [n.level for n in expected] == ["warning", "danger"]
    # a first boot or a replacement wipes nothing that exists
    assert plan_machine("m", None, new).notices == ()
    assert plan_machine("m", ign(), new, policy=Policy(strategy="replace")).notices == ()


def test_kept_path_conflicts() -> None:
    old = ign(storage={"files": [file_entry("/var/lib/app/state", "x")]})
    new = ign(storage={"files": [file_entry("/var/lib/app/conf", "y")]})
    notices = plan_machine("m", old, new, policy=Policy(keep_paths=("/var/lib/app",))).notices
    assert (
        Notice("warning", "/var/lib/app/state is removed from the config but stays on the host (kept path)")
        in notices
    )
    assert any(
        n.level == "danger" and "/var/lib/app/conf" in n.message and "overwrite" in n.message for n in notices
    )
    fixed = ign(storage={"files": [file_entry("/var/lib/app/conf", "y", overwrite=True)]})
    kept = Policy(keep_paths=("/var/lib/app",))
    assert not any(n.level == "danger" for n in plan_machine("m", old, fixed, policy=kept).notices)


def test_markdown_fits_a_size_limit() -> None:
    def files(i: int, tag: str) -> dict[str, Any]:
        text = "".join(f"line {n} of machine {i}{tag}\n" for n in range(300))
        return ign(storage={"files": [file_entry(f"/etc/f{j}", text) for j in range(3)]})

    machines = tuple(plan_machine(f"m{i}", files(i, ""), files(i, " changed"), stack="s") for i in range(30))
    plan = Plan(machines)
    full = render_markdown(plan)
    assert len(full.encode()) > 60000
    assert render_markdown(plan, max_size=len(full.encode())) == full
    no_diffs = render_markdown(plan, max_size=60000)
    assert len(no_diffs.encode()) <= 60000 and "<details>" not in no_diffs
    assert "Content diffs are left out" in no_diffs and "### `s/m29`" in no_diffs
    cut = render_markdown(plan, max_size=2000)
    assert len(cut.encode()) <= 2000 and cut.endswith("run `flatcar-infra plan` for the whole plan._\n")
    html = html_of(cut)
    assert "<h3><code>s/m0</code>: config changed</h3>" in html and "<table>" in html


def test_identical_machines_are_shown_once() -> None:
    plan = Plan(tuple(plan_machine(f"web-{i}", OLD, NEW, stack="prod") for i in (1, 2)))
    text = render_text(plan)
    assert "prod/web-2: config changed" in text and "same changes and effect as prod/web-1" in text
    assert text.count("~ /etc/app.conf") == 1
    md = render_markdown(plan)
    assert "Same changes and effect as `prod/web-1`." in md and md.count("<table>") == 0
    assert html_of(md).count("<table>") == 1
    # JSON keeps every machine in full
    doc = json.loads(render_json(plan))
    assert [len(m["changes"]) for m in doc["machines"]] == [len(doc["machines"][0]["changes"])] * 2
