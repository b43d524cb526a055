"""Keep-path regexes as the engine that applies them reads them: POSIX ERE with GNU extensions.

``flatcar-reset`` writes the keep regexes to ``/selective-os-reset`` and the initramfs applies them
with ``find -regextype egrep`` (GNU regex). Python's ``re`` accepts more and means other things:
``/var/lib/app\\d+`` compiles in Python but GNU ERE reads ``\\d`` as the letter ``d``, so the
entry keeps nothing and the data is deleted. ``ere_problems`` is the offline check (policy
validation, ``pulumi preview``): it finds the constructs whose meaning differs between the two
engines and the syntax GNU ERE rejects; the host's own engine compiles every entry again in
preflight (``preflight.py``). Tests hold this lexer against GNU grep and find.
"""

from __future__ import annotations

CLASSES = frozenset(
    {
        "alpha",
        "digit",
        "alnum",
        "upper",
        "lower",
        "space",
        "blank",
        "punct",
        "print",
        "graph",
        "cntrl",
        "xdigit",
    }
)
GNU_ESCAPES = frozenset("wWsSbB<>`'")
"""Backslash-letter escapes GNU regex defines (word, space, boundaries, buffer anchors)."""

_PYTHON_ESCAPES = {
    "d": "'\\d' is Python-only (GNU ERE reads it as the letter 'd'): write [0-9]",
    "D": "'\\D' is Python-only (GNU ERE reads it as the letter 'D'): write [^0-9]",
    "A": "'\\A' is Python-only: write ^",
    "Z": "'\\Z' is Python-only: write $",
    "z": "'\\z' is Python-only: write $",
}


def ere_problems(rx: str) -> list[str]:
    """What is wrong with ``rx`` as a GNU ERE, each problem with its fix; ``[]`` when fine."""
    problems: list[str] = []
    i = 0
    n = len(rx)
    depth = 0
    can_repeat = False  # is there an atom before this position that a quantifier applies to?
    while i < n:
        c = rx[i]
        if c == "\\":
            if i + 1 >= n:
                problems.append("trailing backslash")
                break
            e = rx[i + 1]
            if e in _PYTHON_ESCAPES:
                problems.append(_PYTHON_ESCAPES[e])
            elif e.isdigit() and e != "0":
                problems.append(
                    f"'\\{e}' is a back reference: flatcar-reset joins every entry into one "
                    "regex inside an outer group, which renumbers the groups, so it cannot "
                    "work; repeat the text instead"
                )
            elif e in GNU_ESCAPES or not e.isalnum():
                pass  # a GNU extension, or an escaped punctuation character (literal)
            else:
                problems.append(
                    f"'\\{e}' is not an ERE escape (GNU ERE reads it as the letter {e!r}; "
                    "Python escapes such as \\n, \\t, \\x41 do not exist in ERE): write the "
                    "character itself"
                )
            i += 2
            can_repeat = e not in "bB<>`'"
            continue
        if c == "[":
            end, bracket_problems = _bracket(rx, i)
            problems += bracket_problems
            if end < 0:
                break
            i = end + 1
            can_repeat = True
            continue
        if c == "(":
            if rx.startswith("(?", i):
                problems.append(
                    f"'{rx[i : i + 3]}…' is a Python-only group (non-capturing, lookaround "
                    "or flags; ERE has none of them): use a plain ( ) group"
                )
                i += 2
            else:
                i += 1
            depth += 1
            can_repeat = False
            continue
        if c == ")":
            depth = max(0, depth - 1)  # GNU reads an unmatched ')' as a literal
            i += 1
            can_repeat = True
            continue
        if c == "|":
            i += 1
            can_repeat = False
            continue
        interval = _interval(rx, i) if c == "{" else None
        if isinstance(interval, str):
            problems.append(interval)
            i += 1
            continue
        if c in "*+?" or interval is not None:
            end = interval if isinstance(interval, int) else i + 1
            if c == "{":
                lo_hi = rx[i + 1 : end - 1].split(",")
                lo = int(lo_hi[0]) if lo_hi[0] else 0
                hi = int(lo_hi[1]) if len(lo_hi) > 1 and lo_hi[1] else None
                if hi is not None and hi < lo:
                    problems.append(f"'{rx[i:end]}': the upper bound is below the lower bound")
                if max(lo, hi or 0) > 255:
                    problems.append(f"'{rx[i:end]}': repetition counts above 255 are not portable ERE")
            if not can_repeat:
                problems.append(f"'{rx[i:end]}' has nothing to repeat (at offset {i})")
            if end < n and rx[end] in "?+":
                kind = "lazy" if rx[end] == "?" else "possessive"
                problems.append(
                    f"'{rx[i : end + 1]}' is a Python-only {kind} quantifier (ERE always "
                    f"repeats greedily): drop the '{rx[end]}'"
                )
                end += 1
            i = end
            can_repeat = True
            continue
        i += 1
        can_repeat = c not in "^$"
    if depth:
        problems.append("unmatched '(' (a group is not closed)")
    return problems


def _interval(rx: str, i: int) -> int | str | None:
    """At ``rx[i] == '{'``, as GNU regex parses it: the end (exclusive) of a valid ``{m}``,
    ``{m,}``, ``{,n}`` or ``{m,n}``; None when GNU reads the brace as a literal (a non-digit inside,
    or no closing brace); a message when GNU rejects it (``{}``, ``{1,2,3}``)."""
    n = len(rx)
    j = i + 1
    while j < n and rx[j] not in ",}":
        j += 1
    if j >= n or not all(c.isdigit() for c in rx[i + 1 : j]):
        return None
    if rx[j] == "}":
        return j + 1 if j > i + 1 else f"'{rx[i : j + 1]}' is an empty interval"
    k = j + 1
    while k < n and rx[k] not in ",}":
        k += 1
    if k >= n or not all(c.isdigit() for c in rx[j + 1 : k]):
        return None
    if rx[k] == ",":
        return f"'{rx[i : rx.find('}', k) + 1 or n]}' is an invalid interval"
    return k + 1


def _bracket(rx: str, i: int) -> tuple[int, list[str]]:
    """Parse the bracket expression at ``rx[i] == '['``: (index of its ``]`` or -1, problems)."""
    problems: list[str] = []
    j = i + 1
    n = len(rx)
    if j < n and rx[j] == "^":
        j += 1
    if j < n and rx[j] == "]":
        j += 1  # a leading ']' is a literal member
    prev: str | None = None
    while j < n and rx[j] != "]":
        c = rx[j]
        if c == "[" and j + 1 < n and rx[j + 1] in ":=.":
            kind = rx[j + 1]
            close = rx.find(kind + "]", j + 2)
            if close < 0:
                problems.append(f"unterminated '[{kind}' in a bracket expression")
                return -1, problems
            name = rx[j + 2 : close]
            if kind == ":" and name not in CLASSES:
                problems.append(
                    f"'[:{name}:]' is not a character class (use one of {', '.join(sorted(CLASSES))})"
                )
            j = close + 2
            prev = None
            continue
        if c == "\\":
            nxt = rx[j + 1] if j + 1 < n else ""
            hint = {"d": "[0-9]", "s": "[[:space:]]", "w": "[[:alnum:]_]", "D": "[^0-9]"}.get(nxt)
            problems.append(
                f"'\\{nxt}' inside [...]: a backslash is a literal backslash in an ERE bracket "
                "expression"
                + (
                    f" (for '[\\{nxt}]' write {hint})"
                    if hint
                    else " (put ']' first and '-' last instead of escaping them)"
                )
            )
        if c == "-" and prev is not None and j + 1 < n and rx[j + 1] != "]":
            hi = rx[j + 1]
            if hi < prev:
                problems.append(f"'{prev}-{hi}' is an invalid range (its end is below its start)")
            j += 2
            prev = None
            continue
        prev = c
        j += 1
    if j >= n:
        problems.append("unterminated '[' (a bracket expression is not closed)")
        return -1, problems
    body = rx[i + 1 : j]
    if len(body) > 2 and body.startswith(":") and body.endswith(":"):
        problems.append(
            f"'[{body}]' is a set of the characters {body!r}: a character class is written [[{body}]]"
        )
    return j, problems
