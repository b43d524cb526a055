"""Property tests: random and mutated YAML never produces a traceback, only located diagnostics.

Whatever the input, ``compile_config`` either returns a config or raises ``ConfigError`` whose every
diagnostic has a file, a line >= 0 and a JSON path. Example counts stay modest (about 200 in all)
so CI stays fast.
"""

from __future__ import annotations

import os
import random
from pathlib import Path
from typing import Any

import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from flatcar_infra.compiler import compile_config
from flatcar_infra.errors import ConfigError


def corpus_dir() -> Path:
    env = os.environ.get("FLATCAR_INFRA_CORPUS")
    return Path(env) if env else Path(__file__).resolve().parents[2].parent / "shared" / "corpus"


CORPUS = corpus_dir()
SOURCES = sorted((CORPUS / "clc").glob("*.yaml")) + sorted((CORPUS / "butane").glob("*.yaml"))
TEXTS = {p: p.read_text() for p in SOURCES}

# FLATCAR_INFRA_FUZZ=N runs N times the examples, randomized (for a local bug hunt); CI runs the
# modest, derandomized default.
FUZZ = int(os.environ.get("FLATCAR_INFRA_FUZZ", "1"))
SETTINGS = settings(deadline=None, suppress_health_check=[HealthCheck.too_slow], derandomize=FUZZ == 1)


def examples(n: int) -> int:
    return n * FUZZ


# Keys the translators know, so random documents reach deep into them, plus a few they do not.
KEYS = [
    "ignition",
    "storage",
    "systemd",
    "networkd",
    "passwd",
    "etcd",
    "flannel",
    "update",
    "docker",
    "locksmith",
    "files",
    "directories",
    "links",
    "filesystems",
    "disks",
    "raid",
    "partitions",
    "units",
    "dropins",
    "users",
    "groups",
    "path",
    "filesystem",
    "mode",
    "contents",
    "inline",
    "local",
    "remote",
    "url",
    "verification",
    "hash",
    "function",
    "sum",
    "name",
    "enable",
    "enabled",
    "mask",
    "mount",
    "device",
    "format",
    "wipe_filesystem",
    "label",
    "size",
    "start",
    "number",
    "type_guid",
    "overwrite",
    "append",
    "user",
    "group",
    "id",
    "target",
    "hard",
    "ssh_authorized_keys",
    "password_hash",
    "uid",
    "create",
    "version",
    "flags",
    "reboot_strategy",
    "window_start",
    "window_length",
    "server",
    "network_config",
    "config",
    "timeouts",
    "http_total",
    "security",
    "tls",
    "certificate_authorities",
    "source",
    "kernel_arguments",
    "should_exist",
    "wipe_table",
    "options",
    "create",
    "force",
    "bogus",
]
SCALARS = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(min_value=-(2**70), max_value=2**70),
    st.floats(allow_nan=True, allow_infinity=True),
    st.sampled_from(
        [
            "root",
            "oem",
            "/etc/x",
            "0644",
            "{PRIVATE_IPV4}",
            "{HOSTNAME}",
            "sha512",
            "3.0.0",
            "0.7.0",
            "1GiB",
            "Sun 1:00",
            "2h",
            "off",
            "etcd-lock",
            "x.service",
            "a.network",
            "data:,x",
            "https://example.com/x",
            "",
            "../x",
            "flatcar",
            "1.0.0",
            "1.1.0",
        ]
    ),
    st.text(max_size=20),
)
DOCS = st.recursive(
    SCALARS,
    lambda inner: st.one_of(
        st.lists(inner, max_size=4),
        st.dictionaries(st.sampled_from(KEYS), inner, max_size=5),
    ),
    max_leaves=25,
)


def check(text: str, *, platform: str | None = None, filename: str = "fuzz.yaml") -> None:
    try:
        compile_config(text, filename=filename, platform=platform, files_dir=CORPUS / "clc" / "files")
    except ConfigError as exc:
        assert exc.diagnostics, "a ConfigError must carry diagnostics"
        for d in exc.diagnostics:
            assert d.file, d
            assert isinstance(d.line, int) and d.line >= 0, d
            assert isinstance(d.col, int) and d.col >= 0, d
            assert d.path.startswith("$"), d
            assert d.message, d
            str(d)  # printable


@settings(SETTINGS, max_examples=examples(60))
@given(doc=DOCS, platform=st.sampled_from([None, "ec2", "custom", "nowhere"]))
def test_random_documents(doc: Any, platform: str | None) -> None:
    check(yaml.safe_dump(doc, default_flow_style=False, allow_unicode=True), platform=platform)


@settings(SETTINGS, max_examples=examples(40))
@given(doc=st.dictionaries(st.sampled_from(KEYS), DOCS, max_size=6))
def test_random_butane_documents(doc: dict[str, Any]) -> None:
    doc = {"variant": "flatcar", "version": "1.0.0", **doc}
    check(yaml.safe_dump(doc, allow_unicode=True))


@settings(SETTINGS, max_examples=examples(30))
@given(
    text=st.text(
        alphabet=st.sampled_from([*"abc:-{}[]\"'!&*|>#%@` \n\t0123456789", "\x00", "é"]), max_size=80
    )
)
def test_random_text(text: str) -> None:
    check(text)


def _mutate(text: str, rnd: random.Random) -> str:
    lines = text.splitlines(keepends=True) or ["\n"]
    op = rnd.randrange(7)
    i = rnd.randrange(len(lines))
    if op == 0:  # delete a line
        del lines[i]
    elif op == 1:  # duplicate a line (duplicate keys, repeated list items)
        lines.insert(i, lines[i])
    elif op == 2:  # change indentation
        lines[i] = " " * rnd.choice([0, 1, 3, 8]) + lines[i].lstrip(" ")
    elif op == 3:  # swap a value for one of another type
        head, sep, _ = lines[i].partition(": ")
        if sep:
            value = rnd.choice(
                [
                    "[]",
                    "{}",
                    "~",
                    "true",
                    "0755",
                    "-1",
                    "1e400",
                    "'{PUBLIC_IPV6}'",
                    "!!binary x",
                    "&a 1",
                    "*a",
                    "[1, [2]]",
                    "{a: b}",
                    '"\\u0000"',
                    "|\n  text",
                ]
            )
            lines[i] = f"{head}{sep}{value}\n"
    elif op == 4:  # truncate
        return "".join(lines)[: rnd.randrange(len(text) + 1)]
    elif op == 5:  # move a line elsewhere
        lines.insert(rnd.randrange(len(lines)), lines.pop(i))
    else:  # turn a mapping entry into a list item
        lines[i] = lines[i].replace("  ", "- ", 1)
    return "".join(lines)


@settings(SETTINGS, max_examples=examples(80))
@given(
    index=st.integers(min_value=0, max_value=max(len(SOURCES) - 1, 0)),
    seed=st.integers(0, 2**32),
    rounds=st.integers(1, 4),
    platform=st.sampled_from([None, "ec2"]),
)
def test_mutated_corpus_files(index: int, seed: int, rounds: int, platform: str | None) -> None:
    assert SOURCES, f"corpus not found at {CORPUS}"
    rnd = random.Random(seed)
    text = TEXTS[SOURCES[index]]
    for _ in range(rounds):
        text = _mutate(text, rnd)
    check(text, platform=platform, filename=SOURCES[index].name)
