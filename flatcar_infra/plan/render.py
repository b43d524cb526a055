"""A ``Plan`` as text (rich, colored only on a terminal), Markdown (a PR comment) or JSON.

Renderers only read the plan: every secret was already reduced to "(secret, …)" by ``diff.py``
(contents, field values, set members, URLs, header values, kernel arguments: see
``flatcar_infra.secrets``), so no renderer can print one; names go through ``Change.shown_key``.
Output is deterministic: same plan, same bytes (text output does not wrap, so the terminal width
does not matter).
"""

from __future__ import annotations

import html
import json
import re
from io import StringIO
from typing import Any, Final

from rich.console import Console
from rich.markup import escape

from flatcar_infra.plan.diff import Action, Change, ContentChange
from flatcar_infra.plan.display import short_hash
from flatcar_infra.plan.model import MachinePlan, Plan

JSON_SCHEMA: Final = "flatcar-infra/plan/v1"
_SIGN: Final = {Action.ADDED: "+", Action.REMOVED: "-", Action.CHANGED: "~"}
_STYLE: Final = {Action.ADDED: "green", Action.REMOVED: "red", Action.CHANGED: "yellow"}
_NOTICE_STYLE: Final = {"danger": "bold red", "warning": "yellow", "info": "cyan"}
_STATUS_TEXT: Final = {
    "added": "new machine",
    "removed": "machine removed",
    "changed": "config changed",
    "unchanged": "no changes",
}


def _kind_label(c: Change) -> str:
    return {"dropin": "drop-in", "kernel-arg": "kernel arg", "dir": "directory"}.get(c.kind, c.kind)


def _display_name(c: Change) -> str:
    if c.kind == "kernel-arg":
        return c.shown_name[1:]
    return c.shown_name


def _entry_counts(m: MachinePlan) -> str:
    n = m.diff.counts()
    return ", ".join(f"{v} {k}" for k, v in n.items() if v) or "no entries"


def twins(plan: Plan) -> dict[int, str]:
    """Machines whose plan repeats an earlier machine's (same entries, digests, effect, notices):
    index → title of the first one, so a fleet of identical machines is reviewed once."""
    seen: dict[object, str] = {}
    out: dict[int, str] = {}
    for i, m in enumerate(plan.machines):
        if m.status == "unchanged":
            continue
        sig = (
            m.status,
            m.diff.old_hash,
            m.diff.new_hash,
            m.effect,
            m.notices,
            tuple((c.key, c.old_digest, c.new_digest) for c in m.diff.changes),
        )
        if sig in seen:
            out[i] = seen[sig]
        else:
            seen[sig] = m.title
    return out


def plan_summary(plan: Plan) -> str:
    n = plan.counts()
    total = len(plan.machines)
    parts = [f"{v} {k}" for k, v in n.items() if v]
    return f"{total} machine{'s' if total != 1 else ''}" + (": " + ", ".join(parts) if parts else "")


# ---------------------------------------------------------------------------------------------
# Text


def render_text(plan: Plan, *, color: bool = False, width: int = 100) -> str:
    buf = StringIO()
    con = Console(
        file=buf,
        force_terminal=color,
        no_color=not color,
        color_system="standard" if color else None,
        width=width,
        highlight=False,
        soft_wrap=True,
        emoji=False,
    )
    base = f" against {plan.base}" if plan.base else ""
    con.print(f"[bold]Plan{escape(base)}:[/bold] {escape(plan_summary(plan))}")
    same = twins(plan)
    for i, m in enumerate(plan.machines):
        con.print()
        _text_machine(con, m, same.get(i))
    return buf.getvalue()


def _text_machine(con: Console, m: MachinePlan, same_as: str | None) -> None:
    status_style = "dim" if m.status == "unchanged" else "bold"
    con.print(
        f"[{status_style}]{escape(m.title)}[/{status_style}]: {escape(_STATUS_TEXT[m.status])}"
        + ("" if m.status == "unchanged" else f" ({escape(_entry_counts(m))})")
    )
    if m.old_source and m.new_source:
        con.print(f"  from {escape(m.old_source)} to {escape(m.new_source)}")
    elif m.old_source or m.new_source:
        con.print(f"  config {escape(m.new_source or m.old_source or '')}")
    if m.diff.old_hash != m.diff.new_hash:
        con.print(f"  config hash {short_hash(m.diff.old_hash)} → {short_hash(m.diff.new_hash)}")
    if same_as is not None:
        con.print(f"  same changes and effect as {escape(same_as)}")
        return
    for n in m.notices:
        style = _NOTICE_STYLE[n.level]
        con.print(f"  [{style}]{n.level.upper()}:[/{style}] {escape(n.message)}")
    if m.status == "unchanged":
        return
    con.print(f"  effect: {escape(m.effect.summary)}")
    if m.effect.keeps:
        con.print(f"    keeps: {escape(', '.join(m.effect.keeps))}")
    if m.effect.wipes:
        con.print(f"    wipes: {escape(m.effect.wipes)}")
    names = [_text_name(c) for c in m.diff.changes]
    pad = min(max((len(n) for n in names), default=0), 48)
    for _cat, title, changes in m.diff.by_category():
        con.print(f"  [bold]{escape(title)}[/bold]")
        for c in changes:
            style = _STYLE[c.action]
            name = _text_name(c)
            con.print(
                f"    [{style}]{_SIGN[c.action]} {escape(name.ljust(pad))}[/{style}]  {escape(c.summary)}"
            )
            for cc in c.contents:
                for line in cc.diff:
                    con.print(f"        {_diff_line(line)}")


def _text_name(c: Change) -> str:
    return _display_name(c) + (" (drop-in)" if c.kind == "dropin" else "")


def _diff_line(line: str) -> str:
    text = escape(line)
    if line.startswith(("+++", "---")):
        return f"[bold]{text}[/bold]"
    if line.startswith("@@"):
        return f"[cyan]{text}[/cyan]"
    if line.startswith("+"):
        return f"[green]{text}[/green]"
    if line.startswith("-"):
        return f"[red]{text}[/red]"
    return text


# ---------------------------------------------------------------------------------------------
# Markdown

_MD_SPECIAL: Final = re.compile(r"([\\`*_\[\]<>|~])")


def md_escape(text: str) -> str:
    """Plain text that Markdown shows literally (also safe inside a table cell)."""
    return _MD_SPECIAL.sub(r"\\\1", text)


def md_code(text: str) -> str:
    """An inline code span that survives backticks and table pipes."""
    run = max((len(r) for r in re.findall(r"`+", text)), default=0)
    fence = "`" * (run + 1)
    body = text.replace("|", "\\|")
    pad = " " if body.startswith("`") or body.endswith("`") else ""
    return f"{fence}{pad}{body}{pad}{fence}"


_NO_DIFFS: Final = (
    "_Content diffs are left out to fit the size limit: run `flatcar-infra plan` or see the CI job "
    "summary for them._"
)
_CUT: Final = "_… cut to fit the size limit: run `flatcar-infra plan` for the whole plan._"


def render_markdown(plan: Plan, *, max_size: int | None = None) -> str:
    """Markdown for a PR comment. ``max_size`` (bytes; GitHub refuses comments over 65536
    characters): first the content diffs go, then whole lines from the end."""
    full = _markdown(plan, diffs=True)
    if max_size is None or len(full.encode()) <= max_size:
        return full
    short = _markdown(plan, diffs=False)
    if len(short.encode()) <= max_size:
        return short
    budget = max_size - len(_CUT.encode()) - 2
    kept: list[str] = []
    size = 0
    for line in short.splitlines(keepends=True):
        size += len(line.encode())
        if size > budget:
            break
        kept.append(line)
    return "".join(kept).rstrip("\n") + "\n\n" + _CUT + "\n"


def _markdown(plan: Plan, *, diffs: bool) -> str:
    out: list[str] = []
    base = f" against {md_code(plan.base)}" if plan.base else ""
    out.append(f"## flatcar-infra plan{base}")
    out.append("")
    out.append(f"**{md_escape(plan_summary(plan))}**")
    out.append("")
    if not diffs:
        out += [_NO_DIFFS, ""]
    unchanged = [m for m in plan.machines if m.status == "unchanged"]
    same = twins(plan)
    for i, m in enumerate(plan.machines):
        if i in same:
            out += [
                f"### {md_code(m.title)}: {md_escape(_STATUS_TEXT[m.status])}",
                "",
                f"Same changes and effect as {md_code(same[i])}.",
                "",
            ]
        elif m.status != "unchanged" or m.notices:
            out += _md_machine(m, diffs=diffs)
    if unchanged:
        out.append("No changes: " + ", ".join(md_code(m.title) for m in unchanged))
        out.append("")
    return "\n".join(out).rstrip("\n") + "\n"


def _md_machine(m: MachinePlan, *, diffs: bool) -> list[str]:
    out = [f"### {md_code(m.title)}: {md_escape(_STATUS_TEXT[m.status])}", ""]
    if m.status != "unchanged":
        out.append(f"**Effect:** {md_escape(m.effect.summary)}  ")
        if m.effect.keeps:
            out.append(f"**Keeps:** {', '.join(md_escape(k) for k in m.effect.keeps)}  ")
        if m.effect.wipes:
            out.append(f"**Wipes:** {md_escape(m.effect.wipes)}  ")
        if m.diff.old_hash != m.diff.new_hash:
            out.append(
                f"**Config hash:** {md_code(short_hash(m.diff.old_hash))} → "
                f"{md_code(short_hash(m.diff.new_hash))}  "
            )
        if m.old_source and m.new_source:
            out.append(f"**Source:** {md_code(m.old_source)} → {md_code(m.new_source)}")
        elif m.old_source or m.new_source:
            out.append(f"**Source:** {md_code(m.new_source or m.old_source or '')}")
        out.append("")
    for n in m.notices:
        tag = {"danger": "CAUTION", "warning": "WARNING", "info": "NOTE"}[n.level]
        out += [f"> [!{tag}]", f"> {md_escape(n.message)}", ""]
    if not m.diff.changes:
        return out
    out += ["| | Kind | Entry | Change |", "|---|---|---|---|"]
    for c in m.diff.changes:
        out.append(
            f"| {c.action.value} | {md_escape(_kind_label(c))} | {md_code(_display_name(c))} "
            f"| {md_escape(c.summary)} |"
        )
    out.append("")
    for c in m.diff.changes:
        for cc in c.contents:
            if cc.diff and diffs:
                out += _md_details(c, cc)
    return out


def _md_details(c: Change, cc: ContentChange) -> list[str]:
    run = max((len(r) for line in cc.diff for r in re.findall(r"`{3,}", line)), default=2)
    fence = "`" * max(3, run + 1)
    summary = (
        f"{html.escape(cc.label)} of <code>{html.escape(_display_name(c))}</code> "
        f"(+{cc.added_lines} -{cc.removed_lines})"
    )
    return [
        f"<details><summary>{summary}</summary>",
        "",
        f"{fence}diff",
        *cc.diff,
        fence,
        "",
        "</details>",
        "",
    ]


# ---------------------------------------------------------------------------------------------
# JSON


def plan_json(plan: Plan) -> dict[str, Any]:
    """The stable JSON form (schema ``flatcar-infra/plan/v1``, see docs/plan.md)."""
    return {
        "schema": JSON_SCHEMA,
        "base": plan.base,
        "changes": plan.has_changes,
        "summary": plan.counts(),
        "machines": [_json_machine(m) for m in plan.machines],
    }


def _json_machine(m: MachinePlan) -> dict[str, Any]:
    return {
        "stack": m.stack,
        "name": m.name,
        "status": m.status,
        "old_source": m.old_source,
        "new_source": m.new_source,
        "old_hash": m.diff.old_hash,
        "new_hash": m.diff.new_hash,
        "effect": {
            "strategy": m.effect.strategy,
            "action": m.effect.action,
            "summary": m.effect.summary,
            "keeps": list(m.effect.keeps),
            "wipes": m.effect.wipes,
        },
        "notices": [{"level": n.level, "message": n.message} for n in m.notices],
        "counts": m.diff.counts(),
        "changes": [_json_change(c) for c in m.diff.changes],
    }


def _json_change(c: Change) -> dict[str, Any]:
    return {
        "key": c.shown_key,
        "kind": c.kind,
        "name": c.shown_name,
        "action": c.action.value,
        "secret": c.secret,
        "summary": c.summary,
        "old_digest": c.old_digest,
        "new_digest": c.new_digest,
        "fields": [
            {
                "field": f.field,
                "old": None if f.secret else f.old,
                "new": None if f.secret else f.new,
                "item": f.item,
                "secret": f.secret,
                "text": f.describe(),
            }
            for f in c.fields
        ],
        "contents": [
            {
                "label": cc.label,
                "mode": cc.mode,
                "old": _json_side(cc.old),
                "new": _json_side(cc.new),
                "added_lines": cc.added_lines,
                "removed_lines": cc.removed_lines,
                "note": cc.note,
                "diff": list(cc.diff),
            }
            for cc in c.contents
        ],
    }


def _json_side(side: Any) -> dict[str, Any] | None:
    if side is None:
        return None
    return {
        "source": side.source,
        "size": side.size,
        "sha256": side.sha256,
        "compression": side.compression,
        "verification": side.verification,
        "headers": list(side.headers),
        "text": side.text,
    }


def render_json(plan: Plan) -> str:
    return json.dumps(plan_json(plan), indent=2, sort_keys=True, ensure_ascii=False) + "\n"


RENDERERS: Final = ("text", "markdown", "json")
